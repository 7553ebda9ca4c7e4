/*
 * scripts.c: the Lua script calls, the params-cache reads and the health
 * hash (an_scripts.h). Built on redis.c.
 */
#include "an_scripts.h"
#include "redis_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

/* ------------------------------------------------------------ publish */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *an_attempts_key(const char *input, char *buf, size_t len)
{
    snprintf(buf, len, "%s:attempts", input);
    return buf;
}

int an_attempts_begin(an_redis *r, const char *input, const char *const *ids, size_t n,
                      bool allow_split, int64_t *counts, bool *split)
{
    *split = false;
    if (n == 0)
        return 0;
    char key[512];
    rd_cmd c;
    rd_cmd_init(&c);
    rd_cmd_add(&c, "EVALSHA"); /* placeholders filled by rd_eval_script */
    rd_cmd_add(&c, "");
    rd_cmd_addi(&c, 1);
    rd_cmd_add(&c, an_attempts_key(input, key, sizeof key));
    rd_cmd_add(&c, allow_split ? "1" : "0");
    for (size_t i = 0; i < n; i++)
        rd_cmd_add(&c, ids[i]);
    redisReply *rep;
    int rc = rd_eval_script(r, "attempts", &c, &rep);
    rd_cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER)
        return rd_bad_reply(r, "attempts.lua", rep);
    if (rep->element[0]->integer == 1) {
        *split = true;
    } else {
        if (rep->elements != n + 1)
            return rd_bad_reply(r, "attempts.lua counts", rep);
        for (size_t i = 0; i < n; i++)
            counts[i] = rd_reply_int(rep->element[i + 1]);
    }
    freeReplyObject(rep);
    return 0;
}

/* attempts.lua in mode "2" (an_attempts_begin_page) or "-1"
 * (an_attempts_end); counts[i] (may be NULL) = its answer for ids[i]. */
static int attempts_call(an_redis *r, const char *input, const char *mode,
                         const char *const *ids, size_t n, int64_t *counts)
{
    if (n == 0)
        return 0;
    char key[512];
    rd_cmd c;
    rd_cmd_init(&c);
    rd_cmd_add(&c, "EVALSHA"); /* placeholders filled by rd_eval_script */
    rd_cmd_add(&c, "");
    rd_cmd_addi(&c, 1);
    rd_cmd_add(&c, an_attempts_key(input, key, sizeof key));
    rd_cmd_add(&c, mode);
    for (size_t i = 0; i < n; i++)
        rd_cmd_add(&c, ids[i]);
    redisReply *rep;
    int rc = rd_eval_script(r, "attempts", &c, &rep);
    rd_cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n + 1)
        return rd_bad_reply(r, "attempts.lua", rep);
    for (size_t i = 0; counts && i < n; i++)
        counts[i] = rd_reply_int(rep->element[i + 1]);
    freeReplyObject(rep);
    return 0;
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
    rd_cmd_init(&c);
    rd_cmd_add(&c, "EVALSHA");
    rd_cmd_add(&c, "");
    rd_cmd_addi(&c, 3);
    rd_cmd_add(&c, q->input);
    rd_cmd_add(&c, q->dead_letter);
    rd_cmd_add(&c, an_attempts_key(q->input, akey, sizeof akey));
    rd_cmd_add(&c, q->group);
    rd_cmd_add(&c, q->entry_id);
    rd_cmd_add(&c, q->owner ? q->owner : "");
    rd_cmd_addi(&c, q->maxlen > 0 ? q->maxlen : 0);
    rd_cmd_add(&c, q->reason);
    rd_cmd_addi(&c, q->deliveries);
    rd_cmd_add(&c, q->consumer);
    for (size_t i = 0; i < q->nfields; i++) {
        const an_field *f = &q->fields[i];
        rd_cmd_addn(&c, f->name ? f->name : "", f->name_len);
        rd_cmd_addn(&c, f->value ? f->value : "", f->value_len);
    }
    redisReply *rep;
    int rc = rd_eval_script(r, "dead_letter", &c, &rep);
    rd_cmd_free(&c);
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

