/*
 * repo.c: the PostgreSQL repository (see include/an_repo.h).
 *
 * Every statement with values is a prepared statement (an_repo_stmt: this
 * file's stmts[], the group's in repo_group.c; no value is ever spliced into
 * SQL text). Constant commands without values (BEGIN, COMMIT, ROLLBACK) go
 * through PQexecParams with no parameters. Arrays are passed as text array
 * literals (repo_array.c).
 */
#include "an_repo.h"
#include "repo_internal.h"

#include "an_util.h"

#include "an_fault.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ statements */

enum {
    S_SESSION,
    S_GET_METRIC,
    S_GET_METRIC_SHARE,
    S_GET_METRIC_UPDATE,
    S_SET_STATUS,
    S_SET_STATUS_REF,
    S_COUNT,
    S_TAIL,
    S_CREATE_METRIC,
    S_ALLOC_ROWIDS,
    S_INSERT_ROWS,
    S_PRUNE_SCORED,
    NSTMT
};

#define METRIC_COLS AN_REPO_METRIC_COLS

static const an_repo_stmt stmts[NSTMT] = {
    [S_SESSION] = {"an_session",
                   "SELECT set_config('TimeZone', 'UTC', false), "
                   "set_config('extra_float_digits', '1', false), "
                   "set_config('statement_timeout', $1, false), "
                   "set_config('lock_timeout', $2, false), "
                   /* The group statements take arrays of any length: a
                    * custom plan per call costs more than it saves. */
                   "set_config('plan_cache_mode', 'force_generic_plan', false)",
                   2},
    [S_GET_METRIC] = {"an_get_metric", "SELECT " METRIC_COLS " FROM metric WHERE uid = $1", 1},
    [S_GET_METRIC_SHARE] = {"an_get_metric_share",
                            "SELECT " METRIC_COLS " FROM metric WHERE uid = $1 FOR SHARE", 1},
    [S_GET_METRIC_UPDATE] = {"an_get_metric_update",
                             "SELECT " METRIC_COLS " FROM metric WHERE uid = $1 FOR UPDATE", 1},
    [S_SET_STATUS] = {"an_set_status", "UPDATE metric SET status = $2, message = $3 WHERE uid = $1",
                      3},
    [S_SET_STATUS_REF] = {"an_set_status_ref",
                          "UPDATE metric SET status = $2, message = $3 "
                          "WHERE uid = $1 AND status = $4",
                          4},
    [S_COUNT] = {"an_count",
                 "SELECT count(*) FROM metric_data "
                 "WHERE uid = $1 AND raw_anomaly_score IS NOT NULL AND rowid < $2::bigint",
                 2},
    [S_TAIL] = {"an_tail",
                "SELECT rowid, metric_value, raw_anomaly_score FROM metric_data "
                "WHERE uid = $1 AND raw_anomaly_score IS NOT NULL AND rowid < $2::bigint "
                "ORDER BY rowid DESC LIMIT $3",
                3},
    [S_CREATE_METRIC] = {"an_create_metric",
                         "INSERT INTO metric (uid, name, server, datasource, description, "
                         "location, parameters, status, model_params) "
                         "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                         9},
    [S_ALLOC_ROWIDS] = {"an_alloc_rowids",
                        "UPDATE metric SET last_rowid = last_rowid + $2, "
                        "last_timestamp = greatest(last_timestamp, $3::timestamp) "
                        "WHERE uid = $1 RETURNING last_rowid",
                        3},
    [S_INSERT_ROWS] = {"an_insert_rows",
                       "INSERT INTO metric_data (uid, rowid, timestamp, metric_value) "
                       "SELECT $1, $2::int + (u.ord - 1)::int, u.ts, u.val "
                       "FROM unnest($3::timestamp[], $4::float8[]) WITH ORDINALITY "
                       "AS u(ts, val, ord)",
                       4},
    [S_PRUNE_SCORED] = {"an_prune_scored",
                        "DELETE FROM scored_entry "
                        "WHERE scored_at < now() - make_interval(secs => $1::float8)",
                        1},
};

/* ------------------------------------------------------------------ repo */

struct an_repo {
    PGconn *conn;
    char *dsn;
    char *appname;
    /* the caller's options, copied; dsn and application_name point to the
     * copies above, clock is NULL (the clock below) */
    an_repo_options opt;
    an_clock clock; /* zeroed: the system clock (an_clock.h) */
    bool in_tx;
    const an_repo_stmt **prepared; /* on this connection */
    size_t nprepared, prepared_cap;
    char errstr[1024];
    char sqlstate[6];
    int last_rc;
    int last_attempts;
    an_pgarr arr[AN_REPO_ARRAYS]; /* reusable array-literal buffers */
    an_repo_step held[AN_REPO_HELD_MAX]; /* a pipeline sent, not yet received */
    int nheld;
};

static void repo_log(an_repo *r, an_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void repo_log(an_repo *r, an_log_level level, const char *fmt, ...)
{
    char msg[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->opt.log)
        r->opt.log(r->opt.log_ud, level, msg);
    else
        an_log(level, "%s", msg);
}

/* Records an error without SQLSTATE; returns rc. */
static int vfail(an_repo *r, int rc, const char *fmt, va_list ap)
{
    vsnprintf(r->errstr, sizeof r->errstr, fmt, ap);
    r->sqlstate[0] = 0;
    r->last_rc = rc;
    return rc;
}

static int fail(an_repo *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(an_repo *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(r, rc, fmt, ap);
    va_end(ap);
    return rc;
}

static int ok(an_repo *r)
{
    r->errstr[0] = 0;
    r->sqlstate[0] = 0;
    r->last_rc = 0;
    return 0;
}

/* Copies libpq's message without the trailing newline(s). */
static void trim_copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
    size_t n = strlen(dst);
    while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
        dst[--n] = 0;
}

const char *an_metric_status_name(int status)
{
    switch (status) {
    case AN_METRIC_UNMONITORED: return "UNMONITORED";
    case AN_METRIC_ACTIVE: return "ACTIVE";
    case AN_METRIC_CREATE_PENDING: return "CREATE_PENDING";
    case AN_METRIC_ERROR: return "ERROR";
    case AN_METRIC_PENDING_DATA: return "PENDING_DATA";
    default: return "UNKNOWN";
    }
}

bool an_repo_sqlstate_is_transient(const char *s)
{
    return s && strlen(s) == 5 && an_fault_pg(s, false) == AN_FAULT_TRANSIENT;
}

int an_repo_is_transient(PGconn *conn, const PGresult *res)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    switch (an_fault_pg(st, !conn || PQstatus(conn) == CONNECTION_BAD)) {
    case AN_FAULT_TRANSIENT: return AN_ETRANSIENT;
    case AN_FAULT_ENVIRONMENT: return AN_EENV;
    default: return AN_EDB;
    }
}

an_repo_options an_repo_options_from_config(const an_config *cfg)
{
    an_repo_options o;
    memset(&o, 0, sizeof o);
    o.dsn = cfg->postgres.dsn;
    o.keepalives_idle_s = cfg->postgres.keepalives_idle_s;
    o.keepalives_interval_s = cfg->postgres.keepalives_interval_s;
    o.keepalives_count = cfg->postgres.keepalives_count;
    o.tcp_user_timeout_ms = cfg->postgres.tcp_user_timeout_ms;
    o.response_timeout_ms = cfg->postgres.response_timeout_ms;
    o.application_name = "anomalyd";
    o.connect_timeout_ms = cfg->postgres.connect_timeout_ms;
    o.statement_timeout_ms = cfg->postgres.statement_timeout_ms;
    o.lock_timeout_ms = cfg->postgres.lock_timeout_ms;
    o.retry_budget_ms = cfg->postgres.retry_budget_ms;
    o.retry_initial_ms = cfg->postgres.retry_initial_ms;
    o.retry_max_delay_ms = cfg->postgres.retry_max_delay_ms;
    return o;
}

an_repo *an_repo_new(const an_repo_options *opt)
{
    an_repo *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->dsn = strdup(opt && opt->dsn ? opt->dsn : "dbname=anomalyd");
    r->appname = strdup(opt && opt->application_name ? opt->application_name : "anomalyd");
    if (!r->dsn || !r->appname) {
        an_repo_free(r);
        return NULL;
    }
    if (opt) {
        r->opt = *opt;
        if (opt->clock)
            r->clock = *opt->clock;
    } else {
        r->opt.retry_budget_ms = 10000;
        r->opt.retry_initial_ms = 100;
        r->opt.retry_max_delay_ms = 10000;
    }
    r->opt.dsn = r->dsn;
    r->opt.application_name = r->appname;
    r->opt.clock = NULL;
    if (r->opt.retry_initial_ms <= 0)
        r->opt.retry_initial_ms = 1;
    if (r->opt.retry_max_delay_ms < r->opt.retry_initial_ms)
        r->opt.retry_max_delay_ms = r->opt.retry_initial_ms;
    return r;
}

static void drop_conn(an_repo *r)
{
    if (r->conn)
        PQfinish(r->conn);
    r->conn = NULL;
    r->in_tx = false;
    r->nprepared = 0;
}

void an_repo_free(an_repo *r)
{
    if (!r)
        return;
    drop_conn(r);
    free(r->dsn);
    free(r->appname);
    for (size_t i = 0; i < AN_REPO_ARRAYS; i++)
        an_pgarr_free(&r->arr[i]);
    free(r->prepared);
    free(r);
}

const char *an_repo_errstr(const an_repo *r) { return r->errstr; }
const char *an_repo_sqlstate(const an_repo *r) { return r->sqlstate; }
const char *an_repo_hint(const an_repo *r) { return an_fault_pg_hint(r->sqlstate); }
int an_repo_last_rc(const an_repo *r) { return r->last_rc; }
PGconn *an_repo_conn(an_repo *r) { return r->conn; }
bool an_repo_in_transaction(const an_repo *r) { return r->in_tx; }
int an_repo_last_attempts(const an_repo *r) { return r->last_attempts; }

int an_repo_backend_pid(an_repo *r)
{
    return r->conn && PQstatus(r->conn) == CONNECTION_OK ? PQbackendPID(r->conn) : 0;
}

/* ------------------------------------------------------ response watchdog */

/* A server that stops answering while its kernel still acknowledges (a
 * hung proxy, a stopped process, some partitions) is invisible to TCP
 * keepalives and tcp_user_timeout, and libpq would wait in poll() forever.
 * Around every call that waits for an answer, an ITIMER_REAL alarm shuts
 * the socket down after response_timeout_ms: libpq then sees the
 * connection closed (transient: reconnect and retry). One repository
 * waits at a time per process (libpq calls block), so one slot is enough;
 * the handler only calls shutdown(2), which is async-signal-safe. */
static volatile sig_atomic_t wd_fd = -1;
static volatile sig_atomic_t wd_fired;

static void wd_alarm(int sig)
{
    (void)sig;
    int fd = wd_fd;
    if (fd >= 0) {
        wd_fired = 1;
        shutdown(fd, SHUT_RDWR);
    }
}

static void wd_arm(an_repo *r)
{
    static bool installed;
    if (r->opt.response_timeout_ms <= 0 || !r->conn || PQsocket(r->conn) < 0)
        return;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = wd_alarm;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);
        installed = true;
    }
    wd_fired = 0;
    wd_fd = PQsocket(r->conn);
    int ms = r->opt.response_timeout_ms;
    struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void wd_disarm(an_repo *r)
{
    if (wd_fd < 0)
        return;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    wd_fd = -1;
    if (wd_fired) {
        wd_fired = 0;
        repo_log(r, AN_LOG_WARNING,
                 "PostgreSQL did not answer within %d ms ([postgres] response_timeout_ms): "
                 "connection closed",
                 r->opt.response_timeout_ms);
    }
}

