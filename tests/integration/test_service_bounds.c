/*
 * test_service_bounds.c: end-to-end tests of what one bad or hostile entry
 * may cost (issue 9): the watermark never moves past rows that do not exist
 * or were not matched (and the migration that repairs a damaged one),
 * processing attempts are counted for every entry before it is decoded,
 * the deferral list is bounded, and a command flood is bounded in round
 * trips and published in chunks. The real programs run as child processes
 * against the Redis and PostgreSQL of ops/stack.sh (support_e2e.h).
 */
#define _GNU_SOURCE
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;

static void setup(void) { e2e_init(&T, "bnd"); }

static void redisReplyFree(void *r) { freeReplyObject(r); }
static void teardown(void) { e2e_fini(&T); }

static void expect_no_dead_letters(void)
{
    int64_t dead = e2e_xlen(&T, T.dead);
    ck_assert_msg(dead == 0, "dead-letter stream %s holds %" PRId64 " entries", T.dead, dead);
}

static void expect_nothing_pending(void)
{
    int64_t pending = e2e_pending(&T);
    ck_assert_msg(pending == 0, "group still has %" PRId64 " pending entries", pending);
}

/* Rows first..last of uid have a raw score (processed) or not. */
static void expect_rows(const char *uid, int64_t first, int64_t last, bool processed)
{
    an_data_rows rows = {0};
    e2e_get_rows(&T, uid, first, last, &rows);
    ck_assert_int_eq((int64_t)rows.n, last - first + 1);
    for (size_t i = 0; i < rows.n; i++)
        ck_assert_msg(rows.v[i].has_raw == processed,
                      "metric %s row %" PRId64 " is %s, expected %s", uid, rows.v[i].rowid,
                      rows.v[i].has_raw ? "processed" : "unprocessed",
                      processed ? "processed" : "unprocessed");
    an_data_rows_free(&rows);
}

/* XADDs results for rows first..last of uid (raw 0.25). */
static void xadd_range(const char *uid, int64_t first, int64_t last, char id[AN_ID_MAX])
{
    size_t n = (size_t)(last - first + 1);
    an_result *r = calloc(n, sizeof *r);
    ck_assert_ptr_nonnull(r);
    for (size_t i = 0; i < n; i++)
        r[i] = e2e_inf(first + (int64_t)i, 0.25);
    e2e_xadd_results(&T, uid, r, n, AN_ENC_JSON, id);
    free(r);
}

/* ------------------------------------------------------------------------
 * watermark_only_on_matched_rows (issue 9 case 1): a batch for rows the
 * metric does not have is rejected without moving metric.scored_rowid, so
 * the metric's next real batch is scored, not acked as "already scored".
 *   A: rows 1..401; [1..400] scored, then [2000000000], then [401].
 *   B: rows 1..10; the non-contiguous [1, 2000000000], then [1..10].
 *   C: rows 1..10; [1..8] scored, then [9..12]: rows 9, 10 exist and match,
 *      11 and 12 do not: rejected, the watermark moves onto 10, not 12.
 *   D: rows 1..10; [3, 2] (descending), then [1..10].
 * Every watermark ends at or below its metric's highest row.
 */
