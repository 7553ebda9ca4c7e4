/* anomalyd: the service. Thin: parse arguments, load config, run the loop. */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "anomalyd: not built yet\n");
    return 1;
}
