/*
 * ctl_plot.c: anomalyctl plot: one metric's value and anomaly score over a
 * time range, with the threshold and the alerts, as a self-contained SVG
 * (docs/alerts.md, "Plots"). Reads PostgreSQL only.
 *
 *   anomalyctl plot --metric NAME|UID [--from T] [--to T]
 *       [--max-points N] --out FILE.svg [--config FILE]
 *
 * T: "2014-04-10", "2014-04-10T08:00[:00]" (also with a space, optional
 * trailing Z; UTC) or epoch seconds. Exit status 0 ok, 1 failure, 2 usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "an_config.h"
#include "an_plot_data.h"
#include "an_svg_plot.h"
#include "an_view.h"
#include "ctl.h"
#include "ctl_plot.h"

int ctl_parse_time(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!errno && end != s && !*end && strchr(s, '-') == NULL) {
        *out = v; /* epoch seconds */
        return isfinite(v) ? 0 : -1;
    }
    int y, mo, d, h = 0, mi = 0, sec = 0, used = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3)
        return -1;
    const char *p = s + used;
    if (*p == 'T' || *p == ' ') {
        int u2 = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &u2) != 2)
            return -1;
        p += 1 + u2;
        if (*p == ':') {
            if (sscanf(p + 1, "%2d%n", &sec, &u2) != 1)
                return -1;
            p += 1 + u2;
        }
    }
    if (*p == 'Z')
        p++;
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi, .tm_sec = sec};
    *out = (double)timegm(&tm);
    return 0;
}

/* metricSpec.unit of the metric's parameters, or NULL. malloc'd. */
static char *unit_of(const char *parameters)
{
    if (!parameters)
        return NULL;
    json_t *p = json_loads(parameters, 0, NULL);
    const char *u = json_string_value(json_object_get(json_object_get(p, "metricSpec"), "unit"));
    char *out = u && *u ? strdup(u) : NULL;
    json_decref(p);
    return out;
}

