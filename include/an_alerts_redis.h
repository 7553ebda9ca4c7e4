/*
 * an_alerts_redis.h: the Redis state of `anomalyctl alerts` (docs/alerts.md):
 * the keys derived from the alerts stream name, a per-entry snapshot of the
 * dedupe/throttle state (lua/alerts_read.lua) usable as an an_alert_store,
 * and the atomic compare-and-record of an entry's alerts with their XADD to
 * the alerts stream (lua/alerts_commit.lua).
 *
 * Error convention: the an_streams.h codes, message in an_redis_errstr().
 */
#ifndef AN_ALERTS_REDIS_H
#define AN_ALERTS_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_alerts.h"
#include "an_streams.h"

#define AN_ALERTS_KEY_MAX 512

/* <stream>, <stream>:last, <stream>:fired, <stream>:fired:order,
 * <stream>:thresholds, <stream>:dead. */
typedef struct an_alerts_keys {
    char stream[AN_ALERTS_KEY_MAX];
    char last[AN_ALERTS_KEY_MAX];
    char fired[AN_ALERTS_KEY_MAX];
    char order[AN_ALERTS_KEY_MAX];
    char thresholds[AN_ALERTS_KEY_MAX];
    char dead[AN_ALERTS_KEY_MAX];
} an_alerts_keys;

/* 0, or AN_EINVAL when the stream name is empty or too long. */
int an_alerts_keys_init(an_alerts_keys *k, const char *stream);

/* One metric's state as read for one entry. Owns its memory. */
typedef struct an_alerts_snapshot {
    char uid[AN_UID_MAX + 1];
    bool has_last;
    int64_t last_ms;
    char *threshold_uid;  /* override values as stored (NULL: none) */
    char *threshold_name;
    size_t n;
    int64_t *rowids;      /* [n] */
    char (*fired)[AN_ID_MAX]; /* [n] entry id that fired rowids[i], "" none */
} an_alerts_snapshot;

/* Reads uid's last alert time, its threshold overrides (by uid and by
 * name; name may be NULL) and the fired records of the n rowids (n may be
 * 0) in one call. *s is overwritten (free it first); on failure it is
 * left empty. */
int an_alerts_read(an_redis *rd, const an_alerts_keys *k, const char *uid,
                   const char *name, const int64_t *rowids, size_t n,
                   an_alerts_snapshot *s);
void an_alerts_snapshot_free(an_alerts_snapshot *s);

/* An an_alert_store over the snapshot (ud = s, which must outlive it). A
 * rowid not in the snapshot reads as never fired. */
an_alert_store an_alerts_snapshot_store(an_alerts_snapshot *s);

/* One entry's new alerts. */
typedef struct an_alerts_commit_req {
    const char *uid;
    const char *entry_id;         /* the output entry's id */
    const an_alert_outcome *outcome; /* what the decision read and set */
    int64_t stream_maxlen;        /* alerts stream MAXLEN, exact (<= 0: none) */
    int64_t fired_max;            /* fired records kept (<= 0: no bound) */
    int64_t last_max;             /* metrics' last times kept (<= 0: no bound) */
    size_t n;                     /* alerts, may be 0 */
    const int64_t *rowids;
    const int64_t *ts_ms;
    const char *const *json;      /* alert JSON texts */
} an_alerts_commit_req;

/* If the state still is what the decision read (the last alert time, and
 * no record of these rows), records the alerts and the new last time,
 * appends one entry per alert to the stream (fields uid, rowid, alert) and
 * trims the records to their bounds, atomically: *conflict false, ids[i]
 * (room for n; may be NULL) the stream ids. Otherwise writes nothing and
 * sets *conflict (read and decide again). */
int an_alerts_commit(an_redis *rd, const an_alerts_keys *k,
                     const an_alerts_commit_req *req, char (*ids)[AN_ID_MAX],
                     bool *conflict);

#endif
