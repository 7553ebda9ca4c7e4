/* view.c: read-only database views for plots and reports (an_view.h). */
#include "an_view.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo_internal.h"

void an_view_metric_clear(an_view_metric *m)
{
    if (!m)
        return;
    free(m->uid);
    free(m->name);
    free(m->parameters);
    memset(m, 0, sizeof *m);
}

an_view_range an_view_range_all(void)
{
    an_view_range r = {NAN, NAN, 0, 0, NAN};
    return r;
}

static char *col(const PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? NULL : strdup(PQgetvalue(res, row, c));
}

/* Columns: uid, name, parameters, status, scored, latest rowid, latest
 * epoch, latest anomaly. */
#define METRIC_COLS                                                                        \
    "m.uid, m.name, m.parameters, m.status, "                                              \
    "(SELECT count(*) FROM metric_data c WHERE c.uid = m.uid "                             \
    "  AND c.raw_anomaly_score IS NOT NULL), "                                             \
    "d.rowid, extract(epoch FROM d.timestamp)::float8, d.anomaly_score "                   \
    "FROM metric m LEFT JOIN metric_data d ON d.uid = m.uid AND d.rowid = m.scored_rowid " \
    "  AND d.anomaly_score IS NOT NULL "

static int metric_from_row(const PGresult *res, int i, an_view_metric *m)
{
    memset(m, 0, sizeof *m);
    m->uid = col(res, i, 0);
    m->name = col(res, i, 1);
    m->parameters = col(res, i, 2);
    m->status = PQgetisnull(res, i, 3) ? -1 : atoi(PQgetvalue(res, i, 3));
    m->scored = strtoll(PQgetvalue(res, i, 4), NULL, 10);
    m->has_latest = !PQgetisnull(res, i, 5);
    if (m->has_latest) {
        m->latest_rowid = strtoll(PQgetvalue(res, i, 5), NULL, 10);
        m->latest_ts = strtod(PQgetvalue(res, i, 6), NULL);
        m->latest_anomaly = strtod(PQgetvalue(res, i, 7), NULL);
    }
    if (!m->uid || (!m->name && !PQgetisnull(res, i, 1)) ||
        (!m->parameters && !PQgetisnull(res, i, 2))) {
        an_view_metric_clear(m);
        return AN_ENOMEM;
    }
    return 0;
}

int an_view_find_metric(an_repo *r, const char *key, an_view_metric *out)
{
    memset(out, 0, sizeof *out);
    const char *p[1] = {key};
    PGresult *res;
    int rc = an_repo__exec_params(r, "find metric",
                                  "SELECT " METRIC_COLS "WHERE m.uid = $1 OR m.name = $1 "
                                  "ORDER BY (m.uid = $1) DESC, m.uid LIMIT 10",
                                  1, p, &res);
    if (rc)
        return rc;
    int n = PQntuples(res);
    bool by_uid = n > 0 && !strcmp(PQgetvalue(res, 0, 0), key);
    if (n == 0) {
        rc = an_repo__fail(r, AN_ENOTFOUND, "no metric has this uid or name");
    } else if (n > 1 && !by_uid) {
        char msg[600];
        size_t used = (size_t)snprintf(msg, sizeof msg, "%d metrics have this name; use a uid:", n);
        for (int i = 0; i < n && used < sizeof msg; i++)
            used += (size_t)snprintf(msg + used, sizeof msg - used, " %s", PQgetvalue(res, i, 0));
        rc = an_repo__fail(r, AN_ESTATE, msg);
    } else {
        rc = metric_from_row(res, 0, out);
    }
    PQclear(res);
    return rc;
}

int an_view_list_metrics(an_repo *r, size_t limit, an_view_metric **out,
                         size_t *n, int64_t *total)
{
    *out = NULL;
    *n = 0;
    char lim[32];
    snprintf(lim, sizeof lim, "%zu", limit);
    const char *p[1] = {lim};
    PGresult *res;
    int rc = an_repo__exec_params(r, "count metrics", "SELECT count(*) FROM metric", 0, NULL,
                                  &res);
    if (rc)
        return rc;
    *total = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    rc = an_repo__exec_params(r, "list metrics",
                              "SELECT " METRIC_COLS
                              "ORDER BY d.anomaly_score DESC NULLS LAST, m.name, m.uid "
                              "LIMIT $1::bigint",
                              1, p, &res);
    if (rc)
        return rc;
    int rows = PQntuples(res);
    *out = calloc(rows ? (size_t)rows : 1, sizeof **out);
    if (!*out) {
        PQclear(res);
        return an_repo__fail(r, AN_ENOMEM, "out of memory");
    }
    for (int i = 0; i < rows && rc == 0; i++) {
        rc = metric_from_row(res, i, &(*out)[i]);
        if (rc == 0)
            (*n)++;
    }
    PQclear(res);
    return rc ? an_repo__fail(r, rc, "out of memory") : 0;
}

