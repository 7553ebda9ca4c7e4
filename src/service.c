/*
 * service.c: the anomalyd loop (docs/htmengine.md §1.2-§1.5; the path of an
 * entry: docs/architecture.md).
 *
 * Entries are read from the consumer group (our own pending ones first,
 * then new ones) and taken in stream order:
 *   - an entry whose payload is gone is acked and counted; one delivered
 *     more than max_deliveries times, or that does not decode, goes to the
 *     dead-letter stream with its reason;
 *   - command results (docs/htmengine.md §1.3) are processed one entry at a
 *     time, as the original did, each status change committed at once;
 *   - runs of inference-only entries are processed as a GROUP: one
 *     transaction for all of them (service_group.c), then one atomic Lua
 *     call that publishes every output message, refreshes the params
 *     hashes and XACKs every entry.
 * XACK happens only in that call, after the COMMIT: a crash anywhere leaves
 * the entries pending; their redelivery finds the watermark and is not
 * scored twice (its output is re-published if it never was).
 *
 * Errors are of three kinds:
 *   - the entry's fault (undecodable, invalid stored params, ...): the entry
 *     goes to the dead-letter stream with the reason;
 *   - the original's "reject" cases: logged as the original logged them,
 *     and the entry is acked with nothing published for it;
 *   - transient (a server went away): the entries stay in hand and are
 *     retried in-process with backoff, so an outage does not use up their
 *     delivery counts.
 * An inference batch whose predecessor (same model, earlier rows) is not
 * applied yet - with several consumers it may be in another's hands - is
 * deferred: kept pending here and retried until it is, or until the model's
 * watermark has not moved for defer_max_ms.
 */
#include "an_service.h"
#include "service_internal.h"
#include "service_window.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "an_log.h"
#include "an_schema.h"

/* Backoff for transient errors outside the repository's own retry. */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000

/* An entry kept pending because its predecessor was not applied yet. */
typedef struct deferred {
    an_entry e;          /* deep copy */
    char model[AN_UID_MAX + 1];
    int64_t first_rowid; /* of its inference results */
    int64_t seen_wm;     /* the model's watermark when last checked */
    int64_t since_ms;    /* last progress: first deferral, or the watermark moved */
    int64_t next_ms;     /* next retry */
    int64_t touched_ms;  /* last XCLAIM that reset its idle time */
    int delay_ms;
    size_t bytes;        /* entry_bytes of e (s->def_bytes) */
} deferred;

/* scored_entry rows (redelivery detection) are kept [postgres]
 * scored_entry_keep_ms (7 days), pruned hourly: an entry pending longer than
 * that is treated as a producer duplicate. */
#define SCORED_ENTRY_PRUNE_EVERY_MS (3600 * 1000)


/* Deferred retries back off from 20 ms to 1 s. */
#define DEFER_MIN_MS 20
#define DEFER_MAX_MS 1000

/* ------------------------------------------------------------ utilities */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool stopping(const an_service *s)
{
    return s->opts.stop && *s->opts.stop;
}

/* Sleeps ms, waking early (in 50 ms steps) when a stop is requested; each
 * step is a heartbeat (/livez, the systemd watchdog). */
static void nap(an_service *s, int ms)
{
    while (ms > 0 && !stopping(s)) {
        int step = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
        svc_heartbeat(s);   /* a back-off is the loop alive, not hung */
    }
}

static void item_clear(item *it)
{
    for (size_t k = 0; k < it->nouts; k++)
        free(it->outs[k].body);
    free(it->outs);
    free(it->inf);
    free(it->cache_json);
    an_batch_free(it->b);
    memset(it, 0, sizeof *it);
}

/* ------------------------------------------------------------ connections */

static int ensure_group(an_service *s)
{
    bool created = false;
    int rc = an_group_create(s->redis, s->cfg->streams.input, s->cfg->streams.group, "0",
                             &created);
    if (rc) {
        an_warn("cannot create group %s on %s: %s", s->cfg->streams.group,
                s->cfg->streams.input, an_redis_errstr(s->redis));
        return rc;
    }
    if (created)
        an_info("created consumer group %s on stream %s", s->cfg->streams.group,
                s->cfg->streams.input);
    return 0;
}

/* How often "schema missing" is repeated while waiting for it. */
#define SCHEMA_WARN_EVERY_MS 60000

/* The database schema this build needs is there. Returns 0; 1 when it is
 * missing or older (logged; waiting for `anomalyctl db init` is the cure,
 * so the caller retries); AN_ETRANSIENT; AN_EDB when the check itself
 * fails for good (e.g. no permission to read schema_migrations). */
static int check_schema(an_service *s)
{
    int version = 0;
    int rc = an_schema_version(s->repo, &version);
    if (rc == AN_ETRANSIENT)
        return rc;
    if (rc) {
        an_error("postgres: cannot check the schema: %s", an_repo_errstr(s->repo));
        return AN_EDB;
    }
    bool ok = version >= an_schema_latest();
    an_metrics_set_schema(s->opts.metrics, ok);
    if (ok)
        return 0;
    if (!s->schema_warned_ms || now_ms() - s->schema_warned_ms >= SCHEMA_WARN_EVERY_MS) {
        s->schema_warned_ms = now_ms();
        an_warn("database schema version %d, this build needs %d: waiting for "
                "`anomalyctl db init` (not ready meanwhile)", version, an_schema_latest());
    }
    return 1;
}

/* Connects both servers at start-up, retrying with backoff (a pause with
 * its cause once that outlasts the retry budget) until they answer and the
 * schema is present, or a stop is requested. A server that answers and
 * refuses us (a bad URL or DSN, a wrong password, a missing database) is
 * configuration: returns AN_ECONFIG/AN_EREDIS/AN_EDB after logging it,
 * and anomalyd exits non-zero. AN_ETRANSIENT when stopped while waiting. */
static int connect_all(an_service *s)
{
    for (;;) {
        int rc = 0;
        bool pg = false;
        if (!s->redis) {
            an_redis_opts ro = an_redis_opts_default();
            ro.connect_timeout_ms = s->cfg->redis.connect_timeout_ms;
            ro.command_timeout_ms = s->cfg->redis.timeout_ms;
            ro.block_margin_ms = s->cfg->redis.block_margin_ms;
            ro.keepalive_idle_s = s->cfg->redis.keepalive_idle_s;
            ro.keepalive_interval_s = s->cfg->redis.keepalive_interval_s;
            ro.keepalive_count = s->cfg->redis.keepalive_count;
            ro.tcp_user_timeout_ms = s->cfg->redis.tcp_user_timeout_ms;
            char err[512];
            rc = an_redis_connect(s->cfg->redis.url, &ro, &s->redis, err, sizeof err);
            svc_note_up(s, AN_SERVER_REDIS, rc == 0);
            if (rc == AN_ECONFIG || rc == AN_EREDIS) {
                an_error("redis: %s (a configuration error: check [redis] url and the "
                         "server's ACL; exiting)", err);
                return rc;
            }
            if (rc) {
                char what[600];
                snprintf(what, sizeof what, "connecting to Redis (%s)", err);
                svc_failed(s, rc, false, what);
            }
        }
        if (!rc && s->redis)
            rc = ensure_group(s);
        if (!rc) {
            pg = true;
            rc = an_repo_connect(s->repo);
            svc_note_up(s, AN_SERVER_POSTGRES, rc == 0);
            if (rc == AN_EDB || rc == AN_ECONFIG) {
                an_error("postgres: %s (a configuration error: check [postgres] dsn, the "
                         "role's password and pg_hba.conf; exiting)", an_repo_errstr(s->repo));
                return rc;
            }
        }
        if (!rc)
            rc = check_schema(s);
        if (!rc) {
            svc_succeeded(s);
            return 0;
        }
        if (rc < 0 && rc != AN_ETRANSIENT && rc != AN_EENV && rc != AN_ENOMEM)
            return rc;
        if (rc < 0 && s->redis)   /* 1: the schema is missing, logged by check_schema */
            svc_failed(s, rc, pg, pg ? "connecting to PostgreSQL" : "creating the group");
        svc_health_tick(s);
        if (!svc_wait(s))
            return AN_ETRANSIENT;
    }
}

