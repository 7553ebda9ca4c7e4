/*
 * test_helper.c: the likelihood helper state machine (an_helper.h), its
 * edge cases, its state JSON, and a randomized comparison against a naive
 * transcription of tests/data/likelihood/nupic-1.0/README.md §5.11 with a small
 * sample_size so the cache's buffer reuse is exercised.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_helper.h"
#include "an_json_out.h"
#include "check_main.h"

/* ---- fixtures ----------------------------------------------------------- */

#define MAX_EVENTS 4096

typedef struct evlog {
    int n;
    an_helper_event ev[MAX_EVENTS];
} evlog;

static void record(void *ud, const an_helper_event *ev)
{
    evlog *l = ud;
    ck_assert_int_lt(l->n, MAX_EVENTS);
    l->ev[l->n++] = *ev;
}

/* Checks event i: kind and its args (nargs given). */
static void ck_event(const evlog *l, int i, an_helper_event_kind kind, int nargs,
                     const int64_t *args)
{
    ck_assert_int_lt(i, l->n);
    ck_assert_msg(l->ev[i].kind == kind, "event %d: got %s want %s", i,
                  an_helper_event_name(l->ev[i].kind), an_helper_event_name(kind));
    ck_assert_int_eq(l->ev[i].nargs, nargs);
    for (int k = 0; k < nargs; k++)
        ck_assert_msg(l->ev[i].args[k] == args[k], "event %d (%s) arg %d: got %lld want %lld",
                      i, an_helper_event_name(kind), k, (long long)l->ev[i].args[k],
                      (long long)args[k]);
}
#define EV(l, i, kind, ...)                                                     \
    do {                                                                        \
        const int64_t a_[] = {__VA_ARGS__};                                     \
        ck_event((l), (i), (kind), (int)(sizeof a_ / sizeof a_[0]), a_);        \
    } while (0)

/* An in-memory table of processed rows: rowid i + first_rowid, value,
 * raw. Failure switches for the two callbacks; call counters. */
typedef struct memsrc {
    an_sample *rows;
    size_t n;         /* processed rows available */
    bool fail_count, fail_tail;
    int count_calls, tail_calls;
    size_t last_tail_n;
} memsrc;

static int ms_count(void *ctx, int64_t *count, char *err, size_t errlen)
{
    memsrc *m = ctx;
    m->count_calls++;
    if (m->fail_count) {
        snprintf(err, errlen, "count exploded");
        return AN_EIO;
    }
    *count = (int64_t)m->n;
    return 0;
}

static int ms_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                   size_t errlen)
{
    memsrc *m = ctx;
    m->tail_calls++;
    m->last_tail_n = n;
    if (m->fail_tail) {
        snprintf(err, errlen, "tail exploded");
        return AN_EIO;
    }
    size_t k = n < m->n ? n : m->n;
    memcpy(out, m->rows + (m->n - k), k * sizeof *out);
    *got = k;
    return 0;
}

static an_sample_source source_of(memsrc *m)
{
    an_sample_source s = {.ctx = m, .processed_count = ms_count, .tail = ms_tail};
    return s;
}

/* Deterministic pseudo-random raw scores with occasional bursts of 1.0, and
 * varying metric values (so the flat-metric rule does not fire). */
static uint64_t rng_state;
static double rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static void gen_rows(an_sample *s, size_t n, int64_t first_rowid)
{
    int burst = 0;
    for (size_t i = 0; i < n; i++) {
        if (burst == 0 && rnd() < 0.02)
            burst = 1 + (int)(rnd() * 12);
        double raw = burst ? 1.0 : (rnd() < 0.7 ? 0.0 : rnd() * 0.3);
        if (burst)
            burst--;
        s[i].rowid = first_rowid + (int64_t)i;
        s[i].value = 100.0 + 50.0 * sin((double)i / 20.0) + rnd();
        s[i].raw = raw;
    }
}

static void rows_from(an_row *r, const an_sample *s, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        r[i].rowid = s[i].rowid;
        r[i].value = s[i].value;
        r[i].raw = s[i].raw;
        r[i].anomaly_score = 123.0; /* must be reset by the helper */
        r[i].scored = true;
    }
}

/* A state with a sharp distribution (mean 0.03, floored variance) and a
 * zero moving-average window, so raw 1.0 rows score above 0.99. */
static an_helper_state sharp_state(int64_t last_rowid)
{
    an_helper_state s;
    memset(&s, 0, sizeof s);
    s.present = true;
    s.last_rowid_for_stats = last_rowid;
    s.params.dist.mean = 0.03;
    s.params.dist.variance = 0.0003;
    s.params.dist.stdev = sqrt(0.0003);
    s.params.ma.window_size = 10;
    s.params.ma.len = 10;
    s.params.ma.total = 0.0;
    for (int i = 0; i < 10; i++) {
        s.params.ma.values[i] = 0.0;
        s.params.hist[i] = 0.5;
    }
    s.params.hist_len = 10;
    return s;
}

