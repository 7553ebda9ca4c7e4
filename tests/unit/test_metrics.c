/*
 * test_metrics.c: the metrics registry and its text exposition
 * (an_metrics.h), with no server and no HTTP.
 *
 *  - histogram bucketing: the bucket of values on, between, below and
 *    above the bounds, NaN and infinities;
 *  - number formatting of sample values and le bounds;
 *  - the rendered text: every line parses as the exposition format,
 *    every sample belongs to the family announced before it, counters end
 *    in _total, histogram buckets are cumulative and end with +Inf ==
 *    _count; exact lines after known events;
 *  - dynamic labels stay bounded and free text never becomes a label;
 *  - liveness and readiness on a virtual clock (no wall-clock timing);
 *  - NULL safety and two writer threads against a reader.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_metrics.h"
#include "check_main.h"

/* ---- a virtual clock ---------------------------------------------------- */

static int64_t vnow;
static int64_t vclock_now(void *ud)
{
    (void)ud;
    return vnow;
}
static void vclock_sleep(void *ud, int ms)
{
    (void)ud;
    vnow += ms;
}
static const an_clock vclock = {.now_ms = vclock_now, .sleep_ms = vclock_sleep};

/* ---- helpers ------------------------------------------------------------ */

static char *render(an_metrics *m)
{
    size_t len = 0;
    char *t = an_metrics_render(m, &len);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(strlen(t), len);
    return t;
}

/* The text holds this exact line. */
static void expect_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    ck_abort_msg("line not found: %s\n--- text ---\n%.3000s", line, text);
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Checks the whole text against the exposition format's grammar and the
 * conventions this project follows; returns the number of samples. */
static int check_exposition(const char *text)
{
    char family[128] = "", type[32] = "";
    char helped[128] = "";
    int samples = 0;
    double last_bucket = -1, inf_bucket = -1;
    const char *p = text;
    ck_assert_msg(*text && text[strlen(text) - 1] == '\n', "text must end with a newline");
    while (*p) {
        const char *eol = strchr(p, '\n');
        ck_assert_ptr_nonnull(eol);
        char line[1024];
        size_t n = (size_t)(eol - p);
        ck_assert_uint_lt(n, sizeof line);
        memcpy(line, p, n);
        line[n] = '\0';
        p = eol + 1;
        if (!strncmp(line, "# HELP ", 7)) {
            ck_assert_int_eq(sscanf(line + 7, "%127s", helped), 1);
            ck_assert_msg(strlen(line) > 8 + strlen(helped), "empty help: %s", line);
            continue;
        }
        if (!strncmp(line, "# TYPE ", 7)) {
            ck_assert_int_eq(sscanf(line + 7, "%127s %31s", family, type), 2);
            ck_assert_msg(!strcmp(family, helped), "TYPE %s without its HELP first", family);
            ck_assert_msg(!strncmp(family, "anomalyd_", 9), "family %s has no prefix", family);
            ck_assert_msg(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
                              !strcmp(type, "histogram"),
                          "type %s", type);
            if (!strcmp(type, "counter"))
                ck_assert_msg(strlen(family) > 6 && !strcmp(family + strlen(family) - 6, "_total"),
                              "counter %s does not end in _total", family);
            else
                ck_assert_msg(!strstr(family, "_total"), "%s %s ends in _total", type, family);
            last_bucket = -1;
            continue;
        }
        ck_assert_msg(line[0] != '#', "unknown comment: %s", line);
        /* name{label="value"} number */
        size_t i = 0;
        while (name_char(line[i], i == 0))
            i++;
        ck_assert_msg(i > 0, "no metric name: %s", line);
        char name[128];
        memcpy(name, line, i);
        name[i] = '\0';
        char le[64] = "";
        if (line[i] == '{') {
            i++;
            size_t ln = i;
            while (name_char(line[i], i == ln))
                i++;
            ck_assert_msg(i > ln && line[i] == '=' && line[i + 1] == '"', "bad label: %s", line);
            char lname[64];
            snprintf(lname, sizeof lname, "%.*s", (int)(i - ln), line + ln);
            i += 2;
            size_t vs = i;
            while (line[i] && line[i] != '"') {
                if (line[i] == '\\')
                    i++;
                i++;
            }
            ck_assert_msg(line[i] == '"' && line[i + 1] == '}', "bad label value: %s", line);
            if (!strcmp(lname, "le"))
                snprintf(le, sizeof le, "%.*s", (int)(i - vs), line + vs);
            i += 2;
        }
        ck_assert_msg(line[i] == ' ', "no space before the value: %s", line);
        char *end;
        double v = strtod(line + i + 1, &end);
        ck_assert_msg(end != line + i + 1 && *end == '\0', "bad value: %s", line);
        ck_assert_msg(family[0], "sample before any TYPE: %s", line);
        if (!strcmp(type, "histogram")) {
            char want[160];
            bool ok = false;
            const char *suf[] = {"_bucket", "_sum", "_count"};
            for (int k = 0; k < 3; k++) {
                snprintf(want, sizeof want, "%s%s", family, suf[k]);
                ok = ok || !strcmp(name, want);
            }
            ck_assert_msg(ok, "%s is not a sample of histogram %s", name, family);
            if (strstr(name, "_bucket")) {
                ck_assert_msg(le[0], "bucket without le: %s", line);
                ck_assert_msg(v >= last_bucket, "buckets not cumulative at %s", line);
                last_bucket = v;
                if (!strcmp(le, "+Inf"))
                    inf_bucket = v;
            } else if (strstr(name, "_count")) {
                ck_assert_msg(inf_bucket == v, "%s: +Inf bucket %g != count %g", family,
                              inf_bucket, v);
            }
        } else {
            ck_assert_msg(!strcmp(name, family), "sample %s under family %s", name, family);
            if (!strcmp(type, "counter"))
                ck_assert_msg(v >= 0, "negative counter: %s", line);
        }
        samples++;
    }
    return samples;
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(bucket_index)
{
    const double b[] = {0.5, 1, 2.5, 10};
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, -3), 0);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, 0), 0);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, 0.5), 0);   /* le: inclusive */
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, nextafter(0.5, 1)), 1);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, 1), 1);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, 2), 2);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, 2.5), 2);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, 10), 3);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, 10.000001), 4);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, INFINITY), 4);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, -INFINITY), 0);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 4, NAN), 4);
    ck_assert_uint_eq(an_metrics_bucket_index(b, 0, 1), 0);
    /* every value against a linear scan */
    const double big[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    for (double v = -1; v <= 2000; v += 0.5) {
        size_t want = 11;
        for (size_t i = 0; i < 11; i++)
            if (v <= big[i]) {
                want = i;
                break;
            }
        ck_assert_uint_eq(an_metrics_bucket_index(big, 11, v), want);
    }
}
END_TEST

