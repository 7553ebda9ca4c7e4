/*
 * bench_load.c: data side of ops/bench.sh (the throughput benchmark).
 *
 * Built by ops/bench.sh against a Release libanomaly.a. Servers from
 * ANOMALYD_REDIS_URL / ANOMALYD_PG_DSN (ops/stack.sh env). Every metric uid
 * is PREFIX + 5-digit index; the data of metric index i is the same under
 * every prefix (value and raw score cycled from NAB input file i % 4 at an
 * offset depending on i; timestamps every 5 minutes), so the consumers
 * compared by the benchmark see identical workloads.
 *
 *   bench_load setup --prefix P --metrics M --prewarm W --rows R
 *                    [--sparse] [--params-prefix PP] [--write-params FILE]
 *       creates M ACTIVE metrics (parameters with a metricSpec) with rows
 *       1..R each, in one transaction, with COPY. Rows 1..W are already
 *       processed: scored in memory by the likelihood helper (catch-up
 *       batches of up to 1440 rows), so the metric's model_params hold
 *       {"anomalyLikelihoodParams": <state>}, scored_rowid = W, and (with
 *       --params-prefix) the params hash PP<uid> caches the state with
 *       watermark W, as the service would have left them. W = 0: fresh
 *       metrics, model_params "{}". --sparse: rows 1..W are not inserted
 *       (the RSS run: many metrics, state present, little table).
 *       --write-params: the state JSON of the first metric goes to FILE (a
 *       realistic params text for bench_floor / bench_original).
 *
 *   bench_load produce --stream S --prefix P --metrics M --from-row R0
 *                      --rounds K [--batch B] [--order rr|seq] [--rate X]
 *       XADDs K entries per metric (fields model, batch = [["iRv2", rowid,
 *       0, raw, null, null], ...] of B rows, real raw scores), round-robin
 *       over the metrics (rr, the default) or K consecutive entries per
 *       metric (seq). Rate 0 (default): as fast as possible (pipelined);
 *       X > 0: paced at X entries/s on an absolute schedule, entries due in
 *       the same tick sent in one pipeline.
 *
 *   bench_load report --stream OUT [--expect N] [--timeout S] [--start-ms T]
 *                     [--skip K]
 *       waits until OUT holds N entries (or S seconds passed), then prints
 *       one line of key=value: entries, rows (from the `rows` fields),
 *       first/last output id ms, span_ms = last - T (T: Redis clock ms when
 *       the consumer was started; default the first output's ms), rate =
 *       rows/s over span, and the latency output id ms - `source` id ms:
 *       p50/p90/p99/max (both Redis server clock, 1 ms resolution).
 *       --skip K: the first K output entries (a warm-up; N counts them)
 *       are left out of every figure.
 *
 *   bench_load now                  Redis TIME in ms.
 *   bench_load commitlat --uid U [--n 200]
 *       N x (BEGIN; UPDATE one metric row; COMMIT), timing each COMMIT's
 *       round trip: p50/p90/max ms (the flush the group commit amortizes).
 *   bench_load compare --a PA --b PB [--params-a PPA --params-b PPB]
 *       metric_data scores/display/predictions, metric model_params /
 *       scored_rowid / status and the params hashes (PPA<uid>, PPB<uid>)
 *       of the metrics under PA vs PB (same index): "identical=yes|no" and
 *       counts.
 *   bench_load clean --prefix P     deletes metrics uid P* (rows cascade)
 *                                   and Redis keys P*.
 *   bench_load hotcheck [--metrics 200 --groups 200 --group 64 --rounds 3]
 *       the fillfactor / HOT trade-off on private tables bench_hot_* (same
 *       columns as metric_data, created and dropped here; the shared table
 *       is not touched): for fillfactor 100 and 50, with the schema's
 *       indexes and without the two that cover updated columns
 *       (anomaly_score_idx, metric_data_processed_idx): rows/s of the group
 *       write's UPDATE ... FROM unnest, live pattern (64 metrics x 1 row
 *       per transaction) and catch-up pattern (1400 rows of one metric per
 *       transaction), variants interleaved, median of --rounds, and the
 *       share of HOT updates.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "an_codec.h"
#include "an_csv.h"
#include "an_helper.h"
#include "an_likelihood.h"
#include "an_streams.h"

#define BASE_EPOCH 1388534400.0 /* 2014-01-01 00:00:00 UTC */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* ---------------------------------------------------------------- args */

typedef struct args {
    int argc;
    char **argv;
} args;

static const char *opt(const args *a, const char *name, const char *def)
{
    for (int i = 0; i < a->argc; i++)
        if (!strcmp(a->argv[i], name)) {
            if (i + 1 >= a->argc || !strncmp(a->argv[i + 1], "--", 2))
                return "1"; /* flag */
            return a->argv[i + 1];
        }
    return def;
}

static long long opt_ll(const args *a, const char *name, long long def)
{
    const char *v = opt(a, name, NULL);
    if (!v)
        return def;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end)
        die("%s: '%s' is not an integer", name, v);
    return x;
}

static const char *need(const args *a, const char *name)
{
    const char *v = opt(a, name, NULL);
    if (!v)
        die("missing %s", name);
    return v;
}

/* ---------------------------------------------------------------- data */

static const char *const FILES[4] = {
    "numenta_art_daily_jumpsup.inputs.csv",
    "numenta_art_flatline.inputs.csv",
    "numenta_ec2_cpu_utilization_825cc2.inputs.csv",
    "numenta_nyc_taxi.inputs.csv",
};

static an_csv *g_csv[4];

static void data_load(const char *dir)
{
    for (int f = 0; f < 4; f++) {
        char path[1024], err[512];
        snprintf(path, sizeof path, "%s/%s", dir, FILES[f]);
        if (an_csv_load(path, &g_csv[f], err, sizeof err))
            die("%s", err);
        if (an_csv_rows(g_csv[f]) < 100)
            die("%s: too few rows", path);
    }
}

