/* clock.c: the system clocks and the injectable time source (an_clock.h). */
#include "an_clock.h"

#include <errno.h>
#include <time.h>

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t an_monotonic_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
int64_t an_realtime_ms(void) { return clock_ms(CLOCK_REALTIME); }

int64_t an_clock_now_ms(const an_clock *c)
{
    return c && c->now_ms ? c->now_ms(c->ud) : an_monotonic_ms();
}

int64_t an_clock_realtime_ms(const an_clock *c)
{
    return c && c->realtime_ms ? c->realtime_ms(c->ud) : an_realtime_ms();
}

void an_clock_sleep_ms(const an_clock *c, int ms)
{
    if (ms <= 0)
        return;
    if (c && c->sleep_ms) {
        c->sleep_ms(c->ud, ms);
        return;
    }
    struct timespec req = {ms / 1000, (long)(ms % 1000) * 1000000L}, rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}
