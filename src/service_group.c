/*
 * service_group.c: the inference results of a group of entries (any
 * metrics) in ONE PostgreSQL transaction (docs/htmengine.md §1.4/§1.5 per
 * entry, group commit across entries).
 *
 * Round trips: one pipelined read (BEGIN, lock the metrics in uid order,
 * every batch's rows, every batch's predecessor row), the decisions and the
 * likelihood maths in memory, one pipelined write (every row of every metric
 * in one statement, every metric's params/watermark/status in the same
 * statement, COMMIT). The helper's sample queries run in between only when
 * a re-estimate needs them. The params cache hashes are read in one
 * pipelined Redis round trip before the transaction.
 *
 * Per entry, the decisions are those of the single-consumer original, in
 * stream order: unknown / non-ACTIVE metric, no rows, scrub (mismatch,
 * truncation, failed result -> ERROR) reject it; its rows are scored by the
 * helper, which sees the metric's earlier rows of this same group as if they
 * had been committed (an overlay on the database's sample queries), so a
 * group gives exactly the scores of one transaction per entry. On top of the
 * original, the watermark (metric.scored_rowid, scored_source) makes a
 * redelivered batch a duplicate instead of a second scoring, and a batch
 * whose predecessor is not applied yet is deferred.
 */
#include "service_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "an_log.h"
#include "an_util.h"
#include "an_state_cache.h"

/* A metric touched by the group. */
typedef struct gmetric {
    const char *uid;
    an_metric *m;              /* the locked row; NULL: no such metric */
    int64_t wm;                /* scored watermark as the group moves it */
    const char *source;        /* scored_source as the group moves it */
    bool wm_moved;
    int status;                /* status as the group changes it */
    const char *status_msg;
    bool status_changed;
    bool state_loaded, state_dirty;
    an_helper_state state;
    bool span_known;           /* the state cache located the state text */
    bool win_usable;           /* the sample window may be used (service_window.c) */
    an_state_span span;        /*   in m->model_params: here */
    char *state_text;          /* an_json_dumps of the final state (malloc'd) */
    char *mp_new;              /* model_params written (malloc'd) */
    size_t mp_new_len;
    an_state_span mp_new_span; /* the state text's place in mp_new */
    char *cached;              /* params hash text (malloc'd) or NULL */
    int64_t cached_wm;
    char *cached_src;          /* the hash's source (malloc'd) or NULL */
    /* the helper's overlay sample source */
    an_repo *repo;
    an_service *svc;
    int64_t before;            /* database rows below this rowid; 0: unset */
    an_sample *mem;            /* rows scored earlier in this group */
    size_t nmem, capmem;
    long cache_item;           /* item that carries the hash update, or -1 */
} gmetric;

typedef struct group_scratch {
    gmetric *gm;
    size_t capgm;
    size_t capkeys;            /* keys has its own capacity (NULL-filled) */
    const char **uids;
    char **keys;
    size_t capuids;
    an_group_range *ranges;
    size_t *row_start, *row_count;
    size_t capitems;
    an_group_read g;
    an_row *hrows;             /* [rows of the group] */
    an_score_update *upd;
    const char **row_uids;
    size_t nrows, caprows;
    an_out_row *orows;
    size_t caporows;
    an_group_metric_update *mu;
    size_t capmu;
} group_scratch;

/* Grows the parallel per-item arrays (same capacity). */
static int reserve_items(group_scratch *g, size_t n)
{
    if (n <= g->capitems)
        return 0;
    size_t c = n * 2;
    an_group_range *r = realloc(g->ranges, c * sizeof *r);
    if (r)
        g->ranges = r;
    size_t *a = realloc(g->row_start, c * sizeof *a);
    if (a)
        g->row_start = a;
    size_t *b = realloc(g->row_count, c * sizeof *b);
    if (b)
        g->row_count = b;
    if (!r || !a || !b)
        return AN_ENOMEM;
    g->capitems = c;
    return 0;
}

static int reserve_rows(group_scratch *g, size_t n)
{
    if (n <= g->caprows)
        return 0;
    size_t c = n * 2;
    an_row *h = realloc(g->hrows, c * sizeof *h);
    if (h)
        g->hrows = h;
    an_score_update *u = realloc(g->upd, c * sizeof *u);
    if (u)
        g->upd = u;
    const char **ru = realloc(g->row_uids, c * sizeof *ru);
    if (ru)
        g->row_uids = ru;
    if (!h || !u || !ru)
        return AN_ENOMEM;
    g->caprows = c;
    return 0;
}

static void clear_metrics(group_scratch *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(g->gm[i].cached);
        free(g->gm[i].cached_src);
        free(g->gm[i].mem);
        free(g->gm[i].state_text);
        free(g->gm[i].mp_new);
        free(g->keys[i]);
        g->keys[i] = NULL;
    }
}

