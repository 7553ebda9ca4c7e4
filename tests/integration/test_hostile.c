/*
 * test_hostile.c: the hostile-producer harness (issue 9). Healthy NAB
 * models are replayed by `anomalyctl replay` while K = 2 anomalyd consumers
 * run and a catalogue of bad entries (every reproduced case of the issue and
 * more: bad JSON, wrong types, huge fields, zlib bombs, amplification,
 * missing fields, unknown models, extreme rowids, out-of-range scores, wide
 * entries, control characters, a command flood, ...) is injected into the
 * same input stream between their batches. Then, against a clean run (the
 * same replays under other uids and keys, one consumer, no bad entries):
 *
 *   - every healthy metric's rows (raw, score, display, value, timestamp,
 *     predictions) bit for bit, its params (JSON equal), status, watermark;
 *   - every bad entry has its expected outcome: dead-lettered with its
 *     reason, or rejected as the original rejects it (acked, nothing
 *     published, not dead-lettered), or processed (a command flood
 *     publishes one message per command); the time from its XADD to its
 *     dead letter is reported (both ids are Redis server times; waiting is
 *     bounded by a generous deadline, no timing is asserted);
 *   - no consumer dies (every one exits 0), nothing stays pending;
 *   - each consumer's peak RSS (VmHWM, polled) stays under a bound
 *     (AN_HOSTILE_RSS_MB; the default depends on the build: sanitizers
 *     multiply RSS);
 *   - no metric's watermark is above its highest existing row;
 *   - no consumer log holds a control byte from input (only line ends).
 *
 * Forms (AN_HOSTILE_MODE): short (CTest label "hostile": 2 models, a few
 * thousand rows) and long (ops/hostile.sh, normal build: 3 whole NAB
 * files). AN_HOSTILE_TABLE appends the result table to a file.
 *
 * Every wait is bounded and ends in a named problem, never a hang:
 * AN_HOSTILE_TIMEOUT_S for each run, AN_HOSTILE_STEP_S for the healthy
 * entries between two injections. Load only makes it slower: consumers that
 * idled out while an entry was being prepared are followed by a drain
 * consumer, and the signalled replays run without LeakSanitizer (see
 * no_leak_check_for_replays).
 */
#define _GNU_SOURCE
#include <check.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "support_e2e.h"
#include "check_main.h"

#define MAX_MODELS 4
#define K 2
#define MAX_BAD 64
#define MAX_DRAIN 3 /* extra consumers that drain what idled-out ones left */

typedef struct model {
    const char *file; /* under likelihood/htmengine/ */
    long rows;        /* 0: the whole file */
    long batch, live;
} model;

static const model SHORT_MODELS[] = {
    {"numenta_art_daily_jumpsup.inputs.csv", 3000, 1440, 2880},
    {"numenta_ec2_cpu_utilization_825cc2.inputs.csv", 800, 200, 400},
};
static const model LONG_MODELS[] = {
    {"numenta_art_daily_jumpsup.inputs.csv", 0, 1440, 2880},
    {"numenta_ec2_cpu_utilization_825cc2.inputs.csv", 0, 500, 1500},
    {"numenta_art_flatline.inputs.csv", 0, 1440, 1440},
};

typedef enum { X_DEAD, X_REJECT, X_PUBLISH } expect_kind;

/* One entry of the catalogue: what it is and what must become of it. */
typedef struct bad {
    const char *name;
    expect_kind kind;
    const char *reason;  /* X_DEAD: a substring of the dead letter's reason */
    long published;      /* X_PUBLISH: output messages with it as source */
    char id[AN_ID_MAX];
    char observed[160];
    double secs;         /* XADD -> dead letter, Redis clock; < 0: n/a */
    bool ok;
} bad;

typedef struct run {
    e2e t;
    bool clean;
    int nmodels;
    const model *models;
    char csv[MAX_MODELS][PATH_MAX + 32];
    char uids[MAX_MODELS][64];
    char names[MAX_MODELS][96];
    long nrows[MAX_MODELS];
    e2e_proc rp[MAX_MODELS];
    e2e_proc cons[K + MAX_DRAIN]; /* K, then any drain consumers */
    int ncons;
    long peak_kb[K + MAX_DRAIN];
} run;

static char problems[8192];
static int nproblems;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
    va_list ap;
    char line[700];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "PROBLEM: %s\n", line);
    size_t l = strlen(problems);
    if (nproblems++ < 12 && l + strlen(line) + 3 < sizeof problems)
        snprintf(problems + l, sizeof problems - l, "%s\n", line);
}

static long envl(const char *name, long def)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : def;
}