static char *state_text(const an_helper_state *s)
{
    json_t *j = an_helper_state_to_json(s);
    ck_assert_ptr_nonnull(j);
    char *t = json_dumps(j, JSON_ENCODE_ANY | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(j);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* ---- config, interval, names ------------------------------------------- */

/* A helper with config c whose events are recorded in a new log (*l);
 * free both with free_logged. */
static an_helper *new_logged(const an_helper_config *c, evlog **l)
{
    *l = calloc(1, sizeof **l);
    ck_assert_ptr_nonnull(*l);
    an_helper *h = an_helper_new(c, record, *l);
    ck_assert_ptr_nonnull(h);
    return h;
}

static void free_logged(an_helper *h, evlog *l)
{
    an_helper_free(h);
    free(l);
}

/* The null state (no anomalyLikelihoodParams yet). */
static an_helper_state null_state(void)
{
    an_helper_state s;
    memset(&s, 0, sizeof s);
    return s;
}

/* One batch scenario: a logged helper (new_logged), an in-memory source
 * and the state the batches update. */
typedef struct scenario {
    an_helper *h;
    evlog *l;
    memsrc ms;
    an_sample_source src; /* reads ms: a scenario must not be copied */
    an_helper_state st;
    char err[256];
} scenario;

/* s: a helper with config c over the processed rows rows[0..processed),
 * state st. End it with sc_end. */
static void sc_start(scenario *s, const an_helper_config *c, an_sample *rows, size_t processed,
                     an_helper_state st)
{
    memset(s, 0, sizeof *s);
    s->h = new_logged(c, &s->l);
    s->ms = (memsrc){.rows = rows, .n = processed};
    s->src = source_of(&s->ms);
    s->st = st;
}

/* Updates s with the batch rows[0..n), filled from batch; it must succeed. */
static void sc_update(scenario *s, const an_sample *batch, an_row *rows, size_t n)
{
    rows_from(rows, batch, n);
    ck_assert_int_eq(an_helper_update(s->h, &s->src, &s->st, rows, n, s->err, sizeof s->err), 0);
}

static void sc_end(scenario *s)
{
    free_logged(s->h, s->l);
}

/* rows[from..to) are scored, each exactly score. */
static void ck_scored(const an_row *rows, int from, int to, double score)
{
    for (int i = from; i < to; i++) {
        ck_assert_msg(rows[i].scored, "row %d not scored", i);
        ck_assert_msg(rows[i].anomaly_score == score, "row %d: score %.17g, want %.17g", i,
                      rows[i].anomaly_score, score);
    }
}

/* rows[from..to) are not scored and their score is 0. */
static void ck_unscored(const an_row *rows, int from, int to)
{
    for (int i = from; i < to; i++) {
        ck_assert_msg(!rows[i].scored, "row %d scored", i);
        ck_assert_msg(rows[i].anomaly_score == 0.0, "row %d: score %.17g, want 0", i,
                      rows[i].anomaly_score);
    }
}

/* Feeds rows [from, to) of all to h as 1-row batches over *st from src,
 * each with the rows before it processed (ms->n); each must succeed. */
static void feed_singles(an_helper *h, const an_sample_source *src, memsrc *ms,
                         an_helper_state *st, const an_sample *all, size_t from, size_t to)
{
    char err[256];
    an_row row;
    for (size_t i = from; i < to; i++) {
        rows_from(&row, all + i, 1);
        ms->n = i;
        ck_assert_int_eq(an_helper_update(h, src, st, &row, 1, err, sizeof err), 0);
    }
}

START_TEST(test_config_default_and_validate)
{
    an_helper_config c = an_helper_config_default();
    ck_assert_int_eq(c.variant, AN_VARIANT_HTMENGINE);
    ck_assert_int_eq(c.min_sample_size, 100);
    ck_assert_int_eq(c.refresh_rate, 24);
    ck_assert_int_eq(c.sample_size, 8640);
    ck_assert_int_eq(c.skip_records, 288);
    ck_assert_int_eq(c.averaging_window, 10);
    char err[256];
    ck_assert_int_eq(an_helper_config_validate(&c, err, sizeof err), 0);

    an_helper_config b = c;
    b.min_sample_size = 0;
    ck_assert_int_eq(an_helper_config_validate(&b, err, sizeof err), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "statistics_min_sample_size"));
    ck_assert_ptr_null(an_helper_new(&b, NULL, NULL));
    b = c;
    b.sample_size = 99;
    ck_assert_int_eq(an_helper_config_validate(&b, err, sizeof err), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "statistics_sample_size"));
    b = c;
    b.refresh_rate = 0;
    ck_assert_int_eq(an_helper_config_validate(&b, err, sizeof err), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "statistics_refresh_rate"));
    b = c;
    b.averaging_window = AN_LK_MAX_WINDOW + 1;
    ck_assert_int_eq(an_helper_config_validate(&b, err, sizeof err), AN_EINVAL);
    b = c;
    b.skip_records = -1;
    ck_assert_int_eq(an_helper_config_validate(&b, err, sizeof err), AN_EINVAL);
    b = c;
    b.variant = (an_variant)7;
    ck_assert_int_eq(an_helper_config_validate(&b, err, sizeof err), AN_EINVAL);
}
END_TEST

