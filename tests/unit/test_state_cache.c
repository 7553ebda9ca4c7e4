/*
 * test_state_cache.c: the per-metric state cache and the model_params text
 * surgery (an_state_cache.h).
 *
 *  - an_model_params_merge is held byte for byte to the reference (parse
 *    model_params, set anomalyLikelihoodParams to the parsed state text,
 *    an_json_dumps), over odd and realistic params and over real and
 *    hand-built states; the span it reports must hold the state text.
 *  - the sentinel merge splices with, planted in the params, must not
 *    change the result (and the span must then be unknown).
 *  - an_model_params_splice gives what merge gives.
 *  - cache get/put: exact state round trip, any byte change misses, LRU
 *    order, disabled cache, re-put, forget, stats, table growth, and a
 *    randomized run against a naive model of the cache.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "an_codec.h"
#include "an_helper.h"
#include "an_json_mem.h"
#include "an_state_cache.h"
#include "check_main.h"

#define KEY "anomalyLikelihoodParams"

/* ---- fixtures ----------------------------------------------------------- */

/* The reference merge (docs/htmengine.md §1.4 step 7.2 as the service did it
 * before the cache): NULL / non-JSON / non-object params count as {}. */
static char *ref_merge(const char *mp, const char *state_text, size_t *len)
{
    json_t *o = mp ? json_loads(mp, 0, NULL) : NULL;
    if (!o || !json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    ck_assert_ptr_nonnull(o);
    json_t *s = json_loads(state_text, JSON_DECODE_ANY, NULL);
    ck_assert_msg(s != NULL, "state text does not parse: %s", state_text);
    ck_assert_int_eq(json_object_set(o, KEY, s), 0);
    json_decref(s);
    char *t = an_json_dumps(o, len);
    json_decref(o);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* First differing byte, for messages. */
static void ck_text_eq(const char *what, const char *got, size_t glen,
                       const char *want, size_t wlen)
{
    size_t n = glen < wlen ? glen : wlen, i = 0;
    while (i < n && got[i] == want[i])
        i++;
    ck_assert_msg(glen == wlen && i == n,
                  "%s: texts differ at byte %zu (len got %zu want %zu)\n got:  %.300s\n want: %.300s",
                  what, i, glen, wlen, got + (i > 40 ? i - 40 : 0),
                  want + (i > 40 ? i - 40 : 0));
}

static char *state_dump(const an_helper_state *s)
{
    json_t *j = an_helper_state_to_json(s);
    ck_assert_ptr_nonnull(j);
    char *t = an_json_dumps(j, NULL);
    json_decref(j);
    ck_assert_ptr_nonnull(t);
    return t;
}

static an_helper_state state_parse(const char *text)
{
    an_helper_state s;
    memset(&s, 0, sizeof s);
    char err[256] = "";
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(an_helper_state_from_json(j, &s, err, sizeof err) == 0,
                  "state_from_json: %s", err);
    json_decref(j);
    return s;
}

/* Field-by-field, exact on doubles (bit patterns, so -0.0 != 0.0 too). */
static bool dbl_same(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static void ck_state_eq(const char *what, const an_helper_state *got,
                        const an_helper_state *want)
{
    ck_assert_msg(got->present == want->present, "%s: present", what);
    if (!want->present) {
        ck_assert_msg(got->last_rowid_for_stats == 0, "%s: last_rowid of a null state", what);
        return;
    }
    ck_assert_msg(got->last_rowid_for_stats == want->last_rowid_for_stats,
                  "%s: last_rowid_for_stats %lld want %lld", what,
                  (long long)got->last_rowid_for_stats,
                  (long long)want->last_rowid_for_stats);
    const an_lk_params *g = &got->params, *w = &want->params;
    ck_assert_msg(dbl_same(g->dist.mean, w->dist.mean), "%s: mean", what);
    ck_assert_msg(dbl_same(g->dist.variance, w->dist.variance), "%s: variance", what);
    ck_assert_msg(dbl_same(g->dist.stdev, w->dist.stdev), "%s: stdev", what);
    ck_assert_msg(g->ma.len == w->ma.len, "%s: ma.len %d want %d", what, g->ma.len, w->ma.len);
    ck_assert_msg(g->ma.window_size == w->ma.window_size, "%s: window", what);
    ck_assert_msg(dbl_same(g->ma.total, w->ma.total), "%s: ma.total", what);
    for (int i = 0; i < w->ma.len; i++)
        ck_assert_msg(dbl_same(g->ma.values[i], w->ma.values[i]), "%s: ma.values[%d]", what, i);
    ck_assert_msg(g->hist_len == w->hist_len, "%s: hist_len %d want %d", what, g->hist_len,
                  w->hist_len);
    for (int i = 0; i < w->hist_len; i++)
        ck_assert_msg(dbl_same(g->hist[i], w->hist[i]), "%s: hist[%d]", what, i);
}

/* ---- real states from the helper ---------------------------------------- */

typedef struct memsrc {
    an_sample *rows;
    size_t n;
} memsrc;

static int ms_count(void *ctx, int64_t *count, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    *count = (int64_t)((memsrc *)ctx)->n;
    return 0;
}

static int ms_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                   size_t errlen)
{
    (void)err;
    (void)errlen;
    memsrc *m = ctx;
    size_t k = n < m->n ? n : m->n;
    memcpy(out, m->rows + (m->n - k), k * sizeof *out);
    *got = k;
    return 0;
}

static uint64_t rng_state;
static double rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static unsigned rndu(unsigned n) { return (unsigned)(rnd() * n) % n; }

/* Runs the helper over nrows generated rows in batches of 1..37 and
 * returns the state it ends with. */
static an_helper_state real_state(an_variant v, uint64_t seed, size_t nrows,
                                  int64_t first_rowid)
{
    rng_state = seed;
    an_sample *all = calloc(nrows, sizeof *all);
    an_row *rows = calloc(nrows, sizeof *rows);
    ck_assert(all && rows);
    int burst = 0;
    for (size_t i = 0; i < nrows; i++) {
        if (burst == 0 && rnd() < 0.03)
            burst = 1 + (int)(rnd() * 8);
        all[i].rowid = first_rowid + (int64_t)i;
        all[i].value = 100.0 + 50.0 * sin((double)i / 20.0) + rnd();
        all[i].raw = burst ? 1.0 : (rnd() < 0.6 ? 0.0 : rnd() * 0.4);
        if (burst)
            burst--;
    }
    an_helper_config c = an_helper_config_default();
    c.variant = v;
    c.min_sample_size = 30;
    c.sample_size = 200;
    c.refresh_rate = 7;
    c.skip_records = 12;
    c.averaging_window = 10;
    an_helper *h = an_helper_new(&c, NULL, NULL);
    ck_assert_ptr_nonnull(h);
    memsrc ms = {.rows = all};
    an_sample_source src = {.ctx = &ms, .processed_count = ms_count, .tail = ms_tail};
    an_helper_state st;
    memset(&st, 0, sizeof st);
    char err[256];
    size_t done = 0;
    while (done < nrows) {
        size_t m = 1 + rndu(37);
        if (m > nrows - done)
            m = nrows - done;
        for (size_t i = 0; i < m; i++) {
            rows[i].rowid = all[done + i].rowid;
            rows[i].value = all[done + i].value;
            rows[i].raw = all[done + i].raw;
        }
        ms.n = done;
        ck_assert_msg(an_helper_update(h, &src, &st, rows, m, err, sizeof err) == 0,
                      "update: %s", err);
        done += m;
    }
    an_helper_free(h);
    free(all);
    free(rows);
    ck_assert(st.present);
    return st;
}

/* A hand-built state with the given window lengths and awkward doubles. */
static an_helper_state hand_state(int window, int ma_len, int hist_len, int64_t rowid,
                                  uint64_t seed)
{
    an_helper_state s;
    memset(&s, 0, sizeof s);
    rng_state = seed;
    s.present = true;
    s.last_rowid_for_stats = rowid;
    s.params.dist.mean = rnd();
    s.params.dist.variance = rnd() * 1e-4;
    s.params.dist.stdev = sqrt(s.params.dist.variance);
    s.params.ma.window_size = window;
    s.params.ma.len = ma_len;
    static const double odd[] = {0.0, 1.0, 0.1, 1e-300, 5e-324, 1e300, 0.30000000000000004,
                                 123456789.125, 1e-5, 2.2250738585072014e-308};
    double total = 0;
    for (int i = 0; i < ma_len; i++) {
        s.params.ma.values[i] = (i & 1) ? rnd() : odd[(unsigned)i % 10];
        total += s.params.ma.values[i];
    }
    s.params.ma.total = total;
    for (int i = 0; i < hist_len; i++)
        s.params.hist[i] = (i % 3 == 2) ? odd[(unsigned)(i * 7) % 10] : rnd();
    s.params.hist_len = hist_len;
    return s;
}

/* ---- inputs ------------------------------------------------------------- */

static const char SWARM[] =
    "{\"aggregationInfo\":{\"seconds\":0,\"fields\":[],\"months\":0,\"days\":0,"
    "\"years\":0,\"hours\":0,\"microseconds\":0,\"weeks\":0,\"minutes\":0,"
    "\"milliseconds\":0},\"model\":\"HTMPrediction\",\"version\":1,"
    "\"predictAheadTime\":null,\"modelParams\":{\"sensorParams\":{\"verbosity\":0,"
    "\"encoders\":{\"c0_timeOfDay\":{\"type\":\"DateEncoder\",\"timeOfDay\":[21,9.49],"
    "\"fieldname\":\"c0\",\"name\":\"c0\"},\"c0_dayOfWeek\":null,\"c0_weekend\":null,"
    "\"c1\":{\"name\":\"c1\",\"resolution\":0.0016666666666666668,\"seed\":42,"
    "\"fieldname\":\"c1\",\"type\":\"RandomDistributedScalarEncoder\"}},"
    "\"sensorAutoReset\":null},\"spEnable\":true,\"spParams\":{\"columnCount\":2048,"
    "\"spVerbosity\":0,\"globalInhibition\":1,\"synPermActiveInc\":0.003,"
    "\"synPermConnected\":0.2,\"numActiveColumnsPerInhArea\":40,\"seed\":1956,"
    "\"potentialPct\":0.8,\"boostStrength\":0.0,\"synPermInactiveDec\":0.0005,"
    "\"inputWidth\":0},\"trainSPNetOnlyIfRequested\":false,\"clEnable\":false,"
    "\"tmEnable\":true,\"tmParams\":{\"activationThreshold\":13,\"cellsPerColumn\":32,"
    "\"columnCount\":2048,\"globalDecay\":0.0,\"initialPerm\":0.21,\"inputWidth\":2048,"
    "\"maxAge\":0,\"maxSegmentsPerCell\":128,\"maxSynapsesPerSegment\":32,"
    "\"minThreshold\":10,\"newSynapseCount\":20,\"outputType\":\"normal\","
    "\"pamLength\":3,\"permanenceDec\":0.1,\"permanenceInc\":0.1,\"seed\":1960,"
    "\"temporalImp\":\"cpp\",\"verbosity\":0},\"inferenceType\":\"TemporalAnomaly\","
    "\"anomalyParams\":{\"anomalyCacheRecords\":null,\"autoDetectThreshold\":null,"
    "\"autoDetectWaitRecords\":5030}},\"inputRecordSchema\":[[\"c0\",\"datetime\",\"T\"],"
    "[\"c1\",\"float\",\"\"]],\"description\":\"caf\\u00e9 \\u2603 \\ud83d\\ude00 "
    "tab\\there nl\\n cr\\r bs\\\\ q\\\" del\\u007f \\u0001\\u001f/\\/\"}";

/* Params with the key, in the middle, with an old state in it. */
static const char SWARM_WITH_STATE_HEAD[] =
    "{\"a\":1,\"anomalyLikelihoodParams\":";
static const char SWARM_WITH_STATE_TAIL[] = ",\"b\":[1.5,\"s\"],\"z\":{\"q\":null}}";

static const char *const MP_INPUTS[] = {
    "not json",
    "",
    "[1,2]",
    "1",
    "\"a string\"",
    "null",
    "true",
    "{}",
    "  { }  ",
    "{} trailing",
    "{\"a\":1",
    "{\"a\":1,\"b\":\"x\",\"c\":[1,2.5,-0.0,1e300,true,false,null],\"d\":{}}",
    "{\"a\":1,\"anomalyLikelihoodParams\":{\"x\":2},\"b\":[1.5,\"s\"]}",
    "{\"anomalyLikelihoodParams\":null,\"b\":2}",
    "{\"b\":2,\"anomalyLikelihoodParams\":{}}",
    "{\"anomalyLikelihoodParams\":{\"last_rowid_for_stats\":5,\"params\":{}}}",
    "{\"anomalyLikelihoodParams\":\"\\u0001anomalyd:state\\u0002\"}",
    "{\"a\":1,\"anomalyLikelihoodParams\":1,\"anomalyLikelihoodParams\":2,\"c\":3}",
    "{\"anomalyLikelihood\\u0050arams\":[1],\"z\":0}",
    "{\"x\":{\"anomalyLikelihoodParams\":5},\"y\":[{\"anomalyLikelihoodParams\":6}]}",
    "{\"s\":\"anomalyLikelihoodParams\",\"t\":\"\\\"anomalyLikelihoodParams\\\":\"}",
    "{\n  \"pretty\" : [ 1 , 2 ] ,\n\t\"x\" : { \"y\" : 0.5E+2 }\n}",
    "{\"u\":\"\\u00e9\\u00fc\\u4e2d\\ud83d\\ude00\",\"c\":\"\\u0000x\"}",
    "{\"u\":\"\\u00e9\\u00fc\\u4e2d\\ud83d\\ude00\",\"ctl\":\"\\u0001\\u0002\\u001f\\u007f\\b\\f\\n\\r\\t\",\"raw\":\"\xc3\xa9\xe2\x98\x83\"}",
    "{\"\\u0001key\\u0002\":\"\\u0002anomalyd:state\\u0001\",\"k\":\"\\u0001anomalyd:state\"}",
    "{\"bad utf8\":\"\xff\xfe\"}",
    "{\"big\":123456789012345678901234567890}",
    "{\"n\":-9223372036854775808,\"m\":9223372036854775807,\"r\":1.7976931348623157e308,\"t\":4.9e-324}",
    "{\"deep\":[[[[[[[[[[{\"a\":[[[[[]]]]]}]]]]]]]]]]}",
    SWARM,
};
#define N_MP (sizeof MP_INPUTS / sizeof MP_INPUTS[0])

/* All params inputs incl. NULL and the SWARM_WITH_STATE one. */
typedef struct inputs {
    size_t n;
    const char *mp[N_MP + 8];
    char *owned[8];
    size_t n_owned;
} inputs;

static char *cat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *t = malloc(la + lb + lc + 1);
    ck_assert_ptr_nonnull(t);
    memcpy(t, a, la);
    memcpy(t + la, b, lb);
    memcpy(t + la + lb, c, lc + 1);
    return t;
}

static void inputs_init(inputs *in, const char *some_state)
{
    memset(in, 0, sizeof *in);
    in->mp[in->n++] = NULL;
    for (size_t i = 0; i < N_MP; i++)
        in->mp[in->n++] = MP_INPUTS[i];
    char *t = cat3(SWARM_WITH_STATE_HEAD, some_state, SWARM_WITH_STATE_TAIL);
    in->owned[in->n_owned++] = t;
    in->mp[in->n++] = t;
    /* the SWARM with the key as its first / last key */
    t = cat3("{\"anomalyLikelihoodParams\":", some_state, ",");
    char *u = cat3(t, SWARM + 1, "");
    free(t);
    in->owned[in->n_owned++] = u;
    in->mp[in->n++] = u;
    t = malloc(sizeof SWARM);
    memcpy(t, SWARM, sizeof SWARM);
    t[sizeof SWARM - 2] = '\0'; /* drop the '}' */
    u = cat3(t, ",\"anomalyLikelihoodParams\":", some_state);
    free(t);
    t = cat3(u, "}", "");
    free(u);
    in->owned[in->n_owned++] = t;
    in->mp[in->n++] = t;
}

static void inputs_free(inputs *in)
{
    for (size_t i = 0; i < in->n_owned; i++)
        free(in->owned[i]);
}

/* State texts: null, real states of both variants, hand-built windows of
 * every length 0..10, a full 256 window, extreme rowids. */
typedef struct states {
    size_t n;
    char *text[200];
    an_helper_state *st[200];
} states;

static void states_add(states *ss, const an_helper_state *s)
{
    ck_assert_uint_lt(ss->n, 200);
    ss->st[ss->n] = malloc(sizeof *s);
    ck_assert_ptr_nonnull(ss->st[ss->n]);
    memcpy(ss->st[ss->n], s, sizeof *s);
    ss->text[ss->n] = state_dump(s);
    ss->n++;
}

static void states_init(states *ss, bool many)
{
    memset(ss, 0, sizeof *ss);
    an_helper_state s;
    memset(&s, 0, sizeof s);
    states_add(ss, &s); /* null */
    s = real_state(AN_VARIANT_HTMENGINE, 11, 400, 1);
    states_add(ss, &s);
    s = real_state(AN_VARIANT_NUPIC10, 12, 333, 1000000);
    states_add(ss, &s);
    if (many) {
        s = real_state(AN_VARIANT_HTMENGINE, 13, 250, 77);
        states_add(ss, &s);
        s = real_state(AN_VARIANT_NUPIC10, 14, 500, 5);
        states_add(ss, &s);
    }
    int step = many ? 1 : 5;
    for (int ma = 0; ma <= 10; ma += step)
        for (int hl = 0; hl <= 10; hl += step) {
            s = hand_state(10, ma, hl, ma * 11 + hl, (uint64_t)(100 + ma * 11 + hl));
            states_add(ss, &s);
        }
    s = hand_state(AN_LK_MAX_WINDOW, AN_LK_MAX_WINDOW, AN_LK_MAX_WINDOW, INT64_MAX, 7);
    states_add(ss, &s);
    s = hand_state(1, 1, 1, INT64_MIN, 8);
    s.params.dist.mean = -0.0;
    s.params.ma.total = -1e-310;
    states_add(ss, &s);
}

static void states_free(states *ss)
{
    for (size_t i = 0; i < ss->n; i++) {
        free(ss->text[i]);
        free(ss->st[i]);
    }
}

/* Merges mp and st, checks against the reference; returns the text (caller
 * frees) and its span. */
static char *merge_checked(const char *mp, const char *st, an_state_span *span, size_t *len)
{
    size_t rlen = 0, mlen = 12345;
    char *ref = ref_merge(mp, st, &rlen);
    an_state_span sp = {777, 777};
    char *m = an_model_params_merge(mp, st, &sp, &mlen);
    ck_assert_msg(m != NULL, "merge NULL for mp=%.80s", mp ? mp : "(NULL)");
    char what[200];
    snprintf(what, sizeof what, "merge(mp=%.60s, state=%.40s)", mp ? mp : "(NULL)", st);
    ck_text_eq(what, m, strlen(m), ref, rlen);
    ck_assert_uint_eq(mlen, strlen(m));
    if (sp.len) {
        ck_assert_uint_eq(sp.len, strlen(st));
        ck_assert_uint_le(sp.off + sp.len, mlen);
        ck_assert_msg(memcmp(m + sp.off, st, sp.len) == 0, "%s: span does not hold the state",
                      what);
    } else {
        ck_assert_uint_eq(sp.off, 0);
    }
    /* len may be NULL */
    an_state_span sp2;
    char *m2 = an_model_params_merge(mp, st, &sp2, NULL);
    ck_assert_ptr_nonnull(m2);
    ck_assert_str_eq(m2, m);
    ck_assert_uint_eq(sp2.off, sp.off);
    ck_assert_uint_eq(sp2.len, sp.len);
    free(m2);
    free(ref);
    *span = sp;
    if (len)
        *len = mlen;
    return m;
}

/* Does the merged text hold the sentinel other than as the state? */
static bool holds_sentinel_elsewhere(const char *mp)
{
    json_t *o = mp ? json_loads(mp, 0, NULL) : NULL;
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return false;
    }
    json_object_del(o, KEY);
    char *t = an_json_dumps(o, NULL);
    json_decref(o);
    ck_assert_ptr_nonnull(t);
    bool r = strstr(t, "\"\\u0001anomalyd:state\\u0002\"") != NULL;
    free(t);
    return r;
}

