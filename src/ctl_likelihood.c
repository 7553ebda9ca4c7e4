/*
 * ctl_likelihood.c: anomalyctl likelihood -- offline scoring of a NAB CSV.
 *
 *   anomalyctl likelihood --csv FILE [--batch-size N | --schedule N,N,...]
 *                         [--variant htmengine|nupic-1.0] [--config FILE]
 *
 * The CSV's rows get rowids 1, 2, ... and are fed to the likelihood helper
 * in batches exactly as the Anomaly Service would feed them: the rows of
 * earlier batches are the "processed rows" of an in-memory sample source,
 * and the helper state (anomalyLikelihoodParams) is carried from batch to
 * batch in memory. Batches have N rows (default 1), or follow --schedule:
 * its sizes in order, the last one repeating until the file ends.
 *
 * Output (stdout): the header
 *   rowid,timestamp,value,raw_score,anomaly_score,display_value
 * and one line per row. Doubles are printed with an_fmt_double (shortest
 * round-trip text); anomaly_score is 0 for unscored rows; display_value is
 * an_display_value(anomaly_score, true).
 *
 * --config FILE reads [anomaly_likelihood] variant, statistics_min_sample_size,
 * statistics_refresh_rate and statistics_sample_size through an_config_load
 * (so ANOMALYD_ANOMALY_LIKELIHOOD_* environment overrides apply too);
 * --variant, given as well, wins over the file. Without --config the
 * defaults are used and the environment is not read.
 *
 * Exit status: 0 ok; 1 data error (unreadable or malformed CSV, helper
 * failure, write error); 2 usage error.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_config.h"
#include "an_csv.h"
#include "an_helper.h"
#include "an_json_out.h"
#include "an_likelihood.h"
#include "ctl.h"

#define MAX_BATCH 100000000L /* a batch larger than any file is clamped anyway */
#define OUTBUF (1u << 20)

static const char usage_text[] =
    "usage: anomalyctl likelihood --csv FILE [--batch-size N | --schedule N,N,...]\n"
    "                             [--variant htmengine|nupic-1.0] [--config FILE]\n"
    "  --csv FILE        NAB CSV with columns timestamp, value, raw_score ('-': stdin)\n"
    "  --batch-size N    rows per helper batch (default 1)\n"
    "  --schedule LIST   batch sizes in order; the last one repeats\n"
    "  --variant V       likelihood variant (default htmengine)\n"
    "  --config FILE     read [anomaly_likelihood] from an anomalyd config file\n";

static int usage_error(const char *fmt, const char *arg)
{
    fputs("anomalyctl likelihood: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    fputs(usage_text, stderr);
    return 2;
}

/* A batch size: decimal digits only, 1..MAX_BATCH. */
static bool parse_size(const char *s, size_t len, size_t *out)
{
    if (len == 0 || len > 10)
        return false;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > MAX_BATCH)
        return false;
    *out = (size_t)v;
    return true;
}

/* "N,N,..." -> a malloc'd list. Returns the count, 0 on a bad list, -1 on
 * ENOMEM. */
static long parse_schedule(const char *s, size_t **out)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    size_t *v = malloc(n * sizeof *v);
    if (!v)
        return -1;
    size_t k = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!parse_size(p, len, &v[k])) {
            free(v);
            return 0;
        }
        k++;
        if (!comma)
            break;
        p = comma + 1;
    }
    *out = v;
    return (long)k;
}

/* ---- the in-memory sample source -------------------------------------- */

/* The processed rows are CSV rows [0, done): rowid i + 1. */
typedef struct mem_source {
    const an_csv *csv;
    size_t done;
} mem_source;

static int mem_count(void *ctx, int64_t *count, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    const mem_source *m = ctx;
    *count = (int64_t)m->done;
    return 0;
}

static int mem_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                    size_t errlen)
{
    (void)err;
    (void)errlen;
    const mem_source *m = ctx;
    size_t k = n < m->done ? n : m->done;
    size_t from = m->done - k;
    const double *values = an_csv_values(m->csv);
    const double *raws = an_csv_raws(m->csv);
    for (size_t i = 0; i < k; i++) {
        out[i].rowid = (int64_t)(from + i + 1);
        out[i].value = values[from + i];
        out[i].raw = raws[from + i];
    }
    *got = k;
    return 0;
}

/* ---- output ------------------------------------------------------------ */

typedef struct outbuf {
    char *buf;
    size_t len;
    FILE *fp;
    bool failed;
    int err; /* errno of the failed write */
} outbuf;

static void out_flush(outbuf *o)
{
    if (o->len && !o->failed && fwrite(o->buf, 1, o->len, o->fp) != o->len) {
        o->failed = true;
        o->err = errno;
    }
    o->len = 0;
}

