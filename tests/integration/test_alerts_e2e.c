/*
 * test_alerts_e2e.c: anomalyctl alerts against the real Redis and PostgreSQL.
 * A NAB file with labelled anomalies (numenta_art_daily_jumpsup) is
 * replayed through anomalyd once (the tcase's fixture); then each test runs
 * the consumer in its own group with its own alerts stream and compares
 * what it delivered with what this file computes from the database itself:
 * the rows whose anomaly_score reaches the threshold, minus the warm-up
 * rows and the rows the per-metric throttle (row time) holds.
 *
 * 1. matches_database: defaults (with --max-age 0), then a lower threshold
 *    and warm-up where the throttle holds many rows; each alert's fields
 *    are the row's; the default age gate holds every 2014 row.
 * 2. kill_restart_republish: SIGKILL three times mid-stream, each time
 *    while an alert's --exec runs (the command waits for the test), restart,
 *    then re-publish output entries (XADD copies, same source): no alert is
 *    missing or doubled in the alerts stream; stdout and --exec repeat
 *    exactly the alerts the killed entries had delivered before the kill.
 * 3. threshold_overrides: by uid; a bad one by name is ignored, logged.
 * 4. exec_failure_and_poison: a failing --exec is retried, then skipped;
 *    undecodable entries are dead-lettered with a reason, the rest handled.
 * 5. bounds_at_and_past: fired records, stream length, metrics kept.
 */
#include <check.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;
static const char *UID;
static char CSV[4096];
static int64_t NOUT; /* output entries */

static void fixture_up(void)
{
    e2e_init(&T, "alerts");
    snprintf(CSV, sizeof CSV, "%s", e2e_data("likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"));
    UID = e2e_uid(&T, "jumpsup");
    e2e_replay(&T, CSV, "e2e.alerts.jumpsup", UID, 1440, 2880, 4032, 1155);
    e2e_proc p;
    e2e_run_anomalyd(&T, &p, "a1", 1500, 300000);
    NOUT = e2e_xlen(&T, T.output);
    ck_assert_int_eq(NOUT, 1155);
}

static void del_alert_keys(const char *stream)
{
    static const char *const sfx[] = {"", ":last", ":fired", ":fired:order", ":thresholds",
                                      ":dead"};
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        char key[4096];
        snprintf(key, sizeof key, "%s%s", stream, sfx[i]);
        an_del(T.rd, key, NULL);
    }
}

static char STREAMS[24][128];
static int NSTREAMS;

/* A fresh alerts stream name under the context's prefix (deleted at the end). */
static const char *alert_stream(const char *tag)
{
    ck_assert_int_lt(NSTREAMS, 24);
    snprintf(STREAMS[NSTREAMS], sizeof STREAMS[0], "%salerts_%s", T.prefix, tag);
    return STREAMS[NSTREAMS++];
}

/* Entries this file adds to the output stream, removed again (XDEL) so
 * that every test's group reads the replay's entries only. */
static char TMP_IDS[2048][AN_ID_MAX];
static size_t NTMP;

static void xadd_tmp(const an_field *f, size_t n)
{
    ck_assert_uint_lt(NTMP, 2048);
    ck_assert_int_eq(an_xadd(T.rd, T.output, 0, f, n, TMP_IDS[NTMP]), 0);
    NTMP++;
}

static void drop_tmp(void)
{
    for (size_t i = 0; i < NTMP; i++) {
        const char *id = TMP_IDS[i];
        ck_assert_int_eq(an_xdel(T.rd, T.output, &id, 1, NULL), 0);
    }
    NTMP = 0;
    ck_assert_int_eq(e2e_xlen(&T, T.output), NOUT);
}

static void fixture_down(void)
{
    for (int i = 0; i < NSTREAMS; i++)
        del_alert_keys(STREAMS[i]);
    e2e_fini(&T);
}

/* ---- the expectation, from the database ---- */

#define MAXA 512
typedef struct alist {
    size_t n;
    char key[MAXA][64];      /* "uid rowid" */
    double ts[MAXA], value[MAXA], anomaly[MAXA], raw[MAXA];
} alist;

