/* test_exec.c: an_exec_retry on a virtual clock: the input reaches the
 * command, a failing command is retried with doubling delays exactly
 * retries times, a command over its time limit is killed. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#include "an_error.h"
#include "an_exec.h"
#include "check_main.h"

typedef struct vclock {
    int64_t now;
    int sleeps[64];
    int nsleeps;
} vclock;

static int64_t v_now(void *ud) { return ((vclock *)ud)->now; }
static void v_sleep(void *ud, int ms)
{
    vclock *c = ud;
    if (ms >= 100 && c->nsleeps < 64) /* the backoff delays, not the 5 ms polls */
        c->sleeps[c->nsleeps++] = ms;
    c->now += ms;
}

static char tmp[128];

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/an_test_exec_%d", (int)getpid());
    signal(SIGPIPE, SIG_IGN);
}

static void teardown(void)
{
    unlink(tmp);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

START_TEST(input_reaches_command)
{
    vclock vc = {0};
    an_clock clk = {.now_ms = v_now, .sleep_ms = v_sleep, .ud = &vc};
    an_exec_opts o = {3, 1000, 0, &clk};
    char cmd[1024], err[128];
    snprintf(cmd, sizeof cmd, "cat > %s", tmp);
    int attempts = 0;
    ck_assert_int_eq(an_exec_retry(cmd, "{\"a\":1}\n", 8, &o, &attempts, err, sizeof err), 0);
    ck_assert_int_eq(attempts, 1);
    ck_assert_str_eq(slurp(tmp), "{\"a\":1}\n");
    ck_assert_int_eq(vc.nsleeps, 0);
    /* a command that does not read its input is not a failure */
    ck_assert_int_eq(an_exec_retry("true", "x", 1, &o, &attempts, err, sizeof err), 0);
}
END_TEST

START_TEST(retries_with_backoff)
{
    vclock vc = {0};
    an_clock clk = {.now_ms = v_now, .sleep_ms = v_sleep, .ud = &vc};
    an_exec_opts o = {3, 1000, 0, &clk};
    char cmd[1024], err[128];
    /* counts its runs in the file, fails each time */
    snprintf(cmd, sizeof cmd, "echo run >> %s; exit 3", tmp);
    int attempts = 0;
    ck_assert_int_eq(an_exec_retry(cmd, "x", 1, &o, &attempts, err, sizeof err), AN_EIO);
    ck_assert_int_eq(attempts, 4);
    ck_assert_str_eq(err, "exit status 3");
    ck_assert_str_eq(slurp(tmp), "run\nrun\nrun\nrun\n");
    ck_assert_int_eq(vc.nsleeps, 3);
    ck_assert_int_eq(vc.sleeps[0], 1000);
    ck_assert_int_eq(vc.sleeps[1], 2000);
    ck_assert_int_eq(vc.sleeps[2], 4000);
    /* retries 0: one attempt */
    unlink(tmp);
    o.retries = 0;
    ck_assert_int_eq(an_exec_retry(cmd, "x", 1, &o, &attempts, err, sizeof err), AN_EIO);
    ck_assert_int_eq(attempts, 1);
    ck_assert_str_eq(slurp(tmp), "run\n");
    /* succeeds on the third attempt */
    unlink(tmp);
    o.retries = 5;
    snprintf(cmd, sizeof cmd, "echo run >> %s; test $(wc -l < %s) -ge 3", tmp, tmp);
    ck_assert_int_eq(an_exec_retry(cmd, "x", 1, &o, &attempts, err, sizeof err), 0);
    ck_assert_int_eq(attempts, 3);
}
END_TEST

START_TEST(timeout_kills)
{
    vclock vc = {0};
    an_clock clk = {.now_ms = v_now, .sleep_ms = v_sleep, .ud = &vc};
    an_exec_opts o = {1, 100, 500, &clk};
    char err[128];
    int attempts = 0;
    /* sleeps far longer than the (virtual) limit: killed twice */
    ck_assert_int_eq(an_exec_retry("exec sleep 30", "", 0, &o, &attempts, err, sizeof err),
                     AN_EIO);
    ck_assert_int_eq(attempts, 2);
    ck_assert_str_eq(err, "timed out after 500 ms");
    /* no limit (a virtual limit would race the real command) */
    o.timeout_ms = 0;
    ck_assert_int_eq(an_exec_retry("kill -9 $$", "", 0, &o, &attempts, err, sizeof err), AN_EIO);
    ck_assert_str_eq(err, "killed by signal 9");
}
END_TEST

static Suite *exec_suite(void)
{
    Suite *s = suite_create("exec");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, input_reaches_command);
    tcase_add_test(tc, retries_with_backoff);
    tcase_add_test(tc, timeout_kills);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(exec_suite(), CK_NORMAL);
}
