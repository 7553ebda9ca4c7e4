/*
 * an_repo.h: the PostgreSQL repository (docs/htmengine.md §4.1-§4.5) over
 * libpq.
 *
 * One an_repo = one connection (not thread-safe; one per thread). It keeps
 * the DSN, the session settings, the prepared statements (prepared lazily
 * after each (re)connect), the last error text, SQLSTATE and return code.
 * Every statement is parameterized (PQexecPrepared / PQexecParams): no
 * value is ever spliced into SQL text.
 *
 * Return codes (an_error.h), uniform for every function below:
 *   0              ok
 *   AN_ENOTFOUND   the metric (or row set) does not exist / 0 rows matched
 *   AN_ESTATE      wrong state: e.g. commit without begin, metric exists
 *                  already (create), a transaction open where none may be
 *   AN_ETRANSIENT  retryable: SQLSTATE class 08, 40001, 40P01, 55P03,
 *                  57P01/57P02/57P03, or the connection is lost/bad. After
 *                  AN_ETRANSIENT inside a transaction the transaction is
 *                  dead: roll back (an_repo_rollback) and run it again.
 *   AN_EDB         any other PostgreSQL error
 *   AN_EINVAL      bad argument (NULL uid, n == 0 where rows are needed...)
 *   AN_ENOMEM
 * On any non-zero code the message is in an_repo_errstr() and (when the
 * server sent one) the SQLSTATE in an_repo_sqlstate().
 *
 * Connections: functions connect lazily. Outside a transaction, a call on a
 * missing or CONNECTION_BAD connection first reconnects (once); inside a
 * transaction a lost connection is AN_ETRANSIENT (the transaction is gone).
 * Session settings applied on every connect: TimeZone=UTC,
 * statement_timeout, lock_timeout, application_name.
 *
 * Timestamps: metric_data.timestamp is `timestamp` (without time zone,
 * UTC). In C they are double seconds since the epoch, microseconds
 * included (rounded to the microsecond on the way in).
 */
#ifndef AN_REPO_H
#define AN_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "an_clock.h"
#include "an_config.h"
#include "an_error.h"
#include "an_helper.h"
#include "an_likelihood.h"
#include "an_log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* MetricStatus (docs/htmengine.md §4.2): stored values, never change. */
enum {
    AN_METRIC_UNMONITORED = 0,
    AN_METRIC_ACTIVE = 1,
    AN_METRIC_CREATE_PENDING = 2,
    AN_METRIC_ERROR = 4,
    AN_METRIC_PENDING_DATA = 8,
};

/* "UNMONITORED", "ACTIVE", ...; "UNKNOWN" for anything else. Static. */
const char *an_metric_status_name(int status);

/* Log hook for the retry helper. msg is only valid during the call. */
typedef void (*an_repo_log_fn)(void *ud, an_log_level level, const char *msg);

typedef struct an_repo_options {
    const char *dsn;            /* copied; NULL -> "dbname=anomalyd" */
    const char *application_name; /* copied; NULL -> "anomalyd" */
    int connect_timeout_ms;     /* 0 -> libpq default (none) */
    int statement_timeout_ms;   /* 0 -> none */
    int lock_timeout_ms;        /* 0 -> none */
    int retry_budget_ms;        /* an_repo_with_retry: give up once this
                                   much time passed since the 1st attempt */
    int retry_initial_ms;       /* first delay, doubled after each retry */
    int retry_max_delay_ms;     /* delay cap */
    /* TCP liveness, merged into the DSN's keywords unless it sets them
     * (docs/operations.md "Dead peers"); <= 0 leaves libpq's default. */
    int keepalives_idle_s;      /* libpq keepalives_idle (keepalives=1 with any) */
    int keepalives_interval_s;  /* keepalives_interval */
    int keepalives_count;       /* keepalives_count */
    int tcp_user_timeout_ms;    /* tcp_user_timeout */
    int response_timeout_ms;    /* a call that waits longer for an answer has its
                                   socket shut down (a hung peer TCP cannot see);
                                   <= 0: wait forever. Uses SIGALRM/ITIMER_REAL. */
    an_repo_log_fn log;         /* NULL -> an_log() (an_log.h) */
    void *log_ud;
    const an_clock *clock;      /* copied; NULL -> the system clock. Paces
                                   and bounds the retries (tests inject one) */
} an_repo_options;

/* Options from [postgres] (pointers into cfg: cfg must outlive the call to
 * an_repo_new, which copies them). log/log_ud are left NULL. */
an_repo_options an_repo_options_from_config(const an_config *cfg);

typedef struct an_repo an_repo;

/* Returns a new repository (not yet connected), or NULL on ENOMEM. The
 * caller owns it: an_repo_free. */
an_repo *an_repo_new(const an_repo_options *opt);

