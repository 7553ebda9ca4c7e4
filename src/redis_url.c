/*
 * redis_url.c: an_redis_url.h. One splitting rule serves parsing and
 * redaction: scheme, then the user information up to the last '@', then
 * the rest (host/port/db or socket path, and a query).
 */
#include "an_redis_url.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_error.h"

/* The parts of a URL: pointers into it. */
typedef struct parts {
    bool unix_socket;
    const char *userinfo; /* NULL when there is no '@' */
    size_t userinfo_len;
    const char *rest;     /* after "scheme://" and "userinfo@" */
} parts;

static int split(const char *url, parts *p)
{
    memset(p, 0, sizeof *p);
    const char *after;
    if (!strncmp(url, "redis://", 8)) {
        after = url + 8;
    } else if (!strncmp(url, "unix://", 7)) {
        after = url + 7;
        p->unix_socket = true;
    } else {
        return -1;
    }
    const char *at = strrchr(after, '@');
    if (at) {
        p->userinfo = after;
        p->userinfo_len = (size_t)(at - after);
        p->rest = at + 1;
    } else {
        p->rest = after;
    }
    return 0;
}

static char *dupn(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    if (o) {
        memcpy(o, s, n);
        o[n] = '\0';
    }
    return o;
}

static void pct_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char h[3] = {p[1], p[2], 0};
            *o++ = (char)strtol(h, NULL, 16);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

static int parse_int(const char *s, size_t n, long lo, long hi, int *out)
{
    char buf[16];
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || *end || v < lo || v > hi || !isdigit((unsigned char)buf[0]))
        return -1;
    *out = (int)v;
    return 0;
}

char *an_redis_url_redact(const char *url, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    parts p;
    if (!url || split(url, &p)) {
        /* Not a URL we know: show none of it (it may be a password). */
        snprintf(buf, len, "(not a redis:// or unix:// URL; not shown)");
        return buf;
    }
    size_t scheme = p.unix_socket ? 7 : 8;
    char ui[320] = "";
    if (p.userinfo) {
        const char *colon = memchr(p.userinfo, ':', p.userinfo_len);
        if (colon)   /* user:***@ (user shown, up to 256 bytes) */
            snprintf(ui, sizeof ui, "%.*s:***@", (int)((colon - p.userinfo) > 256
                                                      ? 256 : colon - p.userinfo),
                     p.userinfo);
        else         /* password@ (redis-py's form): all of it is the password */
            snprintf(ui, sizeof ui, "***@");
    }
    /* the rest, with any password= query value masked */
    size_t n = (size_t)snprintf(buf, len, "%.*s%s", (int)scheme, url, ui);
    for (const char *r = p.rest; *r && n + 1 < len;) {
        if ((r == p.rest || r[-1] == '?' || r[-1] == '&') && !strncmp(r, "password=", 9)) {
            n += (size_t)snprintf(buf + n, len - n, "password=***");
            r += 9;
            while (*r && *r != '&')
                r++;
            continue;
        }
        buf[n++] = *r++;
        buf[n] = '\0';
    }
    if (n >= len)
        buf[len - 1] = '\0';
    return buf;
}

/* user[:password] of the user information, decoded. */
static int parse_userinfo(const parts *p, an_redis_url *u)
{
    if (!p->userinfo)
        return 0;
    const char *colon = memchr(p->userinfo, ':', p->userinfo_len);
    if (colon) {
        if (colon > p->userinfo && !(u->user = dupn(p->userinfo, (size_t)(colon - p->userinfo))))
            return AN_ENOMEM;
        u->password = dupn(colon + 1, p->userinfo_len - (size_t)(colon + 1 - p->userinfo));
    } else if (p->userinfo_len) {
        u->password = dupn(p->userinfo, p->userinfo_len);   /* redis://password@host */
    } else {
        return 0;
    }
    if (!u->password)
        return AN_ENOMEM;
    if (u->user)
        pct_decode(u->user);
    pct_decode(u->password);
    return 0;
}

