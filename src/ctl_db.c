/* ctl_db.c: anomalyctl db (not written yet). */
#include <stdio.h>

#include "ctl.h"

int ctl_db(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "anomalyctl db: not implemented yet\n");
    return 1;
}
