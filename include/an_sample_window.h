/*
 * an_sample_window.h: per metric, the newest processed samples (what the
 * likelihood helper's tail read returns), kept in memory between groups.
 *
 * Why: past statistics_sample_size (8,640) processed rows, every refresh of
 * a live metric (every 24th batch) re-estimates over its newest 8,640
 * samples. Reading them from PostgreSQL cost more than the rest of a live
 * entry. A window holds the same samples, appended to as rows are scored.
 *
 * What a window asserts: "the processed rows of metric uid with rowid below
 * any batch that starts after watermark wm are exactly these (the newest
 * min(count, capacity) of them), and there are count of them (-1: unknown)".
 * The store does not decide when that is true; the caller checks it (the
 * service: the watermark read under the row lock equals wm AND the state
 * cache hit, i.e. model_params is the text this process last wrote) and
 * only ever puts what it read under the lock or committed.
 *
 * Bounded: the windows' bytes (samples allocated plus a fixed overhead per
 * metric, an_sample_window_entry_bytes) stay at or below max_bytes; the
 * least recently used windows are dropped first. A window's ring grows with
 * its samples, up to `capacity` samples. max_bytes 0 disables the store
 * (every find misses, puts are ignored). Not thread-safe; one per service.
 *
 * Pure: no I/O.
 */
#ifndef AN_SAMPLE_WINDOW_H
#define AN_SAMPLE_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_likelihood.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct an_sample_window an_sample_window;

/* Fixed bytes charged per window besides its samples (entry, uid, hash
 * slot), so the worst case of a store is
 * max_bytes >= n * (capacity * sizeof(an_sample) + this + strlen(uid)). */
#define AN_SAMPLE_WINDOW_OVERHEAD 128

/* A new store (caller owns; an_sample_window_free) keeping up to capacity
 * (>= 1) samples per metric in at most max_bytes. NULL on ENOMEM or
 * capacity 0. */
an_sample_window *an_sample_window_new(size_t max_bytes, size_t capacity);
/* NULL-safe. */
void an_sample_window_free(an_sample_window *w);

/* Whether uid has a window whose watermark is wm (marks it most recently
 * used). Counts nothing. */
bool an_sample_window_has(an_sample_window *w, const char *uid, int64_t wm);

/* The newest samples of uid's window with watermark wm, for a tail read of
 * n rows: when the window holds at least n samples, or all of the metric's
 * processed rows (count known and equal to what it holds), copies the
 * newest min(n, held) samples to out[0..*got) in ascending rowid order,
 * counts a hit and returns true. Otherwise returns false (out untouched;
 * the caller reads the database and counts a miss). */
bool an_sample_window_tail(an_sample_window *w, const char *uid, int64_t wm,
                           size_t n, an_sample *out, size_t *got);

/* The processed-row count of uid's window with watermark wm: true (and a
 * hit) when known. */
bool an_sample_window_count(an_sample_window *w, const char *uid, int64_t wm,
                            int64_t *count);

/* Counts a read the store could not answer. */
void an_sample_window_miss(an_sample_window *w);

/* Replaces uid's window: rows[0..n) (ascending rowids; only the newest
 * capacity are kept), count (the metric's processed rows in all, >= n, or
 * -1 unknown), watermark wm. May evict least recently used windows. 0, or
 * AN_ENOMEM / AN_EINVAL (then uid simply has no window). A window larger
 * than max_bytes is not kept (0). */
int an_sample_window_put(an_sample_window *w, const char *uid, const an_sample *rows,
                         size_t n, int64_t count, int64_t wm);

/* Sets the count of uid's window with watermark wm (no-op otherwise). */
void an_sample_window_set_count(an_sample_window *w, const char *uid, int64_t wm,
                                int64_t count);

/* Appends rows[0..n) (ascending, after the window's newest sample) to
 * uid's window whose watermark is old_wm, and moves its watermark to
 * new_wm (>= old_wm). Returns 0; on any mismatch (no such window, another
 * watermark, rows not after its newest) or AN_ENOMEM, uid's window is
 * dropped and the code returned (AN_ESTATE / AN_ENOMEM). */
int an_sample_window_append(an_sample_window *w, const char *uid, int64_t old_wm,
                            const an_sample *rows, size_t n, int64_t new_wm);

/* Drops uid's window, if any. */
void an_sample_window_forget(an_sample_window *w, const char *uid);

/* Windows held, their bytes (as charged against max_bytes), hits and
 * misses since creation. */
size_t an_sample_window_size(const an_sample_window *w);
size_t an_sample_window_bytes(const an_sample_window *w);
void an_sample_window_stats(const an_sample_window *w, int64_t *hits, int64_t *misses);

/* Bytes charged for a window of uid holding a ring of cap samples. */
size_t an_sample_window_entry_bytes(const char *uid, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
