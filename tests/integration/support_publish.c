/*
 * support_publish.c: support_publish.h.
 */
#include "support_publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* Whether the request has what the script needs. */
static int valid(const sp_publish_req *q)
{
    if (!q || !q->input || !q->group || !q->entry_id ||
        (q->nmsgs > 0 && (!q->output || !q->msgs)) ||
        (q->params && (!q->params->key || !q->params->params_json)))
        return 0;
    return 1;
}

/* An integer reply, or a string holding one; -1 otherwise. */
static int reply_int(const redisReply *x)
{
    if (x->type == REDIS_REPLY_INTEGER)
        return (int)x->integer;
    if (x->type == REDIS_REPLY_STRING)
        return atoi(x->str);
    return -1;
}

/* Copies the reply's output ids into res. */
static int take_ids(const redisReply *ids, sp_publish_res *res)
{
    if (ids->elements == 0)
        return 0;
    res->ids = calloc(ids->elements, sizeof *res->ids);
    if (!res->ids)
        return AN_ENOMEM;
    for (size_t i = 0; i < ids->elements; i++)
        snprintf(res->ids[i], AN_ID_MAX, "%.*s", (int)ids->element[i]->len,
                 ids->element[i]->str);
    res->nids = ids->elements;
    return 0;
}

int sp_publish(an_redis *r, const sp_publish_req *q, sp_publish_res *res)
{
    if (res)
        memset(res, 0, sizeof *res);
    if (!valid(q))
        return AN_EINVAL;
    an_publish_entry e = {
        .entry_id = q->entry_id, .msgs = q->msgs, .nmsgs = q->nmsgs,
        .key_index = q->params ? 1 : 0,
        .params_json = q->params ? q->params->params_json : NULL,
        .watermark = q->params ? q->params->watermark : 0,
        .source = q->params ? q->params->source : NULL,
    };
    const char *keys[1] = {q->params ? q->params->key : NULL};
    an_publish_group g = {
        .input = q->input, .group = q->group, .owner = q->owner,
        .output = q->nmsgs ? q->output : q->input,
        .output_maxlen = q->output_maxlen, .keys = keys, .nkeys = q->params ? 1 : 0,
        .entries = &e, .nentries = 1, .updated_ms = q->params ? q->params->updated_ms : 0,
    };
    redisReply *rep;
    int rc = an_publish_many_reply(r, &g, &rep);
    if (rc)
        return rc;
    const redisReply *x = rep->element[0];
    if (x->element[0]->integer == 0)
        rc = AN_ESTATE;
    else if (res) {
        res->acked = reply_int(x->element[1]);
        res->cache = reply_int(x->element[2]);
        rc = take_ids(x->element[3], res);
    }
    freeReplyObject(rep);
    return rc;
}

void sp_publish_res_free(sp_publish_res *res)
{
    if (!res)
        return;
    free(res->ids);
    res->ids = NULL;
    res->nids = 0;
}
