/*
 * notify.c: the systemd notify protocol (see include/an_notify.h).
 */
#define _GNU_SOURCE
#include "an_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "an_error.h"
#include "an_log.h"

struct an_notify {
    int fd;
    struct sockaddr_un addr;
    socklen_t addrlen;
    an_clock clock;
    bool has_clock;
    int64_t watchdog_usec;
    int64_t last_watchdog_ms; /* -1: none sent yet */
    bool ready_sent, stopping_sent, warned;
};

static int64_t now(const an_notify *n)
{
    return an_clock_now_ms(n->has_clock ? &n->clock : NULL);
}

int an_notify_open(const char *socket_name, int64_t watchdog_usec, const an_clock *clock,
                   an_notify **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!socket_name || !*socket_name)
        return 0;
    size_t len = strlen(socket_name);
    an_notify *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return AN_ENOMEM;
    }
    n->addr.sun_family = AF_UNIX;
    if (len >= sizeof n->addr.sun_path || (socket_name[0] != '/' && socket_name[0] != '@') ||
        (socket_name[0] == '@' && len < 2)) {
        snprintf(err, errlen, "NOTIFY_SOCKET '%s' is not an absolute path or @abstract name "
                 "(of at most %zu bytes)", socket_name, sizeof n->addr.sun_path - 1);
        free(n);
        return AN_EINVAL;
    }
    memcpy(n->addr.sun_path, socket_name, len);
    if (socket_name[0] == '@')
        n->addr.sun_path[0] = '\0';   /* abstract: no trailing NUL in the length */
    n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                             (socket_name[0] == '@' ? 0 : 1));
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0) {
        snprintf(err, errlen, "cannot create the notify socket: %s", strerror(errno));
        free(n);
        return AN_EIO;
    }
    if (clock) {
        n->clock = *clock;
        n->has_clock = true;
    }
    n->watchdog_usec = watchdog_usec > 0 ? watchdog_usec : 0;
    n->last_watchdog_ms = -1;
    *out = n;
    return 0;
}

int an_notify_from_env(const an_clock *clock, an_notify **out, char *err, size_t errlen)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    long long wd = 0;
    if (usec && *usec) {
        char *end;
        errno = 0;
        wd = strtoll(usec, &end, 10);
        if (errno || *end || wd < 0) {
            snprintf(err, errlen, "WATCHDOG_USEC '%s' is not a number of microseconds", usec);
            *out = NULL;
            return AN_EINVAL;
        }
    }
    if (pid && *pid && atoll(pid) != (long long)getpid())
        wd = 0;   /* the watchdog is another process's */
    return an_notify_open(sock, wd, clock, out, err, errlen);
}

void an_notify_free(an_notify *n)
{
    if (!n)
        return;
    close(n->fd);
    free(n);
}

int an_notify_send(an_notify *n, const char *msg)
{
    if (!n)
        return 0;
    ssize_t w = sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&n->addr,
                       n->addrlen);
    if (w >= 0)
        return 0;
    if (!n->warned) {
        n->warned = true;
        an_warn("systemd notify: cannot send to the notify socket: %s (further failures "
                "are not logged)", strerror(errno));
    }
    return AN_EIO;
}

void an_notify_ready(an_notify *n)
{
    if (!n || n->ready_sent)
        return;
    n->ready_sent = true;
    an_notify_send(n, "READY=1");
}

void an_notify_stopping(an_notify *n)
{
    if (!n || n->stopping_sent)
        return;
    n->stopping_sent = true;
    an_notify_send(n, "STOPPING=1");
}

bool an_notify_watchdog(an_notify *n)
{
    if (!n || n->watchdog_usec == 0)
        return false;
    int64_t t = now(n);
    int64_t half_ms = n->watchdog_usec / 2000;
    if (n->last_watchdog_ms >= 0 && t - n->last_watchdog_ms < half_ms)
        return false;
    n->last_watchdog_ms = t;
    an_notify_send(n, "WATCHDOG=1");
    return true;
}

int64_t an_notify_watchdog_usec(const an_notify *n)
{
    return n ? n->watchdog_usec : 0;
}
