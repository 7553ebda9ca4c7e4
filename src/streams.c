/*
 * streams.c: Redis Streams access (an_streams.h): consumer groups, reads
 * and claims, XPENDING, XINFO, plain stream commands. Built on redis.c.
 */
#include "an_util.h"
#include "an_streams.h"
#include "redis_internal.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* ------------------------------------------------------------ entries */

void an_entry_list_free(an_entry_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        an_entry_free(&l->v[i]);
    free(l->v);
    free(l->deleted);
    memset(l, 0, sizeof *l);
}

/* Fill one entry from [id, [f, v, ...] | nil], its fields in the one
 * layout of an_entry.h (an_entry_set_fields). */
static int parse_entry(an_redis *r, const redisReply *er, an_entry *e)
{
    memset(e, 0, sizeof *e);
    e->deliveries = -1;
    if (er->type != REDIS_REPLY_ARRAY || er->elements != 2 ||
        er->element[0]->type != REDIS_REPLY_STRING) {
        rd_err(r, "stream entry: unexpected reply shape");
        return AN_EREDIS;
    }
    rd_copy_id(e->id, er->element[0]->str, (size_t)er->element[0]->len);
    const redisReply *fv = er->element[1];
    if (fv->type == REDIS_REPLY_NIL) {
        e->nil = true;
        return 0;
    }
    if (fv->type != REDIS_REPLY_ARRAY || fv->elements % 2 != 0) {
        rd_err(r, "stream entry %s: unexpected field list", e->id);
        return AN_EREDIS;
    }
    for (size_t i = 0; i < fv->elements; i++) {
        if (fv->element[i]->type != REDIS_REPLY_STRING) {
            rd_err(r, "stream entry %s: non-string field", e->id);
            return AN_EREDIS;
        }
    }
    /* The fields as views into the reply, then copied into one block. */
    size_t nf = fv->elements / 2;
    an_field stack[32];
    an_field *view = nf <= 32 ? stack : malloc(nf * sizeof *view);
    if (!view) {
        rd_err(r, "out of memory");
        return AN_ENOMEM;
    }
    for (size_t i = 0; i < nf; i++) {
        const redisReply *k = fv->element[2 * i];
        const redisReply *v = fv->element[2 * i + 1];
        view[i] = (an_field){k->str, (size_t)k->len, v->str, (size_t)v->len};
    }
    int rc = an_entry_set_fields(e, view, nf);
    if (view != stack)
        free(view);
    if (rc)
        rd_err(r, "out of memory");
    return rc;
}

/* Append the entries of an array reply [[id, fields], ...] to l. */
static int parse_entries(an_redis *r, const redisReply *arr, an_entry_list *l)
{
    if (arr->type == REDIS_REPLY_NIL)
        return 0;
    if (arr->type != REDIS_REPLY_ARRAY) {
        rd_err(r, "stream entries: unexpected reply type %d", arr->type);
        return AN_EREDIS;
    }
    if (arr->elements == 0)
        return 0;
    an_entry *nv = realloc(l->v, (l->n + arr->elements) * sizeof *nv);
    if (!nv) {
        rd_err(r, "out of memory");
        return AN_ENOMEM;
    }
    l->v = nv;
    for (size_t i = 0; i < arr->elements; i++) {
        int rc = parse_entry(r, arr->element[i], &l->v[l->n]);
        if (rc)
            return rc;
        l->n++;
    }
    return 0;
}

/* XREAD/XREADGROUP reply: nil, or [[stream, entries]]. */
static int parse_read_reply(an_redis *r, const redisReply *rep,
                            an_entry_list *l)
{
    if (rep->type == REDIS_REPLY_NIL)
        return 0;
    if (rep->type != REDIS_REPLY_ARRAY) {
        rd_err(r, "XREAD: unexpected reply type %d", rep->type);
        return AN_EREDIS;
    }
    for (size_t s = 0; s < rep->elements; s++) {
        const redisReply *sr = rep->element[s];
        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2) {
            rd_err(r, "XREAD: unexpected stream element");
            return AN_EREDIS;
        }
        int rc = parse_entries(r, sr->element[1], l);
        if (rc)
            return rc;
    }
    return 0;
}

