/*
 * test_repo.c: the PostgreSQL repository and schema against the real
 * server of ops/stack.sh (ANOMALYD_PG_DSN; the test FAILS if it is unset).
 * Every test uses its own metric uids (pid + counter) and removes them.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "an_repo.h"
#include "an_repo_group.h"
#include "an_schema.h"
#include "support_repo.h"
#include "check_main.h"

static const char *dsn;
static int uid_counter;

/* ---- log capture ---- */
#define MAXLOG 64
static an_log_level log_levels[MAXLOG];
static char log_msgs[MAXLOG][256];
static int nlog;

static void capture_log(void *ud, an_log_level level, const char *msg)
{
    (void)ud;
    if (nlog < MAXLOG) {
        log_levels[nlog] = level;
        snprintf(log_msgs[nlog], sizeof log_msgs[nlog], "%s", msg);
        nlog++;
    }
}

/* ---- a virtual clock: sleeping advances it, nothing else does, so the
 * retry policy's decisions do not depend on how long a round trip takes ---- */
typedef struct {
    int64_t now;
    int sleeps[32];
    int nsleeps;
} vclock;

static int64_t vclock_now(void *ud) { return ((vclock *)ud)->now; }
static void vclock_sleep(void *ud, int ms)
{
    vclock *v = ud;
    if (v->nsleeps < 32)
        v->sleeps[v->nsleeps++] = ms;
    v->now += ms;
}

static an_repo *new_repo_full(int budget_ms, int initial_ms, int max_ms, const an_clock *clock,
                              int lock_timeout_ms)
{
    an_repo_options o;
    memset(&o, 0, sizeof o);
    o.dsn = dsn;
    o.application_name = "test_repo";
    o.connect_timeout_ms = 5000;
    o.statement_timeout_ms = 30000;
    o.retry_budget_ms = budget_ms;
    o.retry_initial_ms = initial_ms;
    o.retry_max_delay_ms = max_ms;
    o.log = capture_log;
    o.clock = clock;
    o.lock_timeout_ms = lock_timeout_ms;
    an_repo *r = an_repo_new(&o);
    ck_assert_ptr_nonnull(r);
    return r;
}

static an_repo *new_repo_clock(int budget_ms, int initial_ms, int max_ms, const an_clock *clock)
{
    return new_repo_full(budget_ms, initial_ms, max_ms, clock, 0);
}

static an_repo *new_repo_opts(int budget_ms, int initial_ms, int max_ms)
{
    return new_repo_clock(budget_ms, initial_ms, max_ms, NULL);
}

static an_repo *new_repo(void) { return new_repo_opts(10000, 100, 10000); }

#define CK_OK(r, call)                                                                         \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        ck_assert_msg(rc_ == 0, "%s -> %d: %s", #call, rc_, an_repo_errstr(r));                \
    } while (0)

/* The same for the tests' own repository calls (support_repo.h). */
#define CK_TR(call)                                                                            \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        ck_assert_msg(rc_ == 0, "%s -> %d: %s", #call, rc_, trepo_errstr());                   \
    } while (0)

static void make_uid(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "t%d-%d-%s", (int)getpid(), ++uid_counter, tag);
    ck_assert_uint_le(strlen(buf), 40);
}

static void create_metric(an_repo *r, const char *uid, int status)
{
    an_new_metric m;
    memset(&m, 0, sizeof m);
    m.uid = uid;
    m.name = "test.metric";
    m.server = "test-server";
    m.datasource = "custom";
    m.parameters = "{\"datasource\": \"custom\", \"metricSpec\": {\"metric\": \"test.metric\"}}";
    m.status = status;
    m.model_params = "{\"modelConfig\": {}, \"anomalyLikelihoodParams\": null}";
    CK_OK(r, an_repo_create_metric(r, &m));
}

/* Adds n rows with timestamps t0 + 300 i and values i. */
static int64_t add_rows(an_repo *r, const char *uid, size_t n, double t0)
{
    double *ts = calloc(n, sizeof *ts), *v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        ts[i] = t0 + 300.0 * (double)i;
        v[i] = (double)i + 0.5;
    }
    int64_t first = 0;
    CK_OK(r, an_repo_add_rows(r, uid, ts, v, n, &first));
    free(ts);
    free(v);
    return first;
}

/* Scores rows [first..last] with raw = rowid / 1000. */
static void score_rows(an_repo *r, const char *uid, int64_t first, int64_t last)
{
    size_t n = (size_t)(last - first + 1);
    an_score_update *u = calloc(n, sizeof *u);
    for (size_t i = 0; i < n; i++) {
        u[i].rowid = first + (int64_t)i;
        u[i].raw = (double)u[i].rowid / 1000.0;
        u[i].anomaly_score = 0.25;
        u[i].display_value = 0;
        u[i].predictions = "null";
    }
    int64_t updated = 0;
    CK_TR(trepo_write_scores(r, uid, u, n, &updated));
    ck_assert_int_eq(updated, (int64_t)n);
    free(u);
}

static void drop_metric(an_repo *r, const char *uid)
{
    int rc = trepo_delete_metric(r, uid);
    ck_assert_msg(rc == 0, "delete_metric %s: %s", uid, trepo_errstr());
}

/* Runs one parameterized statement on a repo's raw connection. */
static PGresult *raw_exec(an_repo *r, const char *sql, int n, const char *const *params)
{
    CK_OK(r, an_repo_connect(r));
    PGresult *res = PQexecParams(an_repo_conn(r), sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage(res));
    return res;
}