/* ?db=N&password=P (unix) or ignored options (TCP, as before). */
static int parse_query(const char *q, an_redis_url *u, bool strict)
{
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 3 && !strncmp(q, "db=", 3)) {
            if (parse_int(q + 3, len - 3, 0, 1000000, &u->db))
                return -1;
        } else if (len >= 9 && !strncmp(q, "password=", 9)) {
            free(u->password);
            if (!(u->password = dupn(q + 9, len - 9)))
                return AN_ENOMEM;
            pct_decode(u->password);
        } else if (strict) {
            return -1;
        }
        q = amp ? amp + 1 : NULL;
    }
    return 0;
}

static int bad(char *err, size_t errlen, const char *url, const char *what)
{
    char red[512];
    if (err && errlen)
        snprintf(err, errlen, "redis URL: %s in '%s'", what,
                 an_redis_url_redact(url, red, sizeof red));
    return AN_ECONFIG;
}

/* host[:port] or [v6][:port]: the first hl bytes of rest (default host
 * 127.0.0.1). */
static int parse_hostport(const char *url, const char *rest, size_t hl, an_redis_url *u,
                          char *err, size_t errlen)
{
    const char *hp = rest, *portstr = NULL;
    size_t hostlen = hl;
    if (hp[0] == '[') {
        const char *rb = memchr(hp, ']', hl);
        if (!rb)
            return bad(err, errlen, url, "bad IPv6 host");
        if (rb + 1 < hp + hl && rb[1] != ':')
            return bad(err, errlen, url, "bad host");
        hp++;
        hostlen = (size_t)(rb - hp);
        if (rb + 1 < rest + hl)
            portstr = rb + 2;
    } else {
        const char *colon = NULL;
        for (const char *c = hp; c < hp + hl; c++)
            if (*c == ':')
                colon = c;
        if (colon) {
            hostlen = (size_t)(colon - hp);
            portstr = colon + 1;
        }
    }
    u->host = hostlen ? dupn(hp, hostlen) : strdup("127.0.0.1");
    if (!u->host)
        return AN_ENOMEM;
    if (portstr && parse_int(portstr, (size_t)(rest + hl - portstr), 1, 65535, &u->port))
        return bad(err, errlen, url, "bad port");
    return 0;
}

/* host[:port] of a TCP URL, then /db and ?query. */
static int parse_tcp(const char *url, const char *rest, an_redis_url *u, char *err,
                     size_t errlen)
{
    size_t hl = strcspn(rest, "/?#");
    int rc = parse_hostport(url, rest, hl, u, err, errlen);
    if (rc)
        return rc;
    const char *r = rest + hl;
    if (*r == '/') {
        size_t dl = strcspn(r + 1, "?#");
        if (dl && parse_int(r + 1, dl, 0, 1000000, &u->db))
            return bad(err, errlen, url, "bad db number");
        r += 1 + dl;
    }
    if (*r == '?') {
        rc = parse_query(r + 1, u, false);
        if (rc)
            return rc == AN_ENOMEM ? rc : bad(err, errlen, url, "bad query");
    }
    return 0;
}

/* /path/to/socket[?db=N&password=P] of a unix:// URL. */
static int parse_unix(const char *url, const char *rest, an_redis_url *u, char *err,
                      size_t errlen)
{
    size_t pl = strcspn(rest, "?");
    if (pl == 0 || rest[0] != '/')
        return bad(err, errlen, url, "no absolute socket path");
    if (!(u->path = dupn(rest, pl)))
        return AN_ENOMEM;
    if (rest[pl] == '?') {
        int rc = parse_query(rest + pl + 1, u, true);
        if (rc)
            return rc == AN_ENOMEM ? rc : bad(err, errlen, url, "bad query (db=N, password=P)");
    }
    return 0;
}

int an_redis_url_parse(const char *url, an_redis_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    parts p;
    if (!url || !*url) {
        if (err && errlen)
            snprintf(err, errlen, "no redis URL");
        return AN_ECONFIG;
    }
    if (split(url, &p)) {
        if (err && errlen)
            snprintf(err, errlen, "not a redis:// or unix:// URL (not shown: it may hold a "
                                  "password)");
        return AN_ECONFIG;
    }
    int rc = parse_userinfo(&p, out);
    if (rc)
        return rc;
    return p.unix_socket ? parse_unix(url, p.rest, out, err, errlen)
                         : parse_tcp(url, p.rest, out, err, errlen);
}

void an_redis_url_free(an_redis_url *u)
{
    if (!u)
        return;
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->password);
    memset(u, 0, sizeof *u);
}
