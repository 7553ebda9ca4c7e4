/*
 * test_service.c: end-to-end tests of the anomalyd service. The real
 * programs ($AN_BIN_DIR/anomalyd, anomalyctl) run as child processes
 * against the Redis and PostgreSQL of ops/stack.sh; the tests feed the input
 * stream (anomalyctl replay, or XADD through the library), then look at the
 * database, the output stream, the params cache and the dead-letter stream.
 * Every test has its own key prefix and metric uids (support_e2e.h). A
 * missing environment variable fails the test.
 *
 * The restart / signal tests are in test_service_faults.c.
 */
#define _GNU_SOURCE
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <zlib.h>

#include "support_e2e.h"
#include "support_repo.h"
#include "check_main.h"

static e2e T;

static void setup(void) { e2e_init(&T, "svc"); }
static void teardown(void) { e2e_fini(&T); }

#define JUMPSUP "likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"
#define EC2 "likelihood/htmengine/numenta_ec2_cpu_utilization_825cc2.inputs.csv"
#define EC2_VECTORS "likelihood/htmengine/numenta_ec2_cpu_utilization_825cc2.jsonl"
#define NYC_TAXI "likelihood/htmengine/numenta_nyc_taxi.inputs.csv"

/* Common end state: nothing pending in the group, no dead letters. */
static void expect_clean_group(void)
{
    int64_t pending = e2e_pending(&T);
    ck_assert_msg(pending == 0, "group %s on %s still has %" PRId64 " pending entries",
                  E2E_GROUP, T.input, pending);
    int64_t dead = e2e_xlen(&T, T.dead);
    ck_assert_msg(dead == 0, "dead-letter stream %s holds %" PRId64 " entries; first reason: %s",
                  T.dead, dead, dead ? "(see XRANGE)" : "");
}

static void report_time(const char *test, double t0)
{
    fprintf(stderr, "[e2e] %s: %.1f s\n", test, e2e_now() - t0);
}

/* ------------------------------------------------------------------------
 * 1. replay_matches_offline: anomalyctl replay (1440, 1440, then 1-row live
 * batches) -> anomalyd -> every row equals `anomalyctl likelihood
 * --schedule 1440,1440,1`; the output stream is one defineModel result then
 * one inference message per batch, all per docs/htmengine.md §6.1/§6.2; params
 * cache = DB.
 */
START_TEST(replay_matches_offline)
{
    double t0 = e2e_now();
    const char *csv = e2e_data(JUMPSUP);
    const char *uid = e2e_uid(&T, "jumpsup");
    const size_t N = 4032;
    const size_t NBATCH = 2 + 1152;

    e2e_replay(&T, csv, "e2e.jumpsup", uid, 1440, 2880, (long)N, (long)(1 + NBATCH));
    an_entry_list in;
    e2e_xrange_all(&T, T.input, &in);
    ck_assert_msg(in.n == 1 + NBATCH, "input stream holds %zu entries, replay said %zu", in.n,
                  1 + NBATCH);

    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 300000);
    fprintf(stderr, "[e2e] replay_matches_offline: anomalyd ran %.1f s\n", d.t_end - d.t_start);

    e2e_offline off;
    e2e_offline_run(&T, csv, "--schedule", "1440,1440,1", &off);
    ck_assert_uint_eq(off.n, N);
    e2e_csv csvd;
    e2e_csv_load(csv, &csvd);
    ck_assert_uint_eq(csvd.n, N);
    for (size_t i = 0; i < N; i++)
        ck_assert_msg(e2e_same_double(off.raw[i], csvd.raw[i]),
                      "offline raw of row %zu is not the CSV's", i + 1);
    e2e_csv_free(&csvd);

    /* the rows */
    e2e_expect_rows_match_offline(&T, uid, &off);

    /* the metric */
    an_metric m;
    e2e_get_metric(&T, uid, &m);
    ck_assert_msg(m.status == AN_METRIC_ACTIVE, "metric status %s, expected ACTIVE",
                  an_metric_status_name(m.status));
    ck_assert_msg(m.message == NULL, "metric message '%s', expected NULL", m.message);
    ck_assert_int_eq(m.last_rowid, (int64_t)N);
    ck_assert_int_eq(m.scored_rowid, (int64_t)N);
    json_t *mp = e2e_parse(m.model_params, "model_params");
    ck_assert_msg(json_is_object(json_object_get(mp, "modelConfig")),
                  "model_params lost its other keys: %s", m.model_params);
    ck_assert_msg(json_is_object(json_object_get(mp, "anomalyLikelihoodParams")),
                  "model_params has no anomalyLikelihoodParams object: %.300s", m.model_params);
    json_decref(mp);

    /* the output stream: defineModel result first, then one message per batch */
    json_t *outs = e2e_outputs(&T);
    ck_assert_msg(json_array_size(outs) == 1 + NBATCH,
                  "output stream holds %zu entries, expected 1 command result + %zu "
                  "inference messages",
                  json_array_size(outs), NBATCH);
    char cmd_id[80];
    snprintf(cmd_id, sizeof cmd_id, "define-%s", uid);
    e2e_expect_command_entry(json_array_get(outs, 0), uid, "defineModel", cmd_id, 0, NULL, &m,
                             in.v[0].id, "zlib");
    an_data_rows rows = {0};
    e2e_get_rows(&T, uid, 1, (int64_t)N, &rows);
    int64_t next = 1;
    for (size_t k = 1; k < json_array_size(outs); k++) {
        int64_t before = next;
        e2e_expect_inference_entry(json_array_get(outs, k), &m, &rows, &next, in.v[k].id,
                                   "zlib");
        int64_t want = k <= 2 ? 1440 : 1;
        ck_assert_msg(next - before == want,
                      "output %zu carries %" PRId64 " results, the batch had %" PRId64, k,
                      next - before, want);
    }
    ck_assert_int_eq(next, (int64_t)N + 1);
    an_data_rows_free(&rows);
    json_decref(outs);
    an_entry_list_free(&in);
    an_metric_clear(&m);

    e2e_expect_params_cache(&T, uid, (int64_t)N);
    expect_clean_group();
    e2e_offline_free(&off);
    report_time("replay_matches_offline", t0);
}
END_TEST

/* ------------------------------------------------------------------------
 * 2. helper_vectors_schedule: the helper case of the ec2 vectors (batches
 * 50, 30, 40, 1440, then 1..1440-row batches) sent as iRv2 entries; every
 * row's anomaly_score and the final params equal the vectors exactly.
 */
static json_t *load_helper_case(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    json_t *found = NULL;
    while (!found && getline(&line, &cap, f) >= 0) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        ck_assert_msg(j != NULL, "%s: bad JSON line: %s", path, je.text);
        const char *type = json_string_value(json_object_get(j, "type"));
        if (type && !strcmp(type, "helper"))
            found = j;
        else
            json_decref(j);
    }
    free(line);
    fclose(f);
    ck_assert_msg(found != NULL, "%s has no helper case", path);
    return found;
}

/* XADDs the batches of the helper vector (nb of them) for metric uid, in
 * alternating encodings, through res; every row's raw score must be the
 * CSV's; the vector's anomaly score of each row into expected[rowid]. */
static void send_vector_batches(const char *uid, const json_t *batches, size_t nb,
                                const e2e_csv *csv, double *expected, an_result *res)
{
    char id[AN_ID_MAX];
    int64_t next = 1;
    for (size_t b = 0; b < nb; b++) {
        json_t *bj = json_array_get(batches, b);
        json_t *rj = json_object_get(bj, "rows");
        size_t n = json_array_size(rj);
        ck_assert_int_eq(json_integer_value(json_object_get(bj, "firstRowid")), next);
        ck_assert_int_eq(json_integer_value(json_object_get(bj, "count")), (json_int_t)n);
        for (size_t i = 0; i < n; i++) {
            json_t *r = json_array_get(rj, i);
            int64_t rowid = json_integer_value(json_array_get(r, 0));
            ck_assert_int_eq(rowid, next + (int64_t)i);
            double raw = json_number_value(json_array_get(r, 1));
            ck_assert_msg(e2e_same_double(raw, csv->raw[rowid - 1]),
                          "vector raw of row %" PRId64 " is not the CSV's", rowid);
            expected[rowid] = json_number_value(json_array_get(r, 2)); /* int 0 -> 0.0 */
            res[i] = e2e_inf(rowid, raw);
        }
        /* alternate the input encodings */
        e2e_xadd_results(&T, uid, res, n, b % 2 ? AN_ENC_ZLIB : AN_ENC_JSON, id);
        next += (int64_t)n;
    }
}

