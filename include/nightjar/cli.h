/* cli.h - the command line: parses verbs and flags, prints for people, and
 * picks the process exit code. The only module that writes to stdout/stderr
 * on the user's behalf or decides an exit status.
 *
 * Exit codes (documented in `nightjar --help` and the README):
 *   0 success, 1 a stage failed, 2 usage error, 3 invalid pipeline,
 *   4 system error (disk, database), 5 a candidate model held by its gate,
 *   75 lock held, 130 interrupted. */
#ifndef NJ_CLI_H
#define NJ_CLI_H

enum {
    NJ_EXIT_OK = 0,
    NJ_EXIT_FAILED = 1,
    NJ_EXIT_USAGE = 2,
    NJ_EXIT_INVALID = 3,
    NJ_EXIT_SYSTEM = 4,
    NJ_EXIT_HELD = 5,
    NJ_EXIT_LOCKED = 75,
    NJ_EXIT_INTERRUPTED = 130,
};

int nj_cli_main(int argc, char **argv);

#endif