static void run_init(run *R, bool clean, const model *models, int n)
{
    memset(R, 0, sizeof *R);
    R->clean = clean;
    R->models = models;
    R->nmodels = n;
    e2e_init(&R->t, clean ? "clean" : "hostile");
    e2e_setenv(&R->t, "ANOMALYD_STREAMS_CLAIM_IDLE_MS", "1500");
    e2e_setenv(&R->t, "ANOMALYD_STREAMS_DEFER_MAX_MS", "5000");
    if (clean)
        e2e_setenv(&R->t, "ANOMALYD_ANOMALY_LIKELIHOOD_STATE_CACHE_METRICS", "0");
    for (int i = 0; i < n; i++) {
        R->nrows[i] = e2e_model_csv(&R->t, models[i].file, models[i].rows, i, R->csv[i],
                                    sizeof R->csv[i]);
        char tag[16];
        snprintf(tag, sizeof tag, "m%d", i);
        snprintf(R->uids[i], sizeof R->uids[i], "%s", e2e_uid(&R->t, tag));
        snprintf(R->names[i], sizeof R->names[i], "%s.m%d", clean ? "clean" : "hostile", i);
    }
}

static void start_replay(run *R, int i)
{
    char bs[32], la[32], label[128];
    snprintf(bs, sizeof bs, "%ld", R->models[i].batch);
    snprintf(la, sizeof la, "%ld", R->models[i].live);
    snprintf(label, sizeof label, "anomalyctl replay %s", R->names[i]);
    const char *argv[] = {e2e_bin("anomalyctl"), "replay", "--csv", R->csv[i], "--metric",
                          R->names[i], "--uid", R->uids[i], "--batch-size", bs,
                          "--live-after", la, NULL};
    e2e_spawn(&R->t, &R->rp[i], label, argv);
}

/* Starts consumer c<ncons + 1> in the next slot. */
static void start_consumer(run *R)
{
    char name[32], label[64];
    int i = R->ncons++;
    snprintf(name, sizeof name, "c%d", i + 1);
    snprintf(label, sizeof label, "anomalyd --consumer %s", name);
    const char *argv[] = {e2e_bin("anomalyd"), "--consumer", name, "--exit-when-idle", "3000",
                          NULL};
    e2e_spawn(&R->t, &R->cons[i], label, argv);
}

static void start_consumers(run *R, int k)
{
    for (int i = 0; i < k; i++)
        start_consumer(R);
}

/* A stream id's (ms, seq). */
static void id_parts(const char *id, unsigned long long *ms, unsigned long long *seq)
{
    char *end = NULL;
    *ms = strtoull(id, &end, 10);
    *seq = end && *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

/* The value of field name in a flat RESP2 field/value array (NULL: none). */
static const char *xinfo_str(const redisReply *r, const char *name)
{
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && !strcmp(r->element[i]->str, name) &&
            r->element[i + 1]->type == REDIS_REPLY_STRING)
            return r->element[i + 1]->str;
    return NULL;
}

/* True when the input stream holds entries the group has not delivered to
 * any consumer yet (its last-delivered id is below the last added id). */
static bool undelivered(e2e *t)
{
    redisReply *s = e2e_redis_cmd(t, "XINFO STREAM %s", t->input);
    redisReply *g = e2e_redis_cmd(t, "XINFO GROUPS %s", t->input);
    const char *last = xinfo_str(s, "last-generated-id"), *got = NULL;
    for (size_t i = 0; g->type == REDIS_REPLY_ARRAY && i < g->elements && !got; i++) {
        const char *name = xinfo_str(g->element[i], "name");
        if (name && !strcmp(name, E2E_GROUP))
            got = xinfo_str(g->element[i], "last-delivered-id");
    }
    ck_assert_msg(last && got, "XINFO of %s: no last-generated-id or group %s", t->input,
                  E2E_GROUP);
    unsigned long long lm, ls, gm, gs;
    id_parts(last, &lm, &ls);
    id_parts(got, &gm, &gs);
    bool more = lm > gm || (lm == gm && ls > gs);
    freeReplyObject(s);
    freeReplyObject(g);
    return more;
}

/* VmHWM of a running process in kB (-1 once it is gone). */
static long vm_hwm_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            v = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static void poll_rss(run *R)
{
    for (int i = 0; i < R->ncons; i++) {
        if (R->cons[i].done)
            continue;
        long kb = vm_hwm_kb(R->cons[i].pid);
        if (kb > R->peak_kb[i])
            R->peak_kb[i] = kb;
    }
}

/* Waits for the replays and the consumers (generous deadline). */
static void finish(run *R, int timeout_s)
{
    double end = e2e_now() + timeout_s;
    for (;;) {
        poll_rss(R);
        bool running = false;
        for (int i = 0; i < R->nmodels; i++)
            if (!R->rp[i].done && !e2e_poll(&R->t, &R->rp[i]))
                running = true;
        for (int i = 0; i < R->ncons; i++)
            if (!R->cons[i].done && !e2e_poll(&R->t, &R->cons[i]))
                running = true;
        if (!running)
            break;
        if (e2e_now() > end) {
            problem("%s run did not finish within %d s", R->clean ? "clean" : "hostile",
                    timeout_s);
            for (int i = 0; i < R->ncons; i++)
                if (!R->cons[i].done)
                    e2e_wait(&R->t, &R->cons[i], 1);
            for (int i = 0; i < R->nmodels; i++)
                if (!R->rp[i].done)
                    e2e_wait(&R->t, &R->rp[i], 1);
            break;
        }
        e2e_sleep_ms(50);
    }
    for (int i = 0; i < R->nmodels; i++)
        if (R->rp[i].code != 0)
            problem("replay %s exited %d: %s", R->names[i], R->rp[i].code,
                    e2e_tail(R->rp[i].err_path, 400));
    for (int i = 0; i < R->ncons; i++)
        if (R->cons[i].code != 0)
            problem("consumer %s died or failed: exit %d; stderr tail: %s", R->cons[i].label,
                    R->cons[i].code, e2e_tail(R->cons[i].err_path, 1500));
}

