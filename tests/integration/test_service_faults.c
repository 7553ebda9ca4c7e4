/*
 * test_service_faults.c: end-to-end fault tests of anomalyd (see
 * test_service.c for the rest). They restart the shared Redis and
 * PostgreSQL of ops/stack.sh (restart-redis / restart-pg) while anomalyd
 * works, and signal it. Other programs using the stack at the same time see
 * those restarts too.
 */
#define _GNU_SOURCE
#include <check.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support_e2e.h"
#include "check_main.h"

static e2e T;

static void setup(void) { e2e_init(&T, "faults"); }
static void teardown(void) { e2e_fini(&T); }

#define JUMPSUP "likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"

/* Waits until metric uid has scored_rowid >= target; fails when the
 * background anomalyd exits first or after timeout_ms. */
static int64_t wait_scored(const char *uid, int64_t target, e2e_proc *d, int timeout_ms)
{
    double deadline = e2e_now() + timeout_ms / 1000.0;
    int64_t s = -1;
    for (;;) {
        s = e2e_scored_rowid(&T, uid);
        if (s >= target)
            return s;
        ck_assert_msg(!e2e_poll(&T, d), "%s exited (%d) before row %" PRId64
                                        " was scored (at %" PRId64 "); stderr tail:\n%s",
                      d->label, d->code, target, s, e2e_tail(d->err_path, 3000));
        ck_assert_msg(e2e_now() < deadline,
                      "row %" PRId64 " not scored within %d ms (scored_rowid %" PRId64
                      "); %s stderr tail:\n%s",
                      target, timeout_ms, s, d->label, e2e_tail(d->err_path, 3000));
        e2e_sleep_ms(50);
    }
}

static void stack(const char *verb)
{
    e2e_proc p;
    double t0 = e2e_now();
    int rc = e2e_stack(&T, verb, &p);
    ck_assert_msg(rc == 0, "ops/stack.sh %s exited %d; stdout:\n%s\nstderr:\n%s", verb, rc,
                  e2e_tail(p.out_path, 2000), e2e_tail(p.err_path, 2000));
    fprintf(stderr, "[e2e] ops/stack.sh %s took %.1f s\n", verb, e2e_now() - t0);
}

/* ------------------------------------------------------------------------
 * restarts: 4032 live 1-row batches; Redis restarted after ~1/3, PostgreSQL
 * after ~2/3, SIGTERM after ~5/6 (must exit 0 within 5 s), then another
 * consumer finishes (taking over what c1 left pending). Every row equals
 * the offline scoring with --batch-size 1, each is scored and published
 * exactly once, nothing is dead-lettered.
 */
