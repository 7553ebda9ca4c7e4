/*
 * streams.c: Redis Streams access and the Lua scripts (an_streams.h).
 */
#include "an_util.h"
#include "an_streams.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

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

static void rerr(an_redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void rerr(an_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errstr, sizeof r->errstr, fmt, ap);
    va_end(ap);
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

static void copy_id(char dst[AN_ID_MAX], const char *s, size_t n)
{
    if (n >= AN_ID_MAX)
        n = AN_ID_MAX - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ------------------------------------------------------------ commands */

/* An argv under construction. Numbers are formatted into `nums`. */
#define CMD_NUMS 16
typedef struct cmd {
    size_t argc, cap;
    const char **argv;
    size_t *lens;
    char nums[CMD_NUMS][24];
    int nnums;
    bool fail;
} cmd;

static void cmd_init(cmd *c)
{
    memset(c, 0, sizeof *c);
}

static void cmd_free(cmd *c)
{
    free(c->argv);
    free(c->lens);
}

static void cmd_addn(cmd *c, const char *s, size_t n)
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

static void cmd_add(cmd *c, const char *s)
{
    cmd_addn(c, s, s ? strlen(s) : 0);
}

static void cmd_addi(cmd *c, int64_t v)
{
    if (c->nnums == CMD_NUMS) {
        c->fail = true;
        return;
    }
    char *b = c->nums[c->nnums++];
    snprintf(b, 24, "%" PRId64, v);
    cmd_add(c, b);
}

/* ------------------------------------------------------------ connection */

an_redis_opts an_redis_opts_default(void)
{
    an_redis_opts o = {5000, 5000, 2000, 10, 5, 3, 30000};
    return o;
}

static void drop_ctx(an_redis *r)
{
    if (r->ctx) {
        redisFree(r->ctx);
        r->ctx = NULL;
    }
}

/* Classify an error reply by its code (the first word): an_fault.h's
 * table. NOGROUP is AN_ENOGROUP (the caller recreates the group). */
static int classify_error(const char *s, size_t n)
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

static bool is_error_code(const redisReply *rep, const char *code)
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
        rerr(r, "redis %s: %s", r->url_redacted,
             r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
        drop_ctx(r);
    }
    return rep;
}

static int do_connect(an_redis *r)
{
    struct timeval ctv = ms_tv(r->opts.connect_timeout_ms);
    redisContext *c = r->path ? redisConnectUnixWithTimeout(r->path, ctv)
                              : redisConnectWithTimeout(r->host, r->port, ctv);
    if (!c) {
        rerr(r, "redis %s: out of memory", r->url_redacted);
        return AN_ENOMEM;
    }
    if (c->err) {
        rerr(r, "redis %s: cannot connect: %s", r->url_redacted, c->errstr);
        redisFree(c);
        return AN_ETRANSIENT;
    }
    if (redisSetTimeout(c, ms_tv(r->opts.command_timeout_ms)) != REDIS_OK) {
        rerr(r, "redis %s: cannot set socket timeout", r->url_redacted);
        redisFree(c);
        return AN_ETRANSIENT;
    }
    if (!r->path)
        set_liveness(r, c);
    r->ctx = c;
    if (r->password) {
        const char *argv[3] = {"AUTH", r->user ? r->user : r->password,
                               r->password};
        size_t lens[3] = {4, strlen(argv[1]), strlen(r->password)};
        redisReply *rep = raw(r, r->user ? 3 : 2, argv, lens);
        if (!rep)
            return AN_ETRANSIENT;
        int rc = 0;
        if (rep->type == REDIS_REPLY_ERROR) {
            rerr(r, "redis %s: AUTH: %.*s", r->url_redacted, (int)rep->len,
                 rep->str);
            set_errcode(r, rep->str, (size_t)rep->len);
            rc = classify_error(rep->str, (size_t)rep->len);
            if (rc != AN_ETRANSIENT)
                rc = AN_EREDIS;
        }
        freeReplyObject(rep);
        if (rc) {
            drop_ctx(r);
            return rc;
        }
    }
    if (r->db != 0) {
        char dbs[16];
        snprintf(dbs, sizeof dbs, "%d", r->db);
        const char *argv[2] = {"SELECT", dbs};
        size_t lens[2] = {6, strlen(dbs)};
        redisReply *rep = raw(r, 2, argv, lens);
        if (!rep)
            return AN_ETRANSIENT;
        int rc = 0;
        if (rep->type == REDIS_REPLY_ERROR) {
            rerr(r, "redis %s: SELECT %d: %.*s", r->url_redacted, r->db,
                 (int)rep->len, rep->str);
            set_errcode(r, rep->str, (size_t)rep->len);
            rc = classify_error(rep->str, (size_t)rep->len);
            if (rc != AN_ETRANSIENT)
                rc = AN_EREDIS;
        }
        freeReplyObject(rep);
        if (rc) {
            drop_ctx(r);
            return rc;
        }
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
        rc = do_connect(r);
        if (rc)
            an_seterr(err, errlen, "%s", r->errstr);
    }
    if (rc) {
        drop_ctx(r);
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
    drop_ctx(r);
    free_parsed(r);
    free(r);
}

int an_redis_reconnect(an_redis *r)
{
    drop_ctx(r);
    return do_connect(r);
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
static int reconnect_rc(int rc)
{
    if (rc == AN_EREDIS)
        return AN_EENV;
    return rc == AN_ENOMEM || rc == 0 ? rc : AN_ETRANSIENT;
}

/* Run a command: lazy reconnect, connection errors -> AN_ETRANSIENT, error
 * replies classified (unless keep_error: then the error reply is returned
 * with rc 0 for the caller to inspect). *out owns the reply on rc 0. */
static int run(an_redis *r, cmd *c, redisReply **out, bool keep_error)
{
    *out = NULL;
    if (c->fail) {
        rerr(r, "out of memory or bad argument building a command");
        return AN_EINVAL;
    }
    if (!r->ctx || r->ctx->err) {
        drop_ctx(r);
        int rc = reconnect_rc(do_connect(r));
        if (rc)
            return rc;
    }
    redisReply *rep = raw(r, (int)c->argc, c->argv, c->lens);
    if (!rep)
        return AN_ETRANSIENT;
    if (rep->type == REDIS_REPLY_ERROR && !keep_error) {
        rerr(r, "%s: %.*s", c->argv[0], (int)rep->len, rep->str);
        set_errcode(r, rep->str, (size_t)rep->len);
        int rc = classify_error(rep->str, (size_t)rep->len);
        freeReplyObject(rep);
        return rc;
    }
    r->errstr[0] = '\0';
    r->errcode[0] = '\0';
    *out = rep;
    return 0;
}

/* run() with a temporary socket timeout for a BLOCK call. */
static int run_blocking(an_redis *r, cmd *c, int block_ms, redisReply **out)
{
    if (block_ms < 0)
        return run(r, c, out, false);
    if (!r->ctx || r->ctx->err) {
        drop_ctx(r);
        int rc = reconnect_rc(do_connect(r));
        if (rc)
            return rc;
    }
    int64_t t = block_ms == 0 ? 0
                              : (int64_t)block_ms + r->opts.block_margin_ms;
    if (t > 0 && t < r->opts.command_timeout_ms)
        t = r->opts.command_timeout_ms;
    if (t > INT32_MAX)
        t = 0;
    /* tv {0,0} = no timeout */
    redisSetTimeout(r->ctx, ms_tv((int)t));
    int rc = run(r, c, out, false);
    if (r->ctx)
        redisSetTimeout(r->ctx, ms_tv(r->opts.command_timeout_ms));
    return rc;
}

int an_redis_ping(an_redis *r)
{
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "PING");
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc == 0)
        freeReplyObject(rep);
    return rc;
}

static int bad_reply(an_redis *r, const char *what, redisReply *rep)
{
    rerr(r, "%s: unexpected reply type %d", what, rep ? rep->type : -1);
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
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "SCRIPT");
    cmd_add(&c, "LOAD");
    cmd_add(&c, an_lua_scripts[idx].text);
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc) {
        rerr(r, "SCRIPT LOAD %s.lua: %s", an_lua_scripts[idx].name,
             an_redis_errstr(r));
        return rc;
    }
    if (rep->type != REDIS_REPLY_STRING || rep->len != SHA_LEN)
        return bad_reply(r, "SCRIPT LOAD", rep);
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