START_TEST(test_refresh_interval_table)
{
    an_helper_config c = an_helper_config_default();
    static const struct {
        size_t m;
        int r;
    } t[] = {{0, 24},    {1, 24},     {100, 24},   {240, 24},    {245, 24},
             {249, 24},  {250, 25},   {259, 25},   {1000, 100},  {1284, 128},
             {1440, 144}, {1441, 144}, {10000, 1000}, {86400, 8640}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ck_assert_msg(an_helper_refresh_interval(&c, t[i].m) == t[i].r, "m=%zu: got %d want %d",
                      t[i].m, an_helper_refresh_interval(&c, t[i].m), t[i].r);
    /* 0.1 * m in double, truncated: 0.1 * 30 = 3.0000000000000004 -> 3 */
    c.refresh_rate = 1;
    ck_assert_int_eq(an_helper_refresh_interval(&c, 30), 3);
    ck_assert_int_eq(an_helper_refresh_interval(&c, 29), 2);
    ck_assert_int_eq(an_helper_refresh_interval(&c, 9), 1);
    ck_assert_int_eq(an_helper_refresh_interval(&c, (size_t)1 << 40), 2147483647);
}
END_TEST

START_TEST(test_event_names)
{
    ck_assert_str_eq(an_helper_event_name(AN_EV_REFRESH), "refresh");
    ck_assert_str_eq(an_helper_event_name(AN_EV_INIT), "init");
    ck_assert_str_eq(an_helper_event_name(AN_EV_RUN), "run");
    ck_assert_str_eq(an_helper_event_name(AN_EV_GREEDY_BREAK), "greedy_break");
    ck_assert_str_eq(an_helper_event_name(AN_EV_CUTOFF_PRECEDES), "cutoff_precedes");
    ck_assert_str_eq(an_helper_event_name(AN_EV_BYPASS_REFRESH), "bypass_refresh");
    ck_assert_str_eq(an_helper_event_name(AN_EV_NOT_ENOUGH), "not_enough");
}
END_TEST

/* ---- batches ------------------------------------------------------------ */

START_TEST(test_fewer_than_min_rows)
{
    an_helper_config c = an_helper_config_default();
    an_sample all[99];
    gen_rows(all, 99, 1);
    scenario s;
    sc_start(&s, &c, all, 0, null_state());
    an_row rows[50];
    /* 50 + 49 = 99 < 100: nothing scored, state stays null, no events */
    sc_update(&s, all, rows, 50);
    s.ms.n = 50;
    sc_update(&s, all + 50, rows, 49);
    ck_assert(!s.st.present);
    ck_unscored(rows, 0, 49);
    ck_assert_int_eq(s.l->n, 0);
    ck_assert_int_eq(s.ms.count_calls, 2);
    ck_assert_int_eq(s.ms.tail_calls, 0);
    json_t *j = an_helper_state_to_json(&s.st);
    ck_assert(json_is_null(j));
    json_decref(j);
    sc_end(&s);
}
END_TEST

START_TEST(test_init_inside_batch)
{
    an_helper_config c = an_helper_config_default();
    an_sample all[120];
    gen_rows(all, 120, 1);
    scenario s;
    sc_start(&s, &c, all, 80, null_state());
    an_row rows[40];
    sc_update(&s, all + 80, rows, 40);
    /* rows 81..100 consumed to build the model, unscored; 101..120 scored
     * under the null distribution (<= 288 samples): exactly 0.5 */
    ck_unscored(rows, 0, 20);
    ck_scored(rows, 20, 40, 0.5);
    ck_assert(s.st.present);
    ck_assert_int_eq(s.st.last_rowid_for_stats, 100);
    ck_assert(s.st.params.dist.mean == 0.5 && s.st.params.dist.stdev == 1000.0);
    ck_assert_int_eq(s.ms.tail_calls, 1);
    ck_assert_uint_eq(s.ms.last_tail_n, 8640 - 20);
    ck_assert_int_eq(s.l->n, 3);
    EV(s.l, 0, AN_EV_REFRESH, 100, 1, 100);
    EV(s.l, 1, AN_EV_INIT, 100, 1, 100);
    EV(s.l, 2, AN_EV_RUN, 20, 40, 101, 124, 100, 24);
    sc_end(&s);
}
END_TEST

START_TEST(test_init_exactly_at_batch_start)
{
    /* 100 processed rows, null state (e.g. state lost): k0 = 0, the model
     * is built from the tail alone and every row of the batch is scored. */
    an_helper_config c = an_helper_config_default();
    an_sample all[101];
    gen_rows(all, 101, 1);
    scenario s;
    sc_start(&s, &c, all, 100, null_state());
    an_row rows[1];
    sc_update(&s, all + 100, rows, 1);
    ck_assert(rows[0].scored);
    ck_assert(rows[0].anomaly_score == 0.5);
    ck_assert_int_eq(s.st.last_rowid_for_stats, 100);
    EV(s.l, 0, AN_EV_REFRESH, 100, 1, 100);
    EV(s.l, 1, AN_EV_INIT, 100, 1, 100);
    EV(s.l, 2, AN_EV_RUN, 0, 1, 101, 124, 100, 24);
    ck_assert_int_eq(s.l->n, 3);
    sc_end(&s);
}
END_TEST

START_TEST(test_gap_forces_refresh)
{
    /* State from rowid 100, next batch starts at rowid 200 (rows 101..199
     * processed elsewhere / a gap): the cutoff 124 precedes 200, so the
     * run is empty and the params are refreshed before scoring. */
    an_helper_config c = an_helper_config_default();
    an_sample all[205];
    gen_rows(all, 205, 1);
    scenario s;
    sc_start(&s, &c, all, 199, sharp_state(100));
    an_row rows[5];
    sc_update(&s, all + 199, rows, 5);
    EV(s.l, 0, AN_EV_CUTOFF_PRECEDES, 200, 124);
    EV(s.l, 1, AN_EV_BYPASS_REFRESH, 200, 124);
    EV(s.l, 2, AN_EV_RUN, 0, 0, 200, 124, 100, 24);
    EV(s.l, 3, AN_EV_REFRESH, 199, 1, 199);
    EV(s.l, 4, AN_EV_RUN, 0, 5, 200, 223, 199, 24);
    ck_assert_int_eq(s.l->n, 5);
    ck_assert_int_eq(s.ms.tail_calls, 1);
    ck_assert_uint_eq(s.ms.last_tail_n, 8640);
    ck_assert_int_eq(s.st.last_rowid_for_stats, 199);
    ck_scored(rows, 0, 5, 0.5); /* 199 samples: null distribution */
    sc_end(&s);
}
END_TEST

START_TEST(test_gap_in_processed_rows_advances_cutoff)
{
    /* The source's processed rows end at 150 (rows 151..199 never got a
     * raw score), state from 100, batch from 200: the forced refresh uses
     * rows up to 150, whose cutoff 174 still precedes 200, so the cutoff is
     * advanced to 200 (the original's "Advanced anomaly run cutoff"). */
    an_helper_config c = an_helper_config_default();
    an_sample all[205];
    gen_rows(all, 205, 1);
    scenario s;
    sc_start(&s, &c, all, 150, sharp_state(100));
    an_row rows[5];
    sc_update(&s, all + 199, rows, 5);
    EV(s.l, 0, AN_EV_CUTOFF_PRECEDES, 200, 124);
    EV(s.l, 1, AN_EV_BYPASS_REFRESH, 200, 124);
    EV(s.l, 2, AN_EV_RUN, 0, 0, 200, 124, 100, 24);
    EV(s.l, 3, AN_EV_REFRESH, 150, 1, 150);
    EV(s.l, 4, AN_EV_CUTOFF_PRECEDES, 200, 174);
    EV(s.l, 5, AN_EV_RUN, 0, 1, 200, 200, 150, 24);
    EV(s.l, 6, AN_EV_REFRESH, 151, 1, 200);
    EV(s.l, 7, AN_EV_RUN, 1, 5, 201, 224, 200, 24);
    ck_assert_int_eq(s.l->n, 8);
    ck_assert_int_eq(s.st.last_rowid_for_stats, 200);
    sc_end(&s);
}
END_TEST

START_TEST(test_extreme_last_rowid)
{
    /* Stored rowids at the int64 limits: saturating arithmetic, no UB. */
    an_helper_config c = an_helper_config_default();
    evlog *l;
    an_helper *h = new_logged(&c, &l);
    an_sample all[205];
    gen_rows(all, 205, 1);
    memsrc ms = {.rows = all, .n = 200};
    an_sample_source src = source_of(&ms);
    an_row rows[5];
    rows_from(rows, all + 200, 5);
    char err[256];

    an_helper_state st = sharp_state(INT64_MAX - 1);
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 5, err, sizeof err), 0);
    EV(l, 0, AN_EV_RUN, 0, 5, 201, INT64_MAX, INT64_MAX - 1, 24);
    ck_assert_int_eq(l->n, 1);
    for (int i = 0; i < 5; i++)
        ck_assert(rows[i].scored);

    l->n = 0;
    st = sharp_state(INT64_MIN);
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 5, err, sizeof err), 0);
    EV(l, 0, AN_EV_CUTOFF_PRECEDES, 201, INT64_MIN + 24);
    EV(l, 1, AN_EV_BYPASS_REFRESH, 201, INT64_MIN + 24);
    ck_assert_int_eq(st.last_rowid_for_stats, 200);
    free_logged(h, l);
}
END_TEST

/* 1000 earlier rows with raw 1.0 and varying values; batch rows 1001.. with
 * raw 1.0 against the sharp state: 1001..1003 score > 0.99 but are within 3
 * rows of last_rowid_for_stats = 1000; 1004 triggers the greedy break. */
