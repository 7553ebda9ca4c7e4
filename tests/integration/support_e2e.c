/* support_e2e.c: see support_e2e.h. */
#define _GNU_SOURCE
#include "support_e2e.h"
#include "support_repo.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

extern char **environ;

/* The stack is shared: a server restart (the fault tests', or another
 * suite's) must not fail a check that only reads. Calls on the context's
 * connections are retried on AN_ETRANSIENT for up to E2E_RETRY_S seconds,
 * reconnecting in between. */
#define E2E_RETRY_S 60.0
#define REDIS_RETRY(t, call)                                                         \
    ({                                                                               \
        int rc_;                                                                     \
        double dl_ = e2e_now() + E2E_RETRY_S;                                        \
        while ((rc_ = (call)) == AN_ETRANSIENT && e2e_now() < dl_) {                 \
            e2e_sleep_ms(200);                                                       \
            an_redis_reconnect((t)->rd);                                             \
        }                                                                            \
        rc_;                                                                         \
    })
#define PG_RETRY(t, call)                                                            \
    ({                                                                               \
        int rc_;                                                                     \
        double dl_ = e2e_now() + E2E_RETRY_S;                                        \
        while ((rc_ = (call)) == AN_ETRANSIENT && e2e_now() < dl_) {                 \
            e2e_sleep_ms(200);                                                       \
            an_repo_reconnect((t)->repo);                                            \
        }                                                                            \
        rc_;                                                                         \
    })

/* ------------------------------------------------------------ basics */

const char *e2e_env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && *v,
                  "environment variable %s is not set: run through ctest after "
                  "`ops/stack.sh up; eval \"$(ops/stack.sh env)\"`",
                  name);
    return v;
}

double e2e_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void e2e_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static char *rot_buf(size_t *len)
{
    static char bufs[8][PATH_MAX + 64];
    static int k;
    *len = sizeof bufs[0];
    return bufs[k++ % 8];
}

static const char *path_join(const char *env, const char *rel)
{
    size_t len;
    char *b = rot_buf(&len);
    snprintf(b, len, "%s/%s", e2e_env(env), rel);
    return b;
}

const char *e2e_bin(const char *prog) { return path_join("AN_BIN_DIR", prog); }
const char *e2e_data(const char *rel) { return path_join("AN_TEST_DATA", rel); }
const char *e2e_src(const char *rel) { return path_join("AN_SOURCE_DIR", rel); }

bool e2e_same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* ------------------------------------------------------------ context */

static void rm_rf(const char *dir);

void e2e_setenv(e2e *t, const char *name, const char *value)
{
    size_t nl = strlen(name);
    char *kv = NULL;
    ck_assert_int_ge(asprintf(&kv, "%s=%s", name, value), 0);
    for (int i = 0; i < t->nenv; i++) {
        if (strncmp(t->env[i], name, nl) == 0 && t->env[i][nl] == '=') {
            free(t->env[i]);
            t->env[i] = kv;
            return;
        }
    }
    ck_assert_int_lt(t->nenv, E2E_MAX_ENV);
    t->env[t->nenv++] = kv;
}

void e2e_init(e2e *t, const char *tag)
{
    static int counter;
    static bool db_ready;
    char err[512];

    memset(t, 0, sizeof *t);
    /* A server restart (ours or another test's) must not kill the test
     * process through a write on a dead socket: it gets EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    const char *url = e2e_env("ANOMALYD_REDIS_URL");
    const char *dsn = e2e_env("ANOMALYD_PG_DSN");
    e2e_env("AN_BIN_DIR");
    e2e_env("AN_SOURCE_DIR");
    e2e_env("AN_TEST_DATA");

    snprintf(t->prefix, sizeof t->prefix, "t%d_%d:", (int)getpid(), ++counter);
    snprintf(t->input, sizeof t->input, "%sresults", t->prefix);
    snprintf(t->output, sizeof t->output, "%smodel_results", t->prefix);
    snprintf(t->dead, sizeof t->dead, "%sdead", t->prefix);
    snprintf(t->params_prefix, sizeof t->params_prefix, "%sparams:", t->prefix);

    int rc;
    double deadline = e2e_now() + E2E_RETRY_S;
    while ((rc = an_redis_connect(url, NULL, &t->rd, err, sizeof err)) == AN_ETRANSIENT &&
           e2e_now() < deadline)
        e2e_sleep_ms(200); /* a restart of the shared stack in progress */
    ck_assert_msg(rc == 0, "redis connect %s: %s", url, err);
    an_repo_options o;
    memset(&o, 0, sizeof o);
    o.dsn = dsn;
    o.application_name = "test_service";
    o.connect_timeout_ms = 5000;
    o.statement_timeout_ms = 60000;
    o.retry_budget_ms = 10000;
    o.retry_initial_ms = 100;
    o.retry_max_delay_ms = 2000;
    t->repo = an_repo_new(&o);
    ck_assert_ptr_nonnull(t->repo);
    rc = PG_RETRY(t, an_repo_connect(t->repo));
    ck_assert_msg(rc == 0, "postgres connect: %s", an_repo_errstr(t->repo));

    /* (after the connections: a failed setup does not run the teardown) */
    const char *tmp = getenv("TMPDIR");
    snprintf(t->tmpdir, sizeof t->tmpdir, "%s/an-e2e-%s-%d-%d-XXXXXX",
             tmp && *tmp ? tmp : "/tmp", tag, (int)getpid(), counter);
    ck_assert_msg(mkdtemp(t->tmpdir) != NULL, "mkdtemp %s: %s", t->tmpdir,
                  strerror(errno));

    e2e_setenv(t, "ANOMALYD_STREAMS_INPUT", t->input);
    e2e_setenv(t, "ANOMALYD_STREAMS_OUTPUT", t->output);
    e2e_setenv(t, "ANOMALYD_STREAMS_DEAD_LETTER", t->dead);
    e2e_setenv(t, "ANOMALYD_STREAMS_PARAMS_PREFIX", t->params_prefix);
    e2e_setenv(t, "ANOMALYD_STREAMS_GROUP", E2E_GROUP);
    e2e_setenv(t, "ANOMALYD_STREAMS_CLAIM_IDLE_MS", "2000");
    e2e_setenv(t, "ANOMALYD_STREAMS_BLOCK_MS", "200");
    /* The metrics endpoint stays on (it is part of what runs), on any free
     * port: several consumers, and other stacks' tests, share this host. */
    e2e_setenv(t, "ANOMALYD_HTTP_LISTEN", "127.0.0.1:0");

    if (!db_ready) {
        e2e_proc p;
        e2e_run(t, &p, "anomalyctl db init", 60000, e2e_bin("anomalyctl"), "db",
                "init", NULL);
        E2E_EXPECT_EXIT0(&p);
        db_ready = true;
    }
}