/* EVALSHA with lazy load and one NOSCRIPT reload+retry. c holds the
 * arguments after "EVALSHA sha": its argv[0], argv[1] are placeholders that
 * this function fills in. */
static int eval_script(an_redis *r, const char *name, cmd *c,
                       redisReply **out)
{
    int idx = script_index(name);
    *out = NULL;
    if (idx < 0) {
        rerr(r, "no embedded script %s.lua", name);
        return AN_EINVAL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!r->sha[idx][0]) {
            int rc = load_script(r, idx);
            if (rc)
                return rc;
        }
        if (c->fail) {
            rerr(r, "out of memory building %s.lua arguments", name);
            return AN_EINVAL;
        }
        c->argv[0] = "EVALSHA";
        c->lens[0] = 7;
        c->argv[1] = r->sha[idx];
        c->lens[1] = SHA_LEN;
        redisReply *rep;
        int rc = run(r, c, &rep, true);
        if (rc)
            return rc;
        if (rep->type == REDIS_REPLY_ERROR) {
            if (is_error_code(rep, "NOSCRIPT") && attempt == 0) {
                freeReplyObject(rep);
                r->sha[idx][0] = '\0';
                continue;
            }
            rerr(r, "%s.lua: %.*s", name, (int)rep->len, rep->str);
            set_errcode(r, rep->str, (size_t)rep->len);
            rc = classify_error(rep->str, (size_t)rep->len);
            freeReplyObject(rep);
            return rc;
        }
        *out = rep;
        return 0;
    }
    rerr(r, "%s.lua: NOSCRIPT after reload", name);
    return AN_EREDIS;
}

/* ------------------------------------------------------------ entries */

void an_entry_list_free(an_entry_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].fields);
    free(l->v);
    free(l->deleted);
    memset(l, 0, sizeof *l);
}

const an_field *an_entry_field(const an_entry *e, const char *name)
{
    return an_field_find(e->fields, e->nfields, name);
}

/* Fill one entry from [id, [f, v, ...] | nil]. One allocation holds the
 * field array and all the bytes. */
static int parse_entry(an_redis *r, const redisReply *er, an_entry *e)
{
    memset(e, 0, sizeof *e);
    e->deliveries = -1;
    if (er->type != REDIS_REPLY_ARRAY || er->elements != 2 ||
        er->element[0]->type != REDIS_REPLY_STRING) {
        rerr(r, "stream entry: unexpected reply shape");
        return AN_EREDIS;
    }
    copy_id(e->id, er->element[0]->str, (size_t)er->element[0]->len);
    const redisReply *fv = er->element[1];
    if (fv->type == REDIS_REPLY_NIL) {
        e->nil = true;
        return 0;
    }
    if (fv->type != REDIS_REPLY_ARRAY || fv->elements % 2 != 0) {
        rerr(r, "stream entry %s: unexpected field list", e->id);
        return AN_EREDIS;
    }
    size_t nf = fv->elements / 2;
    size_t bytes = nf * sizeof(an_field);
    for (size_t i = 0; i < fv->elements; i++) {
        if (fv->element[i]->type != REDIS_REPLY_STRING) {
            rerr(r, "stream entry %s: non-string field", e->id);
            return AN_EREDIS;
        }
        bytes += (size_t)fv->element[i]->len + 1;
    }
    char *blk = malloc(bytes ? bytes : 1);
    if (!blk) {
        rerr(r, "out of memory");
        return AN_ENOMEM;
    }
    an_field *f = (an_field *)(void *)blk;
    char *p = blk + nf * sizeof(an_field);
    for (size_t i = 0; i < nf; i++) {
        const redisReply *k = fv->element[2 * i];
        const redisReply *v = fv->element[2 * i + 1];
        memcpy(p, k->str, (size_t)k->len);
        p[k->len] = '\0';
        f[i].name = p;
        f[i].name_len = (size_t)k->len;
        p += k->len + 1;
        memcpy(p, v->str, (size_t)v->len);
        p[v->len] = '\0';
        f[i].value = p;
        f[i].value_len = (size_t)v->len;
        p += v->len + 1;
    }
    e->fields = f;
    e->nfields = nf;
    return 0;
}

