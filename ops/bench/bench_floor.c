/*
 * bench_floor.c: the floor of ops/bench.sh: the PostgreSQL and Redis work of
 * anomalyd's group commit, without decoding or scoring.
 *
 *   bench_floor --params FILE [--consumer NAME] [--exit-when-idle MS]
 *               [--no-tail | --tail-every-refresh]
 *
 * Configuration as anomalyd (an_config_load with no file: the ANOMALYD_*
 * environment, e.g. ANOMALYD_STREAMS_INPUT / _OUTPUT / _PARAMS_PREFIX /
 * _READ_COUNT, ANOMALYD_REDIS_URL, ANOMALYD_PG_DSN).
 *
 * Per group, the same calls the service makes, in the same order:
 *   XREADGROUP COUNT read_count (an_read_group, ">"); the entries read form
 *   groups as in the service: a group stops growing once it holds
 *   AN_SERVICE_GROUP_MAX_ROWS rows (4096: three 1440-row batches)
 *   one pipelined HMGET of the group's params hashes (an_params_cache_get_many)
 *   an_repo_group_read: BEGIN; metrics FOR UPDATE in uid order; the rows of
 *     every batch; every batch's predecessor row state (one round trip)
 *   an_attempts_begin: the processing attempt of every entry (attempts.lua)
 *   an_repo_group_write_commit: every row of every metric in one UPDATE ...
 *     FROM unnest, every metric's model_params / watermark / source and
 *     every entry's scored_entry row in the same statement; COMMIT (one
 *     round trip)
 *   an_publish_many: one output entry per input entry, the params hash of
 *     each metric refreshed once (by its last entry), XACK (and the attempt
 *     fields deleted): one Lua call.
 * What it leaves out is anomalyd's own CPU work: the entry is not decoded
 * (the model field is taken as is and the first/last rowids are picked out
 * of the batch text), the scores are a fixed 0.5, the params written are
 * the fixed text of FILE (a real anomalyLikelihoodParams, wrapped as
 * {"anomalyLikelihoodParams": ...} for model_params, as the service stores
 * it), and the output body is encoded once per batch size and reused.
 * The one query scoring adds, the helper's tail read at a re-estimate
 * (an_repo_processed_tail, up to statistics_sample_size rows, inside the
 * transaction), is issued where anomalyd still needs it once its sample
 * windows exist ([anomaly_likelihood] sample_window_bytes): at the first
 * re-estimate of each metric the process sees (a 1-row batch whose rowid
 * is a multiple of 24, statistics_refresh_rate, or any multi-row batch),
 * which builds the metric's window; later re-estimates are answered from
 * memory. --tail-every-refresh issues it at every re-estimate (anomalyd
 * without windows, or the helper as the original runs it); --no-tail
 * leaves it out.
 *
 * At exit: "floor: entries=... rows=... groups=... tail_reads=... wall_s=..."
 * and the time per group of each step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "an_codec.h"
#include "an_config.h"
#include "an_likelihood.h"
#include "an_repo.h"
#include "an_repo_group.h"
#include "an_service.h"
#include "an_streams.h"

#define BENCH_PROG "bench_floor"
#define BENCH_UID "bench:f:L00000"
#include "bench_common.h"

static double mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Phase times (us), printed at exit: where a group's time goes. */
enum { PH_READ, PH_HMGET, PH_GREAD, PH_ATTEMPTS, PH_TAIL, PH_GWRITE, PH_PUBLISH, NPH };
static const char *const PH_NAME[NPH] = {"xreadgroup", "hmget",      "group_read",
                                         "attempts",   "tail_reads", "group_write_commit",
                                         "publish_many"};
static double g_ph[NPH];

/* ---- the group ---- */

typedef struct ent {
    const an_entry *e;
    const char *uid;
    int64_t first, last;
    size_t u;      /* index into uids */
} ent;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The metrics whose sample window anomalyd would hold: a string set
 * (open addressing, grown at half load). */
typedef struct uid_set {
    char **v;
    size_t cap, n;
} uid_set;

static size_t uid_slot(const uid_set *u, const char *uid)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = uid; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    size_t i = (size_t)h & (u->cap - 1);
    while (u->v[i] && strcmp(u->v[i], uid))
        i = (i + 1) & (u->cap - 1);
    return i;
}

static bool uid_set_has(const uid_set *u, const char *uid)
{
    return u->cap && u->v[uid_slot(u, uid)];
}

