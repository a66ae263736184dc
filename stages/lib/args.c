/* args.c - see args.h. */
#include "args.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

_Noreturn static void usage_error(const char *prog, const char *usage, const char *what,
                                  const char *subject)
{
    fprintf(stderr, "%s: %s '%s'\n\n%s", prog, what, subject, usage);
    exit(ST_EXIT_USAGE);
}

static int is_flag(const char *s)
{
    return s[0] == '-' && s[1] == '-';
}

void st_args_parse(int argc, char **argv, const st_opt *opts, const char *prog, const char *usage)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            exit(ST_EXIT_OK);
        }
        if (!is_flag(argv[i])) usage_error(prog, usage, "unexpected argument", argv[i]);
        const st_opt *o = opts;
        while (o->name && strcmp(o->name, argv[i] + 2) != 0)
            o++;
        if (!o->name) usage_error(prog, usage, "unknown option", argv[i]);
        if (o->kind == ST_OPT_LIST) {
            st_list *list = o->dest;
            while (i + 1 < argc && !is_flag(argv[i + 1])) {
                st_grow((void **)&list->items, &list->cap, list->n + 1, sizeof *list->items);
                list->items[list->n++] = argv[++i];
            }
            continue;
        }
        if (i + 1 >= argc) usage_error(prog, usage, "missing value after", argv[i]);
        const char *value = argv[++i];
        char *end;
        errno = 0;
        switch (o->kind) {
        case ST_OPT_STRING:
            *(const char **)o->dest = value;
            break;
        case ST_OPT_DOUBLE:
            *(double *)o->dest = strtod(value, &end);
            if (!*value || *end || errno) usage_error(prog, usage, "not a number:", value);
            break;
        case ST_OPT_INT: {
            long v = strtol(value, &end, 10);
            if (!*value || *end || errno || v < INT_MIN || v > INT_MAX)
                usage_error(prog, usage, "not an integer:", value);
            *(int *)o->dest = (int)v;
            break;
        }
        case ST_OPT_LIST:
            break;
        }
    }
}

void st_args_require(const void *value, const char *flag, const char *prog, const char *usage)
{
    if (!value) {
        fprintf(stderr, "%s: missing --%s\n\n%s", prog, flag, usage);
        exit(ST_EXIT_USAGE);
    }
}

void st_list_release(st_list *list)
{
    free(list->items);
    memset(list, 0, sizeof *list);
}
