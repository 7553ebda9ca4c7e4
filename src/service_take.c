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
 * inference results only: its attempt was counted with its page (count >
 * 0: no earlier attempt of it was left unfinished) and its payload is
 * present. begin_page counts no entry that the caller holds (its deferral
 * list), so count > 0 also says the entry is not in hand already. */
static bool groupable(const an_service *s, const an_entry *e, int64_t count)
{
    (void)s;
    return count > 0 && !e->nil;
}

/* Whether a group holding `bytes` decoded bytes may take the item too
 * ([streams] max_group_decoded_bytes; the first item of a group is always
 * taken). */
static bool group_has_room(const an_service *s, size_t bytes, const item *it)
{
    return bytes + it->b->decoded_bytes <= s->cfg->streams.max_group_decoded_bytes;
}

void svc_prefetch(void *ctx)
{
    an_service *s = ctx;
    prefetch *p = s->pf;
    if (!p || p->done)
        return;
    p->done = true;
    size_t bytes = 0;
    while (p->from + p->k < p->n && p->rows < AN_SERVICE_GROUP_MAX_ROWS &&
           groupable(s, &p->v[p->from + p->k], p->count[p->from + p->k])) {
        item *it = &p->items[p->k];
        if (svc_intake(s, &p->v[p->from + p->k], it) != 0 || it->oc == INF_POISON ||
            it->b->n_command != 0 ||
            (p->k > 0 && !group_has_room(s, bytes, it))) {
            svc_item_clear(it);   /* take_entries deals with it in its turn */
            break;
        }
        p->rows += it->n;
        bytes += it->b->decoded_bytes;
        p->k++;
    }
}

/* A page of entries in the works: what take_entries and its steps share. */
typedef struct page {
    const an_entry *v;
    size_t n;
    const svc_holder *h;
    int64_t *count;   /* [n] attempt numbers; 0: not counted (yet) */
    bool *open;       /* [n] attempt counted and not finished */
    item *items;      /* room for n: the group in the works */
    prefetch pf;      /* the next group, decoded during this one's write */
} page;

/* Counts a processing attempt of each entry of the page that is processed
 * here (payload present, not held by the caller), in one call, before any
 * of them is decoded: an entry that kills its consumer while it is decoded
 * or processed (out of memory, a crash) shows as an unfinished attempt,
 * whoever meets it next. count[i] = its attempt number and open[i] = true;
 * an entry with an unfinished earlier attempt is not counted here
 * (count[i] = 0): it is counted and processed alone (begin_one), so that
 * the one that crashed does not take others with it. 0, AN_ENOMEM or the
 * streams code. */