static void uid_set_add(uid_set *u, const char *uid)
{
    if (2 * (u->n + 1) > u->cap) {
        uid_set old = *u;
        u->cap = old.cap ? old.cap * 2 : 1024;
        u->v = xcalloc(u->cap, sizeof *u->v);
        for (size_t i = 0; i < old.cap; i++)
            if (old.v[i])
                u->v[uid_slot(u, old.v[i])] = old.v[i];
        free(old.v);
    }
    size_t i = uid_slot(u, uid);
    if (!u->v[i]) {
        u->v[i] = strdup(uid);
        if (!u->v[i])
            die("uid set", "out of memory");
        u->n++;
    }
}

/* The command line. */
typedef struct floor_args {
    const char *params_path, *consumer;
    long long idle_ms;
    bool no_tail, every_refresh;
} floor_args;

/* Everything one run holds: connections, the per-group buffers (room for
 * read_count entries) and the tallies. */
typedef struct floor_ctx {
    floor_args a;
    an_config cfg;
    const char *input, *group, *me;
    char *lk, *model_params; /* the params text and its model_params wrapping */
    an_redis *rd;
    an_repo *repo;
    size_t cap;
    ent *all;
    const char **uids;
    char **keys;
    char **cached;
    int64_t *cached_wm;
    an_group_range *ranges;
    an_group_metric_update *mu;
    an_publish_entry *pe;
    an_out_msg *msgs;
    char (*rowtext)[48];
    int *status;
    const char **ids;
    int64_t *counts;
    size_t rcap;
    const char **row_uids;
    an_score_update *upd;
    an_group_read g;
    double score;
    int64_t disp;
    int64_t n_entries, n_rows, n_groups, retries, n_tail;
    size_t tail_n;
    an_sample *tail;
    int64_t refresh;
    int64_t t_start, idle_since;
    uid_set windowed;
} floor_ctx;

/* Fills a from argv; exits with status 2 on a usage error. */
static void parse_args(int argc, char **argv, floor_args *a)
{
    *a = (floor_args){.idle_ms = 1000};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--params") && i + 1 < argc)
            a->params_path = argv[++i];
        else if (!strcmp(argv[i], "--consumer") && i + 1 < argc)
            a->consumer = argv[++i];
        else if (!strcmp(argv[i], "--exit-when-idle") && i + 1 < argc)
            a->idle_ms = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--no-tail"))
            a->no_tail = true;
        else if (!strcmp(argv[i], "--tail-every-refresh"))
            a->every_refresh = true;
        else {
            fprintf(stderr, "usage: bench_floor --params FILE [--consumer NAME] "
                            "[--exit-when-idle MS] [--no-tail | --tail-every-refresh]\n");
            exit(2);
        }
    }
    if (!a->params_path)
        die("usage", "--params FILE is required");
}

/* Configuration, params text, connections and the input group; dies on
 * failure. */
static void floor_connect(floor_ctx *c)
{
    char err[512];
    if (an_config_load(&c->cfg, NULL, err, sizeof err))
        die("config", err);
    if (c->a.consumer && an_config_set(&c->cfg, "streams", "consumer", c->a.consumer,
                                       "--consumer", err, sizeof err))
        die("config", err);
    c->input = c->cfg.streams.input;
    c->group = c->cfg.streams.group;
    c->me = c->cfg.streams.consumer;

    c->lk = slurp(c->a.params_path);
    size_t mplen = strlen(c->lk) + 64;
    c->model_params = xcalloc(mplen, 1);
    snprintf(c->model_params, mplen, "{\"anomalyLikelihoodParams\":%s}", c->lk);

    an_redis_opts ro = an_redis_opts_default();
    if (an_redis_connect(c->cfg.redis.url, &ro, &c->rd, err, sizeof err))
        die("redis", err);
    an_repo_options po = an_repo_options_from_config(&c->cfg);
    po.application_name = "bench_floor";
    c->repo = an_repo_new(&po);
    if (!c->repo || an_repo_connect(c->repo))
        die("postgres", c->repo ? an_repo_errstr(c->repo) : "out of memory");
    if (an_group_create(c->rd, c->input, c->group, "0", NULL))
        die("XGROUP CREATE", an_redis_errstr(c->rd));
}

