/*
 * service_take.c: a page of entries just read or claimed. Every entry's
 * processing attempt is counted before it is decoded (lua/attempts.lua);
 * consecutive inference-only entries form a group, anything else goes
 * alone; while a group's write is in flight the next one is decoded
 * (svc_prefetch).
 */
#include "an_service.h"
#include "service_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_log.h"

/* An entry that may join a group (or be decoded ahead) if it decodes to
 * inference results only: its payload is present, it is not waiting in
 * our deferral list, and its attempt was counted with its page (count > 0:
 * no earlier attempt of it was left unfinished). */
static bool groupable(const an_service *s, const an_entry *e, int64_t count)
{
    return count > 0 && !e->nil && !is_deferred(s, e->id);
}

/* Whether a group holding `bytes` decoded bytes may take the item too
 * ([streams] max_group_decoded_bytes; the first item of a group is always
 * taken). */
static bool group_has_room(const an_service *s, size_t bytes, const item *it)
{
    return bytes + it->b->decoded_bytes <= s->cfg->streams.max_group_decoded_bytes;
}

void svc_prefetch(an_service *s)
{
    prefetch *p = s->pf;
    if (!p || p->done)
        return;
    p->done = true;
    size_t bytes = 0;
    while (p->from + p->k < p->n && p->rows < AN_SERVICE_GROUP_MAX_ROWS &&
           groupable(s, &p->v[p->from + p->k], p->count[p->from + p->k])) {
        item *it = &p->items[p->k];
        if (intake(s, &p->v[p->from + p->k], it) != 0 || it->b->n_command != 0 ||
            (p->k > 0 && !group_has_room(s, bytes, it))) {
            item_clear(it);   /* take_entries deals with it in its turn */
            break;
        }
        p->rows += it->n;
        bytes += it->b->decoded_bytes;
        p->k++;
    }
}

/* Counts a processing attempt of each entry of v[0..n) that is processed
 * here (payload present, not in our deferral list), in one call, before
 * any of them is decoded: an entry that kills its consumer while it is
 * decoded or processed (out of memory, a crash) shows as an unfinished
 * attempt, whoever meets it next. count[i] = its attempt number and
 * open[i] = true; an entry with an unfinished earlier attempt is not
 * counted here (count[i] = 0): it is counted and processed alone
 * (begin_one), so that the one that crashed does not take others with it. */
static int begin_page(an_service *s, const an_entry *v, size_t n, int64_t *count, bool *open)
{
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    int64_t *cnt = malloc((n ? n : 1) * sizeof *cnt);
    int rc = AN_ENOMEM;
    if (!ids || !idx || !cnt)
        goto out;
    size_t na = 0;
    for (size_t i = 0; i < n; i++)
        if (!v[i].nil && !is_deferred(s, v[i].id)) {
            idx[na] = i;
            ids[na++] = v[i].id;
        }
    rc = an_attempts_begin_page(s->redis, s->cfg->streams.input, ids, na, cnt);
    if (rc) {
        an_warn("cannot count processing attempts: %s", an_redis_errstr(s->redis));
        goto out;
    }
    for (size_t k = 0; k < na; k++) {
        count[idx[k]] = cnt[k];
        open[idx[k]] = cnt[k] > 0;
        if (cnt[k] == 0)
            an_warn("entry %s: an earlier attempt did not complete; processing it alone",
                    ids[k]);
    }
out:
    free(ids);
    free(idx);
    free(cnt);
    return rc;
}

/* Counts one attempt of e alone: *count is its number. */
int begin_one(an_service *s, const an_entry *e, int64_t *count)
{
    const char *ids[] = {e->id};
    bool split = false;
    int rc = an_attempts_begin(s->redis, s->cfg->streams.input, ids, 1, false, count, &split);
    if (rc)
        an_warn("cannot count a processing attempt of entry %s: %s", e->id,
                an_redis_errstr(s->redis));
    return rc;
}

/* begin_page (e == NULL) or begin_one (e) with in-process retries of
 * Redis failures, as run_items_retrying: a Redis blip does not leave the
 * page to wait claim_idle_ms, a lasting one (or a refusal such as
 * WRONGTYPE on the attempts hash) pauses (svc_failed). AN_ETRANSIENT only
 * when stopping; AN_ENOGROUP (NOGROUP) and local errors are returned. */
static int begin_retrying(an_service *s, const an_entry *v, size_t n, int64_t *count,
                          bool *open, const an_entry *e)
{
    for (;;) {
        int rc = e ? begin_one(s, e, count) : begin_page(s, v, n, count, open);
        if (rc == 0) {
            svc_succeeded(s);
            return 0;
        }
        if (rc != AN_ETRANSIENT && rc != AN_EENV && rc != AN_EREDIS)
            return rc;
        svc_failed(s, rc == AN_EREDIS ? AN_EENV : rc, false, "counting processing attempts");
        if (!svc_wait(s))
            return AN_ETRANSIENT;
    }
}

/* Ends, without completing them, the attempts of v[i] with open[i]: entries
 * left pending on purpose (deferred, a stop, an error to retry later), so
 * that waiting and restarts never count as failures. A failure here only
 * leaves a count one too high (logged). */