void e2e_fini(e2e *t)
{
    for (int i = 0; i < E2E_MAX_PROCS; i++) {
        if (t->pids[i] > 0) {
            kill(t->pids[i], SIGKILL);
            waitpid(t->pids[i], NULL, 0);
            t->pids[i] = 0;
        }
    }
    const char *keep = getenv("AN_E2E_KEEP");
    bool cleanup = !(keep && *keep && strcmp(keep, "0") != 0);
    if (cleanup && t->rd) {
        REDIS_RETRY(t, an_del(t->rd, t->input, NULL));
        REDIS_RETRY(t, an_del(t->rd, t->output, NULL));
        REDIS_RETRY(t, an_del(t->rd, t->dead, NULL));
        char akey[512];
        REDIS_RETRY(t, an_del(t->rd, an_attempts_key(t->input, akey, sizeof akey), NULL));
        for (int i = 0; i < t->nuids; i++)
            REDIS_RETRY(t, an_del(t->rd, e2e_params_key(t, t->uids[i]), NULL));
    }
    if (cleanup && t->repo) {
        an_repo_rollback(t->repo);
        for (int i = 0; i < t->nuids; i++)
            PG_RETRY(t, trepo_delete_metric(t->repo, t->uids[i]));
    }
    if (!cleanup)
        fprintf(stderr, "AN_E2E_KEEP: kept prefix %s, tmpdir %s\n", t->prefix,
                t->tmpdir);
    else if (t->tmpdir[0])
        rm_rf(t->tmpdir);
    for (int i = 0; i < t->nuids; i++)
        free(t->uids[i]);
    for (int i = 0; i < t->nenv; i++)
        free(t->env[i]);
    an_redis_free(t->rd);
    an_repo_free(t->repo);
    memset(t, 0, sizeof *t);
}

const char *e2e_uid(e2e *t, const char *tag)
{
    ck_assert_int_lt(t->nuids, E2E_MAX_UIDS);
    char buf[64];
    /* prefix without its ':' + '_' + n + '_' + tag */
    snprintf(buf, sizeof buf, "%.*s_%d_%s", (int)strlen(t->prefix) - 1, t->prefix,
             t->nuids, tag);
    buf[AN_UID_MAX] = '\0';
    t->uids[t->nuids] = strdup(buf);
    ck_assert_ptr_nonnull(t->uids[t->nuids]);
    return t->uids[t->nuids++];
}

const char *e2e_params_key(e2e *t, const char *uid)
{
    size_t len;
    char *b = rot_buf(&len);
    snprintf(b, len, "%s%s", t->params_prefix, uid);
    return b;
}

/* ------------------------------------------------------------ files */

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

char *e2e_slurp(const char *path, size_t *lenp)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            break;
        if (len + 4096 + 1 > cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0)
            break;
    }
    fclose(f);
    if (buf) {
        buf[len] = '\0';
        if (lenp)
            *lenp = len;
    }
    return buf;
}

const char *e2e_tail(const char *path, size_t maxbytes)
{
    static char bufs[4][8192];
    static int k;
    char *b = bufs[k++ % 4];
    if (maxbytes >= sizeof bufs[0])
        maxbytes = sizeof bufs[0] - 1;
    b[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(b, sizeof bufs[0], "(cannot open %s)", path);
        return b;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)maxbytes ? size - (long)maxbytes : 0;
    fseek(f, from, SEEK_SET);
    size_t r = fread(b, 1, maxbytes, f);
    b[r] = '\0';
    fclose(f);
    if (r == 0)
        snprintf(b, sizeof bufs[0], "(empty: %s)", path);
    return b;
}

size_t e2e_count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0, n = 0;
    while (getline(&line, &cap, f) >= 0)
        if (strstr(line, needle))
            n++;
    free(line);
    fclose(f);
    return n;
}

/* ------------------------------------------------------------ processes */

/* environ minus what the context sets, plus the context's variables. */
static char **child_env(e2e *t)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + (size_t)t->nenv + 1, sizeof *envp);
    ck_assert_ptr_nonnull(envp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        /* Drop any stray stream setting of the caller's shell too: only the
         * context decides which keys the children use. */
        if (strncmp(environ[i], "ANOMALYD_STREAMS_", 17) == 0)
            overridden = true;
        for (int j = 0; j < t->nenv && !overridden; j++) {
            const char *eq = strchr(t->env[j], '=');
            size_t nl = (size_t)(eq - t->env[j]);
            if (strncmp(environ[i], t->env[j], nl) == 0 && environ[i][nl] == '=')
                overridden = true;
        }
        if (!overridden)
            envp[k++] = environ[i];
    }
    for (int j = 0; j < t->nenv; j++)
        envp[k++] = t->env[j];
    envp[k] = NULL;
    return envp;
}

void e2e_spawn(e2e *t, e2e_proc *p, const char *label, const char *const *argv)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    int seq = ++t->seq;
    snprintf(p->out_path, sizeof p->out_path, "%s/%03d.out", t->tmpdir, seq);
    snprintf(p->err_path, sizeof p->err_path, "%s/%03d.err", t->tmpdir, seq);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, p->out_path, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&fa, 2, p->err_path, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    char **envp = child_env(t);
    int rc = posix_spawn(&p->pid, argv[0], &fa, NULL, (char *const *)argv, envp);
    free(envp);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_msg(rc == 0, "cannot start %s (%s): %s", label, argv[0], strerror(rc));
    p->t_start = e2e_now();
    for (int i = 0; i < E2E_MAX_PROCS; i++) {
        if (t->pids[i] == 0) {
            t->pids[i] = p->pid;
            break;
        }
    }
}

static void reaped(e2e *t, e2e_proc *p, int status)
{
    p->done = true;
    p->t_end = e2e_now();
    if (WIFEXITED(status))
        p->code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        p->code = 128 + WTERMSIG(status);
    else
        p->code = 255;
    for (int i = 0; i < E2E_MAX_PROCS; i++)
        if (t->pids[i] == p->pid)
            t->pids[i] = 0;
}

bool e2e_poll(e2e *t, e2e_proc *p)
{
    if (p->done)
        return true;
    int status;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid) {
        reaped(t, p, status);
        return true;
    }
    return false;
}

int e2e_wait(e2e *t, e2e_proc *p, int timeout_ms)
{
    double deadline = e2e_now() + timeout_ms / 1000.0;
    while (!e2e_poll(t, p)) {
        if (e2e_now() >= deadline) {
            kill(p->pid, SIGKILL);
            int status;
            waitpid(p->pid, &status, 0);
            reaped(t, p, status);
            p->code = -1;
            break;
        }
        e2e_sleep_ms(20);
    }
    return p->code;
}

