/*
 * support_publish.h: one entry's publish (its messages, its params-cache
 * update and its XACK) with the script's whole answer, for the tests of
 * lua/publish_many.lua. The library publishes groups only
 * (an_publish_many); this is a group of one, built on
 * an_publish_many_reply. Names start with sp_ (this file is linked into
 * every integration test binary).
 */
#ifndef SUPPORT_PUBLISH_H
#define SUPPORT_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "an_streams.h"

/* The params-cache hash update: HSET key params <json> watermark <n>
 * updated <ms> source <id>, done only if watermark >= the hash's current
 * watermark (or the hash has none): the cache never moves backwards. */
typedef struct sp_params_update {
    const char *key;         /* full key, e.g. params_prefix + uid */
    const char *params_json; /* JSON text */
    int64_t watermark;       /* last scored rowid */
    int64_t updated_ms;      /* ms since epoch; 0 = now (client clock) */
    const char *source;      /* the watermark's source entry id; NULL = "" */
} sp_params_update;

typedef struct sp_publish_req {
    const char *input;    /* input stream (XACK) */
    const char *group;
    const char *entry_id; /* the input entry: XACKed, and `source` of msgs */
    /* Optional: when set, the script first checks that entry_id is pending
     * for this consumer and otherwise does nothing and the call returns
     * AN_ESTATE. NULL: no check. */
    const char *owner;
    const char *output;   /* output stream; may be NULL when nmsgs == 0 */
    int64_t output_maxlen; /* XADD MAXLEN ~ n; <= 0: no trimming */
    const an_out_msg *msgs;
    size_t nmsgs;          /* 0 allowed (cache update and/or ack only) */
    const sp_params_update *params; /* NULL: no cache update */
} sp_publish_req;

typedef struct sp_publish_res {
    size_t nids;
    char (*ids)[AN_ID_MAX]; /* new output ids in msgs order; malloc'd,
                               free with sp_publish_res_free */
    int acked;  /* 1: XACK removed entry_id from the PEL, 0: it was not
                   pending (already acked) */
    int cache;  /* 1: hash written, 0: skipped (hash watermark was higher),
                   -1: no update requested */
} sp_publish_res;

/* lua/publish_many.lua with one entry. res may be NULL. 0, AN_ESTATE when
 * owner is set and the entry is not pending for it (nothing written),
 * AN_EINVAL for a request missing its input, group, entry id, output (with
 * messages) or params key/json (with params), AN_ENOMEM, or the codes of
 * an_publish_many. */
int sp_publish(an_redis *r, const sp_publish_req *req, sp_publish_res *res);
void sp_publish_res_free(sp_publish_res *res); /* NULL ok */

#endif
