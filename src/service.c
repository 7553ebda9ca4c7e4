/*
 * service.c: the anomalyd loop (docs/htmengine.md §1.2-§1.5; the path of an
 * entry: docs/architecture.md). It connects, reads pages of entries from
 * the consumer group (our own pending ones first, then new ones), takes
 * over entries other consumers left idle, hands each page to
 * service_take.c, keeps the entries that wait for a predecessor and
 * retries them, and runs the maintenance ticks (scored_entry pruning, input
 * retention).
 *
 * What happens to an entry (service_take.c onwards):
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
 *     retried in-process with backoff (svc_retry), so an outage does not
 *     use up their delivery counts.
 * An inference batch whose predecessor (same model, earlier rows) is not
 * applied yet - with several consumers it may be in another's hands - is
 * deferred: kept pending here and retried until it is, or until the model's
 * watermark has not moved for defer_max_ms.
 */
#include "an_service.h"
#include "service_internal.h"
#include "service_window.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_clock.h"
#include "an_log.h"
#include "an_schema.h"
#include "an_util.h"

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

/* Deferred retries back off from 20 ms to 1 s (an_backoff_next). */
#define DEFER_MIN_MS 20
#define DEFER_MAX_MS 1000

/* While entries are deferred, a read blocks at most this long instead of
 * block_ms, so the loop comes back to retry them: their first retries are
 * due after DEFER_MIN_MS, and a shorter block would only spin. */
#define DEFER_POLL_MS 50

/* A deferred entry's idle time is reset (XCLAIM to ourselves) every
 * claim_idle_ms / DEFER_TOUCHES_PER_IDLE: twice at least before any
 * consumer could take it over, even when a retry pass runs late. */
#define DEFER_TOUCHES_PER_IDLE 3

/* Idle entries of other consumers are looked for every claim_idle_ms / 2,
 * so one is taken over at most 1.5 x claim_idle_ms after its consumer
 * stopped, and at least this often (a long claim_idle_ms does not add more
 * than this to a takeover). */
#define CLAIM_EVERY_MAX_MS 1000

/* After NOGROUP, when the group cannot be recreated at once: the read that
 * follows reports (and backs off on) the failure; this nap only keeps the
 * loop from spinning in between. */
#define REGROUP_NAP_MS 100

/* ------------------------------------------------------------ connections */

/* How often "schema missing" is repeated while waiting for it. */
#define SCHEMA_WARN_EVERY_MS 60000

/* Whether the database schema this build needs is there: *current false
 * when it is missing or older (logged; waiting for `anomalyctl db init` is
 * the cure, so the caller retries). Returns 0; AN_ETRANSIENT; AN_EDB when
 * the check itself fails for good (e.g. no permission to read
 * schema_migrations). */
static int check_schema(an_service *s, bool *current)
{
    int version = 0;
    int rc = an_schema_version(s->repo, &version);
    if (rc == AN_ETRANSIENT)
        return rc;
    if (rc) {
        an_error("postgres: cannot check the schema: %s", an_repo_errstr(s->repo));
        return AN_EDB;
    }
    *current = version >= an_schema_latest();
    an_metrics_set_schema(s->opts.metrics, *current);
    if (*current)
        return 0;
    int64_t t = an_monotonic_ms();
    if (!s->schema_warned_ms || t - s->schema_warned_ms >= SCHEMA_WARN_EVERY_MS) {
        s->schema_warned_ms = t;
        an_warn("database schema version %d, this build needs %d: waiting for "
                "`anomalyctl db init` (not ready meanwhile)", version, an_schema_latest());
    }
    return 0;
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
            an_redis_opts ro = an_redis_options_from_config(s->cfg);
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
            rc = svc_ensure_group(s);
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
        bool current = false;
        if (!rc)
            rc = check_schema(s, &current);
        if (!rc && current) {
            svc_succeeded(s);
            return 0;
        }
        if (rc && rc != AN_ETRANSIENT && rc != AN_EENV && rc != AN_ENOMEM)
            return rc;
        if (rc && s->redis)   /* (rc 0: the schema is missing, logged by check_schema) */
            svc_failed(s, rc, pg, pg ? "connecting to PostgreSQL" : "creating the group");
        svc_health_tick(s);
        if (!svc_wait(s))
            return AN_ETRANSIENT;
    }
}

/* ------------------------------------------------------------ deferral */

/* Whether the entry id is in the deferral list (the page's holder). */
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
    if (!an_grow((void **)&s->def, &s->capdef, s->ndef + 1, sizeof *s->def)) {
        an_error("out of memory deferring entry %s; it stays pending", it->e->id);
        return;
    }
    deferred *d = &s->def[s->ndef];
    if (an_entry_dup(&d->e, it->e)) {
        an_error("out of memory deferring entry %s; it stays pending", it->e->id);
        return;
    }
    int64_t t = an_monotonic_ms();
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

