/*
 * csv.c: the NAB CSV reader of an_csv.h.
 *
 * The input is read in chunks into one growable line buffer; each complete
 * line is split in place (the field ends are overwritten with NULs for
 * strtod) and its three wanted fields are appended to the column arrays.
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_csv.h"
#include "an_error.h"

#define CHUNK (1u << 20) /* read size */
#define SHOW_MAX 40      /* longest field text quoted in a message */

enum { COL_TS, COL_VALUE, COL_RAW, NCOLS };
static const char *const col_names[NCOLS] = {"timestamp", "value", "raw_score"};

struct an_csv {
    size_t n, cap;     /* rows, allocated rows */
    double *values;    /* [cap] */
    double *raws;      /* [cap] */
    char *arena;       /* timestamps back to back, no terminators */
    size_t arena_len, arena_cap;
    size_t ts_fixed;   /* common timestamp length while offs == NULL */
    uint64_t *offs;    /* [cap + 1] start offsets once lengths differ */
};

/* The reader's state for one load. */
typedef struct reader {
    const char *name;
    char *err;
    size_t errlen;
    an_csv *c;
    size_t line;           /* 1-based number of the line being parsed */
    size_t nfields;        /* header field count */
    size_t col[NCOLS];     /* header index of each wanted column */
    bool have_header;
} reader;