/* The hostile run's replays are stopped and continued (SIGSTOP/SIGCONT)
 * around every injection, so one may get a signal while it exits. In a
 * sanitized build its exit runs LeakSanitizer, which PTRACE_ATTACHes the
 * process and waits for the SIGSTOP that the attach queues; a SIGCONT sent
 * in that window discards the queued SIGSTOP, the tracer waits forever and
 * the replay never exits (the harness hung under load this way). So these
 * replays, and only they, run without the leak check: the clean run replays
 * the same files with the same options, unsignalled, leak check on. Call
 * after the consumers are started, before the replays. */
static void no_leak_check_for_replays(run *R)
{
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    e2e_setenv(&R->t, "ASAN_OPTIONS", opts);
}

/* The state letter of /proc/<pid>/stat ('R', 'S', 'T' stopped, 't' traced,
 * 'Z', ...; '?' when unreadable): for the messages of a failed wait. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] ? p[2] : '?';
}

/* Lets the (continued) replays run until the input stream holds target
 * entries or every replay has exited: true. The wait is bounded (a generous
 * 60 s, AN_HOSTILE_STEP_S): past it, false and a problem naming the step and
 * each replay's state (the caller then stops waiting for the replays, and
 * finish() bounds the rest). */
static bool wait_healthy(run *R, int64_t target, int step)
{
    double end = e2e_now() + (double)envl("AN_HOSTILE_STEP_S", 60);
    for (;;) {
        bool running = false;
        for (int m = 0; m < R->nmodels; m++)
            running = !e2e_poll(&R->t, &R->rp[m]) || running;
        int64_t len = e2e_xlen(&R->t, R->t.input);
        if (!running || len >= target)
            return true;
        if (e2e_now() > end) {
            char states[128] = "";
            for (int m = 0; m < R->nmodels; m++) {
                size_t l = strlen(states);
                snprintf(states + l, sizeof states - l, " %s=%c", R->names[m],
                         R->rp[m].done ? 'x' : proc_state(R->rp[m].pid));
            }
            problem("after injection %d the input stream stayed at %" PRId64
                    " entries (waiting for %" PRId64 ") for %ld s; replay states:%s", step,
                    len, target, envl("AN_HOSTILE_STEP_S", 60), states);
            return false;
        }
        e2e_sleep_ms(1);
    }
}

/* ------------------------------------------------------------ catalogue */

static bad CAT[MAX_BAD];
static int NCAT;

static bad *cat(const char *name, expect_kind kind, const char *reason, long published)
{
    ck_assert_int_lt(NCAT, MAX_BAD);
    bad *b = &CAT[NCAT++];
    memset(b, 0, sizeof *b);
    b->name = name;
    b->kind = kind;
    b->reason = reason;
    b->published = published;
    b->secs = -1;
    return b;
}

/* A zlib-compressed copy of text (malloc'd). */
static char *zlib_of(const char *text, size_t len, size_t *zlen)
{
    char *z = NULL, err[256];
    ck_assert_int_eq(an_zlib_compress(text, len, &z, zlen, err, sizeof err), 0);
    return z;
}

/* text made of head, count copies of item (comma-separated), tail. */
static char *repeat(const char *head, const char *item, size_t count, const char *tail,
                    size_t *len)
{
    size_t hl = strlen(head), il = strlen(item), tl = strlen(tail);
    size_t n = hl + count * (il + 1) + tl;
    char *p = malloc(n + 1), *o = p;
    ck_assert_ptr_nonnull(p);
    memcpy(o, head, hl);
    o += hl;
    for (size_t i = 0; i < count; i++) {
        if (i)
            *o++ = ',';
        memcpy(o, item, il);
        o += il;
    }
    memcpy(o, tail, tl);
    o += tl;
    *o = '\0';
    *len = (size_t)(o - p);
    return p;
}

static void add_json(e2e *t, bad *b, const char *model, const char *batch)
{
    an_field f[2] = {e2e_field("model", model), e2e_field("batch", batch)};
    e2e_xadd_fields(t, f, 2, b->id);
}

static void add_zlib(e2e *t, bad *b, const char *model, const char *text, size_t len)
{
    size_t zlen = 0;
    char *z = zlib_of(text, len, &zlen);
    an_field f[3] = {e2e_field("model", model), e2e_field_bin("batch", z, zlen),
                     e2e_field("encoding", "zlib")};
    e2e_xadd_fields(t, f, 3, b->id);
    free(z);
}

