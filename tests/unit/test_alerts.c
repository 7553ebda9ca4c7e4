/* test_alerts.c: the notification rules (an_alerts.h) over a memory store:
 * each gate at and past its limit, dedupe and redelivery, the throttle on
 * row time, and a model check with re-published messages and crashes. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_alerts.h"
#include "check_main.h"

/* ---- a memory store ---- */

#define MAXREC 4096
typedef struct mem {
    struct { char uid[48]; int64_t rowid; char entry[64]; } fired[MAXREC];
    size_t nfired;
    struct { char uid[48]; int64_t ts; } last[64];
    size_t nlast;
    int fail; /* non-zero: every call returns it */
} mem;

static int mem_last(void *ud, const char *uid, bool *found, int64_t *ts)
{
    mem *m = ud;
    *found = false;
    *ts = 0;
    for (size_t i = 0; i < m->nlast; i++)
        if (!strcmp(m->last[i].uid, uid)) {
            *found = true;
            *ts = m->last[i].ts;
        }
    return m->fail;
}

static int mem_fired(void *ud, const char *uid, int64_t rowid, char *entry, size_t len)
{
    mem *m = ud;
    entry[0] = '\0';
    for (size_t i = 0; i < m->nfired; i++)
        if (!strcmp(m->fired[i].uid, uid) && m->fired[i].rowid == rowid)
            snprintf(entry, len, "%s", m->fired[i].entry);
    return m->fail;
}

/* What the consumer's commit does: record FIRE rows and the new last time. */
static void mem_commit(mem *m, const char *uid, const char *entry, const an_alert_row *rows,
                       size_t n, const an_alert_verdict *v, const an_alert_outcome *o)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == AN_ALERT_FIRE) {
            ck_assert_uint_lt(m->nfired, MAXREC);
            snprintf(m->fired[m->nfired].uid, 48, "%s", uid);
            m->fired[m->nfired].rowid = rows[i].rowid;
            snprintf(m->fired[m->nfired].entry, 64, "%s", entry);
            m->nfired++;
        }
    if (!o->has_last)
        return;
    for (size_t i = 0; i < m->nlast; i++)
        if (!strcmp(m->last[i].uid, uid)) {
            m->last[i].ts = o->new_last_ms;
            return;
        }
    snprintf(m->last[m->nlast].uid, 48, "%s", uid);
    m->last[m->nlast++].ts = o->new_last_ms;
}

static mem M;
static an_alert_store store(void)
{
    an_alert_store s = {mem_last, mem_fired, &M};
    return s;
}

static an_alert_rules rules(double thr, int64_t minrow, int64_t age, int64_t throttle)
{
    an_alert_rules r = {thr, minrow, age, throttle};
    return r;
}

/* Decides one row with the memory store and commits it. */
static an_alert_verdict one(const an_alert_rules *r, const char *uid, const char *entry,
                            int64_t rowid, double ts, double anomaly, int64_t now_ms)
{
    an_alert_row row = {rowid, ts, anomaly};
    an_alert_verdict v;
    an_alert_outcome o;
    an_alert_store s = store();
    ck_assert_int_eq(an_alerts_decide(r, r->threshold, &s, uid, entry, &row, 1, now_ms, &v, &o), 0);
    mem_commit(&M, uid, entry, &row, 1, &v, &o);
    return v;
}

START_TEST(defaults)
{
    an_alert_rules r = an_alert_rules_default();
    ck_assert(r.threshold == 0.99999);
    ck_assert_int_eq(r.min_rowid, 1000);
    ck_assert_int_eq(r.max_age_ms, 3600000);
    ck_assert_int_eq(r.throttle_ms, 3600000);
    ck_assert_str_eq(an_alert_verdict_name(AN_ALERT_THROTTLED), "throttled");
    ck_assert_str_eq(an_alert_verdict_name(AN_ALERT_REDELIVER), "redeliver");
}
END_TEST

START_TEST(threshold_gate)
{
    an_alert_rules r = rules(0.99999, 0, 0, 0);
    an_alert_row at = {5, 100, 0.99999}, below = {5, 100, nextafter(0.99999, 0)},
                 nan_row = {5, 100, NAN};
    ck_assert_int_eq(an_alert_gate(&r, 0.99999, &at, 0), AN_ALERT_FIRE);
    ck_assert_int_eq(an_alert_gate(&r, 0.99999, &below, 0), AN_ALERT_BELOW);
    ck_assert_int_eq(an_alert_gate(&r, 0.99999, &nan_row, 0), AN_ALERT_BELOW);
    /* threshold 0 turns the gate off: a zero score alerts */
    an_alert_row zero = {5, 100, 0.0};
    ck_assert_int_eq(an_alert_gate(&r, 0.0, &zero, 0), AN_ALERT_FIRE);
    /* the per-metric threshold passed in wins over rules->threshold */
    an_alert_row mid = {5, 100, 0.5};
    ck_assert_int_eq(an_alert_gate(&r, 0.5, &mid, 0), AN_ALERT_FIRE);
}
END_TEST