/* ------------------------------------------------------------ dead letters */

static int dead_letter(an_service *s, const an_entry *e, const char *reason,
                       const char *reason_class)
{
    an_dead_letter_req req = {
        .input = s->cfg->streams.input,
        .group = s->cfg->streams.group,
        .entry_id = e->id,
        .owner = s->consumer,
        .dead_letter = s->cfg->streams.dead_letter,
        .maxlen = s->cfg->streams.dead_letter_maxlen,
        .fields = e->fields,
        .nfields = e->nfields,
        .reason = reason,
        .deliveries = e->deliveries,
        .consumer = s->consumer,
    };
    char id[AN_ID_MAX];
    int rc = an_dead_letter(s->redis, &req, id);
    if (rc == AN_ESTATE) {
        an_warn("entry %s was claimed by another consumer before it could be "
                "dead-lettered; leaving it to them", e->id);
        return 0;
    }
    if (rc)
        return rc == AN_ETRANSIENT || rc == AN_ENOGROUP || rc == AN_EENV ? rc : AN_EREDIS;
    svc_note_dead_letter(s, reason_class);
    an_error("dead-lettered entry %s as %s in %s: %s", e->id, id, s->cfg->streams.dead_letter,
             reason);
    return 0;
}

/* XACK of a pending entry whose payload is gone (trimmed or deleted). */
static int ack_trimmed(an_service *s, const an_entry *e)
{
    const char *ids[] = {e->id};
    int rc = an_xack(s->redis, s->cfg->streams.input, s->cfg->streams.group, ids, 1, NULL);
    if (rc)
        return rc;
    s->st.trimmed++;
    svc_note_done(s, AN_OUTCOME_TRIMMED, NULL);
    an_warn("pending entry %s has no payload (trimmed or deleted); acked", e->id);
    return 0;
}

/* Completes one entry in Redis without processing it: its dead letter
 * (reason set) or the XACK of a trimmed entry (reason NULL), retried in
 * place with backoff like the publish, so one Redis hiccup does not end
 * the page (the entries after it would wait claim_idle_ms for a takeover);
 * a lasting refusal pauses (svc_failed). Returns 0, AN_ENOGROUP (NOGROUP:
 * the caller recreates the group) or AN_ETRANSIENT when stopping. */
static int complete_in_redis(an_service *s, const an_entry *e, const char *reason,
                             const char *reason_class)
{
    for (;;) {
        int rc = reason ? dead_letter(s, e, reason, reason_class) : ack_trimmed(s, e);
        if (rc == 0) {
            svc_succeeded(s);
            return 0;
        }
        if (rc == AN_ENOGROUP)
            return rc;
        char what[128];
        snprintf(what, sizeof what, "%s entry %s", reason ? "dead-lettering" : "acking trimmed",
                 e->id);
        svc_failed(s, rc == AN_EREDIS ? AN_EENV : rc, false, what);
        if (!svc_wait(s))
            return AN_ETRANSIENT;
    }
}

/* ------------------------------------------------------------ commands */

/* The metric as the command results of one entry see it: read once, at
 * the first result that needs it, then changed in memory as those results
 * change it in the database. An entry's results all name its one model, so
 * a flood of them costs O(1) reads and at most two status writes, not
 * round trips per result. */
typedef struct cmd_metric {
    int state;        /* 0 not read yet, 1 found (m), 2 not found */
    bool shared;      /* read under FOR SHARE (docs/htmengine.md §1.3 step 2) */
    an_metric m;
} cmd_metric;

/* Reads the metric into cm unless it was read (with the lock when `share`).
 * 0 or an error to retry the entry with. */
static int cmd_metric_load(an_service *s, const char *uid, cmd_metric *cm, bool share)
{
    if (cm->state && (cm->shared || !share))
        return 0;
    an_metric_clear(&cm->m);
    int rc = 0;
    if (share) {
        /* FOR SHARE in a short transaction: waits for an in-flight
         * transaction of the adapter that created the metric
         * (docs/htmengine.md §8.3). */
        rc = an_repo_begin(s->repo);
        if (!rc)
            rc = an_repo_get_metric(s->repo, uid, AN_LOCK_SHARE, &cm->m);
        an_repo_rollback(s->repo);
    } else {
        rc = an_repo_get_metric(s->repo, uid, AN_LOCK_NONE, &cm->m);
    }
    if (rc == AN_ENOTFOUND) {
        an_metric_clear(&cm->m);
        cm->state = 2;
        cm->shared = share;
        return 0;
    }
    if (rc)
        return rc;
    cm->state = 1;
    cm->shared = share;
    return 0;
}

/* docs/htmengine.md §1.9.2: compose the command-result message; a successful
 * defineModel reads the metric (not found / not monitored: skip publishing, as
 * the original). */
static int compose_command(an_service *s, item *it, const char *uid,
                           const an_command_result *c, cmd_metric *cm)
{
    an_cmd_msg m = {
        .method = c->method,
        .model_id = uid,
        .command_id = c->command_id,
        .status = c->status,
        .error_message = c->error,
    };
    if (!strcmp(c->method, "defineModel") && c->status == 0) {
        int rc = cmd_metric_load(s, uid, cm, false);
        if (rc)
            return rc;
        if (cm->state == 2) {
            an_warn("_composeModelCommandResultMessage: method=%s; model=%s not found",
                    c->method, uid);
            return 0;
        }
        const an_metric *metric = &cm->m;
        if (!metric->parameters || !metric->parameters[0]) {
            an_warn("_composeModelCommandResultMessage: method=%s; model=%s not monitored",
                    c->method, uid);
            return 0;
        }
        m.has_model_info = true;
        m.metric_name = metric->name ? metric->name : "";
        m.resource = metric->server ? metric->server : "";
        m.model_spec_json = metric->parameters;
    }
    char err[256];
    json_t *msg = an_msg_command(&m, err, sizeof err);
    if (!msg) {
        an_error("cannot compose command result message for model=%s: %s", uid, err);
        return 0;   /* the original would crash; we log and skip the message */
    }
    return svc_add_out(it, s->cfg->streams.output_encoding, AN_DATATYPE_COMMAND, NULL, msg);
}

/* Sets the metric's status as a command result demands; ENOTFOUND (deleted
 * meanwhile) is the original's ObjectNotFoundError: logged, the result not
 * published (*publish false). */
static int cmd_set_status(an_service *s, const char *uid, const an_command_result *c,
                          cmd_metric *cm, int status, bool *publish)
{
    int rc = an_repo_set_metric_status(s->repo, uid, status,
                                       status == AN_METRIC_ERROR ? c->error : NULL,
                                       AN_REPO_ANY_STATUS);
    if (rc == AN_ENOTFOUND) {
        char cid[AN_ESCAPE_BUF];
        an_warn("Error processing result=%s from model=%s: metric not found",
                an_escape(cid, sizeof cid, c->command_id, strlen(c->command_id),
                          AN_ESCAPE_LOG_MAX), uid);
        an_metric_clear(&cm->m);
        cm->state = 2;
        *publish = false;
        return 0;
    }
    if (!rc)
        cm->m.status = status;
    return rc;
}

