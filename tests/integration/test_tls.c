/* test_tls.c: Redis and PostgreSQL over TLS, the way docs/operations.md
 * tells operators to do it with Debian 12's hiredis (0.14, no TLS):
 *   - `ops/stack.sh up --tls` gives the stack's Redis a tls-port and its
 *     PostgreSQL ssl=on, with a self-signed CA and a certificate for
 *     localhost / 127.0.0.1;
 *   - a client-side stunnel (Debian stunnel4) verifies the Redis server's
 *     certificate against that CA and offers a plain port on 127.0.0.1;
 *   - the DSN uses sslmode=verify-full with the CA.
 * replay_through_tls runs anomalyctl replay and anomalyd through both;
 * wrong_ca_is_refused shows that the verification is real: with another CA,
 * stunnel and libpq refuse the servers. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <limits.h>
#include <unistd.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;
static char tls_ca[1024], pg_tls_dsn[2048];
static int redis_tls_port;

/* Full path of a program found on PATH (posix_spawn does not search). */
static const char *prog(const char *name)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(b, 1024, "%s/%s", d, name);
        if (access(b, X_OK) == 0)
            return b;
    }
    ck_abort_msg("%s not found on PATH (ops/install-deps.sh installs it)", name);
    return NULL;
}

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* The value of `export NAME=VALUE` (quotes removed) in text, or "". */
static void env_value(const char *text, const char *name, char *out, size_t len)
{
    char key[128];
    snprintf(key, sizeof key, "export %s=", name);
    const char *p = strstr(text, key);
    out[0] = '\0';
    if (!p)
        return;
    p += strlen(key);
    if (*p == '\'')
        p++;
    size_t n = strcspn(p, "'\n");
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), p);
}

static void setup(void)
{
    e2e_init(&T, "tls");
    /* TLS on (restarts a server that runs without it; idempotent after) */
    e2e_proc p;
    e2e_run(&T, &p, "ops/stack.sh up --tls", 180000, e2e_src("ops/stack.sh"), "up", "--tls",
            NULL);
    E2E_EXPECT_EXIT0(&p);
    e2e_reconnect(&T, 60000);
    e2e_run(&T, &p, "ops/stack.sh env", 30000, e2e_src("ops/stack.sh"), "env", NULL);
    E2E_EXPECT_EXIT0(&p);
    char *env = e2e_slurp(p.out_path, NULL);
    ck_assert_ptr_nonnull(env);
    char port[32];
    env_value(env, "ANOMALYD_STACK_TLS_CA", tls_ca, sizeof tls_ca);
    env_value(env, "ANOMALYD_STACK_REDIS_TLS_PORT", port, sizeof port);
    env_value(env, "ANOMALYD_STACK_PG_TLS_DSN", pg_tls_dsn, sizeof pg_tls_dsn);
    free(env);
    redis_tls_port = atoi(port);
    ck_assert_msg(tls_ca[0] && redis_tls_port > 0 && strstr(pg_tls_dsn, "sslmode=verify-full"),
                  "ops/stack.sh env after up --tls lacks the TLS lines");
}

static void teardown(void) { e2e_fini(&T); }

/* Starts stunnel as a client: 127.0.0.1:<returned port> -> the stack's Redis
 * tls-port, verifying its certificate against ca (and the name localhost). */
static int start_stunnel(e2e_proc *p, const char *ca, const char *tag, char *log, size_t loglen)
{
    int port = free_port();
    char conf[PATH_MAX + 64];
    snprintf(conf, sizeof conf, "%s/stunnel-%s.conf", T.tmpdir, tag);
    snprintf(log, loglen, "%s/stunnel-%s.log", T.tmpdir, tag);
    FILE *f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "foreground = yes\npid =\noutput = %s\ndebug = info\n"
            "[redis]\nclient = yes\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\n"
            "CAfile = %s\nverifyChain = yes\ncheckHost = localhost\n",
            log, port, redis_tls_port, ca);
    fclose(f);
    const char *argv[] = {prog("stunnel4"), conf, NULL};
    e2e_spawn(&T, p, "stunnel", argv);
    return port;
}

/* PING through the tunnel until it answers (true) or fails for good. */
static bool ping_via(int port, int timeout_ms, char *why, size_t len)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    double deadline = e2e_now() + timeout_ms / 1000.0;
    do {
        an_redis *r = NULL;
        int rc = an_redis_connect(url, NULL, &r, why, len);
        if (rc == 0) {
            rc = an_redis_ping(r);
            if (rc)
                snprintf(why, len, "%s", an_redis_errstr(r));
        }
        an_redis_free(r);
        if (rc == 0)
            return true;
        e2e_sleep_ms(100);
    } while (e2e_now() < deadline);
    return false;
}

