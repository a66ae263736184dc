/* main.c - entry point: hands argv to the command-line layer. */
#include "nightjar/cli.h"

int main(int argc, char **argv)
{
    return nj_cli_main(argc, argv);
}
