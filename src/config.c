/*
 * config.c: anomalyd's configuration (see include/an_config.h).
 *
 * The ONE table of keys is `keys[]` below: everything else (defaults,
 * parsing, env overrides, printing, the key list) is driven by it. The INI
 * file is read with inih through a line-counting reader, so every error
 * names file:line.
 */
#define _GNU_SOURCE /* strcasestr */
#include "an_util.h"
#include "an_config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>
#include <libpq-fe.h>

#include "an_redis_url.h"

#include "an_http.h" /* an_http_parse_listen */

extern char **environ;

_Static_assert(sizeof(an_variant) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(an_encoding) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(an_log_level) == sizeof(int), "enum stored as int");

typedef enum {
    K_STR,   /* char * (malloc'd), non-empty */
    K_URL,   /* char *, redis:// URL */
    K_INT,   /* int */
    K_INT64, /* int64_t */
    K_BOOL,  /* bool */
    K_ENUM,  /* int-sized enum, names in `names` */
    K_DUR,   /* int milliseconds */
    K_BYTES, /* size_t */
} ktype;

typedef struct {
    const char *name;
    int value;
} enum_name;

static const enum_name variant_names[] = {
    {"htmengine", AN_VARIANT_HTMENGINE}, {"nupic-1.0", AN_VARIANT_NUPIC10}, {NULL, 0}};
static const enum_name encoding_names[] = {
    {"zlib", AN_ENC_ZLIB}, {"json", AN_ENC_JSON}, {NULL, 0}};
static const enum_name level_names[] = {{"debug", AN_LOG_DEBUG},
                                        {"info", AN_LOG_INFO},
                                        {"warning", AN_LOG_WARNING},
                                        {"error", AN_LOG_ERROR},
                                        {NULL, 0}};

/* Special defaults. */
enum { DEF_TEXT = 0, DEF_HOSTNAME = 1 };

typedef struct {
    const char *section;
    const char *key;
    ktype type;
    const char *def;         /* default, as text (parsed like a file value) */
    const char *env_default; /* if set and non-empty, replaces def */
    int def_kind;            /* DEF_TEXT or DEF_HOSTNAME */
    long long min, max;      /* K_INT/K_INT64/K_DUR/K_BYTES bounds */
    const enum_name *names;  /* K_ENUM */
    size_t off;
    const char *help;
} keydef;

#define OFF(f) offsetof(an_config, f)
#define MiB(x) ((long long)(x) << 20)

