/*
 * test_faults.c: the fault-injection harness (one implementation, two
 * forms). It replays NAB files as models through the real programs, with K
 * consumers that are SIGKILLed at random moments and respawned (with the
 * same name, or now and then a brand-new one so that XAUTOCLAIM takeover
 * and `anomalyctl consumers prune` are exercised), restarts Redis and
 * PostgreSQL once each (ops/stack.sh), injects poison entries, and then
 * compares everything with a clean run (the same replays under other uids
 * and another key prefix, one consumer, no faults, no in-process state
 * cache):
 *
 *   - every metric_data row: raw_anomaly_score, anomaly_score, display_value
 *     (and value, timestamp, predictions) bit for bit;
 *   - every metric: status, scored_rowid, anomalyLikelihoodParams (JSON
 *     equal: a double-counted sample would show in the moving average and
 *     the historical likelihoods), and the params cache hash equals the DB;
 *   - the output stream: every input entry has at least one output message
 *     with its id as `source`; messages for the same model and rows are
 *     duplicates: counted, and they must share their `source`; per model the
 *     published row ranges tile 1..N exactly once; every inference message's
 *     results equal the clean run's message for the same rows;
 *   - the dead-letter stream holds exactly the injected poison entries (the
 *     ones still in the input stream: the stream is the truth after a Redis
 *     restart), with their original fields and the expected reason;
 *   - nothing pending and no lag at the end; every consumer that was not
 *     killed exited 0.
 *
 * Forms (AN_FAULTS_MODE):
 *   short (default; CTest label "faults"): 2 NAB files as 2 models (one
 *         in 1440-row batches then 1-row batches, one in 1-row batches), K =
 *         2, 2 kills, one restart of each server, 1 poison entry.
 *   long  (ops/faults.sh, normal build): 4 NAB files, K = 1, 2, 4, 6 kills
 *         per K, one restart of each server per K, 4 poison entries.
 * Other knobs (environment): AN_FAULTS_SEED (replay a run: kill moments and
 * choices derive from it; thread interleavings still vary), AN_FAULTS_K
 * ("1,2,4"), AN_FAULTS_KILLS, AN_FAULTS_POISON, AN_FAULTS_RESTARTS
 * ("redis,pg", "none"), AN_FAULTS_MODELS ("file:rows:batch:live,..."; rows
 * 0 = the whole file; live -1 = never), AN_FAULTS_MAX_DELIVERIES,
 * AN_FAULTS_CLAIM_IDLE_MS (1500), AN_FAULTS_DEFER_MAX_MS (15000),
 * AN_FAULTS_IDLE_EXIT_MS (3000: anomalyd --exit-when-idle),
 * AN_FAULTS_TIMEOUT_S, AN_FAULTS_TABLE (append the result table to a file).
 * On any problem the keys, metrics and logs are kept (AN_E2E_KEEP) and the
 * seed is printed.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "support_e2e.h"
#include "check_main.h"

#define MAX_MODELS 8
#define MAX_K 8
#define MAX_EVENTS 64
#define MAX_LOGS 128
#define MAX_PROBLEMS 25

/* ------------------------------------------------------------ settings */

typedef struct mspec {
    char file[256]; /* under $AN_TEST_DATA/likelihood/htmengine/ */
    long rows;      /* 0: all */
    long batch;
    long live;      /* --live-after; -1: omitted */
} mspec;

typedef struct settings {
    bool long_form;
    uint64_t seed;
    int ks[MAX_K];
    int nk;
    int kills;
    int poison;
    bool restart_redis, restart_pg;
    mspec models[MAX_MODELS];
    int nmodels;
    int claim_idle_ms;
    int defer_max_ms;
    int idle_exit_ms;
    const char *max_deliveries; /* NULL: the service default */
    int timeout_s;
    const char *table_path;
} settings;

static settings S;

static const char *envs(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static long envl(const char *name, long def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    ck_assert_msg(!errno && !*end, "%s: '%s' is not a number", name, v);
    return x;
}

static void parse_models(const char *spec)
{
    S.nmodels = 0;
    char *dup = strdup(spec), *save = NULL;
    ck_assert_ptr_nonnull(dup);
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        ck_assert_msg(S.nmodels < MAX_MODELS, "AN_FAULTS_MODELS: more than %d models",
                      MAX_MODELS);
        mspec *m = &S.models[S.nmodels++];
        char file[256];
        ck_assert_msg(sscanf(tok, "%255[^:]:%ld:%ld:%ld", file, &m->rows, &m->batch,
                             &m->live) == 4,
                      "AN_FAULTS_MODELS: '%s' is not file:rows:batch:live", tok);
        snprintf(m->file, sizeof m->file, "%s", file);
        ck_assert_msg(m->batch >= 1 && m->rows >= 0, "AN_FAULTS_MODELS: bad numbers in '%s'",
                      tok);
    }
    free(dup);
    ck_assert_msg(S.nmodels > 0, "AN_FAULTS_MODELS: no model");
}

static void load_settings(void)
{
    memset(&S, 0, sizeof S);
    const char *mode = envs("AN_FAULTS_MODE", "short");
    ck_assert_msg(!strcmp(mode, "short") || !strcmp(mode, "long"),
                  "AN_FAULTS_MODE: '%s' is not short or long", mode);
    S.long_form = !strcmp(mode, "long");

    const char *seed = getenv("AN_FAULTS_SEED");
    if (seed && *seed) {
        S.seed = strtoull(seed, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        S.seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^
                 ((uint64_t)getpid() << 32);
        S.seed %= 1000000000000ull;
    }

    const char *ks = envs("AN_FAULTS_K", S.long_form ? "1,2,4" : "2");
    char *dup = strdup(ks), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = atoi(tok);
        ck_assert_msg(k >= 1 && k <= MAX_K && S.nk < MAX_K, "AN_FAULTS_K: bad '%s'", tok);
        S.ks[S.nk++] = k;
    }
    free(dup);
    ck_assert_msg(S.nk > 0, "AN_FAULTS_K is empty");

    S.kills = (int)envl("AN_FAULTS_KILLS", S.long_form ? 6 : 2);
    S.poison = (int)envl("AN_FAULTS_POISON", S.long_form ? 4 : 1);
    ck_assert_msg(S.kills >= 0 && S.kills <= 40, "AN_FAULTS_KILLS out of range");
    ck_assert_msg(S.poison >= 0 && S.poison <= 8, "AN_FAULTS_POISON out of range");
    const char *rs = envs("AN_FAULTS_RESTARTS", "redis,pg");
    S.restart_redis = strstr(rs, "redis") != NULL;
    S.restart_pg = strstr(rs, "pg") != NULL;

    parse_models(envs("AN_FAULTS_MODELS",
                      S.long_form
                          ? "numenta_art_daily_jumpsup.inputs.csv:0:1440:2880,"
                            "numenta_art_flatline.inputs.csv:0:1440:1440,"
                            "numenta_ec2_cpu_utilization_825cc2.inputs.csv:0:500:1500,"
                            "numenta_nyc_taxi.inputs.csv:0:1440:8640"
                          : "numenta_art_daily_jumpsup.inputs.csv:0:1440:2880,"
                            "numenta_ec2_cpu_utilization_825cc2.inputs.csv:0:1:0"));
    S.claim_idle_ms = (int)envl("AN_FAULTS_CLAIM_IDLE_MS", 1500);
    S.defer_max_ms = (int)envl("AN_FAULTS_DEFER_MAX_MS", 15000);
    S.idle_exit_ms = (int)envl("AN_FAULTS_IDLE_EXIT_MS", 3000);
    ck_assert_msg(S.defer_max_ms >= S.claim_idle_ms,
                  "AN_FAULTS_DEFER_MAX_MS must be >= AN_FAULTS_CLAIM_IDLE_MS");
    ck_assert_msg(S.idle_exit_ms >= 100, "AN_FAULTS_IDLE_EXIT_MS too small");
    S.max_deliveries = getenv("AN_FAULTS_MAX_DELIVERIES");
    if (S.max_deliveries && !*S.max_deliveries)
        S.max_deliveries = NULL;
    S.timeout_s = (int)envl("AN_FAULTS_TIMEOUT_S", S.long_form ? 1200 : 240);
    S.table_path = getenv("AN_FAULTS_TABLE");
}