int e2e_run(e2e *t, e2e_proc *p, const char *label, int timeout_ms, const char *prog,
            ...)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = prog;
    va_list ap;
    va_start(ap, prog);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, 63);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    e2e_spawn(t, p, label, argv);
    return e2e_wait(t, p, timeout_ms);
}

void e2e_run_anomalyd(e2e *t, e2e_proc *p, const char *consumer, int idle_ms,
                      int timeout_ms)
{
    char idle[32], label[96];
    snprintf(idle, sizeof idle, "%d", idle_ms);
    snprintf(label, sizeof label, "anomalyd --consumer %s", consumer);
    e2e_run(t, p, label, timeout_ms, e2e_bin("anomalyd"), "--consumer", consumer,
            "--exit-when-idle", idle, NULL);
    E2E_EXPECT_EXIT0(p);
}

void e2e_replay(e2e *t, const char *csv, const char *name, const char *uid,
                long batch_size, long live_after, long expect_rows,
                long expect_entries)
{
    char bs[32], la[32];
    snprintf(bs, sizeof bs, "%ld", batch_size);
    snprintf(la, sizeof la, "%ld", live_after);
    e2e_proc p;
    if (live_after >= 0)
        e2e_run(t, &p, "anomalyctl replay", 300000, e2e_bin("anomalyctl"), "replay",
                "--csv", csv, "--metric", name, "--uid", uid, "--batch-size", bs,
                "--live-after", la, NULL);
    else
        e2e_run(t, &p, "anomalyctl replay", 300000, e2e_bin("anomalyctl"), "replay",
                "--csv", csv, "--metric", name, "--uid", uid, "--batch-size", bs, NULL);
    E2E_EXPECT_EXIT0(&p);
    char *out = e2e_slurp(p.out_path, NULL);
    ck_assert_ptr_nonnull(out);
    char want[128];
    snprintf(want, sizeof want, "uid=%s ", uid);
    ck_assert_msg(strstr(out, "metric ") && strstr(out, want),
                  "replay output lacks 'metric uid=%s': %s", uid, out);
    if (expect_rows >= 0) {
        snprintf(want, sizeof want, " rows=%ld ", expect_rows);
        ck_assert_msg(strstr(out, want), "replay output lacks '%s': %s", want, out);
    }
    if (expect_entries >= 0) {
        snprintf(want, sizeof want, " entries=%ld", expect_entries);
        char *at = strstr(out, want);
        ck_assert_msg(at && (at[strlen(want)] == ' ' || at[strlen(want)] == '\n' ||
                             at[strlen(want)] == '\0'),
                      "replay output lacks '%s': %s", want, out);
    }
    free(out);
}

int e2e_stack(e2e *t, const char *verb, e2e_proc *p)
{
    char label[96];
    snprintf(label, sizeof label, "ops/stack.sh %s", verb);
    return e2e_run(t, p, label, 120000, e2e_src("ops/stack.sh"), verb, NULL);
}

/* ------------------------------------------------------------ offline */

static void split_csv_line(char *line, char **f, int nf, int *got)
{
    int k = 0;
    f[k++] = line;
    for (char *c = line; *c && k < nf; c++) {
        if (*c == ',') {
            *c = '\0';
            f[k++] = c + 1;
        }
    }
    *got = k;
}

static double parse_double(const char *s, const char *what, size_t line)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    while (*end == ' ' || *end == '\r' || *end == '\n')
        end++;
    ck_assert_msg(end != s && *end == '\0' && errno == 0,
                  "%s line %zu: '%s' is not a number", what, line, s);
    return d;
}

void e2e_offline_run(e2e *t, const char *csv, const char *opt, const char *optval,
                     e2e_offline *out)
{
    memset(out, 0, sizeof *out);
    e2e_proc p;
    e2e_run(t, &p, "anomalyctl likelihood", 300000, e2e_bin("anomalyctl"), "likelihood",
            "--csv", csv, opt, optval, NULL);
    E2E_EXPECT_EXIT0(&p);
    FILE *f = fopen(p.out_path, "r");
    ck_assert_ptr_nonnull(f);
    char *line = NULL;
    size_t cap = 0, cap_rows = 0, lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (lineno == 1) {
            ck_assert_msg(strncmp(line, "rowid,timestamp,value,raw_score,anomaly_score,"
                                        "display_value", 58) == 0,
                          "anomalyctl likelihood header: %s", line);
            continue;
        }
        if (line[0] == '\n' || line[0] == '\0')
            continue;
        if (out->n == cap_rows) {
            cap_rows = cap_rows ? cap_rows * 2 : 4096;
            out->rowid = realloc(out->rowid, cap_rows * sizeof *out->rowid);
            out->value = realloc(out->value, cap_rows * sizeof *out->value);
            out->raw = realloc(out->raw, cap_rows * sizeof *out->raw);
            out->score = realloc(out->score, cap_rows * sizeof *out->score);
            out->display = realloc(out->display, cap_rows * sizeof *out->display);
            ck_assert(out->rowid && out->value && out->raw && out->score && out->display);
        }
        char *fld[6];
        int nf;
        split_csv_line(line, fld, 6, &nf);
        ck_assert_msg(nf == 6, "anomalyctl likelihood line %zu has %d fields", lineno, nf);
        size_t i = out->n++;
        out->rowid[i] = strtoll(fld[0], NULL, 10);
        out->value[i] = parse_double(fld[2], "likelihood value", lineno);
        out->raw[i] = parse_double(fld[3], "likelihood raw_score", lineno);
        out->score[i] = parse_double(fld[4], "likelihood anomaly_score", lineno);
        out->display[i] = strtoll(fld[5], NULL, 10);
    }
    free(line);
    fclose(f);
    ck_assert_msg(out->n > 0, "anomalyctl likelihood printed no rows");
}

void e2e_offline_free(e2e_offline *o)
{
    free(o->rowid);
    free(o->value);
    free(o->raw);
    free(o->score);
    free(o->display);
    memset(o, 0, sizeof *o);
}

/* ------------------------------------------------------------ CSV */

static double parse_ts(const char *s, size_t lineno)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int y, mo, d, h, mi, sec;
    ck_assert_msg(sscanf(s, "%4d-%2d-%2d%*1[ T]%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) == 6,
                  "CSV line %zu: bad timestamp '%s'", lineno, s);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (double)timegm(&tm);
}