/* Room for one line: a row is at most ~20 + ts + 4 * 32 bytes. */
static char *out_reserve(outbuf *o, size_t need)
{
    if (o->len + need > OUTBUF)
        out_flush(o);
    return o->buf + o->len;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

static char *put_double(char *p, double d)
{
    char tmp[40];
    an_fmt_double(tmp, sizeof tmp, d);
    size_t n = strlen(tmp);
    memcpy(p, tmp, n);
    return p + n;
}

static void put_row(outbuf *o, const an_csv *csv, size_t i, const an_row *r)
{
    size_t tslen;
    const char *ts = an_csv_timestamp(csv, i, &tslen);
    if (tslen + 256 > OUTBUF) { /* absurd timestamp: unbuffered path */
        out_flush(o);
        fprintf(o->fp, "%lld,", (long long)r->rowid);
        if (fwrite(ts, 1, tslen, o->fp) != tslen && !o->failed) {
            o->failed = true;
            o->err = errno;
        }
        char b[4][40];
        fprintf(o->fp, ",%s,%s,%s,%lld\n", an_fmt_double(b[0], 40, r->value),
                an_fmt_double(b[1], 40, r->raw),
                r->scored ? an_fmt_double(b[2], 40, r->anomaly_score) : "0",
                (long long)an_display_value(r->anomaly_score, true));
        return;
    }
    char *p = out_reserve(o, tslen + 256);
    char *start = p;
    p = put_i64(p, r->rowid);
    *p++ = ',';
    memcpy(p, ts, tslen);
    p += tslen;
    *p++ = ',';
    p = put_double(p, r->value);
    *p++ = ',';
    p = put_double(p, r->raw);
    *p++ = ',';
    if (r->scored)
        p = put_double(p, r->anomaly_score);
    else
        *p++ = '0';
    *p++ = ',';
    p = put_i64(p, an_display_value(r->anomaly_score, true));
    *p++ = '\n';
    o->len += (size_t)(p - start);
}

/* ---- the command ------------------------------------------------------- */

/* The command line of anomalyctl likelihood; NULL: not given. */
typedef struct lk_args {
    const char *csv_path, *variant_name, *config_path;
    const char *batch_arg, *schedule_arg;
    bool help; /* -h/--help: the usage was printed on stdout */
} lk_args;

/* Fills a from argv. 0 (a->help: stop with status 0), or 2 (usage error,
 * printed). */
static int parse_args(int argc, char **argv, lk_args *a)
{
    *a = (lk_args){0};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **slot = NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(usage_text, stdout);
            a->help = true;
            return 0;
        } else if (!strcmp(o, "--csv")) {
            slot = &a->csv_path;
        } else if (!strcmp(o, "--batch-size")) {
            slot = &a->batch_arg;
        } else if (!strcmp(o, "--schedule")) {
            slot = &a->schedule_arg;
        } else if (!strcmp(o, "--variant")) {
            slot = &a->variant_name;
        } else if (!strcmp(o, "--config")) {
            slot = &a->config_path;
        } else {
            return usage_error("unknown argument '%s'", o);
        }
        if (i + 1 >= argc)
            return usage_error("%s needs a value", o);
        if (*slot)
            return usage_error("%s given twice", o);
        *slot = argv[++i];
    }
    if (!a->csv_path)
        return usage_error("%s", "--csv FILE is required");
    if (a->batch_arg && a->schedule_arg)
        return usage_error("%s", "--batch-size and --schedule exclude each other");
    return 0;
}

/* The batch sizes: v[0..n), the last one repeating. v points at one (a
 * single size) or at owned (--schedule, malloc'd; the caller frees owned). */
typedef struct schedule {
    size_t one;
    size_t *v, n;
    size_t *owned;
} schedule;

/* s from --batch-size or --schedule (default: batches of 1). 0, 1 (out of
 * memory, printed) or 2 (usage error, printed). */
static int parse_sched(const lk_args *a, schedule *s)
{
    *s = (schedule){.one = 1, .n = 1};
    s->v = &s->one;
    if (a->batch_arg && !parse_size(a->batch_arg, strlen(a->batch_arg), &s->one))
        return usage_error("--batch-size: '%s' is not an integer from 1 to 100000000",
                           a->batch_arg);
    if (a->schedule_arg) {
        long k = parse_schedule(a->schedule_arg, &s->owned);
        if (k < 0) {
            fputs("anomalyctl likelihood: out of memory\n", stderr);
            return 1;
        }
        if (k == 0)
            return usage_error("--schedule: '%s' is not a comma-separated list of "
                               "integers from 1 to 100000000",
                               a->schedule_arg);
        s->v = s->owned;
        s->n = (size_t)k;
    }
    return 0;
}

/* The helper's configuration: the defaults, or [anomaly_likelihood] of
 * --config, then --variant. 0, 1 (bad configuration, printed) or 2 (usage
 * error, printed). */
