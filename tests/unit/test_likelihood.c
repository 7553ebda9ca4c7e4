/*
 * test_likelihood.c: edge cases of the likelihood maths and its JSON form.
 * The bulk of the numbers is checked by the reference vectors
 * (likelihood_vectors); these tests pin the corners the vectors reach only
 * by accident: summation block boundaries, thresholds and their
 * neighbouring doubles, table ties, empty histories, malformed state.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_json_out.h"
#include "an_likelihood.h"
#include "check_main.h"

/* ---- helpers ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static double urand(void) { return (double)(rng() >> 11) / 9007199254740992.0; }

/* Any finite double, from subnormals to huge, either sign. */
static double any_double(void) {
    double d;
    do {
        uint64_t bits = rng();
        memcpy(&d, &bits, sizeof d);
    } while (!isfinite(d));
    return d;
}

static bool same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

#define ck_assert_bits(a, b)                                                  \
    do {                                                                      \
        double a_ = (a), b_ = (b);                                            \
        ck_assert_msg(same_bits(a_, b_), "%s = %.17g, expected %.17g", #a, a_, \
                      b_);                                                    \
    } while (0)

/* ---- numpy summation ---- */

/* numpy's pairwise_sum, written out independently for the test: the same
 * order of additions as README 5.2. */
static double ref_pairwise(const double *x, size_t n) {
    if (n < 8) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s = s + x[i];
        return s;
    }
    if (n <= 128) {
        double r0 = x[0], r1 = x[1], r2 = x[2], r3 = x[3], r4 = x[4], r5 = x[5],
               r6 = x[6], r7 = x[7];
        size_t i = 8, stop = n - n % 8;
        while (i < stop) {
            r0 += x[i]; r1 += x[i + 1]; r2 += x[i + 2]; r3 += x[i + 3];
            r4 += x[i + 4]; r5 += x[i + 5]; r6 += x[i + 6]; r7 += x[i + 7];
            i += 8;
        }
        double s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));
        while (i < n) s += x[i++];
        return s;
    }
    size_t half = (n / 2) / 8 * 8;
    return ref_pairwise(x, half) + ref_pairwise(x + half, n - half);
}

static double ref_sum(const double *x, size_t n) {
    double s = 0.0;
    for (size_t off = 0; off < n; off += 8192)
        s += ref_pairwise(x + off, n - off < 8192 ? n - off : 8192);
    return s;
}

static const size_t SUM_LENGTHS[] = {0, 1, 7, 8, 9, 127, 128, 129, 8192, 8193, 8352};

START_TEST(test_np_sum_lengths) {
    enum { N = 8352 };
    static double x[N], dev[N];
    for (size_t i = 0; i < N; i++)
        /* Mixed magnitudes, so a different order gives different bits. */
        x[i] = (urand() - 0.3) * pow(10.0, (double)(rng() % 12) - 6.0);
    for (size_t k = 0; k < sizeof SUM_LENGTHS / sizeof SUM_LENGTHS[0]; k++) {
        size_t n = SUM_LENGTHS[k];
        ck_assert_bits(an_np_sum(x, n), ref_sum(x, n));
        if (n == 0) continue;
        double mean = ref_sum(x, n) / (double)n;
        ck_assert_bits(an_np_mean(x, n), mean);
        for (size_t i = 0; i < n; i++) dev[i] = (x[i] - mean) * (x[i] - mean);
        ck_assert_bits(an_np_var(x, n), ref_sum(dev, n) / (double)n);
    }
}
END_TEST

/* The blocks matter: past 8192 elements the sum is not one pairwise tree. */
START_TEST(test_np_sum_blocks_matter) {
    enum { N = 8352 };
    static double x[N];
    int differing = 0;
    for (int trial = 0; trial < 20; trial++) {
        for (size_t i = 0; i < N; i++) x[i] = urand() * pow(10.0, (double)(rng() % 8));
        differing += !same_bits(an_np_sum(x, N), ref_pairwise(x, N));
        ck_assert_bits(an_np_sum(x, N), ref_pairwise(x, 8192) + ref_pairwise(x + 8192, N - 8192));
    }
    ck_assert_int_gt(differing, 0);
}
END_TEST

/* ---- estimateNormal, floors, null distribution ---- */