/* Wide entries: n fields f0..f(n-1). */
static void add_wide(e2e *t, bad *b, size_t n)
{
    an_field *f = calloc(n, sizeof *f);
    char (*names)[24] = calloc(n, sizeof *names);
    ck_assert(f && names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "f%zu", i);
        f[i] = e2e_field(names[i], "x");
    }
    e2e_xadd_fields(t, f, n, b->id);
    free(f);
    free(names);
}

/* Entries whose fields, signature, uid or rowID are wrong (catalogue
 * entries 0..15); false for any other i. */
static bool inject_structure(e2e *t, int i, const char *healthy)
{
    const char *unknown = "hostile-no-such-model";
    bad *b;
    switch (i) {
    case 0:
        add_json(t, cat("not JSON", X_DEAD, "batch: invalid JSON", 0), healthy, "{\"x");
        break;
    case 1:
        add_json(t, cat("JSON object, not array", X_DEAD, "batch: must be a JSON array", 0),
                 healthy, "{}");
        break;
    case 2:
        add_json(t, cat("empty batch", X_DEAD, "batch: empty array", 0), healthy, "[]");
        break;
    case 3:
        add_json(t, cat("unknown signature", X_DEAD, "unknown result signature 'xR'", 0),
                 healthy, "[[\"xR\",1]]");
        break;
    case 4: {
        b = cat("missing model", X_DEAD, "missing field 'model'", 0);
        an_field f[1] = {e2e_field("batch", "[[\"iRv2\",1,0,0.5,null,null]]")};
        e2e_xadd_fields(t, f, 1, b->id);
        break;
    }
    case 5: {
        b = cat("missing batch", X_DEAD, "missing field 'batch'", 0);
        an_field f[1] = {e2e_field("model", healthy)};
        e2e_xadd_fields(t, f, 1, b->id);
        break;
    }
    case 6: {
        b = cat("duplicate model field", X_DEAD, "duplicate field 'model'", 0);
        an_field f[3] = {e2e_field("model", healthy), e2e_field("model", unknown),
                         e2e_field("batch", "[[\"iRv2\",1,0,0.5,null,null]]")};
        e2e_xadd_fields(t, f, 3, b->id);
        break;
    }
    case 7: {
        b = cat("unknown encoding", X_DEAD, "unknown encoding 'gzip'", 0);
        an_field f[3] = {e2e_field("model", healthy), e2e_field("batch", "[]"),
                         e2e_field("encoding", "gzip")};
        e2e_xadd_fields(t, f, 3, b->id);
        break;
    }
    case 8:
        add_json(t, cat("model uid of 41 bytes", X_DEAD, "41 bytes, longer than 40", 0),
                 "0123456789012345678901234567890123456789x", "[[\"iRv2\",1,0,0.5,null,null]]");
        break;
    case 9:
        add_json(t, cat("model uid with ESC + newline", X_DEAD,
                        "not printable ASCII ('m\\x1b[2J\\x0aINFO forged')", 0),
                 "m\x1b[2J\nINFO forged", "[[\"iRv2\",1,0,0.5,null,null]]");
        break;
    case 10:
        add_json(t, cat("iRv2 of 5 elements", X_DEAD, "iRv2 needs 6 elements, got 5", 0),
                 healthy, "[[\"iRv2\",1,0,0.5,null]]");
        break;
    case 11:
        add_json(t, cat("rowID as a string", X_DEAD, "rowID must be an integer, got string", 0),
                 healthy, "[[\"iRv2\",\"1\",0,0.5,null,null]]");
        break;
    case 12:
        add_json(t, cat("rowID -2^63 (case 8)", X_DEAD,
                        "rowID -9223372036854775808 is outside 1..2147483647", 0),
                 healthy, "[[\"iRv2\",-9223372036854775808,0,0.5,null,null]]");
        break;
    case 13:
        add_json(t, cat("rowID 0", X_DEAD, "rowID 0 is outside 1..2147483647", 0), healthy,
                 "[[\"iRv2\",0,0,0.5,null,null]]");
        break;
    case 14:
        add_json(t, cat("rowID 2^63-1", X_DEAD, "rowID 9223372036854775807 is outside", 0),
                 healthy, "[[\"iRv2\",9223372036854775807,0,0.5,null,null]]");
        break;
    case 15:
        add_json(t, cat("rowID 1e30 (a real)", X_DEAD, "rowID must be an integer, got real", 0),
                 healthy, "[[\"iRv2\",1e30,0,0.5,null,null]]");
        break;
    default:
        return false;
    }
    return true;
}

/* Entries whose values or nesting are wrong (catalogue entries 16..27);
 * false for any other i. */
