/*
 * an_json_out.h: the JSON text this project writes (output messages, stored
 * params and predictions, the params cache, anomalyctl's output).
 *
 * Text is compact ("," and ":" separators, no spaces), keeps object key
 * insertion order, writes non-ASCII as raw UTF-8, and writes doubles in the
 * shortest form that round-trips exactly (always with a '.' or an exponent,
 * so 1.0 stays a real: "1.0", "0.1", "1e+300").
 *
 * Pure: jansson for the trees it serializes, nothing else.
 */
#ifndef AN_JSON_OUT_H
#define AN_JSON_OUT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Shortest decimal text that strtod reads back as exactly d (like Python's
 * repr), into buf (>= 32 bytes). Returns buf. */
char *an_fmt_double(char *buf, size_t len, double d);

/* Shortest round-trip text of a finite double into buf (>= 32 bytes), always
 * containing '.', 'e' or being "inf"/"nan" for non-finite input. Returns buf. */
char *an_codec_fmt_double(char *buf, size_t len, double d);

/* Compact JSON text of any value (the format above; a bare scalar is
 * allowed). malloc'd, NUL-terminated; *len (if non-NULL) excludes the NUL.
 * NULL on ENOMEM or a non-finite real. */
char *an_json_dumps(const json_t *v, size_t *len);

/* The text the service stores in the DB for multiStepBestPredictions:
 * json.dumps(predictions), i.e. an_json_dumps(p), or "null" when p is NULL.
 * malloc'd. NULL only on ENOMEM. */
char *an_predictions_text(const json_t *p);

/* An appendable text buffer. Start from {0}; p is malloc'd and owned by the
 * caller once done (free()), NUL-terminated after every append. An
 * allocation failure sets fail; a non-finite real or too deep a tree sets
 * fail and invalid. After fail appends do nothing: check once at the end
 * (an_jbuf_rc). */
typedef struct an_jbuf {
    char *p;
    size_t len, cap;
    bool fail;
    bool invalid; /* fail was the content's (not memory) */
} an_jbuf;

/* 0, AN_EINVAL (invalid set: the content cannot be written) or AN_ENOMEM. */
int an_jbuf_rc(const an_jbuf *b);

/* Appends n bytes of s / the C string s, verbatim. */
void an_jbuf_put(an_jbuf *b, const char *s, size_t n);
void an_jbuf_puts(an_jbuf *b, const char *s);
/* Appends s (n bytes) as a JSON string: quoted, with '"', '\\' and control
 * characters escaped. */
void an_jbuf_str(an_jbuf *b, const char *s, size_t n);
/* Appends a JSON real as an_jbuf_json writes it (shortest round trip);
 * a non-finite d sets fail, as in a tree. */
void an_jbuf_double(an_jbuf *b, double d);
/* Appends the compact text of v; depth is v's depth in the whole text
 * (nesting beyond 2048 fails). */
void an_jbuf_json(an_jbuf *b, const json_t *v, int depth);

#ifdef __cplusplus
}
#endif
#endif /* AN_JSON_OUT_H */
