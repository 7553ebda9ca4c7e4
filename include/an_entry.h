/*
 * an_entry.h: one stream entry as read from Redis (an_streams.h), and its
 * one memory layout: `fields` is ONE malloc'd block holding the an_field
 * array followed by every name and value (each NUL-terminated), so
 * free(e->fields) (an_entry_free) releases all of it. The stream reader
 * builds entries with an_entry_set_fields, copies are made with
 * an_entry_dup; there is no other way to own an entry's fields.
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

/* Copies the n fields of src (binary safe; a name or value of length 0 may
 * be NULL) into one new block owned by e (e->fields, e->nfields; the
 * previous fields are NOT freed). 0, or AN_ENOMEM with e->fields NULL and
 * e->nfields 0. */
int an_entry_set_fields(an_entry *e, const an_field *src, size_t n);

/* A deep copy of src into *dst (id, nil, deliveries and the fields in the
 * one-block layout); free it with an_entry_free. 0, or AN_ENOMEM with *dst
 * holding no fields (nothing to free, an_entry_free harmless). */
int an_entry_dup(an_entry *dst, const an_entry *src);

/* Frees e's fields and zeroes *e (the struct itself is the caller's; NULL
 * ok; calling it again on the zeroed entry is harmless). */
void an_entry_free(an_entry *e);

#ifdef __cplusplus
}
#endif
#endif /* AN_ENTRY_H */
