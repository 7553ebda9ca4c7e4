/* ctl_consumers.c: anomalyctl consumers (not written yet). */
#include <stdio.h>

#include "ctl.h"

int ctl_consumers(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "anomalyctl consumers: not implemented yet\n");
    return 1;
}
