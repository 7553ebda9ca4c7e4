/* test_streams.c: an_streams against the real Redis of ANOMALYD_REDIS_URL
 * (ops/stack.sh). Fails (does not skip) when the variable is unset. Every
 * test uses its own key prefix and deletes its keys. */
#include <check.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "an_codec.h"
#include "an_config.h"
#include "an_streams.h"
#include "support_publish.h"
#include "check_main.h"

static an_redis *R;
static char prefix[128];
static char *keys[32];
static int nkeys;
static char ebuf[512];

static const char *url(void)
{
    const char *u = getenv("ANOMALYD_REDIS_URL");
    ck_assert_msg(u && *u, "ANOMALYD_REDIS_URL is not set (eval \"$(ops/stack.sh "
                           "env)\")");
    return u;
}

static const char *key(const char *name)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", prefix, name);
    for (int i = 0; i < nkeys; i++)
        if (strcmp(keys[i], buf) == 0)
            return keys[i];
    ck_assert_int_lt(nkeys, 32);
    keys[nkeys] = strdup(buf);
    return keys[nkeys++];
}

static void setup(void)
{
    static int seq;
    snprintf(prefix, sizeof prefix, "antest:streams:%d:%ld:%d:", (int)getpid(),
             (long)time(NULL), ++seq);
    nkeys = 0;
    int rc = an_redis_connect(url(), NULL, &R, ebuf, sizeof ebuf);
    ck_assert_msg(rc == 0, "connect %s: %s", url(), ebuf);
}

static void teardown(void)
{
    for (int i = 0; i < nkeys; i++) {
        if (R)
            an_del(R, keys[i], NULL);
        free(keys[i]);
    }
    nkeys = 0;
    an_redis_free(R);
    R = NULL;
}

static an_field F(const char *name, const char *value)
{
    an_field f = {name, strlen(name), value, strlen(value)};
    return f;
}

static void xadd(const char *stream, const char *model, const char *batch,
                 char id[AN_ID_MAX])
{
    an_field f[2] = {F("model", model), F("batch", batch)};
    int rc = an_xadd(R, stream, 0, f, 2, id);
    ck_assert_msg(rc == 0, "XADD: %s", an_redis_errstr(R));
}

static redisReply *cmd(const char *fmt, ...)
{
    /* raw hiredis on the module's own context (tests only) */
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(an_redis_ctx(R), fmt, ap);
    va_end(ap);
    ck_assert_ptr_nonnull(rep);
    return rep;
}

