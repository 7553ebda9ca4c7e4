/*
 * ctl_report.c: anomalyctl report --out DIR: one self-contained HTML page,
 * DIR/index.html, listing the metrics (status, rows scored, latest anomaly
 * score, last alerts), each with its chart inline (SVG), sortable by the
 * latest score. No network: no external script, style, font or image, and
 * a Content-Security-Policy that forbids loading any. Its own script, once
 * it ran, sets data-selfcheck="ok <metrics>" on <body> (tests read it with
 * a headless browser). Reads PostgreSQL only (docs/alerts.md, "Report").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "an_clock.h"
#include "an_config.h"
#include "an_plot_data.h"
#include "an_svg_plot.h"
#include "an_view.h"
#include "ctl.h"
#include "ctl_plot.h"

/* Alerts listed per metric (the chart marks more). */
#define LAST_ALERTS 5

static const char style[] =
    "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px;color:#222;background:#fafafa}"
    "h1{font-size:22px;margin:0 0 4px}p.meta{color:#555;margin:0 0 16px}"
    "table{border-collapse:collapse;width:100%;background:#fff}"
    "th,td{border-bottom:1px solid #ddd;padding:6px 8px;text-align:left;vertical-align:top}"
    "th{background:#f0f0f0;position:sticky;top:0}th.sortable{cursor:pointer;color:#1f4e99}"
    "th.sortable:after{content:' \\2195'}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tr.plot td{border-bottom:2px solid #bbb}tr.plot svg{max-width:100%;height:auto}"
    ".status-ACTIVE{color:#1a7f37}.status-ERROR{color:#c62828}"
    ".hot{color:#c62828;font-weight:bold}ul.alerts{margin:0;padding-left:16px}";

/* Sorting by the column's data-key (number or text), click to toggle; the
 * page starts sorted by the latest score, highest first. Then the self
 * check: every metric has its chart and the order is right. */
static const char script[] =
    "(function(){'use strict';\n"
    "var table=document.getElementById('metrics');\n"
    "function key(tb,k){var v=tb.getAttribute('data-'+k);"
    "return k==='name'?v:(v===''?-Infinity:parseFloat(v));}\n"
    "function sortBy(k,desc){var bodies=Array.prototype.slice.call(table.tBodies);\n"
    " bodies.sort(function(a,b){var x=key(a,k),y=key(b,k);"
    "var c=x<y?-1:x>y?1:0;return desc?-c:c;});\n"
    " bodies.forEach(function(tb){table.appendChild(tb);});\n"
    " table.setAttribute('data-sorted',k+(desc?' desc':' asc'));}\n"
    "Array.prototype.forEach.call(document.querySelectorAll('th.sortable'),function(th){\n"
    " th.addEventListener('click',function(){var k=th.getAttribute('data-key');\n"
    "  var desc=table.getAttribute('data-sorted')!==k+' desc';sortBy(k,desc);});});\n"
    "sortBy('score',true);\n"
    "var b=table.tBodies,ok=true;\n"
    "for(var i=0;i<b.length;i++){if(!b[i].querySelector('svg path.value-series')&&"
    "b[i].getAttribute('data-rows')!=='0')ok=false;\n"
    " if(i>0&&key(b[i-1],'score')<key(b[i],'score'))ok=false;}\n"
    "document.body.setAttribute('data-selfcheck',(ok?'ok ':'failed ')+b.length);\n"
    "})();\n";

static void esc(FILE *o, const char *s) { an_xml_escape(o, s); }

