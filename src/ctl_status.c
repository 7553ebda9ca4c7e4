/*
 * ctl_status.c: anomalyctl status: what an operator would otherwise type
 * into redis-cli: the input stream's length, the group's lag and pending
 * count, pending per consumer with idle times, the output and dead-letter
 * stream lengths, and what retention may trim (the oldest entry each
 * consumer group still needs; the groups that pin the stream). --json
 * prints one JSON object instead of the table. --watch [SECONDS] refreshes
 * every SECONDS (2) and adds rates (entries added and processed per second)
 * and a state (no group, caught up, working, stalled) computed between two refreshes;
 * --count N stops after N refreshes.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "an_clock.h"
#include "an_codec.h"
#include "an_config.h"
#include "an_retention.h"
#include "an_streams.h"
#include "ctl.h"

static json_t *stream_json(an_redis *rd, const char *key)
{
    an_stream_info si;
    int rc = an_xinfo_stream(rd, key, &si);
    if (rc == AN_ENOTFOUND)
        return json_pack("{s:s, s:b, s:i, s:i}", "key", key, "exists", 0, "length", 0,
                         "entries_added", 0);
    if (rc)
        return NULL;
    return json_pack("{s:s, s:b, s:I, s:s, s:s, s:I}", "key", key, "exists", 1,
                     "length", (json_int_t)si.length, "first_id", si.first_id,
                     "last_id", si.last_id, "entries_added", (json_int_t)si.entries_added);
}

/* Our group's XINFO GROUPS row and its consumers, or JSON null. */
static json_t *group_json(an_redis *rd, const an_config *cfg)
{
    an_group_info *groups = NULL;
    an_consumer_info *cons = NULL;
    size_t ngroups = 0, ncons = 0;
    json_t *g = json_null();
    if (an_xinfo_groups(rd, cfg->streams.input, &groups, &ngroups) != 0)
        return g;
    for (size_t i = 0; i < ngroups; i++) {
        if (strcmp(groups[i].name, cfg->streams.group))
            continue;
        json_t *cj = json_array();
        if (an_xinfo_consumers(rd, cfg->streams.input, cfg->streams.group, &cons, &ncons) == 0) {
            for (size_t k = 0; k < ncons; k++) {
                /* its health hash (written by anomalyd, with a TTL):
                 * "unknown" when it is not running or too old */
                char key[600], st[32] = "unknown", cause[700] = "";
                int64_t since = 0;
                an_health_key(cfg->streams.input, cons[k].name, key, sizeof key);
                an_health_get(rd, key, st, sizeof st, cause, sizeof cause, &since);
                json_array_append_new(cj, json_pack("{s:s, s:I, s:I, s:s, s:s, s:I}", "name",
                                                    cons[k].name, "pending",
                                                    (json_int_t)cons[k].pending, "idle_ms",
                                                    (json_int_t)cons[k].idle_ms, "state", st,
                                                    "cause", cause, "since_ms",
                                                    (json_int_t)since));
            }
        }
        json_decref(g);
        g = json_pack("{s:s, s:I, s:I, s:s, s:I, s:o}", "name", groups[i].name,
                      "pending", (json_int_t)groups[i].pending,
                      "lag", (json_int_t)groups[i].lag,
                      "last_delivered_id", groups[i].last_delivered_id,
                      "entries_read", (json_int_t)groups[i].entries_read, "consumers", cj);
    }
    an_group_info_free(groups, ngroups);
    an_consumer_info_free(cons, ncons);
    return g ? g : json_null();
}

/* What retention would trim now (report only) and which groups pin the
 * stream; NULL on a Redis error. */
static json_t *retention_json(an_redis *rd, const an_config *cfg)
{
    an_trim_result t;
    if (an_trim_input(rd, cfg->streams.input, cfg->streams.input_retention_ms, false,
                      AN_RETENTION_TRIM_LIMIT, &t))
        return NULL;
    json_t *groups = json_array(), *pinned = json_array();
    for (size_t i = 0; i < t.ngroups; i++) {
        int64_t age;
        bool pins = an_retention_pins(&t, &t.groups[i], cfg->streams.input_retention_ms,
                                      cfg->streams.pin_warn_ms, &age);
        json_array_append_new(groups, json_pack("{s:s, s:s, s:s, s:b, s:I, s:b}", "name",
                                                t.groups[i].name, "needed", t.groups[i].needed,
                                                "held", t.groups[i].held, "holds",
                                                t.groups[i].holds, "age_ms", (json_int_t)age,
                                                "pins", pins));
        if (pins)
            json_array_append_new(pinned, json_string(t.groups[i].name));
    }
    json_t *r = json_pack("{s:s, s:I, s:I, s:I, s:o, s:o}", "cutoff", t.cutoff,
                          "input_retention_ms", (json_int_t)cfg->streams.input_retention_ms,
                          "trim_interval_ms", (json_int_t)cfg->streams.trim_interval_ms,
                          "pin_warn_ms", (json_int_t)cfg->streams.pin_warn_ms, "groups", groups,
                          "pinned_by", pinned);
    an_trim_result_free(&t);
    return r;
}

