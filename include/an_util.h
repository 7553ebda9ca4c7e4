/* an_util.h: the few helpers every layer shares, so each exists once:
 * error text into a caller's buffer, growing an array, and the doubling
 * backoff of retry loops. No I/O, no allocation except an_grow's. */
#ifndef AN_UTIL_H
#define AN_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Formats into err[errlen] (truncating, always NUL-terminated). A NULL err
 * or errlen 0 is allowed and does nothing, so callers may pass through an
 * optional error buffer without checking it. */
void an_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Makes *p (an array of *cap elements of elem bytes) hold at least need
 * elements: doubles from 16 until it does, reallocates, updates *p and *cap.
 * true on success (or when it already fits); false when out of memory or
 * when need * elem overflows, with *p and *cap unchanged (the caller still
 * owns and frees *p). */
bool an_grow(void **p, size_t *cap, size_t need, size_t elem);

/* A malloc'd NUL-terminated copy of s[0, n) (s may hold NULs; n bytes are
 * copied). NULL when out of memory. The caller frees it. */
char *an_strndup(const char *s, size_t n);

/* Reallocates k parallel arrays (arrays[i] of elem[i]-byte elements, all of
 * capacity *cap) to hold at least need elements each, doubling like
 * an_grow. true on success; false when out of memory or on overflow, with
 * *cap unchanged (arrays already grown stay valid and owned by the caller). */
bool an_grow_parallel(void **const *arrays, const size_t *elem, size_t k, size_t *cap,
                      size_t need);

/* The next delay of a doubling backoff: 2 * delay_ms, at most cap_ms (and
 * at least 1). One rule for every retry loop: the first wait is the
 * configured base, each later one doubles until the cap. */
int an_backoff_next(int delay_ms, int cap_ms);

#endif