/* ---- 1. merge == reference ---------------------------------------------- */

START_TEST(test_merge_matches_reference)
{
    states ss;
    states_init(&ss, true);
    inputs in;
    inputs_init(&in, ss.text[1]);
    size_t spliceable = 0;
    for (size_t i = 0; i < in.n; i++)
        for (size_t k = 0; k < ss.n; k++) {
            an_state_span sp;
            size_t len;
            char *m = merge_checked(in.mp[i], ss.text[k], &sp, &len);
            if (!holds_sentinel_elsewhere(in.mp[i])) {
                ck_assert_msg(sp.len == strlen(ss.text[k]),
                              "merge(mp #%zu, state #%zu): span unknown without a collision",
                              i, k);
                spliceable++;
            }
            /* the result parses and its key is the state */
            json_t *o = json_loads(m, 0, NULL);
            ck_assert_ptr_nonnull(o);
            json_t *sj = json_loads(ss.text[k], JSON_DECODE_ANY, NULL);
            ck_assert(json_equal(json_object_get(o, KEY), sj));
            json_decref(sj);
            json_decref(o);
            free(m);
        }
    ck_assert_uint_gt(spliceable, in.n * ss.n / 2);
    inputs_free(&in);
    states_free(&ss);
}
END_TEST

/* The exact texts for a few inputs (independent of the reference code). */
START_TEST(test_merge_known_texts)
{
    static const struct {
        const char *mp, *st, *want;
        size_t off;
    } cases[] = {
        {NULL, "null", "{\"anomalyLikelihoodParams\":null}", 27},
        {"not json", "null", "{\"anomalyLikelihoodParams\":null}", 27},
        {"[1,2]", "{\"a\":1}", "{\"anomalyLikelihoodParams\":{\"a\":1}}", 27},
        {"{}", "null", "{\"anomalyLikelihoodParams\":null}", 27},
        {"{\"x\" : 1.0}", "null", "{\"x\":1.0,\"anomalyLikelihoodParams\":null}", 35},
        {"{\"a\":1,\"anomalyLikelihoodParams\":{\"x\":2},\"b\":[1.5,\"s\"]}", "null",
         "{\"a\":1,\"anomalyLikelihoodParams\":null,\"b\":[1.5,\"s\"]}", 33},
        {"{\"u\":\"\\u00e9\\u0001\"}", "[]",
         "{\"u\":\"\xc3\xa9\\u0001\",\"anomalyLikelihoodParams\":[]}", 42},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        an_state_span sp;
        size_t len;
        char *m = an_model_params_merge(cases[i].mp, cases[i].st, &sp, &len);
        ck_assert_ptr_nonnull(m);
        ck_assert_str_eq(m, cases[i].want);
        ck_assert_uint_eq(len, strlen(cases[i].want));
        ck_assert_uint_eq(sp.off, cases[i].off);
        ck_assert_uint_eq(sp.len, strlen(cases[i].st));
        free(m);
    }
}
END_TEST

