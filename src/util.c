/* util.c: see an_util.h. */
#include "an_util.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void an_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

bool an_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    void **const arrays[] = {p};
    return an_grow_parallel(arrays, &elem, 1, cap, need);
}

int an_backoff_next(int delay_ms, int cap_ms)
{
    int next = delay_ms > cap_ms / 2 ? cap_ms : delay_ms * 2;
    return next < 1 ? 1 : next;
}

char *an_strndup(const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

bool an_grow_parallel(void **const *arrays, const size_t *elem, size_t k, size_t *cap,
                      size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return false;
        c *= 2;
    }
    for (size_t i = 0; i < k; i++) {
        if (elem[i] && c > SIZE_MAX / elem[i])
            return false;
        void *q = realloc(*arrays[i], c * elem[i]);
        if (!q)
            return false;
        *arrays[i] = q;
    }
    *cap = c;
    return true;
}
