/*
 * repo_group.c: the group commit (include/an_repo_group.h): the group read
 * and the group write, each one pipelined round trip over the repository's
 * connection (repo.c, through repo_internal.h).
 */
#include "an_repo_group.h"
#include "repo_internal.h"

#include "an_util.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ statements */

/* The metric rows are locked in uid order, so concurrent groups cannot
 * deadlock on them. */
static const an_repo_stmt S_G_LOCK = {"an_g_lock",
    "SELECT " AN_REPO_METRIC_COLS " FROM metric WHERE uid = ANY($1::text[]) "
    "ORDER BY uid FOR UPDATE",
    1};

static const an_repo_stmt S_G_ROWS = {"an_g_rows",
    "SELECT q.i, d.rowid, extract(epoch FROM d.timestamp), d.metric_value, "
    "d.raw_anomaly_score, d.anomaly_score, d.display_value, "
    "d.multi_step_best_predictions "
    "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY "
    "AS q(uid, f, l, i) "
    "JOIN metric_data d ON d.uid = q.uid AND d.rowid BETWEEN q.f AND q.l "
    "ORDER BY q.i, d.rowid",
    3};

static const an_repo_stmt S_G_PRED = {"an_g_pred",
    "SELECT q.i, d.raw_anomaly_score IS NOT NULL "
    "FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS q(uid, r, i) "
    "JOIN metric_data d ON d.uid = q.uid AND d.rowid = q.r",
    2};

/* The group write's parameters, in the statement's $-order ($1 = W_ROW_UID,
 * ...), each an array literal in the an_repo__arrays slot of its name: one
 * list, so a parameter added here is numbered, built and sent in the same
 * place (its text and its $n in the SQL below go together). */
enum {
    /* $1..$6: the rows (metric_data) */
    W_ROW_UID, W_ROWID, W_RAW, W_SCORE, W_DISPLAY, W_PREDICTIONS,
    /* $7..$13: the metrics */
    W_M_UID, W_M_SET_PARAMS, W_M_PARAMS, W_M_WATERMARK, W_M_SOURCE, W_M_STATUS, W_M_MESSAGE,
    /* $14..$17: the scored entries */
    W_E_ID, W_E_UID, W_E_FIRST, W_E_LAST,
    W_NPARAMS
};
_Static_assert(W_NPARAMS <= AN_REPO_ARRAYS, "one reusable array per parameter");

static const an_repo_stmt S_G_WRITE = {"an_g_write",
    "WITH d AS (UPDATE metric_data AS d SET raw_anomaly_score = u.raw, "
    "anomaly_score = u.score, display_value = u.disp, "
    "multi_step_best_predictions = u.pred "
    "FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], "
    "$5::int[], $6::text[]) AS u(uid, rowid, raw, score, disp, pred) "
    "WHERE d.uid = u.uid AND d.rowid = u.rowid RETURNING 1), "
    "m AS (UPDATE metric AS m SET "
    "model_params = CASE WHEN u.set_mp THEN u.mp ELSE m.model_params END, "
    "scored_rowid = GREATEST(m.scored_rowid, u.wm), "
    "scored_source = CASE WHEN u.wm > m.scored_rowid THEN u.src "
    "ELSE m.scored_source END, "
    "status = COALESCE(u.st, m.status), "
    "message = CASE WHEN u.st IS NULL THEN m.message ELSE u.msg END "
    "FROM unnest($7::text[], $8::bool[], $9::text[], $10::bigint[], $11::text[], "
    "$12::int[], $13::text[]) AS u(uid, set_mp, mp, wm, src, st, msg) "
    "WHERE m.uid = u.uid RETURNING 1), "
    "e AS (INSERT INTO scored_entry (entry_id, uid, first_rowid, last_rowid) "
    "SELECT * FROM unnest($14::text[], $15::text[], $16::bigint[], "
    "$17::bigint[]) ON CONFLICT (entry_id) DO NOTHING RETURNING 1) "
    "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM m), "
    "(SELECT count(*) FROM e)",
     W_NPARAMS};

static const an_repo_stmt S_G_SEEN = {"an_g_seen",
    "SELECT entry_id FROM scored_entry WHERE entry_id = ANY($1::text[])", 1};

