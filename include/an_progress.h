/*
 * an_progress.h: a one-line progress display for long operator commands
 * (anomalyctl replay): rows done of the total, entries, entries per second
 * and the time left, redrawn in place ("\r") at most every
 * AN_PROGRESS_EVERY_MS. Shown only when asked to (callers pass
 * isatty(fileno(out)) by default, so a piped run stays quiet).
 */
#ifndef AN_PROGRESS_H
#define AN_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "an_clock.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AN_PROGRESS_EVERY_MS 250

typedef struct an_progress {
    FILE *out;            /* borrowed */
    bool on;
    const char *what;     /* borrowed label, e.g. "replay" */
    int64_t total;        /* rows expected; <= 0 unknown (no percentage, no ETA) */
    const an_clock *clock; /* NULL: the system clock */
    int64_t start_ms, last_ms;
    size_t last_len;      /* length of the line on screen (to blank it out) */
} an_progress;

/* Starts a display on out (nothing is written when on is false). */
void an_progress_start(an_progress *p, FILE *out, bool on, const char *what, int64_t total,
                       const an_clock *clock);

/* Redraws the line when AN_PROGRESS_EVERY_MS passed since the last draw. */
void an_progress_update(an_progress *p, int64_t rows, int64_t entries);

/* Draws the final figures and ends the line. */
void an_progress_finish(an_progress *p, int64_t rows, int64_t entries);

/* The line's text (no "\r", no newline), e.g.
 *   "replay: rows 1440/4032 (35.7%), 3 entries, 1500 entries/s, ETA 0:00:02"
 * entries/s and ETA only once elapsed_ms > 0 and something is done; ETA
 * only with a total. Returns what snprintf returns. */
int an_progress_format(char *buf, size_t len, const char *what, int64_t rows, int64_t total,
                       int64_t entries, int64_t elapsed_ms);

#ifdef __cplusplus
}
#endif
#endif /* AN_PROGRESS_H */
