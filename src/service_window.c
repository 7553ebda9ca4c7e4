/*
 * service_window.c: the database part of the likelihood helper's sample
 * source in the service, answered from the in-process sample windows
 * (an_sample_window.h) when they provably describe the database.
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
#include "service_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_sample_window.h"

int svc_window_init(an_service *s)
{
    s->sw = an_sample_window_new(s->cfg->anomaly_likelihood.sample_window_bytes,
                                 (size_t)s->hcfg.sample_size);
    return s->sw ? 0 : AN_ENOMEM;
}

void svc_window_free(an_service *s)
{
    an_sample_window_free(s->sw);
    s->sw = NULL;
    free(s->sw_buf);
    s->sw_buf = NULL;
}

/* Whether windows are kept at all ([anomaly_likelihood] sample_window_bytes). */
static bool window_on(const an_service *s)
{
    return s->cfg->anomaly_likelihood.sample_window_bytes > 0;
}

int svc_window_tail(an_service *s, const char *uid, int64_t wm, bool *usable,
                    int64_t before, size_t n, an_sample *out, size_t *got)
{
    if (*usable && an_sample_window_tail(s->sw, uid, wm, n, out, got))
        return 0;
    if (!window_on(s))
        return an_repo_processed_tail(s->repo, uid, before, n, out, got);
    an_sample_window_miss(s->sw);
    size_t size = (size_t)s->hcfg.sample_size;
    if (!s->sw_buf && !(s->sw_buf = malloc(size * sizeof *s->sw_buf)))
        return an_repo_processed_tail(s->repo, uid, before, n, out, got);
    size_t all = 0;
    int rc = an_repo_processed_tail(s->repo, uid, before, size, s->sw_buf, &all);
    if (rc)
        return rc;
    size_t k = n < all ? n : all;
    memcpy(out, s->sw_buf + (all - k), k * sizeof *out);
    *got = k;
    /* fewer rows than asked: these are all of them, so the count is known */
    int64_t count = all < size ? (int64_t)all : -1;
    if (an_sample_window_put(s->sw, uid, s->sw_buf, all, count, wm) == 0 &&
        an_sample_window_has(s->sw, uid, wm))
        *usable = true;
    return 0;
}

int svc_window_count(an_service *s, const char *uid, int64_t wm, bool usable,
                     int64_t before, int64_t *count)
{
    if (usable && an_sample_window_count(s->sw, uid, wm, count))
        return 0;
    if (window_on(s))
        an_sample_window_miss(s->sw);
    int rc = an_repo_processed_count(s->repo, uid, before, count);
    if (!rc && usable)
        an_sample_window_set_count(s->sw, uid, wm, *count);
    return rc;
}

void svc_window_commit(an_service *s, const char *uid, bool usable, int64_t old_wm,
                       const an_sample *rows, size_t n, int64_t new_wm)
{
    if (!usable || an_sample_window_append(s->sw, uid, old_wm, rows, n, new_wm) != 0)
        an_sample_window_forget(s->sw, uid);
}