START_TEST(replay_through_tls)
{
    e2e_proc st;
    char log[PATH_MAX + 64], why[512];
    int port = start_stunnel(&st, tls_ca, "good", log, sizeof log);
    ck_assert_msg(ping_via(port, 15000, why, sizeof why), "no PING through stunnel: %s\n%s", why,
                  e2e_tail(log, 2000));

    /* the programs see a plain Redis URL (the tunnel) and a verify-full DSN */
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    e2e_setenv(&T, "ANOMALYD_REDIS_URL", url);
    e2e_setenv(&T, "ANOMALYD_PG_DSN", pg_tls_dsn);
    char csv[PATH_MAX + 64];
    snprintf(csv, sizeof csv, "%s/short.csv", T.tmpdir);
    e2e_csv_head(e2e_data("likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"), csv, 400);
    const char *uid = e2e_uid(&T, "tls");
    e2e_replay(&T, csv, "e2e.tls", uid, 100, 200, 400, 1 + 2 + 200);
    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    ck_assert_int_eq(e2e_scored_rowid(&T, uid), 400);
    ck_assert_int_eq(e2e_xlen(&T, T.output), 1 + 2 + 200);
    ck_assert_int_eq(e2e_pending(&T), 0);

    /* both programs went through the tunnel, whose check of the server passed */
    char *text = e2e_slurp(log, NULL);
    ck_assert_ptr_nonnull(text);
    int accepted = 0;
    for (const char *p = text; (p = strstr(p, "accepted connection")); p++)
        accepted++;
    ck_assert_msg(accepted >= 2, "stunnel accepted %d connections:\n%s", accepted,
                  e2e_tail(log, 2000));
    ck_assert_msg(strstr(text, "Certificate accepted") || strstr(text, "verification succeeded"),
                  "stunnel did not log a verified certificate:\n%s", e2e_tail(log, 2000));
    free(text);

    /* and the DSN's connection is TLS (verify-full would refuse anything else) */
    e2e_proc q;
    e2e_run(&T, &q, "psql ssl", 30000, prog("psql"), "-XtAc",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", pg_tls_dsn, NULL);
    E2E_EXPECT_EXIT0(&q);
    char *out = e2e_slurp(q.out_path, NULL);
    ck_assert_msg(out && !strcmp(out, "t\n"), "pg_stat_ssl.ssl: %s", out);
    free(out);
}
END_TEST

START_TEST(wrong_ca_is_refused)
{
    /* another CA, which did not sign the stack's certificate */
    char key[PATH_MAX + 64], crt[PATH_MAX + 64];
    snprintf(key, sizeof key, "%s/other.key", T.tmpdir);
    snprintf(crt, sizeof crt, "%s/other.crt", T.tmpdir);
    e2e_proc o;
    e2e_run(&T, &o, "openssl req", 60000, prog("openssl"), "req", "-x509", "-newkey", "rsa:2048",
            "-nodes", "-days", "1", "-subj", "/CN=other CA", "-keyout", key, "-out", crt, NULL);
    E2E_EXPECT_EXIT0(&o);

    e2e_proc st;
    char log[PATH_MAX + 64], why[512];
    int port = start_stunnel(&st, crt, "bad", log, sizeof log);
    /* stunnel is up when its log says so; then every PING fails */
    double deadline = e2e_now() + 15;
    char *text = NULL;
    while (e2e_now() < deadline) {
        free(text);
        text = e2e_slurp(log, NULL);
        if (text && strstr(text, "Configuration successful"))
            break;
        e2e_sleep_ms(100);
    }
    ck_assert_msg(text && strstr(text, "Configuration successful"), "stunnel did not start:\n%s",
                  e2e_tail(log, 2000));
    free(text);
    ck_assert_msg(!ping_via(port, 1000, why, sizeof why), "PING went through with the wrong CA");
    deadline = e2e_now() + 15;
    bool refused = false;
    while (!refused && e2e_now() < deadline) {
        text = e2e_slurp(log, NULL);
        refused = text && (strstr(text, "certificate verify failed") ||
                           strstr(text, "Certificate check failed") ||
                           strstr(text, "CERT: Verification error"));
        free(text);
        if (!refused)
            e2e_sleep_ms(100);
    }
    ck_assert_msg(refused, "stunnel log does not show the refused certificate:\n%s",
                  e2e_tail(log, 2000));

    /* libpq with verify-full and the wrong CA refuses the server */
    char dsn[sizeof pg_tls_dsn + PATH_MAX + 64];
    const char *p = strstr(pg_tls_dsn, "sslrootcert=");
    ck_assert_ptr_nonnull(p);
    snprintf(dsn, sizeof dsn, "%.*ssslrootcert=%s", (int)(p - pg_tls_dsn), pg_tls_dsn, crt);
    e2e_proc q;
    e2e_run(&T, &q, "psql wrong CA", 30000, prog("psql"), "-XtAc", "SELECT 1", dsn, NULL);
    ck_assert_int_ne(q.code, 0);
    char *err = e2e_slurp(q.err_path, NULL);
    ck_assert_msg(err && strstr(err, "certificate verify failed"), "psql: %s", err);
    free(err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, replay_through_tls);
    tcase_add_test(tc, wrong_ca_is_refused);
    suite_add_tcase(s, tc);
    return an_check_run(s, CK_NORMAL);
}
