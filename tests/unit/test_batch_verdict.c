/*
 * test_batch_verdict.c: the group scorer's decision on one batch
 * (an_batch_verdict.h).
 *
 *  - readiness: a CREATE_PENDING metric waits for its defineModel; a batch
 *    right after the watermark, or whose predecessor row is processed or
 *    missing, is ready; a gap of unprocessed rows waits;
 *  - the verdict order: waiting for defineModel comes before everything, a
 *    forced CREATE_PENDING batch is rejected as not ACTIVE; status, rowids,
 *    duplicate and overlap come before the wait for a predecessor; a
 *    forced batch past an unprocessed gap is scored (SCORE_FORCED);
 *  - rowids: non-positive, gaps, descending and the INT64_MAX step are not
 *    contiguous;
 *  - the read bound: never more than n rows from the first, at and past
 *    the int64 edge.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "an_batch_verdict.h"
#include "an_repo.h"
#include "check_main.h"

#define MAXR 8

/* A batch of the given rowids (n <= MAXR), as the decoder hands it over. */
typedef struct batch {
    an_inference_result r[MAXR];
    const an_inference_result *p[MAXR];
    size_t n;
} batch;

static batch *mk(size_t n, const int64_t *rowids)
{
    static batch b;
    ck_assert_uint_le(n, MAXR);
    b.n = n;
    for (size_t i = 0; i < n; i++) {
        b.r[i] = (an_inference_result){.rowid = rowids[i]};
        b.p[i] = &b.r[i];
    }
    return &b;
}

/* a run of n rows from first */
static batch *run(int64_t first, size_t n)
{
    int64_t v[MAXR];
    for (size_t i = 0; i < n; i++)
        v[i] = first + (int64_t)i;
    return mk(n, v);
}

static an_verdict verdict(const batch *b, bool force, int status, int64_t wm, int pred)
{
    return an_batch_verdict(b->p, b->n, force, status, wm, pred);
}

START_TEST(readiness)
{
    /* defineModel first, whatever the rows */
    ck_assert_int_eq(an_batch_readiness(1, AN_METRIC_CREATE_PENDING, 0, AN_ROW_MISSING),
                     AN_WAIT_DEFINE);
    ck_assert_int_eq(an_batch_readiness(11, AN_METRIC_CREATE_PENDING, 10, AN_ROW_PROCESSED),
                     AN_WAIT_DEFINE);
    /* right after the watermark, at it and below it */
    ck_assert_int_eq(an_batch_readiness(11, AN_METRIC_ACTIVE, 10, AN_ROW_UNPROCESSED), AN_READY);
    ck_assert_int_eq(an_batch_readiness(10, AN_METRIC_ACTIVE, 10, AN_ROW_UNPROCESSED), AN_READY);
    /* a gap: its predecessor row decides */
    ck_assert_int_eq(an_batch_readiness(12, AN_METRIC_ACTIVE, 10, AN_ROW_UNPROCESSED),
                     AN_WAIT_PREDECESSOR);
    ck_assert_int_eq(an_batch_readiness(12, AN_METRIC_ACTIVE, 10, AN_ROW_PROCESSED), AN_READY);
    ck_assert_int_eq(an_batch_readiness(12, AN_METRIC_ACTIVE, 10, AN_ROW_MISSING), AN_READY);
    /* other statuses are not the readiness test's business */
    ck_assert_int_eq(an_batch_readiness(12, AN_METRIC_UNMONITORED, 10, AN_ROW_UNPROCESSED),
                     AN_WAIT_PREDECESSOR);
}
END_TEST

START_TEST(create_pending_waits_then_is_rejected_when_forced)
{
    batch *b = run(1, 3);
    ck_assert_int_eq(verdict(b, false, AN_METRIC_CREATE_PENDING, 0, AN_ROW_MISSING), AN_V_WAIT);
    ck_assert_int_eq(verdict(b, true, AN_METRIC_CREATE_PENDING, 0, AN_ROW_MISSING),
                     AN_V_INACTIVE);
    /* waiting for defineModel comes before the rowid test */
    int64_t bad[] = {0, 1};
    ck_assert_int_eq(verdict(mk(2, bad), false, AN_METRIC_CREATE_PENDING, 0, AN_ROW_MISSING),
                     AN_V_WAIT);
}
END_TEST

START_TEST(inactive_before_rowids_and_waiting)
{
    int64_t bad[] = {3, 5};
    int statuses[] = {AN_METRIC_UNMONITORED, AN_METRIC_ERROR, AN_METRIC_PENDING_DATA};
    for (size_t k = 0; k < sizeof statuses / sizeof *statuses; k++) {
        ck_assert_int_eq(verdict(mk(2, bad), false, statuses[k], 0, AN_ROW_MISSING),
                         AN_V_INACTIVE);
        ck_assert_int_eq(verdict(run(20, 2), false, statuses[k], 10, AN_ROW_UNPROCESSED),
                         AN_V_INACTIVE);
    }
}
END_TEST

