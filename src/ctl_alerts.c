/*
 * ctl_alerts.c: anomalyctl alerts, the reference notification consumer
 * (docs/alerts.md). Reads the output stream through its own consumer group,
 * applies the rules of an_alerts.h with the state of an_alerts_redis.h, and
 * for each alert writes one JSON line to stdout, an entry to the alerts
 * stream and, with --exec CMD, hands the JSON to CMD on its stdin. Each
 * output entry is acked after its alerts were delivered.
 *
 *   anomalyctl alerts [--group notify] [--threshold 0.99999]
 *       [--min-rowid 1000] [--max-age 1h] [--throttle 1h]
 *       [--stream htm:alerts] [--exec CMD] [--exit-when-idle MS]
 *       [--consumer NAME] [--config FILE]
 *
 * Exit status: 0 (stopped by a signal or --exit-when-idle), 1 failure,
 * 2 usage or configuration error.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "an_alerts.h"
#include "an_alerts_redis.h"
#include "an_clock.h"
#include "an_codec.h"
#include "an_config.h"
#include "an_exec.h"
#include "an_log.h"
#include "an_streams.h"
#include "ctl.h"

/* Decisions retried when another consumer changed the state meanwhile. */
#define MAX_CONFLICTS 20

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

typedef struct actx {
    an_config cfg;
    an_alert_rules rules;
    const char *threshold_from; /* "default" or "--threshold" */
    const char *exec_cmd;
    an_exec_opts exec;
    an_alerts_keys keys;
    const char *group, *consumer;
    long idle_exit_ms;          /* < 0: run until a signal */
    const an_clock *clock;      /* NULL: the system's */
    an_redis *rd;
    uint64_t entries, alerts, redelivered, dead;
} actx;

/* The rows of one inference message. */
typedef struct msg {
    const char *uid, *name, *source;
    size_t n;
    an_alert_row *rows;
    double *value, *raw;
} msg;

static void msg_free(msg *m)
{
    free(m->rows);
    free(m->value);
    free(m->raw);
    memset(m, 0, sizeof *m);
}

/* Reads one results[i] object into m's arrays. */
static int parse_result(const json_t *r, msg *m, size_t i, char *why, size_t len)
{
    const json_t *rowid = json_object_get(r, "rowid"), *ts = json_object_get(r, "ts"),
                 *value = json_object_get(r, "value"), *raw = json_object_get(r, "rawAnomaly"),
                 *an = json_object_get(r, "anomaly");
    if (!json_is_integer(rowid) || !json_is_number(ts) || !json_is_number(value) ||
        !json_is_number(raw) || !json_is_number(an)) {
        snprintf(why, len, "results[%zu]: rowid, ts, value, rawAnomaly, anomaly must be numbers", i);
        return AN_EINVAL;
    }
    m->rows[i].rowid = json_integer_value(rowid);
    m->rows[i].ts = json_number_value(ts);
    m->rows[i].anomaly = json_number_value(an);
    m->value[i] = json_number_value(value);
    m->raw[i] = json_number_value(raw);
    return 0;
}

/* A metric uid as anomalyd accepts it (an_codec.h): 1..AN_UID_MAX bytes of
 * printable ASCII without spaces. */
