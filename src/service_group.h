/*
 * service_group.h: the group scorer. It processes the inference results of
 * a group of entries (items, service_item.h) in ONE PostgreSQL transaction
 * (service_group.c), its helper reading earlier rows through the sample
 * windows when they match the database (service_window.c). It knows nothing
 * of the service that calls it: everything it uses comes in its deps, and
 * what it must leave to the caller goes through the hooks. Not a public
 * header.
 */
#ifndef AN_SERVICE_GROUP_H
#define AN_SERVICE_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "an_config.h"
#include "an_helper.h"
#include "an_metrics.h"
#include "an_repo.h"
#include "an_sample_window.h"
#include "an_service.h" /* an_service_stats only */
#include "an_state_cache.h"
#include "an_streams.h"
#include "service_item.h"

/* What the scorer uses. Everything is borrowed: it must outlive the
 * scorer. */
typedef struct svc_scorer_deps {
    const an_config *cfg;
    /* The caller's Redis connection slot, read at each run: the connection
     * is made (and may be replaced) after the scorer is created. */
    an_redis *const *redis;
    an_repo *repo;              /* its clock times the retry budget */
    an_helper *helper;
    const an_helper_config *hcfg;
    an_state_cache *sc;         /* parsed likelihood state per metric */
    an_sample_window *sw;       /* newest processed samples per metric */
    an_service_stats *st;       /* the counters the scorer moves */
    an_metrics *metrics;        /* the same events' counters and histograms */
    int64_t (*now_us)(void);    /* monotonic microseconds: the histograms' durations */
    /* Work to overlap with the group's write + COMMIT round trip: called
     * once per attempt whose write was sent, while PostgreSQL writes. It
     * must be pure CPU and memory (no Redis or PostgreSQL call). NULL: none. */
    void (*overlap)(void *ctx);
    /* Called before each transient-error retry waits: the caller is alive,
     * not hung (its heartbeat). NULL: none. */
    void (*heartbeat)(void *ctx);
    void *ctx;                  /* the hooks' argument */
} svc_scorer_deps;

typedef struct svc_scorer svc_scorer;

/* A scorer with deps (copied; what they point to is borrowed). NULL: out of
 * memory. Free it with svc_scorer_free. */
svc_scorer *svc_scorer_new(const svc_scorer_deps *deps);

/* Processes the inference results of items[0..n) (n > 0, each item with
 * inference results) in ONE transaction (retried as a whole on transient
 * errors within the docs/htmengine.md §4.5 budget). Sets every item's
 * outcome (oc, and reason / reason_class for INF_POISON), appends its output
 * messages (owned by the item) and its params-hash update; nothing is
 * published. The entries' processing attempts are the caller's to count.
 * Returns 0, AN_ETRANSIENT (budget spent: retry later), AN_EENV (PostgreSQL
 * refuses us now that it worked before), or another AN_E* error; on an
 * error what the attempts added to the items is dropped again (messages
 * they carried before the call are kept). */
int svc_scorer_run(svc_scorer *sc, item *items, size_t n);

/* NULL-safe. */
void svc_scorer_free(svc_scorer *sc);

#endif
