/*
 * bench_likelihood.c: micro-benchmarks of the likelihood hot paths, plus the
 * two helpers ops/bench-likelihood.sh needs (a CSV generator and a
 * wall-time/peak-RSS wrapper that works without /usr/bin/time).
 *
 * Built by ops/bench-likelihood.sh against a Release libanomaly.a:
 *   cc -O2 -Iinclude ops/bench/bench_likelihood.c build-bench/libanomaly.a ...
 *
 * Modes:
 *   bench_likelihood micro NAB.inputs.csv
 *       an_update_one ns/row (online update over the file's real raw
 *       scores, params estimated on its first 8640 rows), an_estimate ms
 *       per call over 8640 samples, and the helper in-process (batch size 1)
 *       in rows/s.
 *   bench_likelihood gen OUT.csv NROWS IN.csv...
 *       writes NROWS rows cycling through the inputs' value/raw_score
 *       columns, with timestamps every 5 minutes from 2010-01-01 00:00:00.
 *   bench_likelihood run OUTFILE -- CMD ARGS...
 *       runs CMD with stdout to OUTFILE, prints "wall_s=... maxrss_kb=...
 *       status=..." (wait4's rusage; ru_maxrss is the peak RSS in KiB).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "an_csv.h"
#include "an_helper.h"
#include "an_likelihood.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static an_csv *load(const char *path)
{
    an_csv *c;
    char err[512];
    if (an_csv_load(path, &c, err, sizeof err) != 0) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    return c;
}

/* ---- micro ---------------------------------------------------------------- */

typedef struct memsrc {
    const an_sample *s;
    size_t done;
} memsrc;

static int ms_count(void *ctx, int64_t *count, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    *count = (int64_t)((memsrc *)ctx)->done;
    return 0;
}

static int ms_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                   size_t errlen)
{
    (void)err;
    (void)errlen;
    memsrc *m = ctx;
    size_t k = n < m->done ? n : m->done;
    memcpy(out, m->s + (m->done - k), k * sizeof *out);
    *got = k;
    return 0;
}

enum { REPS = 7 }; /* timed runs per measurement; the median is reported */

/* Online update: REPS runs of ~20M updates of variant var from p0 over the
 * n real raw scores (each result added to *sink); prints the timing. */
static void micro_update(an_variant var, const an_lk_params *p0, const double *raws, size_t n,
                         double *sink)
{
    const size_t per = 2000 * n;
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        an_lk_params p = *p0;
        double t0 = now();
        size_t k = 0;
        for (size_t i = 0; i < per; i++) {
            *sink += an_update_one(var, &p, raws[k], NULL);
            if (++k == n)
                k = 0;
        }
        t[r] = (now() - t0) * 1e9 / (double)per;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    printf("an_update_one[%s]: %.1f ns/row (median of %d x %zu rows; min %.1f, max %.1f)"
           " [sink %g]\n",
           an_variant_name(var), t[REPS / 2], REPS, per, t[0], t[REPS - 1], *sink);
}

/* an_estimate of variant var over 8640 samples, sliding through the n
 * records, with a caller scratch buffer (as the helper calls it); each mean
 * added to *sink; prints the timing. */
static void micro_estimate(an_variant var, const an_sample *recs, size_t n, double *sink)
{
    double t[REPS];
    double *avg = malloc(8640 * sizeof *avg);
    const int calls = 400;
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
        for (int i = 0; i < calls; i++) {
            size_t off = (size_t)i * 4 % (n - 8640 + 1);
            an_lk_params p;
            an_estimate(var, recs + off, 8640, 10, 288, &p, NULL, avg, NULL);
            *sink += p.dist.mean;
        }
        t[r] = (now() - t0) * 1e3 / calls;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    printf("an_estimate[%s] 8640 samples: %.4f ms/call (median of %d x %d; min %.4f)"
           " [sink %g]\n",
           an_variant_name(var), t[REPS / 2], REPS, calls, t[0], *sink);
    free(avg);
}

/* The helper in-process, 1-row batches (the offline tool's default), over
 * the n records repeated to 200000 rows, with and without the exclusive
 * source; prints rows/s. 0, or 1 on a helper failure (printed). */
static int micro_helper(const an_sample *recs, size_t n)
{
    size_t total = 200000;
    an_sample *big = malloc(total * sizeof *big);
    for (size_t i = 0; i < total; i++) {
        big[i] = recs[i % n];
        big[i].rowid = (int64_t)i + 1;
    }
    an_helper_config cfg = an_helper_config_default();
    for (int excl = 0; excl < 2; excl++) {
        an_helper *h = an_helper_new(&cfg, NULL, NULL);
        an_helper_set_exclusive_source(h, excl);
        an_helper_state st;
        memset(&st, 0, sizeof st);
        memsrc ms = {big, 0};
        an_sample_source src = {&ms, ms_count, ms_tail};
        char err[256];
        double t0 = now();
        for (size_t i = 0; i < total; i++) {
            an_row row = {.rowid = big[i].rowid, .value = big[i].value, .raw = big[i].raw};
            ms.done = i;
            if (an_helper_update(h, &src, &st, &row, 1, err, sizeof err) != 0) {
                fprintf(stderr, "bench: helper: %s\n", err);
                return 1;
            }
        }
        double dt = now() - t0;
        printf("helper[htmengine] batch size 1%s: %.0f rows/s (%zu rows in %.3f s)\n",
               excl ? ", exclusive source" : " (tail read per refresh, as the service)",
               (double)total / dt, total, dt);
        an_helper_free(h);
    }
    free(big);
    return 0;
}

