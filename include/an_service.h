/*
 * an_service.h: the anomalyd service loop. It composes the streams module
 * (input group, Lua publish/dead-letter), the repository (one transaction
 * per inference batch) and the likelihood helper, following
 * docs/htmengine.md §1.2-§1.5 with anomalyd's additions (docs/operations.md:
 * watermark idempotence, dead letters, takeover of idle pending entries).
 *
 * One an_service per process (or thread): it owns one Redis and one
 * PostgreSQL connection.
 */
#ifndef AN_SERVICE_H
#define AN_SERVICE_H

#include <signal.h>
#include <stdint.h>

#include "an_config.h"
#include "an_metrics.h"
#include "an_notify.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A group (one transaction) takes up to [streams] read_count entries, and
 * stops growing once it holds this many rows: catch-up batches of 1440 rows
 * would otherwise make 92,160-row groups (65 MB of RSS) for no throughput
 * gain. Public so ops/bench/bench_floor.c forms the same groups. */
#define AN_SERVICE_GROUP_MAX_ROWS 4096

typedef struct an_service_opts {
    /* Exit 0 once nothing new arrived and the group had nothing pending
     * (ours or, after claiming, anyone's) for this many ms. < 0: never. */
    int64_t exit_when_idle_ms;
    /* Set (to non-zero) by a signal handler: finish the entry in hand, then
     * return. May be NULL. */
    volatile sig_atomic_t *stop;
    /* Set (to non-zero) by a signal handler (SIGUSR1): the service logs the
     * stats line and its state soon after, and clears it. May be NULL. */
    volatile sig_atomic_t *stats;
    /* Borrowed, may be NULL. The service reports its events and state to
     * metrics (and polls the group's pending/lag, the stream lengths and
     * the schema every few seconds for it), and speaks the systemd notify
     * protocol through notify: READY=1 once connected with the schema
     * checked, STATUS= every few seconds, WATCHDOG=1 from the loop,
     * STOPPING=1 when the stop is noticed. */
    an_metrics *metrics;
    an_notify *notify;
} an_service_opts;

/* Counters since start (anomalyctl status shows the group's view; these are
 * logged at exit and on SIGUSR1). */
typedef struct an_service_stats {
    int64_t entries;          /* input entries handled (acked or dead-lettered) */
    int64_t inference_batches;/* inference batches scored and published */
    int64_t rows_scored;      /* metric_data rows written */
    int64_t commands;         /* command results processed */
    int64_t rejected;         /* inference batches rejected (docs/htmengine.md §1.4/§1.5) */
    int64_t duplicates;       /* batches already applied (redelivery/duplicate) */
    int64_t republished;      /* duplicates whose output was published again */
    int64_t dead_letters;     /* entries sent to the dead-letter stream */
    int64_t trimmed;          /* pending entries whose payload was gone */
    int64_t input_trimmed;    /* input entries removed by this process's XTRIMs */
    int64_t attempts_cleaned; /* orphaned fields deleted from <input>:attempts */
    int64_t claimed;          /* entries taken over from idle consumers */
    int64_t deferred;         /* times an entry waited for its model's predecessor */
    int64_t transient_errors; /* retries after a transient Redis/PG error */
    int64_t cache_misses;     /* params read from PostgreSQL, not the hash */
    int64_t groups;           /* inference groups run (one transaction each,
                                 retries of the same group not counted) */
} an_service_stats;

typedef struct an_service an_service;

/* Running, or paused: a server refuses everyone (an_fault.h's environment
 * class) or has failed for longer than its retry budget. While paused the
 * service takes no new entries, counts no attempts, keeps what it holds
 * pending, and probes (retries what failed) until it succeeds. */
typedef enum { AN_SERVICE_RUNNING = 0, AN_SERVICE_PAUSED = 1 } an_service_state;

typedef struct an_service_health {
    an_service_state state;
    const char *cause;  /* "" when running; owned by the service, valid until its next call */
    int64_t since_ms;   /* wall-clock ms since the epoch when the state began */
} an_service_health;

/* The current state (also written to Redis, see an_health_key, and shown
 * by anomalyctl status). */
void an_service_get_health(const an_service *s, an_service_health *out);

/* Creates the service for cfg (borrowed: must outlive the service). Does not
 * connect yet. Returns 0, or AN_ENOMEM / AN_ECONFIG with a message in err. */
int an_service_new(const an_config *cfg, const an_service_opts *opts,
                   an_service **out, char *err, size_t errlen);

/* Runs until *opts->stop is set or the idle exit fires. Connects (retrying
 * while the servers are unreachable), creates the group if needed, drains
 * this consumer's pending entries, then reads new ones. Returns 0 on a
 * clean stop; a negative AN_E* code when it cannot go on (e.g. the schema
 * is missing), after logging why. */
int an_service_run(an_service *s);

/* Logs the counters at INFO. */
void an_service_log_stats(const an_service *s);

/* The sample windows ([anomaly_likelihood] sample_window_bytes): metrics
 * held, bytes charged, tail/count reads answered from memory (hits) and
 * from PostgreSQL (misses) since start. For exporters; the stats line
 * logs the same. */
typedef struct an_window_stats {
    size_t metrics, bytes;
    int64_t hits, misses;
} an_window_stats;
an_window_stats an_service_window_stats(const an_service *s);

void an_service_free(an_service *s);

#ifdef __cplusplus
}
#endif
#endif /* AN_SERVICE_H */