/* Append the entries of an array reply [[id, fields], ...] to l. */
static int parse_entries(an_redis *r, const redisReply *arr, an_entry_list *l)
{
    if (arr->type == REDIS_REPLY_NIL)
        return 0;
    if (arr->type != REDIS_REPLY_ARRAY) {
        rerr(r, "stream entries: unexpected reply type %d", arr->type);
        return AN_EREDIS;
    }
    if (arr->elements == 0)
        return 0;
    an_entry *nv = realloc(l->v, (l->n + arr->elements) * sizeof *nv);
    if (!nv) {
        rerr(r, "out of memory");
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
        rerr(r, "XREAD: unexpected reply type %d", rep->type);
        return AN_EREDIS;
    }
    for (size_t s = 0; s < rep->elements; s++) {
        const redisReply *sr = rep->element[s];
        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2) {
            rerr(r, "XREAD: unexpected stream element");
            return AN_EREDIS;
        }
        int rc = parse_entries(r, sr->element[1], l);
        if (rc)
            return rc;
    }
    return 0;
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
        rerr(r, "XGROUP CREATE: stream and group are required");
        return AN_EINVAL;
    }
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XGROUP");
    cmd_add(&c, "CREATE");
    cmd_add(&c, stream);
    cmd_add(&c, group);
    cmd_add(&c, start_id ? start_id : "0");
    cmd_add(&c, "MKSTREAM");
    redisReply *rep;
    int rc = run(r, &c, &rep, true);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (is_error_code(rep, "BUSYGROUP")) {
            freeReplyObject(rep);
            r->errstr[0] = '\0';
            return 0;
        }
        rerr(r, "XGROUP CREATE %s %s: %.*s", stream, group, (int)rep->len,
             rep->str);
        rc = classify_error(rep->str, (size_t)rep->len);
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
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XGROUP");
    cmd_add(&c, "DELCONSUMER");
    cmd_add(&c, stream);
    cmd_add(&c, group);
    cmd_add(&c, consumer);
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_INTEGER)
        return bad_reply(r, "XGROUP DELCONSUMER", rep);
    if (pending_discarded)
        *pending_discarded = rep->integer;
    freeReplyObject(rep);
    return 0;
}