static bool inject_values(e2e *t, int i, const char *healthy)
{
    size_t len = 0;
    char *text;
    switch (i) {
    case 16:
        add_json(t, cat("score 1e200 on a healthy row (case 4)", X_DEAD,
                        "anomalyScore 1e+200 is outside [0, 1]", 0),
                 healthy, "[[\"iRv2\",5,0,1e200,null,null]]");
        break;
    case 17:
        add_json(t, cat("score -0.5", X_DEAD, "anomalyScore -0.5 is outside [0, 1]", 0), healthy,
                 "[[\"iRv2\",6,0,-0.5,null,null]]");
        break;
    case 18:
        add_json(t, cat("score NaN token", X_DEAD, "batch: invalid JSON", 0), healthy,
                 "[[\"iRv2\",7,0,NaN,null,null]]");
        break;
    case 19:
        add_json(t, cat("score as a string", X_DEAD,
                        "anomalyScore must be a number or null, got string", 0),
                 healthy, "[[\"iRv2\",7,0,\"0.5\",null,null]]");
        break;
    case 20:
        add_json(t, cat("status 0 with an error", X_DEAD, "status 0 with an errorMessage", 0),
                 healthy, "[[\"iRv2\",8,0,0.5,\"e\",null]]");
        break;
    case 21:
        add_json(t, cat("status 1 without error", X_DEAD, "needs an errorMessage string", 0),
                 healthy, "[[\"iRv2\",8,1,null,null,null]]");
        break;
    case 22:
        add_json(t, cat("predictions an array", X_DEAD,
                        "multiStepBestPredictions must be an object or null, got array", 0),
                 healthy, "[[\"iRv2\",8,0,0.5,null,[1]]]");
        break;
    case 23:
        add_json(t, cat("mcR args an array", X_DEAD, "mcR args must be an object or null", 0),
                 healthy, "[[\"mcR\",\"c\",\"defineModel\",0,[],null]]");
        break;
    case 24:
        add_json(t, cat("iR of 6 elements", X_DEAD, "iR needs 5 elements, got 6", 0), healthy,
                 "[[\"iR\",9,0,0.5,null,null]]");
        break;
    case 25:
        add_json(t, cat("NUL inside a string", X_DEAD, "batch: invalid JSON", 0), healthy,
                 "[[\"iRv2\",9,1,null,\"a\\u0000b\",null]]");
        break;
    case 26:
        add_json(t, cat("invalid UTF-8 in a string", X_DEAD, "batch: invalid JSON", 0), healthy,
                 "[[\"iRv2\",9,1,null,\"\xff\xfe\",null]]");
        break;
    case 27:
        text = repeat("[[\"iRv2\",9,0,0.5,null,{\"1\":", "[", 3000, "", &len);
        add_json(t, cat("nesting 3000 deep", X_DEAD, "batch: invalid JSON", 0), healthy, text);
        free(text);
        break;
    default:
        return false;
    }
    return true;
}

/* Oversized entries, and entries rejected or published rather than
 * dead-lettered (catalogue entries 28..39); false for any other i. */
static bool inject_sizes(e2e *t, int i, const char *healthy)
{
    const char *unknown = "hostile-no-such-model";
    bad *b;
    size_t len = 0;
    char *text;
    switch (i) {
    case 28:
        text = repeat("", " ", (size_t)100 << 20, "", &len);
        add_zlib(t, cat("zlib bomb (100 MiB of spaces)", X_DEAD,
                        "inflates beyond max_inflated_bytes", 0), healthy, text, len);
        free(text);
        break;
    case 29: {
        b = cat("corrupt zlib", X_DEAD, "batch: corrupt zlib stream", 0);
        an_field f[3] = {e2e_field("model", healthy), e2e_field("batch", "xyzxyzxyz"),
                         e2e_field("encoding", "zlib")};
        e2e_xadd_fields(t, f, 3, b->id);
        break;
    }
    case 30:
        /* case 2 as reported: predictions inflating to millions of [] */
        text = repeat("[[\"iRv2\",10,0,0.5,null,{\"1\":[", "[]", (size_t)4 << 20, "]}]]", &len);
        add_zlib(t, cat("amplification: 4M [] in predictions (case 2)", X_DEAD,
                        "over max_json_nodes (250000)", 0), healthy, text, len);
        free(text);
        break;
    case 31:
        text = repeat("[", "[\"iR\",11,0,0.5,null]", 20001, "]", &len);
        add_zlib(t, cat("20001 results", X_DEAD, "batch: 20001 results, over max_results", 0),
                 healthy, text, len);
        free(text);
        break;
    case 32:
        text = repeat("[[\"iRv2\",12,1,null,\"", "e", (size_t)5 << 19, "\",null]]", &len);
        add_json(t, cat("5 MiB entry", X_DEAD, "over max_entry_bytes (4194304)", 0), healthy,
                 text);
        free(text);
        break;
    case 33:
        add_wide(t, cat("4,000 fields (case 5)", X_DEAD, "missing field 'model'", 0), 4000);
        break;
    case 34:
        add_wide(t, cat("100,000 fields", X_DEAD, "missing field 'model'", 0), 100000);
        break;
    case 35:
        add_json(t, cat("signature with control bytes (case 7)", X_DEAD,
                        "unknown result signature 'x\\x0aERROR forged\\x1b[31m'", 0),
                 healthy, "[[\"x\\nERROR forged\\u001b[31m\",1]]");
        break;
    case 36:
        add_json(t, cat("unknown model", X_REJECT, NULL, 0), unknown,
                 "[[\"iRv2\",1,0,0.5,null,null]]");
        break;
    case 37:
        /* case 1: far beyond the metric's rows; rejected, watermark kept */
        add_json(t, cat("rowID 2000000000 beyond the rows (case 1)", X_REJECT, NULL, 0), healthy,
                 "[[\"iRv2\",2000000000,0,0.5,null,null]]");
        break;
    case 38:
        /* a failed command result for an unknown model, its errorMessage
         * forging log lines: published (the original publishes it) */
        add_json(t, cat("command error with ESC/newline (case 7)", X_PUBLISH, NULL, 1), unknown,
                 "[[\"mcR\",\"c\\u001b[2J\",\"defineModel\",1,null,"
                 "\"boom\\nERROR forged line\\u001b[31m\"]]");
        break;
    case 39:
        /* a small command flood: one message per command */
        text = repeat("[", "[\"mcR\",\"flood\",\"unknownCommand\",0,null,null]", 300, "]", &len);
        add_zlib(t, cat("command flood of 300 (case 3, small)", X_PUBLISH, NULL, 300), unknown,
                 text, len);
        free(text);
        break;
    default:
        return false;
    }
    return true;
}