int an_params_cache_get(an_redis *r, const char *key, char **params,
                        int64_t *watermark, int64_t *updated_ms)
{
    if (params)
        *params = NULL;
    if (watermark)
        *watermark = -1;
    if (updated_ms)
        *updated_ms = -1;
    redisReply *rep;
    int rc = rd_call(r, RD_ARGV("HMGET", key, "params", "watermark", "updated"), &rep, false);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return rd_bad_reply(r, "HMGET", rep);
    if (rep->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        rd_err(r, "params cache %s: absent", key);
        return AN_ENOTFOUND;
    }
    if (params) {
        *params = rd_dupn(rep->element[0]->str, (size_t)rep->element[0]->len);
        if (!*params) {
            freeReplyObject(rep);
            rd_err(r, "out of memory");
            return AN_ENOMEM;
        }
    }
    if (watermark && rep->element[1]->type == REDIS_REPLY_STRING)
        *watermark = rd_reply_int(rep->element[1]);
    if (updated_ms && rep->element[2]->type == REDIS_REPLY_STRING)
        *updated_ms = rd_reply_int(rep->element[2]);
    freeReplyObject(rep);
    return 0;
}
/* ------------------------------------------------------------ groups */

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
    if (!r->ctx || r->ctx->err) {
        rd_drop_ctx(r);
        int rc = rd_reconnect_rc(rd_connect(r));
        if (rc)
            return rc;
    }
    /* Pipelined: n HMGETs, one round trip. */
    for (size_t i = 0; i < n; i++) {
        const char *argv[5] = {"HMGET", keys[i], "params", "watermark", "source"};
        if (redisAppendCommandArgv(r->ctx, 5, argv, NULL) != REDIS_OK) {
            rd_err(r, "HMGET: %s", r->ctx->errstr);
            rd_drop_ctx(r);
            return AN_ETRANSIENT;
        }
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *v = NULL;
        if (redisGetReply(r->ctx, &v) != REDIS_OK || !v) {
            rd_err(r, "redis %s: %s", r->url_redacted,
                 r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
            rd_drop_ctx(r);
            rc = AN_ETRANSIENT;
            break;   /* the context is gone: the other replies with it */
        }
        redisReply *rep = v;
        if (rep->type == REDIS_REPLY_ERROR) {
            if (!rc) {
                rd_err(r, "HMGET %s: %.*s", keys[i], (int)rep->len, rep->str);
                rc = rd_classify_error(rep->str, (size_t)rep->len);
            }
        } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
                   rep->element[0]->type == REDIS_REPLY_STRING) {
            params[i] = rd_dupn(rep->element[0]->str, (size_t)rep->element[0]->len);
            if (sources && rep->element[2]->type == REDIS_REPLY_STRING &&
                !(sources[i] = rd_dupn(rep->element[2]->str, (size_t)rep->element[2]->len)))
                free(params[i]), params[i] = NULL;
            if (!params[i] && !rc) {
                rd_err(r, "out of memory");
                rc = AN_ENOMEM;
            }
            if (rep->element[1]->type == REDIS_REPLY_STRING)
                watermarks[i] = rd_reply_int(rep->element[1]);
        }
        freeReplyObject(rep);
    }
    if (rc)
        for (size_t i = 0; i < n; i++) {
            free(params[i]);
            params[i] = NULL;
            if (sources) {
                free(sources[i]);
                sources[i] = NULL;
            }
        }
    return rc;
}