/* Records the error of a failed result; returns its class. */
static int result_error(an_repo *r, const char *what, PGresult *res)
{
    int rc = an_repo_is_transient(r->conn, res);
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    char msg[800];
    if (primary)
        trim_copy(msg, sizeof msg, primary);
    else
        trim_copy(msg, sizeof msg, r->conn ? PQerrorMessage(r->conn) : "no connection");
    if (!msg[0])
        snprintf(msg, sizeof msg, "unknown error");
    if (PQstatus(r->conn) == CONNECTION_BAD && !strstr(msg, "connection"))
        strncat(msg, " (connection lost)", sizeof msg - strlen(msg) - 1);
    if (st && *st)
        snprintf(r->errstr, sizeof r->errstr, "%s: %s%s%s (SQLSTATE %s)", what, msg,
                 detail ? ": " : "", detail ? detail : "", st);
    else
        snprintf(r->errstr, sizeof r->errstr, "%s: %s", what, msg);
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", st ? st : "");
    r->last_rc = rc;
    return rc;
}

/* Keeps a result whose status is one the call expects (TUPLES_OK or
 * COMMAND_OK; COMMAND_OK only with command_only): 0 and *out = res.
 * Otherwise records its error under `what`, clears it, sets *out = NULL
 * and returns the error's class. */
