/*
 * service_window.h: the database part of the helper's sample source in the
 * group scorer, answered from the sample windows (an_sample_window.h) when
 * they provably match the locked row (service_window.c). Works on the
 * scorer's deps. Not a public header.
 */
#ifndef AN_SERVICE_WINDOW_H
#define AN_SERVICE_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service_group.h"

/* The windows' store per [anomaly_likelihood] sample_window_bytes (0: a
 * store that keeps nothing), each window up to hcfg's sample_size rows.
 * NULL: out of memory. The caller owns it (an_sample_window_free). */
an_sample_window *svc_window_new(const an_config *cfg, const an_helper_config *hcfg);

/* The newest n processed rows of uid below `before` (ascending, out has
 * room for n), for a metric locked with watermark wm. *usable (in/out):
 * whether uid's window may be used in this group (the state cache hit);
 * the window is used when it also has watermark wm. Otherwise the
 * database is read (sample_size rows when windows are on, into *buf, a
 * scratch buffer this allocates once and the caller frees, rebuilding
 * uid's window, which sets *usable). The repository's code (0 /
 * AN_ETRANSIENT / ...), its message in an_repo_errstr. */
int svc_window_tail(const svc_scorer_deps *d, an_sample **buf, const char *uid, int64_t wm,
                    bool *usable, int64_t before, size_t n, an_sample *out, size_t *got);

/* The processed-row count of uid below `before`, from the window when
 * usable and known, else from the database. Same codes. */
int svc_window_count(const svc_scorer_deps *d, const char *uid, int64_t wm, bool usable,
                     int64_t before, int64_t *count);

/* After the group's COMMIT is confirmed: uid (locked with watermark
 * old_wm) now has rows[0..n) scored too and watermark new_wm. Appended to
 * its window when usable, else its window is dropped. */
void svc_window_commit(const svc_scorer_deps *d, const char *uid, bool usable, int64_t old_wm,
                       const an_sample *rows, size_t n, int64_t new_wm);

#endif