START_TEST(warmup_gate)
{
    an_alert_rules r = rules(0.9, 1000, 0, 0);
    an_alert_row at = {1000, 1, 1.0}, past = {1001, 1, 1.0}, first = {1, 1, 1.0};
    ck_assert_int_eq(an_alert_gate(&r, 0.9, &at, 0), AN_ALERT_WARMUP);
    ck_assert_int_eq(an_alert_gate(&r, 0.9, &past, 0), AN_ALERT_FIRE);
    r.min_rowid = 0;
    ck_assert_int_eq(an_alert_gate(&r, 0.9, &first, 0), AN_ALERT_FIRE);
}
END_TEST

START_TEST(age_gate)
{
    const int64_t now = 1700000000000LL, hour = 3600000;
    an_alert_rules r = rules(0.9, 0, hour, 0);
    an_alert_row at = {9, (double)(now - hour) / 1000.0, 1.0};
    an_alert_row past = {9, (double)(now - hour - 1) / 1000.0, 1.0};
    an_alert_row future = {9, (double)(now + hour) / 1000.0, 1.0};
    ck_assert_int_eq(an_alert_gate(&r, 0.9, &at, now), AN_ALERT_FIRE);
    ck_assert_int_eq(an_alert_gate(&r, 0.9, &past, now), AN_ALERT_TOO_OLD);
    ck_assert_int_eq(an_alert_gate(&r, 0.9, &future, now), AN_ALERT_FIRE);
    r.max_age_ms = 0; /* off: a 1970 row passes */
    an_alert_row old = {9, 0.0, 1.0};
    ck_assert_int_eq(an_alert_gate(&r, 0.9, &old, now), AN_ALERT_FIRE);
    /* the gate order: a warm-up row is reported as warm-up, not too old */
    r = rules(0.9, 100, hour, 0);
    an_alert_row both = {50, 0.0, 1.0};
    ck_assert_int_eq(an_alert_gate(&r, 0.9, &both, now), AN_ALERT_WARMUP);
}
END_TEST

START_TEST(throttle_at_and_past)
{
    memset(&M, 0, sizeof M);
    an_alert_rules r = rules(0.9, 0, 0, 3600000);
    const double t = 1397207100.0;
    ck_assert_int_eq(one(&r, "u", "e1", 1, t, 1.0, 0), AN_ALERT_FIRE);
    ck_assert_int_eq(one(&r, "u", "e2", 2, t + 3599.999, 1.0, 0), AN_ALERT_THROTTLED);
    ck_assert_int_eq(one(&r, "u", "e3", 3, t + 3600.0, 1.0, 0), AN_ALERT_FIRE);
    /* per metric: another uid is not held */
    ck_assert_int_eq(one(&r, "v", "e4", 3, t + 3600.5, 1.0, 0), AN_ALERT_FIRE);
    /* a row older than the last alert is throttled while the throttle is on */
    ck_assert_int_eq(one(&r, "u", "e5", 0, t - 86400, 1.0, 0), AN_ALERT_THROTTLED);
    /* throttle off: it fires, and the last time does not move back */
    r.throttle_ms = 0;
    ck_assert_int_eq(one(&r, "u", "e6", 4, t + 1.0, 1.0, 0), AN_ALERT_FIRE);
    ck_assert_int_eq(M.last[0].ts, (int64_t)(t + 3600.0) * 1000);
}
END_TEST

START_TEST(throttle_within_one_entry)
{
    memset(&M, 0, sizeof M);
    an_alert_rules r = rules(0.9, 0, 0, 3600000);
    an_alert_row rows[4] = {{10, 1000.0, 1.0}, {11, 1300.0, 0.95}, {12, 4599.0, 1.0},
                            {13, 4600.0, 1.0}};
    an_alert_verdict v[4];
    an_alert_outcome o;
    an_alert_store s = store();
    ck_assert_int_eq(an_alerts_decide(&r, 0.9, &s, "u", "e1", rows, 4, 0, v, &o), 0);
    ck_assert_int_eq(v[0], AN_ALERT_FIRE);
    ck_assert_int_eq(v[1], AN_ALERT_THROTTLED);
    ck_assert_int_eq(v[2], AN_ALERT_THROTTLED);
    ck_assert_int_eq(v[3], AN_ALERT_FIRE);
    ck_assert(!o.had_last && o.has_last);
    ck_assert_int_eq(o.new_last_ms, 4600000);
    ck_assert_uint_eq(o.nfire, 2);
    ck_assert_uint_eq(o.ndeliver, 2);
}
END_TEST