void end_open(an_service *s, const an_entry *v, size_t n, const bool *open)
{
    const char **ids = malloc((n ? n : 1) * sizeof *ids);
    size_t k = 0;
    if (!ids) {
        an_error("out of memory ending processing attempts");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (open[i])
            ids[k++] = v[i].id;
    if (k && an_attempts_end(s->redis, s->cfg->streams.input, ids, k))
        an_warn("cannot end %zu processing attempts (%s); each stays counted once", k,
                an_redis_errstr(s->redis));
    free(ids);
}

/* Dead-letters e when its attempt number is over max_deliveries (before
 * it is decoded). *gone: it was (or another consumer has it now). */
int over_attempts(an_service *s, const an_entry *e, int64_t count, bool *gone)
{
    *gone = false;
    if (count <= s->cfg->streams.max_deliveries)
        return 0;
    char reason[160];
    snprintf(reason, sizeof reason,
             "processing attempted %" PRId64 " times without completing, over "
             "max_deliveries (%d)", count, s->cfg->streams.max_deliveries);
    int rc = complete_in_redis(s, e, reason, SVC_DL_ATTEMPTS);
    *gone = !rc;
    return rc;
}

/* Handles entries just read or claimed, in order: consecutive
 * inference-only entries go as one group (up to AN_SERVICE_GROUP_MAX_ROWS
 * rows and [streams] max_group_decoded_bytes), anything else one by one.
 * While a group's write is in flight the next group is decoded
 * (svc_prefetch). Every entry's processing attempt is counted before it is
 * decoded (begin_page), and ended at the end if it neither completed nor
 * failed the process. */
int take_entries(an_service *s, const an_entry *v, size_t n)
{
    item *items = calloc(n ? n : 1, sizeof *items);
    prefetch pf = {.v = v, .n = n, .items = calloc(n ? n : 1, sizeof *items)};
    int64_t *count = calloc(n ? n : 1, sizeof *count);
    bool *open = calloc(n ? n : 1, sizeof *open);
    if (!items || !pf.items || !count || !open) {
        free(items);
        free(pf.items);
        free(count);
        free(open);
        return AN_ENOMEM;
    }
    pf.count = count;
    int rc = begin_retrying(s, v, n, count, open, NULL);
    size_t i = 0;
    while (i < n && !rc && !svc_stopping(s)) {
        const an_entry *e = &v[i];
        size_t k = 0;
        svc_heartbeat(s);
        if (pf.k > 0 && pf.from == i) {
            /* decoded during the previous group's write: the same group
             * the code below would form */
            item *t = items;
            items = pf.items;
            pf.items = t;
            k = pf.k;
            pf.k = 0;
        } else {
            if (is_deferred(s, e->id)) {   /* re-read from "0": already in hand */
                i++;
                continue;
            }
            if (e->nil) {
                /* Trimmed or deleted before we got to it: nothing to process. */
                rc = complete_in_redis(s, e, NULL, NULL);
                i++;
                continue;
            }
            bool alone = count[i] == 0;   /* an earlier attempt did not complete */
            if (alone) {
                rc = begin_retrying(s, NULL, 0, &count[i], NULL, e);
                if (rc)
                    break;
                open[i] = true;
            }
            bool gone = false;
            rc = over_attempts(s, e, count[i], &gone);
            if (rc || gone) {
                open[i] = open[i] && !gone;
                i++;
                continue;
            }
            int ir = intake(s, e, &items[0]);
            if (ir == 1) {
                rc = complete_in_redis(s, e, items[0].reason, items[0].reason_class);
                open[i] = open[i] && rc != 0;
                item_clear(&items[0]);
                i++;
                continue;
            }
            if (ir) {
                rc = ir;
                break;
            }
            k = 1;
            size_t rows = items[0].n, bytes = items[0].b->decoded_bytes;
            /* extend the group with the following plain inference entries,
             * up to AN_SERVICE_GROUP_MAX_ROWS rows (catch-up batches are 1440
             * rows: memory stays bounded, the commit is amortized anyway).
             * Only entries counted by begin_page (no earlier unfinished
             * attempt) are grouped. */
            while (!alone && items[0].b->n_command == 0 && i + k < n &&
                   rows < AN_SERVICE_GROUP_MAX_ROWS && groupable(s, &v[i + k], count[i + k])) {
                int r2 = intake(s, &v[i + k], &items[k]);
                if (r2 == 0 && items[k].b->n_command == 0 &&
                    group_has_room(s, bytes, &items[k])) {
                    rows += items[k].n;
                    bytes += items[k].b->decoded_bytes;
                    k++;
                    continue;
                }
                item_clear(&items[k]);
                if (r2 == AN_ENOMEM)
                    rc = r2;
                break;
            }
        }
        if (!rc) {
            pf.from = i + k;
            pf.rows = 0;
            pf.done = false;
            s->pf = &pf;
            rc = run_items_retrying(s, items, k);
            s->pf = NULL;
            for (size_t j = 0; j < k; j++) {
                if (items[j].done)
                    open[i + j] = false;
                else if (!rc && items[j].oc == INF_DEFERRED)
                    defer_add(s, &items[j]);
            }
        }
        for (size_t j = 0; j < k; j++)
            item_clear(&items[j]);
        i += k;
    }
    end_open(s, v, n, open);
    for (size_t j = 0; j < pf.k; j++)
        item_clear(&pf.items[j]);
    free(pf.items);
    free(items);
    free(count);
    free(open);
    return rc;
}