static int64_t pel_count(const char *stream, const char *group)
{
    an_pending_summary s;
    ck_assert_int_eq(an_pending_summary_get(R, stream, group, &s), 0);
    int64_t n = s.count;
    an_pending_summary_free(&s);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ tests */

/* unix:// URLs: the config check (the connector's own parser) accepts
 * what the connector connects to: the stack's Redis on its unix socket
 * (ops/stack.sh env exports its path). */
START_TEST(unix_socket_url)
{
    const char *sock = getenv("ANOMALYD_STACK_REDIS_SOCKET");
    ck_assert_msg(sock && *sock, "ANOMALYD_STACK_REDIS_SOCKET is not set: eval \"$(ops/stack.sh "
                                 "env)\" (restart the stack if it predates the unix socket)");
    char url[600];
    snprintf(url, sizeof url, "unix://%s?db=0", sock);
    an_config cfg;
    ck_assert_int_eq(an_config_load(&cfg, NULL, ebuf, sizeof ebuf), 0);
    ck_assert_msg(an_config_set(&cfg, "redis", "url", url, "test", ebuf, sizeof ebuf) == 0, "%s",
                  ebuf);
    an_redis *x = NULL;
    ck_assert_msg(an_redis_connect(cfg.redis.url, NULL, &x, ebuf, sizeof ebuf) == 0, "%s: %s",
                  url, ebuf);
    ck_assert_int_eq(an_redis_ping(x), 0);
    an_redis_free(x);
    an_config_free(&cfg);
    /* a relative path is refused by both alike */
    ck_assert_int_eq(an_redis_connect("unix://relative.sock", NULL, &x, ebuf, sizeof ebuf),
                     AN_ECONFIG);
}
END_TEST

START_TEST(connect_and_urls)
{
    ck_assert_int_eq(an_redis_ping(R), 0);
    an_redis *x = NULL;
    ck_assert_int_eq(an_redis_connect("http://x", NULL, &x, ebuf, sizeof ebuf),
                     AN_ECONFIG);
    ck_assert_ptr_null(x);
    ck_assert_int_eq(an_redis_connect("redis://127.0.0.1:notaport/0", NULL, &x,
                                      ebuf, sizeof ebuf),
                     AN_ECONFIG);
    ck_assert_int_eq(an_redis_connect("redis://127.0.0.1:6379/x", NULL, &x,
                                      ebuf, sizeof ebuf),
                     AN_ECONFIG);
    an_redis_opts o = an_redis_opts_default();
    o.connect_timeout_ms = 500;
    /* port 1: nothing listens */
    ck_assert_int_eq(an_redis_connect("redis://127.0.0.1:1/0", &o, &x, ebuf,
                                      sizeof ebuf),
                     AN_ETRANSIENT);
    ck_assert_ptr_nonnull(strstr(ebuf, "cannot connect"));
    /* a wrong password is refused (AUTH error), whatever the server's
     * auth setup: no password configured -> "ERR AUTH ... no password",
     * configured -> WRONGPASS */
    char bad[512];
    const char *u = url();
    const char *hp = strstr(u, "://") + 3;
    const char *at = strchr(hp, '@');
    if (at)
        hp = at + 1;
    snprintf(bad, sizeof bad, "redis://:definitely-wrong%%21@%s", hp);
    ck_assert_int_eq(an_redis_connect(bad, NULL, &x, ebuf, sizeof ebuf),
                     AN_EREDIS);
    ck_assert_ptr_nonnull(strstr(ebuf, "AUTH"));
    ck_assert_ptr_null(strstr(ebuf, "definitely-wrong"));
    ck_assert_ptr_nonnull(strstr(ebuf, "***"));

    /* the db number selects another database (SELECT on connect and on
     * every reconnect) */
    char other[512];
    const char *slash = strchr(strstr(u, "://") + 3, '/');
    int len = slash ? (int)(slash - u) : (int)strlen(u);
    snprintf(other, sizeof other, "%.*s/%d", len, u,
             slash && atoi(slash + 1) == 3 ? 4 : 3);
    ck_assert_int_eq(an_redis_connect(other, NULL, &x, ebuf, sizeof ebuf), 0);
    const char *k = key("dbtest");
    an_field f[1] = {F("a", "b")};
    ck_assert_int_eq(an_xadd(x, k, 0, f, 1, NULL), 0);
    int64_t n = -1;
    ck_assert_int_eq(an_xlen(R, k, &n), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(an_redis_reconnect(x), 0);
    ck_assert_int_eq(an_xlen(x, k, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(an_del(x, k, NULL), 0);
    an_redis_free(x);
}
END_TEST

START_TEST(group_create_idempotent)
{
    const char *in = key("in");
    bool created = false;
    ck_assert_int_eq(an_group_create(R, in, "g", "0", &created), 0);
    ck_assert(created);
    ck_assert_int_eq(an_group_create(R, in, "g", "0", &created), 0);
    ck_assert(!created); /* BUSYGROUP tolerated */
    int64_t len = -1;
    ck_assert_int_eq(an_xlen(R, in, &len), 0);
    ck_assert_int_eq(len, 0); /* MKSTREAM */
    an_group_info *g = NULL;
    size_t ng = 0;
    ck_assert_int_eq(an_xinfo_groups(R, in, &g, &ng), 0);
    ck_assert_uint_eq(ng, 1);
    ck_assert_str_eq(g[0].name, "g");
    ck_assert_int_eq(g[0].pending, 0);
    an_group_info_free(g, ng);
}
END_TEST

START_TEST(restart_protocol)
{
    const char *in = key("in");
    char id[3][AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    xadd(in, "m1", "[1]", id[0]);
    xadd(in, "m1", "[2]", id[1]);
    xadd(in, "m1", "[3]", id[2]);

    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 2, -1, &l), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.v[0].id, id[0]);
    ck_assert_int_eq(l.v[0].deliveries, 1);
    ck_assert(!l.v[0].nil);
    ck_assert_uint_eq(l.v[0].nfields, 2);
    ck_assert_str_eq(an_entry_field(&l.v[1], "batch")->value, "[2]");
    an_entry_list_free(&l);

    /* "crash": new connection, same consumer name */
    an_redis_free(R);
    R = NULL;
    ck_assert_int_eq(an_redis_connect(url(), NULL, &R, ebuf, sizeof ebuf), 0);
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", "0", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.v[0].id, id[0]);
    ck_assert_str_eq(l.v[1].id, id[1]);
    ck_assert_str_eq(an_entry_field(&l.v[0], "model")->value, "m1");
    ck_assert_int_eq(l.v[0].deliveries, 2);
    ck_assert_int_eq(l.v[1].deliveries, 2);
    an_entry_list_free(&l);

    /* another consumer sees none of c1's pending entries */
    ck_assert_int_eq(an_read_group(R, in, "g", "c2", "0", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 0);

    /* pending after an id (paging through the own PEL) */
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", id[0], 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(l.v[0].id, id[1]);
    an_entry_list_free(&l);

    /* a pending entry whose payload was deleted comes back nil */
    const char *del[1] = {id[0]};
    int64_t nd = 0;
    ck_assert_int_eq(an_xdel(R, in, del, 1, &nd), 0);
    ck_assert_int_eq(nd, 1);
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", "0", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert(l.v[0].nil);
    ck_assert_uint_eq(l.v[0].nfields, 0);
    ck_assert_str_eq(l.v[0].id, id[0]);
    ck_assert(!l.v[1].nil);
    an_entry_list_free(&l);

    /* then the new ones */
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(l.v[0].id, id[2]);
    an_entry_list_free(&l);

    const char *ids[3] = {id[0], id[1], id[2]};
    int64_t acked = 0;
    ck_assert_int_eq(an_xack(R, in, "g", ids, 3, &acked), 0);
    ck_assert_int_eq(acked, 3);
    ck_assert_int_eq(pel_count(in, "g"), 0);
}
END_TEST

START_TEST(blocking_read_timeout)
{
    const char *in = key("in");
    an_redis_free(R);
    an_redis_opts o = an_redis_opts_default();
    o.command_timeout_ms = 200;
    o.block_margin_ms = 300;
    ck_assert_int_eq(an_redis_connect(url(), &o, &R, ebuf, sizeof ebuf), 0);
    ck_assert_int_eq(an_group_create(R, in, "g", "$", NULL), 0);
    an_entry_list l = {0};
    double t0 = now_s();
    /* BLOCK longer than the command timeout: no I/O error */
    int rc = an_read_group(R, in, "g", "c1", ">", 10, 600, &l);
    double dt = now_s() - t0;
    ck_assert_msg(rc == 0, "%s", an_redis_errstr(R));
    ck_assert_uint_eq(l.n, 0);
    ck_assert_msg(dt >= 0.55 && dt < 3.0, "blocked %.3f s", dt);
    /* the command timeout is back afterwards */
    ck_assert_int_eq(an_redis_ping(R), 0);
    ck_assert_int_eq(an_xread(R, in, "$", 10, 250, &l), 0);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(reconnect_after_kill)
{
    const char *in = key("in");
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    redisReply *id = cmd("CLIENT ID");
    ck_assert_int_eq(id->type, REDIS_REPLY_INTEGER);
    long long cid = id->integer;
    freeReplyObject(id);
    an_redis *k = NULL;
    ck_assert_int_eq(an_redis_connect(url(), NULL, &k, ebuf, sizeof ebuf), 0);
    redisReply *rep = redisCommand(an_redis_ctx(k), "CLIENT KILL ID %lld", cid);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(rep->integer, 1);
    freeReplyObject(rep);
    an_redis_free(k);
    ck_assert_int_eq(an_redis_ping(R), AN_ETRANSIENT);
    ck_assert_ptr_null(an_redis_ctx(R));
    /* the next call reconnects */
    ck_assert_int_eq(an_redis_ping(R), 0);
    int64_t len = -1;
    ck_assert_int_eq(an_xlen(R, in, &len), 0);
    ck_assert_int_eq(an_redis_reconnect(R), 0);
    ck_assert_int_eq(an_redis_ping(R), 0);
}
END_TEST

/* A zlib body that contains NUL bytes. */
static char *nul_body(size_t *len, char cmd_id[32])
{
    for (int i = 0;; i++) {
        an_cmd_msg c = {0};
        c.method = "deleteModel";
        c.model_id = "u1";
        snprintf(cmd_id, 32, "cmd-%d", i);
        c.command_id = cmd_id;
        char e[128];
        json_t *m;
        ck_assert_int_eq(an_msg_command(&c, &m, e, sizeof e), 0);
        char *body = NULL;
        ck_assert_int_eq(
            an_body_encode(m, AN_ENC_ZLIB, &body, len, e, sizeof e), 0);
        json_decref(m);
        if (memchr(body, '\0', *len))
            return body;
        free(body);
    }
}

START_TEST(publish_does_all_three)
{
    const char *in = key("in"), *out = key("out"), *pk = key("params:u1");
    char id[AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    xadd(in, "u1", "[]", id);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    an_entry_list_free(&l);
    ck_assert_int_eq(pel_count(in, "g"), 1);

    size_t blen = 0;
    char cmd_id[32];
    char *body = nul_body(&blen, cmd_id);
    ck_assert_ptr_nonnull(memchr(body, '\0', blen));
    an_out_msg msgs[2] = {
        {AN_DATATYPE_COMMAND, "u1", NULL, AN_ENC_ZLIB, body, blen},
        {AN_DATATYPE_INFERENCE, "u1", "101-140", AN_ENC_JSON, "{\"x\":1}", 7},
    };
    sp_params_update pu = {pk, "{\"last_rowid_for_stats\":140}", 140,
                           1700000000123, "1-1"};
    sp_publish_req q = {in, "g", id, "c1", out, 1000, msgs, 2, &pu};
    sp_publish_res res;
    int rc = sp_publish(R, &q, &res);
    ck_assert_msg(rc == 0, "%s", an_redis_errstr(R));
    ck_assert_int_eq(res.acked, 1);
    ck_assert_int_eq(res.cache, 1);
    ck_assert_uint_eq(res.nids, 2);

    /* output entries with exactly these fields, in order */
    ck_assert_int_eq(an_xrange(R, out, "-", "+", 0, false, &l), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.v[0].id, res.ids[0]);
    ck_assert_str_eq(l.v[1].id, res.ids[1]);
    static const char *f0[] = {"dataType", "model", "source", "encoding",
                               "body"};
    static const char *f1[] = {"dataType", "model",    "rows",
                               "source",   "encoding", "body"};
    ck_assert_uint_eq(l.v[0].nfields, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_str_eq(l.v[0].fields[i].name, f0[i]);
    ck_assert_uint_eq(l.v[1].nfields, 6);
    for (size_t i = 0; i < 6; i++)
        ck_assert_str_eq(l.v[1].fields[i].name, f1[i]);
    ck_assert_str_eq(an_entry_field(&l.v[0], "dataType")->value,
                     "model-cmd-result");
    ck_assert_str_eq(an_entry_field(&l.v[0], "source")->value, id);
    ck_assert_str_eq(an_entry_field(&l.v[0], "encoding")->value, "zlib");
    const an_field *b = an_entry_field(&l.v[0], "body");
    ck_assert_uint_eq(b->value_len, blen);
    ck_assert(memcmp(b->value, body, blen) == 0); /* binary safe */
    ck_assert_str_eq(an_entry_field(&l.v[1], "rows")->value, "101-140");
    ck_assert_str_eq(an_entry_field(&l.v[1], "encoding")->value, "json");
    /* decodes as an output entry */
    json_t *d = NULL;
    ck_assert_int_eq(an_output_entry_decode(l.v[0].id, l.v[0].fields,
                                            l.v[0].nfields, 0, &d, ebuf,
                                            sizeof ebuf),
                     0);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(d, "body"), "commandId")),
                     cmd_id);
    json_decref(d);
    an_entry_list_free(&l);

    /* hash */
    char *params = NULL;
    int64_t wm = 0, upd = 0;
    ck_assert_int_eq(an_params_cache_get(R, pk, &params, &wm, &upd), 0);
    ck_assert_str_eq(params, "{\"last_rowid_for_stats\":140}");
    ck_assert_int_eq(wm, 140);
    ck_assert_int_eq(upd, 1700000000123);
    free(params);
    redisReply *h = cmd("HLEN %s", pk);
    ck_assert_int_eq(h->integer, 4);   /* params, watermark, updated, source */
    freeReplyObject(h);
    h = cmd("HGET %s source", pk);
    ck_assert_int_eq(h->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(h->str, "1-1");
    freeReplyObject(h);

    /* XACK: gone from the PEL */
    ck_assert_int_eq(pel_count(in, "g"), 0);
    sp_publish_res_free(&res);

    /* publishing again (a duplicate): acked 0, nothing else breaks */
    q.owner = NULL;
    q.params = NULL;
    q.nmsgs = 0;
    ck_assert_int_eq(sp_publish(R, &q, &res), 0);
    ck_assert_int_eq(res.acked, 0);
    ck_assert_int_eq(res.cache, -1);
    ck_assert_uint_eq(res.nids, 0);
    sp_publish_res_free(&res);
    free(body);
}
END_TEST

START_TEST(publish_cache_never_backwards)
{
    const char *in = key("in"), *pk = key("params:u2");
    char id[4][AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    for (int i = 0; i < 4; i++)
        xadd(in, "u2", "[]", id[i]);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    an_entry_list_free(&l);
    struct {
        int64_t wm;
        const char *params;
        int expect_cache;
        const char *expect_params;
        int64_t expect_wm;
    } steps[4] = {{50, "{\"v\":50}", 1, "{\"v\":50}", 50},
                  {40, "{\"v\":40}", 0, "{\"v\":50}", 50},
                  {50, "{\"v\":50b}", 1, "{\"v\":50b}", 50},
                  {1000, "{\"v\":1000}", 1, "{\"v\":1000}", 1000}};
    for (int i = 0; i < 4; i++) {
        sp_params_update pu = {pk, steps[i].params, steps[i].wm, 0, NULL};
        sp_publish_req q = {in, "g", id[i], NULL, NULL, 0, NULL, 0, &pu};
        sp_publish_res res;
        ck_assert_int_eq(sp_publish(R, &q, &res), 0);
        ck_assert_int_eq(res.cache, steps[i].expect_cache);
        ck_assert_int_eq(res.acked, 1); /* acked even when the cache is kept */
        char *p = NULL;
        int64_t wm = 0, upd = 0;
        ck_assert_int_eq(an_params_cache_get(R, pk, &p, &wm, &upd), 0);
        ck_assert_str_eq(p, steps[i].expect_params);
        ck_assert_int_eq(wm, steps[i].expect_wm);
        ck_assert_int_gt(upd, 1600000000000); /* now, client clock */
        free(p);
        sp_publish_res_free(&res);
    }
    /* absent hash */
    ck_assert_int_eq(an_params_cache_get(R, key("params:none"), NULL, NULL,
                                         NULL),
                     AN_ENOTFOUND);
}
END_TEST

/* an_params_cache_get_many: one pipelined HMGET per key asked for; a NULL
 * key is skipped (its slot reads as absent) and the replies of the others
 * stay in their places; all NULL is no request at all. */
START_TEST(params_cache_get_many_skips_null_keys)
{
    const char *in = key("in");
    const char *k1 = key("params:m1");
    const char *k3 = key("params:m3");
    char id[2][AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    xadd(in, "m1", "[]", id[0]);
    xadd(in, "m3", "[]", id[1]);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    an_entry_list_free(&l);
    const char *texts[2] = {"{\"v\":1}", "{\"v\":3}"};
    const char *pks[2] = {k1, k3};
    for (int i = 0; i < 2; i++) {
        sp_params_update pu = {pks[i], texts[i], 10 + i, 0, NULL};
        sp_publish_req q = {in, "g", id[i], NULL, NULL, 0, NULL, 0, &pu};
        ck_assert_int_eq(sp_publish(R, &q, NULL), 0);
    }
    /* the m2 slot names a hash that exists: skipped all the same */
    const char *keys[4] = {k1, NULL, k3, NULL};
    char *params[4], *src[4];
    int64_t wm[4];
    ck_assert_int_eq(an_params_cache_get_many(R, keys, 4, params, wm, src), 0);
    ck_assert_str_eq(params[0], "{\"v\":1}");
    ck_assert_int_eq(wm[0], 10);
    ck_assert_ptr_null(params[1]);
    ck_assert_int_eq(wm[1], -1);
    ck_assert_str_eq(params[2], "{\"v\":3}");
    ck_assert_int_eq(wm[2], 11);
    ck_assert_ptr_null(params[3]);
    for (int i = 0; i < 4; i++) {
        free(params[i]);
        free(src[i]);
    }
    const char *none[2] = {NULL, NULL};
    ck_assert_int_eq(an_params_cache_get_many(R, none, 2, params, wm, src), 0);
    ck_assert_ptr_null(params[0]);
    ck_assert_ptr_null(params[1]);
    /* the connection is in step: the next command gets its own reply */
    char *p = NULL;
    ck_assert_int_eq(an_params_cache_get(R, k3, &p, NULL, NULL), 0);
    ck_assert_str_eq(p, "{\"v\":3}");
    free(p);
}
END_TEST

START_TEST(publish_maxlen_trims)
{
    const char *in = key("in"), *out = key("out");
    char id[AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    xadd(in, "u1", "[]", id);
    an_out_msg m = {AN_DATATYPE_INFERENCE, "u1", "1-1", AN_ENC_JSON, "{}", 2};
    for (int i = 0; i < 600; i++) {
        sp_publish_req q = {in, "g", id, NULL, out, 10, &m, 1, NULL};
        ck_assert_int_eq(sp_publish(R, &q, NULL), 0);
    }
    int64_t len = 0;
    ck_assert_int_eq(an_xlen(R, out, &len), 0);
    /* approximate: whole macro nodes (100 entries by default) are dropped */
    ck_assert_msg(len >= 10 && len <= 200, "len %" PRId64, len);
}
END_TEST

START_TEST(publish_atomic_on_error)
{
    const char *in = key("in"), *out = key("out"), *pk = key("params:u1");
    char id[AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    xadd(in, "u1", "[]", id);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    an_entry_list_free(&l);
    /* the params key has the wrong type: the script fails before writing */
    redisReply *s = cmd("SET %s oops", pk);
    freeReplyObject(s);
    an_out_msg m = {AN_DATATYPE_INFERENCE, "u1", "1-1", AN_ENC_JSON, "{}", 2};
    sp_params_update pu = {pk, "{}", 1, 0, NULL};
    sp_publish_req q = {in, "g", id, NULL, out, 0, &m, 1, &pu};
    int rc = sp_publish(R, &q, NULL);
    ck_assert_int_eq(rc, AN_EENV);   /* WRONGTYPE on our key: environment (an_fault.h) */
    ck_assert_ptr_nonnull(strstr(an_redis_errstr(R), "WRONGTYPE"));
    ck_assert_ptr_nonnull(strstr(an_redis_hint(R), "another type"));
    int64_t len = -1;
    ck_assert_int_eq(an_xlen(R, out, &len), 0);
    ck_assert_int_eq(len, 0);
    ck_assert_int_eq(pel_count(in, "g"), 1);

    /* not the owner: AN_ESTATE and nothing written */
    an_del(R, pk, NULL);
    q.owner = "someone-else";
    ck_assert_int_eq(sp_publish(R, &q, NULL), AN_ESTATE);
    ck_assert_int_eq(an_xlen(R, out, &len), 0);
    ck_assert_int_eq(len, 0);
    ck_assert_int_eq(pel_count(in, "g"), 1);
    ck_assert_int_eq(an_params_cache_get(R, pk, NULL, NULL, NULL),
                     AN_ENOTFOUND);
    q.owner = "c1";
    ck_assert_int_eq(sp_publish(R, &q, NULL), 0);
    ck_assert_int_eq(an_xlen(R, out, &len), 0);
    ck_assert_int_eq(len, 1);
    ck_assert_int_eq(pel_count(in, "g"), 0);
}
END_TEST

START_TEST(dead_letter_fields_and_ack)
{
    const char *in = key("in"), *dl = key("dead");
    char id[AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    /* binary batch field with NULs and an encoding field */
    static const char bin[] = {'x', '\0', '\x9c', 'y', '\0'};
    an_field f[3] = {F("model", "u9"), {"batch", 5, bin, sizeof bin},
                     F("encoding", "zlib")};
    ck_assert_int_eq(an_xadd(R, in, 0, f, 3, id), 0);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    const an_field *bf = an_entry_field(&l.v[0], "batch");
    ck_assert_uint_eq(bf->value_len, sizeof bin);
    ck_assert(memcmp(bf->value, bin, sizeof bin) == 0);

    an_dead_letter_req q = {in,          "g",         id, "c1", dl, 0,
                            l.v[0].fields, l.v[0].nfields,
                            "batch: truncated zlib stream", 3, "c1"};
    char dlid[AN_ID_MAX];
    int rc = an_dead_letter(R, &q, dlid);
    ck_assert_msg(rc == 0, "%s", an_redis_errstr(R));
    ck_assert(dlid[0] != '\0');
    an_entry_list_free(&l);
    ck_assert_int_eq(pel_count(in, "g"), 0);

    ck_assert_int_eq(an_xrange(R, dl, "-", "+", 0, false, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(l.v[0].id, dlid);
    static const char *names[] = {"model",  "batch",      "encoding", "reason",
                                  "source", "deliveries", "consumer"};
    ck_assert_uint_eq(l.v[0].nfields, 7);
    for (size_t i = 0; i < 7; i++)
        ck_assert_str_eq(l.v[0].fields[i].name, names[i]);
    bf = an_entry_field(&l.v[0], "batch");
    ck_assert_uint_eq(bf->value_len, sizeof bin);
    ck_assert(memcmp(bf->value, bin, sizeof bin) == 0);
    ck_assert_str_eq(an_entry_field(&l.v[0], "reason")->value,
                     "batch: truncated zlib stream");
    ck_assert_str_eq(an_entry_field(&l.v[0], "source")->value, id);
    ck_assert_str_eq(an_entry_field(&l.v[0], "deliveries")->value, "3");
    ck_assert_str_eq(an_entry_field(&l.v[0], "consumer")->value, "c1");
    an_entry_list_free(&l);

    /* a nil entry (payload gone): only the four added fields */
    xadd(in, "u9", "[]", id);
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    an_entry_list_free(&l);
    const char *del[1] = {id};
    ck_assert_int_eq(an_xdel(R, in, del, 1, NULL), 0);
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", "0", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert(l.v[0].nil);
    an_dead_letter_req q2 = {in, "g", id, NULL, dl, 0, NULL, 0,
                             "entry deleted", l.v[0].deliveries, "c1"};
    ck_assert_int_eq(an_dead_letter(R, &q2, dlid), 0);
    an_entry_list_free(&l);
    ck_assert_int_eq(pel_count(in, "g"), 0);
    ck_assert_int_eq(an_xrange(R, dl, "+", "-", 1, true, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_uint_eq(l.v[0].nfields, 4);
    /* Redis does not count a re-read of a deleted entry as a delivery */
    ck_assert_str_eq(an_entry_field(&l.v[0], "deliveries")->value, "1");
    an_entry_list_free(&l);

    /* owner check */
    xadd(in, "u9", "[]", id);
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    an_entry_list_free(&l);
    q2.entry_id = id;
    q2.owner = "c2";
    ck_assert_int_eq(an_dead_letter(R, &q2, dlid), AN_ESTATE);
    ck_assert_int_eq(pel_count(in, "g"), 1);
}
END_TEST

/* Issue 9 case 5: an entry of any number of fields can be dead-lettered
 * (redis.call takes at most ~8000 arguments: the script cannot unpack
 * 4,000 fields into one XADD). At and past the inline limit (1000 fields),
 * 4,000 and 100,000 fields. */
static void dead_letter_n_fields(size_t n)
{
    const char *in = key("wide"), *dl = key("wide:dead");
    an_del(R, in, NULL);
    an_del(R, dl, NULL);
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    an_field *f = calloc(n, sizeof *f);
    char (*names)[24] = calloc(n, sizeof *names);
    ck_assert(f && names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "f%zu", i);
        f[i] = (an_field){names[i], strlen(names[i]), "v\n\x1b", 3};
    }
    char id[AN_ID_MAX], dlid[AN_ID_MAX];
    ck_assert_msg(an_xadd(R, in, 0, f, n, id) == 0, "%s", an_redis_errstr(R));
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_uint_eq(l.v[0].nfields, n);
    an_dead_letter_req q = {in, "g", id, "c1", dl, 0, l.v[0].fields, l.v[0].nfields,
                            "missing field 'model'", 1, "c1"};
    int rc = an_dead_letter(R, &q, dlid);
    ck_assert_msg(rc == 0, "%zu fields: %s", n, an_redis_errstr(R));
    an_entry_list_free(&l);
    ck_assert_int_eq(pel_count(in, "g"), 0);
    ck_assert_int_eq(an_xrange(R, dl, "-", "+", 0, false, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    const an_entry *e = &l.v[0];
    ck_assert_str_eq(an_entry_field(e, "reason")->value, "missing field 'model'");
    ck_assert_str_eq(an_entry_field(e, "source")->value, id);
    if (n <= 1000) {
        ck_assert_uint_eq(e->nfields, n + 4);
        for (size_t i = 0; i < n; i++) {
            ck_assert_str_eq(e->fields[i].name, names[i]);
            ck_assert_str_eq(e->fields[i].value, "v\n\x1b");
        }
    } else {
        ck_assert_uint_eq(e->nfields, 6);
        ck_assert_str_eq(e->fields[0].name, "fields_msgpack");
        char cnt[32];
        snprintf(cnt, sizeof cnt, "%zu", n);
        ck_assert_str_eq(an_entry_field(e, "field_count")->value, cnt);
        /* unpacked by Redis's own cmsgpack: every name and value, in order */
        const an_field *pk = an_entry_field(e, "fields_msgpack");
        redisReply *rep = cmd("EVAL %s 0 %b", "local t = cmsgpack.unpack(ARGV[1]) "
                              "local bad = 0 for i = 1, #t, 2 do "
                              "if t[i] ~= 'f' .. ((i - 1) / 2) or t[i + 1] ~= 'v\\n\\27' then "
                              "bad = bad + 1 end end return {#t, bad}",
                              pk->value, pk->value_len);
        ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
        ck_assert_int_eq(rep->element[0]->integer, (long long)(2 * n));
        ck_assert_int_eq(rep->element[1]->integer, 0);
        freeReplyObject(rep);
    }
    an_entry_list_free(&l);
    free(f);
    free(names);
}

START_TEST(dead_letter_any_number_of_fields)
{
    static const size_t sizes[] = {999, 1000, 1001, 4000, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        dead_letter_n_fields(sizes[i]);
}
END_TEST

/* The attempts hash (KEYS[3]) is type-checked before the first write: a
 * wrong type fails the script with nothing written and the entry pending. */
START_TEST(dead_letter_attempts_key_wrong_type)
{
    const char *in = key("in"), *dl = key("dead");
    char akey[512], id[AN_ID_MAX];
    an_attempts_key(in, akey, sizeof akey);
    key(akey + strlen(prefix));   /* cleaned up with the others */
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    xadd(in, "u9", "[]", id);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    freeReplyObject(cmd("SET %s x", akey));
    an_dead_letter_req q = {in, "g", id, "c1", dl, 0, l.v[0].fields, l.v[0].nfields,
                            "r", 1, "c1"};
    ck_assert_int_ne(an_dead_letter(R, &q, NULL), 0);
    ck_assert_ptr_nonnull(strstr(an_redis_errstr(R), "WRONGTYPE"));
    an_entry_list_free(&l);
    ck_assert_int_eq(pel_count(in, "g"), 1);
    ck_assert_int_eq(an_xrange(R, dl, "-", "+", 0, false, &l), 0);
    ck_assert_uint_eq(l.n, 0);
    an_entry_list_free(&l);
}
END_TEST

START_TEST(noscript_fallback)
{
    const char *in = key("in"), *out = key("out"), *dl = key("dead");
    char id[2][AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    xadd(in, "u1", "[]", id[0]);
    xadd(in, "u1", "[]", id[1]);
    ck_assert_int_eq(an_redis_load_scripts(R), 0);
    redisReply *f = cmd("SCRIPT FLUSH");
    ck_assert_int_eq(f->type, REDIS_REPLY_STATUS);
    freeReplyObject(f);
    an_out_msg m = {AN_DATATYPE_INFERENCE, "u1", "1-1", AN_ENC_JSON, "{}", 2};
    sp_publish_req q = {in, "g", id[0], NULL, out, 0, &m, 1, NULL};
    sp_publish_res res;
    int rc = sp_publish(R, &q, &res);
    ck_assert_msg(rc == 0, "%s", an_redis_errstr(R));
    ck_assert_uint_eq(res.nids, 1);
    sp_publish_res_free(&res);
    f = cmd("SCRIPT FLUSH");
    freeReplyObject(f);
    an_dead_letter_req d = {in, "g", id[1], NULL, dl, 0, NULL, 0, "r", 1, "c1"};
    ck_assert_int_eq(an_dead_letter(R, &d, NULL), 0);
    int64_t len = 0;
    ck_assert_int_eq(an_xlen(R, out, &len), 0);
    ck_assert_int_eq(len, 1);
    ck_assert_int_eq(an_xlen(R, dl, &len), 0);
    ck_assert_int_eq(len, 1);
}
END_TEST

START_TEST(autoclaim_and_deleted)
{
    const char *in = key("in");
    char id[3][AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    for (int i = 0; i < 3; i++)
        xadd(in, "u1", "[]", id[i]);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "dead-consumer", ">", 10, -1,
                                   &l),
                     0);
    ck_assert_uint_eq(l.n, 3);
    an_entry_list_free(&l);
    const char *del[1] = {id[1]};
    ck_assert_int_eq(an_xdel(R, in, del, 1, NULL), 0);

    /* not idle long enough yet: nothing claimed, but Redis checks existence
     * before idleness, so the deleted entry is reported (and dropped from
     * the PEL) right away */
    ck_assert_int_eq(an_autoclaim(R, in, "g", "c2", 60000, "0-0", 10, &l), 0);
    ck_assert_uint_eq(l.n, 0);
    ck_assert_uint_eq(l.ndeleted, 1);
    ck_assert_str_eq(l.deleted[0], id[1]);
    ck_assert_str_eq(l.next_start, "0-0");
    an_entry_list_free(&l);
    sleep_ms(60);

    ck_assert_int_eq(an_autoclaim(R, in, "g", "c2", 50, NULL, 10, &l), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.v[0].id, id[0]);
    ck_assert_str_eq(l.v[1].id, id[2]);
    ck_assert_int_eq(l.v[0].deliveries, 2);
    ck_assert_str_eq(an_entry_field(&l.v[0], "model")->value, "u1");
    ck_assert_uint_eq(l.ndeleted, 0);
    ck_assert_str_eq(l.next_start, "0-0");
    an_entry_list_free(&l);

    /* they are c2's now */
    an_pending_item *it = NULL;
    size_t ni = 0;
    ck_assert_int_eq(an_pending_range(R, in, "g", -1, "-", "+", 10, NULL, &it,
                                      &ni),
                     0);
    ck_assert_uint_eq(ni, 2);
    ck_assert_str_eq(it[0].consumer, "c2");
    ck_assert_int_eq(it[0].deliveries, 2);
    ck_assert_int_ge(it[0].idle_ms, 0);
    free(it);
    ck_assert_int_eq(an_pending_range(R, in, "g", 3600000, "-", "+", 10, NULL,
                                      &it, &ni),
                     0);
    ck_assert_uint_eq(ni, 0);
    free(it);

    an_pending_summary s;
    ck_assert_int_eq(an_pending_summary_get(R, in, "g", &s), 0);
    ck_assert_int_eq(s.count, 2);
    ck_assert_str_eq(s.min_id, id[0]);
    ck_assert_str_eq(s.max_id, id[2]);
    ck_assert_uint_eq(s.nconsumers, 1);
    ck_assert_str_eq(s.consumers[0].name, "c2");
    ck_assert_int_eq(s.consumers[0].pending, 2);
    an_pending_summary_free(&s);

    an_consumer_info *ci = NULL;
    size_t nc = 0;
    ck_assert_int_eq(an_xinfo_consumers(R, in, "g", &ci, &nc), 0);
    ck_assert_uint_eq(nc, 2);
    int64_t discarded = -1;
    for (size_t i = 0; i < nc; i++)
        if (strcmp(ci[i].name, "dead-consumer") == 0)
            ck_assert_int_eq(ci[i].pending, 0);
    an_consumer_info_free(ci, nc);
    ck_assert_int_eq(an_group_delconsumer(R, in, "g", "dead-consumer",
                                          &discarded),
                     0);
    ck_assert_int_eq(discarded, 0);

    an_stream_info si;
    ck_assert_int_eq(an_xinfo_stream(R, in, &si), 0);
    ck_assert_int_eq(si.length, 2);
    ck_assert_int_eq(si.groups, 1);
    ck_assert_int_eq(si.entries_added, 3);
    ck_assert_str_eq(si.first_id, id[0]);
    ck_assert_str_eq(si.last_id, id[2]);
    ck_assert_str_eq(si.last_generated_id, id[2]);
    ck_assert_int_eq(an_xinfo_stream(R, key("nope"), &si), AN_ENOTFOUND);

    an_group_info *g = NULL;
    size_t ng = 0;
    ck_assert_int_eq(an_xinfo_groups(R, in, &g, &ng), 0);
    ck_assert_uint_eq(ng, 1);
    ck_assert_int_eq(g[0].pending, 2);
    ck_assert_str_eq(g[0].last_delivered_id, id[2]);
    an_group_info_free(g, ng);
}
END_TEST

START_TEST(nogroup_detected)
{
    const char *in = key("in"), *out = key("out");
    char id[AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    xadd(in, "u1", "[]", id);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    an_entry_list_free(&l);
    ck_assert_int_eq(an_del(R, in, NULL), 0);

    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l),
                     AN_ENOGROUP);
    ck_assert_ptr_nonnull(strstr(an_redis_errstr(R), "NOGROUP"));
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", "0", 10, 100, &l),
                     AN_ENOGROUP);
    ck_assert_int_eq(an_autoclaim(R, in, "g", "c1", 0, NULL, 10, &l),
                     AN_ENOGROUP);
    an_out_msg m = {AN_DATATYPE_INFERENCE, "u1", "1-1", AN_ENC_JSON, "{}", 2};
    sp_publish_req q = {in, "g", id, NULL, out, 0, &m, 1, NULL};
    ck_assert_int_eq(sp_publish(R, &q, NULL), AN_ENOGROUP);
    int64_t len = -1;
    ck_assert_int_eq(an_xlen(R, out, &len), 0);
    ck_assert_int_eq(len, 0); /* nothing published */
    /* group exists, stream recreated by MKSTREAM: fine again */
    bool created = false;
    ck_assert_int_eq(an_group_create(R, in, "g", "0", &created), 0);
    ck_assert(created);
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 0);
    /* group missing on an existing stream */
    ck_assert_int_eq(an_read_group(R, in, "other", "c1", ">", 10, -1, &l),
                     AN_ENOGROUP);
}
END_TEST

/* attempts.lua: counts, the split answer for a group with an unfinished
 * attempt, and the publish / dead-letter scripts clearing the field. */
START_TEST(attempts_count_split_clear)
{
    const char *in = key("in"), *out = key("out"), *dl = key("dead");
    char akey[256];
    an_attempts_key(in, akey, sizeof akey);
    ck_assert_str_eq(key("in:attempts"), akey);   /* registered for teardown */
    char a[AN_ID_MAX], b[AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    xadd(in, "u1", "[]", a);
    xadd(in, "u1", "[]", b);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 2);
    an_entry_list_free(&l);

    const char *both[2] = {a, b};
    int64_t cnt[2] = {-1, -1};
    bool split = true;
    /* fresh entries: counted, even as a group */
    ck_assert_int_eq(an_attempts_begin(R, in, both, 2, true, cnt, &split), 0);
    ck_assert(!split);
    ck_assert_int_eq(cnt[0], 1);
    ck_assert_int_eq(cnt[1], 1);
    /* a group with unfinished attempts: split, nothing counted */
    ck_assert_int_eq(an_attempts_begin(R, in, both, 2, true, cnt, &split), 0);
    ck_assert(split);
    /* one by one: counted */
    ck_assert_int_eq(an_attempts_begin(R, in, both, 1, true, cnt, &split), 0);
    ck_assert(!split);
    ck_assert_int_eq(cnt[0], 2);
    /* without split allowed: counted */
    ck_assert_int_eq(an_attempts_begin(R, in, both, 2, false, cnt, &split), 0);
    ck_assert(!split);
    ck_assert_int_eq(cnt[0], 3);
    ck_assert_int_eq(cnt[1], 2);

    /* the publish clears a's field, the dead letter b's */
    sp_publish_req q = {in, "g", a, "c1", out, 0, NULL, 0, NULL};
    ck_assert_int_eq(sp_publish(R, &q, NULL), 0);
    redisReply *rep = cmd("HEXISTS %s %s", akey, a);
    ck_assert_int_eq(rep->integer, 0);
    freeReplyObject(rep);
    rep = cmd("HGET %s %s", akey, b);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(rep->str, "2");
    freeReplyObject(rep);
    an_field f[1] = {F("model", "u1")};
    an_dead_letter_req d = {in, "g", b, "c1", dl, 0, f, 1, "test", 3, "c1"};
    ck_assert_int_eq(an_dead_letter(R, &d, NULL), 0);
    rep = cmd("EXISTS %s", akey);
    ck_assert_int_eq(rep->integer, 0);
    freeReplyObject(rep);
}
END_TEST

START_TEST(binary_safe_roundtrip)
{
    const char *in = key("in");
    char id[AN_ID_MAX];
    ck_assert_int_eq(an_group_create(R, in, "g", "0", NULL), 0);
    /* a real zlib batch (contains NUL bytes? make sure of one) */
    an_result res[1];
    memset(res, 0, sizeof res);
    res[0].kind = AN_RES_INFERENCE;
    res[0].u.inf.rowid = 1;
    res[0].u.inf.has_score = true;
    res[0].u.inf.score = 0.5;
    char *z = NULL;
    size_t zlen = 0;
    ck_assert_int_eq(an_batch_encode(res, 1, AN_ENC_ZLIB, &z, &zlen, ebuf,
                                     sizeof ebuf),
                     0);
    /* field names and values with NULs, and an empty value */
    char *zz = malloc(zlen + 3);
    memcpy(zz, z, zlen);
    an_field f[4] = {F("model", "u1"), {"batch", 5, z, zlen},
                     F("encoding", "zlib"), {"x\0y", 3, "", 0}};
    ck_assert_int_eq(an_xadd(R, in, 0, f, 4, id), 0);
    an_entry_list l = {0};
    ck_assert_int_eq(an_read_group(R, in, "g", "c1", ">", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_uint_eq(l.v[0].nfields, 4);
    ck_assert_uint_eq(l.v[0].fields[1].value_len, zlen);
    ck_assert(memcmp(l.v[0].fields[1].value, z, zlen) == 0);
    ck_assert_uint_eq(l.v[0].fields[3].name_len, 3);
    ck_assert(memcmp(l.v[0].fields[3].name, "x\0y", 3) == 0);
    ck_assert_uint_eq(l.v[0].fields[3].value_len, 0);
    an_batch *b = NULL;
    ck_assert_int_eq(an_batch_decode(l.v[0].fields, l.v[0].nfields, NULL, &b,
                                     ebuf, sizeof ebuf),
                     0);
    ck_assert(b->results[0].u.inf.score == 0.5);
    an_batch_free(b);
    an_entry_list_free(&l);
    free(zz);
    free(z);

    /* a body made of NULs only survives publish */
    const char *out = key("out");
    static const char zeros[64] = {0};
    an_out_msg m = {AN_DATATYPE_COMMAND, "u1", NULL, AN_ENC_ZLIB, zeros,
                    sizeof zeros};
    sp_publish_req q = {in, "g", id, NULL, out, 0, &m, 1, NULL};
    ck_assert_int_eq(sp_publish(R, &q, NULL), 0);
    ck_assert_int_eq(an_xread(R, out, "0", 10, -1, &l), 0);
    ck_assert_uint_eq(l.n, 1);
    const an_field *bf = an_entry_field(&l.v[0], "body");
    ck_assert_uint_eq(bf->value_len, sizeof zeros);
    ck_assert(memcmp(bf->value, zeros, sizeof zeros) == 0);
    an_entry_list_free(&l);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("streams");
    TCase *tc = tcase_create("redis");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, connect_and_urls);
    tcase_add_test(tc, unix_socket_url);
    tcase_add_test(tc, attempts_count_split_clear);
    tcase_add_test(tc, group_create_idempotent);
    tcase_add_test(tc, restart_protocol);
    tcase_add_test(tc, blocking_read_timeout);
    tcase_add_test(tc, reconnect_after_kill);
    tcase_add_test(tc, publish_does_all_three);
    tcase_add_test(tc, publish_cache_never_backwards);
    tcase_add_test(tc, params_cache_get_many_skips_null_keys);
    tcase_add_test(tc, publish_maxlen_trims);
    tcase_add_test(tc, publish_atomic_on_error);
    tcase_add_test(tc, dead_letter_fields_and_ack);
    tcase_add_test(tc, dead_letter_any_number_of_fields);
    tcase_add_test(tc, dead_letter_attempts_key_wrong_type);
    tcase_add_test(tc, noscript_fallback);
    tcase_add_test(tc, autoclaim_and_deleted);
    tcase_add_test(tc, nogroup_detected);
    tcase_add_test(tc, binary_safe_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(suite(), CK_NORMAL);
}