/* The per-group buffers and the run's constants. */
static void floor_alloc(floor_ctx *c)
{
    const size_t cap = c->cap = (size_t)c->cfg.streams.read_count;
    c->all = xcalloc(cap, sizeof *c->all);
    c->uids = xcalloc(cap, sizeof *c->uids);
    c->keys = xcalloc(cap, sizeof *c->keys);
    c->cached = xcalloc(cap, sizeof *c->cached);
    c->cached_wm = xcalloc(cap, sizeof *c->cached_wm);
    c->ranges = xcalloc(cap, sizeof *c->ranges);
    c->mu = xcalloc(cap, sizeof *c->mu);
    c->pe = xcalloc(cap, sizeof *c->pe);
    c->msgs = xcalloc(cap, sizeof *c->msgs);
    c->rowtext = xcalloc(cap, sizeof *c->rowtext);
    c->status = xcalloc(cap, sizeof *c->status);
    c->ids = xcalloc(cap, sizeof *c->ids);
    c->counts = xcalloc(cap, sizeof *c->counts);
    memset(&c->g, 0, sizeof c->g);
    c->score = 0.5;
    c->disp = an_display_value(c->score, true);
    c->tail_n = (size_t)c->cfg.anomaly_likelihood.statistics_sample_size;
    c->tail = xcalloc(c->tail_n, sizeof *c->tail);
    c->refresh = c->cfg.anomaly_likelihood.statistics_refresh_rate;
    c->t_start = -1;
    c->idle_since = mono_ms();
}

/* XREADGROUP into l. 1: entries read; 0: none; -1: the server is
 * restarting, read again (l is empty and freed unless 1). */
static int read_entries(floor_ctx *c, an_entry_list *l)
{
    memset(l, 0, sizeof *l);
    double tp = mono_us();
    int rc = an_read_group(c->rd, c->input, c->group, c->me, ">", c->cap, 100, l);
    if (rc == AN_ENOGROUP)
        rc = an_group_create(c->rd, c->input, c->group, "0", NULL);
    if (rc == AN_ETRANSIENT) {
        /* server restarted under us (shared stack): wait and go on */
        usleep(100000);
        an_entry_list_free(l);
        return -1;
    }
    if (rc)
        die("XREADGROUP", an_redis_errstr(c->rd));
    if (l->n == 0) {
        an_entry_list_free(l);
        return 0;
    }
    if (c->t_start < 0)
        c->t_start = mono_ms();
    g_ph[PH_READ] += mono_us() - tp;
    return 1;
}

/* The model and rowids of every entry of l into c->all (entries without
 * them are acked and left out). Returns how many. */
static size_t pick_entries(floor_ctx *c, const an_entry_list *l)
{
    size_t nall = 0;
    for (size_t i = 0; i < l->n; i++) {
        const an_field *m = an_entry_field(&l->v[i], "model");
        const an_field *b = an_entry_field(&l->v[i], "batch");
        int64_t f, la;
        if (!m || !b || !pick_rowids(b->value, b->value_len, &f, &la)) {
            const char *id = l->v[i].id;
            an_xack(c->rd, c->input, c->group, &id, 1, NULL);
            continue;
        }
        c->all[nall++] = (ent){.e = &l->v[i], .uid = m->value, .first = f, .last = la};
    }
    return nall;
}

/* The group's distinct uids, sorted, into c->uids (each entry's index in
 * ents[].u), its ranges and its params keys. Returns the uid count. */
static size_t group_uids(floor_ctx *c, ent *ents, size_t ne)
{
    const char **uids = c->uids;
    size_t nu = 0;
    for (size_t i = 0; i < ne; i++)
        uids[nu++] = ents[i].uid;
    qsort(uids, nu, sizeof *uids, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < nu; i++)
        if (k == 0 || strcmp(uids[k - 1], uids[i]))
            uids[k++] = uids[i];
    nu = k;
    for (size_t i = 0; i < ne; i++) {
        const char **hit = bsearch(&ents[i].uid, uids, nu, sizeof *uids, cmp_str);
        ents[i].u = (size_t)(hit - uids);
        c->ranges[i] = (an_group_range){.uid = ents[i].uid,
                                        .first = ents[i].first,
                                        .last = ents[i].last,
                                        .entry_id = ents[i].e->id};
    }
    for (size_t u = 0; u < nu; u++) {
        free(c->keys[u]);
        if (asprintf(&c->keys[u], "%s%s", c->cfg.streams.params_prefix, uids[u]) < 0)
            die("memory", "out of memory");
    }
    return nu;
}

/* The params hashes of the group's nu metrics: one pipelined round trip. */
static void fetch_params(floor_ctx *c, size_t nu)
{
    int rc;
    double tp = mono_us();
    while ((rc = an_params_cache_get_many(c->rd, (const char *const *)c->keys, nu, c->cached,
                                          c->cached_wm, NULL)) == AN_ETRANSIENT)
        usleep(100000);
    if (rc)
        die("HMGET", an_redis_errstr(c->rd));
    for (size_t u = 0; u < nu; u++) {
        free(c->cached[u]);
        c->cached[u] = NULL;
    }
    g_ph[PH_HMGET] += mono_us() - tp;
}

