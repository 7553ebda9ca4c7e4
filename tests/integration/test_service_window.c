/*
 * test_service_window.c: the sample windows (an_sample_window.h,
 * src/service_window.c) end to end. The same metric (NYC taxi, 10,320
 * rows: six 1,440-row batches, then 1,680 one-row live batches, so every
 * live re-estimate runs over a full 8,640-sample window that wraps) is
 * scored three times under three uids:
 *   - windows on (the defaults): its re-estimates must be answered from
 *     memory (sample_window_hits in the stats line > 0);
 *   - the reference: windows off, state cache off, read_count 1 (one entry
 *     per transaction, every read from PostgreSQL);
 *   - windows on but the state cache off: a window is never trusted
 *     across groups without a state cache hit, so every group that
 *     re-estimates reads PostgreSQL again.
 * Every row (raw, anomaly score, display value, predictions) and the final
 * anomalyLikelihoodParams, watermark and params hash must be bit for bit
 * the same in all three, and equal to `anomalyctl likelihood`.
 */
#define _GNU_SOURCE
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;

static void setup(void) { e2e_init(&T, "win"); }
static void teardown(void) { e2e_fini(&T); }

#define NYC_TAXI "likelihood/htmengine/numenta_nyc_taxi.inputs.csv"
#define N_ROWS 10320
#define LIVE_AFTER 8640

/* The value of "<key>=<int>" on the last "stats:" line of a log file. */
static int64_t last_stat(const char *path, const char *key)
{
    char *text = e2e_slurp(path, NULL);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    const char *line = NULL;
    for (const char *p = strstr(text, "stats:"); p; p = strstr(p + 1, "stats:"))
        line = p;
    ck_assert_msg(line != NULL, "no stats line in %s", path);
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *v = strstr(line, pat);
    ck_assert_msg(v != NULL, "stats line has no %s: %.400s", key, line);
    int64_t n = strtoll(v + strlen(pat), NULL, 10);
    free(text);
    return n;
}

/* Replays the CSV for uid and drains it with one anomalyd; returns the
 * process (its log in p->err_path). */
static void score_metric(const char *uid, const char *consumer, e2e_proc *p)
{
    e2e_replay(&T, e2e_data(NYC_TAXI), uid, uid, 1440, LIVE_AFTER, N_ROWS, -1);
    e2e_run_anomalyd(&T, p, consumer, 1500, 600000);
    ck_assert_int_eq(e2e_pending(&T), 0);
    ck_assert_int_eq(e2e_xlen(&T, T.dead), 0);
}

/* Rows 1..N of a and b are the same bits; so are their stored params and
 * watermarks. */
static void expect_same(const char *a, const char *b)
{
    an_data_rows ra = {0}, rb = {0};
    e2e_get_rows(&T, a, 1, N_ROWS, &ra);
    e2e_get_rows(&T, b, 1, N_ROWS, &rb);
    ck_assert_uint_eq(ra.n, N_ROWS);
    ck_assert_uint_eq(rb.n, N_ROWS);
    for (size_t i = 0; i < ra.n; i++) {
        const an_data_row *x = &ra.v[i], *y = &rb.v[i];
        ck_assert_msg(x->rowid == y->rowid && x->has_raw && y->has_raw &&
                          e2e_same_double(x->raw, y->raw) && x->has_score == y->has_score &&
                          e2e_same_double(x->anomaly_score, y->anomaly_score) &&
                          x->has_display == y->has_display &&
                          x->display_value == y->display_value &&
                          !strcmp(x->predictions ? x->predictions : "",
                                  y->predictions ? y->predictions : ""),
                      "row %" PRId64 " of %s differs from %s: score %.17g vs %.17g", x->rowid,
                      a, b, x->anomaly_score, y->anomaly_score);
    }
    an_data_rows_free(&ra);
    an_data_rows_free(&rb);
    an_metric ma, mb;
    e2e_get_metric(&T, a, &ma);
    e2e_get_metric(&T, b, &mb);
    ck_assert_int_eq(ma.scored_rowid, N_ROWS);
    ck_assert_int_eq(mb.scored_rowid, N_ROWS);
    json_t *pa = e2e_stored_params(&ma), *pb = e2e_stored_params(&mb);
    char *ta = json_dumps(pa, JSON_SORT_KEYS | JSON_COMPACT);
    char *tb = json_dumps(pb, JSON_SORT_KEYS | JSON_COMPACT);
    ck_assert_ptr_nonnull(ta);
    ck_assert_ptr_nonnull(tb);
    ck_assert_msg(json_is_object(pa) && !strcmp(ta, tb),
                  "anomalyLikelihoodParams of %s and %s differ:\n%.400s\n%.400s", a, b, ta, tb);
    free(ta);
    free(tb);
    json_decref(pa);
    json_decref(pb);
    an_metric_clear(&ma);
    an_metric_clear(&mb);
    e2e_expect_params_cache(&T, a, N_ROWS);
    e2e_expect_params_cache(&T, b, N_ROWS);
}

