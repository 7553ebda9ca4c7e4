/*
 * an_alerts.h: the notification rules of `anomalyctl alerts` (docs/alerts.md).
 * Pure: no Redis, no SQL, no clock of its own (the caller passes "now").
 *
 * A row of a published inference message becomes an alert when it passes
 * the static gates, in this order:
 *   threshold  anomaly >= threshold (per metric overridable by the caller)
 *   warm-up    rowid > min_rowid            (min_rowid 0: gate off)
 *   age        ts >= now - max_age          (max_age 0: gate off)
 * and then the state gates, over an abstract state store:
 *   dedupe     the (uid, rowid) has not fired before; if it fired from this
 *              very output entry (handled, but not acked before a crash),
 *              it is delivered again without being recorded again
 *   throttle   the metric's last alert's row time + throttle <= ts
 *              (throttle 0: gate off). Row times, not the wall clock, so a
 *              replay of history behaves as live traffic did.
 *
 * Error convention: 0 or a negative AN_E* code (an_error.h); the store's
 * codes are passed through.
 */
#ifndef AN_ALERTS_H
#define AN_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "an_error.h"

#define AN_ALERTS_DEFAULT_THRESHOLD 0.99999
#define AN_ALERTS_DEFAULT_MIN_ROWID 1000
#define AN_ALERTS_DEFAULT_MAX_AGE_MS 3600000LL  /* 1 h */
#define AN_ALERTS_DEFAULT_THROTTLE_MS 3600000LL /* 1 h */

typedef struct an_alert_rules {
    double threshold;    /* alert when anomaly >= threshold (0: every row) */
    int64_t min_rowid;   /* skip rowid <= min_rowid (0: off) */
    int64_t max_age_ms;  /* skip rows older than now - max_age (0: off) */
    int64_t throttle_ms; /* one alert per metric per window of row time (0: off) */
} an_alert_rules;

/* The defaults above. */
an_alert_rules an_alert_rules_default(void);

typedef enum {
    AN_ALERT_FIRE = 0,     /* a new alert: record it and deliver it */
    AN_ALERT_REDELIVER,    /* fired earlier by this same output entry, which
                              was not acked: deliver again, record nothing */
    AN_ALERT_BELOW,        /* anomaly < threshold */
    AN_ALERT_WARMUP,       /* rowid <= min_rowid */
    AN_ALERT_TOO_OLD,      /* older than max_age */
    AN_ALERT_DUPLICATE,    /* fired already from another output entry (a
                              re-published message) */
    AN_ALERT_THROTTLED,    /* within throttle of the metric's last alert */
} an_alert_verdict;

/* "fire", "redeliver", "below-threshold", "warm-up", "too-old",
 * "duplicate", "throttled". Static. */
const char *an_alert_verdict_name(an_alert_verdict v);

/* One row of an inference message (the fields the rules look at). */
typedef struct an_alert_row {
    int64_t rowid;
    double ts;      /* epoch seconds */
    double anomaly;
} an_alert_row;

/* A row time in integer milliseconds (ts rounded to the nearest ms). */
int64_t an_alert_ts_ms(double ts);

/* The static gates (threshold, warm-up, age) for one row. threshold is the
 * metric's effective threshold; now_ms is the wall clock (epoch ms), used
 * only when rules->max_age_ms > 0. Returns AN_ALERT_FIRE when it passes. */
an_alert_verdict an_alert_gate(const an_alert_rules *rules, double threshold,
                               const an_alert_row *row, int64_t now_ms);

/* The state the dedupe and throttle gates read. Implementations: Redis
 * (alerts_store.c, prefetched per entry), memory (tests, plots). */
typedef struct an_alert_store {
    /* The row time (epoch ms) of uid's last recorded alert: *found false
     * when there is none. */
    int (*last_get)(void *ud, const char *uid, bool *found, int64_t *ts_ms);
    /* The output entry id that fired (uid, rowid) into entry (len bytes,
     * NUL-terminated); "" when it never fired (or its record was trimmed). */
    int (*fired_get)(void *ud, const char *uid, int64_t rowid, char *entry,
                     size_t len);
    void *ud;
} an_alert_store;

/* What an_alerts_decide read and what the metric's state becomes. */
typedef struct an_alert_outcome {
    bool had_last;       /* the store's last alert time before the entry */
    int64_t last_ms;
    bool has_last;       /* after the entry (last_ms of the newest alert) */
    int64_t new_last_ms;
    size_t nfire;        /* rows with AN_ALERT_FIRE */
    size_t ndeliver;     /* rows with AN_ALERT_FIRE or AN_ALERT_REDELIVER */
} an_alert_outcome;

/*
 * Decides every row of one output entry (one metric, rows in message
 * order): verdict[i] for rows[i]. entry_id is the output entry's stream id
 * (the dedupe record of a fired row). store may be NULL: no recorded state
 * (every row is new; the throttle still applies between the rows of this
 * call). Returns 0 or the store's error code (verdicts then undefined).
 */
int an_alerts_decide(const an_alert_rules *rules, double threshold,
                     const an_alert_store *store, const char *uid,
                     const char *entry_id, const an_alert_row *rows, size_t n,
                     int64_t now_ms, an_alert_verdict *verdict,
                     an_alert_outcome *out);

/* The alert a consumer delivers. Borrowed strings. */
typedef struct an_alert_info {
    const char *uid;
    const char *name;      /* NULL -> null */
    int64_t rowid;
    double ts;             /* epoch seconds */
    double value;
    double anomaly;
    double raw;
    double threshold;      /* the effective threshold */
    const char *threshold_from; /* "default", "flag", "override:uid", ... */
    const char *source;    /* the output entry's `source` (input entry id) */
    const char *entry_id;  /* the output entry's id */
} an_alert_info;

/* {"uid","name","rowid","timestamp" (ISO 8601 UTC, ms), "ts","value",
 * "anomaly","rawAnomaly","threshold","rule","source","entry"}: rule is
 * "anomaly >= <threshold> (<threshold_from>)". New reference or NULL
 * (ENOMEM, non-finite number). */
json_t *an_alert_json(const an_alert_info *a);

/* Threshold text from an override (Redis hash value): a number in [0, 1].
 * 0 or AN_EINVAL. */
int an_alert_parse_threshold(const char *s, size_t len, double *out);

/* "2014-04-10T08:55:00.000Z" for epoch seconds ts into buf (>= 32 bytes).
 * Returns buf. */
char *an_alert_iso8601(double ts, char *buf, size_t len);

#endif
