/*
 * redis.c: the Redis connection, the argv builder, the command runner with
 * its error classification, and the embedded scripts' loading and EVALSHA
 * (an_redis.h; shared with streams.c and scripts.c by redis_internal.h).
 */
#include "an_util.h"
#include "redis_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "an_fault.h"
#include "an_redis_url.h"

#define SHA_LEN 40
#define MAX_SCRIPTS 16

struct an_redis {
    redisContext *ctx; /* NULL while broken/disconnected */
    char *url_redacted;
    /* parsed URL */
    char *host;  /* TCP host, or NULL for unix */
    int port;
    char *path;  /* unix socket path */
    char *user;
    char *password;
    int db;
    an_redis_opts opts;
    char sha[MAX_SCRIPTS][SHA_LEN + 1]; /* "" = not loaded */
    char errstr[512];
    char errcode[24];   /* code of the last error reply, "" if none */
};

/* ------------------------------------------------------------ small utils */

void rd_err(an_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errstr, sizeof r->errstr, fmt, ap);
    va_end(ap);
}

void rd_clear_err(an_redis *r)
{
    r->errstr[0] = '\0';
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

void rd_copy_id(char dst[AN_ID_MAX], const char *s, size_t n)
{
    if (n >= AN_ID_MAX)
        n = AN_ID_MAX - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* ------------------------------------------------------------ commands */

void rd_cmd_init(rd_cmd *c)
{
    memset(c, 0, sizeof *c);
}

void rd_cmd_free(rd_cmd *c)
{
    free(c->argv);
    free(c->lens);
}

void rd_cmd_addn(rd_cmd *c, const char *s, size_t n)
{
    if (c->fail)
        return;
    if (!s) {
        c->fail = true;
        return;
    }
    if (c->argc == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        const char **na = realloc(c->argv, ncap * sizeof *na);
        if (!na) {
            c->fail = true;
            return;
        }
        c->argv = na;
        size_t *nl = realloc(c->lens, ncap * sizeof *nl);
        if (!nl) {
            c->fail = true;
            return;
        }
        c->lens = nl;
        c->cap = ncap;
    }
    c->argv[c->argc] = s;
    c->lens[c->argc] = n;
    c->argc++;
}

void rd_cmd_add(rd_cmd *c, const char *s)
{
    rd_cmd_addn(c, s, s ? strlen(s) : 0);
}

void rd_cmd_addv(rd_cmd *c, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rd_cmd_add(c, v[i]);
}

void rd_cmd_start(rd_cmd *c, const char *const *v, size_t n)
{
    rd_cmd_init(c);
    rd_cmd_addv(c, v, n);
}

void rd_cmd_eval(rd_cmd *c, size_t numkeys)
{
    rd_cmd_start(c, RD_ARGV("EVALSHA", ""));   /* placeholders filled by rd_eval_script */
    rd_cmd_addi(c, (int64_t)numkeys);
}

void rd_cmd_addi(rd_cmd *c, int64_t v)
{
    if (c->nnums == CMD_NUMS) {
        c->fail = true;
        return;
    }
    char *b = c->nums[c->nnums++];
    snprintf(b, 24, "%" PRId64, v);
    rd_cmd_add(c, b);
}

/* ------------------------------------------------------------ connection */

an_redis_opts an_redis_opts_default(void)
{
    an_redis_opts o = {5000, 5000, 2000, 10, 5, 3, 30000};
    return o;
}

an_redis_opts an_redis_options_from_config(const an_config *cfg)
{
    an_redis_opts o = an_redis_opts_default();
    o.connect_timeout_ms = cfg->redis.connect_timeout_ms;
    o.command_timeout_ms = cfg->redis.timeout_ms;
    o.block_margin_ms = cfg->redis.block_margin_ms;
    o.keepalive_idle_s = cfg->redis.keepalive_idle_s;
    o.keepalive_interval_s = cfg->redis.keepalive_interval_s;
    o.keepalive_count = cfg->redis.keepalive_count;
    o.tcp_user_timeout_ms = cfg->redis.tcp_user_timeout_ms;
    return o;
}

void rd_drop_ctx(an_redis *r)
{
    if (r->ctx) {
        redisFree(r->ctx);
        r->ctx = NULL;
    }
}

/* Classify an error reply by its code (the first word): an_fault.h's
 * table. NOGROUP is AN_ENOGROUP (the caller recreates the group). */
int rd_classify_error(const char *s, size_t n)
{
    if (n >= 7 && memcmp(s, "NOGROUP", 7) == 0 && (n == 7 || s[7] == ' '))
        return AN_ENOGROUP;
    switch (an_fault_redis(s, n)) {
    case AN_FAULT_TRANSIENT: return AN_ETRANSIENT;
    case AN_FAULT_ENVIRONMENT: return AN_EENV;
    default: return AN_EREDIS;
    }
}

/* Remembers the code (first word) of an error reply, for an_redis_hint. */
static void set_errcode(an_redis *r, const char *s, size_t n)
{
    size_t w = 0;
    while (w < n && w + 1 < sizeof r->errcode && s[w] != ' ')
        w++;
    memcpy(r->errcode, s, w);
    r->errcode[w] = '\0';
}

/* TCP liveness on a fresh connection's socket: keepalive probes and
 * TCP_USER_TIMEOUT, so a silent partition fails the next command within
 * about idle + interval x count (or tcp_user_timeout with data in flight)
 * instead of hanging. Best effort: a failed setsockopt is not fatal. */
static void set_liveness(an_redis *r, redisContext *c)
{
    const an_redis_opts *o = &r->opts;
    int on = 1;
    if (o->keepalive_idle_s > 0 || o->keepalive_interval_s > 0 || o->keepalive_count > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    if (o->keepalive_idle_s > 0)
        setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &o->keepalive_idle_s, sizeof(int));
    if (o->keepalive_interval_s > 0)
        setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &o->keepalive_interval_s, sizeof(int));
    if (o->keepalive_count > 0)
        setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &o->keepalive_count, sizeof(int));
#ifdef TCP_USER_TIMEOUT
    if (o->tcp_user_timeout_ms > 0) {
        unsigned int t = (unsigned int)o->tcp_user_timeout_ms;
        setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &t, sizeof t);
    }
