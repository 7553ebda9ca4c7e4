/* anomalyctl: operator and developer commands. Thin: dispatch to ctl_*.c. */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "anomalyctl: not built yet\n");
    return 1;
}