static int micro(const char *path)
{
    an_csv *c = load(path);
    size_t n = an_csv_rows(c);
    if (n < 8640) {
        fprintf(stderr, "bench: %s has %zu rows, need >= 8640\n", path, n);
        return 1;
    }
    an_sample *recs = malloc(n * sizeof *recs);
    for (size_t i = 0; i < n; i++) {
        recs[i].rowid = (int64_t)i + 1;
        recs[i].value = an_csv_values(c)[i];
        recs[i].raw = an_csv_raws(c)[i];
    }
    const double *raws = an_csv_raws(c);

    for (int v = 0; v < 2; v++) {
        an_variant var = v ? AN_VARIANT_NUPIC10 : AN_VARIANT_HTMENGINE;
        an_lk_params p0;
        if (an_estimate(var, recs, 8640, 10, 288, &p0, NULL, NULL, NULL) != 0) {
            fprintf(stderr, "bench: an_estimate failed\n");
            return 1;
        }
        double sink = 0.0;
        micro_update(var, &p0, raws, n, &sink);
        micro_estimate(var, recs, n, &sink);
    }
    if (micro_helper(recs, n))
        return 1;
    free(recs);
    an_csv_free(c);
    return 0;
}

/* ---- gen ------------------------------------------------------------------ */

/* The data lines of a "timestamp,value,raw_score" file with the timestamp
 * cut off: "value,raw_score" verbatim, so the generated file has NAB's own
 * number texts. */
typedef struct lines {
    char **v;
    size_t n;
} lines;

static lines read_tails(const char *path)
{
    an_csv *check = load(path); /* validates the file */
    an_csv_free(check);
    FILE *fp = fopen(path, "r");
    lines l = {NULL, 0};
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    bool header = true;
    while ((len = getline(&line, &lcap, fp)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (header) {
            if (strcmp(line, "timestamp,value,raw_score") != 0) {
                fprintf(stderr, "bench: %s: header is not timestamp,value,raw_score\n", path);
                exit(1);
            }
            header = false;
            continue;
        }
        char *comma = strchr(line, ',');
        if (!comma)
            continue;
        if (l.n == cap) {
            cap = cap ? cap * 2 : 4096;
            l.v = realloc(l.v, cap * sizeof *l.v);
        }
        l.v[l.n++] = strdup(comma + 1);
    }
    free(line);
    fclose(fp);
    return l;
}

static int gen(const char *out, long nrows, int nin, char **in)
{
    lines *src = calloc((size_t)nin, sizeof *src);
    for (int i = 0; i < nin; i++)
        src[i] = read_tails(in[i]);
    FILE *fp = fopen(out, "w");
    if (!fp) {
        fprintf(stderr, "bench: %s: %s\n", out, strerror(errno));
        return 1;
    }
    static char buf[1 << 20];
    setvbuf(fp, buf, _IOFBF, sizeof buf);
    fputs("timestamp,value,raw_score\n", fp);
    time_t t = 1262304000; /* 2010-01-01 00:00:00 UTC */
    int f = 0;
    size_t r = 0;
    for (long i = 0; i < nrows; i++) {
        if (r == src[f].n) {
            r = 0;
            f = (f + 1) % nin;
        }
        struct tm tm;
        gmtime_r(&t, &tm);
        char ts[32];
        strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
        fprintf(fp, "%s,%s\n", ts, src[f].v[r]);
        t += 300;
        r++;
    }
    if (fclose(fp) != 0) {
        fprintf(stderr, "bench: %s: write error\n", out);
        return 1;
    }
    for (int i = 0; i < nin; i++) {
        for (size_t k = 0; k < src[i].n; k++)
            free(src[i].v[k]);
        free(src[i].v);
    }
    free(src);
    return 0;
}

/* ---- run ------------------------------------------------------------------ */

static int run(const char *outfile, char **cmd)
{
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench: fork");
        return 1;
    }
    if (pid == 0) {
        int fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0) {
            perror("bench: open output");
            _exit(127);
        }
        execvp(cmd[0], cmd);
        perror("bench: exec");
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("bench: wait4");
        return 1;
    }
    double wall = now() - t0;
    printf("wall_s=%.3f user_s=%.3f sys_s=%.3f maxrss_kb=%ld status=%d\n", wall,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6,
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6, ru.ru_maxrss,
           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "micro"))
        return micro(argv[2]);
    if (argc >= 5 && !strcmp(argv[1], "gen"))
        return gen(argv[2], atol(argv[3]), argc - 4, argv + 4);
    if (argc >= 5 && !strcmp(argv[1], "run") && !strcmp(argv[3], "--"))
        return run(argv[2], argv + 4);
    fprintf(stderr,
            "usage: bench_likelihood micro NAB.inputs.csv\n"
            "       bench_likelihood gen OUT.csv NROWS IN.csv...\n"
            "       bench_likelihood run OUTFILE -- CMD ARGS...\n");
    return 2;
}