/* The deferral list as take_entries' holder: entries in it are skipped,
 * entries that must wait are added to it. */
static const svc_holder deferral = {.holds = is_deferred, .hold = defer_add};

static int cmp_deferred(const void *a, const void *b)
{
    const deferred *x = a, *y = b;
    int c = strcmp(x->model, y->model);
    if (c)
        return c;
    return x->first_rowid < y->first_rowid ? -1 : x->first_rowid > y->first_rowid;
}

/* Retries d, the head of its model's deferred entries (t: the pass's
 * start). When its model's watermark moved it waits on with its clock
 * restarted; when it has not moved for defer_max_ms it is forced through
 * (the predecessor is lost: a dead-lettered or never-sent batch). *done:
 * it finished. 0 or svc_take_one's error (d stays). */
static int retry_head(an_service *s, deferred *d, int64_t t, bool *done)
{
    int64_t wm = d->seen_wm;
    svc_one_result res = SVC_ONE_FINISHED;
    int rc = svc_take_one(s, &d->e, false, &res, &wm);
    if (!rc && res == SVC_ONE_WAITING && wm != d->seen_wm) {
        d->seen_wm = wm;   /* progress: restart the clock */
        d->since_ms = t;
        d->delay_ms = DEFER_MIN_MS;
    } else if (!rc && res == SVC_ONE_WAITING && t - d->since_ms >= s->cfg->streams.defer_max_ms) {
        rc = svc_take_one(s, &d->e, true, &res, &wm);
    }
    if (rc)
        return rc;
    *done = res == SVC_ONE_FINISHED;
    if (!*done) {
        d->delay_ms = an_backoff_next(d->delay_ms, DEFER_MAX_MS);
        d->next_ms = an_monotonic_ms() + d->delay_ms;
    }
    return 0;
}

/* Resets the idle time of d (not finished) when it is due, so other
 * consumers do not take it over while it waits. *done: it was acked or
 * trimmed meanwhile (nothing left to do). A failure is retried next pass. */
static void touch_deferred(an_service *s, deferred *d, bool *done)
{
    int64_t t = an_monotonic_ms();   /* a pass can be long: not the pass's start time */
    if (t - d->touched_ms < s->cfg->streams.claim_idle_ms / DEFER_TOUCHES_PER_IDLE)
        return;
    const char *ids[] = {d->e.id};
    size_t claimed = 0;
    if (an_claim_ids(s->redis, s->cfg->streams.input, s->cfg->streams.group, s->consumer, ids,
                     1, -1, &claimed) == 0) {
        d->touched_ms = t;
        *done = claimed == 0;
    }
}

/* Retries deferred entries. Per model only the one with the lowest rows is
 * tried (the others wait behind it), and when it completes the next one of
 * the same model is tried at once, so a run of our own deferred batches
 * drains in one pass. Entries we keep get their idle time reset. Returns 0
 * or the first retry's error (the pass then only keeps the rest). */