static int helper_config(const lk_args *a, an_helper_config *hcfg)
{
    char err[512];
    *hcfg = an_helper_config_default();
    if (a->config_path) {
        an_config cfg;
        int crc = an_config_load(&cfg, a->config_path, err, sizeof err);
        if (crc != 0) {
            fprintf(stderr, "anomalyctl likelihood: %s\n", err);
            an_config_free(&cfg);
            return 1;
        }
        *hcfg = an_config_helper(&cfg);
        an_config_free(&cfg);
    }
    if (a->variant_name && an_variant_parse(a->variant_name, &hcfg->variant) != 0)
        return usage_error("--variant: unknown variant '%s' (htmengine or nupic-1.0)",
                           a->variant_name);
    if (an_helper_config_validate(hcfg, err, sizeof err) != 0) {
        fprintf(stderr, "anomalyctl likelihood: %s\n", err);
        return 1;
    }
    return 0;
}

/* The largest batch of s that the n rows of the file can fill (at least 1). */
static size_t max_batch(const schedule *s, size_t n)
{
    size_t maxb = 1;
    for (size_t k = 0; k < s->n; k++)
        if (s->v[k] > maxb)
            maxb = s->v[k];
    if (maxb > n)
        maxb = n ? n : 1;
    return maxb;
}

/* Feeds the rows of csv to h in the batches of s, through rows (room for
 * max_batch rows), and writes each scored row to o. Stops early when o
 * failed (the caller reports it). 0, or -1 on a helper failure (printed). */
static int score_rows(an_helper *h, const an_csv *csv, const schedule *s, an_row *rows,
                      outbuf *o)
{
    char err[512];
    mem_source ms = {.csv = csv, .done = 0};
    const an_sample_source src = {.ctx = &ms, .processed_count = mem_count,
                                  .tail = mem_tail};
    an_helper_state state;
    memset(&state, 0, sizeof state);
    const double *values = an_csv_values(csv);
    const double *raws = an_csv_raws(csv);
    const size_t n = an_csv_rows(csv);
    size_t next = 0, k = 0;
    while (next < n) {
        size_t m = s->v[k < s->n ? k : s->n - 1];
        k++;
        if (m > n - next)
            m = n - next;
        for (size_t j = 0; j < m; j++) {
            rows[j].rowid = (int64_t)(next + j + 1);
            rows[j].value = values[next + j];
            rows[j].raw = raws[next + j];
        }
        ms.done = next;
        int rc = an_helper_update(h, &src, &state, rows, m, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "anomalyctl likelihood: rows %zu..%zu: %s\n", next + 1,
                    next + m, err);
            return -1;
        }
        for (size_t j = 0; j < m; j++)
            put_row(o, csv, next + j, &rows[j]);
        next += m;
        if (o->failed)
            break; /* reported by the caller */
    }
    return 0;
}

/* Flushes o and stdout. 0, or -1 when a write failed (printed). */
static int finish_output(outbuf *o)
{
    out_flush(o);
    if (!o->failed && (fflush(stdout) != 0 || ferror(stdout))) {
        o->failed = true;
        o->err = errno;
    }
    if (o->failed) {
        fprintf(stderr, "anomalyctl likelihood: write error: %s\n",
                o->err ? strerror(o->err) : "unknown");
        return -1;
    }
    return 0;
}

int ctl_likelihood(int argc, char **argv)
{
    lk_args a;
    schedule sched;
    an_helper_config hcfg;
    char err[512];
    an_csv *csv = NULL;
    an_helper *h = NULL;
    an_row *rows = NULL;
    outbuf o = {.buf = NULL, .len = 0, .fp = stdout, .failed = false, .err = 0};
    int status = parse_args(argc, argv, &a);
    if (status || a.help)
        return status;
    if ((status = parse_sched(&a, &sched)) || (status = helper_config(&a, &hcfg)))
        goto done;

    status = 1;
    if (an_csv_load(a.csv_path, &csv, err, sizeof err) != 0) {
        fprintf(stderr, "anomalyctl likelihood: %s\n", err);
        goto done;
    }
    size_t maxb = max_batch(&sched, an_csv_rows(csv));
    h = an_helper_new(&hcfg, NULL, NULL);
    if (h) /* the rows of earlier batches are exactly the source's rows */
        an_helper_set_exclusive_source(h, true);
    rows = malloc(maxb * sizeof *rows);
    o.buf = malloc(OUTBUF);
    if (!h || !rows || !o.buf) {
        fputs("anomalyctl likelihood: out of memory\n", stderr);
        goto done;
    }

    static const char header[] =
        "rowid,timestamp,value,raw_score,anomaly_score,display_value\n";
    memcpy(out_reserve(&o, sizeof header), header, sizeof header - 1);
    o.len += sizeof header - 1;
    if (score_rows(h, csv, &sched, rows, &o) == 0 && finish_output(&o) == 0)
        status = 0;
done:
    free(o.buf);
    free(rows);
    an_helper_free(h);
    an_csv_free(csv);
    free(sched.owned);
    return status;
}