/* Injects catalogue entry i (0-based) into the hostile run; false past the
 * end. */
static bool inject(run *R, int i)
{
    /* the watermark jump (case 1) goes in early, among the healthy batches */
    if (i == 2 || i == 37)
        i = i == 2 ? 37 : 2;
    const char *healthy = R->uids[0]; /* a healthy metric's uid */
    return inject_structure(&R->t, i, healthy) || inject_values(&R->t, i, healthy) ||
           inject_sizes(&R->t, i, healthy);
}

/* ------------------------------------------------------------ checks */

static bool is_pending(e2e *t, const char *id)
{
    redisReply *r = e2e_redis_cmd(t, "XPENDING %s %s %s %s 1", t->input, E2E_GROUP, id, id);
    bool p = r->type == REDIS_REPLY_ARRAY && r->elements > 0;
    freeReplyObject(r);
    return p;
}

static double id_ms(const char *id) { return strtod(id, NULL); }

static void check_catalogue(run *R)
{
    e2e *t = &R->t;
    an_entry_list dl = {0};
    e2e_xrange_all(t, t->dead, &dl);
    json_t *outs = e2e_outputs(t);
    size_t ndead = 0;
    for (int i = 0; i < NCAT; i++) {
        bad *b = &CAT[i];
        const an_entry *d = NULL;
        for (size_t k = 0; k < dl.n && !d; k++) {
            const an_field *s = an_entry_field(&dl.v[k], "source");
            if (s && !strcmp(s->value, b->id))
                d = &dl.v[k];
        }
        json_t *mine = e2e_outputs_for(outs, b->id);
        size_t nout = json_array_size(mine);
        json_decref(mine);
        bool pending = is_pending(t, b->id);
        const an_field *rf = d ? an_entry_field(d, "reason") : NULL;
        if (d) {
            ndead++;
            b->secs = (id_ms(d->id) - id_ms(b->id)) / 1000.0;
            snprintf(b->observed, sizeof b->observed, "dead-lettered: %.120s",
                     rf ? rf->value : "(no reason)");
        } else if (pending) {
            snprintf(b->observed, sizeof b->observed, "still pending");
        } else if (nout) {
            snprintf(b->observed, sizeof b->observed, "acked, %zu messages published", nout);
        } else {
            snprintf(b->observed, sizeof b->observed, "acked, nothing published");
        }
        switch (b->kind) {
        case X_DEAD:
            b->ok = d && rf && strstr(rf->value, b->reason) && nout == 0;
            break;
        case X_REJECT:
            b->ok = !d && !pending && nout == 0;
            break;
        case X_PUBLISH:
            b->ok = !d && !pending && (long)nout == b->published;
            break;
        }
        if (!b->ok)
            problem("bad entry '%s' (%s): %s", b->name, b->id, b->observed);
    }
    /* nothing else was dead-lettered (no healthy entry) */
    if (ndead != dl.n)
        problem("%zu dead letters, %zu of them from the catalogue", dl.n, ndead);
    json_decref(outs);
    an_entry_list_free(&dl);
    if (e2e_pending(t) != 0)
        problem("%" PRId64 " entries still pending", e2e_pending(t));
}

static bool same_row(const an_data_row *a, const an_data_row *b, char *why, size_t len)
{
    if (a->rowid != b->rowid)
        snprintf(why, len, "rowid %" PRId64 " vs %" PRId64, a->rowid, b->rowid);
    else if (a->has_raw != b->has_raw || !e2e_same_double(a->raw, b->raw))
        snprintf(why, len, "raw %.17g%s vs clean %.17g%s", a->raw, a->has_raw ? "" : " (NULL)",
                 b->raw, b->has_raw ? "" : " (NULL)");
    else if (a->has_score != b->has_score || !e2e_same_double(a->anomaly_score, b->anomaly_score))
        snprintf(why, len, "anomaly_score %.17g vs clean %.17g", a->anomaly_score,
                 b->anomaly_score);
    else if (a->has_display != b->has_display || a->display_value != b->display_value)
        snprintf(why, len, "display_value %" PRId64 " vs clean %" PRId64, a->display_value,
                 b->display_value);
    else if (!e2e_same_double(a->metric_value, b->metric_value) || !e2e_same_double(a->ts, b->ts))
        snprintf(why, len, "value/timestamp differ");
    else if ((a->predictions == NULL) != (b->predictions == NULL) ||
             (a->predictions && strcmp(a->predictions, b->predictions)))
        snprintf(why, len, "predictions differ");
    else
        return true;
    return false;
}

