/*
 * test_sd_notify.c: the systemd notify protocol of a real anomalyd process
 * (against the Redis and PostgreSQL of ops/stack.sh), received on a unix
 * datagram socket the test binds itself and names in $NOTIFY_SOCKET, as
 * systemd would for a Type=notify unit. No systemd involved.
 *
 *  1. ready_status_watchdog_stopping: with WATCHDOG_USEC set, anomalyd
 *     sends READY=1 (once, after it connected), STATUS= lines with the
 *     state and rate, WATCHDOG=1 repeatedly; on SIGTERM STOPPING=1 (once,
 *     after READY=1) and it exits 0.
 *  2. no_watchdog_without_watchdog_usec: without WATCHDOG_USEC no
 *     WATCHDOG=1 is sent; an idle exit also says STOPPING=1.
 *
 * Waits are for messages, with generous deadlines; nothing asserts how
 * often they come.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;
static int rx = -1;
static char sock_path[PATH_MAX + 32];

#define MAX_MSGS 4096
static char *msgs[MAX_MSGS];
static int nmsgs;

static void setup(void)
{
    e2e_init(&T, "notify");
    snprintf(sock_path, sizeof sock_path, "%s/notify.sock", T.tmpdir);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(sock_path), sizeof a.sun_path);
    strcpy(a.sun_path, sock_path);
    rx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(rx, 0);
    ck_assert_msg(bind(rx, (struct sockaddr *)&a, sizeof a) == 0, "bind %s: %s", sock_path,
                  strerror(errno));
    e2e_setenv(&T, "NOTIFY_SOCKET", sock_path);
    nmsgs = 0;
}

static void teardown(void)
{
    for (int i = 0; i < nmsgs; i++)
        free(msgs[i]);
    nmsgs = 0;
    if (rx >= 0)
        close(rx);
    rx = -1;
    e2e_fini(&T);
}

/* Receives datagrams for up to ms milliseconds (returns early after the
 * first one when ms > 0), appending them to msgs. */
static void receive(int ms)
{
    struct pollfd p = {.fd = rx, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return;
    char buf[1024];
    ssize_t n;
    while ((n = recv(rx, buf, sizeof buf - 1, MSG_DONTWAIT)) >= 0) {
        buf[n] = '\0';
        ck_assert_int_lt(nmsgs, MAX_MSGS);
        msgs[nmsgs++] = strdup(buf);
    }
}

/* Index of the first message starting with prefix at or after from, or -1. */
static int find(const char *prefix, int from)
{
    for (int i = from; i < nmsgs; i++)
        if (!strncmp(msgs[i], prefix, strlen(prefix)))
            return i;
    return -1;
}

static int count(const char *prefix)
{
    int n = 0;
    for (int i = 0; i < nmsgs; i++)
        n += !strncmp(msgs[i], prefix, strlen(prefix));
    return n;
}

/* Receives until find(prefix, 0) >= 0 (deadline 60 s) or p exits. */
static void wait_for(e2e_proc *p, const char *prefix, int times)
{
    double deadline = e2e_now() + 60;
    while (count(prefix) < times) {
        ck_assert_msg(e2e_now() < deadline, "no %d x %s within 60 s (%d messages); stderr:\n%s",
                      times, prefix, nmsgs, e2e_tail(p->err_path, 2000));
        if (!p->done)
            e2e_poll(&T, p);
        receive(100);
        if (p->done) {
            receive(0);
            ck_assert_msg(count(prefix) >= times, "anomalyd exited (%d) without %s; stderr:\n%s",
                          p->code, prefix, e2e_tail(p->err_path, 2000));
        }
    }
}

START_TEST(ready_status_watchdog_stopping)
{
    e2e_setenv(&T, "WATCHDOG_USEC", "400000");   /* WATCHDOG=1 every 200 ms */
    e2e_proc d;
    const char *argv[] = {e2e_bin("anomalyd"), "--consumer", "n1", NULL};
    e2e_spawn(&T, &d, "anomalyd", argv);
    wait_for(&d, "READY=1", 1);
    int ready = find("READY=1", 0);
    wait_for(&d, "WATCHDOG=1", 3);   /* from the loop, again and again */
    int st = find("STATUS=running; ", ready);
    if (st < 0) {   /* the line sent with READY=1 may come just before it */
        st = find("STATUS=running; ", 0);
    }
    ck_assert_msg(st >= 0, "no STATUS=running line; first: %s", nmsgs ? msgs[0] : "(none)");
    ck_assert_msg(strstr(msgs[st], " entries/s; "), "STATUS without a rate: %s", msgs[st]);
    ck_assert_int_eq(count("STOPPING=1"), 0);

    kill(d.pid, SIGTERM);
    wait_for(&d, "STOPPING=1", 1);
    e2e_wait(&T, &d, 60000);
    E2E_EXPECT_EXIT0(&d);
    receive(0);
    ck_assert_int_eq(count("READY=1"), 1);
    ck_assert_int_eq(count("STOPPING=1"), 1);
    ck_assert_int_gt(find("STOPPING=1", 0), ready);
    /* every message is one of the protocol's assignments */
    for (int i = 0; i < nmsgs; i++)
        ck_assert_msg(!strcmp(msgs[i], "READY=1") || !strcmp(msgs[i], "STOPPING=1") ||
                          !strcmp(msgs[i], "WATCHDOG=1") || !strncmp(msgs[i], "STATUS=", 7),
                      "unexpected message '%s'", msgs[i]);
    ck_assert_msg(find("STATUS=stopping", ready) >= 0, "no STATUS=stopping line");
}
END_TEST

START_TEST(no_watchdog_without_watchdog_usec)
{
    e2e_proc d;
    const char *argv[] = {e2e_bin("anomalyd"), "--consumer", "n2", "--exit-when-idle", "500",
                          NULL};
    e2e_spawn(&T, &d, "anomalyd", argv);
    wait_for(&d, "STOPPING=1", 1);
    e2e_wait(&T, &d, 60000);
    E2E_EXPECT_EXIT0(&d);
    receive(0);
    ck_assert_int_eq(count("READY=1"), 1);
    ck_assert_int_eq(count("STOPPING=1"), 1);
    ck_assert_int_eq(count("WATCHDOG=1"), 0);
    ck_assert_int_lt(find("READY=1", 0), find("STOPPING=1", 0));
}
END_TEST

static Suite *notify_suite(void)
{
    Suite *s = suite_create("sd_notify");
    TCase *tc = tcase_create("protocol");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, ready_status_watchdog_stopping);
    tcase_add_test(tc, no_watchdog_without_watchdog_usec);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(notify_suite(), CK_NORMAL);
}
