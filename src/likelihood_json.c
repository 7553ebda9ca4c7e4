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

/* ------------------------------------------------------------------------ */
/* Doubles as text                                                          */
/* ------------------------------------------------------------------------ */

/* Python's repr of a float: the shortest decimal that strtod reads back as
 * exactly d (the correctly rounded %.{p}e for the smallest p that round-
 * trips, so also the closest such string), written in fixed notation when
 * the decimal exponent is in [-4, 16) and with ".0" on integers ("1.0",
 * "1000.0", "-0.0"), else as "1e-05" / "1.5e+16". Non-finite values print
 * as JSON's customary NaN / Infinity / -Infinity. Truncated to len. */
static char *fmt_double_slow(char *buf, size_t len, double d) {
    if (buf == NULL || len == 0) return buf;
    if (isnan(d) || isinf(d)) {
        snprintf(buf, len, "%s", isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
        return buf;
    }
    char e[40];
    for (int prec = 0; prec <= 16; prec++) { /* 17 digits always round-trip */
        snprintf(e, sizeof e, "%.*e", prec, d);
        double back = strtod(e, NULL);
        if (memcmp(&back, &d, sizeof d) == 0) break;
    }
    char *mant = e + (e[0] == '-'), *exp = strchr(e, 'e');
    int x = atoi(exp + 1);
    if (x < -4 || x >= 16) {
        snprintf(buf, len, "%s", e);
        return buf;
    }
    char digits[20], out[48];
    size_t n = 0, o = 0;
    for (const char *c = mant; c < exp; c++)
        if (*c != '.') digits[n++] = *c;
    if (e[0] == '-') out[o++] = '-';
    if (x < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = -1; i > x; i--) out[o++] = '0';
        for (size_t i = 0; i < n; i++) out[o++] = digits[i];
    } else {
        size_t ip = (size_t)x + 1; /* digits before the point */
        for (size_t i = 0; i < ip; i++) out[o++] = i < n ? digits[i] : '0';
        out[o++] = '.';
        if (n <= ip) out[o++] = '0';
        for (size_t i = ip; i < n; i++) out[o++] = digits[i];
    }
    out[o] = '\0';
    snprintf(buf, len, "%s", out);
    return buf;
}

/* ---- fast path -----------------------------------------------------------
 * For 1e-10 <= |d| < 1e16 (normal doubles) the shortest round-trip digits
 * are computed exactly with 128-bit integers: the rounding interval of d
 * (half an ulp each side, closed when the significand is even, as strtod's
 * ties-to-even reads it back) is scaled to an integer grid of 17-18 digits,
 * the coarsest power of ten with a multiple inside it gives the shortest
 * length, and the multiple nearest to d (ties to even, as printf) the
 * digits: what the %.{p}e loop of fmt_double_slow finds, ~40x faster.
 * Anything else (other magnitudes, subnormals, an exact tie whose even
 * neighbour falls outside the interval) takes the loop. */
typedef unsigned __int128 u128;

static const uint64_t P10[20] = {1ULL,
                                 10ULL,
                                 100ULL,
                                 1000ULL,
                                 10000ULL,
                                 100000ULL,
                                 1000000ULL,
                                 10000000ULL,
                                 100000000ULL,
                                 1000000000ULL,
                                 10000000000ULL,
                                 100000000000ULL,
                                 1000000000000ULL,
                                 10000000000000ULL,
                                 100000000000000ULL,
                                 1000000000000000ULL,
                                 10000000000000000ULL,
                                 100000000000000000ULL,
                                 1000000000000000000ULL,
                                 10000000000000000000ULL};

/* 5^k for k <= 30 (< 2^70); 5^27 is the largest below 2^64. */
static u128 pow5(int k)
{
    static const uint64_t P5[28] = {
        1ULL, 5ULL, 25ULL, 125ULL, 625ULL, 3125ULL, 15625ULL, 78125ULL, 390625ULL,
        1953125ULL, 9765625ULL, 48828125ULL, 244140625ULL, 1220703125ULL,
        6103515625ULL, 30517578125ULL, 152587890625ULL, 762939453125ULL,
        3814697265625ULL, 19073486328125ULL, 95367431640625ULL, 476837158203125ULL,
        2384185791015625ULL, 11920928955078125ULL, 59604644775390625ULL,
        298023223876953125ULL, 1490116119384765625ULL, 7450580596923828125ULL};
    return k <= 27 ? (u128)P5[k] : (u128)P5[27] * P5[k - 27];
}

/* M * 2^E / 10^q for q < 0: M * 5^-q * 2^(E - q); its floor in fl, whether
 * it is an integer, and its fractional part against 1/2. */
typedef struct {
    uint64_t fl;
    int cmp_half; /* frac vs 0.5 */
    bool exact;   /* frac == 0 */
} scaled;

static bool scale(uint64_t M, int E, int q, scaled *out)
{
    if (q >= 0 || -q > 30)
        return false;
    u128 num = (u128)M * pow5(-q); /* < 2^56 * 2^70 */
    int s = E - q;
    if (s >= 0) {
        if (s > 60 || (num >> (127 - s)) != 0)
            return false;
        num <<= s;
        if (num >> 64)
            return false;
        out->fl = (uint64_t)num;
        out->exact = true;
        out->cmp_half = -1;
        return true;
    }
    int sh = -s;
    if (sh > 126)
        return false;
    u128 fl = num >> sh;
    u128 rem = num - (fl << sh);
    if (fl >> 64)
        return false;
    out->fl = (uint64_t)fl;
    out->exact = rem == 0;
    u128 half = (u128)1 << (sh - 1);
    out->cmp_half = rem < half ? -1 : rem > half ? 1 : 0;
    return true;
}