/* Connects if not connected (no-op when the connection is OK).
 * 0 / AN_ETRANSIENT (server unreachable, starting up, ...) / AN_EDB (the
 * server answers but refuses us: authentication, database or role
 * missing, pg_hba.conf) / AN_ECONFIG (a DSN libpq cannot parse). The
 * class comes from the server's status (PQpingParams), never from the
 * message text. A reconnect made inside a statement call reports a
 * refusal as AN_EENV instead (the server refuses every entry). */
int an_repo_connect(an_repo *r);

/* Drops the connection (rolling back any open transaction server-side by
 * closing it) and connects again. Same codes as an_repo_connect. */
int an_repo_reconnect(an_repo *r);

/* Closes the connection and frees everything. NULL-safe. */
void an_repo_free(an_repo *r);

/* Last error message ("" if none), SQLSTATE ("" if none: e.g. a libpq
 * connection error) and return code (0 after a success). Valid until the
 * next call on r. */
const char *an_repo_errstr(const an_repo *r);
const char *an_repo_sqlstate(const an_repo *r);
/* How to fix the last error when it is an environment fault (an_fault.h):
 * a static sentence, "" when there is no specific advice. */
const char *an_repo_hint(const an_repo *r);
int an_repo_last_rc(const an_repo *r);

/* The connection, for tests and advanced callers (e.g. pipeline mode).
 * May be NULL. Do not PQfinish it. */
PGconn *an_repo_conn(an_repo *r);

/* The server backend pid of the current connection (0 if none). */
int an_repo_backend_pid(an_repo *r);

/* Is this SQLSTATE transient (class 08, 40001, 40P01, 55P03, 57P01-3)?
 * NULL or "" -> false. */
bool an_repo_sqlstate_is_transient(const char *sqlstate);

/* Classifies a failed result (res may be NULL) on conn: AN_ETRANSIENT when
 * the SQLSTATE is transient or PQstatus(conn) == CONNECTION_BAD, else
 * AN_EDB. */
int an_repo_is_transient(PGconn *conn, const PGresult *res);

/* ---- transactions ---- */

/* BEGIN (READ COMMITTED). AN_ESTATE if one is already open. */
int an_repo_begin(an_repo *r);
/* COMMIT. AN_ESTATE if none is open. A COMMIT that fails (e.g. 40001, or
 * the connection dropped: outcome unknown but the batch is idempotent) is
 * reported like any statement; the transaction is closed either way. */
int an_repo_commit(an_repo *r);
/* ROLLBACK; no-op (0) when no transaction is open. Never fails because of
 * a lost connection (the server rolls back on its own): returns 0 then.
 * A successful rollback keeps the last error's message, SQLSTATE and code
 * (it is the cleanup after that error, which the caller reports). */
int an_repo_rollback(an_repo *r);
bool an_repo_in_transaction(const an_repo *r);

/* A whole transaction: does its statements on r and returns 0 or an AN_E*
 * code. It must be re-runnable from scratch (reset whatever it fills in
 * ctx at its start): on AN_ETRANSIENT it is run again. */
typedef int (*an_repo_tx_fn)(an_repo *r, void *ctx);

/* Runs fn inside BEGIN ... COMMIT with the retry policy of
 * docs/htmengine.md §4.5:
 *   attempt = begin + fn + commit;
 *   fn returns non-zero -> rollback; non-transient codes are returned at
 *   once (e.g. AN_ENOTFOUND / AN_ESTATE "reject" decisions of fn);
 *   AN_ETRANSIENT (from begin, fn or commit) -> rollback; if the time since
 *   the first attempt >= retry_budget_ms return AN_ETRANSIENT; else sleep
 *   (retry_initial_ms, doubled after each retry, capped at
 *   retry_max_delay_ms), reconnect if the connection is bad, try again.
 * The first failure is logged at WARNING, later ones at DEBUG, a success
 * after retries at INFO (logger "sql-retry"). Returns fn's final code.
 * AN_ESTATE if called with a transaction already open. */
int an_repo_with_retry(an_repo *r, an_repo_tx_fn fn, void *ctx);

/* Number of attempts the last an_repo_with_retry made (1 = no retry). */
int an_repo_last_attempts(const an_repo *r);

/* ---- metric ---- */

typedef enum {
    AN_LOCK_NONE = 0,   /* plain SELECT */
    AN_LOCK_SHARE = 1,  /* SELECT ... FOR SHARE  (getMetricWithSharedLock) */
    AN_LOCK_UPDATE = 2, /* SELECT ... FOR UPDATE (getMetricWithUpdateLock) */
} an_lock_mode;

/* A metric row. Strings are malloc'd and owned by the struct, NULL for SQL
 * NULL. status is -1 for SQL NULL. */
typedef struct an_metric {
    char *uid;
    char *datasource;
    char *name;
    char *description;
    char *server;
    char *location;
    char *parameters;   /* JSON text or NULL */
    int status;
    char *message;
    char *model_params; /* JSON text or NULL */
    int64_t last_rowid;   /* last allocated metric_data rowid */
    int64_t scored_rowid; /* watermark: last rowid whose scores are stored */
    char *scored_source;  /* input entry id that stored scored_rowid, or NULL */
} an_metric;

