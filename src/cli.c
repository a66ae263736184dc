/* cli.c - verb dispatch, global help, and the helpers every verb shares. */
#include "nightjar/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_internal.h"
#include "nightjar/cache.h"
#include "nightjar/fs.h"
#include "nightjar/util.h"

static const char usage_text[] =
    "usage: nightjar VERB PIPELINE [options]\n"
    "\n"
    "Runs a pipeline of stages, declared in a YAML file, as a DAG of cached steps.\n"
    "\n"
    "verbs:\n"
    "  run        run the pipeline (or part of it) for one date\n"
    "  backfill   run a range of dates as one graph, resumable\n"
    "  validate   check a pipeline file and report every problem\n"
    "  dag        print the stage graph (text or --dot)\n"
    "  status     each stage's latest outcome\n"
    "  history    past runs, newest first\n"
    "  logs       print the log of a stage's attempt\n"
    "  why        whether each stage would run, be restored or stay, and why\n"
    "  gc         remove cache entries and objects nothing needs any more\n"
    "  verify     rehash the cache's objects and check its entries\n"
    "  snapshot   list, restore or create the archives that freeze a date's inputs\n"
    "  models     list the registered models; promote or roll back the champion\n"
    "  metrics    each stage's recorded metrics per date, with the gate's decisions\n"
    "  lineage    the run, keys, model, training dates and gate behind a published date\n"
    "\n"
    "Run 'nightjar VERB --help' for a verb's options. 'nightjar --version' prints the version.\n"
    "\n"
    "exit codes:\n"
    "    0  success\n"
    "    1  a stage or a publish failed (or the asked-for run, log, model or publication\n"
    "       does not exist)\n"
    "    2  usage error\n"
    "    3  invalid pipeline\n"
    "    4  system error (disk, database)\n"
    "    5  a candidate model failed its gate and was held; everything else succeeded\n"
    "   75  another run holds the workspace lock\n"
    "  130  interrupted by a signal\n";

typedef struct verb {
    const char *name;
    int (*fn)(int argc, char **argv);
} verb;

static const verb verbs[] = {
    {"run", cli_run},           {"validate", cli_validate},
    {"dag", cli_dag},           {"status", cli_status},
    {"history", cli_history},   {"logs", cli_logs},
    {"why", cli_why},           {"gc", cli_gc},
    {"verify", cli_verify},     {"backfill", cli_backfill},
    {"snapshot", cli_snapshot}, {"models", cli_models},
    {"metrics", cli_metrics},   {"lineage", cli_lineage},
};

/* libuv's thread pool (hashing, storing outputs) has 4 threads unless told
 * otherwise before its first use: give it one per core, at least 4. */
static void size_thread_pool(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char n[32];
    snprintf(n, sizeof(n), "%ld", cores > 4 ? cores : 4);
    setenv("UV_THREADPOOL_SIZE", n, 0);
}