static int begin_page(an_service *s, void *ctx)
{
    page *p = ctx;
    size_t n = p->n;
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    int64_t *cnt = malloc((n ? n : 1) * sizeof *cnt);
    int rc = AN_ENOMEM;
    if (!ids || !idx || !cnt)
        goto out;
    size_t na = 0;
    for (size_t i = 0; i < n; i++)
        if (!p->v[i].nil && !p->h->holds(s, p->v[i].id)) {
            idx[na] = i;
            ids[na++] = p->v[i].id;
        }
    rc = an_attempts_begin_page(s->redis, s->cfg->streams.input, ids, na, cnt);
    if (rc) {
        an_warn("cannot count processing attempts: %s", an_redis_errstr(s->redis));
        goto out;
    }
    for (size_t k = 0; k < na; k++) {
        p->count[idx[k]] = cnt[k];
        p->open[idx[k]] = cnt[k] > 0;
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

/* One entry whose attempt is counted alone (begin_one's context). */
typedef struct one {
    const an_entry *e;
    int64_t *count;   /* out: its attempt number */
} one;

/* Counts one attempt of an entry alone. 0 or the streams code. */
static int begin_one(an_service *s, void *ctx)
{
    one *o = ctx;
    const char *ids[] = {o->e->id};
    bool split = false;
    int rc = an_attempts_begin(s->redis, s->cfg->streams.input, ids, 1, false, o->count,
                               &split);
    if (rc)
        an_warn("cannot count a processing attempt of entry %s: %s", o->e->id,
                an_redis_errstr(s->redis));
    return rc;
}

/* Counting attempts, retried in place (svc_retry) on Redis failures only:
 * a Redis blip does not leave the page to wait claim_idle_ms, a lasting
 * one (or a refusal such as WRONGTYPE on the attempts hash) pauses.
 * AN_ETRANSIENT only when stopping; AN_ENOGROUP and local errors are
 * returned. */
static int begin_retrying(an_service *s, int (*begin)(an_service *, void *), void *ctx)
{
    svc_step st = {.run = begin, .ctx = ctx, .what = "counting processing attempts",
                   .servers_only = true};
    return svc_retry(s, &st);
}

/* Ends, without completing them, the attempts of v[i] with open[i]: entries
 * left pending on purpose (deferred, a stop, an error to retry later), so
 * that waiting and restarts never count as failures. A failure here only
 * leaves a count one too high (logged). */
static void end_open(an_service *s, const an_entry *v, size_t n, const bool *open)
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
static int over_attempts(an_service *s, const an_entry *e, int64_t count, bool *gone)
{
    *gone = false;
    if (count <= s->cfg->streams.max_deliveries)
        return 0;
    char reason[160];
    snprintf(reason, sizeof reason,
             "processing attempted %" PRId64 " times without completing, over "
             "max_deliveries (%d)", count, s->cfg->streams.max_deliveries);
    int rc = svc_complete_in_redis(s, e, reason, SVC_DL_ATTEMPTS);
    *gone = !rc;
    return rc;
}

/* Allocates the page's arrays. 0 or AN_ENOMEM. */
static int page_open(page *p, const an_entry *v, size_t n, const svc_holder *h)
{
    size_t m = n ? n : 1;
    *p = (page){.v = v, .n = n, .h = h};
    p->items = calloc(m, sizeof *p->items);
    p->count = calloc(m, sizeof *p->count);
    p->open = calloc(m, sizeof *p->open);
    p->pf = (prefetch){.v = v, .n = n, .count = p->count,
                       .items = calloc(m, sizeof *p->pf.items)};
    return p->items && p->count && p->open && p->pf.items ? 0 : AN_ENOMEM;
}

/* Ends the attempts left open (when the page got that far) and frees the
 * page. */
static void page_close(an_service *s, page *p, bool end)
{
    if (end)
        end_open(s, p->v, p->n, p->open);
    for (size_t j = 0; j < p->pf.k; j++)
        svc_item_clear(&p->pf.items[j]);
    free(p->pf.items);
    free(p->items);
    free(p->count);
    free(p->open);
}

/* Extends the group items[0..1) with the following plain inference
 * entries of the page, up to AN_SERVICE_GROUP_MAX_ROWS rows (catch-up
 * batches are 1440 rows: memory stays bounded, the commit is amortized
 * anyway) and [streams] max_group_decoded_bytes. Only entries counted by
 * begin_page (no earlier unfinished attempt) are grouped. *k: the group's
 * size. 0 or AN_ENOMEM. */
static int extend_group(an_service *s, page *p, size_t i, size_t *k)
{
    item *items = p->items;
    size_t rows = items[0].n, bytes = items[0].b->decoded_bytes;
    *k = 1;
    while (items[0].b->n_command == 0 && i + *k < p->n && rows < AN_SERVICE_GROUP_MAX_ROWS &&
           groupable(s, &p->v[i + *k], p->count[i + *k])) {
        item *it = &items[*k];
        int rc = svc_intake(s, &p->v[i + *k], it);
        if (rc == 0 && it->oc != INF_POISON && it->b->n_command == 0 &&
            group_has_room(s, bytes, it)) {
            rows += it->n;
            bytes += it->b->decoded_bytes;
            (*k)++;
            continue;
        }
        svc_item_clear(it);
        return rc;   /* 0: it starts the next group */
    }
    return 0;
}

/* Forms the group that starts at entry i (decoded into p->items[0..*k)),
 * or deals with entry i itself (*k = 0): one held by the caller is
 * skipped; one whose payload is gone is acked, one over max_deliveries or
 * that does not decode is dead-lettered. An entry with an unfinished
 * earlier attempt is counted and goes alone. 0 or an error that ends the
 * page. */
static int form_group(an_service *s, page *p, size_t i, size_t *k)
{
    const an_entry *e = &p->v[i];
    *k = 0;
    if (p->h->holds(s, e->id))   /* re-read from "0": already in hand */
        return 0;
    if (e->nil)   /* trimmed or deleted before we got to it: nothing to process */
        return svc_complete_in_redis(s, e, NULL, NULL);
    bool alone = p->count[i] == 0;   /* an earlier attempt did not complete */
    if (alone) {
        one o = {e, &p->count[i]};
        int rc = begin_retrying(s, begin_one, &o);
        if (rc)
            return rc;
        p->open[i] = true;
    }
    bool gone = false;
    int rc = over_attempts(s, e, p->count[i], &gone);
    if (rc || gone) {
        p->open[i] = p->open[i] && !gone;
        return rc;
    }
    rc = svc_intake(s, e, &p->items[0]);
    if (rc)
        return rc;
    if (p->items[0].oc == INF_POISON) {
        rc = svc_complete_in_redis(s, e, p->items[0].reason, p->items[0].reason_class);
        p->open[i] = p->open[i] && rc != 0;
        svc_item_clear(&p->items[0]);
        return rc;
    }
    if (alone) {
        *k = 1;
        return 0;
    }
    return extend_group(s, p, i, k);
}

/* Takes the group svc_prefetch decoded during the previous group's write
 * (the same group form_group would form). Its size. */
static size_t take_prefetched(page *p)
{
    item *t = p->items;
    p->items = p->pf.items;
    p->pf.items = t;
    size_t k = p->pf.k;
    p->pf.k = 0;
    return k;
}

/* Runs the group p->items[0..k) that starts at entry i, the next one
 * decoded meanwhile; hands the entries that wait for a predecessor to the
 * holder. 0 or svc_run_items's error. */
static int run_group(an_service *s, page *p, size_t i, size_t k)
{
    p->pf.from = i + k;
    p->pf.rows = 0;
    p->pf.done = false;
    s->pf = &p->pf;
    int rc = svc_run_items(s, p->items, k);
    s->pf = NULL;
    for (size_t j = 0; j < k; j++) {
        if (p->items[j].done)
            p->open[i + j] = false;
        else if (!rc && p->items[j].oc == INF_DEFERRED)
            p->h->hold(s, &p->items[j]);
    }
    return rc;
}

int take_entries(an_service *s, const an_entry *v, size_t n, const svc_holder *h)
{
    page p;
    if (page_open(&p, v, n, h)) {
        page_close(s, &p, false);
        return AN_ENOMEM;
    }
    int rc = begin_retrying(s, begin_page, &p);
    size_t i = 0;
    while (i < n && !rc && !svc_stopping(s)) {
        size_t k = 0;
        svc_heartbeat(s);
        if (p.pf.k > 0 && p.pf.from == i)
            k = take_prefetched(&p);
        else
            rc = form_group(s, &p, i, &k);
        if (!rc && k)
            rc = run_group(s, &p, i, k);
        for (size_t j = 0; j < k; j++)
            svc_item_clear(&p.items[j]);
        i += k ? k : 1;
    }
    page_close(s, &p, true);
    return rc;
}

int svc_take_one(an_service *s, const an_entry *e, bool force, svc_one_result *res,
                 int64_t *wm)
{
    *res = SVC_ONE_FINISHED;
    int64_t count = 0;
    one o = {e, &count};
    int rc = begin_one(s, &o);   /* not retried: the entry waits in the caller's hands */
    if (rc)
        return rc;
    bool gone = false;
    rc = over_attempts(s, e, count, &gone);
    if (rc || gone)
        return rc;
    item it;
    rc = svc_intake(s, e, &it);
    if (!rc && it.oc == INF_POISON) {
        rc = svc_complete_in_redis(s, e, it.reason, it.reason_class);
        svc_item_clear(&it);
        return rc;
    }
    bool done = false;
    if (!rc) {
        it.force = force;
        rc = svc_run_items(s, &it, 1);
        if (!rc && it.oc == INF_DEFERRED) {
            *wm = it.seen_wm;
            *res = SVC_ONE_WAITING;
        }
        done = it.done;
        svc_item_clear(&it);
    }
    if (!done) {
        bool open = true;
        end_open(s, e, 1, &open);
    }
    return rc;
}
