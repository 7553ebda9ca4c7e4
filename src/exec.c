/* exec.c: a shell command fed on stdin, with retries (an_exec.h). */
#include "an_exec.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "an_error.h"

/* Poll interval while a command runs: short, the commands are quick. */
#define POLL_MS 5

/* Starts /bin/sh -c cmd with a pipe on its stdin; *fd is the write end. */
static pid_t spawn(const char *cmd, int *fd, char *err, size_t errlen)
{
    int p[2];
    if (pipe(p) != 0) {
        snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL); /* the consumer ignores it; the command should not */
        dup2(p[0], 0);
        dup2(2, 1); /* our stdout is the alerts' JSON lines */
        close(p[0]);
        close(p[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(p[0]);
    *fd = p[1];
    return pid;
}

/* Writes all of input; a reader that went away (EPIPE) is not an error. */
static void feed(int fd, const char *input, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, input, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        input += w;
        len -= (size_t)w;
    }
    close(fd);
}

/* One attempt: 0 when the command exited 0, else AN_EIO with err set. */
static int attempt(const char *cmd, const char *input, size_t len, const an_exec_opts *o,
                   char *err, size_t errlen)
{
    int fd;
    pid_t pid = spawn(cmd, &fd, err, errlen);
    if (pid < 0)
        return AN_EIO;
    feed(fd, input, len);
    int64_t start = an_clock_now_ms(o->clock);
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            snprintf(err, errlen, "waitpid: %s", strerror(errno));
            return AN_EIO;
        }
        if (o->timeout_ms > 0 && an_clock_now_ms(o->clock) - start >= o->timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(err, errlen, "timed out after %d ms", o->timeout_ms);
            return AN_EIO;
        }
        an_clock_sleep_ms(o->clock, POLL_MS);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        snprintf(err, errlen, "exit status %d", WEXITSTATUS(status));
    else
        snprintf(err, errlen, "killed by signal %d", WTERMSIG(status));
    return AN_EIO;
}

int an_exec_retry(const char *cmd, const char *input, size_t len,
                  const an_exec_opts *o, int *attempts, char *err, size_t errlen)
{
    int delay = o->backoff_ms;
    for (int i = 0; i <= o->retries; i++) {
        if (attempts)
            *attempts = i + 1;
        if (i > 0) {
            an_clock_sleep_ms(o->clock, delay);
            delay = delay > 0x3fffffff ? delay : delay * 2;
        }
        if (attempt(cmd, input, len, o, err, errlen) == 0)
            return 0;
    }
    return AN_EIO;
}
