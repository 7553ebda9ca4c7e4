/*
 * service_metrics.c: what the service tells the outside about itself.
 * Every event goes through here once and updates both the stats line
 * (an_service_stats, logged at exit) and the Prometheus metrics
 * (opts.metrics), so the two cannot drift apart; the heartbeat feeds
 * /livez and the systemd watchdog; the poll reads the few values only
 * Redis and PostgreSQL know (pending, lag, stream lengths, schema).
 */
#include "service_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "an_clock.h"
#include "an_log.h"
#include "an_schema.h"

/* STATUS= lines and the poll of the servers, at most this often. */
#define SVC_STATUS_MS 5000
#define SVC_POLL_MS 5000

int64_t svc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool svc_stopping(const an_service *s)
{
    return s->opts.stop && *s->opts.stop;
}

/* The state word of STATUS= lines. */
static const char *state_word(const an_service *s)
{
    if (s->opts.metrics)
        return an_metrics_state_name(an_metrics_state(s->opts.metrics));
    return s->stop_noted ? "stopping" : s->ready_noted ? "running" : "starting";
}

static void send_status(an_service *s, int64_t t)
{
    if (!s->opts.notify)
        return;
    double rate = 0;
    if (s->last_status_ms && t > s->last_status_ms)
        rate = (double)(s->st.entries - s->status_entries) * 1000.0 /
               (double)(t - s->last_status_ms);
    char msg[256];
    snprintf(msg, sizeof msg,
             "STATUS=%s; %.1f entries/s; %" PRId64 " entries, %" PRId64 " rows scored, %"
             PRId64 " dead-lettered since start; %zu deferred",
             state_word(s), rate, s->st.entries, s->st.rows_scored, s->st.dead_letters,
             s->ndef);
    an_notify_send(s->opts.notify, msg);
    s->last_status_ms = t;
    s->status_entries = s->st.entries;
}

void svc_note_stopping(an_service *s)
{
    if (s->stop_noted)
        return;
    s->stop_noted = true;
    an_metrics_set_stopping(s->opts.metrics);
    an_notify_stopping(s->opts.notify);
    send_status(s, an_monotonic_ms());
}

void svc_heartbeat(an_service *s)
{
    an_metrics_heartbeat(s->opts.metrics);
    an_notify_watchdog(s->opts.notify);
    if (svc_stopping(s))
        svc_note_stopping(s);
    int64_t t = an_monotonic_ms();
    if (t - s->last_status_ms >= SVC_STATUS_MS)
        send_status(s, t);
}

void svc_note_ready(an_service *s)
{
    s->ready_noted = true;
    an_metrics_set_up(s->opts.metrics, AN_SERVER_REDIS, true);
    an_metrics_set_up(s->opts.metrics, AN_SERVER_POSTGRES, true);
    an_metrics_set_schema(s->opts.metrics, true);
    an_metrics_set_running(s->opts.metrics);
    an_notify_ready(s->opts.notify);
    send_status(s, an_monotonic_ms());
}

void svc_note_up(an_service *s, an_server srv, bool up)
{
    an_metrics_set_up(s->opts.metrics, srv, up);
}

/* The ms part of a stream id "ms-seq" (the Redis server's clock at XADD),
 * or -1. */
static int64_t id_ms(const char *id)
{
    char *end;
    long long v = strtoll(id, &end, 10);
    return end != id && *end == '-' ? (int64_t)v : -1;
}

void svc_note_done(an_service *s, an_outcome o, const char *latency_from_id)
{
    s->st.entries++;
    an_metrics *m = s->opts.metrics;
    if (!m)
        return;
    an_metrics_entries(m, o, 1);
    int64_t now = an_realtime_ms();
    an_metrics_set(m, AN_G_LAST_SUCCESS, (double)now / 1000.0);
    int64_t from = latency_from_id ? id_ms(latency_from_id) : -1;
    if (from >= 0)   /* another host's clock may be ahead: never negative */
        an_metrics_observe(m, AN_H_ENTRY_LATENCY, now > from ? (double)(now - from) / 1000.0 : 0);
}

void svc_note_dead_letter(an_service *s, const char *reason_class)
{
    s->st.dead_letters++;
    s->st.entries++;
    an_metrics_dead_letter(s->opts.metrics, reason_class);
    an_metrics_set(s->opts.metrics, AN_G_LAST_SUCCESS, (double)an_realtime_ms() / 1000.0);
}

void svc_count(an_service *s, int64_t *stat, an_counter c, int64_t n)
{
    *stat += n;
    an_metrics_add(s->opts.metrics, c, n);
}

void svc_note_retry(an_service *s)
{
    an_metrics_add(s->opts.metrics, AN_C_RETRIES, 1);
}

/* The windows' size and bytes to the metrics' gauges, their hits and
 * misses since the last poll to its counters. */