/* Frees the strings and zeroes *m. NULL-safe, idempotent. */
void an_metric_clear(an_metric *m);

/* getMetric / getMetricWithSharedLock / getMetricWithUpdateLock. Locks are
 * held until the end of the current transaction (so SHARE/UPDATE are only
 * meaningful inside an_repo_begin ... commit; outside one the lock is
 * released at once, as in the original's autocommit connection). *out is
 * overwritten (not freed first: pass a zeroed or cleared struct).
 * 0 / AN_ENOTFOUND / AN_ETRANSIENT (incl. 55P03 lock timeout) / AN_EDB. */
int an_repo_get_metric(an_repo *r, const char *uid, an_lock_mode lock,
                       an_metric *out);

/* Passed as ref_status when there is no guard. */
#define AN_REPO_ANY_STATUS (-1)

/* setMetricStatus: UPDATE metric SET status=$2, message=$3 WHERE uid=$1
 * [AND status=ref_status]. message NULL -> SQL NULL (clears it).
 * 0 / AN_ENOTFOUND (no row matched: unknown uid or ref_status mismatch) /
 * AN_ETRANSIENT / AN_EDB. */
int an_repo_set_metric_status(an_repo *r, const char *uid, int status,
                              const char *message, int ref_status);

/* ---- metric_data ---- */

/* State of one metric_data row: absent, not scored yet, scored (e.g. a
 * batch's predecessor row, an_group_read.pred in an_repo_group.h). */
enum { AN_ROW_MISSING = 0, AN_ROW_UNPROCESSED = 1, AN_ROW_PROCESSED = 2 };

/* getProcessedMetricDataCount: count of rows with raw_anomaly_score IS NOT
 * NULL; when before_rowid > 0 only rows with rowid < before_rowid count
 * (e.g. the first rowid of the batch being scored). */
int an_repo_processed_count(an_repo *r, const char *uid, int64_t before_rowid,
                            int64_t *count);

/* getMetricDataWithRawAnomalyScoresTail: the newest n processed rows
 * (ORDER BY rowid DESC LIMIT n, same before_rowid filter), written to
 * out[0..*got) in ASCENDING rowid order. out has room for n. */
int an_repo_processed_tail(an_repo *r, const char *uid, int64_t before_rowid,
                           size_t n, an_sample *out, size_t *got);

/* ---- producer side (anomalyctl replay, tests) ---- */

typedef struct an_new_metric {
    const char *uid;          /* required, <= 40 chars */
    const char *name;
    const char *server;
    const char *datasource;
    const char *description;
    const char *location;
    const char *parameters;   /* JSON text or NULL */
    int status;               /* e.g. AN_METRIC_CREATE_PENDING */
    const char *model_params; /* JSON text or NULL */
} an_new_metric;

/* INSERT INTO metric (...). 0 / AN_ESTATE (uid exists: 23505) /
 * AN_EINVAL / AN_ETRANSIENT / AN_EDB. */
int an_repo_create_metric(an_repo *r, const an_new_metric *m);

/* addMetricData: allocates n rowids with
 *   UPDATE metric SET last_rowid=last_rowid+$2 WHERE uid=$1 RETURNING last_rowid
 * and inserts the n rows (timestamps ts[i] epoch seconds, values[i]) with
 * one INSERT ... SELECT FROM unnest(...). Runs in the caller's transaction
 * if one is open, else in its own. *first_rowid (may be NULL) receives the
 * first allocated rowid (the rows get first..first+n-1).
 * 0 / AN_ENOTFOUND (no such metric) / AN_EINVAL (n == 0, non-finite ts) /
 * AN_ETRANSIENT / AN_EDB (e.g. duplicate rowid) / AN_ENOMEM. */
int an_repo_add_rows(an_repo *r, const char *uid, const double *ts,
                     const double *values, size_t n, int64_t *first_rowid);


/* DELETE FROM scored_entry older than older_than_s seconds. */
int an_repo_prune_scored_entries(an_repo *r, double older_than_s, int64_t *deleted);

/* The retry policy of docs/htmengine.md §4.5 for callers that run their own
 * transactions: after attempt number `attempt` (1-based) failed transiently,
 * rolls back, then returns AN_ETRANSIENT once retry_budget_ms has passed since
 * started_ms (an_repo_now_ms(r) at the first attempt), else sleeps the
 * attempt's delay (0.1 s doubling, capped) and returns 0: try again. */
int an_repo_retry_policy(an_repo *r, int attempt, int64_t started_ms);
/* Monotonic ms on r's clock (an_repo_options.clock). */
int64_t an_repo_now_ms(const an_repo *r);

#ifdef __cplusplus
}
#endif
#endif /* AN_REPO_H */
