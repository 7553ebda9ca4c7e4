/*
 * ctl.h: anomalyctl's subcommands, one file each (ctl_<name>.c). Each takes
 * the arguments after its name (argv[0] is the subcommand name) and returns
 * the process exit status: 0 ok, 1 failure, 2 usage error.
 */
#ifndef AN_CTL_H
#define AN_CTL_H

int ctl_likelihood(int argc, char **argv); /* offline scoring of a CSV */
int ctl_db(int argc, char **argv);         /* db init */
int ctl_replay(int argc, char **argv);     /* the reference producer */
int ctl_tail(int argc, char **argv);       /* decoded output entries */
int ctl_status(int argc, char **argv);     /* group lag, pending, dead letters */
int ctl_consumers(int argc, char **argv);  /* consumers list|prune */
int ctl_alerts(int argc, char **argv);     /* the reference notification consumer */
int ctl_plot(int argc, char **argv);       /* one metric as an SVG chart */
int ctl_report(int argc, char **argv);     /* an HTML page of every metric */

#endif
