/*
 * test_sample_window.c: the per-metric windows of processed samples
 * (an_sample_window.h).
 *
 *  - ring wrap: appends past the capacity keep exactly the newest samples,
 *    in order, however the appends are cut;
 *  - the tail rules: a window answers n rows when it holds n, or when it
 *    holds all of the metric's rows (count known); otherwise it declines;
 *  - watermark discipline: a lookup with another watermark misses, an
 *    append with another watermark or rows not after the newest drops the
 *    window, forget drops it;
 *  - bytes: the charge of a window, LRU eviction by bytes, a store of 0
 *    bytes keeps nothing, a window larger than the budget is not kept;
 *  - a randomized model comparison: over random puts, appends, lookups and
 *    forgets on a few metrics, every answer equals that of a naive array of
 *    all the metric's samples.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_error.h"
#include "an_sample_window.h"
#include "check_main.h"

static an_sample S(int64_t rowid)
{
    return (an_sample){rowid, (double)rowid * 0.5, (double)rowid / 1000.0};
}

/* rows [from, from + n) */
static an_sample *rows_from(int64_t from, size_t n)
{
    an_sample *r = calloc(n ? n : 1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    for (size_t i = 0; i < n; i++)
        r[i] = S(from + (int64_t)i);
    return r;
}

static void ck_rows(const an_sample *got, size_t n, int64_t first)
{
    for (size_t i = 0; i < n; i++) {
        an_sample want = S(first + (int64_t)i);
        ck_assert_msg(got[i].rowid == want.rowid && got[i].value == want.value &&
                          got[i].raw == want.raw,
                      "sample %zu: rowid %lld, want %lld", i, (long long)got[i].rowid,
                      (long long)want.rowid);
    }
}

START_TEST(test_ring_wrap)
{
    const size_t cap = 100;
    an_sample_window *w = an_sample_window_new(1 << 20, cap);
    ck_assert_ptr_nonnull(w);
    an_sample *r = rows_from(1, 30);
    ck_assert_int_eq(an_sample_window_put(w, "m", r, 30, 30, 30), 0);
    free(r);
    int64_t next = 31, wm = 30;
    /* appends of odd sizes, wrapping the ring several times */
    size_t sizes[] = {7, 1, 63, 99, 100, 5, 250, 3};
    an_sample out[100];
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        r = rows_from(next, sizes[s]);
        int64_t nwm = next + (int64_t)sizes[s] - 1;
        ck_assert_int_eq(an_sample_window_append(w, "m", wm, r, sizes[s], nwm), 0);
        free(r);
        next += (int64_t)sizes[s];
        wm = nwm;
        int64_t total = next - 1;
        size_t held = total < (int64_t)cap ? (size_t)total : cap;
        for (size_t n = 1; n <= cap; n += 33) {
            size_t got = 0;
            ck_assert(an_sample_window_tail(w, "m", wm, n, out, &got));
            size_t want = n < held ? n : held;
            ck_assert_uint_eq(got, want);
            ck_rows(out, got, next - (int64_t)want);
        }
        int64_t c = 0;
        ck_assert(an_sample_window_count(w, "m", wm, &c));
        ck_assert_int_eq(c, total);
    }
    an_sample_window_free(w);
}
END_TEST

