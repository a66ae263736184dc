/* cli_cache.c - the verbs about the cache: why, gc, verify; and the
 * explanation table shared with `run --dry-run --explain`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_internal.h"
#include "nightjar/cache.h"
#include "nightjar/explain.h"
#include "nightjar/fs.h"
#include "nightjar/gc.h"
#include "nightjar/plan.h"
#include "nightjar/release.h"
#include "nightjar/util.h"

static int print_explanations(const nj_plan *plan, nj_state *st, nj_cache *cache,
                              const nj_strs *only)
{
    nj_explanation *ex = nj_xcalloc(plan->n ? plan->n : 1, sizeof(*ex));
    nj_err err = {0};
    int code = NJ_EXIT_OK;
    if (!cache) {
        /* Nothing ever ran in this workspace. */
        for (size_t i = 0; i < plan->n; i++) {
            const nj_plan_node *node = &plan->nodes[i];
            if (node->nupstream)
                snprintf(ex[i].reason, sizeof(ex[i].reason), "upstream '%s' will run",
                         plan->nodes[node->upstream[0]].stage->name);
            else
                snprintf(ex[i].reason, sizeof(ex[i].reason), "never run");
        }
    } else {
        /* {{models.champion}} renders as the next run would render it. */
        nj_release *rel = NULL;
        if (nj_release_open_readonly(plan->pipeline, st, cache, &rel, &err) < 0 ||
            nj_explain_plan(plan, cache, nj_release_hooks(rel), ex, &err) < 0) {
            cli_error("%s", err.msg);
            code = NJ_EXIT_SYSTEM;
        }
        nj_release_free(rel);
    }
    for (size_t i = 0; i < plan->n && code == NJ_EXIT_OK; i++) {
        const nj_plan_node *node = &plan->nodes[i];
        const char *name = node->stage->name;
        if (only && only->len && !nj_strs_contains(only, name)) continue;
        char label[256];
        if (node->ds && plan->ds && strcmp(node->ds, plan->ds) != 0)
            snprintf(label, sizeof(label), "%s@%s", name, node->ds);
        else
            snprintf(label, sizeof(label), "%s", name);
        printf("%-10s %-24s %s\n", nj_decide_name(ex[i].kind), label, ex[i].reason);
    }
    free(ex);
    return code;
}

int cli_print_explanations(const nj_pipeline *p, const nj_plan *plan, int use_cache)
{
    if (!use_cache) {
        /* (every node would run: dates do not change the answer) */
        for (size_t i = 0; i < plan->n; i++)
            printf("%-10s %-24s %s\n", "run", plan->nodes[i].stage->name, "cache disabled");
        return NJ_EXIT_OK;
    }
    /* The pipeline is the caller's: borrow it for the session, give it back. */
    cli_session s = {.p = (nj_pipeline *)p};
    int code = cli_session_open(&s, 1);
    if (code == NJ_EXIT_OK) code = print_explanations(plan, s.st, s.cache, NULL);
    s.p = NULL;
    cli_session_close(&s);
    return code;
}

static const char why_help[] =
    "usage: nightjar why PIPELINE [STAGE]... [--date YYYY-MM-DD] [--param NAME=VALUE]...\n"
    "\n"
    "Says, for each stage (or the named ones), whether the next run would run it,\n"
    "restore it from the cache, or leave it as it is, and exactly why:\n"
    "    run        train     param 'l2' changed 0.1 \u2192 0.2\n"
    "    cached     features  output 'data/features.csv' missing\n"
    "    up-to-date ingest    unchanged\n"
    "Reasons: never run, cmd changed, dep 'x' changed (sha256 a\u2026 \u2192 b\u2026),\n"
    "param 'x' changed A \u2192 B, code 'x' changed, env 'X' changed, output 'x' missing,\n"
    "upstream 'x' will run, forced. Nothing on disk changes.\n";

