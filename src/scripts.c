/*
 * scripts.c: the Lua script calls, the params-cache reads and the health
 * hash (an_scripts.h). Built on redis.c.
 */
#include "an_util.h"
#include "an_scripts.h"
#include "redis_internal.h"

#include "an_clock.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* ------------------------------------------------------------ publish */

const char *an_attempts_key(const char *input, char *buf, size_t len)
{
    snprintf(buf, len, "%s:attempts", input);
    return buf;
}

/* attempts.lua on ids in mode ("0"/"1" count, "2" count a page, "-1" end):
 * *out is its reply, an array whose first element is an integer. */
static int attempts_eval(an_redis *r, const char *input, const char *mode,
                         const char *const *ids, size_t n, redisReply **out)
{
    char key[512];
    rd_cmd c;
    rd_cmd_eval(&c, 1);
    rd_cmd_addv(&c, RD_ARGV(an_attempts_key(input, key, sizeof key), mode));
    rd_cmd_addv(&c, ids, n);
    redisReply *rep = NULL;
    int rc = rd_eval_script(r, "attempts", &c, &rep);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER)
        return rd_bad_reply(r, "attempts.lua", rep);
    *out = rep;
    return 0;
}

/* The n counts of an attempts.lua reply {0, count...} (consumed) into
 * counts (may be NULL). */
static int take_counts(an_redis *r, redisReply *rep, size_t n, int64_t *counts,
                       const char *what)
{
    if (rep->elements != n + 1)
        return rd_bad_reply(r, what, rep);
    for (size_t i = 0; counts && i < n; i++)
        counts[i] = rd_reply_int(rep->element[i + 1]);
    freeReplyObject(rep);
    return 0;
}

int an_attempts_begin(an_redis *r, const char *input, const char *const *ids, size_t n,
                      bool allow_split, int64_t *counts, bool *split)
{
    *split = false;
    if (n == 0)
        return 0;
    redisReply *rep = NULL;
    int rc = attempts_eval(r, input, allow_split ? "1" : "0", ids, n, &rep);
    if (rc)
        return rc;
    if (rep->element[0]->integer == 1) {
        *split = true;
        freeReplyObject(rep);
        return 0;
    }
    return take_counts(r, rep, n, counts, "attempts.lua counts");
}

/* attempts.lua in mode "2" (an_attempts_begin_page) or "-1"
 * (an_attempts_end); counts[i] (may be NULL) = its answer for ids[i]. */
static int attempts_call(an_redis *r, const char *input, const char *mode,
                         const char *const *ids, size_t n, int64_t *counts)
{
    if (n == 0)
        return 0;
    redisReply *rep = NULL;
    int rc = attempts_eval(r, input, mode, ids, n, &rep);
    return rc ? rc : take_counts(r, rep, n, counts, "attempts.lua");
}

int an_attempts_begin_page(an_redis *r, const char *input, const char *const *ids, size_t n,
                           int64_t *counts)
{
    return attempts_call(r, input, "2", ids, n, counts);
}

int an_attempts_end(an_redis *r, const char *input, const char *const *ids, size_t n)
{
    return attempts_call(r, input, "-1", ids, n, NULL);
}

int an_dead_letter(an_redis *r, const an_dead_letter_req *q,
                   char id_out[AN_ID_MAX])
{
    if (id_out)
        id_out[0] = '\0';
    if (!q || !q->input || !q->group || !q->entry_id || !q->dead_letter ||
        !q->reason || !q->consumer || (q->nfields && !q->fields)) {
        rd_err(r, "dead_letter: bad request (input, group, entry_id, "
                "dead_letter, reason, consumer are required)");
        return AN_EINVAL;
    }
    char akey[512];
    rd_cmd c;
    rd_cmd_eval(&c, 3);
    rd_cmd_addv(&c, RD_ARGV(q->input, q->dead_letter, an_attempts_key(q->input, akey, sizeof akey),
                            q->group, q->entry_id, q->owner ? q->owner : ""));
    rd_cmd_addi(&c, q->maxlen > 0 ? q->maxlen : 0);
    rd_cmd_add(&c, q->reason);
    rd_cmd_addi(&c, q->deliveries);
    rd_cmd_add(&c, q->consumer);
    for (size_t i = 0; i < q->nfields; i++) {
        const an_field *f = &q->fields[i];
        rd_cmd_addn(&c, f->name ? f->name : "", f->name_len);
        rd_cmd_addn(&c, f->value ? f->value : "", f->value_len);
    }
    redisReply *rep = NULL;
    int rc = rd_eval_script(r, "dead_letter", &c, &rep);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER)
        return rd_bad_reply(r, "dead_letter.lua", rep);
    if (rep->element[0]->integer == 0) {
        freeReplyObject(rep);
        rd_err(r, "dead_letter: entry %s is not pending for consumer %s",
             q->entry_id, q->owner ? q->owner : "?");
        return AN_ESTATE;
    }
    if (id_out)
        rd_reply_id(id_out, rep->element[1]);
    freeReplyObject(rep);
    return 0;
}