static void set_err(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(reader *r, const char *fmt, ...)
{
    if (!r->err || r->errlen == 0)
        return;
    int k = snprintf(r->err, r->errlen, "%s: ", r->name);
    if (k < 0 || (size_t)k >= r->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + k, r->errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

/* Copies a field for a message: at most SHOW_MAX characters, non-printing
 * bytes as '?'. out has SHOW_MAX + 4 bytes. */
static const char *show(char *out, const char *s, size_t len)
{
    size_t n = len > SHOW_MAX ? SHOW_MAX : len;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (len > n) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_blank((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_blank((*s)[*len - 1]))
        (*len)--;
}

/* ---- storage ------------------------------------------------------------ */

static int grow_rows(reader *r)
{
    an_csv *c = r->c;
    size_t ncap = c->cap ? c->cap * 2 : 4096;
    if (ncap > SIZE_MAX / sizeof(double) / 2) {
        set_err(r, "line %zu: too many rows", r->line);
        return AN_ERANGE;
    }
    double *v = realloc(c->values, ncap * sizeof *v);
    if (!v)
        goto nomem;
    c->values = v;
    double *w = realloc(c->raws, ncap * sizeof *w);
    if (!w)
        goto nomem;
    c->raws = w;
    if (c->offs) {
        uint64_t *o = realloc(c->offs, (ncap + 1) * sizeof *o);
        if (!o)
            goto nomem;
        c->offs = o;
    }
    c->cap = ncap;
    return 0;
nomem:
    set_err(r, "line %zu: out of memory for %zu rows", r->line, ncap);
    return AN_ENOMEM;
}

static int append_ts(reader *r, const char *s, size_t len)
{
    an_csv *c = r->c;
    if (c->arena_len + len > c->arena_cap) {
        size_t ncap = c->arena_cap ? c->arena_cap * 2 : 65536;
        while (ncap < c->arena_len + len)
            ncap *= 2;
        char *a = realloc(c->arena, ncap);
        if (!a) {
            set_err(r, "line %zu: out of memory for timestamps", r->line);
            return AN_ENOMEM;
        }
        c->arena = a;
        c->arena_cap = ncap;
    }
    if (c->n == 0)
        c->ts_fixed = len;
    if (!c->offs && len != c->ts_fixed) {
        /* Lengths differ from here on: materialise the offset table. */
        uint64_t *o = malloc((c->cap + 1) * sizeof *o);
        if (!o) {
            set_err(r, "line %zu: out of memory for timestamps", r->line);
            return AN_ENOMEM;
        }
        for (size_t i = 0; i <= c->n; i++)
            o[i] = (uint64_t)i * c->ts_fixed;
        c->offs = o;
    }
    memcpy(c->arena + c->arena_len, s, len);
    c->arena_len += len;
    if (c->offs)
        c->offs[c->n + 1] = c->arena_len;
    return 0;
}

/* ---- parsing ------------------------------------------------------------ */

/* Clinger's fast path: a decimal [sign] digits [. digits] [e [sign] digits]
 * with at most 19 significant digits whose integer significand w is <= 2^53
 * and whose power of ten p is within [-22, 22] is w * 10^p or w / 10^-p:
 * both operands are exact doubles, so the one IEEE operation rounds
 * correctly and the result equals strtod's. Returns false (the caller then
 * uses strtod) for anything else, valid or not. t[0..tl) is trimmed. */
static bool fast_decimal(const char *t, size_t tl, double *out)
{
    static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *p = t, *end = t + tl;
    bool neg = false;
    if (p < end && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    uint64_t w = 0;
    int sig = 0;      /* significant digits taken into w */
    int scale = 0;    /* digits after the point taken into w */
    int ndigits = 0;  /* all mantissa digits seen */
    for (; p < end && *p >= '0' && *p <= '9'; p++, ndigits++) {
        if (w == 0 && *p == '0')
            continue; /* leading zero */
        if (++sig > 19)
            return false;
        w = w * 10 + (uint64_t)(*p - '0');
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++, ndigits++) {
            if (++scale > 10000)
                return false;
            if (w == 0 && *p == '0')
                continue;
            if (++sig > 19)
                return false;
            w = w * 10 + (uint64_t)(*p - '0');
        }
    }
    if (ndigits == 0)
        return false;
    int e = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p == end)
            return false;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (e > 10000)
                return false;
            e = e * 10 + (*p - '0');
        }
        if (eneg)
            e = -e;
    }
    if (p != end)
        return false;
    e -= scale;
    if (w > ((uint64_t)1 << 53) || e < -22 || e > 22)
        return w == 0 ? (*out = neg ? -0.0 : 0.0, true) : false;
    double d = (double)w;
    d = e < 0 ? d / pow10[-e] : d * pow10[e];
    *out = neg ? -d : d;
    return true;
}

/* Parses field s[0..len) (s[len] is writable) of column col as a finite
 * double. */
static int parse_number(reader *r, size_t col, char *s, size_t len, double *out)
{
    const char *t = s;
    size_t tl = len;
    trim(&t, &tl);
    if (fast_decimal(t, tl, out))
        return 0;
    char shown[SHOW_MAX + 4];
    bool ok = tl > 0;
    for (size_t i = 0; ok && i < tl; i++)
        if (t[i] == 'x' || t[i] == 'X')
            ok = false; /* strtod's hex floats: not a NAB number */
    double d = 0.0;
    if (ok) {
        char save = s[len];
        s[len] = '\0';
        char *end;
        errno = 0;
        d = strtod(t, &end);
        ok = end == t + tl;
        s[len] = save;
    }
    if (!ok) {
        set_err(r, "line %zu: column '%s': '%s' is not a number", r->line, col_names[col],
                show(shown, s, len));
        return AN_EINVAL;
    }
    if (!isfinite(d)) {
        set_err(r, "line %zu: column '%s': '%s' is not a finite number", r->line,
                col_names[col], show(shown, s, len));
        return AN_EINVAL;
    }
    *out = d;
    return 0;
}

static int parse_header(reader *r, char *s, size_t len)
{
    if (r->line == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3; /* UTF-8 byte-order mark */
        len -= 3;
    }
    for (size_t k = 0; k < NCOLS; k++)
        r->col[k] = SIZE_MAX;
    size_t idx = 0;
    const char *p = s, *end = s + len;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *fe = comma ? comma : end;
        const char *f = p;
        size_t fl = (size_t)(fe - p);
        trim(&f, &fl);
        for (size_t k = 0; k < NCOLS; k++) {
            if (fl == strlen(col_names[k]) && memcmp(f, col_names[k], fl) == 0) {
                if (r->col[k] != SIZE_MAX) {
                    set_err(r, "line %zu: duplicate column '%s' in header", r->line,
                            col_names[k]);
                    return AN_EINVAL;
                }
                r->col[k] = idx;
            }
        }
        idx++;
        if (!comma)
            break;
        p = comma + 1;
    }
    for (size_t k = 0; k < NCOLS; k++) {
        if (r->col[k] == SIZE_MAX) {
            set_err(r, "missing column '%s' in header", col_names[k]);
            return AN_EINVAL;
        }
    }
    r->nfields = idx;
    r->have_header = true;
    return 0;
}