/* Rows of uid with anomaly_score >= thr and rowid > min_rowid, thinned by
 * the throttle: an alert at row time t holds the metric until t + throttle. */
static size_t expected(const char *uid, double thr, long min_rowid, double throttle_s,
                       alist *out, size_t *over_threshold)
{
    char q[512];
    snprintf(q, sizeof q,
             "SELECT rowid, extract(epoch FROM timestamp)::float8, metric_value, anomaly_score, "
             "raw_anomaly_score FROM metric_data WHERE uid = '%s' AND anomaly_score >= %.17g "
             "ORDER BY rowid", uid, thr);
    PGresult *res = PQexec(an_repo_conn(T.repo), q);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    memset(out, 0, sizeof *out);
    *over_threshold = (size_t)PQntuples(res);
    double last = -INFINITY;
    for (int i = 0; i < PQntuples(res); i++) {
        long rowid = atol(PQgetvalue(res, i, 0));
        double ts = atof(PQgetvalue(res, i, 1));
        if (rowid <= min_rowid || ts < last + throttle_s)
            continue;
        last = ts;
        ck_assert_uint_lt(out->n, MAXA);
        snprintf(out->key[out->n], 64, "%s %ld", uid, rowid);
        out->ts[out->n] = ts;
        out->value[out->n] = strtod(PQgetvalue(res, i, 2), NULL);
        out->anomaly[out->n] = strtod(PQgetvalue(res, i, 3), NULL);
        out->raw[out->n] = strtod(PQgetvalue(res, i, 4), NULL);
        out->n++;
    }
    PQclear(res);
    return out->n;
}

/* ---- what the consumer delivered ---- */

/* The alerts of JSON lines in text (stdout or the --exec file), in order. */
static void parse_lines(const char *text, alist *out)
{
    memset(out, 0, sizeof *out);
    char *copy = strdup(text ? text : ""), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = e2e_parse(line, "alert line");
        ck_assert_uint_lt(out->n, MAXA);
        snprintf(out->key[out->n], 64, "%s %lld", json_string_value(json_object_get(j, "uid")),
                 (long long)json_integer_value(json_object_get(j, "rowid")));
        out->ts[out->n] = json_number_value(json_object_get(j, "ts"));
        out->value[out->n] = json_number_value(json_object_get(j, "value"));
        out->anomaly[out->n] = json_number_value(json_object_get(j, "anomaly"));
        out->raw[out->n] = json_number_value(json_object_get(j, "rawAnomaly"));
        out->n++;
        json_decref(j);
    }
    free(copy);
}

static void stdout_alerts(const e2e_proc *p, alist *out)
{
    char *text = e2e_slurp(p->out_path, NULL);
    parse_lines(text, out);
    free(text);
}

/* The alerts stream's entries (uid rowid, from its fields and its JSON). */
static void stream_alerts(const char *stream, alist *out)
{
    an_entry_list l = {0};
    e2e_xrange_all(&T, stream, &l);
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < l.n; i++) {
        const an_field *u = an_entry_field(&l.v[i], "uid"), *r = an_entry_field(&l.v[i], "rowid"),
                       *a = an_entry_field(&l.v[i], "alert");
        ck_assert(u && r && a);
        json_t *j = e2e_parse(a->value, "alerts stream entry");
        ck_assert_str_eq(json_string_value(json_object_get(j, "uid")), u->value);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "rowid")), atoll(r->value));
        snprintf(out->key[out->n++], 64, "%s %s", u->value, r->value);
        json_decref(j);
    }
    an_entry_list_free(&l);
}

static void expect_same(const alist *got, const alist *want, const char *what)
{
    ck_assert_msg(got->n == want->n, "%s: %zu alerts, expected %zu (first expected: %s)", what,
                  got->n, want->n, want->n ? want->key[0] : "-");
    for (size_t i = 0; i < want->n; i++)
        ck_assert_msg(!strcmp(got->key[i], want->key[i]), "%s: alert %zu is %s, expected %s",
                      what, i, got->key[i], want->key[i]);
}

