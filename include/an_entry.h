/*
 * an_entry.h: one stream entry as read from Redis (an_streams.h), and its
 * one memory layout.
 */
#ifndef AN_ENTRY_H
#define AN_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "an_codec.h" /* an_field */

#ifdef __cplusplus
extern "C" {
#endif

/* A stream id "ms-seq" always fits (2 x 20 digits + '-' + NUL). */
#define AN_ID_MAX 48

typedef struct an_entry {
    char id[AN_ID_MAX];
    /* A pending entry whose payload is gone (XDEL'd or trimmed): XREADGROUP
     * from "0" reports it with a nil body; it stays in the PEL until XACKed
     * (or dead-lettered). nfields is 0. */
    bool nil;
    size_t nfields;
    an_field *fields; /* binary safe; name and value are also NUL-terminated */
    /* Delivery count including this delivery: 1 for entries read with ">",
     * from XPENDING for pending reads ("0") and claims; -1 unknown. (Redis
     * does not count a re-read of a nil entry as a delivery.) */
    int64_t deliveries;
} an_entry;

/* Lookup in an entry; NULL when absent. */
const an_field *an_entry_field(const an_entry *e, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* AN_ENTRY_H */
