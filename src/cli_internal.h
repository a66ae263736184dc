/* cli_internal.h - what the verbs of the command line share: option parsing,
 * loading a pipeline with its diagnostics printed, workspace paths, JSON
 * output. Private to src/cli*.c. */
#ifndef NJ_CLI_INTERNAL_H
#define NJ_CLI_INTERNAL_H

#include <stdio.h>

#include "nightjar/cli.h"
#include "nightjar/dag.h"
#include "nightjar/err.h"
#include "nightjar/spec.h"
#include "nightjar/state.h"

/* A tiny getopt for long options: "--name VALUE", "--name=VALUE", "-j4",
 * "-j 4". Positional arguments are collected in order. */
typedef struct cli_opt {
    const char *name;  /* "--date" */
    const char *alias; /* "-j" or NULL */
    int takes_value;
} cli_opt;

typedef struct cli_args {
    const char *verb;
    const char **positional;
    size_t npositional;
    /* parallel to the option table: the values seen, in order */
    const char **values; /* flat list of (option index, value) pairs */
    int *which;
    size_t nvalues;
} cli_args;

/* Parses argv (after the verb). On an unknown option or a missing value
 * prints a usage error and returns NJ_EXIT_USAGE; "--help" returns -1 so
 * the verb prints its help. */
int cli_parse(const char *verb, int argc, char **argv, const cli_opt *opts, size_t nopts,
              cli_args *out);
/* cli_parse() plus the usual handling: prints `help` for --help (returns 0),
 * checks min_pos..max_pos positionals (usage error). Returns -1 when the verb
 * should go on, else the exit code to return now. */
int cli_parse_verb(const char *verb, const char *help, int argc, char **argv, const cli_opt *opts,
                   size_t nopts, size_t min_pos, size_t max_pos, cli_args *a);
void cli_args_release(cli_args *a);
/* The last value of option `index`, or NULL. */
const char *cli_value(const cli_args *a, int index);
/* 1 if flag `index` was given. */
int cli_flag(const cli_args *a, int index);

/* Prints "nightjar: error: <msg>" to stderr. */
void cli_error(const char *fmt, ...) NJ_PRINTF(1, 2);
void cli_warn(const char *fmt, ...) NJ_PRINTF(1, 2);
/* Maps an error code to the exit code it deserves. */
int cli_exit_for(int code);

/* Loads and validates a pipeline and its graph, printing every diagnostic.
 * Returns NJ_EXIT_OK, NJ_EXIT_INVALID or NJ_EXIT_SYSTEM. */
int cli_load(const char *path, nj_pipeline **p, nj_dag **dag);

/* Applies every --param NAME=VALUE given as option index `opt`. Returns an
 * exit code (the error printed). */
int cli_apply_params(nj_pipeline *p, const cli_args *a, int opt);

/* What a looking verb holds: the pipeline and its graph, and, once the
 * pipeline has run, its state and cache. Zero-initialise; always close.
 *
 *     cli_session s = {0};
 *     if ((code = cli_session_load(&s, path)) || (code = cli_session_open(&s, 1))) goto out;
 *     if (!s.st) ... never ran ...
 *   out:
 *     cli_session_close(&s);
 */
struct nj_cache;
typedef struct cli_session {
    nj_pipeline *p;
    nj_dag *dag;
    nj_state *st;          /* NULL until opened, and when nothing ever ran */
    struct nj_cache *cache; /* opened with want_cache and st */
} cli_session;
int cli_session_load(cli_session *s, const char *path); /* exit code; diagnostics printed */
int cli_session_open(cli_session *s, int want_cache);   /* exit code */
void cli_session_close(cli_session *s);

/* <workspace>/<name>; caller frees. */
char *cli_workspace_path(const nj_pipeline *p, const char *name);
/* Opens the state database for reading commands. Returns NJ_EXIT_OK with *st
 * set, NJ_EXIT_OK with *st NULL when nothing has run yet, or an exit code. */
int cli_open_state_if_any(const nj_pipeline *p, nj_state **st);

/* JSON output helpers. */
void cli_json_str(FILE *f, const char *s); /* "..." with escapes, or null */

/* 1 when stderr is a terminal and TERM is not dumb. */
int cli_stderr_is_tty(void);

/* Prints, for each plan node, "run", "cached" or "up-to-date" and why
 * (nightjar why, run --dry-run --explain). Opens the workspace state and
 * cache read-only in spirit: nothing on disk changes. Returns an exit code. */
struct nj_plan;
int cli_print_explanations(const nj_pipeline *p, const struct nj_plan *plan, int use_cache);

/* Verbs. */
int cli_run(int argc, char **argv);
int cli_validate(int argc, char **argv);
int cli_dag(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_history(int argc, char **argv);
int cli_logs(int argc, char **argv);
int cli_why(int argc, char **argv);
int cli_gc(int argc, char **argv);
int cli_verify(int argc, char **argv);
int cli_backfill(int argc, char **argv);
int cli_snapshot(int argc, char **argv);
int cli_models(int argc, char **argv);  /* cli_models.c */
int cli_metrics(int argc, char **argv);
int cli_lineage(int argc, char **argv);

#endif
