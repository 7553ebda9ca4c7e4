/*
 * an_retention.h: the input stream's retention policy (what anomalyd trims,
 * and which consumer group holds the stream back). The atomic work is in
 * lua/trim_input.lua and lua/attempts_gc.lua (an_trim_input,
 * an_attempts_gc in an_streams.h); this module decides when to run them and
 * what to report.
 */
#ifndef AN_RETENTION_H
#define AN_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "an_config.h"
#include "an_streams.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The millisecond part of a stream id "ms-seq" (or "ms"); -1 when id is not
 * of that form or the time does not fit an int64_t. */
int64_t an_id_ms(const char *id);

/* Whether group g of trim result t pins the input stream: the oldest entry
 * it keeps (g->held) is older than retention_ms + pin_warn_ms on the
 * server's clock (t->now_ms). *age_ms (may be NULL) receives that entry's
 * age, or -1 when the group keeps no entry (or its id has no time). */
bool an_retention_pins(const an_trim_result *t, const an_trim_group *g, int64_t retention_ms,
                       int64_t pin_warn_ms, int64_t *age_ms);

/* The state of one consumer's periodic trimming. Zero-initialise. */
typedef struct an_retention {
    char gc_cursor[AN_ID_MAX];  /* attempts hash HSCAN cursor ("" = start) */
    int64_t trimmed;            /* input entries removed by this process's trims */
    int64_t attempts_removed;   /* orphaned attempts fields deleted */
    char warned_group[128];     /* the pinning group last warned about */
    int64_t warned_ms;          /* when (server clock); warnings repeat every pin_warn_ms */
} an_retention;

/* Entries of the attempts hash looked at per tick (one HSCAN page). */
#define AN_RETENTION_GC_PAGE 200
/* Most input entries one trim call removes (it blocks Redis meanwhile), and
 * the calls per tick: up to 1,000,000 entries every trim_interval_ms. */
#define AN_RETENTION_TRIM_LIMIT 100000
#define AN_RETENTION_TRIM_CALLS 10

/* One retention round on r for cfg's [streams]: an_trim_input (trim,
 * repeated while a call removes entries, at most AN_RETENTION_TRIM_CALLS),
 * a warning naming each group that pins the stream (repeated at most every
 * pin_warn_ms per group), and one an_attempts_gc page. Counters go to *rt.
 * Returns 0 or the first streams error (message in an_redis_errstr(r));
 * a NOGROUP from the cleanup (group not created yet) is not an error. */
int an_retention_tick(an_retention *rt, an_redis *r, const an_config *cfg);

#ifdef __cplusplus
}
#endif
#endif /* AN_RETENTION_H */