/* ------------------------------------------------------------------ rows */

void an_data_rows_free(an_data_rows *rows)
{
    if (!rows)
        return;
    free(rows->v);
    free(rows->text);
    memset(rows, 0, sizeof *rows);
}

/* A text float8 field (callers check NULL first). */
static double double_field(const PGresult *res, int row, int col)
{
    return strtod(PQgetvalue(res, row, col), NULL);
}

/* Fills out (reusing its memory) from a result whose columns, from col0
 * on, are rowid, epoch, metric_value, raw, score, display, predictions. */
static int parse_rows(an_repo *r, PGresult *res, int col0, an_data_rows *out)
{
    size_t n = (size_t)PQntuples(res);
    size_t text = 0;
    for (size_t i = 0; i < n; i++)
        if (!PQgetisnull(res, (int)i, col0 + 6))
            text += (size_t)PQgetlength(res, (int)i, col0 + 6) + 1;
    if (!an_grow((void **)&out->v, &out->cap, n, sizeof *out->v) ||
        !an_grow((void **)&out->text, &out->text_cap, text, 1))
        return an_repo__failf(r, AN_ENOMEM, "rows: out of memory");
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        int row = (int)i, c = col0;
        an_data_row *d = &out->v[i];
        memset(d, 0, sizeof *d);
        d->rowid = an_repo__int_field(res, row, c, 0);
        d->ts = double_field(res, row, c + 1);
        d->metric_value = double_field(res, row, c + 2);
        if ((d->has_raw = !PQgetisnull(res, row, c + 3)))
            d->raw = double_field(res, row, c + 3);
        if ((d->has_score = !PQgetisnull(res, row, c + 4)))
            d->anomaly_score = double_field(res, row, c + 4);
        if ((d->has_display = !PQgetisnull(res, row, c + 5)))
            d->display_value = an_repo__int_field(res, row, c + 5, 0);
        if (!PQgetisnull(res, row, c + 6)) {
            size_t len = (size_t)PQgetlength(res, row, c + 6);
            memcpy(out->text + used, PQgetvalue(res, row, c + 6), len + 1);
            d->predictions = out->text + used;
            used += len + 1;
        }
    }
    out->n = n;
    return 0;
}

/* ------------------------------------------------------------ group read */

void an_group_read_free(an_group_read *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nmetrics; i++)
        an_metric_clear(&g->metrics[i]);
    free(g->metrics);
    free(g->found);
    an_data_rows_free(&g->rows);
    free(g->row_range);
    free(g->pred);
    free(g->seen);
    memset(g, 0, sizeof *g);
}

/* The group read's array parameters: slots of an_repo__arrays. */
enum { R_UIDS, R_RANGE_UID, R_FIRST, R_LAST, R_PRED_ROWID, R_ENTRY_ID, R_NARRAYS };
_Static_assert(R_NARRAYS <= AN_REPO_ARRAYS, "one reusable array per parameter");

/* Empties g for nuids metrics and nranges ranges: no metric found, every
 * predecessor missing, no entry seen, no rows. */
static int read_reset(an_repo *r, an_group_read *g, size_t nuids, size_t nranges)
{
    for (size_t i = 0; i < g->nmetrics; i++)
        an_metric_clear(&g->metrics[i]);
    free(g->metrics);
    free(g->found);
    g->metrics = calloc(nuids, sizeof *g->metrics);
    g->found = calloc(nuids, sizeof *g->found);
    /* nmetrics only counts what can be cleared later */
    g->nmetrics = g->metrics ? nuids : 0;
    int *pred = realloc(g->pred, (nranges ? nranges : 1) * sizeof *pred);
    if (pred)
        g->pred = pred;
    bool *seen = realloc(g->seen, (nranges ? nranges : 1) * sizeof *seen);
    if (seen)
        g->seen = seen;
    g->rows.n = 0;
    if (!g->metrics || !g->found || !pred || !seen)
        return an_repo__failf(r, AN_ENOMEM, "group_read: out of memory");
    for (size_t i = 0; i < nranges; i++) {
        g->pred[i] = AN_ROW_MISSING;
        g->seen[i] = false;
    }
    return 0;
}

/* The arrays: uids (lock); each range's uid, first and last rowid (rows);
 * its predecessor's rowid (pred, with the range's uid); its entry id
 * (seen). */