/* ---- 2. the sentinel in the params --------------------------------------- */

START_TEST(test_merge_sentinel_collision)
{
    static const char *const collide[] = {
        "{\"a\":\"\\u0001anomalyd:state\\u0002\"}",
        "{\"a\":1,\"anomalyLikelihoodParams\":{\"x\":2},\"b\":[1.5,\"\\u0001anomalyd:state\\u0002\"]}",
        "{\"\\u0001anomalyd:state\\u0002\":0}",
        "{\"x\":{\"y\":[{\"z\":\"\\u0001anomalyd:state\\u0002\"}]},\"anomalyLikelihoodParams\":null}",
        "{\"anomalyLikelihoodParams\":1,\"a\":\"\\u0001anomalyd:state\\u0002\",\"b\":\"\\u0001anomalyd:state\\u0002\"}",
        /* raw control bytes are not valid JSON: these parse as {} */
        /* a string starting with a quote: "\"\u0001...\u0002" holds the
         * pattern from its escaped quote on */
        "{\"q\":\"\\\"\\u0001anomalyd:state\\u0002\"}",
    };
    /* near misses: must be spliceable */
    static const char *const near[] = {
        "{\"a\":\"\\u0001anomalyd:state\\u0002x\"}",
        "{\"a\":\"x\\u0001anomalyd:state\\u0002\"}",
        "{\"a\":\"\\u0001anomalyd:state\\u0002\\\"\"}",
        "{\"a\":\"\\u0002anomalyd:state\\u0001\"}",
        "{\"a\":\"\\u0001anomalyd:State\\u0002\"}",
        "{\"a\":\"anomalyd:state\"}",
        /* the sentinel as the old state value: replaced, so only one */
        "{\"anomalyLikelihoodParams\":\"\\u0001anomalyd:state\\u0002\",\"b\":1}",
    };
    states ss;
    states_init(&ss, false);
    for (size_t i = 0; i < sizeof collide / sizeof collide[0]; i++) {
        ck_assert_msg(holds_sentinel_elsewhere(collide[i]), "collide[%zu] is not one", i);
        for (size_t k = 0; k < ss.n; k++) {
            an_state_span sp;
            char *m = merge_checked(collide[i], ss.text[k], &sp, NULL);
            ck_assert_msg(sp.len == 0, "collide[%zu]: span len %zu, want 0", i, sp.len);
            free(m);
        }
    }
    for (size_t i = 0; i < sizeof near / sizeof near[0]; i++)
        for (size_t k = 0; k < ss.n; k++) {
            an_state_span sp;
            char *m = merge_checked(near[i], ss.text[k], &sp, NULL);
            ck_assert_msg(sp.len == strlen(ss.text[k]), "near[%zu]: span not known", i);
            free(m);
        }
    /* a state text that is the sentinel string itself */
    static const char sent_state[] = "\"\\u0001anomalyd:state\\u0002\"";
    an_state_span sp;
    char *m = merge_checked("{\"a\":1}", sent_state, &sp, NULL);
    free(m);
    m = merge_checked("{\"a\":\"\\u0001anomalyd:state\\u0002\"}", sent_state, &sp, NULL);
    ck_assert_uint_eq(sp.len, 0);
    free(m);
    states_free(&ss);
}
END_TEST

