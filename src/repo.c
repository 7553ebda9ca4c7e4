/*
 * repo.c: the PostgreSQL repository (see include/an_repo.h).
 *
 * Every statement with values is a prepared statement from stmts[] (no
 * value is ever spliced into SQL text). Constant commands without values
 * (BEGIN, COMMIT, ROLLBACK) go through PQexecParams with no parameters.
 * Arrays are passed as text array literals built by sb_* below.
 */
#include "an_repo.h"
#include "repo_internal.h"

#include "an_fault.h"
#include "an_json_out.h" /* an_fmt_double */

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
    S_LOCK_TIMEOUT,
    S_GET_METRIC,
    S_GET_METRIC_SHARE,
    S_GET_METRIC_UPDATE,
    S_SET_STATUS,
    S_SET_STATUS_REF,
    S_STORE_PARAMS,
    S_GET_ROWS,
    S_COUNT,
    S_TAIL,
    S_WRITE_SCORES,
    S_CREATE_METRIC,
    S_ALLOC_ROWIDS,
    S_INSERT_ROWS,
    S_DELETE_MODEL_METRIC,
    S_DELETE_MODEL_DATA,
    S_DELETE_METRIC,
    S_G_LOCK,
    S_G_ROWS,
    S_G_PRED,
    S_G_WRITE,
    S_G_SEEN,
    S_PRUNE_SCORED,
    NSTMT
};

#define METRIC_COLS                                                                           \
    "uid, datasource, name, description, server, location, parameters, status, message, "    \
    "model_params, last_rowid, scored_rowid, scored_source"

static const struct {
    const char *name;
    const char *sql;
    int nparams;
} stmts[NSTMT] = {
    [S_SESSION] = {"an_session",
                   "SELECT set_config('TimeZone', 'UTC', false), "
                   "set_config('extra_float_digits', '1', false), "
                   "set_config('statement_timeout', $1, false), "
                   "set_config('lock_timeout', $2, false), "
                   /* The group statements take arrays of any length: a
                    * custom plan per call costs more than it saves. */
                   "set_config('plan_cache_mode', 'force_generic_plan', false)",
                   2},
    [S_LOCK_TIMEOUT] = {"an_lock_timeout", "SELECT set_config('lock_timeout', $1, false)", 1},
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
    [S_STORE_PARAMS] = {"an_store_params",
                        "UPDATE metric SET model_params = $2, scored_rowid = $3, scored_source = $4 "
                        "WHERE uid = $1", 4},
    [S_GET_ROWS] = {"an_get_rows",
                    "SELECT rowid, extract(epoch FROM timestamp), metric_value, raw_anomaly_score, "
                    "anomaly_score, display_value, multi_step_best_predictions "
                    "FROM metric_data WHERE uid = $1 AND rowid >= $2::bigint AND rowid <= $3::bigint "
                    "ORDER BY rowid ASC",
                    3},
    [S_COUNT] = {"an_count",
                 "SELECT count(*) FROM metric_data "
                 "WHERE uid = $1 AND raw_anomaly_score IS NOT NULL AND rowid < $2::bigint",
                 2},
    [S_TAIL] = {"an_tail",
                "SELECT rowid, metric_value, raw_anomaly_score FROM metric_data "
                "WHERE uid = $1 AND raw_anomaly_score IS NOT NULL AND rowid < $2::bigint "
                "ORDER BY rowid DESC LIMIT $3",
                3},
    [S_WRITE_SCORES] = {"an_write_scores",
                        "UPDATE metric_data AS d SET raw_anomaly_score = u.raw, "
                        "anomaly_score = u.score, display_value = u.disp, "
                        "multi_step_best_predictions = u.pred "
                        "FROM unnest($2::int[], $3::float8[], $4::float8[], $5::int[], $6::text[]) "
                        "AS u(rowid, raw, score, disp, pred) "
                        "WHERE d.uid = $1 AND d.rowid = u.rowid",
                        6},
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
    [S_DELETE_MODEL_METRIC] = {"an_delete_model_metric",
                               "UPDATE metric SET parameters = NULL, model_params = NULL, "
                               "status = 0, message = NULL, scored_rowid = 0, scored_source = NULL WHERE uid = $1",
                               1},
    [S_DELETE_MODEL_DATA] = {"an_delete_model_data",
                             "UPDATE metric_data SET anomaly_score = NULL, raw_anomaly_score = NULL, "
                             "display_value = NULL, multi_step_best_predictions = NULL "
                             "WHERE uid = $1",
                             1},
    [S_DELETE_METRIC] = {"an_delete_metric",
                         "WITH e AS (DELETE FROM scored_entry WHERE uid = $1) "
                         "DELETE FROM metric WHERE uid = $1",
                         1},
    /* Group commit: one transaction for the entries of many metrics. The
     * metric rows are locked in uid order, so concurrent groups cannot
     * deadlock on them. */
    [S_G_LOCK] = {"an_g_lock",
                  "SELECT " METRIC_COLS " FROM metric WHERE uid = ANY($1::text[]) "
                  "ORDER BY uid FOR UPDATE",
                  1},
    [S_G_ROWS] = {"an_g_rows",
                  "SELECT q.i, d.rowid, extract(epoch FROM d.timestamp), d.metric_value, "
                  "d.raw_anomaly_score, d.anomaly_score, d.display_value, "
                  "d.multi_step_best_predictions "
                  "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY "
                  "AS q(uid, f, l, i) "
                  "JOIN metric_data d ON d.uid = q.uid AND d.rowid BETWEEN q.f AND q.l "
                  "ORDER BY q.i, d.rowid",
                  3},
    [S_G_PRED] = {"an_g_pred",
                  "SELECT q.i, d.raw_anomaly_score IS NOT NULL "
                  "FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS q(uid, r, i) "
                  "JOIN metric_data d ON d.uid = q.uid AND d.rowid = q.r",
                  2},
    [S_G_WRITE] = {"an_g_write",
                   "WITH d AS (UPDATE metric_data AS d SET raw_anomaly_score = u.raw, "
                   "anomaly_score = u.score, display_value = u.disp, "
                   "multi_step_best_predictions = u.pred "
                   "FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], "
                   "$5::int[], $6::text[]) AS u(uid, rowid, raw, score, disp, pred) "
                   "WHERE d.uid = u.uid AND d.rowid = u.rowid RETURNING 1), "
                   "m AS (UPDATE metric AS m SET "
                   "model_params = CASE WHEN u.set_mp THEN u.mp ELSE m.model_params END, "
                   "scored_rowid = GREATEST(m.scored_rowid, u.wm), "
                   "scored_source = CASE WHEN u.wm > m.scored_rowid THEN u.src "
                   "ELSE m.scored_source END, "
                   "status = COALESCE(u.st, m.status), "
                   "message = CASE WHEN u.st IS NULL THEN m.message ELSE u.msg END "
                   "FROM unnest($7::text[], $8::bool[], $9::text[], $10::bigint[], $11::text[], "
                   "$12::int[], $13::text[]) AS u(uid, set_mp, mp, wm, src, st, msg) "
                   "WHERE m.uid = u.uid RETURNING 1), "
                   "e AS (INSERT INTO scored_entry (entry_id, uid, first_rowid, last_rowid) "
                   "SELECT * FROM unnest($14::text[], $15::text[], $16::bigint[], "
                   "$17::bigint[]) ON CONFLICT (entry_id) DO NOTHING RETURNING 1) "
                   "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM m), "
                   "(SELECT count(*) FROM e)",
                   17},
    [S_G_SEEN] = {"an_g_seen",
                  "SELECT entry_id FROM scored_entry WHERE entry_id = ANY($1::text[])", 1},
    [S_PRUNE_SCORED] = {"an_prune_scored",
                        "DELETE FROM scored_entry "
                        "WHERE scored_at < now() - make_interval(secs => $1::float8)",
                        1},
};