int an_read_group(an_redis *r, const char *stream, const char *group,
                  const char *consumer, const char *id, size_t count,
                  int block_ms, an_entry_list *out)
{
    memset(out, 0, sizeof *out);
    if (!stream || !group || !consumer || !id || count == 0) {
        rerr(r, "XREADGROUP: stream, group, consumer, id and count > 0 are "
                "required");
        return AN_EINVAL;
    }
    bool fresh = strcmp(id, ">") == 0;
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XREADGROUP");
    cmd_add(&c, "GROUP");
    cmd_add(&c, group);
    cmd_add(&c, consumer);
    cmd_add(&c, "COUNT");
    cmd_addi(&c, (int64_t)count);
    if (block_ms >= 0) {
        cmd_add(&c, "BLOCK");
        cmd_addi(&c, block_ms);
    }
    cmd_add(&c, "STREAMS");
    cmd_add(&c, stream);
    cmd_add(&c, id);
    redisReply *rep;
    int rc = run_blocking(r, &c, block_ms, &rep);
    cmd_free(&c);
    if (rc)
        return rc;
    rc = parse_read_reply(r, rep, out);
    freeReplyObject(rep);
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
        rerr(r, "XAUTOCLAIM: bad arguments");
        return AN_EINVAL;
    }
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XAUTOCLAIM");
    cmd_add(&c, stream);
    cmd_add(&c, group);
    cmd_add(&c, consumer);
    cmd_addi(&c, min_idle_ms);
    cmd_add(&c, start ? start : "0-0");
    cmd_add(&c, "COUNT");
    cmd_addi(&c, (int64_t)count);
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return bad_reply(r, "XAUTOCLAIM", rep);
    copy_id(out->next_start, rep->element[0]->str,
            (size_t)rep->element[0]->len);
    rc = parse_entries(r, rep->element[1], out);
    if (rc == 0 && rep->elements >= 3 &&
        rep->element[2]->type == REDIS_REPLY_ARRAY &&
        rep->element[2]->elements > 0) {
        const redisReply *d = rep->element[2];
        out->deleted = calloc(d->elements, sizeof *out->deleted);
        if (!out->deleted) {
            rerr(r, "out of memory");
            rc = AN_ENOMEM;
        } else {
            for (size_t i = 0; i < d->elements; i++) {
                if (d->element[i]->type != REDIS_REPLY_STRING)
                    continue;
                copy_id(out->deleted[out->ndeleted++], d->element[i]->str,
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
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XACK");
    cmd_add(&c, stream);
    cmd_add(&c, group);
    for (size_t i = 0; i < n; i++)
        cmd_add(&c, ids[i]);
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_INTEGER)
        return bad_reply(r, "XACK", rep);
    if (acked)
        *acked = rep->integer;
    freeReplyObject(rep);
    return 0;
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
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XCLAIM");
    cmd_add(&c, stream);
    cmd_add(&c, group);
    cmd_add(&c, consumer);
    cmd_add(&c, "0");
    for (size_t i = 0; i < n; i++)
        cmd_add(&c, ids[i]);
    if (idle_ms >= 0) {
        cmd_add(&c, "IDLE");
        cmd_addi(&c, idle_ms);
    }
    cmd_add(&c, "JUSTID");
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY)
        return bad_reply(r, "XCLAIM", rep);
    if (claimed)
        *claimed = rep->elements;
    freeReplyObject(rep);
    return 0;
}

/* ------------------------------------------------------------ XPENDING */

static int64_t reply_int(const redisReply *x)
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

static void reply_id(char dst[AN_ID_MAX], const redisReply *x)
{
    if (x && (x->type == REDIS_REPLY_STRING || x->type == REDIS_REPLY_STATUS))
        copy_id(dst, x->str, (size_t)x->len);
    else
        dst[0] = '\0';
}

int an_pending_summary_get(an_redis *r, const char *stream, const char *group,
                           an_pending_summary *out)
{
    memset(out, 0, sizeof *out);
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XPENDING");
    cmd_add(&c, stream);
    cmd_add(&c, group);
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4)
        return bad_reply(r, "XPENDING", rep);
    out->count = reply_int(rep->element[0]);
    reply_id(out->min_id, rep->element[1]);
    reply_id(out->max_id, rep->element[2]);
    const redisReply *cs = rep->element[3];
    if (cs->type == REDIS_REPLY_ARRAY && cs->elements > 0) {
        out->consumers = calloc(cs->elements, sizeof *out->consumers);
        if (!out->consumers) {
            freeReplyObject(rep);
            rerr(r, "out of memory");
            return AN_ENOMEM;
        }
        for (size_t i = 0; i < cs->elements; i++) {
            const redisReply *p = cs->element[i];
            if (p->type != REDIS_REPLY_ARRAY || p->elements != 2 ||
                p->element[0]->type != REDIS_REPLY_STRING)
                continue;
            an_pending_consumer *pc = &out->consumers[out->nconsumers];
            pc->name = dupn(p->element[0]->str, (size_t)p->element[0]->len);
            if (!pc->name) {
                freeReplyObject(rep);
                an_pending_summary_free(out);
                rerr(r, "out of memory");
                return AN_ENOMEM;
            }
            pc->pending = reply_int(p->element[1]);
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
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XPENDING");
    cmd_add(&c, stream);
    cmd_add(&c, group);
    if (min_idle_ms >= 0) {
        cmd_add(&c, "IDLE");
        cmd_addi(&c, min_idle_ms);
    }
    cmd_add(&c, start ? start : "-");
    cmd_add(&c, end ? end : "+");
    cmd_addi(&c, (int64_t)count);
    if (consumer)
        cmd_add(&c, consumer);
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY)
        return bad_reply(r, "XPENDING", rep);
    if (rep->elements == 0) {
        freeReplyObject(rep);
        return 0;
    }
    an_pending_item *v = calloc(rep->elements, sizeof *v);
    if (!v) {
        freeReplyObject(rep);
        rerr(r, "out of memory");
        return AN_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *p = rep->element[i];
        if (p->type != REDIS_REPLY_ARRAY || p->elements != 4 ||
            p->element[0]->type != REDIS_REPLY_STRING ||
            p->element[1]->type != REDIS_REPLY_STRING)
            continue;
        copy_id(v[k].id, p->element[0]->str, (size_t)p->element[0]->len);
        size_t cl = (size_t)p->element[1]->len;
        if (cl >= sizeof v[k].consumer)
            cl = sizeof v[k].consumer - 1;
        memcpy(v[k].consumer, p->element[1]->str, cl);
        v[k].consumer[cl] = '\0';
        v[k].idle_ms = reply_int(p->element[2]);
        v[k].deliveries = reply_int(p->element[3]);
        k++;
    }
    freeReplyObject(rep);
    *items = v;
    *n = k;
    return 0;
}

/* ------------------------------------------------------------ publish */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int publish_many_call(an_redis *r, const an_publish_group *g, redisReply **out);

int an_publish(an_redis *r, const an_publish_req *q, an_publish_res *res)
{
    if (res)
        memset(res, 0, sizeof *res);
    if (!q || !q->input || !q->group || !q->entry_id ||
        (q->nmsgs > 0 && (!q->output || !q->msgs)) ||
        (q->params && (!q->params->key || !q->params->params_json))) {
        rerr(r, "publish: bad request (input, group, entry_id, output for "
                "messages, params key and json are required)");
        return AN_EINVAL;
    }
    for (size_t i = 0; i < q->nmsgs; i++) {
        const an_out_msg *m = &q->msgs[i];
        if (!m->data_type || !m->model || (!m->body && m->body_len)) {
            rerr(r, "publish: message %zu: dataType and model are required",
                 i);
            return AN_EINVAL;
        }
        if (m->rows && !m->rows[0]) {
            rerr(r, "publish: message %zu: rows must be NULL or non-empty", i);
            return AN_EINVAL;
        }
    }
    /* One entry of publish_many.lua: the same checks, writes and reply. */
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
    int rc = publish_many_call(r, &g, &rep);
    if (rc)
        return rc;
    const redisReply *x = rep->element[0];
    if (x->element[0]->integer == 0) {
        freeReplyObject(rep);
        rerr(r, "publish: entry %s is not pending for consumer %s", q->entry_id,
             q->owner ? q->owner : "?");
        return AN_ESTATE;
    }
    const redisReply *ids = x->element[3];
    if (res) {
        res->acked = (int)reply_int(x->element[1]);
        res->cache = (int)reply_int(x->element[2]);
        if (ids->elements) {
            res->ids = calloc(ids->elements, sizeof *res->ids);
            if (!res->ids) {
                freeReplyObject(rep);
                /* the script did run: report success without ids */
                rerr(r, "out of memory (publish ids)");
                return 0;
            }
            for (size_t i = 0; i < ids->elements; i++)
                reply_id(res->ids[i], ids->element[i]);
            res->nids = ids->elements;
        }
    }
    freeReplyObject(rep);
    return 0;
}

void an_publish_res_free(an_publish_res *res)
{
    if (!res)
        return;
    free(res->ids);
    res->ids = NULL;
    res->nids = 0;
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
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "EVALSHA"); /* placeholders filled by eval_script */
    cmd_add(&c, "");
    cmd_addi(&c, 1);
    cmd_add(&c, an_attempts_key(input, key, sizeof key));
    cmd_add(&c, allow_split ? "1" : "0");
    for (size_t i = 0; i < n; i++)
        cmd_add(&c, ids[i]);
    redisReply *rep;
    int rc = eval_script(r, "attempts", &c, &rep);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER)
        return bad_reply(r, "attempts.lua", rep);
    if (rep->element[0]->integer == 1) {
        *split = true;
    } else {
        if (rep->elements != n + 1)
            return bad_reply(r, "attempts.lua counts", rep);
        for (size_t i = 0; i < n; i++)
            counts[i] = reply_int(rep->element[i + 1]);
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
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "EVALSHA"); /* placeholders filled by eval_script */
    cmd_add(&c, "");
    cmd_addi(&c, 1);
    cmd_add(&c, an_attempts_key(input, key, sizeof key));
    cmd_add(&c, mode);
    for (size_t i = 0; i < n; i++)
        cmd_add(&c, ids[i]);
    redisReply *rep;
    int rc = eval_script(r, "attempts", &c, &rep);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n + 1)
        return bad_reply(r, "attempts.lua", rep);
    for (size_t i = 0; counts && i < n; i++)
        counts[i] = reply_int(rep->element[i + 1]);
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
        rerr(r, "dead_letter: bad request (input, group, entry_id, "
                "dead_letter, reason, consumer are required)");
        return AN_EINVAL;
    }
    char akey[512];
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "EVALSHA");
    cmd_add(&c, "");
    cmd_addi(&c, 3);
    cmd_add(&c, q->input);
    cmd_add(&c, q->dead_letter);
    cmd_add(&c, an_attempts_key(q->input, akey, sizeof akey));
    cmd_add(&c, q->group);
    cmd_add(&c, q->entry_id);
    cmd_add(&c, q->owner ? q->owner : "");
    cmd_addi(&c, q->maxlen > 0 ? q->maxlen : 0);
    cmd_add(&c, q->reason);
    cmd_addi(&c, q->deliveries);
    cmd_add(&c, q->consumer);
    for (size_t i = 0; i < q->nfields; i++) {
        const an_field *f = &q->fields[i];
        cmd_addn(&c, f->name ? f->name : "", f->name_len);
        cmd_addn(&c, f->value ? f->value : "", f->value_len);
    }
    redisReply *rep;
    int rc = eval_script(r, "dead_letter", &c, &rep);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER)
        return bad_reply(r, "dead_letter.lua", rep);
    if (rep->element[0]->integer == 0) {
        freeReplyObject(rep);
        rerr(r, "dead_letter: entry %s is not pending for consumer %s",
             q->entry_id, q->owner ? q->owner : "?");
        return AN_ESTATE;
    }
    if (id_out)
        reply_id(id_out, rep->element[1]);
    freeReplyObject(rep);
    return 0;
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
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "HMGET");
    cmd_add(&c, key);
    cmd_add(&c, "params");
    cmd_add(&c, "watermark");
    cmd_add(&c, "updated");
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return bad_reply(r, "HMGET", rep);
    if (rep->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        rerr(r, "params cache %s: absent", key);
        return AN_ENOTFOUND;
    }
    if (params) {
        *params = dupn(rep->element[0]->str, (size_t)rep->element[0]->len);
        if (!*params) {
            freeReplyObject(rep);
            rerr(r, "out of memory");
            return AN_ENOMEM;
        }
    }
    if (watermark && rep->element[1]->type == REDIS_REPLY_STRING)
        *watermark = reply_int(rep->element[1]);
    if (updated_ms && rep->element[2]->type == REDIS_REPLY_STRING)
        *updated_ms = reply_int(rep->element[2]);
    freeReplyObject(rep);
    return 0;
}