START_TEST(format_value)
{
    struct {
        double v;
        const char *text;
    } cases[] = {
        {0, "0"}, {-0.0, "0"}, {3, "3"}, {-2, "-2"}, {1e14, "100000000000000"},
        {0.25, "0.25"}, {0.1, "0.1"}, {0.005, "0.005"}, {1e-7, "1e-07"}, {1e20, "1e+20"},
        {0.1 + 0.2, "0.30000000000000004"}, {1.5e15 + 0.5, "1500000000000000.5"},
        {INFINITY, "+Inf"}, {-INFINITY, "-Inf"}, {NAN, "NaN"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        an_metrics_format_value(cases[i].v, buf, sizeof buf);
        ck_assert_msg(!strcmp(buf, cases[i].text), "%.17g: got %s, want %s", cases[i].v, buf,
                      cases[i].text);
        if (isfinite(cases[i].v))
            ck_assert(strtod(buf, NULL) == cases[i].v);
    }
}
END_TEST

START_TEST(exposition_of_fresh_registry)
{
    vnow = 0;
    an_metrics *m = an_metrics_new(&vclock);
    ck_assert_ptr_nonnull(m);
    char *t = render(m);
    int n = check_exposition(t);
    ck_assert_int_gt(n, 50);
    expect_line(t, "anomalyd_entries_total{outcome=\"scored\"} 0");
    expect_line(t, "anomalyd_entries_total{outcome=\"trimmed\"} 0");
    expect_line(t, "anomalyd_state{state=\"starting\"} 1");
    expect_line(t, "anomalyd_state{state=\"running\"} 0");
    expect_line(t, "anomalyd_connection_up{server=\"redis\"} 0");
    expect_line(t, "anomalyd_connection_up{server=\"postgres\"} 0");
    expect_line(t, "anomalyd_group_lag_entries NaN");
    expect_line(t, "anomalyd_schema_present 0");
    expect_line(t, "anomalyd_input_trimmed_entries_total 0");
    expect_line(t, "anomalyd_entry_latency_seconds_bucket{le=\"+Inf\"} 0");
    expect_line(t, "anomalyd_entry_latency_seconds_count 0");
    ck_assert_ptr_null(strstr(t, "anomalyd_pause_cause{"));   /* no cause seen yet */
    free(t);
    an_metrics_free(m);
}
END_TEST

START_TEST(exposition_after_events)
{
    an_metrics *m = an_metrics_new(&vclock);
    an_metrics_entries(m, AN_OUTCOME_SCORED, 5);
    an_metrics_entries(m, AN_OUTCOME_SCORED, 2);
    an_metrics_entries(m, AN_OUTCOME_DUPLICATE, 1);
    an_metrics_entries(m, AN_OUTCOME_N, 1);   /* out of range: ignored */
    an_metrics_add(m, AN_C_ROWS_SCORED, 4032);
    an_metrics_add(m, AN_C_INPUT_TRIMMED, 12);
    an_metrics_add(m, AN_C_N, 1);             /* ignored */
    an_metrics_set(m, AN_G_GROUP_PENDING, 17);
    an_metrics_set(m, AN_G_LAST_SUCCESS, 1764800000.25);
    an_metrics_set(m, AN_G_GROUP_LAG, 3);
    an_metrics_set_up(m, AN_SERVER_POSTGRES, true);
    /* group entries: 1 -> le 1; 3, 3 -> le 4; 2000 -> +Inf */
    an_metrics_observe(m, AN_H_GROUP_ENTRIES, 1);
    an_metrics_observe(m, AN_H_GROUP_ENTRIES, 3);
    an_metrics_observe(m, AN_H_GROUP_ENTRIES, 3);
    an_metrics_observe(m, AN_H_GROUP_ENTRIES, 2000);
    /* latency: on a bound, and NaN (counted, not summed) */
    an_metrics_observe(m, AN_H_ENTRY_LATENCY, 0.25);
    an_metrics_observe(m, AN_H_ENTRY_LATENCY, NAN);
    an_metrics_dead_letter(m, "malformed");
    an_metrics_dead_letter(m, "malformed");
    an_metrics_dead_letter(m, "overlap");
    char *t = render(m);
    check_exposition(t);
    expect_line(t, "anomalyd_entries_total{outcome=\"scored\"} 7");
    expect_line(t, "anomalyd_entries_total{outcome=\"duplicate\"} 1");
    expect_line(t, "anomalyd_entries_total{outcome=\"dead_lettered\"} 3");
    expect_line(t, "anomalyd_dead_letters_total{reason=\"malformed\"} 2");
    expect_line(t, "anomalyd_dead_letters_total{reason=\"overlap\"} 1");
    expect_line(t, "anomalyd_rows_scored_total 4032");
    expect_line(t, "anomalyd_input_trimmed_entries_total 12");
    expect_line(t, "anomalyd_group_pending_entries 17");
    expect_line(t, "anomalyd_group_lag_entries 3");
    expect_line(t, "anomalyd_last_success_timestamp_seconds 1764800000.25");
    expect_line(t, "anomalyd_connection_up{server=\"postgres\"} 1");
    expect_line(t, "anomalyd_group_entries_bucket{le=\"1\"} 1");
    expect_line(t, "anomalyd_group_entries_bucket{le=\"2\"} 1");
    expect_line(t, "anomalyd_group_entries_bucket{le=\"4\"} 3");
    expect_line(t, "anomalyd_group_entries_bucket{le=\"1024\"} 3");
    expect_line(t, "anomalyd_group_entries_bucket{le=\"+Inf\"} 4");
    expect_line(t, "anomalyd_group_entries_sum 2007");
    expect_line(t, "anomalyd_group_entries_count 4");
    expect_line(t, "anomalyd_entry_latency_seconds_bucket{le=\"0.1\"} 0");
    expect_line(t, "anomalyd_entry_latency_seconds_bucket{le=\"0.25\"} 1");
    expect_line(t, "anomalyd_entry_latency_seconds_bucket{le=\"3600\"} 1");
    expect_line(t, "anomalyd_entry_latency_seconds_bucket{le=\"+Inf\"} 2");
    expect_line(t, "anomalyd_entry_latency_seconds_sum 0.25");
    expect_line(t, "anomalyd_entry_latency_seconds_count 2");
    ck_assert_int_eq(an_metrics_outcome(m, AN_OUTCOME_SCORED), 7);
    ck_assert_int_eq(an_metrics_counter(m, AN_C_ROWS_SCORED), 4032);
    free(t);
    an_metrics_free(m);
}
END_TEST

START_TEST(dynamic_labels_bounded)
{
    an_metrics *m = an_metrics_new(&vclock);
    /* free text, upper case, control characters, too long, NULL: "other" */
    an_metrics_dead_letter(m, "entry 1-0: not JSON");
    an_metrics_dead_letter(m, "Malformed");
    an_metrics_dead_letter(m, "a\nb");
    an_metrics_dead_letter(m, "x23456789012345678901234567890123");
    an_metrics_dead_letter(m, NULL);
    an_metrics_dead_letter(m, "");
    int calls = 6;
    for (int i = 0; i < 40; i++) {
        char c[16];
        snprintf(c, sizeof c, "class_%d", i);
        an_metrics_dead_letter(m, c);
        calls++;
    }
    char *t = render(m);
    check_exposition(t);
    int series = 0;
    long long sum = 0;
    for (const char *p = t; (p = strstr(p, "\nanomalyd_dead_letters_total{")) != NULL; p++) {
        series++;
        const char *sp = strchr(p + 1, ' ');
        sum += atoll(sp + 1);
    }
    ck_assert_int_le(series, AN_METRICS_MAX_DYNAMIC);
    ck_assert_int_eq(sum, calls);   /* nothing lost: the overflow counts as "other" */
    ck_assert_int_eq(an_metrics_outcome(m, AN_OUTCOME_DEAD_LETTERED), calls);
    ck_assert_ptr_null(strstr(t, "not JSON"));
    ck_assert_ptr_null(strstr(t, "Malformed"));
    expect_line(t, "anomalyd_dead_letters_total{reason=\"class_0\"} 1");
    free(t);
    /* the same bound for pause causes */
    for (int i = 0; i < 40; i++) {
        char c[16];
        snprintf(c, sizeof c, "cause_%d", i);
        an_metrics_set_paused(m, c);
    }
    an_metrics_set_paused(m, "Postgres down!");
    t = render(m);
    check_exposition(t);
    series = 0;
    int ones = 0;
    for (const char *p = t; (p = strstr(p, "\nanomalyd_pause_cause{")) != NULL; p++) {
        series++;
        ones += strstr(p, "} 1\n") == strchr(p, '}');
    }
    ck_assert_int_le(series, AN_METRICS_MAX_DYNAMIC);
    ck_assert_int_eq(ones, 1);
    expect_line(t, "anomalyd_pause_cause{cause=\"other\"} 1");
    free(t);
    an_metrics_free(m);
}
END_TEST

START_TEST(liveness_on_a_virtual_clock)
{
    vnow = 5000;
    an_metrics *m = an_metrics_new(&vclock);
    char why[256] = "";
    ck_assert(an_metrics_live(m, 1000, why, sizeof why));
    vnow += 1000;   /* exactly the limit: still live */
    ck_assert(an_metrics_live(m, 1000, why, sizeof why));
    vnow += 1;
    ck_assert(!an_metrics_live(m, 1000, why, sizeof why));
    ck_assert_str_eq(why, "main loop silent for 1001 ms (limit 1000 ms)");
    an_metrics_heartbeat(m);
    ck_assert(an_metrics_live(m, 1000, why, sizeof why));
    vnow += 60000;
    ck_assert(!an_metrics_live(m, 59999, NULL, 0));
    ck_assert(an_metrics_live(m, 60000, NULL, 0));
    an_metrics_free(m);
}
END_TEST

static void expect_not_ready(an_metrics *m, const char *reason)
{
    char why[256] = "";
    ck_assert(!an_metrics_ready(m, why, sizeof why));
    ck_assert_str_eq(why, reason);
}

START_TEST(readiness)
{
    an_metrics *m = an_metrics_new(&vclock);
    char why[256];
    expect_not_ready(m, "starting: redis not connected");
    an_metrics_set_up(m, AN_SERVER_REDIS, true);
    an_metrics_set_up(m, AN_SERVER_POSTGRES, true);
    expect_not_ready(m, "starting: database schema not checked yet");
    an_metrics_set_schema(m, false);
    expect_not_ready(m, "starting: database schema missing or out of date");
    an_metrics_set_schema(m, true);
    expect_not_ready(m, "starting");
    an_metrics_set_up(m, AN_SERVER_REDIS, false);
    an_metrics_set_up(m, AN_SERVER_POSTGRES, false);
    an_metrics_set_schema(m, false);
    an_metrics_set_running(m);
    expect_not_ready(m, "redis not connected");
    an_metrics_set_up(m, AN_SERVER_REDIS, true);
    expect_not_ready(m, "postgres not connected");
    an_metrics_set_up(m, AN_SERVER_POSTGRES, true);
    expect_not_ready(m, "database schema missing or out of date");
    an_metrics_set_schema(m, true);
    ck_assert(an_metrics_ready(m, why, sizeof why));
    ck_assert_str_eq(why, "");
    an_metrics_set_up(m, AN_SERVER_POSTGRES, false);
    expect_not_ready(m, "postgres not connected");
    an_metrics_set_up(m, AN_SERVER_POSTGRES, true);

    an_metrics_set_paused(m, "postgres_down");
    ck_assert_int_eq(an_metrics_state(m), AN_STATE_PAUSED);
    expect_not_ready(m, "paused: postgres_down");
    char *t = render(m);
    expect_line(t, "anomalyd_state{state=\"paused\"} 1");
    expect_line(t, "anomalyd_state{state=\"running\"} 0");
    expect_line(t, "anomalyd_pause_cause{cause=\"postgres_down\"} 1");
    free(t);
    an_metrics_set_running(m);
    ck_assert(an_metrics_ready(m, NULL, 0));
    t = render(m);
    expect_line(t, "anomalyd_state{state=\"running\"} 1");
    expect_line(t, "anomalyd_pause_cause{cause=\"postgres_down\"} 0");
    free(t);

    an_metrics_set_stopping(m);
    expect_not_ready(m, "stopping");
    an_metrics_set_running(m);             /* a stop is final */
    an_metrics_set_paused(m, "redis_down");
    expect_not_ready(m, "stopping");
    ck_assert_str_eq(an_metrics_state_name(an_metrics_state(m)), "stopping");
    an_metrics_free(m);
}
END_TEST

START_TEST(null_safe)
{
    an_metrics_entries(NULL, AN_OUTCOME_SCORED, 1);
    an_metrics_dead_letter(NULL, "x");
    an_metrics_add(NULL, AN_C_RETRIES, 1);
    an_metrics_set(NULL, AN_G_GROUP_LAG, 1);
    an_metrics_observe(NULL, AN_H_PUBLISH, 1);
    an_metrics_set_up(NULL, AN_SERVER_REDIS, true);
    an_metrics_set_schema(NULL, true);
    an_metrics_set_running(NULL);
    an_metrics_set_paused(NULL, "x");
    an_metrics_set_stopping(NULL);
    an_metrics_heartbeat(NULL);
    ck_assert(!an_metrics_live(NULL, 1000, NULL, 0));
    ck_assert(!an_metrics_ready(NULL, NULL, 0));
    ck_assert_ptr_null(an_metrics_render(NULL, NULL));
    ck_assert_int_eq(an_metrics_counter(NULL, AN_C_RETRIES), 0);
    an_metrics_free(NULL);
}
END_TEST

#define WRITES 200000
static void *writer(void *ud)
{
    an_metrics *m = ud;
    for (int i = 0; i < WRITES; i++) {
        an_metrics_add(m, AN_C_RETRIES, 1);
        an_metrics_observe(m, AN_H_PUBLISH, 0.001);
    }
    return NULL;
}

START_TEST(concurrent_writers_and_reader)
{
    an_metrics *m = an_metrics_new(NULL);
    pthread_t a, b;
    ck_assert_int_eq(pthread_create(&a, NULL, writer, m), 0);
    ck_assert_int_eq(pthread_create(&b, NULL, writer, m), 0);
    for (int i = 0; i < 50; i++) {   /* renders race with the writers */
        char *t = render(m);
        check_exposition(t);
        free(t);
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    ck_assert_int_eq(an_metrics_counter(m, AN_C_RETRIES), 2 * WRITES);
    char *t = render(m);
    char line[128];
    snprintf(line, sizeof line, "anomalyd_publish_seconds_count %d", 2 * WRITES);
    expect_line(t, line);
    free(t);
    an_metrics_free(m);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bucket_index);
    tcase_add_test(tc, format_value);
    tcase_add_test(tc, exposition_of_fresh_registry);
    tcase_add_test(tc, exposition_after_events);
    tcase_add_test(tc, dynamic_labels_bounded);
    tcase_add_test(tc, liveness_on_a_virtual_clock);
    tcase_add_test(tc, readiness);
    tcase_add_test(tc, null_safe);
    tcase_add_test(tc, concurrent_writers_and_reader);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(metrics_suite(), CK_NORMAL);
}