/* Runs the consumer to its end: --exit-when-idle 1000 plus args. */
static void run_alerts(e2e_proc *p, const char *group, const char *stream, const char *a1,
                       const char *a2, const char *a3, const char *a4, const char *a5,
                       const char *a6)
{
    const char *argv[24] = {e2e_bin("anomalyctl"), "alerts", "--group", group, "--stream",
                            stream, "--exit-when-idle", "1000", "--consumer", "c1"};
    int n = 10;
    const char *extra[] = {a1, a2, a3, a4, a5, a6};
    for (size_t i = 0; i < 6 && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    char label[160];
    snprintf(label, sizeof label, "anomalyctl alerts --group %s", group);
    e2e_spawn(&T, p, label, argv);
    e2e_wait(&T, p, 300000);
    E2E_EXPECT_EXIT0(p);
}

static int64_t group_pending(const char *group)
{
    an_pending_summary s;
    ck_assert_int_eq(an_pending_summary_get(T.rd, T.output, group, &s), 0);
    int64_t n = s.count;
    an_pending_summary_free(&s);
    return n;
}

START_TEST(matches_database)
{
    alist want, got, in_stream;
    size_t over;
    /* defaults, age gate off */
    const char *s1 = alert_stream("defaults");
    expected(UID, 0.99999, 1000, 3600, &want, &over);
    ck_assert_uint_ge(want.n, 2);
    ck_assert_uint_gt(over, want.n); /* the warm-up removed some */
    e2e_proc p;
    run_alerts(&p, "g-defaults", s1, "--max-age", "0", NULL, NULL, NULL, NULL);
    stdout_alerts(&p, &got);
    expect_same(&got, &want, "stdout (defaults)");
    for (size_t i = 0; i < want.n; i++)
        ck_assert_msg(got.ts[i] == want.ts[i] && got.value[i] == want.value[i] &&
                          got.anomaly[i] == want.anomaly[i] && got.raw[i] == want.raw[i],
                      "alert %s: fields differ from the row", want.key[i]);
    stream_alerts(s1, &in_stream);
    expect_same(&in_stream, &want, "alerts stream (defaults)");
    ck_assert_int_eq(group_pending("g-defaults"), 0);

    /* a lower threshold and warm-up: the throttle holds many rows */
    const char *s2 = alert_stream("low");
    size_t nothrottle_over;
    alist nothrottle;
    expected(UID, 0.99, 400, 0, &nothrottle, &nothrottle_over);
    expected(UID, 0.99, 400, 3600, &want, &over);
    ck_assert_uint_gt(nothrottle.n, want.n + 10);
    run_alerts(&p, "g-low", s2, "--max-age", "0", "--threshold", "0.99", "--min-rowid", "400");
    stdout_alerts(&p, &got);
    expect_same(&got, &want, "stdout (0.99, 400)");
    stream_alerts(s2, &in_stream);
    expect_same(&in_stream, &want, "alerts stream (0.99, 400)");

    /* a 3 h throttle, warm-up off ("0" turns a gate off) */
    const char *s4 = alert_stream("t3h");
    expected(UID, 0.99, 0, 3 * 3600, &want, &over);
    const char *argv[] = {e2e_bin("anomalyctl"), "alerts", "--group", "g-t3h", "--stream", s4,
                          "--exit-when-idle", "1000", "--max-age", "0", "--threshold", "0.99",
                          "--min-rowid", "0", "--throttle", "3h", NULL};
    e2e_spawn(&T, &p, "anomalyctl alerts --throttle 3h", argv);
    e2e_wait(&T, &p, 300000);
    E2E_EXPECT_EXIT0(&p);
    stdout_alerts(&p, &got);
    expect_same(&got, &want, "stdout (0.99, warm-up off, 3h)");

    /* the default age gate: every row is from 2014, far older than 1 h */
    const char *s5 = alert_stream("aged");
    run_alerts(&p, "g-aged", s5, NULL, NULL, NULL, NULL, NULL, NULL);
    stdout_alerts(&p, &got);
    ck_assert_uint_eq(got.n, 0);
    ck_assert_int_eq(e2e_xlen(&T, s5), 0);
    ck_assert_int_eq(group_pending("g-aged"), 0);
}
END_TEST

/* entries_read of group on the output stream (-1 unknown). */
static int64_t entries_read(const char *group)
{
    an_group_info *g = NULL;
    size_t n = 0;
    int64_t r = -1;
    if (an_xinfo_groups(T.rd, T.output, &g, &n) == 0)
        for (size_t i = 0; i < n; i++)
            if (!strcmp(g[i].name, group))
                r = g[i].entries_read;
    an_group_info_free(g, n);
    return r;
}

/* How many keys of got are not distinct, and whether got as a set is want. */
static size_t repeats_and_set(const alist *got, const alist *want, const char *what)
{
    size_t rep = 0;
    for (size_t i = 0; i < got->n; i++) {
        bool wanted = false;
        for (size_t k = 0; k < want->n; k++)
            wanted |= !strcmp(got->key[i], want->key[k]);
        ck_assert_msg(wanted, "%s: unexpected alert %s", what, got->key[i]);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(got->key[i], got->key[k])) {
                rep++;
                break;
            }
    }
    ck_assert_msg(got->n - rep == want->n, "%s: %zu distinct alerts, expected %zu", what,
                  got->n - rep, want->n);
    return rep;
}

