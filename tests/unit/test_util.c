/* Unit tests of the shared helpers (an_util.h): error text, array growth
 * and its overflow checks, the backoff rule. No servers. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "an_util.h"
#include "check_main.h"

START_TEST(seterr_truncates_and_tolerates_null)
{
    char buf[8];
    an_seterr(buf, sizeof buf, "%s-%d", "abcdef", 42);
    ck_assert_str_eq(buf, "abcdef-");
    an_seterr(NULL, 10, "x");  /* no buffer: nothing happens */
    memset(buf, 'z', sizeof buf);
    an_seterr(buf, 0, "x");    /* zero length: untouched */
    ck_assert_int_eq(buf[0], 'z');
}
END_TEST

START_TEST(grow_doubles_and_refuses_overflow)
{
    int *a = NULL;
    size_t cap = 0;
    ck_assert(an_grow((void **)&a, &cap, 1, sizeof *a));
    ck_assert_uint_eq(cap, 16);
    ck_assert(an_grow((void **)&a, &cap, 16, sizeof *a));
    ck_assert_uint_eq(cap, 16);  /* fits: unchanged */
    ck_assert(an_grow((void **)&a, &cap, 17, sizeof *a));
    ck_assert_uint_eq(cap, 32);
    a[31] = 7;
    int *before = a;
    size_t cap_before = cap;
    /* need * elem overflows size_t: refused, array untouched */
    ck_assert(!an_grow((void **)&a, &cap, SIZE_MAX / 2, sizeof *a));
    ck_assert(!an_grow((void **)&a, &cap, SIZE_MAX, 1));
    ck_assert_ptr_eq(a, before);
    ck_assert_uint_eq(cap, cap_before);
    ck_assert_int_eq(a[31], 7);
    free(a);
}
END_TEST

START_TEST(backoff_doubles_to_cap)
{
    ck_assert_int_eq(an_backoff_next(100, 10000), 200);
    ck_assert_int_eq(an_backoff_next(6000, 10000), 10000);
    ck_assert_int_eq(an_backoff_next(10000, 10000), 10000);
    ck_assert_int_eq(an_backoff_next(0, 10000), 1);
    ck_assert_int_eq(an_backoff_next(1 << 30, 1 << 30), 1 << 30); /* no overflow */
}
END_TEST

START_TEST(strndup_copies_n_bytes)
{
    char *p = an_strndup("ab\0cd", 5);
    ck_assert_ptr_nonnull(p);
    ck_assert_mem_eq(p, "ab\0cd", 5);
    ck_assert_int_eq(p[5], '\0');
    free(p);
    p = an_strndup("xyz", 0);
    ck_assert_str_eq(p, "");
    free(p);
    ck_assert_ptr_null(an_strndup("x", SIZE_MAX)); /* n + 1 would wrap */
}
END_TEST

START_TEST(grow_parallel_keeps_arrays_in_step)
{
    int *a = NULL;
    double *d = NULL;
    size_t cap = 0;
    void **const arrays[] = {(void **)&a, (void **)&d};
    const size_t elem[] = {sizeof *a, sizeof *d};
    ck_assert(an_grow_parallel(arrays, elem, 2, &cap, 40));
    ck_assert_uint_eq(cap, 64);
    a[39] = 1;
    d[39] = 2.5;
    ck_assert(an_grow_parallel(arrays, elem, 2, &cap, 64)); /* fits */
    ck_assert_uint_eq(cap, 64);
    ck_assert(an_grow_parallel(arrays, elem, 2, &cap, 65));
    ck_assert_uint_eq(cap, 128);
    ck_assert_int_eq(a[39], 1);
    ck_assert(d[39] == 2.5);
    /* overflow: refused, capacity unchanged, arrays still valid */
    ck_assert(!an_grow_parallel(arrays, elem, 2, &cap, SIZE_MAX / 4));
    ck_assert_uint_eq(cap, 128);
    ck_assert_int_eq(a[39], 1);
    free(a);
    free(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, seterr_truncates_and_tolerates_null);
    tcase_add_test(tc, grow_doubles_and_refuses_overflow);
    tcase_add_test(tc, backoff_doubles_to_cap);
    tcase_add_test(tc, strndup_copies_n_bytes);
    tcase_add_test(tc, grow_parallel_keeps_arrays_in_step);
    suite_add_tcase(s, tc);
    return an_check_run(s, CK_NORMAL);
}
