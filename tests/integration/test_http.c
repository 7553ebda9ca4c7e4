/*
 * test_http.c: the metrics and health endpoint of a real anomalyd process
 * against the Redis and PostgreSQL of ops/stack.sh, scraped with curl.
 *
 *  1. scrape_replay_and_readiness: /livez and /readyz answer 200 once the
 *     service runs; /metrics passes `promtool check metrics` with no
 *     finding; after a replay (and one malformed entry) the counters,
 *     histograms and polled gauges hold exactly what was processed; every
 *     family is documented in docs/operations.md and every metric the
 *     example alert rules use exists; /readyz turns 503 ("postgres not
 *     connected") while PostgreSQL is stopped (ops/stack.sh stop-pg) and
 *     200 again after start-pg, /livez stays 200; SIGTERM exits 0.
 *  2. bad_listen_addresses: a listen value that does not parse, resolve or
 *     bind (port in use) stops start-up with exit 2 and a clear message.
 *  3. not_ready_without_schema: pointed (search_path) at a schema without
 *     anomalyd's tables, anomalyd waits: /readyz 503 naming the schema,
 *     /livez 200, state starting; SIGTERM exits 0.
 *
 * Waits are for conditions, with generous deadlines; nothing asserts an
 * elapsed time.
 */
#define _GNU_SOURCE
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;
static bool pg_stopped;

static void setup(void)
{
    pg_stopped = false;
    e2e_init(&T, "http");
}

static void teardown(void)
{
    if (pg_stopped) {   /* a failed check must not leave the stack without PostgreSQL */
        e2e_proc p;
        e2e_stack(&T, "start-pg", &p);
        e2e_reconnect(&T, 120000);
    }
    e2e_fini(&T);
}

#define JUMPSUP "likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"

/* ---- helpers ------------------------------------------------------------ */

/* Starts `anomalyd --consumer C` (runs until signalled) and returns the
 * port it logged for its endpoint. */
static int start_anomalyd(e2e_proc *d, const char *consumer)
{
    const char *argv[] = {e2e_bin("anomalyd"), "--consumer", consumer, NULL};
    /* keep the processed entries: the test checks the input stream's length
     * gauge, which a trim (every trim_interval_ms) would race with */
    e2e_setenv(&T, "ANOMALYD_STREAMS_INPUT_RETENTION", "3600000");
    e2e_spawn(&T, d, "anomalyd", argv);
    double deadline = e2e_now() + 60;
    const char *needle = "http: /metrics, /livez, /readyz on port ";
    while (e2e_now() < deadline) {
        char *log = e2e_slurp(d->err_path, NULL);
        char *at = log ? strstr(log, needle) : NULL;
        int port = at ? atoi(at + strlen(needle)) : 0;
        free(log);
        if (port > 0)
            return port;
        ck_assert_msg(!e2e_poll(&T, d), "anomalyd exited with %d before serving; stderr:\n%s",
                      d->code, e2e_tail(d->err_path, 3000));
        e2e_sleep_ms(50);
    }
    ck_abort_msg("anomalyd did not log its port; stderr:\n%s", e2e_tail(d->err_path, 3000));
    return 0;
}

/* GET (or another method) with curl; returns the status code, *body the
 * response (malloc'd) when body is non-NULL. */
static int http(int port, const char *method, const char *path, char **body)
{
    char url[128], out[PATH_MAX + 32];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    snprintf(out, sizeof out, "%s/curl-body", T.tmpdir);
    e2e_proc p;
    e2e_run(&T, &p, "curl", 30000, "/usr/bin/curl", "-sS", "--max-time", "10", "-X", method,
            "-o", out, "-w", "%{http_code}", url, NULL);
    E2E_EXPECT_EXIT0(&p);
    char *code = e2e_slurp(p.out_path, NULL);
    ck_assert_ptr_nonnull(code);
    int c = atoi(code);
    free(code);
    if (body) {
        *body = e2e_slurp(out, NULL);
        ck_assert_ptr_nonnull(*body);
    }
    return c;
}

static char *scrape(int port)
{
    char *text = NULL;
    int code = http(port, "GET", "/metrics", &text);
    ck_assert_msg(code == 200, "/metrics answered %d: %s", code, text);
    return text;
}