START_TEST(test_tail_rules)
{
    an_sample_window *w = an_sample_window_new(1 << 20, 50);
    an_sample out[50];
    size_t got = 99;
    an_sample *r = rows_from(11, 50);
    /* 50 rows, count unknown: answers up to 50 */
    ck_assert_int_eq(an_sample_window_put(w, "a", r, 50, -1, 60), 0);
    ck_assert(an_sample_window_tail(w, "a", 60, 50, out, &got));
    ck_assert_uint_eq(got, 50);
    ck_rows(out, 50, 11);
    int64_t c = 0;
    ck_assert(!an_sample_window_count(w, "a", 60, &c));
    an_sample_window_set_count(w, "a", 60, 1234);
    ck_assert(an_sample_window_count(w, "a", 60, &c));
    ck_assert_int_eq(c, 1234);
    /* 20 rows, count unknown: declines more than 20, answers 20 */
    ck_assert_int_eq(an_sample_window_put(w, "b", r, 20, -1, 30), 0);
    ck_assert(!an_sample_window_tail(w, "b", 30, 21, out, &got));
    ck_assert(an_sample_window_tail(w, "b", 30, 20, out, &got));
    ck_assert_uint_eq(got, 20);
    /* 20 rows and they are all: answers 21 with 20 */
    ck_assert_int_eq(an_sample_window_put(w, "c", r, 20, 20, 30), 0);
    ck_assert(an_sample_window_tail(w, "c", 30, 40, out, &got));
    ck_assert_uint_eq(got, 20);
    ck_rows(out, 20, 11);
    /* an empty window of a metric with no processed rows */
    ck_assert_int_eq(an_sample_window_put(w, "e", NULL, 0, 0, 5), 0);
    ck_assert(an_sample_window_tail(w, "e", 5, 10, out, &got));
    ck_assert_uint_eq(got, 0);
    /* a count below the rows is nonsense */
    ck_assert_int_eq(an_sample_window_put(w, "d", r, 20, 19, 30), AN_EINVAL);
    ck_assert(!an_sample_window_has(w, "d", 30));
    int64_t hits = 0, misses = 0;
    an_sample_window_miss(w);
    an_sample_window_stats(w, &hits, &misses);
    ck_assert_int_eq(hits, 5);
    ck_assert_int_eq(misses, 1);
    free(r);
    an_sample_window_free(w);
}
END_TEST

START_TEST(test_watermark_discipline)
{
    an_sample_window *w = an_sample_window_new(1 << 20, 50);
    an_sample out[50];
    size_t got = 0;
    an_sample *r = rows_from(1, 10);
    ck_assert_int_eq(an_sample_window_put(w, "m", r, 10, 10, 10), 0);
    /* another watermark: no answer */
    ck_assert(!an_sample_window_tail(w, "m", 11, 5, out, &got));
    ck_assert(!an_sample_window_tail(w, "m", 9, 5, out, &got));
    ck_assert(!an_sample_window_has(w, "other", 10));
    /* append under another watermark: dropped */
    an_sample *more = rows_from(11, 3);
    ck_assert_int_eq(an_sample_window_append(w, "m", 9, more, 3, 13), AN_ESTATE);
    ck_assert(!an_sample_window_has(w, "m", 10));
    ck_assert_uint_eq(an_sample_window_size(w), 0);
    ck_assert_uint_eq(an_sample_window_bytes(w), 0);
    /* rows not after the newest: dropped */
    ck_assert_int_eq(an_sample_window_put(w, "m", r, 10, 10, 10), 0);
    an_sample *old = rows_from(10, 3);
    ck_assert_int_eq(an_sample_window_append(w, "m", 10, old, 3, 13), AN_ESTATE);
    ck_assert(!an_sample_window_has(w, "m", 10));
    /* a watermark moving back: dropped */
    ck_assert_int_eq(an_sample_window_put(w, "m", r, 10, 10, 10), 0);
    ck_assert_int_eq(an_sample_window_append(w, "m", 10, more, 3, 9), AN_ESTATE);
    ck_assert(!an_sample_window_has(w, "m", 10));
    /* the right one moves the watermark (a rejected batch: no rows, wm moves) */
    ck_assert_int_eq(an_sample_window_put(w, "m", r, 10, 10, 10), 0);
    ck_assert_int_eq(an_sample_window_append(w, "m", 10, NULL, 0, 12), 0);
    ck_assert(!an_sample_window_has(w, "m", 10));
    ck_assert(an_sample_window_has(w, "m", 12));
    an_sample *after = rows_from(13, 3);
    ck_assert_int_eq(an_sample_window_append(w, "m", 12, after, 3, 15), 0);
    ck_assert(an_sample_window_tail(w, "m", 15, 13, out, &got));
    ck_assert_uint_eq(got, 13);
    ck_rows(out, 10, 1);
    ck_rows(out + 10, 3, 13);
    /* forget */
    an_sample_window_forget(w, "m");
    an_sample_window_forget(w, "m");
    ck_assert(!an_sample_window_has(w, "m", 15));
    /* a missing window cannot be appended to */
    ck_assert_int_eq(an_sample_window_append(w, "m", 15, after, 3, 18), AN_ESTATE);
    free(r);
    free(more);
    free(old);
    free(after);
    an_sample_window_free(w);
}
END_TEST

