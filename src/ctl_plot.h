/* ctl_plot.h: what anomalyctl plot shares with anomalyctl report. */
#ifndef AN_CTL_PLOT_H
#define AN_CTL_PLOT_H

#include <stdio.h>

#include "an_plot_data.h"
#include "an_view.h"

/* --from/--to text (date, date and time, epoch seconds; UTC) into epoch
 * seconds. 0 or -1. */
int ctl_parse_time(const char *s, double *out);

/* "uid · from → to UTC · N rows · M alerts" into buf. */
void ctl_plot_subtitle(const an_view_metric *m, const an_plot_data *d, double from, double to,
                       char *buf, size_t len);

/* The metric's chart (an_svg_plot_write); from/to NaN: the rows' span.
 * id_prefix makes element ids unique within an HTML page. */
int ctl_plot_svg(FILE *out, const an_view_metric *m, const an_plot_data *d, double from,
                 double to, double threshold, const char *id_prefix, int is_inline);

#endif