static bool valid_uid(const char *u)
{
    size_t n = strlen(u);
    if (n == 0 || n > AN_UID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (u[i] < 0x21 || u[i] > 0x7e)
            return false;
    return true;
}

/* The inference message of a decoded output entry (an_output_entry_decode).
 * Strings point into d. */
static int parse_msg(const json_t *d, msg *m, char *why, size_t len)
{
    memset(m, 0, sizeof *m);
    const json_t *body = json_object_get(d, "body");
    const json_t *metric = json_object_get(body, "metric");
    const json_t *results = json_object_get(body, "results");
    const json_t *uid = json_object_get(metric, "uid"), *name = json_object_get(metric, "name");
    if (!json_is_string(uid) || !json_is_array(results) || (name && !json_is_null(name) && !json_is_string(name))) {
        snprintf(why, len, "body: needs metric.uid (string), metric.name (string or null), results (array)");
        return AN_EINVAL;
    }
    m->uid = json_string_value(uid);
    if (!valid_uid(m->uid)) {
        /* The uid is part of the state keys ("uid rowid") and of logs. */
        snprintf(why, len, "body: metric.uid is not 1-%d printable characters without spaces",
                 AN_UID_MAX);
        return AN_EINVAL;
    }
    m->name = json_is_string(name) ? json_string_value(name) : NULL;
    m->source = json_string_value(json_object_get(d, "source"));
    m->n = json_array_size(results);
    size_t cap = m->n ? m->n : 1;
    m->rows = calloc(cap, sizeof *m->rows);
    m->value = calloc(cap, sizeof *m->value);
    m->raw = calloc(cap, sizeof *m->raw);
    if (!m->rows || !m->value || !m->raw) {
        msg_free(m);
        snprintf(why, len, "out of memory");
        return AN_ENOMEM;
    }
    for (size_t i = 0; i < m->n; i++) {
        int rc = parse_result(json_array_get(results, i), m, i, why, len);
        if (rc) {
            msg_free(m);
            return rc;
        }
    }
    return 0;
}

/* The metric's threshold: an override in <stream>:thresholds (by uid, then
 * by name) when it parses, else the flag/default. */
static double effective_threshold(const actx *c, const an_alerts_snapshot *s, const char **from)
{
    const char *texts[2] = {s->threshold_uid, s->threshold_name};
    const char *names[2] = {"override by uid", "override by name"};
    for (int i = 0; i < 2; i++) {
        double v;
        if (!texts[i])
            continue;
        if (an_alert_parse_threshold(texts[i], strlen(texts[i]), &v) == 0) {
            *from = names[i];
            return v;
        }
        an_warn("alerts: metric %s: %s threshold override is not a number in [0, 1]; "
                "using %g", s->uid, i == 0 ? "uid" : "name", c->rules.threshold);
    }
    *from = c->threshold_from;
    return c->rules.threshold;
}

/* Everything one decision produced (freed by decision_free). */
typedef struct decision {
    an_alerts_snapshot snap;
    an_alert_verdict *v;
    an_alert_outcome out;
    double threshold;
    const char *threshold_from;
    char **json;       /* [n]: alert text for delivered rows, else NULL */
} decision;

static void decision_free(decision *d, size_t n)
{
    an_alerts_snapshot_free(&d->snap);
    for (size_t i = 0; d->json && i < n; i++)
        free(d->json[i]);
    free(d->json);
    free(d->v);
    memset(d, 0, sizeof *d);
}

/* Reads the state, decides every row, builds the alerts' JSON. */
static int decide(actx *c, const msg *m, const char *entry_id, decision *d)
{
    memset(d, 0, sizeof *d);
    size_t cap = m->n ? m->n : 1;
    d->v = calloc(cap, sizeof *d->v);
    d->json = calloc(cap, sizeof *d->json);
    int64_t *cand = calloc(cap, sizeof *cand);
    int rc = AN_ENOMEM;
    if (!d->v || !d->json || !cand)
        goto out;
    rc = an_alerts_read(c->rd, &c->keys, m->uid, m->name, NULL, 0, &d->snap);
    if (rc)
        goto out;
    d->threshold = effective_threshold(c, &d->snap, &d->threshold_from);
    int64_t now = an_clock_realtime_ms(c->clock);
    size_t nc = 0;
    for (size_t i = 0; i < m->n; i++)
        if (an_alert_gate(&c->rules, d->threshold, &m->rows[i], now) == AN_ALERT_FIRE)
            cand[nc++] = m->rows[i].rowid;
    if (nc) { /* the fired records of the candidates (and a fresher last time) */
        an_alerts_snapshot_free(&d->snap);
        rc = an_alerts_read(c->rd, &c->keys, m->uid, m->name, cand, nc, &d->snap);
        if (rc)
            goto out;
    }
    an_alert_store st = an_alerts_snapshot_store(&d->snap);
    rc = an_alerts_decide(&c->rules, d->threshold, &st, m->uid, entry_id, m->rows, m->n, now,
                          d->v, &d->out);
    for (size_t i = 0; rc == 0 && i < m->n; i++) {
        if (d->v[i] != AN_ALERT_FIRE && d->v[i] != AN_ALERT_REDELIVER)
            continue;
        an_alert_info a = {m->uid, m->name, m->rows[i].rowid, m->rows[i].ts, m->value[i],
                           m->rows[i].anomaly, m->raw[i], d->threshold, d->threshold_from,
                           m->source, entry_id};
        json_t *j = an_alert_json(&a);
        d->json[i] = j ? an_json_dumps(j, NULL) : NULL;
        json_decref(j);
        if (!d->json[i])
            rc = AN_ENOMEM;
    }
out:
    free(cand);
    return rc;
}

/* Records the decision's new alerts (if any) atomically with their XADD. */
static int commit(actx *c, const msg *m, const char *entry_id, decision *d, bool *conflict)
{
    *conflict = false;
    bool moved = d->out.has_last && (!d->out.had_last || d->out.new_last_ms != d->out.last_ms);
    if (d->out.nfire == 0 && !moved)
        return 0;
    size_t cap = d->out.nfire ? d->out.nfire : 1, k = 0;
    int64_t *rowids = calloc(cap, sizeof *rowids), *ts = calloc(cap, sizeof *ts);
    const char **json = calloc(cap, sizeof *json);
    int rc = AN_ENOMEM;
    if (rowids && ts && json) {
        for (size_t i = 0; i < m->n; i++)
            if (d->v[i] == AN_ALERT_FIRE) {
                rowids[k] = m->rows[i].rowid;
                ts[k] = an_alert_ts_ms(m->rows[i].ts);
                json[k++] = d->json[i];
            }
        an_alerts_commit_req q = {m->uid, entry_id, &d->out, c->cfg.alerts.stream_maxlen,
                                  c->cfg.alerts.fired_max, c->cfg.alerts.metrics_max, k,
                                  rowids, ts, json};
        rc = an_alerts_commit(c->rd, &c->keys, &q, NULL, conflict);
    }
    free(rowids);
    free(ts);
    free(json);
    return rc;
}

/* stdout, then --exec: a failing command is retried, then logged and
 * skipped (the alert is in the stream either way). */
static void deliver(actx *c, const msg *m, const decision *d)
{
    for (size_t i = 0; i < m->n; i++) {
        if (!d->json[i])
            continue;
        puts(d->json[i]);
        fflush(stdout);
        c->alerts++;
        if (d->v[i] == AN_ALERT_REDELIVER)
            c->redelivered++;
        if (!c->exec_cmd)
            continue;
        char err[256];
        int attempts = 0;
        if (an_exec_retry(c->exec_cmd, d->json[i], strlen(d->json[i]), &c->exec, &attempts, err,
                          sizeof err) != 0)
            an_error("alerts: --exec failed %d times for metric %s row %" PRId64
                     " (last: %s); skipped", attempts, m->uid, m->rows[i].rowid, err);
    }
}

static int ack(actx *c, const char *id)
{
    const char *ids[1] = {id};
    int rc = an_xack(c->rd, c->cfg.streams.output, c->group, ids, 1, NULL);
    if (rc)
        an_error("alerts: XACK %s: %s", id, an_redis_errstr(c->rd));
    return rc;
}

/* An output entry the consumer cannot read goes to <stream>:dead with the
 * reason, acked in the same atomic call. */
static int dead_letter(actx *c, const an_entry *e, const char *reason)
{
    an_dead_letter_req q = {c->cfg.streams.output, c->group, e->id, c->consumer,
                            c->keys.dead, c->cfg.alerts.stream_maxlen, e->fields,
                            e->nfields, reason, e->deliveries, c->consumer};
    int rc = an_dead_letter(c->rd, &q, NULL);
    if (rc == 0) {
        c->dead++;
        an_warn("alerts: output entry %s moved to %s: %s", e->id, c->keys.dead, reason);
    } else {
        an_error("alerts: dead-lettering %s: %s", e->id, an_redis_errstr(c->rd));
    }
    return rc == AN_ESTATE ? 0 : rc;
}

/* Decide, commit (again after a conflict), deliver, ack. */
static int handle_message(actx *c, const msg *m, const char *entry_id)
{
    decision d;
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        bool conflict = false;
        rc = decide(c, m, entry_id, &d);
        if (rc == 0)
            rc = commit(c, m, entry_id, &d, &conflict);
        if (rc || !conflict)
            break;
        decision_free(&d, m->n);
        if (attempt + 1 >= MAX_CONFLICTS) {
            an_error("alerts: entry %s: state kept changing under %d attempts", entry_id,
                     MAX_CONFLICTS);
            return AN_ESTATE;
        }
    }
    if (rc == 0) {
        deliver(c, m, &d);
        rc = ack(c, entry_id);
    } else {
        const char *es = an_redis_errstr(c->rd);
        an_error("alerts: entry %s: %s", entry_id, es && *es ? es : "unexpected reply or ENOMEM");
    }
    decision_free(&d, m->n);
    return rc;
}