char *an_params_key(const char *prefix, const char *uid)
{
    size_t pl = strlen(prefix), ul = strlen(uid);
    char *k = malloc(pl + ul + 1);
    if (k) {
        memcpy(k, prefix, pl);
        memcpy(k + pl, uid, ul + 1);
    }
    return k;
}

/* HMGET key f[0] f[1] f[2]: *out is its reply (3 elements); AN_ENOTFOUND
 * when the first field is absent. */
static int hmget3(an_redis *r, const char *key, const char *const f[3], redisReply **out)
{
    redisReply *rep = NULL;
    int rc = rd_call(r, RD_ARGV("HMGET", key, f[0], f[1], f[2]), &rep, false);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return rd_bad_reply(r, "HMGET", rep);
    if (rep->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        rd_err(r, "%s: absent", key);
        return AN_ENOTFOUND;
    }
    *out = rep;
    return 0;
}

/* The number in a string reply into *v; nothing for an absent field. */
static void take_int(const redisReply *x, int64_t *v)
{
    if (v && x->type == REDIS_REPLY_STRING)
        *v = rd_reply_int(x);
}

int an_params_cache_get(an_redis *r, const char *key, char **params,
                        int64_t *watermark, int64_t *updated_ms)
{
    if (params)
        *params = NULL;
    if (watermark)
        *watermark = -1;
    if (updated_ms)
        *updated_ms = -1;
    redisReply *rep = NULL;
    int rc = hmget3(r, key, (const char *const[]){"params", "watermark", "updated"}, &rep);
    if (rc)
        return rc;
    if (params && !(*params = an_strndup(rep->element[0]->str, (size_t)rep->element[0]->len))) {
        freeReplyObject(rep);
        rd_err(r, "out of memory");
        return AN_ENOMEM;
    }
    take_int(rep->element[1], watermark);
    take_int(rep->element[2], updated_ms);
    freeReplyObject(rep);
    return 0;
}

/* One reply of an_params_cache_get_many's pipeline into its outputs. */
static int take_cached(an_redis *r, const char *key, const redisReply *rep, char **params,
                       int64_t *watermark, char **source)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        rd_err(r, "HMGET %s: %.*s", key, (int)rep->len, rep->str);
        return rd_classify_error(rep->str, (size_t)rep->len);
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return 0;   /* absent (or not a hash of ours): a miss */
    *params = an_strndup(rep->element[0]->str, (size_t)rep->element[0]->len);
    if (source && rep->element[2]->type == REDIS_REPLY_STRING &&
        !(*source = an_strndup(rep->element[2]->str, (size_t)rep->element[2]->len)))
        free(*params), *params = NULL;
    take_int(rep->element[1], watermark);
    if (!*params) {
        rd_err(r, "out of memory");
        return AN_ENOMEM;
    }
    return 0;
}