/* ---- 3. splice == merge ------------------------------------------------- */

START_TEST(test_splice_equals_merge)
{
    states ss;
    states_init(&ss, false);
    inputs in;
    inputs_init(&in, ss.text[2]);
    size_t done = 0;
    for (size_t i = 0; i < in.n; i++)
        for (size_t a = 0; a < ss.n; a++) {
            an_state_span sa;
            size_t la;
            char *ma = merge_checked(in.mp[i], ss.text[a], &sa, &la);
            if (sa.len == 0) {
                free(ma);
                continue;
            }
            for (size_t b = 0; b < ss.n; b++) {
                size_t k = (a + b) % ss.n;
                an_state_span sb, sr;
                size_t lb = 999, lr;
                char *sp = an_model_params_splice(ma, sa, ss.text[k], &sb, &lb);
                ck_assert_ptr_nonnull(sp);
                char *mr = merge_checked(in.mp[i], ss.text[k], &sr, &lr);
                ck_text_eq("splice vs merge", sp, strlen(sp), mr, lr);
                ck_assert_uint_eq(lb, lr);
                ck_assert_uint_eq(sb.off, sr.off);
                ck_assert_uint_eq(sb.len, sr.len);
                ck_assert_uint_eq(sb.off, sa.off);
                /* merging the merged text again gives the same */
                an_state_span sm;
                size_t lm;
                char *mm = merge_checked(ma, ss.text[k], &sm, &lm);
                ck_text_eq("merge of merged vs merge", mm, lm, mr, lr);
                ck_assert_uint_eq(sm.off, sr.off);
                ck_assert_uint_eq(sm.len, sr.len);
                /* and a second splice, len NULL, back to the first state */
                an_state_span s2;
                char *back = an_model_params_splice(sp, sb, ss.text[a], &s2, NULL);
                ck_assert_ptr_nonnull(back);
                ck_text_eq("splice back", back, strlen(back), ma, la);
                ck_assert_uint_eq(s2.off, sa.off);
                ck_assert_uint_eq(s2.len, sa.len);
                free(back);
                free(mm);
                free(mr);
                free(sp);
                done++;
            }
            free(ma);
        }
    ck_assert_uint_gt(done, 100);
    inputs_free(&in);
    states_free(&ss);
}
END_TEST

/* ---- 4. get / put ------------------------------------------------------- */

/* A state struct full of 0xAB bytes: a miss must leave it so. */
static void poison(an_helper_state *s) { memset(s, 0xAB, sizeof *s); }
static bool is_poisoned(const an_helper_state *s)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < sizeof *s; i++)
        if (p[i] != 0xAB)
            return false;
    return true;
}

static bool get_is_miss(an_state_cache *c, const char *uid, const char *mp)
{
    an_helper_state *st = malloc(sizeof *st);
    ck_assert_ptr_nonnull(st);
    poison(st);
    an_state_span sp = {4242, 4343};
    bool hit = an_state_cache_get(c, uid, mp, st, &sp);
    if (!hit) {
        ck_assert_msg(is_poisoned(st), "a miss wrote *state");
        ck_assert_uint_eq(sp.off, 4242);
        ck_assert_uint_eq(sp.len, 4343);
    }
    free(st);
    return !hit;
}

START_TEST(test_get_put_roundtrip)
{
    states ss;
    states_init(&ss, true);
    an_state_cache *c = an_state_cache_new(1000);
    ck_assert_ptr_nonnull(c);
    an_helper_state *got = malloc(sizeof *got);
    ck_assert_ptr_nonnull(got);
    int64_t hits = 0, misses = 0, h, m;
    for (size_t k = 0; k < ss.n; k++) {
        char uid[32];
        snprintf(uid, sizeof uid, "uid-%zu", k);
        an_state_span sp;
        size_t len;
        char *mp = merge_checked(k % 2 ? SWARM : "{\"a\":1}", ss.text[k], &sp, &len);
        ck_assert_uint_gt(sp.len, 0);
        ck_assert(get_is_miss(c, uid, mp));
        misses++;
        ck_assert_int_eq(an_state_cache_put(c, uid, mp, len, sp, ss.st[k]), 0);
        ck_assert_uint_eq(an_state_cache_size(c), k + 1);
        /* the text as read back from the DB: another buffer */
        char *again = strdup(mp);
        poison(got);
        an_state_span gs = {0, 0};
        ck_assert(an_state_cache_get(c, uid, again, got, &gs));
        hits++;
        ck_assert_uint_eq(gs.off, sp.off);
        ck_assert_uint_eq(gs.len, sp.len);
        an_helper_state parsed = state_parse(ss.text[k]);
        ck_state_eq("cache vs from_json", got, &parsed);
        ck_state_eq("cache vs original", got, ss.st[k]);
        if (!ss.st[k]->present) {
            /* null: present false, everything else zero */
            an_helper_state z;
            memset(&z, 0, sizeof z);
            ck_assert(memcmp(got, &z, sizeof z) == 0);
        }
        free(again);
        free(mp);
    }
    an_state_cache_stats(c, &h, &m);
    ck_assert_int_eq(h, hits);
    ck_assert_int_eq(m, misses);
    an_state_cache_stats(c, NULL, NULL);
    free(got);
    an_state_cache_free(c);
    states_free(&ss);
}
END_TEST