static int keep_result(an_repo *r, const char *what, PGresult *res, bool command_only,
                       PGresult **out)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || (!command_only && st == PGRES_TUPLES_OK)) {
        *out = res;
        return 0;
    }
    *out = NULL;
    int rc = result_error(r, what, res);
    PQclear(res);
    return rc;
}

/* PQexecParams (text results) under the response watchdog. */
static PGresult *exec_text(an_repo *r, const char *sql, int n, const char *const *params)
{
    wd_arm(r);
    PGresult *res = PQexecParams(r->conn, sql, n, NULL, params, NULL, NULL, 0);
    wd_disarm(r);
    return res;
}

/* Classifies a failed connection attempt by the server's status, not by
 * libpq's (translatable) message: PQpingParams with the same parameters
 * tells "nobody answers" and "starting up / shutting down" (transient)
 * from "the server accepts connections, but not ours" (authentication,
 * a missing database or role, pg_hba.conf: AN_EDB, which the service
 * treats as configuration at start-up and environment later). */
static int classify_connect_failure(const char *const *kw, const char *const *val)
{
    switch (PQpingParams(kw, val, 0)) {
    case PQPING_OK: return AN_EDB;
    case PQPING_NO_ATTEMPT: return AN_ECONFIG;
    default: return AN_ETRANSIENT;   /* PQPING_REJECT, PQPING_NO_RESPONSE */
    }
}

/* Server NOTICEs (e.g. "relation already exists, skipping") go to the log
 * at DEBUG instead of libpq's default stderr printing. */
static void notice_processor(void *arg, const char *message)
{
    an_repo *r = arg;
    char msg[600];
    trim_copy(msg, sizeof msg, message);
    repo_log(r, AN_LOG_DEBUG, "postgres: %s", msg);
}

/* The connection parameters: every keyword the DSN sets (parsed once,
 * by libpq's PQconninfoParse), then ours for the keywords it does not set
 * (connect_timeout, keepalives, tcp_user_timeout,
 * fallback_application_name): the user's DSN wins. *opts owns the
 * strings kw/val point into (PQconninfoFree it); num holds our numbers.
 * 0, AN_ECONFIG (a DSN libpq cannot parse: its message is not quoted, as
 * it may echo the DSN's tokens, passwords included) or AN_ENOMEM. */
#define CONN_MAX_PARAMS 64
static int conn_params(an_repo *r, PQconninfoOption **opts, const char **kw, const char **val,
                       char num[5][16])
{
    char *perr = NULL;
    *opts = PQconninfoParse(r->dsn, &perr);
    if (!*opts) {
        int rc = perr ? AN_ECONFIG : AN_ENOMEM;
        PQfreemem(perr);
        return rc == AN_ENOMEM ? fail(r, rc, "out of memory parsing the PostgreSQL DSN")
                               : fail(r, rc, "the PostgreSQL DSN ([postgres] dsn) does not "
                                             "parse (libpq conninfo or URI); not quoted: it "
                                             "may hold a password");
    }
    int n = 0;
    for (PQconninfoOption *o = *opts; o->keyword && n < CONN_MAX_PARAMS - 8; o++)
        if (o->val) {
            kw[n] = o->keyword;
            val[n++] = o->val;
        }
    int cto = 0;
    if (r->opt.connect_timeout_ms > 0) {
        cto = (r->opt.connect_timeout_ms + 999) / 1000;
        cto = cto < 2 ? 2 : cto;
    }
    struct {
        const char *kw;
        int v;
    } ours[] = {{"connect_timeout", cto},
                {"keepalives_idle", r->opt.keepalives_idle_s},
                {"keepalives_interval", r->opt.keepalives_interval_s},
                {"keepalives_count", r->opt.keepalives_count},
                {"tcp_user_timeout", r->opt.tcp_user_timeout_ms}};
    bool any_keepalive = false;
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
        bool set = false;
        for (int j = 0; j < n; j++)
            set = set || !strcmp(kw[j], ours[i].kw);
        if (set || ours[i].v <= 0)
            continue;
        any_keepalive = any_keepalive || i > 0;
        snprintf(num[i], sizeof num[i], "%d", ours[i].v);
        kw[n] = ours[i].kw;
        val[n++] = num[i];
    }
    bool ka_set = false;
    for (int j = 0; j < n; j++)
        ka_set = ka_set || !strcmp(kw[j], "keepalives");
    if (any_keepalive && !ka_set) {
        kw[n] = "keepalives";
        val[n++] = "1";
    }
    kw[n] = "fallback_application_name";
    val[n++] = r->appname;
    kw[n] = NULL;
    val[n] = NULL;
    return 0;
}

