/* Unit tests of the error classification (an_fault.h), the Redis URL
 * parser and the redaction of URLs and DSNs (an_redis_url.h,
 * an_config_mask_secret): no servers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_config.h"
#include "an_error.h"
#include "an_fault.h"
#include "an_redis_url.h"
#include "check_main.h"

START_TEST(pg_classes)
{
    struct {
        const char *st;
        an_fault_class c;
    } t[] = {
        {"08006", AN_FAULT_TRANSIENT}, {"08P01", AN_FAULT_TRANSIENT},
        {"40001", AN_FAULT_TRANSIENT}, {"40P01", AN_FAULT_TRANSIENT},
        {"55P03", AN_FAULT_TRANSIENT}, {"57P01", AN_FAULT_TRANSIENT},
        {"57P03", AN_FAULT_TRANSIENT}, {"53300", AN_FAULT_TRANSIENT},
        {"53100", AN_FAULT_ENVIRONMENT}, {"53200", AN_FAULT_ENVIRONMENT},
        {"57014", AN_FAULT_ENVIRONMENT}, {"42501", AN_FAULT_ENVIRONMENT},
        {"25006", AN_FAULT_ENVIRONMENT}, {"3F000", AN_FAULT_ENVIRONMENT},
        {"42P01", AN_FAULT_ENVIRONMENT}, {"28P01", AN_FAULT_ENVIRONMENT},
        {"58030", AN_FAULT_ENVIRONMENT}, {"3D000", AN_FAULT_ENVIRONMENT},
        {"22001", AN_FAULT_DATA},        {"23505", AN_FAULT_DATA},
        {"22P02", AN_FAULT_DATA},        {"", AN_FAULT_DATA},
        {NULL, AN_FAULT_DATA},           {"0800", AN_FAULT_DATA},
        {"530000", AN_FAULT_DATA},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ck_assert_msg(an_fault_pg(t[i].st, false) == t[i].c, "%s: %s", t[i].st ? t[i].st : "NULL",
                      an_fault_class_name(an_fault_pg(t[i].st, false)));
    /* a lost connection is transient whatever the code */
    ck_assert_int_eq(an_fault_pg("42501", true), AN_FAULT_TRANSIENT);
    ck_assert_int_eq(an_fault_pg(NULL, true), AN_FAULT_TRANSIENT);
    /* every environment code has advice */
    ck_assert_ptr_nonnull(strstr(an_fault_pg_hint("53100"), "disk"));
    ck_assert_ptr_nonnull(strstr(an_fault_pg_hint("3F000"), "db init"));
    ck_assert_str_eq(an_fault_pg_hint("22001"), "");
}
END_TEST

