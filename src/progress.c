/* progress.c: the one-line progress display (see an_progress.h). */
#include "an_progress.h"

#include <inttypes.h>
#include <string.h>

int an_progress_format(char *buf, size_t len, const char *what, int64_t rows, int64_t total,
                       int64_t entries, int64_t elapsed_ms)
{
    size_t o = 0;
    int n;
#define PUT(...)                                                           \
    do {                                                                   \
        n = snprintf(buf + o, o < len ? len - o : 0, __VA_ARGS__);         \
        if (n < 0)                                                         \
            return n;                                                      \
        o += (size_t)n;                                                    \
    } while (0)
    if (total > 0)
        PUT("%s: rows %" PRId64 "/%" PRId64 " (%.1f%%), %" PRId64 " entries", what, rows, total,
            100.0 * (double)rows / (double)total, entries);
    else
        PUT("%s: rows %" PRId64 ", %" PRId64 " entries", what, rows, entries);
    if (elapsed_ms > 0 && rows > 0) {
        PUT(", %.0f entries/s", (double)entries * 1000.0 / (double)elapsed_ms);
        if (total > 0 && rows <= total) {
            int64_t left_s = (int64_t)((double)(total - rows) * (double)elapsed_ms /
                                       (double)rows / 1000.0 + 0.5);
            PUT(", ETA %" PRId64 ":%02" PRId64 ":%02" PRId64, left_s / 3600, left_s / 60 % 60,
                left_s % 60);
        }
    }
#undef PUT
    return (int)o;
}

void an_progress_start(an_progress *p, FILE *out, bool on, const char *what, int64_t total,
                       const an_clock *clock)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->on = on && out;
    p->what = what;
    p->total = total;
    p->clock = clock;
    p->start_ms = an_clock_now_ms(clock);
    p->last_ms = p->start_ms;
}

/* Writes the line over the previous one (blanking what is left of it). */
static void draw(an_progress *p, int64_t rows, int64_t entries, int64_t now)
{
    char line[256];
    int n = an_progress_format(line, sizeof line, p->what, rows, p->total, entries,
                               now - p->start_ms);
    if (n < 0)
        return;
    size_t len = strlen(line);
    fprintf(p->out, "\r%s%*s", line, p->last_len > len ? (int)(p->last_len - len) : 0, "");
    fflush(p->out);
    p->last_len = len;
    p->last_ms = now;
}

void an_progress_update(an_progress *p, int64_t rows, int64_t entries)
{
    if (!p->on)
        return;
    int64_t now = an_clock_now_ms(p->clock);
    if (now - p->last_ms >= AN_PROGRESS_EVERY_MS)
        draw(p, rows, entries, now);
}

void an_progress_finish(an_progress *p, int64_t rows, int64_t entries)
{
    if (!p->on)
        return;
    draw(p, rows, entries, an_clock_now_ms(p->clock));
    fputc('\n', p->out);
    fflush(p->out);
}
