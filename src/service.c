/*
 * service.c: the anomalyd loop (spec §1.2-§1.5, DESIGN.md "The flow").
 *
 * For each input entry: decode it (poison -> dead letter), process its
 * command results (§1.3), then its inference results as one unit (§1.4):
 * snapshot checks and scrub outside the transaction as the original did,
 * then ONE transaction that locks the metric row, checks the scored
 * watermark (idempotence), runs the likelihood helper, writes every row with
 * one statement and stores the params and the watermark. Finally one Lua
 * call publishes the output messages, refreshes the params cache and XACKs
 * the entry. A crash anywhere before that call leaves the entry pending, and
 * its redelivery finds the watermark and does not score twice.
 *
 * Errors are of three kinds:
 *   - the entry's fault (undecodable, invalid stored params, ...): the entry
 *     goes to the dead-letter stream with the reason;
 *   - the original's "reject" cases: logged as the original logged them,
 *     and the entry is acked with nothing published for it;
 *   - transient (a server went away): the entry stays in hand and is
 *     retried in-process with backoff, so an outage does not use up its
 *     delivery count.
 */
#include "an_service.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "an_codec.h"
#include "an_helper.h"
#include "an_log.h"
#include "an_repo.h"
#include "an_streams.h"

/* Backoff for transient errors outside the repository's own retry. */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000

/* One output message waiting for the Lua publish. */
typedef struct out_item {
    const char *data_type;
    char rows[64];     /* "first-last" or "" */
    char *body;        /* encoded body (malloc'd) */
    size_t body_len;
} out_item;

/* What the inference part of an entry came to. */
typedef enum {
    INF_NONE = 0,  /* no inference results in the entry */
    INF_SCORED,    /* scored and committed: publish msg + params */
    INF_REJECTED,  /* the original's reject: ack, publish nothing */
    INF_DUPLICATE, /* already applied: ack; republish if ours */
    INF_POISON,    /* dead-letter with reason */
    INF_DEFERRED,  /* predecessor not applied yet: keep pending, retry */
} inf_outcome;

/* process_entry's "not now": the entry stays pending in our PEL and is
 * retried from the deferred list (positive, unlike the AN_E* codes). */
#define ENTRY_DEFERRED 1

/* An entry kept pending because its predecessor (same model, earlier rows)
 * was not applied yet. */
typedef struct deferred {
    an_entry e;          /* deep copy */
    char model[AN_UID_MAX + 1];
    int64_t first_rowid; /* of its inference results */
    int64_t seen_wm;     /* the model's watermark when last checked */
    int64_t since_ms;    /* last progress: first deferral, or the watermark moved */
    int64_t next_ms;     /* next retry */
    int64_t touched_ms;  /* last XCLAIM that reset its idle time */
    int delay_ms;
} deferred;

/* Deferred retries back off from 20 ms to 1 s. */
#define DEFER_MIN_MS 20
#define DEFER_MAX_MS 1000

struct an_service {
    const an_config *cfg;
    an_service_opts opts;
    an_redis *redis;
    an_repo *repo;
    an_helper *helper;
    an_helper_config hcfg;
    an_codec_limits limits;
    char consumer[256];
    an_service_stats st;

    /* Restart protocol: drain our own pending entries ("0") before ">". */
    bool draining;
    char drain_from[AN_ID_MAX];

    /* Per-entry scratch, reused across entries. */
    out_item *outs;
    size_t nouts, capouts;
    an_data_rows rows;
    an_row *hrows;
    an_score_update *upd;
    char **pred_text;
    an_out_row *orows;
    size_t cap_rows;
    char *params_json;   /* params text for the cache after a commit */
    int64_t watermark;   /* the watermark that goes with params_json */
    char reason[512];    /* dead-letter reason / reject text */

    int64_t idle_since_ms;
    int64_t last_claim_ms;

    deferred *def;       /* in arrival order */
    size_t ndef, capdef;
    bool force;          /* the entry in hand waited defer_max_ms: no more waiting */
    /* Filled by process_inference when it defers: what the entry waits on. */
    char defer_model[AN_UID_MAX + 1];
    int64_t defer_first;
    int64_t defer_wm;
};

/* ------------------------------------------------------------ utilities */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool stopping(const an_service *s)
{
    return s->opts.stop && *s->opts.stop;
}

