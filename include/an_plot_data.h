/*
 * an_plot_data.h: what a chart of one metric shows, read from PostgreSQL
 * (an_view.h) and bounded: the value and anomaly series of a time range,
 * downsampled to max_points (an_downsample.h), and the alerts the rules of
 * an_alerts.h select from the stored scores (threshold, warm-up, throttle
 * on row time; the age gate is for live traffic and is not applied),
 * evaluated from the metric's first row so the throttle state at the start
 * of the range is the real one. Error convention of an_view.h.
 */
#ifndef AN_PLOT_DATA_H
#define AN_PLOT_DATA_H

#include "an_alerts.h"
#include "an_downsample.h"
#include "an_svg_plot.h"
#include "an_view.h"

typedef struct an_plot_data {
    int64_t rows;            /* rows in range */
    int64_t scored;          /* of which scored */
    double first_ts, last_ts; /* their time span (NaN when none) */
    an_downsample value;     /* the series' points */
    an_downsample anomaly;
    an_svg_mark *alerts;     /* the newest alerts in range, oldest first (owned) */
    size_t nalerts;          /* kept (at most max_alerts) */
    size_t alerts_total;     /* in range */
} an_plot_data;

/* Fills *d (overwritten) for uid over [from, to] (NaN: open). */
int an_plot_data_load(an_repo *r, const char *uid, double from, double to,
                      const an_alert_rules *rules, size_t max_points,
                      size_t max_alerts, an_plot_data *d);
void an_plot_data_free(an_plot_data *d);

#endif