/* value and raw score of row `rowid` (1-based) of metric index i. */
static void row_data(long i, int64_t rowid, double *value, double *raw)
{
    const an_csv *c = g_csv[i % 4];
    size_t n = an_csv_rows(c);
    size_t off = ((size_t)i * 131u) % n;
    size_t k = (off + (size_t)(rowid - 1)) % n;
    *value = an_csv_values(c)[k];
    *raw = an_csv_raws(c)[k];
}

static double row_ts(int64_t rowid) { return BASE_EPOCH + (double)(rowid - 1) * 300.0; }

static void uid_of(char *buf, size_t len, const char *prefix, long i)
{
    int n = snprintf(buf, len, "%s%05ld", prefix, i);
    if (n < 0 || (size_t)n >= len || n > AN_UID_MAX)
        die("uid %s%05ld is longer than %d characters", prefix, i, AN_UID_MAX);
}

/* ---------------------------------------------------------------- conns */

static PGconn *pg_connect(void)
{
    const char *dsn = getenv("ANOMALYD_PG_DSN");
    PGconn *c = PQconnectdb(dsn ? dsn : "dbname=anomalyd");
    if (PQstatus(c) != CONNECTION_OK)
        die("postgres: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SET TimeZone = 'UTC'; SET application_name = 'bench_load'; "
                               "SET client_min_messages = warning");
    PQclear(r);
    return c;
}

static void pg_ok(PGconn *c, PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_COPY_IN) {
        fprintf(stderr, "bench_load: %s: %s", what, PQerrorMessage(c));
        PQclear(r);
        exit(1);
    }
}

static void pg_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    pg_ok(c, r, sql);
    PQclear(r);
}

static redisContext *redis_connect(void)
{
    const char *url = getenv("ANOMALYD_REDIS_URL");
    an_redis *r;
    char err[256];
    if (an_redis_connect(url ? url : "redis://127.0.0.1:6379/0", NULL, &r, err, sizeof err))
        die("redis: %s", err);
    /* The an_redis stays allocated for the process lifetime (tiny). */
    redisContext *ctx = an_redis_ctx(r);
    if (!ctx)
        die("redis: no context");
    struct timeval tv = {60, 0};
    redisSetTimeout(ctx, tv);
    return ctx;
}

static redisReply *rcmd(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *rep = redisCommandArgv(c, argc, argv, lens);
    if (!rep)
        die("redis: %s", c->errstr);
    if (rep->type == REDIS_REPLY_ERROR)
        die("redis: %s: %s", argv[0], rep->str);
    return rep;
}

static void rappend(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK)
        die("redis: %s", c->errstr);
}

static redisReply *rget(redisContext *c)
{
    void *rep;
    if (redisGetReply(c, &rep) != REDIS_OK)
        die("redis: %s", c->errstr);
    redisReply *r = rep;
    if (r->type == REDIS_REPLY_ERROR)
        die("redis: %s", r->str);
    return r;
}

static int64_t redis_now_ms(redisContext *c)
{
    const char *argv[] = {"TIME"};
    redisReply *r = rcmd(c, 1, argv, NULL);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        die("TIME: unexpected reply");
    int64_t ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
                 strtoll(r->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(r);
    return ms;
}

/* ---------------------------------------------------------------- text buffer */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void b_reserve(buf *b, size_t more)
{
    if (b->n + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        die("out of memory");
    b->p = p;
    b->cap = cap;
}

static void b_add(buf *b, const char *s, size_t n)
{
    b_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void b_adds(buf *b, const char *s) { b_add(b, s, strlen(s)); }

static void b_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void b_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("format");
    if ((size_t)n < sizeof tmp) {
        b_add(b, tmp, (size_t)n);
        return;
    }
    b_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

/* COPY text format: escape backslash, tab, newline, CR. */
static void b_copy_text(buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\': b_add(b, "\\\\", 2); break;
        case '\t': b_add(b, "\\t", 2); break;
        case '\n': b_add(b, "\\n", 2); break;
        case '\r': b_add(b, "\\r", 2); break;
        default: b_add(b, s, 1);
        }
    }
}

static void b_double(buf *b, double d)
{
    char t[40];
    snprintf(t, sizeof t, "%.17g", d);
    b_adds(b, t);
}

static void b_ts(buf *b, double ts)
{
    time_t t = (time_t)ts;
    struct tm tm;
    gmtime_r(&t, &tm);
    char s[40];
    strftime(s, sizeof s, "%Y-%m-%d %H:%M:%S", &tm);
    b_adds(b, s);
}

/* ---------------------------------------------------------------- setup */

typedef struct memsrc {
    long i;
    int64_t done; /* rows 1..done are processed */
} memsrc;

static int ms_count(void *ctx, int64_t *count, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    *count = ((memsrc *)ctx)->done;
    return 0;
}

static int ms_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                   size_t errlen)
{
    (void)err;
    (void)errlen;
    const memsrc *m = ctx;
    size_t k = (int64_t)n < m->done ? n : (size_t)m->done;
    int64_t from = m->done - (int64_t)k + 1;
    for (size_t j = 0; j < k; j++) {
        out[j].rowid = from + (int64_t)j;
        row_data(m->i, out[j].rowid, &out[j].value, &out[j].raw);
    }
    *got = k;
    return 0;
}

static void copy_flush(PGconn *c, buf *b, bool force)
{
    if (!force && b->n < (1u << 20))
        return;
    if (b->n && PQputCopyData(c, b->p, (int)b->n) != 1)
        die("COPY: %s", PQerrorMessage(c));
    b->n = 0;
}

static void copy_end(PGconn *c, buf *b, const char *what)
{
    copy_flush(c, b, true);
    if (PQputCopyEnd(c, NULL) != 1)
        die("COPY end: %s", PQerrorMessage(c));
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            die("%s: %s", what, PQerrorMessage(c));
        PQclear(r);
    }
}

