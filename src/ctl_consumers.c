/*
 * ctl_consumers.c: anomalyctl consumers, the operator's view of the input
 * group's consumers and the clean-up of dead ones.
 *
 *   anomalyctl consumers list [--config F]
 *       name, pending entries and idle ms of every consumer of the group
 *       (XINFO CONSUMERS), least idle first.
 *
 *   anomalyctl consumers prune --idle MS [--to NAME] [--dry-run] [--config F]
 *       For every consumer idle for longer than MS: its pending entries
 *       (XPENDING ... consumer, in pages) are moved to the target consumer
 *       with XCLAIM ... IDLE <their idle time> JUSTID, which neither resets
 *       their idle time nor counts a delivery, so they stay claimable: the
 *       live consumers' XAUTOCLAIM takes them over after claim_idle_ms, as
 *       if the dead consumer still held them. Then XGROUP DELCONSUMER, which
 *       must discard nothing (it is reported loudly if it did: that means
 *       the consumer read new entries during the prune, so it was not dead).
 *       The target is --to NAME, or the group's least idle consumer that is
 *       not being pruned. A consumer that has pending entries and no target
 *       is not deleted (why is printed). A consumer with nothing pending
 *       needs no target.
 *
 * Exit status: 0 done (or nothing to do), 1 something could not be done
 * (Redis error, a consumer kept for lack of a target, discarded entries),
 * 2 usage or configuration error.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "an_config.h"
#include "an_streams.h"
#include "ctl.h"

/* XPENDING page size while moving entries. */
#define PAGE 100

static void usage(void)
{
    fprintf(stderr,
            "usage: anomalyctl consumers list [--config FILE]\n"
            "       anomalyctl consumers prune --idle MS [--to NAME] [--dry-run] "
            "[--config FILE]\n"
            "  MS: milliseconds, or with a unit: 1500ms, 90s, 10min, 1h\n");
}

