/*
 * ctl_replay.c: anomalyctl replay, the reference producer (README.md,
 * docs/streams.md). It plays the metric-ingest and model-runner roles for one
 * NAB CSV:
 *   1. creates the metric (CREATE_PENDING, datasource "custom", parameters
 *      holding a metricSpec) and inserts all its rows;
 *   2. XADDs a defineModel command result;
 *   3. XADDs inference batches with the CSV's raw scores: batches of
 *      --batch-size rows until --live-after rows were sent, then 1-row
 *      batches (live).
 * Prints the metric uid and the counts on stdout. On a terminal (stderr is
 * a tty, or --progress always) it shows rows, entries/s and the time left
 * on stderr while it sends; piped, it stays quiet.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "an_codec.h"
#include "an_config.h"
#include "an_csv.h"
#include "an_progress.h"
#include "an_repo.h"
#include "an_streams.h"
#include "ctl.h"

/* Rows inserted per INSERT statement. */
#define INSERT_CHUNK 5000

/* "YYYY-MM-DD HH:MM:SS[.ffffff]" (or 'T' separator), UTC -> epoch seconds. */
static int parse_ts(const char *s, size_t len, double *out)
{
    char buf[64];
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int y, mo, d, h, mi, sec, used = 0;
    if (sscanf(buf, "%4d-%2d-%2d%*1[ T]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
               &used) != 6)
        return -1;
    double frac = 0.0;
    if (buf[used] == '.') {
        char *end;
        frac = strtod(buf + used, &end);
        used = (int)(end - buf);
    }
    if (buf[used] != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || sec > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = (double)timegm(&tm) + frac;
    return 0;
}

/* A random uuid4-style hex uid (32 chars), like the original's uuid4().hex. */
static int random_uid(char out[33])
{
    unsigned char b[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n != (ssize_t)sizeof b)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

static int parse_count(const char *opt, const char *s, long *out, long min)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min) {
        fprintf(stderr, "anomalyctl replay: %s: '%s' is not a whole number >= %ld\n",
                opt, s, min);
        return -1;
    }
    *out = v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: anomalyctl replay --csv FILE --metric NAME [--batch-size N]\n"
            "         [--live-after N] [--uid UID] [--encoding json|zlib]\n"
            "         [--progress auto|always|never] [--config FILE]\n");
}

/* XADDs one input entry: model + batch (+ encoding when zlib). */
static int send_entry(an_redis *rd, const an_config *cfg, const char *uid,
                      const an_result *res, size_t n, an_encoding enc)
{
    char *batch = NULL;
    size_t blen = 0;
    char err[256];
    int rc = an_batch_encode(res, n, enc, &batch, &blen, err, sizeof err);
    if (rc) {
        fprintf(stderr, "anomalyctl replay: cannot encode batch: %s\n", err);
        return rc;
    }
    an_field f[3] = {
        {"model", 5, uid, strlen(uid)},
        {"batch", 5, batch, blen},
        {"encoding", 8, an_encoding_name(enc), strlen(an_encoding_name(enc))},
    };
    /* A restarting Redis (LOADING, connection refused) is waited for, up to
     * 30 s. A retried XADD whose first attempt did land makes a duplicate
     * entry, which the service recognises and only acks. */
    for (int waited = 0;; waited += 200) {
        rc = an_xadd(rd, cfg->streams.input, 0, f, enc == AN_ENC_JSON ? 2 : 3, NULL);
        if (rc != AN_ETRANSIENT || waited >= 30000)
            break;
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc)
        fprintf(stderr, "anomalyctl replay: XADD %s: %s\n", cfg->streams.input,
                an_redis_errstr(rd));
    free(batch);
    return rc;
}

/* The command line of anomalyctl replay. */
typedef struct replay_args {
    const char *csv_path, *metric, *config, *uid_opt;
    long batch_size, live_after; /* live_after -1: never go live */
    an_encoding enc;
    int progress; /* --progress: -1 auto (stderr is a tty), 0 never, 1 always */
} replay_args;