START_TEST(test_all_equal_scores) {
    /* 0.75 sums exactly in any order, so the mean is exact and every
     * deviation is 0. */
    double x[50];
    for (int i = 0; i < 50; i++) x[i] = 0.75;
    an_dist d = an_estimate_normal(x, 50, false);
    ck_assert_bits(d.mean, 0.75);
    ck_assert_bits(d.variance, 0.0);
    ck_assert_bits(d.stdev, 0.0);
    d = an_estimate_normal(x, 50, true);
    ck_assert_bits(d.variance, 0.0003);
    ck_assert_bits(d.stdev, sqrt(0.0003));

    /* All-equal records: flat metric -> null distribution, every likelihood
     * 0.5 in htmengine (k = 0 under stdev 1000). */
    an_sample recs[400];
    for (int i = 0; i < 400; i++) recs[i] = (an_sample){i, 3.0, 0.25};
    an_lk_params p;
    double lik[400];
    const char *why = "unset";
    ck_assert_int_eq(an_estimate(AN_VARIANT_HTMENGINE, recs, 400, 10, 288, &p, lik,
                                 NULL, &why), AN_OK);
    ck_assert_str_eq(why, "flatline");
    for (int i = 0; i < 400; i++) ck_assert_bits(lik[i], 0.5);
}
END_TEST

START_TEST(test_floors) {
    double low[4] = {0.01, 0.02, 0.03, 0.02}; /* mean 0.02, variance 5e-5 */
    an_dist d = an_estimate_normal(low, 4, true);
    ck_assert_bits(d.mean, 0.03);
    ck_assert_bits(d.variance, 0.0003);
    ck_assert_bits(d.stdev, sqrt(0.0003));
    d = an_estimate_normal(low, 4, false);
    ck_assert(d.mean < 0.03 && d.variance < 0.0003);
    ck_assert_bits(d.stdev, sqrt(d.variance));

    /* Above both floors: untouched. */
    double wide[2] = {0.0, 1.0};
    d = an_estimate_normal(wide, 2, true);
    ck_assert_bits(d.mean, 0.5);
    ck_assert_bits(d.variance, 0.25);
    ck_assert_bits(d.stdev, 0.5);

    /* The mean floor replaces the mean only; the variance is still taken
     * about the true mean. */
    double spread[2] = {0.0, 0.04}; /* mean 0.02, variance 4e-4 */
    d = an_estimate_normal(spread, 2, true);
    ck_assert_bits(d.mean, 0.03);
    ck_assert_bits(d.variance, an_np_var(spread, 2));

    an_dist n = an_null_distribution();
    ck_assert_bits(n.mean, 0.5);
    ck_assert_bits(n.variance, 1e6);
    ck_assert_bits(n.stdev, 1e3);
}
END_TEST

/* ---- thresholds and the filter ---- */

START_TEST(test_thresholds) {
    ck_assert_bits(an_lk_red_threshold(), 9.99999999995449e-06);
    ck_assert_bits(an_lk_yellow_threshold(), 0.0010000000000000009);
    ck_assert(an_lk_red_threshold() < 1e-5);
}
END_TEST