static int read_arrays(an_repo *r, const char *const *uids, size_t nuids,
                       const an_group_range *ranges, size_t nranges)
{
    an_pgarr *a = an_repo__arrays(r);
    bool ok = an_pgarr_text_array(&a[R_UIDS], uids, nuids);
    for (int k = R_RANGE_UID; k < R_NARRAYS; k++)
        ok = ok && an_pgarr_open(&a[k]);
    for (size_t i = 0; ok && i < nranges; i++) {
        const an_group_range *q = &ranges[i];
        ok = an_pgarr_text(&a[R_RANGE_UID], q->uid) && an_pgarr_int(&a[R_FIRST], q->first) &&
             an_pgarr_int(&a[R_LAST], q->last) &&
             /* the predecessor row; INT64_MIN has none (and no row) */
             an_pgarr_int(&a[R_PRED_ROWID], q->first > INT64_MIN ? q->first - 1 : INT64_MIN) &&
             an_pgarr_text(&a[R_ENTRY_ID], q->entry_id ? q->entry_id : "");
    }
    for (int k = R_RANGE_UID; k < R_NARRAYS; k++)
        ok = ok && an_pgarr_close(&a[k]);
    return ok ? 0 : an_repo__failf(r, AN_ENOMEM, "group_read: out of memory");
}

/* Fills g's metrics from an S_G_LOCK result: it is in uid order, as are
 * uids[] (the caller sorts). */
static int take_metrics(an_repo *r, const PGresult *m, const char *const *uids, size_t nuids,
                        an_group_read *g)
{
    for (int k = 0; k < PQntuples(m); k++) {
        const char *uid = PQgetvalue(m, k, 0);
        for (size_t i = 0; i < nuids; i++) {
            if (strcmp(uids[i], uid))
                continue;
            g->found[i] = true;
            if (!an_repo__metric_from_row(m, k, &g->metrics[i]))
                return an_repo__failf(r, AN_ENOMEM, "group_read: out of memory");
            break;
        }
    }
    return 0;
}

/* Fills g->rows (and each row's range index) from an S_G_ROWS result. */
static int take_rows(an_repo *r, PGresult *res, an_group_read *g, size_t nranges)
{
    size_t n = (size_t)PQntuples(res);
    if (!an_grow((void **)&g->row_range, &g->row_range_cap, n, sizeof *g->row_range))
        return an_repo__failf(r, AN_ENOMEM, "group_read: out of memory");
    for (size_t i = 0; i < n; i++) {
        int64_t qi = an_repo__int_field(res, (int)i, 0, 0);
        assert(qi >= 1 && (size_t)qi <= nranges);
        (void)nranges;
        g->row_range[i] = (size_t)(qi - 1);
    }
    return parse_rows(r, res, 1, &g->rows);
}

/* g->pred from an S_G_PRED result (1-based range index, processed). */
static void take_pred(const PGresult *pr, an_group_read *g, size_t nranges)
{
    for (int k = 0; k < PQntuples(pr); k++) {
        int64_t qi = an_repo__int_field(pr, k, 0, 0);
        if (qi >= 1 && (size_t)qi <= nranges)
            g->pred[qi - 1] =
                PQgetvalue(pr, k, 1)[0] == 't' ? AN_ROW_PROCESSED : AN_ROW_UNPROCESSED;
    }
}

/* g->seen from an S_G_SEEN result (the entry ids scored_entry knows). */
static void take_seen(const PGresult *sr, const an_group_range *ranges, size_t nranges,
                      an_group_read *g)
{
    for (int k = 0; k < PQntuples(sr); k++)
        for (size_t i = 0; i < nranges; i++)
            if (ranges[i].entry_id && !strcmp(ranges[i].entry_id, PQgetvalue(sr, k, 0)))
                g->seen[i] = true;
}

