/* test_config.c: an_config (defaults, file, env overrides, errors, print). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "an_config.h"
#include "check_main.h"

extern char **environ;

static char tmpdir[] = "/tmp/an_test_config_XXXXXX";
static char errbuf[1024];

/* Removes every ANOMALYD_* variable so the host environment (e.g. the
 * stack's ANOMALYD_REDIS_URL) does not leak into the tests. */
static void clear_env(void)
{
    for (;;) {
        char name[256] = "";
        for (char **e = environ; e && *e; e++) {
            if (!strncmp(*e, "ANOMALYD_", 9)) {
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)n, *e);
                break;
            }
        }
        if (!name[0])
            return;
        unsetenv(name);
    }
}

static void setup(void)
{
    clear_env();
    errbuf[0] = 0;
}

/* Writes text to <tmpdir>/<name>; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text as a file named t.conf; returns the rc, message in errbuf. */
static int load_text(an_config *cfg, const char *text)
{
    const char *p = write_file("t.conf", text);
    return an_config_load(cfg, p, errbuf, sizeof errbuf);
}

static void expect_error(const char *text, const char *msg)
{
    an_config cfg;
    int rc = load_text(&cfg, text);
    ck_assert_int_eq(rc, AN_ECONFIG);
    char want[1024];
    snprintf(want, sizeof want, "%s/t.conf:%s", tmpdir, msg);
    ck_assert_str_eq(errbuf, want);
    an_config_free(&cfg);
}

static void expect_error_contains(const char *text, const char *part)
{
    an_config cfg;
    int rc = load_text(&cfg, text);
    ck_assert_int_eq(rc, AN_ECONFIG);
    ck_assert_msg(strstr(errbuf, part) != NULL, "error '%s' lacks '%s'", errbuf, part);
    an_config_free(&cfg);
}

static char *print_to_string(const an_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    an_config_print(cfg, f);
    fclose(f);
    return buf;
}

/* A bad value is quoted back masked: a URL (or DSN) pasted under the wrong
 * key must not print its password in the error (a fuzzing finding). */
START_TEST(error_quotes_values_masked)
{
    const char *texts[] = {
        "[streams]\nmax_entry_bytes = redis://user:s3cret@h/0\n",
        "[streams]\nread_count = redis://:s3cret@h/0\n",
        "[streams]\nblock_ms = postgresql://u:s3cret@h/db\n",
        "[debugging]\nprofiling = host=x password=s3cret\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        expect_error_contains(texts[i], "***");
        ck_assert_msg(!strstr(errbuf, "s3cret"), "secret in '%s'", errbuf);
    }
    /* an ordinary bad value is still quoted as it is */
    expect_error_contains("[streams]\nread_count = ten\n", "'ten' is not an integer");
}
END_TEST

