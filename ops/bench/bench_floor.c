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

int main(int argc, char **argv)
{
    const char *params_path = NULL, *consumer = NULL;
    long long idle_ms = 1000;
    bool no_tail = false, every_refresh = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--params") && i + 1 < argc)
            params_path = argv[++i];
        else if (!strcmp(argv[i], "--consumer") && i + 1 < argc)
            consumer = argv[++i];
        else if (!strcmp(argv[i], "--exit-when-idle") && i + 1 < argc)
            idle_ms = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--no-tail"))
            no_tail = true;
        else if (!strcmp(argv[i], "--tail-every-refresh"))
            every_refresh = true;
        else {
            fprintf(stderr, "usage: bench_floor --params FILE [--consumer NAME] "
                            "[--exit-when-idle MS] [--no-tail | --tail-every-refresh]\n");
            return 2;
        }
    }
    if (!params_path)
        die("usage", "--params FILE is required");
    an_config cfg;
    char err[512];
    if (an_config_load(&cfg, NULL, err, sizeof err))
        die("config", err);
    if (consumer && an_config_set(&cfg, "streams", "consumer", consumer, "--consumer", err,
                                  sizeof err))
        die("config", err);
    const char *input = cfg.streams.input, *group = cfg.streams.group;
    const char *me = cfg.streams.consumer;

    char *lk = slurp(params_path);
    size_t mplen = strlen(lk) + 64;
    char *model_params = xcalloc(mplen, 1);
    snprintf(model_params, mplen, "{\"anomalyLikelihoodParams\":%s}", lk);

    an_redis_opts ro = an_redis_opts_default();
    an_redis *rd;
    if (an_redis_connect(cfg.redis.url, &ro, &rd, err, sizeof err))
        die("redis", err);
    an_repo_options po = an_repo_options_from_config(&cfg);
    po.application_name = "bench_floor";
    an_repo *repo = an_repo_new(&po);
    if (!repo || an_repo_connect(repo))
        die("postgres", repo ? an_repo_errstr(repo) : "out of memory");
    if (an_group_create(rd, input, group, "0", NULL))
        die("XGROUP CREATE", an_redis_errstr(rd));

    const size_t cap = (size_t)cfg.streams.read_count;
    ent *all = xcalloc(cap, sizeof *all);
    const char **uids = xcalloc(cap, sizeof *uids);
    char **keys = xcalloc(cap, sizeof *keys);
    char **cached = xcalloc(cap, sizeof *cached);
    int64_t *cached_wm = xcalloc(cap, sizeof *cached_wm);
    an_group_range *ranges = xcalloc(cap, sizeof *ranges);
    an_group_metric_update *mu = xcalloc(cap, sizeof *mu);
    an_publish_entry *pe = xcalloc(cap, sizeof *pe);
    an_out_msg *msgs = xcalloc(cap, sizeof *msgs);
    char (*rowtext)[48] = xcalloc(cap, sizeof *rowtext);
    int *status = xcalloc(cap, sizeof *status);
    const char **ids = xcalloc(cap, sizeof *ids);
    int64_t *counts = xcalloc(cap, sizeof *counts);
    size_t rcap = 0;
    const char **row_uids = NULL;
    an_score_update *upd = NULL;
    an_group_read g;
    memset(&g, 0, sizeof g);

    const double score = 0.5;
    const int64_t disp = an_display_value(score, true);
    int64_t n_entries = 0, n_rows = 0, n_groups = 0, retries = 0, n_tail = 0;
    const size_t tail_n = (size_t)cfg.anomaly_likelihood.statistics_sample_size;
    an_sample *tail = xcalloc(tail_n, sizeof *tail);
    const int64_t refresh = cfg.anomaly_likelihood.statistics_refresh_rate;
    int64_t t_start = -1, idle_since = mono_ms();
    uid_set windowed = {0};

    for (;;) {
        an_entry_list l;
        memset(&l, 0, sizeof l);
        double tp = mono_us();
        int rc = an_read_group(rd, input, group, me, ">", cap, 100, &l);
        if (rc == AN_ENOGROUP)
            rc = an_group_create(rd, input, group, "0", NULL);
        if (rc == AN_ETRANSIENT) {
            /* server restarted under us (shared stack): wait and go on */
            usleep(100000);
            an_entry_list_free(&l);
            continue;
        }
        if (rc)
            die("XREADGROUP", an_redis_errstr(rd));
        if (l.n == 0) {
            an_entry_list_free(&l);
            if (mono_ms() - idle_since >= idle_ms)
                break;
            continue;
        }
        if (t_start < 0)
            t_start = mono_ms();
        g_ph[PH_READ] += mono_us() - tp;

        /* pick model and rowids */
        size_t nall = 0;
        for (size_t i = 0; i < l.n; i++) {
            const an_field *m = an_entry_field(&l.v[i], "model");
            const an_field *b = an_entry_field(&l.v[i], "batch");
            int64_t f, la;
            if (!m || !b || !pick_rowids(b->value, b->value_len, &f, &la)) {
                const char *id = l.v[i].id;
                an_xack(rd, input, group, &id, 1, NULL);
                continue;
            }
            all[nall++] = (ent){.e = &l.v[i], .uid = m->value, .first = f, .last = la};
        }
        /* Groups as the service forms them: entries are added until the
         * group holds AN_SERVICE_GROUP_MAX_ROWS rows (src/service.c). */
        for (size_t s0 = 0, s1; s0 < nall; s0 = s1) {
            int64_t grows = all[s0].last - all[s0].first + 1;
            for (s1 = s0 + 1; s1 < nall && grows < AN_SERVICE_GROUP_MAX_ROWS; s1++)
                grows += all[s1].last - all[s1].first + 1;
            ent *ents = all + s0;
            size_t ne = s1 - s0;
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
                ranges[i] = (an_group_range){.uid = ents[i].uid,
                                             .first = ents[i].first,
                                             .last = ents[i].last,
                                             .entry_id = ents[i].e->id};
            }
            for (size_t u = 0; u < nu; u++) {
                free(keys[u]);
                if (asprintf(&keys[u], "%s%s", cfg.streams.params_prefix, uids[u]) < 0)
                    die("memory", "out of memory");
            }

            /* the params hashes: one pipelined round trip */
            tp = mono_us();
            while ((rc = an_params_cache_get_many(rd, (const char *const *)keys, nu, cached,
                                                  cached_wm, NULL)) == AN_ETRANSIENT)
                usleep(100000);
            if (rc)
                die("HMGET", an_redis_errstr(rd));
            for (size_t u = 0; u < nu; u++) {
                free(cached[u]);
                cached[u] = NULL;
            }
            g_ph[PH_HMGET] += mono_us() - tp;

            /* the transaction: two round trips, retried whole when transient */
            int64_t updated = 0;
            for (int attempt = 1;; attempt++) {
                int64_t t0 = an_repo_now_ms(repo);
                tp = mono_us();
                rc = an_repo_group_read(repo, uids, nu, ranges, ne, &g);
                g_ph[PH_GREAD] += mono_us() - tp;
                /* the processing attempts of the group's entries (attempts.lua) */
                tp = mono_us();
                if (!rc) {
                    bool split = false;
                    for (size_t i = 0; i < ne; i++)
                        ids[i] = ents[i].e->id;
                    int arc = an_attempts_begin(rd, input, ids, ne, ne > 1, counts, &split);
                    if (arc)
                        die("attempts", an_redis_errstr(rd));
                }
                g_ph[PH_ATTEMPTS] += mono_us() - tp;
                /* The helper's sample query, at the rate the live and catch-up
                 * regimes issue it: a 1-row batch re-estimates every
                 * statistics_refresh_rate (24) rows, a multi-row batch reads
                 * the tail once per call. */
                tp = mono_us();
                for (size_t i = 0; !rc && !no_tail && i < ne; i++) {
                    bool one = ents[i].first == ents[i].last;
                    if (one && ents[i].first % refresh != 0)
                        continue;
                    if (!every_refresh && uid_set_has(&windowed, ents[i].uid))
                        continue; /* anomalyd answers it from the metric's window */
                    size_t got = 0;
                    rc = an_repo_processed_tail(repo, ents[i].uid, ents[i].first, tail_n, tail,
                                                &got);
                    n_tail++;
                }
                g_ph[PH_TAIL] += mono_us() - tp;
                if (!rc) {
                    if (g.rows.n > rcap) {
                        rcap = g.rows.n * 2;
                        free(row_uids);
                        free(upd);
                        row_uids = xcalloc(rcap, sizeof *row_uids);
                        upd = xcalloc(rcap, sizeof *upd);
                    }
                    for (size_t r = 0; r < g.rows.n; r++) {
                        row_uids[r] = ranges[g.row_range[r]].uid;
                        upd[r] = (an_score_update){.rowid = g.rows.v[r].rowid,
                                                   .raw = score,
                                                   .anomaly_score = score,
                                                   .display_value = disp,
                                                   .predictions = "null"};
                    }
                    for (size_t u = 0; u < nu; u++)
                        mu[u] = (an_group_metric_update){.uid = uids[u],
                                                         .set_model_params = true,
                                                         .model_params = model_params,
                                                         .watermark = 0,
                                                         .status = -1};
                    for (size_t i = 0; i < ne; i++) {
                        an_group_metric_update *x = &mu[ents[i].u];
                        if (ents[i].last > x->watermark) {
                            x->watermark = ents[i].last;
                            x->source = ents[i].e->id;
                        }
                    }
                    tp = mono_us();
                    rc = an_repo_group_write_commit(repo, row_uids, upd, g.rows.n, mu, nu,
                                                    ranges, ne, &updated);
                    g_ph[PH_GWRITE] += mono_us() - tp;
                }
                if (!rc)
                    break;
                if (rc != AN_ETRANSIENT)
                    die("group transaction", an_repo_errstr(repo));
                retries++;
                if (an_repo_retry_policy(repo, attempt, t0))
                    die("group transaction", an_repo_errstr(repo));
            }

            /* publish + cache + ack: one Lua call */
            size_t nk = 0;
            for (size_t i = 0; i < ne; i++) {
                const body *bd = body_for((size_t)(ents[i].last - ents[i].first + 1),
                                          cfg.streams.output_encoding);
                snprintf(rowtext[i], sizeof rowtext[i], "%" PRId64 "-%" PRId64, ents[i].first,
                         ents[i].last);
                msgs[i] = (an_out_msg){.data_type = AN_DATATYPE_INFERENCE,
                                       .model = ents[i].uid,
                                       .rows = rowtext[i],
                                       .encoding = cfg.streams.output_encoding,
                                       .body = bd->p,
                                       .body_len = bd->len};
                bool carries = mu[ents[i].u].source == ents[i].e->id;
                pe[i] = (an_publish_entry){.entry_id = ents[i].e->id,
                                           .msgs = &msgs[i],
                                           .nmsgs = 1,
                                           .key_index = carries ? ents[i].u + 1 : 0,
                                           .params_json = carries ? lk : NULL,
                                           .watermark = ents[i].last};
                nk += carries;
            }
            an_publish_group pg = {.input = input,
                                   .group = group,
                                   .owner = me,
                                   .output = cfg.streams.output,
                                   .output_maxlen = cfg.streams.output_maxlen,
                                   .keys = (const char *const *)keys,
                                   .nkeys = nu,
                                   .entries = pe,
                                   .nentries = ne};
            tp = mono_us();
            while ((rc = an_publish_many(rd, &pg, status)) == AN_ETRANSIENT) {
                retries++;
                usleep(100000);
            }
            if (rc)
                die("publish_many", an_redis_errstr(rd));
            /* committed: the metrics whose tail was read now have a window */
            for (size_t i = 0; !every_refresh && !no_tail && i < ne; i++)
                if (ents[i].first == ents[i].last ? ents[i].first % refresh == 0 : true)
                    uid_set_add(&windowed, ents[i].uid);
            g_ph[PH_PUBLISH] += mono_us() - tp;
            n_entries += (int64_t)ne;
            n_rows += updated;
            n_groups++;
        }
        an_entry_list_free(&l);
        idle_since = mono_ms();
    }
    double wall = t_start < 0 ? 0.0 : (double)(idle_since - t_start) / 1000.0;
    printf("floor: entries=%" PRId64 " rows=%" PRId64 " groups=%" PRId64 " tail_reads=%" PRId64
           " retries=%" PRId64 " wall_s=%.3f\n",
           n_entries, n_rows, n_groups, n_tail, retries, wall);
    printf("floor: ms per group:");
    for (int i = 0; i < NPH; i++)
        printf(" %s=%.2f", PH_NAME[i], n_groups ? g_ph[i] / 1000.0 / (double)n_groups : 0.0);
    printf("\n");
    an_group_read_free(&g);
    an_repo_free(repo);
    an_redis_free(rd);
    an_config_free(&cfg);
    return 0;
}