void svc_group_free(an_service *s)
{
    group_scratch *g = s->gs;
    if (!g)
        return;
    free(g->gm);
    free(g->uids);
    free(g->keys);
    free(g->ranges);
    free(g->row_start);
    free(g->row_count);
    an_group_read_free(&g->g);
    free(g->hrows);
    free(g->upd);
    free(g->row_uids);
    free(g->orows);
    free(g->mu);
    free(g);
    s->gs = NULL;
}

/* "[a..b]" or "[a]" as the original's logs write row ranges. */
static const char *range_text(char *buf, size_t len, int64_t a, int64_t b)
{
    if (a == b)
        snprintf(buf, len, "[%" PRId64 "]", a);
    else
        snprintf(buf, len, "[%" PRId64 "..%" PRId64 "]", a, b);
    return buf;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static gmetric *find_metric(group_scratch *g, size_t n, const char *uid)
{
    const char **k = bsearch(&uid, g->uids, n, sizeof *g->uids, cmp_str);
    return k ? &g->gm[k - g->uids] : NULL;
}

/* ------------------------------------------------------------ sample source */

/* The helper's view of a metric's processed rows: the database's, below
 * `before`, then the rows this group scored for it so far. */
static int ov_count(void *ctx, int64_t *count, char *err, size_t errlen)
{
    gmetric *gm = ctx;
    int64_t c = 0;
    int rc = svc_window_count(gm->svc, gm->uid, gm->m->scored_rowid, gm->win_usable,
                              gm->before, &c);
    if (rc) {
        snprintf(err, errlen, "%s", an_repo_errstr(gm->repo));
        return rc;
    }
    *count = c + (int64_t)gm->nmem;
    return 0;
}

static int ov_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                   size_t errlen)
{
    gmetric *gm = ctx;
    size_t k = n < gm->nmem ? n : gm->nmem;
    size_t from_db = 0;
    if (n > k) {
        int rc = svc_window_tail(gm->svc, gm->uid, gm->m->scored_rowid, &gm->win_usable,
                                 gm->before, n - k, out, &from_db);
        if (rc) {
            snprintf(err, errlen, "%s", an_repo_errstr(gm->repo));
            return rc;
        }
    }
    if (k)
        memcpy(out + from_db, gm->mem + gm->nmem - k, k * sizeof *out);
    *got = from_db + k;
    return 0;
}

/* ------------------------------------------------------------ params */

/* Loads anomalyLikelihoodParams: from the in-process state cache when it
 * describes the model_params text just read under the lock, else from the
 * hash when its watermark equals the database's, else from
 * metric.model_params (docs/htmengine.md §2.2). AN_EINVAL (with reason) when
 * the stored params do not parse: a poison entry. */
static int load_state(an_service *s, gmetric *gm, item *it)
{
    char err[256];
    if (an_state_cache_get(s->sc, gm->uid, gm->m->model_params, &gm->state, &gm->span)) {
        gm->span_known = true;
        gm->win_usable = true;
        gm->state_loaded = true;
        return 0;
    }
    /* The hash is trusted only for the very write the database holds: its
     * watermark AND the entry that moved it (a deleted and re-created model
     * can reach the old watermark again, never with the old entry id). */
    if (gm->cached && gm->cached_wm == gm->m->scored_rowid && gm->cached_src &&
        gm->m->scored_source && !strcmp(gm->cached_src, gm->m->scored_source)) {
        json_t *j = json_loads(gm->cached, JSON_DECODE_ANY, NULL);
        int rc = j ? an_helper_state_from_json(j, &gm->state, err, sizeof err) : AN_EINVAL;
        json_decref(j);
        if (!rc) {
            gm->state_loaded = true;
            return 0;
        }
        an_warn("params cache of model=%s is unreadable; using PostgreSQL", gm->uid);
    }
    svc_count(s, &s->st.cache_misses, AN_C_PARAMS_READS, 1);
    memset(&gm->state, 0, sizeof gm->state);
    if (gm->m->model_params) {
        json_error_t je;
        json_t *mp = json_loads(gm->m->model_params, 0, &je);
        if (!mp || !json_is_object(mp)) {
            snprintf(it->reason, sizeof it->reason,
                     "metric %s: model_params is not a JSON object: %s", gm->uid,
                     mp ? "not an object" : je.text);
            json_decref(mp);
            return AN_EINVAL;
        }
        int rc = an_helper_state_from_json(json_object_get(mp, "anomalyLikelihoodParams"),
                                           &gm->state, err, sizeof err);
        json_decref(mp);
        if (rc) {
            snprintf(it->reason, sizeof it->reason,
                     "metric %s: stored anomalyLikelihoodParams invalid: %s", gm->uid, err);
            return AN_EINVAL;
        }
    }
    gm->state_loaded = true;
    return 0;
}

