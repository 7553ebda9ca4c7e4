/*
 * an_svg_plot.h: one metric's chart as a self-contained SVG (pure: arrays
 * in, text out; no database). Two panels sharing a UTC date axis: the
 * metric's value, with the alerts marked, and underneath the anomaly
 * score on a log scale of 1 - score (0, 0.9, 0.99, ... 0.99999), with the
 * alert threshold drawn. The value path has class "value-series" and one
 * point per element of `value`; the anomaly path has class
 * "anomaly-series".
 */
#ifndef AN_SVG_PLOT_H
#define AN_SVG_PLOT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct an_svg_series {
    const double *t; /* epoch seconds, ascending */
    const double *v;
    size_t n;
} an_svg_series;

typedef struct an_svg_mark {
    int64_t rowid;
    double t, value, anomaly;
} an_svg_mark;

typedef struct an_svg_plot {
    const char *title;     /* e.g. the metric name; escaped (any bytes) */
    const char *subtitle;  /* e.g. uid and range; NULL: none */
    const char *unit;      /* value axis label; NULL: "value" */
    const char *id_prefix; /* makes element ids unique when several SVGs
                              share an HTML page; NULL: "p" */
    double t0, t1;         /* time range shown (t1 > t0; widened if not) */
    an_svg_series value;
    an_svg_series anomaly;
    double threshold;      /* drawn on the anomaly panel */
    const an_svg_mark *alerts;
    size_t nalerts;
    int width, height;     /* <= 0: 960 x 440 */
} an_svg_plot;

/* Writes the SVG document (with the XML declaration unless inline, for
 * embedding in HTML). Returns 0, or AN_EIO when writing failed. */
int an_svg_plot_write(FILE *out, const an_svg_plot *p, int is_inline);

/* Writes s as XML character data / attribute text: & < > " ' escaped,
 * control characters other than tab, newline and CR (not allowed in XML
 * 1.0) and invalid UTF-8 bytes replaced by U+FFFD. NULL writes nothing. */
void an_xml_escape(FILE *out, const char *s);

/* "2014-04-01" (step >= 1 day) or "04-01 12:00" for a tick label. */
void an_svg_time_label(double t, double step, char *buf, size_t len);

#endif