void e2e_csv_load(const char *path, e2e_csv *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, lineno = 0, cap_rows = 0;
    int cts = -1, cv = -1, cr = -1;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        char *fld[16];
        int nf;
        split_csv_line(line, fld, 16, &nf);
        if (lineno == 1) {
            for (int i = 0; i < nf; i++) {
                if (!strcmp(fld[i], "timestamp")) cts = i;
                else if (!strcmp(fld[i], "value")) cv = i;
                else if (!strcmp(fld[i], "raw_score")) cr = i;
            }
            ck_assert_msg(cts >= 0 && cv >= 0 && cr >= 0, "%s: bad header", path);
            continue;
        }
        if (out->n == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 4096;
            out->ts = realloc(out->ts, cap_rows * sizeof *out->ts);
            out->value = realloc(out->value, cap_rows * sizeof *out->value);
            out->raw = realloc(out->raw, cap_rows * sizeof *out->raw);
            ck_assert(out->ts && out->value && out->raw);
        }
        size_t i = out->n++;
        out->ts[i] = parse_ts(fld[cts], lineno);
        out->value[i] = parse_double(fld[cv], path, lineno);
        out->raw[i] = parse_double(fld[cr], path, lineno);
    }
    free(line);
    fclose(f);
}

void e2e_csv_free(e2e_csv *c)
{
    free(c->ts);
    free(c->value);
    free(c->raw);
    memset(c, 0, sizeof *c);
}

void e2e_csv_head(const char *src, const char *dst, size_t n)
{
    FILE *in = fopen(src, "r");
    ck_assert_msg(in != NULL, "cannot open %s", src);
    FILE *out = fopen(dst, "w");
    ck_assert_msg(out != NULL, "cannot create %s", dst);
    char *line = NULL;
    size_t cap = 0, k = 0;
    while (k < n + 1 && getline(&line, &cap, in) >= 0) {
        fputs(line, out);
        k++;
    }
    free(line);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
    ck_assert_msg(k == n + 1, "%s has fewer than %zu rows", src, n);
}

long e2e_csv_rows(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    long n = -1; /* header */
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0)
        if (line[0] != '\n' && line[0] != '\r')
            n++;
    free(line);
    fclose(f);
    return n;
}

long e2e_model_csv(e2e *t, const char *file, long rows, int i, char *csv, size_t csvlen)
{
    char rel[400];
    snprintf(rel, sizeof rel, "likelihood/htmengine/%s", file);
    const char *full = e2e_data(rel);
    if (rows > 0) {
        snprintf(csv, csvlen, "%s/model%d.csv", t->tmpdir, i);
        e2e_csv_head(full, csv, (size_t)rows);
        return rows;
    }
    snprintf(csv, csvlen, "%s", full);
    return e2e_csv_rows(full);
}

/* ------------------------------------------------------------ PostgreSQL */

const char *e2e_parameters(const char *name)
{
    size_t len;
    char *b = rot_buf(&len);
    snprintf(b, len,
             "{\"datasource\": \"custom\", \"metricSpec\": {\"metric\": \"%s\", "
             "\"resource\": \"e2e-server\", \"userInfo\": {\"metricType\": \"e2e\", "
             "\"symbol\": \"E2E\"}}, \"modelParams\": {}}",
             name);
    return b;
}

void e2e_create_metric(e2e *t, const char *uid, const char *name, int status)
{
    an_new_metric m;
    memset(&m, 0, sizeof m);
    m.uid = uid;
    m.name = name;
    m.server = "e2e-server";
    m.datasource = "custom";
    m.description = "e2e";
    m.location = "e2e-lab";
    m.parameters = e2e_parameters(name);
    m.status = status;
    m.model_params = "{\"modelConfig\": {}, \"anomalyLikelihoodParams\": null}";
    int rc = PG_RETRY(t, an_repo_create_metric(t->repo, &m));
    ck_assert_msg(rc == 0, "create metric %s: %d %s", uid, rc, an_repo_errstr(t->repo));
}

int64_t e2e_add_rows(e2e *t, const char *uid, const double *ts, const double *values,
                     size_t n)
{
    int64_t first = 0;
    for (size_t off = 0; off < n; off += 5000) {
        size_t k = n - off < 5000 ? n - off : 5000;
        int64_t f = 0;
        int rc = an_repo_add_rows(t->repo, uid, ts + off, values + off, k, &f);
        ck_assert_msg(rc == 0, "add rows %s: %d %s", uid, rc, an_repo_errstr(t->repo));
        if (off == 0)
            first = f;
    }
    return first;
}

void e2e_add_simple_rows(e2e *t, const char *uid, size_t n)
{
    double *ts = malloc(n * sizeof *ts), *v = malloc(n * sizeof *v);
    ck_assert(ts && v);
    for (size_t i = 0; i < n; i++) {
        ts[i] = 1396310400.0 + 300.0 * (double)i; /* 2014-04-01 */
        v[i] = 10.0 + (double)i;
    }
    int64_t first = e2e_add_rows(t, uid, ts, v, n);
    ck_assert_int_eq(first, 1);
    free(ts);
    free(v);
}

void e2e_get_metric(e2e *t, const char *uid, an_metric *m)
{
    memset(m, 0, sizeof *m);
    int rc = PG_RETRY(t, an_repo_get_metric(t->repo, uid, AN_LOCK_NONE, m));
    ck_assert_msg(rc == 0, "get metric %s: %d %s", uid, rc, an_repo_errstr(t->repo));
}

bool e2e_metric_exists(e2e *t, const char *uid)
{
    an_metric m;
    memset(&m, 0, sizeof m);
    int rc = PG_RETRY(t, an_repo_get_metric(t->repo, uid, AN_LOCK_NONE, &m));
    an_metric_clear(&m);
    ck_assert_msg(rc == 0 || rc == AN_ENOTFOUND, "get metric %s: %d %s", uid, rc,
                  an_repo_errstr(t->repo));
    return rc == 0;
}

void e2e_get_rows(e2e *t, const char *uid, int64_t first, int64_t last,
                  an_data_rows *rows)
{
    int rc = PG_RETRY(t, trepo_get_rows(t->repo, uid, first, last, rows));
    ck_assert_msg(rc == 0, "get rows %s: %d %s", uid, rc, trepo_errstr());
}

json_t *e2e_stored_params(const an_metric *m)
{
    ck_assert_msg(m->model_params != NULL, "metric %s has NULL model_params", m->uid);
    json_t *mp = e2e_parse(m->model_params, "metric.model_params");
    ck_assert_msg(json_is_object(mp), "model_params is not an object: %s", m->model_params);
    json_t *p = json_object_get(mp, "anomalyLikelihoodParams");
    json_t *r = p ? json_incref(p) : json_null();
    json_decref(mp);
    return r;
}

