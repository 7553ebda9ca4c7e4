/*
 * retention_watch.c: the slow second consumer group and the memory sampler
 * of ops/retention-run.sh (built there against a Release libanomaly.a).
 *
 *   retention_watch --stream S --group G --prefix P --metrics M --total N
 *                   [--lag-high H] [--lag-low L] [--sample-ms T]
 *                   [--service-group anomalyd] [--output O]
 *
 * The group G (created by the caller from "0") is deliberately slow: it
 * reads nothing while fewer than H entries wait for it, then reads (pages of
 * 1000) until fewer than L wait, so it always holds L..H entries back from
 * trimming. Every entry it reads must be intact: a payload (not a trimmed
 * hole), a model field P<5-digit index> with index < M, and a batch of one
 * inference result whose rowid is the next one of that metric (the producer,
 * bench_load produce --order rr, sends rows 1, 2, ... per metric in stream
 * order). Each page is XACKed after its check.
 *
 * Every T ms it prints one sample line (key=value): Redis used_memory, the
 * input stream's length and MEMORY USAGE, the output's, the lag of the
 * service group and of G (entries-added minus what each has acked). Once G
 * has read N entries it goes on sampling until the service group has acked
 * all N too (one last sample then), and prints
 *   done verified=N holes=0 mismatches=0
 * exiting 0 only when every one of the N entries was intact.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "an_clock.h"
#include "an_codec.h"
#include "an_streams.h"

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "retention_watch: %s: %s\n", what, msg);
    exit(2);
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    if (!def)
        die(name, "required");
    return def;
}

static long long num(int argc, char **argv, const char *name, const char *def)
{
    char *end;
    const char *s = opt(argc, argv, name, def);
    long long v = strtoll(s, &end, 10);
    if (*end || v < 0)
        die(name, "not a whole number >= 0");
    return v;
}

/* An integer from a raw reply (INFO field, MEMORY USAGE); -1 if absent. */
static long long cmd_int(an_redis *r, const char *fmt, const char *a)
{
    redisReply *rep = redisCommand(an_redis_ctx(r), fmt, a);
    long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return v;
}

static long long used_memory(an_redis *r)
{
    redisReply *rep = redisCommand(an_redis_ctx(r), "INFO memory");
    long long v = -1;
    const char *p = rep && rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "used_memory:")
                                                            : NULL;
    if (p)
        v = atoll(p + strlen("used_memory:"));
    freeReplyObject(rep);
    return v;
}

/* entries-added of stream, and the acked count (entries-read - pending) of
 * group (-1 when unknown). */
static void progress(an_redis *r, const char *stream, const char *group, long long *added,
                     long long *acked)
{
    an_stream_info si;
    *added = an_xinfo_stream(r, stream, &si) == 0 ? si.entries_added : 0;
    *acked = -1;
    an_group_info *g = NULL;
    size_t n = 0;
    if (an_xinfo_groups(r, stream, &g, &n) == 0)
        for (size_t i = 0; i < n; i++)
            if (!strcmp(g[i].name, group) && g[i].entries_read >= 0)
                *acked = g[i].entries_read - g[i].pending;
    an_group_info_free(g, n);
}

/* One sample line: memory and the streams' sizes, and the two lags. */
static void sample(an_redis *r, const char *stream, const char *output, int64_t t_ms,
                   long long lag_service, long long lag_slow)
{
    printf("sample t_s=%.1f used_memory=%lld input_len=%lld input_bytes=%lld "
           "output_len=%lld output_bytes=%lld lag_service=%lld lag_slow=%lld\n",
           (double)t_ms / 1000.0, used_memory(r), cmd_int(r, "XLEN %s", stream),
           cmd_int(r, "MEMORY USAGE %s", stream), *output ? cmd_int(r, "XLEN %s", output) : -1,
           *output ? cmd_int(r, "MEMORY USAGE %s", output) : -1, lag_service, lag_slow);
    fflush(stdout);
}

typedef struct check {
    const char *prefix;
    long metrics;
    int64_t *next_row; /* per metric: the rowid expected next */
    long long verified, holes, mismatches;
    an_codec_limits limits;
} check;