/* ---------------------------------------------------------- string builder */

typedef struct {
    char *p;
    size_t len, cap;
} sb;

static bool sb_reserve(sb *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static bool sb_add(sb *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return false;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}

static bool sb_addc(sb *b, char c) { return sb_add(b, &c, 1); }
static bool sb_adds(sb *b, const char *s) { return sb_add(b, s, strlen(s)); }

static void sb_reset(sb *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = 0;
}

/* A double as an array element: round-trip exact (%.17g), with the
 * spellings PostgreSQL accepts for the non-finite values. */
static bool sb_add_double(sb *b, double d)
{
    char buf[40];
    if (isnan(d))
        snprintf(buf, sizeof buf, "NaN");
    else if (isinf(d))
        snprintf(buf, sizeof buf, "%s", d > 0 ? "Infinity" : "-Infinity");
    else
        an_fmt_double(buf, sizeof buf, d);   /* shortest text float8in reads back exactly */
    return sb_adds(b, buf);
}

static bool sb_add_int(sb *b, int64_t v)
{
    /* by hand: snprintf was a visible share of a catch-up group's CPU */
    char buf[24];
    char *p = buf + sizeof buf;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    *--p = '\0';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return sb_adds(b, p);
}

/* A text array element: NULL -> NULL; else double-quoted with " and \
 * backslash-escaped (array literal rules: everything else, including
 * commas, braces, blanks and non-ASCII UTF-8, is literal inside quotes). */
static bool sb_add_text_elem(sb *b, const char *s)
{
    if (!s)
        return sb_adds(b, "NULL");
    if (!sb_addc(b, '"'))
        return false;
    for (const char *p = s; *p; p++) {
        if ((*p == '"' || *p == '\\') && !sb_addc(b, '\\'))
            return false;
        if (!sb_addc(b, *p))
            return false;
    }
    return sb_addc(b, '"');
}

/* ------------------------------------------------------------------ repo */

/* One query of a pipeline: a prepared statement (stmt >= 0) or a constant
 * command (sql, when stmt < 0). */
typedef struct pq_step {
    int stmt;
    const char *sql;
    const char *const *params;
    PGresult *res; /* filled for statements that return rows */
} pq_step;

struct an_repo {
    PGconn *conn;
    char *dsn;
    char *appname;
    int connect_timeout_ms;
    int statement_timeout_ms;
    int lock_timeout_ms;
    int retry_budget_ms;
    int retry_initial_ms;
    int retry_max_delay_ms;
    int keepalives_idle_s, keepalives_interval_s, keepalives_count, tcp_user_timeout_ms;
    int response_timeout_ms;
    an_repo_log_fn log;
    void *log_ud;
    an_clock clock; /* zeroed: the system clock (an_clock.h) */
    bool in_tx;
    bool prepared[NSTMT];
    char errstr[1024];
    char sqlstate[6];
    int last_rc;
    int last_attempts;
    sb arr[17]; /* reusable array-literal buffers */
    bool write_pending; /* between group_write_send and _finish */
    pq_step wsteps[2];
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
    if (r->log)
        r->log(r->log_ud, level, msg);
    else
        an_log(level, "%s", msg);
}

static int fail(an_repo *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(an_repo *r, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errstr, sizeof r->errstr, fmt, ap);
    va_end(ap);
    r->sqlstate[0] = 0;
    r->last_rc = rc;
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
        r->connect_timeout_ms = opt->connect_timeout_ms;
        r->statement_timeout_ms = opt->statement_timeout_ms;
        r->lock_timeout_ms = opt->lock_timeout_ms;
        r->retry_budget_ms = opt->retry_budget_ms;
        r->retry_initial_ms = opt->retry_initial_ms;
        r->retry_max_delay_ms = opt->retry_max_delay_ms;
        r->keepalives_idle_s = opt->keepalives_idle_s;
        r->keepalives_interval_s = opt->keepalives_interval_s;
        r->keepalives_count = opt->keepalives_count;
        r->tcp_user_timeout_ms = opt->tcp_user_timeout_ms;
        r->response_timeout_ms = opt->response_timeout_ms;
        r->log = opt->log;
        r->log_ud = opt->log_ud;
        if (opt->clock)
            r->clock = *opt->clock;
    } else {
        r->retry_budget_ms = 10000;
        r->retry_initial_ms = 100;
        r->retry_max_delay_ms = 10000;
    }
    if (r->retry_initial_ms <= 0)
        r->retry_initial_ms = 1;
    if (r->retry_max_delay_ms < r->retry_initial_ms)
        r->retry_max_delay_ms = r->retry_initial_ms;
    return r;
}