START_TEST(watermark_only_on_matched_rows)
{
    char id[AN_ID_MAX];
    const char *ua = e2e_uid(&T, "wmA");
    e2e_create_metric(&T, ua, "e2e.wmA", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, ua, 401);
    xadd_range(ua, 1, 400, id);
    an_result far = e2e_inf(2000000000, 0.5);
    e2e_xadd_results(&T, ua, &far, 1, AN_ENC_JSON, id);
    xadd_range(ua, 401, 401, id);

    const char *ub = e2e_uid(&T, "wmB");
    e2e_create_metric(&T, ub, "e2e.wmB", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, ub, 10);
    an_result gap[] = {e2e_inf(1, 0.5), e2e_inf(2000000000, 0.5)};
    e2e_xadd_results(&T, ub, gap, 2, AN_ENC_JSON, id);
    xadd_range(ub, 1, 10, id);

    const char *uc = e2e_uid(&T, "wmC");
    e2e_create_metric(&T, uc, "e2e.wmC", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, uc, 10);
    xadd_range(uc, 1, 8, id);
    xadd_range(uc, 9, 12, id);

    const char *ud = e2e_uid(&T, "wmD");
    e2e_create_metric(&T, ud, "e2e.wmD", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, ud, 10);
    an_result desc[] = {e2e_inf(3, 0.5), e2e_inf(2, 0.5)};
    e2e_xadd_results(&T, ud, desc, 2, AN_ENC_JSON, id);
    xadd_range(ud, 1, 10, id);

    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    expect_nothing_pending();
    expect_no_dead_letters();

    ck_assert_int_eq(e2e_scored_rowid(&T, ua), 401);
    expect_rows(ua, 1, 401, true);
    ck_assert_int_eq(e2e_scored_rowid(&T, ub), 10);
    expect_rows(ub, 1, 10, true);
    ck_assert_int_eq(e2e_scored_rowid(&T, uc), 10);
    expect_rows(uc, 1, 8, true);
    expect_rows(uc, 9, 10, false);
    ck_assert_int_eq(e2e_scored_rowid(&T, ud), 10);
    expect_rows(ud, 1, 10, true);
    ck_assert_msg(e2e_count_lines(d.err_path, "not ascending, consecutive and positive") >= 2,
                  "no log line names the non-contiguous batch; stderr tail:\n%s",
                  e2e_tail(d.err_path, 3000));
}
END_TEST

/* ------------------------------------------------------------------------
 * watermark_repair_migration: a database damaged by the old watermark jump
 * (scored_rowid far above the metric's rows) is repaired by `anomalyctl db
 * init`: the migration lowers every scored_rowid above the metric's highest
 * processed row to that row (0 when none is processed); sound metrics are
 * untouched. The migration is re-applied here by forgetting it in
 * schema_migrations (the test's private database).
 */
static void exec_sql(const char *sql)
{
    PGresult *res = PQexec(an_repo_conn(T.repo), sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK ||
                      PQresultStatus(res) == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQerrorMessage(an_repo_conn(T.repo)));
    PQclear(res);
}

START_TEST(watermark_repair_migration)
{
    char id[AN_ID_MAX];
    const char *damaged = e2e_uid(&T, "dmg");
    const char *none = e2e_uid(&T, "dmg0");
    const char *sound = e2e_uid(&T, "sound");
    e2e_create_metric(&T, damaged, "e2e.dmg", AN_METRIC_ACTIVE);
    e2e_create_metric(&T, none, "e2e.dmg0", AN_METRIC_ACTIVE);
    e2e_create_metric(&T, sound, "e2e.sound", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, damaged, 10);
    e2e_add_simple_rows(&T, none, 5);
    e2e_add_simple_rows(&T, sound, 10);
    xadd_range(damaged, 1, 6, id);
    xadd_range(sound, 1, 7, id);
    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    ck_assert_int_eq(e2e_scored_rowid(&T, damaged), 6);
    ck_assert_int_eq(e2e_scored_rowid(&T, sound), 7);

    char sql[512];
    snprintf(sql, sizeof sql,
             "UPDATE metric SET scored_rowid = 2000000000 WHERE uid IN ('%s', '%s')", damaged,
             none);
    exec_sql(sql);
    ck_assert_int_eq(e2e_scored_rowid(&T, damaged), 2000000000);
    exec_sql("DELETE FROM schema_migrations WHERE version = 6");

    e2e_proc p;
    e2e_run(&T, &p, "anomalyctl db init", 60000, e2e_bin("anomalyctl"), "db", "init", NULL);
    E2E_EXPECT_EXIT0(&p);
    ck_assert_int_eq(e2e_scored_rowid(&T, damaged), 6);
    ck_assert_int_eq(e2e_scored_rowid(&T, none), 0);
    ck_assert_int_eq(e2e_scored_rowid(&T, sound), 7);

    /* the repaired metric scores its next batch */
    xadd_range(damaged, 7, 10, id);
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    ck_assert_int_eq(e2e_scored_rowid(&T, damaged), 10);
    expect_rows(damaged, 1, 10, true);
    expect_nothing_pending();
    expect_no_dead_letters();
}
END_TEST

