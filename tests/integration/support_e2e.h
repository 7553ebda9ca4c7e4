/*
 * support_e2e.h: helpers for the end-to-end service tests
 * (tests/integration/test_service*.c). They drive the real programs
 * (anomalyd, anomalyctl of $AN_BIN_DIR) against the real Redis and
 * PostgreSQL of ops/stack.sh, and look at the results through the library
 * (an_streams, an_repo, an_codec).
 *
 * Isolation: every e2e context has its own key prefix "t<pid>_<n>:" for the
 * input, output, dead-letter streams and the params cache hashes, passed to
 * the child programs as ANOMALYD_STREAMS_* variables, and its own metric
 * uids (e2e_uid). e2e_fini removes the keys, the metrics and the temporary
 * directory (unless AN_E2E_KEEP=1 is set, for debugging).
 *
 * Missing environment (ANOMALYD_REDIS_URL, ANOMALYD_PG_DSN, AN_BIN_DIR,
 * AN_SOURCE_DIR, AN_TEST_DATA) is a test FAILURE, never a skip.
 *
 * Every name here starts with e2e_ / E2E_ (this file is linked into every
 * integration test binary).
 */
#ifndef SUPPORT_E2E_H
#define SUPPORT_E2E_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "an_codec.h"
#include "an_repo.h"
#include "an_repo_group.h"
#include "an_streams.h"

#define E2E_GROUP "anomalyd"
#define E2E_MAX_UIDS 64
#define E2E_MAX_ENV 24
#define E2E_MAX_PROCS 16

/* A child process; its stdout/stderr go to files in the context's tmpdir. */
typedef struct e2e_proc {
    pid_t pid;
    char label[64];
    char out_path[PATH_MAX + 32];
    char err_path[PATH_MAX + 32];
    bool done;
    int code;        /* exit status; 128+sig when killed by a signal;
                        -1 when e2e_wait timed out (then SIGKILLed) */
    double t_start;  /* e2e_now() at spawn */
    double t_end;    /* e2e_now() when reaped */
} e2e_proc;

typedef struct e2e {
    char prefix[64];
    char input[128];
    char output[128];
    char dead[128];
    char params_prefix[128];
    char tmpdir[PATH_MAX];
    an_redis *rd;
    an_repo *repo;
    char *uids[E2E_MAX_UIDS];
    int nuids;
    char *env[E2E_MAX_ENV]; /* "NAME=VALUE" given to every child */
    int nenv;
    pid_t pids[E2E_MAX_PROCS]; /* children not reaped yet (killed in fini) */
    int seq;
} e2e;

/* ---- environment / time ---- */

/* getenv that fails the test when the variable is unset or empty. */
const char *e2e_env(const char *name);
double e2e_now(void); /* monotonic seconds */
void e2e_sleep_ms(int ms);
/* $AN_BIN_DIR/<prog>, $AN_TEST_DATA/<rel>, $AN_SOURCE_DIR/<rel> (static
 * rotating buffers: valid for a few calls). */
const char *e2e_bin(const char *prog);
const char *e2e_data(const char *rel);
const char *e2e_src(const char *rel);

/* ---- context ---- */

/* Prefix, tmpdir, Redis + PostgreSQL connections, `anomalyctl db init`
 * (once per process), and the child environment:
 *   ANOMALYD_STREAMS_INPUT=<p>results  OUTPUT=<p>model_results
 *   DEAD_LETTER=<p>dead  PARAMS_PREFIX=<p>params:  GROUP=anomalyd
 *   CLAIM_IDLE_MS=2000  BLOCK_MS=200, and ANOMALYD_HTTP_LISTEN=127.0.0.1:0 */
void e2e_init(e2e *t, const char *tag);
void e2e_fini(e2e *t);
/* Adds/replaces NAME=VALUE in the children's environment. */
void e2e_setenv(e2e *t, const char *name, const char *value);
/* A fresh metric uid "<prefix-ish>_<tag>" (<= 40 chars), registered for
 * cleanup (metric row and params hash). */
const char *e2e_uid(e2e *t, const char *tag);
/* Full params hash key for uid (static rotating buffer). */
const char *e2e_params_key(e2e *t, const char *uid);

/* ---- child processes ---- */

/* argv[0] is the program path; NULL-terminated. Returns at once. */
void e2e_spawn(e2e *t, e2e_proc *p, const char *label, const char *const *argv);
/* Waits up to timeout_ms (SIGKILL + code -1 on timeout). Returns p->code. */
int e2e_wait(e2e *t, e2e_proc *p, int timeout_ms);
/* Non-blocking: true (and p->code set) when it has exited. */
bool e2e_poll(e2e *t, e2e_proc *p);
/* Spawn + wait. Variadic argv after label, NULL-terminated. */
int e2e_run(e2e *t, e2e_proc *p, const char *label, int timeout_ms,
            const char *prog, ...);
