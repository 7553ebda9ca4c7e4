/*
 * helper.c: htmengine's AnomalyLikelihoodHelper.updateModelAnomalyScores
 * (docs/htmengine.md §2.3, tests/data/likelihood/nupic-1.0/README.md §5.11) as
 * a state machine over one batch of rows. The maths is an_likelihood.h's; this
 * file only decides which rows are scored, when the distribution is
 * re-estimated and from which samples, and it reports the original's
 * diagnostics as events in the order the original logs them.
 *
 * The "stats sample cache" of the original is h->cache: a reusable buffer
 * whose last entries are the logical cache (cache_n entries in all). Only
 * the last min(cache_n, sample_size) entries are ever used by an estimate,
 * so older ones are dropped when the buffer is full; the buffer grows to at
 * most 2 * sample_size entries and is then reused, so a steady-state batch
 * allocates nothing.
 *
 * Exclusive-source mode (an_helper_set_exclusive_source) keeps the newest
 * processed rows in the same buffer between calls (the "window"), so a
 * refresh appends to it instead of re-reading sample_size rows from the
 * source: entries in front of the logical cache are then window rows.
 *
 * A helper is not thread-safe; use one per thread.
 */
#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_util.h"
#include "an_helper.h"

struct an_helper {
    an_helper_config cfg;
    an_helper_event_fn on_event;
    void *ud;

    /* The cache of the current call. Valid only while have_cache. Its
     * newest min(cache_n, sample_size) entries end the buffer. */
    an_sample *cache;  /* the buffer */
    size_t cache_len;  /* entries held in cache[] */
    size_t cache_cap;  /* allocated entries */
    size_t cache_n;    /* logical length: len(statsSampleCache) */
    bool have_cache;   /* false: the original's cache is None */

    /* Exclusive-source mode: cache[0..cache_len) holds the newest
     * processed rows of win_src between calls (when win_valid). */
    bool exclusive;
    bool win_valid;
    const void *win_src;
    size_t appended;   /* batch rows [0, appended) are in the buffer */

    double *avg;       /* scratch for an_estimate's moving averages */
    size_t avg_cap;
};

/* ---- small utilities ---------------------------------------------------- */

/* Saturating int64 arithmetic: rowids and last_rowid_for_stats come from
 * stored JSON, so a hostile value must not overflow. Real rowids are far
 * from the limits, where this is ordinary arithmetic. */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static void emit(an_helper *h, an_helper_event_kind kind, int nargs, ...)
{
    if (!h->on_event)
        return;
    an_helper_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.nargs = nargs;
    assert(nargs >= 0 && nargs <= 6);
    va_list ap;
    va_start(ap, nargs);
    for (int i = 0; i < nargs; i++)
        ev.args[i] = va_arg(ap, int64_t);
    va_end(ap);
    h->on_event(h->ud, &ev);
}

/* Whether params are internally consistent (what from_json guarantees).
 * A caller-built state that is not is rejected rather than trusted, since
 * the lengths index fixed arrays. */
static bool params_valid(const an_lk_params *p)
{
    return p->ma.window_size >= 1 && p->ma.window_size <= AN_LK_MAX_WINDOW &&
           p->ma.len >= 0 && p->ma.len <= p->ma.window_size &&
           p->hist_len >= 0 && p->hist_len <= AN_LK_MAX_WINDOW;
}

/* Copies the meaningful part of a state (the used prefixes of the fixed
 * arrays only: this runs twice per batch). src must be valid. */
static void state_copy(an_helper_state *dst, const an_helper_state *src)
{
    dst->present = src->present;
    dst->last_rowid_for_stats = src->last_rowid_for_stats;
    if (!src->present)
        return;
    const an_lk_params *s = &src->params;
    an_lk_params *d = &dst->params;
    d->dist = s->dist;
    d->ma.len = s->ma.len;
    d->ma.window_size = s->ma.window_size;
    d->ma.total = s->ma.total;
    memcpy(d->ma.values, s->ma.values, (size_t)s->ma.len * sizeof s->ma.values[0]);
    d->hist_len = s->hist_len;
    memcpy(d->hist, s->hist, (size_t)s->hist_len * sizeof s->hist[0]);
}

