/*
 * an_http.h: the metrics and health endpoint ([http] listen), served by
 * libmicrohttpd on one internal thread:
 *   GET /metrics  the Prometheus text exposition of an an_metrics
 *   GET /livez    200 "ok" while the main loop's heartbeat is at most
 *                 live_max_age_ms old, else 503 with a one-line reason
 *   GET /readyz   200 "ok" when running, both servers connected and the
 *                 schema present, else 503 with a one-line reason
 * Anything else: 404; a method other than GET/HEAD: 405.
 *
 * The server only reads the an_metrics (under its mutex): it never calls
 * into Redis or PostgreSQL, so a scrape costs no server round trip.
 */
#ifndef AN_HTTP_H
#define AN_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "an_metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A parsed [http] listen value: "host:port" or "[ipv6]:port". */
typedef struct an_listen_addr {
    char host[256];  /* without brackets */
    int port;        /* 0..65535 (0: any free port, logged at start) */
} an_listen_addr;

/* Parses text ("127.0.0.1:9464", "[::1]:9464", "localhost:9464",
 * ":9464" = every address). Returns 0, or AN_ECONFIG with a message in err
 * ("'x' is not host:port", "port ... out of range"). Pure: resolves
 * nothing. */
int an_http_parse_listen(const char *text, an_listen_addr *out, char *err, size_t errlen);

typedef struct an_http_opts {
    const char *listen;       /* [http] listen (not empty) */
    an_metrics *metrics;      /* borrowed: must outlive the server */
    int64_t live_max_age_ms;  /* [http] live_max_age_ms */
} an_http_opts;

typedef struct an_http an_http;

/* Resolves and binds the address, then starts serving. Returns 0;
 * AN_ECONFIG when the address does not parse, resolve or bind (err says
 * which and why, e.g. "127.0.0.1:80: cannot bind: Permission denied");
 * AN_EIO when the server cannot start; AN_ENOMEM. The caller owns *out:
 * an_http_stop. */
int an_http_start(const an_http_opts *o, an_http **out, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
int an_http_port(const an_http *h);

/* Stops serving (waits for the thread) and frees. NULL-safe. */
void an_http_stop(an_http *h);

#ifdef __cplusplus
}
#endif
#endif /* AN_HTTP_H */