/* The value of the sample line that starts with series + ' ' (e.g.
 * `anomalyd_entries_total{outcome="scored"}`); fails when absent. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    ck_abort_msg("no sample %s in the scrape:\n%.2000s", series, text);
    return 0;
}

/* Scrapes until series == want (deadline 120 s); returns the last text. */
static char *wait_value(int port, const char *series, double want)
{
    double deadline = e2e_now() + 120;
    for (;;) {
        char *text = scrape(port);
        double v = value_of(text, series);
        if (v == want)
            return text;
        ck_assert_msg(e2e_now() < deadline, "%s stayed %g, expected %g", series, v, want);
        free(text);
        e2e_sleep_ms(200);
    }
}

/* Polls path until it answers want (deadline); returns the last body. */
static char *wait_status(int port, const char *path, int want, double timeout_s)
{
    double deadline = e2e_now() + timeout_s;
    for (;;) {
        char *body = NULL;
        int code = http(port, "GET", path, &body);
        if (code == want)
            return body;
        ck_assert_msg(e2e_now() < deadline, "%s answered %d (%s), expected %d", path, code,
                      body, want);
        free(body);
        e2e_sleep_ms(200);
    }
}

/* `promtool check metrics` on text: exit 0 and nothing to say. */
static void promtool_check(const char *text)
{
    char file[PATH_MAX + 32];
    snprintf(file, sizeof file, "%s/scrape.txt", T.tmpdir);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    e2e_proc p;
    e2e_run(&T, &p, "promtool check metrics", 60000, "/bin/sh", "-c",
            "promtool check metrics < \"$1\" 2>&1", "sh", file, NULL);
    char *out = e2e_slurp(p.out_path, NULL);
    ck_assert_msg(p.code == 0 && out && out[0] == '\0',
                  "promtool check metrics exited %d:\n%s", p.code, out ? out : "");
    free(out);
}

/* Every family of the scrape is named in docs/operations.md, and every
 * anomalyd_* name in the alert rules is a family (or histogram series) of
 * the scrape. */
static void names_documented_and_used_names_exist(const char *text)
{
    char *docs = e2e_slurp(e2e_src("docs/operations.md"), NULL);
    char *rules = e2e_slurp(e2e_src("ops/prometheus/anomalyd-alerts.yml"), NULL);
    ck_assert_ptr_nonnull(docs);
    ck_assert_ptr_nonnull(rules);
    int families = 0;
    for (const char *p = text; (p = strstr(p, "# TYPE ")) != NULL; p++) {
        char name[128];
        ck_assert_int_eq(sscanf(p + 7, "%127s", name), 1);
        char quoted[140];
        snprintf(quoted, sizeof quoted, "`%s`", name);
        ck_assert_msg(strstr(docs, quoted), "metric %s is not in docs/operations.md", name);
        families++;
    }
    ck_assert_int_gt(families, 20);
    int used = 0;
    for (const char *p = rules; (p = strstr(p, "anomalyd_")) != NULL;) {
        size_t n = 0;
        while (islower((unsigned char)p[n]) || p[n] == '_' || isdigit((unsigned char)p[n]))
            n++;
        char name[128], line[140];
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        p += n;
        if (!strcmp(name, "anomalyd_"))
            continue;
        snprintf(line, sizeof line, "\n%s", name);   /* a sample of it */
        const char *at = strstr(text, line);
        bool sample = at && (at[n + 1] == ' ' || at[n + 1] == '{');
        snprintf(line, sizeof line, "# TYPE %s ", name);   /* a family without samples yet */
        ck_assert_msg(sample || strstr(text, line),
                      "the alert rules use %s, which the scrape does not have", name);
        used++;
    }
    ck_assert_int_ge(used, 2);
    free(docs);
    free(rules);
}

/* ---- 1 ------------------------------------------------------------------ */

