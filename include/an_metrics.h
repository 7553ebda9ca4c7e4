/*
 * an_metrics.h: anomalyd's Prometheus metrics and health state.
 *
 * The service (and whatever else runs in the process) reports events here;
 * the HTTP server (an_http.h) renders them in the Prometheus text
 * exposition format (version 0.0.4) and answers /livez and /readyz from
 * the same state. This module knows nothing of the service: it holds
 * counters, gauges and fixed-bucket histograms, and the few health facts
 * readiness is made of (state, connections, schema, heartbeat).
 *
 * Thread safety: every function may be called from any thread; one mutex
 * guards the registry (the service writes, the HTTP thread reads).
 * Every function taking an an_metrics * accepts NULL and then does nothing
 * (returns false / NULL where it returns something), so code paths without
 * metrics (anomalyctl, tests) need no checks.
 *
 * Labels are low-cardinality by construction: each labelled family has a
 * fixed list of label values, except the pause cause and the dead-letter
 * reason class, which are interned up to AN_METRICS_MAX_DYNAMIC values per
 * family (more distinct values count under "other"). No uid, consumer name
 * or entry id is ever a label.
 */
#ifndef AN_METRICS_H
#define AN_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_clock.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Distinct values of a dynamic label (pause cause, dead-letter reason). */
#define AN_METRICS_MAX_DYNAMIC 16

/* How an input entry ended: anomalyd_entries_total{outcome=...}. */
typedef enum an_outcome {
    AN_OUTCOME_SCORED = 0,    /* inference batch scored and published */
    AN_OUTCOME_REJECTED,      /* the original's reject: acked, nothing published */
    AN_OUTCOME_DUPLICATE,     /* batch already applied: acked (maybe republished) */
    AN_OUTCOME_COMMAND,       /* command results only: processed and published */
    AN_OUTCOME_DEAD_LETTERED, /* sent to the dead-letter stream */
    AN_OUTCOME_TRIMMED,       /* pending, but its payload was gone (trimmed/deleted) */
    AN_OUTCOME_N
} an_outcome;

/* Plain counters (no label). */
typedef enum an_counter {
    AN_C_ROWS_SCORED = 0,     /* anomalyd_rows_scored_total */
    AN_C_COMMANDS,            /* anomalyd_command_results_total */
    AN_C_CLAIMED,             /* anomalyd_claimed_entries_total */
    AN_C_TRANSIENT_ERRORS,    /* anomalyd_transient_errors_total */
    AN_C_RETRIES,             /* anomalyd_retries_total */
    AN_C_DEFERRALS,           /* anomalyd_deferrals_total */
    AN_C_REPUBLISHED,         /* anomalyd_republished_total */
    AN_C_PARAMS_READS,        /* anomalyd_params_db_reads_total */
    AN_C_INPUT_TRIMMED,       /* anomalyd_input_trimmed_entries_total (XTRIM by us) */
    AN_C_SAMPLE_WINDOW_HITS,  /* anomalyd_sample_window_hits_total */
    AN_C_SAMPLE_WINDOW_MISSES,/* anomalyd_sample_window_misses_total */
    AN_C_N
} an_counter;

/* Gauges (no label). */
typedef enum an_gauge {
    AN_G_LAST_SUCCESS = 0,    /* anomalyd_last_success_timestamp_seconds */
    AN_G_GROUP_PENDING,       /* anomalyd_group_pending_entries */
    AN_G_GROUP_LAG,           /* anomalyd_group_lag_entries (NaN: Redis cannot tell) */
    AN_G_INPUT_LENGTH,        /* anomalyd_input_stream_entries */
    AN_G_DEAD_LETTER_LENGTH,  /* anomalyd_dead_letter_stream_entries */
    AN_G_STATE_CACHE,         /* anomalyd_state_cache_metrics */
    AN_G_DEFERRED,            /* anomalyd_deferred_entries */
    AN_G_SAMPLE_WINDOW,       /* anomalyd_sample_window_metrics */
    AN_G_SAMPLE_WINDOW_BYTES, /* anomalyd_sample_window_bytes */
    AN_G_N
} an_gauge;

/* Histograms (fixed buckets, no label). */
typedef enum an_hist {
    AN_H_ENTRY_LATENCY = 0,   /* anomalyd_entry_latency_seconds */
    AN_H_GROUP_WRITE,         /* anomalyd_group_write_seconds */
    AN_H_PUBLISH,             /* anomalyd_publish_seconds */
    AN_H_GROUP_ENTRIES,       /* anomalyd_group_entries */
    AN_H_GROUP_ROWS,          /* anomalyd_group_rows */
    AN_H_N
} an_hist;