static const keydef keys[] = {
    /* ---- [redis] ---- */
    {"redis", "url", K_URL, "redis://127.0.0.1:6379/0", "ANOMALYD_REDIS_URL", DEF_TEXT, 0, 0,
     NULL, OFF(redis.url),
     "Redis URL redis://[[user]:password@]host[:port][/db]. Default: $ANOMALYD_REDIS_URL if set "
     "(ops/stack.sh env), else redis://127.0.0.1:6379/0."},
    {"redis", "connect_timeout_ms", K_DUR, "5000", NULL, DEF_TEXT, 1, 600000, NULL,
     OFF(redis.connect_timeout_ms), "Timeout of a Redis connect."},
    {"redis", "timeout_ms", K_DUR, "5000", NULL, DEF_TEXT, 1, 3600000, NULL,
     OFF(redis.timeout_ms), "Socket timeout of a non-blocking Redis command."},
    {"redis", "block_margin_ms", K_DUR, "2000", NULL, DEF_TEXT, 1, 600000, NULL,
     OFF(redis.block_margin_ms),
     "Added to [streams] block_ms for the socket timeout of a blocking read, so a quiet "
     "stream never looks like an I/O error."},
    {"redis", "keepalive_idle_s", K_INT, "10", NULL, DEF_TEXT, 0, 7200, NULL,
     OFF(redis.keepalive_idle_s),
     "TCP keepalive: idle seconds before the first probe (SO_KEEPALIVE on with any of the "
     "keepalive keys > 0); a dead peer is noticed after idle + interval x count."},
    {"redis", "keepalive_interval_s", K_INT, "5", NULL, DEF_TEXT, 0, 600, NULL,
     OFF(redis.keepalive_interval_s), "TCP keepalive: seconds between probes."},
    {"redis", "keepalive_count", K_INT, "3", NULL, DEF_TEXT, 0, 100, NULL,
     OFF(redis.keepalive_count), "TCP keepalive: unanswered probes before the peer is dead."},
    {"redis", "tcp_user_timeout_ms", K_DUR, "30000", NULL, DEF_TEXT, 0, 3600000, NULL,
     OFF(redis.tcp_user_timeout_ms),
     "TCP_USER_TIMEOUT: data left unacknowledged this long closes the connection; 0 = off."},

    /* ---- [postgres] ---- */
    {"postgres", "dsn", K_STR, "dbname=anomalyd", "ANOMALYD_PG_DSN", DEF_TEXT, 0, 0, NULL,
     OFF(postgres.dsn),
     "libpq connection string or URI. Default: $ANOMALYD_PG_DSN if set (ops/stack.sh env), "
     "else dbname=anomalyd."},
    {"postgres", "connect_timeout_ms", K_DUR, "5000", NULL, DEF_TEXT, 0, 600000, NULL,
     OFF(postgres.connect_timeout_ms),
     "libpq connect_timeout (rounded up to whole seconds, at least 2 s); 0 = libpq default."},
    {"postgres", "statement_timeout_ms", K_DUR, "60000", NULL, DEF_TEXT, 0, 86400000, NULL,
     OFF(postgres.statement_timeout_ms), "Session statement_timeout; 0 = none."},
    {"postgres", "lock_timeout_ms", K_DUR, "5000", NULL, DEF_TEXT, 0, 86400000, NULL,
     OFF(postgres.lock_timeout_ms),
     "Session lock_timeout (a timeout is SQLSTATE 55P03, retried as transient); 0 = none."},
    {"postgres", "retry_budget_ms", K_DUR, "10000", NULL, DEF_TEXT, 0, 3600000, NULL,
     OFF(postgres.retry_budget_ms),
     "Transient-error retry of a transaction (docs/htmengine.md section 4.5): give up "
     "once this much time has passed since the first attempt."},
    {"postgres", "retry_initial_ms", K_DUR, "100", NULL, DEF_TEXT, 1, 600000, NULL,
     OFF(postgres.retry_initial_ms), "First retry delay; doubled after each retry."},
    {"postgres", "retry_max_delay_ms", K_DUR, "10000", NULL, DEF_TEXT, 1, 3600000, NULL,
     OFF(postgres.retry_max_delay_ms), "Cap of the retry delay."},
    {"postgres", "keepalives_idle_s", K_INT, "10", NULL, DEF_TEXT, 0, 7200, NULL,
     OFF(postgres.keepalives_idle_s),
     "libpq keepalives_idle (keepalives=1 is added with any keepalive key > 0); a keyword "
     "the dsn sets itself wins. 0 = libpq default."},
    {"postgres", "keepalives_interval_s", K_INT, "5", NULL, DEF_TEXT, 0, 600, NULL,
     OFF(postgres.keepalives_interval_s), "libpq keepalives_interval; 0 = libpq default."},
    {"postgres", "keepalives_count", K_INT, "3", NULL, DEF_TEXT, 0, 100, NULL,
     OFF(postgres.keepalives_count), "libpq keepalives_count; 0 = libpq default."},
    {"postgres", "tcp_user_timeout_ms", K_DUR, "30000", NULL, DEF_TEXT, 0, 3600000, NULL,
     OFF(postgres.tcp_user_timeout_ms),
     "libpq tcp_user_timeout: a query whose data stays unacknowledged this long fails "
     "(a silent partition is detected instead of blocking for hours); 0 = off."},
    {"postgres", "response_timeout_ms", K_DUR, "30000", NULL, DEF_TEXT, 0, 86400000, NULL,
     OFF(postgres.response_timeout_ms),
     "A statement whose answer takes longer than this has its connection closed and is "
     "retried: detects a peer that TCP still sees alive (a hung proxy or server). Keep it "
     "above the longest legitimate statement; 0 = wait forever."},

    {"postgres", "scored_entry_keep_ms", K_DUR, "604800000", NULL, DEF_TEXT, 3600000,
     2000000000, NULL, OFF(postgres.scored_entry_keep_ms),
     "How long the ids of scored input entries are kept (table scored_entry, pruned "
     "hourly): an entry redelivered later than this is taken for a producer's duplicate "
     "(acked, its output not published). Keep it above any backlog or outage you expect."},

    /* ---- [streams] ---- */
    {"streams", "input", K_STR, "htm:results", NULL, DEF_TEXT, 0, 0, NULL, OFF(streams.input),
     "Input stream of HTM result batches."},
    {"streams", "group", K_STR, "anomalyd", NULL, DEF_TEXT, 0, 0, NULL, OFF(streams.group),
     "Consumer group on the input stream."},
    {"streams", "consumer", K_STR, NULL, NULL, DEF_HOSTNAME, 0, 0, NULL, OFF(streams.consumer),
     "Consumer name in the group. Default: the host name."},
    {"streams", "consumer_suffix", K_STR, "", NULL, DEF_TEXT, 1, 0, NULL,
     OFF(streams.consumer_suffix),
     "Appended to the consumer name (e.g. \"-2\" for a second anomalyd on a host), so names "
     "stay stable across restarts. --consumer NAME on the command line is used as is."},
    {"streams", "output", K_STR, "htm:model_results", NULL, DEF_TEXT, 0, 0, NULL,
     OFF(streams.output), "Output stream (model-inference-results / model-cmd-result)."},
    {"streams", "dead_letter", K_STR, "htm:results:dead", NULL, DEF_TEXT, 0, 0, NULL,
     OFF(streams.dead_letter), "Dead-letter stream for poison input entries."},
    {"streams", "params_prefix", K_STR, "htm:params:", NULL, DEF_TEXT, 0, 0, NULL,
     OFF(streams.params_prefix), "Prefix of the likelihood params cache hashes (+ uid)."},
    {"streams", "read_count", K_INT, "64", NULL, DEF_TEXT, 1, 10000, NULL,
     OFF(streams.read_count), "XREADGROUP COUNT: entries read per call."},
    {"streams", "block_ms", K_DUR, "2000", NULL, DEF_TEXT, 1, 600000, NULL,
     OFF(streams.block_ms), "XREADGROUP BLOCK."},
    {"streams", "claim_idle_ms", K_DUR, "60000", NULL, DEF_TEXT, 1, 86400000, NULL,
     OFF(streams.claim_idle_ms),
     "XAUTOCLAIM min-idle-time: entries pending this long on another consumer are taken over."},
    {"streams", "defer_max_ms", K_DUR, "120000", NULL, DEF_TEXT, 0, 86400000, NULL,
     OFF(streams.defer_max_ms),
     "How long a batch waits for its predecessor (same model, earlier rows) to be applied "
     "before it is scored anyway, with the gap logged. At least claim_idle_ms, so a dead "
     "consumer's batch can be taken over first."},
    /* A consumer keeps the entries it defers (deep copies). Live operation
     * defers a handful; a multi-consumer catch-up of a large backlog can
     * defer thousands; only a flood for one model reaches these. */
    {"streams", "defer_max_entries", K_INT, "10000", NULL, DEF_TEXT, 1, 10000000, NULL,
     OFF(streams.defer_max_entries),
     "Most entries one consumer keeps waiting for their predecessors; past it an entry "
     "stays pending, uncopied, and is read again after claim_idle_ms."},
    {"streams", "defer_max_bytes", K_BYTES, "256MiB", NULL, DEF_TEXT, 1024, MiB(65536), NULL,
     OFF(streams.defer_max_bytes),
     "Most bytes of field names and values of the entries one consumer keeps waiting; past "
     "it an entry stays pending, uncopied, and is read again after claim_idle_ms."},
    {"streams", "max_deliveries", K_INT, "5", NULL, DEF_TEXT, 1, 1000, NULL,
     OFF(streams.max_deliveries),
     "An entry whose processing was attempted more than this many times without completing "
     "(e.g. consumers crashing on it) goes to the dead-letter stream. Counted in the hash "
     "<input>:attempts; re-reads, takeovers and waiting are not attempts."},
    {"streams", "output_maxlen", K_INT64, "1000000", NULL, DEF_TEXT, 0, 1000000000000LL, NULL,
     OFF(streams.output_maxlen),
     "XADD MAXLEN ~ of the output stream; 0 = no trimming. At least max_results (one "
     "entry's messages)."},
    {"streams", "dead_letter_maxlen", K_INT64, "100000", NULL, DEF_TEXT, 0, 1000000000000LL,
     NULL, OFF(streams.dead_letter_maxlen),
     "XADD MAXLEN ~ of the dead-letter stream (oldest dead letters dropped first); "
     "0 = no trimming."},
    {"streams", "trim_interval_ms", K_DUR, "5000", NULL, DEF_TEXT, 0, 3600000, NULL,
     OFF(streams.trim_interval_ms),
     "How often a consumer trims the input stream (XTRIM MINID ~ the oldest entry any "
     "consumer group still needs) and cleans orphaned fields of the attempts hash; "
     "0 = never (the stream then grows without bound)."},
    {"streams", "input_retention", K_DUR, "0", NULL, DEF_TEXT, 0, 604800000, NULL,
     OFF(streams.input_retention_ms),
     "Processed input entries younger than this are kept for inspection and replay "
     "(by their id's time on the Redis clock); 0 = none. Unprocessed entries are always "
     "kept, whatever their age."},
    {"streams", "pin_warn_ms", K_DUR, "3600000", NULL, DEF_TEXT, 1, 604800000, NULL,
     OFF(streams.pin_warn_ms),
     "A consumer group whose oldest needed entry is older than input_retention plus this "
     "pins the input stream: it is named in a warning and in anomalyctl status."},
    {"streams", "output_encoding", K_ENUM, "zlib", NULL, DEF_TEXT, 0, 0, encoding_names,
     OFF(streams.output_encoding),
     "Body encoding of output entries: zlib (htmengine wire compatible) or json."},
    /* 4 MiB: a result is ~60-300 bytes of JSON, so ~15k-70k results per
     * entry, far above real batches (at most 1440 results). Checked on the
     * entry as read: hiredis 0.14 reads a whole XREADGROUP reply before we
     * see it, so one read holds up to read_count entries of Redis's own
     * maximum size, copied once (docs/operations.md). Redis itself would
     * allow 512 MB. */
    {"streams", "max_entry_bytes", K_BYTES, "4MiB", NULL, DEF_TEXT, 1024, MiB(512), NULL,
     OFF(streams.max_entry_bytes),
     "Largest input entry accepted (sum of field names and values); larger ones are "
     "dead-lettered before decoding."},
    /* 32 MiB: JSON batches compress 5-10x, so this covers a max-size zlib
     * entry while stopping zlib bombs. It bounds the inflated text only
     * (max_inflated_bytes + 1 bytes, one buffer per entry being decoded);
     * the parsed tree is bounded by max_json_nodes. Measured worst cases at
     * the defaults are in docs/operations.md (ops/codec-memory.sh). */
    {"streams", "max_inflated_bytes", K_BYTES, "32MiB", NULL, DEF_TEXT, 1024, MiB(4096), NULL,
     OFF(streams.max_inflated_bytes),
     "Largest inflated size of a zlib batch (zlib-bomb guard); larger ones are dead-lettered."},
    /* 20000: htmengine sends at most 1440 results per batch. */
    {"streams", "max_results", K_INT, "20000", NULL, DEF_TEXT, 1, 10000000, NULL,
     OFF(streams.max_results),
     "Most results (array elements) in one input entry; more are dead-lettered."},
    /* 250000: a real result is 10-30 nodes (7 + its predictions), so 1440
     * of them are under 45k. The parser's tree costs up to ~250 bytes per
     * node ("{}"), so this bounds it (docs/operations.md). */
    {"streams", "max_json_nodes", K_INT, "250000", NULL, DEF_TEXT, 16, 100000000, NULL,
     OFF(streams.max_json_nodes),
     "Most JSON values and object keys in one batch, counted on the text before it is "
     "parsed; more are dead-lettered."},
    /* 64 MiB: a group is decoded before its transaction (and the next one
     * while it commits); real groups of AN_SERVICE_GROUP_MAX_ROWS rows hold
     * a few MiB. One entry alone always forms a group, whatever its size
     * (its own limits bound it). */
    {"streams", "max_group_decoded_bytes", K_BYTES, "64MiB", NULL, DEF_TEXT, 1024, MiB(4096),
     NULL, OFF(streams.max_group_decoded_bytes),
     "Decoded bytes of the entries one commit group holds; the group ends before an entry "
     "that would pass it."},

    /* ---- [anomaly_likelihood] ---- */
    {"anomaly_likelihood", "variant", K_ENUM, "htmengine", NULL, DEF_TEXT, 0, 0, variant_names,
     OFF(anomaly_likelihood.variant),
     "Likelihood maths: htmengine (nupic 0.3.4, bit-exact) or nupic-1.0 (erfc tail)."},
    {"anomaly_likelihood", "statistics_min_sample_size", K_INT, "100", NULL, DEF_TEXT, 1, 10000000,
     NULL, OFF(anomaly_likelihood.statistics_min_sample_size),
     "Processed rows needed before a likelihood model is built."},
    {"anomaly_likelihood", "statistics_refresh_rate", K_INT, "24", NULL, DEF_TEXT, 1, 10000000,
     NULL, OFF(anomaly_likelihood.statistics_refresh_rate),
     "Rows between re-estimations (at least 0.1 x batch size)."},
    {"anomaly_likelihood", "statistics_sample_size", K_INT, "8640", NULL, DEF_TEXT, 1, 10000000,
     NULL, OFF(anomaly_likelihood.statistics_sample_size),
     "Most recent processed rows used for an estimate."},
    {"anomaly_likelihood", "state_cache_metrics", K_INT, "10000", NULL, DEF_TEXT, 0, 10000000,
     NULL, OFF(anomaly_likelihood.state_cache_metrics),
     "Metrics whose parsed likelihood state is kept in memory (LRU, ~0.7 KiB each; 0 = off). "
     "A hit skips parsing the params; it is checked against model_params read under the lock."},
    /* 256 MiB: a mature metric's window is statistics_sample_size x 24 bytes
     * (~203 KiB at 8640), so ~1,290 mature metrics re-estimate without
     * reading PostgreSQL; the least recently used are dropped beyond. */
    {"anomaly_likelihood", "sample_window_bytes", K_BYTES, "256MiB", NULL, DEF_TEXT, 0,
     MiB(65536), NULL, OFF(anomaly_likelihood.sample_window_bytes),
     "Memory for the metrics' newest processed samples (LRU over metrics; 0 = off). A hit "
     "answers the re-estimate's tail read without PostgreSQL; it is used only when the "
     "watermark read under the lock is the one this process committed and the state cache "
     "hit."},

    /* ---- [debugging] ---- */
    {"debugging", "profiling", K_BOOL, "false", NULL, DEF_TEXT, 0, 0, NULL,
     OFF(debugging.profiling), "Log per-batch timing lines (also when [log] level is debug)."},

    /* ---- [log] ---- */
    {"log", "level", K_ENUM, "info", NULL, DEF_TEXT, 0, 0, level_names, OFF(log.level),
     "Lowest level logged: debug, info, warning or error."},

    /* ---- [http] ---- */
    {"http", "listen", K_STR, "127.0.0.1:9464", NULL, DEF_TEXT, 1, 0, NULL, OFF(http.listen),
     "Address of the /metrics, /livez and /readyz endpoint: host:port or [ipv6]:port "
     "(port 0: any free port, logged); empty = no endpoint."},
    {"http", "live_max_age_ms", K_DUR, "120000", NULL, DEF_TEXT, 1000, 86400000, NULL,
     OFF(http.live_max_age_ms),
     "/livez answers 503 once the main loop has not shown a sign of life for this long. "
     "Above the longest blocking call ([postgres] statement_timeout_ms)."},
    /* ---- [alerts] (anomalyctl alerts, docs/alerts.md) ---- */
    {"alerts", "group", K_STR, "notify", NULL, DEF_TEXT, 0, 0, NULL, OFF(alerts.group),
     "Consumer group of anomalyctl alerts on the output stream (--group)."},
    {"alerts", "stream", K_STR, "htm:alerts", NULL, DEF_TEXT, 0, 0, NULL, OFF(alerts.stream),
     "Alerts stream (--stream); its dedupe and throttle state lives in <stream>:last, "
     "<stream>:fired, <stream>:fired:order, overrides in <stream>:thresholds."},
    {"alerts", "stream_maxlen", K_INT64, "100000", NULL, DEF_TEXT, 1, 1000000000000LL, NULL,
     OFF(alerts.stream_maxlen), "XADD MAXLEN of the alerts stream (exact: alerts are few)."},
    {"alerts", "fired_max", K_INT, "100000", NULL, DEF_TEXT, 1, 100000000, NULL,
     OFF(alerts.fired_max),
     "Dedupe records kept (one per alert, oldest row time dropped first, ~100 bytes each)."},
    {"alerts", "metrics_max", K_INT, "100000", NULL, DEF_TEXT, 1, 100000000, NULL,
     OFF(alerts.metrics_max),
     "Metrics whose last alert time (the throttle state) is kept; the least recently "
     "alerted are dropped first."},
    {"alerts", "exec_retries", K_INT, "3", NULL, DEF_TEXT, 0, 100, NULL,
     OFF(alerts.exec_retries), "--exec: retries after a failed run, then logged and skipped."},
    {"alerts", "exec_backoff_ms", K_DUR, "1000", NULL, DEF_TEXT, 0, 600000, NULL,
     OFF(alerts.exec_backoff_ms), "--exec: delay before the first retry, doubled after each."},
    {"alerts", "exec_timeout_ms", K_DUR, "30000", NULL, DEF_TEXT, 0, 3600000, NULL,
     OFF(alerts.exec_timeout_ms), "--exec: a run taking longer is killed and failed; 0 = none."},

    /* ---- [plot] (anomalyctl plot and report) ---- */
    {"plot", "max_points", K_INT, "10000", NULL, DEF_TEXT, 2, 10000000, NULL,
     OFF(plot.max_points),
     "anomalyctl plot: a range with more rows is downsampled to this many path points "
     "(--max-points)."},
    {"plot", "report_metrics", K_INT, "200", NULL, DEF_TEXT, 1, 100000, NULL,
     OFF(plot.report_metrics),
     "anomalyctl report: metrics on the page (highest latest anomaly first)."},
    {"plot", "report_points", K_INT, "1000", NULL, DEF_TEXT, 2, 1000000, NULL,
     OFF(plot.report_points), "anomalyctl report: path points per metric plot."},
};

