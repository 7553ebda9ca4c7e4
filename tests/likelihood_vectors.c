/*
 * likelihood_vectors: runs the likref-v1 reference vectors
 * (the .jsonl files of tests/data/likelihood/<variant>/) against the C maths
 * and helper.
 *
 *   likelihood_vectors [--variant htmengine|nupic-1.0] [--exact] FILE...
 *
 * Each file is one header line and one case per line. For each case the
 * runner computes what the original computed, builds it as JSON shaped like
 * the case's expected values, and walks both trees. A case passes only if
 * every compared value matches; the first difference is reported as
 *
 *   FAIL <file> <case id>: <path>: got <x>, expected <y>
 *
 * and the last line is "N passed, M failed". Exit status 1 on any failure,
 * unknown case type or unreadable file.
 *
 * Tolerances (vector READMEs): nupic-1.0 compares reals to 1e-9 relative
 * (or both below 1e-300). htmengine's likelihoods are table selections, so
 * likelihood-type values must be bit-identical, logLikelihood agrees to
 * 1e-12 and continuous values (distribution, totals, averages, metric
 * variance) to 1e-9. Integers, strings, nulls, booleans, list lengths and
 * the int-vs-real distinction (the helper's integer 0 = not scored) are
 * always exact.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "an_helper.h"
#include "an_json_out.h"
#include "an_likelihood.h"

/* ------------------------------------------------------------------------ */
/* Comparison                                                               */
/* ------------------------------------------------------------------------ */

typedef enum { TOL_EXACT, TOL_REL12, TOL_REL9 } tol_t;

/* --exact: every real bit for bit. Following the READMEs' section 5 exactly
 * (numpy summation included) reproduces the reference bit for bit, so this
 * catches an order-of-operations slip the tolerances would hide. */
static bool g_exact;

typedef struct cmp {
    an_variant variant;
    bool failed;
    char msg[1024]; /* the first difference */
} cmp;

static bool diff(cmp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the first difference of a case; returns false for chaining. */
static bool diff(cmp *c, const char *fmt, ...) {
    if (!c->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->msg, sizeof c->msg, fmt, ap);
        va_end(ap);
        c->failed = true;
    }
    return false;
}

/* The tolerance below an object key. nupic-1.0 is 1e-9 throughout. The
 * htmengine rules make likelihood-type keys exact (the helper's "rows" hold
 * its anomaly scores), logLikelihood 1e-12 and the continuous keys 1e-9;
 * any other key inherits its parent's tolerance. */
static tol_t key_tol(const cmp *c, const char *key, tol_t inherited) {
    static const char *const exact[] = {
        "likelihoods", "initLikelihoods", "historicalLikelihoods",
        "anomalyProbability", "rows", NULL};
    static const char *const rel9[] = {
        "mean", "variance", "stdev", "total", "averagedScores",
        "metricVariance", "historicalValues", NULL};
    if (c->variant == AN_VARIANT_NUPIC10) return TOL_REL9;
    for (int i = 0; exact[i]; i++)
        if (strcmp(key, exact[i]) == 0) return TOL_EXACT;
    for (int i = 0; rel9[i]; i++)
        if (strcmp(key, rel9[i]) == 0) return TOL_REL9;
    if (strcmp(key, "logLikelihood") == 0) return TOL_REL12;
    return inherited;
}

/* The tolerance of a whole case-level value whose key the comparator does
 * not see (fn items' "expected"): likelihood-type in htmengine. */
static tol_t value_tol(const cmp *c, tol_t htmengine_tol) {
    return c->variant == AN_VARIANT_NUPIC10 ? TOL_REL9 : htmengine_tol;
}

static bool reals_match(double g, double e, tol_t tol) {
    if (tol == TOL_EXACT || g_exact) return memcmp(&g, &e, sizeof g) == 0;
    if (g == e) return true;
    if (fabs(g) < 1e-300 && fabs(e) < 1e-300) return true;
    double rel = tol == TOL_REL12 ? 1e-12 : 1e-9;
    return fabs(g - e) <= rel * fmax(fabs(g), fabs(e));
}

/* Short text of a JSON value for messages. */
static const char *jtext(const json_t *v, char *buf, size_t len) {
    if (v == NULL) {
        snprintf(buf, len, "(missing)");
    } else if (json_is_real(v)) {
        an_fmt_double(buf, len, json_real_value(v));
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(buf, len, "%.120s%s", s ? s : "?", s && strlen(s) > 120 ? "..." : "");
        free(s);
    }
    return buf;
}