START_TEST(defaults)
{
    an_config cfg;
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), 0);
    ck_assert_str_eq(cfg.redis.url, "redis://127.0.0.1:6379/0");
    ck_assert_int_eq(cfg.redis.timeout_ms, 5000);
    ck_assert_int_eq(cfg.redis.connect_timeout_ms, 5000);
    ck_assert_int_eq(cfg.redis.block_margin_ms, 2000);
    ck_assert_str_eq(cfg.postgres.dsn, "dbname=anomalyd");
    ck_assert_int_eq(cfg.postgres.retry_budget_ms, 10000);
    ck_assert_int_eq(cfg.postgres.retry_initial_ms, 100);
    ck_assert_int_eq(cfg.postgres.retry_max_delay_ms, 10000);
    ck_assert_int_eq(cfg.postgres.statement_timeout_ms, 60000);
    ck_assert_int_eq(cfg.postgres.lock_timeout_ms, 5000);
    ck_assert_int_eq(cfg.postgres.connect_timeout_ms, 5000);
    ck_assert_str_eq(cfg.streams.input, "htm:results");
    ck_assert_str_eq(cfg.streams.group, "anomalyd");
    char host[256];
    ck_assert_int_eq(gethostname(host, sizeof host), 0);
    ck_assert_str_eq(cfg.streams.consumer, host);
    ck_assert_str_eq(cfg.streams.output, "htm:model_results");
    ck_assert_str_eq(cfg.streams.dead_letter, "htm:results:dead");
    ck_assert_str_eq(cfg.streams.params_prefix, "htm:params:");
    ck_assert_int_eq(cfg.streams.read_count, 64);
    ck_assert_int_eq(cfg.streams.block_ms, 2000);
    ck_assert_int_eq(cfg.streams.claim_idle_ms, 60000);
    ck_assert_int_eq(cfg.streams.max_deliveries, 5);
    ck_assert_int_eq(cfg.streams.output_maxlen, 1000000);
    ck_assert_int_eq(cfg.streams.output_encoding, AN_ENC_ZLIB);
    ck_assert_uint_eq(cfg.streams.max_entry_bytes, 4u << 20);
    ck_assert_uint_eq(cfg.streams.max_inflated_bytes, 32u << 20);
    ck_assert_int_eq(cfg.anomaly_likelihood.variant, AN_VARIANT_HTMENGINE);
    ck_assert_int_eq(cfg.anomaly_likelihood.statistics_min_sample_size, 100);
    ck_assert_int_eq(cfg.anomaly_likelihood.statistics_refresh_rate, 24);
    ck_assert_int_eq(cfg.anomaly_likelihood.statistics_sample_size, 8640);
    ck_assert(!cfg.debugging.profiling);
    ck_assert_int_eq(cfg.log.level, AN_LOG_INFO);

    an_helper_config h = an_config_helper(&cfg);
    an_helper_config d = an_helper_config_default();
    ck_assert_int_eq(h.variant, AN_VARIANT_HTMENGINE);
    ck_assert_int_eq(h.min_sample_size, 100);
    ck_assert_int_eq(h.refresh_rate, 24);
    ck_assert_int_eq(h.sample_size, 8640);
    ck_assert_int_eq(h.skip_records, d.skip_records);
    ck_assert_int_eq(h.averaging_window, d.averaging_window);

    an_codec_limits l = an_config_codec_limits(&cfg);
    ck_assert_uint_eq(l.max_entry_bytes, 4u << 20);
    ck_assert_uint_eq(l.max_inflated_bytes, 32u << 20);
    an_config_free(&cfg);
    an_config_free(&cfg); /* idempotent */
    an_config_free(NULL);
}
END_TEST

START_TEST(stack_env_defaults)
{
    an_config cfg;
    setenv("ANOMALYD_REDIS_URL", "redis://127.0.0.1:6479/0", 1);
    setenv("ANOMALYD_PG_DSN", "postgresql://anomalyd@127.0.0.1:5479/anomalyd", 1);
    setenv("ANOMALYD_STACK_REDIS_PORT", "6479", 1); /* ignored, not an error */
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), 0);
    ck_assert_str_eq(cfg.redis.url, "redis://127.0.0.1:6479/0");
    ck_assert_str_eq(cfg.postgres.dsn, "postgresql://anomalyd@127.0.0.1:5479/anomalyd");
    an_config_free(&cfg);

    /* A file's url/dsn win over these two defaults... */
    ck_assert_int_eq(load_text(&cfg, "[redis]\nurl = redis://h:1/2\n[postgres]\ndsn = dbname=x\n"),
                     0);
    ck_assert_str_eq(cfg.redis.url, "redis://h:1/2");
    ck_assert_str_eq(cfg.postgres.dsn, "dbname=x");
    an_config_free(&cfg);

    /* ...and ANOMALYD_POSTGRES_DSN (the override) wins over the file. */
    setenv("ANOMALYD_POSTGRES_DSN", "dbname=override", 1);
    ck_assert_int_eq(load_text(&cfg, "[postgres]\ndsn = dbname=x\n"), 0);
    ck_assert_str_eq(cfg.postgres.dsn, "dbname=override");
    an_config_free(&cfg);

    /* A bad default from the environment names the variable. */
    clear_env();
    setenv("ANOMALYD_REDIS_URL", "http://x", 1);
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), AN_ECONFIG);
    ck_assert_str_eq(errbuf, "ANOMALYD_REDIS_URL: [redis] url: not a redis:// or unix:// URL "
                             "(not shown: it may hold a password)");
}
END_TEST

