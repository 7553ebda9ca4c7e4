/*
 * an_schema.h: the database schema as versioned migrations (src/schema.c),
 * applied and inspected over a repository connection (an_repo.h). Return
 * codes and error text as in an_repo.h.
 */
#ifndef AN_SCHEMA_H
#define AN_SCHEMA_H

#include <stdio.h>

#include "an_repo.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Highest migration version compiled in. */
int an_schema_latest(void);

/* Called once per migration applied by an_schema_migrate. */
typedef void (*an_schema_applied_fn)(void *ud, int version, const char *name);

/* Creates or migrates the schema: each pending migration runs in its own
 * transaction holding pg_advisory_xact_lock(AN_SCHEMA_LOCK_KEY), which
 * serializes concurrent runs; versions already in schema_migrations are
 * skipped, so it is idempotent. *current (may be NULL) receives the schema
 * version afterwards. on_applied may be NULL. Must be called outside a
 * transaction (AN_ESTATE otherwise). 0 / AN_ETRANSIENT / AN_EDB /
 * AN_ESTATE (database schema newer than this build). */
int an_schema_migrate(an_repo *r, an_schema_applied_fn on_applied, void *ud,
                      int *current);

/* The schema version the database holds (max of schema_migrations; 0 when
 * that table does not exist) into *version, in one statement outside any
 * transaction. 0 / AN_ETRANSIENT / AN_EDB / AN_ESTATE (a transaction is
 * open). A version below an_schema_latest() means `anomalyctl db init` has
 * not been run for this build. */
int an_schema_version(an_repo *r, int *version);

/* Writes every migration's SQL, in order, with a "-- migration N: name"
 * line before each (`anomalyctl db sql`). */
void an_schema_print(FILE *out);

/* The key of the advisory lock used by an_schema_migrate. */
#define AN_SCHEMA_LOCK_KEY 0x616e6f6d616c79LL /* "anomaly" */

#ifdef __cplusplus
}
#endif
#endif /* AN_SCHEMA_H */