/* ------------------------------------------------------------ plain */

int an_xadd(an_redis *r, const char *stream, int64_t maxlen,
            const an_field *fields, size_t nfields, char id_out[AN_ID_MAX])
{
    if (id_out)
        id_out[0] = '\0';
    if (!stream || nfields == 0 || !fields) {
        rerr(r, "XADD: stream and at least one field are required");
        return AN_EINVAL;
    }
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XADD");
    cmd_add(&c, stream);
    if (maxlen > 0) {
        cmd_add(&c, "MAXLEN");
        cmd_add(&c, "~");
        cmd_addi(&c, maxlen);
    }
    cmd_add(&c, "*");
    for (size_t i = 0; i < nfields; i++) {
        cmd_addn(&c, fields[i].name ? fields[i].name : "", fields[i].name_len);
        cmd_addn(&c, fields[i].value ? fields[i].value : "",
                 fields[i].value_len);
    }
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_STRING)
        return bad_reply(r, "XADD", rep);
    if (id_out)
        reply_id(id_out, rep);
    freeReplyObject(rep);
    return 0;
}

int an_xrange(an_redis *r, const char *stream, const char *start,
              const char *end, size_t count, bool reverse, an_entry_list *out)
{
    memset(out, 0, sizeof *out);
    cmd c;
    cmd_init(&c);
    cmd_add(&c, reverse ? "XREVRANGE" : "XRANGE");
    cmd_add(&c, stream);
    cmd_add(&c, start ? start : (reverse ? "+" : "-"));
    cmd_add(&c, end ? end : (reverse ? "-" : "+"));
    if (count) {
        cmd_add(&c, "COUNT");
        cmd_addi(&c, (int64_t)count);
    }
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
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
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XREAD");
    if (count) {
        cmd_add(&c, "COUNT");
        cmd_addi(&c, (int64_t)count);
    }
    if (block_ms >= 0) {
        cmd_add(&c, "BLOCK");
        cmd_addi(&c, block_ms);
    }
    cmd_add(&c, "STREAMS");
    cmd_add(&c, stream);
    cmd_add(&c, after_id ? after_id : "$");
    redisReply *rep;
    int rc = run_blocking(r, &c, block_ms, &rep);
    cmd_free(&c);
    if (rc)
        return rc;
    rc = parse_read_reply(r, rep, out);
    freeReplyObject(rep);
    if (rc)
        an_entry_list_free(out);
    return rc;
}

static int int_command(an_redis *r, cmd *c, int64_t *v)
{
    redisReply *rep;
    int rc = run(r, c, &rep, false);
    const char *name = c->argc ? c->argv[0] : "?";
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_INTEGER)
        return bad_reply(r, name, rep);
    if (v)
        *v = rep->integer;
    freeReplyObject(rep);
    return 0;
}