static int do_connect(an_repo *r)
{
    drop_conn(r);
    PQconninfoOption *opts = NULL;
    const char *kw[CONN_MAX_PARAMS], *val[CONN_MAX_PARAMS];
    char num[5][16];
    int rc = conn_params(r, &opts, kw, val, num);
    if (rc)
        return rc;
    /* A failed connect is classified by a ping afterwards. The ping's "the
     * server accepts connections" proves only that it does now: the connect
     * may have met it while it was still starting up (a restart), so in that
     * case the connect is tried once more, and only a second refusal by a
     * server that accepts connections counts as its refusal of us
     * (AN_EDB: authentication, a missing database...). */
    for (int tries = 0;; tries++) {
        r->conn = PQconnectdbParams(kw, val, 0);
        if (!r->conn) {
            PQconninfoFree(opts);
            return fail(r, AN_ENOMEM, "PQconnectdbParams: out of memory");
        }
        if (PQstatus(r->conn) == CONNECTION_OK)
            break;
        char msg[800];
        trim_copy(msg, sizeof msg, PQerrorMessage(r->conn));
        drop_conn(r);
        rc = classify_connect_failure(kw, val);
        if (rc == AN_EDB && tries == 0)
            continue;
        PQconninfoFree(opts);
        return fail(r, rc, "cannot connect to PostgreSQL: %s", msg);
    }
    PQconninfoFree(opts);
    PQsetNoticeProcessor(r->conn, notice_processor, r);
    if (PQsetClientEncoding(r->conn, "UTF8") != 0) {
        int rc = fail(r, AN_EDB, "cannot set client_encoding UTF8: %s", PQerrorMessage(r->conn));
        drop_conn(r);
        return rc;
    }
    char st[24], lt[24];
    int stmt_ms = r->opt.statement_timeout_ms, lock_ms = r->opt.lock_timeout_ms;
    snprintf(st, sizeof st, "%d", stmt_ms > 0 ? stmt_ms : 0);
    snprintf(lt, sizeof lt, "%d", lock_ms > 0 ? lock_ms : 0);
    const char *params[2] = {st, lt};
    PGresult *res;
    rc = keep_result(r, "session settings", exec_text(r, stmts[S_SESSION].sql, 2, params), false,
                     &res);
    if (rc) {
        drop_conn(r);
        return rc;
    }
    PQclear(res);
    return ok(r);
}

int an_repo_connect(an_repo *r)
{
    if (r->conn && PQstatus(r->conn) == CONNECTION_OK)
        return ok(r);
    return do_connect(r);
}

int an_repo_reconnect(an_repo *r) { return do_connect(r); }

/* Makes sure there is a usable connection for the next statement. */
static int ensure_conn(an_repo *r)
{
    if (r->conn && PQstatus(r->conn) == CONNECTION_OK)
        return 0;
    if (r->in_tx)
        return fail(r, AN_ETRANSIENT,
                    "connection to PostgreSQL lost during the transaction (roll back and retry)");
    /* A reconnect while working: a server that refuses us now (a password
     * changed, the database dropped) refuses every entry: environment. */
    int rc = do_connect(r);
    if (rc == AN_EDB)
        rc = r->last_rc = AN_EENV;
    return rc;
}

/* Prepares s on this connection unless it already is (the connection's
 * list is emptied by drop_conn: a new session has no statements). */
static int ensure_prepared(an_repo *r, const an_repo_stmt *s)
{
    for (size_t i = 0; i < r->nprepared; i++)
        if (r->prepared[i] == s)
            return 0;
    if (!an_grow((void **)&r->prepared, &r->prepared_cap, r->nprepared + 1,
                 sizeof *r->prepared))
        return fail(r, AN_ENOMEM, "prepare %s: out of memory", s->name);
    char what[96];
    snprintf(what, sizeof what, "prepare %s", s->name);
    wd_arm(r);
    PGresult *res = PQprepare(r->conn, s->name, s->sql, s->nparams, NULL);
    wd_disarm(r);
    int rc = keep_result(r, what, res, true, &res);
    if (rc)
        return rc;
    PQclear(res);
    r->prepared[r->nprepared++] = s;
    return 0;
}

/* Executes prepared statement s; on success *out holds the result (caller
 * PQclears it). */
/* Runs prepared statement s; its rows in text format, or in binary with
 * binary_result (for the numeric columns read in bulk: no strtod). */
static int exec_stmt_fmt(an_repo *r, int s, const char *const *params, bool binary_result,
                         PGresult **out)
{
    *out = NULL;
    int rc = ensure_conn(r);
    if (!rc)
        rc = ensure_prepared(r, &stmts[s]);
    if (rc)
        return rc;
    wd_arm(r);
    PGresult *res = PQexecPrepared(r->conn, stmts[s].name, stmts[s].nparams, params, NULL, NULL,
                                   binary_result ? 1 : 0);
    wd_disarm(r);
    rc = keep_result(r, stmts[s].name + 3, res, false, out);
    return rc ? rc : ok(r);
}

static int exec_stmt(an_repo *r, int s, const char *const *params, PGresult **out)
{
    return exec_stmt_fmt(r, s, params, false, out);
}

