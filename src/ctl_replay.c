/* ctl_replay.c: anomalyctl replay (not written yet). */
#include <stdio.h>

#include "ctl.h"

int ctl_replay(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "anomalyctl replay: not implemented yet\n");
    return 1;
}