static const char *jtype(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "list";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Walks exp and got in parallel; true when equal under the tolerances. The
 * first difference goes to c->msg with its path. */
static bool cmp_json(cmp *c, const json_t *got, const json_t *exp,
                     const char *path, tol_t tol) {
    char gb[160], eb[160], sub[512];
    if (got == NULL || json_typeof(got) != json_typeof(exp)) {
        if (json_is_boolean(got) && json_is_boolean(exp)) {
            /* true vs false: a value difference, reported below */
        } else {
            return diff(c, "%s: got %s %s, expected %s %s", path,
                        got ? jtype(got) : "nothing", jtext(got, gb, sizeof gb),
                        jtype(exp), jtext(exp, eb, sizeof eb));
        }
    }
    switch (json_typeof(exp)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *ev;
        json_object_foreach((json_t *)exp, key, ev) {
            snprintf(sub, sizeof sub, "%s.%s", path, key);
            if (!cmp_json(c, json_object_get(got, key), ev, sub,
                          key_tol(c, key, tol)))
                return false;
        }
        json_t *gv;
        json_object_foreach((json_t *)got, key, gv) {
            if (json_object_get(exp, key) == NULL)
                return diff(c, "%s.%s: unexpected key (got %s)", path, key,
                            jtext(gv, gb, sizeof gb));
        }
        return true;
    }
    case JSON_ARRAY: {
        size_t gn = json_array_size(got), en = json_array_size(exp);
        if (gn != en)
            return diff(c, "%s: got %zu entries, expected %zu", path, gn, en);
        for (size_t i = 0; i < en; i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            if (!cmp_json(c, json_array_get(got, i), json_array_get(exp, i),
                          sub, tol))
                return false;
        }
        return true;
    }
    case JSON_REAL:
        if (reals_match(json_real_value(got), json_real_value(exp), tol)) return true;
        break;
    case JSON_INTEGER:
        if (json_integer_value(got) == json_integer_value(exp)) return true;
        break;
    case JSON_STRING:
        if (strcmp(json_string_value(got), json_string_value(exp)) == 0) return true;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        if (json_typeof(got) == json_typeof(exp)) return true;
        break;
    case JSON_NULL:
        return true;
    }
    return diff(c, "%s: got %s, expected %s", path, jtext(got, gb, sizeof gb),
                jtext(exp, eb, sizeof eb));
}

/* ------------------------------------------------------------------------ */
/* Building "got" values                                                    */
/* ------------------------------------------------------------------------ */

/* jansson refuses NaN and infinities; show them as strings so they are
 * reported as a difference instead of breaking the tree. */
static json_t *jreal(double d) {
    json_t *v = json_real(d);
    if (v == NULL) {
        char buf[32];
        v = json_string(an_fmt_double(buf, sizeof buf, d));
    }
    return v;
}

static json_t *jreals(const double *x, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, jreal(x[i]));
    return a;
}

/* Python's estimateNormal makes stdev the integer 0 when the variance is
 * not positive; mirror the type so the comparison stays strict. */
static json_t *jdist(const an_dist *d) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string("normal"));
    json_object_set_new(o, "mean", jreal(d->mean));
    json_object_set_new(o, "variance", jreal(d->variance));
    json_object_set_new(o, "stdev", d->variance > 0 ? jreal(d->stdev) : json_integer(0));
    return o;
}

/* Params as stored: our JSON, dumped and parsed back (as htmengine stored
 * json.dumps output), so the comparison also covers the text round trip. */
static json_t *reparse(json_t *j) {
    if (j == NULL) return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (s == NULL) return NULL;
    json_t *back = json_loads(s, JSON_DECODE_ANY, NULL);
    free(s);
    return back;
}

static json_t *jparams(const an_lk_params *p) {
    return reparse(an_lk_params_to_json(p));
}

/* ------------------------------------------------------------------------ */
/* Case fields                                                              */
/* ------------------------------------------------------------------------ */

static bool get_int(cmp *c, const json_t *o, const char *key, const char *path,
                    long long *out) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return diff(c, "%s.%s: missing or not an integer in the case", path, key);
    *out = json_integer_value(v);
    return true;
}

static bool get_real(cmp *c, const json_t *o, const char *key, const char *path,
                     double *out) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        return diff(c, "%s.%s: missing or not a number in the case", path, key);
    *out = json_number_value(v);
    return true;
}

static const json_t *get_list(cmp *c, const json_t *o, const char *key,
                              const char *path) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_array(v)) diff(c, "%s.%s: missing or not a list in the case", path, key);
    return json_is_array(v) ? v : NULL;
}

static const json_t *get_obj(cmp *c, const json_t *o, const char *key,
                             const char *path) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_object(v)) diff(c, "%s.%s: missing or not an object in the case", path, key);
    return json_is_object(v) ? v : NULL;
}

/* A list of numbers into a new array (*n entries); NULL on a bad list. */
static double *get_reals(cmp *c, const json_t *o, const char *key,
                         const char *path, size_t *n) {
    const json_t *a = get_list(c, o, key, path);
    if (a == NULL) return NULL;
    *n = json_array_size(a);
    double *x = malloc((*n ? *n : 1) * sizeof *x);
    for (size_t i = 0; i < *n; i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_number(v)) {
            free(x);
            diff(c, "%s.%s[%zu]: not a number in the case", path, key, i);
            return NULL;
        }
        x[i] = json_number_value(v);
    }
    return x;
}

/* ------------------------------------------------------------------------ */
/* Inputs CSV                                                               */
/* ------------------------------------------------------------------------ */

typedef struct inputs {
    an_sample *rows; /* rowid = data-row index */
    size_t n;
    char err[512];   /* why loading failed */
    bool tried;
} inputs;

/* Column index of name in a CSV header line, or -1. */
static int csv_col(char *header, const char *name) {
    int i = 0;
    for (char *f = strtok(header, ",\r\n"); f; f = strtok(NULL, ",\r\n"), i++)
        if (strcmp(f, name) == 0) return i;
    return -1;
}