START_TEST(example_file_is_defaults)
{
    an_config a, b;
    char path[1024];
    snprintf(path, sizeof path, "%s/ops/anomalyd.conf", AN_SOURCE_DIR);
    ck_assert_int_eq(an_config_load(&a, NULL, errbuf, sizeof errbuf), 0);
    ck_assert_msg(an_config_load(&b, path, errbuf, sizeof errbuf) == 0, "%s", errbuf);
    char *pa = print_to_string(&a), *pb = print_to_string(&b);
    ck_assert_str_eq(pa, pb);
    free(pa);
    free(pb);
    an_config_free(&a);
    an_config_free(&b);
}
END_TEST

START_TEST(file_parsing)
{
    an_config cfg;
    int rc = load_text(&cfg, "; comment\n"
                             "# another comment\n"
                             "\n"
                             "[redis]\n"
                             "url = redis://:pw@10.0.0.1:7000/3\n"
                             "timeout_ms = 2s\n"
                             "[postgres]\n"
                             "dsn = \"host=db port=5432 dbname=a\"\n"
                             "retry_budget_ms = 1min\n"
                             "retry_initial_ms = 250ms\n"
                             "statement_timeout_ms = 0\n"
                             "[streams]\n"
                             "input = in:{t}\n"
                             "consumer = c-1\n"
                             "read_count = 10000   ; inline comment\n"
                             "block_ms = 1\n"
                             "claim_idle_ms = 1h\n"
                             "defer_max_ms = 2h\n"
                             "consumer_suffix = -x\n"
                             "output_maxlen = 0\n"
                             "output_encoding = json\n"
                             "max_entry_bytes = 512KiB\n"
                             "max_inflated_bytes = 1G\n"
                             "[anomaly_likelihood]\n"
                             "variant = nupic-1.0\n"
                             "statistics_min_sample_size = 10\n"
                             "statistics_refresh_rate = 5\n"
                             "statistics_sample_size = 20\n"
                             "[debugging]\n"
                             "profiling = Yes\n"
                             "[log]\n"
                             "level = debug\n");
    ck_assert_msg(rc == 0, "%s", errbuf);
    ck_assert_str_eq(cfg.redis.url, "redis://:pw@10.0.0.1:7000/3");
    ck_assert_int_eq(cfg.redis.timeout_ms, 2000);
    ck_assert_str_eq(cfg.postgres.dsn, "host=db port=5432 dbname=a");
    ck_assert_int_eq(cfg.postgres.retry_budget_ms, 60000);
    ck_assert_int_eq(cfg.postgres.retry_initial_ms, 250);
    ck_assert_int_eq(cfg.postgres.statement_timeout_ms, 0);
    ck_assert_str_eq(cfg.streams.input, "in:{t}");
    ck_assert_str_eq(cfg.streams.consumer, "c-1-x"); /* consumer + consumer_suffix */
    ck_assert_int_eq(cfg.streams.defer_max_ms, 7200000);
    ck_assert_int_eq(cfg.streams.read_count, 10000);
    ck_assert_int_eq(cfg.streams.block_ms, 1);
    ck_assert_int_eq(cfg.streams.claim_idle_ms, 3600000);
    ck_assert_int_eq(cfg.streams.output_maxlen, 0);
    ck_assert_int_eq(cfg.streams.output_encoding, AN_ENC_JSON);
    ck_assert_uint_eq(cfg.streams.max_entry_bytes, 512u << 10);
    ck_assert_uint_eq(cfg.streams.max_inflated_bytes, 1u << 30);
    ck_assert_int_eq(cfg.anomaly_likelihood.variant, AN_VARIANT_NUPIC10);
    ck_assert_int_eq(cfg.anomaly_likelihood.statistics_min_sample_size, 10);
    ck_assert_int_eq(cfg.anomaly_likelihood.statistics_refresh_rate, 5);
    ck_assert_int_eq(cfg.anomaly_likelihood.statistics_sample_size, 20);
    ck_assert(cfg.debugging.profiling);
    ck_assert_int_eq(cfg.log.level, AN_LOG_DEBUG);
    an_helper_config h = an_config_helper(&cfg);
    ck_assert_int_eq(h.variant, AN_VARIANT_NUPIC10);
    ck_assert_int_eq(h.sample_size, 20);
    an_config_free(&cfg);

    /* Booleans in all spellings. */
    const char *t[] = {"true", "TRUE", "yes", "on", "1"};
    const char *f[] = {"false", "No", "off", "0"};
    char text[128];
    for (size_t i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "[debugging]\nprofiling=%s\n", t[i]);
        ck_assert_int_eq(load_text(&cfg, text), 0);
        ck_assert(cfg.debugging.profiling);
        an_config_free(&cfg);
    }
    for (size_t i = 0; i < 4; i++) {
        snprintf(text, sizeof text, "[debugging]\nprofiling=%s\n", f[i]);
        ck_assert_int_eq(load_text(&cfg, text), 0);
        ck_assert(!cfg.debugging.profiling);
        an_config_free(&cfg);
    }
}
END_TEST

