/*
 * service_publish.c: how an entry leaves the service in Redis. A finished
 * group (its messages encoded into its items, service_item.c) is published,
 * its params hashes refreshed and its entries XACKed in one atomic call
 * (svc_publish_items, lua/publish_many.lua); a poison entry goes to the
 * dead-letter stream with its reason, and a trimmed one is acked
 * (svc_complete_in_redis).
 */
#include "an_service.h"
#include "service_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_log.h"

/* Most messages, and bytes of bodies, one publish script carries. A flood
 * of command results (up to the decoder's cap on results per entry) goes
 * out in several calls ahead of the acking one, so no script runs long
 * enough for Redis to answer BUSY to everyone else (lua-time-limit, 5 s;
 * 1000 XADDs take a few ms). */
#define PUBLISH_CHUNK_MSGS 1000
#define PUBLISH_CHUNK_BYTES ((size_t)8 << 20)

/* Publishes the head of it's messages in chunks, without the XACK, until
 * what is left fits in one call. An entry another consumer took over
 * meanwhile is left to it (it->done). 0 or a code as an_publish_many. */
static int publish_chunks(an_service *s, item *it)
{
    for (;;) {
        size_t k = 0, bytes = 0;
        while (it->published + k < it->nouts && k < PUBLISH_CHUNK_MSGS &&
               bytes + it->outs[it->published + k].body_len <= PUBLISH_CHUNK_BYTES)
            bytes += it->outs[it->published + k++].body_len;
        if (k == 0)   /* one body over the byte bound goes alone */
            k = 1;
        if (it->published + k >= it->nouts)
            return 0;   /* the rest goes with the acking call */
        an_out_msg *msgs = calloc(k, sizeof *msgs);
        if (!msgs)
            return AN_ENOMEM;
        for (size_t j = 0; j < k; j++) {
            const out_item *o = &it->outs[it->published + j];
            msgs[j] = (an_out_msg){.data_type = o->data_type, .model = it->b->model,
                                   .rows = o->rows[0] ? o->rows : NULL,
                                   .encoding = s->cfg->streams.output_encoding,
                                   .body = o->body, .body_len = o->body_len};
        }
        an_publish_entry pe = {.entry_id = it->e->id, .msgs = msgs, .nmsgs = k};
        an_publish_group g = {
            .input = s->cfg->streams.input, .group = s->cfg->streams.group,
            .owner = s->consumer, .output = s->cfg->streams.output,
            .output_maxlen = s->cfg->streams.output_maxlen, .entries = &pe, .nentries = 1,
            .no_ack = true,
        };
        int status = 0;
        int rc = an_publish_many(s->redis, &g, &status);
        free(msgs);
        if (rc)
            return rc == AN_ETRANSIENT || rc == AN_ENOGROUP ? rc : AN_EREDIS;
        if (!status) {
            an_warn("entry %s was claimed by another consumer while its %zu messages were "
                    "published; it will be completed there", it->e->id, it->nouts);
            it->done = true;
            return 0;
        }
        it->published += k;
    }
}

/* Whether the item is published (and acked) by the group's publish call:
 * deferred and poison items are not, nor one already completed. */
static bool publishable(const item *it)
{
    return it->oc != INF_DEFERRED && it->oc != INF_POISON && !it->done;
}

/* The publish call of a group's publishable items: their entries, their
 * messages left after the chunks, and the params-hash keys of those that
 * carry a cache refresh (keys[k] is keybuf[k], malloc'd by
 * an_params_key). All arrays are owned and freed by publish_req_free. */
typedef struct publish_req {
    an_publish_entry *pe;
    an_out_msg *msgs;
    const char **keys;
    char **keybuf;
    int *status;
    item **pit;   /* the item of each entry */
    size_t ne, nk;
} publish_req;