START_TEST(redis_classes)
{
    struct {
        const char *e;
        an_fault_class c;
    } t[] = {
        {"LOADING Redis is loading the dataset in memory", AN_FAULT_TRANSIENT},
        {"BUSY Redis is busy running a script", AN_FAULT_TRANSIENT},
        {"TRYAGAIN", AN_FAULT_TRANSIENT},
        {"WRONGTYPE Operation against a key holding the wrong kind of value", AN_FAULT_ENVIRONMENT},
        {"NOPERM this user has no permissions", AN_FAULT_ENVIRONMENT},
        {"CROSSSLOT Keys in request don't hash to the same slot", AN_FAULT_ENVIRONMENT},
        {"MOVED 3999 127.0.0.1:6381", AN_FAULT_ENVIRONMENT},
        {"ASK 3999 127.0.0.1:6381", AN_FAULT_ENVIRONMENT},
        {"OOM command not allowed when used memory > 'maxmemory'", AN_FAULT_ENVIRONMENT},
        {"READONLY You can't write against a read only replica.", AN_FAULT_ENVIRONMENT},
        {"MISCONF Redis is configured to save RDB snapshots", AN_FAULT_ENVIRONMENT},
        {"ERR wrong number of arguments", AN_FAULT_DATA},
        {"BUSYGROUP Consumer Group name already exists", AN_FAULT_DATA},
        {"ASKING", AN_FAULT_DATA},   /* a code is a whole word */
        {"", AN_FAULT_DATA},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ck_assert_msg(an_fault_redis(t[i].e, strlen(t[i].e)) == t[i].c, "%s", t[i].e);
    ck_assert_ptr_nonnull(strstr(an_fault_redis_hint("WRONGTYPE x", 11), "another type"));
    ck_assert_str_eq(an_fault_redis_hint("ERR x", 5), "");
}
END_TEST

/* parse + redact: the password is decoded right and never shown */
static void check_url(const char *url, const char *host, int port, const char *path,
                      const char *user, const char *password, int db, const char *secret)
{
    an_redis_url u;
    char err[256] = "";
    int rc = an_redis_url_parse(url, &u, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: %s", url, err);
    if (host)
        ck_assert_str_eq(u.host, host);
    else
        ck_assert_ptr_null(u.host);
    ck_assert_int_eq(u.port, port);
    if (path)
        ck_assert_str_eq(u.path, path);
    else
        ck_assert_ptr_null(u.path);
    if (user)
        ck_assert_str_eq(u.user, user);
    else
        ck_assert_ptr_null(u.user);
    if (password)
        ck_assert_str_eq(u.password, password);
    else
        ck_assert_ptr_null(u.password);
    ck_assert_int_eq(u.db, db);
    an_redis_url_free(&u);
    char red[512];
    an_redis_url_redact(url, red, sizeof red);
    if (secret)
        ck_assert_msg(!strstr(red, secret), "%s -> %s", url, red);
    ck_assert_msg(!secret || strstr(red, "***"), "%s -> %s", url, red);
    an_config_mask_secret(url, red, sizeof red);
    if (secret)
        ck_assert_msg(!strstr(red, secret), "%s -> %s", url, red);
}

START_TEST(redis_url_parse_and_redact)
{
    check_url("redis://h:1/2", "h", 1, NULL, NULL, NULL, 2, NULL);
    check_url("redis://:p@ss@h", "h", 6379, NULL, NULL, "p@ss", 0, "p@ss");
    check_url("redis://:p@ss@h:7/3", "h", 7, NULL, NULL, "p@ss", 3, "ss@");
    check_url("redis://u:a/b?c#d@h:9/1", "h", 9, NULL, "u", "a/b?c#d", 1, "a/b?c#d");
    check_url("redis://:sp%20ace@h", "h", 6379, NULL, NULL, "sp ace", 0, "sp%20ace");
    check_url("redis://secretonly@h", "h", 6379, NULL, NULL, "secretonly", 0, "secretonly");
    check_url("redis://[::1]:6380/0", "::1", 6380, NULL, NULL, NULL, 0, NULL);
    check_url("unix:///run/redis.sock", NULL, 6379, "/run/redis.sock", NULL, NULL, 0, NULL);
    check_url("unix:///run/redis.sock?db=3&password=x%2Fy", NULL, 6379, "/run/redis.sock", NULL,
              "x/y", 3, "x%2Fy");
    check_url("unix://:pw/1@/run/r.sock", NULL, 6379, "/run/r.sock", NULL, "pw/1", 0, "pw/1");

    /* errors quote the redacted URL only */
    const char *bad[] = {"redis://:top/secret@h:notaport", "redis://:top?secret@h/xx",
                         "redis://:top#secret@[::1", "unix://:top%20secret@relative.sock",
                         "http://:top-secret@h", "unix:///s?password=top-secret&db=x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        an_redis_url u;
        char err[256] = "";
        ck_assert_int_eq(an_redis_url_parse(bad[i], &u, err, sizeof err), AN_ECONFIG);
        an_redis_url_free(&u);
        ck_assert_msg(err[0] && !strstr(err, "secret"), "%s -> %s", bad[i], err);
        char red[256];
        ck_assert_msg(!strstr(an_redis_url_redact(bad[i], red, sizeof red), "secret"), "%s", red);
    }
}
END_TEST

START_TEST(dsn_redact)
{
    char buf[512];
    const char *dsns[] = {"host=h password=top/sec?r#t dbname=d",
                          "host=h password='top sec\\'ret' dbname=d",
                          "postgresql://u:top%2Fsecret@h/d",
                          "postgresql://u@h/d?password=top%20secret"};
    for (size_t i = 0; i < sizeof dsns / sizeof dsns[0]; i++) {
        an_config_mask_secret(dsns[i], buf, sizeof buf);
        ck_assert_msg(!strstr(buf, "top") && !strstr(buf, "sec"), "%s -> %s", dsns[i], buf);
        ck_assert_msg(strstr(buf, "password=***"), "%s -> %s", dsns[i], buf);
    }
    /* a DSN libpq cannot parse: none of its tokens shown */
    an_config_mask_secret("host=h password='unterminated secret", buf, sizeof buf);
    ck_assert_ptr_null(strstr(buf, "secret"));
    ck_assert_ptr_null(strstr(buf, "host"));
}
END_TEST

static Suite *fault_suite(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, pg_classes);
    tcase_add_test(tc, redis_classes);
    tcase_add_test(tc, redis_url_parse_and_redact);
    tcase_add_test(tc, dsn_redact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(fault_suite(), CK_NORMAL);
}
