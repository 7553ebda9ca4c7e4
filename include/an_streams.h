/*
 * an_streams.h: Redis Streams access: consumer groups, reads and claims,
 * XPENDING, XINFO, the producer side and plain stream commands. The
 * connection and its error codes are in an_redis.h; this header also
 * brings in an_entry.h and an_scripts.h, so that one include serves the
 * code that uses the whole Redis layer.
 */
#ifndef AN_STREAMS_H
#define AN_STREAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_codec.h" /* an_field */
#include "an_entry.h"
#include "an_error.h"
#include "an_redis.h"
#include "an_scripts.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ entries */

typedef struct an_entry_list {
    size_t n;
    an_entry *v;
    /* an_autoclaim only: the cursor for the next call ("0-0" once the whole
     * PEL has been scanned) and the ids Redis found in the PEL whose entries
     * no longer exist (Redis 7 removes them from the PEL itself: they need
     * no XACK and cannot be dead-lettered with their content). */
    char next_start[AN_ID_MAX];
    size_t ndeleted;
    char (*deleted)[AN_ID_MAX];
} an_entry_list;

/* Frees the list's contents and zeroes it (the struct itself may be on the
 * stack). Functions that fill an an_entry_list overwrite it without freeing
 * what it held: free a previous result first. On failure they leave it
 * empty (nothing to free). */
void an_entry_list_free(an_entry_list *l);

/* ------------------------------------------------------------ groups */

/* XGROUP CREATE stream group start_id MKSTREAM (start_id NULL -> "0").
 * 0 when created or when it already existed (BUSYGROUP); *created (may be
 * NULL) says which. */
int an_group_create(an_redis *r, const char *stream, const char *group,
                    const char *start_id, bool *created);

/* XGROUP DELCONSUMER; *pending_discarded (may be NULL) = the consumer's
 * pending count that Redis dropped (claim them first!). */
int an_group_delconsumer(an_redis *r, const char *stream, const char *group,
                         const char *consumer, int64_t *pending_discarded);

/*
 * XREADGROUP GROUP group consumer COUNT count [BLOCK block_ms] STREAMS
 * stream id. id ">" = new entries (deliveries = 1); any other id (normally
 * "0") = this consumer's own pending entries after that id, with nil flags
 * for deleted ones and deliveries filled from XPENDING (one extra round trip
 * when n > 0). block_ms < 0: no BLOCK; 0: block forever; only meaningful
 * with ">". Timeout/empty: 0 with out->n == 0. NOGROUP -> AN_ENOGROUP.
 * Restart protocol: read "0" until it returns nothing (advance the id past
 * the last returned entry when you keep entries pending), then ">".
 */
int an_read_group(an_redis *r, const char *stream, const char *group,
                  const char *consumer, const char *id, size_t count,
                  int block_ms, an_entry_list *out);

/*
 * XAUTOCLAIM stream group consumer min_idle_ms start COUNT count: entries
 * pending for longer than min_idle_ms (for any consumer) become this
 * consumer's; claimed entries (deliveries from XPENDING, incremented by the
 * claim), out->next_start, out->deleted. start NULL -> "0-0". Redis scans at
 * most 10 x count PEL entries per call: loop until next_start is "0-0".
 * Redis checks existence before idleness: PEL ids whose entries are gone are
 * reported in out->deleted (and dropped from the PEL) even when they are not
 * idle yet, and they count against count.
 */
int an_autoclaim(an_redis *r, const char *stream, const char *group,
                 const char *consumer, int64_t min_idle_ms, const char *start,
                 size_t count, an_entry_list *out);

/* XCLAIM stream group consumer 0 id... [IDLE idle_ms] JUSTID: makes the
 * pending ids this consumer's without counting a delivery. idle_ms < 0
 * resets their idle time to 0 (a consumer keeping entries it is still
 * working on, so others do not claim them); idle_ms >= 0 sets it (hand
 * entries over and keep them claimable). *claimed (may be NULL) = how many
 * were pending. */
int an_claim_ids(an_redis *r, const char *stream, const char *group,
                 const char *consumer, const char *const *ids, size_t n,
                 int64_t idle_ms, size_t *claimed);

/* XACK stream group id...; *acked (may be NULL) = how many were pending. */
int an_xack(an_redis *r, const char *stream, const char *group,
            const char *const *ids, size_t n, int64_t *acked);

