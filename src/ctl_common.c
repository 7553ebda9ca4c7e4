/*
 * ctl_common.c: what several anomalyctl subcommands share (ctl.h).
 */
#include <stdio.h>

#include "an_config.h"
#include "ctl.h"

int ctl_config_load(const char *cmd, const char *path, an_config *cfg)
{
    char err[1024];
    if (an_config_load(cfg, path, err, sizeof err)) {
        fprintf(stderr, "anomalyctl %s: configuration error: %s\n", cmd, err);
        return 2;
    }
    return 0;
}