static void publish_req_free(publish_req *r)
{
    free(r->pit);
    free(r->pe);
    free(r->msgs);
    free(r->keys);
    for (size_t i = 0; r->keybuf && i < r->nk; i++) /* keybuf[nk..] are NULL */
        free(r->keybuf[i]);
    free(r->keybuf);
    free(r->status);
}

/* Fills r for the publishable items of items[0..n) (ne of them, with nm
 * messages left). 0 or AN_ENOMEM. */
static int publish_req_build(an_service *s, item *items, size_t n, size_t ne, size_t nm,
                             publish_req *r)
{
    r->pe = calloc(ne, sizeof *r->pe);
    r->msgs = calloc(nm ? nm : 1, sizeof *r->msgs);
    r->keys = calloc(ne, sizeof *r->keys);
    r->keybuf = calloc(ne, sizeof *r->keybuf);
    r->status = calloc(ne, sizeof *r->status);
    r->pit = calloc(ne, sizeof *r->pit);
    if (!r->pe || !r->msgs || !r->keys || !r->keybuf || !r->status || !r->pit)
        return AN_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        if (!publishable(it))
            continue;
        r->pit[r->ne] = it;
        an_publish_entry *p = &r->pe[r->ne++];
        p->entry_id = it->e->id;
        p->msgs = r->msgs + m;
        p->nmsgs = it->nouts - it->published;
        for (size_t j = it->published; j < it->nouts; j++)
            r->msgs[m++] = (an_out_msg){
                .data_type = it->outs[j].data_type, .model = it->b->model,
                .rows = it->outs[j].rows[0] ? it->outs[j].rows : NULL,
                .encoding = s->cfg->streams.output_encoding,
                .body = it->outs[j].body, .body_len = it->outs[j].body_len};
        if (it->carries_cache) {
            if (!(r->keybuf[r->nk] = an_params_key(s->cfg->streams.params_prefix,
                                                   it->cache_uid)))
                return AN_ENOMEM;
            r->keys[r->nk] = r->keybuf[r->nk];
            p->key_index = ++r->nk;
            p->params_json = it->cache_json;
            p->watermark = it->cache_wm;
            p->source = it->cache_src;
        }
    }
    return 0;
}

/* After the publish call: every entry of r is finished here; those it
 * acked are counted with their outcome, the others were taken over. */
static void publish_account(an_service *s, const publish_req *r)
{
    for (size_t i = 0; i < r->ne; i++) {
        item *it = r->pit[i];
        it->done = true;
        if (r->status[i]) {
            an_outcome o = it->oc == INF_SCORED      ? AN_OUTCOME_SCORED
                           : it->oc == INF_DUPLICATE ? AN_OUTCOME_DUPLICATE
                           : it->oc == INF_NONE      ? AN_OUTCOME_COMMAND
                                                     : AN_OUTCOME_REJECTED;
            svc_note_done(s, o, r->pe[i].entry_id);
        } else {
            /* Claimed by another consumer while we worked: it will find the
             * watermark and publish what we could not. */
            an_warn("entry %s was claimed by another consumer before we could publish "
                    "it; it will be completed there", r->pe[i].entry_id);
        }
    }
}

/* Publishes, caches and acks every finished item of items[0..n) in one
 * atomic call (an item with more messages than a chunk publishes their
 * head first, publish_chunks). Deferred and poison items are not part of
 * it. */
