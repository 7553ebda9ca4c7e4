/* test_progress.c: the progress line (an_progress.h): its text, and when it
 * is drawn, on a virtual clock. */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_progress.h"
#include "check_main.h"

START_TEST(format_text)
{
    char b[256];
    /* nothing done yet: no rate, no ETA */
    an_progress_format(b, sizeof b, "replay", 0, 4032, 1, 0);
    ck_assert_str_eq(b, "replay: rows 0/4032 (0.0%), 1 entries");
    /* 1440 of 4032 rows, 3 entries in 2 s: 1.5 entries/s; 2592 rows left at
     * 720 rows/s = 3.6 s -> 0:00:04 */
    an_progress_format(b, sizeof b, "replay", 1440, 4032, 3, 2000);
    ck_assert_str_eq(b, "replay: rows 1440/4032 (35.7%), 3 entries, 2 entries/s, ETA 0:00:04");
    /* hours, minutes, seconds: 1 row in 1 s, 3723 left */
    an_progress_format(b, sizeof b, "x", 1, 3724, 1, 1000);
    ck_assert_str_eq(b, "x: rows 1/3724 (0.0%), 1 entries, 1 entries/s, ETA 1:02:03");
    /* done (1155 entries in 0.5 s) */
    an_progress_format(b, sizeof b, "replay", 4032, 4032, 1155, 500);
    ck_assert_str_eq(b, "replay: rows 4032/4032 (100.0%), 1155 entries, 2310 entries/s, ETA 0:00:00");
    /* unknown total: no percentage, no ETA */
    an_progress_format(b, sizeof b, "replay", 10, 0, 10, 1000);
    ck_assert_str_eq(b, "replay: rows 10, 10 entries, 10 entries/s");
    /* a short buffer truncates, the full length is returned */
    char s[8];
    int n = an_progress_format(s, sizeof s, "replay", 10, 0, 10, 1000);
    ck_assert_int_eq(n, (int)strlen("replay: rows 10, 10 entries, 10 entries/s"));
    ck_assert_str_eq(s, "replay:");
}
END_TEST

static int64_t vnow;
static int64_t vclock_now(void *ud)
{
    (void)ud;
    return vnow;
}

START_TEST(drawn_every_interval_and_at_the_end)
{
    an_clock c = {.now_ms = vclock_now};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    an_progress p;
    vnow = 1000;
    an_progress_start(&p, f, true, "replay", 100, &c);
    vnow += AN_PROGRESS_EVERY_MS - 1;
    an_progress_update(&p, 10, 10);
    fflush(f);
    ck_assert_uint_eq(len, 0);   /* too early */
    vnow += 1;
    an_progress_update(&p, 50, 50);
    fflush(f);
    ck_assert_str_eq(text, "\rreplay: rows 50/100 (50.0%), 50 entries, 200 entries/s, ETA 0:00:00");
    vnow += 10;
    an_progress_update(&p, 60, 60);   /* again too early: unchanged */
    fflush(f);
    ck_assert_str_eq(text, "\rreplay: rows 50/100 (50.0%), 50 entries, 200 entries/s, ETA 0:00:00");
    an_progress_finish(&p, 100, 100);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "\rreplay: rows 100/100 (100.0%), 100 entries, 385 entries/s, ETA 0:00:00"));
    ck_assert_int_eq(text[strlen(text) - 1], '\n');
    free(text);

    /* off: nothing at all */
    text = NULL;
    f = open_memstream(&text, &len);
    an_progress_start(&p, f, false, "replay", 100, &c);
    vnow += 10000;
    an_progress_update(&p, 50, 50);
    an_progress_finish(&p, 100, 100);
    fclose(f);
    ck_assert_uint_eq(len, 0);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("progress");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, format_text);
    tcase_add_test(tc, drawn_every_interval_and_at_the_end);
    suite_add_tcase(s, tc);
    return an_check_run(s, CK_NORMAL);
}