/* One output entry. Non-zero: leave it pending and read it again later. */
static int handle_entry(actx *c, const an_entry *e)
{
    c->entries++;
    if (e->nil) /* trimmed before we got to it: nothing to alert on */
        return ack(c, e->id);
    json_t *d = NULL;
    char why[512];
    if (an_output_entry_decode(e->id, e->fields, e->nfields, c->cfg.streams.max_inflated_bytes,
                               &d, why, sizeof why) != 0)
        return dead_letter(c, e, why);
    int rc;
    if (strcmp(json_string_value(json_object_get(d, "dataType")), AN_DATATYPE_INFERENCE) != 0) {
        rc = ack(c, e->id); /* command results carry no scores */
    } else {
        msg m;
        rc = parse_msg(d, &m, why, sizeof why);
        if (rc == AN_EINVAL)
            rc = dead_letter(c, e, why);
        else if (rc == 0)
            rc = handle_message(c, &m, e->id);
        msg_free(&m);
    }
    json_decref(d);
    return rc;
}

/* XAUTOCLAIM entries other consumers of the group left pending for longer
 * than claim_idle_ms (a consumer that died), and handles them. Returns how
 * many it took, or a negative code. */
static long claim_stale(actx *c)
{
    an_entry_list l = {0};
    int rc = an_autoclaim(c->rd, c->cfg.streams.output, c->group, c->consumer,
                          c->cfg.streams.claim_idle_ms, "0-0", (size_t)c->cfg.streams.read_count,
                          &l);
    if (rc)
        return rc;
    long n = (long)l.n;
    for (size_t i = 0; i < l.n && !g_stop; i++)
        if (handle_entry(c, &l.v[i]))
            n = AN_ETRANSIENT;
    an_entry_list_free(&l);
    return n;
}

