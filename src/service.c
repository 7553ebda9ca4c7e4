/*
 * service.c: the anomalyd loop (docs/htmengine.md §1.2-§1.5; the path of an
 * entry: docs/architecture.md). It connects, reads pages of entries from
 * the consumer group (our own pending ones first, then new ones), takes
 * over entries other consumers left idle, hands each page to
 * service_take.c with the deferral list (service_defer.c) as its holder,
 * has the deferred entries retried, and runs the maintenance ticks
 * (scored_entry pruning, input retention).
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
 * deferred: kept pending in this consumer's hands (service_defer.c) and
 * retried until it is, or until the model's watermark has not moved for
 * defer_max_ms.
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

/* scored_entry rows (redelivery detection) are kept [postgres]
 * scored_entry_keep_ms (7 days), pruned hourly: an entry pending longer than
 * that is treated as a producer duplicate. */
#define SCORED_ENTRY_PRUNE_EVERY_MS (3600 * 1000)

/* While entries are deferred, a read blocks at most this long instead of
 * block_ms, so the loop comes back to retry them: their first retries are
 * due after DEFER_MIN_MS (service_defer.c), and a shorter block would
 * only spin. */
#define DEFER_POLL_MS 50

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
            if (svc_is_deferred(s, l.v[i].id))
                continue;   /* our own, waiting: not a takeover */
            svc_count(s, &s->st.claimed, AN_C_CLAIMED, 1);
            an_info("claimed entry %s (delivery %" PRId64 ") from an idle consumer", l.v[i].id,
                    l.v[i].deliveries);
        }
        rc = take_entries(s, l.v, l.n, &svc_deferral);
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
    take_entries(s, l.v, l.n, &svc_deferral);
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
        svc_retry_deferred(s);
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
    svc_defer_free(s);
    svc_scorer_free(s->scorer);
    an_helper_free(s->helper);
    an_state_cache_free(s->sc);
    an_sample_window_free(s->sw);
    an_repo_free(s->repo);
    an_redis_free(s->redis);
    free(s);
}