static void terminate_backend(an_repo *killer, int pid)
{
    char p[16];
    snprintf(p, sizeof p, "%d", pid);
    const char *params[1] = {p};
    PGresult *res = raw_exec(killer, "SELECT pg_terminate_backend($1::int, 5000)", 1, params);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
}

/* ------------------------------------------------------------------ tests */

static void count_applied(void *ud, int version, const char *name)
{
    (void)version;
    (void)name;
    (*(int *)ud)++;
}

START_TEST(db_init_idempotent)
{
    an_repo *r = new_repo();
    int applied = 0, version = 0;
    CK_OK(r, an_schema_migrate(r, count_applied, &applied, &version));
    ck_assert_int_eq(version, an_schema_latest());
    applied = 0;
    CK_OK(r, an_schema_migrate(r, count_applied, &applied, &version));
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(version, an_schema_latest());
    ck_assert_int_ge(an_schema_latest(), 2);

    /* The CLI, twice. */
    const char *bin = getenv("AN_BIN_DIR");
    ck_assert_ptr_nonnull(bin);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/anomalyctl' db init >/dev/null", bin);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "'%s/anomalyctl' db init | grep -q 'schema at version %d (up to date)'",
             bin, an_schema_latest());
    ck_assert_int_eq(system(cmd), 0);

    /* Migrating inside an open transaction is refused. */
    CK_OK(r, an_repo_begin(r));
    ck_assert_int_eq(an_schema_migrate(r, NULL, NULL, NULL), AN_ESTATE);
    CK_OK(r, an_repo_rollback(r));
    an_repo_free(r);
}
END_TEST

/* Two concurrent migrations of an empty schema (PGOPTIONS search_path to a
 * fresh schema): both succeed, each version is applied once. */
START_TEST(db_init_concurrent_fresh)
{
    char schema[64];
    snprintf(schema, sizeof schema, "an_test_%d", (int)getpid());
    an_repo *admin = new_repo();
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", schema); /* test-made name, no user input */
    PQclear(raw_exec(admin, sql, 0, NULL));

    char opts[128];
    snprintf(opts, sizeof opts, "-c search_path=%s", schema);
    setenv("PGOPTIONS", opts, 1);
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        ck_assert_int_ge(kids[k], 0);
        if (kids[k] == 0) {
            an_repo *r = new_repo();
            int applied = 0, version = 0;
            int rc = an_schema_migrate(r, count_applied, &applied, &version);
            if (rc)
                fprintf(stderr, "child: %s\n", an_repo_errstr(r));
            an_repo_free(r);
            _exit(rc == 0 && version == an_schema_latest() ? 0 : 1);
        }
    }
    for (int k = 0; k < 3; k++) {
        int status = 0;
        ck_assert_int_eq(waitpid(kids[k], &status, 0), kids[k]);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
    }
    unsetenv("PGOPTIONS");

    snprintf(sql, sizeof sql, "SELECT count(*), count(DISTINCT version) FROM %s.schema_migrations",
             schema);
    PGresult *res = raw_exec(admin, sql, 0, NULL);
    char want[16];
    snprintf(want, sizeof want, "%d", an_schema_latest());
    ck_assert_str_eq(PQgetvalue(res, 0, 0), want);
    ck_assert_str_eq(PQgetvalue(res, 0, 1), want);
    PQclear(res);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s.metric", schema);
    PQclear(raw_exec(admin, sql, 0, NULL));
    snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
    PQclear(raw_exec(admin, sql, 0, NULL));
    an_repo_free(admin);
}
END_TEST

