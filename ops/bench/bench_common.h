/*
 * bench_common.h: the helpers bench_floor.c and bench_original.c share
 * (errors, clocks, the output bodies encoded once per batch size, picking
 * the rowids out of a batch text). Each program defines BENCH_PROG (its
 * name, for messages) and BENCH_UID (the metric uid shown in the bodies)
 * before including it; static functions, one copy per program.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

static void die(const char *what, const char *msg)
{
    fprintf(stderr, BENCH_PROG ": %s: %s\n", what, msg);
    exit(1);
}


static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        die("memory", "out of memory");
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die(path, strerror(errno));
    char *s = NULL;
    size_t n = 0;
    ssize_t got = getdelim(&s, &n, '\0', f);
    fclose(f);
    if (got <= 0)
        die(path, "empty");
    while (got > 0 && (s[got - 1] == '\n' || s[got - 1] == ' '))
        s[--got] = '\0';
    return s;
}

/* ---- output bodies, encoded once per batch size ---- */

typedef struct body {
    size_t n;
    char *p;
    size_t len;
} body;

static body g_bodies[16];
static size_t g_nbodies;

static const body *body_for(size_t n, an_encoding enc)
{
    for (size_t i = 0; i < g_nbodies; i++)
        if (g_bodies[i].n == n)
            return &g_bodies[i];
    an_out_row *rows = xcalloc(n, sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        rows[i].rowid = 400 + (int64_t)i;
        rows[i].ts = 1388534400.0 + 300.0 * (double)i;
        rows[i].value = 45.123456789 + (double)i;
        rows[i].raw = 0.0250000003725;
        rows[i].anomaly = 0.5;
        rows[i].predictions_json = "null";
    }
    an_metric_info mi = {
        .uid = BENCH_UID,
        .name = "bench metric " BENCH_UID,
        .description = "anomalyd throughput benchmark",
        .resource = "bench-host",
        .location = NULL,
        .datasource = "custom",
        .spec_json = "{\"metric\":\"bench metric " BENCH_UID "\",\"resource\":"
                     "\"bench-host\",\"uid\":\"" BENCH_UID "\",\"unit\":\"Count\"}",
    };
    char err[256];
    json_t *msg;
    if (an_msg_inference(&mi, rows, n, &msg, err, sizeof err))
        die("message", err);
    body b = {.n = n};
    if (an_body_encode(msg, enc, &b.p, &b.len, err, sizeof err))
        die("body", err);
    json_decref(msg);
    free(rows);
    if (g_nbodies == sizeof g_bodies / sizeof g_bodies[0]) {
        free(g_bodies[0].p);
        memmove(g_bodies, g_bodies + 1, (g_nbodies - 1) * sizeof *g_bodies);
        g_nbodies--;
    }
    g_bodies[g_nbodies] = b;
    return &g_bodies[g_nbodies++];
}

/* First and last rowid of a batch text: the number after the first and
 * after the last "iRv2", (no JSON decode). */
static bool pick_rowids(const char *s, size_t len, int64_t *first, int64_t *last)
{
    static const char sig[] = "\"iRv2\",";
    const size_t sl = sizeof sig - 1;
    const char *a = memmem(s, len, sig, sl);
    if (!a)
        return false;
    const char *b = NULL;
    for (const char *p = s + len - sl; p >= a; p--)
        if (*p == '"' && !memcmp(p, sig, sl)) {
            b = p;
            break;
        }
    *first = strtoll(a + sl, NULL, 10);
    *last = strtoll(b + sl, NULL, 10);
    return *first > 0 && *last >= *first;
}


#endif