/* Applies option o with its value v to a. 0, or 2 (usage error, printed). */
static int parse_option(replay_args *a, const char *o, const char *v)
{
    if (!strcmp(o, "--csv")) a->csv_path = v;
    else if (!strcmp(o, "--metric")) a->metric = v;
    else if (!strcmp(o, "--config")) a->config = v;
    else if (!strcmp(o, "--uid")) a->uid_opt = v;
    else if (!strcmp(o, "--batch-size")) {
        if (parse_count(o, v, &a->batch_size, 1)) return 2;
    } else if (!strcmp(o, "--live-after")) {
        if (parse_count(o, v, &a->live_after, 0)) return 2;
    } else if (!strcmp(o, "--progress")) {
        if (!strcmp(v, "auto") || !strcmp(v, "always") || !strcmp(v, "never")) {
            a->progress = !strcmp(v, "auto") ? -1 : !strcmp(v, "always");
        } else {
            fprintf(stderr, "anomalyctl replay: --progress: '%s' is not auto, always or "
                    "never\n", v);
            return 2;
        }
    } else if (!strcmp(o, "--encoding")) {
        if (an_encoding_parse(v, strlen(v), &a->enc)) {
            fprintf(stderr, "anomalyctl replay: --encoding: '%s' is not json or zlib\n", v);
            return 2;
        }
    } else {
        fprintf(stderr, "anomalyctl replay: unknown option '%s'\n", o);
        usage();
        return 2;
    }
    return 0;
}

/* Fills a from argv (every option takes a value). 0, or 2 (usage error,
 * printed). */
static int parse_args(int argc, char **argv, replay_args *a)
{
    *a = (replay_args){.batch_size = 1, .live_after = -1, .enc = AN_ENC_JSON,
                       .progress = -1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "anomalyctl replay: '%s' needs a value\n", o);
            usage();
            return 2;
        }
        if (parse_option(a, o, argv[++i]))
            return 2;
    }
    if (!a->csv_path || !a->metric) {
        usage();
        return 2;
    }
    return 0;
}

/* The metric uid: --uid when given, else a random one. 0, 1 (no random
 * source) or 2 (--uid too long); the failure is printed. */
static int make_uid(const char *uid_opt, char uid[AN_UID_MAX + 1])
{
    if (uid_opt) {
        if (strlen(uid_opt) > AN_UID_MAX) {
            fprintf(stderr, "anomalyctl replay: --uid is longer than %d\n", AN_UID_MAX);
            return 2;
        }
        snprintf(uid, AN_UID_MAX + 1, "%s", uid_opt);
    } else if (random_uid(uid)) {
        fprintf(stderr, "anomalyctl replay: cannot read /dev/urandom\n");
        return 1;
    }
    return 0;
}

/* Loads the CSV, its timestamps (*ts, n entries) and a batch buffer (*res,
 * batch_size entries); the caller frees all three, also on failure. 0 or -1
 * (printed). */