START_TEST(create_metric_and_rows)
{
    an_repo *r = new_repo();
    char uid[48];
    make_uid(uid, sizeof uid, "rows");
    create_metric(r, uid, AN_METRIC_CREATE_PENDING);

    an_metric m = {0};
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_str_eq(m.uid, uid);
    ck_assert_str_eq(m.name, "test.metric");
    ck_assert_str_eq(m.server, "test-server");
    ck_assert_str_eq(m.datasource, "custom");
    ck_assert_ptr_null(m.description);
    ck_assert_ptr_null(m.location);
    ck_assert_ptr_null(m.message);
    ck_assert_ptr_nonnull(strstr(m.parameters, "metricSpec"));
    ck_assert_ptr_nonnull(strstr(m.model_params, "anomalyLikelihoodParams"));
    ck_assert_int_eq(m.status, AN_METRIC_CREATE_PENDING);
    ck_assert_int_eq(m.last_rowid, 0);
    ck_assert_int_eq(m.scored_rowid, 0);
    an_metric_clear(&m);
    an_metric_clear(&m);

    /* Duplicate uid. */
    an_new_metric dup = {.uid = uid, .name = "x", .status = 0};
    ck_assert_int_eq(an_repo_create_metric(r, &dup), AN_ESTATE);
    ck_assert_str_eq(an_repo_sqlstate(r), "23505");

    /* Rows: microsecond timestamps round-trip. */
    double ts[3] = {1420070400.0, 1420070700.123456, 1420071000.999999};
    double v[3] = {1.5, -0.1, 1e300};
    int64_t first = 0;
    CK_OK(r, an_repo_add_rows(r, uid, ts, v, 3, &first));
    ck_assert_int_eq(first, 1);
    ck_assert_int_eq(add_rows(r, uid, 2, 1420071300.0), 4);

    an_data_rows rows = {0};
    CK_TR(trepo_get_rows(r, uid, 1, 5, &rows));
    ck_assert_uint_eq(rows.n, 5);
    for (size_t i = 0; i < 5; i++) {
        ck_assert_int_eq(rows.v[i].rowid, (int64_t)i + 1);
        ck_assert(!rows.v[i].has_raw);
        ck_assert(!rows.v[i].has_score);
        ck_assert(!rows.v[i].has_display);
        ck_assert_ptr_null(rows.v[i].predictions);
    }
    ck_assert(rows.v[0].ts == 1420070400.0);
    ck_assert(rows.v[1].ts == strtod("1420070700.123456", NULL));
    ck_assert(rows.v[2].ts == strtod("1420071000.999999", NULL));
    ck_assert(rows.v[3].ts == 1420071300.0);
    ck_assert(rows.v[0].metric_value == 1.5);
    ck_assert(rows.v[1].metric_value == -0.1);
    ck_assert(rows.v[2].metric_value == 1e300);
    ck_assert(rows.v[4].metric_value == 1.5);

    /* Sub-ranges and empty ranges. */
    CK_TR(trepo_get_rows(r, uid, 2, 3, &rows));
    ck_assert_uint_eq(rows.n, 2);
    ck_assert_int_eq(rows.v[0].rowid, 2);
    CK_TR(trepo_get_rows(r, uid, 6, 10, &rows));
    ck_assert_uint_eq(rows.n, 0);
    CK_TR(trepo_get_rows(r, "no-such-uid", 1, 10, &rows));
    ck_assert_uint_eq(rows.n, 0);
    an_data_rows_free(&rows);

    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_int_eq(m.last_rowid, 5);
    an_metric_clear(&m);

    /* Rows for an unknown metric; bad arguments. */
    ck_assert_int_eq(an_repo_add_rows(r, "no-such-uid", ts, v, 3, &first), AN_ENOTFOUND);
    ck_assert_int_eq(an_repo_add_rows(r, uid, ts, v, 0, &first), AN_EINVAL);
    double bad_ts[1] = {NAN};
    ck_assert_int_eq(an_repo_add_rows(r, uid, bad_ts, v, 1, &first), AN_EINVAL);
    ck_assert(!an_repo_in_transaction(r));

    /* Inside a caller's transaction: rolled back with it. */
    CK_OK(r, an_repo_begin(r));
    add_rows(r, uid, 2, 1420080000.0);
    CK_OK(r, an_repo_rollback(r));
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_int_eq(m.last_rowid, 5);
    an_metric_clear(&m);

    drop_metric(r, uid);
    ck_assert_int_eq(an_repo_get_metric(r, uid, AN_LOCK_NONE, &m), AN_ENOTFOUND);
    ck_assert_int_eq(trepo_delete_metric(r, uid), AN_ENOTFOUND);
    an_repo_free(r);
}
END_TEST

START_TEST(metric_status)
{
    an_repo *r = new_repo();
    char uid[48];
    make_uid(uid, sizeof uid, "status");
    create_metric(r, uid, AN_METRIC_CREATE_PENDING);
    an_metric m = {0};

    /* With a ref status that does not match: not found, unchanged. */
    ck_assert_int_eq(an_repo_set_metric_status(r, uid, AN_METRIC_ACTIVE, NULL, AN_METRIC_ERROR),
                     AN_ENOTFOUND);
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_int_eq(m.status, AN_METRIC_CREATE_PENDING);
    an_metric_clear(&m);

    /* Matching ref status. */
    CK_OK(r, an_repo_set_metric_status(r, uid, AN_METRIC_ACTIVE, NULL, AN_METRIC_CREATE_PENDING));
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_SHARE, &m));
    ck_assert_int_eq(m.status, AN_METRIC_ACTIVE);
    ck_assert_ptr_null(m.message);
    an_metric_clear(&m);

    /* No ref status; a message with quotes and unicode. */
    const char *msg = "model failed: 'quote' \"dq\" \\ é;--";
    CK_OK(r, an_repo_set_metric_status(r, uid, AN_METRIC_ERROR, msg, AN_REPO_ANY_STATUS));
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_int_eq(m.status, AN_METRIC_ERROR);
    ck_assert_str_eq(m.message, msg);
    an_metric_clear(&m);

    /* Back to ACTIVE clears the message (NULL). */
    CK_OK(r, an_repo_set_metric_status(r, uid, AN_METRIC_ACTIVE, NULL, AN_REPO_ANY_STATUS));
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_ptr_null(m.message);
    an_metric_clear(&m);

    /* Unknown uid. */
    ck_assert_int_eq(an_repo_set_metric_status(r, "nope-nope", AN_METRIC_ACTIVE, NULL,
                                               AN_REPO_ANY_STATUS),
                     AN_ENOTFOUND);
    ck_assert_int_eq(an_repo_last_rc(r), AN_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(an_repo_errstr(r), "nope-nope"));
    ck_assert_int_eq(an_repo_get_metric(r, "nope-nope", AN_LOCK_UPDATE, &m), AN_ENOTFOUND);
    ck_assert_str_eq(an_repo_errstr(r), "Metric not found for uid=nope-nope");
    ck_assert_str_eq(an_metric_status_name(AN_METRIC_CREATE_PENDING), "CREATE_PENDING");

    /* store_params */
    CK_TR(trepo_store_params(r, uid, "{\"anomalyLikelihoodParams\": {\"x\": 1}}", 42,
                                  "1700000000000-7"));
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_str_eq(m.model_params, "{\"anomalyLikelihoodParams\": {\"x\": 1}}");
    ck_assert_int_eq(m.scored_rowid, 42);
    ck_assert_str_eq(m.scored_source, "1700000000000-7");
    an_metric_clear(&m);
    CK_TR(trepo_store_params(r, uid, NULL, 0, NULL));
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_ptr_null(m.model_params);
    ck_assert_ptr_null(m.scored_source);
    an_metric_clear(&m);
    ck_assert_int_eq(trepo_store_params(r, "nope-nope", "{}", 1, NULL), AN_ENOTFOUND);

    drop_metric(r, uid);
    an_repo_free(r);
}
END_TEST