static void greedy_setup(an_sample *all, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        all[i].rowid = (int64_t)i + 1;
        all[i].value = (double)(i % 17);
        all[i].raw = 1.0;
    }
}

START_TEST(test_greedy_break_mid_batch)
{
    an_helper_config c = an_helper_config_default();
    static an_sample all[1010];
    greedy_setup(all, 1010);
    scenario s;
    sc_start(&s, &c, all, 1000, sharp_state(1000));
    an_row rows[10];
    sc_update(&s, all + 1000, rows, 10);
    for (int i = 0; i < 4; i++) {
        ck_assert(rows[i].scored);
        ck_assert_msg(rows[i].anomaly_score > 0.99, "row %d: %.17g", i, rows[i].anomaly_score);
    }
    EV(s.l, 0, AN_EV_RUN, 0, 10, 1001, 1024, 1000, 24);
    EV(s.l, 1, AN_EV_GREEDY_BREAK, 1004);
    EV(s.l, 2, AN_EV_REFRESH, 1004, 1, 1004);
    EV(s.l, 3, AN_EV_RUN, 4, 10, 1005, 1028, 1004, 24);
    ck_assert_int_eq(s.l->n, 4);
    ck_assert_int_eq(s.ms.tail_calls, 1);
    ck_assert_uint_eq(s.ms.last_tail_n, 8640 - 4);
    /* re-estimated on constant 1.0 averages: the rest score exactly 0.5 */
    ck_scored(rows, 4, 10, 0.5);
    ck_assert_int_eq(s.st.last_rowid_for_stats, 1004);
    sc_end(&s);
}
END_TEST

START_TEST(test_greedy_break_on_last_row)
{
    /* The break lands on the batch's last row, before the cutoff: no
     * re-estimate (the tail is never read: the source would fail). */
    an_helper_config c = an_helper_config_default();
    static an_sample all[1004];
    greedy_setup(all, 1004);
    scenario s;
    sc_start(&s, &c, all, 1000, sharp_state(1000));
    s.ms.fail_tail = true;
    s.ms.fail_count = true;
    an_row rows[4];
    sc_update(&s, all + 1000, rows, 4);
    EV(s.l, 0, AN_EV_RUN, 0, 4, 1001, 1024, 1000, 24);
    EV(s.l, 1, AN_EV_GREEDY_BREAK, 1004);
    ck_assert_int_eq(s.l->n, 2);
    ck_assert_int_eq(s.ms.tail_calls, 0);
    ck_assert_int_eq(s.ms.count_calls, 0);
    ck_assert_int_eq(s.st.last_rowid_for_stats, 1000);
    ck_assert_int_eq(s.st.params.ma.len, 10);
    ck_assert(s.st.params.ma.total == 4.0); /* online update advanced the params */
    sc_end(&s);
}
END_TEST

START_TEST(test_greedy_break_on_last_row_at_cutoff)
{
    /* Same, but the last row is also at the cutoff (refresh_rate 4): the
     * refresh happens. */
    an_helper_config c = an_helper_config_default();
    c.refresh_rate = 4;
    static an_sample all[1004];
    greedy_setup(all, 1004);
    scenario s;
    sc_start(&s, &c, all, 1000, sharp_state(1000));
    an_row rows[4];
    sc_update(&s, all + 1000, rows, 4);
    EV(s.l, 0, AN_EV_RUN, 0, 4, 1001, 1004, 1000, 4);
    EV(s.l, 1, AN_EV_GREEDY_BREAK, 1004);
    EV(s.l, 2, AN_EV_REFRESH, 1004, 1, 1004);
    ck_assert_int_eq(s.l->n, 3);
    ck_assert_int_eq(s.st.last_rowid_for_stats, 1004);
    sc_end(&s);
}
END_TEST

START_TEST(test_source_fails_state_unchanged)
{
    an_helper_config c = an_helper_config_default();
    an_helper *h = an_helper_new(&c, NULL, NULL);
    static an_sample all[1010];
    greedy_setup(all, 1010);
    char err[256];

    /* null state: the count fails */
    memsrc ms = {.rows = all, .n = 1000, .fail_count = true};
    an_sample_source src = source_of(&ms);
    an_helper_state st = null_state();
    an_row rows[10];
    rows_from(rows, all + 1000, 10);
    err[0] = '\0';
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 10, err, sizeof err), AN_EIO);
    ck_assert_ptr_nonnull(strstr(err, "count exploded"));
    ck_assert(!st.present);

    /* null state: the tail fails while building the first model */
    ms.fail_count = false;
    ms.fail_tail = true;
    err[0] = '\0';
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 10, err, sizeof err), AN_EIO);
    ck_assert_ptr_nonnull(strstr(err, "tail exploded"));
    ck_assert(!st.present);

    /* present state: rows 1001..1004 update the params online, then the
     * greedy refresh reads the tail, which fails: the state is as before */
    st = sharp_state(1000);
    char *before = state_text(&st);
    rows_from(rows, all + 1000, 10);
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 10, err, sizeof err), AN_EIO);
    char *after = state_text(&st);
    ck_assert_str_eq(before, after);
    free(after);

    /* and the helper still works afterwards */
    ms.fail_tail = false;
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 10, err, sizeof err), 0);
    ck_assert_int_eq(st.last_rowid_for_stats, 1004);
    free(before);
    an_helper_free(h);
}
END_TEST

START_TEST(test_missing_source)
{
    /* No source, or one without the callback the batch needs: AN_EINVAL. */
    an_helper_config c = an_helper_config_default();
    an_helper *h = an_helper_new(&c, NULL, NULL);
    an_sample all[100];
    gen_rows(all, 100, 1);
    memsrc ms = {.rows = all, .n = 90};
    an_sample_source src = source_of(&ms);
    src.processed_count = NULL;
    an_helper_state st = null_state();
    an_row rows[10];
    rows_from(rows, all + 90, 10);
    char err[256];
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 10, err, sizeof err), AN_EINVAL);
    ck_assert_int_eq(an_helper_update(h, NULL, &st, rows, 10, err, sizeof err), AN_EINVAL);
    src = source_of(&ms);
    src.tail = NULL;
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 10, err, sizeof err), AN_EINVAL);
    ck_assert(!st.present);
    an_helper_free(h);
}
END_TEST

static int count90(void *ctx, int64_t *count, char *err, size_t errlen)
{
    (void)ctx;
    (void)err;
    (void)errlen;
    *count = 90;
    return 0;
}

static int count_neg(void *ctx, int64_t *count, char *err, size_t errlen)
{
    (void)ctx;
    (void)err;
    (void)errlen;
    *count = -1;
    return 0;
}