/* One read: this consumer's own pending entries first (after a restart, or
 * after a failure), then new ones. Returns the entries handled, or a
 * negative code; *pending tells which phase the next read is in. */
static long read_once(actx *c, bool *pending, char cursor[AN_ID_MAX], int block_ms)
{
    an_entry_list l = {0};
    int rc = an_read_group(c->rd, c->cfg.streams.output, c->group, c->consumer,
                           *pending ? cursor : ">", (size_t)c->cfg.streams.read_count,
                           *pending ? -1 : block_ms, &l);
    if (rc == AN_ENOGROUP) /* the stream or group was deleted: recreate */
        rc = an_group_create(c->rd, c->cfg.streams.output, c->group, "0", NULL);
    if (rc)
        return rc;
    if (*pending && l.n == 0)
        *pending = false;
    long n = (long)l.n;
    for (size_t i = 0; i < l.n && !g_stop; i++) {
        if (handle_entry(c, &l.v[i])) {
            *pending = true; /* read it again from the PEL */
            snprintf(cursor, AN_ID_MAX, "0");
            n = AN_ETRANSIENT;
            break;
        }
        if (*pending)
            snprintf(cursor, AN_ID_MAX, "%s", l.v[i].id);
    }
    an_entry_list_free(&l);
    return n;
}

static int run_loop(actx *c)
{
    bool pending = true;
    char cursor[AN_ID_MAX] = "0";
    int64_t last_activity = an_clock_now_ms(c->clock);
    while (!g_stop) {
        int block = c->cfg.streams.block_ms;
        if (c->idle_exit_ms >= 0) {
            int64_t left = last_activity + c->idle_exit_ms - an_clock_now_ms(c->clock);
            block = left < 1 ? 1 : (left < block ? (int)left : block);
        }
        long n = read_once(c, &pending, cursor, block);
        if (n == 0 && !pending)
            n = claim_stale(c);
        if (n < 0) {
            an_warn("alerts: %s; retrying in 1 s", an_redis_errstr(c->rd));
            pending = true;
            snprintf(cursor, AN_ID_MAX, "0");
            an_clock_sleep_ms(c->clock, 1000);
            continue;
        }
        if (n > 0 || pending)
            last_activity = an_clock_now_ms(c->clock);
        else if (c->idle_exit_ms >= 0 &&
                 an_clock_now_ms(c->clock) - last_activity >= c->idle_exit_ms)
            break;
    }
    return 0;
}

static const char usage_text[] =
    "usage: anomalyctl alerts [--group NAME] [--threshold X] [--min-rowid N]\n"
    "           [--max-age DURATION] [--throttle DURATION] [--stream KEY]\n"
    "           [--exec CMD] [--exit-when-idle MS] [--consumer NAME] [--config FILE]\n"
    "  defaults: --group notify --threshold 0.99999 --min-rowid 1000 --max-age 1h\n"
    "            --throttle 1h --stream htm:alerts; 0 turns a gate off\n";

