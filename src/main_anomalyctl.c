/* anomalyctl: operator and developer commands. Thin: dispatch to ctl_*.c. */
#include <stdio.h>
#include <string.h>

#include "an_version.h"
#include "ctl.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} commands[] = {
    {"likelihood", ctl_likelihood,
     "likelihood --csv FILE [--batch-size N | --schedule N,N,...] [--variant V] [--config FILE]"},
    {"db", ctl_db, "db init|sql [--config FILE]"},
    {"replay", ctl_replay,
     "replay --csv FILE --metric NAME [--batch-size N] [--live-after N] [--uid UID]\n"
     "                    [--encoding json|zlib] [--progress auto|always|never] [--config FILE]"},
    {"tail", ctl_tail, "tail [--count N] [--follow] [--stream KEY] [--config FILE]"},
    {"status", ctl_status, "status [--json] [--watch [SECONDS] [--count N]] [--config FILE]"},
    {"consumers", ctl_consumers,
     "consumers list|prune --idle MS [--to NAME] [--dry-run] [--config FILE]"},
    {"alerts", ctl_alerts,
     "alerts [--group notify] [--threshold 0.99999] [--min-rowid 1000] [--max-age 1h] "
     "[--throttle 1h] [--stream htm:alerts] [--exec CMD] [--exit-when-idle MS] [--config FILE]"},
    {"plot", ctl_plot,
     "plot --metric NAME|UID [--from T] [--to T] [--max-points N] --out FILE.svg [--config FILE]"},
    {"report", ctl_report, "report --out DIR [--config FILE]"},
};

static void usage(FILE *out)
{
    fprintf(out, "anomalyctl %s\nusage:\n", an_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  anomalyctl %s\n", commands[i].usage);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("anomalyctl %s\n", an_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "anomalyctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
