/*
 * an_repo_group.h: the group commit over a repository (an_repo.h): the
 * entries of many metrics scored in one transaction, in two round trips
 * (src/repo_group.c). Return codes and error text as in an_repo.h.
 *
 * Arrays of values go to the server as text array literals (doubles in
 * their shortest round-trip form, NaN / +-Infinity spelled for PostgreSQL,
 * text elements quoted and escaped), one parameter per column.
 */
#ifndef AN_REPO_GROUP_H
#define AN_REPO_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_repo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct an_data_row {
    int64_t rowid;
    double ts;            /* epoch seconds, microseconds included */
    double metric_value;
    bool has_raw;         /* raw_anomaly_score IS NOT NULL */
    double raw;           /* 0 when !has_raw */
    bool has_score;
    double anomaly_score; /* 0 when !has_score */
    bool has_display;
    int64_t display_value; /* 0 when !has_display */
    const char *predictions; /* multi_step_best_predictions or NULL; points
                                into the owning an_data_rows */
} an_data_row;

/* A reusable row buffer: an_repo_group_read refills it, reusing its memory,
 * so steady-state batches allocate nothing. Zero-initialise before first
 * use; an_data_rows_free releases it. */
typedef struct an_data_rows {
    an_data_row *v;
    size_t n;
    size_t cap;
    char *text;      /* storage of the predictions strings */
    size_t text_cap;
} an_data_rows;

void an_data_rows_free(an_data_rows *rows);

/* One scored row of a group write (an_repo_group_write_commit). */
typedef struct an_score_update {
    int64_t rowid;
    double raw;            /* raw_anomaly_score */
    double anomaly_score;
    int64_t display_value; /* already rounded (an_display_value) */
    const char *predictions; /* JSON text ("null" for none, as the
                                original); NULL -> SQL NULL */
} an_score_update;

/* ---- group commit: the entries of many metrics in one transaction ----
 *
 * Two round trips per group (libpq pipeline mode):
 *   an_repo_group_read:  BEGIN; lock the metrics FOR UPDATE (uid order);
 *                        read every batch's rows; read each batch's
 *                        predecessor row state.
 *   an_repo_group_write_commit: one statement writing every row of every
 *                        metric (UPDATE ... FROM unnest) and every metric's
 *                        params / watermark / status; COMMIT.
 * Between the two the caller decides everything in memory (the helper's
 * sample queries, when a refresh needs them, run in the same transaction).
 * Any failure leaves the transaction rolled back; AN_ETRANSIENT means run
 * the whole group again (an_repo_retry_policy paces that). */

typedef struct an_group_range {
    const char *uid;
    int64_t first, last;   /* the batch's rowids */
    const char *entry_id;  /* the input entry carrying the batch */
} an_group_range;

typedef struct an_group_read {
    an_metric *metrics;   /* [nmetrics], aligned with the uids passed */
    bool *found;          /* [nmetrics]: false = no such metric */
    size_t nmetrics;
    an_data_rows rows;    /* all ranges' rows, by range then rowid */
    size_t *row_range;    /* [rows.n]: index of the range of each row */
    size_t row_range_cap;
    int *pred;            /* [nranges]: AN_ROW_* of row first-1 */
    bool *seen;           /* [nranges]: entry_id is in scored_entry (it was
                             committed before: a redelivery) */
} an_group_read;

/* uids: the group's distinct metric uids, sorted ascending (strcmp).
 * *g is refilled (zero-initialise before the first use; free with
 * an_group_read_free). Leaves a transaction open on success.
 * 0 / AN_ESTATE (transaction already open) / AN_EINVAL / AN_ETRANSIENT /
 * AN_EDB / AN_ENOMEM. */
int an_repo_group_read(an_repo *r, const char *const *uids, size_t nuids,
                       const an_group_range *ranges, size_t nranges,
                       an_group_read *g);
void an_group_read_free(an_group_read *g);

/* One metric's final state after the group. */
typedef struct an_group_metric_update {
    const char *uid;
    bool set_model_params;     /* false: keep model_params */
    const char *model_params;
    int64_t watermark;         /* scored_rowid = GREATEST(scored_rowid, this) */
    const char *source;        /* scored_source, when the watermark moves */
    int status;                /* < 0: keep; else status = this, message = message */
    const char *message;
} an_group_metric_update;

/* Writes rows (row_uids[i] is rows[i]'s metric), metric updates and the
 * scored entries (scored_entry rows) in one statement, then COMMITs, in one
 * round trip. *rows_updated (may be NULL) = metric_data rows matched.
 * Closes the transaction either way. = _send then _finish. */
int an_repo_group_write_commit(an_repo *r, const char *const *row_uids,
                               const an_score_update *rows, size_t nrows,
                               const an_group_metric_update *mu, size_t nmu,
                               const an_group_range *scored, size_t nscored,
                               int64_t *rows_updated);

/* The same in two halves, so the caller can compute while the server
 * writes and flushes: _send puts the statement and COMMIT on the wire
 * (the arguments are not used after it returns); on failure the
 * transaction is closed and there is nothing to finish. Otherwise the
 * caller must call _finish, and no other function on r, before anything
 * else on r: it waits for the results, closes the transaction and returns
 * what an_repo_group_write_commit would. Until _finish returns 0 nothing
 * is known to be committed. */
int an_repo_group_write_send(an_repo *r, const char *const *row_uids,
                             const an_score_update *rows, size_t nrows,
                             const an_group_metric_update *mu, size_t nmu,
                             const an_group_range *scored, size_t nscored);
int an_repo_group_write_finish(an_repo *r, int64_t *rows_updated);

#ifdef __cplusplus
}
#endif
#endif /* AN_REPO_GROUP_H */
