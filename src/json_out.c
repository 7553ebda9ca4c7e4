/*
 * json_out.c: the JSON text this project writes (an_json_out.h): the
 * shortest round-trip text of a double, an appendable text buffer with
 * JSON string escaping, and the compact serializer of a jansson tree.
 */
#include "an_json_out.h"

#include "an_error.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Doubles as text                                                          */
/* ------------------------------------------------------------------------ */

/* Python's repr of a float: the shortest decimal that strtod reads back as
 * exactly d (the correctly rounded %.{p}e for the smallest p that round-
 * trips, so also the closest such string), written in fixed notation when
 * the decimal exponent is in [-4, 16) and with ".0" on integers ("1.0",
 * "1000.0", "-0.0"), else as "1e-05" / "1.5e+16". Non-finite values print
 * as JSON's customary NaN / Infinity / -Infinity. Truncated to len. */
/* %.{p}e of d for the smallest p that reads back as exactly d, into e.
 * p = 16 (17 digits) always does. For any d whose significand is not a
 * power of two the rounding interval is symmetric around d, and the
 * (p+1)-digit rounding is at least as close to d as the p-digit one (which
 * is also a (p+1)-digit decimal): once p round-trips every larger p does, so
 * the smallest is found by bisection (4-5 trials instead of up to 17: the
 * tiny running totals of the params need 17 digits). A power of two has a
 * narrower interval below it than above, so it takes the plain scan. */
static bool round_trips(char *e, size_t elen, int prec, double d) {
    snprintf(e, elen, "%.*e", prec, d);
    double back = strtod(e, NULL);
    return memcmp(&back, &d, sizeof d) == 0;
}

static void shortest_e(char *e, size_t elen, double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    if ((bits & ((1ULL << 52) - 1)) == 0) {
        for (int prec = 0; prec <= 16; prec++)
            if (round_trips(e, elen, prec, d)) return;
        return;
    }
    int lo = 0, hi = 16; /* hi round-trips; the answer is in [lo, hi] */
    if (round_trips(e, elen, 15, d)) hi = 15;
    else lo = 16;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (round_trips(e, elen, mid, d)) hi = mid;
        else lo = mid + 1;
    }
    snprintf(e, elen, "%.*e", hi, d);
}

static char *fmt_double_slow(char *buf, size_t len, double d) {
    if (buf == NULL || len == 0) return buf;
    if (isnan(d) || isinf(d)) {
        snprintf(buf, len, "%s", isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
        return buf;
    }
    char e[40];
    shortest_e(e, sizeof e, d);
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

/* ------------------------------------------------------------------------ */
/* JSON text                                                                */
/* ------------------------------------------------------------------------ */

char *an_codec_fmt_double(char *buf, size_t len, double d)
{
    if (isnan(d)) {
        snprintf(buf, len, "nan");
        return buf;
    }
    if (isinf(d)) {
        snprintf(buf, len, d < 0 ? "-inf" : "inf");
        return buf;
    }
    /* The shortest text that reads back exactly (Python repr style: "1.0",
     * "0.1", "1e-05"), with a fast exact path for the usual magnitudes. */
    return an_fmt_double(buf, len, d);
}

static void jbuf_reserve(an_jbuf *b, size_t more)
{
    if (b->fail)
        return;
    if (b->len + more + 1 <= b->cap)
        return;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + more + 1)
        ncap *= 2;
    char *np = realloc(b->p, ncap);
    if (!np) {
        b->fail = true;
        return;
    }
    b->p = np;
    b->cap = ncap;
}

int an_jbuf_rc(const an_jbuf *b)
{
    return !b->fail ? 0 : b->invalid ? AN_EINVAL : AN_ENOMEM;
}

void an_jbuf_put(an_jbuf *b, const char *s, size_t n)
{
    jbuf_reserve(b, n);
    if (b->fail)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void an_jbuf_puts(an_jbuf *b, const char *s) { an_jbuf_put(b, s, strlen(s)); }

void an_jbuf_str(an_jbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    jbuf_reserve(b, n + 2);
    an_jbuf_put(b, "\"", 1);
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
                u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = '\0';
                esc = u;
            }
        }
        if (esc) {
            an_jbuf_put(b, s + run, i - run);
            an_jbuf_puts(b, esc);
            run = i + 1;
        }
    }
    an_jbuf_put(b, s + run, n - run);
    an_jbuf_put(b, "\"", 1);
}

void an_jbuf_json(an_jbuf *b, const json_t *v, int depth)
{
    char num[40];
    if (b->fail)
        return;
    if (depth > 2048) {
        b->fail = b->invalid = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        bool first = true;
        an_jbuf_put(b, "{", 1);
        /* jansson >= 2.8 iterates objects in insertion order. */
        json_object_foreach((json_t *)v, key, val) {
            if (!first)
                an_jbuf_put(b, ",", 1);
            first = false;
            an_jbuf_str(b, key, strlen(key));
            an_jbuf_put(b, ":", 1);
            an_jbuf_json(b, val, depth + 1);
        }
        an_jbuf_put(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        an_jbuf_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                an_jbuf_put(b, ",", 1);
            an_jbuf_json(b, json_array_get(v, i), depth + 1);
        }
        an_jbuf_put(b, "]", 1);
        break;
    }
    case JSON_STRING:
        an_jbuf_str(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        an_jbuf_puts(b, num);
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        if (!isfinite(d)) {
            b->fail = b->invalid = true;
            return;
        }
        an_jbuf_puts(b, an_codec_fmt_double(num, sizeof num, d));
        break;
    }
    case JSON_TRUE:
        an_jbuf_puts(b, "true");
        break;
    case JSON_FALSE:
        an_jbuf_puts(b, "false");
        break;
    case JSON_NULL:
        an_jbuf_puts(b, "null");
        break;
    }
}

void an_jbuf_double(an_jbuf *b, double d)
{
    char num[40];
    if (!isfinite(d)) {
        b->fail = b->invalid = true;
        return;
    }
    an_jbuf_puts(b, an_codec_fmt_double(num, sizeof num, d));
}

char *an_json_dumps(const json_t *v, size_t *len)
{
    an_jbuf b = {0};
    if (!v)
        return NULL;
    an_jbuf_json(&b, v, 0);
    if (!b.fail && !b.p)
        an_jbuf_put(&b, "", 0);
    if (b.fail || !b.p) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}

char *an_predictions_text(const json_t *p)
{
    if (!p || json_is_null(p))
        return strdup("null");
    return an_json_dumps(p, NULL);
}