START_TEST(test_lru_by_bytes)
{
    const size_t cap = 64;
    const size_t one = an_sample_window_entry_bytes("m00", cap);
    ck_assert_uint_eq(one, cap * sizeof(an_sample) + AN_SAMPLE_WINDOW_OVERHEAD + 4);
    /* room for exactly three full windows */
    an_sample_window *w = an_sample_window_new(3 * one, cap);
    an_sample *r = rows_from(1, cap);
    char uid[8];
    for (int i = 0; i < 3; i++) {
        snprintf(uid, sizeof uid, "m%02d", i);
        ck_assert_int_eq(an_sample_window_put(w, uid, r, cap, -1, (int64_t)cap), 0);
    }
    ck_assert_uint_eq(an_sample_window_size(w), 3);
    ck_assert_uint_eq(an_sample_window_bytes(w), 3 * one);
    /* m00 used: m01 is now the least recently used */
    ck_assert(an_sample_window_has(w, "m00", (int64_t)cap));
    ck_assert_int_eq(an_sample_window_put(w, "m03", r, cap, -1, (int64_t)cap), 0);
    ck_assert_uint_eq(an_sample_window_size(w), 3);
    ck_assert(!an_sample_window_has(w, "m01", (int64_t)cap));
    ck_assert(an_sample_window_has(w, "m00", (int64_t)cap));
    ck_assert(an_sample_window_has(w, "m02", (int64_t)cap));
    ck_assert(an_sample_window_has(w, "m03", (int64_t)cap));
    ck_assert_uint_le(an_sample_window_bytes(w), 3 * one);
    /* a small window grows as it is appended to, evicting the LRU one */
    an_sample_window_forget(w, "m03");
    ck_assert_int_eq(an_sample_window_put(w, "m04", r, 1, 1, 1), 0);
    size_t small = an_sample_window_bytes(w) - 2 * one;
    ck_assert_uint_lt(small, one);
    ck_assert(an_sample_window_has(w, "m00", (int64_t)cap)); /* m02 is LRU */
    an_sample *more = rows_from(2, cap);
    ck_assert_int_eq(an_sample_window_append(w, "m04", 1, more, cap - 1, (int64_t)cap), 0);
    ck_assert_uint_eq(an_sample_window_bytes(w), 3 * one);
    ck_assert_int_eq(an_sample_window_put(w, "m05", r, cap, -1, (int64_t)cap), 0);
    ck_assert(!an_sample_window_has(w, "m02", (int64_t)cap));
    ck_assert_uint_eq(an_sample_window_size(w), 3);
    /* a window larger than the whole budget is not kept, others stay */
    an_sample_window *tiny = an_sample_window_new(one - 1, cap);
    ck_assert_int_eq(an_sample_window_put(tiny, "m00", r, cap, -1, (int64_t)cap), 0);
    ck_assert_uint_eq(an_sample_window_size(tiny), 0);
    ck_assert_uint_eq(an_sample_window_bytes(tiny), 0);
    an_sample_window_free(tiny);
    /* off: keeps nothing */
    an_sample_window *off = an_sample_window_new(0, cap);
    ck_assert_ptr_nonnull(off);
    ck_assert_int_eq(an_sample_window_put(off, "m00", r, 0, 0, 0), 0);
    ck_assert(!an_sample_window_has(off, "m00", 0));
    an_sample_window_free(off);
    ck_assert_ptr_null(an_sample_window_new(100, 0));
    free(r);
    free(more);
    an_sample_window_free(w);
}
END_TEST

START_TEST(test_many_metrics)
{
    /* table growth: 5,000 windows, all found */
    an_sample_window *w = an_sample_window_new((size_t)1 << 30, 8);
    an_sample *r = rows_from(1, 8);
    char uid[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(uid, sizeof uid, "metric-%d", i);
        ck_assert_int_eq(an_sample_window_put(w, uid, r, (size_t)(i % 9), -1, i), 0);
    }
    ck_assert_uint_eq(an_sample_window_size(w), 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(uid, sizeof uid, "metric-%d", i);
        ck_assert(an_sample_window_has(w, uid, i));
        ck_assert(!an_sample_window_has(w, uid, i + 1));
    }
    free(r);
    an_sample_window_free(w);
}
END_TEST