static void svc_window_poll(an_service *s, an_metrics *m)
{
    int64_t hits = 0, misses = 0;
    an_sample_window_stats(s->sw, &hits, &misses);
    an_metrics_set(m, AN_G_SAMPLE_WINDOW, (double)an_sample_window_size(s->sw));
    an_metrics_set(m, AN_G_SAMPLE_WINDOW_BYTES, (double)an_sample_window_bytes(s->sw));
    an_metrics_add(m, AN_C_SAMPLE_WINDOW_HITS, hits - s->sw_hits_seen);
    an_metrics_add(m, AN_C_SAMPLE_WINDOW_MISSES, misses - s->sw_misses_seen);
    s->sw_hits_seen = hits;
    s->sw_misses_seen = misses;
}

/* Pending and lag of our group, the two stream lengths. */
static void poll_redis(an_service *s, an_metrics *m)
{
    an_group_info *g = NULL;
    size_t n = 0;
    int rc = an_xinfo_groups(s->redis, s->cfg->streams.input, &g, &n);
    if (rc == AN_ETRANSIENT) {
        an_metrics_set_up(m, AN_SERVER_REDIS, false);
        return;
    }
    an_metrics_set_up(m, AN_SERVER_REDIS, true);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(g[i].name, s->cfg->streams.group))
            continue;
        an_metrics_set(m, AN_G_GROUP_PENDING, (double)g[i].pending);
        an_metrics_set(m, AN_G_GROUP_LAG, g[i].lag >= 0 ? (double)g[i].lag : NAN);
    }
    an_group_info_free(g, n);
    int64_t len = 0;
    if (an_xlen(s->redis, s->cfg->streams.input, &len) == 0)
        an_metrics_set(m, AN_G_INPUT_LENGTH, (double)len);
    if (an_xlen(s->redis, s->cfg->streams.dead_letter, &len) == 0)
        an_metrics_set(m, AN_G_DEAD_LETTER_LENGTH, (double)len);
}

void svc_poll(an_service *s)
{
    an_metrics *m = s->opts.metrics;
    int64_t t = an_monotonic_ms();
    if (!m || (s->last_poll_ms && t - s->last_poll_ms < SVC_POLL_MS))
        return;
    s->last_poll_ms = t;
    an_metrics_set(m, AN_G_STATE_CACHE, (double)an_state_cache_size(s->sc));
    an_metrics_set(m, AN_G_DEFERRED, (double)s->ndef);
    svc_window_poll(s, m);
    if (s->redis)
        poll_redis(s, m);
    /* One cheap statement answers both "is PostgreSQL there" and "is the
     * schema still there" (readiness needs both). */
    int version = 0;
    int rc = an_schema_version(s->repo, &version);
    if (rc == AN_ETRANSIENT) {
        an_metrics_set_up(m, AN_SERVER_POSTGRES, false);
    } else if (rc == 0) {
        an_metrics_set_up(m, AN_SERVER_POSTGRES, true);
        an_metrics_set_schema(m, version >= an_schema_latest());
    } else {
        an_metrics_set_schema(m, false);
    }
}

void an_service_log_stats(const an_service *s)
{
    const an_service_stats *t = &s->st;
    int64_t hits = 0, misses = 0;
    int64_t whits = 0, wmisses = 0;
    an_state_cache_stats(s->sc, &hits, &misses);
    an_sample_window_stats(s->sw, &whits, &wmisses);
    an_info("stats: entries=%" PRId64 " inference_batches=%" PRId64
            " rows_scored=%" PRId64 " commands=%" PRId64 " rejected=%" PRId64
            " duplicates=%" PRId64 " republished=%" PRId64 " dead_letters=%" PRId64
            " trimmed=%" PRId64 " input_trimmed=%" PRId64 " attempts_cleaned=%" PRId64
            " claimed=%" PRId64 " deferred=%" PRId64
            " transient_errors=%" PRId64 " cache_misses=%" PRId64
            " state_cache=%zu state_cache_hits=%" PRId64 " state_cache_misses=%" PRId64
            " sample_window=%zu sample_window_bytes=%zu sample_window_hits=%" PRId64
            " sample_window_misses=%" PRId64 " groups=%" PRId64 " state=%s",
            t->entries, t->inference_batches, t->rows_scored, t->commands,
            t->rejected, t->duplicates, t->republished, t->dead_letters,
            t->trimmed, t->input_trimmed, t->attempts_cleaned, t->claimed, t->deferred,
            t->transient_errors, t->cache_misses,
            an_state_cache_size(s->sc), hits, misses, an_sample_window_size(s->sw),
            an_sample_window_bytes(s->sw), whits, wmisses, t->groups,
            s->health.state == AN_SERVICE_PAUSED ? "paused" : "running");
}

an_window_stats an_service_window_stats(const an_service *s)
{
    an_window_stats st = {0};
    st.metrics = an_sample_window_size(s->sw);
    st.bytes = an_sample_window_bytes(s->sw);
    an_sample_window_stats(s->sw, &st.hits, &st.misses);
    return st;
}
