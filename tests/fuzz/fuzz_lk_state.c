/*
 * fuzz_lk_state: the likelihood state JSON (an_helper_state_from_json,
 * an_lk_params_from_json and their to_json), i.e. what anomalyd reads back
 * from metric.model_params and from the Redis params cache, and then the
 * helper's update on the state it parsed.
 *
 * Input: JSON text of anomalyLikelihoodParams, then optionally a 0x00 byte
 * and raw bytes driving the update: byte 0 = variant (bit 0) and processed
 * row count, then one byte per row -> raw score byte / 255 in [0, 1].
 * Contracts:
 *   - failure: AN_EINVAL with a message naming the key, no control bytes;
 *   - round trip: to_json -> from_json gives the same state bit for bit,
 *     also through the text the service stores (an_json_dumps + jansson),
 *     and the text is a fixed point;
 *   - params: what the state parser accepts, an_lk_params_from_json of its
 *     "params" accepts too, with the same values;
 *   - update: an_helper_update on the parsed state with raw scores in
 *     [0, 1] either fails cleanly (AN_EINVAL/AN_ESTATE, state unchanged)
 *     or scores every row in [0, 1] (unscored rows 0.0), and the advanced
 *     state still serializes (a state that cannot be stored would cost the
 *     metric every later batch).
 */
#include <math.h>

#include "an_codec.h"
#include "an_helper.h"
#include "fuzz_common.h"

/* The calls into the state codec and the helper: adapt here when the API
 * changes. */
static int parse_state(const json_t *j, an_helper_state *s, char *err, size_t len)
{
    return an_helper_state_from_json(j, s, err, len);
}

static bool same_params(const an_lk_params *a, const an_lk_params *b)
{
    if (!fz_same_double(a->dist.mean, b->dist.mean) ||
        !fz_same_double(a->dist.variance, b->dist.variance) ||
        !fz_same_double(a->dist.stdev, b->dist.stdev) || a->ma.len != b->ma.len ||
        a->ma.window_size != b->ma.window_size ||
        !fz_same_double(a->ma.total, b->ma.total) || a->hist_len != b->hist_len)
        return false;
    for (int i = 0; i < a->ma.len; i++)
        if (!fz_same_double(a->ma.values[i], b->ma.values[i]))
            return false;
    for (int i = 0; i < a->hist_len; i++)
        if (!fz_same_double(a->hist[i], b->hist[i]))
            return false;
    return true;
}

static bool same_state(const an_helper_state *a, const an_helper_state *b)
{
    if (a->present != b->present)
        return false;
    if (!a->present)
        return true;
    return a->last_rowid_for_stats == b->last_rowid_for_stats &&
           same_params(&a->params, &b->params);
}

/* to_json -> (text ->) from_json must give s back. */
static void round_trip(const an_helper_state *s, const char *when)
{
    json_t *j = an_helper_state_to_json(s);
    FZ_CHECK(j != NULL, "%s: the state cannot be serialized", when);
    an_helper_state back;
    char err[256] = "";
    memset(&back, 0, sizeof back);
    FZ_CHECK(parse_state(j, &back, err, sizeof err) == 0,
             "%s: to_json output refused: %s", when, err);
    FZ_CHECK(same_state(s, &back), "%s: round trip changed the state", when);

    size_t len;
    char *text = an_json_dumps(j, &len);
    FZ_CHECK(text != NULL, "%s: an_json_dumps of the state failed", when);
    json_t *j2 = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    FZ_CHECK(j2 != NULL, "%s: stored text unreadable: %.200s", when, text);
    memset(&back, 0, sizeof back);
    FZ_CHECK(parse_state(j2, &back, err, sizeof err) == 0 && same_state(s, &back),
             "%s: round trip through the stored text changed the state", when);
    char *text2 = an_json_dumps(j2, NULL);
    FZ_CHECK(text2 && strcmp(text, text2) == 0, "%s: text not a fixed point", when);
    free(text2);
    json_decref(j2);
    free(text);
    json_decref(j);
}

/* Memory sample source: rows 1..n with raw scores in [0, 1]. */
typedef struct {
    an_sample *rows;
    size_t n;
} mem_src;

static int src_count(void *ctx, int64_t *count, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    *count = (int64_t)((mem_src *)ctx)->n;
    return 0;
}

static int src_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                    size_t errlen)
{
    (void)err, (void)errlen;
    mem_src *m = ctx;
    size_t k = n < m->n ? n : m->n;
    memcpy(out, m->rows + (m->n - k), k * sizeof *out);
    *got = k;
    return 0;
}

static void update(an_helper_state *s, const uint8_t *d, size_t n)
{
    if (n < 2)
        return;
    an_helper_config cfg = an_helper_config_default();
    cfg.variant = (d[0] & 1) ? AN_VARIANT_NUPIC10 : AN_VARIANT_HTMENGINE;
    /* small sizes so short inputs reach re-estimation */
    cfg.min_sample_size = 4;
    cfg.refresh_rate = 3;
    cfg.sample_size = 32;
    cfg.skip_records = 2;
    size_t processed = (size_t)(d[0] >> 1) % 64;
    d++;
    n--;
    an_sample hist[64];
    for (size_t i = 0; i < processed; i++)
        hist[i] = (an_sample){(int64_t)i + 1, (double)i, d[i % n] / 255.0};
    mem_src ms = {hist, processed};
    an_sample_source src = {&ms, src_count, src_tail};
    size_t m = n > 64 ? 64 : n;
    an_row rows[64];
    for (size_t i = 0; i < m; i++)
        rows[i] = (an_row){(int64_t)(processed + i + 1), (double)i, d[i] / 255.0, 0, false};

    an_helper *h = an_helper_new(&cfg, NULL, NULL);
    FZ_CHECK(h != NULL, "an_helper_new refused a valid config");
    an_helper_state before = *s;
    char err[512] = "";
    int rc = an_helper_update(h, &src, s, rows, m, err, sizeof err);
    if (rc != 0) {
        FZ_CHECK(rc == AN_EINVAL || rc == AN_ESTATE, "update rc %d: %s", rc, err);
        FZ_CHECK(same_state(&before, s), "failed update changed the state");
    } else {
        for (size_t i = 0; i < m; i++) {
            double a = rows[i].anomaly_score;
            if (rows[i].scored)
                FZ_CHECK(a >= 0.0 && a <= 1.0,
                         "row %zu scored %.17g, outside [0, 1] (raw %.17g)", i, a,
                         rows[i].raw);
            else
                FZ_CHECK(fz_same_double(a, 0.0), "unscored row %zu has %.17g", i, a);
        }
        round_trip(s, "after update");
    }
    an_helper_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    json_t *j = json_loadb((const char *)data, jlen, JSON_DECODE_ANY, NULL);
    if (!j)
        return 0;
    an_helper_state s;
    memset(&s, 0, sizeof s);
    char err[512] = "";
    int rc = parse_state(j, &s, err, sizeof err);
    if (rc != 0) {
        FZ_CHECK(rc == AN_EINVAL, "rc %d: %s", rc, err);
        FZ_CHECK(err[0] && fz_reason_clean(err), "bad message '%s'", err);
    } else {
        if (s.present) {
            an_lk_params p;
            char perr[256] = "";
            FZ_CHECK(an_lk_params_from_json(json_object_get(j, "params"), &p, perr,
                                            sizeof perr) == 0 &&
                         same_params(&p, &s.params),
                     "params parser disagrees with the state parser: %s", perr);
        }
        round_trip(&s, "parsed");
        if (nul)
            update(&s, nul + 1, size - jlen - 1);
    }
    json_decref(j);
    return 0;
}