/* The processing attempts of the group's entries (attempts.lua). */
static void begin_attempts(floor_ctx *c, const ent *ents, size_t ne)
{
    bool split = false;
    for (size_t i = 0; i < ne; i++)
        c->ids[i] = ents[i].e->id;
    int arc = an_attempts_begin(c->rd, c->input, c->ids, ne, ne > 1, c->counts, &split);
    if (arc)
        die("attempts", an_redis_errstr(c->rd));
}

/* The helper's sample query, at the rate the live and catch-up regimes
 * issue it: a 1-row batch re-estimates every statistics_refresh_rate (24)
 * rows, a multi-row batch reads the tail once per call. 0 or the first
 * failure's code. */
static int read_tails(floor_ctx *c, const ent *ents, size_t ne)
{
    int rc = 0;
    for (size_t i = 0; !rc && !c->a.no_tail && i < ne; i++) {
        bool one = ents[i].first == ents[i].last;
        if (one && ents[i].first % c->refresh != 0)
            continue;
        if (!c->a.every_refresh && uid_set_has(&c->windowed, ents[i].uid))
            continue; /* anomalyd answers it from the metric's window */
        size_t got = 0;
        rc = an_repo_processed_tail(c->repo, ents[i].uid, ents[i].first, c->tail_n, c->tail,
                                    &got);
        c->n_tail++;
    }
    return rc;
}

/* The fixed scores of every row read and the metric updates (watermark and
 * source: each metric's last entry), written and committed. 0 or the
 * failure's code; *updated: rows written. */
static int write_group(floor_ctx *c, const ent *ents, size_t ne, size_t nu, int64_t *updated)
{
    an_group_read *g = &c->g;
    if (g->rows.n > c->rcap) {
        c->rcap = g->rows.n * 2;
        free(c->row_uids);
        free(c->upd);
        c->row_uids = xcalloc(c->rcap, sizeof *c->row_uids);
        c->upd = xcalloc(c->rcap, sizeof *c->upd);
    }
    for (size_t r = 0; r < g->rows.n; r++) {
        c->row_uids[r] = c->ranges[g->row_range[r]].uid;
        c->upd[r] = (an_score_update){.rowid = g->rows.v[r].rowid,
                                      .raw = c->score,
                                      .anomaly_score = c->score,
                                      .display_value = c->disp,
                                      .predictions = "null"};
    }
    for (size_t u = 0; u < nu; u++)
        c->mu[u] = (an_group_metric_update){.uid = c->uids[u],
                                            .set_model_params = true,
                                            .model_params = c->model_params,
                                            .watermark = 0,
                                            .status = -1};
    for (size_t i = 0; i < ne; i++) {
        an_group_metric_update *x = &c->mu[ents[i].u];
        if (ents[i].last > x->watermark) {
            x->watermark = ents[i].last;
            x->source = ents[i].e->id;
        }
    }
    double tp = mono_us();
    int rc = an_repo_group_write_commit(c->repo, c->row_uids, c->upd, g->rows.n, c->mu, nu,
                                        c->ranges, ne, updated);
    g_ph[PH_GWRITE] += mono_us() - tp;
    return rc;
}

/* The transaction: two round trips, retried whole when transient. Returns
 * the rows written; dies on a lasting failure. */
static int64_t run_transaction(floor_ctx *c, const ent *ents, size_t ne, size_t nu)
{
    int64_t updated = 0;
    for (int attempt = 1;; attempt++) {
        int64_t t0 = an_repo_now_ms(c->repo);
        double tp = mono_us();
        int rc = an_repo_group_read(c->repo, c->uids, nu, c->ranges, ne, &c->g);
        g_ph[PH_GREAD] += mono_us() - tp;
        tp = mono_us();
        if (!rc)
            begin_attempts(c, ents, ne);
        g_ph[PH_ATTEMPTS] += mono_us() - tp;
        tp = mono_us();
        if (!rc)
            rc = read_tails(c, ents, ne);
        g_ph[PH_TAIL] += mono_us() - tp;
        if (!rc)
            rc = write_group(c, ents, ne, nu, &updated);
        if (!rc)
            return updated;
        if (rc != AN_ETRANSIENT)
            die("group transaction", an_repo_errstr(c->repo));
        c->retries++;
        if (an_repo_retry_policy(c->repo, attempt, t0))
            die("group transaction", an_repo_errstr(c->repo));
    }
}