static int ndigits(uint64_t v)
{
    int n = 1;
    while (n < 20 && v >= P10[n])
        n++;
    return n;
}

/* Shortest round-trip digits of x > 0: x reads back from c * 10^k, c
 * without trailing zeros. Returns false to fall back. */
static bool shortest(double x, uint64_t *c_out, int *k_out)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int be = (int)((bits >> 52) & 0x7ff);
    uint64_t bm = bits & ((1ULL << 52) - 1);
    if (be == 0 || be == 0x7ff)
        return false;
    if (!(x >= 1e-10 && x < 1e16))
        return false;
    uint64_t m2 = bm | (1ULL << 52);
    int e2 = be - 1075;
    bool even = (m2 & 1) == 0;
    uint64_t mv = 4 * m2, mp = mv + 2, mm = mv - 1 - ((bm != 0 || be <= 1) ? 1 : 0);
    int E = e2 - 2;

    /* decimal exponent of x: est or est + 1 (the significand adds
     * log10 of [1, 2)); q makes x / 10^q a 17- or 18-digit integer part */
    int est = (int)floor((double)(be - 1023) * 0.30102999566398120);
    int q = est - 16;
    scaled lo, hi, v;
    if (!scale(mv, E, q, &v))
        return false;
    if (ndigits(v.fl) < 17 || !scale(mm, E, q, &lo) || !scale(mp, E, q, &hi))
        return false;
    /* integer candidates n * 10^q within the rounding interval */
    uint64_t L = lo.fl + (lo.exact ? (even ? 0 : 1) : 1);
    uint64_t H = hi.fl - (hi.exact && !even ? 1 : 0);
    if (L > H)
        return false; /* cannot happen with >= 17 digits */
    int j = 0;
    while (j < 19 && (H / P10[j + 1]) * P10[j + 1] >= L)
        j++;
    uint64_t u = P10[j];
    uint64_t cL = (L + u - 1) / u, cH = H / u;
    /* nearest multiple of 10^j to v (exact rational) */
    uint64_t f = v.fl / u, r0 = v.fl - f * u;
    int cmp; /* remainder (r0 + frac) vs u/2 */
    if (j == 0) {
        cmp = v.cmp_half;
    } else {
        uint64_t half = u / 2;
        cmp = r0 < half ? -1 : r0 > half ? 1 : (v.exact ? 0 : 1);
    }
    uint64_t c;
    if (cmp < 0)
        c = f;
    else if (cmp > 0)
        c = f + 1;
    else
        c = (f & 1) ? f + 1 : f; /* tie: printf rounds half to even */
    if (c < cL || c > cH)
        return false; /* tie corner: the printf loop would go longer */
    int k = q + j;
    if (c == 0)
        return false;
    while (c % 10 == 0) {
        c /= 10;
        k++;
    }
    *c_out = c;
    *k_out = k;
    return true;
}

char *an_fmt_double(char *buf, size_t len, double d)
{
    if (buf == NULL || len == 0)
        return buf;
    if (isnan(d) || isinf(d) || len < 32)
        return fmt_double_slow(buf, len, d);
    if (d == 0)
        return strcpy(buf, signbit(d) ? "-0.0" : "0.0");
    uint64_t c;
    int k;
    if (!shortest(fabs(d), &c, &k))
        return fmt_double_slow(buf, len, d);
    char dig[24];
    int n = 0;
    for (uint64_t t = c; t; t /= 10)
        dig[n++] = (char)('0' + t % 10);
    /* dig reversed; value = c * 10^k; exponent of the first digit */
    int Xp = k + n - 1;
    char *o = buf;
    if (d < 0)
        *o++ = '-';
    if (Xp < -4 || Xp >= 16) { /* repr's exponent form */
        *o++ = dig[n - 1];
        if (n > 1) {
            *o++ = '.';
            for (int i = n - 2; i >= 0; i--)
                *o++ = dig[i];
        }
        int ax = Xp < 0 ? -Xp : Xp;
        *o++ = 'e';
        *o++ = Xp < 0 ? '-' : '+';
        if (ax >= 100)
            *o++ = (char)('0' + ax / 100);
        *o++ = (char)('0' + ax / 10 % 10);
        *o++ = (char)('0' + ax % 10);
    } else if (Xp >= 0) {
        int i = n - 1;
        for (int e = Xp; e >= 0; e--)
            *o++ = i >= 0 && e >= k ? dig[i--] : '0';
        if (i >= 0) {
            *o++ = '.';
            while (i >= 0)
                *o++ = dig[i--];
        } else {
            *o++ = '.';
            *o++ = '0';
        }
    } else {
        *o++ = '0';
        *o++ = '.';
        for (int e = -1; e > Xp; e--)
            *o++ = '0';
        for (int i = n - 1; i >= 0; i--)
            *o++ = dig[i];
    }
    *o = '\0';
    return buf;
}
