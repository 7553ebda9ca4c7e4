/*
 * service_item.h: one input entry in the works (item) and the output
 * messages it collects: what the entry pipeline (service.c) and the group
 * scorer (service_group.c) both handle. A lower layer: it knows neither.
 */
#ifndef AN_SERVICE_ITEM_H
#define AN_SERVICE_ITEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_codec.h"
#include "an_streams.h"

/* An output message's "first-last" rows text: two int64 rowids (at most
 * 20 characters each), the dash and the NUL fit with room to spare. */
#define SVC_ROWS_TEXT_MAX 48
/* A dead-letter reason: one line for an operator, the longest being a
 * metric uid and a helper or JSON parser message (those are cut at 256). */
#define SVC_REASON_MAX 384
/* The message buffer handed to the codec, helper and JSON parsers, whose
 * messages are one short line. */
#define SVC_ERR_MAX 256

/* One output message waiting for the publish script. */
typedef struct out_item {
    const char *data_type;
    char rows[SVC_ROWS_TEXT_MAX]; /* "first-last" or "" */
    char *body;        /* encoded body (malloc'd) */
    size_t body_len;
} out_item;

/* What the inference part of an entry came to. */
typedef enum {
    INF_NONE = 0,  /* no inference results in the entry */
    INF_SCORED,    /* scored and committed: publish msg + params */
    INF_REJECTED,  /* the original's reject: ack, publish nothing */
    INF_DUPLICATE, /* already applied: ack; republish if it was ours */
    INF_POISON,    /* dead-letter with reason */
    INF_DEFERRED,  /* predecessor not applied yet: keep pending, retry */
} inf_outcome;

/* One input entry in the works. */
typedef struct item {
    const an_entry *e;
    an_batch *b;                       /* decoded; owned */
    const an_inference_result **inf;   /* its inference results, in order */
    size_t n;
    int64_t first, last;               /* their rowids */
    bool force;                        /* waited defer_max_ms: no more waiting */

    /* results of processing */
    inf_outcome oc;
    out_item *outs;
    size_t nouts, capouts;
    bool carries_cache;                /* its publish refreshes the params hash */
    const char *cache_uid;
    char *cache_json;
    int64_t cache_wm;
    char cache_src[AN_ID_MAX];         /* the entry id that moved cache_wm */
    int64_t seen_wm;                   /* the watermark a deferral saw */
    char reason[SVC_REASON_MAX];       /* dead-letter reason */
    const char *reason_class;          /* its metrics label (static; NULL: "other") */
    size_t published;                  /* outs[0..published) went out in
                                          chunks ahead of the acking call */
    bool done;                         /* acked or dead-lettered (or taken
                                          over by another consumer): its
                                          attempt is finished */
} item;

/* Dead-letter reason classes (anomalyd_dead_letters_total{reason}). */
#define SVC_DL_MALFORMED "malformed"   /* does not decode */
#define SVC_DL_TOO_LARGE "too_large"   /* over max_entry_bytes / max_inflated_bytes */
#define SVC_DL_ATTEMPTS "attempts"     /* over max_deliveries unfinished attempts */
#define SVC_DL_OVERLAP "overlap"       /* rows overlap rows already scored */
#define SVC_DL_BAD_PARAMS "bad_params" /* stored likelihood params unreadable */
#define SVC_DL_HELPER "helper"         /* the likelihood helper failed */

/* Appends msg (consumed: freed on every path) to it's messages, its body
 * encoded with enc ([streams] output_encoding). The body is owned by the
 * item (svc_item_clear or the caller's reset frees it). 0, AN_ENOMEM, or
 * AN_EINVAL (the message does not serialize, e.g. a non-finite number). */
int svc_add_out(item *it, an_encoding enc, const char *data_type, const char *rows,
                json_t *msg);
/* The same for a message already serialized (text consumed: freed on
 * every path). 0, AN_ENOMEM or the encoder's error. */
int svc_add_out_text(item *it, an_encoding enc, const char *data_type, const char *rows,
                     char *text, size_t len);

#endif