/* The rows of metric uid (total) against the vector's expected scores and
 * the CSV's raw scores (csv); the first difference is reported. */
static void check_vector_rows(const char *uid, size_t total, const e2e_csv *csv,
                              const double *expected)
{
    an_data_rows rows = {0};
    e2e_get_rows(&T, uid, 1, (int64_t)total, &rows);
    ck_assert_uint_eq(rows.n, total);
    size_t bad = 0;
    char first[400] = "";
    for (size_t i = 0; i < rows.n; i++) {
        const an_data_row *r = &rows.v[i];
        char why[300] = "";
        if (!r->has_raw || !r->has_score || !r->has_display)
            snprintf(why, sizeof why, "not processed");
        else if (!e2e_same_double(r->raw, csv->raw[i]))
            snprintf(why, sizeof why, "raw %.17g, sent %.17g", r->raw, csv->raw[i]);
        else if (!e2e_same_double(r->anomaly_score, expected[r->rowid]))
            snprintf(why, sizeof why, "anomaly_score %.17g, vector %.17g", r->anomaly_score,
                     expected[r->rowid]);
        else if (r->display_value != an_display_value(expected[r->rowid], true))
            snprintf(why, sizeof why, "display_value %" PRId64 ", expected %" PRId64,
                     r->display_value, an_display_value(expected[r->rowid], true));
        if (why[0] && !bad++)
            snprintf(first, sizeof first, "rowid %" PRId64 ": %s", r->rowid, why);
    }
    an_data_rows_free(&rows);
    ck_assert_msg(bad == 0, "%zu of %zu rows differ from the helper vectors; first %s", bad,
                  total, first);
}

START_TEST(helper_vectors_schedule)
{
    double t0 = e2e_now();
    json_t *hc = load_helper_case(e2e_data(EC2_VECTORS));
    json_t *cfg = json_object_get(hc, "config");
    ck_assert_int_eq(json_integer_value(json_object_get(cfg, "statistics_min_sample_size")), 100);
    ck_assert_int_eq(json_integer_value(json_object_get(cfg, "statistics_refresh_rate")), 24);
    ck_assert_int_eq(json_integer_value(json_object_get(cfg, "statistics_sample_size")), 8640);
    ck_assert_int_eq(json_integer_value(json_object_get(hc, "rowidOfFirstInputRow")), 1);
    json_t *batches = json_object_get(hc, "batches");
    size_t nb = json_array_size(batches);
    ck_assert_uint_gt(nb, 4);

    e2e_csv csv;
    e2e_csv_load(e2e_data(EC2), &csv);
    const char *uid = e2e_uid(&T, "ec2vec");
    e2e_create_metric(&T, uid, "e2e.ec2", AN_METRIC_CREATE_PENDING);
    ck_assert_int_eq(e2e_add_rows(&T, uid, csv.ts, csv.value, csv.n), 1);

    char id[AN_ID_MAX];
    an_result def = e2e_cmd("define-ec2", "defineModel", 0, NULL);
    e2e_xadd_results(&T, uid, &def, 1, AN_ENC_JSON, id);

    /* the vector's rows: expected scores by rowid */
    size_t total = 0;
    for (size_t b = 0; b < nb; b++)
        total += json_array_size(json_object_get(json_array_get(batches, b), "rows"));
    ck_assert_uint_eq(total, csv.n);
    double *expected = calloc(total + 1, sizeof *expected);
    an_result *res = calloc(total, sizeof *res);
    ck_assert(expected && res);
    send_vector_batches(uid, batches, nb, &csv, expected, res);
    free(res);

    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 300000);

    check_vector_rows(uid, total, &csv, expected);
    free(expected);

    an_metric m;
    e2e_get_metric(&T, uid, &m);
    ck_assert_msg(m.status == AN_METRIC_ACTIVE, "status %s", an_metric_status_name(m.status));
    ck_assert_int_eq(m.scored_rowid, (int64_t)total);
    json_t *stored = e2e_stored_params(&m);
    json_t *want = json_object_get(json_array_get(batches, nb - 1), "storedParams");
    char where[600];
    bool same = e2e_json_same(want, stored, where, sizeof where);
    an_metric_clear(&m);
    json_decref(stored);
    ck_assert_msg(same, "stored anomalyLikelihoodParams differ from the last batch's "
                        "storedParams (left vector, right DB): %s",
                  where);

    json_t *outs = e2e_outputs(&T);
    ck_assert_uint_eq(json_array_size(outs), 1 + nb);
    json_decref(outs);
    e2e_expect_params_cache(&T, uid, (int64_t)total);
    expect_clean_group();
    e2e_csv_free(&csv);
    json_decref(hc);
    report_time("helper_vectors_schedule", t0);
}
END_TEST

/* ------------------------------------------------------------------------
 * 3. rejections and command results (docs/htmengine.md §1.3-§1.5).
 */
static void expect_rows_unprocessed(const char *uid, int64_t first, int64_t last)
{
    an_data_rows rows = {0};
    e2e_get_rows(&T, uid, first, last, &rows);
    ck_assert_int_eq((int64_t)rows.n, last - first + 1);
    for (size_t i = 0; i < rows.n; i++) {
        const an_data_row *r = &rows.v[i];
        ck_assert_msg(!r->has_raw && !r->has_score && !r->has_display && !r->predictions,
                      "metric %s row %" PRId64 " was written (raw %s, score %s, display %s, "
                      "predictions %s); the batch should have been rejected",
                      uid, r->rowid, r->has_raw ? "set" : "NULL",
                      r->has_score ? "set" : "NULL", r->has_display ? "set" : "NULL",
                      r->predictions ? r->predictions : "NULL");
    }
    an_data_rows_free(&rows);
}

static void expect_rows_processed(const char *uid, int64_t first, int64_t last, double raw)
{
    an_data_rows rows = {0};
    e2e_get_rows(&T, uid, first, last, &rows);
    ck_assert_int_eq((int64_t)rows.n, last - first + 1);
    for (size_t i = 0; i < rows.n; i++) {
        const an_data_row *r = &rows.v[i];
        ck_assert_msg(r->has_raw && r->has_score && r->has_display,
                      "metric %s row %" PRId64 " is not processed", uid, r->rowid);
        ck_assert_msg(e2e_same_double(r->raw, raw), "metric %s row %" PRId64 " raw %.17g", uid,
                      r->rowid, r->raw);
        /* fewer than 100 processed rows: not scored, anomaly 0
         * (docs/htmengine.md §2.3) */
        ck_assert_msg(r->anomaly_score == 0.0 && r->display_value == 0,
                      "metric %s row %" PRId64 ": anomaly_score %.17g display %" PRId64, uid,
                      r->rowid, r->anomaly_score, r->display_value);
    }
    an_data_rows_free(&rows);
}

static void expect_metric(const char *uid, int status, const char *message,
                          const char *model_params)
{
    an_metric m;
    e2e_get_metric(&T, uid, &m);
    ck_assert_msg(m.status == status, "metric %s: status %s, expected %s", uid,
                  an_metric_status_name(m.status), an_metric_status_name(status));
    bool msg_ok = message ? (m.message && !strcmp(m.message, message)) : m.message == NULL;
    ck_assert_msg(msg_ok, "metric %s: message '%s', expected '%s'", uid,
                  m.message ? m.message : "NULL", message ? message : "NULL");
    if (model_params)
        ck_assert_msg(m.model_params && !strcmp(m.model_params, model_params),
                      "metric %s: model_params changed to %.300s", uid,
                      m.model_params ? m.model_params : "NULL");
    ck_assert_msg(m.parameters && !strcmp(m.parameters, e2e_parameters(m.name)),
                  "metric %s: parameters changed to %.300s", uid,
                  m.parameters ? m.parameters : "NULL");
    an_metric_clear(&m);
}

static void expect_no_output(const json_t *outs, const char *id, const char *what)
{
    json_t *o = e2e_outputs_for(outs, id);
    size_t n = json_array_size(o);
    const char *first = n ? e2e_js(json_array_get(o, 0)) : "";
    json_decref(o);
    ck_assert_msg(n == 0, "%s (entry %s): %zu output entries published, expected none: %s",
                  what, id, n, first);
}