int an_repo_group_read(an_repo *r, const char *const *uids, size_t nuids,
                       const an_group_range *ranges, size_t nranges, an_group_read *g)
{
    static const an_repo_stmt *const needed[] = {&S_G_LOCK, &S_G_ROWS, &S_G_PRED, &S_G_SEEN};
    if (an_repo_in_transaction(r))
        return an_repo__failf(r, AN_ESTATE, "group_read: a transaction is already open");
    if (nuids == 0)
        return an_repo__failf(r, AN_EINVAL, "group_read: no metrics");
    int rc = read_reset(r, g, nuids, nranges);
    if (!rc)
        rc = read_arrays(r, uids, nuids, ranges, nranges);
    if (!rc)
        rc = an_repo__prepare(r, needed, sizeof needed / sizeof needed[0]);
    if (rc)
        return rc;   /* no transaction yet */
    const an_pgarr *a = an_repo__arrays(r);
    const char *p_lock[1] = {a[R_UIDS].p};
    const char *p_rows[3] = {a[R_RANGE_UID].p, a[R_FIRST].p, a[R_LAST].p};
    const char *p_pred[2] = {a[R_RANGE_UID].p, a[R_PRED_ROWID].p};
    const char *p_seen[1] = {a[R_ENTRY_ID].p};
    enum { BEGIN, LOCK, ROWS, PRED, SEEN, NSTEPS };
    an_repo_step steps[NSTEPS] = {
        [BEGIN] = {NULL, "BEGIN", NULL, NULL},     [LOCK] = {&S_G_LOCK, NULL, p_lock, NULL},
        [ROWS] = {&S_G_ROWS, NULL, p_rows, NULL}, [PRED] = {&S_G_PRED, NULL, p_pred, NULL},
        [SEEN] = {&S_G_SEEN, NULL, p_seen, NULL},
    };
    an_repo__set_in_tx(r, true);
    rc = an_repo__pipeline_run(r, steps, NSTEPS);
    if (!rc && (!steps[LOCK].res || !steps[ROWS].res || !steps[PRED].res || !steps[SEEN].res))
        rc = an_repo__failf(r, AN_EDB, "group_read: a query returned no rows result");
    if (!rc)
        rc = take_metrics(r, steps[LOCK].res, uids, nuids, g);
    if (!rc)
        rc = take_rows(r, steps[ROWS].res, g, nranges);
    if (!rc) {
        take_pred(steps[PRED].res, g, nranges);
        take_seen(steps[SEEN].res, ranges, nranges, g);
    }
    for (int i = 0; i < NSTEPS; i++)
        PQclear(steps[i].res);
    if (rc) {
        an_repo__rollback_quiet(r);
        return rc;
    }
    return an_repo__ok(r);
}

/* ----------------------------------------------------------- group write */

/* The rows' display values must fit the int column. */
static int check_rows(an_repo *r, const an_score_update *rows, size_t nrows)
{
    for (size_t i = 0; i < nrows; i++)
        if (rows[i].display_value < INT32_MIN || rows[i].display_value > INT32_MAX)
            return an_repo__failf(r, AN_EINVAL, "group_write: display_value %" PRId64
                                  " out of range", rows[i].display_value);
    return 0;
}

/* Appends one element to each parameter of its section ($1..$6, $7..$13,
 * $14..$17); false when out of memory. */
static bool add_row(an_pgarr *a, const char *uid, const an_score_update *u)
{
    return an_pgarr_text(&a[W_ROW_UID], uid) && an_pgarr_int(&a[W_ROWID], u->rowid) &&
           an_pgarr_double(&a[W_RAW], u->raw) && an_pgarr_double(&a[W_SCORE], u->anomaly_score) &&
           an_pgarr_int(&a[W_DISPLAY], u->display_value) &&
           an_pgarr_text(&a[W_PREDICTIONS], u->predictions);
}

static bool add_metric(an_pgarr *a, const an_group_metric_update *m)
{
    return an_pgarr_text(&a[W_M_UID], m->uid) &&
           an_pgarr_raw(&a[W_M_SET_PARAMS], m->set_model_params ? "t" : "f") &&
           an_pgarr_text(&a[W_M_PARAMS], m->model_params) &&
           an_pgarr_int(&a[W_M_WATERMARK], m->watermark) &&
           an_pgarr_text(&a[W_M_SOURCE], m->source) &&
           (m->status < 0 ? an_pgarr_raw(&a[W_M_STATUS], "NULL")
                          : an_pgarr_int(&a[W_M_STATUS], m->status)) &&
           an_pgarr_text(&a[W_M_MESSAGE], m->message);
}

