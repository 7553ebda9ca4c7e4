/*
 * repo_internal.h: what the repository's files share inside the library.
 * repo.c owns the connection, the prepared statements, transactions, the
 * pipeline and the error state; repo_group.c (the group read and write),
 * schema.c and view.c call it, never the other way round; repo_array.c
 * builds the array literals that carry many values in one parameter. Not a
 * public header: callers outside src/ use include/an_repo*.h.
 */
#ifndef AN_REPO_INTERNAL_H
#define AN_REPO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_repo.h"

/* ---- array literals (repo_array.c) ---- */

/* A growing text buffer holding one PostgreSQL array literal, "{a,b,...}".
 * Zero-initialise; an_pgarr_free releases it. The functions returning
 * bool return false when out of memory (the literal is then incomplete). */
typedef struct an_pgarr {
    char *p;          /* NUL-terminated text; NULL until the first add */
    size_t len, cap;
} an_pgarr;

void an_pgarr_free(an_pgarr *b);
/* Starts a literal (b's earlier content discarded, its memory kept) / ends it. */
bool an_pgarr_open(an_pgarr *b);
bool an_pgarr_close(an_pgarr *b);
/* Elements, each after a comma unless it is the first: */
/* a token as it is ("t", "NULL"); */
bool an_pgarr_raw(an_pgarr *b, const char *token);
/* a double, round-trip exact, with PostgreSQL's spellings of NaN and
 * +-Infinity; */
bool an_pgarr_double(an_pgarr *b, double d);
bool an_pgarr_int(an_pgarr *b, int64_t v);
/* a text: NULL -> NULL, else double-quoted and escaped. */
bool an_pgarr_text(an_pgarr *b, const char *s);
/* A whole literal of n text elements (open, elements, close). */
bool an_pgarr_text_array(an_pgarr *b, const char *const *v, size_t n);

/* ---- statements and pipelines (repo.c) ---- */

/* A statement prepared on each connection the first time it is used; its
 * identity is its address, so define each one once (static const). */
typedef struct an_repo_stmt {
    const char *name;   /* "an_<what>"; errors name it without the "an_" */
    const char *sql;
    int nparams;
} an_repo_stmt;

/* The columns an_repo__metric_from_row reads, in its order. */
#define AN_REPO_METRIC_COLS                                                                  \
    "uid, datasource, name, description, server, location, parameters, status, message, "    \
    "model_params, last_rowid, scored_rowid, scored_source"

/* One query of a pipeline: a prepared statement, or a constant command
 * without values (sql) when stmt is NULL. */
typedef struct an_repo_step {
    const an_repo_stmt *stmt;
    const char *sql;
    const char *const *params;
    PGresult *res; /* filled for statements that return rows */
} an_repo_step;

/* Reusable array-literal buffers owned by r (freed with it), at least
 * AN_REPO_ARRAYS of them; a call that uses them owns them until it returns. */
#define AN_REPO_ARRAYS 17
an_pgarr *an_repo__arrays(an_repo *r);

/* Connects if needed (an_repo_connect's rules) and prepares each of the n
 * statements not yet prepared on this connection. */
int an_repo__prepare(an_repo *r, const an_repo_stmt *const *s, size_t n);

/* Sends the n steps and one sync in libpq pipeline mode and reads every
 * result: one round trip. The statements must be prepared beforehand
 * (PQprepare cannot run inside a pipeline). On the first failure the server
 * aborts the rest; that failure is what is reported. The caller PQclears
 * the steps' results (rows results only; NULL otherwise). */
int an_repo__pipeline_run(an_repo *r, an_repo_step *steps, int n);

/* The same in two halves, so the caller can compute while the server works:
 * _send copies the steps into r (at most AN_REPO_HELD_MAX; the parameters
 * are not used after it returns) and sends them; on failure the pipeline is
 * gone (nothing to receive). _recv waits for the results, res[i] being step
 * i's rows result or NULL (the caller PQclears them), and leaves pipeline
 * mode. Nothing else may run on r in between. */
#define AN_REPO_HELD_MAX 2
int an_repo__held_send(an_repo *r, const an_repo_step *steps, int n);
int an_repo__held_recv(an_repo *r, PGresult **res);
bool an_repo__held(const an_repo *r);   /* sent, not yet received */

/* Marks r's transaction open or closed (the group read opens one with a
 * pipelined BEGIN; the group write closes it with a pipelined COMMIT). */
void an_repo__set_in_tx(an_repo *r, bool in_tx);
/* ROLLBACK of r's open transaction, keeping the current error. */
void an_repo__rollback_quiet(an_repo *r);
/* ROLLBACK when the server still has a transaction open on the session
 * although r marked it closed (a failed pipelined COMMIT or statement). */
void an_repo__rollback_server(an_repo *r);

/* Fills *out (overwritten, not freed first) from row `row` of a result
 * whose columns are AN_REPO_METRIC_COLS. false when out of memory (then
 * *out is cleared). */
bool an_repo__metric_from_row(const PGresult *res, int row, an_metric *out);
/* A text integer field; null_value for SQL NULL. */
int64_t an_repo__int_field(const PGresult *res, int row, int col, int64_t null_value);

/* ---- errors and plain statements (schema.c, view.c) ---- */

/* One parameterized statement (not prepared); *out is the result on 0
 * (PQclear it). Errors are recorded in r like any repo call. */
int an_repo__exec_params(an_repo *r, const char *what, const char *sql, int nparams,
                         const char *const *params, PGresult **out);

/* A constant script WITHOUT values (DDL), possibly several statements. */
int an_repo__exec_script(an_repo *r, const char *what, const char *sql);

/* Records an error (code + message) in r; returns rc. */
int an_repo__fail(an_repo *r, int rc, const char *msg);
int an_repo__failf(an_repo *r, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records a success (no error) in r; returns 0. */
int an_repo__ok(an_repo *r);

#endif