START_TEST(batch_write_tricky_predictions)
{
    an_repo *r = new_repo();
    char uid[48];
    make_uid(uid, sizeof uid, "write");
    create_metric(r, uid, AN_METRIC_ACTIVE);
    add_rows(r, uid, 12, 1420070400.0);

    static const char *const preds[12] = {
        "{\"1\": [[\"a,b\", 0.5], [\"c}{d\", 0.25]]}",
        "{\"q\": \"he said \\\"hi\\\"\"}",
        "back\\slash \\\\ \\n \\\" end\\",
        "{}}{,,{",
        "unicode é 漢字 🙂 \u00a0",
        "null",
        NULL,
        "",
        "NULL",
        "  padded  ",
        "\"",
        "line1\nline2\ttab",
    };
    const double raws[12] = {0.1, 1.0 / 3.0, 5e-324, 1e308, 0.0, 1.0,
                             2.2250738585072014e-308, 0.30000000000000004, 0.5, 0.75, 0.999999, 0};
    an_score_update u[13];
    for (int i = 0; i < 12; i++) {
        u[i].rowid = i + 1;
        u[i].raw = raws[i];
        u[i].anomaly_score = 1.0 - raws[i] / 7.0;
        u[i].display_value = i * 100 - 300;
        u[i].predictions = preds[i];
    }
    /* A rowid with no metric_data row is simply not counted. */
    u[12] = u[0];
    u[12].rowid = 999;
    int64_t updated = -1;
    CK_TR(trepo_write_scores(r, uid, u, 13, &updated));
    ck_assert_int_eq(updated, 12);

    an_data_rows rows = {0};
    CK_TR(trepo_get_rows(r, uid, 1, 12, &rows));
    ck_assert_uint_eq(rows.n, 12);
    for (int i = 0; i < 12; i++) {
        const an_data_row *d = &rows.v[i];
        ck_assert(d->has_raw && d->has_score && d->has_display);
        ck_assert_msg(d->raw == raws[i], "row %d raw %.17g != %.17g", i, d->raw, raws[i]);
        ck_assert(d->anomaly_score == 1.0 - raws[i] / 7.0);
        ck_assert_int_eq(d->display_value, i * 100 - 300);
        if (preds[i] == NULL)
            ck_assert_ptr_null(d->predictions);
        else
            ck_assert_str_eq(d->predictions, preds[i]);
    }
    /* The buffer is reused: a second read into the same rows. */
    CK_TR(trepo_get_rows(r, uid, 5, 6, &rows));
    ck_assert_uint_eq(rows.n, 2);
    ck_assert_str_eq(rows.v[0].predictions, preds[4]);
    ck_assert_str_eq(rows.v[1].predictions, "null");
    an_data_rows_free(&rows);

    /* Non-finite doubles are spelled for PostgreSQL. */
    an_score_update nf = {1, NAN, INFINITY, 0, "x"};
    CK_TR(trepo_write_scores(r, uid, &nf, 1, &updated));
    CK_TR(trepo_get_rows(r, uid, 1, 1, &rows));
    ck_assert(isnan(rows.v[0].raw));
    ck_assert(isinf(rows.v[0].anomaly_score) && rows.v[0].anomaly_score > 0);
    an_data_rows_free(&rows);

    /* No rows: nothing written. A display value outside int: refused, the
     * transaction rolled back. */
    CK_TR(trepo_write_scores(r, uid, u, 0, &updated));
    ck_assert_int_eq(updated, 0);
    an_score_update big = {1, 0, 0, (int64_t)1 << 40, NULL};
    ck_assert_int_eq(trepo_write_scores(r, uid, &big, 1, &updated), AN_EINVAL);
    ck_assert(!an_repo_in_transaction(r));
    /* Another metric's uid updates nothing. */
    CK_TR(trepo_write_scores(r, "no-such-uid", u, 3, &updated));
    ck_assert_int_eq(updated, 0);

    drop_metric(r, uid);
    an_repo_free(r);
}
END_TEST