/* "1500", "1500ms", "90s", "10min", "1h" -> ms. */
static int parse_ms(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    long long mul = 1;
    if (!*end || !strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "s"))
        mul = 1000;
    else if (!strcmp(end, "min"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else
        return -1;
    if (v > INT64_MAX / mul)
        return -1;
    *out = (int64_t)(v * mul);
    return 0;
}

static int cmp_idle(const void *a, const void *b)
{
    const an_consumer_info *x = a, *y = b;
    if (x->idle_ms != y->idle_ms)
        return x->idle_ms < y->idle_ms ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Loads the group's consumers sorted least idle first. Returns 0, or 1 after
 * printing why (missing stream or group, Redis error). */
static int load_consumers(an_redis *rd, const an_config *cfg, const char *who,
                          an_consumer_info **cons, size_t *n)
{
    an_stream_info si;
    int rc = an_xinfo_stream(rd, cfg->streams.input, &si);
    if (rc == AN_ENOTFOUND) {
        fprintf(stderr, "anomalyctl consumers %s: stream %s does not exist\n", who,
                cfg->streams.input);
        return 1;
    }
    if (rc == 0)
        rc = an_xinfo_consumers(rd, cfg->streams.input, cfg->streams.group, cons, n);
    if (rc == AN_ENOGROUP) {
        fprintf(stderr, "anomalyctl consumers %s: group %s does not exist on %s\n", who,
                cfg->streams.group, cfg->streams.input);
        return 1;
    }
    if (rc) {
        fprintf(stderr, "anomalyctl consumers %s: %s\n", who, an_redis_errstr(rd));
        return 1;
    }
    if (*n > 1)
        qsort(*cons, *n, sizeof **cons, cmp_idle);
    return 0;
}

static int do_list(an_redis *rd, const an_config *cfg)
{
    an_consumer_info *cons = NULL;
    size_t n = 0;
    if (load_consumers(rd, cfg, "list", &cons, &n))
        return 1;
    printf("stream %s group %s: %zu consumer%s\n", cfg->streams.input, cfg->streams.group,
           n, n == 1 ? "" : "s");
    int w = 8;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(cons[i].name) > w)
            w = (int)strlen(cons[i].name);
    if (n)
        printf("%-*s  %10s  %12s\n", w, "NAME", "PENDING", "IDLE_MS");
    for (size_t i = 0; i < n; i++)
        printf("%-*s  %10" PRId64 "  %12" PRId64 "\n", w, cons[i].name, cons[i].pending,
               cons[i].idle_ms);
    an_consumer_info_free(cons, n);
    return 0;
}

/* Counts the pending entries of consumer (XPENDING pages). -1 on error. */
static int64_t count_pending(an_redis *rd, const an_config *cfg, const char *consumer)
{
    char start[AN_ID_MAX + 1] = "-";
    int64_t total = 0;
    for (;;) {
        an_pending_item *items = NULL;
        size_t n = 0;
        if (an_pending_range(rd, cfg->streams.input, cfg->streams.group, -1, start, "+",
                             PAGE, consumer, &items, &n))
            return -1;
        total += (int64_t)n;
        if (n == PAGE)
            snprintf(start, sizeof start, "(%s", items[n - 1].id);
        free(items);
        if (n < PAGE)
            return total;
    }
}

/* Moves every pending entry of `from` to `to`, keeping each page's entries
 * as idle as the least idle of them was. *moved: entries now `to`'s; *gone:
 * entries that were pending when listed but no longer when claimed (acked,
 * claimed by a live consumer, or deleted from the stream meanwhile: Redis
 * drops deleted ids from the PEL when XCLAIM meets them). 0, or -1 after
 * printing the Redis error. */
static int move_pending(an_redis *rd, const an_config *cfg, const char *from,
                        const char *to, int64_t *moved, int64_t *gone)
{
    *moved = *gone = 0;
    /* Each round lists the first page of what `from` still holds; claimed
     * entries leave its PEL, so the list shrinks. The bound only guards
     * against a consumer that is refilled as fast as it is emptied. */
    for (int round = 0; round < 1000000; round++) {
        an_pending_item *items = NULL;
        size_t n = 0;
        if (an_pending_range(rd, cfg->streams.input, cfg->streams.group, -1, "-", "+",
                             PAGE, from, &items, &n)) {
            fprintf(stderr, "anomalyctl consumers prune: XPENDING %s %s for %s: %s\n",
                    cfg->streams.input, cfg->streams.group, from, an_redis_errstr(rd));
            return -1;
        }
        if (n == 0) {
            free(items);
            return 0;
        }
        const char *ids[PAGE];
        int64_t idle = INT64_MAX;
        for (size_t i = 0; i < n; i++) {
            ids[i] = items[i].id;
            if (items[i].idle_ms >= 0 && items[i].idle_ms < idle)
                idle = items[i].idle_ms;
        }
        if (idle == INT64_MAX)
            idle = 0;
        size_t claimed = 0;
        int rc = an_claim_ids(rd, cfg->streams.input, cfg->streams.group, to, ids, n, idle,
                              &claimed);
        free(items);
        if (rc) {
            fprintf(stderr, "anomalyctl consumers prune: XCLAIM to %s: %s\n", to,
                    an_redis_errstr(rd));
            return -1;
        }
        *moved += (int64_t)claimed;
        *gone += (int64_t)(n - claimed);
    }
    fprintf(stderr, "anomalyctl consumers prune: %s keeps receiving entries while it is "
            "being emptied: it is not dead; stopped\n", from);
    return -1;
}

/* What a prune did, for its summary line. */
typedef struct {
    size_t pruned, kept;
    int64_t moved;   /* pending entries moved (with --dry-run: that would be) */
    int failures;
} prune_tally;

/* The target of the pending entries: --to, else the least idle consumer that
 * stays (cons is sorted least idle first); NULL when there is none. *tinfo:
 * the target's entry in cons (NULL when it is not a consumer yet). */
static const char *prune_target(const an_consumer_info *cons, size_t n, int64_t idle_ms,
                                const char *to, const an_consumer_info **tinfo)
{
    *tinfo = NULL;
    for (size_t i = 0; i < n; i++) {
        if (to ? !strcmp(cons[i].name, to) : cons[i].idle_ms <= idle_ms) {
            *tinfo = &cons[i];
            break;   /* sorted least idle first */
        }
    }
    return to ? to : *tinfo ? (*tinfo)->name : NULL;
}

/* What the prune will do: the limit, dry run or not, the target and why. */
static void print_prune_header(const an_config *cfg, int64_t idle_ms, bool dry_run,
                               const char *to, const char *target,
                               const an_consumer_info *tinfo)
{
    printf("stream %s group %s: pruning consumers idle for more than %" PRId64 " ms%s\n",
           cfg->streams.input, cfg->streams.group, idle_ms, dry_run ? " (dry run)" : "");
    if (target)
        printf("target for pending entries: %s (%s)\n", target,
               to ? (tinfo ? "--to" : "--to; not a consumer of the group yet, "
                                      "XCLAIM creates it")
                  : "least idle consumer that is kept");
    else
        printf("target for pending entries: none (no consumer idle for %" PRId64
               " ms or less; use --to NAME)\n", idle_ms);
}

/* Empties consumer c before its delete: its pending entries moved to target
 * (which also catches entries that reached it after the count) or, without
 * a target, a check that none arrived since the count. 0, or 1 after
 * printing why it must not be deleted. */
static int empty_consumer(an_redis *rd, const an_config *cfg, const an_consumer_info *c,
                          const char *target, int64_t *moved, int64_t *gone)
{
    *moved = *gone = 0;
    if (target) {
        if (move_pending(rd, cfg, c->name, target, moved, gone)) {
            printf("consumer %s: NOT deleted (moving its pending entries failed after "
                   "%" PRId64 " moved)\n", c->name, *moved);
            return 1;
        }
        return 0;
    }
    int64_t late = count_pending(rd, cfg, c->name);
    if (late != 0) {
        printf("consumer %s: NOT deleted: %s\n", c->name,
               late < 0 ? an_redis_errstr(rd)
                        : "it received entries during the prune (is it alive?) "
                          "and there is no consumer to hand them to");
        return 1;
    }
    return 0;
}

/* The delete discarded entries: they reached c after they were moved. */
static void report_discarded(const an_consumer_info *c, int64_t discarded)
{
    fprintf(stderr,
            "anomalyctl consumers prune: ERROR: XGROUP DELCONSUMER %s discarded %"
            PRId64 " pending entries: they were delivered to it after they were "
            "moved, so %s is NOT dead. Those entries are no longer pending in the "
            "group and will not be redelivered: re-submit them (see "
            "docs/operations.md, \"Poison entries and re-submitting\")\n",
            c->name, discarded, c->name);
    printf("consumer %s: ERROR: %" PRId64 " pending entries were DISCARDED by the "
           "delete\n", c->name, discarded);
}

/* Deletes the emptied consumer c (moved / gone: what emptying it did) and
 * reports it, counting it in *t. */
static void delete_consumer(an_redis *rd, const an_config *cfg, const an_consumer_info *c,
                            const char *target, int64_t moved, int64_t gone, prune_tally *t)
{
    int64_t discarded = 0;
    if (an_group_delconsumer(rd, cfg->streams.input, cfg->streams.group, c->name,
                             &discarded)) {
        fprintf(stderr, "anomalyctl consumers prune: XGROUP DELCONSUMER %s: %s\n",
                c->name, an_redis_errstr(rd));
        printf("consumer %s: its %" PRId64 " pending entries were moved to %s, but it "
               "was NOT deleted\n", c->name, moved, target ? target : "-");
        t->failures++;
        return;
    }
    t->moved += moved;
    t->pruned++;
    if (moved || gone)
        printf("consumer %s: idle %" PRId64 " ms: moved %" PRId64 " pending entries to "
               "%s (still claimable); deleted\n", c->name, c->idle_ms, moved, target);
    else
        printf("consumer %s: idle %" PRId64 " ms, nothing pending: deleted\n", c->name,
               c->idle_ms);
    if (gone)
        printf("consumer %s: %" PRId64 " of its entries were no longer pending when "
               "claimed (acked or claimed by a live consumer, or trimmed)\n", c->name,
               gone);
    if (discarded) {
        report_discarded(c, discarded);
        t->failures++;
    }
}

/* Prunes one consumer idle for longer than the limit (with dry_run: says
 * what it would do), or says why not; counts it in *t. */
static void prune_one(an_redis *rd, const an_config *cfg, const an_consumer_info *c,
                      const char *target, bool dry_run, prune_tally *t)
{
    if (target && !strcmp(c->name, target)) {
        printf("consumer %s: idle %" PRId64 " ms, %" PRId64 " pending: kept (it is the "
               "target)\n", c->name, c->idle_ms, c->pending);
        t->kept++;
        return;
    }
    int64_t pending = count_pending(rd, cfg, c->name);
    if (pending < 0) {
        fprintf(stderr, "anomalyctl consumers prune: XPENDING for %s: %s\n", c->name,
                an_redis_errstr(rd));
        t->failures++;
        return;
    }
    if (pending > 0 && !target) {
        printf("consumer %s: idle %" PRId64 " ms, %" PRId64 " pending: NOT deleted: "
               "there is no live consumer to hand its pending entries to (deleting it "
               "would drop them from the group); start a consumer or use --to NAME\n",
               c->name, c->idle_ms, pending);
        t->failures++;
        return;
    }
    if (dry_run) {
        if (pending > 0)
            printf("consumer %s: idle %" PRId64 " ms, %" PRId64 " pending: would move "
                   "them to %s (still claimable), then delete it\n",
                   c->name, c->idle_ms, pending, target);
        else
            printf("consumer %s: idle %" PRId64 " ms, nothing pending: would delete it\n",
                   c->name, c->idle_ms);
        t->moved += pending;
        t->pruned++;
        return;
    }
    int64_t moved = 0, gone = 0;
    if (empty_consumer(rd, cfg, c, target, &moved, &gone)) {
        t->failures++;
        return;
    }
    delete_consumer(rd, cfg, c, target, moved, gone, t);
}

/* anomalyctl consumers prune (see the top of this file). 0 when everything
 * was done (or there was nothing to do), 1 when something could not be. */
static int do_prune(an_redis *rd, const an_config *cfg, int64_t idle_ms, const char *to,
                    bool dry_run)
{
    an_consumer_info *cons = NULL;
    size_t n = 0;
    if (load_consumers(rd, cfg, "prune", &cons, &n))
        return 1;
    const an_consumer_info *tinfo;
    const char *target = prune_target(cons, n, idle_ms, to, &tinfo);
    print_prune_header(cfg, idle_ms, dry_run, to, target, tinfo);
    prune_tally t = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        if (cons[i].idle_ms <= idle_ms)
            t.kept++;
        else
            prune_one(rd, cfg, &cons[i], target, dry_run, &t);
    }
    printf("%s%zu consumer%s %spruned, %" PRId64 " pending entries %smoved, %zu kept, %d "
           "problem%s\n", dry_run ? "dry run: " : "", t.pruned, t.pruned == 1 ? "" : "s",
           dry_run ? "would be " : "", t.moved, dry_run ? "would be " : "", t.kept,
           t.failures, t.failures == 1 ? "" : "s");
    an_consumer_info_free(cons, n);
    return t.failures ? 1 : 0;
}