/* What setup creates. */
typedef struct setup_plan {
    const char *prefix;
    long m;            /* metrics */
    int64_t w, nrows;  /* rows processed (prewarmed), rows per metric */
    bool sparse;       /* insert only the unprocessed rows */
    const char *pp;    /* the params cache prefix, or NULL */
} setup_plan;

/* Scores rows 1..w of metric i with a fresh helper state in batches of up
 * to maxb (rows: room for maxb), the scores into score[0..w). Returns the
 * final state as JSON text (malloc'd; the caller frees). */
static char *prewarm_metric(an_helper *h, long i, int64_t w, an_row *rows, size_t maxb,
                            double *score)
{
    an_helper_state st;
    memset(&st, 0, sizeof st);
    memsrc ms = {.i = i, .done = 0};
    an_sample_source src = {.ctx = &ms, .processed_count = ms_count, .tail = ms_tail};
    for (int64_t next = 1; next <= w;) {
        size_t k = (size_t)(w - next + 1) < maxb ? (size_t)(w - next + 1) : maxb;
        for (size_t j = 0; j < k; j++) {
            rows[j].rowid = next + (int64_t)j;
            row_data(i, rows[j].rowid, &rows[j].value, &rows[j].raw);
            rows[j].anomaly_score = 0;
            rows[j].scored = false;
        }
        ms.done = next - 1;
        char err[256];
        if (an_helper_update(h, &src, &st, rows, k, err, sizeof err))
            die("helper (metric %ld): %s", i, err);
        for (size_t j = 0; j < k; j++)
            score[next - 1 + (int64_t)j] = rows[j].anomaly_score;
        next += (int64_t)k;
    }
    json_t *sj = an_helper_state_to_json(&st);
    char *text = sj ? an_json_dumps(sj, NULL) : NULL;
    json_decref(sj);
    if (!text)
        die("state json");
    return text;
}

/* One COPY metric line for uid (state_text: its helper state, or NULL). */
static void copy_metric_line(buf *b, const setup_plan *p, const char *uid,
                             const char *state_text)
{
    b_copy_text(b, uid);
    b_adds(b, "\tcustom\tbench metric ");
    b_copy_text(b, uid);
    b_adds(b, "\tanomalyd throughput benchmark\tbench-host\t\\N\t");
    char params[512];
    snprintf(params, sizeof params,
             "{\"datasource\":\"custom\",\"metricSpec\":{\"metric\":\"bench metric %s\","
             "\"resource\":\"bench-host\",\"uid\":\"%s\",\"unit\":\"Count\"},"
             "\"modelParams\":{\"min\":0,\"max\":100}}",
             uid, uid);
    b_copy_text(b, params);
    b_adds(b, "\t1\t");
    if (state_text) {
        b_adds(b, "{\"anomalyLikelihoodParams\":");
        b_copy_text(b, state_text);
        b_adds(b, "}");
    } else {
        b_adds(b, "{}");
    }
    b_printf(b, "\t%" PRId64 "\t%" PRId64 "\n", p->nrows, p->w);
}

/* COPY metric: the m metrics, each prewarmed over w rows when w > 0: its
 * state into state_text[i] (else NULL), its scores into scores[i]. */
static void copy_metrics(PGconn *pg, buf *b, const setup_plan *p, char **state_text,
                         double **scores)
{
    an_helper_config hcfg = an_helper_config_default();
    an_helper *h = an_helper_new(&hcfg, NULL, NULL);
    if (!h)
        die("helper");
    const size_t maxb = 1440;
    an_row *rows = xmalloc(maxb * sizeof *rows);
    double *score = xmalloc((size_t)(p->w ? p->w : 1) * sizeof *score);
    PGresult *r = PQexec(pg, "COPY metric (uid, datasource, name, description, server, "
                             "location, parameters, status, model_params, last_rowid, "
                             "scored_rowid) FROM STDIN");
    pg_ok(pg, r, "COPY metric");
    PQclear(r);
    char uid[64];
    for (long i = 0; i < p->m; i++) {
        uid_of(uid, sizeof uid, p->prefix, i);
        state_text[i] = NULL;
        if (p->w > 0)
            state_text[i] = prewarm_metric(h, i, p->w, rows, maxb, score);
        copy_metric_line(b, p, uid, state_text[i]);
        copy_flush(pg, b, false);

        if (p->w > 0) {
            scores[i] = xmalloc((size_t)p->w * sizeof **scores);
            memcpy(scores[i], score, (size_t)p->w * sizeof *score);
        }
    }
    copy_end(pg, b, "COPY metric");
}

/* COPY metric_data: every metric's rows, the first w scored with
 * scores[i]. Returns the rows inserted. */
static size_t copy_metric_data(PGconn *pg, buf *b, const setup_plan *p, double **scores)
{
    PGresult *r = PQexec(pg, "COPY metric_data (uid, rowid, timestamp, metric_value, "
                             "raw_anomaly_score, anomaly_score, display_value, "
                             "multi_step_best_predictions) FROM STDIN");
    pg_ok(pg, r, "COPY metric_data");
    PQclear(r);
    size_t nins = 0;
    char uid[64];
    for (long i = 0; i < p->m; i++) {
        uid_of(uid, sizeof uid, p->prefix, i);
        for (int64_t rowid = p->sparse ? p->w + 1 : 1; rowid <= p->nrows; rowid++) {
            double v, raw;
            row_data(i, rowid, &v, &raw);
            b_copy_text(b, uid);
            b_printf(b, "\t%" PRId64 "\t", rowid);
            b_ts(b, row_ts(rowid));
            b_adds(b, "\t");
            b_double(b, v);
            if (rowid <= p->w) {
                double s = scores[i][rowid - 1];
                b_adds(b, "\t");
                b_double(b, raw);
                b_adds(b, "\t");
                b_double(b, s);
                b_printf(b, "\t%" PRId64 "\tnull\n", an_display_value(s, true));
            } else {
                b_adds(b, "\t\\N\t\\N\t\\N\t\\N\n");
            }
            nins++;
            copy_flush(pg, b, false);
        }
    }
    copy_end(pg, b, "COPY metric_data");
    return nins;
}