/* The WHERE clause shared by count and rows: $1 uid, $2 after_rowid,
 * $3 max_rowid, $4 from, $5 to, $6 min_anomaly (NULL: off). */
#define RANGE_WHERE                                                                  \
    "WHERE uid = $1 AND rowid > $2::bigint "                                         \
    "AND ($3::bigint IS NULL OR rowid <= $3::bigint) "                               \
    "AND ($4::float8 IS NULL OR timestamp >= to_timestamp($4::float8) AT TIME ZONE 'UTC') " \
    "AND ($5::float8 IS NULL OR timestamp <= to_timestamp($5::float8) AT TIME ZONE 'UTC') " \
    "AND ($6::float8 IS NULL OR anomaly_score >= $6::float8) "

typedef struct range_params {
    char after[24], max[24], from[40], to[40], min[40];
    const char *p[6];
} range_params;

static void fill_params(range_params *rp, const char *uid, const an_view_range *g, int64_t after)
{
    snprintf(rp->after, sizeof rp->after, "%" PRId64, after);
    snprintf(rp->max, sizeof rp->max, "%" PRId64, g->max_rowid);
    snprintf(rp->from, sizeof rp->from, "%.17g", g->from);
    snprintf(rp->to, sizeof rp->to, "%.17g", g->to);
    snprintf(rp->min, sizeof rp->min, "%.17g", g->min_anomaly);
    rp->p[0] = uid;
    rp->p[1] = rp->after;
    rp->p[2] = g->max_rowid > 0 ? rp->max : NULL;
    rp->p[3] = isnan(g->from) ? NULL : rp->from;
    rp->p[4] = isnan(g->to) ? NULL : rp->to;
    rp->p[5] = isnan(g->min_anomaly) ? NULL : rp->min;
}

int an_view_count(an_repo *r, const char *uid, const an_view_range *range,
                  int64_t *count, double *first_ts, double *last_ts,
                  int64_t *max_rowid)
{
    range_params rp;
    fill_params(&rp, uid, range, range->after_rowid);
    PGresult *res;
    int rc = an_repo__exec_params(r, "count rows",
                                  "SELECT count(*), extract(epoch FROM min(timestamp))::float8, "
                                  "extract(epoch FROM max(timestamp))::float8, "
                                  "coalesce(max(rowid), 0) FROM metric_data " RANGE_WHERE,
                                  6, rp.p, &res);
    if (rc)
        return rc;
    *count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    *first_ts = PQgetisnull(res, 0, 1) ? NAN : strtod(PQgetvalue(res, 0, 1), NULL);
    *last_ts = PQgetisnull(res, 0, 2) ? NAN : strtod(PQgetvalue(res, 0, 2), NULL);
    *max_rowid = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    PQclear(res);
    return 0;
}

static void row_from(const PGresult *res, int i, an_view_row *row)
{
    row->rowid = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    row->ts = strtod(PQgetvalue(res, i, 1), NULL);
    row->value = strtod(PQgetvalue(res, i, 2), NULL);
    row->has_anomaly = !PQgetisnull(res, i, 3);
    row->anomaly = row->has_anomaly ? strtod(PQgetvalue(res, i, 3), NULL) : 0.0;
    row->raw = PQgetisnull(res, i, 4) ? 0.0 : strtod(PQgetvalue(res, i, 4), NULL);
}

int an_view_rows(an_repo *r, const char *uid, const an_view_range *range,
                 an_view_row_fn fn, void *ud)
{
    int64_t after = range->after_rowid;
    for (;;) {
        range_params rp;
        fill_params(&rp, uid, range, after);
        PGresult *res;
        int rc = an_repo__exec_params(
            r, "read rows",
            "SELECT rowid, extract(epoch FROM timestamp)::float8, metric_value, anomaly_score, "
            "raw_anomaly_score FROM metric_data " RANGE_WHERE
            "ORDER BY rowid LIMIT " AN_VIEW_PAGE_TEXT,
            6, rp.p, &res);
        if (rc)
            return rc;
        int n = PQntuples(res);
        for (int i = 0; i < n && rc == 0; i++) {
            an_view_row row;
            row_from(res, i, &row);
            after = row.rowid;
            rc = fn(ud, &row);
        }
        PQclear(res);
        if (rc || n < AN_VIEW_PAGE)
            return rc;
    }
}