/* A number field: all of it must parse (strtod rounds correctly). */
static bool csv_number(const char *field, double *out) {
    char *end;
    errno = 0;
    *out = strtod(field, &end);
    return end != field && errno != ERANGE && *end == '\0';
}

/* NAB layout: a header row naming the columns (timestamp,value,raw_score in
 * any order), then one row per record. The timestamp is not needed. */
static int load_inputs(inputs *in, const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(in->err, sizeof in->err, "%.400s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    int cv = -1, cr = -1, rc = -1;
    if (getline(&line, &cap, f) > 0) {
        char *h = strdup(line);
        cv = csv_col(h, "value");
        strcpy(h, line);
        cr = csv_col(h, "raw_score");
        free(h);
    }
    if (cv < 0 || cr < 0) {
        snprintf(in->err, sizeof in->err, "%.400s: no value/raw_score columns in the header",
                 path);
        goto out;
    }
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0') continue;
        char *fields[16], *p = line;
        int nf = 0;
        for (char *tok; nf < 16 && (tok = strsep(&p, ",")) != NULL;) fields[nf++] = tok;
        an_sample s = {.rowid = (int64_t)in->n};
        if (nf <= cv || nf <= cr || !csv_number(fields[cv], &s.value) ||
            !csv_number(fields[cr], &s.raw)) {
            snprintf(in->err, sizeof in->err, "%.400s: data row %zu: bad or missing value/raw_score",
                     path, in->n);
            goto out;
        }
        if (in->n == alloc) {
            alloc = alloc ? 2 * alloc : 4096;
            an_sample *grown = realloc(in->rows, alloc * sizeof *in->rows);
            if (grown == NULL) {
                snprintf(in->err, sizeof in->err, "out of memory");
                goto out;
            }
            in->rows = grown;
        }
        in->rows[in->n++] = s;
    }
    rc = 0;
out:
    free(line);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Cases                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct file_ctx {
    const char *path;
    char dir[4096];
    const json_t *header;
    inputs in;
} file_ctx;

/* The inputs of a NAB vector file, loaded on first use. */
static const inputs *need_inputs(file_ctx *fc, cmp *c) {
    if (!fc->in.tried) {
        fc->in.tried = true;
        const json_t *src = json_object_get(fc->header, "source");
        const char *name = json_string_value(json_object_get(src, "inputsCsv"));
        if (name == NULL) {
            snprintf(fc->in.err, sizeof fc->in.err,
                     "header.source.inputsCsv: missing or not a string");
        } else {
            char path[8192];
            snprintf(path, sizeof path, "%s%s", fc->dir, name);
            if (load_inputs(&fc->in, path) == 0) {
                const json_t *rows = json_object_get(src, "rows");
                if (json_is_integer(rows) &&
                    (size_t)json_integer_value(rows) != fc->in.n) {
                    snprintf(fc->in.err, sizeof fc->in.err,
                             "%s: %zu data rows, header.source.rows says %lld",
                             name, fc->in.n, (long long)json_integer_value(rows));
                    fc->in.n = 0;
                }
            }
        }
    }
    if (fc->in.err[0]) {
        diff(c, "inputs: %s", fc->in.err);
        return NULL;
    }
    return &fc->in;
}

static bool in_range(cmp *c, const inputs *in, long long start, long long count,
                     const char *path) {
    if (start < 0 || count < 1 || (unsigned long long)(start + count) > in->n)
        return diff(c, "%s: rows %lld..%lld outside the %zu input rows", path,
                    start, start + count - 1, in->n);
    return true;
}

/* One estimate over rows [start, start+count): likelihoods, averages,
 * params, null reason and metric variance as JSON. */
static json_t *run_estimate_json(cmp *c, an_variant v, const inputs *in,
                                 long long start, long long count, int window,
                                 long long skip, an_lk_params *params) {
    size_t n = (size_t)count;
    double *lik = malloc(n * sizeof *lik), *avg = malloc(n * sizeof *avg);
    const char *reason = NULL;
    json_t *got = NULL;
    int rc = an_estimate(v, in->rows + start, n, window, (size_t)skip, params,
                         lik, avg, &reason);
    if (rc != AN_OK) {
        diff(c, "an_estimate returned %d", rc);
        goto out;
    }
    got = json_object();
    json_object_set_new(got, "likelihoods", jreals(lik, n));
    json_object_set_new(got, "averagedScores", jreals(avg, n));
    json_object_set_new(got, "params", jparams(params));
    json_object_set_new(got, "nullDistributionReason",
                        reason ? json_string(reason) : json_null());
    if ((size_t)skip < n) {
        /* The flat-metric rule's statistic: var(value[skip:]). */
        size_t m = n - (size_t)skip;
        double *vals = malloc(m * sizeof *vals);
        for (size_t i = 0; i < m; i++) vals[i] = in->rows[start + skip + (long long)i].value;
        json_object_set_new(got, "metricVariance", jreal(an_np_var(vals, m)));
        free(vals);
    } else {
        json_object_set_new(got, "metricVariance", json_null());
    }
out:
    free(lik);
    free(avg);
    return got;
}

static bool case_estimate(cmp *c, file_ctx *fc, const json_t *cs) {
    long long start = 0, count = 0, window = 0, skip = 0;
    const json_t *input = get_obj(c, cs, "input", "case");
    const json_t *exp = get_obj(c, cs, "expected", "case");
    if (!input || !exp || !get_int(c, input, "start", "input", &start) ||
        !get_int(c, input, "count", "input", &count) ||
        !get_int(c, cs, "averagingWindow", "case", &window) ||
        !get_int(c, cs, "skipRecords", "case", &skip))
        return false;
    const inputs *in = need_inputs(fc, c);
    if (!in || !in_range(c, in, start, count, "input")) return false;
    if (window < 1 || window > AN_LK_MAX_WINDOW)
        return diff(c, "averagingWindow %lld unsupported", window);
    an_lk_params p;
    json_t *got = run_estimate_json(c, c->variant, in, start, count, (int)window,
                                    skip, &p);
    if (got == NULL) return false;
    /* averagedScores is null where the generator did not record it. */
    if (json_is_null(json_object_get(exp, "averagedScores")))
        json_object_set_new(got, "averagedScores", json_null());
    bool ok = cmp_json(c, got, exp, "expected", TOL_REL9);
    json_decref(got);
    return ok;
}

/* Estimate, then batches of updates, each batch continuing from the params
 * of the previous one after a JSON round trip (as htmengine stored them). */
static bool case_stream(cmp *c, file_ctx *fc, const json_t *cs) {
    long long start = 0, count = 0, window = 0, skip = 0;
    const json_t *init = get_obj(c, cs, "init", "case");
    const json_t *batches = get_list(c, cs, "batches", "case");
    if (!init || !batches || !get_int(c, init, "start", "init", &start) ||
        !get_int(c, init, "count", "init", &count) ||
        !get_int(c, init, "averagingWindow", "init", &window) ||
        !get_int(c, init, "skipRecords", "init", &skip))
        return false;
    const inputs *in = need_inputs(fc, c);
    if (!in || !in_range(c, in, start, count, "init")) return false;
    if (window < 1 || window > AN_LK_MAX_WINDOW)
        return diff(c, "averagingWindow %lld unsupported", window);

    an_lk_params p;
    json_t *est = run_estimate_json(c, c->variant, in, start, count, (int)window,
                                    skip, &p);
    if (est == NULL) return false;
    bool ok = cmp_json(c, json_object_get(est, "likelihoods"),
                       json_object_get(cs, "initLikelihoods"), "initLikelihoods",
                       key_tol(c, "initLikelihoods", TOL_REL9)) &&
              cmp_json(c, json_object_get(est, "params"),
                       json_object_get(cs, "initParams"), "initParams", TOL_REL9);
    json_decref(est);

    char path[64], err[256];
    for (size_t b = 0; ok && b < json_array_size(batches); b++) {
        const json_t *eb = json_array_get(batches, b);
        snprintf(path, sizeof path, "batches[%zu]", b);
        long long bs = 0, bc = 0;
        if (!get_int(c, eb, "start", path, &bs) || !get_int(c, eb, "count", path, &bc) ||
            !in_range(c, in, bs, bc, path))
            return false;

        json_t *pj = jparams(&p);
        int rc = an_lk_params_from_json(pj, &p, err, sizeof err);
        json_decref(pj);
        if (rc != AN_OK) return diff(c, "%s: params round trip: %s", path, err);

        json_t *got = json_object(), *lik = json_array(), *avg = json_array();
        for (long long i = bs; i < bs + bc; i++) {
            double a;
            json_array_append_new(lik, jreal(an_update_one(c->variant, &p, in->rows[i].raw, &a)));
            json_array_append_new(avg, jreal(a));
        }
        json_object_set_new(got, "start", json_integer(bs));
        json_object_set_new(got, "count", json_integer(bc));
        json_object_set_new(got, "likelihoods", lik);
        json_object_set_new(got, "averagedScores", avg);
        json_object_set_new(got, "params", jparams(&p));
        if (json_is_null(json_object_get(eb, "averagedScores")))
            json_object_set_new(got, "averagedScores", json_null());
        ok = cmp_json(c, got, eb, path, TOL_REL9);
        json_decref(got);
    }
    return ok;
}

/* The AnomalyLikelihood class over the whole file, row by row. */
static bool case_class(cmp *c, file_ctx *fc, const json_t *cs) {
    long long lp = 0, es = 0, hw = 0, rp = 0, pp = 0;
    const json_t *ctor = get_obj(c, cs, "constructor", "case");
    const json_t *exp = get_obj(c, cs, "expected", "case");
    const json_t *probs = exp ? get_list(c, exp, "anomalyProbability", "expected") : NULL;
    if (!ctor || !probs || !get_int(c, ctor, "learningPeriod", "constructor", &lp) ||
        !get_int(c, ctor, "estimationSamples", "constructor", &es) ||
        !get_int(c, ctor, "historicWindowSize", "constructor", &hw) ||
        !get_int(c, ctor, "reestimationPeriod", "constructor", &rp))
        return false;
    if (json_object_get(ctor, "probationaryPeriod") &&
        (!get_int(c, ctor, "probationaryPeriod", "constructor", &pp) || pp != lp + es))
        return diff(c, "constructor.probationaryPeriod: not learningPeriod + "
                       "estimationSamples, which the class assumes");
    const inputs *in = need_inputs(fc, c);
    size_t n = json_array_size(probs);
    if (!in || !in_range(c, in, 0, (long long)n, "expected.anomalyProbability"))
        return false;
    an_lk_class *k = an_lk_class_new(c->variant, (int)lp, (int)es, (int)hw, (int)rp);
    if (k == NULL) return diff(c, "an_lk_class_new rejected the constructor");

    json_t *got = json_object(), *ap = json_array(), *ll = json_array(),
           *re = json_array();
    for (size_t i = 0; i < n; i++) {
        bool reest;
        double p = an_lk_class_probability(k, in->rows[i].value, in->rows[i].raw, &reest);
        json_array_append_new(ap, jreal(p));
        json_array_append_new(ll, jreal(an_log_likelihood(p)));
        if (reest) {
            size_t hl, sk;
            an_lk_class_last_estimate(k, &hl, &sk);
            json_t *r = json_object();
            json_object_set_new(r, "row", json_integer((json_int_t)i));
            json_object_set_new(r, "historyLength", json_integer((json_int_t)hl));
            json_object_set_new(r, "skipRecords", json_integer((json_int_t)sk));
            json_object_set_new(r, "stateAfterRow", jparams(an_lk_class_params(k)));
            json_array_append_new(re, r);
        }
    }
    an_lk_class_free(k);
    json_object_set_new(got, "anomalyProbability", ap);
    json_object_set_new(got, "logLikelihood", ll);
    json_object_set_new(got, "reestimations", re);
    bool ok = cmp_json(c, got, exp, "expected", TOL_REL9);
    json_decref(got);
    return ok;
}

/* The helper's view of metric_data: the rows of earlier batches. */
typedef struct mem_source {
    const an_sample *rows; /* input rows, oldest first */
    size_t processed;      /* rows [0, processed) have raw scores stored */
} mem_source;

static int mem_count(void *ctx, int64_t *count, char *err, size_t errlen) {
    (void)err, (void)errlen;
    *count = (int64_t)((mem_source *)ctx)->processed;
    return 0;
}

static int mem_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                    size_t errlen) {
    (void)err, (void)errlen;
    const mem_source *m = ctx;
    size_t k = n < m->processed ? n : m->processed;
    memcpy(out, m->rows + (m->processed - k), k * sizeof *out);
    *got = k;
    return 0;
}