#define KILLS 3 /* kill_restart_republish: the consumer is killed this often */

/* Waits for the next gated delivery of consumer p (its rowid in
 * gate/marker) and releases it; the first delivery of every 3rd alert
 * (until KILLS were done, *done counts them, *firsts the first deliveries)
 * is a SIGKILL of p first, its rowid into killed. Returns true when p was
 * killed, false when p exited by itself. */
static bool gate_until_kill(e2e_proc *p, const char *gate, double deadline, long *killed,
                            int *done, size_t *firsts)
{
    while (!e2e_poll(&T, p)) {
        ck_assert_msg(e2e_now() < deadline, "the gated deliveries did not finish");
        char marker[PATH_MAX + 64], taken[PATH_MAX + 64], release[PATH_MAX + 64];
        snprintf(marker, sizeof marker, "%s/marker", gate);
        snprintf(taken, sizeof taken, "%s/taken", gate);
        if (rename(marker, taken) != 0) { /* atomic: a later marker stays */
            e2e_sleep_ms(1);
            continue;
        }
        char *txt = e2e_slurp(taken, NULL);
        long r = atol(txt);
        free(txt);
        snprintf(release, sizeof release, "%s/release.%ld", gate, r);
        if (access(release, F_OK) == 0)
            continue; /* a redelivery: it does not wait */
        /* the first delivery of alert r, waiting: kill at every 3rd */
        bool was_killed = false;
        if (*done < KILLS && (*firsts)++ % 3 == 0) {
            kill(p->pid, SIGKILL);
            e2e_wait(&T, p, 30000);
            ck_assert_int_eq(p->code, 128 + SIGKILL);
            ck_assert_int_lt(entries_read("g-kill"), NOUT);
            killed[(*done)++] = r;
            was_killed = true;
        }
        FILE *f = fopen(release, "w");
        ck_assert_ptr_nonnull(f);
        fclose(f);
        if (was_killed)
            return true;
    }
    return false;
}

/* Runs anomalyctl alerts on stream with the gated exec_cmd until it exits
 * by itself after KILLS kills (their rowids into killed); every alert it
 * printed, over all runs, into all. */
