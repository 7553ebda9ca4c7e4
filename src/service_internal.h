/*
 * service_internal.h: the service's state (struct an_service) and what
 * the files of an entry's path (service.c, service_take.c,
 * service_entry.c, service_command.c, service_publish.c) and
 * service_pause.c / service_metrics.c share. The group scorer
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

/* ---- the path of an entry (docs/architecture.md): service.c reads a
 * page (service_defer.c keeps and retries the waiting ones)
 * -> service_take.c (attempts, groups) -> service_entry.c (decode,
 * run) -> service_command.c / service_group.c -> service_publish.c (XACK).
 * Each file calls only the ones after it, and service_pause.c /
 * service_metrics.c below all of them. ---- */

/* What a page needs of the entries its caller already holds (service.c's
 * deferral list): the lower layer takes these instead of calling up. */
typedef struct svc_holder {
    /* Whether the entry id is in hand already: it is skipped (no attempt
     * counted, not processed). */
    bool (*holds)(const an_service *s, const char *id);
    /* Keep the entry of it (outcome INF_DEFERRED: its model's predecessor
     * is not applied yet) pending and retry it later; it->e is valid only
     * during the call (the holder copies what it keeps). */
    void (*hold)(an_service *s, const item *it);
} svc_holder;

/* service_take.c: handles entries just read or claimed, in order:
 * consecutive inference-only entries go as one group (up to
 * AN_SERVICE_GROUP_MAX_ROWS rows and [streams] max_group_decoded_bytes),
 * anything else one by one. Every entry's processing attempt is counted
 * before it is decoded, and ended at the end if it neither completed nor
 * failed the process. 0, AN_ENOMEM, AN_ETRANSIENT (stopping) or the error
 * that ended the page (its remaining entries stay pending). */
int take_entries(an_service *s, const an_entry *v, size_t n, const svc_holder *h);

/* Decodes the next group into s->pf (if set and not done yet); ctx is the
 * service (the scorer's overlap hook). Pure CPU and memory: no Redis or
 * PostgreSQL call, so it can run while the group's write is on the wire. */
void svc_prefetch(void *ctx);

/* What svc_take_one came to (besides its error code). */
typedef enum {
    SVC_ONE_FINISHED,  /* completed, dead-lettered, or left to another consumer */
    SVC_ONE_WAITING,   /* still waits for its model's predecessor */
} svc_one_result;

/* One held entry again, alone, as a new attempt (counted before it is
 * decoded, ended if it waits again). force: it has waited long enough, no
 * more deferral. *res set; with SVC_ONE_WAITING, *wm is the model's
 * watermark it saw. 0 or an error (the entry stays held). */
int svc_take_one(an_service *s, const an_entry *e, bool force, svc_one_result *res,
                 int64_t *wm);

/* service_defer.c: the deferral list (entries waiting for their model's
 * predecessor). svc_deferral is the list as a page's holder (take_entries).
 * svc_is_deferred: whether the entry id is in the list. svc_retry_deferred
 * retries the due ones (per model the lowest first, its successors at once
 * when it completes) and keeps the others' idle time fresh: 0 or the first
 * retry's error. svc_defer_free frees the list. */
extern const svc_holder svc_deferral;
bool svc_is_deferred(const an_service *s, const char *id);
int svc_retry_deferred(an_service *s);
void svc_defer_free(an_service *s);

/* service_entry.c */
/* Frees what the item owns and zeroes it. */
void svc_item_clear(item *it);
/* Creates the consumer group unless it exists. 0 or the streams code. */
int svc_ensure_group(an_service *s);
/* Decodes an entry into it (which it zeroes first). 0 or AN_ENOMEM; a
 * poison entry comes back with oc INF_POISON and its reason, no batch. */
int svc_intake(an_service *s, const an_entry *e, item *it);
/* Processes items[0..n) (decoded, not poison): the command results of each
 * (only when n == 1), then the inference results of all as one group in
 * one transaction, the group's poison entries to the dead letters, then
 * one publish that acks the rest. Each step is retried in place
 * (svc_retry), so a server outage does not count against the entries'
 * attempts; a fault of the environment pauses and every retry is then a
 * probe. Items come back done, or with oc INF_DEFERRED (keep them). Returns
 * 0, or AN_ETRANSIENT when a stop was requested before it could complete
 * (or another error of a step that is not retried: out of memory). */
int svc_run_items(an_service *s, item *items, size_t n);

/* service_command.c: the command results of the item (docs/htmengine.md
 * §1.3), each status change committed at once, their messages added to
 * the item. 0 or a transient / database error (the item is then retried
 * from its decoded state). */
int svc_item_commands(an_service *s, item *it);

/* service_publish.c */
/* Publishes, caches and acks every finished item of items[0..n) in one
 * atomic call. 0, AN_ENOMEM, or a code as an_publish_many (AN_EREDIS for a
 * refusal). */
int svc_publish_items(an_service *s, item *items, size_t n);
/* Completes one entry in Redis without processing it: its dead letter
 * (reason set) or the XACK of a trimmed entry (reason NULL), retried in
 * place. 0, AN_ENOGROUP or AN_ETRANSIENT (stopping). */
int svc_complete_in_redis(an_service *s, const an_entry *e, const char *reason,
                          const char *reason_class);

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

/* Waits (svc_wait and the loop's short naps) sleep in steps of this many
 * ms: a stop request is noticed, and the heartbeat (/livez, the systemd
 * watchdog) beats, within one step. */
#define SVC_NAP_STEP_MS 50
/* Sleeps ms in SVC_NAP_STEP_MS steps, each a heartbeat (and, while paused,
 * a health tick); returns early when a stop is requested. */
void svc_nap(an_service *s, int ms);

/* One operation retried in place: the one retry rule of the service. */
typedef struct svc_step {
    int (*run)(an_service *s, void *ctx);   /* 0 or an AN_E* code */
    void *ctx;
    const char *what;     /* the operation, for the logged cause */
    /* It may fail in PostgreSQL (the repository says whether it did):
     * rolled back before the wait, and the session renewed after it. */
    bool database;
    /* Only the servers' failures (AN_ETRANSIENT, AN_EENV, AN_EREDIS) are
     * retried; any other code is returned at once. */
    bool servers_only;
} svc_step;

/* Runs the step until it succeeds (svc_succeeded), recording each failure
 * (svc_failed: a Redis step's refusal, AN_EREDIS, pauses at once) and
 * waiting the backoff (svc_wait) between tries: no retry loop anywhere
 * else. Returns 0; AN_ENOGROUP at once (the caller recreates the group);
 * a code servers_only does not retry; AN_ETRANSIENT when a stop was
 * requested. */
int svc_retry(an_service *s, const svc_step *st);
void svc_succeeded(an_service *s);
void svc_health_tick(an_service *s);

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
/* Whether a stop was requested (opts.stop). */
bool svc_stopping(const an_service *s);
/* Monotonic microseconds (durations for the histograms). */
int64_t svc_now_us(void);

#endif