/* docs/htmengine.md §1.3, in the original's exact decision order, on the
 * entry's metric cm. Returns 0 or a transient / database error (the entry is
 * then retried). */
static int process_command(an_service *s, item *it, const char *uid,
                           const an_command_result *c, cmd_metric *cm)
{
    svc_count(s, &s->st.commands, AN_C_COMMANDS, 1);
    /* the producer's strings, escaped for the log lines below (the uid was
     * checked printable by the decoder) */
    char meth[AN_ESCAPE_BUF], cid[AN_ESCAPE_BUF], emsg[AN_ESCAPE_BUF];
    an_escape(meth, sizeof meth, c->method, strlen(c->method), AN_ESCAPE_LOG_MAX);
    an_escape(cid, sizeof cid, c->command_id, strlen(c->command_id), AN_ESCAPE_LOG_MAX);
    an_escape(emsg, sizeof emsg, c->error ? c->error : "(no errorMessage)",
              strlen(c->error ? c->error : "(no errorMessage)"), AN_ESCAPE_LOG_MAX);
    if (!strcmp(c->method, "deleteModel")) {
        an_info("Model=%s was deleted", uid);
        /* Its cached state could never hit again (model_params is cleared);
         * give the memory back now rather than at eviction. */
        an_state_cache_forget(s->sc, uid);
        an_sample_window_forget(s->sw, uid);
        /* ...and its params hash: never trusted for another model anyway
         * (watermark and source must match the database), but a re-created
         * model's hash could not move below the old watermark. */
        char key[512];
        snprintf(key, sizeof key, "%s%s", s->cfg->streams.params_prefix, uid);
        int drc = an_del(s->redis, key, NULL);
        if (drc)
            return drc;
        return compose_command(s, it, uid, c, cm);
    }
    int rc = cmd_metric_load(s, uid, cm, true);
    if (rc)
        return rc;
    if (cm->state == 2) {
        an_warn("Received command result=%s/%s for unknown model=%s (model deleted?)",
                meth, cid, uid);
        return compose_command(s, it, uid, c, cm);
    }
    bool publish = true;
    if (c->status != 0) {
        an_error("%s", emsg);
        if (cm->m.status != AN_METRIC_ERROR) {
            an_error("Placing model=%s in ERROR state due to commandResult=%s/%s status=%" PRId64,
                     uid, meth, cid, c->status);
            rc = cmd_set_status(s, uid, c, cm, AN_METRIC_ERROR, &publish);
        } else {
            an_warn("Received failed command result for model=%s that is already in ERROR state",
                    uid);
        }
    } else if (!strcmp(c->method, "defineModel")) {
        an_info("Model was created for <%s>", uid);
        if (cm->m.status == AN_METRIC_CREATE_PENDING) {
            rc = cmd_set_status(s, uid, c, cm, AN_METRIC_ACTIVE, &publish);
        } else {
            an_warn("Received defineModel result for model=%s that was not in "
                    "CREATE_PENDING state (status=%s)", uid,
                    an_metric_status_name(cm->m.status));
        }
    } else {
        an_error("Unexpected model result=%s/%s for model=%s", meth, cid, uid);
    }
    if (rc || !publish)
        return rc;
    return compose_command(s, it, uid, c, cm);
}

/* ------------------------------------------------------------ intake */

/* Decodes an entry into it. Returns 0 (it->b set), 1 when the entry is
 * poison (it->reason set) or AN_ENOMEM. */
static int intake(an_service *s, const an_entry *e, item *it)
{
    memset(it, 0, sizeof *it);
    it->e = e;
    int rc = an_batch_decode(e->fields, e->nfields, &s->limits, &it->b, it->reason,
                             sizeof it->reason);
    if (rc == AN_EINVAL || rc == AN_ERANGE) {
        it->reason_class = rc == AN_ERANGE ? SVC_DL_TOO_LARGE : SVC_DL_MALFORMED;
        return 1;
    }
    if (rc)
        return rc;
    if (it->b->n_inference) {
        it->inf = malloc(it->b->n_inference * sizeof *it->inf);
        if (!it->inf) {
            item_clear(it);
            return AN_ENOMEM;
        }
        for (size_t i = 0; i < it->b->n; i++)
            if (it->b->results[i].kind == AN_RES_INFERENCE)
                it->inf[it->n++] = &it->b->results[i].u.inf;
        it->first = it->inf[0]->rowid;
        it->last = it->inf[it->n - 1]->rowid;
    }
    return 0;
}

/* ------------------------------------------------------------ completion */

/* Most messages, and bytes of bodies, one publish script carries. A flood
 * of command results (up to the decoder's cap on results per entry) goes
 * out in several calls ahead of the acking one, so no script runs long
 * enough for Redis to answer BUSY to everyone else (lua-time-limit, 5 s;
 * 1000 XADDs take a few ms). */
#define PUBLISH_CHUNK_MSGS 1000
#define PUBLISH_CHUNK_BYTES ((size_t)8 << 20)

/* Publishes the head of it's messages in chunks, without the XACK, until
 * what is left fits in one call. An entry another consumer took over
 * meanwhile is left to it (it->done). 0 or a code as an_publish_many. */
static int publish_chunks(an_service *s, item *it)
{
    for (;;) {
        size_t k = 0, bytes = 0;
        while (it->published + k < it->nouts && k < PUBLISH_CHUNK_MSGS &&
               bytes + it->outs[it->published + k].body_len <= PUBLISH_CHUNK_BYTES)
            bytes += it->outs[it->published + k++].body_len;
        if (k == 0)   /* one body over the byte bound goes alone */
            k = 1;
        if (it->published + k >= it->nouts)
            return 0;   /* the rest goes with the acking call */
        an_out_msg *msgs = calloc(k, sizeof *msgs);
        if (!msgs)
            return AN_ENOMEM;
        for (size_t j = 0; j < k; j++) {
            const out_item *o = &it->outs[it->published + j];
            msgs[j] = (an_out_msg){.data_type = o->data_type, .model = it->b->model,
                                   .rows = o->rows[0] ? o->rows : NULL,
                                   .encoding = s->cfg->streams.output_encoding,
                                   .body = o->body, .body_len = o->body_len};
        }
        an_publish_entry pe = {.entry_id = it->e->id, .msgs = msgs, .nmsgs = k};
        an_publish_group g = {
            .input = s->cfg->streams.input, .group = s->cfg->streams.group,
            .owner = s->consumer, .output = s->cfg->streams.output,
            .output_maxlen = s->cfg->streams.output_maxlen, .entries = &pe, .nentries = 1,
            .no_ack = true,
        };
        int status = 0;
        int rc = an_publish_many(s->redis, &g, &status);
        free(msgs);
        if (rc)
            return rc == AN_ETRANSIENT || rc == AN_ENOGROUP ? rc : AN_EREDIS;
        if (!status) {
            an_warn("entry %s was claimed by another consumer while its %zu messages were "
                    "published; it will be completed there", it->e->id, it->nouts);
            it->done = true;
            return 0;
        }
        it->published += k;
    }
}

/* Publishes, caches and acks every finished item of items[0..n) in one
 * atomic call (an item with more messages than a chunk publishes their
 * head first, publish_chunks). Deferred and poison items are not part of
 * it. */