/* The final state's text, and model_params with anomalyLikelihoodParams
 * replaced by it (docs/htmengine.md §1.4 step 7.2): spliced into the text read
 * when the state cache located the old state in it, else merged through jansson
 * (the same bytes either way). 0 or AN_ENOMEM. */
static int build_model_params(gmetric *gm)
{
    gm->state_text = an_helper_state_text(&gm->state, NULL);
    if (!gm->state_text)
        return AN_ENOMEM;
    gm->mp_new = gm->span_known
                     ? an_model_params_splice(gm->m->model_params, gm->span, gm->state_text,
                                              &gm->mp_new_span, &gm->mp_new_len)
                     : an_model_params_merge(gm->m->model_params, gm->state_text,
                                             &gm->mp_new_span, &gm->mp_new_len);
    return gm->mp_new ? 0 : AN_ENOMEM;
}

/* The params text for the hash: the group's state, or (nothing loaded) the
 * stored one. */
static char *cache_text(gmetric *gm)
{
    if (gm->state_text)
        return strdup(gm->state_text);
    if (gm->state_loaded) {
        json_t *j = an_helper_state_to_json(&gm->state);
        char *t = j ? an_json_dumps(j, NULL) : NULL;
        json_decref(j);
        return t;
    }
    json_t *mp = gm->m->model_params ? json_loads(gm->m->model_params, 0, NULL) : NULL;
    json_t *p = mp ? json_object_get(mp, "anomalyLikelihoodParams") : NULL;
    char *t = p ? an_json_dumps(p, NULL) : strdup("null");
    json_decref(mp);
    return t;
}

/* ------------------------------------------------------------ decisions */

/* docs/htmengine.md §1.5 scrub of one batch against its rows. Returns 0 (score
 * it) or 1 (rejected; a failed result moved the metric to ERROR in gm).
 * *matched is the number of leading results whose rowid equals the row read at
 * their place: the rows a rejection may move the watermark onto. */
static int scrub(item *it, gmetric *gm, const an_data_row *rows, size_t nrows, size_t *matched)
{
    const char *uid = it->b->model;
    size_t k = it->n > nrows ? it->n : nrows;
    char r1[64], r2[64];
    range_text(r1, sizeof r1, it->first, it->last);
    *matched = 0;
    for (size_t i = 0; i < k; i++) {
        if (i < nrows && i < it->n && it->inf[i]->rowid == rows[i].rowid)
            *matched = i + 1;
        if (i >= nrows) {
            an_error("Rejected inference result batch=%s corresponding to rows=%s of "
                     "model=%s due to error=No MetricData row for inference result=%" PRId64,
                     r1, range_text(r2, sizeof r2, rows[0].rowid, rows[nrows - 1].rowid), uid,
                     it->inf[i]->rowid);
            return 1;
        }
        if (i >= it->n) {
            an_error("Rejected inference result batch=%s of model=%s due to error=Truncated "
                     "inference result batch; no result for metric data row=%" PRId64,
                     r1, uid, rows[i].rowid);
            return 1;
        }
        if (it->inf[i]->rowid != rows[i].rowid) {
            an_error("Rejected inference result batch=%s of model=%s due to error=RowID "
                     "mismatch between inference result=%" PRId64 " and ModelData row=%" PRId64,
                     r1, uid, it->inf[i]->rowid, rows[i].rowid);
            return 1;
        }
        if (rows[i].has_raw)
            an_error("Anomaly was already processed on data row=%" PRId64 " of model=%s; "
                     "new result=%.17g", rows[i].rowid, uid, it->inf[i]->score);
        if (it->inf[i]->status != 0) {
            const char *msg = it->inf[i]->error ? it->inf[i]->error : "(no errorMessage)";
            char emsg[AN_ESCAPE_BUF];
            an_error("%s", an_escape(emsg, sizeof emsg, msg, strlen(msg), AN_ESCAPE_LOG_MAX));
            if (gm->status == AN_METRIC_ERROR) {
                an_error("Rejected inference result batch=%s of model=%s: failed and model "
                         "was in ERROR state", r1, uid);
                return 1;
            }
            an_error("Placing model=%s in ERROR state due to inference result=%" PRId64
                     " status=%" PRId64, uid, it->inf[i]->rowid, it->inf[i]->status);
            gm->status = AN_METRIC_ERROR;
            gm->status_msg = it->inf[i]->error;
            gm->status_changed = true;
            an_error("Rejected inference result batch=%s of model=%s due to "
                     "error=Inference result failed; model promoted to ERROR state", r1, uid);
            return 1;
        }
    }
    return 0;
}

/* Rows are numbered from 1 and allocated contiguously per metric (spec
 * docs/htmengine.md §4.4), so only a batch of ascending, consecutive, positive
 * rowids can match them; the original rejects any other in its scrub. */