/* Parses the flags that carry rules into c (the others into *names). */
static int parse_rule_flag(actx *c, const char *flag, const char *v)
{
    char *end;
    errno = 0;
    if (!strcmp(flag, "--threshold")) {
        double t = strtod(v, &end);
        if (errno || end == v || *end || !(t >= 0.0 && t <= 1.0))
            return -1;
        c->rules.threshold = t;
        c->threshold_from = "--threshold";
    } else if (!strcmp(flag, "--min-rowid")) {
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < 0)
            return -1;
        c->rules.min_rowid = n;
    } else if (!strcmp(flag, "--max-age") || !strcmp(flag, "--throttle")) {
        int64_t ms;
        if (an_config_parse_duration(v, &ms))
            return -1;
        *(!strcmp(flag, "--max-age") ? &c->rules.max_age_ms : &c->rules.throttle_ms) = ms;
    } else if (!strcmp(flag, "--exit-when-idle")) {
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < 0)
            return -1;
        c->idle_exit_ms = n;
    } else {
        return 1; /* not a rule flag */
    }
    return 0;
}

typedef struct names {
    const char *config, *group, *stream, *consumer;
} names;

static int parse_args(actx *c, names *nm, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "anomalyctl alerts: %s: missing value\n%s", f, usage_text);
            return 2;
        }
        const char *v = argv[++i];
        int r = parse_rule_flag(c, f, v);
        if (r < 0) {
            fprintf(stderr, "anomalyctl alerts: %s: bad value '%s'\n%s", f, v, usage_text);
            return 2;
        }
        if (r == 0)
            continue;
        if (!strcmp(f, "--config"))
            nm->config = v;
        else if (!strcmp(f, "--group"))
            nm->group = v;
        else if (!strcmp(f, "--stream"))
            nm->stream = v;
        else if (!strcmp(f, "--consumer"))
            nm->consumer = v;
        else if (!strcmp(f, "--exec"))
            c->exec_cmd = v;
        else {
            fprintf(stderr, "anomalyctl alerts: unknown option '%s'\n%s", f, usage_text);
            return 2;
        }
    }
    return 0;
}

/* Loads the configuration and applies the name flags over it. */
static int setup(actx *c, const names *nm)
{
    char err[1024];
    if (ctl_config_load("alerts", nm->config, &c->cfg))
        return 2;
    an_log_set_level(c->cfg.log.level);
    c->group = nm->group ? nm->group : c->cfg.alerts.group;
    c->consumer = nm->consumer ? nm->consumer : c->cfg.streams.consumer;
    if (an_alerts_keys_init(&c->keys, nm->stream ? nm->stream : c->cfg.alerts.stream)) {
        fprintf(stderr, "anomalyctl alerts: --stream: empty or too long\n");
        return 2;
    }
    c->exec.retries = c->cfg.alerts.exec_retries;
    c->exec.backoff_ms = c->cfg.alerts.exec_backoff_ms;
    c->exec.timeout_ms = c->cfg.alerts.exec_timeout_ms;
    c->exec.clock = c->clock;
    an_redis_opts ro = an_redis_opts_default();
    ro.connect_timeout_ms = c->cfg.redis.connect_timeout_ms;
    ro.command_timeout_ms = c->cfg.redis.timeout_ms;
    ro.block_margin_ms = c->cfg.redis.block_margin_ms;
    if (an_redis_connect(c->cfg.redis.url, &ro, &c->rd, err, sizeof err)) {
        fprintf(stderr, "anomalyctl alerts: redis: %s\n", err);
        return 1;
    }
    /* From "0": a new group sees the whole retained stream; the age gate
     * keeps old rows from paging anyone. */
    if (an_group_create(c->rd, c->cfg.streams.output, c->group, "0", NULL)) {
        fprintf(stderr, "anomalyctl alerts: creating group %s: %s\n", c->group,
                an_redis_errstr(c->rd));
        return 1;
    }
    return 0;
}

int ctl_alerts(int argc, char **argv)
{
    actx c;
    memset(&c, 0, sizeof c);
    c.rules = an_alert_rules_default();
    c.threshold_from = "default";
    c.idle_exit_ms = -1;
    names nm = {0};
    int status = parse_args(&c, &nm, argc, argv);
    if (status == 0)
        status = setup(&c, &nm);
    if (status == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN); /* an --exec command that does not read stdin */
        an_info("alerts: group %s on %s, consumer %s, alerts to %s", c.group,
                c.cfg.streams.output, c.consumer, c.keys.stream);
        status = run_loop(&c);
        an_info("alerts: %" PRIu64 " entries, %" PRIu64 " alerts delivered (%" PRIu64
                " again after a restart), %" PRIu64 " dead-lettered",
                c.entries, c.alerts, c.redelivered, c.dead);
    }
    an_redis_free(c.rd);
    an_config_free(&c.cfg);
    return status;
}