START_TEST(processed_count_and_tail)
{
    an_repo *r = new_repo();
    char uid[48];
    make_uid(uid, sizeof uid, "tail");
    create_metric(r, uid, AN_METRIC_ACTIVE);
    add_rows(r, uid, 20, 1420070400.0);

    int64_t count = -1;
    CK_OK(r, an_repo_processed_count(r, uid, 0, &count));
    ck_assert_int_eq(count, 0);
    an_sample s[32];
    size_t got = 99;
    CK_OK(r, an_repo_processed_tail(r, uid, 0, 5, s, &got));
    ck_assert_uint_eq(got, 0);

    score_rows(r, uid, 1, 12);
    CK_OK(r, an_repo_processed_count(r, uid, 0, &count));
    ck_assert_int_eq(count, 12);
    CK_OK(r, an_repo_processed_count(r, uid, 10, &count));
    ck_assert_int_eq(count, 9);

    CK_OK(r, an_repo_processed_tail(r, uid, 0, 5, s, &got));
    ck_assert_uint_eq(got, 5);
    for (size_t i = 0; i < 5; i++) {
        ck_assert_int_eq(s[i].rowid, 8 + (int64_t)i);
        ck_assert(s[i].raw == (double)s[i].rowid / 1000.0);
        ck_assert(s[i].value == (double)(s[i].rowid - 1) + 0.5);
    }
    CK_OK(r, an_repo_processed_tail(r, uid, 0, 32, s, &got));
    ck_assert_uint_eq(got, 12);
    ck_assert_int_eq(s[0].rowid, 1);
    ck_assert_int_eq(s[11].rowid, 12);
    CK_OK(r, an_repo_processed_tail(r, uid, 5, 32, s, &got));
    ck_assert_uint_eq(got, 4);
    ck_assert_int_eq(s[3].rowid, 4);

    /* The newest 3, and the count below the first row of a batch at 11. */
    CK_OK(r, an_repo_processed_tail(r, uid, 0, 3, s, &got));
    ck_assert_uint_eq(got, 3);
    ck_assert_int_eq(s[0].rowid, 10);
    CK_OK(r, an_repo_processed_count(r, uid, 11, &count));
    ck_assert_int_eq(count, 10);

    /* delete_model (docs/htmengine.md §4.3): scores and params cleared, status
     * 0. */
    CK_TR(trepo_store_params(r, uid, "{\"anomalyLikelihoodParams\": null}", 12, NULL));
    CK_TR(trepo_delete_model(r, uid));
    an_metric m = {0};
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_int_eq(m.status, AN_METRIC_UNMONITORED);
    ck_assert_ptr_null(m.parameters);
    ck_assert_ptr_null(m.model_params);
    ck_assert_ptr_null(m.message);
    ck_assert_int_eq(m.scored_rowid, 0);
    ck_assert_int_eq(m.last_rowid, 20);
    an_metric_clear(&m);
    CK_OK(r, an_repo_processed_count(r, uid, 0, &count));
    ck_assert_int_eq(count, 0);
    an_data_rows rows = {0};
    CK_TR(trepo_get_rows(r, uid, 1, 20, &rows));
    ck_assert_uint_eq(rows.n, 20);
    for (size_t i = 0; i < rows.n; i++)
        ck_assert(!rows.v[i].has_raw && !rows.v[i].has_score && !rows.v[i].has_display &&
                  !rows.v[i].predictions);
    an_data_rows_free(&rows);
    ck_assert_int_eq(trepo_delete_model(r, "no-such-uid"), AN_ENOTFOUND);

    drop_metric(r, uid);
    an_repo_free(r);
}
END_TEST

START_TEST(transactions_and_states)
{
    an_repo *r = new_repo();
    char uid[48];
    make_uid(uid, sizeof uid, "tx");
    create_metric(r, uid, AN_METRIC_ACTIVE);

    ck_assert_int_eq(an_repo_commit(r), AN_ESTATE);
    CK_OK(r, an_repo_rollback(r)); /* no-op */
    CK_OK(r, an_repo_begin(r));
    ck_assert(an_repo_in_transaction(r));
    ck_assert_int_eq(an_repo_begin(r), AN_ESTATE);
    CK_OK(r, an_repo_set_metric_status(r, uid, AN_METRIC_ERROR, "x", AN_REPO_ANY_STATUS));
    CK_OK(r, an_repo_rollback(r));
    an_metric m = {0};
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_int_eq(m.status, AN_METRIC_ACTIVE);
    an_metric_clear(&m);

    /* An error inside a transaction that the caller ignores: commit refuses. */
    CK_OK(r, an_repo_begin(r));
    an_new_metric dup = {.uid = uid, .name = "dup"};
    ck_assert_int_eq(an_repo_create_metric(r, &dup), AN_ESTATE);
    ck_assert_int_eq(an_repo_commit(r), AN_ESTATE);
    ck_assert(!an_repo_in_transaction(r));

    /* Committed work persists. */
    CK_OK(r, an_repo_begin(r));
    CK_OK(r, an_repo_set_metric_status(r, uid, AN_METRIC_ERROR, "boom", AN_REPO_ANY_STATUS));
    CK_OK(r, an_repo_commit(r));
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_int_eq(m.status, AN_METRIC_ERROR);
    an_metric_clear(&m);

    drop_metric(r, uid);
    an_repo_free(r);
}
END_TEST

