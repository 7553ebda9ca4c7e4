/*
 * test_pause.c: lasting infrastructure faults while healthy traffic flows
 * through K = 2 consumers (docs/operations.md, "Error classes and
 * pauses"). For each fault: both consumers pause (their health hashes say
 * "paused"), nothing is dead-lettered, they resume by themselves after the
 * repair, and every row, the params and every output message equal the
 * offline scoring of the same batches (bit for bit), each input entry
 * published exactly once.
 *
 * Faults (AN_PAUSE_FAULTS, a comma list; the default CTest run takes a
 * short selection, ops/pause-faults.sh runs them all and prints the table):
 *   disk_full   a trigger on metric_data raising SQLSTATE 53100
 *   revoke      REVOKE UPDATE ON metric_data (42501)
 *   read_only   ALTER ROLE ... SET default_transaction_read_only (25006),
 *               the consumers' sessions terminated so that they reconnect
 *   stmt_timeout a trigger sleeping past statement_timeout (57014)
 *   no_table    metric_data renamed away (42P01)
 *   wrongtype   a params hash replaced by a string (WRONGTYPE)
 *   pg_blackhole / redis_blackhole  a TCP proxy between anomalyd and the
 *               server stops forwarding without closing anything
 * Figures printed per fault (never asserted: the machine's speed varies):
 * time to pause, time to resume, dead letters, mismatches.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "an_redis_url.h"
#include "support_e2e.h"
#include "check_main.h"

static e2e T;

static void setup(void) { e2e_init(&T, "pause"); }
static void repair_all(void);
static void teardown(void)
{
    repair_all();
    e2e_fini(&T);
}

#define JUMPSUP "likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv"
#define EC2 "likelihood/htmengine/numenta_ec2_cpu_utilization_825cc2.inputs.csv"
#define FIRST 300  /* the first batch of each model */
#define LIVE 160   /* then this many 1-row batches */

/* ------------------------------------------------------------ TCP proxy */

/* A forked proxy: listens on *port, forwards each connection to
 * 127.0.0.1:to. SIGUSR1 makes it a black hole (it stops reading and
 * accepting; nothing is closed), SIGUSR2 heals it. */
static volatile sig_atomic_t g_hole;
static void on_hole(int sig) { g_hole = sig == SIGUSR1; }

static void proxy_loop(int lfd, int to)
{
    enum { MAXC = 64 };
    int cl[MAXC], sv[MAXC], n = 0;
    signal(SIGUSR1, on_hole);
    signal(SIGUSR2, on_hole);
    for (;;) {
        struct pollfd p[1 + 2 * MAXC];
        int np = 0;
        if (!g_hole) {
            p[np++] = (struct pollfd){.fd = lfd, .events = POLLIN};
            for (int i = 0; i < n; i++) {
                p[np++] = (struct pollfd){.fd = cl[i], .events = POLLIN};
                p[np++] = (struct pollfd){.fd = sv[i], .events = POLLIN};
            }
        }
        if (poll(p, (nfds_t)np, 100) <= 0)
            continue;
        int polled = n;   /* only these have pollfds this round (sockets block) */
        if ((p[0].revents & POLLIN) && n < MAXC) {
            int c = accept(lfd, NULL, NULL);
            int s = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)to)};
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (c >= 0 && s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
                cl[n] = c;
                sv[n++] = s;
            } else {
                if (c >= 0)
                    close(c);
                if (s >= 0)
                    close(s);
            }
        }
        for (int i = 0; i < polled; i++) {
            char buf[65536];
            bool dead = false;
            for (int dir = 0; dir < 2 && !dead; dir++) {
                struct pollfd *q = &p[1 + 2 * i + dir];
                if (!(q->revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                ssize_t r = read(q->fd, buf, sizeof buf);
                int out = dir ? cl[i] : sv[i];
                if (r <= 0 || write(out, buf, (size_t)r) != r)
                    dead = true;
            }
            if (dead) {
                close(cl[i]);
                close(sv[i]);
                cl[i] = cl[n - 1];
                sv[i] = sv[n - 1];
                n--;
                break;   /* the pollfd indexes moved: poll again */
            }
        }
    }
}

