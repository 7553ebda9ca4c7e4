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
 *
 * An attempt runs in four phases, each below: load (the reads), decide
 * (each batch in stream order, scoring what is applied), write (the one
 * statement and COMMIT, overlapped with the output messages and the
 * caller's overlap hook) and account (counters, logs, caches, once the
 * COMMIT is confirmed). The scorer knows nothing of the service: its
 * dependencies and hooks come in svc_scorer_deps (service_group.h).
 */
#include "service_group.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "an_batch_verdict.h"
#include "an_json_mem.h"
#include "an_log.h"
#include "an_repo_group.h"
#include "an_util.h"
#include "an_state_cache.h"
#include "service_window.h"

/* A "[a..b]" row range of two int64 rowids (20 characters each) and its
 * brackets and dots. */
#define RANGE_TEXT_MAX 64
/* Why a batch's rowids are not contiguous: a short phrase and three
 * numbers. */
#define WHY_TEXT_MAX 128
/* The histograms take seconds; durations are measured in microseconds and
 * milliseconds. */
#define US_PER_S 1e6
#define MS_PER_S 1000.0
/* "YYYY-MM-DDTHH:MM:SS" and its NUL, with room to spare. */
#define WHEN_TEXT_MAX 32

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
    svc_scorer *sc;
    int64_t before;            /* database rows below this rowid; 0: unset */
    an_sample *mem;            /* rows scored earlier in this group */
    size_t nmem, capmem;
    long cache_item;           /* item that carries the hash update, or -1 */
} gmetric;

/* One attempt's working set, its buffers reused from group to group. */
typedef struct group_scratch {
    gmetric *gm;               /* [nu]: the group's metrics, in uids' order */
    size_t nu;                 /* gm[0..nu) are set up (clear_metrics frees them) */
    size_t capgm;
    size_t capkeys;            /* keys has its own capacity (NULL-filled) */
    const char **uids;
    char **keys;
    size_t capuids;
    an_group_range *ranges;
    size_t *row_start, *row_count; /* [item]: its slice of g.rows */
    size_t *row_of_item;       /* [item]: its first row in hrows (scored items) */
    size_t capitems;
    an_group_read g;
    bool in_tx;                /* the group read opened the transaction */
    an_row *hrows;             /* [rows of the group] */
    an_score_update *upd;
    const char **row_uids;
    size_t nrows, caprows;
    an_out_row *orows;
    size_t caporows;
    an_group_metric_update *mu;
    size_t nmu, capmu;
    bool sent;                 /* the write went out (and its COMMIT) */
    int64_t updated;           /* metric_data rows the write matched */
    int64_t w0;                /* now_us when the write was sent */
} group_scratch;

struct svc_scorer {
    svc_scorer_deps d;
    group_scratch g;
    an_sample *win_buf;        /* sample_size rows: a window's rebuild (service_window.c) */
};

/* *stat += n, and the counter c: the stats line and the metrics move
 * together. */
static void count(svc_scorer *sc, int64_t *stat, an_counter c, int64_t n)
{
    *stat += n;
    an_metrics_add(sc->d.metrics, c, n);
}

/* Grows the parallel per-item arrays (same capacity). 0 or AN_ENOMEM. */
static int reserve_items(group_scratch *g, size_t n)
{
    void **const arrays[] = {(void **)&g->ranges, (void **)&g->row_start,
                             (void **)&g->row_count, (void **)&g->row_of_item};
    const size_t elem[] = {sizeof *g->ranges, sizeof *g->row_start, sizeof *g->row_count,
                           sizeof *g->row_of_item};
    return an_grow_parallel(arrays, elem, 4, &g->capitems, n) ? 0 : AN_ENOMEM;
}

/* Grows the parallel per-row arrays (same capacity). 0 or AN_ENOMEM. */
static int reserve_rows(group_scratch *g, size_t n)
{
    void **const arrays[] = {(void **)&g->hrows, (void **)&g->upd, (void **)&g->row_uids};
    const size_t elem[] = {sizeof *g->hrows, sizeof *g->upd, sizeof *g->row_uids};
    return an_grow_parallel(arrays, elem, 3, &g->caprows, n) ? 0 : AN_ENOMEM;
}