/* ------------------------------------------------------------ Redis */

an_field e2e_field(const char *name, const char *value)
{
    an_field f = {name, strlen(name), value, strlen(value)};
    return f;
}

an_field e2e_field_bin(const char *name, const void *value, size_t len)
{
    an_field f = {name, strlen(name), value, len};
    return f;
}

an_result e2e_inf(int64_t rowid, double score)
{
    an_result r;
    memset(&r, 0, sizeof r);
    r.kind = AN_RES_INFERENCE;
    r.u.inf.rowid = rowid;
    r.u.inf.status = 0;
    r.u.inf.has_score = true;
    r.u.inf.score = score;
    return r;
}

an_result e2e_inf_fail(int64_t rowid, const char *error)
{
    an_result r;
    memset(&r, 0, sizeof r);
    r.kind = AN_RES_INFERENCE;
    r.u.inf.rowid = rowid;
    r.u.inf.status = 1;
    r.u.inf.error = (char *)error;
    return r;
}

an_result e2e_cmd(const char *command_id, const char *method, int64_t status,
                  const char *error)
{
    an_result r;
    memset(&r, 0, sizeof r);
    r.kind = AN_RES_COMMAND;
    r.u.cmd.command_id = (char *)command_id;
    r.u.cmd.method = (char *)method;
    r.u.cmd.status = status;
    r.u.cmd.error = (char *)error;
    return r;
}

void e2e_xadd_fields(e2e *t, const an_field *f, size_t n, char id[AN_ID_MAX])
{
    int rc = REDIS_RETRY(t, an_xadd(t->rd, t->input, 0, f, n, id));
    ck_assert_msg(rc == 0, "XADD %s: %s", t->input, an_redis_errstr(t->rd));
}

void e2e_xadd_results(e2e *t, const char *uid, const an_result *res, size_t n,
                      an_encoding enc, char id[AN_ID_MAX])
{
    char *batch = NULL, err[256];
    size_t blen = 0;
    int rc = an_batch_encode(res, n, enc, &batch, &blen, err, sizeof err);
    ck_assert_msg(rc == 0, "an_batch_encode: %s", err);
    an_field f[3] = {e2e_field("model", uid), e2e_field_bin("batch", batch, blen),
                     e2e_field("encoding", an_encoding_name(enc))};
    e2e_xadd_fields(t, f, enc == AN_ENC_JSON ? 2 : 3, id);
    free(batch);
}

int64_t e2e_pending(e2e *t)
{
    an_pending_summary s;
    memset(&s, 0, sizeof s);
    int rc = REDIS_RETRY(t, an_pending_summary_get(t->rd, t->input, E2E_GROUP, &s));
    ck_assert_msg(rc == 0, "XPENDING %s: %s", t->input, an_redis_errstr(t->rd));
    int64_t n = s.count;
    an_pending_summary_free(&s);
    return n;
}

int64_t e2e_xlen(e2e *t, const char *stream)
{
    int64_t n = -1;
    int rc = REDIS_RETRY(t, an_xlen(t->rd, stream, &n));
    ck_assert_msg(rc == 0, "XLEN %s: %s", stream, an_redis_errstr(t->rd));
    return n;
}

void e2e_xrange_all(e2e *t, const char *stream, an_entry_list *out)
{
    memset(out, 0, sizeof *out);
    int rc = REDIS_RETRY(t, an_xrange(t->rd, stream, "-", "+", 0, false, out));
    ck_assert_msg(rc == 0, "XRANGE %s: %s", stream, an_redis_errstr(t->rd));
}

json_t *e2e_outputs(e2e *t)
{
    an_entry_list l;
    e2e_xrange_all(t, t->output, &l);
    json_t *arr = json_array();
    ck_assert_ptr_nonnull(arr);
    for (size_t i = 0; i < l.n; i++) {
        json_t *o = NULL;
        char err[512];
        int rc = an_output_entry_decode(l.v[i].id, l.v[i].fields, l.v[i].nfields, 0, &o,
                                        err, sizeof err);
        ck_assert_msg(rc == 0, "output entry %s does not decode: %s", l.v[i].id, err);
        json_array_append_new(arr, o);
    }
    an_entry_list_free(&l);
    return arr;
}

json_t *e2e_outputs_for(const json_t *outputs, const char *source)
{
    json_t *r = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(outputs, i, o) {
        const char *s = json_string_value(json_object_get(o, "source"));
        if (s && !strcmp(s, source))
            json_array_append(r, o);
    }
    return r;
}

void *e2e_redis_cmd(e2e *t, const char *fmt, ...)
{
    redisContext *c = an_redis_ctx(t->rd);
    if (!c) {
        an_redis_ping(t->rd); /* reconnects a broken context */
        c = an_redis_ctx(t->rd);
    }
    ck_assert_ptr_nonnull(c);
    redisReply *rep = NULL;
    double deadline = e2e_now() + E2E_RETRY_S;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        rep = redisvCommand(c, fmt, ap);
        va_end(ap);
        if (rep || e2e_now() >= deadline)
            break;
        e2e_sleep_ms(200);
        an_redis_reconnect(t->rd);
        c = an_redis_ctx(t->rd);
        if (!c) {
            an_redis_ping(t->rd);
            c = an_redis_ctx(t->rd);
        }
        ck_assert_ptr_nonnull(c);
    }
    ck_assert_msg(rep != NULL, "redis command '%s' failed: %s", fmt, c->errstr);
    ck_assert_msg(rep->type != REDIS_REPLY_ERROR, "redis command '%s': %s", fmt, rep->str);
    return rep;
}

/* ------------------------------------------------------------ JSON */

static bool same_rec(const json_t *a, const json_t *b, char *path, size_t plen,
                     char *where, size_t wlen)
{
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        if (x == y)
            return true;
        snprintf(where, wlen, "%s: %.17g != %.17g", path, x, y);
        return false;
    }
    if (json_typeof(a) != json_typeof(b)) {
        snprintf(where, wlen, "%s: types differ (%s vs %s)", path, e2e_js(a), e2e_js(b));
        return false;
    }
    size_t used = strlen(path);
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) {
            snprintf(where, wlen, "%s: %zu keys vs %zu keys (%s vs %s)", path,
                     json_object_size(a), json_object_size(b), e2e_js(a), e2e_js(b));
            return false;
        }
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            json_t *w = json_object_get(b, k);
            snprintf(path + used, plen - used, ".%s", k);
            if (!w) {
                snprintf(where, wlen, "%s: missing on the right", path);
                return false;
            }
            if (!same_rec(v, w, path, plen, where, wlen))
                return false;
            path[used] = '\0';
        }
        return true;
    }
    case JSON_ARRAY: {
        if (json_array_size(a) != json_array_size(b)) {
            snprintf(where, wlen, "%s: %zu elements vs %zu", path, json_array_size(a),
                     json_array_size(b));
            return false;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            snprintf(path + used, plen - used, "[%zu]", i);
            if (!same_rec(json_array_get(a, i), json_array_get(b, i), path, plen, where,
                          wlen))
                return false;
            path[used] = '\0';
        }
        return true;
    }
    case JSON_STRING:
        if (json_string_length(a) == json_string_length(b) &&
            memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0)
            return true;
        snprintf(where, wlen, "%s: \"%s\" != \"%s\"", path, json_string_value(a),
                 json_string_value(b));
        return false;
    default: /* true, false, null: same type is enough */
        return true;
    }
}