START_TEST(scrape_replay_and_readiness)
{
    e2e_proc d;
    int port = start_anomalyd(&d, "m1");
    free(wait_status(port, "/readyz", 200, 60));
    char *body = NULL;
    ck_assert_int_eq(http(port, "GET", "/livez", &body), 200);
    ck_assert_str_eq(body, "ok\n");
    free(body);
    ck_assert_int_eq(http(port, "GET", "/nosuch", NULL), 404);
    ck_assert_int_eq(http(port, "POST", "/metrics", NULL), 405);

    char *text = scrape(port);
    promtool_check(text);
    names_documented_and_used_names_exist(text);
    ck_assert(value_of(text, "anomalyd_state{state=\"running\"}") == 1);
    ck_assert(value_of(text, "anomalyd_connection_up{server=\"redis\"}") == 1);
    ck_assert(value_of(text, "anomalyd_connection_up{server=\"postgres\"}") == 1);
    ck_assert(value_of(text, "anomalyd_schema_present") == 1);
    ck_assert(value_of(text, "anomalyd_entries_total{outcome=\"scored\"}") == 0);
    free(text);

    /* 600 rows: 4 batches of 100, then 200 one-row batches, after the
     * defineModel result */
    char csv[PATH_MAX + 32];
    snprintf(csv, sizeof csv, "%s/head.csv", T.tmpdir);
    e2e_csv_head(e2e_data(JUMPSUP), csv, 600);
    const char *uid = e2e_uid(&T, "http");
    e2e_replay(&T, csv, "e2e.http", uid, 100, 400, 600, 205);
    an_field bad[] = {e2e_field("model", uid), e2e_field("batch", "this is not JSON")};
    char bad_id[AN_ID_MAX];
    e2e_xadd_fields(&T, bad, 2, bad_id);

    text = wait_value(port, "anomalyd_entries_total{outcome=\"scored\"}", 204);
    free(text);
    text = wait_value(port, "anomalyd_dead_letters_total{reason=\"malformed\"}", 1);
    ck_assert(value_of(text, "anomalyd_entries_total{outcome=\"command\"}") == 1);
    ck_assert(value_of(text, "anomalyd_entries_total{outcome=\"dead_lettered\"}") == 1);
    ck_assert(value_of(text, "anomalyd_entries_total{outcome=\"duplicate\"}") == 0);
    ck_assert(value_of(text, "anomalyd_entries_total{outcome=\"rejected\"}") == 0);
    ck_assert(value_of(text, "anomalyd_rows_scored_total") == 600);
    ck_assert(value_of(text, "anomalyd_command_results_total") == 1);
    /* every published entry has its latency; groups wrote all the rows */
    ck_assert(value_of(text, "anomalyd_entry_latency_seconds_count") == 205);
    ck_assert(value_of(text, "anomalyd_group_rows_sum") == 600);
    ck_assert(value_of(text, "anomalyd_group_entries_sum") == 204);
    double groups = value_of(text, "anomalyd_group_write_seconds_count");
    ck_assert_msg(groups >= 1 && groups <= 204, "%g group writes", groups);
    ck_assert(value_of(text, "anomalyd_group_entries_count") == groups);
    ck_assert(value_of(text, "anomalyd_publish_seconds_count") >= 1);
    ck_assert(value_of(text, "anomalyd_last_success_timestamp_seconds") > 1.7e9);
    ck_assert(value_of(text, "anomalyd_state_cache_metrics") <= 1);
    free(text);
    /* the polled gauges catch up within a few seconds */
    free(wait_value(port, "anomalyd_group_pending_entries", 0));
    free(wait_value(port, "anomalyd_input_stream_entries", 206));
    free(wait_value(port, "anomalyd_dead_letter_stream_entries", 1));
    text = wait_value(port, "anomalyd_state_cache_metrics", 1);
    ck_assert(value_of(text, "anomalyd_group_lag_entries") == 0);
    promtool_check(text);
    free(text);

    /* PostgreSQL stopped: not ready (still live), and back */
    e2e_proc s;
    pg_stopped = true;
    ck_assert_int_eq(e2e_stack(&T, "stop-pg", &s), 0);
    body = wait_status(port, "/readyz", 503, 60);
    ck_assert_str_eq(body, "postgres not connected\n");
    free(body);
    ck_assert_int_eq(http(port, "GET", "/livez", NULL), 200);
    text = scrape(port);
    ck_assert(value_of(text, "anomalyd_connection_up{server=\"postgres\"}") == 0);
    ck_assert(value_of(text, "anomalyd_connection_up{server=\"redis\"}") == 1);
    free(text);
    ck_assert_int_eq(e2e_stack(&T, "start-pg", &s), 0);
    pg_stopped = false;
    e2e_reconnect(&T, 120000);
    free(wait_status(port, "/readyz", 200, 90));
    text = scrape(port);
    ck_assert(value_of(text, "anomalyd_connection_up{server=\"postgres\"}") == 1);
    free(text);

    kill(d.pid, SIGTERM);
    e2e_wait(&T, &d, 60000);
    E2E_EXPECT_EXIT0(&d);
}
END_TEST