/* The outputs of one entry; exactly n of them. New reference. */
static json_t *outputs_of(const json_t *outs, const char *id, size_t n, const char *what)
{
    json_t *o = e2e_outputs_for(outs, id);
    ck_assert_msg(json_array_size(o) == n, "%s (entry %s): %zu output entries, expected %zu: %s",
                  what, id, json_array_size(o), n,
                  json_array_size(o) ? e2e_js(json_array_get(o, 0)) : "");
    return o;
}

#define ORIG_MP "{\"modelConfig\": {}, \"anomalyLikelihoodParams\": null}"

/* The entries and metrics of the rejections test: which entry id (id_*)
 * each case was added as, and its metric (u_*). */
typedef struct rej_case {
    char id_unknown[AN_ID_MAX], id_pending[AN_ID_MAX], id_c0[AN_ID_MAX], id_c[AN_ID_MAX],
        id_gap[AN_ID_MAX], id_d0[AN_ID_MAX], id_more[AN_ID_MAX], id_e0[AN_ID_MAX],
        id_none[AN_ID_MAX], id_dup[AN_ID_MAX], id_fail[AN_ID_MAX], id_fail2[AN_ID_MAX],
        id_deff[AN_ID_MAX], id_defok[AN_ID_MAX], id_del[AN_ID_MAX], id_delf[AN_ID_MAX],
        id_err2[AN_ID_MAX], id_unk_def[AN_ID_MAX], id_unk_fail[AN_ID_MAX], id_mixed[AN_ID_MAX],
        id_redef[AN_ID_MAX];
    const char *u_unknown, *u_pending, *u_mis, *u_gap, *u_more, *u_none, *u_dup, *u_fail,
        *u_deff, *u_defok, *u_del, *u_err, *u_unk, *u_mixed, *u_redef;
    char fail_msg[256];
} rej_case;

/* The inference batches the service must reject (or partly accept). */
static void rej_feed_inference(rej_case *c)
{
    /* unknown model */
    c->u_unknown = e2e_uid(&T, "unknown");
    an_result r2[] = {e2e_inf(1, 0.5), e2e_inf(2, 0.5)};
    e2e_xadd_results(&T, c->u_unknown, r2, 2, AN_ENC_JSON, c->id_unknown);

    /* CREATE_PENDING metric (no defineModel result yet) */
    c->u_pending = e2e_uid(&T, "pending");
    e2e_create_metric(&T, c->u_pending, "e2e.pending", AN_METRIC_CREATE_PENDING);
    e2e_add_simple_rows(&T, c->u_pending, 10);
    an_result r123[] = {e2e_inf(1, 0.25), e2e_inf(2, 0.25), e2e_inf(3, 0.25)};
    e2e_xadd_results(&T, c->u_pending, r123, 3, AN_ENC_JSON, c->id_pending);

    /* rowid mismatch: rows 1..4 scored, then results for rows 5 and 7 */
    c->u_mis = e2e_uid(&T, "mismatch");
    e2e_create_metric(&T, c->u_mis, "e2e.mismatch", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, c->u_mis, 10);
    an_result r1234[] = {e2e_inf(1, 0.125), e2e_inf(2, 0.125), e2e_inf(3, 0.125),
                         e2e_inf(4, 0.125)};
    e2e_xadd_results(&T, c->u_mis, r1234, 4, AN_ENC_JSON, c->id_c0);
    an_result r57[] = {e2e_inf(5, 0.5), e2e_inf(7, 0.5)};
    e2e_xadd_results(&T, c->u_mis, r57, 2, AN_ENC_JSON, c->id_c);

    /* gapped batch: rows 1, 2, 4 */
    c->u_gap = e2e_uid(&T, "gapped");
    e2e_create_metric(&T, c->u_gap, "e2e.gapped", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, c->u_gap, 10);
    an_result r124[] = {e2e_inf(1, 0.5), e2e_inf(2, 0.5), e2e_inf(4, 0.5)};
    e2e_xadd_results(&T, c->u_gap, r124, 3, AN_ENC_JSON, c->id_gap);

    /* more results than rows: rows 1..8 scored, then 9..12 of a 10-row metric */
    c->u_more = e2e_uid(&T, "beyond");
    e2e_create_metric(&T, c->u_more, "e2e.beyond", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, c->u_more, 10);
    an_result r1to8[8];
    for (int i = 0; i < 8; i++)
        r1to8[i] = e2e_inf(i + 1, 0.0625);
    e2e_xadd_results(&T, c->u_more, r1to8, 8, AN_ENC_JSON, c->id_d0);
    an_result r9to12[] = {e2e_inf(9, 0.5), e2e_inf(10, 0.5), e2e_inf(11, 0.5), e2e_inf(12, 0.5)};
    e2e_xadd_results(&T, c->u_more, r9to12, 4, AN_ENC_JSON, c->id_more);

    /* no matching rows: rows 1..10 scored, then 11..12 */
    c->u_none = e2e_uid(&T, "norows");
    e2e_create_metric(&T, c->u_none, "e2e.norows", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, c->u_none, 10);
    an_result r1to10[10];
    for (int i = 0; i < 10; i++)
        r1to10[i] = e2e_inf(i + 1, 0.0625);
    e2e_xadd_results(&T, c->u_none, r1to10, 10, AN_ENC_JSON, c->id_e0);
    an_result r1112[] = {e2e_inf(11, 0.5), e2e_inf(12, 0.5)};
    e2e_xadd_results(&T, c->u_none, r1112, 2, AN_ENC_JSON, c->id_none);

    /* duplicate rowid in one batch: 1, 1 */
    c->u_dup = e2e_uid(&T, "duprow");
    e2e_create_metric(&T, c->u_dup, "e2e.duprow", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, c->u_dup, 10);
    an_result r11[] = {e2e_inf(1, 0.5), e2e_inf(1, 0.5)};
    e2e_xadd_results(&T, c->u_dup, r11, 2, AN_ENC_JSON, c->id_dup);

    /* failed inference result: row 1 ok, row 2 failed -> ERROR, whole batch
     * rejected; a later batch for the ERROR metric is rejected too */
    c->u_fail = e2e_uid(&T, "inffail");
    e2e_create_metric(&T, c->u_fail, "e2e.inffail", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, c->u_fail, 10);
    snprintf(c->fail_msg, sizeof c->fail_msg,
             "2026-01-01T00:00:00.000000 - Inference failed for rowID=2 of modelID=%s "
             "(ValueError('boom')): (tb: ...)",
             c->u_fail);
    an_result rfail[] = {e2e_inf(1, 0.5), e2e_inf_fail(2, c->fail_msg)};
    e2e_xadd_results(&T, c->u_fail, rfail, 2, AN_ENC_JSON, c->id_fail);
    e2e_xadd_results(&T, c->u_fail, r2, 2, AN_ENC_JSON, c->id_fail2);
}