static void collect_event(void *ud, const an_helper_event *ev) {
    json_t *e = json_array();
    json_array_append_new(e, json_string(an_helper_event_name(ev->kind)));
    for (int i = 0; i < ev->nargs; i++) json_array_append_new(e, json_integer(ev->args[i]));
    json_array_append_new((json_t *)ud, e);
}

/* AnomalyLikelihoodHelper.updateModelAnomalyScores batch by batch, the
 * state stored between batches through a JSON text round trip. The rows
 * keep the input rows' own sample values (rowids are shifted by
 * rowidOfFirstInputRow). */
static bool case_helper(cmp *c, file_ctx *fc, const json_t *cs) {
    long long first = 0;
    const json_t *cfgj = get_obj(c, cs, "config", "case");
    const json_t *batches = get_list(c, cs, "batches", "case");
    an_helper_config cfg = an_helper_config_default();
    long long minsz = 0, rate = 0, size = 0, skip = 0;
    if (!cfgj || !batches || !get_int(c, cs, "rowidOfFirstInputRow", "case", &first) ||
        !get_int(c, cfgj, "statistics_min_sample_size", "config", &minsz) ||
        !get_int(c, cfgj, "statistics_refresh_rate", "config", &rate) ||
        !get_int(c, cfgj, "statistics_sample_size", "config", &size) ||
        !get_int(c, cfgj, "NUM_SKIP_RECORDS", "config", &skip))
        return false;
    cfg.variant = c->variant;
    cfg.min_sample_size = (int)minsz;
    cfg.refresh_rate = (int)rate;
    cfg.sample_size = (int)size;
    cfg.skip_records = (int)skip;
    const inputs *in = need_inputs(fc, c);
    if (!in) return false;

    /* The helper sees rowids; the source returns samples with those rowids. */
    an_sample *rows = malloc((in->n ? in->n : 1) * sizeof *rows);
    for (size_t i = 0; i < in->n; i++) {
        rows[i] = in->rows[i];
        rows[i].rowid = (int64_t)i + first;
    }
    mem_source ms = {rows, 0};
    an_sample_source src = {&ms, mem_count, mem_tail};
    json_t *events = json_array();
    an_helper *h = an_helper_new(&cfg, collect_event, events);
    an_helper_state state = {.present = false};
    an_row *brows = NULL;
    size_t bcap = 0;
    bool ok = h != NULL || diff(c, "an_helper_new failed");
    char path[64], err[512];

    for (size_t b = 0; ok && b < json_array_size(batches); b++) {
        const json_t *eb = json_array_get(batches, b);
        long long fr = 0, m = 0;
        snprintf(path, sizeof path, "batches[%zu]", b);
        if (!get_int(c, eb, "firstRowid", path, &fr) || !get_int(c, eb, "count", path, &m) ||
            !in_range(c, in, fr - first, m, path)) {
            ok = false;
            break;
        }
        if ((size_t)(fr - first) != ms.processed) {
            ok = diff(c, "%s.firstRowid: %lld does not follow the previous batch", path, fr);
            break;
        }
        if ((size_t)m > bcap) brows = realloc(brows, (bcap = (size_t)m) * sizeof *brows);
        for (long long i = 0; i < m; i++) {
            const an_sample *s = &rows[fr - first + i];
            brows[i] = (an_row){.rowid = s->rowid, .value = s->value, .raw = s->raw};
        }
        json_array_clear(events);
        int rc = an_helper_update(h, &src, &state, brows, (size_t)m, err, sizeof err);
        if (rc != AN_OK) {
            ok = diff(c, "%s: an_helper_update returned %d: %s", path, rc, err);
            break;
        }
        ms.processed += (size_t)m;

        json_t *stored = reparse(an_helper_state_to_json(&state));
        if (stored == NULL) {
            ok = diff(c, "%s: an_helper_state_to_json failed", path);
            break;
        }
        rc = an_helper_state_from_json(stored, &state, err, sizeof err);
        if (rc != AN_OK) {
            json_decref(stored);
            ok = diff(c, "%s: stored state does not load back: %s", path, err);
            break;
        }

        json_t *got = json_object(), *jr = json_array();
        for (long long i = 0; i < m; i++) {
            json_t *r = json_array();
            json_array_append_new(r, json_integer(brows[i].rowid));
            json_array_append_new(r, jreal(brows[i].raw));
            json_array_append_new(r, brows[i].scored ? jreal(brows[i].anomaly_score)
                                                     : json_integer(0));
            json_array_append_new(jr, r);
        }
        json_object_set_new(got, "firstRowid", json_integer(fr));
        json_object_set_new(got, "count", json_integer(m));
        json_object_set_new(got, "refreshInterval",
                            json_integer(an_helper_refresh_interval(&cfg, (size_t)m)));
        json_object_set_new(got, "rows", jr);
        json_object_set_new(got, "storedParams", stored);
        json_object_set_new(got, "events", json_deep_copy(events));
        ok = cmp_json(c, got, eb, path, TOL_REL9);
        json_decref(got);
    }
    an_helper_free(h);
    json_decref(events);
    free(brows);
    free(rows);
    return ok;
}

