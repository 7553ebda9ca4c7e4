/*
 * service_internal.h: what service.c (the loop: intake, commands, deferral,
 * publish) and service_group.c (the inference transaction of a group of
 * entries) share. Not a public header.
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

/* One output message waiting for the publish script. */
typedef struct out_item {
    const char *data_type;
    char rows[48];     /* "first-last" or "" */
    char *body;        /* encoded body (malloc'd) */
    size_t body_len;
} out_item;

/* What the inference part of an entry came to. */
typedef enum {
    INF_NONE = 0,  /* no inference results in the entry */
    INF_SCORED,    /* scored and committed: publish msg + params */
    INF_REJECTED,  /* the original's reject: ack, publish nothing */
    INF_DUPLICATE, /* already applied: ack; republish if it was ours */
    INF_POISON,    /* dead-letter with reason */
    INF_DEFERRED,  /* predecessor not applied yet: keep pending, retry */
} inf_outcome;

/* One input entry in the works. */
typedef struct item {
    const an_entry *e;
    an_batch *b;                       /* decoded; owned */
    const an_inference_result **inf;   /* its inference results, in order */
    size_t n;
    int64_t first, last;               /* their rowids */
    bool force;                        /* waited defer_max_ms: no more waiting */

    /* results of processing */
    inf_outcome oc;
    out_item *outs;
    size_t nouts, capouts;
    bool carries_cache;                /* its publish refreshes the params hash */
    const char *cache_uid;
    char *cache_json;
    int64_t cache_wm;
    char cache_src[AN_ID_MAX];         /* the entry id that moved cache_wm */
    int64_t seen_wm;                   /* the watermark a deferral saw */
    char reason[384];                  /* dead-letter reason */
    const char *reason_class;          /* its metrics label (static; NULL: "other") */
    size_t published;                  /* outs[0..published) went out in
                                          chunks ahead of the acking call */
    bool done;                         /* acked or dead-lettered (or taken
                                          over by another consumer): its
                                          attempt is finished */
} item;

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
    an_sample *sw_buf;      /* sample_size rows: a window's rebuild (service_window.c) */
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

    struct group_scratch *gs;   /* service_group.c's reusable buffers */
    prefetch *pf;               /* set while take_entries runs a group */

    /* service_metrics.c's pacing (monotonic ms) */
    int64_t last_tick_ms, last_status_ms, last_poll_ms;
    int64_t status_entries;     /* st.entries at the last STATUS= */
    int64_t schema_warned_ms;   /* last "schema missing" warning */
    bool ready_noted, stop_noted;
};

/* Appends msg (consumed) to the item's messages, encoded per
 * [streams] output_encoding. 0 / AN_ENOMEM / AN_EINVAL. */
int svc_add_out(an_service *s, item *it, const char *data_type, const char *rows,
                json_t *msg);
/* The same for a message already serialized (text consumed). */
int svc_add_out_text(an_service *s, item *it, const char *data_type, const char *rows,
                     char *text, size_t len);

/* Processes the inference results of items[0..n) (each with n > 0) in ONE
 * transaction (retried as a whole on transient errors within the
 * docs/htmengine.md §4.5 budget). Sets every item's outcome and messages;
 * nothing is published. The entries' processing attempts were counted before
 * they were decoded (service.c); this does not count them. Returns 0,
 * AN_ETRANSIENT (retry later), or another error. */
int svc_group_run(an_service *s, item *items, size_t n);

void svc_group_free(an_service *s);

/* ---- the path of an entry (docs/architecture.md) ---- */

/* service_take.c: handles entries just read or claimed, in order. */
int take_entries(an_service *s, const an_entry *v, size_t n);
int begin_one(an_service *s, const an_entry *e, int64_t *count);
void end_open(an_service *s, const an_entry *v, size_t n, const bool *open);
int over_attempts(an_service *s, const an_entry *e, int64_t count, bool *gone);