START_TEST(env_overrides_win)
{
    an_config cfg;
    setenv("ANOMALYD_STREAMS_READ_COUNT", "7", 1);
    setenv("ANOMALYD_ANOMALY_LIKELIHOOD_VARIANT", "nupic-1.0", 1);
    setenv("ANOMALYD_ANOMALY_LIKELIHOOD_STATISTICS_MIN_SAMPLE_SIZE", "50", 1);
    setenv("ANOMALYD_DEBUGGING_PROFILING", "on", 1);
    setenv("ANOMALYD_LOG_LEVEL", "error", 1);
    setenv("ANOMALYD_STREAMS_CONSUMER", "env-consumer", 1);
    setenv("ANOMALYD_STREAMS_MAX_ENTRY_BYTES", "2MiB", 1);
    setenv("ANOMALYD_POSTGRES_RETRY_BUDGET_MS", "3s", 1);
    int rc = load_text(&cfg, "[streams]\nread_count = 100\nconsumer = file-consumer\n"
                             "[anomaly_likelihood]\nvariant = htmengine\n");
    ck_assert_msg(rc == 0, "%s", errbuf);
    ck_assert_int_eq(cfg.streams.read_count, 7);
    ck_assert_str_eq(cfg.streams.consumer, "env-consumer");
    ck_assert_int_eq(cfg.anomaly_likelihood.variant, AN_VARIANT_NUPIC10);
    ck_assert_int_eq(cfg.anomaly_likelihood.statistics_min_sample_size, 50);
    ck_assert(cfg.debugging.profiling);
    ck_assert_int_eq(cfg.log.level, AN_LOG_ERROR);
    ck_assert_uint_eq(cfg.streams.max_entry_bytes, 2u << 20);
    ck_assert_int_eq(cfg.postgres.retry_budget_ms, 3000);
    an_config_free(&cfg);

    /* Without a file too. */
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), 0);
    ck_assert_int_eq(cfg.streams.read_count, 7);
    an_config_free(&cfg);
}
END_TEST