START_TEST(test_filter_red_boundary) {
    const double red = an_lk_red_threshold(), yellow = an_lk_yellow_threshold();
    const double below = nextafter(red, 0.0), above = nextafter(red, 1.0);
    struct {
        double prev, cur, want;
    } t[] = {
        {red, red, yellow},       /* both exactly red: filtered */
        {below, below, yellow},
        {above, red, red},        /* previous not red: kept */
        {red, above, above},      /* current not red: kept */
        {1e-5, 1e-5, 1e-5},       /* 1e-5 is above the red threshold */
        {0.0, 0.0, yellow},
        {0.5, 0.0, 0.0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        double in[2] = {t[i].prev, t[i].cur}, out[2];
        an_filter_likelihoods(in, out, 2);
        ck_assert_bits(out[0], t[i].prev);
        ck_assert_bits(out[1], t[i].want);
    }
}
END_TEST

/* A run of reds: only the first survives, because the filter compares with
 * the unfiltered previous value; in place gives the same. */
START_TEST(test_filter_runs_in_place) {
    const double y = an_lk_yellow_threshold();
    double in[6] = {0.5, 1e-7, 1e-7, 1e-7, 0.2, 1e-7};
    const double want[6] = {0.5, 1e-7, y, y, 0.2, 1e-7};
    double out[6];
    an_filter_likelihoods(in, out, 6);
    for (int i = 0; i < 6; i++) ck_assert_bits(out[i], want[i]);
    an_filter_likelihoods(in, in, 6);
    for (int i = 0; i < 6; i++) ck_assert_bits(in[i], want[i]);
    an_filter_likelihoods(in, out, 0); /* no-op */
}
END_TEST

/* ---- tail functions ---- */

/* With mean 0 and stdev 10, t = (10 * x) / 10 is exact for these x, so a
 * tie k + 0.5 rounds away from zero to k + 1 (Python 2 round). */
START_TEST(test_qtable_ties) {
    const an_dist d = {0.0, 100.0, 10.0};
    struct {
        double x, want;
    } t[] = {
        {0.0, 0.5},
        {0.5, 0.460172163},             /* t = 0.5 -> Q[1] */
        {1.5, 0.420740291},             /* t = 1.5 -> Q[2] (rint: Q[2] too) */
        {2.5, 0.382088578},             /* t = 2.5 -> Q[3] (rint would give Q[2]) */
        {42.5, 0.000008961673661},      /* -> Q[43], red */
        {69.5, 0.000000000001305},      /* -> Q[70] */
        {70.4, 0.000000000001305},      /* rounds down to 70 */
        {70.5, 0.0},                    /* -> 71: beyond the table */
        {1e300, 0.0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        ck_assert_bits(an_tail_probability(AN_VARIANT_HTMENGINE, t[i].x, &d), t[i].want);
        /* Below the mean: 1 - Q of the reflected point. */
        if (t[i].x > 0)
            ck_assert_bits(an_tail_probability(AN_VARIANT_HTMENGINE, -t[i].x, &d),
                           1.0 - t[i].want);
    }
}
END_TEST

/* t = 0.49999999999999994 must select Q[0]; floor(t + 0.5) would give 1. */
START_TEST(test_qtable_below_half) {
    const an_dist d = {0.0, 1.0, 1.0};
    const double x = 0.049999999999999996;
    ck_assert_bits((10 * (x - d.mean)) / d.stdev, nextafter(0.5, 0.0));
    ck_assert_bits(an_tail_probability(AN_VARIANT_HTMENGINE, x, &d), 0.5);
}
END_TEST

START_TEST(test_tail_nupic10) {
    const an_dist d = {0.5, 1e6, 1e3};
    /* The null distribution's tail at 0, from the vectors. */
    ck_assert_bits(an_tail_probability(AN_VARIANT_NUPIC10, 0.0, &d), 0.4998005269551551);
    ck_assert_bits(an_tail_probability(AN_VARIANT_NUPIC10, 0.5, &d), 0.5);
    /* Symmetric, computed from the reflected point. */
    const an_dist e = {0.03, 0.0003, sqrt(0.0003)};
    for (int i = 0; i < 100; i++) {
        double x = urand() * 0.03;
        double xp = (2 * e.mean) - x;
        ck_assert_bits(an_tail_probability(AN_VARIANT_NUPIC10, x, &e),
                       0.5 * erfc(((xp - e.mean) / e.stdev) / 1.4142));
    }
    /* Far tail underflows to exactly 0. */
    ck_assert_bits(an_tail_probability(AN_VARIANT_NUPIC10, 100.0, &e), 0.0);
}
END_TEST

/* ---- moving average, update, estimate ---- */

START_TEST(test_movavg_running_total) {
    an_movavg ma = {.len = 0, .window_size = 3, .total = 0.0};
    ck_assert_bits(an_movavg_step(&ma, 0.1), 0.1);
    ck_assert_bits(an_movavg_step(&ma, 0.2), (0.1 + 0.2) / 2);
    ck_assert_bits(an_movavg_step(&ma, 0.3), (0.1 + 0.2 + 0.3) / 3);
    /* Subtract the oldest, then add: not a re-sum of the window. */
    double total = ((0.1 + 0.2 + 0.3) - 0.1) + 0.7;
    ck_assert_bits(an_movavg_step(&ma, 0.7), total / 3);
    ck_assert_bits(ma.total, total);
    ck_assert_int_eq(ma.len, 3);
    ck_assert_bits(ma.values[0], 0.2);
    ck_assert_bits(ma.values[2], 0.7);
}
END_TEST

START_TEST(test_update_empty_history) {
    const an_dist d = {0.03, 0.0003, sqrt(0.0003)};
    an_lk_params p = {.dist = d,
                      .ma = {.len = 0, .window_size = 2, .total = 0.0},
                      .hist_len = 0};
    const double yellow = an_lk_yellow_threshold();
    double avg;
    /* A red likelihood with no previous value is returned unfiltered. */
    ck_assert_bits(an_update_one(AN_VARIANT_HTMENGINE, &p, 1.0, &avg), 0.0);
    ck_assert_bits(avg, 1.0);
    ck_assert_int_eq(p.hist_len, 1);
    ck_assert_bits(p.hist[0], 0.0);
    /* The next red ones are filtered against the unfiltered history. */
    ck_assert_bits(an_update_one(AN_VARIANT_HTMENGINE, &p, 1.0, NULL), yellow);
    ck_assert_bits(an_update_one(AN_VARIANT_HTMENGINE, &p, 0.0, &avg), yellow);
    ck_assert_bits(avg, 0.5);
    /* Average 0 is below the mean: 1 - Q, at least 0.5, not filtered. */
    double want = an_tail_probability(AN_VARIANT_HTMENGINE, 0.0, &d);
    ck_assert(want >= 0.5);
    ck_assert_bits(an_update_one(AN_VARIANT_HTMENGINE, &p, 0.0, &avg), want);
    ck_assert_bits(avg, 0.0);
    /* At most windowSize unfiltered entries, oldest first. */
    ck_assert_int_eq(p.hist_len, 2);
    ck_assert_bits(p.hist[0], 0.0);
    ck_assert_bits(p.hist[1], want);
}
END_TEST

/* The meaningful parts of two params, bit for bit (not the unused tails of
 * the arrays or padding). */
static bool params_equal(const an_lk_params *p, const an_lk_params *q) {
    if (!same_bits(p->dist.mean, q->dist.mean) || !same_bits(p->dist.variance, q->dist.variance) ||
        !same_bits(p->dist.stdev, q->dist.stdev) || !same_bits(p->ma.total, q->ma.total) ||
        p->ma.window_size != q->ma.window_size || p->ma.len != q->ma.len ||
        p->hist_len != q->hist_len)
        return false;
    for (int i = 0; i < p->ma.len; i++)
        if (!same_bits(p->ma.values[i], q->ma.values[i])) return false;
    for (int i = 0; i < p->hist_len; i++)
        if (!same_bits(p->hist[i], q->hist[i])) return false;
    return true;
}

START_TEST(test_estimate_edges) {
    an_sample r[600];
    for (int i = 0; i < 600; i++) r[i] = (an_sample){i, (double)(i % 17), urand() * 0.2};
    an_lk_params p;
    const char *why = "unset";
    double lik[600], avg[600];

    /* n <= skip: null distribution, reason "skip". */
    ck_assert_int_eq(an_estimate(AN_VARIANT_HTMENGINE, r, 288, 10, 288, &p, lik, avg, &why), 0);
    ck_assert_str_eq(why, "skip");
    ck_assert_bits(p.dist.stdev, 1e3);
    ck_assert_int_eq(an_estimate(AN_VARIANT_HTMENGINE, r, 5, 10, 288, &p, NULL, NULL, &why), 0);
    ck_assert_str_eq(why, "skip");
    ck_assert_int_eq(p.hist_len, 5);
    ck_assert_int_eq(p.ma.len, 5);

    /* Enough records and a varying metric: a fitted distribution. */
    ck_assert_int_eq(an_estimate(AN_VARIANT_NUPIC10, r, 600, 10, 288, &p, lik, avg, &why), 0);
    ck_assert_ptr_null(why);
    ck_assert_bits(p.dist.mean, fmax(an_np_mean(avg + 288, 312), 0.03));
    ck_assert_int_eq(p.hist_len, 10);
    ck_assert_int_eq(p.ma.len, 10);
    /* The params' history is the unfiltered tail; the same without lists. */
    an_lk_params q;
    ck_assert_int_eq(an_estimate(AN_VARIANT_NUPIC10, r, 600, 10, 288, &q, NULL, NULL, NULL), 0);
    ck_assert(params_equal(&p, &q));

    /* Flat metric after the skip, even if earlier values vary. */
    for (int i = 288; i < 600; i++) r[i].value = 42.0;
    ck_assert_int_eq(an_estimate(AN_VARIANT_HTMENGINE, r, 600, 10, 288, &p, NULL, NULL, &why), 0);
    ck_assert_str_eq(why, "flatline");

    /* Bad arguments. */
    ck_assert_int_eq(an_estimate(AN_VARIANT_HTMENGINE, r, 0, 10, 0, &p, NULL, NULL, NULL), AN_EINVAL);
    ck_assert_int_eq(an_estimate(AN_VARIANT_HTMENGINE, r, 10, 0, 0, &p, NULL, NULL, NULL), AN_EINVAL);
    ck_assert_int_eq(an_estimate(AN_VARIANT_HTMENGINE, r, 10, AN_LK_MAX_WINDOW + 1, 0, &p,
                                 NULL, NULL, NULL), AN_EINVAL);
}
END_TEST

START_TEST(test_log_likelihood_and_skip) {
    ck_assert_bits(an_log_likelihood(0.5), 0.0301029996658834);
    ck_assert_bits(an_log_likelihood(1.0), 1.0);
    ck_assert_bits(an_log_likelihood(0.0), -4.342945193758039e-12);
    ck_assert_bits(log(1.0 - 0.9999999999), -23.02585084720009);

    ck_assert_int_eq(an_calc_skip_records(0, 8640, 288), 0);
    ck_assert_int_eq(an_calc_skip_records(100, 8640, 288), 100);
    ck_assert_int_eq(an_calc_skip_records(8640, 8640, 288), 288);
    ck_assert_int_eq(an_calc_skip_records(8700, 8640, 288), 228);
    ck_assert_int_eq(an_calc_skip_records(9000, 8640, 288), 0);
}
END_TEST

START_TEST(test_class) {
    ck_assert_ptr_null(an_lk_class_new(AN_VARIANT_HTMENGINE, 0, 0, 10, 5));
    ck_assert_ptr_null(an_lk_class_new(AN_VARIANT_HTMENGINE, 5, 5, 0, 5));
    ck_assert_ptr_null(an_lk_class_new(AN_VARIANT_HTMENGINE, 5, 5, 10, 0));

    /* A tiny history window exercises the sliding buffer's wrap. */
    an_lk_class *c = an_lk_class_new(AN_VARIANT_NUPIC10, 3, 2, 7, 4);
    ck_assert_ptr_nonnull(c);
    size_t hl = 99, sk = 99;
    an_lk_class_last_estimate(c, &hl, &sk);
    ck_assert(hl == 0 && sk == 0);
    for (int i = 0; i < 60; i++) {
        bool re;
        double p = an_lk_class_probability(c, (double)(i % 5), urand(), &re);
        if (i < 5) {
            ck_assert_bits(p, 0.5);
            ck_assert(!re);
        } else {
            ck_assert(re == (i == 5 || i % 4 == 0));
            ck_assert(p >= 0.0 && p <= 1.0);
        }
        if (re) {
            an_lk_class_last_estimate(c, &hl, &sk);
            ck_assert_uint_eq(hl, i < 7 ? (size_t)i : 7);
            ck_assert_int_eq((long)sk, an_calc_skip_records(i, 7, 3));
        }
    }
    ck_assert_int_eq(an_lk_class_params(c)->ma.window_size, 10);
    an_lk_class_free(c);
    an_lk_class_free(NULL);
}
END_TEST

/* ---- display value ---- */

START_TEST(test_rescale) {
    ck_assert_bits(an_rescale_for_display(0.0, true), 0.0);
    ck_assert_int_eq(an_display_value(0.0, true), 0);
    ck_assert_int_eq(an_display_value(0.1, true), 1000);
    ck_assert_int_eq(an_display_value(0.5, true), 1000);
    ck_assert_bits(an_rescale_for_display(0.5, true), 1000 + an_log_likelihood(0.5));
    ck_assert_int_eq(an_display_value(0.99, true), 1000);
    ck_assert_int_eq(an_display_value(0.9999, true), 1000);
    ck_assert_int_eq(an_display_value(0.99995, true), 1000000);
    ck_assert_int_eq(an_display_value(0.99999, true), 1000000); /* 0.49999957 */
    ck_assert_int_eq(an_display_value(0.999991, true), 1000000001);
    ck_assert_bits(an_rescale_for_display(1.0, true), 1000000001.0);
    ck_assert_int_eq(an_display_value(1.0, true), 1000000001);
    /* |value| is scaled. */
    ck_assert_bits(an_rescale_for_display(-0.5, true), an_rescale_for_display(0.5, true));
    /* Inactive: times 1/1e9. */
    ck_assert_bits(an_rescale_for_display(1.0, false), 1000000001.0 * (1.0 / 1e9));
    ck_assert_bits(an_rescale_for_display(0.5, false),
                   an_rescale_for_display(0.5, true) * (1.0 / 1e9));
    ck_assert_int_eq(an_display_value(1.0, false), 1);
    ck_assert_int_eq(an_display_value(0.5, false), 0);
    ck_assert_bits(an_rescale_for_display(0.0, false), 0.0);
}
END_TEST

/* ---- variants ---- */

START_TEST(test_variants) {
    an_variant v;
    ck_assert_int_eq(an_variant_parse("htmengine", &v), 0);
    ck_assert_int_eq(v, AN_VARIANT_HTMENGINE);
    ck_assert_int_eq(an_variant_parse("nupic-1.0", &v), 0);
    ck_assert_int_eq(v, AN_VARIANT_NUPIC10);
    ck_assert_int_eq(an_variant_parse("nupic", &v), AN_EINVAL);
    ck_assert_int_eq(an_variant_parse(NULL, &v), AN_EINVAL);
    ck_assert_str_eq(an_variant_name(AN_VARIANT_HTMENGINE), "htmengine");
    ck_assert_str_eq(an_variant_name(AN_VARIANT_NUPIC10), "nupic-1.0");
}
END_TEST

/* ---- params JSON ---- */

static an_lk_params random_params(void) {
    an_lk_params p;
    memset(&p, 0, sizeof p);
    p.dist = (an_dist){any_double(), any_double(), any_double()};
    p.ma.window_size = 1 + (int)(rng() % 20);
    p.ma.len = (int)(rng() % (uint64_t)(p.ma.window_size + 1));
    for (int i = 0; i < p.ma.len; i++) p.ma.values[i] = any_double();
    p.ma.total = any_double();
    p.hist_len = (int)(rng() % (uint64_t)(p.ma.window_size + 1));
    for (int i = 0; i < p.hist_len; i++) p.hist[i] = i % 3 ? any_double() : urand();
    return p;
}

START_TEST(test_params_json_round_trip) {
    for (int t = 0; t < 500; t++) {
        an_lk_params p = random_params(), q;
        memset(&q, 0xab, sizeof q);
        json_t *j = an_lk_params_to_json(&p);
        ck_assert_ptr_nonnull(j);
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        json_error_t e;
        j = json_loads(s, 0, &e);
        ck_assert_ptr_nonnull(j);
        char err[256] = "";
        ck_assert_msg(an_lk_params_from_json(j, &q, err, sizeof err) == 0, "%s: %s", err, s);
        ck_assert_msg(params_equal(&p, &q), "round trip changed %s", s);
        json_decref(j);
        free(s);
    }
}
END_TEST

static const char *GOOD =
    "{\"distribution\":{\"name\":\"normal\",\"mean\":0.03,\"variance\":0.0003,"
    "\"stdev\":0.017320508075688773},\"movingAverage\":{\"historicalValues\":"
    "[0.5,1],\"total\":1.5,\"windowSize\":3},\"historicalLikelihoods\":[0.5,0.25]}";

/* Parses GOOD with one edit applied by a jansson path; returns the rc and
 * leaves the message in err. */
static int parse_edited(const char *obj_path, const char *key, json_t *value,
                        char *err, size_t errlen, an_lk_params *out) {
    json_t *j = json_loads(GOOD, 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_t *o = j;
    if (obj_path) o = json_object_get(j, obj_path);
    if (value)
        json_object_set_new(o, key, value);
    else
        json_object_del(o, key);
    an_lk_params p;
    int rc = an_lk_params_from_json(j, out ? out : &p, err, errlen);
    json_decref(j);
    return rc;
}

START_TEST(test_params_from_json_good) {
    an_lk_params p;
    char err[256] = "";
    json_t *j = json_loads(GOOD, 0, NULL);
    ck_assert_int_eq(an_lk_params_from_json(j, &p, err, sizeof err), 0);
    json_decref(j);
    ck_assert_int_eq(p.ma.window_size, 3);
    ck_assert_int_eq(p.ma.len, 2);
    ck_assert_bits(p.ma.values[1], 1.0); /* integer accepted as a real */
    ck_assert_int_eq(p.hist_len, 2);

    /* Extra keys anywhere are ignored. */
    ck_assert_int_eq(parse_edited(NULL, "extra", json_string("x"), err, sizeof err, NULL), 0);
    ck_assert_int_eq(parse_edited("distribution", "extra", json_true(), err, sizeof err, NULL), 0);
    ck_assert_int_eq(parse_edited("movingAverage", "extra", json_null(), err, sizeof err, NULL), 0);

    /* A missing historicalLikelihoods is [1.0]. */
    ck_assert_int_eq(parse_edited(NULL, "historicalLikelihoods", NULL, err, sizeof err, &p), 0);
    ck_assert_int_eq(p.hist_len, 1);
    ck_assert_bits(p.hist[0], 1.0);

    /* Integers where reals are expected. */
    ck_assert_int_eq(parse_edited("distribution", "mean", json_integer(1), err, sizeof err, &p), 0);
    ck_assert_bits(p.dist.mean, 1.0);
    /* windowSize as an integral real. */
    ck_assert_int_eq(parse_edited("movingAverage", "windowSize", json_real(3.0), err, sizeof err, &p), 0);
    ck_assert_int_eq(p.ma.window_size, 3);
}
END_TEST

START_TEST(test_params_from_json_bad) {
    static const struct {
        const char *obj, *key;
        const char *value; /* JSON text, NULL: delete the key */
        const char *want;  /* expected in the message */
    } t[] = {
        {NULL, "distribution", NULL, "params.distribution"},
        {NULL, "distribution", "[1]", "params.distribution"},
        {NULL, "movingAverage", NULL, "params.movingAverage"},
        {NULL, "movingAverage", "\"x\"", "params.movingAverage"},
        {NULL, "historicalLikelihoods", "null", "params.historicalLikelihoods"},
        {NULL, "historicalLikelihoods", "[0.1,\"x\"]", "params.historicalLikelihoods[1]"},
        {NULL, "historicalLikelihoods", "[0.1,0.2,0.3,0.4]", "params.historicalLikelihoods"},
        {"distribution", "name", NULL, "params.distribution.name"},
        {"distribution", "name", "1", "params.distribution.name"},
        {"distribution", "mean", NULL, "params.distribution.mean"},
        {"distribution", "mean", "\"0.1\"", "params.distribution.mean"},
        {"distribution", "variance", NULL, "params.distribution.variance"},
        {"distribution", "stdev", NULL, "params.distribution.stdev: missing or not a number"},
        {"distribution", "stdev", "null", "params.distribution.stdev"},
        /* found by tests/fuzz/fuzz_lk_state.c: stdev 0 scored NaN */
        {"distribution", "stdev", "0", "params.distribution.stdev: 0 (would divide by zero)"},
        {"distribution", "stdev", "0.0", "params.distribution.stdev: 0 (would divide by zero)"},
        {"distribution", "stdev", "-0.0", "params.distribution.stdev: 0 (would divide by zero)"},
        {"movingAverage", "historicalValues", NULL, "params.movingAverage.historicalValues"},
        {"movingAverage", "historicalValues", "{}", "params.movingAverage.historicalValues"},
        {"movingAverage", "historicalValues", "[1,2,3,4]", "params.movingAverage.historicalValues"},
        {"movingAverage", "historicalValues", "[true]", "params.movingAverage.historicalValues[0]"},
        {"movingAverage", "total", NULL, "params.movingAverage.total"},
        {"movingAverage", "total", "false", "params.movingAverage.total"},
        {"movingAverage", "windowSize", NULL, "params.movingAverage.windowSize"},
        {"movingAverage", "windowSize", "0", "params.movingAverage.windowSize"},
        {"movingAverage", "windowSize", "100000", "params.movingAverage.windowSize"},
        {"movingAverage", "windowSize", "-3", "params.movingAverage.windowSize"},
        {"movingAverage", "windowSize", "2.5", "params.movingAverage.windowSize"},
        {"movingAverage", "windowSize", "\"10\"", "params.movingAverage.windowSize"},
        /* windowSize 1 makes the two-entry lists too long. */
        {"movingAverage", "windowSize", "1", "more than windowSize 1"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char err[256] = "";
        json_t *v = t[i].value ? json_loads(t[i].value, JSON_DECODE_ANY, NULL) : NULL;
        ck_assert(t[i].value == NULL || v != NULL);
        an_lk_params p;
        memset(&p, 0x5a, sizeof p);
        an_lk_params before = p;
        int rc = parse_edited(t[i].obj, t[i].key, v, err, sizeof err, &p);
        ck_assert_msg(rc == AN_EINVAL, "case %zu accepted", i);
        ck_assert_msg(strstr(err, t[i].want) != NULL, "case %zu: message \"%s\" lacks \"%s\"",
                      i, err, t[i].want);
        ck_assert_msg(memcmp(&p, &before, sizeof p) == 0, "case %zu wrote params", i);
    }
    /* Not an object at all; no err buffer. */
    an_lk_params p;
    char err[64];
    json_t *j = json_loads("[1,2]", 0, NULL);
    ck_assert_int_eq(an_lk_params_from_json(j, &p, err, sizeof err), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "params"));
    ck_assert_int_eq(an_lk_params_from_json(j, &p, NULL, 0), AN_EINVAL);
    json_decref(j);
    ck_assert_int_eq(an_lk_params_from_json(NULL, &p, err, sizeof err), AN_EINVAL);
}
END_TEST

/* ---- an_fmt_double ---- */

START_TEST(test_fmt_double) {
    char buf[40];
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 0.1), "0.1");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 1.0), "1.0");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 0.0), "0.0");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, -0.0), "-0.0");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 1e-05), "1e-05");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 0.0010000000000000009), "0.0010000000000000009");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 9.99999999995449e-06), "9.99999999995449e-06");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 1000.0), "1000.0");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 1e16), "1e+16");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 1234567890123456.0), "1234567890123456.0");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 0.0001), "0.0001");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, -1.5e-7), "-1.5e-07");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 123.456), "123.456");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 5e-324), "5e-324");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, 1.7976931348623157e308), "1.7976931348623157e+308");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, NAN), "NaN");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, INFINITY), "Infinity");
    ck_assert_str_eq(an_fmt_double(buf, sizeof buf, -INFINITY), "-Infinity");
    for (int i = 0; i < 20000; i++) {
        double d = i % 2 ? any_double() : urand();
        an_fmt_double(buf, sizeof buf, d);
        ck_assert_msg(same_bits(strtod(buf, NULL), d), "%s != %.17g", buf, d);
        ck_assert(strpbrk(buf, ".e") != NULL);
    }
    /* A short buffer truncates instead of overflowing. */
    char small[4];
    ck_assert_str_eq(an_fmt_double(small, sizeof small, 0.123456), "0.1");
}
END_TEST