int cli_why(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--date", NULL, 1}, {"--param", NULL, 1}};
    cli_args a;
    int code = cli_parse("why", argc, argv, opts, 2, &a);
    if (code < 0) {
        fputs(why_help, stdout);
        cli_args_release(&a);
        return NJ_EXIT_OK;
    }
    if (code) goto out_args;
    if (a.npositional < 1) {
        cli_error("why: expected a PIPELINE file (see 'nightjar why --help')");
        code = NJ_EXIT_USAGE;
        goto out_args;
    }
    nj_err err = {0};
    int32_t days = nj_date_today_local();
    if (cli_value(&a, 0) && nj_date_parse(cli_value(&a, 0), &days, &err) < 0) {
        cli_error("why: --date: %s", err.msg);
        code = NJ_EXIT_USAGE;
        goto out_args;
    }
    char ds[11];
    nj_date_format(days, ds);
    cli_session ss = {0};
    nj_plan *plan = NULL;
    nj_strs only = {0};
    if ((code = cli_session_load(&ss, a.positional[0]))) goto out;
    nj_pipeline *p = ss.p;
    nj_dag *dag = ss.dag;
    if ((code = cli_apply_params(p, &a, 1))) goto out;
    if (!cli_value(&a, 0) && p->partition.enabled) {
        days -= p->partition.lag_days; /* the date `run` would pick */
        nj_date_format(days, ds);
    }
    for (size_t i = 1; i < a.npositional; i++) {
        if (!nj_pipeline_stage(p, a.positional[i])) {
            nj_selection probe = {0};
            nj_strs_push(&probe.only, a.positional[i]);
            nj_plan *tmp = NULL;
            if (nj_plan_build_date(p, dag, ds, &probe, &tmp, &err) < 0)
                cli_error("why: %s", err.msg);
            nj_plan_free(tmp);
            nj_strs_release(&probe.only);
            code = NJ_EXIT_USAGE;
            goto out;
        }
        nj_strs_push(&only, a.positional[i]);
    }
    nj_selection all = {0};
    if (nj_plan_build_date(p, dag, ds, &all, &plan, &err) < 0) {
        cli_error("why: %s", err.msg);
        code = cli_exit_for(err.code);
        goto out;
    }
    code = cli_session_open(&ss, 1);
    if (code == NJ_EXIT_OK) code = print_explanations(plan, ss.st, ss.cache, &only);
out:
    nj_strs_release(&only);
    nj_plan_free(plan);
    cli_session_close(&ss);
out_args:
    cli_args_release(&a);
    return code;
}

static const char gc_help[] =
    "usage: nightjar gc PIPELINE [--keep-runs N | --keep-days D] [--min-age DURATION] [--dry-run]\n"
    "\n"
    "Removes cache entries and objects that no kept run, current output, registered\n"
    "model or published partition needs. Keeps the newest 10 runs by default (the\n"
    "newest one always), and never removes an object younger than --min-age\n"
    "(default 1h: a concurrent run may be storing it). Prints what it freed.\n";