#define NKEYS (sizeof keys / sizeof keys[0])

/* Environment variables starting with ANOMALYD_ that are not key overrides. */
static bool env_exempt(const char *name, size_t len)
{
    static const char *const exact[] = {"ANOMALYD_REDIS_URL", "ANOMALYD_PG_DSN"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strlen(exact[i]) == len && !strncmp(name, exact[i], len))
            return true;
    return len >= 15 && !strncmp(name, "ANOMALYD_STACK_", 15);
}

/* ------------------------------------------------------------ helpers */

static void *field(an_config *cfg, const keydef *k) { return (char *)cfg + k->off; }
static const void *cfield(const an_config *cfg, const keydef *k)
{
    return (const char *)cfg + k->off;
}

static const keydef *find_key(const char *section, const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcasecmp(keys[i].section, section) && !strcasecmp(keys[i].key, key))
            return &keys[i];
    return NULL;
}

static bool known_section(const char *section)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcasecmp(keys[i].section, section))
            return true;
    return false;
}

/* "redis, postgres, ..." */
static void list_sections(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (i > 0 && !strcmp(keys[i - 1].section, keys[i].section))
            continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", keys[i].section);
        if (n < 0 || (size_t)n >= len - used)
            return;
        used += (size_t)n;
    }
}

static void list_names(const enum_name *names, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (const enum_name *e = names; e->name; e++) {
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", e->name);
        if (n < 0 || (size_t)n >= len - used)
            return;
        used += (size_t)n;
    }
}

