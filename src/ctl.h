/*
 * ctl.h: anomalyctl's subcommands, one file each (ctl_<name>.c). Each takes
 * the arguments after its name (argv[0] is the subcommand name) and returns
 * the process exit status: 0 ok, 1 failure, 2 usage error.
 */
#ifndef AN_CTL_H
#define AN_CTL_H

#include "an_config.h"

int ctl_likelihood(int argc, char **argv); /* offline scoring of a CSV */
int ctl_db(int argc, char **argv);         /* db init */
int ctl_replay(int argc, char **argv);     /* the reference producer */
int ctl_tail(int argc, char **argv);       /* decoded output entries */
int ctl_status(int argc, char **argv);     /* group lag, pending, dead letters */
int ctl_consumers(int argc, char **argv);  /* consumers list|prune */
int ctl_alerts(int argc, char **argv);     /* the reference notification consumer */
int ctl_plot(int argc, char **argv);       /* one metric as an SVG chart */
int ctl_report(int argc, char **argv);     /* an HTML page of every metric */

/* Shared by the subcommands (ctl_common.c). */

/* Loads the configuration (an_config_load; path NULL: defaults and the
 * environment) into cfg for subcommand cmd. 0, or 2 (the usage exit status)
 * after printing "anomalyctl <cmd>: configuration error: ..." on stderr; cfg
 * then holds nothing to free. */
int ctl_config_load(const char *cmd, const char *path, an_config *cfg);

#endif
