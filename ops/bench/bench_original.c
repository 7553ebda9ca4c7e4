/*
 * bench_original.c: the original htmengine Anomaly Service's database and
 * bus pattern (docs/htmengine.md §1.4), as the baseline of ops/bench.sh: one
 * transaction per entry, one UPDATE per row.
 *
 *   bench_original --params FILE [--consumer NAME] [--exit-when-idle MS]
 *
 * Configuration as anomalyd (ANOMALYD_* environment, no file). Reads with
 * XREADGROUP COUNT read_count (the reading is not what is compared), then
 * for each entry, as the original did:
 *   SELECT <metric> FROM metric WHERE uid = $1             (getMetric, autocommit)
 *   SELECT <rows> FROM metric_data WHERE uid AND rowid BETWEEN first AND last
 *                                                           (autocommit)
 *   the likelihood helper's reads (docs/htmengine.md §2.3, autocommit):
 *     SELECT count(*) ... raw_anomaly_score IS NOT NULL   when the metric has
 *       no anomalyLikelihoodParams yet (initialisation)
 *     SELECT rowid, timestamp, metric_value, raw_anomaly_score ... ORDER BY
 *       rowid DESC LIMIT statistics_sample_size           at a re-estimate:
 *       a 1-row batch whose rowid is a multiple of statistics_refresh_rate
 *       (24), and every multi-row batch
 *   BEGIN
 *   UPDATE metric_data SET raw_anomaly_score, anomaly_score, display_value,
 *       multi_step_best_predictions WHERE uid = $1 AND rowid = $2   (per row)
 *   SELECT status FROM metric WHERE uid = $1 FOR UPDATE
 *   UPDATE metric SET model_params = $2 WHERE uid = $1
 *   COMMIT
 *   XADD output (the same fields and body as the floor's) and XACK the
 *   input entry, pipelined in one round trip.
 * Each statement is a prepared statement and one round trip, as with the
 * original's driver. Like the floor it neither decodes nor scores (fixed
 * scores 0.5, the params text of FILE, one output body per batch size), so
 * it is the original pattern's cost with no CPU work of its own: a
 * conservative baseline for anomalyd (which does decode and score).
 *
 * At exit: "original: entries=... rows=... wall_s=...".
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

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "an_codec.h"
#include "an_config.h"
#include "an_likelihood.h"
#include "an_streams.h"

#define BENCH_PROG "bench_original"
#define BENCH_UID "bench:o:L00000"
#include "bench_common.h"

/* ---- PostgreSQL ---- */

static const struct {
    const char *name, *sql;
    int np;
} STMTS[] = {
    {"o_metric",
     "SELECT uid, datasource, name, description, server, location, parameters, status, "
     "message, model_params, last_rowid FROM metric WHERE uid = $1",
     1},
    {"o_rows",
     "SELECT rowid, extract(epoch FROM timestamp), metric_value, raw_anomaly_score, "
     "anomaly_score, display_value, multi_step_best_predictions FROM metric_data "
     "WHERE uid = $1 AND rowid >= $2::bigint AND rowid <= $3::bigint ORDER BY rowid ASC",
     3},
    {"o_update_row",
     "UPDATE metric_data SET raw_anomaly_score = $3, anomaly_score = $4, display_value = $5, "
     "multi_step_best_predictions = $6 WHERE uid = $1 AND rowid = $2",
     6},
    {"o_lock", "SELECT status FROM metric WHERE uid = $1 FOR UPDATE", 1},
    {"o_count",
     "SELECT count(*) FROM metric_data WHERE uid = $1 AND raw_anomaly_score IS NOT NULL", 1},
    {"o_tail",
     "SELECT rowid, timestamp, metric_value, raw_anomaly_score FROM metric_data "
     "WHERE uid = $1 AND raw_anomaly_score IS NOT NULL AND rowid < $2::bigint "
     "ORDER BY rowid DESC LIMIT $3::bigint",
     3},
    {"o_params", "UPDATE metric SET model_params = $2 WHERE uid = $1", 2},
};

static PGconn *g_pg;
static const char *g_dsn;

static bool pg_connect(void)
{
    if (g_pg)
        PQfinish(g_pg);
    g_pg = PQconnectdb(g_dsn);
    if (PQstatus(g_pg) != CONNECTION_OK)
        return false;
    PGresult *r = PQexec(g_pg, "SET TimeZone = 'UTC'; SET application_name = 'bench_original'");
    PQclear(r);
    for (size_t i = 0; i < sizeof STMTS / sizeof STMTS[0]; i++) {
        r = PQprepare(g_pg, STMTS[i].name, STMTS[i].sql, STMTS[i].np, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok)
            die("prepare", PQerrorMessage(g_pg));
    }
    return true;
}

/* One statement; false on error (the entry's transaction is then redone). */
static bool run(const char *name, int np, const char *const *p, PGresult **out)
{
    PGresult *r = PQexecPrepared(g_pg, name, np, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "bench_original: %s: %s", name, PQerrorMessage(g_pg));
        PQclear(r);
        return false;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return true;
}