/* "2014-04-10 08:55" (UTC). */
static void fmt_utc(double t, char *buf, size_t len)
{
    time_t s = (time_t)floor(t);
    struct tm tm;
    if (!gmtime_r(&s, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M", &tm))
        snprintf(buf, len, "?");
}

void ctl_plot_subtitle(const an_view_metric *m, const an_plot_data *d, double from, double to,
                       char *buf, size_t len)
{
    double t0 = isnan(from) ? d->first_ts : from, t1 = isnan(to) ? d->last_ts : to;
    if (isnan(t0) || isnan(t1)) {
        snprintf(buf, len, "%s \xc2\xb7 no rows", m->uid);
        return;
    }
    char a[40], b[40];
    fmt_utc(t0, a, sizeof a);
    fmt_utc(t1, b, sizeof b);
    snprintf(buf, len, "%s \xc2\xb7 %s \xe2\x86\x92 %s UTC \xc2\xb7 %lld rows%s \xc2\xb7 %zu alert%s",
             m->uid, a, b, (long long)d->rows,
             d->value.buckets > 0 ? " (downsampled)" : "",
             d->alerts_total, d->alerts_total == 1 ? "" : "s");
}

int ctl_plot_svg(FILE *out, const an_view_metric *m, const an_plot_data *d, double from,
                 double to, double threshold, const char *id_prefix, int is_inline)
{
    char sub[512];
    ctl_plot_subtitle(m, d, from, to, sub, sizeof sub);
    char *unit = unit_of(m->parameters);
    an_svg_plot p = {
        .title = m->name ? m->name : m->uid,
        .subtitle = sub,
        .unit = unit,
        .id_prefix = id_prefix,
        .t0 = isnan(from) ? d->first_ts : from,
        .t1 = isnan(to) ? d->last_ts : to,
        .value = {d->value.t, d->value.v, d->value.np},
        .anomaly = {d->anomaly.t, d->anomaly.v, d->anomaly.np},
        .threshold = threshold,
        .alerts = d->alerts,
        .nalerts = d->nalerts,
    };
    if (isnan(p.t0) || isnan(p.t1))
        p.t0 = p.t1 = 0;
    int rc = an_svg_plot_write(out, &p, is_inline);
    free(unit);
    return rc;
}

static const char usage_text[] =
    "usage: anomalyctl plot --metric NAME|UID [--from T] [--to T] [--max-points N]\n"
    "           --out FILE.svg [--config FILE]\n"
    "  T: 2014-04-10, 2014-04-10T08:00[:00][Z] (UTC) or epoch seconds\n";

typedef struct plot_args {
    const char *metric, *out, *config;
    double from, to;
    long max_points; /* 0: [plot] max_points */
} plot_args;

static int parse_args(int argc, char **argv, plot_args *a)
{
    a->from = a->to = NAN;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            break;
        i++;
        char *end;
        if (!strcmp(f, "--metric"))
            a->metric = v;
        else if (!strcmp(f, "--out"))
            a->out = v;
        else if (!strcmp(f, "--config"))
            a->config = v;
        else if (!strcmp(f, "--from") && ctl_parse_time(v, &a->from) == 0)
            continue;
        else if (!strcmp(f, "--to") && ctl_parse_time(v, &a->to) == 0)
            continue;
        else if (!strcmp(f, "--max-points") && (a->max_points = strtol(v, &end, 10)) >= 2 && !*end)
            continue;
        else {
            fprintf(stderr, "anomalyctl plot: bad option or value: %s %s\n%s", f, v, usage_text);
            return 2;
        }
    }
    if (!a->metric || !a->out || (argc - 1) % 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    return 0;
}

/* Loads the metric and its data, writes the file. */
static int plot(an_repo *repo, const plot_args *a, size_t max_points)
{
    an_view_metric m;
    an_plot_data d;
    an_alert_rules rules = an_alert_rules_default();
    int rc = an_view_find_metric(repo, a->metric, &m);
    if (rc) {
        fprintf(stderr, "anomalyctl plot: metric '%s': %s\n", a->metric, an_repo_errstr(repo));
        return 1;
    }
    rc = an_plot_data_load(repo, m.uid, a->from, a->to, &rules, max_points, max_points, &d);
    if (rc) {
        fprintf(stderr, "anomalyctl plot: reading rows: %s\n",
                *an_repo_errstr(repo) ? an_repo_errstr(repo) : "out of memory");
        an_view_metric_clear(&m);
        return 1;
    }
    FILE *f = fopen(a->out, "w");
    int status = 1;
    if (!f) {
        fprintf(stderr, "anomalyctl plot: %s: %s\n", a->out, strerror(errno));
    } else {
        rc = ctl_plot_svg(f, &m, &d, a->from, a->to, rules.threshold, "p", 0);
        if (fclose(f) != 0 || rc)
            fprintf(stderr, "anomalyctl plot: writing %s failed\n", a->out);
        else
            status = 0;
    }
    if (status == 0)
        printf("%s: %s, %lld rows, %zu points, %zu alerts\n", a->out, m.uid, (long long)d.rows,
               d.value.np, d.alerts_total);
    an_plot_data_free(&d);
    an_view_metric_clear(&m);
    return status;
}

int ctl_plot(int argc, char **argv)
{
    plot_args a = {0};
    int status = parse_args(argc, argv, &a);
    if (status)
        return status;
    an_config cfg;
    if (ctl_config_load("plot", a.config, &cfg))
        return 2;
    an_repo_options opt = an_repo_options_from_config(&cfg);
    opt.application_name = "anomalyctl";
    an_repo *repo = an_repo_new(&opt);
    size_t max_points = a.max_points ? (size_t)a.max_points : (size_t)cfg.plot.max_points;
    status = repo ? plot(repo, &a, max_points) : 1;
    an_repo_free(repo);
    an_config_free(&cfg);
    return status;
}