int ctl_consumers(int argc, char **argv)
{
    const char *config = NULL, *to = NULL, *verb = NULL;
    int64_t idle_ms = -1;
    bool dry_run = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!verb && (!strcmp(a, "list") || !strcmp(a, "prune"))) {
            verb = a;
        } else if (!strcmp(a, "--config") && has_val) {
            config = argv[++i];
        } else if (!strcmp(a, "--to") && has_val) {
            to = argv[++i];
        } else if (!strcmp(a, "--idle") && has_val) {
            if (parse_ms(argv[++i], &idle_ms)) {
                fprintf(stderr, "anomalyctl consumers: --idle: '%s' is not a duration "
                        "(ms, or with a unit ms|s|min|h)\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--dry-run")) {
            dry_run = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "anomalyctl consumers: unknown or incomplete argument '%s'\n", a);
            usage();
            return 2;
        }
    }
    if (!verb) {
        usage();
        return 2;
    }
    bool prune = !strcmp(verb, "prune");
    if (prune && idle_ms < 0) {
        fprintf(stderr, "anomalyctl consumers prune: --idle MS is required\n");
        usage();
        return 2;
    }
    if (!prune && (idle_ms >= 0 || to || dry_run)) {
        fprintf(stderr, "anomalyctl consumers list: --idle, --to and --dry-run belong to "
                "prune\n");
        usage();
        return 2;
    }
    if (to && !*to) {
        fprintf(stderr, "anomalyctl consumers prune: --to needs a consumer name\n");
        return 2;
    }

    an_config cfg;
    char err[512];
    if (ctl_config_load("consumers", config, &cfg))
        return 2;
    an_redis *rd = NULL;
    an_redis_opts ro = an_redis_opts_default();
    ro.connect_timeout_ms = cfg.redis.connect_timeout_ms;
    ro.command_timeout_ms = cfg.redis.timeout_ms;
    int status = 1;
    if (an_redis_connect(cfg.redis.url, &ro, &rd, err, sizeof err)) {
        fprintf(stderr, "anomalyctl consumers: redis: %s\n", err);
    } else {
        status = prune ? do_prune(rd, &cfg, idle_ms, to, dry_run) : do_list(rd, &cfg);
    }
    an_redis_free(rd);
    an_config_free(&cfg);
    return status;
}
