/*
 * an_notify.h: the systemd notify protocol, written directly (no
 * libsystemd): datagrams such as "READY=1" sent to the unix socket named
 * by $NOTIFY_SOCKET (a path, or "@name" for an abstract socket).
 *
 * anomalyd sends READY=1 once Redis, PostgreSQL and the schema are
 * checked, STATUS=<text> every few seconds, WATCHDOG=1 from its main loop
 * at half the interval of $WATCHDOG_USEC, and STOPPING=1 when a stop is
 * requested. Without $NOTIFY_SOCKET everything here is a no-op.
 *
 * Not thread-safe: the main loop is its one user. Every function accepts
 * a NULL an_notify and then does nothing.
 */
#ifndef AN_NOTIFY_H
#define AN_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_clock.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct an_notify an_notify;

/* Opens a notifier for socket (a path or "@abstract"; NULL or "" -> *out
 * NULL, nothing to do) with a watchdog interval of watchdog_usec (0 = no
 * watchdog). clock (copied; NULL = system) paces the watchdog. Returns 0,
 * AN_EINVAL (socket name too long / not absolute / bad), AN_EIO (no
 * socket could be created) or AN_ENOMEM, with a message in err. The caller
 * owns *out: an_notify_free. */
int an_notify_open(const char *socket, int64_t watchdog_usec, const an_clock *clock,
                   an_notify **out, char *err, size_t errlen);

/* an_notify_open from $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID
 * (the watchdog is ours only when WATCHDOG_PID is unset or our pid; an
 * unparsable WATCHDOG_USEC is an error). */
int an_notify_from_env(const an_clock *clock, an_notify **out, char *err, size_t errlen);

void an_notify_free(an_notify *n);

/* Sends msg as one datagram. 0, or AN_EIO (the first failure is logged as
 * a warning; systemd not listening must not stop the service). */
int an_notify_send(an_notify *n, const char *msg);

/* READY=1 (once; later calls do nothing) and STOPPING=1 (once). */
void an_notify_ready(an_notify *n);
void an_notify_stopping(an_notify *n);

/* Sends WATCHDOG=1 when the watchdog is on and half its interval has
 * passed since the last one (or none was sent yet). Returns true when it
 * sent. Call it often (every loop turn, every nap step). */
bool an_notify_watchdog(an_notify *n);

/* The watchdog interval in µs (0: off). */
int64_t an_notify_watchdog_usec(const an_notify *n);

#ifdef __cplusplus
}
#endif
#endif /* AN_NOTIFY_H */
