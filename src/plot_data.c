/* plot_data.c: a metric's chart data from the database (an_plot_data.h). */
#include "an_plot_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void an_plot_data_free(an_plot_data *d)
{
    an_downsample_free(&d->value);
    an_downsample_free(&d->anomaly);
    free(d->alerts);
    memset(d, 0, sizeof *d);
}

static int feed_row(void *ud, const an_view_row *row)
{
    an_plot_data *d = ud;
    an_downsample_add(&d->value, row->ts, row->value);
    if (row->has_anomaly)
        an_downsample_add(&d->anomaly, row->ts, row->anomaly);
    return 0;
}

/* The throttle's memory while walking a metric's candidate rows. */
typedef struct alert_walk {
    const an_alert_rules *rules;
    const char *uid;
    double from, to;
    bool has_last;
    int64_t last_ms;
    an_plot_data *d;
    size_t cap;
} alert_walk;

static int walk_last(void *ud, const char *uid, bool *found, int64_t *ts_ms)
{
    (void)uid;
    const alert_walk *w = ud;
    *found = w->has_last;
    *ts_ms = w->last_ms;
    return 0;
}

static int walk_row(void *ud, const an_view_row *row)
{
    alert_walk *w = ud;
    an_alert_store st = {walk_last, NULL, w};
    an_alert_row ar = {row->rowid, row->ts, row->anomaly};
    an_alert_verdict v;
    an_alert_outcome o;
    int rc = an_alerts_decide(w->rules, w->rules->threshold, &st, w->uid, NULL, &ar, 1, 0, &v, &o);
    if (rc || v != AN_ALERT_FIRE)
        return rc;
    w->has_last = o.has_last;
    w->last_ms = o.new_last_ms;
    if ((!isnan(w->from) && row->ts < w->from) || (!isnan(w->to) && row->ts > w->to))
        return 0;
    /* Keep the newest cap alerts (alerts are rare: the shift is cheap). */
    an_plot_data *d = w->d;
    d->alerts_total++;
    if (d->nalerts == w->cap) {
        memmove(d->alerts, d->alerts + 1, (w->cap - 1) * sizeof *d->alerts);
        d->nalerts--;
    }
    an_svg_mark m = {row->rowid, row->ts, row->value, row->anomaly};
    d->alerts[d->nalerts++] = m;
    return 0;
}

/* The alerts in [from, to], walking the candidates from the first row. */
static int load_alerts(an_repo *r, const char *uid, double from, double to, int64_t max_rowid,
                       const an_alert_rules *rules, size_t cap, an_plot_data *d)
{
    an_alert_rules live = *rules;
    live.max_age_ms = 0;
    if (cap == 0)
        cap = 1;
    d->alerts = calloc(cap, sizeof *d->alerts);
    if (!d->alerts)
        return AN_ENOMEM;
    alert_walk w = {&live, uid, from, to, false, 0, d, cap};
    an_view_range g = an_view_range_all();
    g.to = to;
    g.max_rowid = max_rowid;
    g.after_rowid = rules->min_rowid > 0 ? rules->min_rowid : 0;
    g.min_anomaly = rules->threshold;
    return an_view_rows(r, uid, &g, walk_row, &w);
}

int an_plot_data_load(an_repo *r, const char *uid, double from, double to,
                      const an_alert_rules *rules, size_t max_points,
                      size_t max_alerts, an_plot_data *d)
{
    memset(d, 0, sizeof *d);
    an_view_range g = an_view_range_all();
    g.from = from;
    g.to = to;
    int64_t max_rowid = 0, scored = 0;
    double f2, l2;
    int rc = an_view_count(r, uid, &g, &d->rows, &d->first_ts, &d->last_ts, &max_rowid);
    if (rc == 0) {
        /* Rows that arrive meanwhile stay out: the counts fix the buckets. */
        g.max_rowid = max_rowid;
        an_view_range gs = g;
        gs.min_anomaly = -1.0; /* scores are >= 0: "scored rows" */
        rc = max_rowid > 0 ? an_view_count(r, uid, &gs, &scored, &f2, &l2, &max_rowid) : 0;
        d->scored = scored;
    }
    if (rc == 0 && (an_downsample_init(&d->value, (uint64_t)d->rows, max_points) ||
                    an_downsample_init(&d->anomaly, (uint64_t)scored, max_points)))
        rc = AN_ENOMEM;
    if (rc == 0 && d->rows > 0)
        rc = an_view_rows(r, uid, &g, feed_row, d);
    if (rc == 0) {
        an_downsample_finish(&d->value);
        an_downsample_finish(&d->anomaly);
        if (d->rows > 0)
            rc = load_alerts(r, uid, from, to, g.max_rowid, rules, max_alerts, d);
    }
    if (rc)
        an_plot_data_free(d);
    return rc;
}
