/*
 * ctl_status.c: anomalyctl status: what an operator would otherwise type
 * into redis-cli: the input stream's length, the group's lag and pending
 * count, pending per consumer with idle times, the output and dead-letter
 * stream lengths. --json prints one JSON object instead of the table.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_codec.h"
#include "an_config.h"
#include "an_clock.h"
#include "an_streams.h"
#include "ctl.h"

static json_t *stream_json(an_redis *rd, const char *key)
{
    an_stream_info si;
    int rc = an_xinfo_stream(rd, key, &si);
    if (rc == AN_ENOTFOUND)
        return json_pack("{s:s, s:b, s:i}", "key", key, "exists", 0, "length", 0);
    if (rc)
        return NULL;
    return json_pack("{s:s, s:b, s:I, s:s, s:s}", "key", key, "exists", 1,
                     "length", (json_int_t)si.length, "first_id", si.first_id,
                     "last_id", si.last_id);
}

int ctl_status(int argc, char **argv)
{
    const char *config = NULL;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            as_json = true;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[++i];
        else {
            fprintf(stderr, "usage: anomalyctl status [--json] [--config FILE]\n");
            return 2;
        }
    }
    an_config cfg;
    char err[512];
    if (an_config_load(&cfg, config, err, sizeof err)) {
        fprintf(stderr, "anomalyctl status: configuration error: %s\n", err);
        return 2;
    }
    an_redis *rd = NULL;
    an_redis_opts ro = an_redis_opts_default();
    json_t *out = NULL;
    an_group_info *groups = NULL;
    an_consumer_info *cons = NULL;
    size_t ngroups = 0, ncons = 0;
    int status = 1;
    if (an_redis_connect(cfg.redis.url, &ro, &rd, err, sizeof err)) {
        fprintf(stderr, "anomalyctl status: redis: %s\n", err);
        goto done;
    }
    json_t *in = stream_json(rd, cfg.streams.input);
    json_t *outp = stream_json(rd, cfg.streams.output);
    json_t *dead = stream_json(rd, cfg.streams.dead_letter);
    out = json_pack("{s:o*, s:o*, s:o*}", "input", in, "output", outp,
                    "dead_letter", dead);
    if (!in || !outp || !dead || !out) {
        fprintf(stderr, "anomalyctl status: %s\n", an_redis_errstr(rd));
        goto done;
    }
    json_t *g = json_null();
    if (json_is_true(json_object_get(in, "exists")) &&
        an_xinfo_groups(rd, cfg.streams.input, &groups, &ngroups) == 0) {
        for (size_t i = 0; i < ngroups; i++) {
            if (strcmp(groups[i].name, cfg.streams.group))
                continue;
            json_t *cj = json_array();
            if (an_xinfo_consumers(rd, cfg.streams.input, cfg.streams.group,
                                   &cons, &ncons) == 0) {
                for (size_t k = 0; k < ncons; k++) {
                    /* its health hash (written by anomalyd, with a TTL):
                     * "unknown" when it is not running or too old */
                    char key[600], st[32] = "unknown", cause[700] = "";
                    int64_t since = 0;
                    an_health_key(cfg.streams.input, cons[k].name, key, sizeof key);
                    an_health_get(rd, key, st, sizeof st, cause, sizeof cause, &since);
                    json_array_append_new(cj, json_pack("{s:s, s:I, s:I, s:s, s:s, s:I}",
                        "name", cons[k].name, "pending", (json_int_t)cons[k].pending,
                        "idle_ms", (json_int_t)cons[k].idle_ms, "state", st, "cause", cause,
                        "since_ms", (json_int_t)since));
                }
            }
            g = json_pack("{s:s, s:I, s:I, s:s, s:I, s:o}", "name", groups[i].name,
                          "pending", (json_int_t)groups[i].pending,
                          "lag", (json_int_t)groups[i].lag,
                          "last_delivered_id", groups[i].last_delivered_id,
                          "entries_read", (json_int_t)groups[i].entries_read,
                          "consumers", cj);
        }
    }
    json_object_set_new(out, "group", g ? g : json_null());

    if (as_json) {
        char *t = an_json_dumps(out, NULL);
        if (t)
            puts(t);
        free(t);
    } else {
        printf("input        %-28s length %" JSON_INTEGER_FORMAT "\n", cfg.streams.input,
               json_integer_value(json_object_get(in, "length")));
        if (json_is_object(g)) {
            printf("  group      %-28s pending %" JSON_INTEGER_FORMAT "  lag %" JSON_INTEGER_FORMAT
                   "%s  last-delivered %s\n", cfg.streams.group,
                   json_integer_value(json_object_get(g, "pending")),
                   json_integer_value(json_object_get(g, "lag")),
                   json_integer_value(json_object_get(g, "lag")) < 0 ? " (unknown)" : "",
                   json_string_value(json_object_get(g, "last_delivered_id")));
            size_t k;
            json_t *c;
            json_array_foreach(json_object_get(g, "consumers"), k, c) {
                printf("    consumer %-28s pending %" JSON_INTEGER_FORMAT "  idle %" JSON_INTEGER_FORMAT " ms  %s\n",
                       json_string_value(json_object_get(c, "name")),
                       json_integer_value(json_object_get(c, "pending")),
                       json_integer_value(json_object_get(c, "idle_ms")),
                       json_string_value(json_object_get(c, "state")));
                const char *cause = json_string_value(json_object_get(c, "cause"));
                if (cause && *cause)
                    printf("      paused since %" JSON_INTEGER_FORMAT " ms ago: %s\n",
                           (json_int_t)(an_realtime_ms() -
                                        json_integer_value(json_object_get(c, "since_ms"))),
                           cause);
            }
        } else {
            printf("  group      %-28s (does not exist yet)\n", cfg.streams.group);
        }
        printf("output       %-28s length %" JSON_INTEGER_FORMAT "\n", cfg.streams.output,
               json_integer_value(json_object_get(outp, "length")));
        printf("dead letters %-28s length %" JSON_INTEGER_FORMAT "\n", cfg.streams.dead_letter,
               json_integer_value(json_object_get(dead, "length")));
    }
    status = 0;
done:
    json_decref(out);
    an_group_info_free(groups, ngroups);
    an_consumer_info_free(cons, ncons);
    an_redis_free(rd);
    an_config_free(&cfg);
    return status;
}