static bool rowids_contiguous(const item *it)
{
    if (it->first < 1)
        return false;
    for (size_t i = 1; i < it->n; i++)
        if (it->inf[i - 1]->rowid == INT64_MAX || it->inf[i]->rowid != it->inf[i - 1]->rowid + 1)
            return false;
    return true;
}

/* The last rowid of the rows read for a batch: its last rowid, but never
 * more than n rows from its first. The scrub rejects a non-contiguous
 * batch at its first gap, which lies within those n rows, so reading more
 * (a hostile [1, 2000000000] would read every row of the metric) cannot
 * change the outcome; a descending batch keeps its empty range. */
static int64_t read_last(const item *it)
{
    if (it->last < it->first || it->first > INT64_MAX - (int64_t)it->n)
        return it->last;
    int64_t span = it->first + (int64_t)it->n - 1;
    return it->last < span ? it->last : span;
}

/* Scores one batch: rows [row0, row0+n) of the group. Returns 0, 1 (poison,
 * reason set) or AN_ETRANSIENT. */
static int score(an_service *s, group_scratch *g, item *it, gmetric *gm, size_t row0)
{
    const an_data_row *rows = g->g.rows.v + row0;
    int rc = reserve_rows(g, g->nrows + it->n);
    if (rc)
        return rc;
    an_row *h = g->hrows + g->nrows;
    for (size_t i = 0; i < it->n; i++)
        h[i] = (an_row){.rowid = rows[i].rowid, .value = rows[i].metric_value,
                        .raw = it->inf[i]->score};
    if (gm->before == 0)
        gm->before = it->first;
    an_sample_source src = {.ctx = gm, .processed_count = ov_count, .tail = ov_tail};
    char err[256];
    rc = an_helper_update(s->helper, &src, &gm->state, h, it->n, err, sizeof err);
    if (rc) {
        /* The sample query failed: the server's fault class, not this
         * entry's (a data error is retried and counted like any other). */
        if (rc == AN_EIO && an_repo_last_rc(s->repo))
            return an_repo_last_rc(s->repo);
        if (rc == AN_ENOMEM)
            return rc;
        snprintf(it->reason, sizeof it->reason, "likelihood helper failed for model=%s: %s",
                 gm->uid, err);
        return 1;
    }
    if (!an_grow((void **)&gm->mem, &gm->capmem, gm->nmem + it->n, sizeof *gm->mem))
        return AN_ENOMEM;
    for (size_t i = 0; i < it->n; i++) {
        gm->mem[gm->nmem++] = (an_sample){h[i].rowid, h[i].value, h[i].raw};
        size_t k = g->nrows + i;
        /* the decoder's canonical text (json.dumps), borrowed from the
         * batch, which outlives the write */
        const char *pt = it->inf[i]->predictions_text;
        g->upd[k] = (an_score_update){
            .rowid = h[i].rowid, .raw = h[i].raw, .anomaly_score = h[i].anomaly_score,
            .display_value = an_display_value(h[i].anomaly_score, true),
            .predictions = pt ? pt : "null"};
        g->row_uids[k] = gm->uid;
    }
    g->nrows += it->n;
    gm->state_dirty = true;
    return 0;
}

/* docs/htmengine.md §1.9.1 for one item: fresh scores (hrows) or, for a
 * republish, what the database holds. A message that cannot be built is logged,
 * not fatal: the rows are stored. */
static int compose(an_service *s, group_scratch *g, item *it, gmetric *gm, size_t row0,
                   const an_row *fresh)
{
    char err[256];
    an_metric_info mi = {
        .uid = gm->m->uid, .name = gm->m->name, .description = gm->m->description,
        .resource = gm->m->server, .location = gm->m->location,
        .datasource = gm->m->datasource ? gm->m->datasource : "",
    };
    size_t hlen = 0;
    const char *head = an_state_cache_msg_head(s->sc, gm->uid, &mi, gm->m->parameters, &hlen,
                                               err, sizeof err);
    if (!head) {
        an_error("cannot compose inference results message for model=%s (rows are "
                 "stored): %s", gm->uid, err);
        return 0;
    }
    if (!an_grow((void **)&g->orows, &g->caporows, it->n, sizeof *g->orows))
        return AN_ENOMEM;
    const an_data_row *d = g->g.rows.v + row0;
    for (size_t i = 0; i < it->n; i++) {
        an_out_row *o = &g->orows[i];
        memset(o, 0, sizeof *o);
        o->rowid = d[i].rowid;
        o->ts = d[i].ts;
        o->value = d[i].metric_value;
        if (fresh) {
            o->raw = fresh[i].raw;
            o->anomaly = fresh[i].anomaly_score;
            o->predictions_json = it->inf[i]->predictions_text;
            o->predictions_canonical = true;   /* the decoder's dump: spliced */
        } else {
            o->raw = d[i].raw;
            o->anomaly = d[i].anomaly_score;
            o->predictions_json = d[i].predictions;
        }
    }
    size_t len = 0;
    char *msg = an_msg_inference_text_head(head, hlen, g->orows, it->n, &len, err, sizeof err);
    if (!msg) {
        an_error("cannot compose inference results message for model=%s: %s", gm->uid, err);
        return 0;
    }
    char rows[48];
    snprintf(rows, sizeof rows, "%" PRId64 "-%" PRId64, d[0].rowid, d[it->n - 1].rowid);
    return svc_add_out_text(s, it, AN_DATATYPE_INFERENCE, rows, msg, len);
}