#endif
}

bool rd_is_error_code(const redisReply *rep, const char *code)
{
    size_t l = strlen(code);
    return rep && rep->type == REDIS_REPLY_ERROR && (size_t)rep->len >= l &&
           memcmp(rep->str, code, l) == 0 &&
           ((size_t)rep->len == l || rep->str[l] == ' ');
}

/* Raw command on a live context. NULL reply = connection failure (context
 * dropped, errstr set). */
static redisReply *raw(an_redis *r, int argc, const char **argv,
                       const size_t *lens)
{
    redisReply *rep = redisCommandArgv(r->ctx, argc, argv, lens);
    if (!rep) {
        rd_err(r, "redis %s: %s", r->url_redacted,
             r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
        rd_drop_ctx(r);
    }
    return rep;
}

/* One command of the connection's handshake (AUTH, SELECT: what) on the
 * fresh context. A refusal is AN_EREDIS (AN_ETRANSIENT when the server is
 * only unavailable), with the context dropped. */
static int handshake(an_redis *r, int argc, const char **argv, const char *what)
{
    size_t lens[3];
    for (int i = 0; i < argc && i < 3; i++)
        lens[i] = strlen(argv[i]);
    redisReply *rep = raw(r, argc, argv, lens);
    if (!rep)
        return AN_ETRANSIENT;
    int rc = 0;
    if (rep->type == REDIS_REPLY_ERROR) {
        rd_err(r, "redis %s: %s: %.*s", r->url_redacted, what, (int)rep->len, rep->str);
        set_errcode(r, rep->str, (size_t)rep->len);
        rc = rd_classify_error(rep->str, (size_t)rep->len);
        if (rc != AN_ETRANSIENT)
            rc = AN_EREDIS;
    }
    freeReplyObject(rep);
    if (rc)
        rd_drop_ctx(r);
    return rc;
}

int rd_connect(an_redis *r)
{
    struct timeval ctv = ms_tv(r->opts.connect_timeout_ms);
    redisContext *c = r->path ? redisConnectUnixWithTimeout(r->path, ctv)
                              : redisConnectWithTimeout(r->host, r->port, ctv);
    if (!c) {
        rd_err(r, "redis %s: out of memory", r->url_redacted);
        return AN_ENOMEM;
    }
    if (c->err) {
        rd_err(r, "redis %s: cannot connect: %s", r->url_redacted, c->errstr);
        redisFree(c);
        return AN_ETRANSIENT;
    }
    if (redisSetTimeout(c, ms_tv(r->opts.command_timeout_ms)) != REDIS_OK) {
        rd_err(r, "redis %s: cannot set socket timeout", r->url_redacted);
        redisFree(c);
        return AN_ETRANSIENT;
    }
    if (!r->path)
        set_liveness(r, c);
    r->ctx = c;
    if (r->password) {
        const char *argv[3] = {"AUTH", r->user ? r->user : r->password, r->password};
        int rc = handshake(r, r->user ? 3 : 2, argv, "AUTH");
        if (rc)
            return rc;
    }
    if (r->db != 0) {
        char dbs[16], what[32];
        snprintf(dbs, sizeof dbs, "%d", r->db);
        snprintf(what, sizeof what, "SELECT %d", r->db);
        const char *argv[2] = {"SELECT", dbs};
        int rc = handshake(r, 2, argv, what);
        if (rc)
            return rc;
    }
    r->errstr[0] = '\0';
    return 0;
}

static void free_parsed(an_redis *r)
{
    free(r->host);
    free(r->path);
    free(r->user);
    free(r->password);
    free(r->url_redacted);
}

int an_redis_connect(const char *url, const an_redis_opts *opts,
                     an_redis **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!url || !*url) {
        an_seterr(err, errlen, "no redis URL");
        return AN_ECONFIG;
    }
    an_redis *r = calloc(1, sizeof *r);
    if (!r) {
        an_seterr(err, errlen, "out of memory");
        return AN_ENOMEM;
    }
    an_redis_opts d = an_redis_opts_default();
    r->opts = d;
    if (opts) {
        if (opts->connect_timeout_ms > 0)
            r->opts.connect_timeout_ms = opts->connect_timeout_ms;
        if (opts->command_timeout_ms > 0)
            r->opts.command_timeout_ms = opts->command_timeout_ms;
        if (opts->block_margin_ms > 0)
            r->opts.block_margin_ms = opts->block_margin_ms;
        r->opts.keepalive_idle_s = opts->keepalive_idle_s;
        r->opts.keepalive_interval_s = opts->keepalive_interval_s;
        r->opts.keepalive_count = opts->keepalive_count;
        r->opts.tcp_user_timeout_ms = opts->tcp_user_timeout_ms;
    }
    char red[1024];
    r->url_redacted = strdup(an_redis_url_redact(url, red, sizeof red));
    an_redis_url u;
    int rc = r->url_redacted ? an_redis_url_parse(url, &u, err, errlen) : AN_ENOMEM;
    if (r->url_redacted) {
        r->host = u.host;   /* the parsed parts move into r (freed by free_parsed) */
        r->port = u.port;
        r->path = u.path;
        r->user = u.user;
        r->password = u.password;
        r->db = u.db;
    }
    if (rc == AN_ENOMEM)
        an_seterr(err, errlen, "out of memory");
    if (rc == 0) {
        rc = rd_connect(r);
        if (rc)
            an_seterr(err, errlen, "%s", r->errstr);
    }
    if (rc) {
        rd_drop_ctx(r);
        free_parsed(r);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void an_redis_free(an_redis *r)
{
    if (!r)
        return;
    rd_drop_ctx(r);
    free_parsed(r);
    free(r);
}

int an_redis_reconnect(an_redis *r)
{
    rd_drop_ctx(r);
    return rd_connect(r);
}

const char *an_redis_errstr(const an_redis *r)
{
    return r ? r->errstr : "no redis context";
}

const char *an_redis_hint(const an_redis *r)
{
    return r ? an_fault_redis_hint(r->errcode, strlen(r->errcode)) : "";
}

const char *an_redis_url_redacted(const an_redis *r)
{
    return r->url_redacted;
}

struct redisContext *an_redis_ctx(an_redis *r)
{
    return r->ctx;
}

/* The code of a lazy reconnect: a server that refuses our credentials
 * now (AN_EREDIS at connect) refuses everyone: environment. */
int rd_reconnect_rc(int rc)
{
    if (rc == AN_EREDIS)
        return AN_EENV;
    return rc == AN_ENOMEM || rc == 0 ? rc : AN_ETRANSIENT;
}

int rd_ensure(an_redis *r)
{
    if (r->ctx && !r->ctx->err)
        return 0;
    rd_drop_ctx(r);
    return rd_reconnect_rc(rd_connect(r));
}

/* rd_run without freeing c. */
static int run_cmd(an_redis *r, const rd_cmd *c, redisReply **out, bool keep_error)
{
    *out = NULL;
    if (c->fail) {
        rd_err(r, "out of memory or bad argument building a command");
        return AN_EINVAL;
    }
    int rc = rd_ensure(r);
    if (rc)
        return rc;
    redisReply *rep = raw(r, (int)c->argc, c->argv, c->lens);
    if (!rep)
        return AN_ETRANSIENT;
    if (rep->type == REDIS_REPLY_ERROR && !keep_error) {
        rd_err(r, "%s: %.*s", c->argv[0], (int)rep->len, rep->str);
        set_errcode(r, rep->str, (size_t)rep->len);
        rc = rd_classify_error(rep->str, (size_t)rep->len);
        freeReplyObject(rep);
        return rc;
    }
    r->errstr[0] = '\0';
    r->errcode[0] = '\0';
    *out = rep;
    return 0;
}

int rd_run(an_redis *r, rd_cmd *c, redisReply **out, bool keep_error)
{
    int rc = run_cmd(r, c, out, keep_error);
    rd_cmd_free(c);
    return rc;
}

/* run_cmd with a temporary socket timeout for a BLOCK call. */
static int run_blocking(an_redis *r, const rd_cmd *c, int block_ms, redisReply **out)
{
    if (block_ms < 0)
        return run_cmd(r, c, out, false);
    int rc = rd_ensure(r);
    if (rc)
        return rc;
    int64_t t = block_ms == 0 ? 0
                              : (int64_t)block_ms + r->opts.block_margin_ms;
    if (t > 0 && t < r->opts.command_timeout_ms)
        t = r->opts.command_timeout_ms;
    if (t > INT32_MAX)
        t = 0;
    /* tv {0,0} = no timeout */
    redisSetTimeout(r->ctx, ms_tv((int)t));
    rc = run_cmd(r, c, out, false);
    if (r->ctx)
        redisSetTimeout(r->ctx, ms_tv(r->opts.command_timeout_ms));
    return rc;
}

int rd_run_blocking(an_redis *r, rd_cmd *c, int block_ms, redisReply **out)
{
    int rc = run_blocking(r, c, block_ms, out);
    rd_cmd_free(c);
    return rc;
}

int an_redis_ping(an_redis *r)
{
    redisReply *rep = NULL;
    int rc = rd_call(r, RD_ARGV("PING"), &rep, false);
    if (rc == 0)
        freeReplyObject(rep);
    return rc;
}

int rd_bad_reply(an_redis *r, const char *what, redisReply *rep)
{
    rd_err(r, "%s: unexpected reply type %d", what, rep ? rep->type : -1);
    if (rep)
        freeReplyObject(rep);
    return AN_EREDIS;
}

/* ------------------------------------------------------------ scripts */

static int script_index(const char *name)
{
    for (size_t i = 0; i < an_lua_nscripts && i < MAX_SCRIPTS; i++)
        if (strcmp(an_lua_scripts[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int load_script(an_redis *r, int idx)
{
    redisReply *rep = NULL;
    int rc = rd_call(r, RD_ARGV("SCRIPT", "LOAD", an_lua_scripts[idx].text), &rep, false);
    if (rc) {
        rd_err(r, "SCRIPT LOAD %s.lua: %s", an_lua_scripts[idx].name,
             an_redis_errstr(r));
        return rc;
    }
    if (rep->type != REDIS_REPLY_STRING || rep->len != SHA_LEN)
        return rd_bad_reply(r, "SCRIPT LOAD", rep);
    memcpy(r->sha[idx], rep->str, SHA_LEN);
    r->sha[idx][SHA_LEN] = '\0';
    freeReplyObject(rep);
    return 0;
}

int an_redis_load_scripts(an_redis *r)
{
    for (size_t i = 0; i < an_lua_nscripts && i < MAX_SCRIPTS; i++) {
        int rc = load_script(r, (int)i);
        if (rc)
            return rc;
    }
    return 0;
}

/* rd_eval_script without freeing c. */
static int eval_script(an_redis *r, const char *name, rd_cmd *c, redisReply **out)
{
    int idx = script_index(name);
    *out = NULL;
    if (idx < 0) {
        rd_err(r, "no embedded script %s.lua", name);
        return AN_EINVAL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!r->sha[idx][0]) {
            int rc = load_script(r, idx);
            if (rc)
                return rc;
        }
        if (c->fail) {
            rd_err(r, "out of memory building %s.lua arguments", name);
            return AN_EINVAL;
        }
        c->argv[0] = "EVALSHA";
        c->lens[0] = 7;
        c->argv[1] = r->sha[idx];
        c->lens[1] = SHA_LEN;
        redisReply *rep = NULL;
        int rc = run_cmd(r, c, &rep, true);
        if (rc)
            return rc;
        if (rep->type == REDIS_REPLY_ERROR) {
            if (rd_is_error_code(rep, "NOSCRIPT") && attempt == 0) {
                freeReplyObject(rep);
                r->sha[idx][0] = '\0';
                continue;
            }
            rd_err(r, "%s.lua: %.*s", name, (int)rep->len, rep->str);
            set_errcode(r, rep->str, (size_t)rep->len);
            rc = rd_classify_error(rep->str, (size_t)rep->len);
            freeReplyObject(rep);
            return rc;
        }
        *out = rep;
        return 0;
    }
    rd_err(r, "%s.lua: NOSCRIPT after reload", name);
    return AN_EREDIS;
}

int rd_eval_script(an_redis *r, const char *name, rd_cmd *c, redisReply **out)
{
    int rc = eval_script(r, name, c, out);
    rd_cmd_free(c);
    return rc;
}

/* ------------------------------------------------------------ XPENDING */

int64_t rd_reply_int(const redisReply *x)
{
    if (!x)
        return -1;
    if (x->type == REDIS_REPLY_INTEGER)
        return x->integer;
    if (x->type == REDIS_REPLY_STRING || x->type == REDIS_REPLY_STATUS) {
        char buf[32];
        size_t n = (size_t)x->len < sizeof buf - 1 ? (size_t)x->len
                                                    : sizeof buf - 1;
        memcpy(buf, x->str, n);
        buf[n] = '\0';
        char *end;
        long long v = strtoll(buf, &end, 10);
        return end == buf ? -1 : (int64_t)v;
    }
    return -1;
}

void rd_reply_id(char dst[AN_ID_MAX], const redisReply *x)
{
    if (x && (x->type == REDIS_REPLY_STRING || x->type == REDIS_REPLY_STATUS))
        rd_copy_id(dst, x->str, (size_t)x->len);
    else
        dst[0] = '\0';
}

int rd_int_command(an_redis *r, rd_cmd *c, int64_t *v)
{
    redisReply *rep = NULL;
    const char *name = c->argc ? c->argv[0] : "?";   /* c is freed by rd_run */
    int rc = rd_run(r, c, &rep, false);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_INTEGER)
        return rd_bad_reply(r, name, rep);
    if (v)
        *v = rep->integer;
    freeReplyObject(rep);
    return 0;
}

int rd_pipeline(an_redis *r, const char **argv, size_t argc, size_t n,
                redisReply **reps)
{
    for (size_t i = 0; i < n; i++)
        reps[i] = NULL;
    int rc = rd_ensure(r);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (redisAppendCommandArgv(r->ctx, (int)argc, argv + i * argc, NULL) != REDIS_OK) {
            rd_err(r, "%s: %s", argv[0], r->ctx->errstr);
            rd_drop_ctx(r);
            return AN_ETRANSIENT;
        }
    }
    for (size_t i = 0; i < n; i++) {
        void *v = NULL;
        if (redisGetReply(r->ctx, &v) != REDIS_OK || !v) {
            rd_err(r, "redis %s: %s", r->url_redacted,
                   r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
            rd_drop_ctx(r);   /* the other replies are gone with the context */
            for (size_t j = 0; j < i; j++) {
                freeReplyObject(reps[j]);
                reps[j] = NULL;
            }
            return AN_ETRANSIENT;
        }
        reps[i] = v;
    }
    return 0;
}

int rd_call(an_redis *r, const char *const *argv, size_t argc, redisReply **out,
            bool keep_error)
{
    rd_cmd c;
    rd_cmd_start(&c, argv, argc);
    return rd_run(r, &c, out, keep_error);
}

int rd_call_int(an_redis *r, const char *const *argv, size_t argc, int64_t *v)
{
    rd_cmd c;
    rd_cmd_start(&c, argv, argc);
    return rd_int_command(r, &c, v);
}

int an_del(an_redis *r, const char *key, int64_t *deleted)
{
    return rd_call_int(r, RD_ARGV("DEL", key), deleted);
}

/* ------------------------------------------------------------ generic */

/* Appends args (binary safe) to c. */
static void cmd_add_all(rd_cmd *c, const char *const *args, const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rd_cmd_addn(c, args[i], lens ? lens[i] : (args[i] ? strlen(args[i]) : 0));
}

int an_redis_eval(an_redis *r, const char *name, size_t numkeys,
                  const char *const *args, const size_t *lens, size_t nargs,
                  redisReply **reply)
{
    *reply = NULL;
    if (numkeys > nargs) {
        rd_err(r, "%s.lua: %zu keys but %zu arguments", name, numkeys, nargs);
        return AN_EINVAL;
    }
    rd_cmd c;
    rd_cmd_eval(&c, numkeys);
    cmd_add_all(&c, args, lens, nargs);
    return rd_eval_script(r, name, &c, reply);
}

int an_redis_command(an_redis *r, const char *const *argv, const size_t *lens,
                     size_t argc, redisReply **reply)
{
    *reply = NULL;
    if (argc == 0) {
        rd_err(r, "empty command");
        return AN_EINVAL;
    }
    rd_cmd c;
    rd_cmd_init(&c);
    cmd_add_all(&c, argv, lens, argc);
    return rd_run(r, &c, reply, false);
}
