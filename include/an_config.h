/*
 * an_config.h: anomalyd's configuration (one INI file + environment).
 *
 * Every key lives in ONE table in src/config.c: section, key, type, default,
 * bounds or allowed values, where it goes in an_config, and a help text.
 * ops/anomalyd.conf is the commented example holding every key with its
 * default; an_config_print_keys() prints the table.
 *
 * Precedence (lowest first):
 *   1. built-in defaults. Two defaults come from the environment:
 *        [redis] url      <- ANOMALYD_REDIS_URL, else redis://127.0.0.1:6379/0
 *        [postgres] dsn   <- ANOMALYD_PG_DSN,    else "dbname=anomalyd"
 *      These two variables are DEFAULTS ("when no config says otherwise",
 *      README.md): a url/dsn written in the file wins over them.
 *   2. the config file (if a path is given);
 *   3. ANOMALYD_<SECTION>_<KEY> environment overrides, upper case, e.g.
 *      ANOMALYD_STREAMS_READ_COUNT=16,
 *      ANOMALYD_ANOMALY_LIKELIHOOD_VARIANT=nupic-1.0,
 *      ANOMALYD_POSTGRES_DSN=... (overrides even the file).
 *      (ANOMALYD_REDIS_URL is the one name that is both; it keeps its
 *      "default" meaning above. Use the file to pin a Redis URL.)
 *
 * Errors: an unknown section or key, or a bad value, in the file or in an
 * ANOMALYD_* override, makes an_config_load fail with one message naming
 * where (file:line or the env variable), [section] key and what was
 * expected, e.g.
 *   anomalyd.conf:12: [streams] read_count: 'abc' is not an integer (1..10000)
 *   ANOMALYD_STREAMS_READ_CONT: [streams] read_cont: unknown key (no such config key to override)
 * Environment variables that start with ANOMALYD_ are all checked, except
 * ANOMALYD_REDIS_URL, ANOMALYD_PG_DSN and ANOMALYD_STACK_* (ops/stack.sh).
 *
 * Value syntax:
 *   int       decimal integer, within [min, max]
 *   bool      true/false, yes/no, on/off, 1/0 (case-insensitive)
 *   enum      one of the listed names (case-sensitive)
 *   duration  milliseconds: "1500", or with a unit: "1500ms", "2s", "1min",
 *             "1h" (result must be a whole number of ms within bounds)
 *   bytes     "1048576", or with a unit: "512KiB", "16MiB", "1GiB" (also
 *             K/M/G and KB/MB/GB, all binary: 1K = 1024)
 *   string    anything (leading/trailing blanks trimmed; may be empty only
 *             where noted)
 * Lines are at most 200 characters (inih's limit).
 *
 * Ownership: strings in an_config are malloc'd and owned by the struct;
 * an_config_free releases them. Not thread-safe (reads the environment).
 */