static void check_healthy(run *H, run *C)
{
    for (int m = 0; m < H->nmodels; m++) {
        an_metric hm, cm;
        e2e_get_metric(&H->t, H->uids[m], &hm);
        e2e_get_metric(&C->t, C->uids[m], &cm);
        if (hm.status != cm.status)
            problem("model %d: status %s vs clean %s", m, an_metric_status_name(hm.status),
                    an_metric_status_name(cm.status));
        if (hm.scored_rowid != cm.scored_rowid)
            problem("model %d: watermark %" PRId64 " vs clean %" PRId64, m, hm.scored_rowid,
                    cm.scored_rowid);
        if (hm.scored_rowid > H->nrows[m] || hm.scored_rowid > hm.last_rowid)
            problem("model %d: watermark %" PRId64 " above its highest row %ld", m,
                    hm.scored_rowid, H->nrows[m]);
        json_t *hp = e2e_stored_params(&hm), *cp = e2e_stored_params(&cm);
        char where[600];
        if (!e2e_json_same(hp, cp, where, sizeof where))
            problem("model %d: params differ from the clean run: %s", m, where);
        json_decref(hp);
        json_decref(cp);
        an_metric_clear(&hm);
        an_metric_clear(&cm);
        an_data_rows hr = {0}, cr = {0};
        e2e_get_rows(&H->t, H->uids[m], 1, H->nrows[m], &hr);
        e2e_get_rows(&C->t, C->uids[m], 1, C->nrows[m], &cr);
        if (hr.n != cr.n || hr.n != (size_t)H->nrows[m])
            problem("model %d: %zu rows vs clean %zu (expected %ld)", m, hr.n, cr.n,
                    H->nrows[m]);
        size_t bad = 0;
        char why[400] = "";
        for (size_t i = 0; i < hr.n && i < cr.n; i++) {
            char w[300];
            if (!same_row(&hr.v[i], &cr.v[i], w, sizeof w) && bad++ == 0)
                snprintf(why, sizeof why, "row %" PRId64 ": %s", hr.v[i].rowid, w);
        }
        if (bad)
            problem("model %d: %zu rows differ from the clean run, first %s", m, bad, why);
        an_data_rows_free(&hr);
        an_data_rows_free(&cr);
    }
}

/* No byte < 0x20 other than the line end in any consumer log. */
static void check_logs(run *R)
{
    for (int i = 0; i < R->ncons; i++) {
        size_t len = 0;
        char *s = e2e_slurp(R->cons[i].err_path, &len);
        if (!s)
            continue;
        for (size_t k = 0; k < len; k++) {
            unsigned char c = (unsigned char)s[k];
            if ((c < 0x20 && c != '\n') || c == 0x7f) {
                problem("%s: control byte 0x%02x in its log at offset %zu", R->cons[i].label, c,
                        k);
                break;
            }
        }
        /* a forged line would start with the forged text */
        if (strstr(s, "\nERROR forged") || strstr(s, "\nINFO forged"))
            problem("%s: a forged log line", R->cons[i].label);
        free(s);
    }
}

static void report(run *H, long rss_bound_mb)
{
    FILE *outs[2] = {stdout, NULL};
    const char *tp = getenv("AN_HOSTILE_TABLE");
    if (tp && *tp)
        outs[1] = fopen(tp, "a");
    for (int o = 0; o < 2; o++) {
        FILE *f = outs[o];
        if (!f)
            continue;
        fprintf(f, "\nhostile-producer harness: %d models, K = %d, %d bad entries\n\n",
                H->nmodels, K, NCAT);
        fprintf(f, "| # | entry | expected | observed | XADD -> dead letter (s) | ok |\n");
        fprintf(f, "|---|---|---|---|---|---|\n");
        for (int i = 0; i < NCAT; i++) {
            const bad *b = &CAT[i];
            char exp[160], secs[32] = "-";
            if (b->kind == X_DEAD)
                snprintf(exp, sizeof exp, "dead letter: ...%s...", b->reason);
            else if (b->kind == X_REJECT)
                snprintf(exp, sizeof exp, "rejected (acked, nothing published)");
            else
                snprintf(exp, sizeof exp, "processed: %ld messages", b->published);
            if (b->secs >= 0)
                snprintf(secs, sizeof secs, "%.3f", b->secs);
            fprintf(f, "| %d | %s | %s | %s | %s | %s |\n", i + 1, b->name, exp, b->observed,
                    secs, b->ok ? "yes" : "NO");
        }
        fprintf(f, "\n");
        for (int i = 0; i < H->ncons; i++)
            fprintf(f, "consumer %s: exit %d, peak RSS %.1f MiB (bound %ld MiB)\n",
                    H->cons[i].label, H->cons[i].code, H->peak_kb[i] / 1024.0, rss_bound_mb);
        fprintf(f, "problems: %d\n", nproblems);
        if (o == 1)
            fclose(f);
    }
}