/* The command results, successful and failed, for every metric state. */
static void rej_feed_commands(rej_case *c)
{
    /* failed defineModel -> ERROR with its message; published */
    c->u_deff = e2e_uid(&T, "deffail");
    e2e_create_metric(&T, c->u_deff, "e2e.deffail", AN_METRIC_CREATE_PENDING);
    an_result cdeff = e2e_cmd("cmd-deff", "defineModel", 4, "define failed: bad swarm params");
    e2e_xadd_results(&T, c->u_deff, &cdeff, 1, AN_ENC_JSON, c->id_deff);

    /* successful defineModel: CREATE_PENDING -> ACTIVE, message cleared */
    c->u_defok = e2e_uid(&T, "defok");
    e2e_create_metric(&T, c->u_defok, "e2e.defok", AN_METRIC_CREATE_PENDING);
    ck_assert_int_eq(an_repo_set_metric_status(T.repo, c->u_defok, AN_METRIC_CREATE_PENDING,
                                               "stale message", AN_REPO_ANY_STATUS),
                     0);
    an_result cdefok = e2e_cmd("cmd-defok", "defineModel", 0, NULL);
    e2e_xadd_results(&T, c->u_defok, &cdefok, 1, AN_ENC_JSON, c->id_defok);

    /* deleteModel results (ok and failed): published, no DB change */
    c->u_del = e2e_uid(&T, "delete");
    e2e_create_metric(&T, c->u_del, "e2e.delete", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, c->u_del, 3);
    an_result cdel = e2e_cmd("cmd-del", "deleteModel", 0, NULL);
    e2e_xadd_results(&T, c->u_del, &cdel, 1, AN_ENC_JSON, c->id_del);
    an_result cdelf = e2e_cmd("cmd-delf", "deleteModel", 3, "no such model");
    e2e_xadd_results(&T, c->u_del, &cdelf, 1, AN_ENC_JSON, c->id_delf);

    /* failed command for a metric already in ERROR: message kept */
    c->u_err = e2e_uid(&T, "inerror");
    e2e_create_metric(&T, c->u_err, "e2e.inerror", AN_METRIC_ERROR);
    ck_assert_int_eq(an_repo_set_metric_status(T.repo, c->u_err, AN_METRIC_ERROR,
                                               "first failure", AN_REPO_ANY_STATUS),
                     0);
    an_result cerr2 = e2e_cmd("cmd-err2", "defineModel", 1, "second failure");
    e2e_xadd_results(&T, c->u_err, &cerr2, 1, AN_ENC_JSON, c->id_err2);

    /* command results for an unknown model: a successful defineModel is not
     * published (its message needs the metric), a failed one is */
    c->u_unk = e2e_uid(&T, "unkcmd");
    an_result cunk = e2e_cmd("cmd-unk", "defineModel", 0, NULL);
    e2e_xadd_results(&T, c->u_unk, &cunk, 1, AN_ENC_JSON, c->id_unk_def);
    an_result cunkf = e2e_cmd("cmd-unkf", "defineModel", 1, "failed for nobody");
    e2e_xadd_results(&T, c->u_unk, &cunkf, 1, AN_ENC_JSON, c->id_unk_fail);

    /* defineModel + inference in one entry: command first, then inference */
    c->u_mixed = e2e_uid(&T, "mixed");
    e2e_create_metric(&T, c->u_mixed, "e2e.mixed", AN_METRIC_CREATE_PENDING);
    e2e_add_simple_rows(&T, c->u_mixed, 10);
    an_result rmixed[] = {e2e_cmd("cmd-mixed", "defineModel", 0, NULL), e2e_inf(1, 0.75),
                          e2e_inf(2, 0.75)};
    e2e_xadd_results(&T, c->u_mixed, rmixed, 3, AN_ENC_ZLIB, c->id_mixed);

    /* defineModel for an ACTIVE metric (duplicate): stays ACTIVE, published */
    c->u_redef = e2e_uid(&T, "redefine");
    e2e_create_metric(&T, c->u_redef, "e2e.redefine", AN_METRIC_ACTIVE);
    an_result credef = e2e_cmd("cmd-redef", "defineModel", 0, NULL);
    e2e_xadd_results(&T, c->u_redef, &credef, 1, AN_ENC_JSON, c->id_redef);
}

/* What became of the inference batches of rej_feed_inference. */
static void rej_check_inference(const json_t *outs, const rej_case *c)
{
    /* unknown model */
    expect_no_output(outs, c->id_unknown, "inference for an unknown model");
    ck_assert(!e2e_metric_exists(&T, c->u_unknown));

    /* CREATE_PENDING */
    expect_no_output(outs, c->id_pending, "inference for a CREATE_PENDING metric");
    expect_rows_unprocessed(c->u_pending, 1, 10);
    expect_metric(c->u_pending, AN_METRIC_CREATE_PENDING, NULL, ORIG_MP);

    /* mismatch */
    an_metric m;
    an_data_rows rows = {0};
    json_t *o = outputs_of(outs, c->id_c0, 1, "rows 1..4");
    e2e_get_metric(&T, c->u_mis, &m);
    e2e_get_rows(&T, c->u_mis, 1, 10, &rows);
    int64_t next = 1;
    e2e_expect_inference_entry(json_array_get(o, 0), &m, &rows, &next, c->id_c0, "json");
    json_decref(o);
    an_data_rows_free(&rows);
    an_metric_clear(&m);
    expect_no_output(outs, c->id_c, "rowid mismatch (results for rows 5 and 7)");
    expect_rows_processed(c->u_mis, 1, 4, 0.125);
    expect_rows_unprocessed(c->u_mis, 5, 10);
    expect_metric(c->u_mis, AN_METRIC_ACTIVE, NULL, NULL);

    /* gapped */
    expect_no_output(outs, c->id_gap, "gapped batch (rows 1, 2, 4)");
    expect_rows_unprocessed(c->u_gap, 1, 10);
    expect_metric(c->u_gap, AN_METRIC_ACTIVE, NULL, ORIG_MP);

    /* more results than rows */
    o = outputs_of(outs, c->id_d0, 1, "rows 1..8");
    json_decref(o);
    expect_no_output(outs, c->id_more, "results for rows 9..12 of a 10-row metric");
    expect_rows_processed(c->u_more, 1, 8, 0.0625);
    expect_rows_unprocessed(c->u_more, 9, 10);

    /* no matching rows */
    o = outputs_of(outs, c->id_e0, 1, "rows 1..10");
    json_decref(o);
    expect_no_output(outs, c->id_none, "results for rows 11..12 of a 10-row metric");
    expect_rows_processed(c->u_none, 1, 10, 0.0625);

    /* duplicate rowid */
    expect_no_output(outs, c->id_dup, "batch with rowid 1 twice");
    expect_rows_unprocessed(c->u_dup, 1, 10);
    expect_metric(c->u_dup, AN_METRIC_ACTIVE, NULL, ORIG_MP);

    /* failed inference */
    expect_no_output(outs, c->id_fail, "batch with a failed inference result");
    expect_no_output(outs, c->id_fail2, "batch for a metric in ERROR");
    expect_rows_unprocessed(c->u_fail, 1, 10);
    expect_metric(c->u_fail, AN_METRIC_ERROR, c->fail_msg, ORIG_MP);
}

/* The one output entry of id, a command result of uid (m: the metric the
 * entry must describe, NULL: none). */
static void rej_expect_command(const json_t *outs, const char *id, const char *what,
                               const char *uid, const char *method, const char *cmd_id,
                               int status, const char *message, const an_metric *m)
{
    json_t *o = outputs_of(outs, id, 1, what);
    e2e_expect_command_entry(json_array_get(o, 0), uid, method, cmd_id, status, message, m,
                             id, "json");
    json_decref(o);
}

/* What became of the command results of rej_feed_commands, but for the
 * mixed entry (rej_check_mixed). */
static void rej_check_commands(const json_t *outs, const rej_case *c)
{
    /* failed defineModel */
    rej_expect_command(outs, c->id_deff, "failed defineModel", c->u_deff, "defineModel",
                       "cmd-deff", 4, "define failed: bad swarm params", NULL);
    expect_metric(c->u_deff, AN_METRIC_ERROR, "define failed: bad swarm params", ORIG_MP);

    /* successful defineModel */
    expect_metric(c->u_defok, AN_METRIC_ACTIVE, NULL, ORIG_MP);
    an_metric m;
    e2e_get_metric(&T, c->u_defok, &m);
    rej_expect_command(outs, c->id_defok, "successful defineModel", c->u_defok, "defineModel",
                       "cmd-defok", 0, NULL, &m);
    an_metric_clear(&m);

    /* deleteModel */
    rej_expect_command(outs, c->id_del, "deleteModel", c->u_del, "deleteModel", "cmd-del", 0,
                       NULL, NULL);
    rej_expect_command(outs, c->id_delf, "failed deleteModel", c->u_del, "deleteModel",
                       "cmd-delf", 3, "no such model", NULL);
    expect_metric(c->u_del, AN_METRIC_ACTIVE, NULL, ORIG_MP);
    expect_rows_unprocessed(c->u_del, 1, 3);

    /* failed command on a metric already in ERROR */
    rej_expect_command(outs, c->id_err2, "failed defineModel of a metric in ERROR", c->u_err,
                       "defineModel", "cmd-err2", 1, "second failure", NULL);
    expect_metric(c->u_err, AN_METRIC_ERROR, "first failure", ORIG_MP);

    /* unknown model commands */
    expect_no_output(outs, c->id_unk_def, "successful defineModel for an unknown model");
    rej_expect_command(outs, c->id_unk_fail, "failed defineModel for an unknown model",
                       c->u_unk, "defineModel", "cmd-unkf", 1, "failed for nobody", NULL);
    ck_assert(!e2e_metric_exists(&T, c->u_unk));

    /* duplicate defineModel */
    e2e_get_metric(&T, c->u_redef, &m);
    rej_expect_command(outs, c->id_redef, "defineModel for an ACTIVE metric", c->u_redef,
                       "defineModel", "cmd-redef", 0, NULL, &m);
    an_metric_clear(&m);
    expect_metric(c->u_redef, AN_METRIC_ACTIVE, NULL, ORIG_MP);
}

