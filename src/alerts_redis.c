/* alerts_redis.c: the Redis state of `anomalyctl alerts` (an_alerts_redis.h). */
#include "an_alerts_redis.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

int an_alerts_keys_init(an_alerts_keys *k, const char *stream)
{
    memset(k, 0, sizeof *k);
    /* The longest suffix is ":fired:order" (12 bytes). */
    if (!stream || !*stream || strlen(stream) + 13 > AN_ALERTS_KEY_MAX)
        return AN_EINVAL;
    snprintf(k->stream, sizeof k->stream, "%s", stream);
    snprintf(k->last, sizeof k->last, "%s:last", stream);
    snprintf(k->fired, sizeof k->fired, "%s:fired", stream);
    snprintf(k->order, sizeof k->order, "%s:fired:order", stream);
    snprintf(k->thresholds, sizeof k->thresholds, "%s:thresholds", stream);
    snprintf(k->dead, sizeof k->dead, "%s:dead", stream);
    return 0;
}

void an_alerts_snapshot_free(an_alerts_snapshot *s)
{
    if (!s)
        return;
    free(s->threshold_uid);
    free(s->threshold_name);
    free(s->rowids);
    free(s->fired);
    memset(s, 0, sizeof *s);
}

static char *reply_strdup(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING)
        return NULL;
    char *s = malloc(r->len + 1);
    if (s) {
        memcpy(s, r->str, r->len);
        s[r->len] = '\0';
    }
    return s;
}

/* Fills s from alerts_read.lua's reply {last, by_uid, by_name, {fired}}. */
static int parse_read_reply(const redisReply *rep, an_alerts_snapshot *s)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
        rep->element[3]->type != REDIS_REPLY_ARRAY || rep->element[3]->elements != s->n)
        return AN_EREDIS;
    const redisReply *last = rep->element[0];
    if (last->type == REDIS_REPLY_STRING) {
        char *end;
        double v = strtod(last->str, &end);
        if (*end)
            return AN_EREDIS;
        s->has_last = true;
        s->last_ms = (int64_t)v;
    }
    if ((rep->element[1]->type == REDIS_REPLY_STRING && !(s->threshold_uid = reply_strdup(rep->element[1]))) ||
        (rep->element[2]->type == REDIS_REPLY_STRING && !(s->threshold_name = reply_strdup(rep->element[2]))))
        return AN_ENOMEM;
    for (size_t i = 0; i < s->n; i++) {
        const redisReply *f = rep->element[3]->element[i];
        s->fired[i][0] = '\0';
        if (f->type == REDIS_REPLY_STRING)
            snprintf(s->fired[i], AN_ID_MAX, "%.*s", (int)f->len, f->str);
    }
    return 0;
}

int an_alerts_read(an_redis *rd, const an_alerts_keys *k, const char *uid,
                   const char *name, const int64_t *rowids, size_t n,
                   an_alerts_snapshot *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->uid, sizeof s->uid, "%s", uid);
    size_t nargs = 5 + n;
    const char **args = calloc(nargs, sizeof *args);
    char (*nums)[24] = calloc(n ? n : 1, sizeof *nums);
    s->rowids = calloc(n ? n : 1, sizeof *s->rowids);
    s->fired = calloc(n ? n : 1, sizeof *s->fired);
    redisReply *rep = NULL;
    int rc = AN_ENOMEM;
    if (!args || !nums || !s->rowids || !s->fired)
        goto out;
    s->n = n;
    args[0] = k->last;
    args[1] = k->fired;
    args[2] = k->thresholds;
    args[3] = uid;
    args[4] = name ? name : "";
    for (size_t i = 0; i < n; i++) {
        s->rowids[i] = rowids[i];
        snprintf(nums[i], sizeof nums[i], "%" PRId64, rowids[i]);
        args[5 + i] = nums[i];
    }
    rc = an_redis_eval(rd, "alerts_read", 3, args, NULL, nargs, &rep);
    if (rc == 0)
        rc = parse_read_reply(rep, s);