/* ------------------------------------------------------------ the group */

/* Drops what a previous attempt added to the items (their command
 * messages, added before the group, stay). */
static void reset_items(item *items, size_t n, const size_t *keep_outs)
{
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        for (size_t k = keep_outs[i]; k < it->nouts; k++)
            free(it->outs[k].body);
        it->nouts = keep_outs[i];
        it->oc = INF_REJECTED;
        it->carries_cache = false;
        free(it->cache_json);
        it->cache_json = NULL;
        it->reason[0] = '\0';
    }
}

/* The output messages of the scored items and of duplicates to
 * re-publish, and the params hash text each metric's last published item
 * carries. 0 or AN_ENOMEM. */
static int prepare_outputs(an_service *s, group_scratch *g, item *items, size_t n,
                           size_t nu, const size_t *row_of_item)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        item *it = &items[i];
        gmetric *gm = find_metric(g, nu, it->b->model);
        if (it->oc == INF_SCORED) {
            rc = compose(s, g, it, gm, g->row_start[i], g->hrows + row_of_item[i]);
            gm->cache_item = (long)i;
        } else if (it->oc == INF_DUPLICATE) {
            gm->cache_item = (long)i;
            /* Committed by this very entry, then a crash before the publish
             * (which is atomic with its XACK): its output was never
             * published. */
            if (g->g.seen[i] && g->row_count[i] == it->n)
                rc = compose(s, g, it, gm, g->row_start[i], NULL);
        }
    }
    /* The last published item of each metric refreshes its hash. */
    for (size_t i = 0; i < nu && !rc; i++) {
        gmetric *gm = &g->gm[i];
        if (gm->cache_item < 0)
            continue;
        item *it = &items[gm->cache_item];
        it->cache_json = cache_text(gm);
        if (!it->cache_json)
            return AN_ENOMEM;
        it->carries_cache = true;
        it->cache_uid = it->b->model;
        it->cache_wm = gm->wm;
        snprintf(it->cache_src, sizeof it->cache_src, "%s", gm->source ? gm->source : "");
    }
    return rc;
}

/* A batch whose rowids are not ascending, consecutive and positive: the
 * original's scrub over the rows read (its log lines and its ERROR
 * promotion of a failed result before the first gap), then a reject in any
 * case (the scrub can only pass it when the metric's rows have a hole). */
static void reject_invalid(item *it, gmetric *gm, const an_data_row *rows, size_t nrows)
{
    char r1[64], why[128];
    size_t matched = 0, k = 1;
    range_text(r1, sizeof r1, it->first, it->last);
    while (k < it->n && it->inf[k - 1]->rowid != INT64_MAX &&
           it->inf[k]->rowid == it->inf[k - 1]->rowid + 1)
        k++;
    if (it->first < 1)
        snprintf(why, sizeof why, "rowid %" PRId64 " is not positive", it->first);
    else
        snprintf(why, sizeof why, "result %zu has rowid %" PRId64 " after %" PRId64, k,
                 it->inf[k]->rowid, it->inf[k - 1]->rowid);
    if (nrows == 0)
        an_error("Rejected inference result batch=%s of model=%s due to no matching "
                 "metric_data rows", r1, it->b->model);
    else if (scrub(it, gm, rows, nrows, &matched) == 0)
        an_error("Rejected inference result batch=%s of model=%s due to error=rowids not "
                 "contiguous", r1, it->b->model);
    an_error("batch=%s of model=%s: its rowids are not ascending, consecutive and positive "
             "(%s); rejected without moving the watermark", r1, it->b->model, why);
}