static pid_t proxy_start(int to, int *port)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(lfd, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(lfd, 64), 0);
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlives a failed test */
        proxy_loop(lfd, to);
        _exit(0);
    }
    close(lfd);
    return pid;
}

/* ------------------------------------------------------------ faults */

static void sql(const char *q)
{
    PGresult *r = PQexec(an_repo_conn(T.repo), q);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", q, PQresultErrorMessage(r));
    PQclear(r);
}

typedef struct fault {
    const char *name;
    const char *inject[3], *repair[3];   /* SQL, run in order (NULL ends) */
    bool terminate;                      /* terminate anomalyd's sessions after inject/repair */
    bool stmt_timeout;                   /* consumers run with statement_timeout 1 s */
    int proxy;                           /* 1: PostgreSQL through the proxy, 2: Redis */
    bool wrongtype;
} fault;

static const fault faults[] = {
    {"disk_full",
     {"CREATE OR REPLACE FUNCTION an_test_full() RETURNS trigger LANGUAGE plpgsql AS $$ "
      "BEGIN RAISE EXCEPTION 'could not extend file (test)' USING ERRCODE = '53100'; END $$",
      "CREATE TRIGGER an_test_full BEFORE UPDATE ON metric_data FOR EACH ROW EXECUTE "
      "FUNCTION an_test_full()", NULL},
     {"DROP TRIGGER an_test_full ON metric_data", "DROP FUNCTION an_test_full()", NULL}, false,
     false, 0, false},
    {"revoke", {"REVOKE UPDATE ON metric_data FROM CURRENT_USER", NULL},
     {"GRANT UPDATE ON metric_data TO CURRENT_USER", NULL}, false, false, 0, false},
    {"read_only", {"DO $$ BEGIN EXECUTE format('ALTER ROLE %I SET default_transaction_read_only "
                   "= on', current_user); END $$", NULL},
     {"DO $$ BEGIN EXECUTE format('ALTER ROLE %I RESET default_transaction_read_only', "
      "current_user); END $$", NULL}, true, false, 0, false},
    {"stmt_timeout",
     {"CREATE OR REPLACE FUNCTION an_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$ "
      "BEGIN PERFORM pg_sleep(3); RETURN NEW; END $$",
      "CREATE TRIGGER an_test_slow BEFORE UPDATE ON metric_data FOR EACH ROW EXECUTE "
      "FUNCTION an_test_slow()", NULL},
     {"DROP TRIGGER an_test_slow ON metric_data", "DROP FUNCTION an_test_slow()", NULL}, false,
     true, 0, false},
    {"no_table", {"ALTER TABLE metric_data RENAME TO an_test_gone", NULL},
     {"ALTER TABLE an_test_gone RENAME TO metric_data", NULL}, false, false, 0, false},
    {"wrongtype", {NULL}, {NULL}, false, false, 0, true},
    {"pg_blackhole", {NULL}, {NULL}, false, false, 1, false},
    {"redis_blackhole", {NULL}, {NULL}, false, false, 2, false},
};

/* Undoes every fault (idempotent): a run killed half-way leaves nothing
 * behind for the next. */
static void repair_all(void)
{
    sql("DROP TRIGGER IF EXISTS an_test_full ON metric_data");
    sql("DROP TRIGGER IF EXISTS an_test_slow ON metric_data");
    sql("DROP FUNCTION IF EXISTS an_test_full()");
    sql("DROP FUNCTION IF EXISTS an_test_slow()");
    sql("DO $$ BEGIN IF to_regclass('an_test_gone') IS NOT NULL THEN "
        "ALTER TABLE an_test_gone RENAME TO metric_data; END IF; END $$");
    sql("GRANT UPDATE ON metric_data TO CURRENT_USER");
    sql("DO $$ BEGIN EXECUTE format('ALTER ROLE %I RESET default_transaction_read_only', "
        "current_user); END $$");
}

static void terminate_consumers(void)
{
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
        "'anomalyd' AND pid <> pg_backend_pid()");
}