/* ---- 2 ------------------------------------------------------------------ */

/* Runs anomalyd with [http] listen = addr; expects exit 2 and msg in
 * stderr. */
static void expect_config_error(const char *addr, const char *msg)
{
    e2e_setenv(&T, "ANOMALYD_HTTP_LISTEN", addr);
    e2e_proc p;
    e2e_run(&T, &p, "anomalyd (bad listen)", 60000, e2e_bin("anomalyd"), "--consumer", "bad",
            "--exit-when-idle", "100", NULL);
    const char *err = e2e_tail(p.err_path, 2000);
    ck_assert_msg(p.code == 2, "listen %s: exit %d, expected 2; stderr:\n%s", addr, p.code, err);
    ck_assert_msg(strstr(err, msg), "listen %s: stderr lacks '%s':\n%s", addr, msg, err);
}

START_TEST(bad_listen_addresses)
{
    expect_config_error("nonsense", "anomalyd: configuration error: [http] listen: 'nonsense' "
                                    "is not host:port");
    expect_config_error("127.0.0.1:70000", "port 70000 out of range");
    expect_config_error("no-such-host.invalid:9464",
                        "anomalyd: configuration error: [http] listen "
                        "no-such-host.invalid:9464: cannot resolve");
    /* a port someone else holds */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 1), 0);
    socklen_t al = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    char addr[64], msg[128];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(msg, sizeof msg, "[http] listen %s: cannot bind: Address already in use", addr);
    expect_config_error(addr, msg);
    close(fd);
    /* empty: no endpoint, the service runs (and exits when idle) */
    e2e_setenv(&T, "ANOMALYD_HTTP_LISTEN", "");
    e2e_proc p;
    e2e_run_anomalyd(&T, &p, "nohttp", 300, 60000);
    ck_assert_ptr_null(strstr(e2e_tail(p.err_path, 4000), "http: /metrics"));
}
END_TEST

/* ---- 3 ------------------------------------------------------------------ */

START_TEST(not_ready_without_schema)
{
    /* The same database, seen through a search_path where no anomalyd
     * table exists: for anomalyd the schema is missing. */
    char dsn[1024];
    const char *base = e2e_env("ANOMALYD_PG_DSN");
    ck_assert_msg(!strncmp(base, "postgres", 8) && !strchr(base, '?'),
                  "this test needs the stack's URI DSN, got %s", base);
    snprintf(dsn, sizeof dsn, "%s?options=-csearch_path%%3Dan_no_such_schema", base);
    e2e_setenv(&T, "ANOMALYD_POSTGRES_DSN", dsn);
    e2e_proc d;
    int port = start_anomalyd(&d, "noschema");
    char *body = wait_status(port, "/readyz", 503, 60);
    double deadline = e2e_now() + 60;
    while (strcmp(body, "starting: database schema missing or out of date\n")) {
        ck_assert_msg(e2e_now() < deadline, "/readyz says '%s'", body);
        free(body);
        e2e_sleep_ms(200);
        ck_assert_int_eq(http(port, "GET", "/readyz", &body), 503);
    }
    free(body);
    ck_assert_int_eq(http(port, "GET", "/livez", NULL), 200);
    char *text = scrape(port);
    ck_assert(value_of(text, "anomalyd_schema_present") == 0);
    ck_assert(value_of(text, "anomalyd_state{state=\"starting\"}") == 1);
    ck_assert(value_of(text, "anomalyd_connection_up{server=\"postgres\"}") == 1);
    free(text);
    ck_assert_msg(e2e_count_lines(d.err_path, "waiting for `anomalyctl db init`") >= 1,
                  "no schema warning; stderr:\n%s", e2e_tail(d.err_path, 2000));
    kill(d.pid, SIGTERM);
    e2e_wait(&T, &d, 60000);
    E2E_EXPECT_EXIT0(&d);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("endpoint");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, scrape_replay_and_readiness);
    tcase_add_test(tc, bad_listen_addresses);
    tcase_add_test(tc, not_ready_without_schema);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(http_suite(), CK_NORMAL);
}