/* The naive model: every processed sample of a metric, and its watermark. */
typedef struct model {
    an_sample *all;
    size_t n, cap;
    int64_t wm;
    bool known;      /* the store is expected to have a window for it */
} model;

static void model_add(model *m, an_sample s)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->all = realloc(m->all, m->cap * sizeof *m->all);
        ck_assert_ptr_nonnull(m->all);
    }
    m->all[m->n++] = s;
}

START_TEST(test_random_vs_model)
{
    enum { NM = 6, CAP = 40 };
    srand(12345);
    /* a budget that fits about four full windows: evictions happen */
    size_t budget = 4 * an_sample_window_entry_bytes("m0", CAP);
    an_sample_window *w = an_sample_window_new(budget, CAP);
    model md[NM];
    memset(md, 0, sizeof md);
    int64_t next_rowid[NM];
    for (int i = 0; i < NM; i++)
        next_rowid[i] = 1;
    an_sample out[CAP], batch[3 * CAP];
    long answered = 0;
    for (int step = 0; step < 20000; step++) {
        int i = rand() % NM;
        char uid[8];
        snprintf(uid, sizeof uid, "m%d", i);
        model *m = &md[i];
        int op = rand() % 10;
        if (op < 5) {
            /* score a batch (commit): rows appended in the model; the
             * store appended to when it is believed to hold the window */
            size_t k = (size_t)(rand() % (rand() % 4 == 0 ? 3 * CAP : 5));
            for (size_t j = 0; j < k; j++) {
                batch[j] = S(next_rowid[i]++);
                batch[j].raw = (double)rand() / RAND_MAX;
                model_add(m, batch[j]);
            }
            int64_t nwm = next_rowid[i] - 1 + (rand() % 3 == 0);
            next_rowid[i] = nwm + 1;
            int rc = an_sample_window_append(w, uid, m->wm, batch, k, nwm);
            if (m->known && rc != 0)
                ck_assert_int_eq(rc, AN_ESTATE); /* evicted meanwhile */
            m->known = rc == 0 && an_sample_window_has(w, uid, nwm);
            m->wm = nwm;
        } else if (op < 7) {
            /* a rebuild from the "database": the newest CAP samples */
            size_t k = m->n < CAP ? m->n : CAP;
            bool all = m->n <= CAP && rand() % 2;
            ck_assert_int_eq(an_sample_window_put(w, uid, m->all + (m->n - k), k,
                                                  all ? (int64_t)m->n : -1, m->wm),
                             0);
            m->known = an_sample_window_has(w, uid, m->wm);
        } else if (op < 9) {
            size_t n = 1 + (size_t)(rand() % CAP);
            size_t got = 0;
            if (an_sample_window_tail(w, uid, m->wm, n, out, &got)) {
                size_t want = n < m->n ? n : m->n;
                ck_assert_uint_eq(got, want);
                if (want)
                    ck_assert_int_eq(memcmp(out, m->all + (m->n - want), want * sizeof *out), 0);
                answered++;
            }
            int64_t c;
            if (an_sample_window_count(w, uid, m->wm, &c))
                ck_assert_int_eq(c, (int64_t)m->n);
            /* never an answer for another watermark */
            ck_assert(!an_sample_window_tail(w, uid, m->wm + 1, n, out, &got));
        } else {
            an_sample_window_forget(w, uid);
            m->known = false;
        }
        ck_assert_uint_le(an_sample_window_bytes(w), budget);
    }
    ck_assert_int_gt(answered, 1000);
    for (int i = 0; i < NM; i++)
        free(md[i].all);
    an_sample_window_free(w);
}
END_TEST

static Suite *sample_window_suite(void)
{
    Suite *s = suite_create("sample_window");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ring_wrap);
    tcase_add_test(tc, test_tail_rules);
    tcase_add_test(tc, test_watermark_discipline);
    tcase_add_test(tc, test_lru_by_bytes);
    tcase_add_test(tc, test_many_metrics);
    tcase_add_test(tc, test_random_vs_model);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(sample_window_suite(), CK_NORMAL);
}