/* The mixed entry: its defineModel result, then its inference result. */
static void rej_check_mixed(const json_t *outs, const rej_case *c)
{
    an_metric m;
    an_data_rows rows = {0};
    json_t *o = outputs_of(outs, c->id_mixed, 2, "defineModel + inference in one entry");
    e2e_get_metric(&T, c->u_mixed, &m);
    ck_assert_msg(m.status == AN_METRIC_ACTIVE, "mixed: status %s",
                  an_metric_status_name(m.status));
    e2e_expect_command_entry(json_array_get(o, 0), c->u_mixed, "defineModel", "cmd-mixed", 0,
                             NULL, &m, c->id_mixed, "json");
    e2e_get_rows(&T, c->u_mixed, 1, 10, &rows);
    int64_t next = 1;
    e2e_expect_inference_entry(json_array_get(o, 1), &m, &rows, &next, c->id_mixed, "json");
    ck_assert_int_eq(next, 3);
    an_data_rows_free(&rows);
    an_metric_clear(&m);
    json_decref(o);
    expect_rows_processed(c->u_mixed, 1, 2, 0.75);
    expect_rows_unprocessed(c->u_mixed, 3, 10);
}

START_TEST(rejections)
{
    double t0 = e2e_now();
    /* JSON output bodies in this test (the others use the zlib default) */
    e2e_setenv(&T, "ANOMALYD_STREAMS_OUTPUT_ENCODING", "json");
    /* An inference batch for a CREATE_PENDING metric is deferred (its
     * defineModel may be in another consumer's hands) for defer_max_ms, then
     * rejected as the original did; keep that wait short here (it must be
     * >= claim_idle_ms, 2000 in every e2e context). */
    e2e_setenv(&T, "ANOMALYD_STREAMS_DEFER_MAX_MS", "2000");
    static rej_case c;
    memset(&c, 0, sizeof c);
    rej_feed_inference(&c);
    rej_feed_commands(&c);

    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    expect_clean_group();
    json_t *outs = e2e_outputs(&T);
    rej_check_inference(outs, &c);
    rej_check_commands(outs, &c);
    rej_check_mixed(outs, &c);

    /* nothing else was published */
    size_t expected_outputs = 3 /* c0, d0, e0 */ + 1 /* deff */ + 1 /* defok */ + 2 /* del */ +
                              1 /* err2 */ + 1 /* unk fail */ + 2 /* mixed */ + 1 /* redef */;
    ck_assert_msg(json_array_size(outs) == expected_outputs,
                  "output stream holds %zu entries, expected %zu", json_array_size(outs),
                  expected_outputs);
    json_decref(outs);
    report_time("rejections", t0);
}
END_TEST

/* ------------------------------------------------------------------------
 * 4. dead_letters: poison entries go to <prefix>dead with the original
 * fields + reason, source, deliveries, consumer; the service keeps going.
 */

/* zlib stream of `total` zero bytes, deflated in chunks. */
static char *zlib_zeros(size_t total, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ck_assert_int_eq(deflateInit(&zs, 9), Z_OK);
    size_t cap = total / 500 + 4096, len = 0;
    char *out = malloc(cap);
    static unsigned char zeros[1 << 20];
    size_t fed = 0;
    int flush = Z_NO_FLUSH;
    ck_assert_ptr_nonnull(out);
    for (;;) {
        if (zs.avail_in == 0 && flush == Z_NO_FLUSH) {
            size_t k = total - fed < sizeof zeros ? total - fed : sizeof zeros;
            zs.next_in = zeros;
            zs.avail_in = (uInt)k;
            fed += k;
            if (fed == total)
                flush = Z_FINISH;
        }
        if (cap - len < 65536) {
            cap *= 2;
            out = realloc(out, cap);
            ck_assert_ptr_nonnull(out);
        }
        zs.next_out = (unsigned char *)out + len;
        zs.avail_out = (uInt)(cap - len);
        int rc = deflate(&zs, flush);
        len = cap - zs.avail_out;
        if (rc == Z_STREAM_END)
            break;
        ck_assert_msg(rc == Z_OK || rc == Z_BUF_ERROR, "deflate: %d", rc);
    }
    deflateEnd(&zs);
    *outlen = len;
    return out;
}

typedef struct poison {
    const char *what;
    const char *keyword; /* the reason must mention it (case-insensitive) */
    an_field f[3];
    size_t nf;
    char id[AN_ID_MAX];
} poison;

/* An otherwise valid entry whose processing keeps failing: XADDed first,
 * read by a consumer "ghost" that never acks, with 5 unfinished processing
 * attempts on record (as if 5 consumers had crashed while scoring it); also
 * re-claimed 5 times, which alone must not count. anomalyd takes it over
 * after claim_idle_ms, counts its 6th attempt and dead-letters it: over
 * max_deliveries (5). Its metric into *umd, its entry id into md_id. */
static void dl_feed_over_delivered(const char **umd, char md_id[AN_ID_MAX])
{
    *umd = e2e_uid(&T, "maxdeliv");
    e2e_create_metric(&T, *umd, "e2e.maxdeliveries", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, *umd, 2);
    an_result mdr[] = {e2e_inf(1, 0.5), e2e_inf(2, 0.5)};
    e2e_xadd_results(&T, *umd, mdr, 2, AN_ENC_JSON, md_id);
    ck_assert_int_eq(an_group_create(T.rd, T.input, E2E_GROUP, "0", NULL), 0);
    an_entry_list ghost = {0};
    ck_assert_int_eq(an_read_group(T.rd, T.input, E2E_GROUP, "ghost", ">", 1, -1, &ghost), 0);
    ck_assert_msg(ghost.n == 1 && !strcmp(ghost.v[0].id, md_id), "ghost read %zu entries",
                  ghost.n);
    an_entry_list_free(&ghost);
    for (int i = 0; i < 5; i++)
        freeReplyObject(e2e_redis_cmd(&T, "XCLAIM %s %s ghost 0 %s", T.input, E2E_GROUP, md_id));
    freeReplyObject(e2e_redis_cmd(&T, "HSET %s:attempts %s 5", T.input, md_id));
}

/* Stored params that do not load: the batch is dead-lettered too. */
static const char *const DL_BAD_MP[2] = {
    "{\"modelConfig\": {}, \"anomalyLikelihoodParams\": \"garbage\"}",
    "{\"modelConfig\": {}, \"anomalyLikelihoodParams\": "};

/* The two metrics with params DL_BAD_MP[k] (uids into ubad) and one batch
 * for each (its entry id into bad_id, its text into bad_batch). */
static void dl_feed_bad_params(const char *ubad[2], char bad_id[2][AN_ID_MAX],
                               char bad_batch[2][128])
{
    for (int k = 0; k < 2; k++) {
        ubad[k] = e2e_uid(&T, k ? "mpnotjson" : "mpbad");
        an_new_metric nm;
        memset(&nm, 0, sizeof nm);
        nm.uid = ubad[k];
        nm.name = "e2e.badparams";
        nm.server = "e2e-server";
        nm.datasource = "custom";
        nm.parameters = e2e_parameters("e2e.badparams");
        nm.status = AN_METRIC_ACTIVE;
        nm.model_params = DL_BAD_MP[k];
        ck_assert_int_eq(an_repo_create_metric(T.repo, &nm), 0);
        e2e_add_simple_rows(&T, ubad[k], 3);
        snprintf(bad_batch[k], sizeof bad_batch[k], "[[\"iRv2\",1,0,0.5,null,null]]");
        an_field bf[2] = {e2e_field("model", ubad[k]), e2e_field("batch", bad_batch[k])};
        e2e_xadd_fields(&T, bf, 2, bad_id[k]);
    }
}

/* The dead letter mde of the over-delivered entry md_id of metric umd. */
static void dl_check_over_delivered(const an_entry *mde, const char *md_id, const char *umd)
{
    const an_field *mds = an_entry_field(mde, "source");
    const an_field *mdreason = an_entry_field(mde, "reason");
    const an_field *mddeliv = an_entry_field(mde, "deliveries");
    ck_assert_msg(mds && !strcmp(mds->value, md_id), "last dead letter: source %s, expected %s",
                  mds ? mds->value : "(missing)", md_id);
    ck_assert_msg(mdreason && strcasestr(mdreason->value, "max_deliveries"),
                  "over-delivered entry: reason '%s' does not mention max_deliveries",
                  mdreason ? mdreason->value : "(missing)");
    ck_assert_msg(mddeliv && atoi(mddeliv->value) > 1,
                  "over-delivered entry: deliveries %s, expected > 1",
                  mddeliv ? mddeliv->value : "(missing)");
    ck_assert_msg(strstr(mdreason->value, "attempted 6 times"),
                  "over-delivered entry: reason '%s', expected 6 attempts", mdreason->value);
    ck_assert_msg(an_entry_field(mde, "batch") && an_entry_field(mde, "model") &&
                      mde->nfields == 6,
                  "over-delivered entry: %zu fields, expected model, batch + 4", mde->nfields);
    expect_rows_unprocessed(umd, 1, 2);
}