static json_int_t jint(const json_t *o, const char *k1, const char *k2)
{
    const json_t *x = json_object_get(o, k1);
    return json_integer_value(k2 ? json_object_get(x, k2) : x);
}

/* Adds "rates" to cur from the previous sample dt_s seconds earlier:
 * entries added to the input and processed (acked) by our group per second,
 * and the state: caught up (nothing pending or lagging), working (entries
 * were processed), stalled (work waiting, none processed). */
static void add_rates(json_t *cur, const json_t *prev, double dt_s)
{
    const json_t *g = json_object_get(cur, "group"), *pg = json_object_get(prev, "group");
    double added = (double)(jint(cur, "input", "entries_added") -
                            jint(prev, "input", "entries_added")) / dt_s;
    double done = 0;
    if (json_is_object(g) && json_is_object(pg))
        done = (double)((jint(g, "entries_read", NULL) - jint(g, "pending", NULL)) -
                        (jint(pg, "entries_read", NULL) - jint(pg, "pending", NULL))) / dt_s;
    json_int_t lag = json_is_object(g) ? jint(g, "lag", NULL) : 0;
    json_int_t pending = json_is_object(g) ? jint(g, "pending", NULL) : 0;
    const char *state = !json_is_object(g)                ? "no group"
                        : lag <= 0 && pending == 0 ? "caught up"
                        : done > 0                 ? "working"
                                                   : "stalled";
    json_t *r = json_pack("{s:f, s:f, s:f, s:s}", "interval_s", dt_s, "added_per_s", added,
                          "processed_per_s", done, "state", state);
    if (lag > 0 && done > added)
        json_object_set_new(r, "drain_eta_s", json_real((double)lag / (done - added)));
    json_object_set_new(cur, "rates", r);
}

static void print_table(const an_config *cfg, const json_t *out)
{
    const json_t *in = json_object_get(out, "input"), *g = json_object_get(out, "group");
    printf("input        %-28s length %" JSON_INTEGER_FORMAT "\n", cfg->streams.input,
           jint(in, "length", NULL));
    if (json_is_object(g)) {
        printf("  group      %-28s pending %" JSON_INTEGER_FORMAT "  lag %" JSON_INTEGER_FORMAT
               "%s  last-delivered %s\n", cfg->streams.group, jint(g, "pending", NULL),
               jint(g, "lag", NULL), jint(g, "lag", NULL) < 0 ? " (unknown)" : "",
               json_string_value(json_object_get(g, "last_delivered_id")));
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(g, "consumers"), k, c) {
            printf("    consumer %-28s pending %" JSON_INTEGER_FORMAT "  idle %" JSON_INTEGER_FORMAT
                   " ms  %s\n", json_string_value(json_object_get(c, "name")),
                   jint(c, "pending", NULL), jint(c, "idle_ms", NULL),
                   json_string_value(json_object_get(c, "state")));
            const char *cause = json_string_value(json_object_get(c, "cause"));
            if (cause && *cause)
                printf("      paused since %" JSON_INTEGER_FORMAT " ms ago: %s\n",
                       (json_int_t)(an_realtime_ms() - jint(c, "since_ms", NULL)), cause);
        }
    } else {
        printf("  group      %-28s (does not exist yet)\n", cfg->streams.group);
    }
    const json_t *ret = json_object_get(out, "retention");
    const char *cut = json_string_value(json_object_get(ret, "cutoff"));
    printf("  retention  trim before %s  (input_retention %" JSON_INTEGER_FORMAT " ms, every %"
           JSON_INTEGER_FORMAT " ms)\n", cut && *cut ? cut : "(nothing: no group)",
           jint(ret, "input_retention_ms", NULL), jint(ret, "trim_interval_ms", NULL));
    size_t k;
    json_t *x;
    json_array_foreach(json_object_get(ret, "groups"), k, x) {
        bool pins = json_is_true(json_object_get(x, "pins"));
        printf("    needs    %-28s %s", json_string_value(json_object_get(x, "name")),
               json_string_value(json_object_get(x, "needed")));
        if (json_is_true(json_object_get(x, "holds")))
            printf("  (keeps %s, %" JSON_INTEGER_FORMAT " s old)",
                   json_string_value(json_object_get(x, "held")), jint(x, "age_ms", NULL) / 1000);
        else
            printf("  (all read)");
        printf("%s\n", pins ? "  PINS the stream: nothing after it can be trimmed" : "");
    }
    printf("output       %-28s length %" JSON_INTEGER_FORMAT "\n", cfg->streams.output,
           jint(out, "output", "length"));
    printf("dead letters %-28s length %" JSON_INTEGER_FORMAT "\n", cfg->streams.dead_letter,
           jint(out, "dead_letter", "length"));
    const json_t *r = json_object_get(out, "rates");
    if (json_is_object(r)) {
        printf("rates        added %.1f/s  processed %.1f/s  state %s",
               json_real_value(json_object_get(r, "added_per_s")),
               json_real_value(json_object_get(r, "processed_per_s")),
               json_string_value(json_object_get(r, "state")));
        if (json_object_get(r, "drain_eta_s"))
            printf("  lag drained in ~%.0f s",
                   json_real_value(json_object_get(r, "drain_eta_s")));
        printf("\n");
    }
}