START_TEST(window_hits_are_reads)
{
    double t0 = e2e_now();
    const char *on = e2e_uid(&T, "on");
    const char *ref = e2e_uid(&T, "ref");
    const char *nosc = e2e_uid(&T, "nosc");
    e2e_proc p;

    /* windows on (defaults) */
    score_metric(on, "c-on", &p);
    int64_t hits = last_stat(p.err_path, "sample_window_hits");
    int64_t misses = last_stat(p.err_path, "sample_window_misses");
    int64_t held = last_stat(p.err_path, "sample_window");
    fprintf(stderr, "[e2e] windows on: hits=%" PRId64 " misses=%" PRId64 " held=%" PRId64 "\n",
            hits, misses, held);
    /* 1,680 live rows past 8,640: a re-estimate every 24 rows, all but the
     * one rebuilding the window (after the catch-up) from memory */
    ck_assert_int_ge(hits, (N_ROWS - LIVE_AFTER) / 24 - 2);
    ck_assert_int_le(misses, 4);
    ck_assert_int_eq(held, 1);

    /* the reference: one entry per transaction, no caches */
    e2e_setenv(&T, "ANOMALYD_ANOMALY_LIKELIHOOD_SAMPLE_WINDOW_BYTES", "0");
    e2e_setenv(&T, "ANOMALYD_ANOMALY_LIKELIHOOD_STATE_CACHE_METRICS", "0");
    e2e_setenv(&T, "ANOMALYD_STREAMS_READ_COUNT", "1");
    score_metric(ref, "c-ref", &p);
    ck_assert_int_eq(last_stat(p.err_path, "sample_window_hits"), 0);
    ck_assert_int_eq(last_stat(p.err_path, "sample_window"), 0);

    /* windows on, state cache off: never trusted */
    e2e_setenv(&T, "ANOMALYD_ANOMALY_LIKELIHOOD_SAMPLE_WINDOW_BYTES", "256MiB");
    e2e_setenv(&T, "ANOMALYD_STREAMS_READ_COUNT", "64");
    score_metric(nosc, "c-nosc", &p);
    /* a window rebuilt from a read under the lock serves the rest of that
     * group only: every group of 64 live entries reads PostgreSQL again */
    int64_t nosc_misses = last_stat(p.err_path, "sample_window_misses");
    ck_assert_int_ge(nosc_misses, (N_ROWS - LIVE_AFTER) / 64);
    ck_assert_int_lt(last_stat(p.err_path, "sample_window_hits"), hits);

    expect_same(on, ref);
    expect_same(nosc, ref);

    /* and all of it is what the offline helper computes */
    e2e_offline off;
    e2e_offline_run(&T, e2e_data(NYC_TAXI), "--schedule", "1440,1440,1440,1440,1440,1440,1",
                    &off);
    ck_assert_uint_eq(off.n, N_ROWS);
    e2e_expect_rows_match_offline(&T, on, &off);
    e2e_offline_free(&off);
    fprintf(stderr, "[e2e] window_hits_are_reads: %.1f s\n", e2e_now() - t0);
}
END_TEST

static Suite *window_suite(void)
{
    Suite *s = suite_create("service_window");
    TCase *tc = tcase_create("e2e");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, window_hits_are_reads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(window_suite(), CK_NORMAL);
}