int cli_gc(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--keep-runs", NULL, 1},
                                   {"--keep-days", NULL, 1},
                                   {"--min-age", NULL, 1},
                                   {"--dry-run", NULL, 0}};
    cli_args a;
    int code = cli_parse("gc", argc, argv, opts, 4, &a);
    if (code < 0) {
        fputs(gc_help, stdout);
        cli_args_release(&a);
        return NJ_EXIT_OK;
    }
    if (code) goto out_args;
    code = NJ_EXIT_USAGE;
    if (a.npositional != 1) {
        cli_error("gc: expected one PIPELINE file (see 'nightjar gc --help')");
        goto out_args;
    }
    nj_gc_opts go = {.keep_runs = 10, .min_age_ms = 3600000, .dry_run = cli_flag(&a, 3)};
    nj_err err = {0};
    char *end;
    if (cli_value(&a, 0) && cli_value(&a, 1)) {
        cli_error("gc: give --keep-runs or --keep-days, not both");
        goto out_args;
    }
    if (cli_value(&a, 0) && ((go.keep_runs = (int)strtol(cli_value(&a, 0), &end, 10)) < 1 || *end)) {
        cli_error("gc: --keep-runs takes a positive number, got '%s'", cli_value(&a, 0));
        goto out_args;
    }
    if (cli_value(&a, 1)) {
        go.keep_runs = 0;
        if ((go.keep_days = (int)strtol(cli_value(&a, 1), &end, 10)) < 1 || *end) {
            cli_error("gc: --keep-days takes a positive number, got '%s'", cli_value(&a, 1));
            goto out_args;
        }
    }
    if (cli_value(&a, 2) && nj_duration_parse(cli_value(&a, 2), &go.min_age_ms, &err) < 0) {
        cli_error("gc: --min-age: %s", err.msg);
        goto out_args;
    }
    cli_session s = {0};
    if (!(code = cli_session_load(&s, a.positional[0]))) code = cli_session_open(&s, 1);
    if (code == NJ_EXIT_OK && !s.cache) {
        printf("nothing to collect: '%s' has never run\n", s.p->name);
    } else if (code == NJ_EXIT_OK) {
        nj_gc_report r;
        if (nj_gc_run(s.cache, s.st, s.p->name, s.p->workspace, &go, &r, &err) < 0) {
            cli_error("%s", err.msg);
            code = NJ_EXIT_SYSTEM;
        } else {
            printf("%s %zu object%s (%.1f MB) and %zu cache entr%s; kept %zu runs, %zu entries, "
                   "%zu objects (%zu too recent to judge)\n",
                   go.dry_run ? "would remove" : "removed", r.objects_removed,
                   r.objects_removed == 1 ? "" : "s", (double)r.bytes_removed / 1e6,
                   r.entries_removed, r.entries_removed == 1 ? "y" : "ies", r.runs_kept,
                   r.entries_kept, r.objects_kept, r.objects_too_young);
        }
    }
    cli_session_close(&s);
out_args:
    cli_args_release(&a);
    return code;
}

static const char verify_help[] =
    "usage: nightjar verify PIPELINE [--repair]\n"
    "\n"
    "Rehashes every object in the cache and checks that every cache entry's objects\n"
    "exist. A corrupt object is moved aside (it is never used again). With --repair,\n"
    "entries that need a missing or corrupt object are removed, so the stages that\n"
    "need them are recomputed. Exit 1 when problems remain.\n";

int cli_verify(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--repair", NULL, 0}};
    cli_args a;
    int code = cli_parse("verify", argc, argv, opts, 1, &a);
    if (code < 0) {
        fputs(verify_help, stdout);
        cli_args_release(&a);
        return NJ_EXIT_OK;
    }
    if (code) goto out_args;
    if (a.npositional != 1) {
        cli_error("verify: expected one PIPELINE file (see 'nightjar verify --help')");
        code = NJ_EXIT_USAGE;
        goto out_args;
    }
    cli_session s = {0};
    if (!(code = cli_session_load(&s, a.positional[0]))) code = cli_session_open(&s, 1);
    nj_err err = {0};
    if (code == NJ_EXIT_OK && !s.cache) {
        printf("nothing to verify: '%s' has never run\n", s.p->name);
    } else if (code == NJ_EXIT_OK) {
        nj_verify_report r;
        int repair = cli_flag(&a, 0);
        if (nj_verify_run(s.cache, repair, &r, &err) < 0) {
            cli_error("%s", err.msg);
            code = NJ_EXIT_SYSTEM;
        } else {
            for (size_t i = 0; i < r.problems.len; i++)
                printf("%s\n", r.problems.items[i]);
            printf("checked %zu objects and %zu cache entries: %zu corrupt, %zu entries broken"
                   "%s\n",
                   r.objects_checked, r.entries_checked, r.objects_corrupt, r.entries_broken,
                   repair ? "" : (r.entries_broken ? " (run with --repair)" : ""));
            if (repair) printf("removed %zu broken cache entries\n", r.entries_removed);
            if (r.objects_corrupt || (r.entries_broken && !repair)) code = NJ_EXIT_FAILED;
        }
        nj_strs_release(&r.problems);
    }
    cli_session_close(&s);
out_args:
    cli_args_release(&a);
    return code;
}
