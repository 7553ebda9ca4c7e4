/*
 * service_command.c: the command results of an entry (docs/htmengine.md
 * §1.3), in the original's decision order, each status change committed at
 * once, and their output messages (§1.9.2).
 */
#include "an_service.h"
#include "service_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_log.h"

/* The metric as the command results of one entry see it: read once, at
 * the first result that needs it, then changed in memory as those results
 * change it in the database. An entry's results all name its one model, so
 * a flood of them costs O(1) reads and at most two status writes, not
 * round trips per result. */
typedef struct cmd_metric {
    enum { CM_UNREAD, CM_FOUND, CM_MISSING } state;   /* m is set when CM_FOUND */
    bool shared;      /* read under FOR SHARE (docs/htmengine.md §1.3 step 2) */
    an_metric m;
} cmd_metric;

/* Reads the metric into cm unless it was read (with the lock when `share`).
 * 0 or an error to retry the entry with. */
static int cmd_metric_load(an_service *s, const char *uid, cmd_metric *cm, bool share)
{
    if (cm->state != CM_UNREAD && (cm->shared || !share))
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
        cm->state = CM_MISSING;
        cm->shared = share;
        return 0;
    }
    if (rc)
        return rc;
    cm->state = CM_FOUND;
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
        if (cm->state == CM_MISSING) {
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
    json_t *msg;
    int rc = an_msg_command(&m, &msg, err, sizeof err);
    if (rc == AN_EINVAL) {
        /* the metric's parameters or texts cannot be written: the original
         * would crash; we log and skip the message */
        an_error("cannot compose command result message for model=%s: %s", uid, err);
        return 0;
    }
    if (rc)
        return rc;
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
        cm->state = CM_MISSING;
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
        char *key = an_params_key(s->cfg->streams.params_prefix, uid);
        int drc = key ? an_del(s->redis, key, NULL) : AN_ENOMEM;
        free(key);
        if (drc)
            return drc;
        return compose_command(s, it, uid, c, cm);
    }
    int rc = cmd_metric_load(s, uid, cm, true);
    if (rc)
        return rc;
    if (cm->state == CM_MISSING) {
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

int svc_item_commands(an_service *s, item *it)
{
    cmd_metric cm = {0};
    int rc = 0;
    for (size_t r = 0; r < it->b->n && !rc; r++)
        if (it->b->results[r].kind == AN_RES_COMMAND)
            rc = process_command(s, it, it->b->model, &it->b->results[r].u.cmd, &cm);
    an_metric_clear(&cm.m);
    return rc;
}
