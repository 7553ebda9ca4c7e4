/* ctl_tail.c: anomalyctl tail (not written yet). */
#include <stdio.h>

#include "ctl.h"

int ctl_tail(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "anomalyctl tail: not implemented yet\n");
    return 1;
}