static run HR, CR;

START_TEST(hostile)
{
    bool long_form = getenv("AN_HOSTILE_MODE") && !strcmp(getenv("AN_HOSTILE_MODE"), "long");
    const model *models = long_form ? LONG_MODELS : SHORT_MODELS;
    int nm = long_form ? 3 : 2;
#ifdef AN_SANITIZED
    long rss_bound_mb = envl("AN_HOSTILE_RSS_MB", 1024);
#else
    long rss_bound_mb = envl("AN_HOSTILE_RSS_MB", 256);
#endif
    int timeout_s = (int)envl("AN_HOSTILE_TIMEOUT_S", long_form ? 1200 : 300);

    /* the clean run */
    run_init(&CR, true, models, nm);
    for (int i = 0; i < nm; i++)
        start_replay(&CR, i);
    start_consumers(&CR, 1);
    finish(&CR, timeout_s);

    /* the hostile run: once the healthy metrics and their rows exist, the
     * catalogue goes in between their batches (the replays are stopped
     * while an entry is added, then run on for a moment) */
    run_init(&HR, false, models, nm);
    start_consumers(&HR, K);
    no_leak_check_for_replays(&HR);
    for (int i = 0; i < nm; i++)
        start_replay(&HR, i);
    double deadline = e2e_now() + timeout_s;
    /* each replay is stopped as soon as its metric's rows exist */
    bool stopped[MAX_MODELS] = {false};
    int left = nm;
    for (; left > 0 && e2e_now() < deadline; e2e_sleep_ms(1)) {
        for (int i = 0; i < nm; i++) {
            if (stopped[i])
                continue;
            an_metric m = {0};
            if (e2e_poll(&HR.t, &HR.rp[i]) ||
                (e2e_metric_exists(&HR.t, HR.uids[i]) &&
                 (e2e_get_metric(&HR.t, HR.uids[i], &m), m.last_rowid >= HR.nrows[i]))) {
                if (!HR.rp[i].done)
                    kill(HR.rp[i].pid, SIGSTOP);
                stopped[i] = true;
                left--;
            }
            an_metric_clear(&m);
        }
    }
    if (left > 0)
        problem("%d replays did not create their metric's rows within %d s", left, timeout_s);
    bool stalled = false; /* a wait for the replays timed out: wait no more */
    for (int i = 0;; i++) {
        poll_rss(&HR);
        bool more = inject(&HR, i);   /* the replays are stopped here */
        if (more)
            fprintf(stderr, "[hostile] injected %d: %s as %s (input length %" PRId64 ")\n",
                    i + 1, CAT[i].name, CAT[i].id, e2e_xlen(&HR.t, HR.t.input));
        for (int m = 0; m < nm; m++)
            if (!HR.rp[m].done)
                kill(HR.rp[m].pid, SIGCONT);
        if (!more)
            break;
        /* a few healthy entries go in (a replay XADDs tens per ms) */
        if (!stalled)
            stalled = !wait_healthy(&HR, e2e_xlen(&HR.t, HR.t.input) + 6, i + 1);
        for (int m = 0; m < nm; m++)
            if (!HR.rp[m].done && !e2e_poll(&HR.t, &HR.rp[m]))
                kill(HR.rp[m].pid, SIGSTOP);
    }
    finish(&HR, timeout_s);
    /* The consumers exit after 3 s without input (--exit-when-idle); on a
     * loaded machine preparing one entry (the zlib bomb compresses 100 MiB)
     * can take longer, so both may be gone before the last entries go in.
     * What they left undelivered is drained by one more consumer each time
     * (the outcomes are checked all the same). */
    for (int d = 0; d < MAX_DRAIN && undelivered(&HR.t); d++) {
        fprintf(stderr, "[hostile] the consumers idled out before the last entries; "
                        "starting c%d to drain them\n", HR.ncons + 1);
        start_consumer(&HR);
        finish(&HR, timeout_s);
    }

    check_catalogue(&HR);
    check_healthy(&HR, &CR);
    check_logs(&HR);
    for (int i = 0; i < HR.ncons; i++)
        if (HR.peak_kb[i] > rss_bound_mb * 1024)
            problem("%s: peak RSS %.1f MiB over the bound %ld MiB", HR.cons[i].label,
                    HR.peak_kb[i] / 1024.0, rss_bound_mb);
    ck_assert_int_ge(NCAT, 30);
    report(&HR, rss_bound_mb);
    if (nproblems)
        setenv("AN_E2E_KEEP", "1", 1);
    ck_assert_msg(nproblems == 0, "%d problems:\n%s", nproblems, problems);
}
END_TEST

static void teardown(void)
{
    e2e_fini(&HR.t);
    e2e_fini(&CR.t);
}

static Suite *suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 3600);
    tcase_add_unchecked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, hostile);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(suite(), CK_NORMAL);
}