/* A constant command without values (BEGIN / COMMIT / ROLLBACK). */
static int exec_cmd(an_repo *r, const char *sql, PGresult **out)
{
    *out = NULL;
    int rc = ensure_conn(r);
    if (rc)
        return rc;
    return keep_result(r, sql, exec_text(r, sql, 0, NULL), true, out);
}

/* ----------------------------------------------------------- transactions */

int an_repo_begin(an_repo *r)
{
    if (r->in_tx)
        return fail(r, AN_ESTATE, "begin: a transaction is already open");
    PGresult *res;
    int rc = exec_cmd(r, "BEGIN", &res);
    if (rc)
        return rc;
    PQclear(res);
    r->in_tx = true;
    return ok(r);
}

int an_repo_commit(an_repo *r)
{
    if (!r->in_tx)
        return fail(r, AN_ESTATE, "commit: no transaction is open");
    if (r->conn && PQstatus(r->conn) == CONNECTION_OK &&
        PQtransactionStatus(r->conn) == PQTRANS_INERROR) {
        an_repo_rollback(r);
        return fail(r, AN_ESTATE,
                    "commit: the transaction had failed (an error was ignored); rolled back");
    }
    PGresult *res;
    int rc = exec_cmd(r, "COMMIT", &res);
    r->in_tx = false;
    if (rc)
        return rc;
    /* COMMIT of an aborted transaction answers ROLLBACK without an error. */
    bool rolled_back = !strcmp(PQcmdStatus(res), "ROLLBACK");
    PQclear(res);
    if (rolled_back)
        return fail(r, AN_ESTATE, "commit: the server rolled the transaction back");
    return ok(r);
}

/* Sends ROLLBACK on the connection (no state change in r); its result. */
static PGresult *send_rollback(an_repo *r) { return exec_text(r, "ROLLBACK", 0, NULL); }

/* ROLLBACK that keeps the current error text/code (used after failures). */
static void rollback_quiet(an_repo *r)
{
    if (!r->in_tx)
        return;
    r->in_tx = false;
    if (!r->conn || PQstatus(r->conn) != CONNECTION_OK)
        return;
    PQclear(send_rollback(r));
}

int an_repo_rollback(an_repo *r)
{
    /* A rollback is the cleanup after a failure: it keeps that failure's
     * message and code for the caller to report. */
    if (!r->in_tx)
        return 0;
    r->in_tx = false;
    if (!r->conn || PQstatus(r->conn) != CONNECTION_OK)
        return 0; /* the server rolls back on its own */
    PGresult *res = send_rollback(r);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (st != PGRES_COMMAND_OK) {
        if (PQstatus(r->conn) == CONNECTION_BAD)
            rc = 0;
        else
            rc = result_error(r, "ROLLBACK", res);
    }
    PQclear(res);
    return rc;
}

int an_repo_with_retry(an_repo *r, an_repo_tx_fn fn, void *ctx)
{
    if (r->in_tx)
        return fail(r, AN_ESTATE, "with_retry: a transaction is already open");
    int64_t t0 = an_repo_now_ms(r);
    for (int attempt = 1;; attempt++) {
        r->last_attempts = attempt;
        int rc = an_repo_connect(r);
        if (!rc)
            rc = an_repo_begin(r);
        if (!rc) {
            rc = fn(r, ctx);
            if (rc) {
                /* keep fn's code and message; make sure the repo reports it */
                r->last_rc = rc;
                rollback_quiet(r);
            } else {
                rc = an_repo_commit(r);
            }
        }
        if (rc != AN_ETRANSIENT) {
            if (rc == 0 && attempt > 1)
                repo_log(r, AN_LOG_INFO, "sql-retry: succeeded after %d attempts (%" PRId64 " ms)",
                         attempt, an_repo_now_ms(r) - t0);
            return rc;
        }
        /* rolls back, gives up past the budget, else sleeps; a bad connection
         * is replaced by an_repo_connect at the loop top */
        if (an_repo_retry_policy(r, attempt, t0)) {
            r->last_rc = AN_ETRANSIENT;
            return AN_ETRANSIENT;
        }
    }
}

/* ------------------------------------------------------------------ metric */

static char *dup_field(const PGresult *res, int row, int col, bool *oom)
{
    if (PQgetisnull(res, row, col))
        return NULL;
    char *s = strdup(PQgetvalue(res, row, col));
    if (!s)
        *oom = true;
    return s;
}

