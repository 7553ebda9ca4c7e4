/* downsample.c: min/max buckets of consecutive rows (an_downsample.h). */
#include "an_downsample.h"

#include <stdlib.h>
#include <string.h>

#include "an_error.h"

static uint64_t bucket_end(const an_downsample *d, uint64_t b)
{
    /* floor((b+1) * n / B) without overflow for any realistic n. */
    return (uint64_t)(((unsigned __int128)(b + 1) * d->n) / d->buckets);
}

int an_downsample_init(an_downsample *d, uint64_t n, size_t max_points)
{
    memset(d, 0, sizeof *d);
    if (max_points < 2)
        return AN_EINVAL;
    d->n = n;
    d->cap = n <= max_points ? (size_t)(n ? n : 1) : max_points;
    if (n > max_points) {
        d->buckets = max_points / 2;
        d->end = bucket_end(d, 0);
    }
    d->t = malloc(d->cap * sizeof *d->t);
    d->v = malloc(d->cap * sizeof *d->v);
    if (!d->t || !d->v) {
        an_downsample_free(d);
        return AN_ENOMEM;
    }
    return 0;
}

static void emit(an_downsample *d, double t, double v)
{
    if (d->np < d->cap) {
        d->t[d->np] = t;
        d->v[d->np] = v;
        d->np++;
    }
}

static void close_bucket(an_downsample *d)
{
    if (!d->open)
        return;
    if (d->min_i == d->max_i) {
        emit(d, d->min_t, d->min_v);
    } else if (d->min_i < d->max_i) {
        emit(d, d->min_t, d->min_v);
        emit(d, d->max_t, d->max_v);
    } else {
        emit(d, d->max_t, d->max_v);
        emit(d, d->min_t, d->min_v);
    }
    d->open = false;
}

void an_downsample_add(an_downsample *d, double t, double v)
{
    uint64_t i = d->seen++;
    if (d->buckets == 0) {
        emit(d, t, v);
        return;
    }
    while (i >= d->end && d->bucket + 1 < d->buckets) {
        close_bucket(d);
        d->bucket++;
        d->end = bucket_end(d, d->bucket);
    }
    if (!d->open) {
        d->open = true;
        d->min_i = d->max_i = i;
        d->min_t = d->max_t = t;
        d->min_v = d->max_v = v;
        return;
    }
    if (v < d->min_v) {
        d->min_i = i;
        d->min_t = t;
        d->min_v = v;
    }
    if (v > d->max_v) {
        d->max_i = i;
        d->max_t = t;
        d->max_v = v;
    }
}

void an_downsample_finish(an_downsample *d)
{
    close_bucket(d);
}

void an_downsample_free(an_downsample *d)
{
    free(d->t);
    free(d->v);
    memset(d, 0, sizeof *d);
}