/* "paused" / "running" / "unknown" of consumer c (its health hash) */
static void health(const char *c, char *st, size_t len)
{
    char key[300], cause[700];
    int64_t since;
    an_health_key(T.input, c, key, sizeof key);
    snprintf(st, len, "unknown");
    if (an_health_get(T.rd, key, st, len, cause, sizeof cause, &since))
        snprintf(st, len, "unknown");
}

/* Every consumer logged `line` more often than base[i] times (the log is
 * the one witness that works whatever server is down). */
static bool all_logged(const e2e_proc *d, const char *line, const size_t *base)
{
    for (int i = 0; i < 2; i++)
        if (e2e_count_lines(d[i].err_path, line) <= base[i])
            return false;
    return true;
}

/* The traffic: model m's row r as a 1-row batch (or the first batch). */
typedef struct model {
    const char *uid;
    e2e_csv csv;
    int64_t sent;   /* last row sent */
} model;

static void send_upto(model *m, int64_t last)
{
    if (m->sent >= last)
        return;
    size_t n = (size_t)(last - m->sent);
    an_result *res = calloc(n, sizeof *res);
    ck_assert_ptr_nonnull(res);
    for (size_t i = 0; i < n; i++)
        res[i] = e2e_inf(m->sent + 1 + (int64_t)i, m->csv.raw[m->sent + i]);
    char id[AN_ID_MAX];
    e2e_xadd_results(&T, m->uid, res, n, AN_ENC_JSON, id);
    free(res);
    m->sent = last;
}

/* Outcome per fault, printed as a table at the end. */
typedef struct figures {
    double pause_s, resume_s;
    int64_t dead, mismatches;
    int paused;
} figures;

/* One fault's run: its models, consumers, proxy and the times of its
 * phases (0: not yet). */
typedef struct pause_run {
    const fault *f;
    model ms[2];
    const char *cons[2];
    e2e_proc d[2];
    pid_t proxy;    /* 0: no proxy */
    int64_t live_sent;
    double next;    /* when the next live row is due */
    double t_inject, t_paused, t_repair, t_resumed;
    size_t npaused[2], nresumed[2]; /* PAUSED / RESUMED lines before the fault / repair */
} pause_run;

/* Two CREATE_PENDING metrics with FIRST + LIVE rows each, their defineModel
 * results and their first FIRST rows sent. */
static void pause_models(pause_run *R)
{
    R->ms[0] = (model){.uid = e2e_uid(&T, "pa")};
    R->ms[1] = (model){.uid = e2e_uid(&T, "pb")};
    e2e_csv_load(e2e_data(JUMPSUP), &R->ms[0].csv);
    e2e_csv_load(e2e_data(EC2), &R->ms[1].csv);
    const int64_t N = FIRST + LIVE;
    for (int i = 0; i < 2; i++) {
        e2e_create_metric(&T, R->ms[i].uid, "e2e.pause", AN_METRIC_CREATE_PENDING);
        e2e_add_rows(&T, R->ms[i].uid, R->ms[i].csv.ts, R->ms[i].csv.value, (size_t)N);
        an_result def = e2e_cmd("define-pause", "defineModel", 0, NULL);
        char id[AN_ID_MAX];
        e2e_xadd_results(&T, R->ms[i].uid, &def, 1, AN_ENC_JSON, id);
        send_upto(&R->ms[i], FIRST);
    }
}

/* The consumers' settings for fault f; with a proxy, it is started and
 * the consumers connect through it. Returns the proxy's pid, 0 for none. */