/* The dead letters e[0..1] of the stored-params cases of dl_feed_bad_params;
 * their metrics unchanged. */
static void dl_check_bad_params(const an_entry *dl, const char *const ubad[2],
                                char bad_id[2][AN_ID_MAX], char bad_batch[2][128])
{
    for (int k = 0; k < 2; k++) {
        const an_entry *e = &dl[k];
        const an_field *src = an_entry_field(e, "source");
        const an_field *reason = an_entry_field(e, "reason");
        const an_field *model = an_entry_field(e, "model");
        const an_field *batch = an_entry_field(e, "batch");
        ck_assert_msg(src && !strcmp(src->value, bad_id[k]) && model &&
                          !strcmp(model->value, ubad[k]) && batch &&
                          !strcmp(batch->value, bad_batch[k]) && e->nfields == 6,
                      "dead letter for stored params case %d: source %s model %s, %zu fields", k,
                      src ? src->value : "-", model ? model->value : "-", e->nfields);
        ck_assert_msg(reason && strcasestr(reason->value, "params"),
                      "dead letter for unloadable stored params (%s): reason '%s' does not "
                      "mention params",
                      DL_BAD_MP[k], reason ? reason->value : "(missing)");
        expect_rows_unprocessed(ubad[k], 1, 3);
        an_metric bm;
        e2e_get_metric(&T, ubad[k], &bm);
        bool same = bm.status == AN_METRIC_ACTIVE && bm.model_params &&
                    !strcmp(bm.model_params, DL_BAD_MP[k]);
        an_metric_clear(&bm);
        ck_assert_msg(same, "metric with unloadable params was changed");
    }
}

/* Dead letter e (number i) of poison entry p: the original fields, then
 * reason (mentioning p->keyword), source, deliveries 1, consumer c1. */
static void dl_check_poison(const an_entry *e, size_t i, const poison *p)
{
    const an_field *src = an_entry_field(e, "source");
    ck_assert_msg(src && !strcmp(src->value, p->id),
                  "dead letter %zu (%s): source %s, expected %s", i, p->what,
                  src ? src->value : "(missing)", p->id);
    ck_assert_msg(e->nfields == p->nf + 4,
                  "dead letter of '%s' has %zu fields, expected the %zu original ones + 4",
                  p->what, e->nfields, p->nf);
    for (size_t k = 0; k < p->nf; k++) {
        const an_field *a = &e->fields[k], *b = &p->f[k];
        ck_assert_msg(a->name_len == b->name_len && !memcmp(a->name, b->name, b->name_len) &&
                          a->value_len == b->value_len &&
                          !memcmp(a->value, b->value, b->value_len),
                      "dead letter of '%s': field %zu is '%.*s' (%zu bytes), expected the "
                      "original '%s' (%zu bytes)",
                      p->what, k, (int)a->name_len, a->name, a->value_len, b->name,
                      b->value_len);
    }
    const char *names[] = {"reason", "source", "deliveries", "consumer"};
    for (size_t k = 0; k < 4; k++) {
        const an_field *f = &e->fields[p->nf + k];
        ck_assert_msg(f->name_len == strlen(names[k]) && !memcmp(f->name, names[k], f->name_len),
                      "dead letter of '%s': field %zu is '%.*s', expected '%s'", p->what,
                      p->nf + k, (int)f->name_len, f->name, names[k]);
    }
    const an_field *reason = an_entry_field(e, "reason");
    ck_assert_msg(reason && reason->value_len > 0 && strcasestr(reason->value, p->keyword),
                  "dead letter of '%s': reason '%s' does not mention '%s'", p->what,
                  reason ? reason->value : "(missing)", p->keyword);
    const an_field *dv = an_entry_field(e, "deliveries");
    ck_assert_msg(dv && !strcmp(dv->value, "1"), "dead letter of '%s': deliveries %s",
                  p->what, dv ? dv->value : "(missing)");
    const an_field *cons = an_entry_field(e, "consumer");
    ck_assert_msg(cons && !strcmp(cons->value, "c1"), "dead letter of '%s': consumer %s",
                  p->what, cons ? cons->value : "(missing)");
}

/* The good batch good_id of metric u after the poison entries was
 * processed and is the only output; nothing is left pending. */
static void dl_check_good(const char *u, const char *good_id)
{
    json_t *outs = e2e_outputs(&T);
    ck_assert_msg(json_array_size(outs) == 1, "output stream holds %zu entries, expected 1",
                  json_array_size(outs));
    an_metric m;
    an_data_rows rows = {0};
    e2e_get_metric(&T, u, &m);
    e2e_get_rows(&T, u, 1, 3, &rows);
    int64_t next = 1;
    e2e_expect_inference_entry(json_array_get(outs, 0), &m, &rows, &next, good_id, "zlib");
    ck_assert_int_eq(m.scored_rowid, 3);
    an_data_rows_free(&rows);
    an_metric_clear(&m);
    json_decref(outs);
    expect_rows_processed(u, 1, 3, 0.5);
    int64_t pending = e2e_pending(&T);
    ck_assert_msg(pending == 0, "%" PRId64 " entries still pending", pending);
}

START_TEST(dead_letters)
{
    double t0 = e2e_now();
    e2e_setenv(&T, "ANOMALYD_STREAMS_MAX_INFLATED_BYTES", "1MiB");
    e2e_setenv(&T, "ANOMALYD_STREAMS_MAX_ENTRY_BYTES", "4MiB");
    const char *u = e2e_uid(&T, "dl");
    e2e_create_metric(&T, u, "e2e.deadletters", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, u, 3);

    size_t bomb_len = 0;
    char *bomb = zlib_zeros((size_t)100 << 20, &bomb_len);
    ck_assert_uint_lt(bomb_len, 1 << 20);
    const size_t big_len = (size_t)10 << 20;
    char *big = malloc(big_len);
    ck_assert_ptr_nonnull(big);
    const char *head = "[[\"iRv2\",1,0,0.5,null,null]";
    memset(big, ' ', big_len);
    memcpy(big, head, strlen(head));
    big[big_len - 1] = ']';

    const char *umd;
    char md_id[AN_ID_MAX];
    dl_feed_over_delivered(&umd, md_id);

    poison p[] = {
        {"batch not JSON", "JSON", {e2e_field("model", u), e2e_field("batch", "[[\"iRv2\",1,0,0.5,null,null]")}, 2, ""},
        {"rowID a string", "rowID", {e2e_field("model", u), e2e_field("batch", "[[\"iRv2\",\"1\",0,0.5,null,null]]")}, 2, ""},
        {"unknown signature", "signature", {e2e_field("model", u), e2e_field("batch", "[[\"xR\",1,0,0.5,null,null]]")}, 2, ""},
        {"zlib bomb", "max_inflated_bytes", {e2e_field("model", u), e2e_field_bin("batch", bomb, bomb_len), e2e_field("encoding", "zlib")}, 3, ""},
        {"missing batch", "batch", {e2e_field("model", u)}, 1, ""},
        {"missing model", "model", {e2e_field("batch", "[[\"iRv2\",1,0,0.5,null,null]]")}, 1, ""},
        {"10 MB entry", "max_entry_bytes", {e2e_field("model", u), e2e_field_bin("batch", big, big_len)}, 2, ""},
        {"unknown encoding", "encoding", {e2e_field("model", u), e2e_field("batch", "[[\"iRv2\",1,0,0.5,null,null]]"), e2e_field("encoding", "lz4")}, 3, ""},
        {"status 0 without a score", "anomalyScore", {e2e_field("model", u), e2e_field("batch", "[[\"iRv2\",1,0,null,null,null]]")}, 2, ""},
        {"model not printable", "model", {e2e_field("model", "bad uid"), e2e_field("batch", "[[\"iRv2\",1,0,0.5,null,null]]")}, 2, ""},
        {"empty batch", "empty", {e2e_field("model", u), e2e_field("batch", "[]")}, 2, ""},
        {"batch not an array", "array", {e2e_field("model", u), e2e_field("batch", "{\"rowID\":1}")}, 2, ""},
    };
    const size_t np = sizeof p / sizeof p[0];
    for (size_t i = 0; i < np; i++)
        e2e_xadd_fields(&T, p[i].f, p[i].nf, p[i].id);
    const char *ubad[2];
    char bad_id[2][AN_ID_MAX];
    char bad_batch[2][128];
    dl_feed_bad_params(ubad, bad_id, bad_batch);

    char good_id[AN_ID_MAX];
    an_result good[] = {e2e_inf(1, 0.5), e2e_inf(2, 0.5), e2e_inf(3, 0.5)};
    e2e_xadd_results(&T, u, good, 3, AN_ENC_JSON, good_id);

    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);

    an_entry_list dl;
    e2e_xrange_all(&T, T.dead, &dl);
    ck_assert_msg(dl.n == np + 3, "dead-letter stream holds %zu entries, expected %zu", dl.n,
                  np + 3);
    /* the over-delivered entry (claimed last, so dead-lettered last) */
    dl_check_over_delivered(&dl.v[np + 2], md_id, umd);
    dl_check_bad_params(&dl.v[np], ubad, bad_id, bad_batch);
    for (size_t i = 0; i < np; i++)
        dl_check_poison(&dl.v[i], i, &p[i]);
    an_entry_list_free(&dl);
    free(bomb);
    free(big);

    dl_check_good(u, good_id);
    report_time("dead_letters", t0);
}
END_TEST