START_TEST(file_errors_name_the_key)
{
    expect_error("[streams]\n\nread_count = abc\n",
                 "3: [streams] read_count: 'abc' is not an integer (1..10000)");
    expect_error("[streams]\nread_count = 0\n",
                 "2: [streams] read_count: '0' is out of range (1..10000)");
    expect_error("[streams]\nread_count = 10001\n",
                 "2: [streams] read_count: '10001' is out of range (1..10000)");
    expect_error("[streams]\nread_count = 99999999999999999999\n",
                 "2: [streams] read_count: '99999999999999999999' is not an integer (1..10000)");
    expect_error("[streams]\nread_count = 12x\n",
                 "2: [streams] read_count: '12x' is not an integer (1..10000)");
    expect_error("[streams]\nread_count =\n",
                 "2: [streams] read_count: '' is not an integer (1..10000)");
    expect_error("[streams]\nread_cont = 5\n", "2: [streams] read_cont: unknown key");
    expect_error("[redis]\ntimeout_ms=1\n[stream]\ninput = x\n",
                 "3: [stream]: unknown section (known: redis, postgres, streams, "
                 "anomaly_likelihood, debugging, log, http, alerts, plot)");
    /* An unknown section with no keys is still an error. */
    expect_error("[nosuch]\n", "1: [nosuch]: unknown section (known: redis, postgres, streams, "
                               "anomaly_likelihood, debugging, log, http, alerts, plot)");
    expect_error("[streams]\noutput_encoding = gzip\n",
                 "2: [streams] output_encoding: 'gzip' is not one of: zlib, json");
    expect_error("[anomaly_likelihood]\nvariant = nupic\n",
                 "2: [anomaly_likelihood] variant: 'nupic' is not one of: htmengine, nupic-1.0");
    expect_error("[log]\nlevel = verbose\n",
                 "2: [log] level: 'verbose' is not one of: debug, info, warning, error");
    expect_error("[debugging]\nprofiling = maybe\n",
                 "2: [debugging] profiling: 'maybe' is not a boolean (true/false, yes/no, "
                 "on/off, 1/0)");
    expect_error("[streams]\nblock_ms = 2 weeks\n",
                 "2: [streams] block_ms: '2 weeks' is not a duration (milliseconds, or a number "
                 "with unit ms, s, min, h; 1..600000 ms)");
    expect_error("[streams]\nblock_ms = -5\n",
                 "2: [streams] block_ms: '-5' is not a duration (milliseconds, or a number with "
                 "unit ms, s, min, h; 1..600000 ms)");
    expect_error("[streams]\nblock_ms = 11min\n",
                 "2: [streams] block_ms: '11min' is out of range (1..600000 ms)");
    expect_error("[streams]\nmax_entry_bytes = 4 furlongs\n",
                 "2: [streams] max_entry_bytes: '4 furlongs' is not a size (bytes, or a number "
                 "with unit KiB, MiB, GiB; 1024..536870912 bytes)");
    expect_error("[streams]\nmax_entry_bytes = 1GiB\n",
                 "2: [streams] max_entry_bytes: '1GiB' is out of range (1024..536870912 bytes)");
    expect_error("[streams]\ngroup = \n", "2: [streams] group: must not be empty");
    expect_error("[redis]\nurl = localhost:6379\n",
                 "2: [redis] url: not a redis:// or unix:// URL (not shown: it may hold a "
                 "password)");
    expect_error("[streams]\nread_count = 5\nread_count = 6\n",
                 "3: [streams] read_count: duplicate key");
    expect_error("read_count = 5\n", "1: read_count: key outside any [section]");
    expect_error("[streams]\njust some words\n",
                 "2: syntax error (expected [section], key = value or a comment)");
    expect_error("[streams\n", "1: syntax error: '[' without ']'");
    expect_error("[streams]\ninput = a\n  continued\n",
                 "3: indented line (continuation lines are not supported; put the value on one "
                 "line)");
    /* The first error is the one reported. */
    expect_error("[streams]\nread_count = x\nblock_ms = y\n",
                 "2: [streams] read_count: 'x' is not an integer (1..10000)");
    /* Over-long line. */
    char longline[400];
    snprintf(longline, sizeof longline, "[streams]\ninput = %0300d\n", 1);
    expect_error_contains(longline, "t.conf:2: line longer than");
}
END_TEST

