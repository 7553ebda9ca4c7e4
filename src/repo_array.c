/*
 * repo_array.c: PostgreSQL array literals (repo_internal.h). The
 * repository passes many values in one parameter as the text of an array
 * ("{1,2,3}", '{"a","b"}'), unnested by the statement: one statement for
 * any number of rows, and still no value spliced into SQL text.
 */
#include "repo_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_json_out.h" /* an_fmt_double */

/* Room for extra more bytes and the NUL (doubling from 256). */
static bool reserve(an_pgarr *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

/* Appends n bytes of s, keeping the text NUL-terminated. */
static bool add(an_pgarr *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return false;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}

static bool addc(an_pgarr *b, char c) { return add(b, &c, 1); }
static bool adds(an_pgarr *b, const char *s) { return add(b, s, strlen(s)); }

/* The separator before an element: none after the opening brace. */
static bool sep(an_pgarr *b) { return b->len <= 1 || addc(b, ','); }

bool an_pgarr_open(an_pgarr *b)
{
    b->len = 0;
    return addc(b, '{');
}

bool an_pgarr_close(an_pgarr *b) { return addc(b, '}'); }

bool an_pgarr_raw(an_pgarr *b, const char *token) { return sep(b) && adds(b, token); }

/* A double as an array element: round-trip exact (the shortest text that
 * reads back the same), with the spellings PostgreSQL accepts for the
 * non-finite values. */
bool an_pgarr_double(an_pgarr *b, double d)
{
    char buf[40];
    if (isnan(d))
        snprintf(buf, sizeof buf, "NaN");
    else if (isinf(d))
        snprintf(buf, sizeof buf, "%s", d > 0 ? "Infinity" : "-Infinity");
    else
        an_fmt_double(buf, sizeof buf, d);   /* shortest text float8in reads back exactly */
    return an_pgarr_raw(b, buf);
}

bool an_pgarr_int(an_pgarr *b, int64_t v)
{
    /* by hand: snprintf was a visible share of a catch-up group's CPU */
    char buf[24];
    char *p = buf + sizeof buf;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    *--p = '\0';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return an_pgarr_raw(b, p);
}

/* A text array element: NULL -> NULL; else double-quoted with " and \
 * backslash-escaped (array literal rules: everything else, including
 * commas, braces, blanks and non-ASCII UTF-8, is literal inside quotes). */
bool an_pgarr_text(an_pgarr *b, const char *s)
{
    if (!s)
        return an_pgarr_raw(b, "NULL");
    if (!sep(b) || !addc(b, '"'))
        return false;
    for (const char *p = s; *p; p++) {
        if ((*p == '"' || *p == '\\') && !addc(b, '\\'))
            return false;
        if (!addc(b, *p))
            return false;
    }
    return addc(b, '"');
}

bool an_pgarr_text_array(an_pgarr *b, const char *const *v, size_t n)
{
    bool ok = an_pgarr_open(b);
    for (size_t i = 0; ok && i < n; i++)
        ok = an_pgarr_text(b, v[i]);
    return ok && an_pgarr_close(b);
}

void an_pgarr_free(an_pgarr *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