static pid_t pause_settings(const fault *f)
{
    pid_t proxy = 0;
    int pport = 0;
    e2e_setenv(&T, "ANOMALYD_POSTGRES_RETRY_BUDGET_MS", "3000");
    /* keep the input entries: the check below maps each one to its output */
    e2e_setenv(&T, "ANOMALYD_STREAMS_INPUT_RETENTION", "3600000");
    e2e_setenv(&T, "ANOMALYD_POSTGRES_STATEMENT_TIMEOUT_MS", f->stmt_timeout ? "1000" : "60000");
    /* short liveness so the short form stays short; ops/pause-faults.sh
     * --defaults measures the defaults */
    const char *dflt = getenv("AN_PAUSE_DEFAULT_LIVENESS");
    if (!dflt || !*dflt) {
        e2e_setenv(&T, "ANOMALYD_POSTGRES_TCP_USER_TIMEOUT_MS", "3000");
        e2e_setenv(&T, "ANOMALYD_POSTGRES_KEEPALIVES_IDLE_S", "1");
        e2e_setenv(&T, "ANOMALYD_POSTGRES_KEEPALIVES_INTERVAL_S", "1");
        e2e_setenv(&T, "ANOMALYD_POSTGRES_KEEPALIVES_COUNT", "2");
        e2e_setenv(&T, "ANOMALYD_POSTGRES_RESPONSE_TIMEOUT_MS", "3000");
        e2e_setenv(&T, "ANOMALYD_REDIS_TIMEOUT_MS", "2000");
    }
    if (f->proxy == 1) {
        PGconn *c = an_repo_conn(T.repo);
        proxy = proxy_start(atoi(PQport(c)), &pport);
        char dsn[512];
        snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=%s user=%s", pport, PQdb(c),
                 PQuser(c));
        e2e_setenv(&T, "ANOMALYD_PG_DSN", dsn);
    } else if (f->proxy == 2) {
        an_redis_url u;
        char err[200];
        ck_assert_int_eq(an_redis_url_parse(e2e_env("ANOMALYD_REDIS_URL"), &u, err, sizeof err), 0);
        ck_assert_ptr_nonnull(u.host);
        proxy = proxy_start(u.port, &pport);
        char url[512];
        snprintf(url, sizeof url, "redis://%s%s%s127.0.0.1:%d/%d", u.password ? ":" : "",
                 u.password ? u.password : "", u.password ? "@" : "", pport, u.db);
        e2e_setenv(&T, "ANOMALYD_REDIS_URL", url);
        an_redis_url_free(&u);
    }
    return proxy;
}

/* The fault, once healthy traffic flows (20 live rows sent, row FIRST + 10
 * of the first model scored). */
static void pause_inject(pause_run *R)
{
    const fault *f = R->f;
    /* the lines logged so far (before the fault: a consumer may
     * pause within a millisecond of it) */
    for (int i = 0; i < 2; i++)
        R->npaused[i] = e2e_count_lines(R->d[i].err_path, "PAUSED: ");
    for (int i = 0; f->inject[i]; i++)
        sql(f->inject[i]);
    if (f->terminate)
        terminate_consumers();
    if (f->wrongtype) {
        for (int i = 0; i < 2; i++) {
            void *r = e2e_redis_cmd(&T, "DEL %s", e2e_params_key(&T, R->ms[i].uid));
            freeReplyObject(r);
            r = e2e_redis_cmd(&T, "SET %s not-a-hash", e2e_params_key(&T, R->ms[i].uid));
            freeReplyObject(r);
        }
    }
    if (R->proxy)
        kill(R->proxy, SIGUSR1);
    R->t_inject = e2e_now();
}

/* Both consumers logged their pause: it is visible to anomalyctl status
 * too (when Redis can take it). */
static void pause_seen(pause_run *R)
{
    R->t_paused = e2e_now();
    if (R->f->proxy == 2)
        return;
    for (int i = 0; i < 2; i++) {
        /* written just after the log line: wait for it (bounded) */
        char st[32] = "";
        double hd = e2e_now() + 10;
        do {
            health(R->cons[i], st, sizeof st);
        } while (strcmp(st, "paused") && e2e_now() < hd && (e2e_sleep_ms(20), 1));
        ck_assert_msg(!strcmp(st, "paused"), "%s: %s health %s", R->f->name, R->cons[i], st);
    }
}

/* The repair, a second into the pause (the dead letters so far into fig). */
static void pause_repair(pause_run *R, figures *fig)
{
    const fault *f = R->f;
    fig->dead = e2e_xlen(&T, T.dead);
    for (int i = 0; i < 2; i++)
        R->nresumed[i] = e2e_count_lines(R->d[i].err_path, "RESUMED after");
    for (int i = 0; f->repair[i]; i++)
        sql(f->repair[i]);
    if (f->wrongtype)
        for (int i = 0; i < 2; i++) {
            void *r = e2e_redis_cmd(&T, "DEL %s", e2e_params_key(&T, R->ms[i].uid));
            freeReplyObject(r);
        }
    if (R->proxy)
        kill(R->proxy, SIGUSR2);
    R->t_repair = e2e_now();
}