static int parse_row(reader *r, char *s, size_t len)
{
    char *fs[NCOLS] = {NULL, NULL, NULL};
    size_t fl[NCOLS] = {0, 0, 0};
    size_t idx = 0;
    char *p = s, *end = s + len;
    for (;;) {
        char *comma = memchr(p, ',', (size_t)(end - p));
        char *fe = comma ? comma : end;
        for (size_t k = 0; k < NCOLS; k++) {
            if (r->col[k] == idx) {
                fs[k] = p;
                fl[k] = (size_t)(fe - p);
            }
        }
        idx++;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (idx != r->nfields) {
        set_err(r, "line %zu: expected %zu fields as in the header, got %zu", r->line,
                r->nfields, idx);
        return AN_EINVAL;
    }
    an_csv *c = r->c;
    if (c->n == c->cap) {
        int rc = grow_rows(r);
        if (rc)
            return rc;
    }
    int rc = parse_number(r, COL_VALUE, fs[COL_VALUE], fl[COL_VALUE], &c->values[c->n]);
    if (rc)
        return rc;
    rc = parse_number(r, COL_RAW, fs[COL_RAW], fl[COL_RAW], &c->raws[c->n]);
    if (rc)
        return rc;
    if (fl[COL_TS] == 0) {
        set_err(r, "line %zu: column 'timestamp' is empty", r->line);
        return AN_EINVAL;
    }
    rc = append_ts(r, fs[COL_TS], fl[COL_TS]);
    if (rc)
        return rc;
    c->n++;
    return 0;
}

/* One line without its LF; s[len] is writable. */
static int parse_line(reader *r, char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '\r')
        len--;
    if (len == 0)
        return 0; /* empty line: skipped */
    if (memchr(s, '"', len)) {
        set_err(r, "line %zu: quoted fields are not supported (NAB CSVs have no quotes)",
                r->line);
        return AN_EINVAL;
    }
    if (!r->have_header)
        return parse_header(r, s, len);
    return parse_row(r, s, len);
}

void an_csv_free(an_csv *c)
{
    if (!c)
        return;
    free(c->values);
    free(c->raws);
    free(c->arena);
    free(c->offs);
    free(c);
}

int an_csv_load_stream(FILE *fp, const char *name, an_csv **out, char *err,
                       size_t errlen)
{
    assert(fp && out);
    *out = NULL;
    reader r;
    memset(&r, 0, sizeof r);
    r.name = name ? name : "csv";
    r.err = err;
    r.errlen = errlen;
    if (err && errlen)
        err[0] = '\0';
    r.c = calloc(1, sizeof *r.c);
    size_t cap = CHUNK;
    char *buf = malloc(cap + 1); /* + 1: room to terminate the last line */
    if (!r.c || !buf) {
        free(buf);
        an_csv_free(r.c);
        set_err(&r, "out of memory");
        return AN_ENOMEM;
    }

    int rc = 0;
    size_t len = 0;    /* bytes in buf */
    bool eof = false;
    while (rc == 0) {
        /* Parse every complete line in buf[0..len). */
        size_t pos = 0;
        for (;;) {
            char *nl = memchr(buf + pos, '\n', len - pos);
            if (!nl)
                break;
            r.line++;
            rc = parse_line(&r, buf + pos, (size_t)(nl - (buf + pos)));
            if (rc)
                break;
            pos = (size_t)(nl - buf) + 1;
        }
        if (rc)
            break;
        if (eof) {
            if (pos < len) { /* last line without a newline */
                r.line++;
                rc = parse_line(&r, buf + pos, len - pos);
            }
            break;
        }
        memmove(buf, buf + pos, len - pos);
        len -= pos;
        if (len == cap) { /* one line longer than the buffer */
            char *nb = cap < SIZE_MAX / 4 ? realloc(buf, cap * 2 + 1) : NULL;
            if (!nb) {
                set_err(&r, "line %zu: line too long", r.line + 1);
                rc = AN_ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0) {
            if (ferror(fp)) {
                set_err(&r, "read error after line %zu: %s", r.line, strerror(errno));
                rc = AN_EIO;
                break;
            }
            eof = true;
        }
    }
    free(buf);
    if (rc == 0 && !r.have_header) {
        set_err(&r, "empty file: no header line");
        rc = AN_EINVAL;
    }
    if (rc) {
        an_csv_free(r.c);
        return rc;
    }
    *out = r.c;
    return 0;
}

int an_csv_load(const char *path, an_csv **out, char *err, size_t errlen)
{
    assert(path && out);
    *out = NULL;
    if (strcmp(path, "-") == 0)
        return an_csv_load_stream(stdin, "<stdin>", out, err, errlen);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return AN_EIO;
    }
    int rc = an_csv_load_stream(fp, path, out, err, errlen);
    fclose(fp);
    return rc;
}

size_t an_csv_rows(const an_csv *c)
{
    return c->n;
}

const char *an_csv_timestamp(const an_csv *c, size_t i, size_t *len)
{
    assert(i < c->n);
    if (c->offs) {
        *len = (size_t)(c->offs[i + 1] - c->offs[i]);
        return c->arena + c->offs[i];
    }
    *len = c->ts_fixed;
    return c->arena + i * c->ts_fixed;
}

const double *an_csv_values(const an_csv *c)
{
    return c->values;
}

const double *an_csv_raws(const an_csv *c)
{
    return c->raws;
}

size_t an_csv_memory(const an_csv *c)
{
    size_t b = sizeof *c + c->n * 2 * sizeof(double) + c->arena_len;
    if (c->offs)
        b += (c->n + 1) * sizeof(uint64_t);
    return b;
}
