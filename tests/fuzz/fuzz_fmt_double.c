/*
 * fuzz_fmt_double: shortest round-trip formatting of doubles
 * (an_fmt_double, an_codec_fmt_double), used for every stored and
 * published real.
 *
 * Input: 8-byte chunks taken as doubles (every bit pattern), plus the
 * first line read by strtod (decimal texts near rounding boundaries).
 * Contracts, for every finite d:
 *   - round trip: strtod(text) == d bit for bit (-0.0 included), and
 *     jansson reads the same double from the text;
 *   - fast path == slow path: the exact 128-bit path gives the same text
 *     as the printf loop that defines the result (the loop is what
 *     an_fmt_double uses when buf is shorter than 32 bytes);
 *   - shortest: one significant digit less never reads back as d;
 *   - shape: a '.' or an exponent (a real stays a real in JSON), no
 *     trailing zero in the fraction beyond ".0", at most 24 characters;
 *   - an_codec_fmt_double gives the same text.
 * Non-finite: the slow and fast entry points agree and never crash.
 */
#include <math.h>

#include "an_codec.h"
#include "an_likelihood.h"
#include "fuzz_common.h"

/* The calls into the formatter: adapt here when the API changes. The slow
 * path is reached through a buffer shorter than 32 bytes (the documented
 * minimum for the fast path); 31 bytes hold any result. */
static const char *fmt_fast(char *buf, double d) { return an_fmt_double(buf, 64, d); }
static const char *fmt_slow(char *buf, double d) { return an_fmt_double(buf, 31, d); }

/* Number of significant digits in the text's mantissa. */
static int sig_digits(const char *t)
{
    int n = 0, started = 0;
    for (const char *p = t; *p && *p != 'e'; p++) {
        if (*p < '0' || *p > '9')
            continue;
        if (*p != '0')
            started = 1;
        if (started)
            n++;
    }
    /* trailing zeros of an integer part ("100.0") are not significant */
    const char *e = strchr(t, 'e');
    const char *end = e ? e : t + strlen(t);
    const char *dot = strchr(t, '.');
    if (dot && dot < end && end - dot == 2 && dot[1] == '0') {
        n--; /* the ".0" */
        for (const char *p = dot - 1; p >= t && *p == '0' && n > 1; p--)
            n--;
    }
    return n < 1 ? 1 : n;
}

static void check(double d)
{
    char fast[64], slow[64], codec[64];
    fmt_fast(fast, d);
    fmt_slow(slow, d);
    FZ_CHECK(strcmp(fast, slow) == 0, "fast '%s' != slow '%s' for %a", fast, slow, d);
    if (!isfinite(d))
        return;
    an_codec_fmt_double(codec, sizeof codec, d);
    FZ_CHECK(strcmp(codec, fast) == 0, "codec '%s' != '%s'", codec, fast);
    size_t n = strlen(fast);
    FZ_CHECK(n <= 24, "'%s' is %zu characters", fast, n);
    FZ_CHECK(strchr(fast, '.') || strchr(fast, 'e'), "'%s' reads as an integer", fast);
    char *end;
    double back = strtod(fast, &end);
    FZ_CHECK(*end == '\0' && fz_same_double(back, d),
             "'%s' reads back as %a, not %a", fast, back, d);
    json_t *j = json_loads(fast, JSON_DECODE_ANY, NULL);
    FZ_CHECK(json_is_real(j) && fz_same_double(json_real_value(j), d),
             "jansson reads '%s' differently", fast);
    json_decref(j);
    /* shortest: with one digit less, no rounding reads back as d */
    int digits = sig_digits(fast);
    if (digits > 1) {
        char shorter[64];
        snprintf(shorter, sizeof shorter, "%.*e", digits - 2, d);
        FZ_CHECK(!fz_same_double(strtod(shorter, NULL), d),
                 "'%s' is not shortest: '%s' reads back too", fast, shorter);
    }
    /* no useless trailing zero in the fraction (other than "x.0") */
    const char *dot = strchr(fast, '.');
    if (dot) {
        const char *e = strchr(fast, 'e');
        const char *last = (e ? e : fast + n) - 1;
        FZ_CHECK(*last != '0' || last == dot + 1, "trailing zero in '%s'", fast);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i + 8 <= size; i += 8) {
        double d;
        memcpy(&d, data + i, 8);
        check(d);
        check(nextafter(d, INFINITY));
    }
    size_t line = 0;
    while (line < size && line < 64 && data[line] != '\n')
        line++;
    char *t = fz_strndup(data, line);
    check(strtod(t, NULL));
    free(t);
    return 0;
}
