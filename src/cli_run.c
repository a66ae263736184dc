/* cli_run.c - `nightjar run`: lock the workspace, recover from crashed
 * runners, plan, execute, and report progress for people.
 *
 * Progress: on a terminal a status line "[3/12] running: features, train  00:04"
 * is redrawn in place, with finished stages printed above it; off a terminal
 * (cron, systemd) every event is one plain timestamped line, no escape codes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_internal.h"
#include "nightjar/cache.h"
#include "nightjar/exec.h"
#include "nightjar/fs.h"
#include "nightjar/lock.h"
#include "nightjar/plan.h"
#include "nightjar/template.h"
#include "nightjar/util.h"

static const char run_help[] =
    "usage: nightjar run PIPELINE [options]\n"
    "\n"
    "Runs the pipeline's stages for one logical date, in parallel where the graph\n"
    "allows, retrying failed attempts, and records every attempt in the workspace.\n"
    "\n"
    "options:\n"
    "  --date YYYY-MM-DD   the logical date {{ds}} (default: today)\n"
    "  -j, --jobs N        run at most N stages at once (default: number of CPUs)\n"
    "  --only STAGE        run just this stage (repeatable); its inputs must exist\n"
    "  --from STAGE        run this stage and everything downstream of it\n"
    "  --until STAGE       run this stage and everything upstream of it\n"
    "  --force STAGE       rerun this stage even if its result is cached (repeatable)\n"
    "  --force-downstream STAGE  rerun this stage and everything downstream of it\n"
    "  --no-cache          run every selected stage; neither read nor write the cache\n"
    "  --dry-run           print what would run, run nothing\n"
    "  --explain           with --dry-run: say for each stage whether it would run and why\n"
    "  --fail-fast         stop every stage after the first failure\n"
    "  --wait-lock SECONDS wait this long for another run to release the workspace\n"
    "  --grace DURATION    time between SIGTERM and SIGKILL (default 10s)\n"
    "\n"
    "exit codes: 0 success, 1 a stage failed, 2 usage error, 3 invalid pipeline,\n"
    "4 system error, 75 another run holds the workspace, 130 interrupted\n";

enum {
    OPT_DATE, OPT_JOBS, OPT_ONLY, OPT_FROM, OPT_UNTIL, OPT_DRY, OPT_FAILFAST, OPT_WAIT, OPT_GRACE,
    OPT_FORCE, OPT_FORCE_DOWN, OPT_NO_CACHE, OPT_EXPLAIN
};
static const cli_opt run_opts[] = {
    [OPT_DATE] = {"--date", NULL, 1},      [OPT_JOBS] = {"--jobs", "-j", 1},
    [OPT_ONLY] = {"--only", NULL, 1},      [OPT_FROM] = {"--from", NULL, 1},
    [OPT_UNTIL] = {"--until", NULL, 1},    [OPT_DRY] = {"--dry-run", NULL, 0},
    [OPT_FAILFAST] = {"--fail-fast", NULL, 0}, [OPT_WAIT] = {"--wait-lock", NULL, 1},
    [OPT_GRACE] = {"--grace", NULL, 1},     [OPT_FORCE] = {"--force", NULL, 1},
    [OPT_FORCE_DOWN] = {"--force-downstream", NULL, 1}, [OPT_NO_CACHE] = {"--no-cache", NULL, 0},
    [OPT_EXPLAIN] = {"--explain", NULL, 0},
};

typedef struct reporter {
    int tty;
    int line_drawn; /* a status line is on screen and must be cleared first */
    const nj_pipeline *pipeline;
} reporter;

static void stamp(char *out, size_t size)
{
    nj_time_format(nj_time_now_ms(), out, size);
}

static void clear_status(reporter *rp)
{
    if (rp->tty && rp->line_drawn) {
        fputs("\r\033[K", stderr);
        rp->line_drawn = 0;
    }
}

static void draw_status(reporter *rp, const nj_progress *pr)
{
    if (!rp->tty) return;
    char names[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < pr->nrunning_names && used < sizeof(names) - 32; i++)
        used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "",
                                 pr->running_names[i]);
    if (pr->running > pr->nrunning_names)
        snprintf(names + used, sizeof(names) - used, ", +%zu", pr->running - pr->nrunning_names);
    long secs = (long)(pr->elapsed_ms / 1000);
    fprintf(stderr, "\r\033[K[%zu/%zu] %s%s  %02ld:%02ld", pr->done, pr->total,
            pr->running ? "running: " : "", names, secs / 60, secs % 60);
    fflush(stderr);
    rp->line_drawn = 1;
}