START_TEST(update_lock_blocks_second_connection)
{
    /* b waits at most 200 ms for a lock (lock_timeout, set on connect) */
    an_repo *a = new_repo(), *b = new_repo_full(10000, 100, 10000, NULL, 200);
    char uid[48];
    make_uid(uid, sizeof uid, "lock");
    create_metric(a, uid, AN_METRIC_ACTIVE);

    an_metric m = {0};
    CK_OK(a, an_repo_begin(a));
    CK_OK(a, an_repo_get_metric(a, uid, AN_LOCK_UPDATE, &m));
    an_metric_clear(&m);

    /* FOR UPDATE and FOR SHARE wait for A's lock, then time out: 55P03. */
    CK_OK(b, an_repo_begin(b));
    ck_assert_int_eq(an_repo_get_metric(b, uid, AN_LOCK_UPDATE, &m), AN_ETRANSIENT);
    ck_assert_str_eq(an_repo_sqlstate(b), "55P03");
    CK_OK(b, an_repo_rollback(b));
    CK_OK(b, an_repo_begin(b));
    ck_assert_int_eq(an_repo_get_metric(b, uid, AN_LOCK_SHARE, &m), AN_ETRANSIENT);
    ck_assert_str_eq(an_repo_sqlstate(b), "55P03");
    CK_OK(b, an_repo_rollback(b));
    /* A status update (row lock) outside a transaction too. */
    ck_assert_int_eq(an_repo_set_metric_status(b, uid, AN_METRIC_ERROR, NULL, AN_REPO_ANY_STATUS),
                     AN_ETRANSIENT);
    /* A plain read does not wait. */
    CK_OK(b, an_repo_get_metric(b, uid, AN_LOCK_NONE, &m));
    an_metric_clear(&m);

    CK_OK(a, an_repo_commit(a));
    CK_OK(b, an_repo_begin(b));
    CK_OK(b, an_repo_get_metric(b, uid, AN_LOCK_UPDATE, &m));
    an_metric_clear(&m);
    CK_OK(b, an_repo_commit(b));

    drop_metric(a, uid);
    an_repo_free(a);
    an_repo_free(b);
}
END_TEST

typedef struct {
    an_repo *killer;
    const char *uid;
    int calls;
    int kill_on_calls; /* kill our own backend mid-transaction on calls 1..k */
    int status_seen;
} kill_ctx;

static int tx_kill_midway(an_repo *r, void *vctx)
{
    kill_ctx *c = vctx;
    c->calls++;
    an_metric m = {0};
    int rc = an_repo_get_metric(r, c->uid, AN_LOCK_UPDATE, &m);
    if (rc)
        return rc;
    c->status_seen = m.status;
    an_metric_clear(&m);
    if (c->calls <= c->kill_on_calls)
        terminate_backend(c->killer, an_repo_backend_pid(r));
    rc = an_repo_set_metric_status(r, c->uid, AN_METRIC_ERROR, "from tx", AN_REPO_ANY_STATUS);
    if (rc)
        return rc;
    return trepo_store_params(r, c->uid, "{}", 7, NULL);
}

START_TEST(killed_backend_is_transient_and_retried)
{
    an_repo *a = new_repo_opts(10000, 50, 1000), *killer = new_repo();
    char uid[48];
    make_uid(uid, sizeof uid, "kill");
    create_metric(a, uid, AN_METRIC_ACTIVE);

    /* Idle connection killed: the next call is AN_ETRANSIENT... */
    int pid = an_repo_backend_pid(a);
    ck_assert_int_gt(pid, 0);
    terminate_backend(killer, pid);
    an_metric m = {0};
    ck_assert_int_eq(an_repo_get_metric(a, uid, AN_LOCK_NONE, &m), AN_ETRANSIENT);
    ck_assert_int_eq(an_repo_last_rc(a), AN_ETRANSIENT);
    ck_assert(an_repo_conn(a) == NULL || PQstatus(an_repo_conn(a)) == CONNECTION_BAD);
    /* ...and the retry helper reconnects and succeeds. */
    kill_ctx c = {killer, uid, 0, 0, -1};
    nlog = 0;
    CK_OK(a, an_repo_with_retry(a, tx_kill_midway, &c));
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_ne(an_repo_backend_pid(a), pid);

    /* Killed in the middle of the transaction (twice): rolled back,
     * retried from scratch, committed on the third attempt. */
    CK_OK(a, an_repo_set_metric_status(a, uid, AN_METRIC_ACTIVE, NULL, AN_REPO_ANY_STATUS));
    c.calls = 0;
    c.kill_on_calls = 2;
    nlog = 0;
    CK_OK(a, an_repo_with_retry(a, tx_kill_midway, &c));
    ck_assert_int_eq(c.calls, 3);
    ck_assert_int_eq(an_repo_last_attempts(a), 3);
    ck_assert_int_eq(c.status_seen, AN_METRIC_ACTIVE); /* earlier attempts rolled back */
    CK_OK(a, an_repo_get_metric(a, uid, AN_LOCK_NONE, &m));
    ck_assert_int_eq(m.status, AN_METRIC_ERROR);
    ck_assert_int_eq(m.scored_rowid, 7);
    an_metric_clear(&m);
    /* Logged: first failure WARNING, second DEBUG, success INFO. */
    ck_assert_int_eq(nlog, 3);
    ck_assert_int_eq(log_levels[0], AN_LOG_WARNING);
    ck_assert_ptr_nonnull(strstr(log_msgs[0], "sql-retry"));
    ck_assert_int_eq(log_levels[1], AN_LOG_DEBUG);
    ck_assert_int_eq(log_levels[2], AN_LOG_INFO);

    drop_metric(a, uid);
    an_repo_free(a);
    an_repo_free(killer);
}
END_TEST

static int tx_always_transient(an_repo *r, void *ctx)
{
    (void)r;
    (*(int *)ctx)++;
    return AN_ETRANSIENT;
}

typedef struct {
    const char *uid;
    int calls;
} reject_ctx;

static int tx_write_then_reject(an_repo *r, void *vctx)
{
    reject_ctx *c = vctx;
    c->calls++;
    int rc = an_repo_set_metric_status(r, c->uid, AN_METRIC_ERROR, "no", AN_REPO_ANY_STATUS);
    return rc ? rc : AN_ESTATE;
}