/* ------------------------------------------------------------ XPENDING */

typedef struct an_pending_consumer {
    char *name;
    int64_t pending;
} an_pending_consumer;

/* XPENDING stream group (summary form). min_id/max_id "" when count == 0. */
typedef struct an_pending_summary {
    int64_t count;
    char min_id[AN_ID_MAX];
    char max_id[AN_ID_MAX];
    size_t nconsumers;
    an_pending_consumer *consumers;
} an_pending_summary;

int an_pending_summary_get(an_redis *r, const char *stream, const char *group,
                           an_pending_summary *out);
void an_pending_summary_free(an_pending_summary *s);

/* One row of XPENDING's extended form. */
typedef struct an_pending_item {
    char id[AN_ID_MAX];
    char consumer[128]; /* truncated if longer */
    int64_t idle_ms;
    int64_t deliveries;
} an_pending_item;

/* XPENDING stream group [IDLE min_idle_ms] start end count [consumer].
 * min_idle_ms < 0: no IDLE filter; consumer NULL: all consumers.
 * *items malloc'd (free()), *n entries. */
int an_pending_range(an_redis *r, const char *stream, const char *group,
                     int64_t min_idle_ms, const char *start, const char *end,
                     size_t count, const char *consumer,
                     an_pending_item **items, size_t *n);

/* ------------------------------------------------------------ plain */

/* XADD stream [MAXLEN ~ maxlen] * field value ... (maxlen <= 0: no trim).
 * id_out may be NULL. (Producer side: anomalyctl replay, tests.) */
int an_xadd(an_redis *r, const char *stream, int64_t maxlen,
            const an_field *fields, size_t nfields, char id_out[AN_ID_MAX]);

/* XRANGE stream start end [COUNT count] (count 0: no COUNT); XREVRANGE when
 * reverse (then start is the high end, e.g. "+" "-"). */
int an_xrange(an_redis *r, const char *stream, const char *start,
              const char *end, size_t count, bool reverse, an_entry_list *out);

/* XREAD COUNT count [BLOCK block_ms] STREAMS stream after_id (no group;
 * anomalyctl tail --follow). Empty/timeout: 0 with out->n == 0. */
int an_xread(an_redis *r, const char *stream, const char *after_id,
             size_t count, int block_ms, an_entry_list *out);

/* XLEN (0 for a missing key). */
int an_xlen(an_redis *r, const char *stream, int64_t *len);

/* XDEL (tests, maintenance). *deleted (may be NULL) = removed. */
int an_xdel(an_redis *r, const char *stream, const char *const *ids, size_t n,
            int64_t *deleted);

/* ------------------------------------------------------------ XINFO */

/* XINFO STREAM (summary). AN_ENOTFOUND when the key does not exist. */
typedef struct an_stream_info {
    int64_t length;
    int64_t groups;
    char last_generated_id[AN_ID_MAX];
    char first_id[AN_ID_MAX]; /* "" when empty */
    char last_id[AN_ID_MAX];  /* "" when empty */
    int64_t entries_added;    /* Redis >= 7.0; -1 unknown */
    char max_deleted_entry_id[AN_ID_MAX]; /* Redis >= 7.0; "" unknown */
} an_stream_info;

int an_xinfo_stream(an_redis *r, const char *stream, an_stream_info *out);

/* XINFO GROUPS. entries_read / lag: Redis >= 7.0, -1 when nil or unknown
 * (Redis reports nil lag when it cannot compute it, e.g. after XDEL). */
typedef struct an_group_info {
    char *name;
    int64_t consumers;
    int64_t pending;
    char last_delivered_id[AN_ID_MAX];
    int64_t entries_read;
    int64_t lag;
} an_group_info;

int an_xinfo_groups(an_redis *r, const char *stream, an_group_info **groups,
                    size_t *n);
void an_group_info_free(an_group_info *groups, size_t n);

/* XINFO CONSUMERS. inactive_ms: Redis >= 7.2 only, else -1. */
typedef struct an_consumer_info {
    char *name;
    int64_t pending;
    int64_t idle_ms;
    int64_t inactive_ms;
} an_consumer_info;

int an_xinfo_consumers(an_redis *r, const char *stream, const char *group,
                       an_consumer_info **consumers, size_t *n);
void an_consumer_info_free(an_consumer_info *consumers, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* AN_STREAMS_H */