START_TEST(test_null_state_with_garbage)
{
    /* a !present struct whose other fields are garbage: comes back zeroed */
    an_helper_state *s = malloc(sizeof *s);
    ck_assert_ptr_nonnull(s);
    memset(s, 0x5A, sizeof *s);
    s->present = false;
    s->params.ma.len = 3;
    s->params.hist_len = 3;
    an_state_cache *c = an_state_cache_new(4);
    an_state_span sp;
    size_t len;
    char *mp = merge_checked(SWARM, "null", &sp, &len);
    ck_assert_int_eq(an_state_cache_put(c, "n", mp, len, sp, s), 0);
    an_helper_state *got = malloc(sizeof *got);
    poison(got);
    an_state_span gs;
    ck_assert(an_state_cache_get(c, "n", mp, got, &gs));
    ck_assert(!got->present);
    ck_assert_int_eq(got->last_rowid_for_stats, 0);
    an_helper_state z;
    memset(&z, 0, sizeof z);
    ck_assert(memcmp(&got->params, &z.params, sizeof z.params) == 0);
    an_helper_state parsed = state_parse("null");
    ck_state_eq("null", got, &parsed);
    free(got);
    free(s);
    free(mp);
    an_state_cache_free(c);
}
END_TEST

/* Every single-byte change of the params text t (len bytes; its state at
 * sp), outside and inside the span, and low-bit flips of a few bytes (the
 * hash sees every bit) miss. t is restored. Returns the lookups made. */
static size_t miss_byte_changes(an_state_cache *c, char *t, size_t len, an_state_span sp)
{
    size_t tried = 0;
    for (size_t i = 0; i < len; i++) {
        char keep = t[i];
        t[i] = keep == 'x' ? 'y' : 'x';
        ck_assert_msg(get_is_miss(c, "u", t), "byte %zu changed (span %zu+%zu): hit", i,
                      sp.off, sp.len);
        t[i] = keep;
        tried++;
    }
    size_t pos[] = {0, 1, sp.off - 1, sp.off, sp.off + sp.len / 2, sp.off + sp.len - 1,
                    sp.off + sp.len, len - 1};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        for (int bit = 0; bit < 7; bit++) {
            t[pos[i]] ^= (char)(1 << bit);
            ck_assert(get_is_miss(c, "u", t));
            t[pos[i]] ^= (char)(1 << bit);
            tried++;
        }
    return tried;
}

/* Texts made from the cached params text mp (len bytes; its state at sp)
 * by moving bytes miss: two bytes swapped outside the span, other lengths,
 * the rest of the text changed around an intact span. Returns the lookups
 * made. */
static size_t miss_other_texts(an_state_cache *c, const char *mp, size_t len, an_state_span sp)
{
    size_t tried = 0;
    /* two bytes swapped outside the span: same multiset, other order */
    char *s = strdup(mp);
    char a = s[1];
    s[1] = s[2];
    s[2] = a;
    if (strcmp(s, mp) != 0) {
        ck_assert(get_is_miss(c, "u", s));
        tried++;
    }
    free(s);
    /* different lengths: a byte added at the end, the last one dropped,
     * the state text moved by one (a space before it) */
    s = malloc(len + 2);
    memcpy(s, mp, len);
    s[len] = ' ';
    s[len + 1] = '\0';
    ck_assert(get_is_miss(c, "u", s));
    s[len - 1] = '\0';
    ck_assert(get_is_miss(c, "u", s));
    ck_assert(get_is_miss(c, "u", ""));
    memcpy(s, mp, sp.off);
    s[sp.off] = ' ';
    memcpy(s + sp.off + 1, mp + sp.off, len - sp.off - 1); /* drops the last byte */
    s[len] = '\0';
    ck_assert(get_is_miss(c, "u", s));
    free(s);
    tried += 4;
    /* a text of the same length whose state span is intact but the rest
     * is another params text of the same length */
    s = strdup(mp);
    for (size_t i = 0; i < sp.off; i++)
        if (s[i] == '1')
            s[i] = '2';
    if (strcmp(s, mp) != 0) {
        ck_assert(get_is_miss(c, "u", s));
        tried++;
    }
    free(s);
    return tried;
}

START_TEST(test_get_misses_on_any_change)
{
    states ss;
    states_init(&ss, false);
    an_state_cache *c = an_state_cache_new(8);
    const char *st = ss.text[1];
    an_state_span sp;
    size_t len;
    char *ws = cat3(SWARM_WITH_STATE_HEAD, ss.text[2], SWARM_WITH_STATE_TAIL);
    char *mp = merge_checked(ws, st, &sp, &len);
    free(ws);
    ck_assert_uint_gt(sp.off, 0);
    ck_assert_uint_lt(sp.off + sp.len, len);
    ck_assert_int_eq(an_state_cache_put(c, "u", mp, len, sp, ss.st[1]), 0);
    int64_t h0, m0, h, m;
    an_state_cache_stats(c, &h0, &m0);
    ck_assert_int_eq(h0, 0);
    ck_assert_int_eq(m0, 0);

    char *t = strdup(mp);
    size_t tried = miss_byte_changes(c, t, len, sp);
    ck_assert_str_eq(t, mp);
    tried += miss_other_texts(c, mp, len, sp);
    ck_assert(get_is_miss(c, "u", NULL));
    ck_assert(get_is_miss(c, "unknown", mp));
    ck_assert(get_is_miss(c, "", mp));
    ck_assert(get_is_miss(c, "U", mp));
    tried += 4;
    an_state_cache_stats(c, &h, &m);
    ck_assert_int_eq(h, 0);
    ck_assert_int_eq(m, (int64_t)tried);
    /* the entry is still there and hits */
    an_helper_state *got = malloc(sizeof *got);
    an_state_span gs;
    ck_assert(an_state_cache_get(c, "u", t, got, &gs));
    ck_state_eq("after misses", got, ss.st[1]);
    an_state_cache_stats(c, &h, &m);
    ck_assert_int_eq(h, 1);
    ck_assert_uint_eq(an_state_cache_size(c), 1);
    free(got);
    free(t);
    free(mp);
    an_state_cache_free(c);
    states_free(&ss);
}
END_TEST

/* ---- 5. LRU, disabled cache, re-put, forget, growth ---------------------- */

typedef struct made {
    char *mp;
    size_t len;
    an_state_span sp;
    an_helper_state *st;
} made;

/* A params text for uid index i, with state text of a hand state. */
static made make(int i, int variant)
{
    made r;
    r.st = malloc(sizeof *r.st);
    ck_assert_ptr_nonnull(r.st);
    *r.st = hand_state(10, i % 11, (i / 11) % 11, (int64_t)i * 1000 + variant,
                       (uint64_t)(i * 31 + variant));
    char *stt = state_dump(r.st);
    char params[96];
    snprintf(params, sizeof params, "{\"metric\":%d,\"v\":%d,\"pad\":\"%*s\"}", i, variant,
             (i * 7 + variant) % 23, "");
    r.mp = an_model_params_merge(params, stt, &r.sp, &r.len);
    ck_assert_ptr_nonnull(r.mp);
    ck_assert_uint_eq(r.sp.len, strlen(stt));
    free(stt);
    return r;
}
static void made_free(made *m)
{
    free(m->mp);
    free(m->st);
}

static bool hit(an_state_cache *c, const char *uid, const made *m)
{
    an_helper_state *got = malloc(sizeof *got);
    ck_assert_ptr_nonnull(got);
    an_state_span gs;
    bool r = an_state_cache_get(c, uid, m->mp, got, &gs);
    if (r) {
        ck_state_eq(uid, got, m->st);
        ck_assert_uint_eq(gs.off, m->sp.off);
        ck_assert_uint_eq(gs.len, m->sp.len);
    }
    free(got);
    return r;
}

static void put(an_state_cache *c, const char *uid, const made *m)
{
    ck_assert_int_eq(an_state_cache_put(c, uid, m->mp, m->len, m->sp, m->st), 0);
}

