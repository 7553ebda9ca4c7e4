/*
 * schema.c: the database schema as versioned migrations.
 *
 * SINGLE SOURCE OF TRUTH: the migrations[] table below. They are not kept
 * as .sql files under ops/sql/ because the build (globbing CMake) has no step to
 * embed files, and two copies would drift; `anomalyctl db sql` prints them
 * (ops/sql/README.md says so). Never edit an applied migration: append a new
 * one with the next version.
 *
 * Applying (an_schema_migrate): for each migration in order, ONE
 * transaction: pg_advisory_xact_lock(AN_SCHEMA_LOCK_KEY) (so concurrent
 * `anomalyctl db init` runs serialize), CREATE TABLE IF NOT EXISTS
 * schema_migrations, skip if the version is recorded, else run the DDL and
 * record (version, name, applied_at). PostgreSQL DDL is transactional, so
 * a failed migration leaves nothing behind.
 *
 * Version 1 is htmengine's schema (docs/htmengine.md §4.1, migrations 000-003
 * folded into one) in PostgreSQL types; version 2 adds what the redesign needs.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_schema.h"
#include "repo_internal.h"

typedef struct {
    int version;
    const char *name;
    const char *sql;
} migration;

static const migration migrations[] = {
    {1, "htmengine_schema",
     /* docs/htmengine.md §4.1: metric, metric_data (+ the two tables the
      * anomaly service does not use, for parity). DATETIME -> timestamp (UTC,
      * no zone), DOUBLE -> double precision. */
     "CREATE TABLE metric (\n"
     "    uid              varchar(40)  NOT NULL PRIMARY KEY,\n"
     "    datasource       varchar(100),\n"
     "    name             varchar(255),\n"
     "    description      varchar(200),\n"
     "    server           varchar(100),\n"
     "    location         varchar(200),\n"
     "    parameters       text,\n"
     "    status           integer DEFAULT 0,\n"
     "    message          text,\n"
     "    collector_error  text,\n"
     "    last_timestamp   timestamp,\n"
     "    poll_interval    integer DEFAULT 60,\n"
     "    tag_name         varchar(200),\n"
     "    model_params     text,\n"
     "    last_rowid       integer DEFAULT 0\n"
     ");\n"
     "CREATE INDEX datasource_idx ON metric (datasource);\n"
     "CREATE INDEX server_idx ON metric (server);\n"
     "CREATE INDEX location_idx ON metric (location);\n"
     "CREATE TABLE metric_data (\n"
     "    uid                          varchar(40) NOT NULL DEFAULT ''\n"
     "        CONSTRAINT metric_data_to_metric_fk REFERENCES metric (uid)\n"
     "        ON UPDATE CASCADE ON DELETE CASCADE,\n"
     "    rowid                        integer NOT NULL DEFAULT 0,\n"
     "    timestamp                    timestamp NOT NULL,\n"
     "    metric_value                 double precision NOT NULL,\n"
     "    raw_anomaly_score            double precision,\n"
     "    anomaly_score                double precision,\n"
     "    display_value                integer,\n"
     "    multi_step_best_predictions  text,\n"
     "    PRIMARY KEY (uid, rowid)\n"
     ");\n"
     "CREATE INDEX timestamp_idx ON metric_data (timestamp);\n"
     "CREATE INDEX anomaly_score_idx ON metric_data (anomaly_score);\n"
     "CREATE TABLE instance_status_history (\n"
     "    server     varchar(100) NOT NULL,\n"
     "    timestamp  timestamp NOT NULL,\n"
     "    status     varchar(32),\n"
     "    PRIMARY KEY (server, timestamp)\n"
     ");\n"
     "CREATE TABLE lock (name varchar(40) NOT NULL PRIMARY KEY);\n"
     "INSERT INTO lock (name) VALUES ('metrics');\n"},
    {2, "anomalyd_redesign",
     /* scored_rowid: the per-metric watermark of the last scored rowid
      * (redelivered batches at or below it are not scored twice).
      * metric_data_processed_idx: the helper's processed count and tail
      * (docs/htmengine.md §2.4) read only processed rows, newest first by
      * rowid. */
     "ALTER TABLE metric ADD COLUMN scored_rowid bigint NOT NULL DEFAULT 0;\n"
     "CREATE INDEX metric_data_processed_idx ON metric_data (uid, rowid)\n"
     "    WHERE raw_anomaly_score IS NOT NULL;\n"},
    {3, "scored_source",
     /* scored_source: the input stream entry id whose transaction moved the
      * watermark. A redelivered entry that finds its own id here crashed
      * between commit and publish, so its output was never published and
      * must be; a different id means a duplicate batch (ack only). */
     "ALTER TABLE metric ADD COLUMN scored_source text;\n"},
    {4, "scored_entry",
     /* One row per input entry whose batch a transaction scored, written in
      * that transaction. A redelivered entry found here was committed but
      * never published (its XACK is atomic with the publish), so its output
      * is published now; a duplicate not found here came from the producer
      * and is only acked. The service deletes rows older than 7 days. */
     "CREATE TABLE scored_entry (\n"
     "    entry_id     text PRIMARY KEY,\n"
     "    uid          varchar(40) NOT NULL REFERENCES metric (uid)\n"
     "                     ON UPDATE CASCADE ON DELETE CASCADE,\n"
     "    first_rowid  bigint NOT NULL,\n"
     "    last_rowid   bigint NOT NULL,\n"
     "    scored_at    timestamptz NOT NULL DEFAULT now()\n"
     ");\n"
     "CREATE INDEX scored_entry_scored_at_idx ON scored_entry (scored_at);\n"
     "CREATE INDEX scored_entry_uid_idx ON scored_entry (uid);\n"},
    {5, "scored_entry without foreign key",
     /* Every scored batch inserts a row here, in the group's write; the
      * foreign key's per-row check (a trigger locking the metric row KEY
      * SHARE) and the uid index cost about 10 us per entry, some 5 % of a
      * live group. Nothing needs them: the rows are looked up by entry_id
      * and pruned by age; deleting a metric deletes its rows explicitly. */
     "ALTER TABLE scored_entry DROP CONSTRAINT scored_entry_uid_fkey;\n"
     "DROP INDEX scored_entry_uid_idx;\n"},
    {6, "watermark repair",
     /* Before this version a rejected batch moved the watermark to its last
      * rowid even when that row did not exist (a batch for row 2000000000
      * put scored_rowid there, and every later batch of the metric was
      * acked as already scored). Lower every watermark above the metric's
      * highest processed row to that row (0 when none is): the rows after
      * it are scored by their batches again, or after defer_max_ms by
      * their successors. A watermark a rejection legitimately moved over
      * unprocessed rows (a failed result put the model in ERROR) is
      * lowered too, which changes nothing while the model stays in ERROR.
      * Uses metric_data_processed_idx (one index probe per metric). */
     "UPDATE metric AS m SET scored_rowid = p.top\n"
     "FROM (SELECT uid, COALESCE((SELECT max(d.rowid) FROM metric_data d\n"
     "                            WHERE d.uid = x.uid AND d.raw_anomaly_score IS NOT NULL),\n"
     "                           0) AS top\n"
     "      FROM metric x) AS p\n"
     "WHERE p.uid = m.uid AND m.scored_rowid > p.top;\n"},
};