/* ------------------------------------------------------------------------
 * Processing attempts (issue 9, "attempts counted for every entry before
 * decoding"). An entry that crashed its consumers leaves unfinished
 * attempts in <input>:attempts; the test writes those counts as the
 * crashes would have, then checks that whichever consumer meets the entry
 * next dead-letters it, before decoding it, whatever it holds.
 */
static void set_attempts(const char *id, int n)
{
    redisReplyFree(e2e_redis_cmd(&T, "HSET %s:attempts %s %d", T.input, id, n));
}

static int64_t attempts_len(void)
{
    redisReply *r = e2e_redis_cmd(&T, "HLEN %s:attempts", T.input);
    int64_t n = r->integer;
    freeReplyObject(r);
    return n;
}

/* The dead letter whose source is id: its reason (malloc'd) or NULL. */
static char *dead_reason(const char *id)
{
    an_entry_list l;
    e2e_xrange_all(&T, T.dead, &l);
    char *reason = NULL;
    for (size_t i = 0; i < l.n && !reason; i++) {
        const an_field *src = an_entry_field(&l.v[i], "source");
        const an_field *why = an_entry_field(&l.v[i], "reason");
        if (src && why && !strcmp(src->value, id))
            reason = strdup(why->value);
    }
    an_entry_list_free(&l);
    return reason;
}

static void expect_dead(const char *id, const char *needle, const char *what)
{
    char *r = dead_reason(id);
    ck_assert_msg(r, "%s (entry %s) was not dead-lettered", what, id);
    ck_assert_msg(strstr(r, needle), "%s (entry %s): reason '%s' lacks '%s'", what, id, r,
                  needle);
    free(r);
}

/* attempts.lua's page and end modes, on the library's calls: a page
 * counts only the entries without an unfinished attempt (0 for the
 * others); ending takes one back and deletes the field at 0; ending an
 * absent field leaves it absent. */
START_TEST(attempts_page_and_end)
{
    const char *ids[3] = {"1-1", "1-2", "1-3"};
    int64_t c[3] = {-1, -1, -1};
    set_attempts("1-2", 1);
    ck_assert_int_eq(an_attempts_begin_page(T.rd, T.input, ids, 3, c), 0);
    ck_assert_int_eq(c[0], 1);
    ck_assert_int_eq(c[1], 0);
    ck_assert_int_eq(c[2], 1);
    ck_assert_int_eq(attempts_len(), 3);
    const char *end[2] = {"1-1", "1-2"};
    ck_assert_int_eq(an_attempts_end(T.rd, T.input, end, 2), 0);
    ck_assert_int_eq(attempts_len(), 1);   /* 1-1 and 1-2 back to 0: deleted */
    const char *absent[1] = {"9-9"};
    ck_assert_int_eq(an_attempts_end(T.rd, T.input, absent, 1), 0);
    ck_assert_int_eq(attempts_len(), 1);
    bool split = true;
    ck_assert_int_eq(an_attempts_begin(T.rd, T.input, &ids[2], 1, false, c, &split), 0);
    ck_assert_int_eq(c[0], 2);
    ck_assert_int_eq(an_attempts_end(T.rd, T.input, &ids[2], 1), 0);
    redisReply *r = e2e_redis_cmd(&T, "HGET %s:attempts 1-3", T.input);
    ck_assert_str_eq(r->str, "1");
    freeReplyObject(r);
}
END_TEST