/* The whole-text hash is not cryptographic (state_cache.c says so): a
 * change in one 8-byte word can be cancelled by one in the next. A text
 * crafted that way, with the change inside the state span, must still miss:
 * the state part is compared verbatim. (The replica of the hash below only
 * makes the test sharper; were the hash changed, the text would miss
 * anyway and the test still hold.) */
static uint64_t mix(uint64_t x)
{
    x *= 0xFF51AFD7ED558CCDULL;
    return x ^ (x >> 32);
}

START_TEST(test_get_hash_collision_in_span)
{
    states ss;
    states_init(&ss, false);
    an_state_cache *c = an_state_cache_new(8);
    an_state_span sp;
    size_t len;
    char *mp = merge_checked(SWARM, ss.text[1], &sp, &len);
    ck_assert_int_eq(an_state_cache_put(c, "u", mp, len, sp, ss.st[1]), 0);
    /* word j inside the span, word j+1 a full word */
    size_t j = (sp.off + 7) / 8 + 1;
    ck_assert_uint_le(j * 8 + 8, sp.off + sp.len);
    ck_assert_uint_le((j + 2) * 8, len);
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ len, w;
    for (size_t i = 0; i < j; i++) {
        memcpy(&w, mp + i * 8, 8);
        h = mix(h ^ w);
    }
    uint64_t wj, wk;
    memcpy(&wj, mp + j * 8, 8);
    memcpy(&wk, mp + j * 8 + 8, 8);
    uint64_t h1 = mix(h ^ wj);
    int crafted = 0;
    char *t = malloc(len + 1);
    for (int b = 0; b < 8 && crafted < 3; b++)
        for (char ch = '0'; ch <= '9' && crafted < 3; ch++) {
            memcpy(t, mp, len + 1);
            if (t[j * 8 + b] == ch)
                continue;
            t[j * 8 + b] = ch;
            uint64_t wj2, wk2;
            memcpy(&wj2, t + j * 8, 8);
            wk2 = h1 ^ wk ^ mix(h ^ wj2);
            memcpy(t + j * 8 + 8, &wk2, 8);
            if (memchr(t + j * 8 + 8, '\0', 8))
                continue;
            ck_assert_uint_eq(strlen(t), len);
            ck_assert(memcmp(t + sp.off, mp + sp.off, sp.len) != 0);
            ck_assert(get_is_miss(c, "u", t));
            crafted++;
        }
    ck_assert_int_eq(crafted, 3);
    ck_assert(hit(c, "u", &(made){mp, len, sp, ss.st[1]}));
    free(t);
    free(mp);
    an_state_cache_free(c);
    states_free(&ss);
}
END_TEST

START_TEST(test_lru_eviction)
{
    made a = make(1, 0), b = make(2, 0), cc = make(3, 0), d = make(4, 0);
    an_state_cache *c = an_state_cache_new(3);
    put(c, "a", &a);
    put(c, "b", &b);
    put(c, "c", &cc);
    ck_assert_uint_eq(an_state_cache_size(c), 3);
    put(c, "d", &d);
    ck_assert_uint_eq(an_state_cache_size(c), 3);
    ck_assert(!hit(c, "a", &a));
    ck_assert(hit(c, "b", &b));
    ck_assert(hit(c, "c", &cc));
    ck_assert(hit(c, "d", &d));
    an_state_cache_free(c);

    /* a get refreshes: a, b, c; get a; put d -> b goes */
    c = an_state_cache_new(3);
    put(c, "a", &a);
    put(c, "b", &b);
    put(c, "c", &cc);
    ck_assert(hit(c, "a", &a));
    put(c, "d", &d);
    ck_assert(!hit(c, "b", &b));
    ck_assert(hit(c, "a", &a));
    ck_assert(hit(c, "c", &cc));
    ck_assert(hit(c, "d", &d));
    /* order now (newest first): d c a; a miss does not refresh */
    ck_assert(!hit(c, "a", &b)); /* wrong text for a */
    put(c, "b", &b);             /* evicts a */
    ck_assert(!hit(c, "a", &a));
    ck_assert(hit(c, "c", &cc));
    ck_assert(hit(c, "d", &d));
    ck_assert(hit(c, "b", &b));
    /* a re-put refreshes too: order b d c; re-put c -> c b d; put a -> d goes */
    put(c, "c", &cc);
    ck_assert_uint_eq(an_state_cache_size(c), 3);
    put(c, "a", &a);
    ck_assert(!hit(c, "d", &d));
    ck_assert(hit(c, "c", &cc));
    ck_assert(hit(c, "b", &b));
    ck_assert(hit(c, "a", &a));
    int64_t h, m;
    an_state_cache_stats(c, &h, &m);
    ck_assert_int_eq(h, 10);
    ck_assert_int_eq(m, 4);
    an_state_cache_free(c);

    /* max 1 */
    c = an_state_cache_new(1);
    put(c, "a", &a);
    ck_assert(hit(c, "a", &a));
    put(c, "b", &b);
    ck_assert_uint_eq(an_state_cache_size(c), 1);
    ck_assert(!hit(c, "a", &a));
    ck_assert(hit(c, "b", &b));
    an_state_cache_free(c);
    made_free(&a);
    made_free(&b);
    made_free(&cc);
    made_free(&d);
}
END_TEST

START_TEST(test_disabled_cache)
{
    made a = make(1, 0);
    an_state_cache *c = an_state_cache_new(0);
    ck_assert_ptr_nonnull(c);
    ck_assert(!hit(c, "a", &a));
    put(c, "a", &a);
    ck_assert_uint_eq(an_state_cache_size(c), 0);
    ck_assert(!hit(c, "a", &a));
    ck_assert(get_is_miss(c, "a", NULL));
    an_state_cache_forget(c, "a");
    ck_assert_uint_eq(an_state_cache_size(c), 0);
    int64_t h = -1, m = -1;
    an_state_cache_stats(c, &h, &m);
    ck_assert_int_eq(h, 0);
    ck_assert_int_eq(m, 3);
    an_state_cache_free(c);
    an_state_cache_free(NULL);
    made_free(&a);
}
END_TEST

START_TEST(test_reput_and_forget)
{
    made a1 = make(1, 0), a2 = make(1, 1), b = make(2, 0);
    an_state_cache *c = an_state_cache_new(10);
    an_state_cache_forget(c, "nothing"); /* empty table */
    put(c, "a", &a1);
    put(c, "b", &b);
    ck_assert(hit(c, "a", &a1));
    put(c, "a", &a2); /* replaces */
    ck_assert_uint_eq(an_state_cache_size(c), 2);
    ck_assert(!hit(c, "a", &a1));
    ck_assert(hit(c, "a", &a2));
    /* the same text again under the same uid: still one entry */
    put(c, "a", &a2);
    ck_assert_uint_eq(an_state_cache_size(c), 2);
    ck_assert(hit(c, "a", &a2));
    an_state_cache_forget(c, "zzz");
    ck_assert_uint_eq(an_state_cache_size(c), 2);
    an_state_cache_forget(c, "a");
    ck_assert_uint_eq(an_state_cache_size(c), 1);
    ck_assert(!hit(c, "a", &a2));
    ck_assert(hit(c, "b", &b));
    an_state_cache_forget(c, "a");
    an_state_cache_forget(c, "b");
    ck_assert_uint_eq(an_state_cache_size(c), 0);
    ck_assert(!hit(c, "b", &b));
    /* usable after being emptied */
    put(c, "b", &b);
    put(c, "a", &a1);
    ck_assert(hit(c, "b", &b));
    ck_assert(hit(c, "a", &a1));
    ck_assert_uint_eq(an_state_cache_size(c), 2);
    an_state_cache_free(c);
    made_free(&a1);
    made_free(&a2);
    made_free(&b);
}
END_TEST