/* ------------------------------------------------------------------------
 * 5. params_cache_repair: a deleted hash and a stale hash (watermark 1 and
 * misleading params) are not trusted, and the next publish repairs both.
 */
static void send_rows(const char *uid, int64_t first, int64_t last, const double *raw,
                      char id[AN_ID_MAX])
{
    size_t n = (size_t)(last - first + 1);
    an_result *res = calloc(n, sizeof *res);
    ck_assert_ptr_nonnull(res);
    for (size_t i = 0; i < n; i++)
        res[i] = e2e_inf(first + (int64_t)i, raw[first - 1 + (int64_t)i]);
    e2e_xadd_results(&T, uid, res, n, AN_ENC_JSON, id);
    free(res);
}

START_TEST(params_cache_repair)
{
    double t0 = e2e_now();
    const size_t N = 501;
    e2e_csv csv;
    e2e_csv_load(e2e_data(EC2), &csv);
    ck_assert_uint_ge(csv.n, N);
    const char *ua = e2e_uid(&T, "cacheA");
    const char *ub = e2e_uid(&T, "cacheB");
    const char *u[2] = {ua, ub};
    char id[AN_ID_MAX];
    for (int k = 0; k < 2; k++) {
        e2e_create_metric(&T, u[k], "e2e.cache", AN_METRIC_CREATE_PENDING);
        e2e_add_rows(&T, u[k], csv.ts, csv.value, N);
        an_result def = e2e_cmd("define-cache", "defineModel", 0, NULL);
        e2e_xadd_results(&T, u[k], &def, 1, AN_ENC_JSON, id);
        send_rows(u[k], 1, 500, csv.raw, id);
    }
    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    e2e_expect_params_cache(&T, ua, 500);
    e2e_expect_params_cache(&T, ub, 500);

    /* break the caches: A deleted; B stale (watermark 1) with params that
     * would give other scores if they were used */
    int64_t deleted = 0;
    ck_assert_int_eq(an_del(T.rd, e2e_params_key(&T, ua), &deleted), 0);
    ck_assert_int_eq(deleted, 1);
    char *bparams = NULL;
    int64_t wm = 0, upd = 0;
    ck_assert_int_eq(an_params_cache_get(T.rd, e2e_params_key(&T, ub), &bparams, &wm, &upd), 0);
    json_t *bp = e2e_parse(bparams, "cache B params");
    free(bparams);
    json_t *dist = json_object_get(json_object_get(bp, "params"), "distribution");
    ck_assert_msg(json_is_object(dist), "cache B params have no params.distribution: %s",
                  e2e_js(bp));
    json_object_set_new(dist, "mean", json_real(0.75));
    json_object_set_new(dist, "stdev", json_real(0.01));
    char *wrong = json_dumps(bp, JSON_COMPACT);
    json_decref(bp);
    void *rep = e2e_redis_cmd(&T, "HSET %s watermark 1 params %s", e2e_params_key(&T, ub), wrong);
    freeReplyObject(rep);
    free(wrong);

    for (int k = 0; k < 2; k++)
        send_rows(u[k], 501, 501, csv.raw, id);
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);

    e2e_expect_params_cache(&T, ua, 501);
    e2e_expect_params_cache(&T, ub, 501);
    /* and the live row was scored from the database's params */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/head501.csv", T.tmpdir);
    e2e_csv_head(e2e_data(EC2), path, N);
    e2e_offline off;
    e2e_offline_run(&T, path, "--schedule", "500,1", &off);
    e2e_expect_rows_match_offline(&T, ua, &off);
    e2e_expect_rows_match_offline(&T, ub, &off);
    e2e_offline_free(&off);
    expect_clean_group();
    e2e_csv_free(&csv);
    report_time("params_cache_repair", t0);
}
END_TEST

/* ------------------------------------------------------------------------
 * predictions_and_legacy: iRv2 predictions are stored as JSON text and
 * published as objects; legacy "iR" results (zlib input) are scored with
 * predictions null.
 */
START_TEST(predictions_and_legacy)
{
    const char *u = e2e_uid(&T, "preds");
    e2e_create_metric(&T, u, "e2e.preds", AN_METRIC_ACTIVE);
    e2e_add_simple_rows(&T, u, 4);
    json_t *p1 = json_pack("{s:f}", "1", 42.0);
    json_t *p2 = json_pack("{s:f, s:f}", "1", 10.5, "5", 11.25);
    an_result r12[] = {e2e_inf(1, 0.25), e2e_inf(2, 0.5)};
    r12[0].u.inf.predictions = p1;
    r12[1].u.inf.predictions = p2;
    char id1[AN_ID_MAX], id2[AN_ID_MAX];
    e2e_xadd_results(&T, u, r12, 2, AN_ENC_JSON, id1);
    an_result r34[] = {e2e_inf(3, 0.75), e2e_inf(4, 1.0)};
    r34[0].u.inf.legacy = r34[1].u.inf.legacy = true;
    e2e_xadd_results(&T, u, r34, 2, AN_ENC_ZLIB, id2);

    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    expect_clean_group();

    an_data_rows rows = {0};
    e2e_get_rows(&T, u, 1, 4, &rows);
    ck_assert_uint_eq(rows.n, 4);
    const json_t *want[4] = {p1, p2, NULL, NULL};
    const double raw[4] = {0.25, 0.5, 0.75, 1.0};
    for (size_t i = 0; i < 4; i++) {
        const an_data_row *r = &rows.v[i];
        ck_assert_msg(r->has_raw && e2e_same_double(r->raw, raw[i]) && r->has_score &&
                          r->anomaly_score == 0.0,
                      "row %zu: raw %s %.17g, score %s", i + 1, r->has_raw ? "set" : "NULL",
                      r->raw, r->has_score ? "set" : "NULL");
        ck_assert_msg(r->predictions != NULL, "row %zu: multi_step_best_predictions is SQL NULL",
                      i + 1);
        if (!want[i]) {
            ck_assert_msg(!strcmp(r->predictions, "null"),
                          "row %zu: multi_step_best_predictions '%s', expected the text null",
                          i + 1, r->predictions);
        } else {
            json_t *got = e2e_parse(r->predictions, "multi_step_best_predictions");
            char where[300];
            bool same = e2e_json_same(want[i], got, where, sizeof where);
            json_decref(got);
            ck_assert_msg(same, "row %zu: multi_step_best_predictions '%s': %s", i + 1,
                          r->predictions, where);
        }
    }
    json_t *outs = e2e_outputs(&T);
    ck_assert_uint_eq(json_array_size(outs), 2);
    an_metric m;
    e2e_get_metric(&T, u, &m);
    int64_t next = 1;
    e2e_expect_inference_entry(json_array_get(outs, 0), &m, &rows, &next, id1, "zlib");
    e2e_expect_inference_entry(json_array_get(outs, 1), &m, &rows, &next, id2, "zlib");
    /* the objects themselves, not JSON strings */
    const json_t *res0 = json_object_get(json_object_get(json_array_get(outs, 0), "body"), "results");
    ck_assert_msg(json_is_object(json_object_get(json_array_get(res0, 1), "multiStepBestPredictions")),
                  "multiStepBestPredictions is not published as an object: %s", e2e_js(res0));
    an_metric_clear(&m);
    json_decref(outs);
    an_data_rows_free(&rows);
    json_decref(p1);
    json_decref(p2);
}
END_TEST

