/*
 * fuzz_common.h: shared helpers of the libFuzzer targets in tests/fuzz/.
 *
 * Every target defines LLVMFuzzerTestOneInput and checks CONTRACTS of the
 * parser it drives (round trips, invariants, reference implementations),
 * not only the absence of crashes: a violated contract prints what was
 * expected and aborts, which libFuzzer (and the CTest replay) report as a
 * failure with the input saved.
 *
 * The same target sources are built twice: with clang -fsanitize=fuzzer
 * by ops/fuzz.sh, and with replay_main.c by CMake (gcc, ASan+UBSan) so
 * CTest replays the seed corpora without clang.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the failed condition and a printf-style explanation. */
#define FZ_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "\nCONTRACT VIOLATED %s:%d: %s\n  ", __FILE__,     \
                    __LINE__, #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* A malloc'd NUL-terminated copy of data[0..n); aborts on ENOMEM (the
 * harness itself must not fail silently). */
static inline char *fz_strndup(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    if (n)
        memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* True when s (len bytes) holds no C0 control character and no DEL: text
 * that is logged or published must not carry them raw. */
static inline bool fz_no_ctrl(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Bitwise equality of two doubles (distinguishes -0.0, keeps NaN payloads). */
static inline bool fz_same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Non-overlapping occurrences of needle (non-empty) in hay. */
static inline size_t fz_count(const char *hay, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    if (nl == 0)
        return 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + nl, needle))
        n++;
    return n;
}

/* True when the contract `name` is listed in $FUZZ_SKIP (comma-separated):
 * a way to keep a long run going past a known, reported finding. The
 * default (unset) checks everything. */
static inline bool fz_skip(const char *name)
{
    const char *s = getenv("FUZZ_SKIP");
    size_t n = strlen(name);
    while (s && *s) {
        if (strncmp(s, name, n) == 0 && (s[n] == ',' || s[n] == '\0'))
            return true;
        s = strchr(s, ',');
        if (s)
            s++;
    }
    return false;
}

/* Reason/message texts from input go to logs and the dead-letter stream:
 * no raw control characters (contract "ctrl-reason", see fz_skip). */
static inline bool fz_reason_clean(const char *s)
{
    return fz_skip("ctrl-reason") || fz_no_ctrl(s, strlen(s));
}


#include "an_codec.h" /* an_field */

/* Splits fuzz bytes on 0xff into at most max (name, value) field pairs
 * pointing into d (at most 32 parts); the entry shape the stream decoders
 * take. Shared by the batch and output decoder targets. */
static inline size_t fz_split_fields(const uint8_t *d, size_t n, an_field *f, size_t max)
{
    const char *parts[32];
    size_t lens[32], np = 0, start = 0;
    for (size_t i = 0; i <= n && np < 32; i++) {
        if (i == n || d[i] == 0xff) {
            parts[np] = (const char *)d + start;
            lens[np++] = i - start;
            start = i + 1;
        }
    }
    size_t nf = 0;
    for (size_t i = 0; i + 1 < np && nf < max; i += 2)
        f[nf++] = (an_field){parts[i], lens[i], parts[i + 1], lens[i + 1]};
    return nf;
}

#endif
