/*
 * an_redis_url.h: the one parser of Redis URLs (the connector, the config
 * check and every redaction use it), so what is checked, what is connected
 * to and what is logged always agree.
 *
 *   redis://[[user]:password@]host[:port][/db][?query]
 *   unix://[[user]:password@]/path/to/redis.sock[?db=N][&password=P]
 *
 * The user information ends at the LAST '@' of the URL, so a password may
 * hold '@', '/', '?' or '#' unescaped; user and password are
 * percent-decoded (%20 -> ' ').
 */
#ifndef AN_REDIS_URL_H
#define AN_REDIS_URL_H

#include <stddef.h>

typedef struct an_redis_url {
    char *host;     /* TCP host (malloc'd), NULL for unix */
    int port;       /* 6379 by default */
    char *path;     /* unix socket path (malloc'd), NULL for TCP */
    char *user;     /* NULL when none */
    char *password; /* NULL when none */
    int db;         /* 0 by default */
} an_redis_url;

/* Parses url into *out (zeroed first; free with an_redis_url_free, also
 * after a failure). Returns 0, AN_ECONFIG with a message in err that quotes
 * only the redacted URL, or AN_ENOMEM. */
int an_redis_url_parse(const char *url, an_redis_url *out, char *err, size_t errlen);

void an_redis_url_free(an_redis_url *u);

/* Writes url with its password (in the user information or in a
 * password= query parameter) replaced by "***" into buf and returns buf.
 * The password is located the way an_redis_url_parse locates it, so no
 * part of it is left, whatever it holds. */
char *an_redis_url_redact(const char *url, char *buf, size_t len);

#endif