START_TEST(attempts_before_decoding)
{
    e2e_setenv(&T, "ANOMALYD_STREAMS_MAX_DELIVERIES", "2");
    char id_cmd[AN_ID_MAX], id_bad[AN_ID_MAX], id_inf[AN_ID_MAX], id_def[AN_ID_MAX];

    /* a command entry that crashed consumers twice: dead-lettered, not run */
    const char *u_cmd = e2e_uid(&T, "crashcmd");
    e2e_create_metric(&T, u_cmd, "e2e.crashcmd", AN_METRIC_CREATE_PENDING);
    an_result def = e2e_cmd("cmd-crash", "defineModel", 0, NULL);
    e2e_xadd_results(&T, u_cmd, &def, 1, AN_ENC_JSON, id_cmd);
    set_attempts(id_cmd, 2);

    /* an entry that does not decode, crashed twice: the attempts reason,
     * so it was not decoded again */
    an_field bad[] = {e2e_field("model", u_cmd), e2e_field("batch", "[[\"iRv2\", 1, 0")};
    e2e_xadd_fields(&T, bad, 2, id_bad);
    set_attempts(id_bad, 2);

    /* a valid batch with one unfinished attempt: its second is allowed */
    const char *u_inf = e2e_uid(&T, "once");
    e2e_create_metric(&T, u_inf, "e2e.once", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, u_inf, 3);
    xadd_range(u_inf, 1, 3, id_inf);
    set_attempts(id_inf, 1);

    /* a healthy command entry after them */
    const char *u_def = e2e_uid(&T, "healthy");
    e2e_create_metric(&T, u_def, "e2e.healthy", AN_METRIC_CREATE_PENDING);
    an_result ok = e2e_cmd("cmd-ok", "defineModel", 0, NULL);
    e2e_xadd_results(&T, u_def, &ok, 1, AN_ENC_JSON, id_def);

    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    expect_nothing_pending();
    expect_dead(id_cmd, "processing attempted 3 times without completing, over max_deliveries (2)",
                "command entry with 2 unfinished attempts");
    expect_dead(id_bad, "processing attempted 3 times", "undecodable entry with 2 unfinished "
                "attempts");
    ck_assert_int_eq(e2e_xlen(&T, T.dead), 2);
    an_metric m;
    e2e_get_metric(&T, u_cmd, &m);
    ck_assert_msg(m.status == AN_METRIC_CREATE_PENDING,
                  "the dead-lettered defineModel was processed: status %s",
                  an_metric_status_name(m.status));
    an_metric_clear(&m);
    e2e_get_metric(&T, u_def, &m);
    ck_assert_msg(m.status == AN_METRIC_ACTIVE, "healthy defineModel: status %s",
                  an_metric_status_name(m.status));
    an_metric_clear(&m);
    ck_assert_int_eq(e2e_scored_rowid(&T, u_inf), 3);
    expect_rows(u_inf, 1, 3, true);
    ck_assert_int_eq(attempts_len(), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * waiting_is_not_an_attempt: with max_deliveries 1, entries that wait for
 * their predecessor (retried again and again in the deferral list) or for
 * their model's defineModel (then rejected after defer_max_ms) are never
 * dead-lettered, and no attempt is left counted.
 */
START_TEST(waiting_is_not_an_attempt)
{
    e2e_setenv(&T, "ANOMALYD_STREAMS_MAX_DELIVERIES", "1");
    e2e_setenv(&T, "ANOMALYD_STREAMS_DEFER_MAX_MS", "2000");
    char id[AN_ID_MAX];
    const char *u_order = e2e_uid(&T, "order");
    e2e_create_metric(&T, u_order, "e2e.order", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, u_order, 4);
    xadd_range(u_order, 3, 4, id);   /* waits for rows 1..2 */
    const char *u_pend = e2e_uid(&T, "pend");
    e2e_create_metric(&T, u_pend, "e2e.pend", AN_METRIC_CREATE_PENDING);
    e2e_add_simple_rows(&T, u_pend, 2);
    xadd_range(u_pend, 1, 2, id);    /* waits defer_max_ms, then rejected */
    xadd_range(u_order, 1, 2, id);

    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    expect_nothing_pending();
    expect_no_dead_letters();
    ck_assert_int_eq(e2e_scored_rowid(&T, u_order), 4);
    expect_rows(u_order, 1, 4, true);
    expect_rows(u_pend, 1, 2, false);
    ck_assert_int_eq(attempts_len(), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * deferral_bound (issue 9 case 6): a flood of entries for a CREATE_PENDING
 * model. The consumer keeps at most defer_max_entries of them (and
 * defer_max_bytes of their fields); the others stay pending, uncopied, are
 * taken back after claim_idle_ms, and are rejected like the first ones
 * once defer_max_ms has passed. 10 entries of the same size, read in one
 * page, deferred in stream order.
 */
#define FLOOD 10

/* Bytes of the field names and values of the first input entry. */
static long entry_payload(void)
{
    an_entry_list l;
    e2e_xrange_all(&T, T.input, &l);
    ck_assert_uint_ge(l.n, 1);
    long b = 0;
    for (size_t i = 0; i < l.v[0].nfields; i++)
        b += (long)(l.v[0].fields[i].name_len + l.v[0].fields[i].value_len);
    an_entry_list_free(&l);
    return b;
}

/* Runs the flood with NAME=VALUE (value NULL: 3 entries' bytes + extra)
 * and fails unless exactly the entries after the first `kept` were left
 * pending at least once (the log names them), and everything ends acked,
 * rejected as the original rejects a non-ACTIVE model's batch. */
static void flood(const char *name, const char *value, long extra, int kept)
{
    e2e_setenv(&T, "ANOMALYD_STREAMS_DEFER_MAX_MS", "2000");
    const char *u = e2e_uid(&T, "flood");
    e2e_create_metric(&T, u, "e2e.flood", AN_METRIC_CREATE_PENDING);
    e2e_add_simple_rows(&T, u, 40);
    char ids[FLOOD][AN_ID_MAX];
    for (int i = 0; i < FLOOD; i++)
        xadd_range(u, 1, 40, ids[i]);
    char v[32];
    if (!value) {
        snprintf(v, sizeof v, "%ld", 3 * entry_payload() + extra);
        value = v;
    }
    e2e_setenv(&T, name, value);
    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    expect_nothing_pending();
    expect_no_dead_letters();
    expect_rows(u, 1, 40, false);
    ck_assert_int_eq(attempts_len(), 0);
    for (int i = 0; i < FLOOD; i++) {
        char needle[160];
        snprintf(needle, sizeof needle, "entry %s (", ids[i]);
        size_t left = e2e_count_lines(d.err_path, needle);
        if (i < kept)
            ck_assert_msg(left == 0, "%s=%s: entry %d of %d was left pending (%zu log lines); "
                          "the first %d fit", name, value, i + 1, FLOOD, left, kept);
        else
            ck_assert_msg(left >= 1, "%s=%s: entry %d of %d was never left pending; only "
                          "the first %d fit; stderr tail:\n%s", name, value, i + 1, FLOOD,
                          kept, e2e_tail(d.err_path, 2000));
    }
}

START_TEST(deferral_bound_entries_at)
{
    flood("ANOMALYD_STREAMS_DEFER_MAX_ENTRIES", "10", 0, FLOOD);
}
END_TEST

START_TEST(deferral_bound_entries_past)
{
    flood("ANOMALYD_STREAMS_DEFER_MAX_ENTRIES", "3", 0, 3);
}
END_TEST

START_TEST(deferral_bound_bytes_at)
{
    flood("ANOMALYD_STREAMS_DEFER_MAX_BYTES", NULL, 0, 3);
}
END_TEST

START_TEST(deferral_bound_bytes_past)
{
    flood("ANOMALYD_STREAMS_DEFER_MAX_BYTES", NULL, -1, 2);
}
END_TEST

/* ------------------------------------------------------------------------
 * command_flood (issue 9 case 3): one entry of 2500 defineModel results.
 * They are processed with O(1) PostgreSQL transactions (not one or two per
 * result), published in chunks (several publish scripts, none long enough
 * for BUSY), every message once, in order, with the entry's id as source,
 * and the entry's attempt is counted like any other.
 */
#define NCMD 2500

static long long pg_xacts(void)
{
    PGresult *res = PQexec(an_repo_conn(T.repo),
                           "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                           "WHERE datname = current_database()");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    long long n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

static long long evalsha_calls(void)
{
    redisReply *r = e2e_redis_cmd(&T, "INFO commandstats");
    const char *p = strstr(r->str, "cmdstat_evalsha:calls=");
    long long n = p ? atoll(p + strlen("cmdstat_evalsha:calls=")) : 0;
    freeReplyObject(r);
    return n;
}

/* Waits until no backend of application_name anomalyd is left: its
 * statistics are flushed when it exits. */
static void wait_anomalyd_backends_gone(void)
{
    double t0 = e2e_now();
    for (;;) {
        PGresult *res = PQexec(an_repo_conn(T.repo),
                               "SELECT count(*) FROM pg_stat_activity WHERE application_name "
                               "= 'anomalyd' AND datname = current_database()");
        ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
        int n = atoi(PQgetvalue(res, 0, 0));
        PQclear(res);
        if (n == 0)
            return;
        ck_assert_msg(e2e_now() - t0 < 30, "anomalyd's PostgreSQL backend did not go away");
        e2e_sleep_ms(50);
    }
}

START_TEST(command_flood)
{
    e2e_setenv(&T, "ANOMALYD_STREAMS_OUTPUT_ENCODING", "json");
    const char *u = e2e_uid(&T, "cmdflood");
    e2e_create_metric(&T, u, "e2e.cmdflood", AN_METRIC_CREATE_PENDING);
    an_result *r = calloc(NCMD, sizeof *r);
    char (*cid)[16] = calloc(NCMD, sizeof *cid);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(cid);
    for (int i = 0; i < NCMD; i++) {
        snprintf(cid[i], sizeof cid[i], "c-%d", i);
        r[i] = e2e_cmd(cid[i], "defineModel", 0, NULL);
    }
    char id[AN_ID_MAX];
    e2e_xadd_results(&T, u, r, NCMD, AN_ENC_ZLIB, id);
    free(r);

    wait_anomalyd_backends_gone();
    long long x0 = pg_xacts(), e0 = evalsha_calls();
    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 300000);
    wait_anomalyd_backends_gone();
    long long xacts = pg_xacts() - x0, evals = evalsha_calls() - e0;
    fprintf(stderr, "[e2e] command_flood: %d results: %lld PostgreSQL transactions, %lld "
            "EVALSHA, anomalyd %.1f s\n", NCMD, xacts, evals, d.t_end - d.t_start);
    expect_nothing_pending();
    expect_no_dead_letters();
    ck_assert_int_eq(attempts_len(), 0);
    an_metric m;
    e2e_get_metric(&T, u, &m);
    ck_assert_msg(m.status == AN_METRIC_ACTIVE, "status %s", an_metric_status_name(m.status));

    json_t *outs = e2e_outputs(&T);
    json_t *mine = e2e_outputs_for(outs, id);
    ck_assert_uint_eq(json_array_size(mine), NCMD);
    for (int i = 0; i < NCMD; i++)
        e2e_expect_command_entry(json_array_get(mine, (size_t)i), u, "defineModel", cid[i], 0,
                                 NULL, &m, id, "json");
    json_decref(mine);
    json_decref(outs);
    an_metric_clear(&m);
    free(cid);
    /* O(1) transactions for the entry (connect, the metric read, one status
     * write, the idle loop's housekeeping): far below one per result */
    ck_assert_msg(xacts < 50, "%lld PostgreSQL transactions for %d command results", xacts,
                  NCMD);
    /* the attempt, then ceil(2500 / 1000) publish calls */
    ck_assert_msg(evals >= 4, "%lld EVALSHA calls: the %d messages were not published in "
                  "chunks", evals, NCMD);
}
END_TEST


static Suite *bounds_suite(void)
{
    Suite *s = suite_create("service_bounds");
    an_check_add_case(s, "watermark_only_on_matched_rows", watermark_only_on_matched_rows, setup, teardown, 600);
    an_check_add_case(s, "watermark_repair_migration", watermark_repair_migration, setup, teardown, 600);
    an_check_add_case(s, "attempts_page_and_end", attempts_page_and_end, setup, teardown, 600);
    an_check_add_case(s, "attempts_before_decoding", attempts_before_decoding, setup, teardown, 600);
    an_check_add_case(s, "waiting_is_not_an_attempt", waiting_is_not_an_attempt, setup, teardown, 600);
    an_check_add_case(s, "deferral_bound_entries_at", deferral_bound_entries_at, setup, teardown, 600);
    an_check_add_case(s, "deferral_bound_entries_past", deferral_bound_entries_past, setup, teardown, 600);
    an_check_add_case(s, "deferral_bound_bytes_at", deferral_bound_bytes_at, setup, teardown, 600);
    an_check_add_case(s, "deferral_bound_bytes_past", deferral_bound_bytes_past, setup, teardown, 600);
    an_check_add_case(s, "command_flood", command_flood, setup, teardown, 600);
    return s;
}

int main(void)
{
    return an_check_run(bounds_suite(), CK_VERBOSE);
}
