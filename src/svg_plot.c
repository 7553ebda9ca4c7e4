/* svg_plot.c: one metric's chart as SVG (an_svg_plot.h). Pure. */
#include "an_svg_plot.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "an_error.h"

/* Geometry of the two panels, from the canvas size. */
typedef struct geom {
    double left, right;        /* plot area x range */
    double vtop, vbot;         /* value panel */
    double atop, abot;         /* anomaly panel */
    double t0, t1, vmin, vmax; /* data ranges */
    int w, h;
} geom;

/* The anomaly axis: -log10(1 - a), 0 at a = 0, 5 at 0.99999, capped. */
#define ANOMALY_AXIS_MAX 6.0
static double anomaly_level(double a)
{
    double r = 1.0 - a;
    if (!(r > 1e-6))
        return ANOMALY_AXIS_MAX;
    double l = -log10(r);
    return l < 0 ? 0 : (l > ANOMALY_AXIS_MAX ? ANOMALY_AXIS_MAX : l);
}

static double x_of(const geom *g, double t)
{
    return g->left + (t - g->t0) / (g->t1 - g->t0) * (g->right - g->left);
}

static double yv_of(const geom *g, double v)
{
    return g->vbot - (v - g->vmin) / (g->vmax - g->vmin) * (g->vbot - g->vtop);
}

static double ya_of(const geom *g, double a)
{
    return g->abot - anomaly_level(a) / ANOMALY_AXIS_MAX * (g->abot - g->atop);
}

/* Length of the UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n = (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || (n == 2 && s[0] < 0xc2) || (n == 4 && s[0] > 0xf4))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0)))
        return 0; /* overlong, or a UTF-16 surrogate */
    if (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90)))
        return 0;
    return n;
}

void an_xml_escape(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (p && *p) {
        unsigned char c = *p;
        size_t n = utf8_len(p);
        if (c == '&')
            fputs("&amp;", out);
        else if (c == '<')
            fputs("&lt;", out);
        else if (c == '>')
            fputs("&gt;", out);
        else if (c == '"')
            fputs("&quot;", out);
        else if (c == '\'')
            fputs("&#39;", out);
        else if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f || n == 0)
            fputs("\xef\xbf\xbd", out);
        else
            fwrite(p, 1, n, out);
        p += n ? n : 1;
    }
}

void an_svg_time_label(double t, double step, char *buf, size_t len)
{
    time_t s = (time_t)floor(t);
    struct tm tm;
    if (!gmtime_r(&s, &tm)) {
        snprintf(buf, len, "?");
        return;
    }
    if (step >= 86400)
        snprintf(buf, len, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    else
        snprintf(buf, len, "%02d-%02d %02d:%02d", tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min);
}

/* A round tick step (1, 2 or 5 x 10^k) giving about `want` ticks. */
static double nice_step(double range, int want)
{
    double raw = range / want;
    double p = pow(10, floor(log10(raw)));
    double f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* A calendar-ish time step giving at most ~8 ticks over span seconds. */
static double time_step(double span)
{
    static const double steps[] = {60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600,
                                   86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400,
                                   91 * 86400, 364 * 86400};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (span / steps[i] <= 8)
            return steps[i];
    return nice_step(span, 8);
}

static void ranges(const an_svg_plot *p, geom *g)
{
    g->t0 = p->t0;
    g->t1 = p->t1;
    if (!(g->t1 > g->t0)) {
        g->t0 -= 3600;
        g->t1 += 3600;
    }
    g->vmin = INFINITY;
    g->vmax = -INFINITY;
    for (size_t i = 0; i < p->value.n; i++) {
        if (p->value.v[i] < g->vmin)
            g->vmin = p->value.v[i];
        if (p->value.v[i] > g->vmax)
            g->vmax = p->value.v[i];
    }
    if (!(g->vmax >= g->vmin)) {
        g->vmin = 0;
        g->vmax = 1;
    }
    if (g->vmax == g->vmin) {
        g->vmin -= 1;
        g->vmax += 1;
    }
    double pad = (g->vmax - g->vmin) * 0.05;
    g->vmin -= pad;
    g->vmax += pad;
}

static void layout(const an_svg_plot *p, geom *g)
{
    g->w = p->width > 0 ? p->width : 960;
    g->h = p->height > 0 ? p->height : 440;
    g->left = 72;
    g->right = g->w - 24;
    g->vtop = 62;
    g->abot = g->h - 44;
    double avail = g->abot - g->vtop - 30;
    g->vbot = g->vtop + avail * 0.68;
    g->atop = g->vbot + 30;
    ranges(p, g);
}

static void header(FILE *o, const an_svg_plot *p, const geom *g, int is_inline)
{
    if (!is_inline)
        fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", o);
    fprintf(o,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Arial, sans-serif\" "
            "font-size=\"12\">\n",
            g->w, g->h, g->w, g->h);
    fputs("<title>", o);
    an_xml_escape(o, p->title);
    fputs("</title>\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n", o);
    fputs("<text x=\"72\" y=\"24\" font-size=\"17\" font-weight=\"bold\" fill=\"#111\">", o);
    an_xml_escape(o, p->title);
    fputs("</text>\n", o);
    if (p->subtitle) {
        fputs("<text x=\"72\" y=\"43\" fill=\"#555\">", o);
        an_xml_escape(o, p->subtitle);
        fputs("</text>\n", o);
    }
}

/* Grid lines and labels of both y axes. */
static void y_axes(FILE *o, const an_svg_plot *p, const geom *g)
{
    double step = nice_step(g->vmax - g->vmin, 5);
    for (double v = ceil(g->vmin / step) * step; v <= g->vmax; v += step) {
        double y = yv_of(g, v);
        fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                g->left, y, g->right, y);
        fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#444\">%.6g</text>\n",
                g->left - 6, y + 4, fabs(v) < step * 1e-9 ? 0.0 : v);
    }
    static const char *const labels[] = {"0", "0.9", "0.99", "0.999", "0.9999", "0.99999"};
    for (int i = 0; i < 6; i++) {
        double y = g->abot - i / ANOMALY_AXIS_MAX * (g->abot - g->atop);
        fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eeeeee\"/>\n",
                g->left, y, g->right, y);
        if (i % 2 == 0 || i == 5)
            fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#444\" "
                       "font-size=\"10\">%s</text>\n", g->left - 6, y + 3, labels[i]);
    }
    fprintf(o, "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\" "
               "fill=\"#333\">", (g->vtop + g->vbot) / 2);
    an_xml_escape(o, p->unit ? p->unit : "value");
    fprintf(o, "</text>\n<text transform=\"translate(16 %.1f) rotate(-90)\" "
               "text-anchor=\"middle\" fill=\"#333\" font-size=\"10\">anomaly</text>\n",
            (g->atop + g->abot) / 2);
}

