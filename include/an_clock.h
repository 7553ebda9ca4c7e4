/* an_clock.h: the time source of code whose behaviour depends on elapsed
 * time (retry budgets, backoff). Production code passes NULL and gets the
 * system's monotonic clock and nanosleep; tests inject a virtual clock whose
 * sleep only advances its own time, so no assertion depends on how fast the
 * machine happens to be. */
#ifndef AN_CLOCK_H
#define AN_CLOCK_H

#include <stdint.h>

typedef struct an_clock {
    int64_t (*now_ms)(void *ud);      /* monotonic milliseconds */
    void (*sleep_ms)(void *ud, int ms);
    void *ud;
    /* Wall-clock epoch milliseconds, for rules that compare data
     * timestamps with "now" (the alerts' age gate). NULL: CLOCK_REALTIME. */
    int64_t (*realtime_ms)(void *ud);
} an_clock;

/* c->now_ms(c->ud), or the system's CLOCK_MONOTONIC when c (or its
 * now_ms) is NULL. */
int64_t an_clock_now_ms(const an_clock *c);

/* c->realtime_ms(c->ud), or the system's CLOCK_REALTIME when c (or its
 * realtime_ms) is NULL. */
int64_t an_clock_realtime_ms(const an_clock *c);

/* c->sleep_ms(c->ud, ms), or an EINTR-safe nanosleep when c (or its
 * sleep_ms) is NULL. ms <= 0 returns at once. */
void an_clock_sleep_ms(const an_clock *c, int ms);

/* The system clocks: CLOCK_MONOTONIC (durations, deadlines) and
 * CLOCK_REALTIME (timestamps for people and other hosts), in ms. */
int64_t an_monotonic_ms(void);
int64_t an_realtime_ms(void);

#endif