static void run_with_kills(const char *stream, const char *exec_cmd, const char *gate,
                           long killed[KILLS], alist *all)
{
    alist got;
    int done = 0;
    size_t firsts = 0;
    double deadline = e2e_now() + 300;
    memset(all, 0, sizeof *all);
    for (int k = 0; k <= KILLS; k++) {
        const char *argv[] = {e2e_bin("anomalyctl"), "alerts", "--group", "g-kill", "--stream",
                              stream, "--exit-when-idle", "1000", "--max-age", "0",
                              "--threshold", "0.99", "--min-rowid", "400", "--exec", exec_cmd,
                              NULL};
        e2e_proc p;
        e2e_spawn(&T, &p, "anomalyctl alerts (killed)", argv);
        bool was_killed = gate_until_kill(&p, gate, deadline, killed, &done, &firsts);
        if (!was_killed) {
            e2e_wait(&T, &p, 300000);
            E2E_EXPECT_EXIT0(&p);
        }
        stdout_alerts(&p, &got);
        for (size_t i = 0; i < got.n; i++)
            snprintf(all->key[all->n++], 64, "%s", got.key[i]);
        if (!was_killed)
            break;
    }
    ck_assert_int_eq(done, KILLS);
}

/* How many alerts of want are delivered again after the kills in the
 * deliveries of killed: a killed entry is handled again, so every alert it
 * had recorded (those of its rows up to the killed one) repeats. */
static size_t expected_repeats(const alist *want, const long killed[KILLS])
{
    size_t want_rep = 0;
    an_entry_list out = {0};
    e2e_xrange_all(&T, T.output, &out);
    for (int k = 0; k < KILLS; k++)
        for (size_t i = 0; i < out.n; i++) {
            const an_field *rows = an_entry_field(&out.v[i], "rows");
            long first, last;
            if (!rows || sscanf(rows->value, "%ld-%ld", &first, &last) != 2 ||
                killed[k] < first || killed[k] > last)
                continue;
            for (size_t a = 0; a < want->n; a++) {
                long r = atol(strchr(want->key[a], ' ') + 1);
                want_rep += r >= first && r <= killed[k];
            }
        }
    an_entry_list_free(&out);
    return want_rep;
}

/* Re-publishes copies of the output entries that carried alerts of want,
 * and of every 50th entry, with their fields (the same source). Returns
 * how many. */
static size_t republish_copies(const alist *want)
{
    an_entry_list l = {0};
    e2e_xrange_all(&T, T.output, &l);
    size_t copies = 0;
    for (size_t i = 0; i < l.n; i++) {
        const an_field *rows = an_entry_field(&l.v[i], "rows");
        bool carries = false;
        long first = 0, last = 0;
        if (rows && sscanf(rows->value, "%ld-%ld", &first, &last) == 2)
            for (size_t k = 0; k < want->n; k++) {
                long r = atol(strchr(want->key[k], ' ') + 1);
                carries |= r >= first && r <= last;
            }
        if (!carries && i % 50)
            continue;
        xadd_tmp(l.v[i].fields, l.v[i].nfields);
        copies++;
    }
    an_entry_list_free(&l);
    return copies;
}