/* ---- config, names ------------------------------------------------------ */

an_helper_config an_helper_config_default(void)
{
    an_helper_config c;
    c.variant = AN_VARIANT_HTMENGINE;
    c.min_sample_size = 100;
    c.refresh_rate = 24;
    c.sample_size = 8640;
    c.skip_records = 288;
    c.averaging_window = AN_LK_DEFAULT_WINDOW;
    return c;
}

int an_helper_config_validate(const an_helper_config *c, char *err, size_t errlen)
{
    if (!c) {
        an_seterr(err, errlen, "helper config: missing");
        return AN_EINVAL;
    }
    if (c->variant != AN_VARIANT_HTMENGINE && c->variant != AN_VARIANT_NUPIC10) {
        an_seterr(err, errlen, "helper config: unknown variant %d", (int)c->variant);
        return AN_EINVAL;
    }
    if (c->min_sample_size < 1) {
        an_seterr(err, errlen, "statistics_min_sample_size: %d is not >= 1",
                c->min_sample_size);
        return AN_EINVAL;
    }
    if (c->refresh_rate < 1) {
        an_seterr(err, errlen, "statistics_refresh_rate: %d is not >= 1", c->refresh_rate);
        return AN_EINVAL;
    }
    if (c->sample_size < c->min_sample_size || c->sample_size > (INT_MAX / 2)) {
        an_seterr(err, errlen,
                "statistics_sample_size: %d is not between statistics_min_sample_size "
                "(%d) and %d",
                c->sample_size, c->min_sample_size, INT_MAX / 2);
        return AN_EINVAL;
    }
    if (c->skip_records < 0) {
        an_seterr(err, errlen, "skip_records: %d is negative", c->skip_records);
        return AN_EINVAL;
    }
    if (c->averaging_window < 1 || c->averaging_window > AN_LK_MAX_WINDOW) {
        an_seterr(err, errlen, "averaging_window: %d is not between 1 and %d",
                c->averaging_window, AN_LK_MAX_WINDOW);
        return AN_EINVAL;
    }
    return 0;
}

const char *an_helper_event_name(an_helper_event_kind k)
{
    switch (k) {
    case AN_EV_REFRESH: return "refresh";
    case AN_EV_INIT: return "init";
    case AN_EV_RUN: return "run";
    case AN_EV_GREEDY_BREAK: return "greedy_break";
    case AN_EV_CUTOFF_PRECEDES: return "cutoff_precedes";
    case AN_EV_BYPASS_REFRESH: return "bypass_refresh";
    case AN_EV_NOT_ENOUGH: return "not_enough";
    }
    return "unknown";
}