int an_params_cache_get_many(an_redis *r, const char *const *keys, size_t n,
                             char **params, int64_t *watermarks, char **sources)
{
    for (size_t i = 0; i < n; i++) {
        params[i] = NULL;
        watermarks[i] = -1;
        if (sources)
            sources[i] = NULL;
    }
    if (n == 0)
        return 0;
    /* Pipelined: n HMGETs, one round trip. */
    const char **argv = malloc(n * 5 * sizeof *argv);
    redisReply **reps = calloc(n, sizeof *reps);
    int rc = 0;
    if (!argv || !reps) {
        rd_err(r, "out of memory");
        rc = AN_ENOMEM;
    }
    size_t m = 0;   /* the keys asked for (a NULL key is not) */
    for (size_t i = 0; !rc && i < n; i++) {
        if (!keys[i])
            continue;
        const char **a = argv + 5 * m++;
        a[0] = "HMGET";
        a[1] = keys[i];
        a[2] = "params";
        a[3] = "watermark";
        a[4] = "source";
    }
    if (!rc)
        rc = rd_pipeline(r, argv, 5, m, reps);
    for (size_t i = 0, j = 0; !rc && i < n; i++)
        if (keys[i])
            rc = take_cached(r, keys[i], reps[j++], &params[i], &watermarks[i],
                             sources ? &sources[i] : NULL);
    for (size_t i = 0; reps && i < n; i++) {
        if (i < m && reps[i])
            freeReplyObject(reps[i]);
        if (rc) {
            free(params[i]);
            params[i] = NULL;
            if (sources) {
                free(sources[i]);
                sources[i] = NULL;
            }
        }
    }
    free(argv);
    free(reps);
    return rc;
}

/* Adds each entry's arguments of publish_many.lua: id, nmsgs, key index,
 * params, watermark, updated (ts), source, then per message dataType,
 * model, rows, encoding, body. nums holds the 3 numbers of each entry. */
static int add_entries(an_redis *r, rd_cmd *c, const an_publish_group *g, const char *ts,
                       char (*nums)[24])
{
    for (size_t i = 0; i < g->nentries; i++) {
        const an_publish_entry *e = &g->entries[i];
        if (e->key_index > g->nkeys || (e->key_index && !e->params_json)) {
            rd_err(r, "publish_many: entry %zu: bad params key index", i);
            return AN_EINVAL;
        }
        char *n0 = nums[3 * i], *n1 = nums[3 * i + 1], *n2 = nums[3 * i + 2];
        snprintf(n0, 24, "%zu", e->nmsgs);
        /* KEYS[1..3] are the streams and the attempts hash: hash k is
         * KEYS[3 + k]. */
        snprintf(n1, 24, "%zu", e->key_index ? e->key_index + 3 : 0);
        snprintf(n2, 24, "%" PRId64, e->watermark);
        rd_cmd_addv(c, RD_ARGV(e->entry_id, n0, n1, e->key_index ? e->params_json : "", n2,
                               ts, e->key_index && e->source ? e->source : ""));
        for (size_t j = 0; j < e->nmsgs; j++) {
            const an_out_msg *m = &e->msgs[j];
            rd_cmd_addv(c, RD_ARGV(m->data_type, m->model, m->rows ? m->rows : "",
                                   an_encoding_name(m->encoding)));
            rd_cmd_addn(c, m->body ? m->body : "", m->body_len);
        }
    }
    return 0;
}

/* NULL when rep has the shape of publish_many.lua's reply for g (one
 * {status, acked, cache, {ids}} per entry), else what is wrong. */
static const char *publish_reply_shape(const redisReply *rep, const an_publish_group *g)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != g->nentries)
        return "publish_many.lua";
    for (size_t i = 0; i < g->nentries; i++) {
        const redisReply *x = rep->element[i];
        if (x->type != REDIS_REPLY_ARRAY || x->elements != 4 ||
            x->element[0]->type != REDIS_REPLY_INTEGER ||
            x->element[3]->type != REDIS_REPLY_ARRAY ||
            x->element[3]->elements != (x->element[0]->integer ? g->entries[i].nmsgs : 0))
            return "publish_many.lua entry";
    }
    return NULL;
}

