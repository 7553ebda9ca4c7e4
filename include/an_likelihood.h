/*
 * an_likelihood.h: the anomaly-likelihood maths of nupic, as htmengine ran it.
 *
 * Pure functions: no I/O, no Redis, no SQL, no allocation on the online path.
 * Two variants (docs/htmengine.md §2.5, the READMEs under
 * tests/data/likelihood/):
 *   AN_VARIANT_HTMENGINE  nupic 0.3.4: 71-entry Q table indexed by round(10z),
 *                         0.0 beyond index 70, 1 - Q below the mean.
 *   AN_VARIANT_NUPIC10    last nupic: 0.5*erfc(z/1.4142), symmetric tail.
 * Everything else (moving average with running total, numpy pairwise
 * summation, floors, null distribution, flat-metric rule, filter, update) is
 * shared. All arithmetic is IEEE double in the order the original used; the
 * build uses -ffp-contract=off so no multiply-add is fused.
 *
 * Error convention: functions that can fail return 0 or a negative AN_E*
 * code and write a message into a caller-supplied buffer.
 */
#ifndef AN_LIKELIHOOD_H
#define AN_LIKELIHOOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "an_error.h"
#include "an_json_out.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest moving-average window (and historicalLikelihoods length) accepted.
 * The original default is 10; vectors use 1..20. Larger stored windows are
 * rejected with a clear error rather than truncated. */
#define AN_LK_MAX_WINDOW 256

#define AN_LK_DEFAULT_WINDOW 10

typedef enum {
    AN_VARIANT_HTMENGINE = 0,
    AN_VARIANT_NUPIC10 = 1,
} an_variant;

/* "htmengine" / "nupic-1.0" <-> enum. Returns 0, or AN_EINVAL for an unknown
 * name. */
int an_variant_parse(const char *name, an_variant *out);
const char *an_variant_name(an_variant v);

/* One record fed to the estimator: the metric value (used only by the
 * flat-metric rule) and the raw HTM anomaly score. The timestamp never
 * enters the arithmetic, so it is not here. */
typedef struct an_sample {
    int64_t rowid;
    double value;
    double raw;
} an_sample;

/* distribution {name:"normal", mean, variance, stdev} */
typedef struct an_dist {
    double mean;
    double variance;
    double stdev;
} an_dist;

/* nupic.utils.MovingAverage state: the last len (<= window_size) raw scores,
 * oldest first, and the running total (never re-summed). */
typedef struct an_movavg {
    double values[AN_LK_MAX_WINDOW];
    int len;
    int window_size;
    double total;
} an_movavg;

/* The estimator params ("params" in anomalyLikelihoodParams). */
typedef struct an_lk_params {
    an_dist dist;
    an_movavg ma;
    /* last <= ma.window_size UNFILTERED tail probabilities, oldest first */
    double hist[AN_LK_MAX_WINDOW];
    int hist_len;
} an_lk_params;

/* numpy's summation (8192-element blocks, pairwise within each block). */
double an_np_sum(const double *x, size_t n);
/* numpy mean / population variance (two passes). n > 0. */
double an_np_mean(const double *x, size_t n);
double an_np_var(const double *x, size_t n);

/* estimateNormal(sample, performLowerBoundCheck). n > 0. */
an_dist an_estimate_normal(const double *x, size_t n, bool lower_bound_check);
/* {mean 0.5, variance 1e6, stdev 1e3} */
an_dist an_null_distribution(void);

/* The variant's tail function: normalProbability (0.3.4) or tailProbability
 * (nupic-1.0). */
double an_tail_probability(an_variant v, double x, const an_dist *d);

/* Red and yellow thresholds, computed as 1.0 - 0.99999 and 1.0 - 0.999. */
double an_lk_red_threshold(void);
double an_lk_yellow_threshold(void);

/* _filterLikelihoods: out[0] = in[0]; out[i] = yellow when in[i] and in[i-1]
 * are both <= red. in and out may alias. */
void an_filter_likelihoods(const double *in, double *out, size_t n);