static int publish_items(an_service *s, item *items, size_t n)
{
    size_t ne = 0, nk = 0, nm = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].oc != INF_DEFERRED && items[i].oc != INF_POISON && !items[i].done) {
            int rc = publish_chunks(s, &items[i]);
            if (rc)
                return rc;
        }
    for (size_t i = 0; i < n; i++)
        if (items[i].oc != INF_DEFERRED && items[i].oc != INF_POISON && !items[i].done) {
            ne++;
            nm += items[i].nouts - items[i].published;
        }
    if (ne == 0)
        return 0;
    an_publish_entry *pe = calloc(ne, sizeof *pe);
    an_out_msg *msgs = calloc(nm ? nm : 1, sizeof *msgs);
    const char **keys = calloc(ne, sizeof *keys);
    char (*keybuf)[512] = calloc(ne, sizeof *keybuf);
    int *status = calloc(ne, sizeof *status);
    item **pit = calloc(ne, sizeof *pit);   /* the item of each entry */
    int rc = AN_ENOMEM;
    if (!pe || !msgs || !keys || !keybuf || !status || !pit)
        goto out;
    size_t k = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        if (it->oc == INF_DEFERRED || it->oc == INF_POISON || it->done)
            continue;
        pit[k] = it;
        an_publish_entry *p = &pe[k++];
        p->entry_id = it->e->id;
        p->msgs = msgs + m;
        p->nmsgs = it->nouts - it->published;
        for (size_t j = it->published; j < it->nouts; j++)
            msgs[m++] = (an_out_msg){
                .data_type = it->outs[j].data_type, .model = it->b->model,
                .rows = it->outs[j].rows[0] ? it->outs[j].rows : NULL,
                .encoding = s->cfg->streams.output_encoding,
                .body = it->outs[j].body, .body_len = it->outs[j].body_len};
        if (it->carries_cache) {
            snprintf(keybuf[nk], sizeof keybuf[nk], "%s%s", s->cfg->streams.params_prefix,
                     it->cache_uid);
            keys[nk] = keybuf[nk];
            p->key_index = ++nk;
            p->params_json = it->cache_json;
            p->watermark = it->cache_wm;
            p->source = it->cache_src;
        }
    }
    an_publish_group g = {
        .input = s->cfg->streams.input, .group = s->cfg->streams.group,
        .owner = s->consumer, .output = s->cfg->streams.output,
        .output_maxlen = s->cfg->streams.output_maxlen, .keys = keys, .nkeys = nk,
        .entries = pe, .nentries = ne,
    };
    int64_t t0 = svc_now_us();
    rc = an_publish_many(s->redis, &g, status);
    if (rc) {
        rc = rc == AN_ETRANSIENT || rc == AN_ENOGROUP || rc == AN_EENV ? rc : AN_EREDIS;
        goto out;
    }
    an_metrics_observe(s->opts.metrics, AN_H_PUBLISH, (double)(svc_now_us() - t0) / 1e6);
    for (size_t i = 0; i < ne; i++) {
        pit[i]->done = true;
        if (status[i]) {
            an_outcome o = pit[i]->oc == INF_SCORED      ? AN_OUTCOME_SCORED
                           : pit[i]->oc == INF_DUPLICATE ? AN_OUTCOME_DUPLICATE
                           : pit[i]->oc == INF_NONE      ? AN_OUTCOME_COMMAND
                                                         : AN_OUTCOME_REJECTED;
            svc_note_done(s, o, pe[i].entry_id);
        } else {
            /* Claimed by another consumer while we worked: it will find the
             * watermark and publish what we could not. */
            an_warn("entry %s was claimed by another consumer before we could publish "
                    "it; it will be completed there", pe[i].entry_id);
        }
    }
out:
    free(pit);
    free(pe);
    free(msgs);
    free(keys);
    free(keybuf);
    free(status);
    return rc;
}

/* Processes items[0..n): the commands of each (only when n == 1), then the
 * inference results of all as one group, then one publish. Items come back
 * with oc INF_DEFERRED (keep them) or INF_POISON (dead-letter them).
 * Returns 0 or an error to retry the whole call with. */
static int run_items(an_service *s, item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        for (size_t k = 0; k < it->nouts; k++)
            free(it->outs[k].body);
        it->nouts = 0;
        it->published = 0;
        it->oc = INF_NONE;
        cmd_metric cm = {0};
        for (size_t r = 0; r < it->b->n; r++) {
            if (it->b->results[r].kind != AN_RES_COMMAND)
                continue;
            int rc = process_command(s, it, it->b->model, &it->b->results[r].u.cmd, &cm);
            if (rc) {
                an_metric_clear(&cm.m);
                return rc;
            }
        }
        an_metric_clear(&cm.m);
    }
    /* the items with inference results, as one group */
    size_t ng = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].n)
            ng++;
    if (ng) {
        item *g = items;
        item *tmp = NULL;
        if (ng != n) {   /* only possible for n == 1 callers; keep it general */
            tmp = malloc(ng * sizeof *tmp);
            if (!tmp)
                return AN_ENOMEM;
            for (size_t i = 0, j = 0; i < n; i++)
                if (items[i].n)
                    tmp[j++] = items[i];
            g = tmp;
        }
        int rc = svc_scorer_run(s->scorer, g, ng);
        if (tmp) {
            for (size_t i = 0, j = 0; i < n; i++)
                if (items[i].n)
                    items[i] = tmp[j++];
            free(tmp);
        }
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        if (it->oc == INF_POISON && !it->done) {
            int rc = complete_in_redis(s, it->e, it->reason, it->reason_class);
            if (rc)
                return rc;
            it->done = true;
        }
    }
    /* Committed: only the publish is left. Retry just that (a redo of the
     * transaction would find every entry a duplicate and say so at length).
     * Any failure but NOGROUP is retried: the rows are committed, the
     * publish is all that is left (a refusal such as WRONGTYPE on the
     * output or a params key pauses until it is repaired). */
    int rc;
    while ((rc = publish_items(s, items, n)) != 0 && rc != AN_ENOGROUP) {
        char what[64];
        snprintf(what, sizeof what, "publishing %zu entries", n);
        svc_failed(s, rc == AN_EREDIS ? AN_EENV : rc, false, what);
        if (!svc_wait(s))
            return AN_ETRANSIENT;
    }
    if (rc)
        return rc;
    svc_succeeded(s);
    if (s->cfg->debugging.profiling || an_log_get_level() == AN_LOG_DEBUG)
        for (size_t i = 0; i < n; i++)
            if (!items[i].n)
                an_info("{TAG:ANOM.BATCH.CMD.DONE} model=%s; numItems=%zu", items[i].b->model,
                        items[i].b->n);
    return 0;
}

/* run_items with in-process retries (so a server outage does not count
 * against the entries' attempts: svc_group_run gives them back). A fault
 * of the environment pauses (svc_failed) and every retry is then a probe;
 * the entries' own failures are retried too, their attempts counted, until
 * max_deliveries makes them dead letters. Returns 0, or AN_ETRANSIENT when
 * a stop was requested before it could complete. */
static int run_items_retrying(an_service *s, item *items, size_t n)
{
    for (;;) {
        int rc = run_items(s, items, n);
        if (rc == 0) {
            svc_succeeded(s);
            svc_note_up(s, AN_SERVER_REDIS, true);
            svc_note_up(s, AN_SERVER_POSTGRES, true);
            return 0;
        }
        if (rc == AN_ENOGROUP) {
            /* NOGROUP while completing: the group (and our PEL) is gone, so
             * the recreated group delivers the entries again. */
            an_error("group %s on %s vanished while entries were in hand (Redis restarted "
                     "without persistence?); recreating it, they will be delivered again",
                     s->cfg->streams.group, s->cfg->streams.input);
            ensure_group(s);
            for (size_t i = 0; i < n; i++)
                items[i].oc = INF_NONE;   /* not ours to defer any more */
            return 0;
        }
        char what[128];
        snprintf(what, sizeof what, "processing entry %s%s", items[0].e->id,
                 n > 1 ? " and the rest of its group" : "");
        bool pg = an_repo_last_rc(s->repo) != 0;
        svc_failed(s, rc, pg, what);
        an_repo_rollback(s->repo);
        if (!svc_wait(s))
            return AN_ETRANSIENT;
        /* A paused PostgreSQL fault is probed on a new session: a repair
         * may be a session default (default_transaction_read_only) or a
         * server switched behind the address. */
        if (pg && rc == AN_EENV)
            an_repo_reconnect(s->repo);
        else
            an_repo_connect(s->repo);
    }
}