static int tail_too_many(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                         size_t errlen)
{
    (void)ctx;
    (void)out;
    (void)err;
    (void)errlen;
    *got = n + 1; /* claims more than asked (writes nothing) */
    return 0;
}

START_TEST(test_source_misbehaves)
{
    an_helper_config c = an_helper_config_default();
    an_helper *h = an_helper_new(&c, NULL, NULL);
    an_sample all[200];
    gen_rows(all, 200, 1);
    memsrc ms = {.rows = all, .n = 150};
    an_helper_state st = null_state();
    an_row rows[10];
    rows_from(rows, all + 150, 10);
    char err[256];
    an_sample_source src = {.ctx = &ms, .processed_count = count_neg, .tail = ms_tail};
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 10, err, sizeof err), AN_EIO);
    ck_assert_ptr_nonnull(strstr(err, "negative processed count"));
    src.processed_count = ms_count;
    src.tail = tail_too_many;
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 10, err, sizeof err), AN_EIO);
    ck_assert_ptr_nonnull(strstr(err, "returned"));
    ck_assert(!st.present);
    an_helper_free(h);
}
END_TEST

START_TEST(test_count_tail_disagree)
{
    an_helper_config c = an_helper_config_default();
    evlog *l;
    an_helper *h = new_logged(&c, &l);
    an_sample all[100];
    gen_rows(all, 100, 1);
    memsrc ms = {.rows = all, .n = 5};
    an_sample_source src = {.ctx = &ms, .processed_count = count90, .tail = ms_tail};
    an_helper_state st = null_state();
    an_row rows[10];
    rows_from(rows, all + 90, 10);
    char err[256];
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 10, err, sizeof err), AN_ESTATE);
    ck_assert_ptr_nonnull(strstr(err, "initial anomaly params"));
    ck_assert(!st.present);
    ck_assert_int_eq(l->n, 1);
    EV(l, 0, AN_EV_NOT_ENOUGH, 15, 100);
    free_logged(h, l);
}
END_TEST

START_TEST(test_small_cache_after_refresh)
{
    /* A present state but the table lost its old rows (only 30 remain):
     * the forced refresh has too few samples (not_enough, params kept),
     * then runs fill the cache up to MIN before the next estimate. */
    an_helper_config c = an_helper_config_default();
    static an_sample all[600];
    gen_rows(all, 600, 1);
    scenario s;
    sc_start(&s, &c, all + 470, 30, sharp_state(100)); /* rows 471..500 */
    static an_row rows[100];
    sc_update(&s, all + 500, rows, 100); /* 501..600 */
    EV(s.l, 0, AN_EV_CUTOFF_PRECEDES, 501, 124);
    EV(s.l, 1, AN_EV_BYPASS_REFRESH, 501, 124);
    EV(s.l, 2, AN_EV_RUN, 0, 0, 501, 124, 100, 24);
    EV(s.l, 3, AN_EV_NOT_ENOUGH, 30, 100);
    /* cache of 30 < MIN: endRowID = 501 + (100 - 30 - 1) = 570 */
    ck_assert_int_ge(s.l->n, 5);
    ck_assert(s.l->ev[4].kind == AN_EV_RUN);
    ck_assert_int_eq(s.l->ev[4].args[0], 0);
    ck_assert_int_eq(s.l->ev[4].args[2], 501);
    ck_assert_int_eq(s.l->ev[4].args[3], 570);
    ck_assert_int_eq(s.l->ev[4].args[4], 100);
    for (int i = 0; i < 100; i++)
        ck_assert(rows[i].scored);
    sc_end(&s);
}
END_TEST

START_TEST(test_bad_batches)
{
    an_helper_config c = an_helper_config_default();
    an_helper *h = an_helper_new(&c, NULL, NULL);
    memsrc ms = {0};
    an_sample_source src = source_of(&ms);
    an_helper_state st = null_state();
    an_row rows[3] = {{.rowid = 5}, {.rowid = 6}, {.rowid = 8}};
    char err[256];
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 0, err, sizeof err), AN_EINVAL);
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 3, err, sizeof err), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "out of order"));
    rows[2].rowid = 6;
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 3, err, sizeof err), AN_EINVAL);
    rows[2].rowid = 7;
    ck_assert_int_eq(an_helper_update(h, &src, &st, rows, 3, err, sizeof err), 0);
    ck_assert_int_eq(ms.count_calls, 1);
    /* inconsistent caller-built state */
    an_helper_state bad = sharp_state(4);
    bad.params.ma.len = 11;
    ck_assert_int_eq(an_helper_update(h, &src, &bad, rows, 3, err, sizeof err), AN_EINVAL);
    an_helper_free(h);
}
END_TEST

/* ---- state JSON --------------------------------------------------------- */

static int from_text(const char *text, an_helper_state *s, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    ck_assert_msg(j != NULL, "bad test JSON %s: %s", text, je.text);
    int rc = an_helper_state_from_json(j, s, err, errlen);
    json_decref(j);
    return rc;
}

static const char good_params[] =
    "{\"distribution\":{\"name\":\"normal\",\"mean\":0.03,\"variance\":0.0003,"
    "\"stdev\":0.017320508075688773},"
    "\"movingAverage\":{\"historicalValues\":[0.1,0.2,0.30000000000000004],"
    "\"total\":0.6000000000000001,\"windowSize\":10},"
    "\"historicalLikelihoods\":[0.5,1e-300,0.0010000000000000009]}";

START_TEST(test_state_json_null_and_empty)
{
    an_helper_state s = sharp_state(7);
    char err[256];
    ck_assert_int_eq(an_helper_state_from_json(NULL, &s, err, sizeof err), 0);
    ck_assert(!s.present);
    s = sharp_state(7);
    ck_assert_int_eq(from_text("null", &s, err, sizeof err), 0);
    ck_assert(!s.present);
    s = sharp_state(7);
    ck_assert_int_eq(from_text("{}", &s, err, sizeof err), 0); /* Python: not {} */
    ck_assert(!s.present);
    json_t *j = an_helper_state_to_json(&s);
    ck_assert(json_is_null(j));
    json_decref(j);
}
END_TEST