/* The last maxbytes of a file (static rotating buffer, 4 slots). */
const char *e2e_tail(const char *path, size_t maxbytes);
/* Whole file, malloc'd and NUL-terminated (NULL if unreadable). */
char *e2e_slurp(const char *path, size_t *len);
/* Number of lines of path containing needle. */
size_t e2e_count_lines(const char *path, const char *needle);
/* Fails the test unless p exited 0 (message names the child and shows its
 * stderr tail). */
#define E2E_EXPECT_EXIT0(p)                                                             \
    ck_assert_msg((p)->code == 0, "%s exited with %d%s; stderr tail:\n%s", (p)->label,   \
                  (p)->code, (p)->code == -1 ? " (timed out, killed)" : "",             \
                  e2e_tail((p)->err_path, 3000))

/* Runs `anomalyd --consumer C --exit-when-idle MS [extra args]` to its end
 * (timeout_ms) and fails unless it exits 0. */
void e2e_run_anomalyd(e2e *t, e2e_proc *p, const char *consumer, int idle_ms,
                      int timeout_ms);
/* Runs `anomalyctl replay --csv CSV --metric NAME --uid UID --batch-size B
 * --live-after L` (live_after < 0: option omitted); fails unless exit 0 and
 * the printed line has rows=<expect_rows> entries=<expect_entries> (either
 * < 0: not checked). */
void e2e_replay(e2e *t, const char *csv, const char *name, const char *uid,
                long batch_size, long live_after, long expect_rows,
                long expect_entries);
/* ops/stack.sh VERB (e.g. "restart-redis"); returns its exit code. */
int e2e_stack(e2e *t, const char *verb, e2e_proc *p);

/* ---- offline scoring (anomalyctl likelihood) ---- */

typedef struct e2e_offline {
    size_t n;
    int64_t *rowid;
    double *value;
    double *raw;
    double *score;
    int64_t *display;
} e2e_offline;

/* Runs `anomalyctl likelihood --csv CSV <opt> <optval>` (e.g. "--schedule",
 * "1440,1440,1") and parses its output. */
void e2e_offline_run(e2e *t, const char *csv, const char *opt, const char *optval,
                     e2e_offline *out);
void e2e_offline_free(e2e_offline *o);

/* ---- NAB CSV ---- */

typedef struct e2e_csv {
    size_t n;
    double *ts; /* epoch seconds (UTC) */
    double *value;
    double *raw;
} e2e_csv;

void e2e_csv_load(const char *path, e2e_csv *out);
void e2e_csv_free(e2e_csv *c);
/* Writes the header and the first n data rows of src to dst. */
void e2e_csv_head(const char *src, const char *dst, size_t n);
/* The data rows of the CSV at path (non-blank lines after the header). */
long e2e_csv_rows(const char *path);
/* The input CSV of model i of a multi-model run, into csv (csvlen bytes):
 * with rows > 0 the header and first rows rows of
 * $AN_TEST_DATA/likelihood/htmengine/<file>, copied to t's tmpdir as
 * model<i>.csv; else that file itself. Returns its data row count. */
long e2e_model_csv(e2e *t, const char *file, long rows, int i, char *csv, size_t csvlen);

/* ---- PostgreSQL ---- */

/* Standard `parameters` text of e2e metrics (metricSpec inside). */
const char *e2e_parameters(const char *name);
/* Creates uid (registered by e2e_uid) with name, status, the standard
 * parameters, model_params {"modelConfig": {}, "anomalyLikelihoodParams":
 * null}, server "e2e-server", location "e2e-lab", description "e2e". */
void e2e_create_metric(e2e *t, const char *uid, const char *name, int status);
/* Adds n rows with ts/values (returns the first rowid). */
int64_t e2e_add_rows(e2e *t, const char *uid, const double *ts,
                     const double *values, size_t n);
/* Adds rows 1..n with ts = base + 300*i and value = 10+i. */
void e2e_add_simple_rows(e2e *t, const char *uid, size_t n);
void e2e_get_metric(e2e *t, const char *uid, an_metric *m);
/* ENOTFOUND allowed: returns false when the metric does not exist. */
bool e2e_metric_exists(e2e *t, const char *uid);
void e2e_get_rows(e2e *t, const char *uid, int64_t first, int64_t last,
                  an_data_rows *rows);