int an_publish_many_reply(an_redis *r, const an_publish_group *g, redisReply **out)
{
    *out = NULL;
    if (!g->input || !g->group || !g->output || (g->nkeys && !g->keys)) {
        rd_err(r, "publish_many: bad request (input, group and output are required)");
        return AN_EINVAL;
    }
    char akey[512], ts[24];
    snprintf(ts, sizeof ts, "%" PRId64, g->updated_ms > 0 ? g->updated_ms : an_realtime_ms());
    rd_cmd c;
    rd_cmd_eval(&c, 3 + g->nkeys);
    rd_cmd_addv(&c, RD_ARGV(g->input, g->output, an_attempts_key(g->input, akey, sizeof akey)));
    rd_cmd_addv(&c, g->keys, g->nkeys);
    rd_cmd_addv(&c, RD_ARGV(g->group, g->owner ? g->owner : ""));
    rd_cmd_addi(&c, g->output_maxlen > 0 ? g->output_maxlen : 0);
    rd_cmd_addi(&c, (int64_t)g->nentries);
    rd_cmd_add(&c, g->no_ack ? "0" : "1");
    /* three numbers per entry; rd_cmd's own number slots are too few */
    char (*nums)[24] = malloc((g->nentries ? g->nentries : 1) * 3 * sizeof *nums);
    int rc = nums ? add_entries(r, &c, g, ts, nums) : AN_ENOMEM;
    if (rc == AN_ENOMEM)
        rd_err(r, "out of memory");
    redisReply *rep = NULL;
    if (rc)
        rd_cmd_free(&c);
    else
        rc = rd_eval_script(r, "publish_many", &c, &rep);
    free(nums);
    if (rc)
        return rc;
    const char *bad = publish_reply_shape(rep, g);
    if (bad)
        return rd_bad_reply(r, bad, rep);
    *out = rep;
    return 0;
}

int an_publish_many(an_redis *r, const an_publish_group *g, int *status)
{
    for (size_t i = 0; i < g->nentries; i++)
        status[i] = 0;
    redisReply *rep = NULL;
    int rc = an_publish_many_reply(r, g, &rep);
    if (rc)
        return rc;
    for (size_t i = 0; i < g->nentries; i++)
        status[i] = rep->element[i]->element[0]->integer == 1;
    freeReplyObject(rep);
    return 0;
}

/* ------------------------------------------------------------ retention */

void an_trim_result_free(an_trim_result *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ngroups; i++)
        free(t->groups[i].name);
    free(t->groups);
    memset(t, 0, sizeof *t);
}

/* Fills t->groups from the script's flat {name, needed, held, ...} array. */
static int trim_groups(an_redis *r, an_trim_result *t, const redisReply *a)
{
    if (a->type != REDIS_REPLY_ARRAY || a->elements % 3)
        return AN_EREDIS;
    if (a->elements == 0)
        return 0;
    t->groups = calloc(a->elements / 3, sizeof *t->groups);
    if (!t->groups) {
        rd_err(r, "out of memory");
        return AN_ENOMEM;
    }
    for (size_t i = 0; i + 2 < a->elements; i += 3) {
        const redisReply *name = a->element[i], *id = a->element[i + 1],
                         *held = a->element[i + 2];
        if (name->type != REDIS_REPLY_STRING || id->type != REDIS_REPLY_STRING ||
            held->type != REDIS_REPLY_STRING)
            return AN_EREDIS;
        an_trim_group *g = &t->groups[t->ngroups];
        g->name = an_strndup(name->str, (size_t)name->len);
        if (!g->name) {
            rd_err(r, "out of memory");
            return AN_ENOMEM;
        }
        rd_copy_id(g->needed, id->str, (size_t)id->len);
        rd_copy_id(g->held, held->str, (size_t)held->len);
        g->holds = g->held[0] != '\0';
        t->ngroups++;
    }
    return 0;
}

int an_trim_input(an_redis *r, const char *stream, int64_t retention_ms, bool trim,
                  int64_t limit, an_trim_result *out)
{
    memset(out, 0, sizeof *out);
    if (!stream || retention_ms < 0 || limit < 1) {
        rd_err(r, "trim_input: bad arguments");
        return AN_EINVAL;
    }
    rd_cmd c;
    rd_cmd_eval(&c, 1);
    rd_cmd_add(&c, stream);
    rd_cmd_addi(&c, retention_ms);
    rd_cmd_add(&c, trim ? "1" : "0");
    rd_cmd_addi(&c, limit);
    redisReply *rep = NULL;
    int rc = rd_eval_script(r, "trim_input", &c, &rep);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_STRING ||
        rep->element[2]->type != REDIS_REPLY_INTEGER)
        return rd_bad_reply(r, "trim_input.lua", rep);
    out->trimmed = rep->element[0]->integer;
    rd_copy_id(out->cutoff, rep->element[1]->str, (size_t)rep->element[1]->len);
    out->now_ms = rep->element[2]->integer;
    rc = trim_groups(r, out, rep->element[3]);
    if (rc) {
        an_trim_result_free(out);
        if (rc == AN_EREDIS)
            return rd_bad_reply(r, "trim_input.lua groups", rep);
    }
    freeReplyObject(rep);
    return rc;
}