/* ------------------------------------------------------------ deferral */

static void entry_free_copy(an_entry *e)
{
    for (size_t i = 0; i < e->nfields; i++)
        free((void *)e->fields[i].name);   /* name and value share one block */
    free(e->fields);
    memset(e, 0, sizeof *e);
}

static int entry_copy(an_entry *dst, const an_entry *src)
{
    memset(dst, 0, sizeof *dst);
    memcpy(dst->id, src->id, sizeof dst->id);
    dst->nil = src->nil;
    dst->deliveries = src->deliveries;
    if (src->nfields == 0)
        return 0;
    dst->fields = calloc(src->nfields, sizeof *dst->fields);
    if (!dst->fields)
        return AN_ENOMEM;
    for (size_t i = 0; i < src->nfields; i++) {
        const an_field *f = &src->fields[i];
        char *blk = malloc(f->name_len + f->value_len + 2);
        if (!blk) {
            entry_free_copy(dst);
            return AN_ENOMEM;
        }
        memcpy(blk, f->name, f->name_len);
        blk[f->name_len] = '\0';
        memcpy(blk + f->name_len + 1, f->value, f->value_len);
        blk[f->name_len + 1 + f->value_len] = '\0';
        dst->fields[i] = (an_field){blk, f->name_len, blk + f->name_len + 1, f->value_len};
        dst->nfields = i + 1;
    }
    return 0;
}

static bool is_deferred(const an_service *s, const char *id)
{
    for (size_t i = 0; i < s->ndef; i++)
        if (!strcmp(s->def[i].e.id, id))
            return true;
    return false;
}

/* Bytes of an entry's field names and values: what defer_max_bytes
 * bounds (the copy adds a fixed ~200 bytes per entry, bounded by
 * defer_max_entries). */
static size_t entry_bytes(const an_entry *e)
{
    size_t b = 0;
    for (size_t i = 0; i < e->nfields; i++)
        b += e->fields[i].name_len + e->fields[i].value_len;
    return b;
}

/* Keeps the item's entry pending in our hands and retries it later. Past
 * [streams] defer_max_entries / defer_max_bytes, or on ENOMEM, it is not
 * copied: it stays pending, and is read again when a consumer (this one
 * too) takes it back after claim_idle_ms. */
static void defer_add(an_service *s, const item *it)
{
    if (is_deferred(s, it->e->id))
        return;
    size_t bytes = entry_bytes(it->e);
    if (s->ndef >= (size_t)s->cfg->streams.defer_max_entries ||
        bytes > s->cfg->streams.defer_max_bytes - s->def_bytes) {
        an_warn("deferral list is full (%zu entries, %zu bytes; defer_max_entries %d, "
                "defer_max_bytes %zu): entry %s (%zu bytes) stays pending and is read again "
                "after claim_idle_ms", s->ndef, s->def_bytes, s->cfg->streams.defer_max_entries,
                s->cfg->streams.defer_max_bytes, it->e->id, bytes);
        return;
    }
    if (s->ndef == s->capdef) {
        size_t cap = s->capdef ? 2 * s->capdef : 16;
        deferred *d = realloc(s->def, cap * sizeof *d);
        if (!d) {
            an_error("out of memory deferring entry %s; it stays pending", it->e->id);
            return;
        }
        s->def = d;
        s->capdef = cap;
    }
    deferred *d = &s->def[s->ndef];
    if (entry_copy(&d->e, it->e)) {
        an_error("out of memory deferring entry %s; it stays pending", it->e->id);
        return;
    }
    int64_t t = now_ms();
    snprintf(d->model, sizeof d->model, "%s", it->b->model);
    d->first_rowid = it->first;
    d->seen_wm = it->seen_wm;
    d->since_ms = d->touched_ms = t;
    d->delay_ms = DEFER_MIN_MS;
    d->next_ms = t + d->delay_ms;
    d->bytes = bytes;
    s->def_bytes += bytes;
    s->ndef++;
    svc_count(s, &s->st.deferred, AN_C_DEFERRALS, 1);
    an_debug("entry %s deferred: its model's previous batch is not applied yet", it->e->id);
}

/* An entry that may join a group (or be decoded ahead) if it decodes to
 * inference results only: its payload is present, it is not waiting in
 * our deferral list, and its attempt was counted with its page (count > 0:
 * no earlier attempt of it was left unfinished). */
static bool groupable(const an_service *s, const an_entry *e, int64_t count)
{
    return count > 0 && !e->nil && !is_deferred(s, e->id);
}

/* Whether a group holding `bytes` decoded bytes may take the item too
 * ([streams] max_group_decoded_bytes; the first item of a group is always
 * taken). */
static bool group_has_room(const an_service *s, size_t bytes, const item *it)
{
    return bytes + it->b->decoded_bytes <= s->cfg->streams.max_group_decoded_bytes;
}

void svc_prefetch(void *ctx)
{
    an_service *s = ctx;
    prefetch *p = s->pf;
    if (!p || p->done)
        return;
    p->done = true;
    size_t bytes = 0;
    while (p->from + p->k < p->n && p->rows < AN_SERVICE_GROUP_MAX_ROWS &&
           groupable(s, &p->v[p->from + p->k], p->count[p->from + p->k])) {
        item *it = &p->items[p->k];
        if (intake(s, &p->v[p->from + p->k], it) != 0 || it->b->n_command != 0 ||
            (p->k > 0 && !group_has_room(s, bytes, it))) {
            item_clear(it);   /* take_entries deals with it in its turn */
            break;
        }
        p->rows += it->n;
        bytes += it->b->decoded_bytes;
        p->k++;
    }
}

/* ------------------------------------------------------------ attempts */

/* Counts a processing attempt of each entry of v[0..n) that is processed
 * here (payload present, not in our deferral list), in one call, before
 * any of them is decoded: an entry that kills its consumer while it is
 * decoded or processed (out of memory, a crash) shows as an unfinished
 * attempt, whoever meets it next. count[i] = its attempt number and
 * open[i] = true; an entry with an unfinished earlier attempt is not
 * counted here (count[i] = 0): it is counted and processed alone
 * (begin_one), so that the one that crashed does not take others with it. */
static int begin_page(an_service *s, const an_entry *v, size_t n, int64_t *count, bool *open)
{
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    int64_t *cnt = malloc((n ? n : 1) * sizeof *cnt);
    int rc = AN_ENOMEM;
    if (!ids || !idx || !cnt)
        goto out;
    size_t na = 0;
    for (size_t i = 0; i < n; i++)
        if (!v[i].nil && !is_deferred(s, v[i].id)) {
            idx[na] = i;
            ids[na++] = v[i].id;
        }
    rc = an_attempts_begin_page(s->redis, s->cfg->streams.input, ids, na, cnt);
    if (rc) {
        an_warn("cannot count processing attempts: %s", an_redis_errstr(s->redis));
        goto out;
    }
    for (size_t k = 0; k < na; k++) {
        count[idx[k]] = cnt[k];
        open[idx[k]] = cnt[k] > 0;
        if (cnt[k] == 0)
            an_warn("entry %s: an earlier attempt did not complete; processing it alone",
                    ids[k]);
    }
out:
    free(ids);
    free(idx);
    free(cnt);
    return rc;
}

