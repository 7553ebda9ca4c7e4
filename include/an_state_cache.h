/*
 * an_state_cache.h: the in-process cache of each metric's parsed
 * anomalyLikelihoodParams, and the model_params text surgery that goes
 * with it.
 *
 * Why: per live entry the service used to parse the params (from the Redis
 * hash or from metric.model_params), parse model_params again to replace
 * the key, and serialize both twice: about a third of its CPU. The cache
 * keeps, per metric, the state it last wrote and WHERE that state's text
 * sits inside the model_params text it wrote. A later group that reads a
 * model_params text with the same length, the same hash and, at the
 * remembered offset, exactly the same state text, uses the kept state
 * instead of parsing, and builds the new model_params by splicing the new
 * state text in at that offset.
 *
 * Correctness does not depend on who else writes: the check is against
 * the text just read under the metric's row lock, so a row changed by
 * another consumer, by deleteModel or by hand simply misses and the caller
 * parses as before. The spliced text is byte for byte what
 * an_model_params_merge() produces from the same inputs (a unit test
 * holds both to that).
 *
 * Bounded: at most max_entries metrics (least recently used evicted);
 * 0 disables the cache (every lookup misses, puts are ignored). An entry
 * costs ~0.2 KB plus the state text (~0.3-0.5 KB), plus, once an output
 * message of the metric was built, its message head (~0.3 KB) and the
 * texts it was built from (the parameters column and the metric's names,
 * ~0.5 KB with htmengine's parameters). Not thread-safe; one
 * per service.
 *
 * Pure: knows jansson and the helper state, nothing of Redis or SQL.
 */
#ifndef AN_STATE_CACHE_H
#define AN_STATE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_codec.h"
#include "an_helper.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct an_state_cache an_state_cache;

/* Where the anomalyLikelihoodParams value sits in a model_params text. */
typedef struct an_state_span {
    size_t off, len;
} an_state_span;

/* NULL on ENOMEM. max_entries 0: a disabled cache (still a valid object). */
an_state_cache *an_state_cache_new(size_t max_entries);
/* NULL-safe. */
void an_state_cache_free(an_state_cache *c);

/* If uid has an entry that describes model_params (NULL: the column is
 * NULL), copies its state to *state, sets *span (the state text's place in
 * model_params) and returns true. Otherwise false (*state untouched). */
bool an_state_cache_get(an_state_cache *c, const char *uid,
                        const char *model_params, an_helper_state *state,
                        an_state_span *span);

/* Remembers that uid's model_params is now the text mp (len mp_len), whose
 * anomalyLikelihoodParams value is the text at span and parses to *state.
 * Replaces an older entry of uid; may evict the least recently used one.
 * 0 or AN_ENOMEM (the cache is then simply without that entry). */
int an_state_cache_put(an_state_cache *c, const char *uid, const char *mp,
                       size_t mp_len, an_state_span span,
                       const an_helper_state *state);

/* The text of uid's inference message up to its rows: an_msg_inference_head
 * of mi with, as its spec, the metricSpec of `parameters` (the metric's
 * parameters column). Kept with uid's entry and reused as long as mi's texts
 * and parameters are byte for byte the ones it was built from (every call
 * compares them), so the parameters JSON is parsed and the metric part
 * serialized once per metric rather than once per message; the entry
 * carries it across puts, eviction and forget drop it. Works without an
 * entry too (the cache off, a metric seen for the first time): built every
 * time. 0 with the text in *head (borrowed: valid until the next call on
 * c) and its length in *len; or *head NULL, err set and AN_EINVAL when the
 * head cannot be built from these texts (parameters without a metricSpec
 * object, a missing uid or datasource, a string that is not UTF-8) or
 * AN_ENOMEM, as an_metric_spec_from_parameters and an_msg_inference_head
 * say. */
int an_state_cache_msg_head(an_state_cache *c, const char *uid, const an_metric_info *mi,
                            const char *parameters, const char **head, size_t *len, char *err,
                            size_t errlen);

/* Whether uid has an entry (whatever text it describes). The service then
 * skips reading uid's params hash: the entry describes the model_params
 * this process last committed, and when another writer moved them the
 * get misses and the state is parsed from model_params, which is always
 * current (the hash only saves that parse). */
bool an_state_cache_has(an_state_cache *c, const char *uid);

/* Drops uid's entry, if any. */
void an_state_cache_forget(an_state_cache *c, const char *uid);

/* Entries held, hits and misses since creation. */
size_t an_state_cache_size(const an_state_cache *c);
void an_state_cache_stats(const an_state_cache *c, int64_t *hits,
                          int64_t *misses);

/* model_params with anomalyLikelihoodParams replaced by the JSON text
 * state_text (docs/htmengine.md §1.4 step 7.2; state_text is an_json_dumps
 * output): a model_params that is NULL, not JSON or not an object counts as {};
 * the key keeps its place if present, else is appended; the rest is
 * re-serialized with an_json_dumps. *span receives the state text's place
 * in the result (len 0: not known, because the params themselves hold the
 * marker string merge splices with; do not cache such a text), *len (may
 * be NULL) its length. Returns a malloc'd text (caller frees) or NULL
 * (ENOMEM, or state_text is not JSON and could not be placed). */
char *an_model_params_merge(const char *model_params, const char *state_text,
                            an_state_span *span, size_t *len);

/* The same result from a text whose state span is known (a cache hit):
 * model_params[0, span.off) + state_text + model_params[span.off+span.len,
 * end). */
char *an_model_params_splice(const char *model_params, an_state_span old,
                             const char *state_text, an_state_span *span,
                             size_t *len);

#ifdef __cplusplus
}
#endif

#endif