START_TEST(kill_restart_republish)
{
    const char *stream = alert_stream("kill");
    alist want, got, all, execd, in_stream;
    size_t over;
    expected(UID, 0.99, 400, 3600, &want, &over);
    char execfile[PATH_MAX + 32], exec_cmd[8 * PATH_MAX], gate[PATH_MAX + 32];
    snprintf(execfile, sizeof execfile, "%s/exec.jsonl", T.tmpdir);
    snprintf(gate, sizeof gate, "%s/gate", T.tmpdir);
    ck_assert_int_eq(mkdir(gate, 0700), 0);
    /* The command appends the alert to execfile, names its rowid in
     * gate/marker, then waits for gate/release.<rowid>: the test decides
     * when each delivery ends, so a kill falls exactly inside one. */
    snprintf(exec_cmd, sizeof exec_cmd,
             "cd %s && cat > cur && cat cur >> %s && echo >> %s && "
             "r=$(grep -o '\"rowid\":[0-9]*' cur | cut -d: -f2) && echo $r > m.tmp && "
             "mv m.tmp marker && while [ ! -e release.$r ]; do sleep 0.005; done",
             gate, execfile, execfile);
    e2e_setenv(&T, "ANOMALYD_STREAMS_READ_COUNT", "4");
    long killed[KILLS];
    run_with_kills(stream, exec_cmd, gate, killed, &all);
    e2e_setenv(&T, "ANOMALYD_STREAMS_READ_COUNT", "64");
    ck_assert_int_eq(group_pending("g-kill"), 0);
    stream_alerts(stream, &in_stream);
    expect_same(&in_stream, &want, "alerts stream after kills");
    size_t want_rep = expected_repeats(&want, killed);
    size_t rep = repeats_and_set(&all, &want, "stdout over all runs");
    char *text = e2e_slurp(execfile, NULL);
    parse_lines(text, &execd);
    free(text);
    size_t exec_rep = repeats_and_set(&execd, &want, "--exec input");
    fprintf(stderr, "[alerts] %zu alerts; kills in the deliveries of rows %ld, %ld, %ld; stream "
            "exact; repeats on stdout %zu, to --exec %zu, expected %zu\n", want.n, killed[0],
            killed[1], killed[2], rep, exec_rep, want_rep);
    ck_assert_uint_eq(rep, want_rep);
    ck_assert_uint_eq(exec_rep, want_rep);

    /* Re-publish: nothing alerts again. */
    size_t copies = republish_copies(&want);
    ck_assert_uint_gt(copies, want.n);
    e2e_proc p;
    const char *argv[] = {e2e_bin("anomalyctl"), "alerts", "--group", "g-kill", "--stream",
                          stream, "--exit-when-idle", "1000", "--max-age", "0", "--threshold",
                          "0.99", "--min-rowid", "400", NULL};
    e2e_spawn(&T, &p, "anomalyctl alerts (re-published)", argv);
    e2e_wait(&T, &p, 300000);
    E2E_EXPECT_EXIT0(&p);
    stdout_alerts(&p, &got);
    ck_assert_msg(got.n == 0, "re-published copies alerted again: %s", got.key[0]);
    stream_alerts(stream, &in_stream);
    expect_same(&in_stream, &want, "alerts stream after the re-publish");
    ck_assert_int_eq(group_pending("g-kill"), 0);
    drop_tmp();
}
END_TEST

START_TEST(threshold_overrides)
{
    alist want, got;
    size_t over;
    e2e_proc p;
    /* threshold override by uid; a bad one by name is ignored (logged) */
    const char *s1 = alert_stream("override");
    expected(UID, 0.99, 1000, 3600, &want, &over);
    freeReplyObject(e2e_redis_cmd(&T, "HSET %s:thresholds %s 0.99", s1, UID));
    freeReplyObject(e2e_redis_cmd(&T, "HSET %s:thresholds e2e.alerts.jumpsup abc", s1));
    run_alerts(&p, "g-override", s1, "--max-age", "0", NULL, NULL, NULL, NULL);
    stdout_alerts(&p, &got);
    expect_same(&got, &want, "override by uid");
    ck_assert_uint_gt(e2e_count_lines(p.out_path, "(override by uid)"), 0);
    /* with only the bad override: the default threshold, and a warning */
    const char *s2 = alert_stream("badoverride");
    freeReplyObject(e2e_redis_cmd(&T, "HSET %s:thresholds e2e.alerts.jumpsup 1.5", s2));
    run_alerts(&p, "g-badoverride", s2, "--max-age", "0", NULL, NULL, NULL, NULL);
    expected(UID, 0.99999, 1000, 3600, &want, &over);
    stdout_alerts(&p, &got);
    expect_same(&got, &want, "bad override ignored");
    ck_assert_uint_gt(e2e_count_lines(p.err_path, "name threshold override is not a number"), 0);
}
END_TEST

