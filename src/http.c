/*
 * http.c: /metrics, /livez and /readyz over libmicrohttpd (see
 * include/an_http.h). The listening socket is made here, not by
 * libmicrohttpd, so a bad address or a port in use is reported with its
 * errno at start-up.
 */
#define _GNU_SOURCE
#include "an_http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "an_error.h"

struct an_http {
    struct MHD_Daemon *d;
    an_metrics *m;
    int64_t live_max_age_ms;
    int fd;
    int port;
};

int an_http_parse_listen(const char *text, an_listen_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *colon = text ? strrchr(text, ':') : NULL;
    const char *host = text, *host_end = colon;
    if (!colon || colon[1] == '\0')
        goto bad;
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');
        if (!rb || rb + 1 != colon)
            goto bad;
        host = text + 1;
        host_end = rb;
    } else if (memchr(text, ':', (size_t)(colon - text))) {
        goto bad;   /* an IPv6 address needs brackets */
    }
    size_t hl = (size_t)(host_end - host);
    if (hl >= sizeof out->host)
        goto bad;
    memcpy(out->host, host, hl);
    out->host[hl] = '\0';
    long port = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9' || port > 65535)
            goto bad;
        port = port * 10 + (*p - '0');
    }
    if (port > 65535) {
        snprintf(err, errlen, "'%s': port %ld out of range (0..65535)", text, port);
        return AN_ECONFIG;
    }
    out->port = (int)port;
    return 0;
bad:
    snprintf(err, errlen, "'%s' is not host:port (e.g. 127.0.0.1:9464, [::1]:9464)",
             text ? text : "");
    return AN_ECONFIG;
}

/* A bound, listening, non-blocking socket for the address, or -1 with err
 * set. */
static int listen_socket(const char *text, const an_listen_addr *a, int *port, char *err,
                         size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", a->port);
    int gr = getaddrinfo(a->host[0] ? a->host : NULL, ps, &hints, &res);
    if (gr) {
        snprintf(err, errlen, "%s: cannot resolve: %s", text, gai_strerror(gr));
        return -1;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot bind: %s", text, strerror(e));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *port = a->port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* Queues a response whose body is body (malloc'd; freed by libmicrohttpd)
 * or a copy of the static text. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *ctype,
                             char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code, const char *msg)
{
    char *body = NULL;
    int n = asprintf(&body, "%s\n", msg);
    if (n < 0)
        return MHD_NO;
    return reply(c, code, "text/plain; charset=utf-8", body, (size_t)n);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **req_cls)
{
    (void)version;
    (void)upload;
    an_http *h = cls;
    if (*req_cls == NULL) {   /* first call: headers only */
        *req_cls = h;
        return MHD_YES;
    }
    if (*upload_size) {   /* a body we do not read */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
    char why[256];
    if (!strcmp(url, "/metrics")) {
        size_t len = 0;
        char *text = an_metrics_render(h->m, &len);
        if (!text)
            return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len);
    }
    if (!strcmp(url, "/livez")) {
        bool ok = an_metrics_live(h->m, h->live_max_age_ms, why, sizeof why);
        return reply_text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, ok ? "ok" : why);
    }
    if (!strcmp(url, "/readyz")) {
        bool ok = an_metrics_ready(h->m, why, sizeof why);
        return reply_text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, ok ? "ok" : why);
    }
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found (try /metrics, /livez, /readyz)");
}

int an_http_start(const an_http_opts *o, an_http **out, char *err, size_t errlen)
{
    *out = NULL;
    an_listen_addr a;
    int rc = an_http_parse_listen(o->listen, &a, err, errlen);
    if (rc)
        return rc;
    an_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return AN_ENOMEM;
    }
    h->m = o->metrics;
    h->live_max_age_ms = o->live_max_age_ms;
    h->fd = listen_socket(o->listen, &a, &h->port, err, errlen);
    if (h->fd < 0) {
        free(h);
        return AN_ECONFIG;
    }
    /* One internal thread serves every connection in turn: scrapes are
     * rare and each answer is built from memory in microseconds. It
     * starts with the stop signals blocked, so they reach the main
     * thread (whose loop polls the flag the handler sets). */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
                            handle, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!h->d) {
        snprintf(err, errlen, "%s: libmicrohttpd could not start", o->listen);
        close(h->fd);
        free(h);
        return AN_EIO;
    }
    *out = h;
    return 0;
}

int an_http_port(const an_http *h)
{
    return h ? h->port : 0;
}

void an_http_stop(an_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);   /* closes the listening socket too */
    free(h);
}