int an_xlen(an_redis *r, const char *stream, int64_t *len)
{
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XLEN");
    cmd_add(&c, stream);
    int rc = int_command(r, &c, len);
    cmd_free(&c);
    return rc;
}

int an_xdel(an_redis *r, const char *stream, const char *const *ids, size_t n,
            int64_t *deleted)
{
    if (deleted)
        *deleted = 0;
    if (n == 0)
        return 0;
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XDEL");
    cmd_add(&c, stream);
    for (size_t i = 0; i < n; i++)
        cmd_add(&c, ids[i]);
    int rc = int_command(r, &c, deleted);
    cmd_free(&c);
    return rc;
}

int an_del(an_redis *r, const char *key, int64_t *deleted)
{
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "DEL");
    cmd_add(&c, key);
    int rc = int_command(r, &c, deleted);
    cmd_free(&c);
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
    return reply_int(v);
}

int an_xinfo_stream(an_redis *r, const char *stream, an_stream_info *out)
{
    memset(out, 0, sizeof *out);
    out->entries_added = -1;
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XINFO");
    cmd_add(&c, "STREAM");
    cmd_add(&c, stream);
    redisReply *rep;
    int rc = run(r, &c, &rep, true);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type == REDIS_REPLY_ERROR) {
        /* "ERR no such key" */
        rerr(r, "XINFO STREAM %s: %.*s", stream, (int)rep->len, rep->str);
        rc = strstr(rep->str, "no such key") ? AN_ENOTFOUND
                                              : classify_error(rep->str,
                                                               (size_t)rep->len);
        freeReplyObject(rep);
        return rc;
    }
    if (rep->type != REDIS_REPLY_ARRAY)
        return bad_reply(r, "XINFO STREAM", rep);
    out->length = kv_int(rep, "length");
    out->groups = kv_int(rep, "groups");
    out->entries_added = kv_int(rep, "entries-added");
    reply_id(out->last_generated_id, kv_get(rep, "last-generated-id"));
    reply_id(out->max_deleted_entry_id, kv_get(rep, "max-deleted-entry-id"));
    const redisReply *fe = kv_get(rep, "first-entry");
    const redisReply *le = kv_get(rep, "last-entry");
    if (fe && fe->type == REDIS_REPLY_ARRAY && fe->elements >= 1)
        reply_id(out->first_id, fe->element[0]);
    if (le && le->type == REDIS_REPLY_ARRAY && le->elements >= 1)
        reply_id(out->last_id, le->element[0]);
    freeReplyObject(rep);
    return 0;
}

int an_xinfo_groups(an_redis *r, const char *stream, an_group_info **groups,
                    size_t *n)
{
    *groups = NULL;
    *n = 0;
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XINFO");
    cmd_add(&c, "GROUPS");
    cmd_add(&c, stream);
    redisReply *rep;
    int rc = run(r, &c, &rep, true);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type == REDIS_REPLY_ERROR) {
        rerr(r, "XINFO GROUPS %s: %.*s", stream, (int)rep->len, rep->str);
        rc = strstr(rep->str, "no such key") ? AN_ENOTFOUND
                                              : classify_error(rep->str,
                                                               (size_t)rep->len);
        freeReplyObject(rep);
        return rc;
    }
    if (rep->type != REDIS_REPLY_ARRAY)
        return bad_reply(r, "XINFO GROUPS", rep);
    if (rep->elements == 0) {
        freeReplyObject(rep);
        return 0;
    }
    an_group_info *v = calloc(rep->elements, sizeof *v);
    if (!v) {
        freeReplyObject(rep);
        rerr(r, "out of memory");
        return AN_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *g = rep->element[i];
        const redisReply *name = kv_get(g, "name");
        if (!name || name->type != REDIS_REPLY_STRING)
            continue;
        v[k].name = dupn(name->str, (size_t)name->len);
        if (!v[k].name) {
            an_group_info_free(v, k);
            freeReplyObject(rep);
            rerr(r, "out of memory");
            return AN_ENOMEM;
        }
        v[k].consumers = kv_int(g, "consumers");
        v[k].pending = kv_int(g, "pending");
        reply_id(v[k].last_delivered_id, kv_get(g, "last-delivered-id"));
        v[k].entries_read = kv_int(g, "entries-read");
        v[k].lag = kv_int(g, "lag");
        k++;
    }
    freeReplyObject(rep);
    *groups = v;
    *n = k;
    return 0;
}

void an_group_info_free(an_group_info *groups, size_t n)
{
    if (!groups)
        return;
    for (size_t i = 0; i < n; i++)
        free(groups[i].name);
    free(groups);
}

int an_xinfo_consumers(an_redis *r, const char *stream, const char *group,
                       an_consumer_info **consumers, size_t *n)
{
    *consumers = NULL;
    *n = 0;
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "XINFO");
    cmd_add(&c, "CONSUMERS");
    cmd_add(&c, stream);
    cmd_add(&c, group);
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY)
        return bad_reply(r, "XINFO CONSUMERS", rep);
    if (rep->elements == 0) {
        freeReplyObject(rep);
        return 0;
    }
    an_consumer_info *v = calloc(rep->elements, sizeof *v);
    if (!v) {
        freeReplyObject(rep);
        rerr(r, "out of memory");
        return AN_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *g = rep->element[i];
        const redisReply *name = kv_get(g, "name");
        if (!name || name->type != REDIS_REPLY_STRING)
            continue;
        v[k].name = dupn(name->str, (size_t)name->len);
        if (!v[k].name) {
            an_consumer_info_free(v, k);
            freeReplyObject(rep);
            rerr(r, "out of memory");
            return AN_ENOMEM;
        }
        v[k].pending = kv_int(g, "pending");
        v[k].idle_ms = kv_int(g, "idle");
        v[k].inactive_ms = kv_int(g, "inactive");
        k++;
    }
    freeReplyObject(rep);
    *consumers = v;
    *n = k;
    return 0;
}