/* Counts one attempt of e alone: *count is its number. */
static int begin_one(an_service *s, const an_entry *e, int64_t *count)
{
    const char *ids[] = {e->id};
    bool split = false;
    int rc = an_attempts_begin(s->redis, s->cfg->streams.input, ids, 1, false, count, &split);
    if (rc)
        an_warn("cannot count a processing attempt of entry %s: %s", e->id,
                an_redis_errstr(s->redis));
    return rc;
}

/* begin_page (e == NULL) or begin_one (e) with in-process retries of
 * Redis failures, as run_items_retrying: a Redis blip does not leave the
 * page to wait claim_idle_ms, a lasting one (or a refusal such as
 * WRONGTYPE on the attempts hash) pauses (svc_failed). AN_ETRANSIENT only
 * when stopping; AN_ENOGROUP (NOGROUP) and local errors are returned. */
static int begin_retrying(an_service *s, const an_entry *v, size_t n, int64_t *count,
                          bool *open, const an_entry *e)
{
    for (;;) {
        int rc = e ? begin_one(s, e, count) : begin_page(s, v, n, count, open);
        if (rc == 0) {
            svc_succeeded(s);
            return 0;
        }
        if (rc != AN_ETRANSIENT && rc != AN_EENV && rc != AN_EREDIS)
            return rc;
        svc_failed(s, rc == AN_EREDIS ? AN_EENV : rc, false, "counting processing attempts");
        if (!svc_wait(s))
            return AN_ETRANSIENT;
    }
}

/* Ends, without completing them, the attempts of v[i] with open[i]: entries
 * left pending on purpose (deferred, a stop, an error to retry later), so
 * that waiting and restarts never count as failures. A failure here only
 * leaves a count one too high (logged). */