static int attempt(an_service *s, item *items, size_t n, int64_t t0)
{
    group_scratch *g = s->gs;
    char r1[64];
    int rc = reserve_items(g, n);
    if (rc)
        return rc;

    /* distinct metrics, sorted (the lock order) */
    size_t nu = 0;
    if (!an_grow((void **)&g->uids, &g->capuids, n, sizeof *g->uids))
        return AN_ENOMEM;
    for (size_t i = 0; i < n; i++)
        g->uids[nu++] = items[i].b->model;
    qsort(g->uids, nu, sizeof *g->uids, cmp_str);
    size_t w = 0;
    for (size_t i = 0; i < nu; i++)
        if (w == 0 || strcmp(g->uids[w - 1], g->uids[i]))
            g->uids[w++] = g->uids[i];
    nu = w;
    if (!an_grow((void **)&g->gm, &g->capgm, nu, sizeof *g->gm))
        return AN_ENOMEM;
    size_t capkeys = g->capkeys;
    if (!an_grow((void **)&g->keys, &g->capkeys, nu, sizeof *g->keys))
        return AN_ENOMEM;
    for (size_t i = capkeys; i < g->capkeys; i++)
        g->keys[i] = NULL;
    memset(g->gm, 0, nu * sizeof *g->gm);
    for (size_t i = 0; i < n; i++)
        g->ranges[i] = (an_group_range){items[i].b->model, items[i].first,
                                        read_last(&items[i]), items[i].e->id};

    /* params cache: one pipelined round trip; a failure is only a miss */
    char **cached = calloc(nu, sizeof *cached);
    int64_t *cwm = calloc(nu, sizeof *cwm);
    char **csrc = calloc(nu, sizeof *csrc);
    if (!cached || !cwm || !csrc) {
        free(cached);
        free(cwm);
        free(csrc);
        return AN_ENOMEM;
    }
    for (size_t i = 0; i < nu; i++) {
        if (an_state_cache_has(s->sc, g->uids[i]))
            continue;   /* the hash is only read when the state cache misses */
        size_t len = strlen(s->cfg->streams.params_prefix) + strlen(g->uids[i]) + 1;
        g->keys[i] = malloc(len);
        if (!g->keys[i]) {
            free(cached);
            free(cwm);
            free(csrc);
            clear_metrics(g, nu);
            return AN_ENOMEM;
        }
        snprintf(g->keys[i], len, "%s%s", s->cfg->streams.params_prefix, g->uids[i]);
    }
    if (an_params_cache_get_many(s->redis, (const char *const *)g->keys, nu, cached, cwm, csrc))
        an_warn("params cache unavailable (%s); using PostgreSQL", an_redis_errstr(s->redis));

    rc = an_repo_group_read(s->repo, g->uids, nu, g->ranges, n, &g->g);
    for (size_t i = 0; i < nu; i++) {
        gmetric *gm = &g->gm[i];
        gm->uid = g->uids[i];
        gm->cached = cached[i];
        gm->cached_wm = cwm[i];
        gm->cached_src = csrc[i];
        gm->repo = s->repo;
        gm->svc = s;
        gm->cache_item = -1;
        if (!rc && g->g.found[i]) {
            gm->m = &g->g.metrics[i];
            gm->wm = gm->m->scored_rowid;
            gm->source = gm->m->scored_source;
            gm->status = gm->m->status;
        }
    }
    free(cached);
    free(cwm);
    free(csrc);
    if (rc) {
        clear_metrics(g, nu);
        return rc;
    }

    /* each batch's slice of the rows read */
    for (size_t i = 0; i < n; i++)
        g->row_count[i] = 0;
    for (size_t k = 0; k < g->g.rows.n; k++)
        g->row_count[g->g.row_range[k]]++;
    for (size_t i = 0, acc = 0; i < n; i++) {
        g->row_start[i] = acc;
        acc += g->row_count[i];
    }

    /* the decisions, in stream order */
    g->nrows = 0;
    size_t *row_of_item = calloc(n, sizeof *row_of_item);   /* into hrows */
    if (!row_of_item) {
        an_repo_rollback(s->repo);
        clear_metrics(g, nu);
        return AN_ENOMEM;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        item *it = &items[i];
        gmetric *gm = find_metric(g, nu, it->b->model);
        assert(gm);
        if (it->oc == INF_POISON)
            continue;   /* too many attempts: dead-lettered, the rest goes on */
        range_text(r1, sizeof r1, it->first, it->last);
        if (!gm->m) {
            an_warn("Received inference results for unknown model=%s; (model deleted?)",
                    it->b->model);
            continue;   /* rejected */
        }
        it->seen_wm = gm->wm;
        if (gm->status == AN_METRIC_CREATE_PENDING && !it->force) {
            /* With several consumers the defineModel result may still be in
             * another consumer's hands: wait for it (bounded). */
            it->oc = INF_DEFERRED;
            continue;
        }
        if (gm->status != AN_METRIC_ACTIVE) {
            an_warn("Received inference results for a non-ACTIVE model=%s; (metric "
                    "unmonitored?) status=%s", it->b->model, an_metric_status_name(gm->status));
            continue;
        }
        if (!rowids_contiguous(it)) {
            /* Never a valid batch, so never a redelivery either: no
             * watermark test, rejected by the original's scrub (which may
             * still move the metric to ERROR), never moving the watermark. */
            reject_invalid(it, gm, g->g.rows.v + g->row_start[i], g->row_count[i]);
            continue;
        }
        if (it->last <= gm->wm) {
            it->oc = INF_DUPLICATE;
            continue;
        }
        if (it->first <= gm->wm) {
            snprintf(it->reason, sizeof it->reason,
                     "batch rows %s overlap rows already scored up to %" PRId64, r1, gm->wm);
            it->reason_class = SVC_DL_OVERLAP;
            it->oc = INF_POISON;
            continue;
        }
        bool ready = it->first <= gm->wm + 1 || g->g.pred[i] != AN_ROW_UNPROCESSED;
        if (!ready && !it->force) {
            it->oc = INF_DEFERRED;
            continue;
        }
        if (!ready)
            an_warn("scoring batch %s of model=%s although rows after %" PRId64 " are still "
                    "unprocessed: waited defer_max_ms (%d) for them", r1, it->b->model, gm->wm,
                    s->cfg->streams.defer_max_ms);
        const an_data_row *rows = g->g.rows.v + g->row_start[i];
        size_t nrows = g->row_count[i];
        bool rejected = false;
        size_t matched = 0;
        if (nrows == 0) {
            an_error("Rejected inference result batch=%s of model=%s due to no matching "
                     "metric_data rows", r1, it->b->model);
            rejected = true;
        } else {
            rejected = scrub(it, gm, rows, nrows, &matched) == 1;
        }
        if (rejected) {
            /* Rejected in its turn: the watermark moves past the rows it
             * matched (they exist and will not be scored), so its successor
             * does not wait for them; never onto rows that do not exist or
             * that the batch did not name (a batch beyond the metric's rows
             * moves nothing). */
            int64_t to = matched ? it->inf[matched - 1]->rowid : gm->wm;
            if (ready && to > gm->wm) {
                gm->wm = to;
                gm->source = it->e->id;
                gm->wm_moved = true;
            }
            continue;
        }
        if (!gm->state_loaded) {
            int lr = load_state(s, gm, it);
            if (lr == AN_EINVAL) {
                it->reason_class = SVC_DL_BAD_PARAMS;
                it->oc = INF_POISON;
                continue;
            }
            if (lr) {
                rc = lr;
                break;
            }
        }
        row_of_item[i] = g->nrows;
        int sr = score(s, g, it, gm, g->row_start[i]);
        if (sr == 1) {
            it->reason_class = SVC_DL_HELPER;
            it->oc = INF_POISON;
            continue;
        }
        if (sr) {
            rc = sr;
            break;
        }
        gm->wm = it->last;
        gm->source = it->e->id;
        gm->wm_moved = true;
        it->oc = INF_SCORED;
    }
    if (rc) {
        an_repo_rollback(s->repo);
        free(row_of_item);
        clear_metrics(g, nu);
        return rc;
    }

    /* one write for everything, then COMMIT */
    if (!an_grow((void **)&g->mu, &g->capmu, nu, sizeof *g->mu))
        rc = AN_ENOMEM;
    size_t nmu = 0;
    for (size_t i = 0; i < nu && !rc; i++) {
        gmetric *gm = &g->gm[i];
        if (!gm->m || !(gm->wm_moved || gm->state_dirty || gm->status_changed))
            continue;
        if (gm->state_dirty) {
            rc = build_model_params(gm);
            if (rc)
                break;
        }
        g->mu[nmu++] = (an_group_metric_update){
            .uid = gm->uid, .set_model_params = gm->state_dirty, .model_params = gm->mp_new,
            .watermark = gm->wm, .source = gm->source,
            .status = gm->status_changed ? gm->status : -1, .message = gm->status_msg};
    }
    /* the scored entries (their ranges, compacted in place) */
    size_t nsc = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].oc == INF_SCORED)
            g->ranges[nsc++] = g->ranges[i];
    int64_t updated = 0;
    bool sent = false;
    int64_t w0 = svc_now_us();
    if (!rc && (g->nrows || nmu)) {
        rc = an_repo_group_write_send(s->repo, g->row_uids, g->upd, g->nrows, g->mu, nmu,
                                      g->ranges, nsc);
        sent = !rc;
    } else if (!rc) {
        an_repo_rollback(s->repo);   /* nothing to write: just end it */
    }

    /* While the server writes and flushes: the output messages and the
     * hash texts (none of it counts before the COMMIT is confirmed: a
     * failed group drops them, reset_items), then the decoding of the
     * next group of the entries in hand. */
    int crc = rc ? 0 : prepare_outputs(s, g, items, n, nu, row_of_item);
    if (sent)
        svc_prefetch(s);
    if (sent)
        rc = an_repo_group_write_finish(s->repo, &updated);
    if (!rc)
        rc = crc;
    if (rc) {
        an_repo_rollback(s->repo);
        free(row_of_item);
        clear_metrics(g, nu);
        return rc;
    }

    /* committed: the counters, the logs, the state cache */
    if (sent) {
        an_metrics *mx = s->opts.metrics;
        an_metrics_observe(mx, AN_H_GROUP_WRITE, (double)(svc_now_us() - w0) / 1e6);
        an_metrics_observe(mx, AN_H_GROUP_ENTRIES, (double)n);
        an_metrics_observe(mx, AN_H_GROUP_ROWS, (double)g->nrows);
    }
    double dur = (double)(an_repo_now_ms(s->repo) - t0);
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        gmetric *gm = find_metric(g, nu, it->b->model);
        range_text(r1, sizeof r1, it->first, it->last);
        switch (it->oc) {
        case INF_SCORED:
            s->st.inference_batches++;
            svc_count(s, &s->st.rows_scored, AN_C_ROWS_SCORED, (int64_t)it->n);
            if (s->cfg->debugging.profiling || an_log_get_level() == AN_LOG_DEBUG) {
                const an_data_row *lr = g->g.rows.v + g->row_start[i] + it->n - 1;
                time_t sec = (time_t)floor(lr->ts);
                struct tm tm;
                char when[32];
                gmtime_r(&sec, &tm);
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
                an_info("{TAG:ANOM.BATCH.INF.DONE} model=%s; numItems=%zu; rows=%s; "
                        "tailRowTS=%sZ; duration=%.4fs; ds=%s; name=%s", it->b->model,
                        it->b->n, r1, when, dur / 1000.0,
                        gm->m->datasource ? gm->m->datasource : "",
                        gm->m->name ? gm->m->name : "");
            }
            break;
        case INF_DUPLICATE:
            s->st.duplicates++;
            if (g->g.seen[i] && g->row_count[i] == it->n) {
                svc_count(s, &s->st.republished, AN_C_REPUBLISHED, 1);
                an_warn("batch %s of model=%s (entry %s) was already scored; publishing its "
                        "output that was never published", r1, it->b->model, it->e->id);
            } else {
                an_warn("batch %s of model=%s (entry %s) was already scored by entry %s; "
                        "acking the duplicate", r1, it->b->model, it->e->id,
                        gm->m->scored_source ? gm->m->scored_source : "?");
            }
            break;
        case INF_REJECTED:
            s->st.rejected++;
            break;
        default:
            break;
        }
    }
    for (size_t i = 0; i < nu; i++) {
        gmetric *gm = &g->gm[i];
        if (gm->m && (gm->wm_moved || gm->state_dirty || gm->status_changed))
            svc_window_commit(s, gm->uid, gm->win_usable, gm->m->scored_rowid, gm->mem,
                              gm->nmem, gm->wm);
        if (gm->mp_new &&
            an_state_cache_put(s->sc, gm->uid, gm->mp_new, gm->mp_new_len, gm->mp_new_span,
                               &gm->state))
            an_warn("state cache: out of memory for model=%s", gm->uid);
    }
    if (updated != (int64_t)g->nrows)
        an_warn("group write matched %" PRId64 " of %zu metric_data rows (rows deleted "
                "meanwhile, e.g. by garbage collection?)", updated, g->nrows);
    free(row_of_item);
    clear_metrics(g, nu);
    return 0;
}