int64_t an_repo__int_field(const PGresult *res, int row, int col, int64_t null_value)
{
    if (PQgetisnull(res, row, col))
        return null_value;
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* A field of a binary-format result: a big-endian integer of 2, 4 or 8
 * bytes (int2/int4/int8), 0 when NULL. */
static int64_t bin_int(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    const unsigned char *p = (const unsigned char *)PQgetvalue(res, row, col);
    int len = PQgetlength(res, row, col);
    assert(len == 2 || len == 4 || len == 8);
    uint64_t u = 0;
    for (int i = 0; i < len; i++)
        u = (u << 8) | p[i];
    if (len < 8 && (p[0] & 0x80))
        u |= ~(uint64_t)0 << (8 * len);   /* sign-extend */
    return (int64_t)u;
}

/* A float8 field of a binary-format result (IEEE 754, big-endian); 0.0
 * when NULL. */
static double bin_double(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0.0;
    const unsigned char *p = (const unsigned char *)PQgetvalue(res, row, col);
    assert(PQgetlength(res, row, col) == 8);
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = (u << 8) | p[i];
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

void an_metric_clear(an_metric *m)
{
    if (!m)
        return;
    free(m->uid);
    free(m->datasource);
    free(m->name);
    free(m->description);
    free(m->server);
    free(m->location);
    free(m->parameters);
    free(m->message);
    free(m->model_params);
    free(m->scored_source);
    memset(m, 0, sizeof *m);
}

bool an_repo__metric_from_row(const PGresult *res, int row, an_metric *out)
{
    bool oom = false;
    out->uid = dup_field(res, row, 0, &oom);
    out->datasource = dup_field(res, row, 1, &oom);
    out->name = dup_field(res, row, 2, &oom);
    out->description = dup_field(res, row, 3, &oom);
    out->server = dup_field(res, row, 4, &oom);
    out->location = dup_field(res, row, 5, &oom);
    out->parameters = dup_field(res, row, 6, &oom);
    out->status = (int)an_repo__int_field(res, row, 7, -1);
    out->message = dup_field(res, row, 8, &oom);
    out->model_params = dup_field(res, row, 9, &oom);
    out->last_rowid = an_repo__int_field(res, row, 10, 0);
    out->scored_rowid = an_repo__int_field(res, row, 11, 0);
    out->scored_source = dup_field(res, row, 12, &oom);
    if (oom)
        an_metric_clear(out);
    return !oom;
}

static int check_uid(an_repo *r, const char *uid)
{
    if (!uid)
        return fail(r, AN_EINVAL, "uid is NULL");
    return 0;
}

int an_repo_get_metric(an_repo *r, const char *uid, an_lock_mode lock, an_metric *out)
{
    memset(out, 0, sizeof *out);
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    int s = lock == AN_LOCK_UPDATE ? S_GET_METRIC_UPDATE
            : lock == AN_LOCK_SHARE ? S_GET_METRIC_SHARE
                                    : S_GET_METRIC;
    const char *p[1] = {uid};
    PGresult *res;
    rc = exec_stmt(r, s, p, &res);
    if (rc)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return fail(r, AN_ENOTFOUND, "Metric not found for uid=%s", uid);
    }
    bool filled = an_repo__metric_from_row(res, 0, out);
    PQclear(res);
    return filled ? 0 : fail(r, AN_ENOMEM, "get_metric: out of memory");
}

/* Runs an UPDATE/DELETE; AN_ENOTFOUND when it matched no row. */
static int exec_update(an_repo *r, int s, const char *const *p, const char *uid, int64_t *count)
{
    PGresult *res;
    int rc = exec_stmt(r, s, p, &res);
    if (rc)
        return rc;
    int64_t n = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    if (count)
        *count = n;
    if (n == 0)
        return fail(r, AN_ENOTFOUND, "%s: no metric row matched uid=%s", stmts[s].name + 3, uid);
    return 0;
}

int an_repo_set_metric_status(an_repo *r, const char *uid, int status, const char *message,
                              int ref_status)
{
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    char st[16], ref[16];
    snprintf(st, sizeof st, "%d", status);
    snprintf(ref, sizeof ref, "%d", ref_status);
    const char *p[4] = {uid, st, message, ref};
    rc = exec_update(r, ref_status == AN_REPO_ANY_STATUS ? S_SET_STATUS : S_SET_STATUS_REF, p, uid,
                     NULL);
    if (rc == AN_ENOTFOUND && ref_status != AN_REPO_ANY_STATUS)
        fail(r, AN_ENOTFOUND, "set_status: no metric uid=%s with status %d", uid, ref_status);
    return rc;
}

/* ------------------------------------------------------------- metric_data */

static void before_param(int64_t before_rowid, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRId64, before_rowid > 0 ? before_rowid : INT64_MAX);
}

int an_repo_processed_count(an_repo *r, const char *uid, int64_t before_rowid, int64_t *count)
{
    *count = 0;
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    char b[24];
    before_param(before_rowid, b, sizeof b);
    const char *p[2] = {uid, b};
    PGresult *res;
    rc = exec_stmt(r, S_COUNT, p, &res);
    if (rc)
        return rc;
    *count = an_repo__int_field(res, 0, 0, 0);
    PQclear(res);
    return 0;
}

int an_repo_processed_tail(an_repo *r, const char *uid, int64_t before_rowid, size_t n,
                           an_sample *out, size_t *got)
{
    *got = 0;
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    if (n == 0)
        return 0;
    char b[24], lim[24];
    before_param(before_rowid, b, sizeof b);
    snprintf(lim, sizeof lim, "%zu", n);
    const char *p[3] = {uid, b, lim};
    PGresult *res;
    /* Binary rows: a re-estimate reads up to statistics_sample_size (8640)
     * rows, and parsing their text was most of its CPU. */
    rc = exec_stmt_fmt(r, S_TAIL, p, true, &res);
    if (rc)
        return rc;
    size_t m = (size_t)PQntuples(res);
    if (m > n)
        m = n;
    for (size_t i = 0; i < m; i++) {
        int row = (int)(m - 1 - i); /* DESC -> ascending */
        out[i].rowid = bin_int(res, row, 0);
        out[i].value = bin_double(res, row, 1);
        out[i].raw = bin_double(res, row, 2);
    }
    *got = m;
    PQclear(res);
    return 0;
}

/* ------------------------------------------------------------ producer side */

int an_repo_create_metric(an_repo *r, const an_new_metric *m)
{
    if (!m || !m->uid || !m->uid[0])
        return fail(r, AN_EINVAL, "create_metric: uid is required");
    if (strlen(m->uid) > 40)
        return fail(r, AN_EINVAL, "create_metric: uid longer than 40 characters");
    char st[16];
    snprintf(st, sizeof st, "%d", m->status);
    const char *p[9] = {m->uid,      m->name,     m->server,     m->datasource, m->description,
                        m->location, m->parameters, st,          m->model_params};
    PGresult *res;
    int rc = exec_stmt(r, S_CREATE_METRIC, p, &res);
    if (rc) {
        if (!strcmp(r->sqlstate, "23505")) {
            char msg[sizeof r->errstr];
            snprintf(msg, sizeof msg, "%s", r->errstr);
            fail(r, AN_ESTATE, "create_metric: metric uid=%s already exists (%s)", m->uid, msg);
            snprintf(r->sqlstate, sizeof r->sqlstate, "23505");
            return AN_ESTATE;
        }
        return rc;
    }
    PQclear(res);
    return 0;
}

