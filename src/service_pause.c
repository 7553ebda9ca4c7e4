/*
 * service_pause.c: the service's health state and its one retry rule
 * (svc_retry: every in-place retry of the service goes through it; the
 * pacing: service_internal.h, "service_pause.c"). A fault that is not the
 * entries' pauses the service: one ERROR naming the cause and the fix,
 * again once a minute, the state in the health hash for anomalyctl
 * status; the failed operation is retried (the probe) with a growing
 * interval and the service resumes by itself when it succeeds.
 */
#include "service_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "an_clock.h"
#include "an_log.h"
#include "an_metrics.h"
#include "an_util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define PROBE_MIN_MS 1000
#define PROBE_MAX_MS 30000
#define PAUSE_LOG_EVERY_MS 60000
/* The health hash is rewritten this often, and lives 3 times as long. */
#define HEALTH_PUT_EVERY_MS 10000
#define HEALTH_TTL_S 30

/* Writes the health hash (best effort: Redis may be what is failing). */
static void put_health(an_service *s)
{
    svc_health *h = &s->health;
    h->last_put_ms = an_monotonic_ms();
    if (!s->redis)
        return;
    char key[600];
    an_health_key(s->cfg->streams.input, s->consumer, key, sizeof key);
    int rc = an_health_put(s->redis, key, h->state == AN_SERVICE_PAUSED ? "paused" : "running",
                           h->cause, h->since_ms, HEALTH_TTL_S);
    if (rc)
        an_debug("cannot write the health hash %s: %s", key, an_redis_errstr(s->redis));
}

/* class_word: the metrics' cause class ("environment" or "outage"). */
static void pause_now(an_service *s, const char *cause, const char *class_word)
{
    svc_health *h = &s->health;
    h->state = AN_SERVICE_PAUSED;
    /* a longer cause is cut: the precision keeps the compiler from warning */
    snprintf(h->cause, sizeof h->cause, "%.*s", (int)sizeof h->cause - 1, cause);
    h->since_ms = an_realtime_ms();
    h->since_mono_ms = h->last_log_ms = an_monotonic_ms();
    h->delay_ms = PROBE_MIN_MS;
    an_metrics_set_paused(s->opts.metrics, class_word);
    an_error("PAUSED: %s. Taking no new entries and counting no attempts; the entries in hand "
             "stay pending; retrying every %d-%d s and resuming by itself once it succeeds",
             h->cause, PROBE_MIN_MS / 1000, PROBE_MAX_MS / 1000);
    put_health(s);
}

void svc_failed(an_service *s, int rc, bool from_pg, const char *what)
{
    svc_health *h = &s->health;
    int64_t now = an_monotonic_ms();
    if (!h->streak_ms) {
        h->streak_ms = now;
        h->delay_ms = BACKOFF_MIN_MS;
    }
    svc_count(s, &s->st.transient_errors, AN_C_TRANSIENT_ERRORS, 1);
    if (rc == AN_ETRANSIENT)
        svc_note_up(s, from_pg ? AN_SERVER_POSTGRES : AN_SERVER_REDIS, false);
    svc_note_retry(s);
    const char *msg = from_pg ? an_repo_errstr(s->repo)
                      : s->redis ? an_redis_errstr(s->redis) : "not reachable";
    const char *hint = from_pg ? an_repo_hint(s->repo) : s->redis ? an_redis_hint(s->redis) : "";
    if (rc == AN_ENOMEM)
        msg = "out of memory", hint = "";
    char cause[640];
    snprintf(cause, sizeof cause, "%s: %s on %s%s%s", what, msg && *msg ? msg : "failed",
             from_pg ? "PostgreSQL" : "Redis", *hint ? "; fix: " : "", hint);
    if (h->state == AN_SERVICE_PAUSED) {
        if (strcmp(cause, h->cause)) {   /* another fault now: say so once */
            an_error("still PAUSED, now: %s", cause);
            /* a longer cause is cut: the precision keeps the compiler from warning */
    snprintf(h->cause, sizeof h->cause, "%.*s", (int)sizeof h->cause - 1, cause);
            put_health(s);
        }
        return;
    }
    int budget = s->cfg->postgres.retry_budget_ms;
    if (rc == AN_EENV || now - h->streak_ms >= budget) {
        if (rc != AN_EENV) {
            char c2[700];
            snprintf(c2, sizeof c2, "failing for %" PRId64 " ms (over retry_budget_ms %d): %.600s",
                     now - h->streak_ms, budget, cause);
            pause_now(s, c2, "outage");
        } else {
            pause_now(s, cause, "environment");
        }
        return;
    }
    an_warn("%s; retrying in %d ms", cause, h->delay_ms);
}