/* service_entry.c */
void item_clear(item *it);
int ensure_group(an_service *s);
int intake(an_service *s, const an_entry *e, item *it);
int run_items_retrying(an_service *s, item *items, size_t n);

/* service_command.c */
/* The metric as the command results of one entry see it: read once, at
 * the first result that needs it, then changed in memory as those results
 * change it in the database. An entry's results all name its one model, so
 * a flood of them costs O(1) reads and at most two status writes, not
 * round trips per result. */
typedef struct cmd_metric {
    int state;        /* 0 not read yet, 1 found (m), 2 not found */
    bool shared;      /* read under FOR SHARE (docs/htmengine.md §1.3 step 2) */
    an_metric m;
} cmd_metric;

int process_command(an_service *s, item *it, const char *uid,
                    const an_command_result *c, cmd_metric *cm);

/* service_publish.c */
int publish_items(an_service *s, item *items, size_t n);
int complete_in_redis(an_service *s, const an_entry *e, const char *reason,
                      const char *reason_class);

/* service.c: the deferral list */
bool is_deferred(const an_service *s, const char *id);
void defer_add(an_service *s, const item *it);

/* ---- service_window.c: the sample windows in the helper's overlay ---- */

/* Creates s->sw per [anomaly_likelihood] sample_window_bytes (0: a store
 * that keeps nothing). 0 or AN_ENOMEM. */
int svc_window_init(an_service *s);
/* Frees s->sw and its scratch (NULL-safe). */
void svc_window_free(an_service *s);

/* The windows' size and bytes to the metrics' gauges, their hits and
 * misses since the last poll to its counters. */
void svc_window_poll(an_service *s, an_metrics *m);

/* The newest n processed rows of uid below `before` (ascending, out has
 * room for n), for a metric locked with watermark wm. *usable (in/out):
 * whether uid's window may be used in this group (the state cache hit);
 * the window is used when it also has watermark wm. Otherwise the
 * database is read (sample_size rows when windows are on, rebuilding uid's
 * window, which sets *usable). The repository's code (0 / AN_ETRANSIENT /
 * ...), its message in an_repo_errstr. */
int svc_window_tail(an_service *s, const char *uid, int64_t wm, bool *usable,
                    int64_t before, size_t n, an_sample *out, size_t *got);

/* The processed-row count of uid below `before`, from the window when
 * usable and known, else from the database. Same codes. */
int svc_window_count(an_service *s, const char *uid, int64_t wm, bool usable,
                     int64_t before, int64_t *count);

/* After the group's COMMIT is confirmed: uid (locked with watermark
 * old_wm) now has rows[0..n) scored too and watermark new_wm. Appended to
 * its window when usable, else its window is dropped. */
void svc_window_commit(an_service *s, const char *uid, bool usable, int64_t old_wm,
                       const an_sample *rows, size_t n, int64_t new_wm);

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

/* Decodes the next group into s->pf (if set and not done yet). Pure CPU
 * and memory: no Redis or PostgreSQL call, so it can run while the
 * group's write is on the wire. */
void svc_prefetch(an_service *s);

/* ---- service_metrics.c: every event updates the stats line
 * (an_service_stats) and the metrics (opts.metrics) together ---- */

/* Dead-letter reason classes (anomalyd_dead_letters_total{reason}). */
#define SVC_DL_MALFORMED "malformed"   /* does not decode */
#define SVC_DL_TOO_LARGE "too_large"   /* over max_entry_bytes / max_inflated_bytes */
#define SVC_DL_ATTEMPTS "attempts"     /* over max_deliveries unfinished attempts */
#define SVC_DL_OVERLAP "overlap"       /* rows overlap rows already scored */
#define SVC_DL_BAD_PARAMS "bad_params" /* stored likelihood params unreadable */
#define SVC_DL_HELPER "helper"         /* the likelihood helper failed */

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