/* Prints the last `lines` lines of a log file, indented. */
static void print_log_tail(const char *path, int lines)
{
    char *data = NULL;
    size_t len = 0;
    if (!path || nj_fs_read_file(path, &data, &len, NULL) < 0) return;
    size_t start = len;
    int seen = 0;
    if (start > 0 && data[start - 1] == '\n') start--;
    while (start > 0 && seen < lines) {
        start--;
        if (data[start] == '\n') seen++;
    }
    if (data[start] == '\n') start++;
    if (len > 0) {
        fprintf(stderr, "  last lines of %s:\n", path);
        for (char *line = data + start; *line;) {
            char *nl = strchr(line, '\n');
            size_t n = nl ? (size_t)(nl - line) : strlen(line);
            fprintf(stderr, "  | %.*s\n", (int)n, line);
            if (!nl) break;
            line = nl + 1;
        }
    } else {
        fprintf(stderr, "  (the log %s is empty)\n", path);
    }
    free(data);
}

static void on_event(void *ctx, const nj_event *ev, const nj_progress *pr)
{
    reporter *rp = ctx;
    char ts[32];
    stamp(ts, sizeof(ts));
    char d[32];
    nj_duration_format(ev->duration_ms, d, sizeof(d));
    clear_status(rp);
    switch (ev->kind) {
    case NJ_EVENT_ATTEMPT_START:
        if (!rp->tty) {
            if (ev->attempt > 1)
                fprintf(stderr, "%s start %s (attempt %d)\n", ts, ev->stage, ev->attempt);
            else
                fprintf(stderr, "%s start %s\n", ts, ev->stage);
        }
        break;
    case NJ_EVENT_ATTEMPT_END:
        if (ev->status != NJ_STATUS_SUCCEEDED && ev->status != NJ_STATUS_INTERRUPTED)
            fprintf(stderr, "%s%s%s attempt %d failed: %s\n", rp->tty ? "" : ts, rp->tty ? "" : " ",
                    ev->stage, ev->attempt, ev->reason ? ev->reason : nj_status_name(ev->status));
        break;
    case NJ_EVENT_RETRY: {
        char delay[32];
        nj_duration_format(ev->delay_ms, delay, sizeof(delay));
        fprintf(stderr, "%s%sretrying %s in %s\n", rp->tty ? "" : ts, rp->tty ? "" : " ",
                ev->stage, delay);
        break;
    }
    case NJ_EVENT_NODE_END:
        if (ev->status == NJ_STATUS_SUCCEEDED) {
            fprintf(stderr, "%s%sdone  %s (%s)\n", rp->tty ? "" : ts, rp->tty ? "" : " ",
                    ev->stage, d);
        } else if (ev->status == NJ_STATUS_UP_TO_DATE) {
            /* Unchanged work is the common case: counted in the summary, not listed. */
        } else if (ev->status == NJ_STATUS_CACHED) {
            fprintf(stderr, "%s%scached %s (%s)\n", rp->tty ? "" : ts, rp->tty ? "" : " ",
                    ev->stage, ev->reason ? ev->reason : "restored");
        } else if (ev->status == NJ_STATUS_FAILED) {
            char tries[32] = "";
            if (ev->attempt > 0)
                snprintf(tries, sizeof(tries), " after %d attempt%s", ev->attempt,
                         ev->attempt == 1 ? "" : "s");
            fprintf(stderr, "%s%sFAILED %s%s: %s\n", rp->tty ? "" : ts, rp->tty ? "" : " ",
                    ev->stage, tries, ev->reason ? ev->reason : "failed");
            if (ev->cmd) fprintf(stderr, "  command: %s\n", ev->cmd);
            print_log_tail(ev->log_path, 10);
        } else {
            fprintf(stderr, "%s%s%s %s%s%s\n", rp->tty ? "" : ts, rp->tty ? "" : " ",
                    nj_status_name(ev->status), ev->stage, ev->reason ? ": " : "",
                    ev->reason ? ev->reason : "");
        }
        break;
    case NJ_EVENT_INTERRUPT:
        fprintf(stderr, "%s%sgot signal %d (%s): stopping running stages%s\n", rp->tty ? "" : ts,
                rp->tty ? "" : " ", ev->signal, strsignal(ev->signal),
                pr->running ? "" : "");
        break;
    case NJ_EVENT_CACHE_PROBLEM:
        fprintf(stderr, "%s%swarning: %s: %s\n", rp->tty ? "" : ts, rp->tty ? "" : " ", ev->stage,
                ev->reason);
        break;
    case NJ_EVENT_TICK:
        break;
    }
    draw_status(rp, pr);
}