int an_helper_refresh_interval(const an_helper_config *cfg, size_t m)
{
    assert(cfg);
    /* Python: int(max(RATE, m * 0.1)). max() keeps the int when it is >= the
     * float (an int <= 2^31 compares exactly with a double); int()
     * truncates. */
    double t = (double)m * 0.1;
    if ((double)cfg->refresh_rate >= t)
        return cfg->refresh_rate;
    if (t >= (double)INT_MAX)
        return INT_MAX;
    return (int)t;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* Returns a new helper, or NULL on ENOMEM or when cfg fails
 * an_helper_config_validate (validate first to get the message). */
an_helper *an_helper_new(const an_helper_config *cfg, an_helper_event_fn on_event,
                         void *ud)
{
    if (an_helper_config_validate(cfg, NULL, 0) != 0)
        return NULL;
    an_helper *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->cfg = *cfg;
    h->on_event = on_event;
    h->ud = ud;
    return h;
}

void an_helper_free(an_helper *h)
{
    if (!h)
        return;
    free(h->cache);
    free(h->avg);
    free(h);
}

/* ---- the cache ---------------------------------------------------------- */

/* Makes room for at least `need` entries in h->cache. The existing entries
 * are kept. Returns 0 or AN_ENOMEM (buffer unchanged). */
static int cache_reserve(an_helper *h, size_t need, char *err, size_t errlen)
{
    if (need <= h->cache_cap)
        return 0;
    size_t limit = 2 * (size_t)h->cfg.sample_size;
    size_t ncap = h->cache_cap ? h->cache_cap * 2 : 256;
    if (ncap > limit)
        ncap = limit;
    if (ncap < need)
        ncap = need;
    an_sample *p = realloc(h->cache, ncap * sizeof *p);
    if (!p) {
        an_seterr(err, errlen, "out of memory for a %zu-sample cache", ncap);
        return AN_ENOMEM;
    }
    h->cache = p;
    h->cache_cap = ncap;
    return 0;
}

/* Appends rows r[0..k) to the logical cache. Entries that can no longer be
 * among the last sample_size are dropped first, so the buffer stays within
 * 2 * sample_size entries and the append is amortised O(k). */
static int cache_append(an_helper *h, const an_row *r, size_t k, char *err,
                        size_t errlen)
{
    assert(h->have_cache);
    const size_t size = (size_t)h->cfg.sample_size;
    size_t keep_new = min_size(k, size);
    const an_row *src = r + (k - keep_new);

    if (h->cache_len + keep_new > h->cache_cap) {
        /* grow up to 2 * SIZE first, so that dropping old entries (a
         * memmove of up to SIZE entries) happens at most once per SIZE
         * appended entries */
        const size_t limit = 2 * size;
        int rc;
        if (h->cache_cap < limit &&
            (rc = cache_reserve(h, min_size(h->cache_len + keep_new, limit), err, errlen)))
            return rc;
        if (h->cache_len + keep_new > h->cache_cap) {
            size_t keep_old = min_size(h->cache_len, size - keep_new);
            if (keep_old < h->cache_len) {
                memmove(h->cache, h->cache + (h->cache_len - keep_old),
                        keep_old * sizeof *h->cache);
                h->cache_len = keep_old;
            }
            if ((rc = cache_reserve(h, h->cache_len + keep_new, err, errlen)))
                return rc;
        }
    }
    an_sample *dst = h->cache + h->cache_len;
    for (size_t i = 0; i < keep_new; i++) {
        dst[i].rowid = src[i].rowid;
        dst[i].value = src[i].value;
        dst[i].raw = src[i].raw;
    }
    h->cache_len += keep_new;
    h->cache_n += k;
    assert(h->exclusive || h->cache_len <= h->cache_n);
    assert(h->cache_len >= min_size(h->cache_n, size));
    return 0;
}

/* Reads the newest n processed rows from the source into cache[0..). */
static int load_tail(an_helper *h, const an_sample_source *src, size_t n, size_t extra,
                     char *err, size_t errlen)
{
    h->cache_len = 0;
    if (n == 0)
        return 0;
    if (!src || !src->tail) {
        an_seterr(err, errlen, "no sample source for the processed-rows tail");
        return AN_EINVAL;
    }
    int rc = cache_reserve(h, n + extra, err, errlen);
    if (rc)
        return rc;
    size_t got = 0;
    char serr[256] = "";
    rc = src->tail(src->ctx, n, h->cache, &got, serr, sizeof serr);
    if (rc != 0) {
        an_seterr(err, errlen, "sample source: tail of %zu rows: %s", n,
                serr[0] ? serr : "failed");
        return AN_EIO;
    }
    if (got > n) {
        an_seterr(err, errlen, "sample source: tail returned %zu rows for %zu asked", got, n);
        return AN_EIO;
    }
    h->cache_len = got;
    return 0;
}

/* The original's cache = tail(max(0, SIZE - len(consumed))) ++ consumed:
 * the newest earlier processed rows, then the consumed rows. The tail comes
 * from the source or, in exclusive mode, from the window already in the
 * buffer (read whole, SIZE rows, the first time). */
static int cache_build(an_helper *h, const an_sample_source *src, const an_row *consumed,
                       size_t k, char *err, size_t errlen)
{
    const size_t size = (size_t)h->cfg.sample_size;
    const size_t t = k < size ? size - k : 0;
    int rc;
    h->have_cache = false;
    h->cache_n = 0;
    if (h->exclusive) {
        if (!h->win_valid) {
            if ((rc = load_tail(h, src, size, 0, err, errlen)))
                return rc;
            h->win_valid = true;
            h->win_src = src->ctx;
        }
        h->cache_n = min_size(min_size(h->cache_len, size), t);
    } else {
        if ((rc = load_tail(h, src, t, min_size(k, size), err, errlen)))
            return rc;
        h->cache_n = h->cache_len;
    }
    h->have_cache = true;
    return cache_append(h, consumed, k, err, errlen);
}

/* _generateAnomalyParams: with fewer than MIN cache entries, *p stays as it
 * is (the original returns the previous params, last_rowid_for_stats
 * included); otherwise it becomes {last rowid of the cache, estimate over the
 * last min(len, SIZE) entries}. *generated tells which. */
static int generate(an_helper *h, an_helper_state *p, bool *generated, char *err,
                    size_t errlen)
{
    assert(h->have_cache);
    *generated = false;
    if (h->cache_n < (size_t)h->cfg.min_sample_size) {
        emit(h, AN_EV_NOT_ENOUGH, 2, (int64_t)h->cache_n,
             (int64_t)h->cfg.min_sample_size);
        return 0;
    }
    size_t n = min_size(h->cache_n, (size_t)h->cfg.sample_size);
    assert(n <= h->cache_len);
    const an_sample *recs = h->cache + (h->cache_len - n);
    if (n > h->avg_cap) {
        double *a = realloc(h->avg, n * sizeof *a);
        if (!a) {
            an_seterr(err, errlen, "out of memory for %zu moving averages", n);
            return AN_ENOMEM;
        }
        h->avg = a;
        h->avg_cap = n;
    }
    an_lk_params np;
    int rc = an_estimate(h->cfg.variant, recs, n, h->cfg.averaging_window,
                         (size_t)h->cfg.skip_records, &np, NULL, h->avg, NULL);
    if (rc != 0) {
        an_seterr(err, errlen, "estimate over %zu samples failed (%d)", n, rc);
        return rc;
    }
    p->present = true;
    p->last_rowid_for_stats = recs[n - 1].rowid;
    p->params = np;
    *generated = true;
    emit(h, AN_EV_REFRESH, 3, (int64_t)n, recs[0].rowid, recs[n - 1].rowid);
    return 0;
}

/* _refreshAnomalyParams: cache maintenance (build on first use within the
 * call, else append) then generate. */
static int refresh(an_helper *h, const an_sample_source *src, an_helper_state *p,
                   const an_row *consumed, size_t k, bool *generated, char *err,
                   size_t errlen)
{
    int rc = h->have_cache ? cache_append(h, consumed, k, err, errlen)
                           : cache_build(h, src, consumed, k, err, errlen);
    if (rc)
        return rc;
    h->appended += k;
    return generate(h, p, generated, err, errlen);
}

/* ---- the batch ---------------------------------------------------------- */

static int check_rows(const an_row *rows, size_t m, char *err, size_t errlen)
{
    if (!rows || m == 0) {
        an_seterr(err, errlen, "empty batch");
        return AN_EINVAL;
    }
    for (size_t i = 1; i < m; i++) {
        if (rows[i - 1].rowid == INT64_MAX || rows[i].rowid != rows[i - 1].rowid + 1) {
            an_seterr(err, errlen,
                    "rows out of order: rowid %lld at index %zu follows rowid %lld "
                    "(rowids must be consecutive and ascending)",
                    (long long)rows[i].rowid, i, (long long)rows[i - 1].rowid);
            return AN_EINVAL;
        }
    }
    return 0;
}

/* docs/htmengine.md §2.3.1, initialisation of a metric without params: reads
 * the processed-row count and, once count + m reaches the minimum sample size,
 * generates the first params (refresh) from the tail and rows[0, *start).
 * Sets *start to the first row the runs score (m when nothing is scored yet
 * and P stays absent). Returns 0 or an error. */
static int init_params(an_helper *h, const an_sample_source *src, an_helper_state *P,
                       an_row *rows, size_t m, size_t *start, char *err, size_t errlen)
{
    const size_t MIN = (size_t)h->cfg.min_sample_size;
    if (!src || !src->processed_count) {
        an_seterr(err, errlen, "no sample source for the processed-rows count");
        return AN_EINVAL;
    }
    int64_t count = 0;
    char serr[256] = "";
    int rc = src->processed_count(src->ctx, &count, serr, sizeof serr);
    if (rc != 0) {
        an_seterr(err, errlen, "sample source: processed count: %s",
                serr[0] ? serr : "failed");
        return AN_EIO;
    }
    if (count < 0) {
        an_seterr(err, errlen, "sample source: negative processed count %lld",
                (long long)count);
        return AN_EIO;
    }
    if ((uint64_t)count + m < MIN) {
        *start = m; /* nothing scored, P stays null */
        return 0;
    }
    size_t k0 = (uint64_t)count >= MIN ? 0 : MIN - (size_t)count;
    assert(k0 <= m);
    bool generated;
    rc = refresh(h, src, P, rows, k0, &generated, err, errlen);
    if (rc)
        return rc;
    if (!generated) {
        /* The original asserts here; it fails only when the count and
         * the tail disagree (rows deleted concurrently). */
        an_seterr(err, errlen,
                "initial anomaly params not generated: the sample source counted "
                "%lld processed rows but the cache holds %zu samples (< %zu)",
                (long long)count, h->cache_n, MIN);
        return AN_ESTATE;
    }
    assert(h->cache_len >= h->cache_n);
    emit(h, AN_EV_INIT, 3, (int64_t)h->cache_n, h->cache[h->cache_len - h->cache_n].rowid,
         h->cache[h->cache_len - 1].rowid);
    *start = k0;
    return 0;
}

/* docs/htmengine.md §2.3.2, one run: scores rows from *start up to the run's
 * cutoff (or its greedy break), then refreshes the params when the run ended
 * before the batch's end or reached the cutoff. Advances *start past the
 * scored rows. Returns 0 or an error. */
static int score_run(an_helper *h, const an_sample_source *src, an_helper_state *P,
                     an_row *rows, size_t m, int R, size_t *start, char *err,
                     size_t errlen)
{
    const an_helper_config *c = &h->cfg;
    const size_t MIN = (size_t)c->min_sample_size;
    const size_t s0 = *start;
    assert(P->present);
    const int64_t first = rows[s0].rowid;
    int64_t end_rowid;
    if (!h->have_cache || h->cache_n >= MIN) {
        end_rowid = sat_add(P->last_rowid_for_stats, R);
        if (end_rowid < first) {
            emit(h, AN_EV_CUTOFF_PRECEDES, 2, first, end_rowid);
            if (h->have_cache)
                end_rowid = first; /* "Advanced anomaly run cutoff" */
        }
    } else {
        end_rowid = sat_add(first, (int64_t)(MIN - h->cache_n - 1));
    }

    size_t limit;
    if (end_rowid < first) {
        emit(h, AN_EV_BYPASS_REFRESH, 2, first, end_rowid);
        limit = s0;
    } else {
        uint64_t span = (uint64_t)sat_sub(end_rowid, first) + 1u;
        size_t left = m - s0;
        limit = s0 + (span < left ? (size_t)span : left);
    }
    emit(h, AN_EV_RUN, 6, (int64_t)s0, (int64_t)limit, first, end_rowid,
         P->last_rowid_for_stats, (int64_t)R);

    const an_variant v = c->variant;
    size_t j = s0;
    while (j < limit) {
        an_row *md = &rows[j++];
        double l = an_update_one(v, &P->params, md->raw, NULL);
        md->anomaly_score = 1.0 - l;
        md->scored = true;
        if (md->anomaly_score > 0.99 &&
            sat_add(P->last_rowid_for_stats, 3) < md->rowid &&
            (!h->have_cache || h->cache_n + (j - s0) >= MIN)) {
            emit(h, AN_EV_GREEDY_BREAK, 1, md->rowid);
            break;
        }
    }
    size_t consumed = j - s0;

    if (j < m || (consumed > 0 && rows[j - 1].rowid >= end_rowid)) {
        assert(h->appended == s0);
        bool generated;
        int rc = refresh(h, src, P, rows + s0, consumed, &generated, err, errlen);
        if (rc)
            return rc;
    }
    *start = j;
    return 0;
}

/* The algorithm of docs/htmengine.md §2.3 on the working copy *P: the
 * initialisation when P has no params yet, then runs until the batch is
 * scored. Returns 0 or an error (then *P and the rows' scores are garbage;
 * the caller discards *P). */
static int update_batch(an_helper *h, const an_sample_source *src, an_helper_state *P,
                        an_row *rows, size_t m, char *err, size_t errlen)
{
    const int R = an_helper_refresh_interval(&h->cfg, m);
    size_t start = 0;
    int rc;

    h->have_cache = false;
    h->cache_n = 0;
    h->appended = 0;

    if (!P->present && (rc = init_params(h, src, P, rows, m, &start, err, errlen)) != 0)
        return rc;
    while (start < m)
        if ((rc = score_run(h, src, P, rows, m, R, &start, err, errlen)) != 0)
            return rc;

    /* Exclusive mode: the whole batch joins the window (the rows a refresh
     * appended, rows[0, appended), are there already). */
    if (h->exclusive && h->win_valid) {
        h->have_cache = true; /* for cache_append's bookkeeping */
        rc = cache_append(h, rows + h->appended, m - h->appended, err, errlen);
        h->have_cache = false;
        if (rc)
            return rc;
    }
    return 0;
}

/* Scores rows[0..m) and advances *state (see an_helper.h). The batch runs
 * on a copy of *state in h, which is copied back only on success. Events
 * are emitted as the batch runs, so an error may follow some events. */
int an_helper_update(an_helper *h, const an_sample_source *src, an_helper_state *state,
                     an_row *rows, size_t m, char *err, size_t errlen)
{
    assert(h && state);
    int rc = check_rows(rows, m, err, errlen);
    if (rc)
        return rc;
    if (state->present && !params_valid(&state->params)) {
        an_seterr(err, errlen, "anomalyLikelihoodParams.params: inconsistent lengths");
        return AN_EINVAL;
    }
    for (size_t i = 0; i < m; i++) {
        rows[i].anomaly_score = 0.0;
        rows[i].scored = false;
    }

    if (h->exclusive && h->win_valid &&
        (!src || src->ctx != h->win_src ||
         (h->cache_len > 0 && rows[0].rowid <= h->cache[h->cache_len - 1].rowid))) {
        /* not the window's source, or rows not after the window: the
         * promise does not hold, re-read the tail */
        h->win_valid = false;
    }
    if (!h->exclusive || !h->win_valid)
        h->cache_len = 0;

    an_helper_state work;
    state_copy(&work, state);
    rc = update_batch(h, src, &work, rows, m, err, errlen);
    h->have_cache = false;
    if (rc) {
        h->win_valid = false; /* the buffer holds rows that were not processed */
        h->cache_len = 0;
        return rc;
    }
    state_copy(state, &work);
    return 0;
}

/* Exclusive-source mode (see an_helper.h). Turning it off or on drops the
 * window. */
void an_helper_set_exclusive_source(an_helper *h, bool on)
{
    assert(h);
    h->exclusive = on;
    h->win_valid = false;
    h->win_src = NULL;
    h->cache_len = 0;
}

/* ---- JSON --------------------------------------------------------------- */

/* Returns a new reference: JSON null when !present, else
 * {"last_rowid_for_stats": int, "params": {...}}; NULL on ENOMEM. */
json_t *an_helper_state_to_json(const an_helper_state *s)
{
    if (!s || !s->present)
        return json_null();
    json_t *o = json_object();
    if (!o)
        return NULL;
    /* json_object_set_new steals the value even when it fails. */
    if (json_object_set_new(o, "last_rowid_for_stats",
                            json_integer((json_int_t)s->last_rowid_for_stats)) != 0 ||
        json_object_set_new(o, "params", an_lk_params_to_json(&s->params)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *an_helper_state_text(const an_helper_state *s, size_t *len)
{
    an_jbuf b = {0};
    if (!s || !s->present) {
        an_jbuf_puts(&b, "null");
    } else {
        char num[80];
        snprintf(num, sizeof num, "{\"last_rowid_for_stats\":%" PRId64 ",\"params\":",
                 s->last_rowid_for_stats);
        an_jbuf_puts(&b, num);
        an_lk_params_append(&b, &s->params);
        an_jbuf_put(&b, "}", 1);
    }
    if (b.fail) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}

/* Parses anomalyLikelihoodParams. NULL, JSON null and the empty object are
 * "no model yet" (the original tests `if not P`, so {} counts as absent).
 * Otherwise "last_rowid_for_stats" must be an integer and "params" an object
 * an_lk_params_from_json accepts; other keys are ignored. On error *s is
 * unchanged and err names the key. */
int an_helper_state_from_json(const json_t *j, an_helper_state *s, char *err,
                              size_t errlen)
{
    assert(s);
    if (!j || json_is_null(j) || (json_is_object(j) && json_object_size(j) == 0)) {
        s->present = false;
        s->last_rowid_for_stats = 0;
        return 0;
    }
    if (!json_is_object(j)) {
        an_seterr(err, errlen, "anomalyLikelihoodParams: not null or an object");
        return AN_EINVAL;
    }
    const json_t *rid = json_object_get(j, "last_rowid_for_stats");
    if (!rid || !json_is_integer(rid)) {
        an_seterr(err, errlen,
                "anomalyLikelihoodParams.last_rowid_for_stats: missing or not an integer");
        return AN_EINVAL;
    }
    const json_t *pj = json_object_get(j, "params");
    if (!pj || !json_is_object(pj)) {
        an_seterr(err, errlen, "anomalyLikelihoodParams.params: missing or not an object");
        return AN_EINVAL;
    }
    an_helper_state tmp;
    char perr[256] = "";
    int rc = an_lk_params_from_json(pj, &tmp.params, perr, sizeof perr);
    if (rc != 0) {
        an_seterr(err, errlen, "anomalyLikelihoodParams.params: %s",
                perr[0] ? perr : "invalid");
        return rc < 0 ? rc : AN_EINVAL;
    }
    if (!params_valid(&tmp.params)) {
        an_seterr(err, errlen, "anomalyLikelihoodParams.params: inconsistent lengths");
        return AN_EINVAL;
    }
    tmp.present = true;
    tmp.last_rowid_for_stats = (int64_t)json_integer_value(rid);
    state_copy(s, &tmp);
    return 0;
}