START_TEST(test_many_uids)
{
    enum { N = 5000 };
    made *ms = calloc(N, sizeof *ms);
    ck_assert_ptr_nonnull(ms);
    for (int i = 0; i < N; i++)
        ms[i] = make(i, 0);
    an_state_cache *c = an_state_cache_new(10000);
    char uid[40];
    for (int i = 0; i < N; i++) {
        snprintf(uid, sizeof uid, "%032x", (unsigned)i * 2654435761u);
        put(c, uid, &ms[i]);
        ck_assert_uint_eq(an_state_cache_size(c), (size_t)i + 1);
    }
    for (int i = 0; i < N; i++) {
        snprintf(uid, sizeof uid, "%032x", (unsigned)i * 2654435761u);
        ck_assert_msg(hit(c, uid, &ms[i]), "uid %d", i);
        /* another uid's text misses */
        ck_assert(!hit(c, uid, &ms[(i + 1) % N]));
    }
    /* forget the even ones */
    for (int i = 0; i < N; i += 2) {
        snprintf(uid, sizeof uid, "%032x", (unsigned)i * 2654435761u);
        an_state_cache_forget(c, uid);
    }
    ck_assert_uint_eq(an_state_cache_size(c), N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(uid, sizeof uid, "%032x", (unsigned)i * 2654435761u);
        ck_assert(hit(c, uid, &ms[i]) == (i % 2 == 1));
    }
    int64_t h, m;
    an_state_cache_stats(c, &h, &m);
    ck_assert_int_eq(h, N + N / 2);
    ck_assert_int_eq(m, N + N / 2);
    an_state_cache_free(c);

    /* small max, many puts: growth and eviction together */
    c = an_state_cache_new(100);
    for (int i = 0; i < N; i++) {
        snprintf(uid, sizeof uid, "m%d", i);
        put(c, uid, &ms[i]);
        ck_assert_uint_eq(an_state_cache_size(c), i < 100 ? (size_t)i + 1 : 100);
    }
    for (int i = 0; i < N; i++) {
        snprintf(uid, sizeof uid, "m%d", i);
        ck_assert(hit(c, uid, &ms[i]) == (i >= N - 100));
    }
    an_state_cache_free(c);
    for (int i = 0; i < N; i++)
        made_free(&ms[i]);
    free(ms);
}
END_TEST

/* A naive model: slots with a text index and a last-use tick. */
START_TEST(test_random_vs_model)
{
    enum { U = 24, V = 3, MAXE = 7, OPS = 30000 };
    made ms[U][V];
    for (int u = 0; u < U; u++)
        for (int v = 0; v < V; v++)
            ms[u][v] = make(u, v);
    struct {
        bool in;
        int v;
        long tick;
    } model[U];
    memset(model, 0, sizeof model);
    an_state_cache *c = an_state_cache_new(MAXE);
    rng_state = 99;
    long tick = 0;
    int64_t hits = 0, misses = 0;
    char uid[16];
    for (int op = 0; op < OPS; op++) {
        int u = (int)rndu(U), v = (int)rndu(V);
        snprintf(uid, sizeof uid, "uid%d", u);
        unsigned what = rndu(10);
        tick++;
        if (what < 4) { /* put */
            put(c, uid, &ms[u][v]);
            size_t n = 0;
            for (int k = 0; k < U; k++)
                n += model[k].in;
            if (!model[u].in && n == MAXE) {
                int lru = -1;
                for (int k = 0; k < U; k++)
                    if (model[k].in && (lru < 0 || model[k].tick < model[lru].tick))
                        lru = k;
                model[lru].in = false;
            }
            model[u].in = true;
            model[u].v = v;
            model[u].tick = tick;
        } else if (what < 9) { /* get */
            bool want = model[u].in && model[u].v == v;
            bool got = hit(c, uid, &ms[u][v]);
            ck_assert_msg(got == want, "op %d: get uid%d v%d: got %d want %d", op, u, v, got,
                          want);
            if (want) {
                model[u].tick = tick;
                hits++;
            } else {
                misses++;
            }
        } else { /* forget */
            an_state_cache_forget(c, uid);
            model[u].in = false;
        }
        size_t n = 0;
        for (int k = 0; k < U; k++)
            n += model[k].in;
        ck_assert_uint_eq(an_state_cache_size(c), n);
    }
    int64_t h, m;
    an_state_cache_stats(c, &h, &m);
    ck_assert_int_eq(h, hits);
    ck_assert_int_eq(m, misses);
    ck_assert_int_gt(hits, 1000);
    ck_assert_int_gt(misses, 1000);
    an_state_cache_free(c);
    for (int u = 0; u < U; u++)
        for (int v = 0; v < V; v++)
            made_free(&ms[u][v]);
}
END_TEST

/* ---- 6. a span of length 0 is not cached --------------------------------- */

START_TEST(test_put_unknown_span)
{
    made a = make(1, 0);
    an_state_cache *c = an_state_cache_new(5);
    an_state_span none = {0, 0};
    ck_assert_int_eq(an_state_cache_put(c, "a", a.mp, a.len, none, a.st), 0);
    ck_assert_uint_eq(an_state_cache_size(c), 0);
    ck_assert(!hit(c, "a", &a));
    none.off = a.sp.off;
    ck_assert_int_eq(an_state_cache_put(c, "a", a.mp, a.len, none, a.st), 0);
    ck_assert_uint_eq(an_state_cache_size(c), 0);
    ck_assert(!hit(c, "a", &a));

    /* what merge gives for a colliding params text */
    char *stt = state_dump(a.st);
    an_state_span sp;
    size_t len;
    char *mp = merge_checked("{\"x\":\"\\u0001anomalyd:state\\u0002\"}", stt, &sp, &len);
    ck_assert_uint_eq(sp.len, 0);
    ck_assert_int_eq(an_state_cache_put(c, "a", mp, len, sp, a.st), 0);
    ck_assert_uint_eq(an_state_cache_size(c), 0);
    ck_assert(get_is_miss(c, "a", mp));

    /* over an existing entry: the old one is gone too (the text changed) */
    put(c, "a", &a);
    ck_assert_uint_eq(an_state_cache_size(c), 1);
    ck_assert_int_eq(an_state_cache_put(c, "a", mp, len, sp, a.st), 0);
    ck_assert_uint_eq(an_state_cache_size(c), 0);
    ck_assert(!hit(c, "a", &a));
    ck_assert(get_is_miss(c, "a", mp));
    free(mp);
    free(stt);
    an_state_cache_free(c);
    made_free(&a);
}
END_TEST

/* ---- the service's flow: read, hit, update, splice, put, read ----------- */

START_TEST(test_flow_hit_splice_put)
{
    states ss;
    states_init(&ss, false);
    an_state_cache *c = an_state_cache_new(4);
    /* first write: a miss, so merge */
    an_state_span sp;
    size_t len;
    char *db = merge_checked(SWARM, ss.text[0], &sp, &len);
    ck_assert_int_eq(an_state_cache_put(c, "m", db, len, sp, ss.st[0]), 0);
    for (size_t k = 1; k < ss.n; k++) {
        an_helper_state *got = malloc(sizeof *got);
        an_state_span gs;
        ck_assert(an_state_cache_get(c, "m", db, got, &gs));
        ck_state_eq("flow", got, ss.st[k - 1]);
        an_state_span ns;
        size_t nl;
        char *next = an_model_params_splice(db, gs, ss.text[k], &ns, &nl);
        char *ref = ref_merge(SWARM, ss.text[k], NULL);
        ck_assert_str_eq(next, ref);
        ck_assert_int_eq(an_state_cache_put(c, "m", next, nl, ns, ss.st[k]), 0);
        /* the old text no longer hits */
        ck_assert(get_is_miss(c, "m", db));
        free(ref);
        free(db);
        db = next;
        free(got);
    }
    free(db);
    an_state_cache_free(c);
    states_free(&ss);
}
END_TEST

/* The message head: equal to the codec's head built from the same inputs
 * with the spec parsed from the parameters; reused (the same pointer) while
 * every input stays byte for byte the same, rebuilt when any one changes,
 * carried across puts, dropped by forget; built each time without an entry
 * or with the cache off; bad parameters fail with a reason. */