/* The params cache, as the service leaves it after scoring row w. */
static void fill_params_cache(redisContext *rc, const setup_plan *p, char **state_text)
{
    char key[256], wm[32], upd[32], uid[64];
    snprintf(upd, sizeof upd, "%" PRId64, redis_now_ms(rc));
    snprintf(wm, sizeof wm, "%" PRId64, p->w);
    long pending = 0;
    for (long i = 0; i < p->m; i++) {
        uid_of(uid, sizeof uid, p->prefix, i);
        snprintf(key, sizeof key, "%s%s", p->pp, uid);
        const char *argv[] = {"HSET", key, "params", state_text[i], "watermark", wm,
                              "updated", upd};
        rappend(rc, 8, argv, NULL);
        if (++pending == 500 || i == p->m - 1) {
            while (pending--)
                freeReplyObject(rget(rc));
            pending = 0;
        }
    }
}

static int cmd_setup(const args *a)
{
    setup_plan p = {.prefix = need(a, "--prefix"),
                    .m = opt_ll(a, "--metrics", 1000),
                    .w = opt_ll(a, "--prewarm", 400),
                    .nrows = opt_ll(a, "--rows", 0),
                    .sparse = opt(a, "--sparse", NULL) != NULL,
                    .pp = opt(a, "--params-prefix", NULL)};
    const char *write_params = opt(a, "--write-params", NULL);
    if (p.m < 1 || p.w < 0 || p.nrows < p.w || p.nrows < 1)
        die("setup: need --metrics >= 1, 0 <= --prewarm <= --rows, --rows >= 1");
    double t0 = mono();

    char **state_text = xmalloc((size_t)p.m * sizeof *state_text);
    double **scores = calloc((size_t)p.m, sizeof *scores);
    if (!scores)
        die("out of memory");

    PGconn *pg = pg_connect();
    redisContext *rc = (p.w > 0 && p.pp) ? redis_connect() : NULL;
    pg_exec(pg, "BEGIN");
    /* metrics first (metric_data references them) */
    buf b = {0};
    copy_metrics(pg, &b, &p, state_text, scores);
    size_t nins = copy_metric_data(pg, &b, &p, scores);
    pg_exec(pg, "COMMIT");

    if (rc)
        fill_params_cache(rc, &p, state_text);
    if (write_params && p.m > 0 && state_text[0]) {
        FILE *f = fopen(write_params, "w");
        if (!f || fputs(state_text[0], f) < 0 || fclose(f))
            die("%s: %s", write_params, strerror(errno));
    }
    printf("setup %s: %ld metrics, %zu rows inserted (%" PRId64 " per metric, %" PRId64
           " processed%s) in %.1f s\n",
           p.prefix, p.m, nins, p.nrows, p.w, p.sparse ? ", sparse" : "", mono() - t0);
    PQfinish(pg);
    return 0;
}

/* ---------------------------------------------------------------- produce */

static void batch_json(buf *b, long i, int64_t first, long n)
{
    b->n = 0;
    b_adds(b, "[");
    for (long k = 0; k < n; k++) {
        double v, raw;
        row_data(i, first + k, &v, &raw);
        char d[40];
        an_codec_fmt_double(d, sizeof d, raw);
        b_printf(b, "%s[\"iRv2\",%" PRId64 ",0,%s,null,null]", k ? "," : "", first + k, d);
    }
    b_adds(b, "]");
}

static int cmd_produce(const args *a)
{
    const char *stream = need(a, "--stream");
    const char *prefix = need(a, "--prefix");
    long m = opt_ll(a, "--metrics", 1000);
    int64_t from = opt_ll(a, "--from-row", 1);
    long rounds = opt_ll(a, "--rounds", 1);
    long batch = opt_ll(a, "--batch", 1);
    const char *order = opt(a, "--order", "rr");
    double rate = (double)opt_ll(a, "--rate", 0);
    bool seq = !strcmp(order, "seq");
    if (m < 1 || rounds < 1 || batch < 1 || from < 1)
        die("produce: bad arguments");
    redisContext *rc = redis_connect();
    const long total = m * rounds;
    buf b = {0};
    char uid[64];
    double t0 = mono();
    long sent = 0;
    while (sent < total) {
        long upto = total;
        if (rate > 0) {
            double now = mono() - t0;
            upto = (long)floor(now * rate) + 1;
            if (upto > total)
                upto = total;
            if (upto <= sent) {
                double due = t0 + (double)sent / rate;
                struct timespec ts;
                ts.tv_sec = (time_t)due;
                ts.tv_nsec = (long)((due - (double)ts.tv_sec) * 1e9);
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
                continue;
            }
        } else if (upto - sent > 256) {
            upto = sent + 256;
        }
        long n = upto - sent;
        for (long k = sent; k < upto; k++) {
            long i = seq ? k / rounds : k % m;
            long j = seq ? k % rounds : k / m;
            uid_of(uid, sizeof uid, prefix, i);
            batch_json(&b, i, from + (int64_t)j * batch, batch);
            const char *argv[] = {"XADD", stream, "*", "model", uid, "batch", b.p};
            size_t lens[] = {4, strlen(stream), 1, 5, strlen(uid), 5, b.n};
            rappend(rc, 7, argv, lens);
        }
        for (long k = 0; k < n; k++)
            freeReplyObject(rget(rc));
        sent = upto;
    }
    double el = mono() - t0;
    printf("produced %ld entries (%ld rows) to %s in %.3f s (%.0f entries/s)\n", total,
           total * batch, stream, el, el > 0 ? (double)total / el : 0.0);
    free(b.p);
    return 0;
}

/* ---------------------------------------------------------------- report */

static int64_t id_ms(const char *id) { return strtoll(id, NULL, 10); }