int svc_group_run(an_service *s, item *items, size_t n)
{
    assert(n > 0);
    s->st.groups++;
    if (!s->gs && !(s->gs = calloc(1, sizeof *s->gs)))
        return AN_ENOMEM;
    size_t *keep = malloc(n * sizeof *keep);
    if (!keep)
        return AN_ENOMEM;
    for (size_t i = 0; i < n; i++)
        keep[i] = items[i].nouts;
    int64_t t0 = an_repo_now_ms(s->repo);
    int rc;
    for (int k = 1;; k++) {
        reset_items(items, n, keep);
        rc = an_repo_connect(s->repo);
        if (rc == AN_EDB || rc == AN_ECONFIG)
            rc = AN_EENV;   /* refused now that it worked at start-up */
        if (!rc)
            rc = attempt(s, items, n, t0);
        if (rc != AN_ETRANSIENT)
            break;   /* 0, AN_EENV (pause) or a hard error */
        svc_count(s, &s->st.transient_errors, AN_C_TRANSIENT_ERRORS, 1);
        svc_heartbeat(s);
        if (an_repo_retry_policy(s->repo, k, t0))
            break;   /* budget spent: AN_ETRANSIENT to the caller */
        svc_note_retry(s);
    }
    if (rc)
        reset_items(items, n, keep);
    free(keep);
    return rc;
}