START_TEST(rowids)
{
    int64_t gap[] = {3, 5}, down[] = {5, 4}, zero[] = {0, 1}, neg[] = {-1};
    int64_t edge[] = {INT64_MAX, INT64_MIN};
    ck_assert(an_rowids_contiguous(run(1, 1)->p, 1));
    ck_assert(an_rowids_contiguous(run(7, 5)->p, 5));
    ck_assert(!an_rowids_contiguous(mk(2, gap)->p, 2));
    ck_assert(!an_rowids_contiguous(mk(2, down)->p, 2));
    ck_assert(!an_rowids_contiguous(mk(2, zero)->p, 2));
    ck_assert(!an_rowids_contiguous(mk(1, neg)->p, 1));
    ck_assert(!an_rowids_contiguous(mk(2, edge)->p, 2));
    /* an invalid batch is rejected before the watermark tests: even one
     * entirely below the watermark is no duplicate */
    ck_assert_int_eq(verdict(mk(2, gap), false, AN_METRIC_ACTIVE, 10, AN_ROW_PROCESSED),
                     AN_V_INVALID);
    /* ... and before the wait for a predecessor */
    int64_t gap_ahead[] = {15, 17};
    ck_assert_int_eq(verdict(mk(2, gap_ahead), false, AN_METRIC_ACTIVE, 10, AN_ROW_UNPROCESSED),
                     AN_V_INVALID);
}
END_TEST

START_TEST(watermark)
{
    /* at or below: duplicate; straddling: poison; after: scored */
    ck_assert_int_eq(verdict(run(9, 2), false, AN_METRIC_ACTIVE, 10, AN_ROW_PROCESSED),
                     AN_V_DUPLICATE);
    ck_assert_int_eq(verdict(run(1, 1), false, AN_METRIC_ACTIVE, 10, AN_ROW_MISSING),
                     AN_V_DUPLICATE);
    ck_assert_int_eq(verdict(run(10, 2), false, AN_METRIC_ACTIVE, 10, AN_ROW_PROCESSED),
                     AN_V_OVERLAP);
    ck_assert_int_eq(verdict(run(11, 2), false, AN_METRIC_ACTIVE, 10, AN_ROW_PROCESSED),
                     AN_V_SCORE);
    ck_assert_int_eq(verdict(run(1, 3), false, AN_METRIC_ACTIVE, 0, AN_ROW_MISSING), AN_V_SCORE);
    /* forcing changes nothing for a ready batch */
    ck_assert_int_eq(verdict(run(11, 2), true, AN_METRIC_ACTIVE, 10, AN_ROW_UNPROCESSED),
                     AN_V_SCORE);
}
END_TEST

START_TEST(predecessor)
{
    batch *b = run(15, 2);
    ck_assert_int_eq(verdict(b, false, AN_METRIC_ACTIVE, 10, AN_ROW_UNPROCESSED), AN_V_WAIT);
    ck_assert_int_eq(verdict(b, true, AN_METRIC_ACTIVE, 10, AN_ROW_UNPROCESSED),
                     AN_V_SCORE_FORCED);
    ck_assert_int_eq(verdict(b, false, AN_METRIC_ACTIVE, 10, AN_ROW_PROCESSED), AN_V_SCORE);
    ck_assert_int_eq(verdict(b, false, AN_METRIC_ACTIVE, 10, AN_ROW_MISSING), AN_V_SCORE);
}
END_TEST

START_TEST(read_bound)
{
    /* within n rows: the batch's own last */
    ck_assert_int_eq(an_batch_read_last(1, 3, 3), 3);
    ck_assert_int_eq(an_batch_read_last(5, 6, 3), 6);
    /* past it: capped at n rows from the first */
    ck_assert_int_eq(an_batch_read_last(1, 2000000000, 3), 3);
    ck_assert_int_eq(an_batch_read_last(10, 13, 3), 12);
    /* descending: its (empty) range as it is */
    ck_assert_int_eq(an_batch_read_last(5, 3, 3), 3);
    /* at and past the int64 edge: no overflow, the last as it is */
    ck_assert_int_eq(an_batch_read_last(INT64_MAX - 3, INT64_MAX, 3), INT64_MAX - 1);
    ck_assert_int_eq(an_batch_read_last(INT64_MAX - 2, INT64_MAX, 3), INT64_MAX);
    ck_assert_int_eq(an_batch_read_last(INT64_MAX - 1, INT64_MAX, 3), INT64_MAX);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("batch_verdict");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, readiness);
    tcase_add_test(tc, create_pending_waits_then_is_rejected_when_forced);
    tcase_add_test(tc, inactive_before_rowids_and_waiting);
    tcase_add_test(tc, rowids);
    tcase_add_test(tc, watermark);
    tcase_add_test(tc, predecessor);
    tcase_add_test(tc, read_bound);
    suite_add_tcase(s, tc);
    return an_check_run(s, CK_NORMAL);
}