static int load_input(const replay_args *a, an_csv **csv, double **ts, an_result **res)
{
    char err[512];
    if (an_csv_load(a->csv_path, csv, err, sizeof err)) {
        fprintf(stderr, "anomalyctl replay: %s\n", err);
        return -1;
    }
    size_t n = an_csv_rows(*csv);
    if (n == 0) {
        fprintf(stderr, "anomalyctl replay: %s has no data rows\n", a->csv_path);
        return -1;
    }
    *ts = malloc(n * sizeof **ts);
    *res = calloc((size_t)a->batch_size, sizeof **res);
    if (!*ts || !*res) {
        fprintf(stderr, "anomalyctl replay: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *t = an_csv_timestamp(*csv, i, &len);
        if (parse_ts(t, len, &(*ts)[i])) {
            fprintf(stderr, "anomalyctl replay: %s: row %zu: timestamp '%.*s' is "
                    "not YYYY-MM-DD HH:MM:SS\n", a->csv_path, i + 1, (int)len, t);
            return -1;
        }
    }
    return 0;
}

/* 1. The metric-ingest role: creates the metric (CREATE_PENDING) and
 * inserts the CSV's rows (timestamps ts). 0 or -1 (printed). */
static int create_metric(an_repo *repo, const char *uid, const char *metric,
                         const an_csv *csv, const double *ts)
{
    json_t *pj = json_pack("{s:s, s:{s:s, s:s, s:{}}, s:{}}", "datasource", "custom",
                           "metricSpec", "metric", metric, "resource", "replay",
                           "userInfo", "modelParams");
    char *ptext = pj ? an_json_dumps(pj, NULL) : NULL; /* the parameters JSON */
    json_decref(pj);
    int rc = -1;
    if (!ptext) {
        fprintf(stderr, "anomalyctl replay: out of memory\n");
        goto out;
    }
    an_new_metric nm = {
        .uid = uid, .name = metric, .server = "replay", .datasource = "custom",
        .description = "replayed by anomalyctl", .location = NULL,
        .parameters = ptext, .status = AN_METRIC_CREATE_PENDING,
        .model_params = "{\"modelConfig\": {}, \"anomalyLikelihoodParams\": null}",
    };
    if (an_repo_create_metric(repo, &nm)) {
        fprintf(stderr, "anomalyctl replay: create metric %s: %s\n", uid,
                an_repo_errstr(repo));
        goto out;
    }
    size_t n = an_csv_rows(csv);
    for (size_t off = 0; off < n; off += INSERT_CHUNK) {
        size_t k = n - off < INSERT_CHUNK ? n - off : INSERT_CHUNK;
        if (an_repo_add_rows(repo, uid, ts + off, an_csv_values(csv) + off, k, NULL)) {
            fprintf(stderr, "anomalyctl replay: add rows: %s\n", an_repo_errstr(repo));
            goto out;
        }
    }
    rc = 0;
out:
    free(ptext);
    return rc;
}

/* 2. The model runner's defineModel result. 0 or an AN_E* code (printed). */
static int send_define(an_redis *rd, const an_config *cfg, const char *uid, an_encoding enc)
{
    char cmd_id[64];
    snprintf(cmd_id, sizeof cmd_id, "define-%s", uid);
    json_t *args = json_pack("{s:s}", "modelId", uid);
    an_result def = {.kind = AN_RES_COMMAND};
    def.u.cmd = (an_command_result){.command_id = cmd_id, .method = "defineModel",
                                    .status = 0, .args = args, .error = NULL};
    int rc = send_entry(rd, cfg, uid, &def, 1, enc);
    json_decref(args);
    return rc;
}

/* 3. The inference batches with the CSV's raw scores, in res (batch_size
 * slots): batch_size rows until live_after rows were sent, then one row per
 * entry. *entries counts the entries sent, the defineModel one included.
 * 0 or an AN_E* code (printed). */
static int send_batches(an_redis *rd, const an_config *cfg, const char *uid,
                        const an_csv *csv, const replay_args *a, an_result *res,
                        size_t *entries)
{
    const double *raws = an_csv_raws(csv);
    size_t n = an_csv_rows(csv), sent = 0;
    size_t live_after = a->live_after < 0 ? n : (size_t)a->live_after;
    *entries = 1;
    an_progress pg;
    an_progress_start(&pg, stderr, a->progress < 0 ? isatty(STDERR_FILENO) : a->progress,
                      "replay", (int64_t)n, NULL);
    while (sent < n) {
        size_t bs = sent < live_after ? (size_t)a->batch_size : 1;
        if (sent < live_after && sent + bs > live_after)
            bs = live_after - sent;
        if (bs > n - sent)
            bs = n - sent;
        for (size_t j = 0; j < bs; j++) {
            res[j].kind = AN_RES_INFERENCE;
            res[j].u.inf = (an_inference_result){
                .rowid = (int64_t)(sent + j + 1), .status = 0, .has_score = true,
                .score = raws[sent + j]};
        }
        int rc = send_entry(rd, cfg, uid, res, bs, a->enc);
        if (rc)
            return rc;
        sent += bs;
        (*entries)++;
        an_progress_update(&pg, (int64_t)sent, (int64_t)*entries);
    }
    an_progress_finish(&pg, (int64_t)sent, (int64_t)*entries);
    return 0;
}

int ctl_replay(int argc, char **argv)
{
    replay_args a;
    char uid[AN_UID_MAX + 1];
    int rc = parse_args(argc, argv, &a);
    if (rc || (rc = make_uid(a.uid_opt, uid)))
        return rc;
    an_config cfg;
    an_csv *csv = NULL;
    an_repo *repo = NULL;
    an_redis *rd = NULL;
    double *ts = NULL;
    an_result *res = NULL;
    char err[512];
    int status = 1;

    memset(&cfg, 0, sizeof cfg);
    if (ctl_config_load("replay", a.config, &cfg))
        return 2;
    if (load_input(&a, &csv, &ts, &res))
        goto out;

    an_repo_options ro = an_repo_options_from_config(&cfg);
    ro.application_name = "anomalyctl-replay";
    repo = an_repo_new(&ro);
    if (!repo || an_repo_connect(repo)) {
        fprintf(stderr, "anomalyctl replay: postgres: %s\n",
                repo ? an_repo_errstr(repo) : "out of memory");
        goto out;
    }
    an_redis_opts rop = an_redis_opts_default();
    if (an_redis_connect(cfg.redis.url, &rop, &rd, err, sizeof err)) {
        fprintf(stderr, "anomalyctl replay: redis: %s\n", err);
        goto out;
    }

    size_t entries = 0;
    if (create_metric(repo, uid, a.metric, csv, ts) || send_define(rd, &cfg, uid, a.enc) ||
        send_batches(rd, &cfg, uid, csv, &a, res, &entries))
        goto out;
    printf("metric uid=%s name=%s rows=%zu entries=%zu stream=%s\n", uid, a.metric,
           an_csv_rows(csv), entries, cfg.streams.input);
    status = 0;
out:
    free(ts);
    free(res);
    an_csv_free(csv);
    an_repo_free(repo);
    an_redis_free(rd);
    an_config_free(&cfg);
    return status;
}
