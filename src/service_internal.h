/*
 * service_internal.h: the service's state (struct an_service) and what
 * service.c (the loop: intake, commands, deferral, publish),
 * service_pause.c and service_metrics.c share. The group scorer
 * (service_group.h) and the items (service_item.h) are below it and know
 * nothing of it. Not a public header.
 */
#ifndef AN_SERVICE_INTERNAL_H
#define AN_SERVICE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "an_codec.h"
#include "an_config.h"
#include "an_helper.h"
#include "an_repo.h"
#include "an_retention.h"
#include "an_sample_window.h"
#include "an_service.h"
#include "an_state_cache.h"
#include "an_streams.h"

#include "service_group.h"
#include "service_item.h"

struct deferred;

/* The service's health (service_pause.c): running, or paused by a fault
 * that is not the entries' (an_fault.h's environment class, or a failure
 * that outlasted its retry budget). One place: the log, the Redis health
 * hash and an_service_health read it. */
typedef struct svc_health {
    an_service_state state;
    char cause[640];        /* what failed, the server's words, how to fix it */
    int64_t since_ms;       /* realtime: when the current state began */
    int64_t since_mono_ms;  /* the same, monotonic (durations) */
    int64_t streak_ms;      /* monotonic start of the current failure streak; 0 = none */
    int64_t last_log_ms;    /* monotonic: last "still paused" line */
    int64_t last_put_ms;    /* monotonic: last write of the health hash */
    int delay_ms;           /* the next wait (backoff, or probe interval when paused) */
} svc_health;

/* The next group of the entries in hand, decoded while the current group's
 * write + COMMIT is in flight (take_entries sets it up; svc_prefetch fills
 * it). Only a run of plain inference entries is prefetched, by the same
 * rules take_entries forms groups with; anything else is left to it. */
typedef struct prefetch {
    const an_entry *v;  /* the entries in hand */
    const int64_t *count; /* [n] their attempt numbers; 0: not counted yet
                             (never decoded ahead) */
    size_t n;
    size_t from;        /* index in v of the next group's first entry */
    item *items;        /* room for n items; [0, k) decoded */
    size_t k, rows;
    bool done;          /* at most once per group */
} prefetch;

struct an_service {
    const an_config *cfg;
    an_service_opts opts;
    an_redis *redis;
    an_repo *repo;
    an_helper *helper;
    an_state_cache *sc;     /* parsed likelihood state per metric */
    an_sample_window *sw;   /* newest processed samples per metric */
    int64_t sw_hits_seen, sw_misses_seen; /* counted into the metrics so far */
    an_helper_config hcfg;
    an_codec_limits limits;
    char consumer[256];
    an_service_stats st;

    /* Restart protocol: drain our own pending entries ("0") before ">". */
    bool draining;
    char drain_from[AN_ID_MAX];

    int64_t idle_since_ms;
    int64_t last_claim_ms;
    int64_t last_prune_ms;
    int64_t last_trim_ms;
    an_retention rt;        /* input trimming and attempts cleanup */

    struct deferred *def;   /* entries waiting for their predecessors */
    size_t ndef, capdef;
    size_t def_bytes;       /* their field bytes (defer_max_bytes) */

    svc_health health;          /* service_pause.c */

    svc_scorer *scorer;         /* service_group.c: the groups' transactions */
    prefetch *pf;               /* set while take_entries runs a group */

    /* service_metrics.c's pacing (monotonic ms) */
    int64_t last_tick_ms, last_status_ms, last_poll_ms;
    int64_t status_entries;     /* st.entries at the last STATUS= */
    int64_t schema_warned_ms;   /* last "schema missing" warning */
    bool ready_noted, stop_noted;
};

/* ---- service_pause.c: what to do after a failed server call ----
 * svc_failed records a failure (rc an AN_E* code, what = the operation,
 * e.g. "publishing 12 entries"; the server's message and advice are taken
 * from the repository (from_pg) or the Redis connection) and decides: an
 * environment fault (AN_EENV) pauses at once; any other failure pauses
 * once failures have lasted [postgres] retry_budget_ms without a success
 * (so no retry loop is blind or endless without a logged cause).
 * svc_wait then sleeps the backoff (100 ms doubling to 5 s; while paused
 * the probe interval, 1 s doubling to 30 s) and returns false when a stop
 * was requested. svc_succeeded ends a streak and resumes a paused
 * service. svc_health_tick re-logs a pause once a minute and refreshes the
 * health hash; cheap, call it from every loop. */
void svc_failed(an_service *s, int rc, bool from_pg, const char *what);
bool svc_wait(an_service *s);
void svc_succeeded(an_service *s);
void svc_health_tick(an_service *s);
bool svc_stopping(const an_service *s);

/* Decodes the next group into s->pf (if set and not done yet); ctx is the
 * service (the scorer's overlap hook). Pure CPU and memory: no Redis or
 * PostgreSQL call, so it can run while the group's write is on the wire. */
void svc_prefetch(void *ctx);

/* ---- service_metrics.c: every event updates the stats line
 * (an_service_stats) and the metrics (opts.metrics) together ---- */

/* The loop is alive: metrics heartbeat, systemd watchdog, a STATUS= line
 * every few seconds, STOPPING=1 once a stop is requested. Cheap: call it
 * every loop turn and nap step. */
void svc_heartbeat(an_service *s);
/* Every few seconds (only with metrics): the group's pending and lag, the
 * input and dead-letter stream lengths, the schema (which also tells
 * whether PostgreSQL answers). Main loop only: it talks to both servers. */
void svc_poll(an_service *s);
/* Connected to both servers with the schema present: running, READY=1. */
void svc_note_ready(an_service *s);
void svc_note_up(an_service *s, an_server srv, bool up);
/* The service is stopping (a stop was requested, or it returns): state
 * stopping, STOPPING=1. Once. */
void svc_note_stopping(an_service *s);
/* One entry completed (st.entries) with outcome o; latency_from_id: the entry's id, for
 * the entry latency histogram (NULL: not observed). */
void svc_note_done(an_service *s, an_outcome o, const char *latency_from_id);
void svc_note_dead_letter(an_service *s, const char *reason_class);
/* *stat += n, and the counter c. */
void svc_count(an_service *s, int64_t *stat, an_counter c, int64_t n);
/* A transient error that will be retried after a back-off. */
void svc_note_retry(an_service *s);
/* Monotonic microseconds (durations for the histograms). */
int64_t svc_now_us(void);

#endif