START_TEST(cross_key_errors)
{
    an_config cfg;
    ck_assert_int_eq(load_text(&cfg, "[anomaly_likelihood]\nstatistics_min_sample_size = 200\n"
                                     "statistics_sample_size = 100\n"),
                     AN_ECONFIG);
    ck_assert_str_eq(errbuf, "[anomaly_likelihood] statistics_min_sample_size (200) must not "
                             "exceed statistics_sample_size (100)");
    ck_assert_int_eq(load_text(&cfg, "[postgres]\nretry_initial_ms = 20s\nretry_max_delay_ms = 1s\n"),
                     AN_ECONFIG);
    ck_assert_str_eq(errbuf,
                     "[postgres] retry_initial_ms (20000) must not exceed retry_max_delay_ms (1000)");
    ck_assert_int_eq(load_text(&cfg, "[streams]\nclaim_idle_ms = 30s\ndefer_max_ms = 10s\n"),
                     AN_ECONFIG);
    ck_assert_ptr_nonnull(strstr(errbuf, "[streams] defer_max_ms (10000) must be at least "
                                         "claim_idle_ms (30000)"));
    /* output_maxlen against max_results: at the bound, past it, and 0 (no trimming) */
    ck_assert_int_eq(load_text(&cfg, "[streams]\nmax_results = 500\noutput_maxlen = 500\n"), 0);
    an_config_free(&cfg);
    ck_assert_int_eq(load_text(&cfg, "[streams]\nmax_results = 500\noutput_maxlen = 0\n"), 0);
    an_config_free(&cfg);
    ck_assert_int_eq(load_text(&cfg, "[streams]\nmax_results = 500\noutput_maxlen = 499\n"),
                     AN_ECONFIG);
    ck_assert_ptr_nonnull(strstr(errbuf, "[streams] output_maxlen (499) must be at least "
                                         "max_results (500)"));
}
END_TEST

/* [http] listen: the default, empty (= off), the accepted forms, and the
 * forms rejected at load time (binding is checked when anomalyd starts). */
START_TEST(http_listen)
{
    an_config cfg;
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), 0);
    ck_assert_str_eq(cfg.http.listen, "127.0.0.1:9464");
    ck_assert_int_eq(cfg.http.live_max_age_ms, 120000);
    an_config_free(&cfg);
    ck_assert_int_eq(load_text(&cfg, "[http]\nlisten =\n"), 0);
    ck_assert_str_eq(cfg.http.listen, "");
    an_config_free(&cfg);
    const char *good[] = {"0.0.0.0:9464", "[::1]:9464", "localhost:0", ":9464",
                          "127.0.0.1:65535"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[http]\nlisten = %s\n", good[i]);
        ck_assert_msg(load_text(&cfg, text) == 0, "%s: %s", good[i], errbuf);
        ck_assert_str_eq(cfg.http.listen, good[i]);
        an_config_free(&cfg);
    }
    ck_assert_int_eq(load_text(&cfg, "[http]\nlisten = 127.0.0.1:65536\n"), AN_ECONFIG);
    ck_assert_str_eq(errbuf, "[http] listen: '127.0.0.1:65536': port 65536 out of range "
                             "(0..65535)");
    const char *bad[] = {"127.0.0.1", "127.0.0.1:", "::1:9464", "[::1]9464", "host:94x4",
                         "host:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128], want[256];
        snprintf(text, sizeof text, "[http]\nlisten = %s\n", bad[i]);
        ck_assert_int_eq(load_text(&cfg, text), AN_ECONFIG);
        snprintf(want, sizeof want, "[http] listen: '%s' is not host:port (e.g. "
                 "127.0.0.1:9464, [::1]:9464)", bad[i]);
        ck_assert_str_eq(errbuf, want);
    }
    /* the liveness limit has bounds like any duration */
    ck_assert_int_eq(load_text(&cfg, "[http]\nlive_max_age_ms = 999\n"), AN_ECONFIG);
    ck_assert_ptr_nonnull(strstr(errbuf, "[http] live_max_age_ms: '999' is out of range"));
    ck_assert_int_eq(load_text(&cfg, "[http]\nlive_max_age_ms = 1s\n"), 0);
    ck_assert_int_eq(cfg.http.live_max_age_ms, 1000);
    an_config_free(&cfg);
}
END_TEST

START_TEST(missing_file)
{
    an_config cfg;
    ck_assert_int_eq(an_config_load(&cfg, "/nonexistent/anomalyd.conf", errbuf, sizeof errbuf),
                     AN_ECONFIG);
    ck_assert_str_eq(errbuf,
                     "/nonexistent/anomalyd.conf: cannot open config file: No such file or directory");
    an_config_free(&cfg);
    /* err may be NULL */
    ck_assert_int_eq(an_config_load(&cfg, "/nonexistent/anomalyd.conf", NULL, 0), AN_ECONFIG);
}
END_TEST