static void end_open(an_service *s, const an_entry *v, size_t n, const bool *open)
{
    const char **ids = malloc((n ? n : 1) * sizeof *ids);
    size_t k = 0;
    if (!ids) {
        an_error("out of memory ending processing attempts");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (open[i])
            ids[k++] = v[i].id;
    if (k && an_attempts_end(s->redis, s->cfg->streams.input, ids, k))
        an_warn("cannot end %zu processing attempts (%s); each stays counted once", k,
                an_redis_errstr(s->redis));
    free(ids);
}

/* Dead-letters e when its attempt number is over max_deliveries (before
 * it is decoded). *gone: it was (or another consumer has it now). */
static int over_attempts(an_service *s, const an_entry *e, int64_t count, bool *gone)
{
    *gone = false;
    if (count <= s->cfg->streams.max_deliveries)
        return 0;
    char reason[160];
    snprintf(reason, sizeof reason,
             "processing attempted %" PRId64 " times without completing, over "
             "max_deliveries (%d)", count, s->cfg->streams.max_deliveries);
    int rc = complete_in_redis(s, e, reason, SVC_DL_ATTEMPTS);
    *gone = !rc;
    return rc;
}

/* Handles entries just read or claimed, in order: consecutive
 * inference-only entries go as one group (up to AN_SERVICE_GROUP_MAX_ROWS
 * rows and [streams] max_group_decoded_bytes), anything else one by one.
 * While a group's write is in flight the next group is decoded
 * (svc_prefetch). Every entry's processing attempt is counted before it is
 * decoded (begin_page), and ended at the end if it neither completed nor
 * failed the process. */
static int take_entries(an_service *s, const an_entry *v, size_t n)
{
    item *items = calloc(n ? n : 1, sizeof *items);
    prefetch pf = {.v = v, .n = n, .items = calloc(n ? n : 1, sizeof *items)};
    int64_t *count = calloc(n ? n : 1, sizeof *count);
    bool *open = calloc(n ? n : 1, sizeof *open);
    if (!items || !pf.items || !count || !open) {
        free(items);
        free(pf.items);
        free(count);
        free(open);
        return AN_ENOMEM;
    }
    pf.count = count;
    int rc = begin_retrying(s, v, n, count, open, NULL);
    size_t i = 0;
    while (i < n && !rc && !stopping(s)) {
        const an_entry *e = &v[i];
        size_t k = 0;
        svc_heartbeat(s);
        if (pf.k > 0 && pf.from == i) {
            /* decoded during the previous group's write: the same group
             * the code below would form */
            item *t = items;
            items = pf.items;
            pf.items = t;
            k = pf.k;
            pf.k = 0;
        } else {
            if (is_deferred(s, e->id)) {   /* re-read from "0": already in hand */
                i++;
                continue;
            }
            if (e->nil) {
                /* Trimmed or deleted before we got to it: nothing to process. */
                rc = complete_in_redis(s, e, NULL, NULL);
                i++;
                continue;
            }
            bool alone = count[i] == 0;   /* an earlier attempt did not complete */
            if (alone) {
                rc = begin_retrying(s, NULL, 0, &count[i], NULL, e);
                if (rc)
                    break;
                open[i] = true;
            }
            bool gone = false;
            rc = over_attempts(s, e, count[i], &gone);
            if (rc || gone) {
                open[i] = open[i] && !gone;
                i++;
                continue;
            }
            int ir = intake(s, e, &items[0]);
            if (ir == 1) {
                rc = complete_in_redis(s, e, items[0].reason, items[0].reason_class);
                open[i] = open[i] && rc != 0;
                item_clear(&items[0]);
                i++;
                continue;
            }
            if (ir) {
                rc = ir;
                break;
            }
            k = 1;
            size_t rows = items[0].n, bytes = items[0].b->decoded_bytes;
            /* extend the group with the following plain inference entries,
             * up to AN_SERVICE_GROUP_MAX_ROWS rows (catch-up batches are 1440
             * rows: memory stays bounded, the commit is amortized anyway).
             * Only entries counted by begin_page (no earlier unfinished
             * attempt) are grouped. */
            while (!alone && items[0].b->n_command == 0 && i + k < n &&
                   rows < AN_SERVICE_GROUP_MAX_ROWS && groupable(s, &v[i + k], count[i + k])) {
                int r2 = intake(s, &v[i + k], &items[k]);
                if (r2 == 0 && items[k].b->n_command == 0 &&
                    group_has_room(s, bytes, &items[k])) {
                    rows += items[k].n;
                    bytes += items[k].b->decoded_bytes;
                    k++;
                    continue;
                }
                item_clear(&items[k]);
                if (r2 == AN_ENOMEM)
                    rc = r2;
                break;
            }
        }
        if (!rc) {
            pf.from = i + k;
            pf.rows = 0;
            pf.done = false;
            s->pf = &pf;
            rc = run_items_retrying(s, items, k);
            s->pf = NULL;
            for (size_t j = 0; j < k; j++) {
                if (items[j].done)
                    open[i + j] = false;
                else if (!rc && items[j].oc == INF_DEFERRED)
                    defer_add(s, &items[j]);
            }
        }
        for (size_t j = 0; j < k; j++)
            item_clear(&items[j]);
        i += k;
    }
    end_open(s, v, n, open);
    for (size_t j = 0; j < pf.k; j++)
        item_clear(&pf.items[j]);
    free(pf.items);
    free(items);
    free(count);
    free(open);
    return rc;
}

/* One deferred entry again, as a new attempt (counted before it is
 * decoded, ended if it waits again). Returns 0 (done), 1 (still waiting;
 * *wm is the watermark it saw) or an error. */
static int retry_one(an_service *s, deferred *d, bool force, int64_t *wm)
{
    int64_t count = 0;
    int rc = begin_one(s, &d->e, &count);
    if (rc)
        return rc;
    bool gone = false;
    rc = over_attempts(s, &d->e, count, &gone);
    if (rc || gone)
        return rc;
    item it;
    rc = intake(s, &d->e, &it);
    if (rc == 1) {
        rc = complete_in_redis(s, &d->e, it.reason, it.reason_class);
        item_clear(&it);
        return rc;
    }
    bool done = false;
    if (!rc) {
        it.force = force;
        rc = run_items_retrying(s, &it, 1);
        if (!rc && it.oc == INF_DEFERRED) {
            *wm = it.seen_wm;
            rc = 1;
        }
        done = it.done;
        item_clear(&it);
    }
    if (!done) {
        bool open = true;
        end_open(s, &d->e, 1, &open);
    }
    return rc;
}

static int cmp_deferred(const void *a, const void *b)
{
    const deferred *x = a, *y = b;
    int c = strcmp(x->model, y->model);
    if (c)
        return c;
    return x->first_rowid < y->first_rowid ? -1 : x->first_rowid > y->first_rowid;
}

/* Retries deferred entries. Per model only the one with the lowest rows is
 * tried (the others wait behind it), and when it completes the next one of
 * the same model is tried at once, so a run of our own deferred batches
 * drains in one pass. An entry is forced through, its gap logged, once its
 * model's watermark has not moved for defer_max_ms: the predecessor is then
 * lost (a dead-lettered or never-sent batch). Entries we keep get their idle
 * time reset, so other consumers do not take them over while they wait. */
static int retry_deferred(an_service *s)
{
    qsort(s->def, s->ndef, sizeof *s->def, cmp_deferred);
    int64_t t = now_ms();
    size_t k = 0;
    int rc = 0;
    char blocked[AN_UID_MAX + 1] = "";   /* the model whose head is still waiting */
    for (size_t i = 0; i < s->ndef; i++) {
        deferred *d = &s->def[i];
        bool done = false;
        if (!rc && !stopping(s) && strcmp(d->model, blocked) && t >= d->next_ms) {
            int64_t wm = d->seen_wm;
            int r = retry_one(s, d, false, &wm);
            if (r == 1 && wm != d->seen_wm) {
                d->seen_wm = wm;   /* progress: restart the clock */
                d->since_ms = t;
                d->delay_ms = DEFER_MIN_MS;
            } else if (r == 1 && t - d->since_ms >= s->cfg->streams.defer_max_ms) {
                r = retry_one(s, d, true, &wm);   /* no progress for defer_max_ms */
            }
            if (r == 0) {
                done = true;
                /* Its successor (if ours) may go now: try it in this pass. */
                if (i + 1 < s->ndef && !strcmp(s->def[i + 1].model, d->model))
                    s->def[i + 1].next_ms = 0;
            } else if (r == 1) {
                d->delay_ms = d->delay_ms * 2 > DEFER_MAX_MS ? DEFER_MAX_MS : d->delay_ms * 2;
                d->next_ms = now_ms() + d->delay_ms;
            } else {
                rc = r;
            }
        }
        if (!done)
            memcpy(blocked, d->model, sizeof blocked);
        int64_t tn = now_ms();   /* a pass can be long: not the pass's start time */
        if (!done && tn - d->touched_ms >= s->cfg->streams.claim_idle_ms / 3) {
            const char *ids[] = {d->e.id};
            size_t claimed = 0;
            if (an_claim_ids(s->redis, s->cfg->streams.input, s->cfg->streams.group,
                             s->consumer, ids, 1, -1, &claimed) == 0) {
                d->touched_ms = tn;
                if (claimed == 0)
                    done = true;   /* acked or trimmed meanwhile: nothing to do */
            }
        }
        if (done) {
            s->def_bytes -= d->bytes;
            entry_free_copy(&d->e);
        } else {
            s->def[k++] = *d;
        }
    }
    s->ndef = k;
    return rc;
}

/* ------------------------------------------------------------ the loop */

/* Takes over entries that other consumers left idle for claim_idle_ms. */
static int claim_idle(an_service *s)
{
    char start[AN_ID_MAX] = "0-0";
    int rc = 0;
    do {
        an_entry_list l = {0};
        rc = an_autoclaim(s->redis, s->cfg->streams.input, s->cfg->streams.group, s->consumer,
                          s->cfg->streams.claim_idle_ms, start,
                          (size_t)s->cfg->streams.read_count, &l);
        if (rc) {
            an_entry_list_free(&l);
            return rc;
        }
        for (size_t i = 0; i < l.ndeleted; i++) {
            s->st.trimmed++;   /* Redis dropped it: no ack, not in st.entries */
            an_metrics_entries(s->opts.metrics, AN_OUTCOME_TRIMMED, 1);
            an_warn("pending entry %s of an idle consumer no longer exists (trimmed); Redis "
                    "dropped it from the group", l.deleted[i]);
        }
        for (size_t i = 0; i < l.n; i++) {
            if (is_deferred(s, l.v[i].id))
                continue;   /* our own, waiting: not a takeover */
            svc_count(s, &s->st.claimed, AN_C_CLAIMED, 1);
            an_info("claimed entry %s (delivery %" PRId64 ") from an idle consumer", l.v[i].id,
                    l.v[i].deliveries);
        }
        rc = take_entries(s, l.v, l.n);
        snprintf(start, sizeof start, "%s", l.next_start);
        an_entry_list_free(&l);
    } while (!rc && strcmp(start, "0-0") && !stopping(s));
    return rc;
}

/* The scorer's heartbeat hook: ctx is the service. */
static void scorer_heartbeat(void *ctx)
{
    svc_heartbeat(ctx);
}

/* The group scorer with the service's parts as its dependencies. NULL: out
 * of memory. */
static svc_scorer *scorer_new(an_service *s)
{
    svc_scorer_deps d = {
        .cfg = s->cfg, .redis = &s->redis, .repo = s->repo, .helper = s->helper,
        .hcfg = &s->hcfg, .sc = s->sc, .sw = s->sw, .st = &s->st,
        .metrics = s->opts.metrics, .now_us = svc_now_us,
        .overlap = svc_prefetch, .heartbeat = scorer_heartbeat, .ctx = s,
    };
    return svc_scorer_new(&d);
}

int an_service_new(const an_config *cfg, const an_service_opts *opts,
                   an_service **out, char *err, size_t errlen)
{
    an_service *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return AN_ENOMEM;
    }
    s->cfg = cfg;
    if (opts)
        s->opts = *opts;
    else
        s->opts.exit_when_idle_ms = -1;
    snprintf(s->consumer, sizeof s->consumer, "%s", cfg->streams.consumer);
    s->hcfg = an_config_helper(cfg);
    s->limits = an_config_codec_limits(cfg);
    s->helper = an_helper_new(&s->hcfg, NULL, NULL);
    s->sc = an_state_cache_new((size_t)cfg->anomaly_likelihood.state_cache_metrics);
    an_repo_options ro = an_repo_options_from_config(cfg);
    ro.application_name = "anomalyd";
    s->repo = an_repo_new(&ro);
    s->sw = svc_window_new(cfg, &s->hcfg);
    if (s->helper && s->repo && s->sc && s->sw)
        s->scorer = scorer_new(s);
    if (!s->scorer) {
        snprintf(err, errlen, "cannot create the helper or repository "
                 "(out of memory or invalid [anomaly_likelihood] settings)");
        an_service_free(s);
        return AN_ENOMEM;
    }
    *out = s;
    return 0;
}