START_TEST(retry_policy)
{
    /* Budget 300 ms, delays 40, 80, 160, ... on a virtual clock: attempts
     * at 0, 40, 120, 280, 600 -> the 5th fails past the budget and is
     * returned, after exactly four sleeps. */
    vclock vc = {0};
    an_clock clk = {.now_ms = vclock_now, .sleep_ms = vclock_sleep, .ud = &vc};
    an_repo *r = new_repo_clock(300, 40, 10000, &clk);
    int calls = 0;
    nlog = 0;
    ck_assert_int_eq(an_repo_with_retry(r, tx_always_transient, &calls), AN_ETRANSIENT);
    ck_assert_int_eq(calls, 5);
    ck_assert_int_eq(an_repo_last_attempts(r), 5);
    ck_assert_int_eq(vc.nsleeps, 4);
    const int want[4] = {40, 80, 160, 320};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(vc.sleeps[i], want[i]);
    ck_assert_int_eq(vc.now, 600);
    ck_assert(!an_repo_in_transaction(r));
    ck_assert_int_eq(log_levels[0], AN_LOG_WARNING);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(log_levels[i], AN_LOG_DEBUG);
    ck_assert_int_eq(log_levels[4], AN_LOG_WARNING); /* giving up */
    ck_assert_int_eq(nlog, 5);

    /* Delay cap: initial 40, cap 50 -> 40, 50, 50, 50, 50: attempts at 0,
     * 40, 90, 140, 190, 240 -> the 6th is past the 200 ms budget. */
    an_repo_free(r);
    vc = (vclock){0};
    r = new_repo_clock(200, 40, 50, &clk);
    calls = 0;
    ck_assert_int_eq(an_repo_with_retry(r, tx_always_transient, &calls), AN_ETRANSIENT);
    ck_assert_int_eq(calls, 6);
    ck_assert_int_eq(vc.nsleeps, 5);
    ck_assert_int_eq(vc.sleeps[0], 40);
    for (int i = 1; i < 5; i++)
        ck_assert_int_eq(vc.sleeps[i], 50);

    /* A non-transient code is returned at once and the work rolled back. */
    char uid[48];
    make_uid(uid, sizeof uid, "reject");
    create_metric(r, uid, AN_METRIC_ACTIVE);
    reject_ctx rc = {uid, 0};
    ck_assert_int_eq(an_repo_with_retry(r, tx_write_then_reject, &rc), AN_ESTATE);
    ck_assert_int_eq(rc.calls, 1);
    an_metric m = {0};
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_NONE, &m));
    ck_assert_int_eq(m.status, AN_METRIC_ACTIVE);
    an_metric_clear(&m);

    /* Not with a transaction open. */
    CK_OK(r, an_repo_begin(r));
    ck_assert_int_eq(an_repo_with_retry(r, tx_always_transient, &calls), AN_ESTATE);
    CK_OK(r, an_repo_rollback(r));

    drop_metric(r, uid);
    an_repo_free(r);
}
END_TEST