/* Sleeps ms, waking early (in 50 ms steps) when a stop is requested. */
static void nap(const an_service *s, int ms)
{
    while (ms > 0 && !stopping(s)) {
        int step = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* "[a..b]" or "[a]" as the original's logs write row ranges. */
static const char *range_text(char *buf, size_t len, int64_t a, int64_t b)
{
    if (a == b)
        snprintf(buf, len, "[%" PRId64 "]", a);
    else
        snprintf(buf, len, "[%" PRId64 "..%" PRId64 "]", a, b);
    return buf;
}

/* Grows the per-row scratch arrays to hold n rows. */
static int reserve_rows(an_service *s, size_t n)
{
    if (n <= s->cap_rows)
        return 0;
    size_t cap = s->cap_rows ? s->cap_rows : 64;
    while (cap < n)
        cap *= 2;
    an_row *h = realloc(s->hrows, cap * sizeof *h);
    if (!h)
        return AN_ENOMEM;
    s->hrows = h;
    an_score_update *u = realloc(s->upd, cap * sizeof *u);
    if (!u)
        return AN_ENOMEM;
    s->upd = u;
    an_out_row *o = realloc(s->orows, cap * sizeof *o);
    if (!o)
        return AN_ENOMEM;
    s->orows = o;
    char **p = realloc(s->pred_text, cap * sizeof *p);
    if (!p)
        return AN_ENOMEM;
    for (size_t i = s->cap_rows; i < cap; i++)
        p[i] = NULL;
    s->pred_text = p;
    s->cap_rows = cap;
    return 0;
}

static void clear_outs(an_service *s)
{
    for (size_t i = 0; i < s->nouts; i++)
        free(s->outs[i].body);
    s->nouts = 0;
    free(s->params_json);
    s->params_json = NULL;
    s->watermark = 0;
    s->reason[0] = '\0';
}

/* Encodes msg (consumed: decref'd here) as the next output message. */
static int add_out(an_service *s, const char *data_type, const char *rows,
                   json_t *msg)
{
    int rc = 0;
    if (s->nouts == s->capouts) {
        size_t cap = s->capouts ? 2 * s->capouts : 4;
        out_item *o = realloc(s->outs, cap * sizeof *o);
        if (!o) {
            rc = AN_ENOMEM;
            goto out;
        }
        s->outs = o;
        s->capouts = cap;
    }
    out_item *it = &s->outs[s->nouts];
    memset(it, 0, sizeof *it);
    it->data_type = data_type;
    snprintf(it->rows, sizeof it->rows, "%s", rows ? rows : "");
    char err[256];
    rc = an_body_encode(msg, s->cfg->streams.output_encoding, &it->body,
                        &it->body_len, err, sizeof err);
    if (rc) {
        an_error("cannot encode output message: %s", err);
        goto out;
    }
    s->nouts++;
out:
    json_decref(msg);
    return rc;
}

/* ------------------------------------------------------------ connections */

static int ensure_group(an_service *s)
{
    bool created = false;
    int rc = an_group_create(s->redis, s->cfg->streams.input,
                             s->cfg->streams.group, "0", &created);
    if (rc) {
        an_warn("cannot create group %s on %s: %s", s->cfg->streams.group,
                s->cfg->streams.input, an_redis_errstr(s->redis));
        return rc;
    }
    if (created)
        an_info("created consumer group %s on stream %s",
                s->cfg->streams.group, s->cfg->streams.input);
    return 0;
}

/* Connects both servers, retrying with backoff until they answer or a stop
 * is requested. Returns 0, AN_ECONFIG/AN_EDB for errors that waiting does
 * not fix, or AN_ETRANSIENT when stopped while waiting. */
static int connect_all(an_service *s)
{
    int delay = RETRY_MIN_MS;
    for (;;) {
        int rc = 0;
        if (!s->redis) {
            an_redis_opts ro = an_redis_opts_default();
            ro.connect_timeout_ms = s->cfg->redis.connect_timeout_ms;
            ro.command_timeout_ms = s->cfg->redis.timeout_ms;
            ro.block_margin_ms = s->cfg->redis.block_margin_ms;
            char err[256];
            rc = an_redis_connect(s->cfg->redis.url, &ro, &s->redis, err,
                                  sizeof err);
            if (rc == AN_ECONFIG || rc == AN_EREDIS) {
                an_error("redis: %s", err);
                return rc;
            }
            if (rc)
                an_warn("redis not reachable (%s); retrying", err);
        }
        if (!rc && s->redis)
            rc = ensure_group(s);
        if (!rc) {
            rc = an_repo_connect(s->repo);
            if (rc == AN_EDB) {
                an_error("postgres: %s", an_repo_errstr(s->repo));
                return rc;
            }
            if (rc)
                an_warn("postgres not reachable (%s); retrying",
                        an_repo_errstr(s->repo));
        }
        if (!rc)
            return 0;
        if (stopping(s))
            return AN_ETRANSIENT;
        s->st.transient_errors++;
        nap(s, delay);
        delay = delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay * 2;
    }
}

/* ------------------------------------------------------------ dead letters */

static int dead_letter(an_service *s, const an_entry *e, const char *reason)
{
    an_dead_letter_req req = {
        .input = s->cfg->streams.input,
        .group = s->cfg->streams.group,
        .entry_id = e->id,
        .owner = s->consumer,
        .dead_letter = s->cfg->streams.dead_letter,
        .maxlen = 0,
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
        return rc == AN_ETRANSIENT || rc == AN_ENOTFOUND ? rc : AN_EREDIS;
    s->st.dead_letters++;
    s->st.entries++;
    an_error("dead-lettered entry %s as %s in %s: %s", e->id, id,
             s->cfg->streams.dead_letter, reason);
    return 0;
}

/* ------------------------------------------------------------ commands */

/* §1.9.2: compose the command-result message; a successful defineModel reads
 * the metric (not found / not monitored: skip publishing, as the original). */
static int compose_command(an_service *s, const char *uid,
                           const an_command_result *c)
{
    an_cmd_msg m = {
        .method = c->method,
        .model_id = uid,
        .command_id = c->command_id,
        .status = c->status,
        .error_message = c->error,
    };
    an_metric metric = {0};
    int rc = 0;
    if (!strcmp(c->method, "defineModel") && c->status == 0) {
        rc = an_repo_get_metric(s->repo, uid, AN_LOCK_NONE, &metric);
        if (rc == AN_ENOTFOUND) {
            an_warn("_composeModelCommandResultMessage: method=%s; model=%s not found",
                    c->method, uid);
            rc = 0;
            goto out;
        }
        if (rc)
            goto out;
        if (!metric.parameters || !metric.parameters[0]) {
            an_warn("_composeModelCommandResultMessage: method=%s; model=%s not monitored",
                    c->method, uid);
            goto out;
        }
        m.has_model_info = true;
        m.metric_name = metric.name ? metric.name : "";
        m.resource = metric.server ? metric.server : "";
        m.model_spec_json = metric.parameters;
    }
    char err[256];
    json_t *msg = an_msg_command(&m, err, sizeof err);
    if (!msg) {
        an_error("cannot compose command result message for model=%s: %s", uid, err);
        goto out;   /* the original would crash; we log and skip the message */
    }
    rc = add_out(s, AN_DATATYPE_COMMAND, NULL, msg);
out:
    an_metric_clear(&metric);
    return rc;
}

/* §1.3, in the original's exact decision order. Returns 0 or a transient /
 * database error (the entry is then retried). */
static int process_command(an_service *s, const char *uid,
                           const an_command_result *c)
{
    s->st.commands++;
    if (!strcmp(c->method, "deleteModel")) {
        an_info("Model=%s was deleted", uid);
        return compose_command(s, uid, c);
    }

    /* FOR SHARE in a short transaction: waits for an in-flight transaction
     * of the adapter that created the metric (spec §8.3). */
    an_metric m = {0};
    int rc = an_repo_begin(s->repo);
    if (!rc)
        rc = an_repo_get_metric(s->repo, uid, AN_LOCK_SHARE, &m);
    an_repo_rollback(s->repo);
    if (rc == AN_ENOTFOUND) {
        an_warn("Received command result=%s/%s for unknown model=%s (model deleted?)",
                c->method, c->command_id, uid);
        an_metric_clear(&m);
        return compose_command(s, uid, c);
    }
    if (rc)
        goto out;

    if (c->status != 0) {
        an_error("%s", c->error ? c->error : "(no errorMessage)");
        if (m.status != AN_METRIC_ERROR) {
            an_error("Placing model=%s in ERROR state due to commandResult=%s/%s status=%" PRId64,
                     uid, c->method, c->command_id, c->status);
            rc = an_repo_set_metric_status(s->repo, uid, AN_METRIC_ERROR,
                                           c->error, AN_REPO_ANY_STATUS);
            if (rc == AN_ENOTFOUND) {
                an_warn("Error processing result=%s from model=%s: metric not found",
                        c->command_id, uid);
                rc = 0;
                goto out;   /* ObjectNotFoundError: not published */
            }
            if (rc)
                goto out;
        } else {
            an_warn("Received failed command result for model=%s that is already in ERROR state",
                    uid);
        }
    } else if (!strcmp(c->method, "defineModel")) {
        an_info("Model was created for <%s>", uid);
        if (m.status == AN_METRIC_CREATE_PENDING) {
            rc = an_repo_set_metric_status(s->repo, uid, AN_METRIC_ACTIVE, NULL,
                                           AN_REPO_ANY_STATUS);
            if (rc == AN_ENOTFOUND) {
                an_warn("Error processing result=%s from model=%s: metric not found",
                        c->command_id, uid);
                rc = 0;
                goto out;
            }
            if (rc)
                goto out;
        } else {
            an_warn("Received defineModel result for model=%s that was not in "
                    "CREATE_PENDING state (status=%s)", uid,
                    an_metric_status_name(m.status));
        }
    } else {
        an_error("Unexpected model result=%s/%s for model=%s", c->method,
                 c->command_id, uid);
    }
    an_metric_clear(&m);
    return compose_command(s, uid, c);
out:
    an_metric_clear(&m);
    return rc;
}

/* ------------------------------------------------------------ inference */

typedef struct tx_ctx {
    an_service *s;
    const an_entry *e;
    const an_batch *b;
    const an_inference_result **inf;
    size_t n;
    /* results */
    bool duplicate;
    bool ours;             /* duplicate committed by this very entry */
    bool poison;
    bool deferred;         /* predecessor not applied (re-checked under the lock) */
    an_metric m;           /* the metric under the lock */
    an_helper_state state; /* params after the batch */
    int64_t updated;
} tx_ctx;

/* Loads anomalyLikelihoodParams: from the hash when its watermark equals the
 * database's, else from metric.model_params. */
static int load_params(tx_ctx *t, an_helper_state *st)
{
    an_service *s = t->s;
    char key[512];
    snprintf(key, sizeof key, "%s%s", s->cfg->streams.params_prefix, t->b->model);
    char err[256];
    char *cached = NULL;
    int64_t wm = -1, upd = -1;
    int rc = an_params_cache_get(s->redis, key, &cached, &wm, &upd);
    if (rc == 0 && wm == t->m.scored_rowid) {
        json_error_t je;
        json_t *j = json_loads(cached, JSON_DECODE_ANY, &je);
        free(cached);
        if (j && an_helper_state_from_json(j, st, err, sizeof err) == 0) {
            json_decref(j);
            return 0;
        }
        json_decref(j);
        an_warn("params cache %s is unreadable; using PostgreSQL", key);
    } else {
        free(cached);
        if (rc && rc != AN_ENOTFOUND)
            an_warn("params cache %s unavailable (%s); using PostgreSQL", key,
                    an_redis_errstr(s->redis));
    }
    s->st.cache_misses++;

    if (!t->m.model_params) {
        memset(st, 0, sizeof *st);
        return 0;
    }
    json_error_t je;
    json_t *mp = json_loads(t->m.model_params, 0, &je);
    if (!mp || !json_is_object(mp)) {
        snprintf(s->reason, sizeof s->reason,
                 "metric %s: model_params is not a JSON object: %s", t->b->model,
                 mp ? "not an object" : je.text);
        json_decref(mp);
        return AN_EINVAL;
    }
    rc = an_helper_state_from_json(json_object_get(mp, "anomalyLikelihoodParams"),
                                   st, err, sizeof err);
    json_decref(mp);
    if (rc) {
        snprintf(s->reason, sizeof s->reason,
                 "metric %s: stored anomalyLikelihoodParams invalid: %s",
                 t->b->model, err);
        return AN_EINVAL;
    }
    return 0;
}

/* model_params with anomalyLikelihoodParams replaced (§1.4 step 7.2);
 * malloc'd text. */
static char *merge_model_params(const char *model_params, json_t *state_json)
{
    json_t *mp = model_params ? json_loads(model_params, 0, NULL) : NULL;
    if (!mp || !json_is_object(mp)) {
        json_decref(mp);
        mp = json_object();
    }
    char *text = NULL;
    if (mp && json_object_set(mp, "anomalyLikelihoodParams", state_json) == 0)
        text = an_json_dumps(mp, NULL);
    json_decref(mp);
    return text;
}

/* Per-model order: may a batch starting at `first` be applied now that the
 * metric is scored up to `scored`? Yes when it follows on, or when the row
 * before it is missing (garbage-collected, or first == 1) or was processed
 * outside the watermark (e.g. data scored by htmengine before migration).
 * *ready is false while that row waits for a batch still in flight. */
static int order_ready(an_repo *r, const char *uid, int64_t first, int64_t scored,
                       bool *ready)
{
    *ready = true;
    if (first <= scored + 1)
        return 0;
    int state;
    int rc = an_repo_row_state(r, uid, first - 1, &state);
    if (rc)
        return rc;
    *ready = state != AN_ROW_UNPROCESSED;
    return 0;
}

/* The write transaction (run by an_repo_with_retry, so re-runnable). */
static int score_tx(an_repo *r, void *arg)
{
    tx_ctx *t = arg;
    an_service *s = t->s;
    const int64_t first = t->inf[0]->rowid, last = t->inf[t->n - 1]->rowid;
    char *mp_text = NULL;
    json_t *state_json = NULL;

    an_metric_clear(&t->m);
    t->duplicate = t->ours = t->poison = t->deferred = false;
    int rc = an_repo_get_metric(r, t->b->model, AN_LOCK_UPDATE, &t->m);
    if (rc)
        return rc;   /* AN_ENOTFOUND: the caller rejects */
    if (t->m.status != AN_METRIC_ACTIVE)
        return AN_ESTATE;

    if (last <= t->m.scored_rowid) {
        t->duplicate = true;
        t->ours = t->m.scored_source && !strcmp(t->m.scored_source, t->e->id);
        return 0;
    }
    if (first <= t->m.scored_rowid) {
        snprintf(s->reason, sizeof s->reason,
                 "batch rows [%" PRId64 "..%" PRId64 "] overlap rows already "
                 "scored up to %" PRId64, first, last, t->m.scored_rowid);
        t->poison = true;
        return 0;
    }

    /* Re-checked under the lock: another consumer may have been between. */
    bool ready;
    if ((rc = order_ready(r, t->b->model, first, t->m.scored_rowid, &ready)))
        return rc;
    if (!ready && !s->force) {
        t->deferred = true;
        return 0;
    }

    rc = load_params(t, &t->state);
    if (rc == AN_EINVAL) {
        t->poison = true;
        return 0;
    }
    if (rc)
        return rc;

    for (size_t i = 0; i < t->n; i++) {
        an_row *h = &s->hrows[i];
        h->rowid = s->rows.v[i].rowid;
        h->value = s->rows.v[i].metric_value;
        h->raw = t->inf[i]->score;
        h->anomaly_score = 0.0;
        h->scored = false;
    }
    an_repo_source rs = {.repo = r, .uid = t->b->model, .before_rowid = first};
    an_sample_source src = an_repo_sample_source(&rs);
    char err[256];
    rc = an_helper_update(s->helper, &src, &t->state, s->hrows, t->n, err, sizeof err);
    if (rc) {
        if (rc == AN_EIO && an_repo_last_rc(r) == AN_ETRANSIENT)
            return AN_ETRANSIENT;
        an_error("likelihood helper failed for model=%s: %s", t->b->model, err);
        return rc == AN_EIO ? AN_EDB : rc;
    }

    for (size_t i = 0; i < t->n; i++) {
        an_score_update *u = &s->upd[i];
        u->rowid = s->hrows[i].rowid;
        u->raw = s->hrows[i].raw;
        u->anomaly_score = s->hrows[i].anomaly_score;
        u->display_value = an_display_value(u->anomaly_score, true);
        u->predictions = s->pred_text[i];
    }
    rc = an_repo_write_scores(r, t->b->model, s->upd, t->n, &t->updated);
    if (rc)
        return rc;

    state_json = an_helper_state_to_json(&t->state);
    if (!state_json)
        return AN_ENOMEM;
    mp_text = merge_model_params(t->m.model_params, state_json);
    free(s->params_json);
    s->params_json = an_json_dumps(state_json, NULL);
    json_decref(state_json);
    if (!mp_text || !s->params_json) {
        free(mp_text);
        return AN_ENOMEM;
    }
    s->watermark = last;
    rc = an_repo_store_params(r, t->b->model, mp_text, last, t->e->id);
    free(mp_text);
    return rc;
}

/* The cache text for a duplicate: the stored params, so that a stale or
 * deleted hash is repaired even when nothing is scored. */
static void params_from_metric(an_service *s, const an_metric *m)
{
    free(s->params_json);
    s->params_json = NULL;
    json_t *mp = m->model_params ? json_loads(m->model_params, 0, NULL) : NULL;
    json_t *p = mp ? json_object_get(mp, "anomalyLikelihoodParams") : NULL;
    s->params_json = p ? an_json_dumps(p, NULL) : strdup("null");
    s->watermark = m->scored_rowid;
    json_decref(mp);
}

/* §1.9.1 from the metric snapshot and the rows (scores from hrows when
 * fresh, from the database rows for a republish). */
static int compose_inference(an_service *s, const an_metric *m, const an_batch *b,
                             const an_inference_result **inf, size_t n, bool fresh)
{
    char err[256];
    json_t *spec = NULL;
    if (an_metric_spec_from_parameters(m->parameters, &spec, err, sizeof err)) {
        an_error("cannot compose inference results message for model=%s "
                 "(rows are stored): %s", b->model, err);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const an_data_row *d = &s->rows.v[i];
        an_out_row *o = &s->orows[i];
        memset(o, 0, sizeof *o);
        o->rowid = d->rowid;
        o->ts = d->ts;
        o->value = d->metric_value;
        if (fresh) {
            o->raw = s->hrows[i].raw;
            o->anomaly = s->hrows[i].anomaly_score;
            o->predictions = inf[i]->predictions;
            o->predictions_json = o->predictions ? NULL : "null";
        } else {
            o->raw = d->raw;
            o->anomaly = d->anomaly_score;
            o->predictions_json = d->predictions;
        }
    }
    an_metric_info mi = {
        .uid = m->uid, .name = m->name, .description = m->description,
        .resource = m->server, .location = m->location,
        .datasource = m->datasource ? m->datasource : "", .spec = spec,
    };
    json_t *msg = an_msg_inference(&mi, s->orows, n, err, sizeof err);
    json_decref(spec);
    if (!msg) {
        an_error("cannot compose inference results message for model=%s: %s",
                 b->model, err);
        return 0;
    }
    char rows[64];
    snprintf(rows, sizeof rows, "%" PRId64 "-%" PRId64, s->rows.v[0].rowid,
             s->rows.v[n - 1].rowid);
    return add_out(s, AN_DATATYPE_INFERENCE, rows, msg);
}

/* Scrub (§1.5) against the rows read. Returns 0 when the batch may be
 * scored, 1 when it is rejected, or an error code. */
static int scrub(an_service *s, const an_batch *b, const an_metric *m,
                 const an_inference_result **inf, size_t n)
{
    size_t nrows = s->rows.n;
    size_t k = n > nrows ? n : nrows;
    char r1[64];
    for (size_t i = 0; i < k; i++) {
        if (i >= nrows) {
            an_error("Rejected inference result batch=%s corresponding to rows=%s "
                     "of model=%s due to error=No MetricData row for inference "
                     "result=%" PRId64 " of model=%s",
                     range_text(r1, sizeof r1, inf[0]->rowid, inf[n - 1]->rowid),
                     range_text((char[64]){0}, 64, s->rows.v[0].rowid, s->rows.v[nrows - 1].rowid),
                     b->model, inf[i]->rowid, b->model);
            return 1;
        }
        if (i >= n) {
            an_error("Rejected inference result batch=%s of model=%s due to "
                     "error=Truncated inference result batch; no result for "
                     "metric data row=%" PRId64,
                     range_text(r1, sizeof r1, inf[0]->rowid, inf[n - 1]->rowid),
                     b->model, s->rows.v[i].rowid);
            return 1;
        }
        const an_data_row *d = &s->rows.v[i];
        if (inf[i]->rowid != d->rowid) {
            an_error("Rejected inference result batch=%s of model=%s due to "
                     "error=RowID mismatch between inference result=%" PRId64
                     " and ModelData row=%" PRId64,
                     range_text(r1, sizeof r1, inf[0]->rowid, inf[n - 1]->rowid),
                     b->model, inf[i]->rowid, d->rowid);
            return 1;
        }
        if (d->has_raw)
            an_error("Anomaly was already processed on data row=%" PRId64
                     " of model=%s; new result=%.17g", d->rowid, b->model,
                     inf[i]->score);
        if (inf[i]->status != 0) {
            an_error("%s", inf[i]->error ? inf[i]->error : "(no errorMessage)");
            if (m->status == AN_METRIC_ERROR) {
                an_error("Rejected inference result batch of model=%s: "
                         "failed and model was in ERROR state", b->model);
                return 1;
            }
            an_error("Placing model=%s in ERROR state due to inference "
                     "result=%" PRId64 " status=%" PRId64, b->model,
                     inf[i]->rowid, inf[i]->status);
            int rc = an_repo_set_metric_status(s->repo, b->model, AN_METRIC_ERROR,
                                               inf[i]->error, AN_REPO_ANY_STATUS);
            if (rc && rc != AN_ENOTFOUND)
                return rc;
            an_error("Rejected inference result batch=%s of model=%s due to "
                     "error=Inference result failed; model promoted to ERROR state",
                     range_text(r1, sizeof r1, inf[0]->rowid, inf[n - 1]->rowid),
                     b->model);
            return 1;
        }
    }
    return 0;
}

/* §1.4 for the inference results of one entry. */
static int process_inference(an_service *s, const an_entry *e, const an_batch *b,
                             inf_outcome *outcome)
{
    const size_t n = b->n_inference;
    const an_inference_result **inf = malloc(n * sizeof *inf);
    tx_ctx t = {.s = s, .e = e, .b = b, .n = n};
    an_metric m = {0};
    int rc;
    char r1[64];

    if (!inf)
        return AN_ENOMEM;
    for (size_t i = 0, j = 0; i < b->n; i++)
        if (b->results[i].kind == AN_RES_INFERENCE)
            inf[j++] = &b->results[i].u.inf;
    t.inf = inf;
    const int64_t first = inf[0]->rowid, last = inf[n - 1]->rowid;

    *outcome = INF_REJECTED;
    rc = an_repo_get_metric(s->repo, b->model, AN_LOCK_NONE, &m);
    if (rc == AN_ENOTFOUND) {
        an_warn("Received inference results for unknown model=%s; (model deleted?)",
                b->model);
        rc = 0;
        goto out;
    }
    if (rc)
        goto out;
    snprintf(s->defer_model, sizeof s->defer_model, "%s", b->model);
    s->defer_first = first;
    s->defer_wm = m.scored_rowid;
    if (m.status == AN_METRIC_CREATE_PENDING && !s->force) {
        /* With several consumers the defineModel result may still be in
         * another consumer's hands (one consumer in order never sees this):
         * wait for it, up to defer_max_ms, then reject as the original. */
        *outcome = INF_DEFERRED;
        goto out;
    }
    if (m.status != AN_METRIC_ACTIVE) {
        an_warn("Received inference results for a non-ACTIVE model=%s; "
                "(metric unmonitored?) status=%s", b->model,
                an_metric_status_name(m.status));
        goto out;
    }
    bool ready = true;
    if (last > m.scored_rowid) {
        if ((rc = order_ready(s->repo, b->model, first, m.scored_rowid, &ready)))
            goto out;
        if (!ready && !s->force) {
            *outcome = INF_DEFERRED;
            goto out;
        }
        if (!ready)
            an_warn("scoring batch %s of model=%s although rows after %" PRId64
                    " are still unprocessed: waited defer_max_ms (%d) for them",
                    range_text(r1, sizeof r1, first, last), b->model, m.scored_rowid,
                    s->cfg->streams.defer_max_ms);
    }
    rc = an_repo_get_rows(s->repo, b->model, first, last, &s->rows);
    if (rc)
        goto out;
    if (s->rows.n == 0) {
        an_error("Rejected inference result batch=%s of model=%s due to no "
                 "matching metric_data rows",
                 range_text(r1, sizeof r1, first, last), b->model);
        goto rejected_in_order;
    }
    if ((rc = reserve_rows(s, n > s->rows.n ? n : s->rows.n)))
        goto out;

    /* A redelivered batch whose rows are already scored is not scrubbed
     * (its rows legitimately have raw scores); the transaction confirms. */
    if (!(last <= m.scored_rowid)) {
        rc = scrub(s, b, &m, inf, n);
        if (rc == 1)
            goto rejected_in_order;
        if (rc)
            goto out;
    } else if (s->rows.n != n) {
        goto out;   /* cannot be a faithful duplicate either */
    }

    for (size_t i = 0; i < n; i++) {
        free(s->pred_text[i]);
        s->pred_text[i] = an_predictions_text(inf[i]->predictions);
        if (!s->pred_text[i]) {
            rc = AN_ENOMEM;
            goto out;
        }
    }

    rc = an_repo_with_retry(s->repo, score_tx, &t);
    if (rc == AN_ENOTFOUND || rc == AN_ESTATE) {
        an_warn("Rejected inference result batch=%s of model=%s: metric %s",
                range_text(r1, sizeof r1, first, last), b->model,
                rc == AN_ENOTFOUND ? "not found" : "is not ACTIVE");
        rc = 0;
        goto out;
    }
    if (rc)
        goto out;

    if (t.deferred) {
        *outcome = INF_DEFERRED;
        s->defer_wm = t.m.scored_rowid;
    } else if (t.poison) {
        *outcome = INF_POISON;
    } else if (t.duplicate) {
        *outcome = INF_DUPLICATE;
        s->st.duplicates++;
        params_from_metric(s, &t.m);
        if (t.ours) {
            /* Committed by this entry, then we crashed before the publish:
             * the output was never published, so publish it now. */
            rc = compose_inference(s, &t.m, b, inf, n, false);
            s->st.republished++;
            an_warn("batch %s of model=%s (entry %s) was already scored; "
                    "publishing its output that was never published",
                    range_text(r1, sizeof r1, first, last), b->model, e->id);
        } else {
            an_warn("batch %s of model=%s (entry %s) was already scored by "
                    "entry %s; acking the duplicate",
                    range_text(r1, sizeof r1, first, last), b->model, e->id,
                    t.m.scored_source ? t.m.scored_source : "?");
        }
    } else {
        *outcome = INF_SCORED;
        s->st.inference_batches++;
        s->st.rows_scored += t.updated;
        rc = compose_inference(s, &m, b, inf, n, true);
        an_debug("Updated HTM metric_data rows=%s of model=%s",
                 range_text(r1, sizeof r1, first, last), b->model);
    }
    goto out;

rejected_in_order:
    /* A batch rejected in its turn moves the watermark past its rows, so
     * that its successor does not wait for rows that will never be scored
     * (the original, with one consumer, simply went on). */
    rc = 0;
    if (ready) {
        bool moved;
        rc = an_repo_advance_watermark(s->repo, b->model, last, e->id, &moved);
        if (!rc && moved)
            an_info("watermark of model=%s moved to %" PRId64 " past rejected batch %s",
                    b->model, last, range_text(r1, sizeof r1, first, last));
    }
out:
    if (*outcome == INF_REJECTED && !rc)
        s->st.rejected++;
    an_metric_clear(&t.m);
    an_metric_clear(&m);
    free(inf);
    return rc;
}

/* ------------------------------------------------------------ one entry */

static int publish(an_service *s, const an_entry *e, const char *uid,
                   bool with_params)
{
    an_out_msg msgs[s->nouts ? s->nouts : 1];
    for (size_t i = 0; i < s->nouts; i++) {
        msgs[i] = (an_out_msg){
            .data_type = s->outs[i].data_type,
            .model = uid,
            .rows = s->outs[i].rows[0] ? s->outs[i].rows : NULL,
            .encoding = s->cfg->streams.output_encoding,
            .body = s->outs[i].body,
            .body_len = s->outs[i].body_len,
        };
    }
    char key[512];
    an_params_update pu;
    if (with_params) {
        snprintf(key, sizeof key, "%s%s", s->cfg->streams.params_prefix, uid);
        pu = (an_params_update){.key = key, .params_json = s->params_json,
                                .watermark = s->watermark};
    }
    an_publish_req req = {
        .input = s->cfg->streams.input,
        .group = s->cfg->streams.group,
        .entry_id = e->id,
        .owner = s->consumer,
        .output = s->cfg->streams.output,
        .output_maxlen = s->cfg->streams.output_maxlen,
        .msgs = msgs,
        .nmsgs = s->nouts,
        .params = with_params ? &pu : NULL,
    };
    an_publish_res res = {0};
    int rc = an_publish(s->redis, &req, &res);
    an_publish_res_free(&res);
    if (rc == AN_ESTATE) {
        /* Claimed by another consumer while we worked: it will find the
         * watermark and publish what we could not. */
        an_warn("entry %s was claimed by another consumer before we could "
                "publish it; it will be completed there", e->id);
        return 0;
    }
    if (rc)
        return rc == AN_ETRANSIENT || rc == AN_ENOTFOUND ? rc : AN_EREDIS;
    s->st.entries++;
    return 0;
}

/* Handles one entry end to end. Returns 0 when it is done (acked or
 * dead-lettered), AN_ETRANSIENT to retry it, or another error. */
static int process_entry(an_service *s, const an_entry *e)
{
    double t0 = now_s();
    an_batch *b = NULL;
    int rc;

    clear_outs(s);
    if (e->nil) {
        /* Trimmed or deleted before we got to it: nothing to process. */
        const char *ids[] = {e->id};
        rc = an_xack(s->redis, s->cfg->streams.input, s->cfg->streams.group, ids, 1, NULL);
        if (!rc) {
            s->st.trimmed++;
            s->st.entries++;
            an_warn("pending entry %s has no payload (trimmed or deleted); acked", e->id);
        }
        return rc;
    }
    if (e->deliveries > s->cfg->streams.max_deliveries) {
        snprintf(s->reason, sizeof s->reason,
                 "delivered %" PRId64 " times, over max_deliveries (%d)",
                 e->deliveries, s->cfg->streams.max_deliveries);
        return dead_letter(s, e, s->reason);
    }

    rc = an_batch_decode(e->fields, e->nfields, &s->limits, &b, s->reason,
                         sizeof s->reason);
    if (rc == AN_EINVAL || rc == AN_ERANGE)
        return dead_letter(s, e, s->reason);
    if (rc)
        return rc;

    for (size_t i = 0; i < b->n; i++) {
        if (b->results[i].kind != AN_RES_COMMAND)
            continue;
        if ((rc = process_command(s, b->model, &b->results[i].u.cmd)))
            goto out;
    }
    inf_outcome oc = INF_NONE;
    if (b->n_inference) {
        if ((rc = process_inference(s, e, b, &oc)))
            goto out;
        if (oc == INF_DEFERRED) {
            rc = ENTRY_DEFERRED;
            goto out;
        }
        if (oc == INF_POISON) {
            rc = dead_letter(s, e, s->reason);
            goto out;
        }
    }
    rc = publish(s, e, b->model, oc == INF_SCORED || oc == INF_DUPLICATE);
    if (rc)
        goto out;

    if (s->cfg->debugging.profiling || an_log_get_level() == AN_LOG_DEBUG) {
        double dur = now_s() - t0;
        if (oc == INF_SCORED) {
            char r1[64];
            const an_data_row *lastrow = &s->rows.v[s->rows.n - 1];
            time_t sec = (time_t)floor(lastrow->ts);
            struct tm tm;
            char when[32];
            gmtime_r(&sec, &tm);
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
            an_info("{TAG:ANOM.BATCH.INF.DONE} model=%s; numItems=%zu; rows=%s; "
                    "tailRowTS=%sZ; duration=%.4fs", b->model, b->n,
                    range_text(r1, sizeof r1, s->rows.v[0].rowid, lastrow->rowid),
                    when, dur);
        } else if (!b->n_inference) {
            an_info("{TAG:ANOM.BATCH.CMD.DONE} model=%s; numItems=%zu; duration=%.4fs",
                    b->model, b->n, dur);
        }
    }
out:
    an_batch_free(b);
    return rc;
}

/* Processes one entry, retrying transient failures in-process (so a server
 * outage does not count against the entry's deliveries). Returns 0, or
 * AN_ETRANSIENT when a stop was requested before it could complete. */
static int handle_entry(an_service *s, const an_entry *e)
{
    int delay = RETRY_MIN_MS;
    for (;;) {
        int rc = process_entry(s, e);
        if (rc == 0 || rc == ENTRY_DEFERRED)
            return rc;
        if (rc == AN_ENOTFOUND) {
            /* NOGROUP while completing the entry: the group (and our PEL)
             * is gone, so the recreated group delivers the entry again. */
            an_error("group %s on %s vanished while entry %s was in hand (Redis "
                     "restarted without persistence?); recreating it, the entry "
                     "will be delivered again", s->cfg->streams.group,
                     s->cfg->streams.input, e->id);
            ensure_group(s);
            return 0;
        }
        if (rc == AN_ENOMEM) {
            an_error("out of memory processing entry %s; will retry", e->id);
        } else if (rc == AN_ETRANSIENT || rc == AN_EREDIS || rc == AN_EDB) {
            an_warn("entry %s: %s; retrying in %d ms", e->id,
                    rc == AN_EDB || an_repo_last_rc(s->repo) ? an_repo_errstr(s->repo)
                                                             : an_redis_errstr(s->redis),
                    delay);
        } else {
            an_error("entry %s: unexpected error %d; retrying in %d ms", e->id, rc, delay);
        }
        s->st.transient_errors++;
        an_repo_rollback(s->repo);
        if (stopping(s))
            return AN_ETRANSIENT;
        nap(s, delay);
        delay = delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay * 2;
        if (an_repo_connect(s->repo) != 0)
            continue;
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

/* Keeps e pending in our hands and retries it later. On ENOMEM the entry
 * simply stays pending (it is redelivered after a restart). */
static void defer_add(an_service *s, const an_entry *e)
{
    if (is_deferred(s, e->id))
        return;
    if (s->ndef == s->capdef) {
        size_t cap = s->capdef ? 2 * s->capdef : 16;
        deferred *d = realloc(s->def, cap * sizeof *d);
        if (!d) {
            an_error("out of memory deferring entry %s; it stays pending", e->id);
            return;
        }
        s->def = d;
        s->capdef = cap;
    }
    deferred *d = &s->def[s->ndef];
    if (entry_copy(&d->e, e)) {
        an_error("out of memory deferring entry %s; it stays pending", e->id);
        return;
    }
    int64_t t = now_ms();
    snprintf(d->model, sizeof d->model, "%s", s->defer_model);
    d->first_rowid = s->defer_first;
    d->seen_wm = s->defer_wm;
    d->since_ms = d->touched_ms = t;
    d->delay_ms = DEFER_MIN_MS;
    d->next_ms = t + d->delay_ms;
    s->ndef++;
    s->st.deferred++;
    an_debug("entry %s deferred: its model's previous batch is not applied yet", e->id);
}

/* Handles an entry just read or claimed: done, deferred, or (stop) left. */
static int take_entry(an_service *s, const an_entry *e)
{
    if (is_deferred(s, e->id))
        return 0;   /* re-read from "0" after a reconnect: already in hand */
    int rc = handle_entry(s, e);
    if (rc == ENTRY_DEFERRED) {
        defer_add(s, e);
        return 0;
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
            int r = handle_entry(s, &d->e);
            if (r == ENTRY_DEFERRED && s->defer_wm != d->seen_wm) {
                d->seen_wm = s->defer_wm;   /* progress: restart the clock */
                d->since_ms = t;
                d->delay_ms = DEFER_MIN_MS;
            } else if (r == ENTRY_DEFERRED &&
                       t - d->since_ms >= s->cfg->streams.defer_max_ms) {
                s->force = true;            /* no progress for defer_max_ms */
                r = handle_entry(s, &d->e);
                s->force = false;
            }
            if (r == 0) {
                done = true;
                /* Its successor (if ours) may go now: try it in this pass. */
                if (i + 1 < s->ndef && !strcmp(s->def[i + 1].model, d->model))
                    s->def[i + 1].next_ms = 0;
            } else if (r == ENTRY_DEFERRED) {
                d->delay_ms = d->delay_ms * 2 > DEFER_MAX_MS ? DEFER_MAX_MS : d->delay_ms * 2;
                d->next_ms = now_ms() + d->delay_ms;
            } else {
                rc = r;
            }
        }
        if (!done)
            memcpy(blocked, d->model, sizeof blocked);
        if (!done && t - d->touched_ms >= s->cfg->streams.claim_idle_ms / 3) {
            const char *ids[] = {d->e.id};
            size_t claimed = 0;
            if (an_claim_ids(s->redis, s->cfg->streams.input, s->cfg->streams.group,
                             s->consumer, ids, 1, -1, &claimed) == 0) {
                d->touched_ms = t;
                if (claimed == 0)
                    done = true;   /* acked or trimmed meanwhile: nothing to do */
            }
        }
        if (done)
            entry_free_copy(&d->e);
        else
            s->def[k++] = *d;
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
        rc = an_autoclaim(s->redis, s->cfg->streams.input, s->cfg->streams.group,
                          s->consumer, s->cfg->streams.claim_idle_ms, start,
                          (size_t)s->cfg->streams.read_count, &l);
        if (rc) {
            an_entry_list_free(&l);
            return rc;
        }
        for (size_t i = 0; i < l.ndeleted; i++) {
            s->st.trimmed++;
            an_warn("pending entry %s of an idle consumer no longer exists "
                    "(trimmed); Redis dropped it from the group", l.deleted[i]);
        }
        for (size_t i = 0; i < l.n && !stopping(s); i++) {
            s->st.claimed++;
            an_info("claimed entry %s (delivery %" PRId64 ") from an idle consumer",
                    l.v[i].id, l.v[i].deliveries);
            if ((rc = take_entry(s, &l.v[i])))
                break;
        }
        snprintf(start, sizeof start, "%s", l.next_start);
        an_entry_list_free(&l);
    } while (!rc && strcmp(start, "0-0") && !stopping(s));
    return rc;
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
    an_repo_options ro = an_repo_options_from_config(cfg);
    ro.application_name = "anomalyd";
    s->repo = an_repo_new(&ro);
    if (!s->helper || !s->repo) {
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
    int rc = connect_all(s);
    if (rc)
        return rc == AN_ETRANSIENT ? 0 : rc;
    an_info("consuming %s as %s/%s, publishing to %s (variant %s)",
            s->cfg->streams.input, s->cfg->streams.group, s->consumer,
            s->cfg->streams.output, an_variant_name(s->hcfg.variant));

    s->draining = true;
    snprintf(s->drain_from, sizeof s->drain_from, "0");
    s->idle_since_ms = now_ms();
    s->last_claim_ms = 0;
    int delay = RETRY_MIN_MS;

    while (!stopping(s)) {
        an_entry_list l = {0};
        const char *id = s->draining ? s->drain_from : ">";
        /* While entries wait for their predecessors, poll instead of
         * blocking for the full block_ms. */
        int block = s->draining ? -1 : s->ndef ? 50 : s->cfg->streams.block_ms;
        rc = an_read_group(s->redis, s->cfg->streams.input, s->cfg->streams.group,
                           s->consumer, id, (size_t)s->cfg->streams.read_count, block, &l);
        if (rc == AN_ENOTFOUND) {
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
            s->st.transient_errors++;
            an_warn("reading %s failed: %s; retrying in %d ms",
                    s->cfg->streams.input, an_redis_errstr(s->redis), delay);
            nap(s, delay);
            delay = delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay * 2;
            /* After a reconnect our pending entries come first again. */
            s->draining = true;
            snprintf(s->drain_from, sizeof s->drain_from, "0");
            continue;
        }
        delay = RETRY_MIN_MS;

        if (l.n == 0 && s->draining) {
            s->draining = false;   /* own pending drained: now new entries */
            an_entry_list_free(&l);
            continue;
        }
        for (size_t i = 0; i < l.n && !stopping(s); i++) {
            if (s->draining)
                snprintf(s->drain_from, sizeof s->drain_from, "%s", l.v[i].id);
            if (take_entry(s, &l.v[i]))
                break;
        }
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
    an_info("stats: entries=%" PRId64 " inference_batches=%" PRId64
            " rows_scored=%" PRId64 " commands=%" PRId64 " rejected=%" PRId64
            " duplicates=%" PRId64 " republished=%" PRId64 " dead_letters=%" PRId64
            " trimmed=%" PRId64 " claimed=%" PRId64 " deferred=%" PRId64
            " transient_errors=%" PRId64 " cache_misses=%" PRId64,
            t->entries, t->inference_batches, t->rows_scored, t->commands,
            t->rejected, t->duplicates, t->republished, t->dead_letters,
            t->trimmed, t->claimed, t->deferred, t->transient_errors, t->cache_misses);
}

void an_service_free(an_service *s)
{
    if (!s)
        return;
    clear_outs(s);
    free(s->outs);
    for (size_t i = 0; i < s->ndef; i++)
        entry_free_copy(&s->def[i].e);
    free(s->def);
    an_data_rows_free(&s->rows);
    for (size_t i = 0; i < s->cap_rows; i++)
        free(s->pred_text[i]);
    free(s->pred_text);
    free(s->hrows);
    free(s->upd);
    free(s->orows);
    an_helper_free(s->helper);
    an_repo_free(s->repo);
    an_redis_free(s->redis);
    free(s);
}