static int cmp_ll(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int64_t pct(const int64_t *v, size_t n, double p)
{
    if (!n)
        return -1;
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

static int64_t xlen(redisContext *c, const char *stream)
{
    const char *argv[] = {"XLEN", stream};
    redisReply *r = rcmd(c, 2, argv, NULL);
    int64_t n = r->integer;
    freeReplyObject(r);
    return n;
}

static int cmd_report(const args *a)
{
    const char *stream = need(a, "--stream");
    long long expect = opt_ll(a, "--expect", 0);
    long long timeout = opt_ll(a, "--timeout", 600);
    long long start_ms = opt_ll(a, "--start-ms", 0);
    long long skip = opt_ll(a, "--skip", 0);
    redisContext *c = redis_connect();
    double t0 = mono();
    while (expect > 0 && xlen(c, stream) < expect && mono() - t0 < (double)timeout)
        usleep(50000);

    size_t cap = 1024, n = 0;
    int64_t *lat = xmalloc(cap * sizeof *lat);
    int64_t rows = 0, first = -1, last = -1;
    char after[AN_ID_MAX] = "-";
    for (;;) {
        const char *argv[] = {"XRANGE", stream, after, "+", "COUNT", "10000"};
        redisReply *r = rcmd(c, 6, argv, NULL);
        if (r->type != REDIS_REPLY_ARRAY)
            die("XRANGE: unexpected reply");
        if (r->elements == 0) {
            freeReplyObject(r);
            break;
        }
        for (size_t k = 0; k < r->elements; k++) {
            redisReply *e = r->element[k];
            const char *id = e->element[0]->str;
            redisReply *f = e->element[1];
            snprintf(after, sizeof after, "(%s", id);
            if (skip > 0) {
                skip--;
                continue;
            }
            int64_t src = -1;
            for (size_t q = 0; q + 1 < f->elements; q += 2) {
                const char *name = f->element[q]->str;
                const char *val = f->element[q + 1]->str;
                if (!strcmp(name, "source"))
                    src = id_ms(val);
                else if (!strcmp(name, "rows")) {
                    char *dash;
                    long long lo = strtoll(val, &dash, 10);
                    long long hi = *dash == '-' ? strtoll(dash + 1, NULL, 10) : lo;
                    rows += hi - lo + 1;
                }
            }
            int64_t ms = id_ms(id);
            if (first < 0)
                first = ms;
            last = ms;
            if (src >= 0) {
                if (n == cap) {
                    cap *= 2;
                    lat = realloc(lat, cap * sizeof *lat);
                    if (!lat)
                        die("out of memory");
                }
                lat[n++] = ms - src;
            }
        }
        freeReplyObject(r);
    }
    qsort(lat, n, sizeof *lat, cmp_ll);
    int64_t base = start_ms > 0 ? start_ms : first;
    int64_t span = last >= 0 ? last - base : 0;
    double rate = span > 0 ? (double)rows * 1000.0 / (double)span : 0.0;
    printf("entries=%zu rows=%" PRId64 " first_ms=%" PRId64 " last_ms=%" PRId64
           " span_ms=%" PRId64 " rate=%.0f p50_ms=%" PRId64 " p90_ms=%" PRId64
           " p99_ms=%" PRId64 " max_ms=%" PRId64 "\n",
           n, rows, first, last, span, rate, pct(lat, n, 50), pct(lat, n, 90), pct(lat, n, 99),
           n ? lat[n - 1] : -1);
    free(lat);
    return 0;
}

/* ---------------------------------------------------------------- commitlat */

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static int cmd_commitlat(const args *a)
{
    const char *uid = need(a, "--uid");
    long n = opt_ll(a, "--n", 200);
    if (n < 1)
        die("--n");
    PGconn *c = pg_connect();
    const char *pv[1] = {uid};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO metric (uid, datasource, name, status) "
                               "VALUES ($1, 'custom', 'commit probe', 0) ON CONFLICT DO NOTHING",
                               1, NULL, pv, NULL, NULL, 0);
    pg_ok(c, r, "probe metric");
    PQclear(r);
    r = PQprepare(c, "probe", "UPDATE metric SET message = $2 WHERE uid = $1", 2, NULL);
    pg_ok(c, r, "prepare");
    PQclear(r);
    double *t = xmalloc((size_t)n * sizeof *t);
    for (long i = 0; i < n; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "probe %ld", i);
        const char *p[2] = {uid, msg};
        pg_exec(c, "BEGIN");
        r = PQexecPrepared(c, "probe", 2, p, NULL, NULL, 0);
        pg_ok(c, r, "probe update");
        PQclear(r);
        double t0 = mono();
        pg_exec(c, "COMMIT");
        t[i] = (mono() - t0) * 1000.0;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    printf("commit_p50_ms=%.3f commit_p90_ms=%.3f commit_max_ms=%.3f n=%ld\n",
           t[(n - 1) / 2], t[(size_t)ceil(0.9 * (double)n) - 1], t[n - 1], n);
    free(t);
    PQfinish(c);
    return 0;
}

/* ---------------------------------------------------------------- compare */

static int64_t q_int(PGconn *c, const char *sql, int np, const char *const *p, int col)
{
    PGresult *r = PQexecParams(c, sql, np, NULL, p, NULL, NULL, 0);
    pg_ok(c, r, sql);
    int64_t v = strtoll(PQgetvalue(r, 0, col), NULL, 10);
    PQclear(r);
    return v;
}

static int cmd_compare(const args *a)
{
    const char *pa = need(a, "--a");
    const char *pb = need(a, "--b");
    const char *ppa = opt(a, "--params-a", NULL);
    const char *ppb = opt(a, "--params-b", NULL);
    PGconn *c = pg_connect();
    const char *p[2] = {pa, pb};
    static const char rows_sql[] =
        "WITH a AS (SELECT substr(uid, length($1) + 1) AS k, rowid, raw_anomaly_score AS r, "
        "anomaly_score AS s, display_value AS d, multi_step_best_predictions AS p "
        "FROM metric_data WHERE starts_with(uid, $1)), "
        "b AS (SELECT substr(uid, length($2) + 1) AS k, rowid, raw_anomaly_score AS r, "
        "anomaly_score AS s, display_value AS d, multi_step_best_predictions AS p "
        "FROM metric_data WHERE starts_with(uid, $2)) "
        "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), "
        "(SELECT count(*) FROM a JOIN b USING (k, rowid) "
        " WHERE (a.r, a.s, a.d, a.p) IS NOT DISTINCT FROM (b.r, b.s, b.d, b.p)), "
        "(SELECT count(*) FROM a WHERE s IS NOT NULL), "
        "(SELECT count(*) FROM a WHERE s > 0.5)";
    PGresult *r = PQexecParams(c, rows_sql, 2, NULL, p, NULL, NULL, 0);
    pg_ok(c, r, "compare rows");
    int64_t na = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    int64_t nb = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    int64_t same = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    int64_t scored = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    int64_t high = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
    PQclear(r);
    static const char met_sql[] =
        "WITH a AS (SELECT substr(uid, length($1) + 1) AS k, model_params, scored_rowid, "
        "status FROM metric WHERE starts_with(uid, $1)), "
        "b AS (SELECT substr(uid, length($2) + 1) AS k, model_params, scored_rowid, status "
        "FROM metric WHERE starts_with(uid, $2)) "
        "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), "
        "(SELECT count(*) FROM a JOIN b USING (k) WHERE (a.model_params, a.scored_rowid, "
        " a.status) IS NOT DISTINCT FROM (b.model_params, b.scored_rowid, b.status))";
    int64_t ma = q_int(c, met_sql, 2, p, 0), mb = q_int(c, met_sql, 2, p, 1),
            msame = q_int(c, met_sql, 2, p, 2);

    int64_t hsame = 0, hn = 0;
    if (ppa && ppb) {
        redisContext *rc = redis_connect();
        r = PQexecParams(c, "SELECT substr(uid, length($1) + 1) FROM metric "
                            "WHERE starts_with(uid, $1) ORDER BY 1",
                         1, NULL, p, NULL, NULL, 0);
        pg_ok(c, r, "uids");
        for (int i = 0; i < PQntuples(r); i++) {
            char ka[256], kb[256];
            snprintf(ka, sizeof ka, "%s%s%s", ppa, pa, PQgetvalue(r, i, 0));
            snprintf(kb, sizeof kb, "%s%s%s", ppb, pb, PQgetvalue(r, i, 0));
            const char *a1[] = {"HMGET", ka, "params", "watermark"};
            const char *a2[] = {"HMGET", kb, "params", "watermark"};
            redisReply *x = rcmd(rc, 4, a1, NULL), *y = rcmd(rc, 4, a2, NULL);
            bool eq = true;
            for (int k = 0; k < 2; k++) {
                redisReply *u = x->element[k], *v = y->element[k];
                if (u->type != v->type ||
                    (u->type == REDIS_REPLY_STRING && (u->len != v->len ||
                                                       memcmp(u->str, v->str, u->len))))
                    eq = false;
            }
            hsame += eq;
            hn++;
            freeReplyObject(x);
            freeReplyObject(y);
        }
        PQclear(r);
    }
    bool ok = na > 0 && na == nb && same == na && ma == mb && msame == ma && hsame == hn;
    printf("identical=%s rows=%" PRId64 "/%" PRId64 " rows_equal=%" PRId64
           " rows_scored=%" PRId64 " rows_score_gt_0.5=%" PRId64 " metrics=%" PRId64
           "/%" PRId64 " metrics_equal=%" PRId64 " params_hashes_equal=%" PRId64 "/%" PRId64
           "\n",
           ok ? "yes" : "no", na, nb, same, scored, high, ma, mb, msame, hsame, hn);
    PQfinish(c);
    return ok ? 0 : 3;
}

/* ---------------------------------------------------------------- clean */

static int cmd_clean(const args *a)
{
    const char *prefix = need(a, "--prefix");
    if (strlen(prefix) < 3)
        die("clean: prefix too short");
    PGconn *c = pg_connect();
    const char *p[1] = {prefix};
    /* rows first, by the primary key range (then the cascade has nothing to do) */
    char hi[128];
    snprintf(hi, sizeof hi, "%s", prefix);
    hi[strlen(hi) - 1]++;
    const char *pr[2] = {prefix, hi};
    PGresult *r = PQexecParams(c, "DELETE FROM metric_data WHERE uid >= $1 AND uid < $2 "
                                  "AND starts_with(uid, $1)",
                               2, NULL, pr, NULL, NULL, 0);
    pg_ok(c, r, "delete rows");
    const char *nrows = PQcmdTuples(r);
    long long drows = strtoll(nrows, NULL, 10);
    PQclear(r);
    r = PQexecParams(c, "DELETE FROM scored_entry WHERE starts_with(uid, $1)", 1, NULL, p,
                     NULL, NULL, 0);
    pg_ok(c, r, "delete scored entries");
    PQclear(r);
    r = PQexecParams(c, "DELETE FROM metric WHERE starts_with(uid, $1)", 1, NULL, p, NULL,
                     NULL, 0);
    pg_ok(c, r, "delete metrics");
    long long dm = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    PQfinish(c);

    redisContext *rc = redis_connect();
    char pat[256];
    snprintf(pat, sizeof pat, "%s*", prefix);
    char cursor[64] = "0";
    long long keys = 0;
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", pat, "COUNT", "1000"};
        redisReply *s = rcmd(rc, 6, argv, NULL);
        snprintf(cursor, sizeof cursor, "%s", s->element[0]->str);
        redisReply *ks = s->element[1];
        if (ks->elements) {
            const char **argv2 = xmalloc((ks->elements + 1) * sizeof *argv2);
            argv2[0] = "UNLINK";
            for (size_t i = 0; i < ks->elements; i++)
                argv2[i + 1] = ks->element[i]->str;
            freeReplyObject(rcmd(rc, (int)ks->elements + 1, argv2, NULL));
            keys += (long long)ks->elements;
            free(argv2);
        }
        freeReplyObject(s);
    } while (strcmp(cursor, "0"));
    printf("clean %s: %lld metrics, %lld rows, %lld redis keys\n", prefix, dm, drows, keys);
    return 0;
}