int svc_publish_items(an_service *s, item *items, size_t n)
{
    size_t ne = 0, nm = 0;
    for (size_t i = 0; i < n; i++)
        if (publishable(&items[i])) {
            int rc = publish_chunks(s, &items[i]);
            if (rc)
                return rc;
        }
    for (size_t i = 0; i < n; i++)
        if (publishable(&items[i])) {
            ne++;
            nm += items[i].nouts - items[i].published;
        }
    if (ne == 0)
        return 0;
    publish_req r = {0};
    int rc = publish_req_build(s, items, n, ne, nm, &r);
    if (rc)
        goto out;
    an_publish_group g = {
        .input = s->cfg->streams.input, .group = s->cfg->streams.group,
        .owner = s->consumer, .output = s->cfg->streams.output,
        .output_maxlen = s->cfg->streams.output_maxlen, .keys = r.keys, .nkeys = r.nk,
        .entries = r.pe, .nentries = r.ne,
    };
    int64_t t0 = svc_now_us();
    rc = an_publish_many(s->redis, &g, r.status);
    if (rc) {
        rc = rc == AN_ETRANSIENT || rc == AN_ENOGROUP || rc == AN_EENV ? rc : AN_EREDIS;
        goto out;
    }
    an_metrics_observe(s->opts.metrics, AN_H_PUBLISH, (double)(svc_now_us() - t0) / 1e6);
    publish_account(s, &r);
out:
    publish_req_free(&r);
    return rc;
}

static int dead_letter(an_service *s, const an_entry *e, const char *reason,
                       const char *reason_class)
{
    an_dead_letter_req req = {
        .input = s->cfg->streams.input,
        .group = s->cfg->streams.group,
        .entry_id = e->id,
        .owner = s->consumer,
        .dead_letter = s->cfg->streams.dead_letter,
        .maxlen = s->cfg->streams.dead_letter_maxlen,
        .fields = e->fields,
        .nfields = e->nfields,
        .reason = reason,
        .deliveries = e->deliveries,
        .consumer = s->consumer,
    };
    char id[AN_ID_MAX];
    int rc = an_dead_letter(s->redis, &req, id);
    if (rc == AN_ESTATE) {
        an_warn("entry %s was claimed by another consumer before it could be "
                "dead-lettered; leaving it to them", e->id);
        return 0;
    }
    if (rc)
        return rc == AN_ETRANSIENT || rc == AN_ENOGROUP || rc == AN_EENV ? rc : AN_EREDIS;
    svc_note_dead_letter(s, reason_class);
    an_error("dead-lettered entry %s as %s in %s: %s", e->id, id, s->cfg->streams.dead_letter,
             reason);
    return 0;
}

/* XACK of a pending entry whose payload is gone (trimmed or deleted). */
static int ack_trimmed(an_service *s, const an_entry *e)
{
    const char *ids[] = {e->id};
    int rc = an_xack(s->redis, s->cfg->streams.input, s->cfg->streams.group, ids, 1, NULL);
    if (rc)
        return rc;
    s->st.trimmed++;
    svc_note_done(s, AN_OUTCOME_TRIMMED, NULL);
    an_warn("pending entry %s has no payload (trimmed or deleted); acked", e->id);
    return 0;
}

/* One completion of an entry in Redis (svc_retry's step). */
typedef struct completion {
    const an_entry *e;
    const char *reason;        /* NULL: the XACK of a trimmed entry */
    const char *reason_class;
} completion;

static int complete_once(an_service *s, void *ctx)
{
    const completion *c = ctx;
    return c->reason ? dead_letter(s, c->e, c->reason, c->reason_class) : ack_trimmed(s, c->e);
}

/* Completes one entry in Redis without processing it: its dead letter
 * (reason set) or the XACK of a trimmed entry (reason NULL), retried in
 * place (svc_retry) like the publish, so one Redis hiccup does not end the
 * page (the entries after it would wait claim_idle_ms for a takeover); a
 * lasting refusal pauses. Returns 0, AN_ENOGROUP (NOGROUP: the caller
 * recreates the group) or AN_ETRANSIENT when stopping. */
int svc_complete_in_redis(an_service *s, const an_entry *e, const char *reason,
                          const char *reason_class)
{
    completion c = {e, reason, reason_class};
    char what[128];
    snprintf(what, sizeof what, "%s entry %s", reason ? "dead-lettering" : "acking trimmed",
             e->id);
    svc_step st = {.run = complete_once, .ctx = &c, .what = what};
    return svc_retry(s, &st);
}