static bool add_entry(an_pgarr *a, const an_group_range *e)
{
    return an_pgarr_text(&a[W_E_ID], e->entry_id) && an_pgarr_text(&a[W_E_UID], e->uid) &&
           an_pgarr_int(&a[W_E_FIRST], e->first) && an_pgarr_int(&a[W_E_LAST], e->last);
}

/* Every parameter of S_G_WRITE into a[0..W_NPARAMS). */
static int write_arrays(an_repo *r, an_pgarr *a, const char *const *row_uids,
                        const an_score_update *rows, size_t nrows,
                        const an_group_metric_update *mu, size_t nmu,
                        const an_group_range *scored, size_t nscored)
{
    bool ok = true;
    for (int k = 0; k < W_NPARAMS; k++)
        ok = ok && an_pgarr_open(&a[k]);
    for (size_t i = 0; ok && i < nrows; i++)
        ok = add_row(a, row_uids[i], &rows[i]);
    for (size_t i = 0; ok && i < nmu; i++)
        ok = add_metric(a, &mu[i]);
    for (size_t i = 0; ok && i < nscored; i++)
        ok = add_entry(a, &scored[i]);
    for (int k = 0; k < W_NPARAMS; k++)
        ok = ok && an_pgarr_close(&a[k]);
    return ok ? 0 : an_repo__failf(r, AN_ENOMEM, "group_write: out of memory");
}

int an_repo_group_write_send(an_repo *r, const char *const *row_uids,
                             const an_score_update *rows, size_t nrows,
                             const an_group_metric_update *mu, size_t nmu,
                             const an_group_range *scored, size_t nscored)
{
    static const an_repo_stmt *const needed[] = {&S_G_WRITE};
    if (an_repo__held(r))
        return an_repo__failf(r, AN_ESTATE, "group_write: a write is already in flight");
    if (!an_repo_in_transaction(r))
        return an_repo__failf(r, AN_ESTATE, "group_write: no transaction is open");
    an_pgarr *a = an_repo__arrays(r);
    int rc = check_rows(r, rows, nrows);
    if (!rc)
        rc = write_arrays(r, a, row_uids, rows, nrows, mu, nmu, scored, nscored);
    if (!rc)
        rc = an_repo__prepare(r, needed, 1);
    if (rc) {
        an_repo__rollback_quiet(r);
        return rc;
    }
    const char *p[W_NPARAMS];
    for (int k = 0; k < W_NPARAMS; k++)
        p[k] = a[k].p;
    /* p and the arrays are not needed after the send */
    const an_repo_step steps[2] = {{&S_G_WRITE, NULL, p, NULL}, {NULL, "COMMIT", NULL, NULL}};
    rc = an_repo__held_send(r, steps, 2);
    if (rc)
        an_repo__set_in_tx(r, false);   /* gone with the failed pipeline */
    return rc;
}

int an_repo_group_write_finish(an_repo *r, int64_t *rows_updated)
{
    if (!an_repo__held(r))
        return an_repo__failf(r, AN_ESTATE, "group_write_finish: no write in flight");
    if (rows_updated)
        *rows_updated = 0;
    PGresult *res[2];
    int rc = an_repo__held_recv(r, res);
    an_repo__set_in_tx(r, false);
    if (!rc && res[0] && rows_updated)
        *rows_updated = strtoll(PQgetvalue(res[0], 0, 0), NULL, 10);
    PQclear(res[0]);
    PQclear(res[1]);
    if (rc) {
        /* A failed COMMIT or statement leaves nothing applied; make sure
         * the session is not left in an aborted transaction. */
        an_repo__rollback_server(r);
        return rc;
    }
    return an_repo__ok(r);
}

int an_repo_group_write_commit(an_repo *r, const char *const *row_uids,
                               const an_score_update *rows, size_t nrows,
                               const an_group_metric_update *mu, size_t nmu,
                               const an_group_range *scored, size_t nscored,
                               int64_t *rows_updated)
{
    if (rows_updated)
        *rows_updated = 0;
    int rc = an_repo_group_write_send(r, row_uids, rows, nrows, mu, nmu, scored, nscored);
    return rc ? rc : an_repo_group_write_finish(r, rows_updated);
}