#ifndef AN_CONFIG_H
#define AN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "an_codec.h"      /* an_encoding */
#include "an_error.h"
#include "an_helper.h"
#include "an_likelihood.h" /* an_variant */
#include "an_log.h"        /* an_log_level */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct an_config {
    struct {
        char *url;              /* redis://[[user]:password@]host:port/db */
        int connect_timeout_ms; /* an_redis_opts.connect_timeout_ms (5000) */
        int timeout_ms;         /* an_redis_opts.command_timeout_ms (5000) */
        int block_margin_ms;    /* an_redis_opts.block_margin_ms (2000) */
        int keepalive_idle_s;     /* TCP_KEEPIDLE (10) */
        int keepalive_interval_s; /* TCP_KEEPINTVL (5) */
        int keepalive_count;      /* TCP_KEEPCNT (3) */
        int tcp_user_timeout_ms;  /* TCP_USER_TIMEOUT (30000); 0 = off */
    } redis;
    struct {
        char *dsn;                 /* libpq conninfo or URI */
        int connect_timeout_ms;    /* libpq connect_timeout, rounded up to s (5000) */
        int statement_timeout_ms;  /* per session; 0 = none (60000) */
        int lock_timeout_ms;       /* per session; 0 = none (5000); timeout = 55P03 */
        int retry_budget_ms;       /* docs/htmengine.md §4.5 timeoutSec (10000) */
        int retry_initial_ms;      /* docs/htmengine.md §4.5 initialRetryDelaySec (100) */
        int retry_max_delay_ms;    /* docs/htmengine.md §4.5 maxRetryDelaySec (10000) */
        int keepalives_idle_s;     /* libpq keepalives_idle (10) */
        int keepalives_interval_s; /* libpq keepalives_interval (5) */
        int keepalives_count;      /* libpq keepalives_count (3) */
        int tcp_user_timeout_ms;   /* libpq tcp_user_timeout (30000); 0 = off */
        int response_timeout_ms;   /* client-side wait for an answer (30000); 0 = off */
        int scored_entry_keep_ms;  /* scored_entry rows kept (604800000, 7 days) */
    } postgres;
    struct {
        char *input;          /* htm:results */
        char *group;          /* anomalyd */
        char *consumer;       /* default: gethostname(), + consumer_suffix */
        char *consumer_suffix; /* "" */
        char *output;         /* htm:model_results */
        char *dead_letter;    /* htm:results:dead */
        char *params_prefix;  /* htm:params: */
        int read_count;       /* XREADGROUP COUNT (64) */
        int block_ms;         /* XREADGROUP BLOCK (2000) */
        int claim_idle_ms;    /* XAUTOCLAIM min-idle-time (60000) */
        int max_deliveries;   /* dead-letter after this many deliveries (5) */
        int defer_max_ms;     /* wait bound for a missing predecessor (120000) */
        int defer_max_entries;  /* entries kept deferred at most (10000) */
        size_t defer_max_bytes; /* their field bytes at most (256 MiB) */
        int64_t output_maxlen;     /* XADD MAXLEN ~ (1000000); 0 = no trim */
        int64_t dead_letter_maxlen; /* dead-letter XADD MAXLEN ~ (100000); 0 = no trim */
        int trim_interval_ms;      /* input XTRIM + attempts cleanup period (5000); 0 = off */
        int input_retention_ms;    /* processed entries kept (0) */
        int pin_warn_ms;           /* a group older than retention + this pins (3600000) */
        an_encoding output_encoding; /* AN_ENC_ZLIB */
        size_t max_entry_bytes;    /* an_codec_limits (4 MiB) */
        size_t max_inflated_bytes; /* an_codec_limits (32 MiB) */
        int max_results;           /* an_codec_limits (20000) */
        int max_json_nodes;        /* an_codec_limits (250000) */
        size_t max_group_decoded_bytes; /* decoded entries in hand per group (64 MiB) */
    } streams;
    struct {
        an_variant variant;               /* htmengine */
        int statistics_min_sample_size;   /* 100 */
        int statistics_refresh_rate;      /* 24 */
        int statistics_sample_size;       /* 8640 */
        int state_cache_metrics;          /* 10000; 0 = off */
        size_t sample_window_bytes;       /* 256 MiB; 0 = off */
    } anomaly_likelihood;
    struct {
        char *group;            /* notify: consumer group on the output stream */
        char *stream;           /* htm:alerts: the alerts stream (+ state keys) */
        int64_t stream_maxlen;  /* XADD MAXLEN (exact) of the alerts stream (100000) */
        int fired_max;          /* dedupe records kept (100000) */
        int metrics_max;        /* metrics whose last alert time is kept (100000) */
        int exec_retries;       /* --exec: retries after a failed run (3) */
        int exec_backoff_ms;    /* --exec: first retry delay, doubled (1000) */
        int exec_timeout_ms;    /* --exec: a run longer than this is killed (30000) */
    } alerts;
    struct {
        int max_points;         /* anomalyctl plot: path points before downsampling (10000) */
        int report_metrics;     /* anomalyctl report: metrics on the page (200) */
        int report_points;      /* anomalyctl report: path points per plot (1000) */
    } plot;
    struct {
        bool profiling; /* false */
    } debugging;
    struct {
        an_log_level level; /* AN_LOG_INFO */
    } log;
    struct {
        char *listen;         /* 127.0.0.1:9464; "" = no endpoint */
        int live_max_age_ms;  /* /livez heartbeat age limit (120000) */
    } http;
} an_config;

/* Fills *cfg: defaults, then the file at path (NULL: no file), then the
 * ANOMALYD_* overrides, then cross-key checks. Returns 0; AN_ECONFIG with
 * the message in err (file missing/unreadable, syntax error, unknown
 * section/key, bad value, unknown ANOMALYD_* variable); AN_ENOMEM. On error
 * *cfg holds nothing that needs freeing (calling an_config_free on it is
 * still safe). err may be NULL. */
int an_config_load(an_config *cfg, const char *path, char *err, size_t errlen);

/* Sets one key from text as if it came from the file or the environment
 * (for command-line options such as --consumer). where names the source in
 * messages (e.g. "--consumer"); NULL means "set". Returns 0 or AN_ECONFIG
 * (unknown key / bad value, message in err) or AN_ENOMEM. Cross-key checks
 * are not re-run. */
int an_config_set(an_config *cfg, const char *section, const char *key,
                  const char *value, const char *where, char *err,
                  size_t errlen);

/* Frees the strings and zeroes *cfg. NULL-safe, idempotent. */
void an_config_free(an_config *cfg);

/* Writes the effective configuration as INI (every key, one section after
 * the other). Passwords in [redis] url and [postgres] dsn are printed as
 * "***" (URI user:password@ and conninfo password=...). */
void an_config_print(const an_config *cfg, FILE *out);

/* Writes the key table: section, key, type, default, bounds, env name,
 * help text. */
void an_config_print_keys(FILE *out);

/* The [anomaly_likelihood] settings plus the helper's hard-coded constants
 * (an_helper_config_default() for the rest). */
an_helper_config an_config_helper(const an_config *cfg);

/* Copies text into buf with the password of a redis/postgres URL or of a
 * libpq conninfo "password=..." replaced by ***. Returns buf. */
char *an_config_mask_secret(const char *text, char *buf, size_t len);

/* A duration in the config syntax ("1500", "1500ms", "2s", "1min", "1h")
 * into *ms, for command-line flags. 0 or AN_EINVAL. */
int an_config_parse_duration(const char *text, int64_t *ms);

/* [streams] max_entry_bytes / max_inflated_bytes as codec limits. */
an_codec_limits an_config_codec_limits(const an_config *cfg);

#ifdef __cplusplus
}
#endif
#endif /* AN_CONFIG_H */
