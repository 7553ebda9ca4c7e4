/*
 * service_window.c: the database part of the likelihood helper's sample
 * source in the group scorer, answered from the in-process sample windows
 * (an_sample_window.h) when they provably describe the database. It works
 * on the scorer's deps (service_group.h), not on the service.
 *
 * When a window may be used (the caller decides, per metric and group):
 *  - the state cache hit for the metric in this group: model_params, read
 *    under the row lock, is exactly the text this process last committed
 *    (which rules out another consumer's write, deleteModel + re-create and
 *    a restart), AND
 *  - the window's watermark equals metric.scored_rowid read under the lock
 *    (checked here on every lookup): every writer of processed rows moves
 *    the watermark, so no row was scored since the window was made, AND
 *  - the batch starts after that watermark (the group scores nothing else).
 * Or: the window was rebuilt in this very group from a read under the same
 * lock.
 *
 * A miss reads the newest sample_size processed rows (not only the n the
 * helper asked for) and puts them as the metric's window, watermark = the
 * one read under the lock: the database's content at that point, true
 * whether the group then commits or not. After a confirmed COMMIT the
 * group's scored rows are appended and the watermark advanced
 * (svc_window_commit); a metric whose window could not be trusted in the
 * group is dropped instead.
 */
#include "service_window.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_sample_window.h"

an_sample_window *svc_window_new(const an_config *cfg, const an_helper_config *hcfg)
{
    return an_sample_window_new(cfg->anomaly_likelihood.sample_window_bytes,
                                (size_t)hcfg->sample_size);
}

/* Whether windows are kept at all ([anomaly_likelihood] sample_window_bytes). */
static bool window_on(const svc_scorer_deps *d)
{
    return d->cfg->anomaly_likelihood.sample_window_bytes > 0;
}

int svc_window_tail(const svc_scorer_deps *d, an_sample **buf, const char *uid, int64_t wm,
                    bool *usable, int64_t before, size_t n, an_sample *out, size_t *got)
{
    if (*usable && an_sample_window_tail(d->sw, uid, wm, n, out, got))
        return 0;
    if (!window_on(d))
        return an_repo_processed_tail(d->repo, uid, before, n, out, got);
    an_sample_window_miss(d->sw);
    size_t size = (size_t)d->hcfg->sample_size;
    if (!*buf && !(*buf = malloc(size * sizeof **buf)))
        return an_repo_processed_tail(d->repo, uid, before, n, out, got);
    size_t all = 0;
    int rc = an_repo_processed_tail(d->repo, uid, before, size, *buf, &all);
    if (rc)
        return rc;
    size_t k = n < all ? n : all;
    memcpy(out, *buf + (all - k), k * sizeof *out);
    *got = k;
    /* fewer rows than asked: these are all of them, so the count is known */
    int64_t count = all < size ? (int64_t)all : -1;
    if (an_sample_window_put(d->sw, uid, *buf, all, count, wm) == 0 &&
        an_sample_window_has(d->sw, uid, wm))
        *usable = true;
    return 0;
}

int svc_window_count(const svc_scorer_deps *d, const char *uid, int64_t wm, bool usable,
                     int64_t before, int64_t *count)
{
    if (usable && an_sample_window_count(d->sw, uid, wm, count))
        return 0;
    if (window_on(d))
        an_sample_window_miss(d->sw);
    int rc = an_repo_processed_count(d->repo, uid, before, count);
    if (!rc && usable)
        an_sample_window_set_count(d->sw, uid, wm, *count);
    return rc;
}

void svc_window_commit(const svc_scorer_deps *d, const char *uid, bool usable, int64_t old_wm,
                       const an_sample *rows, size_t n, int64_t new_wm)
{
    if (!usable || an_sample_window_append(d->sw, uid, old_wm, rows, n, new_wm) != 0)
        an_sample_window_forget(d->sw, uid);
}
