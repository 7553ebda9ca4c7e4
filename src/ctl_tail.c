/*
 * ctl_tail.c: anomalyctl tail: the output stream's entries, decoded (zlib or
 * json body), one JSON object per line:
 *   {"id":..,"dataType":..,"model":..,"rows":..,"source":..,"body":{...}}
 * --count N: the last N entries (default 10; 0 = all); --follow: then wait
 * for new ones. --stream KEY reads another stream (e.g. the dead letters,
 * printed field by field).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_codec.h"
#include "an_config.h"
#include "an_streams.h"
#include "ctl.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

/* Prints one entry; undecodable ones are printed with an "error" key
 * rather than skipped, so nothing is hidden from the operator. */
static void print_entry(const an_entry *e, bool output_format, size_t max_inflated)
{
    json_t *o = NULL;
    char err[256];
    if (output_format &&
        an_output_entry_decode(e->id, e->fields, e->nfields, max_inflated, &o,
                               err, sizeof err) != 0) {
        o = NULL;
    }
    if (!o) {
        o = json_object();
        json_object_set_new(o, "id", json_string(e->id));
        json_t *f = json_object();
        for (size_t i = 0; i < e->nfields; i++) {
            json_t *v = json_stringn_nocheck(e->fields[i].value, e->fields[i].value_len);
            if (!json_is_string(v) || !json_string_value(v)) {
                json_decref(v);
                v = json_string("<binary>");
            }
            json_object_set_new(f, e->fields[i].name, v);
        }
        json_object_set_new(o, "fields", f);
        if (output_format)
            json_object_set_new(o, "error", json_string(err));
    }
    char *text = an_json_dumps(o, NULL);
    if (text) {
        puts(text);
        free(text);
    }
    json_decref(o);
}

int ctl_tail(int argc, char **argv)
{
    const char *config = NULL, *stream = NULL;
    long count = 10;
    bool follow = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--follow")) {
            follow = true;
        } else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
            char *end;
            errno = 0;
            count = strtol(argv[++i], &end, 10);
            if (errno || *end || count < 0) {
                fprintf(stderr, "anomalyctl tail: --count: '%s' is not a whole number\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--stream") && i + 1 < argc) {
            stream = argv[++i];
        } else {
            fprintf(stderr, "usage: anomalyctl tail [--count N] [--follow] [--stream KEY] [--config FILE]\n");
            return 2;
        }
    }
    an_config cfg;
    char err[512];
    if (ctl_config_load("tail", config, &cfg))
        return 2;
    if (!stream)
        stream = cfg.streams.output;
    bool output_format = !strcmp(stream, cfg.streams.output);
    an_redis *rd = NULL;
    an_redis_opts ro = an_redis_opts_default();
    int status = 1;
    if (an_redis_connect(cfg.redis.url, &ro, &rd, err, sizeof err)) {
        fprintf(stderr, "anomalyctl tail: redis: %s\n", err);
        goto out;
    }
    char last[AN_ID_MAX] = "$";
    an_entry_list l = {0};
    if (count > 0 || !follow) {
        /* Newest count entries: XREVRANGE, printed oldest first. */
        if (an_xrange(rd, stream, "+", "-", (size_t)count, true, &l)) {
            fprintf(stderr, "anomalyctl tail: %s\n", an_redis_errstr(rd));
            goto out;
        }
        for (size_t i = l.n; i-- > 0;)
            print_entry(&l.v[i], output_format, cfg.streams.max_inflated_bytes);
        if (l.n)
            snprintf(last, sizeof last, "%s", l.v[0].id);
        an_entry_list_free(&l);
        fflush(stdout);
    }
    if (follow) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        while (!g_stop) {
            an_entry_list f = {0};
            if (an_xread(rd, stream, last, 100, 1000, &f)) {
                fprintf(stderr, "anomalyctl tail: %s\n", an_redis_errstr(rd));
                an_entry_list_free(&f);
                goto out;
            }
            for (size_t i = 0; i < f.n; i++)
                print_entry(&f.v[i], output_format, cfg.streams.max_inflated_bytes);
            if (f.n)
                snprintf(last, sizeof last, "%s", f.v[f.n - 1].id);
            an_entry_list_free(&f);
            fflush(stdout);
        }
    }
    status = 0;
out:
    an_redis_free(rd);
    an_config_free(&cfg);
    return status;
}
