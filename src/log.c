/* log.c: the process's log lines on stderr (see an_log.h). */
#include "an_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static an_log_level g_level = AN_LOG_INFO;
static char g_tag[64];

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

int an_log_parse_level(const char *name, an_log_level *out)
{
    static const struct { const char *name; an_log_level level; } names[] = {
        {"debug", AN_LOG_DEBUG}, {"info", AN_LOG_INFO},
        {"warning", AN_LOG_WARNING}, {"warn", AN_LOG_WARNING},
        {"error", AN_LOG_ERROR},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strcasecmp(name, names[i].name)) {
            *out = names[i].level;
            return 0;
        }
    }
    return -1;
}

void an_log_set_level(an_log_level level) { g_level = level; }
an_log_level an_log_get_level(void) { return g_level; }

void an_log_set_tag(const char *tag)
{
    snprintf(g_tag, sizeof g_tag, "%s", tag ? tag : "");
}

void an_log(an_log_level level, const char *fmt, ...)
{
    if (level < g_level)
        return;
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);

    /* Build the whole line first so concurrent processes sharing a log file
     * do not interleave within a line. */
    char line[4096];
    int n = snprintf(line, sizeof line, "%s.%03ldZ %s %s%s", when,
                     ts.tv_nsec / 1000000L, level_names[level], g_tag,
                     g_tag[0] ? " " : "");
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (m < 0) ? (size_t)n : (size_t)n + (size_t)m;
    if (len > sizeof line - 2)
        len = sizeof line - 2;   /* truncated: keep the newline */
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}