/* anomalyLikelihoodParams of metric.model_params (new reference; JSON null
 * when absent). */
json_t *e2e_stored_params(const an_metric *m);

/* ---- Redis ---- */

/* XADD a batch of results (an_batch_encode) for uid. */
void e2e_xadd_results(e2e *t, const char *uid, const an_result *res, size_t n,
                      an_encoding enc, char id[AN_ID_MAX]);
/* XADD arbitrary fields to the input stream. */
void e2e_xadd_fields(e2e *t, const an_field *f, size_t n, char id[AN_ID_MAX]);
an_field e2e_field(const char *name, const char *value);
an_field e2e_field_bin(const char *name, const void *value, size_t len);
an_result e2e_inf(int64_t rowid, double score);
an_result e2e_inf_fail(int64_t rowid, const char *error);
an_result e2e_cmd(const char *command_id, const char *method, int64_t status,
                  const char *error);
int64_t e2e_pending(e2e *t);
int64_t e2e_xlen(e2e *t, const char *stream);
/* All entries of a stream (XRANGE - +), in *out (an_entry_list_free). */
void e2e_xrange_all(e2e *t, const char *stream, an_entry_list *out);
/* The output stream decoded: a JSON array of an_output_entry_decode
 * objects (id, dataType, model, rows, source, encoding, body). */
json_t *e2e_outputs(e2e *t);
/* Outputs whose source == id (new array). */
json_t *e2e_outputs_for(const json_t *outputs, const char *source);
/* Raw redis command on the context's connection (tests only). Returns
 * the reply (freeReplyObject) or fails. */
void *e2e_redis_cmd(e2e *t, const char *fmt, ...);

/* ---- JSON ---- */

/* Deep equality with numbers compared as doubles (integer 0 == real 0.0),
 * exact. On difference false, and where holds the path ("$.a[3].b: ..."). */
bool e2e_json_same(const json_t *a, const json_t *b, char *where, size_t len);
/* Object o has exactly the keys of the NULL-terminated list. */
bool e2e_keys_exactly(const json_t *o, const char *const *keys, char *why,
                      size_t len);
/* Compact text of v for messages (static rotating buffer, truncated). */
const char *e2e_js(const json_t *v);
/* Parse text as JSON or fail the test. */
json_t *e2e_parse(const char *text, const char *what);

/* Bitwise double equality (also tells -0.0 from 0.0). */
bool e2e_same_double(double a, double b);

/* ---- expectations shared by the service tests ---- */

/* Rows 1..off->n of uid equal the offline output: raw (== CSV raw),
 * anomaly_score bit-exact, display_value, value; every row processed
 * (raw, score, display non-NULL; predictions "null"). Fails with the first
 * mismatch and the number of mismatching rows. */
void e2e_expect_rows_match_offline(e2e *t, const char *uid, const e2e_offline *off);
/* The params hash of uid equals metric.model_params' anomalyLikelihoodParams
 * (e2e_json_same), its watermark == metric.scored_rowid (== expect if
 * expect >= 0), updated is a plausible epoch-ms time. */
void e2e_expect_params_cache(e2e *t, const char *uid, int64_t expect_watermark);
/* One decoded output entry is a docs/htmengine.md §6.1 inference message for
 * metric m, with exactly the schema's keys; its results are the DB rows (rows
 * holds rowids rows->v[0].rowid.. contiguously) starting at *next (advanced
 * past the last); `rows` field "first-last"; source == source (if non-NULL);
 * encoding == encoding. */
void e2e_expect_inference_entry(const json_t *entry, const an_metric *m,
                                const an_data_rows *rows, int64_t *next,
                                const char *source, const char *encoding);
/* One decoded output entry is a docs/htmengine.md §6.2 command-result message;
 * model_info non-NULL: a successful defineModel with modelInfo from that
 * metric; NULL: no modelInfo key. error NULL: errorMessage null. */
void e2e_expect_command_entry(const json_t *entry, const char *uid,
                              const char *method, const char *command_id,
                              int64_t status, const char *error,
                              const an_metric *model_info, const char *source,
                              const char *encoding);
/* Waits for Redis/PostgreSQL to answer again (after a restart) and
 * refreshes the context's connections (fails after timeout_ms). */
void e2e_reconnect(e2e *t, int timeout_ms);
/* Reads metric.scored_rowid, -1 on any error (server restarting). */
int64_t e2e_scored_rowid(e2e *t, const char *uid);

#endif /* SUPPORT_E2E_H */