void an_consumer_info_free(an_consumer_info *consumers, size_t n)
{
    if (!consumers)
        return;
    for (size_t i = 0; i < n; i++)
        free(consumers[i].name);
    free(consumers);
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
        drop_ctx(r);
        int rc = reconnect_rc(do_connect(r));
        if (rc)
            return rc;
    }
    /* Pipelined: n HMGETs, one round trip. */
    for (size_t i = 0; i < n; i++) {
        if (!keys[i])
            continue;   /* not asked for */
        const char *argv[5] = {"HMGET", keys[i], "params", "watermark", "source"};
        if (redisAppendCommandArgv(r->ctx, 5, argv, NULL) != REDIS_OK) {
            rerr(r, "HMGET: %s", r->ctx->errstr);
            drop_ctx(r);
            return AN_ETRANSIENT;
        }
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *v = NULL;
        if (!keys[i])
            continue;
        if (redisGetReply(r->ctx, &v) != REDIS_OK || !v) {
            rerr(r, "redis %s: %s", r->url_redacted,
                 r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
            drop_ctx(r);
            rc = AN_ETRANSIENT;
            break;   /* the context is gone: the other replies with it */
        }
        redisReply *rep = v;
        if (rep->type == REDIS_REPLY_ERROR) {
            if (!rc) {
                rerr(r, "HMGET %s: %.*s", keys[i], (int)rep->len, rep->str);
                rc = classify_error(rep->str, (size_t)rep->len);
            }
        } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
                   rep->element[0]->type == REDIS_REPLY_STRING) {
            params[i] = dupn(rep->element[0]->str, (size_t)rep->element[0]->len);
            if (sources && rep->element[2]->type == REDIS_REPLY_STRING &&
                !(sources[i] = dupn(rep->element[2]->str, (size_t)rep->element[2]->len)))
                free(params[i]), params[i] = NULL;
            if (!params[i] && !rc) {
                rerr(r, "out of memory");
                rc = AN_ENOMEM;
            }
            if (rep->element[1]->type == REDIS_REPLY_STRING)
                watermarks[i] = reply_int(rep->element[1]);
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

/* Runs publish_many.lua for g; *out is its reply (an array of one
 * {status, acked, cache, {ids}} per entry), checked for shape. */
static int publish_many_call(an_redis *r, const an_publish_group *g, redisReply **out)
{
    *out = NULL;
    if (!g->input || !g->group || !g->output || (g->nkeys && !g->keys)) {
        rerr(r, "publish_many: bad request (input, group and output are required)");
        return AN_EINVAL;
    }
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "EVALSHA"); /* placeholders filled by eval_script */
    cmd_add(&c, "");
    char akey[512];
    cmd_addi(&c, (int64_t)(3 + g->nkeys));
    cmd_add(&c, g->input);
    cmd_add(&c, g->output);
    cmd_add(&c, an_attempts_key(g->input, akey, sizeof akey));
    for (size_t k = 0; k < g->nkeys; k++)
        cmd_add(&c, g->keys[k]);
    cmd_add(&c, g->group);
    cmd_add(&c, g->owner ? g->owner : "");
    cmd_addi(&c, g->output_maxlen > 0 ? g->output_maxlen : 0);
    cmd_addi(&c, (int64_t)g->nentries);
    cmd_add(&c, g->no_ack ? "0" : "1");
    char ts[24];
    snprintf(ts, sizeof ts, "%" PRId64, g->updated_ms > 0 ? g->updated_ms : now_ms());
    /* three numbers per entry; cmd's own number slots are too few */
    char (*nums)[24] = malloc((g->nentries ? g->nentries : 1) * 3 * sizeof *nums);
    if (!nums) {
        cmd_free(&c);
        rerr(r, "out of memory");
        return AN_ENOMEM;
    }
    for (size_t i = 0; i < g->nentries; i++) {
        const an_publish_entry *e = &g->entries[i];
        if (e->key_index > g->nkeys || (e->key_index && !e->params_json)) {
            cmd_free(&c);
            free(nums);
            rerr(r, "publish_many: entry %zu: bad params key index", i);
            return AN_EINVAL;
        }
        char *n0 = nums[3 * i], *n1 = nums[3 * i + 1], *n2 = nums[3 * i + 2];
        snprintf(n0, 24, "%zu", e->nmsgs);
        /* KEYS[1..3] are the streams and the attempts hash: hash k is
         * KEYS[3 + k]. */
        snprintf(n1, 24, "%zu", e->key_index ? e->key_index + 3 : 0);
        snprintf(n2, 24, "%" PRId64, e->watermark);
        cmd_add(&c, e->entry_id);
        cmd_add(&c, n0);
        cmd_add(&c, n1);
        cmd_add(&c, e->key_index ? e->params_json : "");
        cmd_add(&c, n2);
        cmd_add(&c, ts);
        cmd_add(&c, e->key_index && e->source ? e->source : "");
        for (size_t j = 0; j < e->nmsgs; j++) {
            const an_out_msg *m = &e->msgs[j];
            cmd_add(&c, m->data_type);
            cmd_add(&c, m->model);
            cmd_add(&c, m->rows ? m->rows : "");
            cmd_add(&c, an_encoding_name(m->encoding));
            cmd_addn(&c, m->body ? m->body : "", m->body_len);
        }
    }
    redisReply *rep;
    int rc = eval_script(r, "publish_many", &c, &rep);
    cmd_free(&c);
    free(nums);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != g->nentries)
        return bad_reply(r, "publish_many.lua", rep);
    for (size_t i = 0; i < g->nentries; i++) {
        const redisReply *x = rep->element[i];
        if (x->type != REDIS_REPLY_ARRAY || x->elements != 4 ||
            x->element[0]->type != REDIS_REPLY_INTEGER ||
            x->element[3]->type != REDIS_REPLY_ARRAY ||
            x->element[3]->elements != (x->element[0]->integer ? g->entries[i].nmsgs : 0))
            return bad_reply(r, "publish_many.lua entry", rep);
    }
    *out = rep;
    return 0;
}

int an_publish_many(an_redis *r, const an_publish_group *g, int *status)
{
    for (size_t i = 0; i < g->nentries; i++)
        status[i] = 0;
    redisReply *rep;
    int rc = publish_many_call(r, g, &rep);
    if (rc)
        return rc;
    for (size_t i = 0; i < g->nentries; i++)
        status[i] = rep->element[i]->element[0]->integer == 1;
    freeReplyObject(rep);
    return 0;
}