static void x_axis(FILE *o, const geom *g)
{
    double step = time_step(g->t1 - g->t0);
    for (double t = ceil(g->t0 / step) * step; t <= g->t1; t += step) {
        double x = x_of(g, t);
        char label[32];
        an_svg_time_label(t, step, label, sizeof label);
        fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                x, g->vtop, x, g->abot);
        fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#444\">%s</text>\n",
                x, g->abot + 16, label);
    }
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#333\">time (UTC)</text>\n",
            (g->left + g->right) / 2, g->abot + 34);
    fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#999\"/>\n", g->left, g->vtop, g->right - g->left, g->vbot - g->vtop);
    fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#999\"/>\n", g->left, g->atop, g->right - g->left, g->abot - g->atop);
}

/* One path, one "x,y" pair per point: "M" before the first, "L" before
 * every other. */
static void series_path(FILE *o, const geom *g, const an_svg_series *s, int anomaly,
                        const char *cls, const char *color)
{
    if (s->n == 0)
        return;
    fprintf(o, "<path class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.2\" "
               "stroke-linejoin=\"round\" data-points=\"%zu\" d=\"", cls, color, s->n);
    for (size_t i = 0; i < s->n; i++) {
        double y = anomaly ? ya_of(g, s->v[i]) : yv_of(g, s->v[i]);
        fprintf(o, "%s%.1f,%.1f", i == 0 ? "M" : " L", x_of(g, s->t[i]), y);
    }
    fputs("\"/>\n", o);
}

static void threshold_and_alerts(FILE *o, const an_svg_plot *p, const geom *g)
{
    double y = ya_of(g, p->threshold);
    fprintf(o, "<line class=\"threshold\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
               "stroke=\"#d62728\" stroke-dasharray=\"5 3\"/>\n", g->left, y, g->right, y);
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#d62728\" "
               "font-size=\"10\">threshold %.10g</text>\n", g->right - 4, y - 4, p->threshold);
    for (size_t i = 0; i < p->nalerts; i++) {
        const an_svg_mark *m = &p->alerts[i];
        double x = x_of(g, m->t);
        char when[32];
        an_svg_time_label(m->t, 60, when, sizeof when);
        fprintf(o, "<g class=\"alert\"><title>alert: row %" PRId64 ", %s, value %.6g, "
                   "anomaly %.7f</title>\n", m->rowid, when, m->value, m->anomaly);
        fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" "
                   "stroke-opacity=\"0.45\"/>\n", x, g->vtop, x, g->abot);
        fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#d62728\" stroke=\"#fff\"/>\n",
                x, yv_of(g, m->value));
        fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#d62728\"/></g>\n", x,
                ya_of(g, m->anomaly));
    }
}

static void legend(FILE *o, const an_svg_plot *p, const geom *g)
{
    double x = g->right - 330, y = 24;
    fprintf(o, "<g font-size=\"11\" fill=\"#333\">"
               "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#1f77b4\" "
               "stroke-width=\"2\"/><text x=\"%.1f\" y=\"%.1f\">value (%zu points)</text>",
            x, y - 4, x + 18, y - 4, x + 22, y, p->value.n);
    fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ff7f0e\" "
               "stroke-width=\"2\"/><text x=\"%.1f\" y=\"%.1f\">anomaly</text>",
            x + 140, y - 4, x + 158, y - 4, x + 162, y);
    fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#d62728\"/>"
               "<text x=\"%.1f\" y=\"%.1f\">alerts (%zu)</text></g>\n",
            x + 230, y - 4, x + 238, y, p->nalerts);
}

int an_svg_plot_write(FILE *out, const an_svg_plot *p, int is_inline)
{
    geom g;
    layout(p, &g);
    header(out, p, &g, is_inline);
    y_axes(out, p, &g);
    x_axis(out, &g);
    const char *id = p->id_prefix ? p->id_prefix : "p";
    fprintf(out, "<clipPath id=\"%s-clip\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                 "height=\"%.1f\"/></clipPath>\n<g clip-path=\"url(#%s-clip)\">\n",
            id, g.left, g.vtop - 6, g.right - g.left, g.abot - g.vtop + 12, id);
    series_path(out, &g, &p->value, 0, "value-series", "#1f77b4");
    series_path(out, &g, &p->anomaly, 1, "anomaly-series", "#ff7f0e");
    threshold_and_alerts(out, p, &g);
    fputs("</g>\n", out);
    if (p->value.n == 0)
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#888\">"
                     "no rows in this range</text>\n", (g.left + g.right) / 2,
                (g.vtop + g.vbot) / 2);
    legend(out, p, &g);
    fputs("</svg>\n", out);
    return ferror(out) ? AN_EIO : 0;
}