/* Runs body in the caller's transaction, or in its own one. */
static int in_some_tx(an_repo *r, int (*body)(an_repo *, void *), void *ctx)
{
    if (r->in_tx)
        return body(r, ctx);
    int rc = an_repo_begin(r);
    if (rc)
        return rc;
    rc = body(r, ctx);
    if (rc) {
        rollback_quiet(r);
        return rc;
    }
    return an_repo_commit(r);
}

/* "YYYY-MM-DD HH:MM:SS.uuuuuu" (UTC) from epoch seconds. */
static bool format_ts(double t, char *buf, size_t len)
{
    if (!isfinite(t))
        return false;
    double sec = floor(t);
    long long usec = llround((t - sec) * 1e6);
    long long s = (long long)sec;
    if (usec >= 1000000) {
        s++;
        usec -= 1000000;
    }
    time_t tt = (time_t)s;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return false;
    snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d.%06lld", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
    return true;
}

typedef struct {
    const char *uid;
    const double *ts;
    const double *values;
    size_t n;
    int64_t first;
} add_rows_ctx;

static int add_rows_body(an_repo *r, void *vctx)
{
    add_rows_ctx *c = vctx;
    an_pgarr *ts = &r->arr[0], *vals = &r->arr[1];
    bool okb = an_pgarr_open(ts) && an_pgarr_open(vals);
    char buf[64], last_ts[64] = "";
    for (size_t i = 0; okb && i < c->n; i++) {
        if (!format_ts(c->ts[i], buf, sizeof buf))
            return fail(r, AN_EINVAL, "add_rows: timestamp %zu is not a finite epoch", i);
        okb = an_pgarr_text(ts, buf) && an_pgarr_double(vals, c->values[i]);
        if (strcmp(buf, last_ts) > 0)
            snprintf(last_ts, sizeof last_ts, "%s", buf);
    }
    okb = okb && an_pgarr_close(ts) && an_pgarr_close(vals);
    if (!okb)
        return fail(r, AN_ENOMEM, "add_rows: out of memory");

    char n[24];
    snprintf(n, sizeof n, "%zu", c->n);
    const char *p1[3] = {c->uid, n, last_ts};
    PGresult *res;
    int rc = exec_stmt(r, S_ALLOC_ROWIDS, p1, &res);
    if (rc)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return fail(r, AN_ENOTFOUND, "Metric not found for uid=%s", c->uid);
    }
    int64_t last = an_repo__int_field(res, 0, 0, 0);
    PQclear(res);
    c->first = last - (int64_t)c->n + 1;
    char first[24];
    snprintf(first, sizeof first, "%" PRId64, c->first);
    const char *p2[4] = {c->uid, first, ts->p, vals->p};
    rc = exec_stmt(r, S_INSERT_ROWS, p2, &res);
    if (rc)
        return rc;
    PQclear(res);
    return 0;
}

int an_repo_add_rows(an_repo *r, const char *uid, const double *ts, const double *values,
                     size_t n, int64_t *first_rowid)
{
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    if (n == 0 || !ts || !values)
        return fail(r, AN_EINVAL, "add_rows: no rows");
    if (n > INT32_MAX)
        return fail(r, AN_EINVAL, "add_rows: too many rows");
    add_rows_ctx c = {uid, ts, values, n, 0};
    rc = in_some_tx(r, add_rows_body, &c);
    if (!rc && first_rowid)
        *first_rowid = c.first;
    return rc;
}

/* ---------------------------------------------------- internal (schema.c) */

int an_repo__exec_params(an_repo *r, const char *what, const char *sql, int nparams,
                         const char *const *params, PGresult **out)
{
    *out = NULL;
    int rc = ensure_conn(r);
    if (rc)
        return rc;
    rc = keep_result(r, what, exec_text(r, sql, nparams, params), false, out);
    return rc ? rc : ok(r);
}

int an_repo__exec_script(an_repo *r, const char *what, const char *sql)
{
    int rc = ensure_conn(r);
    if (rc)
        return rc;
    /* Constant DDL text with no values: the simple protocol runs its
     * several statements inside the open transaction. */
    PGresult *res;
    rc = keep_result(r, what, PQexec(r->conn, sql), false, &res);
    if (rc)
        return rc;
    PQclear(res);
    return ok(r);
}

int an_repo__fail(an_repo *r, int rc, const char *msg)
{
    return fail(r, rc, "%s", msg);
}

int an_repo__failf(an_repo *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(r, rc, fmt, ap);
    va_end(ap);
    return rc;
}

int an_repo__ok(an_repo *r) { return ok(r); }

/* ---------------------------------------------------------------- pipelines */

/* Sends the steps and the sync of one pipeline; the results are collected
 * by pipeline_recv. Between the two the caller may compute: the server
 * works meanwhile. On failure the pipeline is gone (nothing to receive). */