START_TEST(dedupe_and_redelivery)
{
    memset(&M, 0, sizeof M);
    an_alert_rules r = rules(0.9, 0, 0, 0); /* throttle off: only the dedupe holds */
    ck_assert_int_eq(one(&r, "u", "1-1", 7, 700.0, 1.0, 0), AN_ALERT_FIRE);
    /* the same row re-published in another output entry */
    ck_assert_int_eq(one(&r, "u", "1-9", 7, 700.0, 1.0, 0), AN_ALERT_DUPLICATE);
    /* the same entry again (it was not acked before a crash) */
    ck_assert_int_eq(one(&r, "u", "1-1", 7, 700.0, 1.0, 0), AN_ALERT_REDELIVER);
    ck_assert_uint_eq(M.nfired, 1);
    /* with the throttle on, a redelivered row is still delivered (the
     * fired record is checked before the throttle, which counts it) */
    r.throttle_ms = 3600000;
    ck_assert_int_eq(one(&r, "u", "1-1", 7, 700.0, 1.0, 0), AN_ALERT_REDELIVER);
    ck_assert_int_eq(one(&r, "u", "1-2", 8, 800.0, 1.0, 0), AN_ALERT_THROTTLED);
}
END_TEST

START_TEST(store_errors_pass_through)
{
    memset(&M, 0, sizeof M);
    M.fail = AN_ETRANSIENT;
    an_alert_rules r = rules(0.9, 0, 0, 0);
    an_alert_row row = {1, 1.0, 1.0};
    an_alert_verdict v;
    an_alert_outcome o;
    an_alert_store s = store();
    ck_assert_int_eq(an_alerts_decide(&r, 0.9, &s, "u", "e", &row, 1, 0, &v, &o), AN_ETRANSIENT);
    /* no store: every row is new */
    ck_assert_int_eq(an_alerts_decide(&r, 0.9, NULL, "u", "e", &row, 1, 0, &v, &o), 0);
    ck_assert_int_eq(v, AN_ALERT_FIRE);
}
END_TEST

/* ---- model check ---- */

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define NMSG 600
typedef struct model_msg {
    char uid[8];
    an_alert_row rows[3];
    size_t n;
} model_msg;

/* The straightforward reading of the rules over the original sequence. */
static size_t reference(const model_msg *msgs, size_t n, const an_alert_rules *r,
                        char keys[][32])
{
    size_t k = 0;
    int64_t last[2] = {0, 0};
    bool has[2] = {false, false};
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < msgs[i].n; j++) {
            const an_alert_row *row = &msgs[i].rows[j];
            int u = msgs[i].uid[1] - '0';
            int64_t ts = (int64_t)llround(row->ts * 1000);
            if (row->anomaly < r->threshold || row->rowid <= r->min_rowid)
                continue;
            if (has[u] && ts < last[u] + r->throttle_ms)
                continue;
            has[u] = true;
            last[u] = ts;
            snprintf(keys[k++], 32, "%.7s %lld", msgs[i].uid, (long long)row->rowid);
        }
    return k;
}