/* The significant digits of a number's text: no sign, point, exponent,
 * leading or trailing zeros ("0.00120" -> "12", "1.5e-07" -> "15"). */
static void sig_digits(const char *s, char *out) {
    size_t n = 0;
    for (; *s && *s != 'e' && *s != 'E'; s++)
        if (*s >= '0' && *s <= '9' && (n > 0 || *s != '0')) out[n++] = *s;
    while (n > 1 && out[n - 1] == '0') n--;
    out[n] = '\0';
}

/* The slow path (a buffer under 32 bytes; also every double outside the
 * fast path's range) finds the smallest %.{p}e that reads back by
 * bisection: it must give the digits of the plain scan over p = 0..16, for
 * the tiny running totals it is there for, powers of two (whose rounding
 * interval is narrower below), subnormals and any bit pattern. */
START_TEST(test_fmt_double_slow_digits) {
    char buf[31], e[40], want[24], got[24];
    for (int i = 0; i < 6000; i++) {
        double d;
        switch (i % 4) {
        case 0: d = any_double(); break;
        case 1: d = urand() * 1e-14; break;
        case 2: d = ldexp(1.0, (i / 4) % 2098 - 1074); break;
        default: d = urand(); break;
        }
        if (!isfinite(d)) continue;
        an_fmt_double(buf, sizeof buf, d);
        ck_assert_msg(same_bits(strtod(buf, NULL), d), "%s != %.17g", buf, d);
        for (int prec = 0; prec <= 16; prec++) {
            snprintf(e, sizeof e, "%.*e", prec, d);
            if (same_bits(strtod(e, NULL), d)) break;
        }
        sig_digits(e, want);
        sig_digits(buf, got);
        ck_assert_msg(!strcmp(want, got), "%.17g: %s, the scan gives %s", d, buf, e);
    }
}
END_TEST

