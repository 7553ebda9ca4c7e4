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

static e2e T;

static void setup(void) { e2e_init(&T, "bnd"); }
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
    ck_assert_msg(e2e_count_lines(d.err_path, "not contiguous") >= 1,
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

/* One TCase per test, so that CK_RUN_CASE=<test name> runs just that one. */
static void add_case(Suite *s, const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

static Suite *bounds_suite(void)
{
    Suite *s = suite_create("service_bounds");
    add_case(s, "watermark_only_on_matched_rows", watermark_only_on_matched_rows);
    add_case(s, "watermark_repair_migration", watermark_repair_migration);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bounds_suite());
    srunner_run_all(sr, CK_VERBOSE);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