/* Publish + cache + ack of the group: one Lua call. */
static void publish_group(floor_ctx *c, const ent *ents, size_t ne, size_t nu)
{
    an_encoding enc = c->cfg.streams.output_encoding;
    for (size_t i = 0; i < ne; i++) {
        const body *bd = body_for((size_t)(ents[i].last - ents[i].first + 1), enc);
        snprintf(c->rowtext[i], sizeof c->rowtext[i], "%" PRId64 "-%" PRId64, ents[i].first,
                 ents[i].last);
        c->msgs[i] = (an_out_msg){.data_type = AN_DATATYPE_INFERENCE,
                                  .model = ents[i].uid,
                                  .rows = c->rowtext[i],
                                  .encoding = enc,
                                  .body = bd->p,
                                  .body_len = bd->len};
        bool carries = c->mu[ents[i].u].source == ents[i].e->id;
        c->pe[i] = (an_publish_entry){.entry_id = ents[i].e->id,
                                      .msgs = &c->msgs[i],
                                      .nmsgs = 1,
                                      .key_index = carries ? ents[i].u + 1 : 0,
                                      .params_json = carries ? c->lk : NULL,
                                      .watermark = ents[i].last};
    }
    an_publish_group pg = {.input = c->input,
                           .group = c->group,
                           .owner = c->me,
                           .output = c->cfg.streams.output,
                           .output_maxlen = c->cfg.streams.output_maxlen,
                           .keys = (const char *const *)c->keys,
                           .nkeys = nu,
                           .entries = c->pe,
                           .nentries = ne};
    double tp = mono_us();
    int rc;
    while ((rc = an_publish_many(c->rd, &pg, c->status)) == AN_ETRANSIENT) {
        c->retries++;
        usleep(100000);
    }
    if (rc)
        die("publish_many", an_redis_errstr(c->rd));
    /* committed: the metrics whose tail was read now have a window */
    for (size_t i = 0; !c->a.every_refresh && !c->a.no_tail && i < ne; i++)
        if (ents[i].first == ents[i].last ? ents[i].first % c->refresh == 0 : true)
            uid_set_add(&c->windowed, ents[i].uid);
    g_ph[PH_PUBLISH] += mono_us() - tp;
}

/* One group (ne entries from ents), as the service commits it. */
static void process_group(floor_ctx *c, ent *ents, size_t ne)
{
    size_t nu = group_uids(c, ents, ne);
    fetch_params(c, nu);
    int64_t updated = run_transaction(c, ents, ne, nu);
    publish_group(c, ents, ne, nu);
    c->n_entries += (int64_t)ne;
    c->n_rows += updated;
    c->n_groups++;
}

/* The entries of l in groups as the service forms them: entries are added
 * until the group holds AN_SERVICE_GROUP_MAX_ROWS rows (src/service.c). */
static void process_entries(floor_ctx *c, const an_entry_list *l)
{
    size_t nall = pick_entries(c, l);
    for (size_t s0 = 0, s1; s0 < nall; s0 = s1) {
        int64_t grows = c->all[s0].last - c->all[s0].first + 1;
        for (s1 = s0 + 1; s1 < nall && grows < AN_SERVICE_GROUP_MAX_ROWS; s1++)
            grows += c->all[s1].last - c->all[s1].first + 1;
        process_group(c, c->all + s0, s1 - s0);
    }
}

/* The summary lines. */
static void print_summary(const floor_ctx *c)
{
    double wall = c->t_start < 0 ? 0.0 : (double)(c->idle_since - c->t_start) / 1000.0;
    printf("floor: entries=%" PRId64 " rows=%" PRId64 " groups=%" PRId64 " tail_reads=%" PRId64
           " retries=%" PRId64 " wall_s=%.3f\n",
           c->n_entries, c->n_rows, c->n_groups, c->n_tail, c->retries, wall);
    printf("floor: ms per group:");
    for (int i = 0; i < NPH; i++)
        printf(" %s=%.2f", PH_NAME[i],
               c->n_groups ? g_ph[i] / 1000.0 / (double)c->n_groups : 0.0);
    printf("\n");
}

int main(int argc, char **argv)
{
    static floor_ctx c; /* large; zeroed */
    parse_args(argc, argv, &c.a);
    floor_connect(&c);
    floor_alloc(&c);
    for (;;) {
        an_entry_list l;
        int got = read_entries(&c, &l);
        if (got < 0)
            continue;
        if (got == 0) {
            if (mono_ms() - c.idle_since >= c.a.idle_ms)
                break;
            continue;
        }
        process_entries(&c, &l);
        an_entry_list_free(&l);
        c.idle_since = mono_ms();
    }
    print_summary(&c);
    an_group_read_free(&c.g);
    an_repo_free(c.repo);
    an_redis_free(c.rd);
    an_config_free(&c.cfg);
    return 0;
}