START_TEST(test_state_json_roundtrip)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"last_rowid_for_stats\": 4242, \"params\": %s, \"extra\": [1, 2]}",
             good_params);
    an_helper_state s = null_state();
    char err[256] = "";
    ck_assert_int_eq(from_text(text, &s, err, sizeof err), 0);
    ck_assert(s.present);
    ck_assert_int_eq(s.last_rowid_for_stats, 4242);
    ck_assert(s.params.dist.stdev == 0.017320508075688773);
    ck_assert_int_eq(s.params.ma.len, 3);
    ck_assert(s.params.ma.values[2] == 0.30000000000000004);
    ck_assert_int_eq(s.params.hist_len, 3);
    ck_assert(s.params.hist[1] == 1e-300);

    json_t *j = an_helper_state_to_json(&s);
    ck_assert(json_is_object(j));
    ck_assert_uint_eq(json_object_size(j), 2); /* the extra key is not kept */
    ck_assert(json_is_integer(json_object_get(j, "last_rowid_for_stats")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "last_rowid_for_stats")), 4242);
    char *t = json_dumps(j, JSON_COMPACT);
    an_helper_state s2 = null_state();
    ck_assert_int_eq(from_text(t, &s2, err, sizeof err), 0);
    char *a = state_text(&s), *b = state_text(&s2);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    free(t);
    json_decref(j);
}
END_TEST

/* an_helper_state_text writes the bytes an_json_dumps writes for the tree
 * of an_helper_state_to_json: absent state, windows from empty to full,
 * doubles of every kind (tiny totals, negatives, -0.0, huge), and a
 * non-finite number fails both ways. */
START_TEST(test_state_text_equals_dump)
{
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 3000; i++) {
        an_helper_state s;
        memset(&s, 0, sizeof s);
        s.present = i % 50 != 0;
        s.last_rowid_for_stats = i % 7 == 0 ? INT64_MAX - i : (int64_t)i * 977 - 5000;
        double pick[8];
        for (int k = 0; k < 8; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            double u = (double)(x >> 11) / 9007199254740992.0;
            double bits;
            uint64_t r = x;
            memcpy(&bits, &r, sizeof bits);
            pick[k] = k == 0 ? u : k == 1 ? u * 1e-15 : k == 2 ? -u : k == 3 ? 0.0
                    : k == 4 ? -0.0 : k == 5 ? u * 1e300 : k == 6 ? (isfinite(bits) ? bits : 1.0)
                    : 0.691462461;
        }
#define PICK() pick[(x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 61]
        s.params.dist.mean = PICK();
        s.params.dist.variance = PICK();
        s.params.dist.stdev = PICK();
        s.params.ma.window_size = 1 + i % 10;
        s.params.ma.len = i % (s.params.ma.window_size + 1);
        for (int k = 0; k < s.params.ma.len; k++)
            s.params.ma.values[k] = PICK();
        s.params.ma.total = PICK();
        s.params.hist_len = (i / 3) % (s.params.ma.window_size + 1);
        for (int k = 0; k < s.params.hist_len; k++)
            s.params.hist[k] = PICK();
#undef PICK
        json_t *j = an_helper_state_to_json(&s);
        ck_assert_ptr_nonnull(j);
        char *want = an_json_dumps(j, NULL);
        json_decref(j);
        size_t len = 0;
        char *got = an_helper_state_text(&s, &len);
        ck_assert_ptr_nonnull(want);
        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got, want);
        ck_assert_uint_eq(len, strlen(want));
        free(want);
        free(got);
    }
    an_helper_state s;
    memset(&s, 0, sizeof s);
    s.present = true;
    s.params.ma.window_size = 10;
    s.params.dist.stdev = NAN;
    ck_assert_ptr_null(an_helper_state_to_json(&s));
    ck_assert_ptr_null(an_helper_state_text(&s, NULL));
}
END_TEST

START_TEST(test_state_json_errors)
{
    static const struct {
        const char *text;
        const char *msg;
    } bad[] = {
        {"[]", "anomalyLikelihoodParams"},
        {"\"x\"", "anomalyLikelihoodParams"},
        {"42", "anomalyLikelihoodParams"},
        {"{\"params\": {}}",
         "anomalyLikelihoodParams.last_rowid_for_stats: missing or not an integer"},
        {"{\"last_rowid_for_stats\": \"12\", \"params\": {}}",
         "anomalyLikelihoodParams.last_rowid_for_stats: missing or not an integer"},
        {"{\"last_rowid_for_stats\": 12.0, \"params\": {}}",
         "anomalyLikelihoodParams.last_rowid_for_stats: missing or not an integer"},
        {"{\"last_rowid_for_stats\": 12}", "anomalyLikelihoodParams.params: missing"},
        {"{\"last_rowid_for_stats\": 12, \"params\": null}",
         "anomalyLikelihoodParams.params: missing"},
        {"{\"last_rowid_for_stats\": 12, \"params\": {}}", "anomalyLikelihoodParams.params: "},
        {"{\"last_rowid_for_stats\": 12, \"params\": {\"distribution\": 3}}",
         "anomalyLikelihoodParams.params: "},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        an_helper_state s = sharp_state(77);
        char *before = state_text(&s);
        char err[256] = "";
        ck_assert_msg(from_text(bad[i].text, &s, err, sizeof err) == AN_EINVAL, "%s accepted",
                      bad[i].text);
        ck_assert_msg(strstr(err, bad[i].msg) != NULL, "%s: message '%s' lacks '%s'",
                      bad[i].text, err, bad[i].msg);
        char *after = state_text(&s);
        ck_assert_str_eq(before, after);
        free(before);
        free(after);
    }
    /* a params error names the inner key too */
    char text[1024];
    snprintf(text, sizeof text,
             "{\"last_rowid_for_stats\": 12, \"params\": {\"distribution\": "
             "{\"name\":\"normal\",\"mean\":0.5,\"variance\":1,\"stdev\":1}}}");
    an_helper_state s = null_state();
    char err[256] = "";
    ck_assert_int_eq(from_text(text, &s, err, sizeof err), AN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "movingAverage"));
}
END_TEST