/* The servers of anomalyd_connection_up{server=...}. */
typedef enum an_server {
    AN_SERVER_REDIS = 0,
    AN_SERVER_POSTGRES,
    AN_SERVER_N
} an_server;

/* The process's state: anomalyd_state{state=...} is 1 for the current one. */
typedef enum an_run_state {
    AN_STATE_STARTING = 0,    /* connecting / checking the schema */
    AN_STATE_RUNNING,
    AN_STATE_PAUSED,          /* with a cause: anomalyd_pause_cause{cause=...} */
    AN_STATE_STOPPING,        /* a stop was requested: finishing the entry in hand */
    AN_STATE_N
} an_run_state;

typedef struct an_metrics an_metrics;

/* A new registry: every counter 0, gauges 0 (lag NaN), state STARTING,
 * both connections down, schema unknown, heartbeat now. clock (copied;
 * NULL = the system clock) times the heartbeat and liveness. Returns NULL
 * on ENOMEM. The caller owns it: an_metrics_free. */
an_metrics *an_metrics_new(const an_clock *clock);
void an_metrics_free(an_metrics *m);

/* ---- events (writers) ---- */

/* n entries ended with outcome o (n >= 0). */
void an_metrics_entries(an_metrics *m, an_outcome o, int64_t n);
/* One entry dead-lettered, reason_class a short [a-z0-9_] word (NULL or
 * anything else counts as "other"): anomalyd_dead_letters_total{reason}
 * and anomalyd_entries_total{outcome="dead_lettered"}. */
void an_metrics_dead_letter(an_metrics *m, const char *reason_class);
void an_metrics_add(an_metrics *m, an_counter c, int64_t n);
void an_metrics_set(an_metrics *m, an_gauge g, double v);
void an_metrics_observe(an_metrics *m, an_hist h, double v);

/* Connection state (readiness needs both up). */
void an_metrics_set_up(an_metrics *m, an_server s, bool up);
/* Whether the database schema this build needs is present. */
void an_metrics_set_schema(an_metrics *m, bool present);

/* State changes. set_paused: cause_class is the fault class that paused
 * the service (a short [a-z0-9_] word; others count as "other"). A stop
 * (set_stopping) is final: later set_running / set_paused are ignored. */
void an_metrics_set_running(an_metrics *m);
void an_metrics_set_paused(an_metrics *m, const char *cause_class);
void an_metrics_set_stopping(an_metrics *m);
an_run_state an_metrics_state(const an_metrics *m);
/* "starting", "running", "paused", "stopping" (static). */
const char *an_metrics_state_name(an_run_state s);

/* The main loop is alive: records the clock's now. */
void an_metrics_heartbeat(an_metrics *m);

/* ---- readers ---- */

/* Live when the last heartbeat is at most max_age_ms old on the clock.
 * When not live, why (if non-NULL) gets a one-line reason. */
bool an_metrics_live(an_metrics *m, int64_t max_age_ms, char *why, size_t len);
/* Ready when running (not starting, paused or stopping), both servers up
 * and the schema present. When not ready, why gets a one-line reason:
 * "paused: <cause>", "stopping", "starting: <what it waits for>", or the
 * first failed condition ("redis not connected", "postgres not
 * connected", "database schema missing or out of date"). */
bool an_metrics_ready(an_metrics *m, char *why, size_t len);

/* The current value of a counter / entries outcome (tests, STATUS). */
int64_t an_metrics_counter(an_metrics *m, an_counter c);
int64_t an_metrics_outcome(an_metrics *m, an_outcome o);

/* Renders every family in the text exposition format. Returns a malloc'd
 * NUL-terminated text (*len its length, if len non-NULL) that the caller
 * frees, or NULL on ENOMEM (or m NULL). */
char *an_metrics_render(an_metrics *m, size_t *len);

/* ---- pure helpers (exposed for unit tests) ---- */

/* Index of the bucket v falls in: the first i with v <= bounds[i], or
 * nbounds (the +Inf bucket) when v is above them all or NaN. bounds are
 * ascending. */
size_t an_metrics_bucket_index(const double *bounds, size_t nbounds, double v);

/* Formats v as the exposition format writes sample values and le bounds:
 * integers without exponent or fraction ("3", "-2"), "+Inf", "-Inf",
 * "NaN", otherwise the shortest %g text that reads back exactly. */
void an_metrics_format_value(double v, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* AN_METRICS_H */
