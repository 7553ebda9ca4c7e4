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

/* Sleeps ms, waking early (in 50 ms steps) when a stop is requested; each
 * step is a heartbeat (/livez, the systemd watchdog). */
static void nap(an_service *s, int ms)
{
    while (ms > 0 && !svc_stopping(s)) {
        int step = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
        svc_heartbeat(s);   /* a back-off is the loop alive, not hung */
    }
}




/* ------------------------------------------------------------ connections */


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




/* ------------------------------------------------------------ commands */





/* ------------------------------------------------------------ intake */


/* ------------------------------------------------------------ completion */






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

bool is_deferred(const an_service *s, const char *id)
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
void defer_add(an_service *s, const item *it)
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




/* ------------------------------------------------------------ attempts */







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
        if (!rc && !svc_stopping(s) && strcmp(d->model, blocked) && t >= d->next_ms) {
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
    } while (!rc && strcmp(start, "0-0") && !svc_stopping(s));
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
    s->sc = an_state_cache_new((size_t)cfg->anomaly_likelihood.state_cache_metrics);
    an_repo_options ro = an_repo_options_from_config(cfg);
    ro.application_name = "anomalyd";
    s->repo = an_repo_new(&ro);
    if (!s->helper || !s->repo || !s->sc || svc_window_init(s)) {
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

    while (!svc_stopping(s)) {
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
        if (svc_stopping(s))
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
    svc_group_free(s);
    an_helper_free(s->helper);
    an_state_cache_free(s->sc);
    svc_window_free(s);
    an_repo_free(s->repo);
    an_redis_free(s->redis);
    free(s);
}
