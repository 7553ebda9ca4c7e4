/* ctl_likelihood.c: anomalyctl likelihood (not written yet). */
#include <stdio.h>

#include "ctl.h"

int ctl_likelihood(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "anomalyctl likelihood: not implemented yet\n");
    return 1;
}
