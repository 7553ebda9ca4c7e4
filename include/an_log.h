/*
 * an_log.h: one-line logs to stderr, "2026-11-27T21:46:37.123Z LEVEL msg".
 * Thread-compatible (one writer per process). The level is process-wide.
 */
#ifndef AN_LOG_H
#define AN_LOG_H

#include <stddef.h>

typedef enum {
    AN_LOG_DEBUG = 0,
    AN_LOG_INFO = 1,
    AN_LOG_WARNING = 2,
    AN_LOG_ERROR = 3,
} an_log_level;

/* Parses "debug", "info", "warning" (or "warn"), "error". Returns 0 or -1. */
int an_log_parse_level(const char *name, an_log_level *out);
void an_log_set_level(an_log_level level);
an_log_level an_log_get_level(void);
/* Prefix each line with this tag (e.g. the consumer name); NULL for none.
 * The string is copied. */
void an_log_set_tag(const char *tag);

void an_log(an_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The one escaping of text that came from input (a producer's errorMessage,
 * commandID, method, any field) before it reaches a log line or a
 * dead-letter reason: a newline cannot forge a log line, an ESC byte cannot
 * reach a terminal. Printable ASCII and well-formed UTF-8 of U+00A0 and
 * above are kept; every other byte (C0 controls, DEL, the C1 controls
 * U+0080..U+009F, malformed UTF-8) and the backslash are written as \xNN.
 * At most max_in input bytes are looked at (0 = all of n); when the input is
 * cut there, or dst is too small, the output ends with "...". dst is always
 * NUL-terminated (dstlen >= 1). Returns dst, so it can be a printf argument.
 */
char *an_escape(char *dst, size_t dstlen, const char *s, size_t n, size_t max_in);

/* an_escape of a NUL-terminated string into a buffer of this size, cut at
 * AN_ESCAPE_LOG_MAX input bytes: what the service logs input text with. */
#define AN_ESCAPE_LOG_MAX 1024
#define AN_ESCAPE_BUF (4 * AN_ESCAPE_LOG_MAX + 4)

#define an_debug(...) an_log(AN_LOG_DEBUG, __VA_ARGS__)
#define an_info(...) an_log(AN_LOG_INFO, __VA_ARGS__)
#define an_warn(...) an_log(AN_LOG_WARNING, __VA_ARGS__)
#define an_error(...) an_log(AN_LOG_ERROR, __VA_ARGS__)

#endif
