/*
 * an_batch_verdict.h: what the group scorer does with one inference batch,
 * decided from the batch's rowids and its metric as the group has moved it
 * so far (status, scored watermark, the state of the row before the
 * batch). The original's tests in its order (docs/htmengine.md §1.4, §1.5),
 * plus the watermark's duplicate and overlap tests and the wait for a
 * predecessor that several consumers make necessary.
 *
 * One readiness test (an_batch_readiness) serves the whole decision: the
 * processing attempts are counted before decoding, without it.
 *
 * Pure: no I/O, no logging, nothing changed.
 */
#ifndef AN_BATCH_VERDICT_H
#define AN_BATCH_VERDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_codec.h"

/* Whether a batch can be applied now, and if not what it waits for. */
typedef enum an_readiness {
    AN_READY = 0,
    AN_WAIT_DEFINE,      /* its metric is CREATE_PENDING: the defineModel
                            result may be in another consumer's hands */
    AN_WAIT_PREDECESSOR, /* rows between the watermark and its first row are
                            not processed yet: their batch is elsewhere */
} an_readiness;

/* The verdict on a batch of a metric that exists. */
typedef enum an_verdict {
    AN_V_WAIT = 0,      /* not ready: keep it pending, retry */
    AN_V_INACTIVE,      /* its metric is not ACTIVE: reject */
    AN_V_INVALID,       /* rowids not ascending, consecutive, positive: reject */
    AN_V_DUPLICATE,     /* at or below the watermark: already applied */
    AN_V_OVERLAP,       /* straddles the watermark: poison */
    AN_V_SCORE,         /* ready: scrub and score */
    AN_V_SCORE_FORCED,  /* not ready, but waited defer_max_ms: scrub and
                           score (a rejection then moves no watermark) */
} an_verdict;

/* Readiness of a batch whose first rowid is `first`, for a metric with
 * status (an_metric_status) and watermark wm; pred is the state of the row
 * just before the batch (AN_ROW_*, an_repo.h). */
an_readiness an_batch_readiness(int64_t first, int status, int64_t wm, int pred);

/* Rows are numbered from 1 and allocated contiguously per metric
 * (docs/htmengine.md §4.4), so only a batch of ascending, consecutive,
 * positive rowids can match them: whether inf[0..n) (n > 0) has such. */
bool an_rowids_contiguous(const an_inference_result *const *inf, size_t n);

/* The last rowid to read for a batch of n results from first to last: last,
 * but never more than n rows from first. The scrub rejects a
 * non-contiguous batch at its first gap, which lies within those n rows, so
 * reading more (a hostile [1, 2000000000] would read every row of the
 * metric) cannot change the outcome; a descending batch keeps its empty
 * range. */
int64_t an_batch_read_last(int64_t first, int64_t last, size_t n);

/* The verdict on inf[0..n) (n > 0) for a metric with status, watermark wm
 * and predecessor state pred (as an_batch_readiness). force: the batch has
 * waited defer_max_ms, so it waits for nothing; a metric still
 * CREATE_PENDING then counts as not ACTIVE. */
an_verdict an_batch_verdict(const an_inference_result *const *inf, size_t n, bool force,
                            int status, int64_t wm, int pred);

#endif