/* The end of an XREAD / XREADGROUP command begun in c (consumed): [BLOCK
 * block_ms] STREAMS stream id, run with the socket timeout of the BLOCK;
 * its entries into out (left empty on error). */
static int read_streams(an_redis *r, rd_cmd *c, int block_ms, const char *stream,
                        const char *id, an_entry_list *out)
{
    if (block_ms >= 0) {
        rd_cmd_add(c, "BLOCK");
        rd_cmd_addi(c, block_ms);
    }
    rd_cmd_addv(c, RD_ARGV("STREAMS", stream, id));
    redisReply *rep = NULL;
    int rc = rd_run_blocking(r, c, block_ms, &rep);
    if (rc)
        return rc;
    rc = parse_read_reply(r, rep, out);
    freeReplyObject(rep);
    if (rc)
        an_entry_list_free(out);
    return rc;
}

/* deliveries of l's entries from XPENDING stream group first last n consumer */
static int fill_deliveries(an_redis *r, const char *stream, const char *group,
                           const char *consumer, an_entry_list *l)
{
    if (l->n == 0)
        return 0;
    an_pending_item *items = NULL;
    size_t ni = 0;
    int rc = an_pending_range(r, stream, group, -1, l->v[0].id,
                              l->v[l->n - 1].id, l->n, consumer, &items, &ni);
    if (rc)
        return rc;
    size_t j = 0;
    for (size_t i = 0; i < l->n; i++) {
        /* both are in id order: advance j */
        for (size_t k = j; k < ni; k++) {
            if (strcmp(items[k].id, l->v[i].id) == 0) {
                l->v[i].deliveries = items[k].deliveries;
                j = k + 1;
                break;
            }
        }
    }
    free(items);
    return 0;
}

/* ------------------------------------------------------------ groups */

int an_group_create(an_redis *r, const char *stream, const char *group,
                    const char *start_id, bool *created)
{
    if (created)
        *created = false;
    if (!stream || !group) {
        rd_err(r, "XGROUP CREATE: stream and group are required");
        return AN_EINVAL;
    }
    redisReply *rep = NULL;
    int rc = rd_call(r, RD_ARGV("XGROUP", "CREATE", stream, group, start_id ? start_id : "0",
                                "MKSTREAM"), &rep, true);
    if (rc)
        return rc;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (rd_is_error_code(rep, "BUSYGROUP")) {
            freeReplyObject(rep);
            rd_clear_err(r);
            return 0;
        }
        rd_err(r, "XGROUP CREATE %s %s: %.*s", stream, group, (int)rep->len,
             rep->str);
        rc = rd_classify_error(rep->str, (size_t)rep->len);
        freeReplyObject(rep);
        return rc;
    }
    freeReplyObject(rep);
    if (created)
        *created = true;
    return 0;
}

int an_group_delconsumer(an_redis *r, const char *stream, const char *group,
                         const char *consumer, int64_t *pending_discarded)
{
    return rd_call_int(r, RD_ARGV("XGROUP", "DELCONSUMER", stream, group, consumer),
                       pending_discarded);
}

int an_read_group(an_redis *r, const char *stream, const char *group,
                  const char *consumer, const char *id, size_t count,
                  int block_ms, an_entry_list *out)
{
    memset(out, 0, sizeof *out);
    if (!stream || !group || !consumer || !id || count == 0) {
        rd_err(r, "XREADGROUP: stream, group, consumer, id and count > 0 are "
                "required");
        return AN_EINVAL;
    }
    bool fresh = strcmp(id, ">") == 0;
    rd_cmd c;
    rd_cmd_start(&c, RD_ARGV("XREADGROUP", "GROUP", group, consumer, "COUNT"));
    rd_cmd_addi(&c, (int64_t)count);
    int rc = read_streams(r, &c, block_ms, stream, id, out);
    if (rc == 0) {
        if (fresh) {
            for (size_t i = 0; i < out->n; i++)
                out->v[i].deliveries = 1;
        } else {
            rc = fill_deliveries(r, stream, group, consumer, out);
        }
    }
    if (rc)
        an_entry_list_free(out);
    return rc;
}