/* Healthy traffic, then the fault while it flows, the pause, the repair and
 * the resume, until every row is scored and nothing is pending. */
static void pause_drive(pause_run *R, figures *fig)
{
    const int64_t N = FIRST + LIVE;
    double step = 0.04;
    double deadline = e2e_now() + 300;   /* generous: a wait bound, not a figure */
    R->next = e2e_now();
    for (;;) {
        double now = e2e_now();
        ck_assert_msg(now < deadline, "%s: stuck (inject %.1f paused %.1f repair %.1f); p1:\n%s",
                      R->f->name, R->t_inject, R->t_paused, R->t_repair,
                      e2e_tail(R->d[0].err_path, 3000));
        for (int i = 0; i < 2; i++)
            ck_assert_msg(!e2e_poll(&T, &R->d[i]), "%s exited %d; stderr:\n%s", R->cons[i],
                          R->d[i].code, e2e_tail(R->d[i].err_path, 3000));
        if (now >= R->next && R->live_sent < LIVE) {
            R->live_sent++;
            for (int i = 0; i < 2; i++)
                send_upto(&R->ms[i], FIRST + R->live_sent);
            R->next = now + step;
        }
        if (!R->t_inject && R->live_sent >= 20 &&
            e2e_scored_rowid(&T, R->ms[0].uid) >= FIRST + 10)
            pause_inject(R);
        if (R->t_inject && !R->t_paused && all_logged(R->d, "PAUSED: ", R->npaused))
            pause_seen(R);
        if (R->t_paused && !R->t_repair && e2e_now() - R->t_paused > 1.0)
            pause_repair(R, fig);
        if (R->t_repair && !R->t_resumed && all_logged(R->d, "RESUMED after", R->nresumed))
            R->t_resumed = e2e_now();
        if (R->t_resumed && R->live_sent == LIVE && e2e_scored_rowid(&T, R->ms[0].uid) == N &&
            e2e_scored_rowid(&T, R->ms[1].uid) == N && e2e_pending(&T) == 0)
            break;
        e2e_sleep_ms(10);
    }
}

/* Stops both consumers (each must exit 0 and have logged its pause) and
 * the proxy. */
static void pause_stop(pause_run *R)
{
    for (int i = 0; i < 2; i++) {
        kill(R->d[i].pid, SIGTERM);
        e2e_wait(&T, &R->d[i], 15000);
        ck_assert_msg(R->d[i].code == 0, "%s: exit %d; stderr:\n%s", R->cons[i], R->d[i].code,
                      e2e_tail(R->d[i].err_path, 3000));
        ck_assert_msg(e2e_count_lines(R->d[i].err_path, "PAUSED: ") >= 1,
                      "%s never logged its pause; stderr:\n%s", R->cons[i],
                      e2e_tail(R->d[i].err_path, 3000));
    }
    if (R->proxy) {
        kill(R->proxy, SIGKILL);
        waitpid(R->proxy, NULL, 0);
    }
}

/* Model i of R: every row as the offline scoring of the same batches, each
 * of its input entries (in) published once with exactly its rows (outs). */