bool e2e_json_same(const json_t *a, const json_t *b, char *where, size_t len)
{
    char path[1024] = "$";
    if (where && len)
        where[0] = '\0';
    char dummy[8];
    if (!where || !len) {
        where = dummy;
        len = sizeof dummy;
    }
    if (!a || !b) {
        snprintf(where, len, "$: %s is NULL", a ? "right" : "left");
        return a == b;
    }
    return same_rec(a, b, path, sizeof path, where, len);
}

bool e2e_keys_exactly(const json_t *o, const char *const *keys, char *why, size_t len)
{
    if (!json_is_object(o)) {
        snprintf(why, len, "not an object: %s", e2e_js(o));
        return false;
    }
    size_t n = 0;
    for (; keys[n]; n++) {
        if (!json_object_get(o, keys[n])) {
            snprintf(why, len, "missing key '%s' in %s", keys[n], e2e_js(o));
            return false;
        }
    }
    if (json_object_size(o) != n) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)o, k, v) {
            bool known = false;
            for (size_t i = 0; i < n; i++)
                if (!strcmp(k, keys[i]))
                    known = true;
            if (!known) {
                snprintf(why, len, "unexpected key '%s' in %s", k, e2e_js(o));
                return false;
            }
        }
    }
    return true;
}

const char *e2e_js(const json_t *v)
{
    static char bufs[4][1024];
    static int k;
    char *b = bufs[k++ % 4];
    if (!v) {
        snprintf(b, sizeof bufs[0], "(nothing)");
        return b;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    snprintf(b, sizeof bufs[0], "%s", s ? s : "(unprintable)");
    if (s && strlen(s) >= sizeof bufs[0])
        memcpy(b + sizeof bufs[0] - 5, "...", 4);
    free(s);
    return b;
}

json_t *e2e_parse(const char *text, const char *what)
{
    json_error_t je;
    json_t *j = json_loads(text ? text : "", JSON_DECODE_ANY, &je);
    ck_assert_msg(j != NULL, "%s is not JSON (%s): %.300s", what, je.text,
                  text ? text : "(NULL)");
    return j;
}

/* ------------------------------------------------------------ expectations */

static int64_t epoch_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void e2e_expect_rows_match_offline(e2e *t, const char *uid, const e2e_offline *off)
{
    an_data_rows rows;
    memset(&rows, 0, sizeof rows);
    e2e_get_rows(t, uid, 1, (int64_t)off->n, &rows);
    ck_assert_msg(rows.n == off->n, "metric %s: %zu rows in the DB, offline has %zu", uid,
                  rows.n, off->n);
    size_t bad = 0, first_bad = 0;
    char first_msg[512] = "";
    for (size_t i = 0; i < rows.n; i++) {
        const an_data_row *d = &rows.v[i];
        char why[400] = "";
        if (d->rowid != off->rowid[i])
            snprintf(why, sizeof why, "rowid %" PRId64 " vs offline %" PRId64, d->rowid,
                     off->rowid[i]);
        else if (!d->has_raw || !d->has_score || !d->has_display)
            snprintf(why, sizeof why, "not processed (raw %s, score %s, display %s)",
                     d->has_raw ? "set" : "NULL", d->has_score ? "set" : "NULL",
                     d->has_display ? "set" : "NULL");
        else if (!e2e_same_double(d->raw, off->raw[i]))
            snprintf(why, sizeof why, "raw_anomaly_score %.17g, CSV %.17g", d->raw,
                     off->raw[i]);
        else if (!e2e_same_double(d->anomaly_score, off->score[i]))
            snprintf(why, sizeof why, "anomaly_score %.17g, offline %.17g", d->anomaly_score,
                     off->score[i]);
        else if (d->display_value != off->display[i])
            snprintf(why, sizeof why, "display_value %" PRId64 ", offline %" PRId64,
                     d->display_value, off->display[i]);
        else if (!e2e_same_double(d->metric_value, off->value[i]))
            snprintf(why, sizeof why, "metric_value %.17g, CSV %.17g", d->metric_value,
                     off->value[i]);
        else if (!d->predictions || strcmp(d->predictions, "null") != 0)
            snprintf(why, sizeof why, "multi_step_best_predictions %s, want the text null",
                     d->predictions ? d->predictions : "SQL NULL");
        if (why[0]) {
            if (!bad++) {
                first_bad = i;
                snprintf(first_msg, sizeof first_msg, "%s", why);
            }
        }
    }
    an_data_rows_free(&rows);
    ck_assert_msg(bad == 0,
                  "metric %s: %zu of %zu rows differ from the offline scoring; first at "
                  "rowid %zu: %s",
                  uid, bad, off->n, first_bad + 1, first_msg);
}

void e2e_expect_params_cache(e2e *t, const char *uid, int64_t expect_watermark)
{
    an_metric m;
    e2e_get_metric(t, uid, &m);
    const char *key = e2e_params_key(t, uid);
    char *params = NULL;
    int64_t wm = -1, upd = -1;
    int rc = REDIS_RETRY(t, an_params_cache_get(t->rd, key, &params, &wm, &upd));
    ck_assert_msg(rc == 0, "params cache %s: %d %s", key, rc, an_redis_errstr(t->rd));
    json_t *stored = e2e_stored_params(&m);
    json_t *cached = e2e_parse(params, "params cache field params");
    char where[600];
    bool same = e2e_json_same(stored, cached, where, sizeof where);
    int64_t scored = m.scored_rowid;
    char source[AN_ID_MAX + 1];
    snprintf(source, sizeof source, "%s", m.scored_source ? m.scored_source : "");
    an_metric_clear(&m);
    json_decref(stored);
    json_decref(cached);
    free(params);
    ck_assert_msg(same, "params cache %s differs from metric.model_params' "
                        "anomalyLikelihoodParams (left DB, right cache): %s",
                  key, where);
    ck_assert_msg(wm == scored, "params cache %s watermark %" PRId64
                                " but metric.scored_rowid %" PRId64,
                  key, wm, scored);
    if (expect_watermark >= 0)
        ck_assert_msg(wm == expect_watermark,
                      "params cache %s watermark %" PRId64 ", expected %" PRId64, key, wm,
                      expect_watermark);
    /* the source: the entry that moved the watermark, as in the database */
    redisReply *rep = e2e_redis_cmd(t, "HGET %s source", key);
    ck_assert_msg(rep->type == REDIS_REPLY_STRING && !strcmp(rep->str, source),
                  "params cache %s source %s, metric.scored_source %s", key,
                  rep->type == REDIS_REPLY_STRING ? rep->str : "(none)", source);
    freeReplyObject(rep);
    /* exactly the fields params, watermark, updated, source */
    rep = e2e_redis_cmd(t, "HKEYS %s", key);
    bool fields_ok = rep->type == REDIS_REPLY_ARRAY && rep->elements == 4;
    char fields[256] = "";
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const char *f = rep->element[i]->str;
        size_t used = strlen(fields);
        snprintf(fields + used, sizeof fields - used, "%s%s", i ? "," : "", f ? f : "?");
        if (!f || (strcmp(f, "params") && strcmp(f, "watermark") && strcmp(f, "updated") &&
                   strcmp(f, "source")))
            fields_ok = false;
    }
    freeReplyObject(rep);
    ck_assert_msg(fields_ok, "params cache %s has fields [%s], expected params, watermark, "
                             "updated, source",
                  key, fields);
    int64_t now = epoch_ms();
    ck_assert_msg(upd > now - 3600 * 1000 && upd < now + 60 * 1000,
                  "params cache %s updated=%" PRId64 " is not a recent epoch-ms time (now %" PRId64
                  ")",
                  key, upd, now);
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* string field equals s, or is JSON null when s is NULL */
static bool str_or_null_eq(const json_t *v, const char *s)
{
    if (!s)
        return json_is_null(v);
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

void e2e_expect_inference_entry(const json_t *entry, const an_metric *m,
                                const an_data_rows *rows, int64_t *next,
                                const char *source, const char *encoding)
{
    static const char *const top_keys[] = {"metric", "results", NULL};
    static const char *const metric_keys[] = {"uid",      "name",       "description",
                                              "resource", "location",   "datasource",
                                              "spec",     NULL};
    static const char *const row_keys[] = {"rowid", "ts",      "value",
                                           "rawAnomaly", "anomaly",
                                           "multiStepBestPredictions", NULL};
    char why[1200];
    const char *id = jstr(entry, "id");
    ck_assert_msg(str_or_null_eq(json_object_get(entry, "dataType"), AN_DATATYPE_INFERENCE),
                  "output %s: dataType %s, expected " AN_DATATYPE_INFERENCE, id,
                  e2e_js(json_object_get(entry, "dataType")));
    ck_assert_msg(str_or_null_eq(json_object_get(entry, "model"), m->uid),
                  "output %s: model %s, expected %s", id, e2e_js(json_object_get(entry, "model")),
                  m->uid);
    if (source)
        ck_assert_msg(str_or_null_eq(json_object_get(entry, "source"), source),
                      "output %s: source %s, expected input entry %s", id,
                      e2e_js(json_object_get(entry, "source")), source);
    ck_assert_msg(str_or_null_eq(json_object_get(entry, "encoding"), encoding),
                  "output %s: encoding %s, expected %s", id,
                  e2e_js(json_object_get(entry, "encoding")), encoding);
    const json_t *body = json_object_get(entry, "body");
    ck_assert_msg(e2e_keys_exactly(body, top_keys, why, sizeof why), "output %s body: %s", id,
                  why);
    const json_t *mj = json_object_get(body, "metric");
    ck_assert_msg(e2e_keys_exactly(mj, metric_keys, why, sizeof why), "output %s metric: %s",
                  id, why);
    ck_assert_msg(str_or_null_eq(json_object_get(mj, "uid"), m->uid) &&
                      str_or_null_eq(json_object_get(mj, "name"), m->name) &&
                      str_or_null_eq(json_object_get(mj, "description"), m->description) &&
                      str_or_null_eq(json_object_get(mj, "resource"), m->server) &&
                      str_or_null_eq(json_object_get(mj, "location"), m->location) &&
                      str_or_null_eq(json_object_get(mj, "datasource"), m->datasource),
                  "output %s: metric %s does not match the metric row (uid %s, name %s, "
                  "description %s, server %s, location %s, datasource %s)",
                  id, e2e_js(mj), m->uid, m->name ? m->name : "NULL",
                  m->description ? m->description : "NULL", m->server ? m->server : "NULL",
                  m->location ? m->location : "NULL", m->datasource ? m->datasource : "NULL");
    json_t *params = e2e_parse(m->parameters, "metric.parameters");
    const json_t *want_spec = json_object_get(params, "metricSpec");
    bool spec_ok = want_spec && e2e_json_same(want_spec, json_object_get(mj, "spec"), why,
                                              sizeof why);
    json_decref(params);
    ck_assert_msg(spec_ok, "output %s: metric.spec is not parameters.metricSpec: %s", id,
                  why);

    const json_t *res = json_object_get(body, "results");
    ck_assert_msg(json_is_array(res) && json_array_size(res) > 0,
                  "output %s: results is not a non-empty array", id);
    size_t n = json_array_size(res);
    int64_t first = *next;
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(res, i);
        ck_assert_msg(e2e_keys_exactly(r, row_keys, why, sizeof why),
                      "output %s results[%zu]: %s", id, i, why);
        const json_t *rid = json_object_get(r, "rowid");
        ck_assert_msg(json_is_integer(rid) && json_integer_value(rid) == *next,
                      "output %s results[%zu].rowid %s, expected %" PRId64
                      " (rowids contiguous across messages)",
                      id, i, e2e_js(rid), *next);
        int64_t k = *next - rows->v[0].rowid;
        ck_assert_msg(k >= 0 && (size_t)k < rows->n && rows->v[k].rowid == *next,
                      "output %s: rowid %" PRId64 " is not among the DB rows read", id, *next);
        const an_data_row *d = &rows->v[k];
        const char *nums[] = {"ts", "value", "rawAnomaly", "anomaly"};
        double want[] = {d->ts, d->metric_value, d->raw, d->anomaly_score};
        for (int j = 0; j < 4; j++) {
            const json_t *v = json_object_get(r, nums[j]);
            ck_assert_msg(json_is_number(v), "output %s rowid %" PRId64 ": %s is %s", id,
                          *next, nums[j], e2e_js(v));
            ck_assert_msg(e2e_same_double(json_number_value(v), want[j]),
                          "output %s rowid %" PRId64 ": %s %.17g, DB %.17g", id, *next,
                          nums[j], json_number_value(v), want[j]);
        }
        const json_t *pred = json_object_get(r, "multiStepBestPredictions");
        if (!d->predictions || !strcmp(d->predictions, "null")) {
            ck_assert_msg(json_is_null(pred),
                          "output %s rowid %" PRId64 ": multiStepBestPredictions %s, DB %s",
                          id, *next, e2e_js(pred), d->predictions ? d->predictions : "NULL");
        } else {
            json_t *dp = e2e_parse(d->predictions, "multi_step_best_predictions");
            bool ok = json_is_object(pred) && e2e_json_same(dp, pred, why, sizeof why);
            json_decref(dp);
            ck_assert_msg(ok, "output %s rowid %" PRId64 ": multiStepBestPredictions %s, DB %s",
                          id, *next, e2e_js(pred), d->predictions);
        }
        (*next)++;
    }
    char want_rows[64];
    snprintf(want_rows, sizeof want_rows, "%" PRId64 "-%" PRId64, first, *next - 1);
    ck_assert_msg(str_or_null_eq(json_object_get(entry, "rows"), want_rows),
                  "output %s: rows field %s, expected \"%s\"", id,
                  e2e_js(json_object_get(entry, "rows")), want_rows);
}

void e2e_expect_command_entry(const json_t *entry, const char *uid, const char *method,
                              const char *command_id, int64_t status, const char *error,
                              const an_metric *model_info, const char *source,
                              const char *encoding)
{
    static const char *const keys[] = {"method", "modelId", "commandId", "status",
                                       "errorMessage", NULL};
    static const char *const keys_mi[] = {"method", "modelId",      "commandId",
                                          "status", "errorMessage", "modelInfo", NULL};
    static const char *const mi_keys[] = {"metricName", "resource", "modelSpec", NULL};
    char why[1200];
    const char *id = jstr(entry, "id");
    ck_assert_msg(str_or_null_eq(json_object_get(entry, "dataType"), AN_DATATYPE_COMMAND),
                  "output %s: dataType %s, expected " AN_DATATYPE_COMMAND, id,
                  e2e_js(json_object_get(entry, "dataType")));
    ck_assert_msg(str_or_null_eq(json_object_get(entry, "model"), uid),
                  "output %s: model %s, expected %s", id, e2e_js(json_object_get(entry, "model")),
                  uid);
    ck_assert_msg(json_is_null(json_object_get(entry, "rows")),
                  "output %s: a command result has rows=%s", id,
                  e2e_js(json_object_get(entry, "rows")));
    if (source)
        ck_assert_msg(str_or_null_eq(json_object_get(entry, "source"), source),
                      "output %s: source %s, expected input entry %s", id,
                      e2e_js(json_object_get(entry, "source")), source);
    ck_assert_msg(str_or_null_eq(json_object_get(entry, "encoding"), encoding),
                  "output %s: encoding %s, expected %s", id,
                  e2e_js(json_object_get(entry, "encoding")), encoding);
    const json_t *body = json_object_get(entry, "body");
    ck_assert_msg(e2e_keys_exactly(body, model_info ? keys_mi : keys, why, sizeof why),
                  "output %s (%s %s status %" PRId64 ") body: %s", id, method, command_id,
                  status, why);
    const json_t *st = json_object_get(body, "status");
    ck_assert_msg(str_or_null_eq(json_object_get(body, "method"), method) &&
                      str_or_null_eq(json_object_get(body, "modelId"), uid) &&
                      str_or_null_eq(json_object_get(body, "commandId"), command_id) &&
                      json_is_integer(st) && json_integer_value(st) == status &&
                      str_or_null_eq(json_object_get(body, "errorMessage"), error),
                  "output %s: body %s, expected method %s modelId %s commandId %s status %" PRId64
                  " errorMessage %s",
                  id, e2e_js(body), method, uid, command_id, status, error ? error : "null");
    if (model_info) {
        const json_t *mi = json_object_get(body, "modelInfo");
        ck_assert_msg(e2e_keys_exactly(mi, mi_keys, why, sizeof why),
                      "output %s modelInfo: %s", id, why);
        ck_assert_msg(str_or_null_eq(json_object_get(mi, "metricName"), model_info->name) &&
                          str_or_null_eq(json_object_get(mi, "resource"), model_info->server),
                      "output %s: modelInfo %s, expected metricName %s resource %s", id,
                      e2e_js(mi), model_info->name, model_info->server);
        json_t *spec = e2e_parse(model_info->parameters, "metric.parameters");
        bool ok = e2e_json_same(spec, json_object_get(mi, "modelSpec"), why, sizeof why);
        json_decref(spec);
        ck_assert_msg(ok, "output %s: modelInfo.modelSpec is not the metric's parameters: %s",
                      id, why);
    }
}

void e2e_reconnect(e2e *t, int timeout_ms)
{
    double deadline = e2e_now() + timeout_ms / 1000.0;
    bool redis_ok = false, pg_ok = false;
    while (e2e_now() < deadline) {
        if (!redis_ok) {
            if (an_redis_ping(t->rd) == 0)
                redis_ok = true;
            else
                an_redis_reconnect(t->rd);
        }
        if (!pg_ok) {
            an_repo_rollback(t->repo);
            an_metric m;
            memset(&m, 0, sizeof m);
            int rc = an_repo_get_metric(t->repo, "e2e-probe-none", AN_LOCK_NONE, &m);
            an_metric_clear(&m);
            if (rc == 0 || rc == AN_ENOTFOUND)
                pg_ok = true;
            else
                an_repo_reconnect(t->repo);
        }
        if (redis_ok && pg_ok)
            return;
        e2e_sleep_ms(100);
    }
    ck_abort_msg("servers did not answer within %d ms (redis %s: %s; postgres %s: %s)",
                 timeout_ms, redis_ok ? "ok" : "down", an_redis_errstr(t->rd),
                 pg_ok ? "ok" : "down", an_repo_errstr(t->repo));
}

int64_t e2e_scored_rowid(e2e *t, const char *uid)
{
    an_metric m;
    memset(&m, 0, sizeof m);
    int rc = an_repo_get_metric(t->repo, uid, AN_LOCK_NONE, &m);
    int64_t r = rc == 0 ? m.scored_rowid : -1;
    an_metric_clear(&m);
    return r;
}