/* The command line as one shell-quoted string, for the runs table. */
static char *quoted_args(int argc, char **argv)
{
    nj_buf b;
    nj_buf_init(&b);
    nj_buf_puts(&b, "nightjar run");
    for (int i = 0; i < argc; i++) {
        nj_buf_putc(&b, ' ');
        nj_shell_quote(&b, argv[i]);
    }
    return nj_buf_detach(&b);
}

static void print_plan(const nj_plan *plan)
{
    printf("would run %zu stage%s%s%s:\n", plan->n, plan->n == 1 ? "" : "s",
           plan->ds ? " for " : "", plan->ds ? plan->ds : "");
    for (size_t i = 0; i < plan->n; i++) {
        const nj_plan_node *node = &plan->nodes[i];
        printf("  %s", node->stage->name);
        for (size_t j = 0; j < node->nupstream; j++)
            printf("%s%s", j ? ", " : " <- ", plan->nodes[node->upstream[j]].stage->name);
        putchar('\n');
    }
}

static void print_summary(int64_t run_id, const nj_exec_result *res, int64_t ms)
{
    char d[32];
    nj_duration_format(ms, d, sizeof(d));
    fprintf(stderr, "run %lld %s in %s:", (long long)run_id, nj_status_name(res->status), d);
    const char *sep = " ";
    for (int s = 0; s < NJ_STATUS_COUNT; s++) {
        if (!res->counts[s]) continue;
        fprintf(stderr, "%s%d %s", sep, res->counts[s], nj_status_name((nj_status)s));
        sep = ", ";
    }
    if (res->not_run) fprintf(stderr, "%s%zu not run", sep, res->not_run);
    fputc('\n', stderr);
}