/* MovingAverage.compute step: returns the new average. */
double an_movavg_step(an_movavg *ma, double x);

/* estimateAnomalyLikelihoods(records, averagingWindow=window, skipRecords=skip).
 * n >= 1, 1 <= window <= AN_LK_MAX_WINDOW. Writes params; if likelihoods is
 * non-NULL it receives n FILTERED likelihoods, if averaged is non-NULL the n
 * moving averages. Returns 0, AN_EINVAL (n == 0, bad window) or AN_ENOMEM.
 * If null_reason is non-NULL it receives NULL, "skip" or "flatline". */
int an_estimate(an_variant v, const an_sample *recs, size_t n, int window,
                size_t skip, an_lk_params *params, double *likelihoods,
                double *averaged, const char **null_reason);

/* updateAnomalyLikelihoods([one record], params): advances params in place
 * and returns the FILTERED likelihood of the record. If averaged is
 * non-NULL it receives the moving average. No allocation. */
double an_update_one(an_variant v, an_lk_params *params, double raw,
                     double *averaged);

/* AnomalyLikelihood.computeLogLikelihood: log(1.0000000001 - p) / -23.02585084720009 */
double an_log_likelihood(double p);

/* AnomalyLikelihood._calcSkipRecords(numIngested, windowSize, learningPeriod) */
long an_calc_skip_records(long num_ingested, long window_size,
                          long learning_period);

/* rescaleForDisplay(value, active) (docs/htmengine.md §3), as a double, and the
 * integer that goes into metric_data.display_value (rounded half away from
 * zero). */
double an_rescale_for_display(double anomaly_score, bool active);
int64_t an_display_value(double anomaly_score, bool active);

/* The nupic AnomalyLikelihood class (anomalyProbability), used by the
 * vectors' "class" case. Owns its history buffer: an_lk_class_free.
 * an_lk_class_new returns NULL on ENOMEM or invalid arguments (negative
 * periods, learning_period + estimation_samples == 0, historic_window or
 * reestimation_period < 1). */
typedef struct an_lk_class an_lk_class;
an_lk_class *an_lk_class_new(an_variant v, int learning_period,
                             int estimation_samples, int historic_window,
                             int reestimation_period);
/* Returns the anomaly probability of this record; *reestimated (optional)
 * tells whether the distribution was re-estimated at this call, and
 * an_lk_class_params gives the state after it. */
double an_lk_class_probability(an_lk_class *c, double value, double raw,
                               bool *reestimated);
const an_lk_params *an_lk_class_params(const an_lk_class *c);
/* History length and skipRecords of the most recent re-estimation (0, 0
 * before the first). Either pointer may be NULL. */
void an_lk_class_last_estimate(const an_lk_class *c, size_t *history_len,
                               size_t *skip);
void an_lk_class_free(an_lk_class *c);

/* ---- params <-> JSON (original key names) ----
 * {"distribution":{"name":"normal","mean":..,"variance":..,"stdev":..},
 *  "movingAverage":{"historicalValues":[..],"total":..,"windowSize":W},
 *  "historicalLikelihoods":[..]}
 * Doubles are stored as JSON reals and round-trip exactly. */

/* Returns a new reference (caller owns; json_decref), or NULL on ENOMEM. */
json_t *an_lk_params_to_json(const an_lk_params *p);

/* Appends an_json_dumps(an_lk_params_to_json(p)) to b, byte for byte,
 * without building the tree (the service writes it for every scored
 * batch). A non-finite number sets b->fail (the tree cannot hold one). */
void an_lk_params_append(an_jbuf *b, const an_lk_params *p);

/* Parses params. Extra keys are ignored; a missing "historicalLikelihoods"
 * is taken as [1.0] (as the original). Missing or mistyped required keys,
 * a window over AN_LK_MAX_WINDOW, a list longer than the window or a
 * distribution stdev of 0 give AN_EINVAL with a message naming the key in
 * err. */
int an_lk_params_from_json(const json_t *j, an_lk_params *p, char *err,
                           size_t errlen);


#ifdef __cplusplus
}
#endif
#endif /* AN_LIKELIHOOD_H */