START_TEST(restarts)
{
    double t0 = e2e_now();
    const char *csv = e2e_data(JUMPSUP);
    const char *uid = e2e_uid(&T, "restarts");
    const int64_t N = 4032;

    e2e_replay(&T, csv, "e2e.restarts", uid, 1, 0, (long)N, (long)(1 + N));
    an_entry_list in;
    e2e_xrange_all(&T, T.input, &in);
    ck_assert_uint_eq(in.n, (size_t)(1 + N));

    e2e_proc a;
    const char *argv_a[] = {e2e_bin("anomalyd"), "--consumer", "c1", NULL};
    e2e_spawn(&T, &a, "anomalyd --consumer c1 (restarts)", argv_a);

    int64_t at = wait_scored(uid, N / 3, &a, 180000);
    fprintf(stderr, "[e2e] restarts: restart-redis at scored_rowid %" PRId64 "\n", at);
    stack("restart-redis");
    at = wait_scored(uid, 2 * N / 3, &a, 180000);
    fprintf(stderr, "[e2e] restarts: restart-pg at scored_rowid %" PRId64 "\n", at);
    stack("restart-pg");
    at = wait_scored(uid, 5 * N / 6, &a, 180000);
    fprintf(stderr, "[e2e] restarts: SIGTERM at scored_rowid %" PRId64 "\n", at);

    /* SIGTERM: finish the entry in hand, exit 0 */
    double ts = e2e_now();
    ck_assert_int_eq(kill(a.pid, SIGTERM), 0);
    e2e_wait(&T, &a, 5000);
    ck_assert_msg(a.code == 0, "anomalyd after SIGTERM: exit %d%s (%.1f s); stderr tail:\n%s",
                  a.code, a.code == -1 ? " (still running after 5 s, killed)" : "",
                  e2e_now() - ts, e2e_tail(a.err_path, 3000));
    ck_assert_msg(e2e_count_lines(a.err_path, "{TAG:ANOM.STOP.OK}") == 1,
                  "no {TAG:ANOM.STOP.OK} line after SIGTERM; stderr tail:\n%s",
                  e2e_tail(a.err_path, 3000));
    fprintf(stderr, "[e2e] restarts: SIGTERM -> exit 0 in %.2f s; scored_rowid then %" PRId64
                    "\n",
            a.t_end - ts, e2e_scored_rowid(&T, uid));

    /* another consumer finishes; c1's pending entries are claimed */
    e2e_proc b;
    e2e_run_anomalyd(&T, &b, "c2", 1500, 240000);

    e2e_reconnect(&T, 30000);
    ck_assert_int_eq(e2e_scored_rowid(&T, uid), N);

    e2e_offline off;
    e2e_offline_run(&T, csv, "--batch-size", "1", &off);
    ck_assert_uint_eq(off.n, (size_t)N);
    e2e_expect_rows_match_offline(&T, uid, &off);
    e2e_offline_free(&off);

    /* the output: the defineModel result, then each row exactly once, in
     * order, each from its own input entry */
    an_metric m;
    e2e_get_metric(&T, uid, &m);
    ck_assert_msg(m.status == AN_METRIC_ACTIVE, "status %s", an_metric_status_name(m.status));
    an_data_rows rows = {0};
    e2e_get_rows(&T, uid, 1, N, &rows);
    json_t *outs = e2e_outputs(&T);
    size_t nout = json_array_size(outs);
    char cmd_id[80];
    snprintf(cmd_id, sizeof cmd_id, "define-%s", uid);
    ck_assert_msg(nout >= 1, "empty output stream");
    e2e_expect_command_entry(json_array_get(outs, 0), uid, "defineModel", cmd_id, 0, NULL, &m,
                             in.v[0].id, "zlib");
    int64_t next = 1;
    for (size_t k = 1; k < nout; k++) {
        ck_assert_msg(next <= N, "output %zu: more inference messages than rows (%zu outputs)",
                      k, nout);
        e2e_expect_inference_entry(json_array_get(outs, k), &m, &rows, &next,
                                   in.v[next].id, "zlib");
    }
    ck_assert_msg(nout == (size_t)(1 + N) && next == N + 1,
                  "output stream holds %zu entries (rows up to %" PRId64
                  "), expected 1 + %" PRId64,
                  nout, next - 1, N);
    json_decref(outs);
    an_data_rows_free(&rows);
    an_metric_clear(&m);
    an_entry_list_free(&in);

    const char *twice = "Anomaly was already processed";
    size_t n_twice = e2e_count_lines(a.err_path, twice) + e2e_count_lines(b.err_path, twice);
    ck_assert_msg(n_twice == 0, "%zu rows were processed twice ('%s' in the logs)", n_twice,
                  twice);
    e2e_expect_params_cache(&T, uid, N);
    int64_t pending = e2e_pending(&T), dead = e2e_xlen(&T, T.dead);
    ck_assert_msg(pending == 0 && dead == 0, "pending %" PRId64 ", dead letters %" PRId64,
                  pending, dead);
    fprintf(stderr, "[e2e] restarts: c1 log has %zu warning lines, c2 %zu; total %.1f s\n",
            e2e_count_lines(a.err_path, " WARNING "), e2e_count_lines(b.err_path, " WARNING "),
            e2e_now() - t0);
}
END_TEST

/* ------------------------------------------------------------------------
 * signals_idle: an idle anomalyd (blocked in XREADGROUP with the default
 * block_ms 2000) exits 0 within a few seconds of SIGTERM, and of SIGINT.
 */
START_TEST(signals_idle)
{
    e2e_setenv(&T, "ANOMALYD_STREAMS_BLOCK_MS", "2000");
    const int sigs[] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        e2e_proc d;
        const char *argv[] = {e2e_bin("anomalyd"), "--consumer", "idle", NULL};
        e2e_spawn(&T, &d, i ? "anomalyd (SIGINT)" : "anomalyd (SIGTERM)", argv);
        /* wait until it consumes */
        double deadline = e2e_now() + 30;
        while (e2e_count_lines(d.err_path, "consuming ") == 0) {
            ck_assert_msg(!e2e_poll(&T, &d), "%s exited %d at start; stderr:\n%s", d.label,
                          d.code, e2e_tail(d.err_path, 3000));
            ck_assert_msg(e2e_now() < deadline, "%s did not start consuming; stderr:\n%s",
                          d.label, e2e_tail(d.err_path, 3000));
            e2e_sleep_ms(50);
        }
        e2e_sleep_ms(300);
        double ts = e2e_now();
        ck_assert_int_eq(kill(d.pid, sigs[i]), 0);
        e2e_wait(&T, &d, 5000);
        ck_assert_msg(d.code == 0, "%s: exit %d%s; stderr tail:\n%s", d.label, d.code,
                      d.code == -1 ? " (still running after 5 s, killed)" : "",
                      e2e_tail(d.err_path, 3000));
        fprintf(stderr, "[e2e] signals_idle: %s -> exit 0 in %.2f s\n", d.label, d.t_end - ts);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("service_faults");
    an_check_add_case(s, "signals_idle", signals_idle, setup, teardown, 600);
    an_check_add_case(s, "restarts", restarts, setup, teardown, 600);
    return an_check_run(s, CK_VERBOSE);
}