/* One entry read by the slow group: intact and in order? */
static void check_entry(check *c, const an_entry *e)
{
    if (e->nil) {
        c->holes++;
        fprintf(stderr, "HOLE: entry %s was trimmed before the slow group read it\n", e->id);
        return;
    }
    const an_field *m = an_entry_field(e, "model");
    size_t pl = strlen(c->prefix);
    long idx = -1;
    if (m && m->value_len == pl + 5 && !memcmp(m->value, c->prefix, pl))
        idx = strtol(m->value + pl, NULL, 10);
    an_batch *b = NULL;
    char why[256] = "";
    bool ok = idx >= 0 && idx < c->metrics &&
              an_batch_decode(e->fields, e->nfields, &c->limits, &b, why, sizeof why) == 0 &&
              b->n == 1 && b->results[0].kind == AN_RES_INFERENCE &&
              b->results[0].u.inf.rowid == c->next_row[idx];
    if (ok) {
        c->next_row[idx]++;
        c->verified++;
    } else {
        c->mismatches++;
        if (c->mismatches <= 10)
            fprintf(stderr, "MISMATCH: entry %s (model %.*s) is not the expected next row %" PRId64
                    " of its metric %s\n", e->id, m ? (int)m->value_len : 1, m ? m->value : "?",
                    idx >= 0 && idx < c->metrics ? c->next_row[idx] : -1, why);
    }
    an_batch_free(b);
}

int main(int argc, char **argv)
{
    const char *stream = opt(argc, argv, "--stream", NULL);
    const char *group = opt(argc, argv, "--group", NULL);
    const char *svc = opt(argc, argv, "--service-group", "anomalyd");
    const char *output = opt(argc, argv, "--output", "");
    check c = {.prefix = opt(argc, argv, "--prefix", NULL),
               .metrics = (long)num(argc, argv, "--metrics", NULL)};
    long long total = num(argc, argv, "--total", NULL);
    long long high = num(argc, argv, "--lag-high", "50000");
    long long low = num(argc, argv, "--lag-low", "20000");
    long long every = num(argc, argv, "--sample-ms", "5000");
    const char *url = getenv("ANOMALYD_REDIS_URL");
    if (!url)
        die("ANOMALYD_REDIS_URL", "not set (eval \"$(ops/stack.sh env)\")");
    c.limits = an_codec_limits_default();
    c.next_row = calloc((size_t)c.metrics, sizeof *c.next_row);
    if (!c.next_row)
        die("calloc", "out of memory");
    for (long i = 0; i < c.metrics; i++)
        c.next_row[i] = 1;
    an_redis *r = NULL;
    char err[256];
    if (an_redis_connect(url, NULL, &r, err, sizeof err))
        die("connect", err);

    int64_t t0 = an_monotonic_ms(), next_sample = t0;
    bool reading = false;
    long long read = 0;
    while (read < total) {
        long long added, acked, svc_acked;
        progress(r, stream, group, &added, &acked);
        progress(r, stream, svc, &added, &svc_acked);
        long long waiting = added - read;
        int64_t now = an_monotonic_ms();
        if (now >= next_sample) {
            sample(r, stream, output, now - t0, svc_acked >= 0 ? added - svc_acked : -1, waiting);
            next_sample = now + every;
        }
        /* slow on purpose: wait for H entries, then read down to L (all of
         * them once the producer is done: added == total) */
        if (!reading && (waiting >= high || added >= total))
            reading = true;
        if (reading && waiting <= low && added < total)
            reading = false;
        if (!reading || waiting == 0) {
            an_clock_sleep_ms(NULL, 100);
            continue;
        }
        an_entry_list l = {0};
        if (an_read_group(r, stream, group, "slow", ">", 1000, -1, &l))
            die("XREADGROUP", an_redis_errstr(r));
        if (l.n == 0 && added >= total) {
            /* everything was added, nothing is left to deliver: entries
             * that never reached the group are missing */
            fprintf(stderr, "MISSING: %lld entries were added but never delivered\n",
                    total - read);
            c.holes += total - read;
            break;
        }
        const char **ids = malloc((l.n ? l.n : 1) * sizeof *ids);
        if (!ids)
            die("malloc", "out of memory");
        for (size_t i = 0; i < l.n; i++) {
            check_entry(&c, &l.v[i]);
            ids[i] = l.v[i].id;
        }
        if (l.n && an_xack(r, stream, group, ids, l.n, NULL))
            die("XACK", an_redis_errstr(r));
        read += (long long)l.n;
        free(ids);
        an_entry_list_free(&l);
    }
    /* the service's backlog drains: keep sampling until it acked everything */
    for (;;) {
        long long added, svc_acked;
        progress(r, stream, svc, &added, &svc_acked);
        int64_t now = an_monotonic_ms();
        bool drained = svc_acked >= total;
        if (now >= next_sample || drained) {
            sample(r, stream, output, now - t0, svc_acked >= 0 ? added - svc_acked : -1,
                   added - read);
            next_sample = now + every;
        }
        if (drained)
            break;
        an_clock_sleep_ms(NULL, 200);
    }
    printf("done verified=%lld holes=%lld mismatches=%lld\n", c.verified, c.holes,
           c.mismatches);
    an_redis_free(r);
    free(c.next_row);
    return c.verified == total && c.holes == 0 && c.mismatches == 0 ? 0 : 1;
}
