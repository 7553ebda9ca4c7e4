/*
 * repo_internal.h: repo.c entry points for other repository files of the
 * library (src/schema.c). Not a public header: callers outside src/ use
 * include/an_repo.h.
 */
#ifndef AN_REPO_INTERNAL_H
#define AN_REPO_INTERNAL_H

#include "an_repo.h"

/* One parameterized statement (not prepared); *out is the result on 0
 * (PQclear it). Errors are recorded in r like any repo call. */
int an_repo__exec_params(an_repo *r, const char *what, const char *sql, int nparams,
                         const char *const *params, PGresult **out);

/* A constant script WITHOUT values (DDL), possibly several statements. */
int an_repo__exec_script(an_repo *r, const char *what, const char *sql);

/* Records an error (code + message) in r; returns rc. */
int an_repo__fail(an_repo *r, int rc, const char *msg);

#endif