static void fmt_utc(double t, char *buf, size_t len)
{
    time_t s = (time_t)floor(t);
    struct tm tm;
    if (!gmtime_r(&s, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M", &tm))
        snprintf(buf, len, "?");
}

static void page_head(FILE *o, size_t shown, int64_t total, const an_alert_rules *r)
{
    char now[40];
    fmt_utc((double)an_realtime_ms() / 1000.0, now, sizeof now);
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
          "<meta name=\"viewport\" content=\"width=device-width\">\n"
          "<title>anomalyd report</title>\n<style>", o);
    fputs(style, o);
    fprintf(o, "</style></head>\n<body data-selfcheck=\"pending\">\n<h1>anomalyd report</h1>\n"
               "<p class=\"meta\">%s UTC \xc2\xb7 %zu of %lld metrics (highest latest anomaly "
               "first) \xc2\xb7 alerts: anomaly &#8805; %.10g after row %lld, at most one per "
               "metric per %lld min (row time)</p>\n",
            now, shown, (long long)total, r->threshold, (long long)r->min_rowid,
            (long long)(r->throttle_ms / 60000));
    fputs("<table id=\"metrics\"><thead><tr><th class=\"sortable\" data-key=\"name\">metric</th>"
          "<th>status</th><th class=\"sortable\" data-key=\"rows\">rows scored</th>"
          "<th class=\"sortable\" data-key=\"score\">latest anomaly</th><th>latest row</th>"
          "<th>last alerts</th></tr></thead>\n", o);
}

static void alerts_cell(FILE *o, const an_plot_data *d)
{
    if (d->nalerts == 0) {
        fputs("<td>none</td>", o);
        return;
    }
    fprintf(o, "<td>%zu in all<ul class=\"alerts\">", d->alerts_total);
    size_t first = d->nalerts > LAST_ALERTS ? d->nalerts - LAST_ALERTS : 0;
    for (size_t i = d->nalerts; i-- > first;) {
        char when[40];
        fmt_utc(d->alerts[i].t, when, sizeof when);
        fprintf(o, "<li>%s \xc2\xb7 row %lld \xc2\xb7 %.7f</li>", when,
                (long long)d->alerts[i].rowid, d->alerts[i].anomaly);
    }
    fputs("</ul></td>", o);
}

/* One metric: a <tbody> with its summary row and its chart row. */
static void metric_body(FILE *o, const an_view_metric *m, const an_plot_data *d, size_t idx,
                        double threshold)
{
    const char *status = an_metric_status_name(m->status);
    fputs("<tbody data-uid=\"", o);
    esc(o, m->uid);
    fputs("\" data-name=\"", o);
    esc(o, m->name ? m->name : m->uid);
    fprintf(o, "\" data-rows=\"%lld\" data-score=\"", (long long)m->scored);
    if (m->has_latest)
        fprintf(o, "%.17g", m->latest_anomaly);
    fputs("\">\n<tr><td><b>", o);
    esc(o, m->name ? m->name : "(no name)");
    fputs("</b><br><small>", o);
    esc(o, m->uid);
    fprintf(o, "</small></td><td class=\"status-%s\">%s</td><td class=\"num\">%lld</td>",
            status, status, (long long)m->scored);
    if (m->has_latest) {
        char when[40];
        fmt_utc(m->latest_ts, when, sizeof when);
        fprintf(o, "<td class=\"num%s\">%.7f</td><td>%s<br><small>row %lld</small></td>",
                m->latest_anomaly >= threshold ? " hot" : "", m->latest_anomaly, when,
                (long long)m->latest_rowid);
    } else {
        fputs("<td class=\"num\">-</td><td>-</td>", o);
    }
    alerts_cell(o, d);
    fputs("</tr>\n<tr class=\"plot\"><td colspan=\"6\">\n", o);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "m%zu", idx);
    ctl_plot_svg(o, m, d, NAN, NAN, threshold, prefix, 1);
    fputs("</td></tr></tbody>\n", o);
}

/* Writes the whole page to o. */
static int write_page(FILE *o, an_repo *repo, const an_config *cfg)
{
    an_view_metric *ms = NULL;
    size_t n = 0;
    int64_t total = 0;
    an_alert_rules rules = an_alert_rules_default();
    int rc = an_view_list_metrics(repo, (size_t)cfg->plot.report_metrics, &ms, &n, &total);
    if (rc) {
        fprintf(stderr, "anomalyctl report: listing metrics: %s\n", an_repo_errstr(repo));
        return 1;
    }
    page_head(o, n, total, &rules);
    for (size_t i = 0; i < n && rc == 0; i++) {
        an_plot_data d;
        rc = an_plot_data_load(repo, ms[i].uid, NAN, NAN, &rules,
                               (size_t)cfg->plot.report_points, LAST_ALERTS, &d);
        if (rc) {
            fprintf(stderr, "anomalyctl report: metric %s: %s\n", ms[i].uid,
                    *an_repo_errstr(repo) ? an_repo_errstr(repo) : "out of memory");
            break;
        }
        metric_body(o, &ms[i], &d, i, rules.threshold);
        an_plot_data_free(&d);
    }
    fprintf(o, "</table>\n<script>%s</script>\n</body></html>\n", script);
    for (size_t i = 0; i < n; i++)
        an_view_metric_clear(&ms[i]);
    free(ms);
    return rc ? 1 : 0;
}

int ctl_report(int argc, char **argv)
{
    const char *dir = NULL, *config = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--out"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--config"))
            config = argv[i + 1];
        else
            dir = NULL, i = argc;
    }
    if (!dir || argc % 2 == 0) {
        fputs("usage: anomalyctl report --out DIR [--config FILE]\n", stderr);
        return 2;
    }
    an_config cfg;
    if (ctl_config_load("report", config, &cfg))
        return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/index.html", dir);
    int status = 1;
    FILE *o = NULL;
    an_repo_options opt = an_repo_options_from_config(&cfg);
    opt.application_name = "anomalyctl";
    an_repo *repo = an_repo_new(&opt);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        fprintf(stderr, "anomalyctl report: %s: %s\n", dir, strerror(errno));
    else if (!(o = fopen(path, "w")))
        fprintf(stderr, "anomalyctl report: %s: %s\n", path, strerror(errno));
    else if (repo)
        status = write_page(o, repo, &cfg);
    if (o && (fclose(o) != 0) && status == 0) {
        fprintf(stderr, "anomalyctl report: writing %s failed\n", path);
        status = 1;
    }
    if (status == 0)
        printf("%s\n", path);
    an_repo_free(repo);
    an_config_free(&cfg);
    return status;
}