START_TEST(exec_failure_and_poison)
{
    alist want, got;
    size_t over;
    e2e_proc p;
    expected(UID, 0.99999, 1000, 3600, &want, &over);
    /* a failing --exec: retried, then skipped; the alert is delivered anyway */
    const char *s3 = alert_stream("execfail");
    e2e_setenv(&T, "ANOMALYD_ALERTS_EXEC_RETRIES", "2");
    e2e_setenv(&T, "ANOMALYD_ALERTS_EXEC_BACKOFF_MS", "10");
    run_alerts(&p, "g-execfail", s3, "--max-age", "0", "--exec", "cat >/dev/null; exit 7", NULL,
               NULL);
    stdout_alerts(&p, &got);
    ck_assert_uint_eq(got.n, want.n);
    ck_assert_int_eq(e2e_xlen(&T, s3), (int64_t)want.n);
    ck_assert_uint_eq(e2e_count_lines(p.err_path, "--exec failed 3 times"), want.n);
    ck_assert_uint_eq(e2e_count_lines(p.err_path, "(last: exit status 7)"), want.n);

    /* poison output entries go to <stream>:dead, one each, and the rest is
     * handled: a body that is not JSON, a result without numbers */
    const char *s4 = alert_stream("poison");
    an_field bad1[] = {e2e_field("dataType", AN_DATATYPE_INFERENCE), e2e_field("model", UID),
                       e2e_field("source", "0-1"), e2e_field("encoding", "json"),
                       e2e_field("body", "{not json")};
    an_field bad2[] = {e2e_field("dataType", AN_DATATYPE_INFERENCE), e2e_field("model", UID),
                       e2e_field("source", "0-2"), e2e_field("encoding", "json"),
                       e2e_field("body", "{\"metric\":{\"uid\":\"x\"},\"results\":[{\"rowid\":\"7\"}]}")};
    an_field bad3[] = {e2e_field("dataType", AN_DATATYPE_INFERENCE), e2e_field("model", UID),
                       e2e_field("source", "0-3"), e2e_field("encoding", "json"),
                       e2e_field("body", "{\"metric\":{\"uid\":\"a b\"},\"results\":[]}")};
    xadd_tmp(bad1, 5);
    xadd_tmp(bad2, 5);
    xadd_tmp(bad3, 5);
    run_alerts(&p, "g-poison", s4, "--max-age", "0", NULL, NULL, NULL, NULL);
    stdout_alerts(&p, &got);
    expect_same(&got, &want, "alerts around poison entries");
    char dead[256];
    snprintf(dead, sizeof dead, "%s:dead", s4);
    an_entry_list l = {0};
    e2e_xrange_all(&T, dead, &l);
    ck_assert_uint_eq(l.n, 3);
    const an_field *r0 = an_entry_field(&l.v[0], "reason"), *r1 = an_entry_field(&l.v[1], "reason");
    ck_assert(r0 && r1);
    ck_assert_msg(strstr(r0->value, "body"), "reason: %s", r0->value);
    ck_assert_msg(strstr(r1->value, "results[0]: rowid, ts, value, rawAnomaly, anomaly must be numbers"),
                  "reason: %s", r1->value);
    const an_field *r2 = an_entry_field(&l.v[2], "reason");
    ck_assert_msg(r2 && strstr(r2->value, "metric.uid is not 1-40 printable characters"),
                  "reason: %s", r2 ? r2->value : "none");
    an_entry_list_free(&l);
    ck_assert_int_eq(group_pending("g-poison"), 0);
    drop_tmp();
}
END_TEST

