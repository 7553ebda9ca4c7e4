/*
 * window_memory.c: measures what anomalyd keeps per mature metric, with the
 * real stores of the service (an_sample_window, an_state_cache), so the
 * memory figures of docs/performance.md are measured, not guessed. Run it
 * from a build WITHOUT sanitizers (their redzones inflate RSS):
 * ops/window-memory.sh does that.
 *
 *   window_memory [--metrics N] [--samples S] [--window-bytes B]
 *                 [--state-cache N] [--sample-size C]
 *
 * Defaults are the service's: 10,000 metrics, 8,640 processed samples each
 * (a window full), sample_window_bytes 256 MiB, state_cache_metrics 10,000,
 * statistics_sample_size 8,640. For each metric, as the service does for a
 * metric it has seen re-estimate: the window is put from a tail read of
 * min(S, C) samples, then 24 live rows are appended one commit at a time;
 * the state cache gets the metric's state (a full 10-value window, in a
 * realistic model_params text) and its output message head. Prints, after
 * all metrics: the windows held and the bytes charged against
 * sample_window_bytes, the state cache entries, and the process's RSS and
 * peak RSS (VmRSS, VmHWM) minus what it was before the first metric.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_codec.h"
#include "an_sample_window.h"
#include "an_state_cache.h"
#include "proc_status.h"

static long long arg_ll(int argc, char **argv, const char *name, long long def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return strtoll(argv[i + 1], NULL, 10);
    return def;
}

/* The state of a metric past its warm-up: a full moving-average window and
 * likelihood history (values of no importance, real magnitudes). */
static an_helper_state mature_state(int64_t rowid, unsigned i)
{
    an_helper_state s;
    memset(&s, 0, sizeof s);
    s.present = true;
    s.last_rowid_for_stats = rowid;
    s.params.dist.mean = 0.03 + 1e-6 * i;
    s.params.dist.variance = 0.0030196834238790738;
    s.params.dist.stdev = 0.05495164623447667;
    s.params.ma.window_size = 10;
    s.params.ma.len = 10;
    s.params.hist_len = 10;
    for (int k = 0; k < 10; k++) {
        s.params.ma.values[k] = 0.025 * (k + 1) + 1e-9 * i;
        s.params.hist[k] = 0.691462461 - 1e-7 * k;
    }
    s.params.ma.total = 1.375;
    return s;
}

int main(int argc, char **argv)
{
    long long nm = arg_ll(argc, argv, "--metrics", 10000);
    long long ns = arg_ll(argc, argv, "--samples", 8640);
    long long wbytes = arg_ll(argc, argv, "--window-bytes", 256LL << 20);
    long long ncache = arg_ll(argc, argv, "--state-cache", 10000);
    long long cap = arg_ll(argc, argv, "--sample-size", 8640);
    const int live = 24;
    if (nm < 1 || ns < 1 || wbytes < 0 || ncache < 0 || cap < 1) {
        fprintf(stderr, "window_memory: bad arguments\n");
        return 2;
    }
    an_sample *rows = malloc((size_t)(ns + live) * sizeof *rows);
    if (!rows)
        return 1;
    for (long long k = 0; k < ns + live; k++)
        rows[k] = (an_sample){.rowid = k + 1, .value = 40.0 + (double)(k % 97),
                              .raw = (double)(k % 13) / 13.0};
    long rss0 = status_kb("VmRSS"), hwm0 = status_kb("VmHWM");
    an_sample_window *sw = an_sample_window_new((size_t)wbytes, (size_t)cap);
    an_state_cache *sc = an_state_cache_new((size_t)ncache);
    if (!sw || !sc)
        return 1;
    int failures = 0;
    for (long long i = 0; i < nm; i++) {
        char uid[AN_UID_MAX + 1], name[96], params[512];
        snprintf(uid, sizeof uid, "2db92a97d4c84a6f9f5e%020lld", i);
        /* the tail read's rows (the newest min(S, C)), then live commits */
        size_t n = (size_t)(ns < cap ? ns : cap);
        if (an_sample_window_put(sw, uid, rows + (ns - (long long)n), n, ns, ns))
            failures++;
        for (int k = 0; k < live; k++)
            if (an_sample_window_has(sw, uid, ns + k))
                an_sample_window_append(sw, uid, ns + k, rows + ns + k, 1, ns + k + 1);
        /* the state cache: state, model_params text, message head */
        an_helper_state st = mature_state(ns + live, (unsigned)i);
        char *state_text = an_helper_state_text(&st, NULL);
        snprintf(name, sizeof name, "host-%05lld.cpu_percent", i);
        snprintf(params, sizeof params,
                 "{\"datasource\":\"custom\",\"metricSpec\":{\"metric\":\"%s\",\"resource\":"
                 "\"host-%05lld\",\"uid\":\"%s\",\"unit\":\"Percent\"},\"modelParams\":"
                 "{\"min\":0,\"max\":100}}", name, i, uid);
        an_state_span span;
        size_t mp_len = 0;
        char *mp = state_text ? an_model_params_merge(params, state_text, &span, &mp_len) : NULL;
        if (!mp || an_state_cache_put(sc, uid, mp, mp_len, span, &st))
            failures++;
        an_metric_info mi = {.uid = uid, .name = name, .description = NULL,
                             .resource = "host", .location = NULL, .datasource = "custom"};
        char err[256];
        size_t hlen = 0;
        const char *head;
        if (an_state_cache_msg_head(sc, uid, &mi, params, &head, &hlen, err, sizeof err))
            failures++;
        free(mp);
        free(state_text);
    }
    long rss1 = status_kb("VmRSS"), hwm1 = status_kb("VmHWM");
    size_t held = an_sample_window_size(sw);
    printf("metrics=%lld samples=%lld sample_window_bytes=%lld state_cache_metrics=%lld "
           "windows=%zu window_bytes=%zu (%.1f MiB) state_cache=%zu rss_growth_kb=%ld "
           "(%.1f MiB) peak_growth_kb=%ld (%.1f MiB) rss_kb=%ld peak_kb=%ld per_window_kb=%.1f "
           "failures=%d\n",
           nm, ns, wbytes, ncache, held, an_sample_window_bytes(sw),
           (double)an_sample_window_bytes(sw) / 1048576.0, an_state_cache_size(sc),
           rss1 - rss0, (double)(rss1 - rss0) / 1024.0, hwm1 - hwm0,
           (double)(hwm1 - hwm0) / 1024.0, rss1, hwm1,
           held ? (double)an_sample_window_bytes(sw) / 1024.0 / (double)held : 0.0, failures);
    /* the bound holds: never more bytes than allowed */
    int over = an_sample_window_bytes(sw) > (size_t)wbytes;
    if (over)
        printf("window_memory: %zu bytes held, over sample_window_bytes\n",
               an_sample_window_bytes(sw));
    an_sample_window_free(sw);
    an_state_cache_free(sc);
    free(rows);
    return failures || over ? 1 : 0;
}
