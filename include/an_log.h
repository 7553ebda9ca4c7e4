/*
 * an_log.h: one-line logs to stderr, "2026-11-27T21:46:37.123Z LEVEL msg".
 * Thread-compatible (one writer per process). The level is process-wide.
 */
#ifndef AN_LOG_H
#define AN_LOG_H

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

#define an_debug(...) an_log(AN_LOG_DEBUG, __VA_ARGS__)
#define an_info(...) an_log(AN_LOG_INFO, __VA_ARGS__)
#define an_warn(...) an_log(AN_LOG_WARNING, __VA_ARGS__)
#define an_error(...) an_log(AN_LOG_ERROR, __VA_ARGS__)

#endif
