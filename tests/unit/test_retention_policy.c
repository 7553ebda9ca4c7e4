/* test_retention.c: the pure parts of the retention policy (an_retention.h):
 * stream id times and the "group pins the stream" rule. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "an_retention.h"
#include "check_main.h"

START_TEST(id_ms_parses_ids)
{
    ck_assert_int_eq(an_id_ms("1700000000123-0"), 1700000000123LL);
    ck_assert_int_eq(an_id_ms("1700000000123-18446744073709551615"), 1700000000123LL);
    ck_assert_int_eq(an_id_ms("0-1"), 0);
    ck_assert_int_eq(an_id_ms("42"), 42);
    ck_assert_int_eq(an_id_ms("9223372036854775807-0"), INT64_MAX);
    /* past int64 (Redis allows ms up to 2^64-1), malformed, empty */
    ck_assert_int_eq(an_id_ms("9223372036854775808-0"), -1);
    ck_assert_int_eq(an_id_ms("18446744073709551615-0"), -1);
    ck_assert_int_eq(an_id_ms("99999999999999999999999-0"), -1);
    ck_assert_int_eq(an_id_ms("-5-0"), -1);
    ck_assert_int_eq(an_id_ms("12x-0"), -1);
    ck_assert_int_eq(an_id_ms(""), -1);
    ck_assert_int_eq(an_id_ms("+"), -1);
    ck_assert_int_eq(an_id_ms(NULL), -1);
}
END_TEST

/* A group whose oldest kept entry is held ("" = it keeps none). */
static an_trim_group G(const char *held)
{
    an_trim_group g;
    memset(&g, 0, sizeof g);
    g.name = (char *)"g";
    strncpy(g.needed, held[0] ? held : "99999999-0", sizeof g.needed - 1);
    strncpy(g.held, held, sizeof g.held - 1);
    g.holds = held[0] != '\0';
    return g;
}

/* A group pins when the oldest entry it keeps is older than retention +
 * pin_warn: at the bound it does not, one ms past it does. */
START_TEST(pins_at_and_past_the_bound)
{
    an_trim_result t;
    memset(&t, 0, sizeof t);
    t.now_ms = 10000000;
    const int64_t retention = 60000, warn = 3600000;
    int64_t age = 0;

    an_trim_group at = G("6340000-5");   /* age = 3,660,000 = retention + warn */
    ck_assert(!an_retention_pins(&t, &at, retention, warn, &age));
    ck_assert_int_eq(age, retention + warn);

    an_trim_group past = G("6339999-0");
    ck_assert(an_retention_pins(&t, &past, retention, warn, &age));
    ck_assert_int_eq(age, retention + warn + 1);

    /* nothing left to process: it keeps nothing back */
    an_trim_group done = G("");
    ck_assert(!an_retention_pins(&t, &done, retention, warn, &age));
    ck_assert_int_eq(age, -1);

    /* a group that never read anything needs "0-1", but what it keeps is the
     * stream's first entry: its age counts, not the id's (time 0) */
    an_trim_group fresh = G("9990000-0");
    strcpy(fresh.needed, "0-1");
    ck_assert(!an_retention_pins(&t, &fresh, retention, warn, &age));
    ck_assert_int_eq(age, 10000);

    /* an id from the future (clock skew between writers) never pins */
    an_trim_group future = G("10000500-0");
    ck_assert(!an_retention_pins(&t, &future, 0, 1, &age));
    ck_assert_int_lt(age, 0);

    /* an id without a time cannot be judged: not named */
    an_trim_group bad = G("x");
    ck_assert(!an_retention_pins(&t, &bad, 0, 1, &age));
    ck_assert_int_eq(age, -1);
}
END_TEST

static Suite *retention_suite(void)
{
    Suite *s = suite_create("retention");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, id_ms_parses_ids);
    tcase_add_test(tc, pins_at_and_past_the_bound);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(retention_suite(), CK_NORMAL);
}