out:
    if (rep)
        freeReplyObject(rep);
    free(args);
    free(nums);
    if (rc)
        an_alerts_snapshot_free(s);
    return rc;
}

static int snap_last(void *ud, const char *uid, bool *found, int64_t *ts_ms)
{
    an_alerts_snapshot *s = ud;
    bool mine = !strcmp(uid, s->uid);
    *found = mine && s->has_last;
    *ts_ms = *found ? s->last_ms : 0;
    return 0;
}

static int snap_fired(void *ud, const char *uid, int64_t rowid, char *entry, size_t len)
{
    an_alerts_snapshot *s = ud;
    entry[0] = '\0';
    if (strcmp(uid, s->uid))
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->rowids[i] == rowid) {
            snprintf(entry, len, "%s", s->fired[i]);
            break;
        }
    return 0;
}

an_alert_store an_alerts_snapshot_store(an_alerts_snapshot *s)
{
    an_alert_store st = {snap_last, snap_fired, s};
    return st;
}

/* alerts_commit.lua's ARGV after the keys; nums holds the number texts
 * (room for 6 + 2n). */
static void commit_args(const an_alerts_commit_req *q, const char **a, char (*nums)[24])
{
    const an_alert_outcome *o = q->outcome;
    size_t j = 0;
    a[4] = q->uid;
    if (o->had_last)
        snprintf(nums[j], 24, "%" PRId64, o->last_ms);
    a[5] = o->had_last ? nums[j++] : "";
    bool moved = o->has_last && (!o->had_last || o->new_last_ms != o->last_ms);
    if (moved)
        snprintf(nums[j], 24, "%" PRId64, o->new_last_ms);
    a[6] = moved ? nums[j++] : "";
    snprintf(nums[j], 24, "%" PRId64, q->stream_maxlen);
    a[7] = nums[j++];
    snprintf(nums[j], 24, "%" PRId64, q->fired_max);
    a[8] = nums[j++];
    snprintf(nums[j], 24, "%" PRId64, q->last_max);
    a[9] = nums[j++];
    a[10] = q->entry_id;
    for (size_t i = 0; i < q->n; i++) {
        snprintf(nums[j], 24, "%" PRId64, q->rowids[i]);
        a[11 + 3 * i] = nums[j++];
        snprintf(nums[j], 24, "%" PRId64, q->ts_ms[i]);
        a[12 + 3 * i] = nums[j++];
        a[13 + 3 * i] = q->json[i];
    }
}

int an_alerts_commit(an_redis *rd, const an_alerts_keys *k,
                     const an_alerts_commit_req *req, char (*ids)[AN_ID_MAX],
                     bool *conflict)
{
    *conflict = false;
    size_t nargs = 11 + 3 * req->n;
    const char **a = calloc(nargs, sizeof *a);
    char (*nums)[24] = calloc(6 + 2 * req->n, sizeof *nums);
    redisReply *rep = NULL;
    int rc = AN_ENOMEM;
    if (!a || !nums)
        goto out;
    a[0] = k->last;
    a[1] = k->fired;
    a[2] = k->order;
    a[3] = k->stream;
    commit_args(req, a, nums);
    rc = an_redis_eval(rd, "alerts_commit", 4, a, NULL, nargs, &rep);
    if (rc)
        goto out;
    rc = AN_EREDIS;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER)
        goto out;
    if (rep->element[0]->integer == 0) {
        *conflict = true;
        rc = 0;
        goto out;
    }
    if (rep->elements != 1 + req->n)
        goto out;
    for (size_t i = 0; ids && i < req->n; i++)
        snprintf(ids[i], AN_ID_MAX, "%.*s", (int)rep->element[1 + i]->len,
                 rep->element[1 + i]->str ? rep->element[1 + i]->str : "");
    rc = 0;
out:
    if (rep)
        freeReplyObject(rep);
    free(a);
    free(nums);
    return rc;
}
