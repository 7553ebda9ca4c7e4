/* support_repo.c: see support_repo.h. */
#include "support_repo.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char trepo_err[1024];

const char *trepo_errstr(void) { return trepo_err; }

static int trepo_fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int trepo_fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trepo_err, sizeof trepo_err, fmt, ap);
    va_end(ap);
    return rc;
}

/* Runs sql on r's connection; *out is the result on 0 (PQclear it). In a
 * transaction a lost connection is AN_ETRANSIENT (the transaction is gone);
 * outside one the repository connects first. */
static int trepo_exec(an_repo *r, const char *what, const char *sql, int n,
                      const char *const *params, PGresult **out)
{
    *out = NULL;
    trepo_err[0] = 0;
    if (!an_repo_in_transaction(r) && an_repo_connect(r))
        return trepo_fail(an_repo_last_rc(r), "%s: %s", what, an_repo_errstr(r));
    PGconn *c = an_repo_conn(r);
    if (!c || PQstatus(c) != CONNECTION_OK)
        return trepo_fail(AN_ETRANSIENT, "%s: connection lost", what);
    PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        int rc = trepo_fail(an_repo_is_transient(c, res), "%s: %s", what,
                            PQresultErrorMessage(res));
        PQclear(res);
        return rc;
    }
    *out = res;
    return 0;
}

/* A statement changing the metric row of uid (params[0]): AN_ENOTFOUND
 * when it matched none. */
static int trepo_change_metric(an_repo *r, const char *what, const char *sql, int n,
                               const char *const *params)
{
    PGresult *res;
    int rc = trepo_exec(r, what, sql, n, params, &res);
    if (rc)
        return rc;
    bool none = !strcmp(PQcmdTuples(res), "0");
    PQclear(res);
    return none ? trepo_fail(AN_ENOTFOUND, "Metric not found for uid=%s", params[0]) : 0;
}

/* Column c of row i: *has = not NULL; the text as a double (0 for NULL). */
static double num(const PGresult *res, int i, int c, bool *has)
{
    *has = !PQgetisnull(res, i, c);
    return *has ? strtod(PQgetvalue(res, i, c), NULL) : 0.0;
}

int trepo_get_rows(an_repo *r, const char *uid, int64_t first, int64_t last,
                   an_data_rows *out)
{
    out->n = 0;
    char f[24], l[24];
    snprintf(f, sizeof f, "%" PRId64, first);
    snprintf(l, sizeof l, "%" PRId64, last);
    const char *p[3] = {uid, f, l};
    PGresult *res;
    int rc = trepo_exec(r, "get rows",
                        "SELECT rowid, extract(epoch FROM timestamp), metric_value, "
                        "raw_anomaly_score, anomaly_score, display_value, "
                        "multi_step_best_predictions FROM metric_data "
                        "WHERE uid = $1 AND rowid BETWEEN $2::bigint AND $3::bigint "
                        "ORDER BY rowid",
                        3, p, &res);
    if (rc)
        return rc;
    size_t n = (size_t)PQntuples(res), text = 0;
    for (size_t i = 0; i < n; i++)
        text += (size_t)PQgetlength(res, (int)i, 6) + 1;
    an_data_row *v = realloc(out->v, (n ? n : 1) * sizeof *v);
    if (v) {
        out->v = v;
        out->cap = n ? n : 1;
    }
    char *t = realloc(out->text, text ? text : 1);
    if (t) {
        out->text = t;
        out->text_cap = text ? text : 1;
    }
    if (!v || !t) {
        PQclear(res);
        return trepo_fail(AN_ENOMEM, "get rows: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        an_data_row *d = &out->v[i];
        bool has;
        memset(d, 0, sizeof *d);
        d->rowid = strtoll(PQgetvalue(res, row, 0), NULL, 10);
        d->ts = num(res, row, 1, &has);
        d->metric_value = num(res, row, 2, &has);
        d->raw = num(res, row, 3, &d->has_raw);
        d->anomaly_score = num(res, row, 4, &d->has_score);
        if ((d->has_display = !PQgetisnull(res, row, 5)))
            d->display_value = strtoll(PQgetvalue(res, row, 5), NULL, 10);
        if (!PQgetisnull(res, row, 6)) {
            strcpy(t, PQgetvalue(res, row, 6));
            d->predictions = t;
            t += strlen(t) + 1;
        }
    }
    out->n = n;
    PQclear(res);
    return 0;
}

int trepo_store_params(an_repo *r, const char *uid, const char *model_params,
                       int64_t scored_rowid, const char *scored_source)
{
    char w[24];
    snprintf(w, sizeof w, "%" PRId64, scored_rowid);
    const char *p[4] = {uid, model_params, w, scored_source};
    return trepo_change_metric(r, "store params",
                               "UPDATE metric SET model_params = $2, scored_rowid = $3::bigint, "
                               "scored_source = $4 WHERE uid = $1",
                               4, p);
}

int trepo_delete_model(an_repo *r, const char *uid)
{
    const char *p[1] = {uid};
    return trepo_change_metric(
        r, "delete model",
        "WITH d AS (UPDATE metric_data SET anomaly_score = NULL, raw_anomaly_score = NULL, "
        "display_value = NULL, multi_step_best_predictions = NULL WHERE uid = $1) "
        "UPDATE metric SET parameters = NULL, model_params = NULL, status = 0, message = NULL, "
        "scored_rowid = 0, scored_source = NULL WHERE uid = $1",
        1, p);
}

int trepo_delete_metric(an_repo *r, const char *uid)
{
    const char *p[1] = {uid};
    return trepo_change_metric(r, "delete metric",
                               "WITH e AS (DELETE FROM scored_entry WHERE uid = $1) "
                               "DELETE FROM metric WHERE uid = $1",
                               1, p);
}

int trepo_write_scores(an_repo *r, const char *uid, const an_score_update *rows, size_t n,
                       int64_t *updated)
{
    *updated = 0;
    trepo_err[0] = 0;
    const char **uids = malloc((n ? n : 1) * sizeof *uids);
    if (!uids)
        return trepo_fail(AN_ENOMEM, "write scores: out of memory");
    for (size_t i = 0; i < n; i++)
        uids[i] = uid;
    int rc = an_repo_begin(r);
    if (!rc)
        rc = an_repo_group_write_commit(r, uids, rows, n, NULL, 0, NULL, 0, updated);
    free(uids);
    return rc ? trepo_fail(rc, "write scores: %s", an_repo_errstr(r)) : 0;
}
