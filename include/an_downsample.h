/*
 * an_downsample.h: a bounded number of plot points from a long series,
 * fed one row at a time (pure, no I/O).
 *
 * Rule (docs/alerts.md, "Plots"): n rows and at most max_points points.
 * When n <= max_points every row is a point. Otherwise the rows are cut
 * into B = max_points / 2 buckets of consecutive rows, bucket b holding
 * rows [floor(b*n/B), floor((b+1)*n/B)), and each bucket contributes its
 * lowest- and highest-valued rows (the first of equal values), in row
 * order: one point when they are the same row. So spikes survive and a
 * path has at most max_points points.
 */
#ifndef AN_DOWNSAMPLE_H
#define AN_DOWNSAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct an_downsample {
    uint64_t n;        /* rows announced */
    uint64_t buckets;  /* 0: keep every row */
    uint64_t seen;     /* rows fed */
    uint64_t bucket;   /* current bucket */
    uint64_t end;      /* first row of the next bucket */
    bool open;         /* the current bucket has rows */
    uint64_t min_i, max_i;
    double min_t, min_v, max_t, max_v;
    size_t cap, np;    /* points: capacity, count */
    double *t, *v;     /* the points (owned) */
} an_downsample;

/* For n rows and max_points (>= 2). 0 or AN_ENOMEM / AN_EINVAL. */
int an_downsample_init(an_downsample *d, uint64_t n, size_t max_points);
/* Feeds the next row. Rows beyond n join the last bucket (or are dropped
 * when every row is kept and the points are full). */
void an_downsample_add(an_downsample *d, double t, double v);
/* Emits the last bucket. */
void an_downsample_finish(an_downsample *d);
void an_downsample_free(an_downsample *d);

#endif
