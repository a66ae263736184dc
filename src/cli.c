/* cli.c - placeholder until the verbs land. */
#include "nightjar/cli.h"

#include <stdio.h>

int nj_cli_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nightjar: not yet\n");
    return NJ_EXIT_USAGE;
}