START_TEST(transient_classification)
{
    const char *yes[] = {"08000", "08003", "08006", "08001", "08P01", "40001",
                         "40P01", "55P03", "57P01", "57P02", "57P03"};
    const char *no[] = {"23505", "42P01", "57014", "40002", "55000", "22001", "", "0800", NULL};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        ck_assert_msg(an_repo_sqlstate_is_transient(yes[i]), "%s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        ck_assert_msg(!an_repo_sqlstate_is_transient(no[i]), "%s", no[i] ? no[i] : "NULL");
    ck_assert_int_eq(an_repo_is_transient(NULL, NULL), AN_ETRANSIENT);

    /* A non-transient server error: AN_EDB with the SQLSTATE. */
    an_repo *r = new_repo();
    char uid[48];
    make_uid(uid, sizeof uid, "cls");
    an_new_metric m = {.uid = uid, .name = "x", .server = NULL};
    char longname[400];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    m.name = longname; /* varchar(255) */
    ck_assert_int_eq(an_repo_create_metric(r, &m), AN_EDB);
    ck_assert_str_eq(an_repo_sqlstate(r), "22001");
    /* uid length is checked before sending. */
    an_new_metric toolong = {.uid = "0123456789012345678901234567890123456789X"};
    ck_assert_int_eq(an_repo_create_metric(r, &toolong), AN_EINVAL);
    an_repo_free(r);

    /* Nobody listening: transient. A bad DSN: not transient. */
    an_repo_options o;
    memset(&o, 0, sizeof o);
    o.dsn = "host=127.0.0.1 port=1 dbname=anomalyd connect_timeout=2";
    r = an_repo_new(&o);
    ck_assert_int_eq(an_repo_connect(r), AN_ETRANSIENT);
    ck_assert_ptr_nonnull(strstr(an_repo_errstr(r), "cannot connect"));
    an_repo_free(r);
    o.dsn = "this is = not a dsn password=hush";
    r = an_repo_new(&o);
    ck_assert_int_eq(an_repo_connect(r), AN_ECONFIG);   /* configuration, not the server */
    ck_assert_ptr_null(strstr(an_repo_errstr(r), "hush")); /* libpq's parse error not echoed */
    an_repo_free(r);
    /* The right server, a database that does not exist: not transient. */
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    ck_assert_ptr_nonnull(opts);
    const char *host = "127.0.0.1", *port = "5432", *user = "anomalyd";
    for (PQconninfoOption *op = opts; op->keyword; op++) {
        if (!op->val)
            continue;
        if (!strcmp(op->keyword, "host"))
            host = op->val;
        else if (!strcmp(op->keyword, "port"))
            port = op->val;
        else if (!strcmp(op->keyword, "user"))
            user = op->val;
    }
    char bad[512];
    snprintf(bad, sizeof bad, "host=%s port=%s user=%s dbname=an_no_such_db_xyz", host, port, user);
    PQconninfoFree(opts);
    o.dsn = bad;
    r = an_repo_new(&o);
    ck_assert_int_eq(an_repo_connect(r), AN_EDB);
    ck_assert_ptr_nonnull(strstr(an_repo_errstr(r), "does not exist"));
    an_repo_free(r);
}
END_TEST

/* Issue 9 case 8: extreme rowids reach the group read without overflow
 * (the decoder rejects them; the repository must not depend on it). */
START_TEST(group_read_extreme_rowids)
{
    an_repo *r = new_repo();
    char uid[48];
    make_uid(uid, sizeof uid, "xrow");
    create_metric(r, uid, AN_METRIC_ACTIVE);
    ck_assert_int_eq(add_rows(r, uid, 3, 1420070400.0), 1);
    const char *uids[1] = {uid};
    an_group_range ranges[3] = {{uid, INT64_MIN, INT64_MIN, "1-1"},
                                {uid, INT64_MIN, INT64_MAX, "1-2"},
                                {uid, INT64_MAX, INT64_MAX, "1-3"}};
    an_group_read g = {0};
    CK_OK(r, an_repo_group_read(r, uids, 1, ranges, 3, &g));
    ck_assert(g.found[0]);
    ck_assert_uint_eq(g.rows.n, 3);   /* rows 1..3, all in the middle range */
    for (size_t i = 0; i < g.rows.n; i++)
        ck_assert_uint_eq(g.row_range[i], 1);
    ck_assert_int_eq(g.pred[0], AN_ROW_MISSING);
    an_repo_rollback(r);
    an_group_read_free(&g);
    an_repo_free(r);
}
END_TEST

START_TEST(quote_in_uid)
{
    an_repo *r = new_repo();
    char uid[48];
    snprintf(uid, sizeof uid, "o'b\"r;--%d\\x", (int)getpid());
    an_metric m = {0};
    if (an_repo_get_metric(r, uid, AN_LOCK_NONE, &m) == 0) {
        an_metric_clear(&m);
        drop_metric(r, uid); /* left over from an earlier crashed run */
    }
    create_metric(r, uid, AN_METRIC_CREATE_PENDING);
    CK_OK(r, an_repo_set_metric_status(r, uid, AN_METRIC_ACTIVE, "it's", AN_METRIC_CREATE_PENDING));
    ck_assert_int_eq(add_rows(r, uid, 4, 1420070400.0), 1);
    score_rows(r, uid, 1, 3);
    int64_t count = 0;
    CK_OK(r, an_repo_processed_count(r, uid, 0, &count));
    ck_assert_int_eq(count, 3);
    an_sample s[4];
    size_t got = 0;
    CK_OK(r, an_repo_processed_tail(r, uid, 0, 4, s, &got));
    ck_assert_uint_eq(got, 3);
    CK_TR(trepo_store_params(r, uid, "{'x': \"y\"}", 3, NULL));
    CK_OK(r, an_repo_get_metric(r, uid, AN_LOCK_UPDATE, &m));
    ck_assert_str_eq(m.uid, uid);
    ck_assert_str_eq(m.message, "it's");
    ck_assert_str_eq(m.model_params, "{'x': \"y\"}");
    an_metric_clear(&m);
    an_data_rows rows = {0};
    CK_TR(trepo_get_rows(r, uid, 1, 4, &rows));
    ck_assert_uint_eq(rows.n, 4);
    an_data_rows_free(&rows);
    CK_TR(trepo_delete_model(r, uid));
    drop_metric(r, uid);
    an_repo_free(r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("repo");
    TCase *tc = tcase_create("repo");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, db_init_idempotent);
    tcase_add_test(tc, db_init_concurrent_fresh);
    tcase_add_test(tc, create_metric_and_rows);
    tcase_add_test(tc, metric_status);
    tcase_add_test(tc, batch_write_tricky_predictions);
    tcase_add_test(tc, processed_count_and_tail);
    tcase_add_test(tc, transactions_and_states);
    tcase_add_test(tc, update_lock_blocks_second_connection);
    tcase_add_test(tc, killed_backend_is_transient_and_retried);
    tcase_add_test(tc, retry_policy);
    tcase_add_test(tc, transient_classification);
    tcase_add_test(tc, quote_in_uid);
    tcase_add_test(tc, group_read_extreme_rowids);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    dsn = getenv("ANOMALYD_PG_DSN");
    if (!dsn || !*dsn) {
        fprintf(stderr, "test_repo: ANOMALYD_PG_DSN is not set: start the stack "
                        "(ops/stack.sh up; eval \"$(ops/stack.sh env)\")\n");
        return 1;
    }
    /* The schema must exist before the first test. */
    an_repo *r = an_repo_new(&(an_repo_options){.dsn = dsn});
    if (!r || an_schema_migrate(r, NULL, NULL, NULL) != 0) {
        fprintf(stderr, "test_repo: schema migration failed: %s\n", r ? an_repo_errstr(r) : "");
        an_repo_free(r);
        return 1;
    }
    an_repo_free(r);

    return an_check_run(suite(), CK_NORMAL);
}
