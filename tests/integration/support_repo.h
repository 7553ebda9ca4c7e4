/*
 * support_repo.h: repository operations that only tests need, kept out of
 * the library. Reads and writes the service never does (a range of rows,
 * setting a metric's params and watermark by hand, the original's
 * deleteModel, deleting a metric) run their own SQL on the repository's connection
 * (an_repo_conn), in the caller's transaction when one is open; writing
 * scores goes through the group write the service uses.
 *
 * Return codes as in an_repo.h (0, AN_ENOTFOUND, AN_EINVAL, AN_ETRANSIENT,
 * AN_EDB, AN_ENOMEM); the message of the last failure is trepo_errstr().
 * Every name here starts with trepo_ (this file is linked into every
 * integration test binary).
 */
#ifndef SUPPORT_REPO_H
#define SUPPORT_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "an_repo.h"
#include "an_repo_group.h"

/* The message of the last failed trepo_ call ("" after a success). Static. */
const char *trepo_errstr(void);

/* The rows of uid with first <= rowid <= last, ascending rowid, into *out
 * (its earlier content discarded; zero-initialise before the first use,
 * an_data_rows_free releases it). No such rows: 0 with out->n == 0. */
int trepo_get_rows(an_repo *r, const char *uid, int64_t first, int64_t last,
                   an_data_rows *out);

/* UPDATE metric SET model_params, scored_rowid, scored_source (NULL ->
 * SQL NULL) of uid. AN_ENOTFOUND when no metric has this uid. */
int trepo_store_params(an_repo *r, const char *uid, const char *model_params,
                       int64_t scored_rowid, const char *scored_source);

/* The original's deleteModel (docs/htmengine.md §4.3), in one statement:
 * the metric's parameters, model_params, message and scored_source NULL,
 * status UNMONITORED, scored_rowid 0; every row's scores, display value
 * and predictions NULL. AN_ENOTFOUND when no metric has this uid. */
int trepo_delete_model(an_repo *r, const char *uid);

/* DELETE FROM metric (its rows go by cascade) and its scored_entry rows (a
 * sequential scan of that table): a test's cleanup. AN_ENOTFOUND when no
 * metric has this uid. */
int trepo_delete_metric(an_repo *r, const char *uid);

/* Writes scores of uid's rows in a transaction of its own, with the group
 * write (an_repo_group_write_commit: no metric update, no scored entry).
 * *updated = the rows that exist and were written. */
int trepo_write_scores(an_repo *r, const char *uid, const an_score_update *rows, size_t n,
                       int64_t *updated);

#endif