static void drop_conn(an_repo *r)
{
    if (r->conn)
        PQfinish(r->conn);
    r->conn = NULL;
    r->in_tx = false;
    memset(r->prepared, 0, sizeof r->prepared);
}

void an_repo_free(an_repo *r)
{
    if (!r)
        return;
    drop_conn(r);
    free(r->dsn);
    free(r->appname);
    for (size_t i = 0; i < sizeof r->arr / sizeof r->arr[0]; i++)
        free(r->arr[i].p);
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
    if (r->response_timeout_ms <= 0 || !r->conn || PQsocket(r->conn) < 0)
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
    struct itimerval it = {{0, 0},
                           {r->response_timeout_ms / 1000, (r->response_timeout_ms % 1000) * 1000}};
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
                 r->response_timeout_ms);
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
    if (r->connect_timeout_ms > 0) {
        cto = (r->connect_timeout_ms + 999) / 1000;
        cto = cto < 2 ? 2 : cto;
    }
    struct {
        const char *kw;
        int v;
    } ours[] = {{"connect_timeout", cto},
                {"keepalives_idle", r->keepalives_idle_s},
                {"keepalives_interval", r->keepalives_interval_s},
                {"keepalives_count", r->keepalives_count},
                {"tcp_user_timeout", r->tcp_user_timeout_ms}};
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
    r->conn = PQconnectdbParams(kw, val, 0);
    if (!r->conn) {
        PQconninfoFree(opts);
        return fail(r, AN_ENOMEM, "PQconnectdbParams: out of memory");
    }
    if (PQstatus(r->conn) != CONNECTION_OK) {
        char msg[800];
        trim_copy(msg, sizeof msg, PQerrorMessage(r->conn));
        drop_conn(r);
        rc = classify_connect_failure(kw, val);
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
    snprintf(st, sizeof st, "%d", r->statement_timeout_ms > 0 ? r->statement_timeout_ms : 0);
    snprintf(lt, sizeof lt, "%d", r->lock_timeout_ms > 0 ? r->lock_timeout_ms : 0);
    const char *params[2] = {st, lt};
    wd_arm(r);
    PGresult *res =
        PQexecParams(r->conn, stmts[S_SESSION].sql, 2, NULL, params, NULL, NULL, 0);
    wd_disarm(r);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = result_error(r, "session settings", res);
        PQclear(res);
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

static int ensure_prepared(an_repo *r, int s)
{
    if (r->prepared[s])
        return 0;
    wd_arm(r);
    PGresult *res = PQprepare(r->conn, stmts[s].name, stmts[s].sql, stmts[s].nparams, NULL);
    wd_disarm(r);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char what[96];
        snprintf(what, sizeof what, "prepare %s", stmts[s].name);
        int rc = result_error(r, what, res);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    r->prepared[s] = true;
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
        rc = ensure_prepared(r, s);
    if (rc)
        return rc;
    wd_arm(r);
    PGresult *res = PQexecPrepared(r->conn, stmts[s].name, stmts[s].nparams, params, NULL, NULL,
                                   binary_result ? 1 : 0);
    wd_disarm(r);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        rc = result_error(r, stmts[s].name + 3, res);
        PQclear(res);
        return rc;
    }
    *out = res;
    ok(r);
    return 0;
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
    wd_arm(r);
    PGresult *res = PQexecParams(r->conn, sql, 0, NULL, NULL, NULL, NULL, 0);
    wd_disarm(r);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = result_error(r, sql, res);
        PQclear(res);
        return rc;
    }
    *out = res;
    return 0;
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