/* One sample of everything; NULL (message printed) on a Redis error. */
static json_t *collect(an_redis *rd, const an_config *cfg)
{
    json_t *in = stream_json(rd, cfg->streams.input);
    json_t *outp = stream_json(rd, cfg->streams.output);
    json_t *dead = stream_json(rd, cfg->streams.dead_letter);
    json_t *ret = retention_json(rd, cfg);
    json_t *out = json_pack("{s:o*, s:o*, s:o*, s:o*}", "input", in, "output", outp,
                            "dead_letter", dead, "retention", ret);
    if (!in || !outp || !dead || !ret || !out) {
        fprintf(stderr, "anomalyctl status: %s\n", an_redis_errstr(rd));
        json_decref(out);
        return NULL;
    }
    json_object_set_new(out, "group", json_is_true(json_object_get(in, "exists"))
                                          ? group_json(rd, cfg) : json_null());
    return out;
}

static int usage(void)
{
    fprintf(stderr, "usage: anomalyctl status [--json] [--watch [SECONDS] [--count N]] "
                    "[--config FILE]\n");
    return 2;
}

int ctl_status(int argc, char **argv)
{
    const char *config = NULL;
    bool as_json = false, watch = false;
    double every_s = 2.0;
    long count = -1;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--json")) {
            as_json = true;
        } else if (!strcmp(argv[i], "--watch")) {
            watch = true;
            if (i + 1 < argc && argv[i + 1][0] != '-') {
                every_s = strtod(argv[++i], &end);
                if (*end || !(every_s >= 0.1 && every_s <= 86400))
                    return usage();
            }
        } else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
            count = strtol(argv[++i], &end, 10);
            if (*end || count < 1)
                return usage();
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else {
            return usage();
        }
    }
    if (!watch)
        count = 1;
    an_config cfg;
    char err[512];
    if (ctl_config_load("status", config, &cfg))
        return 2;
    an_redis *rd = NULL;
    an_redis_opts ro = an_redis_opts_default();
    json_t *prev = NULL;
    int64_t prev_ms = 0;
    int status = 1;
    if (an_redis_connect(cfg.redis.url, &ro, &rd, err, sizeof err)) {
        fprintf(stderr, "anomalyctl status: redis: %s\n", err);
        goto done;
    }
    bool tty = isatty(STDOUT_FILENO);
    for (long n = 0; count < 0 || n < count; n++) {
        if (n > 0)
            an_clock_sleep_ms(NULL, (int)lround(every_s * 1000));
        json_t *cur = collect(rd, &cfg);
        if (!cur)
            goto done;
        int64_t t = an_monotonic_ms();
        if (prev && t > prev_ms)
            add_rates(cur, prev, (double)(t - prev_ms) / 1000.0);
        if (as_json) {
            char *text = an_json_dumps(cur, NULL);
            if (text)
                puts(text);
            free(text);
        } else {
            if (watch && tty)
                fputs("\033[H\033[2J", stdout);   /* home, clear: a refreshing screen */
            else if (n > 0)
                putchar('\n');
            print_table(&cfg, cur);
        }
        fflush(stdout);
        json_decref(prev);
        prev = cur;
        prev_ms = t;
    }
    status = 0;
done:
    json_decref(prev);
    an_redis_free(rd);
    an_config_free(&cfg);
    return status;
}