int an_publish_many_reply(an_redis *r, const an_publish_group *g, redisReply **out)
{
    *out = NULL;
    if (!g->input || !g->group || !g->output || (g->nkeys && !g->keys)) {
        rd_err(r, "publish_many: bad request (input, group and output are required)");
        return AN_EINVAL;
    }
    rd_cmd c;
    rd_cmd_init(&c);
    rd_cmd_add(&c, "EVALSHA"); /* placeholders filled by rd_eval_script */
    rd_cmd_add(&c, "");
    char akey[512];
    rd_cmd_addi(&c, (int64_t)(3 + g->nkeys));
    rd_cmd_add(&c, g->input);
    rd_cmd_add(&c, g->output);
    rd_cmd_add(&c, an_attempts_key(g->input, akey, sizeof akey));
    for (size_t k = 0; k < g->nkeys; k++)
        rd_cmd_add(&c, g->keys[k]);
    rd_cmd_add(&c, g->group);
    rd_cmd_add(&c, g->owner ? g->owner : "");
    rd_cmd_addi(&c, g->output_maxlen > 0 ? g->output_maxlen : 0);
    rd_cmd_addi(&c, (int64_t)g->nentries);
    rd_cmd_add(&c, g->no_ack ? "0" : "1");
    char ts[24];
    snprintf(ts, sizeof ts, "%" PRId64, g->updated_ms > 0 ? g->updated_ms : now_ms());
    /* three numbers per entry; cmd's own number slots are too few */
    char (*nums)[24] = malloc((g->nentries ? g->nentries : 1) * 3 * sizeof *nums);
    if (!nums) {
        rd_cmd_free(&c);
        rd_err(r, "out of memory");
        return AN_ENOMEM;
    }
    for (size_t i = 0; i < g->nentries; i++) {
        const an_publish_entry *e = &g->entries[i];
        if (e->key_index > g->nkeys || (e->key_index && !e->params_json)) {
            rd_cmd_free(&c);
            free(nums);
            rd_err(r, "publish_many: entry %zu: bad params key index", i);
            return AN_EINVAL;
        }
        char *n0 = nums[3 * i], *n1 = nums[3 * i + 1], *n2 = nums[3 * i + 2];
        snprintf(n0, 24, "%zu", e->nmsgs);
        /* KEYS[1..3] are the streams and the attempts hash: hash k is
         * KEYS[3 + k]. */
        snprintf(n1, 24, "%zu", e->key_index ? e->key_index + 3 : 0);
        snprintf(n2, 24, "%" PRId64, e->watermark);
        rd_cmd_add(&c, e->entry_id);
        rd_cmd_add(&c, n0);
        rd_cmd_add(&c, n1);
        rd_cmd_add(&c, e->key_index ? e->params_json : "");
        rd_cmd_add(&c, n2);
        rd_cmd_add(&c, ts);
        rd_cmd_add(&c, e->key_index && e->source ? e->source : "");
        for (size_t j = 0; j < e->nmsgs; j++) {
            const an_out_msg *m = &e->msgs[j];
            rd_cmd_add(&c, m->data_type);
            rd_cmd_add(&c, m->model);
            rd_cmd_add(&c, m->rows ? m->rows : "");
            rd_cmd_add(&c, an_encoding_name(m->encoding));
            rd_cmd_addn(&c, m->body ? m->body : "", m->body_len);
        }
    }
    redisReply *rep;
    int rc = rd_eval_script(r, "publish_many", &c, &rep);
    rd_cmd_free(&c);
    free(nums);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != g->nentries)
        return rd_bad_reply(r, "publish_many.lua", rep);
    for (size_t i = 0; i < g->nentries; i++) {
        const redisReply *x = rep->element[i];
        if (x->type != REDIS_REPLY_ARRAY || x->elements != 4 ||
            x->element[0]->type != REDIS_REPLY_INTEGER ||
            x->element[3]->type != REDIS_REPLY_ARRAY ||
            x->element[3]->elements != (x->element[0]->integer ? g->entries[i].nmsgs : 0))
            return rd_bad_reply(r, "publish_many.lua entry", rep);
    }
    *out = rep;
    return 0;
}

int an_publish_many(an_redis *r, const an_publish_group *g, int *status)
{
    for (size_t i = 0; i < g->nentries; i++)
        status[i] = 0;
    redisReply *rep;
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
        g->name = rd_dupn(name->str, (size_t)name->len);
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
    rd_cmd_init(&c);
    rd_cmd_add(&c, "EVALSHA"); /* placeholders filled by rd_eval_script */
    rd_cmd_add(&c, "");
    rd_cmd_addi(&c, 1);
    rd_cmd_add(&c, stream);
    rd_cmd_addi(&c, retention_ms);
    rd_cmd_add(&c, trim ? "1" : "0");
    rd_cmd_addi(&c, limit);
    redisReply *rep;
    int rc = rd_eval_script(r, "trim_input", &c, &rep);
    rd_cmd_free(&c);
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
    rd_cmd_init(&c);
    rd_cmd_add(&c, "EVALSHA"); /* placeholders filled by rd_eval_script */
    rd_cmd_add(&c, "");
    rd_cmd_addi(&c, 2);
    rd_cmd_add(&c, input);
    rd_cmd_add(&c, an_attempts_key(input, key, sizeof key));
    rd_cmd_add(&c, group);
    rd_cmd_add(&c, cursor[0] ? cursor : "0");
    rd_cmd_addi(&c, (int64_t)count);
    redisReply *rep;
    int rc = rd_eval_script(r, "attempts_gc", &c, &rep);
    rd_cmd_free(&c);
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
    snprintf(updated, sizeof updated, "%" PRId64, now_ms());
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    redisReply *rep;
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
    redisReply *rep;
    int rc = rd_call(r, RD_ARGV("HMGET", key, "state", "cause", "since"), &rep, false);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return rd_bad_reply(r, "HMGET health", rep);
    if (rep->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        return AN_ENOTFOUND;
    }
    snprintf(state, state_len, "%s", rep->element[0]->str);
    snprintf(cause, cause_len, "%s",
             rep->element[1]->type == REDIS_REPLY_STRING ? rep->element[1]->str : "");
    *since_ms = rep->element[2]->type == REDIS_REPLY_STRING
                    ? strtoll(rep->element[2]->str, NULL, 10) : 0;
    freeReplyObject(rep);
    return 0;
}