/* ------------------------------------------------------------ generic */

/* Appends args (binary safe) to c. */
static void cmd_add_all(cmd *c, const char *const *args, const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cmd_addn(c, args[i], lens ? lens[i] : (args[i] ? strlen(args[i]) : 0));
}

int an_redis_eval(an_redis *r, const char *name, size_t numkeys,
                  const char *const *args, const size_t *lens, size_t nargs,
                  redisReply **reply)
{
    *reply = NULL;
    if (numkeys > nargs) {
        rerr(r, "%s.lua: %zu keys but %zu arguments", name, numkeys, nargs);
        return AN_EINVAL;
    }
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "EVALSHA");
    cmd_add(&c, ""); /* placeholders filled by eval_script */
    cmd_addi(&c, (int64_t)numkeys);
    cmd_add_all(&c, args, lens, nargs);
    int rc = eval_script(r, name, &c, reply);
    cmd_free(&c);
    return rc;
}

int an_redis_command(an_redis *r, const char *const *argv, const size_t *lens,
                     size_t argc, redisReply **reply)
{
    *reply = NULL;
    if (argc == 0) {
        rerr(r, "empty command");
        return AN_EINVAL;
    }
    cmd c;
    cmd_init(&c);
    cmd_add_all(&c, argv, lens, argc);
    int rc = run(r, &c, reply, false);
    cmd_free(&c);
    return rc;
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
        rerr(r, "out of memory");
        return AN_ENOMEM;
    }
    for (size_t i = 0; i + 2 < a->elements; i += 3) {
        const redisReply *name = a->element[i], *id = a->element[i + 1],
                         *held = a->element[i + 2];
        if (name->type != REDIS_REPLY_STRING || id->type != REDIS_REPLY_STRING ||
            held->type != REDIS_REPLY_STRING)
            return AN_EREDIS;
        an_trim_group *g = &t->groups[t->ngroups];
        g->name = dupn(name->str, (size_t)name->len);
        if (!g->name) {
            rerr(r, "out of memory");
            return AN_ENOMEM;
        }
        copy_id(g->needed, id->str, (size_t)id->len);
        copy_id(g->held, held->str, (size_t)held->len);
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
        rerr(r, "trim_input: bad arguments");
        return AN_EINVAL;
    }
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "EVALSHA"); /* placeholders filled by eval_script */
    cmd_add(&c, "");
    cmd_addi(&c, 1);
    cmd_add(&c, stream);
    cmd_addi(&c, retention_ms);
    cmd_add(&c, trim ? "1" : "0");
    cmd_addi(&c, limit);
    redisReply *rep;
    int rc = eval_script(r, "trim_input", &c, &rep);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_STRING ||
        rep->element[2]->type != REDIS_REPLY_INTEGER)
        return bad_reply(r, "trim_input.lua", rep);
    out->trimmed = rep->element[0]->integer;
    copy_id(out->cutoff, rep->element[1]->str, (size_t)rep->element[1]->len);
    out->now_ms = rep->element[2]->integer;
    rc = trim_groups(r, out, rep->element[3]);
    if (rc) {
        an_trim_result_free(out);
        if (rc == AN_EREDIS)
            return bad_reply(r, "trim_input.lua groups", rep);
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
        rerr(r, "attempts_gc: bad arguments");
        return AN_EINVAL;
    }
    char key[512];
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "EVALSHA"); /* placeholders filled by eval_script */
    cmd_add(&c, "");
    cmd_addi(&c, 2);
    cmd_add(&c, input);
    cmd_add(&c, an_attempts_key(input, key, sizeof key));
    cmd_add(&c, group);
    cmd_add(&c, cursor[0] ? cursor : "0");
    cmd_addi(&c, (int64_t)count);
    redisReply *rep;
    int rc = eval_script(r, "attempts_gc", &c, &rep);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_INTEGER)
        return bad_reply(r, "attempts_gc.lua", rep);
    copy_id(cursor, rep->element[0]->str, (size_t)rep->element[0]->len);
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
    /* One script-free round trip: MULTI, HSET, EXPIRE, EXEC pipelined. */
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "MULTI");
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    freeReplyObject(rep);
    cmd_init(&c);
    cmd_add(&c, "HSET");
    cmd_add(&c, key);
    cmd_add(&c, "state");
    cmd_add(&c, state);
    cmd_add(&c, "cause");
    cmd_add(&c, cause ? cause : "");
    cmd_add(&c, "since");
    cmd_addi(&c, since_ms);
    cmd_add(&c, "updated");
    cmd_addi(&c, now_ms());
    rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (!rc) {
        freeReplyObject(rep);
        cmd_init(&c);
        cmd_add(&c, "EXPIRE");
        cmd_add(&c, key);
        cmd_addi(&c, ttl_s);
        rc = run(r, &c, &rep, false);
        cmd_free(&c);
        if (!rc)
            freeReplyObject(rep);
    }
    cmd_init(&c);
    cmd_add(&c, rc ? "DISCARD" : "EXEC");
    int rc2 = run(r, &c, &rep, false);
    cmd_free(&c);
    if (!rc2) {
        /* EXEC answers an array of the commands' replies (errors inside) */
        if (rep->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < rep->elements && !rc; i++)
                if (rep->element[i]->type == REDIS_REPLY_ERROR) {
                    rerr(r, "health %s: %s", key, rep->element[i]->str);
                    rc = classify_error(rep->element[i]->str, rep->element[i]->len);
                }
        freeReplyObject(rep);
    }
    return rc ? rc : rc2;
}

int an_health_get(an_redis *r, const char *key, char *state, size_t state_len, char *cause,
                  size_t cause_len, int64_t *since_ms)
{
    cmd c;
    cmd_init(&c);
    cmd_add(&c, "HMGET");
    cmd_add(&c, key);
    cmd_add(&c, "state");
    cmd_add(&c, "cause");
    cmd_add(&c, "since");
    redisReply *rep;
    int rc = run(r, &c, &rep, false);
    cmd_free(&c);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return bad_reply(r, "HMGET health", rep);
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