static int pipeline_send(an_repo *r, an_repo_step *steps, int n)
{
    for (int i = 0; i < n; i++)
        steps[i].res = NULL;
    if (!PQenterPipelineMode(r->conn))
        return fail(r, AN_ETRANSIENT, "cannot enter pipeline mode: %s", PQerrorMessage(r->conn));
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const an_repo_stmt *st = steps[i].stmt;
        int sent = st ? PQsendQueryPrepared(r->conn, st->name, st->nparams, steps[i].params, NULL,
                                            NULL, 0)
                      : PQsendQueryParams(r->conn, steps[i].sql, 0, NULL, NULL, NULL, NULL, 0);
        if (!sent)
            rc = result_error(r, "pipeline send", NULL);
    }
    if (!rc && !PQpipelineSync(r->conn))
        rc = result_error(r, "pipeline sync", NULL);
    if (rc) {
        PQexitPipelineMode(r->conn);
        if (r->conn && PQstatus(r->conn) == CONNECTION_OK)
            drop_conn(r);   /* half-sent pipeline: the session state is unknown */
        return rc == AN_EDB ? AN_ETRANSIENT : rc;
    }
    return 0;
}

/* Collects the results of a pipeline_send (TUPLES_OK results kept in
 * steps[i].res, the first error in r) and leaves pipeline mode. */
static int pipeline_recv(an_repo *r, an_repo_step *steps, int n)
{
    int rc = 0;
    /* Each step yields its result(s) then NULL; the sync yields
     * PGRES_PIPELINE_SYNC. */
    for (int i = 0; i <= n; i++) {
        PGresult *res;
        while ((wd_arm(r), res = PQgetResult(r->conn), wd_disarm(r), res) != NULL) {
            ExecStatusType st = PQresultStatus(res);
            if (i == n) {
                PQclear(res);
                if (st == PGRES_PIPELINE_SYNC)
                    goto synced;
                continue;
            }
            if (st == PGRES_FATAL_ERROR && !rc) {
                const char *what = steps[i].stmt ? steps[i].stmt->name + 3 : steps[i].sql;
                rc = result_error(r, what, res);
                PQclear(res);
            } else if (st == PGRES_TUPLES_OK && !steps[i].res) {
                steps[i].res = res;
            } else {
                PQclear(res);
            }
            if (st == PGRES_PIPELINE_SYNC)
                goto synced;   /* everything after an error was aborted */
        }
        if (PQstatus(r->conn) == CONNECTION_BAD) {
            rc = result_error(r, "pipeline", NULL);
            break;
        }
    }
synced:
    PQexitPipelineMode(r->conn);
    if (PQstatus(r->conn) == CONNECTION_BAD && !rc)
        rc = result_error(r, "pipeline", NULL);
    return rc;
}

int an_repo__pipeline_run(an_repo *r, an_repo_step *steps, int n)
{
    int rc = pipeline_send(r, steps, n);
    return rc ? rc : pipeline_recv(r, steps, n);
}

int an_repo__held_send(an_repo *r, const an_repo_step *steps, int n)
{
    assert(n >= 1 && n <= AN_REPO_HELD_MAX && r->nheld == 0);
    memcpy(r->held, steps, (size_t)n * sizeof *steps);
    /* libpq copies the parameters into its buffer and PQpipelineSync
     * flushes it: they are not needed after the send. */
    int rc = pipeline_send(r, r->held, n);
    for (int i = 0; i < n; i++)
        r->held[i].params = NULL;
    if (!rc)
        r->nheld = n;
    return rc;
}

bool an_repo__held(const an_repo *r) { return r->nheld > 0; }

int an_repo__held_recv(an_repo *r, PGresult **res)
{
    int n = r->nheld;
    int rc = pipeline_recv(r, r->held, n);
    r->nheld = 0;
    for (int i = 0; i < n; i++) {
        res[i] = r->held[i].res;
        r->held[i].res = NULL;
    }
    return rc;
}

int an_repo__prepare(an_repo *r, const an_repo_stmt *const *s, size_t n)
{
    int rc = ensure_conn(r);
    for (size_t i = 0; !rc && i < n; i++)
        rc = ensure_prepared(r, s[i]);
    return rc;
}

an_pgarr *an_repo__arrays(an_repo *r) { return r->arr; }

void an_repo__set_in_tx(an_repo *r, bool in_tx) { r->in_tx = in_tx; }

void an_repo__rollback_quiet(an_repo *r) { rollback_quiet(r); }

void an_repo__rollback_server(an_repo *r)
{
    if (r->conn && PQstatus(r->conn) == CONNECTION_OK &&
        PQtransactionStatus(r->conn) != PQTRANS_IDLE) {
        PQclear(send_rollback(r));
    }
}

int an_repo_retry_policy(an_repo *r, int attempt, int64_t started_ms)
{
    rollback_quiet(r);
    int64_t elapsed = an_repo_now_ms(r) - started_ms;
    if (elapsed >= r->opt.retry_budget_ms) {
        repo_log(r, AN_LOG_WARNING, "sql-retry: giving up after %d attempts (%" PRId64 " ms): %s",
                 attempt, elapsed, r->errstr);
        return AN_ETRANSIENT;
    }
    int delay = r->opt.retry_initial_ms;
    for (int i = 1; i < attempt && delay < r->opt.retry_max_delay_ms; i++)
        delay = an_backoff_next(delay, r->opt.retry_max_delay_ms);
    repo_log(r, attempt == 1 ? AN_LOG_WARNING : AN_LOG_DEBUG,
             "sql-retry: transient error (attempt %d), retrying in %d ms: %s", attempt, delay,
             r->errstr);
    an_clock_sleep_ms(&r->clock, delay);
    return 0;
}

int64_t an_repo_now_ms(const an_repo *r) { return an_clock_now_ms(&r->clock); }

int an_repo_prune_scored_entries(an_repo *r, double older_than_s, int64_t *deleted)
{
    char v[32];
    snprintf(v, sizeof v, "%.3f", older_than_s);
    const char *p[1] = {v};
    PGresult *res;
    int rc = exec_stmt(r, S_PRUNE_SCORED, p, &res);
    if (rc)
        return rc;
    if (deleted)
        *deleted = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return 0;
}
