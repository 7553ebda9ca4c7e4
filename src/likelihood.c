/*
 * likelihood.c: nupic's anomaly-likelihood maths (an_likelihood.h), bit for
 * bit. The reference is tests/data/likelihood/nupic-1.0/README.md section 5
 * plus htmengine/README.md section 3 (nupic 0.3.4's normalProbability), and
 * docs/htmengine.md §3 for rescaleForDisplay.
 *
 * Every expression below is written in the order the Python original
 * evaluated it. Reordering "equivalent" arithmetic changes last bits, and in
 * the htmengine variant a last bit can select a different table entry. The
 * build uses -ffp-contract=off, so nothing here is fused into an FMA.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "an_likelihood.h"

/* ------------------------------------------------------------------------ */
/* Variant names                                                            */
/* ------------------------------------------------------------------------ */

int an_variant_parse(const char *name, an_variant *out) {
    if (name == NULL) return AN_EINVAL;
    if (strcmp(name, "htmengine") == 0) {
        *out = AN_VARIANT_HTMENGINE;
        return AN_OK;
    }
    if (strcmp(name, "nupic-1.0") == 0) {
        *out = AN_VARIANT_NUPIC10;
        return AN_OK;
    }
    return AN_EINVAL;
}

const char *an_variant_name(an_variant v) {
    switch (v) {
    case AN_VARIANT_HTMENGINE: return "htmengine";
    case AN_VARIANT_NUPIC10: return "nupic-1.0";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* numpy summation                                                          */
/* ------------------------------------------------------------------------ */

/* A strided view of doubles, as numpy's inner loop sees an array: element i
 * is at base + i * stride bytes. With sq set, element i reads as
 * (x - m) * (x - m): the variance's second pass. numpy materialises those
 * squares in a temporary array and then sums it; computing each square on
 * the fly gives the very same doubles, in the same order, without the
 * temporary. */
typedef struct np_view {
    const char *base;
    size_t stride;
    double m;
    bool sq;
} np_view;

static inline double np_elem(const np_view *v, size_t i) {
    double x;
    memcpy(&x, v->base + i * v->stride, sizeof x);
    if (v->sq) {
        double d = x - v->m;
        return d * d;
    }
    return x;
}

/* numpy's pairwise_sum over elements [off, off + n): plain loop below 8,
 * eight accumulators up to 128, else split at n/2 rounded down to a
 * multiple of 8 and recurse. Instantiated per element kind (contiguous or
 * strided, plain or squared deviation) so the leaf loop has no branch and
 * the contiguous one vectorises (lane j is accumulator r[j]: same order). */
#define NP_PAIRWISE(NAME, ELEM)                                              \
    static double NAME(const np_view *v, size_t off, size_t n) {             \
        if (n < 8) {                                                         \
            double res = 0.0;                                                \
            for (size_t i = 0; i < n; i++) res += ELEM(v, off + i);          \
            return res;                                                      \
        }                                                                    \
        if (n <= 128) {                                                      \
            double r[8];                                                     \
            size_t i;                                                        \
            for (int j = 0; j < 8; j++) r[j] = ELEM(v, off + (size_t)j);     \
            for (i = 8; i < n - (n % 8); i += 8)                             \
                for (int j = 0; j < 8; j++) r[j] += ELEM(v, off + i + (size_t)j); \
            double res = ((r[0] + r[1]) + (r[2] + r[3])) +                   \
                         ((r[4] + r[5]) + (r[6] + r[7]));                    \
            for (; i < n; i++) res += ELEM(v, off + i);                      \
            return res;                                                      \
        }                                                                    \
        size_t n2 = n / 2;                                                   \
        n2 -= n2 % 8;                                                        \
        return NAME(v, off, n2) + NAME(v, off + n2, n - n2);                 \
    }

static inline double el_contig(const np_view *v, size_t i) {
    return ((const double *)(const void *)v->base)[i];
}
static inline double el_contig_sq(const np_view *v, size_t i) {
    double d = ((const double *)(const void *)v->base)[i] - v->m;
    return d * d;
}
static inline double el_strided(const np_view *v, size_t i) {
    double x;
    memcpy(&x, v->base + i * v->stride, sizeof x);
    return x;
}
static inline double el_strided_sq(const np_view *v, size_t i) {
    double x;
    memcpy(&x, v->base + i * v->stride, sizeof x);
    double d = x - v->m;
    return d * d;
}
NP_PAIRWISE(np_pw_contig, el_contig)
NP_PAIRWISE(np_pw_contig_sq, el_contig_sq)
NP_PAIRWISE(np_pw_strided, el_strided)
NP_PAIRWISE(np_pw_strided_sq, el_strided_sq)

static double np_pairwise(const np_view *v, size_t off, size_t n) {
    bool contig = v->stride == sizeof(double) &&
                  ((uintptr_t)v->base % _Alignof(double)) == 0;
    if (contig) return v->sq ? np_pw_contig_sq(v, off, n) : np_pw_contig(v, off, n);
    return v->sq ? np_pw_strided_sq(v, off, n) : np_pw_strided(v, off, n);
}

/* numpy's add.reduce: the array is fed to pairwise_sum in buffer-sized
 * blocks of 8192 elements, each block's sum added to a running result that
 * starts at 0. */
static double np_sum_view(const np_view *v, size_t n) {
    enum { NP_BUFSIZE = 8192 };
    double s = 0.0;
    for (size_t off = 0; off < n; off += NP_BUFSIZE) {
        size_t len = n - off < NP_BUFSIZE ? n - off : NP_BUFSIZE;
        s += np_pairwise(v, off, len);
    }
    return s;
}

/* numpy.mean and numpy.var (ddof 0, two passes) over a strided view. */
static double np_mean_view(np_view v, size_t n) {
    assert(n > 0);
    v.sq = false;
    return np_sum_view(&v, n) / (double)n;
}

static double np_var_view(np_view v, size_t n) {
    assert(n > 0);
    v.m = np_mean_view(v, n);
    v.sq = true;
    return np_sum_view(&v, n) / (double)n;
}

static np_view np_doubles(const double *x) {
    return (np_view){(const char *)x, sizeof(double), 0.0, false};
}

/* numpy.sum(x[0..n)); 0.0 for n == 0. */
double an_np_sum(const double *x, size_t n) {
    np_view v = np_doubles(x);
    return np_sum_view(&v, n);
}

/* numpy.mean(x[0..n)) = sum / n. n > 0. */
double an_np_mean(const double *x, size_t n) {
    return np_mean_view(np_doubles(x), n);
}

/* numpy.var(x[0..n)) = sum((x - mean)^2) / n, mean as an_np_mean. n > 0. */
double an_np_var(const double *x, size_t n) {
    return np_var_view(np_doubles(x), n);
}

/* ------------------------------------------------------------------------ */
/* Distributions                                                            */
/* ------------------------------------------------------------------------ */

static an_dist estimate_normal_view(np_view v, size_t n, bool lower_bound) {
    an_dist d;
    d.mean = np_mean_view(v, n);
    d.variance = np_var_view(v, n);
    if (lower_bound) {
        /* Replacements, not recomputations: a floored mean leaves the
         * variance (taken about the true mean) as it was. */
        if (d.mean < 0.03) d.mean = 0.03;
        if (d.variance < 0.0003) d.variance = 0.0003;
    }
    d.stdev = d.variance > 0 ? sqrt(d.variance) : 0.0;
    return d;
}

/* estimateNormal(x[0..n), performLowerBoundCheck): numpy mean and
 * population variance; with the check, mean < 0.03 -> 0.03 and
 * variance < 0.0003 -> 0.0003; stdev = sqrt(variance), or 0 when the
 * variance is not positive. n > 0. */
an_dist an_estimate_normal(const double *x, size_t n, bool lower_bound_check) {
    return estimate_normal_view(np_doubles(x), n, lower_bound_check);
}

/* nullDistribution: so broad that every score is "likely". */
an_dist an_null_distribution(void) {
    return (an_dist){.mean = 0.5, .variance = 1e6, .stdev = 1e3};
}

/* ------------------------------------------------------------------------ */
/* Tail functions                                                           */
/* ------------------------------------------------------------------------ */

/* nupic 0.3.4's module-level Q: Q(k/10) to 9 decimals up to k = 40, then an
 * approximation that runs 2-5% high. Kept verbatim: these literals are the
 * values htmengine's likelihoods are made of. */
static const double Q_TABLE[71] = {
    0.500000000, 0.460172163, 0.420740291, 0.382088578, 0.344578258,
    0.308537539, 0.274253118, 0.241963652, 0.211855399, 0.184060125,
    0.158655254, 0.135666061, 0.115069670, 0.096800485, 0.080756659,
    0.066807201, 0.054799292, 0.044565463, 0.035930319, 0.028716560,
    0.022750132, 0.017864421, 0.013903448, 0.010724110, 0.008197536,
    0.006209665, 0.004661188, 0.003466974, 0.002555130, 0.001865813,
    0.001349898, 0.000967603, 0.000687138, 0.000483424, 0.000336929,
    0.000232629, 0.000159109, 0.000107800, 0.000072348, 0.000048096,
    0.000031671, 0.000021771135897, 0.000014034063752, 0.000008961673661,
    0.000005668743475, 0.000003551942468, 0.000002204533058,
    0.000001355281953, 0.000000825270644, 0.000000497747091,
    0.000000297343903, 0.000000175930101, 0.000000103096834,
    0.000000059836778, 0.000000034395590, 0.000000019581382,
    0.000000011040394, 0.000000006164833, 0.000000003409172,
    0.000000001867079, 0.000000001012647, 0.000000000543915,
    0.000000000289320, 0.000000000152404, 0.000000000079502,
    0.000000000041070, 0.000000000021010, 0.000000000010644,
    0.000000000005340, 0.000000000002653, 0.000000000001305,
};

/* normalProbability for x >= mean: Q[round(10*(x - mean) / stdev)], 0.0
 * beyond the table. round() is C99's, ties away from zero, which is Python
 * 2's round(); rint or floor(t + 0.5) would pick other entries on ties. The
 * original raised (or indexed from the end) where t is NaN or negative,
 * which needs stdev <= 0; we return 0.0 there rather than index out of
 * bounds. */
static double q_upper(double x, double mean, double stdev) {
    double t = (10 * (x - mean)) / stdev;
    double k = round(t);
    if (!(k >= 0.0 && k <= 70.0)) return 0.0;
    return Q_TABLE[(int)k];
}

/* 0.3.4 normalProbability: below the mean it reflects to xp = (2*mean) - x
 * (>= mean, so one level) and returns 1 - Q there: a likelihood of at least
 * 0.5, never a small one. */
static double normal_probability(double x, const an_dist *d) {
    if (x < d->mean) {
        double xp = (2 * d->mean) - x;
        return 1.0 - q_upper(xp, d->mean, d->stdev);
    }
    return q_upper(x, d->mean, d->stdev);
}

/* nupic >= 0.6 tailProbability: reflect below the mean, then
 * 0.5 * erfc(z / 1.4142) with the literal 1.4142, not sqrt(2). z is taken
 * from the reflected point, which can differ from (mean - x)/stdev in the
 * last bit. */
static double tail_probability(double x, const an_dist *d) {
    if (x < d->mean) x = (2 * d->mean) - x;
    double z = (x - d->mean) / d->stdev;
    return 0.5 * erfc(z / 1.4142);
}

/* The likelihood of moving average x under d, in variant v. */
double an_tail_probability(an_variant v, double x, const an_dist *d) {
    assert(v == AN_VARIANT_HTMENGINE || v == AN_VARIANT_NUPIC10);
    return v == AN_VARIANT_HTMENGINE ? normal_probability(x, d)
                                     : tail_probability(x, d);
}

/* ------------------------------------------------------------------------ */
/* Filter and moving average                                                */
/* ------------------------------------------------------------------------ */

/* _filterLikelihoods' defaults are 0.99999 and 0.999, turned into
 * thresholds by 1.0 - t in double: 9.99999999995449e-06 (just below 1e-5)
 * and 0.0010000000000000009. Not 1e-5 and 1e-3: the decimal literal is
 * rounded first, then subtracted. The subtraction itself is exact (Sterbenz:
 * t is within a factor 2 of 1.0), so folding it at compile time, at any
 * evaluation precision, gives the same double as Python did at run time.
 * The unit test pins both values. */
static const double RED_THRESHOLD = 1.0 - 0.99999;
static const double YELLOW_THRESHOLD = 1.0 - 0.999;

double an_lk_red_threshold(void) { return RED_THRESHOLD; }
double an_lk_yellow_threshold(void) { return YELLOW_THRESHOLD; }

/* One filter step: cur is replaced by yellow when it and the previous
 * UNFILTERED value are both red. Written as the original's two tests
 * (cur <= red, then "prev > red" keeps cur) so NaN behaves the same. */
static inline double filter_step(double prev, double cur) {
    if (cur <= RED_THRESHOLD && !(prev > RED_THRESHOLD)) return YELLOW_THRESHOLD;
    return cur;
}

/* _filterLikelihoods(in[0..n)) into out; in and out may be the same array
 * (the previous unfiltered value is kept aside before it is overwritten). */
void an_filter_likelihoods(const double *in, double *out, size_t n) {
    if (n == 0) return;
    double prev = in[0];
    out[0] = prev;
    for (size_t i = 1; i < n; i++) {
        double cur = in[i];
        out[i] = filter_step(prev, cur);
        prev = cur;
    }
}

/* MovingAverage.compute: drop the oldest value from a full window
 * (subtracting it from the running total), append x, add it, and return
 * total / len. The total is never re-summed: its accumulated rounding is
 * part of every later average. */
double an_movavg_step(an_movavg *ma, double x) {
    assert(ma->window_size >= 1 && ma->window_size <= AN_LK_MAX_WINDOW);
    assert(ma->len >= 0 && ma->len <= ma->window_size);
    if (ma->len == ma->window_size) {
        ma->total -= ma->values[0];
        memmove(ma->values, ma->values + 1,
                (size_t)(ma->len - 1) * sizeof ma->values[0]);
        ma->len--;
    }
    ma->values[ma->len++] = x;
    ma->total += x;
    return ma->total / ma->len;
}

/* ------------------------------------------------------------------------ */
/* Estimate and update                                                      */
/* ------------------------------------------------------------------------ */

/* estimateAnomalyLikelihoods (README 5.7). Every record is averaged and
 * scored, including the first skip; only the distribution fit ignores them.
 * The distribution is the null one when n <= skip ("skip") or when the
 * metric values of recs[skip:] have population variance < 1.5e-5
 * ("flatline"; no floors on that variance).
 *
 * Memory: one allocation of n doubles for the moving averages, and none at
 * all when the caller passes averaged. likelihoods, when given, is filled
 * with the unfiltered values first (params take the last of those) and
 * then filtered in place. */
int an_estimate(an_variant v, const an_sample *recs, size_t n, int window,
                size_t skip, an_lk_params *params, double *likelihoods,
                double *averaged, const char **null_reason) {
    if (n == 0 || recs == NULL || params == NULL || window < 1 ||
        window > AN_LK_MAX_WINDOW)
        return AN_EINVAL;

    double *avg = averaged, *owned = NULL;
    if (avg == NULL) {
        owned = malloc(n * sizeof *owned);
        if (owned == NULL) return AN_ENOMEM;
        avg = owned;
    }

    an_movavg ma = {.len = 0, .window_size = window, .total = 0.0};
    {
        /* same operations as an_movavg_step, without shifting the window */
        size_t w = (size_t)window;
        double total = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (i >= w) total -= recs[i - w].raw;
            total += recs[i].raw;
            avg[i] = total / (double)(i < w ? i + 1 : w);
        }
        size_t len = n < w ? n : w;
        for (size_t i = 0; i < len; i++) ma.values[i] = recs[n - len + i].raw;
        ma.len = (int)len;
        ma.total = total;
    }

    an_dist d;
    const char *reason = NULL;
    if (n <= skip) {
        d = an_null_distribution();
        reason = "skip";
    } else {
        d = an_estimate_normal(avg + skip, n - skip, true);
        np_view values = {(const char *)&recs[skip].value, sizeof *recs, 0.0,
                          false};
        if (np_var_view(values, n - skip) < 1.5e-5) {
            d = an_null_distribution();
            reason = "flatline";
        }
    }

    params->dist = d;
    params->ma = ma;
    size_t h = n < (size_t)window ? n : (size_t)window;
    params->hist_len = (int)h;
    if (likelihoods != NULL) {
        for (size_t i = 0; i < n; i++)
            likelihoods[i] = an_tail_probability(v, avg[i], &d);
        memcpy(params->hist, likelihoods + (n - h), h * sizeof *likelihoods);
        an_filter_likelihoods(likelihoods, likelihoods, n);
    } else {
        for (size_t i = 0; i < h; i++)
            params->hist[i] = an_tail_probability(v, avg[n - h + i], &d);
    }
    if (null_reason != NULL) *null_reason = reason;
    free(owned);
    return AN_OK;
}

/* updateAnomalyLikelihoods for one record (README 5.8): continue the moving
 * average, score it under the unchanged distribution, filter it against the
 * last unfiltered likelihood (none when the history is empty), and keep the
 * last window_size unfiltered likelihoods. A batch of records is exactly a
 * sequence of these calls. No allocation. */
double an_update_one(an_variant v, an_lk_params *params, double raw,
                     double *averaged) {
    an_movavg *ma = &params->ma;
    assert(params->hist_len >= 0 && params->hist_len <= ma->window_size);

    double avg = an_movavg_step(ma, raw);
    double lik = an_tail_probability(v, avg, &params->dist);
    double out = params->hist_len > 0
                     ? filter_step(params->hist[params->hist_len - 1], lik)
                     : lik;

    if (params->hist_len == ma->window_size) {
        memmove(params->hist, params->hist + 1,
                (size_t)(params->hist_len - 1) * sizeof params->hist[0]);
        params->hist_len--;
    }
    params->hist[params->hist_len++] = lik;
    if (averaged != NULL) *averaged = avg;
    return out;
}

/* ------------------------------------------------------------------------ */
/* Log-likelihood, skip records, display value                              */
/* ------------------------------------------------------------------------ */

/* computeLogLikelihood: log(1.0000000001 - p) / -23.02585084720009. The
 * literal is log(1 - 0.9999999999) as the original wrote it; p = 1 gives
 * exactly 1. */
double an_log_likelihood(double p) {
    return log(1.0000000001 - p) / -23.02585084720009;
}

/* _calcSkipRecords: the part of the learning period still inside a history
 * window of window_size records after num_ingested records, capped at
 * num_ingested. */
long an_calc_skip_records(long num_ingested, long window_size,
                          long learning_period) {
    long shifted_out = num_ingested - window_size > 0 ? num_ingested - window_size : 0;
    long rest = learning_period - shifted_out > 0 ? learning_period - shifted_out : 0;
    return num_ingested < rest ? num_ingested : rest;
}

/* anomaly_service's _logScale: 1 above 0.99999, else the log-likelihood
 * with LOG_1_MINUS_0_9999999999 = log(1.0 - 0.9999999999) computed in
 * double (-23.02585084720009, the same double as nupic's literal). */
static double log_scale(double v) {
    if (v > 0.99999) return 1;
    return log(1.0000000001 - v) / log(1.0 - 0.9999999999);
}

/* rescaleForDisplay (docs/htmengine.md §3): 0 stays 0; otherwise
 * logScale(|score|) plus the band floor (red >= 0.5: 1e9, yellow >= 0.4: 1e6,
 * else 1000), times 1/1e9 when the metric is not active. */
double an_rescale_for_display(double anomaly_score, bool active) {
    enum { GREEN = 1000, YELLOW = GREEN * 1000, RED = YELLOW * 1000 };
    if (anomaly_score == 0) return 0;
    double c = log_scale(fabs(anomaly_score));
    if (c >= 0.50)
        c += RED;
    else if (c >= 0.40)
        c += YELLOW;
    else
        c += GREEN;
    if (!active) c *= 1.0 / RED;
    return c;
}

/* metric_data.display_value: the rescaled value rounded half away from
 * zero. A NaN score (never produced by the maths) maps to 0 rather than
 * llround's unspecified value. */
int64_t an_display_value(double anomaly_score, bool active) {
    double r = an_rescale_for_display(anomaly_score, active);
    if (isnan(r)) return 0;
    return (int64_t)llround(r);
}

/* ------------------------------------------------------------------------ */
/* The AnomalyLikelihood class                                              */
/* ------------------------------------------------------------------------ */

/* The history is a sliding array: records live at buf[start..start+len),
 * oldest first, so an estimate reads them in place. buf holds 2H records;
 * when the end is reached the newest H - 1 are moved to the front, so
 * appends are amortised O(1) and never allocate. */
struct an_lk_class {
    an_variant variant;
    long learning_period;
    long probationary_period;
    long reestimation_period;
    size_t history_cap;     /* H = historicWindowSize */
    long iteration;
    an_sample *buf;         /* 2H records */
    size_t start, len;
    double *averaged;       /* H doubles: the estimate's scratch */
    bool have_params;
    an_lk_params params;
    size_t last_history_len, last_skip;
};

/* AnomalyLikelihood(learningPeriod, estimationSamples, historicWindowSize,
 * reestimationPeriod). Returns NULL on ENOMEM or on arguments the original
 * could not run with: negative periods, a probationary period of 0 (the
 * first call would estimate from an empty history), a window or
 * re-estimation period below 1. */
an_lk_class *an_lk_class_new(an_variant v, int learning_period,
                             int estimation_samples, int historic_window,
                             int reestimation_period) {
    if (learning_period < 0 || estimation_samples < 0 ||
        (long)learning_period + estimation_samples < 1 || historic_window < 1 ||
        reestimation_period < 1)
        return NULL;
    an_lk_class *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->variant = v;
    c->learning_period = learning_period;
    c->probationary_period = (long)learning_period + estimation_samples;
    c->reestimation_period = reestimation_period;
    c->history_cap = (size_t)historic_window;
    c->buf = malloc(2 * c->history_cap * sizeof *c->buf);
    c->averaged = malloc(c->history_cap * sizeof *c->averaged);
    if (c->buf == NULL || c->averaged == NULL) {
        an_lk_class_free(c);
        return NULL;
    }
    return c;
}

static void class_push(an_lk_class *c, double value, double raw) {
    if (c->len == c->history_cap) {
        c->start++;
        c->len--;
    }
    if (c->start + c->len == 2 * c->history_cap) {
        memmove(c->buf, c->buf + c->start, c->len * sizeof *c->buf);
        c->start = 0;
    }
    c->buf[c->start + c->len++] = (an_sample){.rowid = c->iteration,
                                              .value = value, .raw = raw};
}

/* anomalyProbability(value, score) (README 5.9): exactly 0.5 during
 * probation; afterwards 1 - the filtered likelihood of one update, with a
 * fresh estimate over the history (excluding this record) first when there
 * is none yet or iteration % reestimationPeriod == 0. */
double an_lk_class_probability(an_lk_class *c, double value, double raw,
                               bool *reestimated) {
    double p = 0.5;
    bool re = false;
    if (c->iteration >= c->probationary_period) {
        if (!c->have_params || c->iteration % c->reestimation_period == 0) {
            long skip = an_calc_skip_records(c->iteration, (long)c->history_cap,
                                             c->learning_period);
            assert(c->len > 0 && skip >= 0);
            int rc = an_estimate(c->variant, c->buf + c->start, c->len,
                                 AN_LK_DEFAULT_WINDOW, (size_t)skip, &c->params,
                                 NULL, c->averaged, NULL);
            assert(rc == AN_OK);
            (void)rc;
            c->have_params = true;
            c->last_history_len = c->len;
            c->last_skip = (size_t)skip;
            re = true;
        }
        p = 1.0 - an_update_one(c->variant, &c->params, raw, NULL);
    }
    class_push(c, value, raw);
    c->iteration++;
    if (reestimated != NULL) *reestimated = re;
    return p;
}

/* The estimator state after the last call (zeroed before the first
 * estimate). */
const an_lk_params *an_lk_class_params(const an_lk_class *c) {
    return &c->params;
}

/* The history length and skip of the most recent estimate (0, 0 before
 * the first): the vectors' reestimations[].historyLength / skipRecords. */
void an_lk_class_last_estimate(const an_lk_class *c, size_t *history_len,
                               size_t *skip) {
    if (history_len != NULL) *history_len = c->last_history_len;
    if (skip != NULL) *skip = c->last_skip;
}

void an_lk_class_free(an_lk_class *c) {
    if (c == NULL) return;
    free(c->buf);
    free(c->averaged);
    free(c);
}
