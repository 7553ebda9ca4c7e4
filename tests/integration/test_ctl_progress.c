/* test_ctl_progress.c: progress on long operator commands, through the real
 * programs: `anomalyctl replay` draws its progress line only when asked
 * (--progress always, or stderr on a terminal) and is quiet when piped;
 * `anomalyctl status --watch` refreshes with rates and a state. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;

static void setup(void) { e2e_init(&T, "prog"); }
static void teardown(void) { e2e_fini(&T); }

#define JUMPSUP "likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"

START_TEST(replay_progress_only_when_asked)
{
    const char *csv = e2e_data(JUMPSUP);
    e2e_proc p;
    /* piped (the test's files are not terminals): quiet */
    e2e_run(&T, &p, "replay (piped)", 120000, e2e_bin("anomalyctl"), "replay", "--csv", csv,
            "--metric", "e2e.prog1", "--uid", e2e_uid(&T, "p1"), "--batch-size", "1440",
            "--live-after", "2880", NULL);
    E2E_EXPECT_EXIT0(&p);
    size_t len = 0;
    char *err = e2e_slurp(p.err_path, &len);
    ck_assert_msg(len == 0, "replay wrote to a pipe: %s", err);
    free(err);

    /* forced: a "\r"-redrawn line ending with the totals and a newline */
    e2e_run(&T, &p, "replay --progress always", 120000, e2e_bin("anomalyctl"), "replay",
            "--csv", csv, "--metric", "e2e.prog2", "--uid", e2e_uid(&T, "p2"), "--batch-size",
            "1440", "--live-after", "2880", "--progress", "always", NULL);
    E2E_EXPECT_EXIT0(&p);
    err = e2e_slurp(p.err_path, &len);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(err[0] == '\r' && err[len - 1] == '\n', "progress: %s", err);
    const char *last = strrchr(err, '\r');
    ck_assert_msg(!strncmp(last, "\rreplay: rows 4032/4032 (100.0%), 1155 entries, ", 48),
                  "last progress line: %s", last);
    ck_assert_ptr_nonnull(strstr(last, " entries/s, ETA 0:00:00"));
    free(err);
    char *out = e2e_slurp(p.out_path, NULL);
    ck_assert_msg(out && strstr(out, "rows=4032 entries=1155"), "stdout: %s", out);
    free(out);

    /* a bad value is a usage error */
    e2e_run(&T, &p, "replay --progress sometimes", 30000, e2e_bin("anomalyctl"), "replay",
            "--csv", csv, "--metric", "x", "--progress", "sometimes", NULL);
    ck_assert_int_eq(p.code, 2);
}
END_TEST

START_TEST(status_watch_refreshes_with_rates)
{
    e2e_replay(&T, e2e_data(JUMPSUP), "e2e.prog3", e2e_uid(&T, "p3"), 1440, 2880, 4032, 1155);
    e2e_proc p;
    /* JSON lines: one object per refresh; from the second on, rates */
    e2e_run(&T, &p, "status --watch", 60000, e2e_bin("anomalyctl"), "status", "--json",
            "--watch", "0.2", "--count", "3", NULL);
    E2E_EXPECT_EXIT0(&p);
    char *out = e2e_slurp(p.out_path, NULL);
    ck_assert_ptr_nonnull(out);
    int lines = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_t *j = e2e_parse(l, "status line");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "input"), "length")),
                         1155);
        json_t *r = json_object_get(j, "rates");
        if (lines == 0) {
            ck_assert_msg(r == NULL, "rates in the first sample: %s", l);
        } else {
            ck_assert_msg(json_is_object(r), "no rates: %s", l);
            /* nobody consumes: no group yet, nothing added meanwhile */
            ck_assert(json_real_value(json_object_get(r, "added_per_s")) == 0.0);
            ck_assert(json_real_value(json_object_get(r, "processed_per_s")) == 0.0);
            ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "no group");
        }
        json_decref(j);
        lines++;
    }
    ck_assert_int_eq(lines, 3);
    free(out);

    /* the group exists with a lag and nothing processes it: stalled */
    freeReplyObject(e2e_redis_cmd(&T, "XGROUP CREATE %s %s 0", T.input, E2E_GROUP));
    e2e_run(&T, &p, "status --watch (table)", 60000, e2e_bin("anomalyctl"), "status", "--watch",
            "0.2", "--count", "2", NULL);
    E2E_EXPECT_EXIT0(&p);
    out = e2e_slurp(p.out_path, NULL);
    ck_assert_msg(out && strstr(out, "state stalled"), "status --watch:\n%s", out);
    /* piped: refreshes separated by a blank line, no screen control */
    ck_assert_ptr_null(strchr(out, '\033'));
    ck_assert_ptr_nonnull(strstr(out, "\n\ninput "));
    free(out);

    e2e_run(&T, &p, "status --watch bad", 30000, e2e_bin("anomalyctl"), "status", "--watch",
            "0.01", NULL);
    ck_assert_int_eq(p.code, 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ctl_progress");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, replay_progress_only_when_asked);
    tcase_add_test(tc, status_watch_refreshes_with_rates);
    suite_add_tcase(s, tc);
    return an_check_run(s, CK_NORMAL);
}