START_TEST(env_errors)
{
    an_config cfg;
    setenv("ANOMALYD_STREAMS_READ_COUNT", "abc", 1);
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), AN_ECONFIG);
    ck_assert_str_eq(errbuf,
                     "ANOMALYD_STREAMS_READ_COUNT: [streams] read_count: 'abc' is not an integer "
                     "(1..10000)");
    clear_env();

    setenv("ANOMALYD_STREAMS_READ_CONT", "5", 1);
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), AN_ECONFIG);
    ck_assert_str_eq(errbuf, "ANOMALYD_STREAMS_READ_CONT: [streams] read_cont: unknown key (no "
                             "such config key to override)");
    clear_env();

    setenv("ANOMALYD_ANOMALY_LIKELIHOOD_VARIENT", "htmengine", 1);
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), AN_ECONFIG);
    ck_assert_str_eq(errbuf, "ANOMALYD_ANOMALY_LIKELIHOOD_VARIENT: [anomaly_likelihood] varient: "
                             "unknown key (no such config key to override)");
    clear_env();

    setenv("ANOMALYD_FOO", "1", 1);
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), AN_ECONFIG);
    ck_assert_str_eq(errbuf, "ANOMALYD_FOO: unknown setting: ANOMALYD_<SECTION>_<KEY> overrides "
                             "need a known section (redis, postgres, streams, anomaly_likelihood, "
                             "debugging, log, http, alerts, plot) and key");
    clear_env();

    setenv("ANOMALYD_ANOMALY_LIKELIHOOD_VARIANT", "bogus", 1);
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), AN_ECONFIG);
    ck_assert_str_eq(errbuf, "ANOMALYD_ANOMALY_LIKELIHOOD_VARIANT: [anomaly_likelihood] variant: "
                             "'bogus' is not one of: htmengine, nupic-1.0");
    clear_env();

    setenv("ANOMALYD_DEBUGGING_PROFILING", "2", 1);
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), AN_ECONFIG);
    ck_assert_str_eq(errbuf, "ANOMALYD_DEBUGGING_PROFILING: [debugging] profiling: '2' is not a "
                             "boolean (true/false, yes/no, on/off, 1/0)");
    clear_env();

    setenv("ANOMALYD_STREAMS_MAX_DELIVERIES", "0", 1);
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), AN_ECONFIG);
    ck_assert_str_eq(errbuf, "ANOMALYD_STREAMS_MAX_DELIVERIES: [streams] max_deliveries: '0' is "
                             "out of range (1..1000)");
    clear_env();

    /* The env error wins even with a valid file (the file is read first). */
    setenv("ANOMALYD_LOG_LEVEL", "loud", 1);
    ck_assert_int_eq(load_text(&cfg, "[log]\nlevel = info\n"), AN_ECONFIG);
    ck_assert_str_eq(errbuf, "ANOMALYD_LOG_LEVEL: [log] level: 'loud' is not one of: debug, info, "
                             "warning, error");
    clear_env();

    /* Exempt names are not errors. */
    setenv("ANOMALYD_STACK_PG_PORT", "5479", 1);
    setenv("ANOMALYD_STACK_ANYTHING", "x", 1);
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), 0);
    an_config_free(&cfg);
}
END_TEST