/* ------------------------------------------------------------------------
 * 7. no_leaks_10k: the ASan/LSan build of anomalyd over a 10,320-row replay
 * exits 0 at idle with no sanitizer report.
 */
START_TEST(no_leaks_10k)
{
    double t0 = e2e_now();
    const char *csv = e2e_data(NYC_TAXI);
    const char *uid = e2e_uid(&T, "nyctaxi");
    const size_t N = 10320;
    e2e_setenv(&T, "ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0");
    e2e_setenv(&T, "UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    e2e_replay(&T, csv, "e2e.nyctaxi", uid, 1440, 8640, (long)N, (long)(1 + 6 + (N - 8640)));

    /* Without a sanitizer build this test only checks the run itself. */
    size_t bin_len = 0;
    char *bin = e2e_slurp(e2e_bin("anomalyd"), &bin_len);
    ck_assert_ptr_nonnull(bin);
    bool asan = memmem(bin, bin_len, "__asan_init", 11) != NULL;
    free(bin);
    if (!asan)
        fprintf(stderr, "[e2e] no_leaks_10k: %s is not an AddressSanitizer build: the "
                        "leak check is vacuous (build with -DANOMALYD_SANITIZE=ON)\n",
                e2e_bin("anomalyd"));

    e2e_proc d;
    e2e_run_anomalyd(&T, &d, "c1", 1500, 400000);
    fprintf(stderr, "[e2e] no_leaks_10k: anomalyd ran %.1f s\n", d.t_end - d.t_start);
    const char *bad[] = {"LeakSanitizer", "ERROR: AddressSanitizer", "runtime error:",
                         "SUMMARY: UndefinedBehaviorSanitizer"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(e2e_count_lines(d.err_path, bad[i]) == 0,
                      "anomalyd stderr has '%s' lines:\n%s", bad[i], e2e_tail(d.err_path, 6000));
    ck_assert_int_eq(e2e_scored_rowid(&T, uid), (int64_t)N);

    e2e_offline off;
    e2e_offline_run(&T, csv, "--schedule", "1440,1440,1440,1440,1440,1440,1", &off);
    ck_assert_uint_eq(off.n, N);
    e2e_expect_rows_match_offline(&T, uid, &off);
    e2e_offline_free(&off);
    e2e_expect_params_cache(&T, uid, (int64_t)N);
    expect_clean_group();
    report_time("no_leaks_10k", t0);
}
END_TEST

/* ------------------------------------------------------------------------
 * deleted_model_params: a model deleted and re-created (same uid, other
 * data) whose watermark lands on the old value is never scored with the
 * deleted model's params, even when its hash still holds them (a publish
 * lost between COMMIT and the script, simulated by restoring the old hash);
 * and a deleteModel result deletes the hash.
 */
START_TEST(deleted_model_params)
{
    double t0 = e2e_now();
    /* the last row is scored within statistics_refresh_rate (24) of the
     * last estimate, so from the params, not from a re-estimate */
    const size_t N = 471;
    e2e_csv old, neu;
    e2e_csv_load(e2e_data(JUMPSUP), &old);
    e2e_csv_load(e2e_data(EC2), &neu);
    ck_assert_uint_ge(old.n, N);
    ck_assert_uint_ge(neu.n, N);
    const char *u = e2e_uid(&T, "delmodel");
    const char *key = e2e_params_key(&T, u);
    char id[AN_ID_MAX];
    e2e_proc d;

    /* the old model: rows 1..470 scored, its hash at watermark 470 */
    e2e_create_metric(&T, u, "e2e.delmodel", AN_METRIC_CREATE_PENDING);
    e2e_add_rows(&T, u, old.ts, old.value, N);
    an_result def = e2e_cmd("define-old", "defineModel", 0, NULL);
    e2e_xadd_results(&T, u, &def, 1, AN_ENC_JSON, id);
    send_rows(u, 1, 470, old.raw, id);
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    e2e_expect_params_cache(&T, u, 470);
    redisReply *saved = e2e_redis_cmd(&T, "HGETALL %s", key);
    ck_assert_int_eq(saved->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(saved->elements, 8);

    /* deleted (the API deletes the metric; the runner answers deleteModel) */
    ck_assert_int_eq(trepo_delete_metric(T.repo, u), 0);
    an_result del = e2e_cmd("delete-old", "deleteModel", 0, NULL);
    e2e_xadd_results(&T, u, &del, 1, AN_ENC_JSON, id);
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    redisReply *ex = e2e_redis_cmd(&T, "EXISTS %s", key);
    ck_assert_int_eq(ex->integer, 0);   /* the deleteModel result deleted the hash */
    freeReplyObject(ex);

    /* re-created with other data, scored to the same watermark 470 */
    e2e_create_metric(&T, u, "e2e.delmodel", AN_METRIC_CREATE_PENDING);
    e2e_add_rows(&T, u, neu.ts, neu.value, N);
    an_result def2 = e2e_cmd("define-new", "defineModel", 0, NULL);
    e2e_xadd_results(&T, u, &def2, 1, AN_ENC_JSON, id);
    send_rows(u, 1, 470, neu.raw, id);
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);
    ck_assert_int_eq(e2e_scored_rowid(&T, u), 470);

    /* the old model's hash is back (watermark 470 = the database's), its
     * distribution made extreme so that using it would show in the scores */
    json_t *op = NULL;
    for (size_t i = 0; i + 1 < saved->elements; i += 2)
        if (!strcmp(saved->element[i]->str, "params"))
            op = e2e_parse(saved->element[i + 1]->str, "old params");
    ck_assert_ptr_nonnull(op);
    json_t *dist = json_object_get(json_object_get(op, "params"), "distribution");
    ck_assert_msg(json_is_object(dist), "old params have no params.distribution");
    json_object_set_new(dist, "mean", json_real(0.75));
    json_object_set_new(dist, "stdev", json_real(0.01));
    char *optext = json_dumps(op, JSON_COMPACT);
    json_decref(op);
    for (size_t i = 0; i + 1 < saved->elements; i += 2) {
        const char *f = saved->element[i]->str;
        redisReply *r = e2e_redis_cmd(&T, "HSET %s %s %s", key, f,
                                      strcmp(f, "params") ? saved->element[i + 1]->str : optext);
        freeReplyObject(r);
    }
    free(optext);
    freeReplyObject(saved);
    send_rows(u, 471, 471, neu.raw, id);
    e2e_run_anomalyd(&T, &d, "c1", 1500, 120000);

    /* row 471 scored from the new model's own params */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/head471new.csv", T.tmpdir);
    e2e_csv_head(e2e_data(EC2), path, N);
    e2e_offline off;
    e2e_offline_run(&T, path, "--schedule", "470,1", &off);
    e2e_expect_rows_match_offline(&T, u, &off);
    e2e_offline_free(&off);
    e2e_expect_params_cache(&T, u, 471);
    expect_clean_group();
    e2e_csv_free(&old);
    e2e_csv_free(&neu);
    report_time("deleted_model_params", t0);
}
END_TEST


static Suite *service_suite(void)
{
    Suite *s = suite_create("service");
    an_check_add_case(s, "replay_matches_offline", replay_matches_offline, setup, teardown, 600);
    an_check_add_case(s, "helper_vectors_schedule", helper_vectors_schedule, setup, teardown, 600);
    an_check_add_case(s, "rejections", rejections, setup, teardown, 600);
    an_check_add_case(s, "dead_letters", dead_letters, setup, teardown, 600);
    an_check_add_case(s, "params_cache_repair", params_cache_repair, setup, teardown, 600);
    an_check_add_case(s, "deleted_model_params", deleted_model_params, setup, teardown, 600);
    an_check_add_case(s, "predictions_and_legacy", predictions_and_legacy, setup, teardown, 600);
    an_check_add_case(s, "no_leaks_10k", no_leaks_10k, setup, teardown, 600);
    return s;
}

int main(void)
{
    return an_check_run(service_suite(), CK_VERBOSE);
}
