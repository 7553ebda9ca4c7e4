/* Unit test of an_redis_options_from_config (an_redis.h): every program
 * connects with the [redis] section's timeouts and TCP liveness, each key
 * to its own option. No servers. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "an_config.h"
#include "an_redis.h"
#include "check_main.h"

START_TEST(each_key_lands_in_its_option)
{
    an_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.redis.connect_timeout_ms = 101;
    cfg.redis.timeout_ms = 102;
    cfg.redis.block_margin_ms = 103;
    cfg.redis.keepalive_idle_s = 104;
    cfg.redis.keepalive_interval_s = 105;
    cfg.redis.keepalive_count = 106;
    cfg.redis.tcp_user_timeout_ms = 107;
    an_redis_opts o = an_redis_options_from_config(&cfg);
    ck_assert_int_eq(o.connect_timeout_ms, 101);
    ck_assert_int_eq(o.command_timeout_ms, 102);
    ck_assert_int_eq(o.block_margin_ms, 103);
    ck_assert_int_eq(o.keepalive_idle_s, 104);
    ck_assert_int_eq(o.keepalive_interval_s, 105);
    ck_assert_int_eq(o.keepalive_count, 106);
    ck_assert_int_eq(o.tcp_user_timeout_ms, 107);
}
END_TEST

START_TEST(config_defaults_are_the_connection_defaults)
{
    an_config cfg;
    char err[256];
    unsetenv("ANOMALYD_REDIS_CONNECT_TIMEOUT_MS");
    unsetenv("ANOMALYD_REDIS_TIMEOUT_MS");
    unsetenv("ANOMALYD_REDIS_BLOCK_MARGIN_MS");
    unsetenv("ANOMALYD_REDIS_KEEPALIVE_IDLE_S");
    unsetenv("ANOMALYD_REDIS_KEEPALIVE_INTERVAL_S");
    unsetenv("ANOMALYD_REDIS_KEEPALIVE_COUNT");
    unsetenv("ANOMALYD_REDIS_TCP_USER_TIMEOUT_MS");
    ck_assert_msg(an_config_load(&cfg, NULL, err, sizeof err) == 0, "%s", err);
    an_redis_opts o = an_redis_options_from_config(&cfg);
    an_redis_opts d = an_redis_opts_default();
    ck_assert_int_eq(o.connect_timeout_ms, d.connect_timeout_ms);
    ck_assert_int_eq(o.command_timeout_ms, d.command_timeout_ms);
    ck_assert_int_eq(o.block_margin_ms, d.block_margin_ms);
    ck_assert_int_eq(o.keepalive_idle_s, d.keepalive_idle_s);
    ck_assert_int_eq(o.keepalive_interval_s, d.keepalive_interval_s);
    ck_assert_int_eq(o.keepalive_count, d.keepalive_count);
    ck_assert_int_eq(o.tcp_user_timeout_ms, d.tcp_user_timeout_ms);
    an_config_free(&cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redis_options");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, each_key_lands_in_its_option);
    tcase_add_test(tc, config_defaults_are_the_connection_defaults);
    suite_add_tcase(s, tc);
    return an_check_run(s, CK_NORMAL);
}