/* ---- functions.jsonl ---- */

/* The table index a 0.3.4 likelihood was read from: k with value == Q[k]
 * (at or above the mean) or 1 - Q[k] (below), null when it is 0.0 / 1.0
 * (beyond the table). Q[k] is obtained through the tail function itself
 * at x = k/10 under N(0, 1), where round(10 * (k/10)) == k. */
static json_t *table_index(double value, bool below) {
    an_dist unit = {0.0, 1.0, 1.0};
    for (int k = 0; k <= 70; k++) {
        double q = an_tail_probability(AN_VARIANT_HTMENGINE, k / 10.0, &unit);
        if (value == (below ? 1.0 - q : q)) return json_integer(k);
    }
    if (value == (below ? 1.0 : 0.0)) return json_null();
    return json_integer(-1);
}

static bool fn_items(cmp *c, const json_t *cs, const json_t **items) {
    *items = get_list(c, cs, "items", "case");
    return *items != NULL;
}

static bool case_fn_tail(cmp *c, const json_t *cs, an_variant fv) {
    const json_t *items;
    if (!fn_items(c, cs, &items)) return false;
    char path[64];
    for (size_t i = 0; i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        an_dist d = {0};
        double x = 0;
        snprintf(path, sizeof path, "items[%zu]", i);
        if (!get_real(c, it, "x", path, &x) || !get_real(c, it, "mean", path, &d.mean) ||
            !get_real(c, it, "stdev", path, &d.stdev))
            return false;
        d.variance = d.stdev * d.stdev;
        double p = an_tail_probability(fv, x, &d);
        json_t *got = json_deep_copy(it);
        json_object_set_new(got, "expected", jreal(p));
        if (json_object_get(it, "belowMean"))
            json_object_set_new(got, "belowMean", json_boolean(x < d.mean));
        if (json_object_get(it, "tableIndex"))
            json_object_set_new(got, "tableIndex", table_index(p, x < d.mean));
        /* normalProbability values are table entries: exact in htmengine. */
        bool ok = cmp_json(c, got, it, path,
                           value_tol(c, fv == AN_VARIANT_HTMENGINE ? TOL_EXACT : TOL_REL9));
        json_decref(got);
        if (!ok) return false;
    }
    return true;
}