START_TEST(test_exclusive_window_rules)
{
    /* The window is read once, then kept; a batch that does not follow it,
     * another source, or an error makes the helper read the tail again. */
    an_helper_config c = an_helper_config_default();
    c.min_sample_size = 20;
    c.sample_size = 50;
    c.refresh_rate = 5;
    c.skip_records = 10;
    an_helper *h = an_helper_new(&c, NULL, NULL);
    an_helper_set_exclusive_source(h, true);
    static an_sample all[400];
    rng_state = 11;
    gen_rows(all, 400, 1);
    memsrc ms = {.rows = all};
    an_sample_source src = source_of(&ms);
    an_helper_state st = null_state();
    char err[256];
    an_row row;
    feed_singles(h, &src, &ms, &st, all, 0, 200);
    ck_assert_int_eq(ms.tail_calls, 1);
    ck_assert_uint_eq(ms.last_tail_n, 50);

    /* replaying an earlier row: not after the window -> read again */
    an_helper_state st2 = st;
    rows_from(&row, all + 150, 1);
    ms.n = 150;
    ck_assert_int_eq(an_helper_update(h, &src, &st2, &row, 1, err, sizeof err), 0);
    ck_assert_int_eq(ms.tail_calls, 1); /* (no refresh in this call) */
    rows_from(&row, all + 200, 1);
    ms.n = 200;
    feed_singles(h, &src, &ms, &st, all, 200, 230);
    ck_assert_int_eq(ms.tail_calls, 2);

    /* another source ctx -> read again */
    memsrc ms2 = ms;
    ms2.tail_calls = 0;
    an_sample_source src2 = source_of(&ms2);
    feed_singles(h, &src2, &ms2, &st, all, 230, 260);
    ck_assert_int_eq(ms2.tail_calls, 1);

    /* an error drops the window */
    ms2.fail_tail = true;
    an_row rows[40];
    rows_from(rows, all + 260, 40);
    ms2.n = 260;
    an_helper_state before = st;
    int rc = an_helper_update(h, &src2, &st, rows, 40, err, sizeof err);
    ck_assert_int_eq(rc, 0); /* the window serves the tail: no read, no error */
    st = before;
    an_helper_set_exclusive_source(h, true); /* drops the window */
    rc = an_helper_update(h, &src2, &st, rows, 40, err, sizeof err);
    ck_assert_int_eq(rc, AN_EIO);
    ms2.fail_tail = false;
    ck_assert_int_eq(an_helper_update(h, &src2, &st, rows, 40, err, sizeof err), 0);
    an_helper_free(h);
}
END_TEST

/* ---- randomized comparison with a naive transcription ----------------- */

/* tests/data/likelihood/nupic-1.0/README.md §5.11 written out directly: a
 * growing array cache (never trimmed), P replaced wholesale; events recorded in
 * the same log. */
typedef struct naive {
    an_helper_config cfg;
    evlog *log;
} naive;

static void nv_emit(naive *nv, an_helper_event_kind k, int nargs, int64_t a0, int64_t a1,
                    int64_t a2, int64_t a3, int64_t a4, int64_t a5)
{
    an_helper_event e = {.kind = k, .nargs = nargs, .args = {a0, a1, a2, a3, a4, a5}};
    for (int i = nargs; i < 6; i++)
        e.args[i] = 0;
    record(nv->log, &e);
}

static void nv_generate(naive *nv, const an_sample *cache, size_t len, an_helper_state *P)
{
    if (len < (size_t)nv->cfg.min_sample_size) {
        nv_emit(nv, AN_EV_NOT_ENOUGH, 2, (int64_t)len, nv->cfg.min_sample_size, 0, 0, 0, 0);
        return;
    }
    size_t k = len < (size_t)nv->cfg.sample_size ? len : (size_t)nv->cfg.sample_size;
    const an_sample *r = cache + (len - k);
    ck_assert_int_eq(an_estimate(nv->cfg.variant, r, k, nv->cfg.averaging_window,
                                 (size_t)nv->cfg.skip_records, &P->params, NULL, NULL, NULL),
                     0);
    P->present = true;
    P->last_rowid_for_stats = r[k - 1].rowid;
    nv_emit(nv, AN_EV_REFRESH, 3, (int64_t)k, r[0].rowid, r[k - 1].rowid, 0, 0, 0);
}

/* earlier = all processed rows (ascending), prev of them. */
static void nv_batch(naive *nv, const an_sample *earlier, size_t prev, an_helper_state *P,
                     an_row *B, size_t m)
{
    const size_t MIN = (size_t)nv->cfg.min_sample_size, SIZE = (size_t)nv->cfg.sample_size;
    int R = (int)fmax(nv->cfg.refresh_rate, 0.1 * (double)m);
    an_sample *cache = NULL;
    size_t clen = 0;
    bool have = false;
    size_t start = 0;
    for (size_t i = 0; i < m; i++) {
        B[i].anomaly_score = 0;
        B[i].scored = false;
    }
    if (!P->present) {
        if (prev + m >= MIN) {
            size_t k0 = prev >= MIN ? 0 : MIN - prev;
            size_t t = SIZE > k0 ? SIZE - k0 : 0;
            if (t > prev)
                t = prev;
            cache = malloc((t + m) * sizeof *cache);
            memcpy(cache, earlier + (prev - t), t * sizeof *cache);
            clen = t;
            for (size_t i = 0; i < k0; i++)
                cache[clen++] = (an_sample){B[i].rowid, B[i].value, B[i].raw};
            have = true;
            start = k0;
            nv_generate(nv, cache, clen, P);
            ck_assert(P->present);
            nv_emit(nv, AN_EV_INIT, 3, (int64_t)clen, cache[0].rowid, cache[clen - 1].rowid,
                    0, 0, 0);
        } else {
            start = m;
        }
    }
    while (start < m) {
        int64_t first = B[start].rowid, end;
        if (!have || clen >= MIN) {
            end = P->last_rowid_for_stats + R;
            if (end < first) {
                nv_emit(nv, AN_EV_CUTOFF_PRECEDES, 2, first, end, 0, 0, 0, 0);
                if (have)
                    end = first;
            }
        } else {
            end = first + (int64_t)(MIN - clen - 1);
        }
        size_t limit;
        if (end < first) {
            nv_emit(nv, AN_EV_BYPASS_REFRESH, 2, first, end, 0, 0, 0, 0);
            limit = start;
        } else {
            size_t span = (size_t)(end + 1 - first);
            limit = start + (m - start < span ? m - start : span);
        }
        nv_emit(nv, AN_EV_RUN, 6, (int64_t)start, (int64_t)limit, first, end,
                P->last_rowid_for_stats, R);
        size_t nc = 0;
        for (size_t j = start; j < limit; j++) {
            nc++;
            double l = an_update_one(nv->cfg.variant, &P->params, B[j].raw, NULL);
            B[j].anomaly_score = 1.0 - l;
            B[j].scored = true;
            if (B[j].anomaly_score > 0.99 && P->last_rowid_for_stats + 3 < B[j].rowid &&
                (!have || clen + nc >= MIN)) {
                nv_emit(nv, AN_EV_GREEDY_BREAK, 1, B[j].rowid, 0, 0, 0, 0, 0);
                break;
            }
        }
        if (start + nc < m || (nc > 0 && B[start + nc - 1].rowid >= end)) {
            if (!have) {
                size_t t = SIZE > nc ? SIZE - nc : 0;
                if (t > prev)
                    t = prev;
                cache = malloc((t + m) * sizeof *cache);
                memcpy(cache, earlier + (prev - t), t * sizeof *cache);
                clen = t;
                have = true;
            }
            for (size_t j = start; j < start + nc; j++)
                cache[clen++] = (an_sample){B[j].rowid, B[j].value, B[j].raw};
            nv_generate(nv, cache, clen, P);
        }
        start += nc;
    }
    free(cache);
}