/* Bounded string copy (no snprintf: the compiler cannot prove that the
 * struct members it copies between do not overlap). */
static void scpy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memmove(dst, src, n);
    dst[n] = '\0';
}

/* ------------------------------------------------------------ rng */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnext(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double runif(rng *r) { return (double)(rnext(r) >> 11) * 0x1.0p-53; }

/* uniform integer in [lo, hi] */
static int rint_in(rng *r, int lo, int hi)
{
    return lo + (int)(rnext(r) % (uint64_t)(hi - lo + 1));
}

/* ------------------------------------------------------------ a run */

typedef enum { EV_KILL, EV_POISON, EV_RESTART_REDIS, EV_RESTART_PG, EV_PRUNE } ev_kind;

typedef struct event {
    ev_kind kind;
    double frac;      /* fires once the output reached this fraction */
    int extra_ms;     /* ... plus this many ms */
    double at;        /* PRUNE: absolute time; others: armed time (0: not armed) */
    bool armed, done, skipped;
    int arg;          /* POISON: kind; RESTART: --kill or not */
    char name[64];    /* PRUNE: the dead consumer */
} event;

typedef struct slot {
    e2e_proc p;
    bool running;
    bool killed;       /* the last process of this slot was SIGKILLed by us */
    char name[64];
    bool respawn;      /* a respawn is scheduled */
    double respawn_at;
    char respawn_name[64];
} slot;

/* The poison kinds: the entry's fields and the reason the service gives. */
#define NPOISON_KINDS 4
static const char *const poison_reason[NPOISON_KINDS] = {
    "batch: ",                             /* not JSON */
    "unknown result signature 'xR'",
    "missing field 'model'",
    "batch: empty array",
};

typedef struct poison {
    char id[AN_ID_MAX];
    int kind;
    char model[AN_UID_MAX + 1];
    const char *batch;
} poison;

typedef struct run {
    e2e t;
    bool inited;
    bool clean;
    int K;
    rng r;
    char uids[MAX_MODELS][AN_UID_MAX + 1];
    char names[MAX_MODELS][96];
    char csv[MAX_MODELS][PATH_MAX + 64];
    long nrows[MAX_MODELS];
    long planned_entries[MAX_MODELS];
    long planned; /* output messages expected */
    e2e_proc rp[MAX_MODELS];
    bool rp_started[MAX_MODELS], rp_done[MAX_MODELS];
    double rp_start_at[MAX_MODELS];
    slot slots[MAX_K];
    int next_name;
    event ev[MAX_EVENTS];
    int nev;
    e2e_proc stack;
    bool stack_running;
    char stack_verb[32];
    bool stack_hard;
    int stack_attempts;
    char stack_what[128];
    double stack_t0;
    char logs[MAX_LOGS][PATH_MAX + 32];
    int nlogs;
    poison poisons[8];
    int npoison;

    /* results */
    int kills, new_names, idle_respawns, prunes, pruned_consumers;
    long claimed, republished, dup_acked, forced, rejected, lost_races;
    long dup_published, dead_letters, rows_compared, mismatches, pending_end, lost_outputs;
    char restarts[256];
    double wall;
    double done;      /* when the output stream last grew: the processing time */
    int64_t last_out;
    int nproblems;
    char problems[MAX_PROBLEMS][600];
} run;

static run *RUNS[MAX_K + 1];
static int NRUNS;

static void problem(run *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(run *R, const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (R->nproblems < MAX_PROBLEMS)
        snprintf(R->problems[R->nproblems], sizeof R->problems[0], "%s", buf);
    R->nproblems++;
    fprintf(stderr, "[faults %s K=%d] PROBLEM: %s\n", R->clean ? "clean" : "run", R->K, buf);
}

static void note(run *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(run *R, const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[faults %s K=%d %.1fs] %s\n", R->clean ? "clean" : "run", R->K,
            R->wall, buf);
}

/* What anomalyctl replay sends: 1 defineModel entry + the batches. */
static long planned_entries(long n, long batch, long live)
{
    long sent = 0, entries = 1;
    if (live < 0)
        live = n;
    while (sent < n) {
        long bs = sent < live ? batch : 1;
        if (sent < live && sent + bs > live)
            bs = live - sent;
        if (bs > n - sent)
            bs = n - sent;
        sent += bs;
        entries++;
    }
    return entries;
}

static void run_init(run *R, bool clean, int K, uint64_t seed)
{
    memset(R, 0, sizeof *R);
    R->clean = clean;
    R->K = K;
    R->r.s = seed;
    e2e_init(&R->t, clean ? "clean" : "faults");
    R->inited = true;
    RUNS[NRUNS++] = R;
    char v[32];
    snprintf(v, sizeof v, "%d", S.claim_idle_ms);
    e2e_setenv(&R->t, "ANOMALYD_STREAMS_CLAIM_IDLE_MS", v);
    snprintf(v, sizeof v, "%d", S.defer_max_ms);
    e2e_setenv(&R->t, "ANOMALYD_STREAMS_DEFER_MAX_MS", v);
    if (S.max_deliveries)
        e2e_setenv(&R->t, "ANOMALYD_STREAMS_MAX_DELIVERIES", S.max_deliveries);
    /* The reference parses the params and reads the helper's samples from
     * PostgreSQL for every batch (no in-process state cache, no sample
     * windows); the faulted runs keep both on, and lose them at every kill. */
    if (clean) {
        e2e_setenv(&R->t, "ANOMALYD_ANOMALY_LIKELIHOOD_STATE_CACHE_METRICS", "0");
        e2e_setenv(&R->t, "ANOMALYD_ANOMALY_LIKELIHOOD_SAMPLE_WINDOW_BYTES", "0");
    }
    /* Input retention runs often, under the kills and restarts, next to an
     * "audit" group that never reads: it holds every entry, so trimming must
     * leave the whole input stream in place (the comparisons below read it). */
    e2e_setenv(&R->t, "ANOMALYD_STREAMS_TRIM_INTERVAL_MS", "200");
    freeReplyObject(e2e_redis_cmd(&R->t, "XGROUP CREATE %s audit 0 MKSTREAM", R->t.input));

    R->planned = 0;
    for (int i = 0; i < S.nmodels; i++) {
        const mspec *m = &S.models[i];
        R->nrows[i] = e2e_model_csv(&R->t, m->file, m->rows, i, R->csv[i], sizeof R->csv[i]);
        char tag[16];
        snprintf(tag, sizeof tag, "m%d", i);
        snprintf(R->uids[i], sizeof R->uids[i], "%s", e2e_uid(&R->t, tag));
        char base[64];
        snprintf(base, sizeof base, "%s", m->file);
        char *dot = strchr(base, '.');
        if (dot)
            *dot = '\0';
        snprintf(R->names[i], sizeof R->names[i], "%s.%s", clean ? "clean" : "faults", base);
        R->planned_entries[i] = planned_entries(R->nrows[i], m->batch, m->live);
        R->planned += R->planned_entries[i];
    }
}

static void run_fini(run *R)
{
    if (!R->inited)
        return;
    if (R->nproblems)
        setenv("AN_E2E_KEEP", "1", 1);
    e2e_fini(&R->t);
    R->inited = false;
}

/* ------------------------------------------------------------ processes */

static void spawn_consumer(run *R, slot *s, const char *name)
{
    char idle[32], label[96];
    snprintf(idle, sizeof idle, "%d", S.idle_exit_ms);
    scpy(s->name, sizeof s->name, name);
    snprintf(label, sizeof label, "anomalyd --consumer %s", name);
    const char *argv[] = {e2e_bin("anomalyd"), "--consumer", name, "--exit-when-idle", idle,
                          NULL};
    e2e_spawn(&R->t, &s->p, label, argv);
    s->running = true;
    s->killed = false;
    s->respawn = false;
    if (R->nlogs < MAX_LOGS)
        snprintf(R->logs[R->nlogs++], sizeof R->logs[0], "%s", s->p.err_path);
}

static void start_replay(run *R, int i)
{
    char bs[32], la[32];
    const mspec *m = &S.models[i];
    snprintf(bs, sizeof bs, "%ld", m->batch);
    snprintf(la, sizeof la, "%ld", m->live);
    char label[128];
    snprintf(label, sizeof label, "anomalyctl replay %s", R->names[i]);
    const char *argv[16];
    int n = 0;
    argv[n++] = e2e_bin("anomalyctl");
    argv[n++] = "replay";
    argv[n++] = "--csv";
    argv[n++] = R->csv[i];
    argv[n++] = "--metric";
    argv[n++] = R->names[i];
    argv[n++] = "--uid";
    argv[n++] = R->uids[i];
    argv[n++] = "--batch-size";
    argv[n++] = bs;
    if (m->live >= 0) {
        argv[n++] = "--live-after";
        argv[n++] = la;
    }
    argv[n] = NULL;
    e2e_spawn(&R->t, &R->rp[i], label, argv);
    R->rp_started[i] = true;
}

static void check_replay(run *R, int i)
{
    e2e_proc *p = &R->rp[i];
    R->rp_done[i] = true;
    if (p->code != 0) {
        problem(R, "replay of %s exited %d: %s", R->names[i], p->code,
                e2e_tail(p->err_path, 600));
        return;
    }
    char *out = e2e_slurp(p->out_path, NULL);
    const char *e = out ? strstr(out, " entries=") : NULL;
    long entries = e ? strtol(e + 9, NULL, 10) : -1;
    if (entries != R->planned_entries[i])
        problem(R, "replay of %s: entries=%ld, expected %ld (%s)", R->names[i], entries,
                R->planned_entries[i], out ? out : "no output");
    free(out);
}

/* Runs ops/stack.sh VERB [--kill] in the background. */
static void start_stack(run *R, const char *verb, bool hard)
{
    if (verb != R->stack_verb)
        scpy(R->stack_verb, sizeof R->stack_verb, verb);
    R->stack_hard = hard;
    R->stack_attempts++;
    const char *argv[] = {e2e_src("ops/stack.sh"), verb, hard ? "--kill" : NULL, NULL};
    char label[96];
    snprintf(label, sizeof label, "ops/stack.sh %s%s", verb, hard ? " --kill" : "");
    e2e_spawn(&R->t, &R->stack, label, argv);
    R->stack_running = true;
    R->stack_t0 = e2e_now();
    scpy(R->stack_what, sizeof R->stack_what, label);
}

static int64_t output_len(run *R)
{
    int64_t n = -1;
    if (an_xlen(R->t.rd, R->t.output, &n) != 0)
        return -1;
    return n;
}

/* ------------------------------------------------------------ events */

static int cmp_event(const void *a, const void *b)
{
    const event *x = a, *y = b;
    return x->frac < y->frac ? -1 : x->frac > y->frac;
}

static void add_event(run *R, ev_kind kind, double frac, int arg)
{
    ck_assert_int_lt(R->nev, MAX_EVENTS);
    event *e = &R->ev[R->nev++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->frac = frac;
    e->arg = arg;
    e->extra_ms = rint_in(&R->r, 0, 40);
}

static void plan_events(run *R)
{
    for (int i = 0; i < S.kills; i++)
        add_event(R, EV_KILL, 0.04 + 0.82 * runif(&R->r), 0);
    int first_kind = rint_in(&R->r, 0, NPOISON_KINDS - 1);
    for (int i = 0; i < S.poison; i++)
        add_event(R, EV_POISON, 0.6 * runif(&R->r), (first_kind + i) % NPOISON_KINDS);
    /* Restarts: Redis graceful in the short form (kill or graceful, chosen
     * by the seed, in the long form); PostgreSQL fast or immediate (a crash
     * restart) by the seed. */
    if (S.restart_redis)
        add_event(R, EV_RESTART_REDIS, 0.25 + 0.5 * runif(&R->r),
                  S.long_form ? (runif(&R->r) < 0.5) : 0);
    if (S.restart_pg)
        add_event(R, EV_RESTART_PG, 0.25 + 0.6 * runif(&R->r), runif(&R->r) < 0.5);
    qsort(R->ev, (size_t)R->nev, sizeof R->ev[0], cmp_event);
}

static bool any_running(run *R)
{
    for (int i = 0; i < R->K; i++)
        if (R->slots[i].running)
            return true;
    return false;
}

static bool inject_poison(run *R, int kind)
{
    ck_assert_int_lt(R->npoison, 8);
    poison *p = &R->poisons[R->npoison];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    int m = rint_in(&R->r, 0, S.nmodels - 1);
    scpy(p->model, sizeof p->model, R->uids[m]);
    an_field f[2];
    size_t nf = 2;
    switch (kind) {
    case 0:
        p->batch = "{\"this is\": not JSON";
        f[0] = e2e_field("model", p->model);
        f[1] = e2e_field("batch", p->batch);
        break;
    case 1:
        p->batch = "[[\"xR\",1,0,0.5,null,null]]";
        f[0] = e2e_field("model", p->model);
        f[1] = e2e_field("batch", p->batch);
        break;
    case 2:
        p->model[0] = '\0';
        p->batch = "[[\"iRv2\",1,0,0.5,null,null]]";
        f[0] = e2e_field("batch", p->batch);
        nf = 1;
        break;
    default:
        p->batch = "[]";
        f[0] = e2e_field("model", p->model);
        f[1] = e2e_field("batch", p->batch);
        break;
    }
    int rc = an_xadd(R->t.rd, R->t.input, 0, f, nf, p->id);
    if (rc)
        return false;   /* Redis restarting: try again */
    R->npoison++;
    note(R, "injected poison entry %s (kind %d: expect reason '%s')", p->id, kind,
         poison_reason[kind]);
    return true;
}

static void kill_one(run *R, int kill_no)
{
    int idx[MAX_K], n = 0;
    for (int i = 0; i < R->K; i++)
        if (R->slots[i].running)
            idx[n++] = i;
    slot *s = &R->slots[idx[rint_in(&R->r, 0, n - 1)]];
    kill(s->p.pid, SIGKILL);
    e2e_wait(&R->t, &s->p, 10000);
    s->running = false;
    s->killed = true;
    R->kills++;
    /* Same name (a restarted consumer drains its own pending entries
     * first), or a brand-new one (the dead name's entries are taken over
     * by XAUTOCLAIM, or moved by `consumers prune`). The short form does
     * one of each; the long form picks by the seed, at least one new. */
    bool fresh = S.long_form ? (runif(&R->r) < 0.35 || (kill_no == S.kills - 1 && !R->new_names))
                             : (kill_no % 2 == 1);
    s->respawn = true;
    if (fresh) {
        snprintf(s->respawn_name, sizeof s->respawn_name, "n%d", ++R->next_name);
        s->respawn_at = e2e_now() + rint_in(&R->r, 50, 500) / 1000.0;
        R->new_names++;
        /* Prune the dead name once it has been idle for a while, before
         * claim_idle_ms lets XAUTOCLAIM take all of its entries. */
        ck_assert_int_lt(R->nev, MAX_EVENTS);
        event *e = &R->ev[R->nev++];
        memset(e, 0, sizeof *e);
        e->kind = EV_PRUNE;
        e->frac = -1;
        e->at = e2e_now() + (S.claim_idle_ms * 2 / 3 + 100) / 1000.0;
        scpy(e->name, sizeof e->name, s->name);
    } else {
        scpy(s->respawn_name, sizeof s->respawn_name, s->name);
        s->respawn_at = e2e_now() + rint_in(&R->r, 100, 1500) / 1000.0;
    }
    int64_t out = output_len(R);
    note(R, "SIGKILL %s (pid %d) at %.0f%% of the output; respawn as %s in %.0f ms", s->name,
         (int)s->p.pid, out >= 0 ? 100.0 * (double)out / (double)R->planned : -1.0,
         s->respawn_name, (s->respawn_at - e2e_now()) * 1000);
}

/* `anomalyctl consumers prune` once the killed consumer e->name has been
 * idle for 2/3 of claim_idle_ms: its pending entries go to a live consumer
 * (still claimable) and it is deleted. Returns false when it was not idle
 * long enough yet (a Redis restart resets the consumers' idle times): try
 * again later. */
static bool do_prune(run *R, event *e)
{
    char idle[32];
    snprintf(idle, sizeof idle, "%d", S.claim_idle_ms * 2 / 3);
    e2e_proc p;
    e2e_run(&R->t, &p, "anomalyctl consumers prune", 30000, e2e_bin("anomalyctl"),
            "consumers", "prune", "--idle", idle, NULL);
    char *out = e2e_slurp(p.out_path, NULL);
    char *err = e2e_slurp(p.err_path, NULL);
    char want[128];
    snprintf(want, sizeof want, "consumer %s: ", e->name);
    /* Exit 1 is fine when the only trouble is "no live consumer to hand
     * the entries to": right after a Redis restart the live consumers are
     * in their reconnect back-off and look idle too. */
    bool hard = p.code != 0 && p.code != 1;
    hard = hard || (out && strstr(out, "DISCARDED")) || (err && strstr(err, "ERROR"));
    bool dead_deleted = false;
    for (const char *c = out; c && *c;) {
        const char *nl = strchr(c, '\n');
        size_t len = nl ? (size_t)(nl - c) : strlen(c);
        if (memmem(c, len, "NOT deleted", 11) &&
            !memmem(c, len, "there is no live consumer", 25))
            hard = true;
        if (!strncmp(c, want, strlen(want)) && memmem(c, len, "deleted", 7) &&
            !memmem(c, len, "NOT deleted", 11))
            dead_deleted = true;
        c = nl ? nl + 1 : NULL;
    }
    bool retry = false;
    if (hard)
        problem(R, "consumers prune --idle %s (after killing %s) exited %d:\n%s%s", idle,
                e->name, p.code, out ? out : "", err ? err : "");
    else if (!dead_deleted)
        retry = true;
    else
        R->prunes++;
    /* the consumers it deleted */
    for (const char *c = out; c && *c;) {
        const char *nl = strchr(c, '\n');
        size_t len = nl ? (size_t)(nl - c) : strlen(c);
        if (!strncmp(c, "consumer ", 9) && memmem(c, len, "deleted", 7) &&
            !memmem(c, len, "NOT deleted", 11)) {
            R->pruned_consumers++;
            note(R, "prune: %.*s", (int)len, c);
        }
        c = nl ? nl + 1 : NULL;
    }
    free(out);
    free(err);
    if (retry) {
        /* Gone already (pruned earlier while it still ran): nothing to do. */
        an_consumer_info *c = NULL;
        size_t n = 0;
        bool present = true;
        if (an_xinfo_consumers(R->t.rd, R->t.input, E2E_GROUP, &c, &n) == 0) {
            present = false;
            for (size_t i = 0; i < n; i++)
                present = present || !strcmp(c[i].name, e->name);
        }
        an_consumer_info_free(c, n);
        if (!present) {
            note(R, "prune: %s is no longer a consumer of the group", e->name);
            return true;
        }
    }
    if (retry && ++e->arg > 20) {
        note(R, "prune: %s was never idle for %s ms; gave up", e->name, idle);
        return true;
    }
    return !retry;
}

/* ------------------------------------------------------------ the loop */

/* Starts the replays whose time has come, reaps the finished ones.
 * Returns whether every replay is done. */
static bool step_producers(run *R, double now)
{
    bool replays_done = true;
    for (int i = 0; i < S.nmodels; i++) {
        if (!R->rp_started[i] && now >= R->rp_start_at[i])
            start_replay(R, i);
        if (R->rp_started[i] && !R->rp_done[i] && e2e_poll(&R->t, &R->rp[i]))
            check_replay(R, i);
        if (!R->rp_done[i])
            replays_done = false;
    }
    return replays_done;
}

/* Whether an event has not been done yet. */
static bool events_left(const run *R)
{
    for (int i = 0; i < R->nev; i++)
        if (!R->ev[i].done)
            return true;
    return false;
}

/* Reaps exited consumers (a failure is a problem; an idle exit before the
 * work or the faults are over is respawned, to keep K consumers) and
 * respawns those whose time has come. */
static void step_consumers(run *R, double now, bool replays_done, bool pending_events)
{
    for (int i = 0; i < R->K; i++) {
        slot *s = &R->slots[i];
        if (s->running && e2e_poll(&R->t, &s->p)) {
            s->running = false;
            if (s->p.code != 0) {
                problem(R, "consumer %s exited with %d; stderr tail:\n%s", s->name,
                        s->p.code, e2e_tail(s->p.err_path, 1500));
            } else if (!replays_done || pending_events || R->stack_running) {
                /* Idle exit before the work (or the faults) are over:
                 * keep K consumers. */
                s->respawn = true;
                s->respawn_at = now;
                scpy(s->respawn_name, sizeof s->respawn_name, s->name);
                R->idle_respawns++;
            }
        }
        if (!s->running && s->respawn && now >= s->respawn_at)
            spawn_consumer(R, s, s->respawn_name);
    }
}

/* A server restart in flight that has finished: noted, or tried again. */
static void step_stack(run *R)
{
    if (!R->stack_running || !e2e_poll(&R->t, &R->stack))
        return;
    R->stack_running = false;
    double took = e2e_now() - R->stack_t0;
    size_t len = strlen(R->restarts);
    snprintf(R->restarts + len, sizeof R->restarts - len, "%s%s %.1fs",
             len ? ", " : "", R->stack_what + strlen("ops/stack.sh "), took);
    if (R->stack.code != 0 && R->stack_attempts < 3) {
        /* The stack is shared: another user's restart can be under
         * way (e.g. "port already answers ... not a server of this
         * stack" while its pid file is rewritten). Try again. */
        note(R, "%s exited %d (%s); trying again in 2 s", R->stack_what,
             R->stack.code, e2e_tail(R->stack.err_path, 300));
        e2e_sleep_ms(2000);
        start_stack(R, R->stack_verb, R->stack_hard);
    } else if (R->stack.code != 0) {
        problem(R, "%s exited %d: %s", R->stack_what, R->stack.code,
                e2e_tail(R->stack.err_path, 1500));
    } else {
        note(R, "%s done in %.1f s", R->stack_what, took);
    }
}

/* The first event in order that is not done (prunes aside), when its
 * output fraction (frac) and its delay are reached: a kill, a poison entry
 * or a server restart (once the producers are done, one at a time; a Redis
 * SIGKILL only 1.5 s after their last write, appendfsync everysec). Later
 * events wait for it. */
static void step_ordered_event(run *R, double now, double frac, bool replays_done,
                               double replays_done_at)
{
    for (int i = 0; i < R->nev; i++) {
        event *e = &R->ev[i];
        if (e->done || e->kind == EV_PRUNE)
            continue;
        if (!e->armed) {
            if (frac < e->frac)
                return;   /* in order: later events wait */
            e->armed = true;
            e->at = now + e->extra_ms / 1000.0;
        }
        if (now < e->at)
            return;
        if (e->kind == EV_KILL) {
            if (!any_running(R))
                return;
            e->done = true;
            kill_one(R, R->kills);
        } else if (e->kind == EV_POISON) {
            if (!inject_poison(R, e->arg))
                return;
            e->done = true;
        } else {
            bool hard = e->arg != 0;
            if (R->stack_running || !replays_done ||
                (hard && e->kind == EV_RESTART_REDIS && now - replays_done_at < 1.5))
                return;
            e->done = true;
            note(R, "restarting %s%s at %.0f%% of the output",
                 e->kind == EV_RESTART_REDIS ? "redis" : "postgres",
                 hard ? (e->kind == EV_RESTART_REDIS ? " (SIGKILL)" : " (immediate)") : "",
                 100 * frac);
            R->stack_attempts = 0;
            start_stack(R, e->kind == EV_RESTART_REDIS ? "restart-redis" : "restart-pg",
                        hard);
        }
        return;
    }
}

/* The events due at now: the prunes whose time has come (retried later
 * when the consumer is not idle yet), then the next ordered event. */
static void step_events(run *R, double now, double t0, bool replays_done,
                        double replays_done_at)
{
    int64_t out = output_len(R);
    double frac = out >= 0 ? (double)out / (double)R->planned : -1;
    if (out > R->last_out) {
        R->last_out = out;
        R->done = now - t0;
    }
    for (int i = 0; i < R->nev; i++) {
        event *e = &R->ev[i];
        if (!e->done && e->kind == EV_PRUNE && now >= e->at && !R->stack_running) {
            if (do_prune(R, e))
                e->done = true;
            else
                e->at = now + 0.5;
        }
    }
    step_ordered_event(R, now, frac, replays_done, replays_done_at);
}

/* The end: producers done, no restart in flight, every consumer exited.
 * Events still left then never fired (a fraction the output never
 * reached): they are reported and marked skipped, so the run does not
 * hang. */
static bool run_finished(run *R, bool replays_done)
{
    bool busy = R->stack_running || !replays_done;
    for (int i = 0; i < R->K; i++)
        if (R->slots[i].running || R->slots[i].respawn)
            busy = true;
    if (busy)
        return false;
    for (int i = 0; i < R->nev; i++) {
        if (!R->ev[i].done) {
            R->ev[i].done = R->ev[i].skipped = true;
            note(R, "event %d (kind %d at %.0f%%) never fired", i,
                 R->ev[i].kind, 100 * R->ev[i].frac);
        }
    }
    return true;
}

/* A run past its deadline: reported; its consumers stopped, a restart in
 * flight waited for. */
static void stop_timed_out(run *R)
{
    int64_t pend = -1;
    an_pending_summary ps = {0};
    if (an_pending_summary_get(R->t.rd, R->t.input, E2E_GROUP, &ps) == 0)
        pend = ps.count;
    an_pending_summary_free(&ps);
    problem(R, "run did not finish within %d s (output %" PRId64 " of %ld, pending %" PRId64
               "); consumer logs in %s",
            S.timeout_s, output_len(R), R->planned, pend, R->t.tmpdir);
    for (int i = 0; i < R->K; i++) {
        slot *s = &R->slots[i];
        if (s->running) {
            kill(s->p.pid, SIGTERM);
            e2e_wait(&R->t, &s->p, 10000);
            s->running = false;
        }
    }
    if (R->stack_running)
        e2e_wait(&R->t, &R->stack, 120000);
}

static void drive(run *R)
{
    double t0 = e2e_now();
    double deadline = t0 + S.timeout_s;
    for (int i = 0; i < R->K; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", i + 1);
        spawn_consumer(R, &R->slots[i], name);
    }
    for (int i = 0; i < S.nmodels; i++)
        R->rp_start_at[i] = t0 + (R->clean ? 0 : rint_in(&R->r, 0, 300) / 1000.0);
    if (!R->clean)
        plan_events(R);
    double replays_done_at = 0;
    bool timed_out = false;

    for (;;) {
        double now = e2e_now();
        R->wall = now - t0;
        if (now > deadline) {
            timed_out = true;
            break;
        }
        bool replays_done = step_producers(R, now);
        if (replays_done && replays_done_at == 0) {
            replays_done_at = now;
            note(R, "producers done");
        }
        step_consumers(R, now, replays_done, events_left(R));
        step_stack(R);
        step_events(R, now, t0, replays_done, replays_done_at);
        if (run_finished(R, replays_done))
            break;
        e2e_sleep_ms(5);
    }
    R->wall = e2e_now() - t0;
    if (timed_out)
        stop_timed_out(R);
}

/* ------------------------------------------------------------ checks */

static size_t count_in_logs(run *R, const char *needle)
{
    size_t n = 0;
    for (int i = 0; i < R->nlogs; i++)
        n += e2e_count_lines(R->logs[i], needle);
    return n;
}

/* The reference: what the clean run stored and published, per model. */
typedef struct ref {
    an_data_rows rows[MAX_MODELS];
    json_t *params[MAX_MODELS];
    int64_t scored[MAX_MODELS];
    json_t *results[MAX_MODELS]; /* object: "first-last" -> body.results */
} ref;

static int model_of(run *R, const char *uid)
{
    for (int i = 0; i < S.nmodels; i++)
        if (uid && !strcmp(R->uids[i], uid))
            return i;
    return -1;
}

typedef struct range {
    int64_t a, b;
    char source[AN_ID_MAX];
} range;

static int cmp_range(const void *x, const void *y)
{
    const range *p = x, *q = y;
    return p->a < q->a ? -1 : p->a > q->a;
}

/* The group at the end of a run: nothing pending, every entry delivered. */
static void check_group_end(run *R)
{
    an_group_info *g = NULL;
    size_t ng = 0;
    if (an_xinfo_groups(R->t.rd, R->t.input, &g, &ng) != 0) {
        problem(R, "XINFO GROUPS %s: %s", R->t.input, an_redis_errstr(R->t.rd));
        return;
    }
    for (size_t i = 0; i < ng; i++) {
        if (strcmp(g[i].name, E2E_GROUP))
            continue;
        R->pending_end = g[i].pending;
        /* Everything delivered: last-delivered-id is the stream's last
         * id. (The lag Redis 7.0 reports comes from its entries-read
         * counter, which can be stale after a restart although
         * everything was delivered: a note, not a failure.) */
        an_stream_info si;
        memset(&si, 0, sizeof si);
        if (an_xinfo_stream(R->t.rd, R->t.input, &si) != 0)
            problem(R, "XINFO STREAM %s: %s", R->t.input, an_redis_errstr(R->t.rd));
        else if (strcmp(g[i].last_delivered_id, si.last_generated_id))
            problem(R, "group %s at the end: last-delivered-id %s, stream's last id %s "
                       "(entries never delivered)",
                    E2E_GROUP, g[i].last_delivered_id, si.last_generated_id);
        if (g[i].pending != 0)
            problem(R, "group %s at the end: %" PRId64 " entries still pending", E2E_GROUP,
                    g[i].pending);
        if (g[i].lag != 0)
            note(R, "NOTE: XINFO GROUPS reports lag %" PRId64 " (entries-read %" PRId64
                    ") although last-delivered-id is the stream's last id",
                 g[i].lag, g[i].entries_read);
    }
    an_group_info_free(g, ng);
}

/* The dead letters of poison entry p in dl: exactly one, with the reason
 * of its kind and its original fields. */
static void check_poison_letter(run *R, const poison *p, const an_entry_list *dl)
{
    int found = 0;
    for (size_t i = 0; i < dl->n; i++) {
        const an_field *src = an_entry_field(&dl->v[i], "source");
        if (!src || strcmp(src->value, p->id))
            continue;
        found++;
        const an_field *reason = an_entry_field(&dl->v[i], "reason");
        const an_field *model = an_entry_field(&dl->v[i], "model");
        const an_field *batch = an_entry_field(&dl->v[i], "batch");
        const an_field *deliv = an_entry_field(&dl->v[i], "deliveries");
        const an_field *cons = an_entry_field(&dl->v[i], "consumer");
        if (!reason || !strstr(reason->value, poison_reason[p->kind]))
            problem(R, "dead letter of %s: reason '%s', expected '%s'", p->id,
                    reason ? reason->value : "(none)", poison_reason[p->kind]);
        if (!batch || strcmp(batch->value, p->batch) ||
            (p->model[0] ? !model || strcmp(model->value, p->model) : model != NULL))
            problem(R, "dead letter of %s does not carry the original fields", p->id);
        if (!deliv || !cons || !cons->value[0])
            problem(R, "dead letter of %s lacks deliveries/consumer", p->id);
    }
    if (found != 1)
        problem(R, "poison entry %s has %d dead letters, expected 1", p->id, found);
}

/* Dead letters: exactly the poison entries still in the input (in). */
static void check_dead_letters(run *R, const an_entry_list *in)
{
    an_entry_list dl;
    e2e_xrange_all(&R->t, R->t.dead, &dl);
    R->dead_letters = (long)dl.n;
    int want_dead = 0;
    for (int k = 0; k < R->npoison; k++) {
        poison *p = &R->poisons[k];
        bool present = false;
        for (size_t i = 0; i < in->n && !present; i++)
            present = !strcmp(in->v[i].id, p->id);
        if (!present) {
            note(R, "NOTE: poison entry %s was lost in the Redis restart", p->id);
            continue;
        }
        want_dead++;
        check_poison_letter(R, p, &dl);
    }
    if ((long)dl.n != want_dead) {
        for (size_t i = 0; i < dl.n; i++) {
            const an_field *src = an_entry_field(&dl.v[i], "source");
            const an_field *reason = an_entry_field(&dl.v[i], "reason");
            bool injected = false;
            for (int k = 0; k < R->npoison; k++)
                injected = injected || (src && !strcmp(src->value, R->poisons[k].id));
            if (!injected)
                problem(R, "unexpected dead letter %s of entry %s: %s", dl.v[i].id,
                        src ? src->value : "?", reason ? reason->value : "?");
        }
    }
    an_entry_list_free(&dl);
}

/* What the output stream of a run holds, gathered by scan_output. */
typedef struct out_scan {
    json_t *by_source; /* source -> count */
    json_t *by_rows;   /* "model|type|rows" -> [sources] */
    range *ranges[MAX_MODELS];
    size_t nranges[MAX_MODELS];
    long mism_msgs;    /* messages that differ from the clean run's */
} out_scan;

/* The clean run's message for rows of model m (rf) becomes res, or res is
 * compared with it (first difference reported; counted in sc). */
static void match_clean(run *R, ref *rf, out_scan *sc, int m, const char *rows,
                        const json_t *res)
{
    if (R->clean) {
        if (!json_object_get(rf->results[m], rows))
            json_object_set(rf->results[m], rows, (json_t *)res);
        return;
    }
    const json_t *want = json_object_get(rf->results[m], rows);
    char where[600];
    if (!want) {
        if (!sc->mism_msgs++)
            problem(R, "output rows %s of model %d: the clean run has no such "
                       "message", rows, m);
    } else if (!e2e_json_same(want, res, where, sizeof where)) {
        if (!sc->mism_msgs++)
            problem(R, "output rows %s of model %d differs from the clean run: %s",
                    rows, m, where);
    }
}

/* One output entry o: counted by source and by rows; the first message for
 * its rows adds a range; its results matched with the clean run's. */
static void scan_output(run *R, ref *rf, out_scan *sc, const json_t *o)
{
    const char *src = json_string_value(json_object_get(o, "source"));
    const char *model = json_string_value(json_object_get(o, "model"));
    const char *type = json_string_value(json_object_get(o, "dataType"));
    const char *rows = json_string_value(json_object_get(o, "rows"));
    if (!src || !model || !type) {
        problem(R, "output %s lacks source/model/dataType", e2e_js(o));
        return;
    }
    json_t *c = json_object_get(sc->by_source, src);
    json_object_set_new(sc->by_source, src, json_integer(c ? json_integer_value(c) + 1 : 1));
    char key[256];
    snprintf(key, sizeof key, "%s|%s|%s", model, type, rows ? rows : "");
    json_t *lst = json_object_get(sc->by_rows, key);
    if (!lst) {
        lst = json_array();
        json_object_set_new(sc->by_rows, key, lst);
    }
    json_array_append_new(lst, json_string(src));
    int m = model_of(R, model);
    if (m < 0) {
        problem(R, "output %s for unknown model %s", e2e_js(json_object_get(o, "id")),
                model);
        return;
    }
    if (!rows)
        return;
    const json_t *res = json_object_get(json_object_get(o, "body"), "results");
    if (json_array_size(lst) == 1) {
        int64_t a = 0, b = 0;
        if (sscanf(rows, "%" SCNd64 "-%" SCNd64, &a, &b) != 2 ||
            sc->nranges[m] >= (size_t)R->planned_entries[m] + 8) {
            problem(R, "output rows '%s' of %s unreadable or too many", rows, model);
        } else {
            range *r = &sc->ranges[m][sc->nranges[m]++];
            r->a = a;
            r->b = b;
            snprintf(r->source, sizeof r->source, "%s", src);
        }
    }
    match_clean(R, rf, sc, m, rows, res);
}

/* Duplicates: same model, type and rows; they must share the source. */
static void check_duplicates(run *R, const out_scan *sc)
{
    const char *key;
    json_t *lst;
    R->dup_published = 0;
    json_object_foreach(sc->by_rows, key, lst) {
        size_t n = json_array_size(lst);
        if (n < 2)
            continue;
        R->dup_published += (long)(n - 1);
        const char *s0 = json_string_value(json_array_get(lst, 0));
        for (size_t i = 1; i < n; i++)
            if (strcmp(s0, json_string_value(json_array_get(lst, i))))
                problem(R, "%s published from two input entries (%s and %s): scored twice?",
                        key, s0, json_string_value(json_array_get(lst, i)));
    }
}

/* Every input entry of in (but poison) has its output. */
static void check_every_output(run *R, const an_entry_list *in, const out_scan *sc)
{
    for (size_t i = 0; i < in->n; i++) {
        bool is_poison = false;
        for (int p = 0; p < R->npoison; p++)
            is_poison = is_poison || !strcmp(R->poisons[p].id, in->v[i].id);
        if (is_poison)
            continue;
        if (!json_object_get(sc->by_source, in->v[i].id)) {
            const an_field *mf = an_entry_field(&in->v[i], "model");
            if (R->lost_outputs++ < 5)
                problem(R, "input entry %s (model %s) has no output message", in->v[i].id,
                        mf ? mf->value : "?");
        }
    }
    if (R->lost_outputs > 5)
        problem(R, "%ld input entries have no output message", R->lost_outputs);
}

/* The published row ranges of model m (sorted here) tile 1..N once. */
static void check_ranges(run *R, int m, range *ranges, size_t nranges)
{
    qsort(ranges, nranges, sizeof *ranges, cmp_range);
    int64_t next = 1, missing = 0, twice = 0;
    for (size_t i = 0; i < nranges; i++) {
        const range *g = &ranges[i];
        if (g->a > next) {
            if (!missing)
                problem(R, "model %d: rows %" PRId64 "-%" PRId64 " were never published "
                           "(next published: %" PRId64 "-%" PRId64 " from %s)",
                        m, next, g->a - 1, g->a, g->b, g->source);
            missing += g->a - next;
        } else if (g->a < next) {
            if (!twice)
                problem(R, "model %d: rows %" PRId64 "-%" PRId64 " (source %s) overlap "
                           "rows already published: scored twice?",
                        m, g->a, g->b, g->source);
            twice += (g->b < next ? g->b : next - 1) - g->a + 1;
        }
        if (g->b + 1 > next)
            next = g->b + 1;
    }
    if (next != R->nrows[m] + 1) {
        problem(R, "model %d: published rows end at %" PRId64 ", expected %ld", m,
                next - 1, R->nrows[m]);
        missing += R->nrows[m] + 1 - next;
    }
    if (missing || twice)
        problem(R, "model %d: %" PRId64 " rows never published, %" PRId64
                   " published by two different entries", m, missing, twice);
}

/* The output stream against the input (in): fills results (clean run) or
 * compares with them; no duplicate, no lost output, every row once. */
static void check_outputs(run *R, ref *rf, const an_entry_list *in)
{
    json_t *outs = e2e_outputs(&R->t);
    out_scan sc = {.by_source = json_object(), .by_rows = json_object()};
    for (int m = 0; m < S.nmodels; m++) {
        sc.ranges[m] = calloc((size_t)R->planned_entries[m] + 8, sizeof *sc.ranges[m]);
        ck_assert_ptr_nonnull(sc.ranges[m]);
        if (R->clean) {
            json_decref(rf->results[m]);
            rf->results[m] = json_object();
        }
    }
    size_t k;
    json_t *o;
    json_array_foreach(outs, k, o)
        scan_output(R, rf, &sc, o);
    if (sc.mism_msgs > 1)
        problem(R, "%ld output messages differ from the clean run", sc.mism_msgs);
    R->mismatches += sc.mism_msgs;
    check_duplicates(R, &sc);
    check_every_output(R, in, &sc);
    for (int m = 0; m < S.nmodels; m++) {
        check_ranges(R, m, sc.ranges[m], sc.nranges[m]);
        free(sc.ranges[m]);
    }
    json_decref(sc.by_source);
    json_decref(sc.by_rows);
    json_decref(outs);
}

/* Checks the streams of a finished run; fills results (clean run) or
 * compares with them. */
static void check_streams(run *R, ref *rf)
{
    /* nothing pending, no lag */
    check_group_end(R);

    /* input: the truth after the restarts */
    an_entry_list in;
    e2e_xrange_all(&R->t, R->t.input, &in);
    long expect_in = R->planned + R->npoison;
    if ((long)in.n != expect_in)
        note(R, "NOTE: the input stream holds %zu entries, %ld were written (%ld batches + "
                "%d poison): Redis lost %ld writes in its restart; the stream is the truth",
             in.n, expect_in, R->planned, R->npoison, expect_in - (long)in.n);

    check_dead_letters(R, &in);
    check_outputs(R, rf, &in);
    an_entry_list_free(&in);
}

static bool same_row(const an_data_row *a, const an_data_row *b, char *why, size_t len)
{
    if (a->rowid != b->rowid)
        snprintf(why, len, "rowid %" PRId64 " vs %" PRId64, a->rowid, b->rowid);
    else if (a->has_raw != b->has_raw || !e2e_same_double(a->raw, b->raw))
        snprintf(why, len, "raw_anomaly_score %.17g%s vs clean %.17g%s", a->raw,
                 a->has_raw ? "" : " (NULL)", b->raw, b->has_raw ? "" : " (NULL)");
    else if (a->has_score != b->has_score || !e2e_same_double(a->anomaly_score, b->anomaly_score))
        snprintf(why, len, "anomaly_score %.17g%s vs clean %.17g%s", a->anomaly_score,
                 a->has_score ? "" : " (NULL)", b->anomaly_score, b->has_score ? "" : " (NULL)");
    else if (a->has_display != b->has_display || a->display_value != b->display_value)
        snprintf(why, len, "display_value %" PRId64 "%s vs clean %" PRId64 "%s",
                 a->display_value, a->has_display ? "" : " (NULL)", b->display_value,
                 b->has_display ? "" : " (NULL)");
    else if (!e2e_same_double(a->metric_value, b->metric_value) || !e2e_same_double(a->ts, b->ts))
        snprintf(why, len, "value/timestamp differ");
    else if ((a->predictions == NULL) != (b->predictions == NULL) ||
             (a->predictions && strcmp(a->predictions, b->predictions)))
        snprintf(why, len, "predictions %s vs clean %s", a->predictions ? a->predictions : "NULL",
                 b->predictions ? b->predictions : "NULL");
    else
        return true;
    return false;
}

/* The database and the params cache of a finished run. */
static void check_db(run *R, ref *rf)
{
    for (int m = 0; m < S.nmodels; m++) {
        const char *uid = R->uids[m];
        an_metric met;
        e2e_get_metric(&R->t, uid, &met);
        if (met.status != AN_METRIC_ACTIVE)
            problem(R, "metric %s is %s, expected ACTIVE (message %s)", uid,
                    an_metric_status_name(met.status), met.message ? met.message : "NULL");
        if (met.scored_rowid != R->nrows[m])
            problem(R, "metric %s: scored_rowid %" PRId64 ", expected %ld", uid,
                    met.scored_rowid, R->nrows[m]);
        json_t *params = e2e_stored_params(&met);
        int64_t scored = met.scored_rowid;
        an_metric_clear(&met);

        /* params cache == DB */
        char *cached = NULL;
        int64_t wm = -1, upd = -1;
        const char *key = e2e_params_key(&R->t, uid);
        int rc = an_params_cache_get(R->t.rd, key, &cached, &wm, &upd);
        char where[600];
        if (rc) {
            problem(R, "params cache %s: %d %s", key, rc, an_redis_errstr(R->t.rd));
        } else {
            json_t *cj = e2e_parse(cached, "params cache");
            if (!e2e_json_same(params, cj, where, sizeof where))
                problem(R, "params cache %s differs from the DB: %s", key, where);
            if (wm != scored)
                problem(R, "params cache %s watermark %" PRId64 ", DB scored_rowid %" PRId64,
                        key, wm, scored);
            json_decref(cj);
        }
        free(cached);

        if (R->clean) {
            json_decref(rf->params[m]);
            rf->params[m] = params;
            rf->scored[m] = scored;
            e2e_get_rows(&R->t, uid, 1, R->nrows[m], &rf->rows[m]);
            size_t unprocessed = 0;
            for (size_t i = 0; i < rf->rows[m].n; i++)
                if (!rf->rows[m].v[i].has_raw || !rf->rows[m].v[i].has_score ||
                    !rf->rows[m].v[i].has_display)
                    unprocessed++;
            if (rf->rows[m].n != (size_t)R->nrows[m] || unprocessed)
                problem(R, "clean run, model %d: %zu rows (%zu unprocessed), expected %ld", m,
                        rf->rows[m].n, unprocessed, R->nrows[m]);
            continue;
        }
        if (!e2e_json_same(rf->params[m], params, where, sizeof where)) {
            problem(R, "model %d: anomalyLikelihoodParams differ from the clean run (left "
                       "clean): %s", m, where);
            R->mismatches++;
        }
        if (scored != rf->scored[m])
            problem(R, "model %d: scored_rowid %" PRId64 ", clean %" PRId64, m, scored,
                    rf->scored[m]);
        json_decref(params);

        an_data_rows rows = {0};
        e2e_get_rows(&R->t, uid, 1, R->nrows[m], &rows);
        if (rows.n != rf->rows[m].n)
            problem(R, "model %d: %zu rows, clean %zu", m, rows.n, rf->rows[m].n);
        size_t n = rows.n < rf->rows[m].n ? rows.n : rf->rows[m].n;
        long bad = 0;
        for (size_t i = 0; i < n; i++) {
            char why[400];
            if (!same_row(&rows.v[i], &rf->rows[m].v[i], why, sizeof why)) {
                if (bad < 3)
                    problem(R, "model %d row %" PRId64 ": %s", m, rows.v[i].rowid, why);
                bad++;
            }
        }
        if (bad > 3)
            problem(R, "model %d: %ld rows differ from the clean run", m, bad);
        R->rows_compared += (long)n;
        R->mismatches += bad + (long)(rows.n > n ? rows.n - n : rf->rows[m].n - n);
        an_data_rows_free(&rows);
    }
}

static void check_logs(run *R)
{
    R->claimed = (long)count_in_logs(R, "claimed entry");
    R->republished = (long)count_in_logs(R, "publishing its output that was never published");
    R->dup_acked = (long)count_in_logs(R, "acking the duplicate");
    R->forced = (long)count_in_logs(R, "are still unprocessed: waited defer_max_ms");
    R->rejected = (long)count_in_logs(R, "Rejected inference");
    R->lost_races = (long)count_in_logs(R, "before we could publish it");
    if (R->forced)
        problem(R, "%ld batches were scored out of order after waiting defer_max_ms", R->forced);
    if (R->rejected)
        problem(R, "%ld inference batches were rejected", R->rejected);
    size_t dl = count_in_logs(R, "dead-lettered entry");
    if ((long)dl != R->dead_letters)
        problem(R, "consumers logged %zu dead letters, the stream holds %ld", dl,
                R->dead_letters);
}

/* At the end every consumer has exited: prune deletes them all (nothing is
 * pending, so no target is needed). */
static void final_prune(run *R)
{
    e2e_proc p;
    e2e_run(&R->t, &p, "anomalyctl consumers prune --idle 0", 30000, e2e_bin("anomalyctl"),
            "consumers", "prune", "--idle", "0", NULL);
    if (p.code != 0)
        problem(R, "final consumers prune exited %d: %s %s", p.code, e2e_tail(p.out_path, 2000),
                e2e_tail(p.err_path, 1000));
    an_consumer_info *c = NULL;
    size_t n = 0;
    if (an_xinfo_consumers(R->t.rd, R->t.input, E2E_GROUP, &c, &n) == 0 && n != 0)
        problem(R, "%zu consumers left in the group after the final prune", n);
    an_consumer_info_free(c, n);
}

/* ------------------------------------------------------------ report */

static void table_header(FILE *f)
{
    fprintf(f, "%-6s %3s %5s %9s %6s %7s %11s %10s %12s %12s %13s %10s %6s %6s\n", "run", "K",
            "kills", "new-names", "pruned", "claimed", "republished", "duplicates",
            "lost-outputs", "dead-letters", "rows-compared", "mismatches", "done-s", "wall-s");
}

static void table_row(FILE *f, const run *R)
{
    fprintf(f, "%-6s %3d %5d %9d %6d %7ld %11ld %10ld %12ld %12ld %13ld %10ld %6.1f %6.1f\n",
            R->clean ? "clean" : "faults", R->K, R->kills, R->new_names, R->pruned_consumers,
            R->claimed, R->republished, R->dup_published, R->lost_outputs, R->dead_letters,
            R->rows_compared, R->mismatches, R->done, R->wall);
}

static void report(run **runs, int n)
{
    FILE *outs[2] = {stdout, NULL};
    if (S.table_path)
        outs[1] = fopen(S.table_path, "a");
    for (int j = 0; j < 2; j++) {
        FILE *f = outs[j];
        if (!f)
            continue;
        fprintf(f, "\nfault-injection harness (%s form), seed %" PRIu64
                   " (replay: AN_FAULTS_SEED=%" PRIu64 ")\n",
                S.long_form ? "long" : "short", S.seed, S.seed);
        fprintf(f, "models:");
        for (int m = 0; m < S.nmodels; m++)
            fprintf(f, " %s(rows %ld, batch %ld, live-after %ld)", S.models[m].file,
                    runs[0]->nrows[m], S.models[m].batch, S.models[m].live);
        fprintf(f, "\n");
        table_header(f);
        for (int i = 0; i < n; i++)
            table_row(f, runs[i]);
        fprintf(f,
                "(kills: SIGKILLs; new-names: respawns under a new consumer name; pruned: "
                "consumers deleted by `anomalyctl consumers prune`; claimed: XAUTOCLAIM "
                "takeovers; republished: outputs first published on the redelivery of a batch "
                "committed before a crash or outage; duplicates: output messages repeating a "
                "(model, rows) already published; lost-outputs: input entries without an "
                "output; dead-letters: must be the injected poison entries; rows-compared / "
                "mismatches: metric_data rows, params and output messages against the clean "
                "run; done-s: until the output stopped growing; wall-s: until the last "
                "consumer exited, idle-exit wait included)\n");
        for (int i = 0; i < n; i++) {
            const run *R = runs[i];
            if (!R->clean)
                fprintf(f, "K=%d: restarts: %s; poison injected %d; idle respawns %d; lost "
                           "publish races %ld; duplicates acked %ld; problems %d\n",
                        R->K, R->restarts[0] ? R->restarts : "none", R->npoison,
                        R->idle_respawns, R->lost_races, R->dup_acked, R->nproblems);
        }
        fflush(f);
    }
    if (outs[1])
        fclose(outs[1]);
}

/* ------------------------------------------------------------ the test */

static ref REF;

static void teardown(void)
{
    for (int i = 0; i < NRUNS; i++) {
        run_fini(RUNS[i]);
        free(RUNS[i]);
    }
    NRUNS = 0;
    for (int m = 0; m < MAX_MODELS; m++) {
        an_data_rows_free(&REF.rows[m]);
        json_decref(REF.params[m]);
        json_decref(REF.results[m]);
    }
    memset(&REF, 0, sizeof REF);
}

START_TEST(faults)
{
    load_settings();
    fprintf(stderr, "[faults] %s form, seed %" PRIu64 " (replay with AN_FAULTS_SEED=%" PRIu64
                    "), K =",
            S.long_form ? "long" : "short", S.seed, S.seed);
    for (int i = 0; i < S.nk; i++)
        fprintf(stderr, " %d", S.ks[i]);
    fprintf(stderr, ", %d kills, %d poison, restarts:%s%s\n", S.kills, S.poison,
            S.restart_redis ? " redis" : "", S.restart_pg ? " pg" : "");

    run *all[MAX_K + 1];
    int nall = 0;
    int total_problems = 0;

    run *C = calloc(1, sizeof *C);
    ck_assert_ptr_nonnull(C);
    run_init(C, true, 1, S.seed);
    all[nall++] = C;
    drive(C);
    e2e_reconnect(&C->t, 60000);
    check_streams(C, &REF);
    check_db(C, &REF);
    check_logs(C);
    if (C->dup_published || C->claimed || C->republished)
        problem(C, "the clean run shows faults (duplicates %ld, claims %ld, republished %ld)",
                C->dup_published, C->claimed, C->republished);
    for (int m = 0; m < S.nmodels; m++)
        C->rows_compared += (long)REF.rows[m].n;
    note(C, "clean run done: %ld rows", C->rows_compared);
    ck_assert_msg(C->nproblems == 0, "the clean reference run failed (%d problems; first: %s)",
                  C->nproblems, C->problems[0]);

    for (int i = 0; i < S.nk; i++) {
        run *R = calloc(1, sizeof *R);
        ck_assert_ptr_nonnull(R);
        uint64_t s = S.seed * 1000003u + (uint64_t)S.ks[i] * 7919u + (uint64_t)i;
        run_init(R, false, S.ks[i], s);
        all[nall++] = R;
        drive(R);
        e2e_reconnect(&R->t, 60000);
        check_streams(R, &REF);
        check_db(R, &REF);
        check_logs(R);
        final_prune(R);
        total_problems += R->nproblems;
        if (R->nproblems) {
            fprintf(stderr, "[faults K=%d] %d problems; seed %" PRIu64
                            "; keys prefix %s and logs in %s are kept\n",
                    R->K, R->nproblems, S.seed, R->t.prefix, R->t.tmpdir);
            setenv("AN_E2E_KEEP", "1", 1);
        } else {
            run_fini(R);   /* free the keys and metrics early */
        }
    }
    report(all, nall);
    if (total_problems) {
        for (int i = 0; i < nall; i++)
            for (int k = 0; k < all[i]->nproblems && k < MAX_PROBLEMS; k++)
                fprintf(stderr, "  K=%d: %s\n", all[i]->K, all[i]->problems[k]);
    }
    ck_assert_msg(total_problems == 0,
                  "%d problems in the fault runs (seed %" PRIu64 "; see above)",
                  total_problems, S.seed);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 7200);
    tcase_add_test(tc, faults);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(suite(), CK_NORMAL);
}
