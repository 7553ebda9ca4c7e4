/*
 * service_entry.c: one item from decoded entry to XACK. svc_intake decodes
 * an entry (a poison one gets its dead-letter reason); svc_run_items
 * processes a run of items: the command results of each, the inference
 * results of all as one group (service_group.c), the dead letters, then
 * one publish.
 */
#include "an_service.h"
#include "service_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_log.h"

/* Frees what the item owns and zeroes it (a zeroed item is fine). */
void svc_item_clear(item *it)
{
    for (size_t k = 0; k < it->nouts; k++)
        free(it->outs[k].body);
    free(it->outs);
    free(it->inf);
    free(it->cache_json);
    an_batch_free(it->b);
    memset(it, 0, sizeof *it);
}

/* Creates the consumer group unless it exists (a "created" line when it
 * did not). 0 or the streams code, logged. */
int svc_ensure_group(an_service *s)
{
    bool created = false;
    int rc = an_group_create(s->redis, s->cfg->streams.input, s->cfg->streams.group, "0",
                             &created);
    if (rc) {
        an_warn("cannot create group %s on %s: %s", s->cfg->streams.group,
                s->cfg->streams.input, an_redis_errstr(s->redis));
        return rc;
    }
    if (created)
        an_info("created consumer group %s on stream %s", s->cfg->streams.group,
                s->cfg->streams.input);
    return 0;
}

/* Decodes an entry into it. Returns 0 or AN_ENOMEM; an entry that does not
 * decode (poison) comes back with oc INF_POISON, its reason and reason
 * class set and no batch. */
int svc_intake(an_service *s, const an_entry *e, item *it)
{
    memset(it, 0, sizeof *it);
    it->e = e;
    int rc = an_batch_decode(e->fields, e->nfields, &s->limits, &it->b, it->reason,
                             sizeof it->reason);
    if (rc == AN_EINVAL || rc == AN_ERANGE) {
        it->oc = INF_POISON;
        it->reason_class = rc == AN_ERANGE ? SVC_DL_TOO_LARGE : SVC_DL_MALFORMED;
        return 0;
    }
    if (rc)
        return rc;
    if (it->b->n_inference) {
        it->inf = malloc(it->b->n_inference * sizeof *it->inf);
        if (!it->inf) {
            svc_item_clear(it);
            return AN_ENOMEM;
        }
        for (size_t i = 0; i < it->b->n; i++)
            if (it->b->results[i].kind == AN_RES_INFERENCE)
                it->inf[it->n++] = &it->b->results[i].u.inf;
        it->first = it->inf[0]->rowid;
        it->last = it->inf[it->n - 1]->rowid;
    }
    return 0;
}

/* The run of items svc_run_items works on (its steps' context). */
typedef struct run {
    item *items;
    size_t n;
} run;

/* The PostgreSQL part of a run, retried as a whole (svc_retry): the
 * commands of each item (only when n == 1), then the inference results of
 * all as one group. Each try starts from the items as they were decoded. */
static int process_items(an_service *s, void *ctx)
{
    run *r = ctx;
    item *items = r->items;
    size_t n = r->n;
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        for (size_t k = 0; k < it->nouts; k++)
            free(it->outs[k].body);
        it->nouts = 0;
        it->published = 0;
        it->oc = INF_NONE;
        int rc = svc_item_commands(s, it);
        if (rc)
            return rc;
    }
    /* the items with inference results, as one group: all of them or none
     * (a batch is never empty, and only entries without command results
     * join a group of several: take_entries, svc_prefetch) */
    size_t ng = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].n)
            ng++;
    assert(ng == 0 || ng == n);
    if (ng) {
        item *g = items;
        int rc = svc_scorer_run(s->scorer, g, ng);
        if (rc)
            return rc;
    }
    return 0;
}

/* The publish step of a run (svc_retry). */
static int publish_step(an_service *s, void *ctx)
{
    run *r = ctx;
    return svc_publish_items(s, r->items, r->n);
}

/* Dead-letters the run's poison items. 0 or svc_complete_in_redis's code. */
static int dead_letter_poison(an_service *s, item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        if (it->oc == INF_POISON && !it->done) {
            int rc = svc_complete_in_redis(s, it->e, it->reason, it->reason_class);
            if (rc)
                return rc;
            it->done = true;
        }
    }
    return 0;
}

/* NOGROUP while completing: the group (and our PEL) is gone, so the
 * recreated group delivers the entries again; none is ours to defer. */
static void group_lost(an_service *s, item *items, size_t n)
{
    an_error("group %s on %s vanished while entries were in hand (Redis restarted "
             "without persistence?); recreating it, they will be delivered again",
             s->cfg->streams.group, s->cfg->streams.input);
    svc_ensure_group(s);
    for (size_t i = 0; i < n; i++)
        items[i].oc = INF_NONE;
}

int svc_run_items(an_service *s, item *items, size_t n)
{
    run r = {items, n};
    char what[128];
    snprintf(what, sizeof what, "processing entry %s%s", items[0].e->id,
             n > 1 ? " and the rest of its group" : "");
    svc_step st = {.run = process_items, .ctx = &r, .what = what, .database = true};
    int rc = svc_retry(s, &st);
    if (!rc)
        rc = dead_letter_poison(s, items, n);
    if (!rc) {
        /* Committed: only the publish is left, retried alone (a redo of the
         * transaction would find every entry a duplicate and say so at
         * length). Any failure but NOGROUP is retried: a refusal such as
         * WRONGTYPE on the output or a params key pauses until it is
         * repaired. */
        snprintf(what, sizeof what, "publishing %zu entries", n);
        st = (svc_step){.run = publish_step, .ctx = &r, .what = what};
        rc = svc_retry(s, &st);
    }
    if (rc == AN_ENOGROUP) {
        group_lost(s, items, n);
        return 0;
    }
    if (rc)
        return rc;
    svc_note_up(s, AN_SERVER_REDIS, true);
    svc_note_up(s, AN_SERVER_POSTGRES, true);
    if (s->cfg->debugging.profiling || an_log_get_level() == AN_LOG_DEBUG)
        for (size_t i = 0; i < n; i++)
            if (!items[i].n)
                an_info("{TAG:ANOM.BATCH.CMD.DONE} model=%s; numItems=%zu", items[i].b->model,
                        items[i].b->n);
    return 0;
}