static bool exec(const char *sql)
{
    PGresult *r = PQexec(g_pg, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "bench_original: %s: %s", sql, PQerrorMessage(g_pg));
    PQclear(r);
    return ok;
}

static int64_t g_refresh = 24;    /* statistics_refresh_rate */
static char g_sample_size[32];    /* statistics_sample_size */
static int64_t g_counts, g_tails;

/* Whether model_params (as read by getMetric) holds no likelihood params
 * yet: the helper then counts the processed rows (docs/htmengine.md §2.3.1). */
static bool params_absent(const char *mp)
{
    const char *k = mp ? strstr(mp, "\"anomalyLikelihoodParams\":") : NULL;
    if (!k)
        return true;
    k += strlen("\"anomalyLikelihoodParams\":");
    return !strncmp(k, "null", 4) || !strncmp(k, "{}", 2);
}

/* The helper's reads for a batch [first, last] (autocommit, before the
 * write, as the original's helper ran them): false on error. */
static bool helper_reads(const char *uid, int64_t first, int64_t last, bool absent)
{
    const char *p1[1] = {uid};
    if (absent) {
        if (!run("o_count", 1, p1, NULL))
            return false;
        g_counts++;
    }
    if (first == last && first % g_refresh != 0)
        return true;
    char f[32];
    snprintf(f, sizeof f, "%" PRId64, first);
    const char *p3[3] = {uid, f, g_sample_size};
    if (!run("o_tail", 3, p3, NULL))
        return false;
    g_tails++;
    return true;
}

/* docs/htmengine.md §1.4 for one entry; returns rows updated, or -1 to
 * retry. */
static int64_t process(const char *uid, int64_t first, int64_t last, const char *model_params,
                       const char *disp)
{
    char f[32], l[32];
    snprintf(f, sizeof f, "%" PRId64, first);
    snprintf(l, sizeof l, "%" PRId64, last);
    const char *p1[1] = {uid};
    const char *p3[3] = {uid, f, l};
    PGresult *m = NULL, *rows = NULL;
    if (!run("o_metric", 1, p1, &m))
        return -1;
    bool found = PQntuples(m) == 1;
    bool absent = found && params_absent(PQgetisnull(m, 0, 9) ? NULL : PQgetvalue(m, 0, 9));
    PQclear(m);
    if (!found)
        return 0;
    if (!run("o_rows", 3, p3, &rows))
        return -1;
    if (!helper_reads(uid, first, last, absent)) {
        PQclear(rows);
        return -1;
    }
    int64_t n = 0;
    if (!exec("BEGIN"))
        goto fail;
    for (int i = 0; i < PQntuples(rows); i++) {
        const char *p6[6] = {uid, PQgetvalue(rows, i, 0), "0.5", "0.5", disp, "null"};
        if (!run("o_update_row", 6, p6, NULL))
            goto fail;
        n++;
    }
    const char *p2[2] = {uid, model_params};
    if (!run("o_lock", 1, p1, NULL) || !run("o_params", 2, p2, NULL) || !exec("COMMIT"))
        goto fail;
    PQclear(rows);
    return n;
fail:
    PQclear(rows);
    PQclear(PQexec(g_pg, "ROLLBACK"));
    return -1;
}

/* One run: configuration, connection and tallies. */
typedef struct orig_ctx {
    an_config cfg;
    const char *input, *group, *me;
    char *model_params;
    char disp[32], maxlen[32];
    const char *enc;
    an_redis *rd;
    int64_t n_entries, n_rows, retries;
} orig_ctx;

/* Configuration (--consumer over the ANOMALYD_* environment), the fixed
 * texts and both connections; dies on failure. params_path: the params
 * text. */
static void orig_connect(orig_ctx *c, const char *params_path, const char *consumer)
{
    char err[512];
    if (an_config_load(&c->cfg, NULL, err, sizeof err))
        die("config", err);
    if (consumer && an_config_set(&c->cfg, "streams", "consumer", consumer, "--consumer", err,
                                  sizeof err))
        die("config", err);
    c->input = c->cfg.streams.input;
    c->group = c->cfg.streams.group;
    c->me = c->cfg.streams.consumer;
    char *lk = slurp(params_path);
    size_t mplen = strlen(lk) + 64;
    c->model_params = xcalloc(mplen, 1);
    snprintf(c->model_params, mplen, "{\"anomalyLikelihoodParams\":%s}", lk);
    snprintf(c->disp, sizeof c->disp, "%" PRId64, an_display_value(0.5, true));
    snprintf(c->maxlen, sizeof c->maxlen, "%" PRId64, c->cfg.streams.output_maxlen);
    c->enc = an_encoding_name(c->cfg.streams.output_encoding);

    g_refresh = c->cfg.anomaly_likelihood.statistics_refresh_rate;
    snprintf(g_sample_size, sizeof g_sample_size, "%d",
             c->cfg.anomaly_likelihood.statistics_sample_size);
    g_dsn = c->cfg.postgres.dsn;
    if (!pg_connect())
        die("postgres", PQerrorMessage(g_pg));
    an_redis_opts ro = an_redis_opts_default();
    if (an_redis_connect(c->cfg.redis.url, &ro, &c->rd, err, sizeof err))
        die("redis", err);
    if (an_group_create(c->rd, c->input, c->group, "0", NULL))
        die("XGROUP CREATE", an_redis_errstr(c->rd));
}