/* ROLLBACK that keeps the current error text/code (used after failures). */
static void rollback_quiet(an_repo *r)
{
    if (!r->in_tx)
        return;
    r->in_tx = false;
    if (!r->conn || PQstatus(r->conn) != CONNECTION_OK)
        return;
    PGresult *res = (wd_arm(r), PQexecParams(r->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0));
    wd_disarm(r);
    PQclear(res);
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
    PGresult *res = (wd_arm(r), PQexecParams(r->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0));
    wd_disarm(r);
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

int an_repo_set_lock_timeout(an_repo *r, int ms)
{
    r->lock_timeout_ms = ms > 0 ? ms : 0;
    char v[24];
    snprintf(v, sizeof v, "%d", r->lock_timeout_ms);
    const char *p[1] = {v};
    PGresult *res;
    int rc = exec_stmt(r, S_LOCK_TIMEOUT, p, &res);
    if (rc)
        return rc;
    PQclear(res);
    return 0;
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

static int64_t int_field(const PGresult *res, int row, int col, int64_t null_value)
{
    if (PQgetisnull(res, row, col))
        return null_value;
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static double double_field(const PGresult *res, int row, int col)
{
    return strtod(PQgetvalue(res, row, col), NULL);
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
    bool oom = false;
    out->uid = dup_field(res, 0, 0, &oom);
    out->datasource = dup_field(res, 0, 1, &oom);
    out->name = dup_field(res, 0, 2, &oom);
    out->description = dup_field(res, 0, 3, &oom);
    out->server = dup_field(res, 0, 4, &oom);
    out->location = dup_field(res, 0, 5, &oom);
    out->parameters = dup_field(res, 0, 6, &oom);
    out->status = (int)int_field(res, 0, 7, -1);
    out->message = dup_field(res, 0, 8, &oom);
    out->model_params = dup_field(res, 0, 9, &oom);
    out->last_rowid = int_field(res, 0, 10, 0);
    out->scored_rowid = int_field(res, 0, 11, 0);
    out->scored_source = dup_field(res, 0, 12, &oom);
    PQclear(res);
    if (oom) {
        an_metric_clear(out);
        return fail(r, AN_ENOMEM, "get_metric: out of memory");
    }
    return 0;
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

int an_repo_store_params(an_repo *r, const char *uid, const char *model_params,
                         int64_t scored_rowid, const char *scored_source)
{
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    char w[24];
    snprintf(w, sizeof w, "%" PRId64, scored_rowid);
    const char *p[4] = {uid, model_params, w, scored_source};
    return exec_update(r, S_STORE_PARAMS, p, uid, NULL);
}

/* ------------------------------------------------------------- metric_data */

void an_data_rows_free(an_data_rows *rows)
{
    if (!rows)
        return;
    free(rows->v);
    free(rows->text);
    memset(rows, 0, sizeof *rows);
}

/* Fills out (reusing its memory) from a result whose columns, from col0
 * on, are rowid, epoch, metric_value, raw, score, display, predictions. */
static int parse_rows(an_repo *r, PGresult *res, int col0, an_data_rows *out)
{
    size_t n = (size_t)PQntuples(res);
    size_t text = 0;
    for (size_t i = 0; i < n; i++)
        if (!PQgetisnull(res, (int)i, col0 + 6))
            text += (size_t)PQgetlength(res, (int)i, col0 + 6) + 1;
    if (n > out->cap) {
        an_data_row *v = realloc(out->v, n * sizeof *v);
        if (!v)
            return fail(r, AN_ENOMEM, "rows: out of memory");
        out->v = v;
        out->cap = n;
    }
    if (text > out->text_cap) {
        char *t = realloc(out->text, text);
        if (!t)
            return fail(r, AN_ENOMEM, "rows: out of memory");
        out->text = t;
        out->text_cap = text;
    }
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        int row = (int)i, c = col0;
        an_data_row *d = &out->v[i];
        memset(d, 0, sizeof *d);
        d->rowid = int_field(res, row, c, 0);
        d->ts = double_field(res, row, c + 1);
        d->metric_value = double_field(res, row, c + 2);
        if ((d->has_raw = !PQgetisnull(res, row, c + 3)))
            d->raw = double_field(res, row, c + 3);
        if ((d->has_score = !PQgetisnull(res, row, c + 4)))
            d->anomaly_score = double_field(res, row, c + 4);
        if ((d->has_display = !PQgetisnull(res, row, c + 5)))
            d->display_value = int_field(res, row, c + 5, 0);
        if (!PQgetisnull(res, row, c + 6)) {
            size_t len = (size_t)PQgetlength(res, row, c + 6);
            memcpy(out->text + used, PQgetvalue(res, row, c + 6), len + 1);
            d->predictions = out->text + used;
            used += len + 1;
        }
    }
    out->n = n;
    return 0;
}

int an_repo_get_rows(an_repo *r, const char *uid, int64_t first, int64_t last,
                     an_data_rows *out)
{
    out->n = 0;
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    char a[24], b[24];
    snprintf(a, sizeof a, "%" PRId64, first);
    snprintf(b, sizeof b, "%" PRId64, last);
    const char *p[3] = {uid, a, b};
    PGresult *res;
    rc = exec_stmt(r, S_GET_ROWS, p, &res);
    if (rc)
        return rc;
    rc = parse_rows(r, res, 0, out);
    PQclear(res);
    return rc;
}

int an_repo_write_scores(an_repo *r, const char *uid, const an_score_update *rows, size_t n,
                         int64_t *updated)
{
    if (updated)
        *updated = 0;
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    if (n == 0 || !rows)
        return fail(r, AN_EINVAL, "write_scores: no rows");
    sb *ids = &r->arr[0], *raw = &r->arr[1], *score = &r->arr[2], *disp = &r->arr[3],
       *pred = &r->arr[4];
    for (size_t i = 0; i < 5; i++)
        sb_reset(&r->arr[i]);
    bool okb = sb_addc(ids, '{') && sb_addc(raw, '{') && sb_addc(score, '{') &&
               sb_addc(disp, '{') && sb_addc(pred, '{');
    for (size_t i = 0; okb && i < n; i++) {
        const an_score_update *u = &rows[i];
        if (u->rowid < 1 || u->rowid > INT32_MAX)
            return fail(r, AN_EINVAL, "write_scores: rowid %" PRId64 " out of range", u->rowid);
        if (u->display_value < INT32_MIN || u->display_value > INT32_MAX)
            return fail(r, AN_EINVAL, "write_scores: display_value %" PRId64 " out of range",
                        u->display_value);
        if (i > 0)
            okb = sb_addc(ids, ',') && sb_addc(raw, ',') && sb_addc(score, ',') &&
                  sb_addc(disp, ',') && sb_addc(pred, ',');
        okb = okb && sb_add_int(ids, u->rowid) && sb_add_double(raw, u->raw) &&
              sb_add_double(score, u->anomaly_score) && sb_add_int(disp, u->display_value) &&
              sb_add_text_elem(pred, u->predictions);
    }
    okb = okb && sb_addc(ids, '}') && sb_addc(raw, '}') && sb_addc(score, '}') &&
          sb_addc(disp, '}') && sb_addc(pred, '}');
    if (!okb)
        return fail(r, AN_ENOMEM, "write_scores: out of memory");
    const char *p[6] = {uid, ids->p, raw->p, score->p, disp->p, pred->p};
    PGresult *res;
    rc = exec_stmt(r, S_WRITE_SCORES, p, &res);
    if (rc)
        return rc;
    if (updated)
        *updated = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return 0;
}

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
    *count = int_field(res, 0, 0, 0);
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

static int src_count(void *ctx, int64_t *count, char *err, size_t errlen)
{
    an_repo_source *rs = ctx;
    int rc = an_repo_processed_count(rs->repo, rs->uid, rs->before_rowid, count);
    if (rc && err && errlen)
        snprintf(err, errlen, "%s", an_repo_errstr(rs->repo));
    return rc;
}

static int src_tail(void *ctx, size_t n, an_sample *out, size_t *got, char *err, size_t errlen)
{
    an_repo_source *rs = ctx;
    int rc = an_repo_processed_tail(rs->repo, rs->uid, rs->before_rowid, n, out, got);
    if (rc && err && errlen)
        snprintf(err, errlen, "%s", an_repo_errstr(rs->repo));
    return rc;
}

an_sample_source an_repo_sample_source(an_repo_source *rs)
{
    an_sample_source s;
    s.ctx = rs;
    s.processed_count = src_count;
    s.tail = src_tail;
    return s;
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
    sb *ts = &r->arr[0], *vals = &r->arr[1];
    sb_reset(ts);
    sb_reset(vals);
    bool okb = sb_addc(ts, '{') && sb_addc(vals, '{');
    char buf[64], last_ts[64] = "";
    for (size_t i = 0; okb && i < c->n; i++) {
        if (!format_ts(c->ts[i], buf, sizeof buf))
            return fail(r, AN_EINVAL, "add_rows: timestamp %zu is not a finite epoch", i);
        if (i > 0)
            okb = sb_addc(ts, ',') && sb_addc(vals, ',');
        okb = okb && sb_addc(ts, '"') && sb_adds(ts, buf) && sb_addc(ts, '"') &&
              sb_add_double(vals, c->values[i]);
        if (strcmp(buf, last_ts) > 0)
            snprintf(last_ts, sizeof last_ts, "%s", buf);
    }
    okb = okb && sb_addc(ts, '}') && sb_addc(vals, '}');
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
    int64_t last = int_field(res, 0, 0, 0);
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

static int delete_model_body(an_repo *r, void *ctx)
{
    const char *uid = ctx;
    const char *p[1] = {uid};
    int rc = exec_update(r, S_DELETE_MODEL_METRIC, p, uid, NULL);
    if (rc == AN_ENOTFOUND)
        return fail(r, AN_ENOTFOUND, "Metric not found for uid=%s", uid);
    if (rc)
        return rc;
    PGresult *res;
    rc = exec_stmt(r, S_DELETE_MODEL_DATA, p, &res);
    if (rc)
        return rc;
    PQclear(res);
    return 0;
}

int an_repo_delete_model(an_repo *r, const char *uid)
{
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    return in_some_tx(r, delete_model_body, (void *)uid);
}

int an_repo_delete_metric(an_repo *r, const char *uid)
{
    int rc = check_uid(r, uid);
    if (rc)
        return rc;
    const char *p[1] = {uid};
    rc = exec_update(r, S_DELETE_METRIC, p, uid, NULL);
    if (rc == AN_ENOTFOUND)
        return fail(r, AN_ENOTFOUND, "Metric not found for uid=%s", uid);
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
    wd_arm(r);
    PGresult *res = PQexecParams(r->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    wd_disarm(r);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        rc = result_error(r, what, res);
        PQclear(res);
        return rc;
    }
    *out = res;
    ok(r);
    return 0;
}

int an_repo__exec_script(an_repo *r, const char *what, const char *sql)
{
    int rc = ensure_conn(r);
    if (rc)
        return rc;
    /* Constant DDL text with no values: the simple protocol runs its
     * several statements inside the open transaction. */
    PGresult *res = PQexec(r->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        rc = result_error(r, what, res);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    return ok(r);
}

int an_repo__fail(an_repo *r, int rc, const char *msg)
{
    return fail(r, rc, "%s", msg);
}

/* ------------------------------------------------------------ group commit */


/* Sends the steps in libpq pipeline mode and reads every result: one round
 * trip for all of them. Statements must be prepared beforehand (PQprepare
 * cannot run inside a pipeline). On the first failure the server aborts
 * the rest (PGRES_PIPELINE_ABORTED); that failure is what is reported. The
 * caller PQclears the steps' results. */
/* Sends the steps and the sync of one pipeline; the results are collected
 * by pipeline_recv. Between the two the caller may compute: the server
 * works meanwhile. On failure the pipeline is gone (nothing to receive). */
static int pipeline_send(an_repo *r, pq_step *steps, int n)
{
    for (int i = 0; i < n; i++)
        steps[i].res = NULL;
    if (!PQenterPipelineMode(r->conn))
        return fail(r, AN_ETRANSIENT, "cannot enter pipeline mode: %s", PQerrorMessage(r->conn));
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int sent = steps[i].stmt >= 0
                       ? PQsendQueryPrepared(r->conn, stmts[steps[i].stmt].name,
                                             stmts[steps[i].stmt].nparams, steps[i].params, NULL,
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
static int pipeline_recv(an_repo *r, pq_step *steps, int n)
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
                const char *what = steps[i].stmt >= 0 ? stmts[steps[i].stmt].name + 3
                                                      : steps[i].sql;
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

static int pipeline_run(an_repo *r, pq_step *steps, int n)
{
    int rc = pipeline_send(r, steps, n);
    return rc ? rc : pipeline_recv(r, steps, n);
}

static int prepare_all(an_repo *r, const int *s, int n)
{
    int rc = ensure_conn(r);
    for (int i = 0; !rc && i < n; i++)
        rc = ensure_prepared(r, s[i]);
    return rc;
}

/* Appends "{a,b,...}" of n text elements (NULL -> NULL). */
static bool sb_text_array(sb *b, const char *const *v, size_t n)
{
    sb_reset(b);
    bool okb = sb_addc(b, '{');
    for (size_t i = 0; okb && i < n; i++)
        okb = (i == 0 || sb_addc(b, ',')) && sb_add_text_elem(b, v[i]);
    return okb && sb_addc(b, '}');
}

void an_group_read_free(an_group_read *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nmetrics; i++)
        an_metric_clear(&g->metrics[i]);
    free(g->metrics);
    free(g->found);
    an_data_rows_free(&g->rows);
    free(g->row_range);
    free(g->pred);
    free(g->seen);
    memset(g, 0, sizeof *g);
}

/* Fills g->rows (and each row's range index) from an S_G_ROWS result. */
static int take_rows(an_repo *r, PGresult *res, an_group_read *g, size_t nranges)
{
    size_t n = (size_t)PQntuples(res);
    if (n > g->row_range_cap) {
        size_t *rr = realloc(g->row_range, n * sizeof *rr);
        if (!rr)
            return fail(r, AN_ENOMEM, "group_read: out of memory");
        g->row_range = rr;
        g->row_range_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t qi = int_field(res, (int)i, 0, 0);
        assert(qi >= 1 && (size_t)qi <= nranges);
        (void)nranges;
        g->row_range[i] = (size_t)(qi - 1);
    }
    return parse_rows(r, res, 1, &g->rows);
}

int an_repo_group_read(an_repo *r, const char *const *uids, size_t nuids,
                       const an_group_range *ranges, size_t nranges, an_group_read *g)
{
    static const int needed[] = {S_G_LOCK, S_G_ROWS, S_G_PRED, S_G_SEEN};
    if (r->in_tx)
        return fail(r, AN_ESTATE, "group_read: a transaction is already open");
    if (nuids == 0)
        return fail(r, AN_EINVAL, "group_read: no metrics");
    for (size_t i = 0; i < g->nmetrics; i++)
        an_metric_clear(&g->metrics[i]);
    free(g->metrics);
    free(g->found);
    g->metrics = calloc(nuids, sizeof *g->metrics);
    g->found = calloc(nuids, sizeof *g->found);
    /* nmetrics only counts what can be cleared later */
    g->nmetrics = g->metrics ? nuids : 0;
    int *pred = realloc(g->pred, (nranges ? nranges : 1) * sizeof *pred);
    if (pred)
        g->pred = pred;
    bool *seen = realloc(g->seen, (nranges ? nranges : 1) * sizeof *seen);
    if (seen)
        g->seen = seen;
    g->rows.n = 0;
    if (!g->metrics || !g->found || !pred || !seen)
        return fail(r, AN_ENOMEM, "group_read: out of memory");

    /* Arrays: uids (lock); range uid/first/last; predecessor uid/rowid. */
    const char **ru = malloc((nranges ? nranges : 1) * sizeof *ru);
    if (!ru)
        return fail(r, AN_ENOMEM, "group_read: out of memory");
    const char **rid = malloc((nranges ? nranges : 1) * sizeof *rid);
    if (!rid) {
        free(ru);
        return fail(r, AN_ENOMEM, "group_read: out of memory");
    }
    for (size_t i = 0; i < nranges; i++) {
        ru[i] = ranges[i].uid;
        rid[i] = ranges[i].entry_id ? ranges[i].entry_id : "";
        g->pred[i] = AN_ROW_MISSING;
        g->seen[i] = false;
    }
    sb *a_uids = &r->arr[0], *a_ru = &r->arr[1], *a_f = &r->arr[2], *a_l = &r->arr[3],
       *a_p = &r->arr[4];
    sb *a_ids = &r->arr[5];
    bool okb = sb_text_array(a_uids, uids, nuids) && sb_text_array(a_ru, ru, nranges) &&
               sb_text_array(a_ids, rid, nranges);
    free(ru);
    free(rid);
    sb_reset(a_f);
    sb_reset(a_l);
    sb_reset(a_p);
    okb = okb && sb_addc(a_f, '{') && sb_addc(a_l, '{') && sb_addc(a_p, '{');
    for (size_t i = 0; okb && i < nranges; i++)
        okb = (i == 0 || (sb_addc(a_f, ',') && sb_addc(a_l, ',') && sb_addc(a_p, ','))) &&
              sb_add_int(a_f, ranges[i].first) && sb_add_int(a_l, ranges[i].last) &&
              /* the predecessor row; INT64_MIN has none (and no row) */
              sb_add_int(a_p, ranges[i].first > INT64_MIN ? ranges[i].first - 1 : INT64_MIN);
    okb = okb && sb_addc(a_f, '}') && sb_addc(a_l, '}') && sb_addc(a_p, '}');
    if (!okb)
        return fail(r, AN_ENOMEM, "group_read: out of memory");

    int rc = prepare_all(r, needed, 4);
    if (rc)
        return rc;
    const char *p_seen[1] = {a_ids->p};
    const char *p_lock[1] = {a_uids->p};
    const char *p_rows[3] = {a_ru->p, a_f->p, a_l->p};
    const char *p_pred[2] = {a_ru->p, a_p->p};
    pq_step steps[5] = {
        {-1, "BEGIN", NULL, NULL},
        {S_G_LOCK, NULL, p_lock, NULL},
        {S_G_ROWS, NULL, p_rows, NULL},
        {S_G_PRED, NULL, p_pred, NULL},
        {S_G_SEEN, NULL, p_seen, NULL},
    };
    r->in_tx = true;
    rc = pipeline_run(r, steps, 5);
    if (!rc && (!steps[1].res || !steps[2].res || !steps[3].res || !steps[4].res))
        rc = fail(r, AN_EDB, "group_read: a query returned no rows result");
    if (!rc) {
        /* metrics: the result is in uid order, as are uids[] (caller sorts) */
        PGresult *m = steps[1].res;
        int nm = PQntuples(m);
        for (int k = 0; k < nm && !rc; k++) {
            const char *uid = PQgetvalue(m, k, 0);
            for (size_t i = 0; i < nuids; i++) {
                if (strcmp(uids[i], uid))
                    continue;
                bool oom = false;
                an_metric *out = &g->metrics[i];
                out->uid = dup_field(m, k, 0, &oom);
                out->datasource = dup_field(m, k, 1, &oom);
                out->name = dup_field(m, k, 2, &oom);
                out->description = dup_field(m, k, 3, &oom);
                out->server = dup_field(m, k, 4, &oom);
                out->location = dup_field(m, k, 5, &oom);
                out->parameters = dup_field(m, k, 6, &oom);
                out->status = (int)int_field(m, k, 7, -1);
                out->message = dup_field(m, k, 8, &oom);
                out->model_params = dup_field(m, k, 9, &oom);
                out->last_rowid = int_field(m, k, 10, 0);
                out->scored_rowid = int_field(m, k, 11, 0);
                out->scored_source = dup_field(m, k, 12, &oom);
                g->found[i] = true;
                if (oom)
                    rc = fail(r, AN_ENOMEM, "group_read: out of memory");
                break;
            }
        }
    }
    if (!rc)
        rc = take_rows(r, steps[2].res, g, nranges);
    if (!rc) {
        PGresult *pr = steps[3].res;
        for (int k = 0; k < PQntuples(pr); k++) {
            int64_t qi = int_field(pr, k, 0, 0);
            if (qi >= 1 && (size_t)qi <= nranges)
                g->pred[qi - 1] = PQgetvalue(pr, k, 1)[0] == 't' ? AN_ROW_PROCESSED
                                                                 : AN_ROW_UNPROCESSED;
        }
        PGresult *sr = steps[4].res;
        for (int k = 0; k < PQntuples(sr); k++)
            for (size_t i = 0; i < nranges; i++)
                if (ranges[i].entry_id && !strcmp(ranges[i].entry_id, PQgetvalue(sr, k, 0)))
                    g->seen[i] = true;
    }
    for (int i = 0; i < 5; i++)
        PQclear(steps[i].res);
    if (rc) {
        rollback_quiet(r);
        return rc;
    }
    return ok(r);
}

int an_repo_group_write_send(an_repo *r, const char *const *row_uids,
                             const an_score_update *rows, size_t nrows,
                             const an_group_metric_update *mu, size_t nmu,
                             const an_group_range *scored, size_t nscored)
{
    static const int needed[] = {S_G_WRITE};
    if (r->write_pending)
        return fail(r, AN_ESTATE, "group_write: a write is already in flight");
    if (!r->in_tx)
        return fail(r, AN_ESTATE, "group_write: no transaction is open");
    sb *a = r->arr;   /* 17 arrays, in parameter order */
    for (int i = 0; i < 17; i++) {
        sb_reset(&a[i]);
        if (!sb_addc(&a[i], '{'))
            goto oom;
    }
    for (size_t i = 0; i < nrows; i++) {
        const an_score_update *u = &rows[i];
        if (u->display_value < INT32_MIN || u->display_value > INT32_MAX) {
            rollback_quiet(r);
            return fail(r, AN_EINVAL, "group_write: display_value %" PRId64 " out of range",
                        u->display_value);
        }
        if (i > 0)
            for (int k = 0; k < 6; k++)
                if (!sb_addc(&a[k], ','))
                    goto oom;
        if (!sb_add_text_elem(&a[0], row_uids[i]) || !sb_add_int(&a[1], u->rowid) ||
            !sb_add_double(&a[2], u->raw) || !sb_add_double(&a[3], u->anomaly_score) ||
            !sb_add_int(&a[4], u->display_value) || !sb_add_text_elem(&a[5], u->predictions))
            goto oom;
    }
    for (size_t i = 0; i < nmu; i++) {
        const an_group_metric_update *m = &mu[i];
        if (i > 0)
            for (int k = 6; k < 13; k++)
                if (!sb_addc(&a[k], ','))
                    goto oom;
        if (!sb_add_text_elem(&a[6], m->uid) || !sb_adds(&a[7], m->set_model_params ? "t" : "f") ||
            !sb_add_text_elem(&a[8], m->model_params) || !sb_add_int(&a[9], m->watermark) ||
            !sb_add_text_elem(&a[10], m->source) ||
            !(m->status < 0 ? sb_adds(&a[11], "NULL") : sb_add_int(&a[11], m->status)) ||
            !sb_add_text_elem(&a[12], m->message))
            goto oom;
    }
    for (size_t i = 0; i < nscored; i++) {
        const an_group_range *e = &scored[i];
        if (i > 0)
            for (int k = 13; k < 17; k++)
                if (!sb_addc(&a[k], ','))
                    goto oom;
        if (!sb_add_text_elem(&a[13], e->entry_id) || !sb_add_text_elem(&a[14], e->uid) ||
            !sb_add_int(&a[15], e->first) || !sb_add_int(&a[16], e->last))
            goto oom;
    }
    for (int i = 0; i < 17; i++)
        if (!sb_addc(&a[i], '}'))
            goto oom;

    int rc = prepare_all(r, needed, 1);
    if (rc) {
        rollback_quiet(r);
        return rc;
    }
    const char *p[17];
    for (int i = 0; i < 17; i++)
        p[i] = a[i].p;
    /* libpq copies the parameters into its buffer and PQpipelineSync
     * flushes it: p and the arrays are not needed after the send. */
    r->wsteps[0] = (pq_step){S_G_WRITE, NULL, p, NULL};
    r->wsteps[1] = (pq_step){-1, "COMMIT", NULL, NULL};
    rc = pipeline_send(r, r->wsteps, 2);
    r->wsteps[0].params = NULL;
    if (rc) {
        r->in_tx = false;
        return rc;
    }
    r->write_pending = true;
    return 0;
oom:
    rollback_quiet(r);
    return fail(r, AN_ENOMEM, "group_write: out of memory");
}

int an_repo_group_write_finish(an_repo *r, int64_t *rows_updated)
{
    if (!r->write_pending)
        return fail(r, AN_ESTATE, "group_write_finish: no write in flight");
    pq_step *steps = r->wsteps;
    if (rows_updated)
        *rows_updated = 0;
    int rc = pipeline_recv(r, steps, 2);
    r->write_pending = false;
    r->in_tx = false;
    if (!rc && steps[0].res && rows_updated)
        *rows_updated = strtoll(PQgetvalue(steps[0].res, 0, 0), NULL, 10);
    PQclear(steps[0].res);
    PQclear(steps[1].res);
    steps[0].res = steps[1].res = NULL;
    if (rc) {
        /* A failed COMMIT or statement leaves nothing applied; make sure
         * the session is not left in an aborted transaction. */
        if (r->conn && PQstatus(r->conn) == CONNECTION_OK &&
            PQtransactionStatus(r->conn) != PQTRANS_IDLE) {
            PGresult *res = (wd_arm(r), PQexecParams(r->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0));
    wd_disarm(r);
            PQclear(res);
        }
        return rc;
    }
    return ok(r);
}

int an_repo_group_write_commit(an_repo *r, const char *const *row_uids,
                               const an_score_update *rows, size_t nrows,
                               const an_group_metric_update *mu, size_t nmu,
                               const an_group_range *scored, size_t nscored,
                               int64_t *rows_updated)
{
    if (rows_updated)
        *rows_updated = 0;
    int rc = an_repo_group_write_send(r, row_uids, rows, nrows, mu, nmu, scored, nscored);
    return rc ? rc : an_repo_group_write_finish(r, rows_updated);
}

int an_repo_retry_policy(an_repo *r, int attempt, int64_t started_ms)
{
    rollback_quiet(r);
    int64_t elapsed = an_repo_now_ms(r) - started_ms;
    if (elapsed >= r->retry_budget_ms) {
        repo_log(r, AN_LOG_WARNING, "sql-retry: giving up after %d attempts (%" PRId64 " ms): %s",
                 attempt, elapsed, r->errstr);
        return AN_ETRANSIENT;
    }
    int delay = r->retry_initial_ms;
    for (int i = 1; i < attempt && delay < r->retry_max_delay_ms; i++)
        delay = delay > r->retry_max_delay_ms / 2 ? r->retry_max_delay_ms : delay * 2;
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