int an_autoclaim(an_redis *r, const char *stream, const char *group,
                 const char *consumer, int64_t min_idle_ms, const char *start,
                 size_t count, an_entry_list *out)
{
    memset(out, 0, sizeof *out);
    if (!stream || !group || !consumer || count == 0 || min_idle_ms < 0) {
        rd_err(r, "XAUTOCLAIM: bad arguments");
        return AN_EINVAL;
    }
    rd_cmd c;
    rd_cmd_start(&c, RD_ARGV("XAUTOCLAIM", stream, group, consumer));
    rd_cmd_addi(&c, min_idle_ms);
    rd_cmd_add(&c, start ? start : "0-0");
    rd_cmd_add(&c, "COUNT");
    rd_cmd_addi(&c, (int64_t)count);
    redisReply *rep = NULL;
    int rc = rd_run(r, &c, &rep, false);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return rd_bad_reply(r, "XAUTOCLAIM", rep);
    rd_copy_id(out->next_start, rep->element[0]->str,
            (size_t)rep->element[0]->len);
    rc = parse_entries(r, rep->element[1], out);
    if (rc == 0 && rep->elements >= 3 &&
        rep->element[2]->type == REDIS_REPLY_ARRAY &&
        rep->element[2]->elements > 0) {
        const redisReply *d = rep->element[2];
        out->deleted = calloc(d->elements, sizeof *out->deleted);
        if (!out->deleted) {
            rd_err(r, "out of memory");
            rc = AN_ENOMEM;
        } else {
            for (size_t i = 0; i < d->elements; i++) {
                if (d->element[i]->type != REDIS_REPLY_STRING)
                    continue;
                rd_copy_id(out->deleted[out->ndeleted++], d->element[i]->str,
                        (size_t)d->element[i]->len);
            }
        }
    }
    freeReplyObject(rep);
    if (rc == 0)
        rc = fill_deliveries(r, stream, group, consumer, out);
    if (rc)
        an_entry_list_free(out);
    return rc;
}

int an_xack(an_redis *r, const char *stream, const char *group,
            const char *const *ids, size_t n, int64_t *acked)
{
    if (acked)
        *acked = 0;
    if (n == 0)
        return 0;
    rd_cmd c;
    rd_cmd_start(&c, RD_ARGV("XACK", stream, group));
    rd_cmd_addv(&c, ids, n);
    return rd_int_command(r, &c, acked);
}

/* XCLAIM stream group consumer 0 id... [IDLE idle_ms] JUSTID. */
int an_claim_ids(an_redis *r, const char *stream, const char *group,
                 const char *consumer, const char *const *ids, size_t n,
                 int64_t idle_ms, size_t *claimed)
{
    if (claimed)
        *claimed = 0;
    if (n == 0)
        return 0;
    rd_cmd c;
    rd_cmd_start(&c, RD_ARGV("XCLAIM", stream, group, consumer, "0"));
    rd_cmd_addv(&c, ids, n);
    if (idle_ms >= 0) {
        rd_cmd_add(&c, "IDLE");
        rd_cmd_addi(&c, idle_ms);
    }
    rd_cmd_add(&c, "JUSTID");
    redisReply *rep = NULL;
    int rc = rd_run(r, &c, &rep, false);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY)
        return rd_bad_reply(r, "XCLAIM", rep);
    if (claimed)
        *claimed = rep->elements;
    freeReplyObject(rep);
    return 0;
}

int an_pending_summary_get(an_redis *r, const char *stream, const char *group,
                           an_pending_summary *out)
{
    memset(out, 0, sizeof *out);
    redisReply *rep = NULL;
    int rc = rd_call(r, RD_ARGV("XPENDING", stream, group), &rep, false);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4)
        return rd_bad_reply(r, "XPENDING", rep);
    out->count = rd_reply_int(rep->element[0]);
    rd_reply_id(out->min_id, rep->element[1]);
    rd_reply_id(out->max_id, rep->element[2]);
    const redisReply *cs = rep->element[3];
    if (cs->type == REDIS_REPLY_ARRAY && cs->elements > 0) {
        out->consumers = calloc(cs->elements, sizeof *out->consumers);
        if (!out->consumers) {
            freeReplyObject(rep);
            rd_err(r, "out of memory");
            return AN_ENOMEM;
        }
        for (size_t i = 0; i < cs->elements; i++) {
            const redisReply *p = cs->element[i];
            if (p->type != REDIS_REPLY_ARRAY || p->elements != 2 ||
                p->element[0]->type != REDIS_REPLY_STRING)
                continue;
            an_pending_consumer *pc = &out->consumers[out->nconsumers];
            pc->name = an_strndup(p->element[0]->str, (size_t)p->element[0]->len);
            if (!pc->name) {
                freeReplyObject(rep);
                an_pending_summary_free(out);
                rd_err(r, "out of memory");
                return AN_ENOMEM;
            }
            pc->pending = rd_reply_int(p->element[1]);
            out->nconsumers++;
        }
    }
    freeReplyObject(rep);
    return 0;
}