START_TEST(model_republish_and_crashes)
{
    static model_msg msgs[NMSG];
    static char want[NMSG * 3][32], got[NMSG * 6][32];
    memset(&M, 0, sizeof M);
    an_alert_rules r = rules(0.9, 20, 0, 1800000);
    int64_t rowid[2] = {0, 0};
    for (size_t i = 0; i < NMSG; i++) {
        int u = (int)(next_rand() % 2);
        snprintf(msgs[i].uid, sizeof msgs[i].uid, "u%d", u);
        msgs[i].n = 1 + next_rand() % 3;
        for (size_t j = 0; j < msgs[i].n; j++) {
            rowid[u]++;
            msgs[i].rows[j].rowid = rowid[u];
            msgs[i].rows[j].ts = 1.4e9 + 300.0 * (double)rowid[u];
            msgs[i].rows[j].anomaly = next_rand() % 4 == 0 ? 0.95 : 0.2;
        }
    }
    size_t nwant = reference(msgs, NMSG, &r, want), ngot = 0, redelivered = 0;
    ck_assert_uint_gt(nwant, 20);
    /* Deliver: each message once in order; sometimes a crash after the
     * commit (the same entry id is handled again), sometimes a re-publish
     * of an earlier message under a new entry id. */
    size_t republish_seq = 0;
    for (size_t i = 0; i < NMSG; i++) {
        /* the message; again under the same entry id (a crash before the
         * ack); an earlier message under a new entry id (re-published) */
        int again = next_rand() % 5 == 0, republish = next_rand() % 7 == 0;
        for (int c = 0; c < 1 + again + republish; c++) {
            char entry[32];
            const model_msg *m = &msgs[i];
            snprintf(entry, sizeof entry, "%zu-0", i);
            if (c == 1 + again) { /* the last copy, when republish */
                m = &msgs[next_rand() % (i + 1)];
                snprintf(entry, sizeof entry, "r-%zu", republish_seq++);
            }
            an_alert_verdict v[3];
            an_alert_outcome o;
            an_alert_store s = store();
            ck_assert_int_eq(an_alerts_decide(&r, r.threshold, &s, m->uid, entry, m->rows, m->n,
                                              0, v, &o), 0);
            mem_commit(&M, m->uid, entry, m->rows, m->n, v, &o);
            for (size_t j = 0; j < m->n; j++) {
                if (v[j] == AN_ALERT_FIRE)
                    snprintf(got[ngot++], 32, "%.7s %lld", m->uid, (long long)m->rows[j].rowid);
                else if (v[j] == AN_ALERT_REDELIVER)
                    redelivered++;
            }
        }
    }
    ck_assert_uint_eq(ngot, nwant);
    for (size_t i = 0; i < nwant; i++)
        ck_assert_str_eq(got[i], want[i]);
    ck_assert_uint_gt(redelivered, 0); /* the crash copies did redeliver */
}
END_TEST

/* ---- alert JSON, threshold text ---- */

START_TEST(alert_json)
{
    an_alert_info a = {"uid1", "cpu \"x\"", 2990, 1397207100.25, 115.5, 1.0, 0.975, 0.99999,
                       "default", "1-2", "3-4"};
    json_t *j = an_alert_json(&a);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "uid")), "uid1");
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "cpu \"x\"");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "rowid")), 2990);
    ck_assert_str_eq(json_string_value(json_object_get(j, "timestamp")), "2014-04-11T09:05:00.250Z");
    ck_assert(json_real_value(json_object_get(j, "rawAnomaly")) == 0.975);
    ck_assert_str_eq(json_string_value(json_object_get(j, "rule")), "anomaly >= 0.99999 (default)");
    ck_assert_str_eq(json_string_value(json_object_get(j, "source")), "1-2");
    ck_assert_str_eq(json_string_value(json_object_get(j, "entry")), "3-4");
    json_decref(j);
    a.name = NULL;
    j = an_alert_json(&a);
    ck_assert(json_is_null(json_object_get(j, "name")));
    json_decref(j);
    a.value = NAN;
    ck_assert_ptr_null(an_alert_json(&a));
}
END_TEST

START_TEST(threshold_text)
{
    double v = -1;
    ck_assert_int_eq(an_alert_parse_threshold("0.5", 3, &v), 0);
    ck_assert(v == 0.5);
    ck_assert_int_eq(an_alert_parse_threshold("1", 1, &v), 0);
    ck_assert_int_eq(an_alert_parse_threshold("0", 1, &v), 0);
    ck_assert(v == 0.0);
    ck_assert_int_eq(an_alert_parse_threshold("1.0000001", 9, &v), AN_EINVAL);
    ck_assert_int_eq(an_alert_parse_threshold("-0.1", 4, &v), AN_EINVAL);
    ck_assert_int_eq(an_alert_parse_threshold("abc", 3, &v), AN_EINVAL);
    ck_assert_int_eq(an_alert_parse_threshold("0.5x", 4, &v), AN_EINVAL);
    ck_assert_int_eq(an_alert_parse_threshold("", 0, &v), AN_EINVAL);
    ck_assert_int_eq(an_alert_parse_threshold("nan", 3, &v), AN_EINVAL);
    char long_text[80];
    memset(long_text, '0', sizeof long_text);
    ck_assert_int_eq(an_alert_parse_threshold(long_text, sizeof long_text, &v), AN_EINVAL);
}
END_TEST

static Suite *alerts_suite(void)
{
    Suite *s = suite_create("alerts");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, threshold_gate);
    tcase_add_test(tc, warmup_gate);
    tcase_add_test(tc, age_gate);
    tcase_add_test(tc, throttle_at_and_past);
    tcase_add_test(tc, throttle_within_one_entry);
    tcase_add_test(tc, dedupe_and_redelivery);
    tcase_add_test(tc, store_errors_pass_through);
    tcase_add_test(tc, model_republish_and_crashes);
    tcase_add_test(tc, alert_json);
    tcase_add_test(tc, threshold_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(alerts_suite(), CK_NORMAL);
}