static bool case_fn_qtable(cmp *c, const json_t *cs) {
    const json_t *q = get_list(c, cs, "Q", "case");
    if (q == NULL) return false;
    an_dist unit = {0.0, 1.0, 1.0};
    json_t *got = json_array();
    for (size_t k = 0; k < json_array_size(q); k++)
        json_array_append_new(got, jreal(an_tail_probability(AN_VARIANT_HTMENGINE,
                                                             (double)k / 10.0, &unit)));
    bool ok = cmp_json(c, got, q, "Q", value_tol(c, TOL_EXACT));
    json_decref(got);
    return ok;
}

static bool case_fn_estnormal(cmp *c, const json_t *cs) {
    const json_t *items;
    if (!fn_items(c, cs, &items)) return false;
    char path[64];
    for (size_t i = 0; i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        size_t n = 0;
        snprintf(path, sizeof path, "items[%zu]", i);
        const json_t *exp = get_obj(c, it, "expected", path);
        double *x = exp ? get_reals(c, it, "sample", path, &n) : NULL;
        if (x == NULL) return false;
        if (n == 0) {
            free(x);
            return diff(c, "%s.sample: empty", path);
        }
        an_dist with = an_estimate_normal(x, n, true), without = an_estimate_normal(x, n, false);
        free(x);
        json_t *got = json_object();
        json_object_set_new(got, "performLowerBoundCheck=True", jdist(&with));
        json_object_set_new(got, "performLowerBoundCheck=False", jdist(&without));
        snprintf(path + strlen(path), sizeof path - strlen(path), ".expected");
        bool ok = cmp_json(c, got, exp, path, TOL_REL9);
        json_decref(got);
        if (!ok) return false;
    }
    return true;
}