/* Pipelines the output entry (when publish: model m, rows first..last) and
 * the XACK of e; one attempt. false when the connection failed. */
static bool send_once(orig_ctx *c, redisContext *rc, const an_entry *e, const an_field *m,
                      bool publish, int64_t first, int64_t last, const char *rows)
{
    bool sent = true;
    if (publish) {
        const body *bd = body_for((size_t)(last - first + 1), c->cfg.streams.output_encoding);
        const char *xa[] = {"XADD", c->cfg.streams.output, "MAXLEN", "~", c->maxlen, "*",
                            "dataType", AN_DATATYPE_INFERENCE, "model", m->value,
                            "rows", rows, "source", e->id, "encoding", c->enc,
                            "body", bd->p};
        size_t xl[18];
        for (int k = 0; k < 17; k++)
            xl[k] = strlen(xa[k]);
        xl[17] = bd->len;
        sent = redisAppendCommandArgv(rc, 18, xa, xl) == REDIS_OK;
    }
    const char *ack[] = {"XACK", c->input, c->group, e->id};
    sent = sent && redisAppendCommandArgv(rc, 4, ack, NULL) == REDIS_OK;
    int want = publish ? 2 : 1;
    for (int k = 0; sent && k < want; k++) {
        void *rep = NULL;
        if (redisGetReply(rc, &rep) != REDIS_OK || !rep)
            sent = false;
        else {
            if (((redisReply *)rep)->type == REDIS_REPLY_ERROR)
                die("XADD/XACK", ((redisReply *)rep)->str);
            freeReplyObject(rep);
        }
    }
    return sent;
}

/* One entry as the original handles it: its rows scored in their own
 * transaction (retried until done), then its output entry and its XACK
 * (resent after a reconnect until done). */
static void process_entry(orig_ctx *c, const an_entry *e)
{
    const an_field *m = an_entry_field(e, "model");
    const an_field *b = an_entry_field(e, "batch");
    int64_t first, last, n = 0;
    bool ok = m && b && pick_rowids(b->value, b->value_len, &first, &last);
    if (ok) {
        while ((n = process(m->value, first, last, c->model_params, c->disp)) < 0) {
            c->retries++;
            usleep(100000);
            if (PQstatus(g_pg) != CONNECTION_OK)
                pg_connect();
        }
    }
    char rows[48];
    snprintf(rows, sizeof rows, "%" PRId64 "-%" PRId64, ok ? first : 0, ok ? last : 0);
    for (;;) {
        redisContext *rc = an_redis_ctx(c->rd);
        if (!rc) {
            an_redis_reconnect(c->rd);
            usleep(100000);
            continue;
        }
        if (send_once(c, rc, e, m, ok && n > 0, first, last, rows))
            break;
        c->retries++;
        an_redis_reconnect(c->rd);
        usleep(100000);
    }
    c->n_entries++;
    c->n_rows += n;
}

int main(int argc, char **argv)
{
    const char *params_path = NULL, *consumer = NULL;
    long long idle_ms = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--params") && i + 1 < argc)
            params_path = argv[++i];
        else if (!strcmp(argv[i], "--consumer") && i + 1 < argc)
            consumer = argv[++i];
        else if (!strcmp(argv[i], "--exit-when-idle") && i + 1 < argc)
            idle_ms = strtoll(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_original --params FILE [--consumer NAME] "
                            "[--exit-when-idle MS]\n");
            return 2;
        }
    }
    if (!params_path)
        die("usage", "--params FILE is required");
    static orig_ctx c; /* zeroed */
    orig_connect(&c, params_path, consumer);

    int64_t t_start = -1, idle_since = mono_ms();
    for (;;) {
        an_entry_list l;
        memset(&l, 0, sizeof l);
        int rc = an_read_group(c.rd, c.input, c.group, c.me, ">",
                               (size_t)c.cfg.streams.read_count, 100, &l);
        if (rc == AN_ETRANSIENT) {
            usleep(100000);
            continue;
        }
        if (rc)
            die("XREADGROUP", an_redis_errstr(c.rd));
        if (l.n == 0) {
            an_entry_list_free(&l);
            if (mono_ms() - idle_since >= idle_ms)
                break;
            continue;
        }
        if (t_start < 0)
            t_start = mono_ms();
        for (size_t i = 0; i < l.n; i++)
            process_entry(&c, &l.v[i]);
        an_entry_list_free(&l);
        idle_since = mono_ms();
    }
    double wall = t_start < 0 ? 0.0 : (double)(idle_since - t_start) / 1000.0;
    printf("original: entries=%" PRId64 " rows=%" PRId64 " retries=%" PRId64
           " counts=%" PRId64 " tail_reads=%" PRId64 " wall_s=%.3f\n",
           c.n_entries, c.n_rows, c.retries, g_counts, g_tails, wall);
    PQfinish(g_pg);
    an_redis_free(c.rd);
    an_config_free(&c.cfg);
    return 0;
}