START_TEST(print_masks_and_round_trips)
{
    an_config cfg;
    int rc = load_text(&cfg, "[redis]\nurl = redis://:s3cret@h:1/0\n"
                             "[postgres]\ndsn = host=db password=s3cret dbname=a\n"
                             "[streams]\nmax_entry_bytes = 1025\n");
    ck_assert_msg(rc == 0, "%s", errbuf);
    char *out = print_to_string(&cfg);
    ck_assert_ptr_null(strstr(out, "s3cret"));
    ck_assert_ptr_nonnull(strstr(out, "url = redis://:***@h:1/0\n"));
    /* rebuilt from libpq's parse, in libpq's keyword order */
    ck_assert_ptr_nonnull(strstr(out, "dsn = password=*** dbname=a host=db\n"));
    ck_assert_ptr_nonnull(strstr(out, "[anomaly_likelihood]\nvariant = htmengine\n"));
    ck_assert_ptr_nonnull(strstr(out, "max_inflated_bytes = 32MiB\n"));
    ck_assert_ptr_nonnull(strstr(out, "max_entry_bytes = 1025\n"));
    ck_assert_ptr_nonnull(strstr(out, "output_encoding = zlib\n"));
    free(out);
    an_config_free(&cfg);

    /* Printed config (without secrets) loads back to the same config. */
    rc = load_text(&cfg, "[streams]\nmax_entry_bytes = 3KiB\nblock_ms=1s\n[log]\nlevel=warning\n");
    ck_assert_int_eq(rc, 0);
    char *p1 = print_to_string(&cfg);
    an_config_free(&cfg);
    const char *path = write_file("printed.conf", p1);
    ck_assert_msg(an_config_load(&cfg, path, errbuf, sizeof errbuf) == 0, "%s", errbuf);
    char *p2 = print_to_string(&cfg);
    ck_assert_str_eq(p1, p2);
    free(p1);
    free(p2);
    an_config_free(&cfg);

    char buf[256];
    ck_assert_str_eq(an_config_mask_secret("postgresql://u:pw@h:5/db", buf, sizeof buf),
                     "user=u password=*** dbname=db host=h port=5");
    ck_assert_str_eq(an_config_mask_secret("postgresql://u@h:5/db", buf, sizeof buf),
                     "user=u dbname=db host=h port=5");
    ck_assert_str_eq(an_config_mask_secret("postgresql://u@h/db?password=pw&sslmode=off", buf,
                                           sizeof buf),
                     "user=u password=*** dbname=db host=h sslmode=off");
    ck_assert_str_eq(an_config_mask_secret("redis://user:pw@h/0", buf, sizeof buf),
                     "redis://user:***@h/0");
    ck_assert_str_eq(an_config_mask_secret("redis://pw@h/0", buf, sizeof buf), "redis://***@h/0");
    ck_assert_str_eq(an_config_mask_secret("host=x password = 'a b\\' c' user=u", buf, sizeof buf),
                     "user=u password=*** host=x");
    ck_assert_str_eq(an_config_mask_secret("dbname=anomalyd", buf, sizeof buf), "dbname=anomalyd");
}
END_TEST

START_TEST(set_and_keys)
{
    an_config cfg;
    ck_assert_int_eq(an_config_load(&cfg, NULL, errbuf, sizeof errbuf), 0);
    ck_assert_int_eq(an_config_set(&cfg, "streams", "consumer", "cli", "--consumer", errbuf,
                                   sizeof errbuf),
                     0);
    ck_assert_str_eq(cfg.streams.consumer, "cli");
    ck_assert_int_eq(an_config_set(&cfg, "streams", "read_count", "x", "--read-count", errbuf,
                                   sizeof errbuf),
                     AN_ECONFIG);
    ck_assert_str_eq(errbuf, "--read-count: [streams] read_count: 'x' is not an integer (1..10000)");
    ck_assert_int_eq(an_config_set(&cfg, "streams", "nope", "1", NULL, errbuf, sizeof errbuf),
                     AN_ECONFIG);
    ck_assert_str_eq(errbuf, "set: [streams] nope: unknown key");
    an_config_free(&cfg);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    an_config_print_keys(f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "[streams] read_count (int; 1..10000; default 64; env "
                                      "ANOMALYD_STREAMS_READ_COUNT)"));
    ck_assert_ptr_nonnull(strstr(buf, "ANOMALYD_ANOMALY_LIKELIHOOD_VARIANT"));
    free(buf);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, stack_env_defaults);
    tcase_add_test(tc, example_file_is_defaults);
    tcase_add_test(tc, file_parsing);
    tcase_add_test(tc, env_overrides_win);
    tcase_add_test(tc, file_errors_name_the_key);
    tcase_add_test(tc, cross_key_errors);
    tcase_add_test(tc, http_listen);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, env_errors);
    tcase_add_test(tc, print_masks_and_round_trips);
    tcase_add_test(tc, error_quotes_values_masked);
    tcase_add_test(tc, set_and_keys);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    int status = an_check_run(suite(), CK_NORMAL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return status;
}