int an_attempts_gc(an_redis *r, const char *input, const char *group,
                   char cursor[AN_ID_MAX], size_t count, int64_t *removed)
{
    if (removed)
        *removed = 0;
    if (!input || !group || !cursor || count == 0) {
        rd_err(r, "attempts_gc: bad arguments");
        return AN_EINVAL;
    }
    char key[512];
    rd_cmd c;
    rd_cmd_eval(&c, 2);
    rd_cmd_addv(&c, RD_ARGV(input, an_attempts_key(input, key, sizeof key), group,
                            cursor[0] ? cursor : "0"));
    rd_cmd_addi(&c, (int64_t)count);
    redisReply *rep = NULL;
    int rc = rd_eval_script(r, "attempts_gc", &c, &rep);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_INTEGER)
        return rd_bad_reply(r, "attempts_gc.lua", rep);
    rd_copy_id(cursor, rep->element[0]->str, (size_t)rep->element[0]->len);
    if (removed)
        *removed = rep->element[1]->integer;
    freeReplyObject(rep);
    return 0;
}

/* ------------------------------------------------------------ health */

const char *an_health_key(const char *input, const char *consumer, char *buf, size_t len)
{
    snprintf(buf, len, "%s:health:%s", input, consumer);
    return buf;
}

int an_health_put(an_redis *r, const char *key, const char *state, const char *cause,
                  int64_t since_ms, int ttl_s)
{
    /* One script-free transaction: MULTI, HSET, EXPIRE, EXEC. */
    char since[24], updated[24], ttl[24];
    snprintf(since, sizeof since, "%" PRId64, since_ms);
    snprintf(updated, sizeof updated, "%" PRId64, an_realtime_ms());
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    redisReply *rep = NULL;
    int rc = rd_call(r, RD_ARGV("MULTI"), &rep, false);
    if (rc)
        return rc;
    freeReplyObject(rep);
    rc = rd_call(r, RD_ARGV("HSET", key, "state", state, "cause", cause ? cause : "", "since",
                            since, "updated", updated), &rep, false);
    if (!rc) {
        freeReplyObject(rep);
        rc = rd_call(r, RD_ARGV("EXPIRE", key, ttl), &rep, false);
        if (!rc)
            freeReplyObject(rep);
    }
    int rc2 = rd_call(r, RD_ARGV(rc ? "DISCARD" : "EXEC"), &rep, false);
    if (!rc2) {
        /* EXEC answers an array of the commands' replies (errors inside) */
        if (rep->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < rep->elements && !rc; i++)
                if (rep->element[i]->type == REDIS_REPLY_ERROR) {
                    rd_err(r, "health %s: %s", key, rep->element[i]->str);
                    rc = rd_classify_error(rep->element[i]->str, rep->element[i]->len);
                }
        freeReplyObject(rep);
    }
    return rc ? rc : rc2;
}

int an_health_get(an_redis *r, const char *key, char *state, size_t state_len, char *cause,
                  size_t cause_len, int64_t *since_ms)
{
    redisReply *rep = NULL;
    int rc = hmget3(r, key, (const char *const[]){"state", "cause", "since"}, &rep);
    if (rc)
        return rc;
    snprintf(state, state_len, "%s", rep->element[0]->str);
    snprintf(cause, cause_len, "%s",
             rep->element[1]->type == REDIS_REPLY_STRING ? rep->element[1]->str : "");
    *since_ms = rep->element[2]->type == REDIS_REPLY_STRING
                    ? strtoll(rep->element[2]->str, NULL, 10) : 0;
    freeReplyObject(rep);
    return 0;
}