/* ---------------------------------------------------------------- hotcheck */

/* One statement as the group write's row part (an_repo's S_G_WRITE 'd'). */
static const char HOT_UPDATE[] =
    "UPDATE %s AS d SET raw_anomaly_score = u.raw, anomaly_score = u.score, "
    "display_value = u.disp, multi_step_best_predictions = u.pred "
    "FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::int[], $6::text[]) "
    "AS u(uid, rowid, raw, score, disp, pred) WHERE d.uid = u.uid AND d.rowid = u.rowid";

/* Runs BEGIN; update of rows (uid index u[i], rowid r[i]); COMMIT. */
static void hot_tx(PGconn *c, const char *stmt, const char *prefix, const long *u,
                   const int64_t *r, size_t n)
{
    buf a[6] = {{0}};
    for (int k = 0; k < 6; k++)
        b_adds(&a[k], "{");
    for (size_t i = 0; i < n; i++) {
        const char *sep = i ? "," : "";
        b_printf(&a[0], "%s\"%s%05ld\"", sep, prefix, u[i]);
        b_printf(&a[1], "%s%" PRId64, sep, r[i]);
        b_printf(&a[2], "%s0.5", sep);
        b_printf(&a[3], "%s0.%06" PRId64, sep, (r[i] * 7919) % 1000000);
        b_printf(&a[4], "%s%" PRId64, sep, r[i] % 1000);
        b_printf(&a[5], "%snull", sep);
    }
    for (int k = 0; k < 6; k++)
        b_adds(&a[k], "}");
    const char *pv[6] = {a[0].p, a[1].p, a[2].p, a[3].p, a[4].p, "{}"};
    /* text[] of JSON "null" strings: quote them */
    buf pred = {0};
    b_adds(&pred, "{");
    for (size_t i = 0; i < n; i++)
        b_adds(&pred, i ? ",\"null\"" : "\"null\"");
    b_adds(&pred, "}");
    pv[5] = pred.p;
    pg_exec(c, "BEGIN");
    PGresult *res = PQexecPrepared(c, stmt, 6, pv, NULL, NULL, 0);
    pg_ok(c, res, "hot update");
    PQclear(res);
    pg_exec(c, "COMMIT");
    for (int k = 0; k < 6; k++)
        free(a[k].p);
    free(pred.p);
}