void an_pending_summary_free(an_pending_summary *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nconsumers; i++)
        free(s->consumers[i].name);
    free(s->consumers);
    memset(s, 0, sizeof *s);
}

int an_pending_range(an_redis *r, const char *stream, const char *group,
                     int64_t min_idle_ms, const char *start, const char *end,
                     size_t count, const char *consumer,
                     an_pending_item **items, size_t *n)
{
    *items = NULL;
    *n = 0;
    if (count == 0)
        return 0;
    rd_cmd c;
    rd_cmd_start(&c, RD_ARGV("XPENDING", stream, group));
    if (min_idle_ms >= 0) {
        rd_cmd_add(&c, "IDLE");
        rd_cmd_addi(&c, min_idle_ms);
    }
    rd_cmd_add(&c, start ? start : "-");
    rd_cmd_add(&c, end ? end : "+");
    rd_cmd_addi(&c, (int64_t)count);
    if (consumer)
        rd_cmd_add(&c, consumer);
    redisReply *rep = NULL;
    int rc = rd_run(r, &c, &rep, false);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY)
        return rd_bad_reply(r, "XPENDING", rep);
    if (rep->elements == 0) {
        freeReplyObject(rep);
        return 0;
    }
    an_pending_item *v = calloc(rep->elements, sizeof *v);
    if (!v) {
        freeReplyObject(rep);
        rd_err(r, "out of memory");
        return AN_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *p = rep->element[i];
        if (p->type != REDIS_REPLY_ARRAY || p->elements != 4 ||
            p->element[0]->type != REDIS_REPLY_STRING ||
            p->element[1]->type != REDIS_REPLY_STRING)
            continue;
        rd_copy_id(v[k].id, p->element[0]->str, (size_t)p->element[0]->len);
        size_t cl = (size_t)p->element[1]->len;
        if (cl >= sizeof v[k].consumer)
            cl = sizeof v[k].consumer - 1;
        memcpy(v[k].consumer, p->element[1]->str, cl);
        v[k].consumer[cl] = '\0';
        v[k].idle_ms = rd_reply_int(p->element[2]);
        v[k].deliveries = rd_reply_int(p->element[3]);
        k++;
    }
    freeReplyObject(rep);
    *items = v;
    *n = k;
    return 0;
}

/* ------------------------------------------------------------ plain */

int an_xadd(an_redis *r, const char *stream, int64_t maxlen,
            const an_field *fields, size_t nfields, char id_out[AN_ID_MAX])
{
    if (id_out)
        id_out[0] = '\0';
    if (!stream || nfields == 0 || !fields) {
        rd_err(r, "XADD: stream and at least one field are required");
        return AN_EINVAL;
    }
    rd_cmd c;
    rd_cmd_start(&c, RD_ARGV("XADD", stream));
    if (maxlen > 0) {
        rd_cmd_add(&c, "MAXLEN");
        rd_cmd_add(&c, "~");
        rd_cmd_addi(&c, maxlen);
    }
    rd_cmd_add(&c, "*");
    for (size_t i = 0; i < nfields; i++) {
        rd_cmd_addn(&c, fields[i].name ? fields[i].name : "", fields[i].name_len);
        rd_cmd_addn(&c, fields[i].value ? fields[i].value : "",
                 fields[i].value_len);
    }
    redisReply *rep = NULL;
    int rc = rd_run(r, &c, &rep, false);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_STRING)
        return rd_bad_reply(r, "XADD", rep);
    if (id_out)
        rd_reply_id(id_out, rep);
    freeReplyObject(rep);
    return 0;
}

