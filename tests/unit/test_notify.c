/*
 * test_notify.c: the systemd notify protocol writer (an_notify.h) against
 * a datagram socket the test binds itself (a path and an abstract name),
 * with the watchdog paced by a virtual clock. Unix datagrams are queued
 * by sendto itself, so "nothing more was sent" is a non-blocking receive
 * that finds the queue empty, not a wait.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "an_error.h"
#include "an_notify.h"
#include "check_main.h"

static int64_t vnow;
static int64_t vclock_now(void *ud)
{
    (void)ud;
    return vnow;
}
static const an_clock vclock = {.now_ms = vclock_now};

static char dir[64];
static char path[128];
static int rx = -1;

/* Binds rx to name: a path, or "@x" for an abstract socket. */
static void bind_rx(const char *name)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(a.sun_path, name, len);
    socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (name[0] == '@')
        a.sun_path[0] = '\0';
    else
        al++;
    rx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(rx, 0);
    ck_assert_msg(bind(rx, (struct sockaddr *)&a, al) == 0, "bind %s: %s", name,
                  strerror(errno));
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/an-notify-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/notify.sock", dir);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

static void teardown(void)
{
    if (rx >= 0)
        close(rx);
    rx = -1;
    unlink(path);
    rmdir(dir);
}

/* The next queued datagram, or "" when none is queued. */
static const char *next_msg(void)
{
    static char buf[512];
    ssize_t n = recv(rx, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n < 0) {
        ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s", strerror(errno));
        return "";
    }
    buf[n] = '\0';
    return buf;
}

START_TEST(messages_to_a_path)
{
    bind_rx(path);
    an_notify *n = NULL;
    char err[256];
    vnow = 1000;
    ck_assert_int_eq(an_notify_open(path, 0, &vclock, &n, err, sizeof err), 0);
    ck_assert_ptr_nonnull(n);
    an_notify_ready(n);
    an_notify_ready(n);   /* once */
    ck_assert_str_eq(next_msg(), "READY=1");
    ck_assert_str_eq(next_msg(), "");
    ck_assert_int_eq(an_notify_send(n, "STATUS=running; 12.5 entries/s"), 0);
    ck_assert_str_eq(next_msg(), "STATUS=running; 12.5 entries/s");
    ck_assert(!an_notify_watchdog(n));   /* no WATCHDOG_USEC: no watchdog */
    ck_assert_str_eq(next_msg(), "");
    an_notify_stopping(n);
    an_notify_stopping(n);
    ck_assert_str_eq(next_msg(), "STOPPING=1");
    ck_assert_str_eq(next_msg(), "");
    an_notify_free(n);
}
END_TEST

START_TEST(watchdog_at_half_the_interval)
{
    char name[64];
    snprintf(name, sizeof name, "@an-notify-test-wd-%d", (int)getpid());
    setenv("NOTIFY_SOCKET", name, 1);
    bind_rx(name);
    setenv("WATCHDOG_USEC", "2000000", 1);   /* 2 s: WATCHDOG=1 every 1000 ms */
    an_notify *n = NULL;
    char err[256];
    vnow = 50000;
    ck_assert_int_eq(an_notify_from_env(&vclock, &n, err, sizeof err), 0);
    ck_assert_int_eq(an_notify_watchdog_usec(n), 2000000);
    ck_assert(an_notify_watchdog(n));   /* the first call sends */
    ck_assert_str_eq(next_msg(), "WATCHDOG=1");
    vnow += 999;
    ck_assert(!an_notify_watchdog(n));
    ck_assert_str_eq(next_msg(), "");
    vnow += 1;
    ck_assert(an_notify_watchdog(n));
    ck_assert_str_eq(next_msg(), "WATCHDOG=1");
    ck_assert(!an_notify_watchdog(n));
    vnow += 5000;   /* a long gap: one ping, not a burst */
    ck_assert(an_notify_watchdog(n));
    ck_assert(!an_notify_watchdog(n));
    ck_assert_str_eq(next_msg(), "WATCHDOG=1");
    ck_assert_str_eq(next_msg(), "");
    an_notify_free(n);

    /* WATCHDOG_PID of another process: the watchdog is not ours */
    setenv("WATCHDOG_PID", "1", 1);
    ck_assert_int_eq(an_notify_from_env(&vclock, &n, err, sizeof err), 0);
    ck_assert_int_eq(an_notify_watchdog_usec(n), 0);
    ck_assert(!an_notify_watchdog(n));
    an_notify_free(n);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    ck_assert_int_eq(an_notify_from_env(&vclock, &n, err, sizeof err), 0);
    ck_assert_int_eq(an_notify_watchdog_usec(n), 2000000);
    an_notify_free(n);
}
END_TEST

START_TEST(environment_and_errors)
{
    an_notify *n = (an_notify *)&n;
    char err[256] = "";
    /* no NOTIFY_SOCKET: nothing to do, and NULL is accepted everywhere */
    ck_assert_int_eq(an_notify_from_env(NULL, &n, err, sizeof err), 0);
    ck_assert_ptr_null(n);
    an_notify_ready(NULL);
    an_notify_stopping(NULL);
    ck_assert(!an_notify_watchdog(NULL));
    ck_assert_int_eq(an_notify_send(NULL, "X=1"), 0);
    an_notify_free(NULL);

    setenv("NOTIFY_SOCKET", "relative/path", 1);
    ck_assert_int_eq(an_notify_from_env(NULL, &n, err, sizeof err), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not an absolute path or @abstract name"));
    setenv("NOTIFY_SOCKET", "@", 1);
    ck_assert_int_eq(an_notify_from_env(NULL, &n, err, sizeof err), AN_EINVAL);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    ck_assert_int_eq(an_notify_from_env(NULL, &n, err, sizeof err), AN_EINVAL);
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "soon", 1);
    ck_assert_int_eq(an_notify_from_env(NULL, &n, err, sizeof err), AN_EINVAL);
    ck_assert_str_eq(err, "WATCHDOG_USEC 'soon' is not a number of microseconds");
    ck_assert_ptr_null(n);

    /* nobody listening: the send fails, quietly for the caller */
    unsetenv("WATCHDOG_USEC");
    ck_assert_int_eq(an_notify_from_env(NULL, &n, err, sizeof err), 0);
    ck_assert_int_eq(an_notify_send(n, "READY=1"), AN_EIO);
    ck_assert_int_eq(an_notify_send(n, "READY=1"), AN_EIO);
    an_notify_free(n);
}
END_TEST

static Suite *notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, messages_to_a_path);
    tcase_add_test(tc, watchdog_at_half_the_interval);
    tcase_add_test(tc, environment_and_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(notify_suite(), CK_NORMAL);
}
