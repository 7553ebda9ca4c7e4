/*
 * service_entry.c: one item from decoded entry to XACK. intake decodes an
 * entry (a poison one gets its dead-letter reason); run_items processes a
 * run of items: the command results of each, the inference results of all
 * as one group (service_group.c), the dead letters, then one publish.
 */
#include "an_service.h"
#include "service_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_log.h"

void item_clear(item *it)
{
    for (size_t k = 0; k < it->nouts; k++)
        free(it->outs[k].body);
    free(it->outs);
    free(it->inf);
    free(it->cache_json);
    an_batch_free(it->b);
    memset(it, 0, sizeof *it);
}

int ensure_group(an_service *s)
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

/* Decodes an entry into it. Returns 0 (it->b set), 1 when the entry is
 * poison (it->reason set) or AN_ENOMEM. */
int intake(an_service *s, const an_entry *e, item *it)
{
    memset(it, 0, sizeof *it);
    it->e = e;
    int rc = an_batch_decode(e->fields, e->nfields, &s->limits, &it->b, it->reason,
                             sizeof it->reason);
    if (rc == AN_EINVAL || rc == AN_ERANGE) {
        it->reason_class = rc == AN_ERANGE ? SVC_DL_TOO_LARGE : SVC_DL_MALFORMED;
        return 1;
    }
    if (rc)
        return rc;
    if (it->b->n_inference) {
        it->inf = malloc(it->b->n_inference * sizeof *it->inf);
        if (!it->inf) {
            item_clear(it);
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

/* Processes items[0..n): the commands of each (only when n == 1), then the
 * inference results of all as one group, then one publish. Items come back
 * with oc INF_DEFERRED (keep them) or INF_POISON (dead-letter them).
 * Returns 0 or an error to retry the whole call with. */
static int run_items(an_service *s, item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        for (size_t k = 0; k < it->nouts; k++)
            free(it->outs[k].body);
        it->nouts = 0;
        it->published = 0;
        it->oc = INF_NONE;
        cmd_metric cm = {0};
        for (size_t r = 0; r < it->b->n; r++) {
            if (it->b->results[r].kind != AN_RES_COMMAND)
                continue;
            int rc = process_command(s, it, it->b->model, &it->b->results[r].u.cmd, &cm);
            if (rc) {
                an_metric_clear(&cm.m);
                return rc;
            }
        }
        an_metric_clear(&cm.m);
    }
    /* the items with inference results, as one group */
    size_t ng = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].n)
            ng++;
    if (ng) {
        item *g = items;
        item *tmp = NULL;
        if (ng != n) {   /* only possible for n == 1 callers; keep it general */
            tmp = malloc(ng * sizeof *tmp);
            if (!tmp)
                return AN_ENOMEM;
            for (size_t i = 0, j = 0; i < n; i++)
                if (items[i].n)
                    tmp[j++] = items[i];
            g = tmp;
        }
        int rc = svc_group_run(s, g, ng);
        if (tmp) {
            for (size_t i = 0, j = 0; i < n; i++)
                if (items[i].n)
                    items[i] = tmp[j++];
            free(tmp);
        }
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        if (it->oc == INF_POISON && !it->done) {
            int rc = complete_in_redis(s, it->e, it->reason, it->reason_class);
            if (rc)
                return rc;
            it->done = true;
        }
    }
    /* Committed: only the publish is left. Retry just that (a redo of the
     * transaction would find every entry a duplicate and say so at length).
     * Any failure but NOGROUP is retried: the rows are committed, the
     * publish is all that is left (a refusal such as WRONGTYPE on the
     * output or a params key pauses until it is repaired). */
    int rc;
    while ((rc = publish_items(s, items, n)) != 0 && rc != AN_ENOGROUP) {
        char what[64];
        snprintf(what, sizeof what, "publishing %zu entries", n);
        svc_failed(s, rc == AN_EREDIS ? AN_EENV : rc, false, what);
        if (!svc_wait(s))
            return AN_ETRANSIENT;
    }
    if (rc)
        return rc;
    svc_succeeded(s);
    if (s->cfg->debugging.profiling || an_log_get_level() == AN_LOG_DEBUG)
        for (size_t i = 0; i < n; i++)
            if (!items[i].n)
                an_info("{TAG:ANOM.BATCH.CMD.DONE} model=%s; numItems=%zu", items[i].b->model,
                        items[i].b->n);
    return 0;
}

/* run_items with in-process retries (so a server outage does not count
 * against the entries' attempts: svc_group_run gives them back). A fault
 * of the environment pauses (svc_failed) and every retry is then a probe;
 * the entries' own failures are retried too, their attempts counted, until
 * max_deliveries makes them dead letters. Returns 0, or AN_ETRANSIENT when
 * a stop was requested before it could complete. */
int run_items_retrying(an_service *s, item *items, size_t n)
{
    for (;;) {
        int rc = run_items(s, items, n);
        if (rc == 0) {
            svc_succeeded(s);
            svc_note_up(s, AN_SERVER_REDIS, true);
            svc_note_up(s, AN_SERVER_POSTGRES, true);
            return 0;
        }
        if (rc == AN_ENOGROUP) {
            /* NOGROUP while completing: the group (and our PEL) is gone, so
             * the recreated group delivers the entries again. */
            an_error("group %s on %s vanished while entries were in hand (Redis restarted "
                     "without persistence?); recreating it, they will be delivered again",
                     s->cfg->streams.group, s->cfg->streams.input);
            ensure_group(s);
            for (size_t i = 0; i < n; i++)
                items[i].oc = INF_NONE;   /* not ours to defer any more */
            return 0;
        }
        char what[128];
        snprintf(what, sizeof what, "processing entry %s%s", items[0].e->id,
                 n > 1 ? " and the rest of its group" : "");
        bool pg = an_repo_last_rc(s->repo) != 0;
        svc_failed(s, rc, pg, what);
        an_repo_rollback(s->repo);
        if (!svc_wait(s))
            return AN_ETRANSIENT;
        /* A paused PostgreSQL fault is probed on a new session: a repair
         * may be a session default (default_transaction_read_only) or a
         * server switched behind the address. */
        if (pg && rc == AN_EENV)
            an_repo_reconnect(s->repo);
        else
            an_repo_connect(s->repo);
    }
}