int an_xrange(an_redis *r, const char *stream, const char *start,
              const char *end, size_t count, bool reverse, an_entry_list *out)
{
    memset(out, 0, sizeof *out);
    rd_cmd c;
    rd_cmd_start(&c, RD_ARGV(reverse ? "XREVRANGE" : "XRANGE", stream,
                              start ? start : (reverse ? "+" : "-"), end ? end : (reverse ? "-" : "+")));
    if (count) {
        rd_cmd_add(&c, "COUNT");
        rd_cmd_addi(&c, (int64_t)count);
    }
    redisReply *rep = NULL;
    int rc = rd_run(r, &c, &rep, false);
    if (rc)
        return rc;
    rc = parse_entries(r, rep, out);
    freeReplyObject(rep);
    if (rc)
        an_entry_list_free(out);
    return rc;
}

int an_xread(an_redis *r, const char *stream, const char *after_id,
             size_t count, int block_ms, an_entry_list *out)
{
    memset(out, 0, sizeof *out);
    rd_cmd c;
    rd_cmd_start(&c, RD_ARGV("XREAD"));
    if (count) {
        rd_cmd_add(&c, "COUNT");
        rd_cmd_addi(&c, (int64_t)count);
    }
    return read_streams(r, &c, block_ms, stream, after_id ? after_id : "$", out);
}

int an_xlen(an_redis *r, const char *stream, int64_t *len)
{
    return rd_call_int(r, RD_ARGV("XLEN", stream), len);
}

int an_xdel(an_redis *r, const char *stream, const char *const *ids, size_t n,
            int64_t *deleted)
{
    if (deleted)
        *deleted = 0;
    if (n == 0)
        return 0;
    rd_cmd c;
    rd_cmd_start(&c, RD_ARGV("XDEL", stream));
    rd_cmd_addv(&c, ids, n);
    int rc = rd_int_command(r, &c, deleted);
    return rc;
}

/* ------------------------------------------------------------ XINFO */

/* Value of key k in a flat [k1, v1, k2, v2, ...] reply; NULL if absent. */
static const redisReply *kv_get(const redisReply *a, const char *k)
{
    if (!a || a->type != REDIS_REPLY_ARRAY)
        return NULL;
    size_t kl = strlen(k);
    for (size_t i = 0; i + 1 < a->elements; i += 2) {
        const redisReply *key = a->element[i];
        if ((key->type == REDIS_REPLY_STRING ||
             key->type == REDIS_REPLY_STATUS) &&
            (size_t)key->len == kl && memcmp(key->str, k, kl) == 0)
            return a->element[i + 1];
    }
    return NULL;
}

static int64_t kv_int(const redisReply *a, const char *k)
{
    const redisReply *v = kv_get(a, k);
    if (!v || v->type == REDIS_REPLY_NIL)
        return -1;
    return rd_reply_int(v);
}

/* XINFO argv[1] argv[2..): *out is its reply, an array. With missing_key,
 * "ERR no such key" is AN_ENOTFOUND (any other error reply is classified
 * as always). */
static int xinfo_call(an_redis *r, const char *const *argv, size_t argc, bool missing_key,
                      redisReply **out)
{
    redisReply *rep = NULL;
    char what[64];
    snprintf(what, sizeof what, "XINFO %s", argv[1]);
    int rc = rd_call(r, argv, argc, &rep, missing_key);
    if (rc)
        return rc;
    if (rep->type == REDIS_REPLY_ERROR) {
        rd_err(r, "%s %s: %.*s", what, argv[2], (int)rep->len, rep->str);
        rc = strstr(rep->str, "no such key") ? AN_ENOTFOUND
                                              : rd_classify_error(rep->str, (size_t)rep->len);
        freeReplyObject(rep);
        return rc;
    }
    if (rep->type != REDIS_REPLY_ARRAY)
        return rd_bad_reply(r, what, rep);
    *out = rep;
    return 0;
}