/* Frees what gm[0..nu) and their keys hold; nu = 0. */
static void clear_metrics(group_scratch *g)
{
    for (size_t i = 0; i < g->nu; i++) {
        free(g->gm[i].cached);
        free(g->gm[i].cached_src);
        free(g->gm[i].mem);
        free(g->gm[i].state_text);
        free(g->gm[i].mp_new);
        free(g->keys[i]);
        g->keys[i] = NULL;
    }
    g->nu = 0;
}

svc_scorer *svc_scorer_new(const svc_scorer_deps *deps)
{
    svc_scorer *sc = calloc(1, sizeof *sc);
    if (sc)
        sc->d = *deps;
    return sc;
}

void svc_scorer_free(svc_scorer *sc)
{
    if (!sc)
        return;
    group_scratch *g = &sc->g;
    free(g->gm);
    free(g->uids);
    free(g->keys);
    free(g->ranges);
    free(g->row_start);
    free(g->row_count);
    free(g->row_of_item);
    an_group_read_free(&g->g);
    free(g->hrows);
    free(g->upd);
    free(g->row_uids);
    free(g->orows);
    free(g->mu);
    free(sc->win_buf);
    free(sc);
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

/* qsort/bsearch order of uid pointers: strcmp. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The group's metric uid (NULL: not in the group). */
static gmetric *find_metric(group_scratch *g, const char *uid)
{
    const char **k = bsearch(&uid, g->uids, g->nu, sizeof *g->uids, cmp_str);
    return k ? &g->gm[k - g->uids] : NULL;
}

/* ------------------------------------------------------------ sample source */

/* The helper's view of a metric's processed rows: the database's, below
 * `before`, then the rows this group scored for it so far. */
static int ov_count(void *ctx, int64_t *count, char *err, size_t errlen)
{
    gmetric *gm = ctx;
    int64_t c = 0;
    int rc = svc_window_count(&gm->sc->d, gm->uid, gm->m->scored_rowid, gm->win_usable,
                              gm->before, &c);
    if (rc) {
        snprintf(err, errlen, "%s", an_repo_errstr(gm->sc->d.repo));
        return rc;
    }
    *count = c + (int64_t)gm->nmem;
    return 0;
}

/* The newest n of those rows (the helper's tail query). */
static int ov_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err,
                   size_t errlen)
{
    gmetric *gm = ctx;
    size_t k = n < gm->nmem ? n : gm->nmem;
    size_t from_db = 0;
    if (n > k) {
        int rc = svc_window_tail(&gm->sc->d, &gm->sc->win_buf, gm->uid, gm->m->scored_rowid,
                                 &gm->win_usable, gm->before, n - k, out, &from_db);
        if (rc) {
            snprintf(err, errlen, "%s", an_repo_errstr(gm->sc->d.repo));
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
 * metric.model_params (docs/htmengine.md §2.2). Returns 0 when loaded,
 * AN_EINVAL when the stored params do not parse (it->reason set: the entry
 * is poison) or AN_ENOMEM. */
static int load_state(svc_scorer *sc, gmetric *gm, item *it)
{
    char err[SVC_ERR_MAX];
    if (an_state_cache_get(sc->d.sc, gm->uid, gm->m->model_params, &gm->state, &gm->span)) {
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
        json_t *j;
        int rc = an_json_parse(gm->cached, strlen(gm->cached), JSON_DECODE_ANY, &j, NULL);
        if (!rc) {
            rc = an_helper_state_from_json(j, &gm->state, err, sizeof err);
            json_decref(j);
        }
        if (rc == AN_ENOMEM)
            return rc;
        if (!rc) {
            gm->state_loaded = true;
            return 0;
        }
        an_warn("params cache of model=%s is unreadable; using PostgreSQL", gm->uid);
    }
    count(sc, &sc->d.st->cache_misses, AN_C_PARAMS_READS, 1);
    memset(&gm->state, 0, sizeof gm->state);
    if (gm->m->model_params) {
        json_error_t je;
        json_t *mp;
        int prc = an_json_parse(gm->m->model_params, strlen(gm->m->model_params), 0, &mp, &je);
        if (prc == AN_ENOMEM)
            return prc;
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
        if (rc == AN_ENOMEM)
            return rc;
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
 * stored one. NULL on ENOMEM: a failed parse must not put "null" (no model)
 * in the hash under the database's watermark. */
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
    json_t *mp = NULL;
    if (gm->m->model_params &&
        an_json_parse(gm->m->model_params, strlen(gm->m->model_params), 0, &mp, NULL) ==
            AN_ENOMEM)
        return NULL;
    json_t *p = mp ? json_object_get(mp, "anomalyLikelihoodParams") : NULL;
    char *t = p ? an_json_dumps(p, NULL) : strdup("null");
    json_decref(mp);
    return t;
}

/* ------------------------------------------------------------ decisions */

/* docs/htmengine.md §1.5 scrub of one batch against its rows (nrows > 0).
 * Returns true when it passes (score it), false when it is rejected (logged;
 * a failed result moved the metric to ERROR in gm). *matched is the number
 * of leading results whose rowid equals the row read at their place: the
 * rows a rejection may move the watermark onto. */
static bool scrub_passes(item *it, gmetric *gm, const an_data_row *rows, size_t nrows,
                         size_t *matched)
{
    const char *uid = it->b->model;
    size_t k = it->n > nrows ? it->n : nrows;
    char r1[RANGE_TEXT_MAX], r2[RANGE_TEXT_MAX];
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
            return false;
        }
        if (i >= it->n) {
            an_error("Rejected inference result batch=%s of model=%s due to error=Truncated "
                     "inference result batch; no result for metric data row=%" PRId64,
                     r1, uid, rows[i].rowid);
            return false;
        }
        if (it->inf[i]->rowid != rows[i].rowid) {
            an_error("Rejected inference result batch=%s of model=%s due to error=RowID "
                     "mismatch between inference result=%" PRId64 " and ModelData row=%" PRId64,
                     r1, uid, it->inf[i]->rowid, rows[i].rowid);
            return false;
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
                return false;
            }
            an_error("Placing model=%s in ERROR state due to inference result=%" PRId64
                     " status=%" PRId64, uid, it->inf[i]->rowid, it->inf[i]->status);
            gm->status = AN_METRIC_ERROR;
            gm->status_msg = it->inf[i]->error;
            gm->status_changed = true;
            an_error("Rejected inference result batch=%s of model=%s due to "
                     "error=Inference result failed; model promoted to ERROR state", r1, uid);
            return false;
        }
    }
    return true;
}

/* Scores one batch: rows [row0, row0+n) of the group, appended to the
 * group's write. Returns 0 (scored, or it->oc = INF_POISON with its reason
 * when the helper fails on the entry's data), or the error of a failed
 * sample query (AN_ETRANSIENT, ...) or AN_ENOMEM. */
static int score(svc_scorer *sc, item *it, gmetric *gm, size_t row0)
{
    group_scratch *g = &sc->g;
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
    char err[SVC_ERR_MAX];
    rc = an_helper_update(sc->d.helper, &src, &gm->state, h, it->n, err, sizeof err);
    if (rc) {
        /* The sample query failed: the server's fault class, not this
         * entry's (a data error is retried and counted like any other). */
        if (rc == AN_EIO && an_repo_last_rc(sc->d.repo))
            return an_repo_last_rc(sc->d.repo);
        if (rc == AN_ENOMEM)
            return rc;
        snprintf(it->reason, sizeof it->reason, "likelihood helper failed for model=%s: %s",
                 gm->uid, err);
        it->reason_class = SVC_DL_HELPER;
        it->oc = INF_POISON;
        return 0;
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
 * republish, what the database holds. A message whose content cannot be
 * written (AN_EINVAL: the metric's parameters without a metricSpec object, a
 * text that is not UTF-8, a non-finite number) is logged and not published,
 * as the rows are stored; the original would crash on it. 0, or AN_ENOMEM
 * (the attempt is retried). */
static int compose(svc_scorer *sc, item *it, gmetric *gm, size_t row0, const an_row *fresh)
{
    group_scratch *g = &sc->g;
    char err[SVC_ERR_MAX];
    an_metric_info mi = {
        .uid = gm->m->uid, .name = gm->m->name, .description = gm->m->description,
        .resource = gm->m->server, .location = gm->m->location,
        .datasource = gm->m->datasource ? gm->m->datasource : "",
    };
    size_t hlen = 0;
    const char *head;
    int rc = an_state_cache_msg_head(sc->d.sc, gm->uid, &mi, gm->m->parameters, &head, &hlen,
                                     err, sizeof err);
    if (rc == AN_EINVAL)
        an_error("cannot compose inference results message for model=%s (rows are "
                 "stored): %s", gm->uid, err);
    if (rc)
        return rc == AN_EINVAL ? 0 : rc;
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
    char *msg;
    rc = an_msg_inference_text_head(head, hlen, g->orows, it->n, &msg, &len, err, sizeof err);
    if (rc == AN_EINVAL)
        an_error("cannot compose inference results message for model=%s (rows are "
                 "stored): %s", gm->uid, err);
    if (rc)
        return rc == AN_EINVAL ? 0 : rc;
    char rows[SVC_ROWS_TEXT_MAX];
    snprintf(rows, sizeof rows, "%" PRId64 "-%" PRId64, d[0].rowid, d[it->n - 1].rowid);
    return svc_add_out_text(it, sc->d.cfg->streams.output_encoding, AN_DATATYPE_INFERENCE,
                            rows, msg, len);
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
static int prepare_outputs(svc_scorer *sc, item *items, size_t n)
{
    group_scratch *g = &sc->g;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        item *it = &items[i];
        gmetric *gm = find_metric(g, it->b->model);
        if (it->oc == INF_SCORED) {
            rc = compose(sc, it, gm, g->row_start[i], g->hrows + g->row_of_item[i]);
            gm->cache_item = (long)i;
        } else if (it->oc == INF_DUPLICATE) {
            gm->cache_item = (long)i;
            /* Committed by this very entry, then a crash before the publish
             * (which is atomic with its XACK): its output was never
             * published. */
            if (g->g.seen[i] && g->row_count[i] == it->n)
                rc = compose(sc, it, gm, g->row_start[i], NULL);
        }
    }
    /* The last published item of each metric refreshes its hash. */
    for (size_t i = 0; i < g->nu && !rc; i++) {
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
    char r1[RANGE_TEXT_MAX], why[WHY_TEXT_MAX];
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
    else if (scrub_passes(it, gm, rows, nrows, &matched))
        an_error("Rejected inference result batch=%s of model=%s due to error=rowids not "
                 "contiguous", r1, it->b->model);
    an_error("batch=%s of model=%s: its rowids are not ascending, consecutive and positive "
             "(%s); rejected without moving the watermark", r1, it->b->model, why);
}

/* ------------------------------------------------------------ load */

/* The group's distinct metrics, sorted (the lock order, and find_metric's
 * bsearch), each with a zeroed gmetric and its params hash key, and each
 * batch's range to read. 0 or AN_ENOMEM. */
static int collect_metrics(svc_scorer *sc, item *items, size_t n)
{
    group_scratch *g = &sc->g;
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
    g->nu = nu;
    for (size_t i = 0; i < n; i++) {
        const item *it = &items[i];
        g->ranges[i] = (an_group_range){it->b->model, it->first,
                                        an_batch_read_last(it->first, it->last, it->n), it->e->id};
    }
    const char *prefix = sc->d.cfg->streams.params_prefix;
    for (size_t i = 0; i < nu; i++) {
        gmetric *gm = &g->gm[i];
        gm->uid = g->uids[i];
        gm->sc = sc;
        gm->cache_item = -1;
        if (an_state_cache_has(sc->d.sc, g->uids[i]))
            continue;   /* the hash is only read when the state cache misses */
        if (!(g->keys[i] = an_params_key(prefix, g->uids[i])))
            return AN_ENOMEM;
    }
    return 0;
}

/* The metrics' params cache hashes, in one pipelined round trip; a failure
 * is only a miss (logged). Their texts go to the gmetrics (owned there).
 * 0 or AN_ENOMEM. */
static int read_params_cache(svc_scorer *sc)
{
    group_scratch *g = &sc->g;
    char **cached = calloc(g->nu, sizeof *cached);
    int64_t *cwm = calloc(g->nu, sizeof *cwm);
    char **csrc = calloc(g->nu, sizeof *csrc);
    int rc = AN_ENOMEM;
    if (!cached || !cwm || !csrc)
        goto out;
    rc = 0;
    an_redis *redis = *sc->d.redis;
    if (an_params_cache_get_many(redis, (const char *const *)g->keys, g->nu, cached, cwm, csrc))
        an_warn("params cache unavailable (%s); using PostgreSQL", an_redis_errstr(redis));
    for (size_t i = 0; i < g->nu; i++) {
        g->gm[i].cached = cached[i];
        g->gm[i].cached_wm = cwm[i];
        g->gm[i].cached_src = csrc[i];
    }
out:
    free(cached);
    free(cwm);
    free(csrc);
    return rc;
}

/* Phase 1, load: the group's metrics, their params hashes (one Redis round
 * trip), then one pipelined PostgreSQL round trip that opens the
 * transaction (g->in_tx), locks the metrics in uid order and reads every
 * batch's rows and predecessor row; each batch's slice of the rows. 0 or
 * an AN_E* error. */
static int load_group(svc_scorer *sc, item *items, size_t n)
{
    group_scratch *g = &sc->g;
    int rc = reserve_items(g, n);
    if (!rc)
        rc = collect_metrics(sc, items, n);
    if (!rc)
        rc = read_params_cache(sc);
    if (rc)
        return rc;
    rc = an_repo_group_read(sc->d.repo, g->uids, g->nu, g->ranges, n, &g->g);
    if (rc)
        return rc;
    g->in_tx = true;
    for (size_t i = 0; i < g->nu; i++) {
        gmetric *gm = &g->gm[i];
        if (g->g.found[i]) {
            gm->m = &g->g.metrics[i];
            gm->wm = gm->m->scored_rowid;
            gm->source = gm->m->scored_source;
            gm->status = gm->m->status;
        }
    }
    for (size_t i = 0; i < n; i++)
        g->row_count[i] = 0;
    for (size_t k = 0; k < g->g.rows.n; k++)
        g->row_count[g->g.row_range[k]]++;
    for (size_t i = 0, acc = 0; i < n; i++) {
        g->row_start[i] = acc;
        acc += g->row_count[i];
    }
    return 0;
}

/* ------------------------------------------------------------ decide */

/* A batch that may be applied (ready, or forced when not): the original's
 * scrub, then its scoring. A rejected batch moves the watermark past the
 * rows it matched, when ready. Returns 0 (it->oc set) or an error that
 * fails the attempt. */
static int scrub_and_score(svc_scorer *sc, item *it, gmetric *gm, size_t i, bool ready)
{
    group_scratch *g = &sc->g;
    const an_data_row *rows = g->g.rows.v + g->row_start[i];
    size_t nrows = g->row_count[i];
    size_t matched = 0;
    bool passes = false;
    char r1[RANGE_TEXT_MAX];
    if (nrows == 0)
        an_error("Rejected inference result batch=%s of model=%s due to no matching "
                 "metric_data rows", range_text(r1, sizeof r1, it->first, it->last),
                 it->b->model);
    else
        passes = scrub_passes(it, gm, rows, nrows, &matched);
    if (!passes) {
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
        return 0;
    }
    if (!gm->state_loaded) {
        int rc = load_state(sc, gm, it);
        if (rc == AN_EINVAL) {
            it->reason_class = SVC_DL_BAD_PARAMS;
            it->oc = INF_POISON;
            return 0;
        }
        if (rc)
            return rc;
    }
    g->row_of_item[i] = g->nrows;
    int rc = score(sc, it, gm, g->row_start[i]);
    if (rc || it->oc == INF_POISON)
        return rc;
    gm->wm = it->last;
    gm->source = it->e->id;
    gm->wm_moved = true;
    it->oc = INF_SCORED;
    return 0;
}

/* The decision on items[i], in its turn: logs as the original did and sets
 * its outcome (left INF_REJECTED for a reject). Returns 0 or an error that
 * fails the attempt. */
static int decide_one(svc_scorer *sc, item *items, size_t i)
{
    group_scratch *g = &sc->g;
    item *it = &items[i];
    gmetric *gm = find_metric(g, it->b->model);
    assert(gm);
    if (it->oc == INF_POISON)
        return 0;   /* too many attempts: dead-lettered, the rest goes on */
    if (!gm->m) {
        an_warn("Received inference results for unknown model=%s; (model deleted?)",
                it->b->model);
        return 0;
    }
    it->seen_wm = gm->wm;
    char r1[RANGE_TEXT_MAX];
    range_text(r1, sizeof r1, it->first, it->last);
    switch (an_batch_verdict(it->inf, it->n, it->force, gm->status, gm->wm, g->g.pred[i])) {
    case AN_V_WAIT:
        it->oc = INF_DEFERRED;
        return 0;
    case AN_V_INACTIVE:
        an_warn("Received inference results for a non-ACTIVE model=%s; (metric "
                "unmonitored?) status=%s", it->b->model, an_metric_status_name(gm->status));
        return 0;
    case AN_V_INVALID:
        /* Never a valid batch, so never a redelivery either: no watermark
         * test, rejected by the original's scrub (which may still move the
         * metric to ERROR), never moving the watermark. */
        reject_invalid(it, gm, g->g.rows.v + g->row_start[i], g->row_count[i]);
        return 0;
    case AN_V_DUPLICATE:
        it->oc = INF_DUPLICATE;
        return 0;
    case AN_V_OVERLAP:
        snprintf(it->reason, sizeof it->reason,
                 "batch rows %s overlap rows already scored up to %" PRId64, r1, gm->wm);
        it->reason_class = SVC_DL_OVERLAP;
        it->oc = INF_POISON;
        return 0;
    case AN_V_SCORE_FORCED:
        an_warn("scoring batch %s of model=%s although rows after %" PRId64 " are still "
                "unprocessed: waited defer_max_ms (%d) for them", r1, it->b->model, gm->wm,
                sc->d.cfg->streams.defer_max_ms);
        return scrub_and_score(sc, it, gm, i, false);
    case AN_V_SCORE:
        return scrub_and_score(sc, it, gm, i, true);
    }
    return 0;
}

/* Phase 2, decide: each batch in stream order, in memory, scoring those to
 * apply (the helper's sample queries are the only round trips). 0 or an
 * error that fails the attempt. */
static int decide_group(svc_scorer *sc, item *items, size_t n)
{
    group_scratch *g = &sc->g;
    g->nrows = 0;
    memset(g->row_of_item, 0, n * sizeof *g->row_of_item);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = decide_one(sc, items, i);
    return rc;
}

/* ------------------------------------------------------------ write */

/* Each metric the group changed: its new model_params (built here), its
 * watermark and status, into g->mu[0..nmu). 0 or AN_ENOMEM. */
static int metric_updates(group_scratch *g)
{
    g->nmu = 0;
    if (!an_grow((void **)&g->mu, &g->capmu, g->nu, sizeof *g->mu))
        return AN_ENOMEM;
    for (size_t i = 0; i < g->nu; i++) {
        gmetric *gm = &g->gm[i];
        if (!gm->m || !(gm->wm_moved || gm->state_dirty || gm->status_changed))
            continue;
        if (gm->state_dirty) {
            int rc = build_model_params(gm);
            if (rc)
                return rc;
        }
        g->mu[g->nmu++] = (an_group_metric_update){
            .uid = gm->uid, .set_model_params = gm->state_dirty, .model_params = gm->mp_new,
            .watermark = gm->wm, .source = gm->source,
            .status = gm->status_changed ? gm->status : -1, .message = gm->status_msg};
    }
    return 0;
}

/* Phase 3, write: one statement for every row and metric (and the scored
 * entries), then COMMIT, sent pipelined (nothing to write: the transaction
 * just ends). While the server writes and flushes: the output messages and
 * the hash texts (none of it counts before the COMMIT is confirmed: a
 * failed attempt drops them, reset_items), then the overlap hook. 0 once
 * the COMMIT is confirmed, or an AN_E* error. */
static int write_group(svc_scorer *sc, item *items, size_t n)
{
    group_scratch *g = &sc->g;
    int rc = metric_updates(g);
    /* the scored entries (their ranges, compacted in place) */
    size_t nsc = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].oc == INF_SCORED)
            g->ranges[nsc++] = g->ranges[i];
    g->updated = 0;
    g->sent = false;
    g->w0 = sc->d.now_us();
    if (!rc && (g->nrows || g->nmu)) {
        rc = an_repo_group_write_send(sc->d.repo, g->row_uids, g->upd, g->nrows, g->mu, g->nmu,
                                      g->ranges, nsc);
        g->sent = !rc;
    } else if (!rc) {
        an_repo_rollback(sc->d.repo);   /* nothing to write: just end it */
    }
    int crc = rc ? 0 : prepare_outputs(sc, items, n);
    if (g->sent && sc->d.overlap)
        sc->d.overlap(sc->d.ctx);
    if (g->sent)
        rc = an_repo_group_write_finish(sc->d.repo, &g->updated);
    return rc ? rc : crc;
}

/* ------------------------------------------------------------ account */

/* The profiling line of a scored batch (docs/htmengine.md §1.11). */
static void log_batch_done(const item *it, const gmetric *gm, const an_data_row *last,
                           double dur_ms)
{
    time_t sec = (time_t)floor(last->ts);
    struct tm tm;
    char when[WHEN_TEXT_MAX], r1[RANGE_TEXT_MAX];
    gmtime_r(&sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    an_info("{TAG:ANOM.BATCH.INF.DONE} model=%s; numItems=%zu; rows=%s; "
            "tailRowTS=%sZ; duration=%.4fs; ds=%s; name=%s", it->b->model, it->b->n,
            range_text(r1, sizeof r1, it->first, it->last), when, dur_ms / MS_PER_S,
            gm->m->datasource ? gm->m->datasource : "", gm->m->name ? gm->m->name : "");
}

/* The counters and log lines of items[i]'s committed outcome. */
static void account_item(svc_scorer *sc, item *items, size_t i, double dur_ms)
{
    group_scratch *g = &sc->g;
    an_service_stats *st = sc->d.st;
    item *it = &items[i];
    gmetric *gm = find_metric(g, it->b->model);
    char r1[RANGE_TEXT_MAX];
    range_text(r1, sizeof r1, it->first, it->last);
    switch (it->oc) {
    case INF_SCORED:
        st->inference_batches++;
        count(sc, &st->rows_scored, AN_C_ROWS_SCORED, (int64_t)it->n);
        if (sc->d.cfg->debugging.profiling || an_log_get_level() == AN_LOG_DEBUG)
            log_batch_done(it, gm, g->g.rows.v + g->row_start[i] + it->n - 1, dur_ms);
        break;
    case INF_DUPLICATE:
        st->duplicates++;
        if (g->g.seen[i] && g->row_count[i] == it->n) {
            count(sc, &st->republished, AN_C_REPUBLISHED, 1);
            an_warn("batch %s of model=%s (entry %s) was already scored; publishing its "
                    "output that was never published", r1, it->b->model, it->e->id);
        } else {
            an_warn("batch %s of model=%s (entry %s) was already scored by entry %s; "
                    "acking the duplicate", r1, it->b->model, it->e->id,
                    gm->m->scored_source ? gm->m->scored_source : "?");
        }
        break;
    case INF_REJECTED:
        st->rejected++;
        break;
    default:
        break;
    }
}

/* Phase 4, account (the COMMIT is confirmed): the histograms, each item's
 * counters and logs, the sample windows and the state cache. */
static void account_group(svc_scorer *sc, item *items, size_t n, int64_t t0)
{
    group_scratch *g = &sc->g;
    if (g->sent) {
        an_metrics *mx = sc->d.metrics;
        an_metrics_observe(mx, AN_H_GROUP_WRITE, (double)(sc->d.now_us() - g->w0) / US_PER_S);
        an_metrics_observe(mx, AN_H_GROUP_ENTRIES, (double)n);
        an_metrics_observe(mx, AN_H_GROUP_ROWS, (double)g->nrows);
    }
    double dur = (double)(an_repo_now_ms(sc->d.repo) - t0);
    for (size_t i = 0; i < n; i++)
        account_item(sc, items, i, dur);
    for (size_t i = 0; i < g->nu; i++) {
        gmetric *gm = &g->gm[i];
        if (gm->m && (gm->wm_moved || gm->state_dirty || gm->status_changed))
            svc_window_commit(&sc->d, gm->uid, gm->win_usable, gm->m->scored_rowid, gm->mem,
                              gm->nmem, gm->wm);
        if (gm->mp_new &&
            an_state_cache_put(sc->d.sc, gm->uid, gm->mp_new, gm->mp_new_len, gm->mp_new_span,
                               &gm->state))
            an_warn("state cache: out of memory for model=%s", gm->uid);
    }
    if (g->updated != (int64_t)g->nrows)
        an_warn("group write matched %" PRId64 " of %zu metric_data rows (rows deleted "
                "meanwhile, e.g. by garbage collection?)", g->updated, g->nrows);
}

/* ------------------------------------------------------------ the group */

/* One attempt of the group's transaction: load, decide, write, account.
 * The one cleanup: a failure rolls back the transaction the load opened;
 * the metrics' buffers are freed either way. 0 or an AN_E* error. */
static int attempt(svc_scorer *sc, item *items, size_t n, int64_t t0)
{
    group_scratch *g = &sc->g;
    g->nu = 0;
    g->in_tx = false;
    int rc = load_group(sc, items, n);
    if (!rc)
        rc = decide_group(sc, items, n);
    if (!rc)
        rc = write_group(sc, items, n);
    if (!rc)
        account_group(sc, items, n, t0);
    if (rc && g->in_tx)
        an_repo_rollback(sc->d.repo);
    clear_metrics(g);
    return rc;
}

int svc_scorer_run(svc_scorer *sc, item *items, size_t n)
{
    assert(n > 0);
    sc->d.st->groups++;
    size_t *keep = malloc(n * sizeof *keep);
    if (!keep)
        return AN_ENOMEM;
    for (size_t i = 0; i < n; i++)
        keep[i] = items[i].nouts;
    int64_t t0 = an_repo_now_ms(sc->d.repo);
    int rc;
    for (int k = 1;; k++) {
        reset_items(items, n, keep);
        rc = an_repo_connect(sc->d.repo);
        if (rc == AN_EDB || rc == AN_ECONFIG)
            rc = AN_EENV;   /* refused now that it worked at start-up */
        if (!rc)
            rc = attempt(sc, items, n, t0);
        if (rc != AN_ETRANSIENT)
            break;   /* 0, AN_EENV (pause) or a hard error */
        count(sc, &sc->d.st->transient_errors, AN_C_TRANSIENT_ERRORS, 1);
        if (sc->d.heartbeat)
            sc->d.heartbeat(sc->d.ctx);
        if (an_repo_retry_policy(sc->d.repo, k, t0))
            break;   /* budget spent: AN_ETRANSIENT to the caller */
        an_metrics_add(sc->d.metrics, AN_C_RETRIES, 1);
    }
    if (rc)
        reset_items(items, n, keep);
    free(keep);
    return rc;
}