static void pause_check_model(pause_run *R, int i, const json_t *outs, const an_entry_list *in)
{
    const int64_t N = FIRST + LIVE;
    const model *mo = &R->ms[i];
    e2e_offline off;
    char sched[32];
    snprintf(sched, sizeof sched, "%d,1", FIRST);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/head%d.csv", T.tmpdir, i);
    e2e_csv_head(e2e_data(i ? EC2 : JUMPSUP), path, (size_t)N);
    e2e_offline_run(&T, path, "--schedule", sched, &off);
    e2e_expect_rows_match_offline(&T, mo->uid, &off);
    e2e_offline_free(&off);
    e2e_expect_params_cache(&T, mo->uid, N);
    an_metric m;
    e2e_get_metric(&T, mo->uid, &m);
    an_data_rows rows = {0};
    e2e_get_rows(&T, mo->uid, 1, N, &rows);
    int64_t next_row = 1;
    bool define = true;   /* each model's first entry: the defineModel result */
    for (size_t k = 0; k < in->n; k++) {
        const an_field *mf = an_entry_field(&in->v[k], "model");
        if (!mf || strlen(mo->uid) != mf->value_len ||
            strncmp(mf->value, mo->uid, mf->value_len))
            continue;
        json_t *o = e2e_outputs_for(outs, in->v[k].id);
        ck_assert_msg(json_array_size(o) == 1, "%s: entry %s has %zu outputs", R->f->name,
                      in->v[k].id, json_array_size(o));
        if (!define)
            e2e_expect_inference_entry(json_array_get(o, 0), &m, &rows, &next_row,
                                       in->v[k].id, "zlib");
        define = false;
        json_decref(o);
    }
    ck_assert_msg(next_row == N + 1, "%s: model %d published rows up to %" PRId64, R->f->name,
                  i, next_row - 1);
    an_data_rows_free(&rows);
    an_metric_clear(&m);
}

static void run_fault(const fault *f, figures *fig)
{
    memset(fig, 0, sizeof *fig);
    repair_all();
    static pause_run R;
    R = (pause_run){.f = f, .cons = {"p1", "p2"}};
    pause_models(&R);
    R.proxy = pause_settings(f);
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {e2e_bin("anomalyd"), "--consumer", R.cons[i], NULL};
        e2e_spawn(&T, &R.d[i], R.cons[i], argv);
    }
    pause_drive(&R, fig);
    fig->paused = 2;
    fig->pause_s = R.t_paused - R.t_inject;
    fig->resume_s = R.t_resumed - R.t_repair;
    pause_stop(&R);

    /* nothing dead-lettered, then or since */
    int64_t dead = e2e_xlen(&T, T.dead);
    fig->dead = fig->dead > dead ? fig->dead : dead;
    ck_assert_msg(fig->dead == 0, "%s: %" PRId64 " dead letters", f->name, fig->dead);

    json_t *outs = e2e_outputs(&T);
    an_entry_list in;
    e2e_xrange_all(&T, T.input, &in);
    for (int i = 0; i < 2; i++) {
        pause_check_model(&R, i, outs, &in);
        e2e_csv_free(&R.ms[i].csv);
    }
    an_entry_list_free(&in);
    json_decref(outs);
    fig->mismatches = 0;   /* every comparison above asserts */
}

START_TEST(lasting_faults)
{
    const char *sel = getenv("AN_PAUSE_FAULTS");
    if (!sel || !*sel)
        sel = "disk_full,wrongtype,redis_blackhole";
    figures figs[sizeof faults / sizeof faults[0]];
    bool ran[sizeof faults / sizeof faults[0]] = {0};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        const char *p = strstr(sel, faults[i].name);
        size_t l = strlen(faults[i].name);
        if (!p || (p > sel && p[-1] != ',') || (p[l] && p[l] != ','))
            continue;
        double t0 = e2e_now();
        run_fault(&faults[i], &figs[i]);
        ran[i] = true;
        fprintf(stderr, "[e2e] pause %s: pause %.2f s, resume %.2f s, dead %" PRId64
                        ", mismatches %" PRId64 " (%.1f s)\n",
                faults[i].name, figs[i].pause_s, figs[i].resume_s, figs[i].dead,
                figs[i].mismatches, e2e_now() - t0);
        e2e_fini(&T);   /* a fresh prefix (streams, group) per fault */
        e2e_init(&T, "pause");
    }
    fprintf(stderr, "fault            K time-to-pause-s time-to-resume-s dead-letters mismatches\n");
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        if (ran[i])
            fprintf(stderr, "%-16s 2 %15.2f %16.2f %12" PRId64 " %10" PRId64 "\n",
                    faults[i].name, figs[i].pause_s, figs[i].resume_s, figs[i].dead,
                    figs[i].mismatches);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pause");
    TCase *tc = tcase_create("lasting_faults");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, lasting_faults);
    suite_add_tcase(s, tc);
    return an_check_run(s, CK_VERBOSE);
}
