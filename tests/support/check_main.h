/*
 * check_main.h: the one main() body every Check test program shares.
 * Header-only (static inline) so that unit and integration tests include it
 * without a library of their own.
 */
#ifndef AN_CHECK_MAIN_H
#define AN_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

/* Runs every test of s (the runner takes s over and frees it) with the given
 * output mode (CK_NORMAL, CK_VERBOSE) and returns the process exit status:
 * EXIT_SUCCESS when none failed, EXIT_FAILURE otherwise. */
static inline int an_check_run(Suite *s, enum print_output mode)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, mode);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Adds test to s as a TCase of its own called name (so that
 * CK_RUN_CASE=<name> runs just that one), with the checked fixture
 * setup/teardown (NULL: none) and a timeout of timeout_s seconds. */
static inline void an_check_add_case(Suite *s, const char *name, const TTest *test,
                                     SFun setup, SFun teardown, double timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout_s);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

#endif