static Suite *likelihood_suite(void) {
    Suite *s = suite_create("likelihood");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_np_sum_lengths);
    tcase_add_test(tc, test_np_sum_blocks_matter);
    tcase_add_test(tc, test_all_equal_scores);
    tcase_add_test(tc, test_floors);
    tcase_add_test(tc, test_thresholds);
    tcase_add_test(tc, test_filter_red_boundary);
    tcase_add_test(tc, test_filter_runs_in_place);
    tcase_add_test(tc, test_qtable_ties);
    tcase_add_test(tc, test_qtable_below_half);
    tcase_add_test(tc, test_tail_nupic10);
    tcase_add_test(tc, test_movavg_running_total);
    tcase_add_test(tc, test_update_empty_history);
    tcase_add_test(tc, test_estimate_edges);
    tcase_add_test(tc, test_log_likelihood_and_skip);
    tcase_add_test(tc, test_class);
    tcase_add_test(tc, test_rescale);
    tcase_add_test(tc, test_variants);
    tcase_add_test(tc, test_params_json_round_trip);
    tcase_add_test(tc, test_params_from_json_good);
    tcase_add_test(tc, test_params_from_json_bad);
    tcase_add_test(tc, test_fmt_double);
    tcase_add_test(tc, test_fmt_double_slow_digits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(likelihood_suite(), CK_NORMAL);
}