static const char *enum_to_name(const enum_name *names, int v)
{
    for (const enum_name *e = names; e->name; e++)
        if (e->value == v)
            return e->name;
    return "?";
}

static void env_name(const keydef *k, char *buf, size_t len)
{
    snprintf(buf, len, "ANOMALYD_%s_%s", k->section, k->key);
    for (char *p = buf; *p; p++)
        *p = (char)toupper((unsigned char)*p);
}

/* Trims blanks; strips one pair of surrounding double quotes. Returns a
 * malloc'd copy or NULL. */
static char *clean_value(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
        n--;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, v, n);
        s[n] = 0;
    }
    return s;
}

/* Parses an optional sign and digits; whole string. */
static bool parse_ll(const char *s, long long *out)
{
    if (!*s)
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

/* Leading unsigned decimal digits; *rest gets the suffix. */
static bool parse_num_unit(const char *s, long long *num, const char **rest)
{
    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || v > (unsigned long long)LLONG_MAX)
        return false;
    while (*end == ' ')
        end++;
    *num = (long long)v;
    *rest = end;
    return true;
}

static bool mul_ok(long long a, long long m, long long *out)
{
    if (a != 0 && m > LLONG_MAX / a)
        return false;
    *out = a * m;
    return true;
}

static bool parse_duration(const char *s, long long *ms)
{
    long long n;
    const char *u;
    if (!parse_num_unit(s, &n, &u))
        return false;
    long long mult;
    if (!*u || !strcasecmp(u, "ms"))
        mult = 1;
    else if (!strcasecmp(u, "s"))
        mult = 1000;
    else if (!strcasecmp(u, "min"))
        mult = 60000;
    else if (!strcasecmp(u, "h"))
        mult = 3600000;
    else
        return false;
    return mul_ok(n, mult, ms);
}