static int retry_deferred(an_service *s)
{
    qsort(s->def, s->ndef, sizeof *s->def, cmp_deferred);
    int64_t t = an_monotonic_ms();
    size_t k = 0;
    int rc = 0;
    char blocked[AN_UID_MAX + 1] = "";   /* the model whose head is still waiting */
    for (size_t i = 0; i < s->ndef; i++) {
        deferred *d = &s->def[i];
        bool done = false;
        if (!rc && !svc_stopping(s) && strcmp(d->model, blocked) && t >= d->next_ms) {
            rc = retry_head(s, d, t, &done);
            /* Its successor (if ours) may go now: try it in this pass. */
            if (done && i + 1 < s->ndef && !strcmp(s->def[i + 1].model, d->model))
                s->def[i + 1].next_ms = 0;
        }
        if (!done)
            memcpy(blocked, d->model, sizeof blocked);
        if (!done)
            touch_deferred(s, d, &done);
        if (done) {
            s->def_bytes -= d->bytes;
            an_entry_free(&d->e);
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
        rc = take_entries(s, l.v, l.n, &deferral);
        snprintf(start, sizeof start, "%s", l.next_start);
        an_entry_list_free(&l);
    } while (!rc && strcmp(start, "0-0") && !svc_stopping(s));
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

/* Reads the next page (our own pending entries while draining, else new
 * ones) and takes it. *got: entries arrived. false when the turn ends here
 * (a failure waited out, NOGROUP handled, or the drain just finished). */
static bool read_page(an_service *s, bool *got)
{
    an_entry_list l = {0};
    const char *id = s->draining ? s->drain_from : ">";
    int block = s->draining ? -1 : s->ndef ? DEFER_POLL_MS : s->cfg->streams.block_ms;
    int rc = an_read_group(s->redis, s->cfg->streams.input, s->cfg->streams.group,
                           s->consumer, id, (size_t)s->cfg->streams.read_count, block, &l);
    if (rc == AN_ENOGROUP) {
        an_entry_list_free(&l);
        an_error("group %s or stream %s is gone (NOGROUP: Redis restarted "
                 "without persistence?); recreating it",
                 s->cfg->streams.group, s->cfg->streams.input);
        if (svc_ensure_group(s))
            svc_nap(s, REGROUP_NAP_MS);
        return false;
    }
    if (rc) {
        an_entry_list_free(&l);
        char what[300];
        snprintf(what, sizeof what, "reading %s", s->cfg->streams.input);
        svc_failed(s, rc == AN_EREDIS ? AN_EENV : rc, false, what);
        svc_wait(s);
        /* No re-drain of our pending entries after a reconnect: those we
         * hold are in memory (deferred, or retried in place), and a re-read
         * would count a delivery for each. Anything else of ours (an XACK
         * lost with the last second of AOF) is taken back by our own
         * XAUTOCLAIM after claim_idle_ms. */
        return false;
    }
    svc_succeeded(s);
    svc_health_tick(s);
    svc_note_up(s, AN_SERVER_REDIS, true);
    if (l.n == 0 && s->draining) {
        s->draining = false;   /* own pending drained: now new entries */
        an_entry_list_free(&l);
        return false;
    }
    if (s->draining && l.n)
        snprintf(s->drain_from, sizeof s->drain_from, "%s", l.v[l.n - 1].id);
    take_entries(s, l.v, l.n, &deferral);
    *got = l.n > 0;
    an_entry_list_free(&l);
    return true;
}

/* Prunes scored_entry rows hourly and runs the input retention round every
 * trim_interval_ms (t: now). */
static void housekeeping(an_service *s, int64_t t)
{
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
}

/* With --exit-when-idle: whether nothing arrived for exit_when_idle_ms and
 * the group has nothing pending (ours or anyone's). */
static bool idle_exit_due(an_service *s, bool got)
{
    if (got || s->ndef || s->opts.exit_when_idle_ms < 0 ||
        an_monotonic_ms() - s->idle_since_ms < s->opts.exit_when_idle_ms)
        return false;
    an_pending_summary ps = {0};
    bool idle = an_pending_summary_get(s->redis, s->cfg->streams.input, s->cfg->streams.group,
                                       &ps) == 0 && ps.count == 0;
    an_pending_summary_free(&ps);
    if (idle)
        an_info("idle for %" PRId64 " ms with nothing pending; exiting",
                s->opts.exit_when_idle_ms);
    return idle;
}

/* What the loop does after each page: the deferred entries' retries, the
 * housekeeping, the takeover of idle entries. got: the page had entries.
 * Returns whether the idle exit is due. */
static bool after_page(an_service *s, bool got)
{
    if (s->ndef) {
        int64_t before = s->st.entries;
        retry_deferred(s);
        got = got || s->st.entries > before;
    }
    int64_t t = an_monotonic_ms();
    if (got)
        s->idle_since_ms = t;
    housekeeping(s, t);
    int64_t half = s->cfg->streams.claim_idle_ms / 2;
    if (t - s->last_claim_ms >= (half < CLAIM_EVERY_MAX_MS ? half : CLAIM_EVERY_MAX_MS)) {
        s->last_claim_ms = t;
        int64_t before = s->st.claimed;
        if (claim_idle(s) == 0 && s->st.claimed > before)
            s->idle_since_ms = an_monotonic_ms();
    }
    return idle_exit_due(s, got);
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
    s->idle_since_ms = an_monotonic_ms();
    s->last_claim_ms = 0;
    while (!svc_stopping(s)) {
        svc_heartbeat(s);
        svc_poll(s);
        bool got = false;
        if (!read_page(s, &got))
            continue;
        if (svc_stopping(s) || after_page(s, got))
            break;
    }
    if (s->ndef)
        an_info("stopping with %zu deferred entries pending; they are redelivered "
                "when this consumer restarts, or claimed by others after claim_idle_ms",
                s->ndef);
    svc_note_stopping(s);
    an_service_log_stats(s);
    return 0;
}

void an_service_free(an_service *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ndef; i++)
        an_entry_free(&s->def[i].e);
    free(s->def);
    svc_scorer_free(s->scorer);
    an_helper_free(s->helper);
    an_state_cache_free(s->sc);
    an_sample_window_free(s->sw);
    an_repo_free(s->repo);
    an_redis_free(s->redis);
    free(s);
}