static void ck_head(an_state_cache *c, const char *uid, const an_metric_info *mi,
                    const char *params, const char **out)
{
    char err[256];
    size_t len = 0, wlen = 0;
    const char *h;
    int rc = an_state_cache_msg_head(c, uid, mi, params, &h, &len, err, sizeof err);
    ck_assert_msg(rc == 0 && h != NULL, "%s", err);
    json_t *spec = NULL;
    ck_assert_int_eq(an_metric_spec_from_parameters(params, &spec, err, sizeof err), 0);
    an_metric_info m = *mi;
    m.spec = spec;
    char *want;
    ck_assert_int_eq(an_msg_inference_head(&m, &want, &wlen, err, sizeof err), 0);
    json_decref(spec);
    ck_text_eq("head", h, len, want, wlen);
    /* head + rows is the one-piece message */
    an_out_row row = {.rowid = 7, .ts = 1.5, .value = 2.25, .raw = 0.5, .anomaly = 0.25};
    m = *mi;
    m.spec_json = NULL;
    json_t *spec2 = NULL;
    ck_assert_int_eq(an_metric_spec_from_parameters(params, &spec2, err, sizeof err), 0);
    m.spec = spec2;
    size_t l1 = 0, l2 = 0;
    char *one, *two;
    ck_assert_int_eq(an_msg_inference_text(&m, &row, 1, &one, &l1, err, sizeof err), 0);
    ck_assert_int_eq(an_msg_inference_text_head(h, len, &row, 1, &two, &l2, err, sizeof err), 0);
    ck_text_eq("message", two, l2, one, l1);
    json_decref(spec2);
    free(one);
    free(two);
    free(want);
    *out = h;
}

START_TEST(test_msg_head)
{
    const char *p1 = "{\"metricSpec\":{\"uid\":\"u\",\"unit\":\"Count\"},\"modelParams\":{}}";
    const char *p2 = "{\"metricSpec\":{\"uid\":\"u\",\"unit\":\"Bytes\"},\"modelParams\":{}}";
    an_metric_info mi = {.uid = "u", .name = "cpu \"1\"", .description = NULL,
                         .resource = "host", .location = "", .datasource = "custom"};
    an_state_cache *c = an_state_cache_new(4);
    const char *a, *b;
    char err[256];
    size_t len;
    /* no entry yet: built every time */
    ck_head(c, "u", &mi, p1, &a);
    an_helper_state *st = calloc(1, sizeof *st);
    an_state_span sp;
    char *mp = merge_checked(SWARM, "null", &sp, &len);
    ck_assert(!an_state_cache_has(c, "u"));
    ck_assert_int_eq(an_state_cache_put(c, "u", mp, len, sp, st), 0);
    ck_assert(an_state_cache_has(c, "u"));
    ck_assert(!an_state_cache_has(c, "v"));
    ck_head(c, "u", &mi, p1, &a);
    ck_head(c, "u", &mi, p1, &b);
    ck_assert_ptr_eq(a, b);                      /* kept */
    ck_assert_int_eq(an_state_cache_put(c, "u", mp, len, sp, st), 0);
    ck_head(c, "u", &mi, p1, &b);
    ck_assert_ptr_eq(a, b);                      /* carried across a put */
    ck_head(c, "u", &mi, p2, &b);                /* other parameters */
    ck_assert(strstr(b, "Bytes") != NULL);
    ck_head(c, "u", &mi, p2, &a);
    ck_assert_ptr_eq(a, b);
    an_metric_info m2 = mi;
    m2.description = "";                         /* NULL -> "": another head */
    ck_head(c, "u", &m2, p2, &b);
    ck_assert(strstr(b, "\"description\":\"\"") != NULL);
    m2.description = NULL;
    m2.location = NULL;                          /* "" -> NULL */
    ck_head(c, "u", &m2, p2, &b);
    ck_assert(strstr(b, "\"location\":null") != NULL);
    m2 = mi;
    m2.name = "cpu \"2\"";
    ck_head(c, "u", &m2, p2, &b);
    ck_assert(strstr(b, "cpu \\\"2\\\"") != NULL);
    an_state_cache_forget(c, "u");
    ck_assert(!an_state_cache_has(c, "u"));
    ck_head(c, "u", &mi, p1, &a);                /* no entry: scratch */
    ck_assert(strstr(a, "Count") != NULL);
    /* bad parameters */
    size_t hl = 0;
    const char *hp;
    ck_assert_int_eq(an_state_cache_msg_head(c, "u", &mi, "{\"x\":1}", &hp, &hl, err, sizeof err),
                     AN_EINVAL);
    ck_assert_ptr_null(hp);
    ck_assert(strstr(err, "metricSpec") != NULL);
    ck_assert_int_eq(an_state_cache_msg_head(c, "u", &mi, NULL, &hp, &hl, err, sizeof err),
                     AN_EINVAL);
    an_state_cache_free(c);
    /* cache off */
    c = an_state_cache_new(0);
    ck_assert_int_eq(an_state_cache_put(c, "u", mp, len, sp, st), 0);
    ck_assert(!an_state_cache_has(c, "u"));
    ck_head(c, "u", &mi, p1, &a);
    ck_head(c, "u", &mi, p2, &b);
    ck_assert(strstr(b, "Bytes") != NULL);
    an_state_cache_free(c);
    free(mp);
    free(st);
}
END_TEST

/* A failed allocation while merging is never taken for params that do not
 * parse (which count as {}): with the k-th jansson allocation failing, for
 * every k, the merge either fails (NULL) or keeps every other key
 * of model_params; never a text with the state alone. */
static long merge_alloc_left;

static void *merge_failing_malloc(size_t n)
{
    /* only the k-th fails: memory comes back, as under real pressure */
    if (merge_alloc_left-- == 0)
        return NULL;
    return malloc(n);
}

START_TEST(test_merge_out_of_memory)
{
    /* the state key holds the sentinel string: the slow path parses twice */
    const char *params[] = {
        "{\"modelParams\":{\"a\":[1,2,3]},\"inferenceArgs\":{\"x\":\"yz\"},"
        "\"anomalyLikelihoodParams\":null}",
        "{\"modelParams\":{\"a\":1},\"note\":\"\\u0001anomalyd:state\\u0002\","
        "\"anomalyLikelihoodParams\":null}",
    };
    for (size_t v = 0; v < 2; v++) {
        int failures = 0;
        char *t = NULL;
        for (long k = 0; k < 10000 && !t; k++) {
            an_state_span span;
            merge_alloc_left = k;
            an_json_mem_set_malloc(merge_failing_malloc);
            t = an_model_params_merge(params[v], "{\"k\":1}", &span, NULL);
            an_json_mem_set_malloc(NULL);
            if (!t)
                failures++;
            else
                ck_assert_msg(strstr(t, "\"modelParams\"") != NULL,
                              "params %zu, allocation %ld failing: %s", v, k, t);
        }
        ck_assert_ptr_nonnull(t);
        ck_assert_int_gt(failures, 0);
        free(t);
    }
}
END_TEST

static Suite *state_cache_suite(void)
{
    Suite *s = suite_create("state_cache");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_merge_matches_reference);
    tcase_add_test(tc, test_merge_known_texts);
    tcase_add_test(tc, test_merge_sentinel_collision);
    tcase_add_test(tc, test_splice_equals_merge);
    tcase_add_test(tc, test_get_put_roundtrip);
    tcase_add_test(tc, test_null_state_with_garbage);
    tcase_add_test(tc, test_get_misses_on_any_change);
    tcase_add_test(tc, test_get_hash_collision_in_span);
    tcase_add_test(tc, test_lru_eviction);
    tcase_add_test(tc, test_disabled_cache);
    tcase_add_test(tc, test_reput_and_forget);
    tcase_add_test(tc, test_many_uids);
    tcase_add_test(tc, test_random_vs_model);
    tcase_add_test(tc, test_put_unknown_span);
    tcase_add_test(tc, test_flow_hit_splice_put);
    tcase_add_test(tc, test_msg_head);
    tcase_add_test(tc, test_merge_out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return an_check_run(state_cache_suite(), CK_NORMAL);
}