static const struct {
    const char *name;
    int ff;
    bool all_idx;
} HOT_V[] = {
    {"schema_ff100", 100, true},
    {"schema_ff50", 50, true},
    {"noscoreidx_ff100", 100, false},
    {"noscoreidx_ff50", 50, false},
};
#define HOT_NV (sizeof HOT_V / sizeof HOT_V[0])

static int cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The sizes of a hotcheck run. */
typedef struct hot_plan {
    long m, groups, g, cm, rounds;
    long per_round; /* live rows per metric per round */
    long cfirst;    /* catch-up rows start after them */
    long rows;      /* rows per metric */
    const char *prefix;
} hot_plan;

/* The private table of variant v (table name t), filled with the plan's
 * rows, and its update statement prepared as "hot_upd_<v>". */
static void hot_create(PGconn *c, const hot_plan *p, size_t v, const char *t)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
             "DROP TABLE IF EXISTS %s; "
             "CREATE TABLE %s (LIKE metric_data INCLUDING DEFAULTS) WITH (fillfactor = %d, "
             "autovacuum_enabled = false); "
             "ALTER TABLE %s ADD PRIMARY KEY (uid, rowid); "
             "CREATE INDEX ON %s (timestamp)",
             t, t, HOT_V[v].ff, t, t);
    pg_exec(c, sql);
    if (HOT_V[v].all_idx) {
        snprintf(sql, sizeof sql,
                 "CREATE INDEX ON %s (anomaly_score); "
                 "CREATE INDEX ON %s (uid, rowid) WHERE raw_anomaly_score IS NOT NULL",
                 t, t);
        pg_exec(c, sql);
    }
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (uid, rowid, timestamp, metric_value) "
             "SELECT '%s' || lpad(i::text, 5, '0'), r, "
             "timestamp '2014-01-01' + r * interval '5 minutes', (i * r) %% 97 "
             "FROM generate_series(0, %ld) i, generate_series(1, %ld) r",
             t, p->prefix, p->m - 1, p->rows);
    pg_exec(c, sql);
    snprintf(sql, sizeof sql, "VACUUM (ANALYZE) %s", t);
    pg_exec(c, sql);
    char name[32];
    snprintf(name, sizeof name, "hot_upd_%zu", v);
    snprintf(sql, sizeof sql, HOT_UPDATE, t);
    PGresult *res = PQprepare(c, name, sql, 6, NULL);
    pg_ok(c, res, "prepare");
    PQclear(res);
}

/* One round of variant v: the live pattern's and the catch-up pattern's
 * rows/s into *live and *catchup (u, r: room for max(g, 1400)). */
static void hot_round(PGconn *c, const hot_plan *p, size_t v, long round, long *u,
                      int64_t *r, double *live, double *catchup)
{
    char name[32];
    snprintf(name, sizeof name, "hot_upd_%zu", v);
    double t0 = mono();
    long next = round * p->per_round * p->m;
    for (long q = 0; q < p->groups; q++) {
        for (long i = 0; i < p->g; i++, next++) {
            u[i] = next % p->m;
            r[i] = next / p->m + 1;
        }
        hot_tx(c, name, p->prefix, u, r, (size_t)p->g);
    }
    *live = (double)(p->groups * p->g) / (mono() - t0);
    t0 = mono();
    for (long i = 0; i < p->cm; i++) {
        for (long q = 0; q < 1400; q++) {
            u[q] = round * p->cm + i;
            r[q] = p->cfirst + q;
        }
        hot_tx(c, name, p->prefix, u, r, 1400);
    }
    *catchup = (double)(p->cm * 1400) / (mono() - t0);
}

