/*
 * an_view.h: read-only views of the database for people (anomalyctl plot
 * and report): metrics with their status and latest score, and a metric's
 * rows in a time range, paged so memory never depends on the range. Uses
 * an_repo's connection and error convention (an_repo.h): 0 / AN_ENOTFOUND /
 * AN_ESTATE / AN_ETRANSIENT / AN_EDB / AN_ENOMEM, message in
 * an_repo_errstr().
 */
#ifndef AN_VIEW_H
#define AN_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_repo.h"

/* A metric as people see it. Strings malloc'd, owned by the struct. */
typedef struct an_view_metric {
    char *uid;
    char *name;        /* NULL for SQL NULL */
    char *parameters;  /* JSON text or NULL */
    int status;        /* AN_METRIC_*; -1 for NULL */
    int64_t scored;    /* rows with an anomaly score */
    bool has_latest;   /* the newest scored row: */
    int64_t latest_rowid;
    double latest_ts;  /* epoch seconds */
    double latest_anomaly;
} an_view_metric;

void an_view_metric_clear(an_view_metric *m);

/* The metric whose uid is key, else the one whose name is key. AN_ESTATE
 * when several metrics have that name (errstr lists their uids). */
int an_view_find_metric(an_repo *r, const char *key, an_view_metric *out);

/* Up to limit metrics, highest latest anomaly score first (metrics with no
 * score last, then by name). *out malloc'd array of *n (free each with
 * an_view_metric_clear, then free()); *total = all metrics. */
int an_view_list_metrics(an_repo *r, size_t limit, an_view_metric **out,
                         size_t *n, int64_t *total);

/* A row of metric_data. */
typedef struct an_view_row {
    int64_t rowid;
    double ts;          /* epoch seconds */
    double value;
    bool has_anomaly;   /* scored */
    double anomaly;
    double raw;         /* rawAnomaly (0 when not scored) */
} an_view_row;

/* Which rows: timestamps within [from, to] (NaN: unbounded), rowid in
 * (after_rowid, max_rowid] (max_rowid <= 0: unbounded) and, when
 * min_anomaly is not NaN, anomaly_score >= min_anomaly. */
typedef struct an_view_range {
    double from, to;
    int64_t after_rowid, max_rowid;
    double min_anomaly;
} an_view_range;

/* Every time and rowid bound off, no score filter. */
an_view_range an_view_range_all(void);

/* Count of the rows in range, their time span and their highest rowid
 * (first_ts/last_ts NaN and max_rowid 0 when none). */
int an_view_count(an_repo *r, const char *uid, const an_view_range *range,
                  int64_t *count, double *first_ts, double *last_ts,
                  int64_t *max_rowid);

/* Called per row in rowid order; a non-zero return stops the walk and is
 * returned by an_view_rows. */
typedef int (*an_view_row_fn)(void *ud, const an_view_row *row);

/* The rows in range, in pages of AN_VIEW_PAGE rows. */
#define AN_VIEW_PAGE 10000
#define AN_VIEW_PAGE_TEXT "10000"
int an_view_rows(an_repo *r, const char *uid, const an_view_range *range,
                 an_view_row_fn fn, void *ud);

#endif
