/*
 * likelihood_json.c: estimator params <-> JSON with the original key names
 * (what htmengine stored in model_params.anomalyLikelihoodParams.params),
 * and the shortest round-trip text of a double.
 *
 * Parsing is strict about what the maths needs (every number present and a
 * number, windows within AN_LK_MAX_WINDOW) and lenient about the rest
 * (extra keys, integers where reals are expected), so state written by the
 * Python original loads, and malformed state fails with a message naming
 * the key instead of crashing later.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_likelihood.h"

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

/* Steals v: sets key on o and returns 0, or -1 when v is NULL or the set
 * failed (jansson's only failure modes here are allocation). */
static int set_new(json_t *o, const char *key, json_t *v) {
    return v == NULL || json_object_set_new(o, key, v) != 0 ? -1 : 0;
}

static json_t *real_array(const double *x, int n) {
    json_t *a = json_array();
    if (a == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        if (json_array_append_new(a, json_real(x[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* Reals are written by jansson with 17 significant digits, which strtod
 * reads back as the same double: the round trip is exact. */
json_t *an_lk_params_to_json(const an_lk_params *p) {
    json_t *root = json_object(), *dist = json_object(), *ma = json_object();
    if (root == NULL || dist == NULL || ma == NULL) goto fail;
    if (set_new(dist, "name", json_string("normal")) ||
        set_new(dist, "mean", json_real(p->dist.mean)) ||
        set_new(dist, "variance", json_real(p->dist.variance)) ||
        set_new(dist, "stdev", json_real(p->dist.stdev)))
        goto fail;
    if (set_new(ma, "historicalValues", real_array(p->ma.values, p->ma.len)) ||
        set_new(ma, "total", json_real(p->ma.total)) ||
        set_new(ma, "windowSize", json_integer(p->ma.window_size)))
        goto fail;
    int rc = set_new(root, "distribution", dist);
    dist = NULL;
    if (rc) goto fail;
    rc = set_new(root, "movingAverage", ma);
    ma = NULL;
    if (rc) goto fail;
    if (set_new(root, "historicalLikelihoods", real_array(p->hist, p->hist_len)))
        goto fail;
    return root;
fail:
    json_decref(dist);
    json_decref(ma);
    json_decref(root);
    return NULL;
}

static void real_list(an_jbuf *b, const double *x, int n) {
    an_jbuf_put(b, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i) an_jbuf_put(b, ",", 1);
        an_jbuf_double(b, x[i]);
    }
    an_jbuf_put(b, "]", 1);
}

/* The keys and their order are those of an_lk_params_to_json, the
 * separators and numbers those of an_json_dumps: a unit test holds the two
 * paths to the same bytes. */
void an_lk_params_append(an_jbuf *b, const an_lk_params *p) {
    char num[64];
    an_jbuf_puts(b, "{\"distribution\":{\"name\":\"normal\",\"mean\":");
    an_jbuf_double(b, p->dist.mean);
    an_jbuf_puts(b, ",\"variance\":");
    an_jbuf_double(b, p->dist.variance);
    an_jbuf_puts(b, ",\"stdev\":");
    an_jbuf_double(b, p->dist.stdev);
    an_jbuf_puts(b, "},\"movingAverage\":{\"historicalValues\":");
    real_list(b, p->ma.values, p->ma.len);
    an_jbuf_puts(b, ",\"total\":");
    an_jbuf_double(b, p->ma.total);
    snprintf(num, sizeof num, ",\"windowSize\":%d},\"historicalLikelihoods\":", p->ma.window_size);
    an_jbuf_puts(b, num);
    real_list(b, p->hist, p->hist_len);
    an_jbuf_put(b, "}", 1);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */
/* ------------------------------------------------------------------------ */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return AN_EINVAL;
}

/* obj[key] as a double: a JSON real or integer. */
static int get_number(const json_t *obj, const char *key, const char *path,
                      double *out, char *err, size_t errlen) {
    const json_t *v = json_object_get(obj, key);
    if (!json_is_number(v))
        return fail(err, errlen, "%s.%s: missing or not a number", path, key);
    *out = json_number_value(v);
    return AN_OK;
}

/* obj[key] as a list of at most max numbers. */
static int get_list(const json_t *obj, const char *key, const char *path,
                    int max, double *out, int *len, char *err, size_t errlen) {
    const json_t *a = json_object_get(obj, key);
    if (!json_is_array(a))
        return fail(err, errlen, "%s.%s: missing or not a list", path, key);
    size_t n = json_array_size(a);
    if (n > (size_t)max)
        return fail(err, errlen,
                    "%s.%s: %zu entries, more than windowSize %d", path, key,
                    n, max);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_number(v))
            return fail(err, errlen, "%s.%s[%zu]: not a number", path, key, i);
        out[i] = json_number_value(v);
    }
    *len = (int)n;
    return AN_OK;
}

/* isValidEstimatorParams plus what the update reads: distribution
 * {name, mean, variance, stdev}, movingAverage {historicalValues, total,
 * windowSize}, optional historicalLikelihoods (absent: [1.0], as the
 * original). p is written only on success. */
int an_lk_params_from_json(const json_t *j, an_lk_params *p, char *err,
                           size_t errlen) {
    an_lk_params t;
    memset(&t, 0, sizeof t); /* every field is set below; this keeps -O3 from guessing */
    int rc;
    if (!json_is_object(j)) return fail(err, errlen, "params: not an object");

    const json_t *dist = json_object_get(j, "distribution");
    if (!json_is_object(dist))
        return fail(err, errlen, "params.distribution: missing or not an object");
    if (!json_is_string(json_object_get(dist, "name")))
        return fail(err, errlen, "params.distribution.name: missing or not a string");
    if ((rc = get_number(dist, "mean", "params.distribution", &t.dist.mean, err, errlen)) ||
        (rc = get_number(dist, "variance", "params.distribution", &t.dist.variance, err, errlen)) ||
        (rc = get_number(dist, "stdev", "params.distribution", &t.dist.stdev, err, errlen)))
        return rc;
    /* The estimator never writes stdev 0 (its floor is sqrt(0.0003), the
     * null distribution's 1e3); with 0 the nupic-1.0 tail divides 0 by 0
     * at the mean and scores NaN (the original raised there). */
    if (t.dist.stdev == 0)
        return fail(err, errlen, "params.distribution.stdev: 0 (would divide by zero)");

    const json_t *ma = json_object_get(j, "movingAverage");
    if (!json_is_object(ma))
        return fail(err, errlen, "params.movingAverage: missing or not an object");
    const json_t *ws = json_object_get(ma, "windowSize");
    double w = json_number_value(ws);
    if (!json_is_number(ws))
        return fail(err, errlen,
                    "params.movingAverage.windowSize: missing or not a number");
    if (!(w >= 1 && w <= AN_LK_MAX_WINDOW && w == floor(w)))
        return fail(err, errlen,
                    "params.movingAverage.windowSize: %.17g is not an integer "
                    "in 1..%d", w, AN_LK_MAX_WINDOW);
    t.ma.window_size = (int)w;
    if ((rc = get_list(ma, "historicalValues", "params.movingAverage",
                       t.ma.window_size, t.ma.values, &t.ma.len, err, errlen)) ||
        (rc = get_number(ma, "total", "params.movingAverage", &t.ma.total, err, errlen)))
        return rc;

    if (json_object_get(j, "historicalLikelihoods") == NULL) {
        t.hist[0] = 1.0;
        t.hist_len = 1;
    } else if ((rc = get_list(j, "historicalLikelihoods", "params",
                              t.ma.window_size, t.hist, &t.hist_len, err,
                              errlen))) {
        return rc;
    }
    *p = t;
    return AN_OK;
}