int an_service_run(an_service *s)
{
    svc_heartbeat(s);
    int rc = connect_all(s);
    if (rc) {
        svc_note_stopping(s);
        return rc == AN_ETRANSIENT ? 0 : rc;
    }
    svc_note_ready(s);
    s->health.since_ms = an_realtime_ms();
    s->health.last_put_ms = INT64_MIN / 2;   /* write the health hash at once */
    an_info("consuming %s as %s/%s, publishing to %s (variant %s)",
            s->cfg->streams.input, s->cfg->streams.group, s->consumer,
            s->cfg->streams.output, an_variant_name(s->hcfg.variant));

    s->draining = true;
    snprintf(s->drain_from, sizeof s->drain_from, "0");
    s->idle_since_ms = now_ms();
    s->last_claim_ms = 0;
    int delay = RETRY_MIN_MS;

    while (!stopping(s)) {
        svc_heartbeat(s);
        svc_poll(s);
        an_entry_list l = {0};
        const char *id = s->draining ? s->drain_from : ">";
        /* While entries wait for their predecessors, poll instead of
         * blocking for the full block_ms. */
        int block = s->draining ? -1 : s->ndef ? 50 : s->cfg->streams.block_ms;
        rc = an_read_group(s->redis, s->cfg->streams.input, s->cfg->streams.group,
                           s->consumer, id, (size_t)s->cfg->streams.read_count, block, &l);
        if (rc == AN_ENOGROUP) {
            an_entry_list_free(&l);
            an_error("group %s or stream %s is gone (NOGROUP: Redis restarted "
                     "without persistence?); recreating it",
                     s->cfg->streams.group, s->cfg->streams.input);
            if (ensure_group(s))
                nap(s, delay);
            continue;
        }
        if (rc) {
            an_entry_list_free(&l);
            char what[300];
            snprintf(what, sizeof what, "reading %s", s->cfg->streams.input);
            svc_failed(s, rc == AN_EREDIS ? AN_EENV : rc, false, what);
            svc_wait(s);
            /* No re-drain of our pending entries after a reconnect: those
             * we hold are in memory (deferred, or retried in place), and a
             * re-read would count a delivery for each. Anything else of
             * ours (an XACK lost with the last second of AOF) is taken
             * back by our own XAUTOCLAIM after claim_idle_ms. */
            continue;
        }
        svc_succeeded(s);
        svc_health_tick(s);
        svc_note_up(s, AN_SERVER_REDIS, true);

        if (l.n == 0 && s->draining) {
            s->draining = false;   /* own pending drained: now new entries */
            an_entry_list_free(&l);
            continue;
        }
        if (s->draining && l.n)
            snprintf(s->drain_from, sizeof s->drain_from, "%s", l.v[l.n - 1].id);
        take_entries(s, l.v, l.n);
        bool got = l.n > 0;
        an_entry_list_free(&l);
        if (stopping(s))
            break;
        if (s->ndef) {
            int64_t before = s->st.entries;
            retry_deferred(s);
            got = got || s->st.entries > before;
        }

        int64_t t = now_ms();
        if (got)
            s->idle_since_ms = t;
        if (t - s->last_prune_ms >= SCORED_ENTRY_PRUNE_EVERY_MS) {
            int64_t n = 0;
            s->last_prune_ms = t;
            int keep = s->cfg->postgres.scored_entry_keep_ms;
            if (an_repo_prune_scored_entries(s->repo, keep / 1000.0, &n) == 0 && n)
                an_info("pruned %" PRId64 " scored_entry rows older than %d s", n, keep / 1000);
        }
        if (s->cfg->streams.trim_interval_ms > 0 &&
            t - s->last_trim_ms >= s->cfg->streams.trim_interval_ms) {
            s->last_trim_ms = t;
            if (an_retention_tick(&s->rt, s->redis, s->cfg))
                an_warn("trimming %s failed: %s; retrying in %d ms", s->cfg->streams.input,
                        an_redis_errstr(s->redis), s->cfg->streams.trim_interval_ms);
            /* the retention state counts totals; stats and metrics move by the difference */
            svc_count(s, &s->st.input_trimmed, AN_C_INPUT_TRIMMED,
                      s->rt.trimmed - s->st.input_trimmed);
            s->st.attempts_cleaned = s->rt.attempts_removed;
        }
        int64_t claim_every = s->cfg->streams.claim_idle_ms / 2 < 1000
                                  ? s->cfg->streams.claim_idle_ms / 2 : 1000;
        if (t - s->last_claim_ms >= claim_every) {
            s->last_claim_ms = t;
            int64_t before = s->st.claimed;
            if (claim_idle(s) == 0 && s->st.claimed > before)
                s->idle_since_ms = now_ms();
        }
        if (!got && !s->ndef && s->opts.exit_when_idle_ms >= 0 &&
            now_ms() - s->idle_since_ms >= s->opts.exit_when_idle_ms) {
            an_pending_summary ps = {0};
            if (an_pending_summary_get(s->redis, s->cfg->streams.input,
                                       s->cfg->streams.group, &ps) == 0 &&
                ps.count == 0) {
                an_pending_summary_free(&ps);
                an_info("idle for %" PRId64 " ms with nothing pending; exiting",
                        s->opts.exit_when_idle_ms);
                break;
            }
            an_pending_summary_free(&ps);
        }
    }
    if (s->ndef)
        an_info("stopping with %zu deferred entries pending; they are redelivered "
                "when this consumer restarts, or claimed by others after claim_idle_ms",
                s->ndef);
    svc_note_stopping(s);
    an_service_log_stats(s);
    return 0;
}

const an_service_stats *an_service_get_stats(const an_service *s)
{
    return &s->st;
}

void an_service_log_stats(const an_service *s)
{
    const an_service_stats *t = &s->st;
    int64_t hits = 0, misses = 0;
    int64_t whits = 0, wmisses = 0;
    an_state_cache_stats(s->sc, &hits, &misses);
    an_sample_window_stats(s->sw, &whits, &wmisses);
    an_info("stats: entries=%" PRId64 " inference_batches=%" PRId64
            " rows_scored=%" PRId64 " commands=%" PRId64 " rejected=%" PRId64
            " duplicates=%" PRId64 " republished=%" PRId64 " dead_letters=%" PRId64
            " trimmed=%" PRId64 " input_trimmed=%" PRId64 " attempts_cleaned=%" PRId64
            " claimed=%" PRId64 " deferred=%" PRId64
            " transient_errors=%" PRId64 " cache_misses=%" PRId64
            " state_cache=%zu state_cache_hits=%" PRId64 " state_cache_misses=%" PRId64
            " sample_window=%zu sample_window_bytes=%zu sample_window_hits=%" PRId64
            " sample_window_misses=%" PRId64 " groups=%" PRId64 " state=%s",
            t->entries, t->inference_batches, t->rows_scored, t->commands,
            t->rejected, t->duplicates, t->republished, t->dead_letters,
            t->trimmed, t->input_trimmed, t->attempts_cleaned, t->claimed, t->deferred,
            t->transient_errors, t->cache_misses,
            an_state_cache_size(s->sc), hits, misses, an_sample_window_size(s->sw),
            an_sample_window_bytes(s->sw), whits, wmisses, t->groups,
            s->health.state == AN_SERVICE_PAUSED ? "paused" : "running");
}

void an_service_free(an_service *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ndef; i++)
        entry_free_copy(&s->def[i].e);
    free(s->def);
    svc_scorer_free(s->scorer);
    an_helper_free(s->helper);
    an_state_cache_free(s->sc);
    an_sample_window_free(s->sw);
    an_repo_free(s->repo);
    an_redis_free(s->redis);
    free(s);
}