int cli_run(int argc, char **argv)
{
    cli_args a;
    int code = cli_parse("run", argc, argv, run_opts, sizeof(run_opts) / sizeof(run_opts[0]), &a);
    if (code < 0) {
        fputs(run_help, stdout);
        cli_args_release(&a);
        return NJ_EXIT_OK;
    }
    if (code) goto out_args;
    code = NJ_EXIT_USAGE;
    if (a.npositional != 1) {
        cli_error("run: expected one PIPELINE file (see 'nightjar run --help')");
        goto out_args;
    }
    nj_err err = {0};
    char ds[11];
    const char *date = cli_value(&a, OPT_DATE);
    int32_t days;
    if (date) {
        if (nj_date_parse(date, &days, &err) < 0) {
            cli_error("run: --date: %s", err.msg);
            goto out_args;
        }
    } else {
        days = nj_date_today_local();
    }
    nj_date_format(days, ds);
    int jobs = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (jobs < 1) jobs = 1;
    if (cli_value(&a, OPT_JOBS)) {
        char *end;
        long j = strtol(cli_value(&a, OPT_JOBS), &end, 10);
        if (*end || j < 1 || j > 4096) {
            cli_error("run: --jobs must be a whole number from 1 to 4096, got '%s'",
                      cli_value(&a, OPT_JOBS));
            goto out_args;
        }
        jobs = (int)j;
    }
    int64_t wait_ms = 0, grace_ms = 10000;
    if (cli_value(&a, OPT_WAIT)) {
        char *end;
        double s = strtod(cli_value(&a, OPT_WAIT), &end);
        if (*end || s < 0) {
            cli_error("run: --wait-lock takes a number of seconds, got '%s'",
                      cli_value(&a, OPT_WAIT));
            goto out_args;
        }
        wait_ms = (int64_t)(s * 1000);
    }
    if (cli_value(&a, OPT_GRACE) && nj_duration_parse(cli_value(&a, OPT_GRACE), &grace_ms, &err) < 0) {
        cli_error("run: --grace: %s", err.msg);
        goto out_args;
    }
    nj_selection sel = {0};
    for (size_t i = 0; i < a.nvalues; i++) {
        if (a.which[i] == OPT_ONLY) nj_strs_push(&sel.only, a.values[i]);
        if (a.which[i] == OPT_FROM) nj_strs_push(&sel.from, a.values[i]);
        if (a.which[i] == OPT_UNTIL) nj_strs_push(&sel.until, a.values[i]);
        if (a.which[i] == OPT_FORCE) nj_strs_push(&sel.force, a.values[i]);
        if (a.which[i] == OPT_FORCE_DOWN) nj_strs_push(&sel.force_downstream, a.values[i]);
    }

    nj_pipeline *p = NULL;
    nj_dag *dag = NULL;
    nj_plan *plan = NULL;
    nj_lock *lock = NULL;
    nj_state *st = NULL;
    nj_cache *cache = NULL;
    char *ws_lock = NULL, *ws_state = NULL, *ws_logs = NULL, *args = NULL;
    code = cli_load(a.positional[0], &p, &dag);
    if (code) goto out;
    int rc = nj_plan_build_date(p, dag, ds, &sel, &plan, &err);
    if (rc < 0) {
        cli_error("run: %s", err.msg);
        code = cli_exit_for(rc);
        goto out;
    }
    if (cli_flag(&a, OPT_EXPLAIN) && !cli_flag(&a, OPT_DRY)) {
        cli_error("run: --explain goes with --dry-run (or use 'nightjar why')");
        code = NJ_EXIT_USAGE;
        goto out;
    }
    if (cli_flag(&a, OPT_DRY)) {
        code = cli_flag(&a, OPT_EXPLAIN) ? cli_print_explanations(p, plan, !cli_flag(&a, OPT_NO_CACHE))
                                         : (print_plan(plan), NJ_EXIT_OK);
        goto out;
    }

    ws_lock = cli_workspace_path(p, "lock");
    ws_state = cli_workspace_path(p, "state.db");
    ws_logs = cli_workspace_path(p, "logs");
    if ((rc = nj_fs_mkdirs(p->workspace, &err)) < 0 ||
        (rc = nj_lock_acquire(ws_lock, wait_ms, &lock, &err)) < 0 ||
        (rc = nj_state_open(ws_state, &st, &err)) < 0) {
        cli_error("%s", err.msg);
        code = cli_exit_for(rc);
        goto out;
    }
    int recovered = 0;
    if ((rc = nj_state_recover(st, &recovered, &err)) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
        goto out;
    }
    if (!cli_flag(&a, OPT_NO_CACHE) && (rc = nj_cache_open(p, st, &cache, &err)) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
        goto out;
    }
    if (recovered)
        cli_warn("%d attempt%s of an earlier run that died %s marked crashed", recovered,
                 recovered == 1 ? "" : "s", recovered == 1 ? "was" : "were");

    int64_t run_id;
    args = quoted_args(argc, argv);
    if ((rc = nj_state_run_begin(st, p->name, p->file, ds, args, &run_id, &err)) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
        goto out;
    }
    reporter rp = {.tty = cli_stderr_is_tty(), .pipeline = p};
    if (!rp.tty) {
        char ts[32];
        stamp(ts, sizeof(ts));
        fprintf(stderr, "%s run %lld of '%s' for %s: %zu stage%s, -j %d\n", ts,
                (long long)run_id, p->name, ds, plan->n, plan->n == 1 ? "" : "s", jobs);
    }
    nj_exec_opts eo = {
        .jobs = jobs,
        .fail_fast = cli_flag(&a, OPT_FAILFAST),
        .kill_grace_ms = grace_ms,
        .logs_dir = ws_logs,
        .state_path = ws_state,
        .run_id = run_id,
        .cache = cache,
        .report = on_event,
        .report_ctx = &rp,
    };
    nj_exec_result res;
    int64_t t0 = nj_time_mono_ms();
    rc = nj_exec_run(plan, st, &eo, &res, &err);
    clear_status(&rp);
    if (rc < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
        nj_state_run_end(st, run_id, NJ_STATUS_FAILED, code, NULL);
        goto out;
    }
    code = res.status == NJ_STATUS_SUCCEEDED     ? NJ_EXIT_OK
           : res.status == NJ_STATUS_INTERRUPTED ? NJ_EXIT_INTERRUPTED
                                                 : NJ_EXIT_FAILED;
    print_summary(run_id, &res, nj_time_mono_ms() - t0);
    if ((rc = nj_state_run_end(st, run_id, res.status, code, &err)) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
    }
out:
    free(args);
    free(ws_lock);
    free(ws_state);
    free(ws_logs);
    nj_cache_free(cache);
    nj_state_close(st);
    nj_lock_release(lock);
    nj_plan_free(plan);
    nj_dag_free(dag);
    nj_pipeline_free(p);
    nj_strs_release(&sel.only);
    nj_strs_release(&sel.from);
    nj_strs_release(&sel.until);
    nj_strs_release(&sel.force);
    nj_strs_release(&sel.force_downstream);
out_args:
    cli_args_release(&a);
    return code;
}
