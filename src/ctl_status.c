/* ctl_status.c: anomalyctl status (not written yet). */
#include <stdio.h>

#include "ctl.h"

int ctl_status(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "anomalyctl status: not implemented yet\n");
    return 1;
}
