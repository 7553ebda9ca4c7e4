/*
 * an_scripts.h: the keys anomalyd keeps beside the streams, each changed
 * atomically: the Lua script calls of lua/ (publish + params cache + XACK,
 * dead letter + XACK, processing attempts, input trimming, attempts
 * cleanup), the params-cache reads and the consumer health hash. Codes and
 * the connection model: an_redis.h.
 */
#ifndef AN_SCRIPTS_H
#define AN_SCRIPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_codec.h" /* an_field, an_encoding */
#include "an_entry.h" /* AN_ID_MAX */
#include "an_redis.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ scripts */

/* One output entry. Fields are written in this order: dataType, model, rows
 * (only when rows != NULL), source (the request's entry_id), encoding,
 * body. */
typedef struct an_out_msg {
    const char *data_type; /* AN_DATATYPE_INFERENCE / AN_DATATYPE_COMMAND */
    const char *model;     /* metric uid */
    const char *rows;      /* "first-last" rowids, e.g. "101-140"; NULL: none */
    an_encoding encoding;
    const char *body;      /* an_body_encode output (binary safe) */
    size_t body_len;
} an_out_msg;

typedef struct an_dead_letter_req {
    const char *input;       /* input stream (XACK) */
    const char *group;
    const char *entry_id;    /* -> field `source`, and XACKed */
    /* Optional: when set, the script first checks that entry_id is pending
     * for this consumer and otherwise does nothing and the call returns
     * AN_ESTATE. NULL: no check. */
    const char *owner;
    const char *dead_letter; /* dead-letter stream */
    int64_t maxlen;          /* MAXLEN ~ n for the dead-letter stream; <= 0 none */
    /* The original entry's fields, copied first in order (none for a nil
     * entry); then reason, source, deliveries, consumer are appended. */
    const an_field *fields;
    size_t nfields;
    const char *reason;
    int64_t deliveries;
    const char *consumer;    /* the consumer that gives up on it */
} an_dead_letter_req;

/* lua/dead_letter.lua: XADD to the dead-letter stream + XACK, atomically.
 * id_out (may be NULL) receives the dead-letter entry id. */
int an_dead_letter(an_redis *r, const an_dead_letter_req *req,
                   char id_out[AN_ID_MAX]);

/* The params-cache hash of a metric: prefix ([streams] params_prefix) +
 * uid. malloc'd, the caller frees; NULL on ENOMEM. */
char *an_params_key(const char *prefix, const char *uid);

/* HMGET key params watermark updated. AN_ENOTFOUND when the hash or its
 * params field is absent. *params malloc'd (may be NULL to skip);
 * *watermark / *updated_ms -1 when those fields are absent. */
int an_params_cache_get(an_redis *r, const char *key, char **params,
                        int64_t *watermark, int64_t *updated_ms);


/* ------------------------------------------------------------ group publish */

/* HMGET key params watermark source for n keys in one pipelined round
 * trip. params[i] malloc'd or NULL (absent), watermarks[i] -1 when absent,
 * sources[i] (when sources is not NULL) malloc'd or NULL (absent: a hash
 * written before sources were stored). A NULL keys[i] is not asked for
 * (params[i] NULL, as absent). The caller frees params[i] and
 * sources[i]. On error every params[i] and sources[i] is NULL. */
int an_params_cache_get_many(an_redis *r, const char *const *keys, size_t n,
                             char **params, int64_t *watermarks, char **sources);

/* One input entry of a group publish. */
typedef struct an_publish_entry {
    const char *entry_id;     /* XACKed; `source` of its messages */
    const an_out_msg *msgs;
    size_t nmsgs;
    size_t key_index;         /* 1-based into an_publish_group.keys; 0: no cache update */
    const char *params_json;  /* with key_index */
    int64_t watermark;        /* with key_index */
    const char *source;       /* with key_index: the entry id that moved the watermark
                                 (metric.scored_source); NULL = "" */
} an_publish_entry;

typedef struct an_publish_group {
    const char *input;
    const char *group;
    const char *owner;        /* entries not pending for it are skipped */
    const char *output;
    int64_t output_maxlen;
    const char *const *keys;  /* params cache hashes */
    size_t nkeys;
    const an_publish_entry *entries;
    size_t nentries;
    int64_t updated_ms;       /* the hashes' `updated`; 0 = now (client clock) */
    /* Publish only: no XACK, the attempts fields stay (a chunk of one large
     * entry's messages; the call with its last chunk acks it). */
    bool no_ack;
} an_publish_group;

/* lua/publish_many.lua: for every entry, XADD its messages (fields in the
 * order of an_out_msg; MAXLEN ~ output_maxlen), refresh its params hash
 * (HSET params, watermark, updated, source; only when the watermark is at
 * least the hash's: the cache never moves backwards) and XACK it, deleting
 * its attempts field: the whole group in one atomic script. status[i] = 1
 * done, 0 skipped (not pending for the owner: claimed by another consumer).
 * NOGROUP -> AN_ENOGROUP, and nothing is written on any error. */
int an_publish_many(an_redis *r, const an_publish_group *g, int *status);