int nj_cli_main(int argc, char **argv)
{
    size_thread_pool();
    if (argc < 2) {
        fputs(usage_text, stderr);
        return NJ_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        fputs(usage_text, stdout);
        return NJ_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("nightjar %s\n", NJ_VERSION);
        return NJ_EXIT_OK;
    }
    const char *names[sizeof(verbs) / sizeof(verbs[0])];
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strcmp(verbs[i].name, name) == 0) return verbs[i].fn(argc - 2, argv + 2);
        names[i] = verbs[i].name;
    }
    const char *hint = nj_suggest(name, names, sizeof(names) / sizeof(names[0]));
    if (hint)
        cli_error("unknown verb '%s' (did you mean '%s'?)", name, hint);
    else
        cli_error("unknown verb '%s' (see 'nightjar --help')", name);
    return NJ_EXIT_USAGE;
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("nightjar: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    fputs("nightjar: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_exit_for(int code)
{
    switch (code) {
    case 0:
        return NJ_EXIT_OK;
    case NJ_EPIPELINE:
    case NJ_ECYCLE:
        return NJ_EXIT_INVALID;
    case NJ_EUSAGE:
        return NJ_EXIT_USAGE;
    case NJ_ELOCKED:
        return NJ_EXIT_LOCKED;
    case NJ_EINTERRUPTED:
        return NJ_EXIT_INTERRUPTED;
    case NJ_ESTAGE:
    case NJ_ENOTFOUND:
        return NJ_EXIT_FAILED;
    default:
        return NJ_EXIT_SYSTEM;
    }
}

int cli_parse(const char *verb_name, int argc, char **argv, const cli_opt *opts, size_t nopts,
              cli_args *out)
{
    memset(out, 0, sizeof(*out));
    out->verb = verb_name;
    out->positional = nj_xcalloc((size_t)argc + 1, sizeof(char *));
    out->values = nj_xcalloc((size_t)argc + 1, sizeof(char *));
    out->which = nj_xcalloc((size_t)argc + 1, sizeof(int));
    int only_positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (only_positional || arg[0] != '-' || strcmp(arg, "-") == 0) {
            out->positional[out->npositional++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) return -1;
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        int found = -1;
        const char *inline_value = NULL;
        for (size_t k = 0; k < nopts && found < 0; k++) {
            if (strlen(opts[k].name) == name_len && strncmp(opts[k].name, arg, name_len) == 0) {
                found = (int)k;
                inline_value = eq ? eq + 1 : NULL;
            } else if (opts[k].alias && nj_str_starts(arg, opts[k].alias)) {
                size_t alen = strlen(opts[k].alias);
                if (arg[alen] == '\0' || opts[k].takes_value) {
                    found = (int)k;
                    inline_value = arg[alen] ? arg + alen : NULL;
                }
            }
        }
        if (found < 0) {
            const char **names = nj_xcalloc(nopts + 1, sizeof(char *));
            for (size_t k = 0; k < nopts; k++)
                names[k] = opts[k].name;
            char *word = nj_xstrndup(arg, name_len);
            const char *hint = nj_suggest(word, names, nopts);
            if (hint)
                cli_error("%s: unknown option '%s' (did you mean '%s'?)", verb_name, word, hint);
            else
                cli_error("%s: unknown option '%s' (see 'nightjar %s --help')", verb_name, word,
                          verb_name);
            free(word);
            free(names);
            return NJ_EXIT_USAGE;
        }
        const char *value = NULL;
        if (opts[found].takes_value) {
            value = inline_value;
            if (!value) {
                if (i + 1 >= argc) {
                    cli_error("%s: option '%s' needs a value", verb_name, opts[found].name);
                    return NJ_EXIT_USAGE;
                }
                value = argv[++i];
            }
        } else if (inline_value) {
            cli_error("%s: option '%s' takes no value", verb_name, opts[found].name);
            return NJ_EXIT_USAGE;
        }
        out->which[out->nvalues] = found;
        out->values[out->nvalues++] = value ? value : "";
    }
    return 0;
}

void cli_args_release(cli_args *a)
{
    free(a->positional);
    free(a->values);
    free(a->which);
    memset(a, 0, sizeof(*a));
}

const char *cli_value(const cli_args *a, int index)
{
    const char *v = NULL;
    for (size_t i = 0; i < a->nvalues; i++)
        if (a->which[i] == index) v = a->values[i];
    return v;
}

int cli_flag(const cli_args *a, int index)
{
    return cli_value(a, index) != NULL;
}

int cli_load(const char *path, nj_pipeline **p, nj_dag **dag)
{
    nj_strs diags = {0};
    nj_err err = {0};
    *p = NULL;
    *dag = NULL;
    int rc = nj_pipeline_load(path, p, &diags, &err);
    if (rc == 0) rc = nj_dag_build(*p, dag, &diags, &err);
    for (size_t i = 0; i < diags.len; i++)
        fprintf(stderr, "nightjar: error: %s\n", diags.items[i]);
    nj_strs_release(&diags);
    if (rc == 0) return NJ_EXIT_OK;
    if (rc == NJ_EPIPELINE || rc == NJ_ECYCLE) {
        fprintf(stderr, "nightjar: '%s' is not a valid pipeline: %s\n", path, err.msg);
    } else {
        cli_error("%s", err.msg);
    }
    nj_pipeline_free(*p);
    *p = NULL;
    int code = cli_exit_for(rc);
    /* A pipeline file that does not exist is a usage error, not a system fault. */
    return rc == -ENOENT ? NJ_EXIT_USAGE : code == NJ_EXIT_FAILED ? NJ_EXIT_INVALID : code;
}

char *cli_workspace_path(const nj_pipeline *p, const char *name)
{
    return nj_path_join(p->workspace, name);
}

int cli_open_state_if_any(const nj_pipeline *p, nj_state **st)
{
    *st = NULL;
    char *path = cli_workspace_path(p, "state.db");
    if (!nj_fs_exists(path)) {
        free(path);
        return NJ_EXIT_OK;
    }
    nj_err err = {0};
    int rc = nj_state_open(path, st, &err);
    free(path);
    if (rc < 0) {
        cli_error("%s", err.msg);
        return NJ_EXIT_SYSTEM;
    }
    return NJ_EXIT_OK;
}

int cli_session_load(cli_session *s, const char *path)
{
    return cli_load(path, &s->p, &s->dag);
}

int cli_session_open(cli_session *s, int want_cache)
{
    int code = cli_open_state_if_any(s->p, &s->st);
    if (code || !s->st || !want_cache) return code;
    nj_err err = {0};
    if (nj_cache_open(s->p, s->st, &s->cache, &err) < 0) {
        cli_error("%s", err.msg);
        return NJ_EXIT_SYSTEM;
    }
    return NJ_EXIT_OK;
}

void cli_session_close(cli_session *s)
{
    nj_cache_free(s->cache);
    nj_state_close(s->st);
    nj_dag_free(s->dag);
    nj_pipeline_free(s->p);
    memset(s, 0, sizeof(*s));
}

void cli_json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        default:
            if (*c < 0x20)
                fprintf(f, "\\u%04x", *c);
            else
                fputc(*c, f);
        }
    }
    fputc('"', f);
}

int cli_stderr_is_tty(void)
{
    const char *term = getenv("TERM");
    return isatty(STDERR_FILENO) && !(term && strcmp(term, "dumb") == 0);
}

int cli_parse_verb(const char *name, const char *help, int argc, char **argv, const cli_opt *opts,
                   size_t nopts, size_t min_pos, size_t max_pos, cli_args *a)
{
    int code = cli_parse(name, argc, argv, opts, nopts, a);
    if (code < 0) {
        fputs(help, stdout);
        return NJ_EXIT_OK;
    }
    if (code) return code;
    if (a->npositional < min_pos || a->npositional > max_pos) {
        cli_error("%s: wrong number of arguments (see 'nightjar %s --help')", name, name);
        return NJ_EXIT_USAGE;
    }
    return -1;
}
