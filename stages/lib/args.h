/* args.h - command-line parsing shared by the stage programs.
 *
 * Every parameter is a long flag. A value flag takes the next word
 * (--out model.bin); a list flag takes every following word up to the next
 * word starting with "--" (--history a.csv b.csv c.csv), which is how the
 * runner renders a window of dates. --help prints the usage text.
 *
 *     const char *out = NULL; st_list history = {0}; double l2 = 1.0;
 *     st_opt opts[] = {
 *         {"out", ST_OPT_STRING, &out},
 *         {"history", ST_OPT_LIST, &history},
 *         {"l2", ST_OPT_DOUBLE, &l2},
 *         {0}};
 *     st_args_parse(argc, argv, opts, "nj-train", usage);   exits on error
 *     ... st_list_release(&history);
 */
#ifndef ST_ARGS_H
#define ST_ARGS_H

#include <stddef.h>

typedef enum st_opt_kind {
    ST_OPT_STRING, /* const char ** (borrowed from argv) */
    ST_OPT_LIST,   /* st_list * */
    ST_OPT_DOUBLE, /* double * */
    ST_OPT_INT,    /* int * */
} st_opt_kind;

typedef struct st_opt {
    const char *name; /* without the leading "--" */
    st_opt_kind kind;
    void *dest;
} st_opt;

typedef struct st_list {
    char **items; /* borrowed from argv; the array itself is owned */
    size_t n, cap;
} st_list;

/* Parses argv into the options (terminated by a {0} entry). On --help
 * prints `usage` to stdout and exits 0; on an unknown flag, a missing value,
 * a bad number or a stray word prints "<prog>: <what>" and the usage to
 * stderr and exits ST_EXIT_USAGE. A flag given twice keeps the last value
 * (a list flag appends). */
void st_args_parse(int argc, char **argv, const st_opt *opts, const char *prog, const char *usage);

/* Exits with ST_EXIT_USAGE and "<prog>: missing --<flag>" if value is NULL. */
void st_args_require(const void *value, const char *flag, const char *prog, const char *usage);

void st_list_release(st_list *list);

#endif