#define NMIGRATIONS (sizeof migrations / sizeof migrations[0])

int an_schema_latest(void) { return migrations[NMIGRATIONS - 1].version; }

void an_schema_print(FILE *out)
{
    for (size_t i = 0; i < NMIGRATIONS; i++)
        fprintf(out, "-- migration %d: %s\n%s\n", migrations[i].version, migrations[i].name,
                migrations[i].sql);
}

static const char *const bootstrap_sql =
    "CREATE TABLE IF NOT EXISTS schema_migrations (\n"
    "    version     integer PRIMARY KEY,\n"
    "    name        text NOT NULL,\n"
    "    applied_at  timestamptz NOT NULL DEFAULT now()\n"
    ")";

typedef struct {
    const migration *m;
    bool applied;     /* out: this run applied it */
    int db_max;       /* out: highest version recorded before */
} step_ctx;

static int lock_and_bootstrap(an_repo *r)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)AN_SCHEMA_LOCK_KEY);
    const char *p[1] = {key};
    PGresult *res;
    int rc = an_repo__exec_params(r, "schema lock", "SELECT pg_advisory_xact_lock($1::bigint)", 1,
                                  p, &res);
    if (rc)
        return rc;
    PQclear(res);
    return an_repo__exec_script(r, "create schema_migrations", bootstrap_sql);
}

static int step(an_repo *r, void *vctx)
{
    step_ctx *c = vctx;
    c->applied = false;
    c->db_max = 0;
    int rc = lock_and_bootstrap(r);
    if (rc)
        return rc;
    PGresult *res;
    rc = an_repo__exec_params(r, "schema version",
                              "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL,
                              &res);
    if (rc)
        return rc;
    c->db_max = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (c->db_max > an_schema_latest()) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "database schema version %d is newer than this build knows (%d): upgrade "
                 "anomalyd",
                 c->db_max, an_schema_latest());
        return an_repo__fail(r, AN_ESTATE, msg);
    }
    char v[16];
    snprintf(v, sizeof v, "%d", c->m->version);
    const char *p[2] = {v, c->m->name};
    rc = an_repo__exec_params(r, "schema check", "SELECT 1 FROM schema_migrations WHERE version = $1",
                              1, p, &res);
    if (rc)
        return rc;
    bool done = PQntuples(res) > 0;
    PQclear(res);
    if (done)
        return 0;
    char what[96];
    snprintf(what, sizeof what, "migration %d (%s)", c->m->version, c->m->name);
    rc = an_repo__exec_script(r, what, c->m->sql);
    if (rc)
        return rc;
    rc = an_repo__exec_params(r, "schema record",
                              "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                              p, &res);
    if (rc)
        return rc;
    PQclear(res);
    c->applied = true;
    return 0;
}

int an_schema_migrate(an_repo *r, an_schema_applied_fn on_applied, void *ud, int *current)
{
    if (an_repo_in_transaction(r))
        return an_repo__fail(r, AN_ESTATE, "schema migrate: a transaction is open");
    int version = 0;
    for (size_t i = 0; i < NMIGRATIONS; i++) {
        step_ctx c = {&migrations[i], false, 0};
        int rc = an_repo_with_retry(r, step, &c);
        if (rc)
            return rc;
        if (c.applied && on_applied)
            on_applied(ud, c.m->version, c.m->name);
        version = c.m->version > c.db_max ? c.m->version : c.db_max;
    }
    if (current)
        *current = version;
    return 0;
}

int an_schema_version(an_repo *r, int *version)
{
    *version = 0;
    if (an_repo_in_transaction(r))
        return an_repo__fail(r, AN_ESTATE, "schema version: a transaction is open");
    PGresult *res;
    int rc = an_repo__exec_params(r, "schema version",
                                  "SELECT coalesce(max(version), 0) FROM schema_migrations", 0,
                                  NULL, &res);
    if ((rc == AN_EDB || rc == AN_EENV) && !strcmp(an_repo_sqlstate(r), "42P01"))
        return 0;   /* undefined_table: no schema at all */
    if (rc)
        return rc;
    *version = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}
