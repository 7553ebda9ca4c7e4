/*
 * an_helper.h: htmengine's AnomalyLikelihoodHelper.updateModelAnomalyScores
 * (docs/htmengine.md §2.3) as a state machine over one batch of rows.
 *
 * The helper knows nothing of storage: earlier processed rows come from an
 * an_sample_source (PostgreSQL in the service, memory in the offline tool and
 * the vector runner). It owns a reusable cache buffer, so steady-state
 * batches allocate nothing.
 */
#ifndef AN_HELPER_H
#define AN_HELPER_H

#include "an_likelihood.h"

#ifdef __cplusplus
extern "C" {
#endif

/* [anomaly_likelihood] config plus the helper's hard-coded constants. */
typedef struct an_helper_config {
    an_variant variant;
    int min_sample_size;   /* statistics_min_sample_size, 100 */
    int refresh_rate;      /* statistics_refresh_rate, 24 */
    int sample_size;       /* statistics_sample_size, 8640 */
    int skip_records;      /* NUM_SKIP_RECORDS, 288 */
    int averaging_window;  /* 10 */
} an_helper_config;

/* The defaults above. */
an_helper_config an_helper_config_default(void);

/* Returns 0 when cfg is usable: known variant, min_sample_size >= 1,
 * refresh_rate >= 1, min_sample_size <= sample_size <= INT_MAX/2,
 * skip_records >= 0, 1 <= averaging_window <= AN_LK_MAX_WINDOW; else
 * AN_EINVAL with a message naming the key in err. */
int an_helper_config_validate(const an_helper_config *cfg, char *err, size_t errlen);

/* Earlier processed rows of one metric (rows whose raw score is stored),
 * excluding the batch being scored. Both callbacks return 0 or a negative
 * AN_E* code with a message in err. */
typedef struct an_sample_source {
    void *ctx;
    int (*processed_count)(void *ctx, int64_t *count, char *err, size_t errlen);
    /* The newest n processed rows in ascending rowid order; *got <= n. */
    int (*tail)(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                size_t errlen);
} an_sample_source;

/* anomalyLikelihoodParams: null (present == false) or
 * {"last_rowid_for_stats": int, "params": {...}}. */
typedef struct an_helper_state {
    bool present;
    int64_t last_rowid_for_stats;
    an_lk_params params;
} an_helper_state;

/* One row of the batch: inputs rowid/value/raw; outputs anomaly_score and
 * scored (false: the row was not scored and its score stays 0). */
typedef struct an_row {
    int64_t rowid;
    double value;
    double raw;
    double anomaly_score;
    bool scored;
} an_row;

/* Diagnostics, in the order the original logs them (the vectors' "events"). */
typedef enum {
    AN_EV_REFRESH,         /* numRows, firstRowid, lastRowid */
    AN_EV_INIT,            /* cacheLen, firstRowid, lastRowid */
    AN_EV_RUN,             /* startIdx, limitIdx, startRowid, endRowID, last_rowid_for_stats, R */
    AN_EV_GREEDY_BREAK,    /* rowid */
    AN_EV_CUTOFF_PRECEDES, /* startRowid, endRowID */
    AN_EV_BYPASS_REFRESH,  /* startRowid, endRowID */
    AN_EV_NOT_ENOUGH,      /* cacheLen, min  (error log of _generateAnomalyParams) */
} an_helper_event_kind;

typedef struct an_helper_event {
    an_helper_event_kind kind;
    int nargs;
    int64_t args[6];
} an_helper_event;

typedef void (*an_helper_event_fn)(void *ud, const an_helper_event *ev);

/* "refresh", "init", ... as in the vectors. */
const char *an_helper_event_name(an_helper_event_kind k);

typedef struct an_helper an_helper;

/* Returns a new helper (caller owns; an_helper_free) or NULL on ENOMEM or
 * when cfg fails an_helper_config_validate. on_event may be NULL. */
an_helper *an_helper_new(const an_helper_config *cfg, an_helper_event_fn on_event,
                         void *ud);
void an_helper_free(an_helper *h);

/* Scores rows[0..m) (ascending, consecutive rowids) and advances *state.
 * On entry every row's anomaly_score is taken as 0 and scored as false.
 * Returns 0; AN_EINVAL for m == 0, rows out of order, no source (or no
 * callback) when one is needed, or an inconsistent caller-built state;
 * AN_EIO when the sample source fails (its message is in err) or answers
 * nonsense (negative count, more rows than asked); AN_ESTATE when a null
 * state cannot be initialised because the count and the tail disagree (the
 * original's assertion); AN_ENOMEM. On error *state is unchanged, the rows'
 * scores are unspecified, and events already emitted stay emitted. */
int an_helper_update(an_helper *h, const an_sample_source *src,
                     an_helper_state *state, an_row *rows, size_t m,
                     char *err, size_t errlen);

/* Exclusive-source mode (default off). With it on, the caller promises
 * that the helper is driven with ONE sample source (same ctx) whose
 * processed rows change only through the batches this helper scores: after
 * each successful an_helper_update the batch's rows become the source's
 * newest processed rows (an in-memory replay such as anomalyctl likelihood,
 * or a single-metric catch-up). The helper then reads the source's tail once
 * (sample_size rows, at the first refresh) and keeps the newest rows itself
 * between calls, instead of re-reading up to sample_size rows at the first
 * refresh of every call; results and events are identical. The window is
 * dropped (and the tail read again) after an error, when another source ctx
 * is passed, or when a batch does not start after the newest row it holds.
 * Not for the service: several metrics share a helper there and other
 * writers change the table. Setting the mode drops the window. */
void an_helper_set_exclusive_source(an_helper *h, bool on);

/* refreshInterval for a batch of m rows: int(max(refresh_rate, 0.1 * m)). */
int an_helper_refresh_interval(const an_helper_config *cfg, size_t m);

/* State <-> JSON. to_json returns a new reference (json null when
 * !present); from_json accepts JSON null / NULL pointer (absent) and an
 * object; anything else is AN_EINVAL with a message naming the key. */
json_t *an_helper_state_to_json(const an_helper_state *s);

/* an_json_dumps(an_helper_state_to_json(s)), byte for byte, written
 * without a tree (the service writes it for every scored batch). malloc'd,
 * NUL-terminated; *len (if non-NULL) excludes the NUL. NULL on ENOMEM or a
 * non-finite number (which the tree cannot hold either). */
char *an_helper_state_text(const an_helper_state *s, size_t *len);
int an_helper_state_from_json(const json_t *j, an_helper_state *s, char *err,
                              size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* AN_HELPER_H */
