/*
 * an_json_mem.h: telling jansson's out-of-memory apart from bad input.
 *
 * jansson (2.14) reports some allocations that fail while parsing as
 * syntax errors ("invalid token", "string or '}' expected"), and its
 * constructors return NULL both for memory and for content they refuse.
 * Taken at its word, a consumer short of memory would dead-letter good
 * entries as malformed. jansson allocates through one pair of functions per
 * process; this module installs a pair that remembers, per thread, that an
 * allocation failed. A parse that fails with that mark set is AN_ENOMEM
 * (the environment), otherwise the text's fault (AN_EINVAL): an_json_parse
 * is the one place that decides it; other jansson calls that must tell the
 * two apart use the mark directly:
 *
 *     an_json_mem_mark();
 *     json_t *v = json_stringn(s, n);
 *     if (!v && !an_json_mem_failed()) ...the text is not UTF-8...
 *
 * Nothing else in the process may call json_set_alloc_funcs. The tracker
 * allocates with malloc and frees with free, so values jansson allocated
 * before it was installed are freed correctly after.
 */
#ifndef AN_JSON_MEM_H
#define AN_JSON_MEM_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Installs the tracking allocator (once per process) and clears this
 * thread's mark. Thread-safe. */
void an_json_mem_mark(void);

/* Whether a jansson allocation failed on this thread since its last mark. */
bool an_json_mem_failed(void);

/* json_loadb(text, len, flags) with the verdict above: 0 with a new
 * reference in *out; AN_EINVAL when the text is not JSON (je, if non-NULL,
 * says why); AN_ENOMEM when an allocation failed on the way (*out NULL). */
int an_json_parse(const char *text, size_t len, size_t flags, json_t **out, json_error_t *je);

/* The allocation function beneath the tracker (NULL: malloc), for fault
 * injection in tests; installs the tracker. Not thread-safe: set it while
 * no other thread uses jansson. */
void an_json_mem_set_malloc(void *(*fn)(size_t));

#ifdef __cplusplus
}
#endif
#endif /* AN_JSON_MEM_H */
