/*
 * an_exec.h: hand a small text to a shell command on its stdin, with
 * retries (anomalyctl alerts --exec). The command runs as /bin/sh -c CMD;
 * its stdout goes to our stderr (our stdout carries data), its stderr is
 * inherited.
 */
#ifndef AN_EXEC_H
#define AN_EXEC_H

#include <stddef.h>

#include "an_clock.h"

typedef struct an_exec_opts {
    int retries;      /* attempts after the first (0: one attempt) */
    int backoff_ms;   /* delay before the first retry, doubled after each */
    int timeout_ms;   /* an attempt running longer is killed (SIGKILL) and
                         counts as failed; 0: no limit */
    const an_clock *clock; /* paces backoff and timeout; NULL: the system's */
} an_exec_opts;

/* Runs cmd with input (len bytes) on its stdin until an attempt exits 0,
 * at most 1 + retries attempts. Returns 0 (*attempts = the attempt that
 * succeeded) or AN_EIO with err holding the last failure ("exit status 3",
 * "killed by signal 9", "timed out after 30000 ms", "cannot fork: ...");
 * attempts may be NULL. Expects SIGPIPE to be ignored by the caller when
 * the command may not read its input (EPIPE is not a failure). */
int an_exec_retry(const char *cmd, const char *input, size_t len,
                  const an_exec_opts *o, int *attempts, char *err, size_t errlen);

#endif
