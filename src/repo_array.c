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

#include "an_likelihood.h"

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

static bool add(an_pgarr *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return false;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}

bool an_pgarr_addc(an_pgarr *b, char c) { return add(b, &c, 1); }
bool an_pgarr_adds(an_pgarr *b, const char *s) { return add(b, s, strlen(s)); }

void an_pgarr_reset(an_pgarr *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = 0;
}

/* A double as an array element: round-trip exact (%.17g), with the
 * spellings PostgreSQL accepts for the non-finite values. */
bool an_pgarr_add_double(an_pgarr *b, double d)
{
    char buf[40];
    if (isnan(d))
        snprintf(buf, sizeof buf, "NaN");
    else if (isinf(d))
        snprintf(buf, sizeof buf, "%s", d > 0 ? "Infinity" : "-Infinity");
    else
        an_fmt_double(buf, sizeof buf, d);   /* shortest text float8in reads back exactly */
    return an_pgarr_adds(b, buf);
}

bool an_pgarr_add_int(an_pgarr *b, int64_t v)
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
    return an_pgarr_adds(b, p);
}

/* A text array element: NULL -> NULL; else double-quoted with " and \
 * backslash-escaped (array literal rules: everything else, including
 * commas, braces, blanks and non-ASCII UTF-8, is literal inside quotes). */
bool an_pgarr_add_text(an_pgarr *b, const char *s)
{
    if (!s)
        return an_pgarr_adds(b, "NULL");
    if (!an_pgarr_addc(b, '"'))
        return false;
    for (const char *p = s; *p; p++) {
        if ((*p == '"' || *p == '\\') && !an_pgarr_addc(b, '\\'))
            return false;
        if (!an_pgarr_addc(b, *p))
            return false;
    }
    return an_pgarr_addc(b, '"');
}

/* Replaces b with "{a,b,...}" of n text elements (NULL -> NULL). */
bool an_pgarr_text_array(an_pgarr *b, const char *const *v, size_t n)
{
    an_pgarr_reset(b);
    bool okb = an_pgarr_addc(b, '{');
    for (size_t i = 0; okb && i < n; i++)
        okb = (i == 0 || an_pgarr_addc(b, ',')) && an_pgarr_add_text(b, v[i]);
    return okb && an_pgarr_addc(b, '}');
}

void an_pgarr_free(an_pgarr *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