static bool case_fn_filter(cmp *c, const json_t *cs) {
    const json_t *items;
    if (!fn_items(c, cs, &items)) return false;
    char path[64];
    for (size_t i = 0; i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        size_t n = 0;
        snprintf(path, sizeof path, "items[%zu]", i);
        double *x = get_reals(c, it, "input", path, &n);
        if (x == NULL) return false;
        an_filter_likelihoods(x, x, n);
        json_t *got = jreals(x, n);
        free(x);
        snprintf(path + strlen(path), sizeof path - strlen(path), ".expected");
        bool ok = cmp_json(c, got, json_object_get(it, "expected"), path,
                           value_tol(c, TOL_EXACT));
        json_decref(got);
        if (!ok) return false;
    }
    return true;
}

static bool case_fn_loglik(cmp *c, const json_t *cs) {
    const json_t *items;
    if (!fn_items(c, cs, &items)) return false;
    char path[64];
    for (size_t i = 0; i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        double p = 0;
        snprintf(path, sizeof path, "items[%zu]", i);
        if (!get_real(c, it, "likelihood", path, &p)) return false;
        json_t *got = jreal(an_log_likelihood(p));
        snprintf(path + strlen(path), sizeof path - strlen(path), ".expected");
        bool ok = cmp_json(c, got, json_object_get(it, "expected"), path,
                           value_tol(c, TOL_REL12));
        json_decref(got);
        if (!ok) return false;
    }
    return true;
}

static bool case_fn_skip(cmp *c, const json_t *cs) {
    const json_t *items;
    if (!fn_items(c, cs, &items)) return false;
    char path[64];
    for (size_t i = 0; i < json_array_size(items); i++) {
        const json_t *it = json_array_get(items, i);
        long long ni = 0, ws = 0, lp = 0;
        snprintf(path, sizeof path, "items[%zu]", i);
        if (!get_int(c, it, "numIngested", path, &ni) || !get_int(c, it, "windowSize", path, &ws) ||
            !get_int(c, it, "learningPeriod", path, &lp))
            return false;
        json_t *got = json_integer(an_calc_skip_records((long)ni, (long)ws, (long)lp));
        snprintf(path + strlen(path), sizeof path - strlen(path), ".expected");
        bool ok = cmp_json(c, got, json_object_get(it, "expected"), path, TOL_EXACT);
        json_decref(got);
        if (!ok) return false;
    }
    return true;
}

static bool case_fn_movavg(cmp *c, const json_t *cs) {
    long long w = 0;
    size_t n = 0;
    if (!get_int(c, cs, "windowSize", "case", &w)) return false;
    if (w < 1 || w > AN_LK_MAX_WINDOW) return diff(c, "windowSize %lld unsupported", w);
    double *x = get_reals(c, cs, "input", "case", &n);
    if (x == NULL) return false;
    an_movavg ma = {.len = 0, .window_size = (int)w, .total = 0.0};
    json_t *avgs = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(avgs, jreal(an_movavg_step(&ma, x[i])));
    free(x);
    json_t *fin = json_object();
    json_object_set_new(fin, "historicalValues", jreals(ma.values, (size_t)ma.len));
    json_object_set_new(fin, "total", jreal(ma.total));
    bool ok = cmp_json(c, avgs, json_object_get(cs, "expectedAverages"),
                       "expectedAverages", TOL_REL9) &&
              cmp_json(c, fin, json_object_get(cs, "expectedFinal"), "expectedFinal",
                       TOL_REL9);
    json_decref(avgs);
    json_decref(fin);
    return ok;
}