int an_xinfo_stream(an_redis *r, const char *stream, an_stream_info *out)
{
    memset(out, 0, sizeof *out);
    out->entries_added = -1;
    redisReply *rep = NULL;
    int rc = xinfo_call(r, RD_ARGV("XINFO", "STREAM", stream), true, &rep);
    if (rc)
        return rc;
    out->length = kv_int(rep, "length");
    out->groups = kv_int(rep, "groups");
    out->entries_added = kv_int(rep, "entries-added");
    rd_reply_id(out->last_generated_id, kv_get(rep, "last-generated-id"));
    rd_reply_id(out->max_deleted_entry_id, kv_get(rep, "max-deleted-entry-id"));
    const redisReply *fe = kv_get(rep, "first-entry");
    const redisReply *le = kv_get(rep, "last-entry");
    if (fe && fe->type == REDIS_REPLY_ARRAY && fe->elements >= 1)
        rd_reply_id(out->first_id, fe->element[0]);
    if (le && le->type == REDIS_REPLY_ARRAY && le->elements >= 1)
        rd_reply_id(out->last_id, le->element[0]);
    freeReplyObject(rep);
    return 0;
}

/* The items of an XINFO list (an_group_info, an_consumer_info) begin with
 * their malloc'd name: one free and one parser serve both. */
_Static_assert(offsetof(an_group_info, name) == 0, "name first");
_Static_assert(offsetof(an_consumer_info, name) == 0, "name first");

static char **item_name(void *items, size_t size, size_t i)
{
    return (char **)(void *)((char *)items + i * size);
}

static void free_named(void *items, size_t n, size_t size)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++)
        free(*item_name(items, size, i));
    free(items);
}

/* Fills one item (its name already set) from its map in an XINFO list. */
typedef void (*xinfo_fill_fn)(const redisReply *map, void *item);

/* The maps of an XINFO list reply (consumed) as *items: an array of n
 * items of `size` bytes, calloc'd, each named (maps without a name are
 * skipped) and filled by fill. */
static int xinfo_list(an_redis *r, redisReply *rep, size_t size, xinfo_fill_fn fill,
                      void **items, size_t *n)
{
    void *v = rep->elements ? calloc(rep->elements, size) : NULL;
    if (rep->elements && !v) {
        freeReplyObject(rep);
        rd_err(r, "out of memory");
        return AN_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *map = rep->element[i];
        const redisReply *name = kv_get(map, "name");
        if (!name || name->type != REDIS_REPLY_STRING)
            continue;
        char **slot = item_name(v, size, k);
        if (!(*slot = an_strndup(name->str, (size_t)name->len))) {
            free_named(v, k, size);
            freeReplyObject(rep);
            rd_err(r, "out of memory");
            return AN_ENOMEM;
        }
        fill(map, slot);
        k++;
    }
    freeReplyObject(rep);
    *items = v;
    *n = k;
    return 0;
}

static void fill_group(const redisReply *g, void *item)
{
    an_group_info *v = item;
    v->consumers = kv_int(g, "consumers");
    v->pending = kv_int(g, "pending");
    rd_reply_id(v->last_delivered_id, kv_get(g, "last-delivered-id"));
    v->entries_read = kv_int(g, "entries-read");
    v->lag = kv_int(g, "lag");
}

int an_xinfo_groups(an_redis *r, const char *stream, an_group_info **groups,
                    size_t *n)
{
    *groups = NULL;
    *n = 0;
    redisReply *rep = NULL;
    void *v = NULL;
    int rc = xinfo_call(r, RD_ARGV("XINFO", "GROUPS", stream), true, &rep);
    if (!rc)
        rc = xinfo_list(r, rep, sizeof **groups, fill_group, &v, n);
    *groups = v;
    return rc;
}

void an_group_info_free(an_group_info *groups, size_t n)
{
    free_named(groups, n, sizeof *groups);
}

static void fill_consumer(const redisReply *c, void *item)
{
    an_consumer_info *v = item;
    v->pending = kv_int(c, "pending");
    v->idle_ms = kv_int(c, "idle");
    v->inactive_ms = kv_int(c, "inactive");
}

int an_xinfo_consumers(an_redis *r, const char *stream, const char *group,
                       an_consumer_info **consumers, size_t *n)
{
    *consumers = NULL;
    *n = 0;
    redisReply *rep = NULL;
    void *v = NULL;
    int rc = xinfo_call(r, RD_ARGV("XINFO", "CONSUMERS", stream, group), false, &rep);
    if (!rc)
        rc = xinfo_list(r, rep, sizeof **consumers, fill_consumer, &v, n);
    *consumers = v;
    return rc;
}

void an_consumer_info_free(an_consumer_info *consumers, size_t n)
{
    free_named(consumers, n, sizeof *consumers);
}