START_TEST(bounds_at_and_past)
{
    alist want, got;
    size_t over;
    e2e_proc p;
    /* bounds: fired records, metrics, stream length, at and past */
    alist low;
    expected(UID, 0.99, 400, 3600, &low, &over);
    ck_assert_uint_ge(low.n, 4);
    char n_at[16], n_past[16];
    snprintf(n_at, sizeof n_at, "%zu", low.n);
    snprintf(n_past, sizeof n_past, "%zu", low.n - 2);
    const char *sa = alert_stream("bound_at"), *sp = alert_stream("bound_past");
    for (int past = 0; past < 2; past++) {
        const char *s = past ? sp : sa, *n = past ? n_past : n_at;
        e2e_setenv(&T, "ANOMALYD_ALERTS_FIRED_MAX", n);
        e2e_setenv(&T, "ANOMALYD_ALERTS_STREAM_MAXLEN", n);
        run_alerts(&p, past ? "g-bound-past" : "g-bound-at", s, "--max-age", "0", "--threshold",
                   "0.99", "--min-rowid", "400");
        stdout_alerts(&p, &got);
        expect_same(&got, &low, "bounded run stdout");
        size_t keep = past ? low.n - 2 : low.n;
        redisReply *h = e2e_redis_cmd(&T, "HLEN %s:fired", s);
        redisReply *z = e2e_redis_cmd(&T, "ZCARD %s:fired:order", s);
        ck_assert_int_eq(h->integer, (long long)keep);
        ck_assert_int_eq(z->integer, (long long)keep);
        freeReplyObject(h);
        freeReplyObject(z);
        ck_assert_int_eq(e2e_xlen(&T, s), (int64_t)keep);
        /* the newest (by row time) are kept: the oldest alert's record is gone past the bound */
        redisReply *f = e2e_redis_cmd(&T, "HEXISTS %s:fired %s", s, low.key[0]);
        ck_assert_int_eq(f->integer, past ? 0 : 1);
        freeReplyObject(f);
        f = e2e_redis_cmd(&T, "HEXISTS %s:fired %s", s, low.key[low.n - 1]);
        ck_assert_int_eq(f->integer, 1);
        freeReplyObject(f);
    }
    e2e_setenv(&T, "ANOMALYD_ALERTS_FIRED_MAX", "100000");
    e2e_setenv(&T, "ANOMALYD_ALERTS_STREAM_MAXLEN", "100000");

    /* metrics_max: a second metric's alert (a JSON body XADDed by hand)
     * comes after the jumpsup rows; at 2 both are kept, at 1 only it */
    const char *sm[2] = {alert_stream("metrics_at"), alert_stream("metrics_past")};
    char body[512];
    snprintf(body, sizeof body,
             "{\"metric\":{\"uid\":\"other-metric\",\"name\":\"other\"},\"results\":[{\"rowid\":5000,"
             "\"ts\":1500000000.0,\"value\":1.0,\"rawAnomaly\":1.0,\"anomaly\":1.0}]}");
    an_field other[] = {e2e_field("dataType", AN_DATATYPE_INFERENCE),
                        e2e_field("model", "other-metric"), e2e_field("source", "0-3"),
                        e2e_field("encoding", "json"), e2e_field("body", body)};
    xadd_tmp(other, 5);
    for (int past = 0; past < 2; past++) {
        e2e_setenv(&T, "ANOMALYD_ALERTS_METRICS_MAX", past ? "1" : "2");
        run_alerts(&p, past ? "g-metrics-past" : "g-metrics-at", sm[past], "--max-age", "0",
                   NULL, NULL, NULL, NULL);
        stdout_alerts(&p, &got);
        expected(UID, 0.99999, 1000, 3600, &want, &over);
        ck_assert_uint_eq(got.n, want.n + 1);
        redisReply *z = e2e_redis_cmd(&T, "ZCARD %s:last", sm[past]);
        ck_assert_int_eq(z->integer, past ? 1 : 2);
        freeReplyObject(z);
        z = e2e_redis_cmd(&T, "ZSCORE %s:last other-metric", sm[past]);
        ck_assert_int_eq(z->type, REDIS_REPLY_STRING);
        freeReplyObject(z);
    }
    e2e_setenv(&T, "ANOMALYD_ALERTS_METRICS_MAX", "100000");
    drop_tmp();
}
END_TEST

static Suite *alerts_suite(void)
{
    Suite *s = suite_create("alerts");
    TCase *tc = tcase_create("e2e");
    tcase_add_unchecked_fixture(tc, fixture_up, fixture_down);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, matches_database);
    tcase_add_test(tc, kill_restart_republish);
    tcase_add_test(tc, threshold_overrides);
    tcase_add_test(tc, exec_failure_and_poison);
    tcase_add_test(tc, bounds_at_and_past);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(alerts_suite(), CK_NORMAL);
}