static bool run_case(cmp *c, file_ctx *fc, const json_t *cs) {
    const char *type = json_string_value(json_object_get(cs, "type"));
    if (type == NULL) return diff(c, "no \"type\"");
    if (!strcmp(type, "estimate")) return case_estimate(c, fc, cs);
    if (!strcmp(type, "stream")) return case_stream(c, fc, cs);
    if (!strcmp(type, "class")) return case_class(c, fc, cs);
    if (!strcmp(type, "helper")) return case_helper(c, fc, cs);
    if (!strcmp(type, "fn_normalProbability"))
        return case_fn_tail(c, cs, AN_VARIANT_HTMENGINE);
    if (!strcmp(type, "fn_tailProbability")) return case_fn_tail(c, cs, AN_VARIANT_NUPIC10);
    if (!strcmp(type, "fn_normalProbabilityTable")) return case_fn_qtable(c, cs);
    if (!strcmp(type, "fn_estimateNormal")) return case_fn_estnormal(c, cs);
    if (!strcmp(type, "fn_filterLikelihoods")) return case_fn_filter(c, cs);
    if (!strcmp(type, "fn_computeLogLikelihood")) return case_fn_loglik(c, cs);
    if (!strcmp(type, "fn_calcSkipRecords")) return case_fn_skip(c, cs);
    if (!strcmp(type, "fn_movingAverage")) return case_fn_movavg(c, cs);
    return diff(c, "unknown case type \"%s\"", type);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct totals {
    long passed, failed;
} totals;

static void report(const char *file, const char *id, const char *msg, totals *t) {
    printf("FAIL %s %s: %s\n", file, id, msg);
    fflush(stdout);
    t->failed++;
}

/* The nupic the vectors were made with, against the --variant chosen. */
static void check_provenance(const char *path, const json_t *header, an_variant v) {
    const json_t *nupic = json_object_get(json_object_get(header, "provenance"), "nupic");
    const char *tag = json_string_value(json_object_get(nupic, "tag"));
    bool is034 = tag != NULL && strcmp(tag, "0.3.4") == 0;
    if (is034 && v != AN_VARIANT_HTMENGINE)
        fprintf(stderr, "warning: %s was made with nupic 0.3.4 (htmengine vectors) "
                        "but --variant is %s\n", path, an_variant_name(v));
    else if (!is034 && v == AN_VARIANT_HTMENGINE)
        fprintf(stderr, "warning: %s was not made with nupic 0.3.4 (tag %s) but "
                        "--variant is htmengine\n", path, tag ? tag : "absent");
}

static void run_file(const char *path, an_variant v, totals *t) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        char msg[512];
        snprintf(msg, sizeof msg, "cannot open: %s", strerror(errno));
        report(path, "-", msg, t);
        return;
    }
    file_ctx fc = {.path = path};
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(fc.dir, sizeof fc.dir, "%.*s", (int)(slash - path + 1), path);

    char *line = NULL, msg[1024];
    size_t cap = 0, lineno = 0;
    ssize_t len;
    json_t *header = NULL, *seen = json_object();
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)len, 0, &jerr);
        if (j == NULL) {
            snprintf(msg, sizeof msg, "line %zu: bad JSON: %s", lineno, jerr.text);
            report(path, "-", msg, t);
            continue;
        }
        if (header == NULL) {
            const char *kind = json_string_value(json_object_get(j, "kind"));
            const char *fmt = json_string_value(json_object_get(j, "format"));
            if (!kind || strcmp(kind, "header") || !fmt || strcmp(fmt, "likref-v1")) {
                report(path, "-", "line 1 is not a likref-v1 header", t);
                json_decref(j);
                break;
            }
            header = j;
            fc.header = header;
            check_provenance(path, header, v);
            continue;
        }
        const char *id = json_string_value(json_object_get(j, "id"));
        char idbuf[64];
        if (id == NULL) {
            snprintf(idbuf, sizeof idbuf, "line-%zu", lineno);
            id = idbuf;
        }
        cmp c = {.variant = v};
        if (run_case(&c, &fc, j)) {
            t->passed++;
        } else {
            report(path, id, c.msg, t);
        }
        json_object_set_new(seen, id, json_true());
        json_decref(j);
    }
    if (ferror(f)) report(path, "-", "read error", t);
    if (header == NULL && lineno == 0) report(path, "-", "empty file", t);

    /* A truncated file must not pass: every case the header lists must
     * have been run. */
    const json_t *ids = json_object_get(header, "cases");
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const char *id = json_string_value(json_array_get(ids, i));
        if (id && !json_object_get(seen, id))
            report(path, id, "listed in the header but not in the file", t);
    }
    free(line);
    fclose(f);
    free(fc.in.rows);
    json_decref(seen);
    json_decref(header);
}

static void usage(void) {
    fprintf(stderr, "usage: likelihood_vectors [--variant htmengine|nupic-1.0] "
                    "[--exact] FILE...\n");
    exit(2);
}

int main(int argc, char **argv) {
    an_variant v = AN_VARIANT_HTMENGINE;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--variant") == 0 && i + 1 < argc) {
            if (an_variant_parse(argv[++i], &v) != AN_OK) {
                fprintf(stderr, "unknown variant: %s\n", argv[i]);
                usage();
            }
        } else if (strcmp(argv[i], "--exact") == 0) {
            g_exact = true;
        } else if (strncmp(argv[i], "--variant=", 10) == 0) {
            if (an_variant_parse(argv[i] + 10, &v) != AN_OK) {
                fprintf(stderr, "unknown variant: %s\n", argv[i] + 10);
                usage();
            }
        } else {
            usage();
        }
    }
    if (i >= argc) usage();
    totals t = {0, 0};
    for (; i < argc; i++) run_file(argv[i], v, &t);
    printf("%ld passed, %ld failed\n", t.passed, t.failed);
    /* a run that checked nothing (empty or header-only files) fails too */
    return (t.failed || t.passed == 0) ? 1 : 0;
}
