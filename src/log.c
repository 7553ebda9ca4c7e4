/* log.c: the process's log lines on stderr (see an_log.h). */
#include "an_log.h"

#include <stdarg.h>
#include <stdbool.h>
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

/* Length of the well-formed UTF-8 sequence at s[0..n) that encodes a
 * character of U+00A0 or above (not a surrogate, at most U+10FFFF); 0 if
 * there is none. */
static size_t utf8_printable(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned int cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1fu;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0fu;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    /* overlong forms, surrogates, beyond Unicode, C1 controls */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0)
        return 0;
    return len;
}

/* Bytes of input at u[i] taken as one unit (a kept character or one
 * escaped byte) and how many bytes it writes. */
static size_t esc_unit(const unsigned char *u, size_t lim, size_t i, size_t *out)
{
    size_t k = u[i] >= 0x20 && u[i] < 0x7f && u[i] != '\\' ? 1
               : u[i] >= 0x80 ? utf8_printable(u + i, lim - i) : 0;
    *out = k ? k : 4;
    return k ? k : 1;
}

char *an_escape(char *dst, size_t dstlen, const char *s, size_t n, size_t max_in)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    if (dstlen == 0)
        return dst;
    size_t lim = max_in && max_in < n ? max_in : n;
    /* Does all of it fit? Then no room is kept for the "..." marker. */
    size_t total = 0, w;
    for (size_t i = 0; i < lim;) {
        i += esc_unit(u, lim, i, &w);
        total += w;
    }
    bool whole = lim == n && total + 1 <= dstlen;
    size_t reserve = whole ? 1 : 4;
    size_t o = 0, i = 0;
    while (i < lim) {
        size_t in = esc_unit(u, lim, i, &w);
        if (o + w + reserve > dstlen)
            break;
        if (w == in) {
            memcpy(dst + o, s + i, in);
        } else {
            dst[o] = '\\';
            dst[o + 1] = 'x';
            dst[o + 2] = hex[u[i] >> 4];
            dst[o + 3] = hex[u[i] & 15];
        }
        o += w;
        i += in;
    }
    if (!whole) {
        size_t m = dstlen - 1 - o < 3 ? dstlen - 1 - o : 3;
        memcpy(dst + o, "...", m);
        o += m;
    }
    dst[o] = '\0';
    return dst;
}