/* The HOT share and size of variant v's table t (waiting for the
 * statistics to count want updates), printed with the medians of live and
 * catchup (sorted here); then the table is dropped. */
static void hot_report(PGconn *c, const hot_plan *p, size_t v, const char *t, int64_t want,
                       double *live, double *catchup)
{
    char sql[2048];
    int64_t upd = 0, hot = 0;
    snprintf(sql, sizeof sql,
             "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = '%s'",
             t);
    for (int tries = 0; tries < 40; tries++) {
        PGresult *res = PQexec(c, sql);
        pg_ok(c, res, "stats");
        if (PQntuples(res) == 1) {
            upd = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            hot = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        }
        PQclear(res);
        if (upd >= want)
            break;
        pg_exec(c, "SELECT pg_stat_clear_snapshot()");
        usleep(100000);
    }
    snprintf(sql, sizeof sql, "SELECT pg_relation_size('%s')", t);
    PGresult *res = PQexec(c, sql);
    pg_ok(c, res, "size");
    double mib = (double)strtoll(PQgetvalue(res, 0, 0), NULL, 10) / 1048576.0;
    PQclear(res);
    snprintf(sql, sizeof sql, "DROP TABLE %s", t);
    pg_exec(c, sql);
    qsort(live, (size_t)p->rounds, sizeof live[0], cmp_dbl);
    qsort(catchup, (size_t)p->rounds, sizeof catchup[0], cmp_dbl);
    printf("hot variant=%s fillfactor=%d score_indexes=%s live_rows_s=%.0f "
           "catchup_rows_s=%.0f hot_pct=%.0f heap_mib_after=%.1f rounds=%ld\n",
           HOT_V[v].name, HOT_V[v].ff, HOT_V[v].all_idx ? "yes" : "no",
           live[p->rounds / 2], catchup[p->rounds / 2],
           upd > 0 ? 100.0 * (double)hot / (double)upd : 0.0, mib, p->rounds);
}

/* Updates on private copies of metric_data's schema, per variant of
 * fillfactor and of the two indexes that involve the updated columns
 * (anomaly_score_idx, metric_data_processed_idx): rows/s for the live
 * pattern (groups of G rows, one per metric, one transaction each) and the
 * catch-up pattern (1400 consecutive rows of one metric per transaction),
 * the variants interleaved in each of R rounds (median reported), and the
 * share of HOT updates (pg_stat_user_tables of the private table). */
static int cmd_hotcheck(const args *a)
{
    hot_plan p = {.m = opt_ll(a, "--metrics", 200),
                  .groups = opt_ll(a, "--groups", 200),
                  .g = opt_ll(a, "--group", 64),
                  .cm = opt_ll(a, "--catchup-metrics", 20),
                  .rounds = opt_ll(a, "--rounds", 3),
                  .prefix = "bench:hot:"};
    p.per_round = (p.groups * p.g + p.m - 1) / p.m;
    p.cfirst = p.per_round * p.rounds + 1;
    p.rows = p.cfirst + 1400 - 1;
    if (p.m < p.g || p.cm * p.rounds > p.m || p.rounds < 1 || p.rounds > 9)
        die("hotcheck: need --metrics >= --group and >= --catchup-metrics x --rounds");
    char t[64];
    PGconn *c = pg_connect();
    for (size_t v = 0; v < HOT_NV; v++) {
        snprintf(t, sizeof t, "bench_hot_%s", HOT_V[v].name);
        hot_create(c, &p, v, t);
    }
    double live[HOT_NV][9], catchup[HOT_NV][9];
    long *u = xmalloc((size_t)(p.g > 1400 ? p.g : 1400) * sizeof *u);
    int64_t *r = xmalloc((size_t)(p.g > 1400 ? p.g : 1400) * sizeof *r);
    for (long round = 0; round < p.rounds; round++) {
        for (size_t k = 0; k < HOT_NV; k++) {
            size_t v = (k + (size_t)round) % HOT_NV; /* rotate the order */
            hot_round(c, &p, v, round, u, r, &live[v][round], &catchup[v][round]);
        }
    }
    PQfinish(c); /* flushes this backend's table statistics */

    c = pg_connect();
    const int64_t want = p.rounds * (p.groups * p.g + p.cm * 1400);
    for (size_t v = 0; v < HOT_NV; v++) {
        snprintf(t, sizeof t, "bench_hot_%s", HOT_V[v].name);
        hot_report(c, &p, v, t, want, live[v], catchup[v]);
    }
    PQfinish(c);
    free(u);
    free(r);
    return 0;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_load setup|produce|report|now|commitlat|compare|clean|hotcheck "
                        "[options] (see the top of ops/bench/bench_load.c)\n");
        return 2;
    }
    args a = {argc - 2, argv + 2};
    const char *cmd = argv[1];
    if (!strcmp(cmd, "setup") || !strcmp(cmd, "produce")) {
        data_load(opt(&a, "--data", "tests/data/likelihood/htmengine"));
        return !strcmp(cmd, "setup") ? cmd_setup(&a) : cmd_produce(&a);
    }
    if (!strcmp(cmd, "report"))
        return cmd_report(&a);
    if (!strcmp(cmd, "now")) {
        printf("%" PRId64 "\n", redis_now_ms(redis_connect()));
        return 0;
    }
    if (!strcmp(cmd, "commitlat"))
        return cmd_commitlat(&a);
    if (!strcmp(cmd, "compare"))
        return cmd_compare(&a);
    if (!strcmp(cmd, "clean"))
        return cmd_clean(&a);
    if (!strcmp(cmd, "hotcheck"))
        return cmd_hotcheck(&a);
    die("unknown command %s", cmd);
}