static bool parse_bytes(const char *s, long long *bytes)
{
    long long n;
    const char *u;
    if (!parse_num_unit(s, &n, &u))
        return false;
    long long mult;
    if (!*u || !strcasecmp(u, "b"))
        mult = 1;
    else if (!strcasecmp(u, "k") || !strcasecmp(u, "kb") || !strcasecmp(u, "kib"))
        mult = 1LL << 10;
    else if (!strcasecmp(u, "m") || !strcasecmp(u, "mb") || !strcasecmp(u, "mib"))
        mult = 1LL << 20;
    else if (!strcasecmp(u, "g") || !strcasecmp(u, "gb") || !strcasecmp(u, "gib"))
        mult = 1LL << 30;
    else
        return false;
    return mul_ok(n, mult, bytes);
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"true", "yes", "on", "1"};
    static const char *const f[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, t[i])) {
            *out = true;
            return true;
        }
        if (!strcasecmp(s, f[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}

static int set_string(char **slot, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return AN_ENOMEM;
    free(*slot);
    *slot = s;
    return 0;
}

/* The value of name v among the names of enum key k into *val. false when
 * v is none of them. */
static bool parse_enum(const keydef *k, const char *v, int *val)
{
    if (k->names == variant_names) {
        an_variant var;
        if (an_variant_parse(v, &var) != 0)
            return false;
        *val = (int)var;
        return true;
    }
    for (const enum_name *e = k->names; e->name; e++)
        if (!strcmp(e->name, v)) {
            *val = e->value;
            return true;
        }
    return false;
}

/* Parses text for key k and stores it. where: "file:line" / env name /
 * "default". */
static int apply_value(an_config *cfg, const keydef *k, const char *raw, const char *where,
                       char *err, size_t errlen)
{
    char *v = clean_value(raw);
    if (!v)
        return AN_ENOMEM;
    int rc = 0;
    long long n = 0;
    char what[160];
#define FAIL(...)                                                                              \
    do {                                                                                       \
        char msg_[256];                                                                        \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                              \
        an_seterr(err, errlen, "%s: [%s] %s: %s", where, k->section, k->key, msg_);               \
        rc = AN_ECONFIG;                                                                       \
        goto out;                                                                              \
    } while (0)

    /* A value is quoted back only masked: a URL pasted under the wrong key
     * must not print its password in the error. */
    char shown[256];
    const char *vs = strstr(v, "://") || strstr(v, "password")
                         ? an_config_mask_secret(v, shown, sizeof shown) : v;
    switch (k->type) {
    case K_STR:
    case K_URL:
        if (!*v && k->min == 0)   /* min 1 on a K_STR key: may be empty */
            FAIL("must not be empty");
        if (k->type == K_URL) {
            /* the connector's own parser: what passes here connects */
            an_redis_url u;
            char uerr[200];
            int ur = an_redis_url_parse(v, &u, uerr, sizeof uerr);
            an_redis_url_free(&u);
            if (ur == AN_ENOMEM)
                FAIL("out of memory");
            if (ur)
                FAIL("%s", uerr);
        }
        rc = set_string((char **)field(cfg, k), v);
        break;
    case K_INT:
    case K_INT64:
        if (!parse_ll(v, &n))
            FAIL("'%s' is not an integer (%lld..%lld)", vs, k->min, k->max);
        if (n < k->min || n > k->max)
            FAIL("'%s' is out of range (%lld..%lld)", vs, k->min, k->max);
        if (k->type == K_INT)
            *(int *)field(cfg, k) = (int)n;
        else
            *(int64_t *)field(cfg, k) = (int64_t)n;
        break;
    case K_DUR:
        if (!parse_duration(v, &n))
            FAIL("'%s' is not a duration (milliseconds, or a number with unit ms, s, min, h; "
                 "%lld..%lld ms)",
                 vs, k->min, k->max);
        if (n < k->min || n > k->max)
            FAIL("'%s' is out of range (%lld..%lld ms)", vs, k->min, k->max);
        *(int *)field(cfg, k) = (int)n;
        break;
    case K_BYTES:
        if (!parse_bytes(v, &n))
            FAIL("'%s' is not a size (bytes, or a number with unit KiB, MiB, GiB; %lld..%lld "
                 "bytes)",
                 vs, k->min, k->max);
        if (n < k->min || n > k->max)
            FAIL("'%s' is out of range (%lld..%lld bytes)", vs, k->min, k->max);
        *(size_t *)field(cfg, k) = (size_t)n;
        break;
    case K_BOOL: {
        bool b;
        if (!parse_bool(v, &b))
            FAIL("'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", vs);
        *(bool *)field(cfg, k) = b;
        break;
    }
    case K_ENUM: {
        int val = -1;
        if (!parse_enum(k, v, &val)) {
            list_names(k->names, what, sizeof what);
            FAIL("'%s' is not one of: %s", vs, what);
        }
        *(int *)field(cfg, k) = val;
        break;
    }
    }
out:
#undef FAIL
    free(v);
    return rc;
}

static int apply_default(an_config *cfg, const keydef *k, char *err, size_t errlen)
{
    const char *def = k->def;
    char host[256];
    const char *where = "built-in default";
    if (k->def_kind == DEF_HOSTNAME) {
        if (gethostname(host, sizeof host) != 0 || !host[0])
            snprintf(host, sizeof host, "anomalyd");
        host[sizeof host - 1] = 0;
        def = host;
    }
    if (k->env_default) {
        const char *e = getenv(k->env_default);
        if (e && *e) {
            def = e;
            where = k->env_default;
        }
    }
    return apply_value(cfg, k, def, where, err, errlen);
}

/* ---------------------------------------------------------- file parse */

typedef struct {
    FILE *f;
    const char *path;
    int line;
    an_config *cfg;
    char *err;
    size_t errlen;
    int rc;             /* first error */
    bool seen[NKEYS];   /* duplicate detection */
} parse_ctx;

static void ctx_fail(parse_ctx *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ctx_fail(parse_ctx *c, int rc, const char *fmt, ...)
{
    if (c->rc)
        return; /* keep the first */
    c->rc = rc;
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
}

/* inih reader: counts lines and checks what inih would accept silently
 * (over-long lines, continuation lines, unknown empty sections). */
static char *reader(char *str, int num, void *stream)
{
    parse_ctx *c = stream;
    if (!fgets(str, num, c->f))
        return NULL;
    c->line++;
    size_t n = strlen(str);
    if (n > 0 && str[n - 1] != '\n' && !feof(c->f)) {
        ctx_fail(c, AN_ECONFIG, "%s:%d: line longer than %d characters", c->path, c->line,
                 num - 2);
        return NULL;
    }
    const char *p = str;
    if (c->line == 1 && !strncmp(p, "\xEF\xBB\xBF", 3))
        p += 3;
    bool indented = (*p == ' ' || *p == '\t');
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == 0 || *p == '\n' || *p == '\r' || *p == ';' || *p == '#')
        return str;
    if (indented && *p != '[') {
        ctx_fail(c, AN_ECONFIG,
                 "%s:%d: indented line (continuation lines are not supported; put the value "
                 "on one line)",
                 c->path, c->line);
        return str;
    }
    if (*p != '[' && !strchr(p, '=') && !strchr(p, ':')) {
        ctx_fail(c, AN_ECONFIG, "%s:%d: syntax error (expected [section], key = value or a comment)",
                 c->path, c->line);
        return str;
    }
    if (*p == '[') {
        const char *e = strchr(p, ']');
        if (!e) {
            ctx_fail(c, AN_ECONFIG, "%s:%d: syntax error: '[' without ']'", c->path, c->line);
            return str;
        }
        char name[128];
        size_t len = (size_t)(e - p - 1);
        if (len >= sizeof name)
            len = sizeof name - 1;
        memcpy(name, p + 1, len);
        name[len] = 0;
        if (!known_section(name)) {
            char secs[256];
            list_sections(secs, sizeof secs);
            ctx_fail(c, AN_ECONFIG, "%s:%d: [%s]: unknown section (known: %s)", c->path,
                     c->line, name, secs);
        }
    }
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *c = user;
    if (c->rc)
        return 1; /* first error already recorded; keep reading quietly */
    if (!section[0]) {
        ctx_fail(c, AN_ECONFIG, "%s:%d: %s: key outside any [section]", c->path, c->line, name);
        return 0;
    }
    if (!known_section(section))
        return 0; /* reported by the reader */
    const keydef *k = find_key(section, name);
    if (!k) {
        ctx_fail(c, AN_ECONFIG, "%s:%d: [%s] %s: unknown key", c->path, c->line, section, name);
        return 0;
    }
    size_t idx = (size_t)(k - keys);
    if (c->seen[idx]) {
        ctx_fail(c, AN_ECONFIG, "%s:%d: [%s] %s: duplicate key", c->path, c->line, k->section,
                 k->key);
        return 0;
    }
    c->seen[idx] = true;
    char where[512];
    snprintf(where, sizeof where, "%s:%d", c->path, c->line);
    char msg[512];
    int rc = apply_value(c->cfg, k, value, where, msg, sizeof msg);
    if (rc) {
        ctx_fail(c, rc, "%s", rc == AN_ENOMEM ? "out of memory" : msg);
        return 0;
    }
    return 1;
}

static int load_file(an_config *cfg, const char *path, char *err, size_t errlen)
{
    parse_ctx c;
    memset(&c, 0, sizeof c);
    c.f = fopen(path, "r");
    if (!c.f) {
        an_seterr(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
        return AN_ECONFIG;
    }
    c.path = path;
    c.cfg = cfg;
    c.err = err;
    c.errlen = errlen;
    int line = ini_parse_stream(reader, &c, handler, &c);
    fclose(c.f);
    if (c.rc)
        return c.rc;
    if (line < 0) {
        an_seterr(err, errlen, "%s: cannot parse config file", path);
        return AN_ECONFIG;
    }
    if (line > 0) {
        an_seterr(err, errlen, "%s:%d: syntax error (expected [section], key = value or a comment)",
               path, line);
        return AN_ECONFIG;
    }
    return 0;
}

/* ----------------------------------------------------------------- env */

static int load_env(an_config *cfg, char *err, size_t errlen)
{
    for (char **e = environ; e && *e; e++) {
        const char *var = *e;
        if (strncmp(var, "ANOMALYD_", 9) != 0)
            continue;
        const char *eq = strchr(var, '=');
        size_t nlen = eq ? (size_t)(eq - var) : strlen(var);
        if (env_exempt(var, nlen))
            continue;
        const keydef *k = NULL;
        char name[128];
        for (size_t i = 0; i < NKEYS; i++) {
            env_name(&keys[i], name, sizeof name);
            if (strlen(name) == nlen && !strncmp(name, var, nlen)) {
                k = &keys[i];
                break;
            }
        }
        char vname[128];
        snprintf(vname, sizeof vname, "%.*s", (int)(nlen < 100 ? nlen : 100), var);
        if (!k) {
            /* Name the section if the prefix matches one. */
            const char *sec = NULL;
            for (size_t i = 0; i < NKEYS; i++) {
                char pre[64];
                snprintf(pre, sizeof pre, "ANOMALYD_%s_", keys[i].section);
                for (char *p = pre; *p; p++)
                    *p = (char)toupper((unsigned char)*p);
                if (!strncmp(vname, pre, strlen(pre)) &&
                    (!sec || strlen(keys[i].section) > strlen(sec)))
                    sec = keys[i].section;
            }
            if (sec) {
                char key[128];
                snprintf(key, sizeof key, "%s", vname + 9 + strlen(sec) + 1);
                for (char *p = key; *p; p++)
                    *p = (char)tolower((unsigned char)*p);
                an_seterr(err, errlen, "%s: [%s] %s: unknown key (no such config key to override)",
                       vname, sec, key);
            } else {
                char secs[256];
                list_sections(secs, sizeof secs);
                an_seterr(err, errlen,
                       "%s: unknown setting: ANOMALYD_<SECTION>_<KEY> overrides need a known "
                       "section (%s) and key",
                       vname, secs);
            }
            return AN_ECONFIG;
        }
        int rc = apply_value(cfg, k, eq ? eq + 1 : "", vname, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* ----------------------------------------------------------------- API */

void an_config_free(an_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type == K_STR || keys[i].type == K_URL)
            free(*(char **)field(cfg, &keys[i]));
    memset(cfg, 0, sizeof *cfg);
}

static int cross_checks(const an_config *cfg, char *err, size_t errlen)
{
    const an_config *c = cfg;
    if (c->anomaly_likelihood.statistics_min_sample_size >
        c->anomaly_likelihood.statistics_sample_size) {
        an_seterr(err, errlen,
               "[anomaly_likelihood] statistics_min_sample_size (%d) must not exceed "
               "statistics_sample_size (%d)",
               c->anomaly_likelihood.statistics_min_sample_size,
               c->anomaly_likelihood.statistics_sample_size);
        return AN_ECONFIG;
    }
    if (c->streams.defer_max_ms < c->streams.claim_idle_ms) {
        an_seterr(err, errlen,
               "[streams] defer_max_ms (%d) must be at least claim_idle_ms (%d): a batch "
               "waits for a dead consumer's predecessor to be taken over",
               c->streams.defer_max_ms, c->streams.claim_idle_ms);
        return AN_ECONFIG;
    }
    if (c->streams.output_maxlen > 0 && c->streams.output_maxlen < c->streams.max_results) {
        an_seterr(err, errlen,
               "[streams] output_maxlen (%" PRId64 ") must be at least max_results (%d): one "
               "entry's messages would be trimmed from the output stream as it publishes them",
               c->streams.output_maxlen, c->streams.max_results);
        return AN_ECONFIG;
    }
    if (c->postgres.retry_initial_ms > c->postgres.retry_max_delay_ms) {
        an_seterr(err, errlen,
               "[postgres] retry_initial_ms (%d) must not exceed retry_max_delay_ms (%d)",
               c->postgres.retry_initial_ms, c->postgres.retry_max_delay_ms);
        return AN_ECONFIG;
    }
    if (c->http.listen && c->http.listen[0]) {
        an_listen_addr a;
        char why[320];
        if (an_http_parse_listen(c->http.listen, &a, why, sizeof why)) {
            an_seterr(err, errlen, "[http] listen: %s", why);
            return AN_ECONFIG;
        }
    }
    return 0;
}

int an_config_load(an_config *cfg, const char *path, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    memset(cfg, 0, sizeof *cfg);
    int rc = 0;
    for (size_t i = 0; i < NKEYS && !rc; i++)
        rc = apply_default(cfg, &keys[i], err, errlen);
    if (!rc && path)
        rc = load_file(cfg, path, err, errlen);
    if (!rc)
        rc = load_env(cfg, err, errlen);
    if (!rc)
        rc = cross_checks(cfg, err, errlen);
    if (!rc && cfg->streams.consumer_suffix[0]) {
        /* The suffix is applied once, here: an_config_set("consumer") later
         * (anomalyd --consumer) sets the exact name. */
        size_t n = strlen(cfg->streams.consumer) + strlen(cfg->streams.consumer_suffix) + 1;
        char *name = malloc(n);
        if (!name) {
            rc = AN_ENOMEM;
        } else {
            snprintf(name, n, "%s%s", cfg->streams.consumer, cfg->streams.consumer_suffix);
            free(cfg->streams.consumer);
            cfg->streams.consumer = name;
        }
    }
    if (rc) {
        if (rc == AN_ENOMEM)
            an_seterr(err, errlen, "out of memory");
        an_config_free(cfg);
    }
    return rc;
}

int an_config_set(an_config *cfg, const char *section, const char *key, const char *value,
                  const char *where, char *err, size_t errlen)
{
    const keydef *k = find_key(section ? section : "", key ? key : "");
    if (!where)
        where = "set";
    if (!k) {
        an_seterr(err, errlen, "%s: [%s] %s: unknown key", where, section ? section : "",
               key ? key : "");
        return AN_ECONFIG;
    }
    int rc = apply_value(cfg, k, value ? value : "", where, err, errlen);
    if (rc == AN_ENOMEM)
        an_seterr(err, errlen, "out of memory");
    return rc;
}

/* ------------------------------------------------------------ masking */

/* A libpq DSN rebuilt from libpq's own parse (PQconninfoParse) as
 * keyword=value pairs, the password's value replaced by ***; a DSN that
 * does not parse is not shown at all (its tokens may be a password). */
static char *mask_dsn(const char *dsn, char *buf, size_t len)
{
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    if (!opts) {
        snprintf(buf, len, "(a DSN libpq cannot parse; not shown)");
        return buf;
    }
    size_t n = 0;
    buf[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword && n < len; o++) {
        if (!o->val)
            continue;
        const char *v = strcmp(o->keyword, "password") ? o->val : "***";
        /* quoted (libpq's rules) only when the value needs it */
        bool quote = !*v || strpbrk(v, " \t\n\r\f\v'\\") != NULL;
        n += (size_t)snprintf(buf + n, len - n, "%s%s=%s", n ? " " : "", o->keyword,
                              quote ? "'" : "");
        for (; *v && n + 2 < len; v++) {
            if (*v == '\'' || *v == '\\')
                buf[n++] = '\\';
            buf[n++] = *v;
        }
        if (quote && n + 1 < len)
            buf[n++] = '\'';
        buf[n < len ? n : len - 1] = '\0';
    }
    PQconninfoFree(opts);
    return buf;
}

char *an_config_mask_secret(const char *text, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    if (!text) {
        snprintf(buf, len, "(null)");
        return buf;
    }
    if (!strncmp(text, "redis://", 8) || !strncmp(text, "unix://", 7))
        return an_redis_url_redact(text, buf, len);
    return mask_dsn(text, buf, len);
}

/* ------------------------------------------------------------ printing */

static void format_value(const an_config *cfg, const keydef *k, char *buf, size_t len)
{
    const void *f = cfield(cfg, k);
    switch (k->type) {
    case K_STR:
    case K_URL: {
        const char *s = *(char *const *)f;
        if (k->off == OFF(redis.url) || k->off == OFF(postgres.dsn))
            an_config_mask_secret(s, buf, len);
        else
            snprintf(buf, len, "%s", s ? s : "");
        break;
    }
    case K_INT:
    case K_DUR:
        snprintf(buf, len, "%d", *(const int *)f);
        break;
    case K_INT64:
        snprintf(buf, len, "%" PRId64, *(const int64_t *)f);
        break;
    case K_BYTES: {
        size_t b = *(const size_t *)f;
        if (b && b % (1u << 30) == 0)
            snprintf(buf, len, "%zuGiB", b >> 30);
        else if (b && b % (1u << 20) == 0)
            snprintf(buf, len, "%zuMiB", b >> 20);
        else if (b && b % (1u << 10) == 0)
            snprintf(buf, len, "%zuKiB", b >> 10);
        else
            snprintf(buf, len, "%zu", b);
        break;
    }
    case K_BOOL:
        snprintf(buf, len, "%s", *(const bool *)f ? "true" : "false");
        break;
    case K_ENUM:
        snprintf(buf, len, "%s", enum_to_name(k->names, *(const int *)f));
        break;
    }
}

void an_config_print(const an_config *cfg, FILE *out)
{
    const char *sec = NULL;
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        if (!sec || strcmp(sec, k->section) != 0) {
            fprintf(out, "%s[%s]\n", sec ? "\n" : "", k->section);
            sec = k->section;
        }
        char v[1024];
        format_value(cfg, k, v, sizeof v);
        fprintf(out, "%s = %s\n", k->key, v);
    }
}

static const char *type_name(ktype t)
{
    switch (t) {
    case K_STR: return "string";
    case K_URL: return "url";
    case K_INT:
    case K_INT64: return "int";
    case K_BOOL: return "bool";
    case K_ENUM: return "enum";
    case K_DUR: return "duration-ms";
    case K_BYTES: return "bytes";
    }
    return "?";
}

void an_config_print_keys(FILE *out)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        char env[128], range[256] = "";
        env_name(k, env, sizeof env);
        if (k->type == K_ENUM) {
            char names[200];
            list_names(k->names, names, sizeof names);
            snprintf(range, sizeof range, " one of: %s;", names);
        } else if (k->type == K_INT || k->type == K_INT64 || k->type == K_DUR ||
                   k->type == K_BYTES) {
            snprintf(range, sizeof range, " %lld..%lld;", k->min, k->max);
        }
        fprintf(out, "[%s] %s (%s;%s default %s%s%s; env %s)\n    %s\n", k->section, k->key,
                type_name(k->type), range, k->def_kind == DEF_HOSTNAME ? "<host name>" : k->def,
                k->env_default ? ", or $" : "", k->env_default ? k->env_default : "", env,
                k->help);
    }
}

an_helper_config an_config_helper(const an_config *cfg)
{
    an_helper_config h = an_helper_config_default();
    h.variant = cfg->anomaly_likelihood.variant;
    h.min_sample_size = cfg->anomaly_likelihood.statistics_min_sample_size;
    h.refresh_rate = cfg->anomaly_likelihood.statistics_refresh_rate;
    h.sample_size = cfg->anomaly_likelihood.statistics_sample_size;
    return h;
}

an_codec_limits an_config_codec_limits(const an_config *cfg)
{
    an_codec_limits l;
    l.max_entry_bytes = cfg->streams.max_entry_bytes;
    l.max_inflated_bytes = cfg->streams.max_inflated_bytes;
    l.max_results = (size_t)cfg->streams.max_results;
    l.max_json_nodes = (size_t)cfg->streams.max_json_nodes;
    return l;
}

int an_config_parse_duration(const char *text, int64_t *ms)
{
    long long v;
    if (!text || !parse_duration(text, &v))
        return AN_EINVAL;
    *ms = (int64_t)v;
    return 0;
}