/* Drives the helper and the naive version over total generated rows in
 * random batches (half 1-row, some up to 10, the rest up to max_big rows)
 * and requires identical scores (bitwise), states and events. */
static void run_random_mode(an_variant v, int min, int size, int rate, int skip,
                            uint64_t seed, size_t total, size_t max_big, bool expect_greedy,
                            bool exclusive)
{
    rng_state = seed;
    an_helper_config c = an_helper_config_default();
    c.variant = v;
    c.min_sample_size = min;
    c.sample_size = size;
    c.refresh_rate = rate;
    c.skip_records = skip;
    an_sample *all = malloc(total * sizeof *all);
    gen_rows(all, total, 1);
    evlog *la = calloc(1, sizeof *la), *lb = calloc(1, sizeof *lb);
    an_helper *h = an_helper_new(&c, record, la);
    an_helper_set_exclusive_source(h, exclusive);
    naive nv = {.cfg = c, .log = lb};
    memsrc ms = {.rows = all};
    an_sample_source src = source_of(&ms);
    an_helper_state sa, sb;
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    an_row *ra = malloc(total * sizeof *ra), *rb = malloc(total * sizeof *rb);
    size_t done = 0;
    int batches = 0;
    int seen[AN_EV_NOT_ENOUGH + 1] = {0};
    while (done < total) {
        double u = rnd();
        size_t m = u < 0.5 ? 1 : u < 0.8 ? 1 + (size_t)(rnd() * 10)
                                         : 1 + (size_t)(rnd() * (double)max_big);
        if (m > total - done)
            m = total - done;
        rows_from(ra, all + done, m);
        rows_from(rb, all + done, m);
        ms.n = done;
        la->n = lb->n = 0;
        char err[256];
        ck_assert_int_eq(an_helper_update(h, &src, &sa, ra, m, err, sizeof err), 0);
        nv_batch(&nv, all, done, &sb, rb, m);
        for (size_t i = 0; i < m; i++) {
            ck_assert_msg(ra[i].scored == rb[i].scored, "batch %d row %zu scored", batches, i);
            ck_assert_msg(memcmp(&ra[i].anomaly_score, &rb[i].anomaly_score, sizeof(double)) == 0,
                          "batch %d rowid %lld: %.17g vs %.17g", batches,
                          (long long)ra[i].rowid, ra[i].anomaly_score, rb[i].anomaly_score);
        }
        ck_assert_int_eq(la->n, lb->n);
        for (int i = 0; i < la->n; i++) {
            ck_event(la, i, lb->ev[i].kind, lb->ev[i].nargs, lb->ev[i].args);
            seen[la->ev[i].kind]++;
        }
        char *ta = state_text(&sa), *tb = state_text(&sb);
        ck_assert_str_eq(ta, tb);
        free(ta);
        free(tb);
        done += m;
        batches++;
    }
    /* the schedule must have exercised every path */
    if (exclusive)
        ck_assert_int_le(ms.tail_calls, 1); /* the window replaced the reads */
    ck_assert_int_eq(seen[AN_EV_INIT], 1);
    ck_assert_int_gt(seen[AN_EV_REFRESH], 10);
    if (expect_greedy) {
        ck_assert_int_gt(seen[AN_EV_GREEDY_BREAK], 0);
        ck_assert_int_gt(seen[AN_EV_CUTOFF_PRECEDES], 0);
    }
    free(ra);
    free(rb);
    free(all);
    free(la);
    free(lb);
    an_helper_free(h);
}

static void run_random(an_variant v, int min, int size, int rate, int skip, uint64_t seed,
                       size_t total, size_t max_big, bool expect_greedy)
{
    run_random_mode(v, min, size, rate, skip, seed, total, max_big, expect_greedy, false);
    run_random_mode(v, min, size, rate, skip, seed, total, max_big, expect_greedy, true);
}

START_TEST(test_random_vs_naive_small)
{
    /* sample_size 50 with batches up to 200 rows: the cache buffer drops
     * old entries many times within one batch */
    run_random(AN_VARIANT_HTMENGINE, 20, 50, 5, 10, 1, 6000, 200, true);
    run_random(AN_VARIANT_NUPIC10, 20, 50, 5, 10, 2, 6000, 200, true);
    /* degenerate: one-sample estimates are always flat (null distribution) */
    run_random(AN_VARIANT_HTMENGINE, 1, 1, 1, 0, 3, 500, 4, false);
    run_random(AN_VARIANT_NUPIC10, 30, 30, 3, 40, 4, 3000, 120, false);
}
END_TEST

START_TEST(test_random_vs_naive_default)
{
    run_random(AN_VARIANT_HTMENGINE, 100, 8640, 24, 288, 5, 12000, 1500, true);
}
END_TEST

static Suite *helper_suite(void)
{
    Suite *s = suite_create("helper");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_config_default_and_validate);
    tcase_add_test(tc, test_refresh_interval_table);
    tcase_add_test(tc, test_event_names);
    tcase_add_test(tc, test_fewer_than_min_rows);
    tcase_add_test(tc, test_init_inside_batch);
    tcase_add_test(tc, test_init_exactly_at_batch_start);
    tcase_add_test(tc, test_gap_forces_refresh);
    tcase_add_test(tc, test_gap_in_processed_rows_advances_cutoff);
    tcase_add_test(tc, test_extreme_last_rowid);
    tcase_add_test(tc, test_greedy_break_mid_batch);
    tcase_add_test(tc, test_greedy_break_on_last_row);
    tcase_add_test(tc, test_greedy_break_on_last_row_at_cutoff);
    tcase_add_test(tc, test_source_fails_state_unchanged);
    tcase_add_test(tc, test_missing_source);
    tcase_add_test(tc, test_count_tail_disagree);
    tcase_add_test(tc, test_source_misbehaves);
    tcase_add_test(tc, test_small_cache_after_refresh);
    tcase_add_test(tc, test_bad_batches);
    tcase_add_test(tc, test_state_json_null_and_empty);
    tcase_add_test(tc, test_state_json_roundtrip);
    tcase_add_test(tc, test_state_text_equals_dump);
    tcase_add_test(tc, test_state_json_errors);
    tcase_add_test(tc, test_exclusive_window_rules);
    tcase_add_test(tc, test_random_vs_naive_small);
    tcase_add_test(tc, test_random_vs_naive_default);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(helper_suite(), CK_NORMAL);
}
