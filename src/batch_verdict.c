/*
 * batch_verdict.c: the decision on one inference batch (an_batch_verdict.h).
 */
#include "an_batch_verdict.h"

#include "an_repo.h"

an_readiness an_batch_readiness(int64_t first, int status, int64_t wm, int pred)
{
    if (status == AN_METRIC_CREATE_PENDING)
        return AN_WAIT_DEFINE;
    if (first <= wm + 1 || pred != AN_ROW_UNPROCESSED)
        return AN_READY;
    return AN_WAIT_PREDECESSOR;
}

bool an_rowids_contiguous(const an_inference_result *const *inf, size_t n)
{
    if (inf[0]->rowid < 1)
        return false;
    for (size_t i = 1; i < n; i++)
        if (inf[i - 1]->rowid == INT64_MAX || inf[i]->rowid != inf[i - 1]->rowid + 1)
            return false;
    return true;
}

int64_t an_batch_read_last(int64_t first, int64_t last, size_t n)
{
    if (last < first || first > INT64_MAX - (int64_t)n)
        return last;
    int64_t span = first + (int64_t)n - 1;
    return last < span ? last : span;
}

an_verdict an_batch_verdict(const an_inference_result *const *inf, size_t n, bool force,
                            int status, int64_t wm, int pred)
{
    int64_t first = inf[0]->rowid, last = inf[n - 1]->rowid;
    an_readiness r = an_batch_readiness(first, status, wm, pred);
    if (r == AN_WAIT_DEFINE && !force)
        return AN_V_WAIT;
    if (status != AN_METRIC_ACTIVE)
        return AN_V_INACTIVE;
    if (!an_rowids_contiguous(inf, n))
        return AN_V_INVALID;
    if (last <= wm)
        return AN_V_DUPLICATE;
    if (first <= wm)
        return AN_V_OVERLAP;
    if (r == AN_WAIT_PREDECESSOR)
        return force ? AN_V_SCORE_FORCED : AN_V_WAIT;
    return AN_V_SCORE;
}