/* an_publish_many's call with the script's whole reply, for callers that
 * need more than status (tests, tools): *reply (owned by the caller,
 * freeReplyObject) is an array of one {status, acked, cache, {ids}} per
 * entry: status 1 done / 0 skipped; acked 1 when the XACK removed the entry
 * from the PEL, 0 when it was not pending; cache 1 hash written, 0 kept
 * (its watermark was higher), -1 no update requested; ids the new output
 * entry ids in msgs order (none when skipped). Checked for that shape. */
int an_publish_many_reply(an_redis *r, const an_publish_group *g, struct redisReply **reply);

/* Processing attempts (lua/attempts.lua), kept in the hash
 * an_attempts_key(input) = "<input>:attempts" (field: entry id). The
 * publish and dead-letter scripts delete an entry's field with its XACK.
 *
 * an_attempts_begin counts an attempt of each id (counts[i] = the new
 * count), unless allow_split and n > 1 and one of them already has an
 * unfinished attempt: then nothing is counted and *split is true (process
 * the entries one by one). */
const char *an_attempts_key(const char *input, char *buf, size_t len);
int an_attempts_begin(an_redis *r, const char *input, const char *const *ids, size_t n,
                      bool allow_split, int64_t *counts, bool *split);
/* A consumer's health (running / paused + cause), for anomalyctl status:
 * the hash an_health_key(input, consumer) = "<input>:health:<consumer>"
 * with fields state, cause, since (ms since the epoch), updated (ms), and
 * a TTL, so a consumer that died stops showing after ttl_s. */
const char *an_health_key(const char *input, const char *consumer, char *buf, size_t len);
/* HSET + EXPIRE in one MULTI/EXEC. 0 or an AN_E* code. */
int an_health_put(an_redis *r, const char *key, const char *state, const char *cause,
                  int64_t since_ms, int ttl_s);
/* Reads it: state/cause copied (truncated) into the buffers. 0,
 * AN_ENOTFOUND when the hash does not exist (expired), or an AN_E* code. */
int an_health_get(an_redis *r, const char *key, char *state, size_t state_len, char *cause,
                  size_t cause_len, int64_t *since_ms);
/* Counts an attempt of each id that has no unfinished earlier attempt
 * (counts[i] = its new count); the others are not counted (counts[i] = 0):
 * count and process them one at a time (an_attempts_begin), so that the
 * entry whose processing crashed does not take the others with it. */
int an_attempts_begin_page(an_redis *r, const char *input, const char *const *ids, size_t n,
                           int64_t *counts);
/* Ends attempts of ids without completing them (entries left pending on
 * purpose: deferred, or a stop): takes one back from each count, deleting
 * the field at 0; an absent field stays absent. */
int an_attempts_end(an_redis *r, const char *input, const char *const *ids, size_t n);

/* ------------------------------------------------------------ retention */

/* What one consumer group of a stream still needs: its oldest pending
 * entry, or the entry after its last-delivered id when nothing is pending. */
typedef struct an_trim_group {
    char *name;              /* malloc'd; freed by an_trim_result_free */
    char needed[AN_ID_MAX];
    char held[AN_ID_MAX];    /* the oldest entry at or after needed: the
                                oldest one the group keeps; "" when none */
    bool holds;              /* held[0] != '\0' */
} an_trim_group;

typedef struct an_trim_result {
    int64_t trimmed;         /* entries XTRIM removed (0 when not trimming) */
    char cutoff[AN_ID_MAX];  /* the MINID used: min over all groups' needed
                                ids and the retention floor; "" when the key
                                is not a stream or has no group (no trim) */
    int64_t now_ms;          /* the Redis server's clock (TIME), in ms */
    size_t ngroups;
    an_trim_group *groups;   /* every group of the stream, ours and others' */
} an_trim_result;

/* lua/trim_input.lua: computes, in ONE atomic script, the lowest entry any
 * consumer group of the stream still needs (XINFO GROUPS + XPENDING), lowers
 * it to now - retention_ms (Redis's clock against the ids' times; 0: keep
 * nothing processed), and when trim is true runs XTRIM stream MINID ~ cutoff
 * LIMIT limit (at most limit entries per call, so one call blocks Redis
 * briefly: call again while it removes some). Idempotent; a race with a
 * reader or a new group can only make a later call trim less. trim false
 * only reports (anomalyctl status). *out is filled on success (free with
 * an_trim_result_free) and empty on error. */
int an_trim_input(an_redis *r, const char *stream, int64_t retention_ms, bool trim,
                  int64_t limit, an_trim_result *out);
void an_trim_result_free(an_trim_result *t); /* NULL ok; zeroes it */

/* lua/attempts_gc.lua: one HSCAN page (COUNT count) of the attempts hash of
 * input; fields whose entries are no longer pending in group are deleted
 * (*removed, may be NULL). cursor: "0" (or "") to start; updated in place,
 * "0" again once the whole hash has been scanned. NOGROUP -> AN_ENOGROUP. */
int an_attempts_gc(an_redis *r, const char *input, const char *group,
                   char cursor[AN_ID_MAX], size_t count, int64_t *removed);

#ifdef __cplusplus
}
#endif
#endif /* AN_SCRIPTS_H */
