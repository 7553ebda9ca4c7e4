/* Unit test of the key builders of the Redis layer (an_scripts.h): the
 * params-cache hash of a metric, the attempts hash, the health hash. No
 * servers. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "an_scripts.h"
#include "check_main.h"

START_TEST(params_key_is_prefix_and_uid_at_any_length)
{
    char *k = an_params_key("htm:params:", "0123abcd");
    ck_assert_str_eq(k, "htm:params:0123abcd");
    free(k);
    k = an_params_key("", "u");
    ck_assert_str_eq(k, "u");
    free(k);
    /* no fixed buffer: a key far past 512 bytes is whole */
    char prefix[700], uid[400];
    memset(prefix, 'p', sizeof prefix - 1);
    prefix[sizeof prefix - 1] = '\0';
    memset(uid, 'u', sizeof uid - 1);
    uid[sizeof uid - 1] = '\0';
    k = an_params_key(prefix, uid);
    ck_assert_uint_eq(strlen(k), sizeof prefix - 1 + sizeof uid - 1);
    ck_assert_int_eq(strncmp(k, prefix, strlen(prefix)), 0);
    ck_assert_str_eq(k + strlen(prefix), uid);
    free(k);
}
END_TEST

START_TEST(attempts_and_health_keys)
{
    char buf[64];
    ck_assert_str_eq(an_attempts_key("htm:results", buf, sizeof buf), "htm:results:attempts");
    ck_assert_str_eq(an_health_key("htm:results", "c1", buf, sizeof buf),
                     "htm:results:health:c1");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redis_keys");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, params_key_is_prefix_and_uid_at_any_length);
    tcase_add_test(tc, attempts_and_health_keys);
    suite_add_tcase(s, tc);
    return an_check_run(s, CK_NORMAL);
}