void svc_nap(an_service *s, int ms)
{
    while (ms > 0 && !svc_stopping(s)) {
        int step = ms < SVC_NAP_STEP_MS ? ms : SVC_NAP_STEP_MS;
        an_clock_sleep_ms(NULL, step);
        ms -= step;
        svc_heartbeat(s);   /* a back-off or a pause is the loop alive, not hung */
        if (s->health.state == AN_SERVICE_PAUSED)
            svc_health_tick(s);
    }
}

bool svc_wait(an_service *s)
{
    svc_health *h = &s->health;
    svc_nap(s, h->delay_ms > 0 ? h->delay_ms : BACKOFF_MIN_MS);
    h->delay_ms = an_backoff_next(h->delay_ms,
                                  h->state == AN_SERVICE_PAUSED ? PROBE_MAX_MS : BACKOFF_MAX_MS);
    return !svc_stopping(s);
}

/* Whether rc is a server's failure (worth waiting out), not a local one. */
static bool server_error(int rc)
{
    return rc == AN_ETRANSIENT || rc == AN_EENV || rc == AN_EREDIS;
}

int svc_retry(an_service *s, const svc_step *st)
{
    for (;;) {
        int rc = st->run(s, st->ctx);
        if (rc == 0) {
            svc_succeeded(s);
            return 0;
        }
        if (rc == AN_ENOGROUP || (st->servers_only && !server_error(rc)))
            return rc;
        bool pg = st->database && an_repo_last_rc(s->repo) != 0;
        /* A Redis step's refusal (NOPERM, WRONGTYPE, ...) does not go away
         * by itself: pause at once rather than after the budget. */
        svc_failed(s, !st->database && rc == AN_EREDIS ? AN_EENV : rc, pg, st->what);
        if (st->database)
            an_repo_rollback(s->repo);
        if (!svc_wait(s))
            return AN_ETRANSIENT;
        /* A paused PostgreSQL fault is probed on a new session: a repair
         * may be a session default (default_transaction_read_only) or a
         * server switched behind the address. */
        if (st->database && pg && rc == AN_EENV)
            an_repo_reconnect(s->repo);
        else if (st->database)
            an_repo_connect(s->repo);
    }
}

void svc_succeeded(an_service *s)
{
    svc_health *h = &s->health;
    h->streak_ms = 0;
    h->delay_ms = BACKOFF_MIN_MS;
    if (h->state != AN_SERVICE_PAUSED)
        return;
    int64_t now = an_monotonic_ms();
    an_info("RESUMED after %.1f s paused (cause was: %s)", (double)(now - h->since_mono_ms) / 1e3,
            h->cause);
    h->state = AN_SERVICE_RUNNING;
    an_metrics_set_running(s->opts.metrics);
    h->cause[0] = '\0';
    h->since_ms = an_realtime_ms();
    h->since_mono_ms = now;
    put_health(s);
}

void svc_health_tick(an_service *s)
{
    svc_health *h = &s->health;
    int64_t now = an_monotonic_ms();
    if (s->opts.stats && *s->opts.stats) {
        *s->opts.stats = 0;
        an_service_log_stats(s);
    }
    if (h->state == AN_SERVICE_PAUSED && now - h->last_log_ms >= PAUSE_LOG_EVERY_MS) {
        h->last_log_ms = now;
        an_error("still PAUSED after %" PRId64 " s: %s", (now - h->since_mono_ms) / 1000,
                 h->cause);
    }
    if (now - h->last_put_ms >= HEALTH_PUT_EVERY_MS)
        put_health(s);
}

void an_service_get_health(const an_service *s, an_service_health *out)
{
    out->state = s->health.state;
    out->cause = s->health.cause;
    out->since_ms = s->health.since_ms;
}
