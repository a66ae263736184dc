/* cli_run.c - `nightjar run`: lock the workspace, recover from crashed
 * runners, plan, execute, and report progress for people.
 *
 * Progress: on a terminal a status line "[3/12] running: features, train  00:04"
 * is redrawn in place, with finished stages printed above it; off a terminal
 * (cron, systemd) every event is one plain timestamped line, no escape codes. */
#include <errno.h>
#include <sqlite3.h>
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
#include "nightjar/release.h"
#include "nightjar/template.h"
#include "nightjar/util.h"

static const char run_help[] =
    "usage: nightjar run PIPELINE [options]\n"
    "\n"
    "Runs the pipeline's stages for one logical date, in parallel where the graph\n"
    "allows, retrying failed attempts, and records every attempt in the workspace.\n"
    "\n"
    "options:\n"
    "  --date YYYY-MM-DD   the logical date {{ds}} (default: today minus partition.lag)\n"
    "  --param NAME=VALUE  override a pipeline param for this run (repeatable)\n"
    "  --no-upstream       do not compute window dates before --date; require their outputs\n"
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
    "  --metrics-file PATH write a Prometheus textfile (node_exporter) about this run\n"
    "\n"
    "exit codes: 0 success, 1 a stage or a publish failed, 2 usage error, 3 invalid\n"
    "pipeline, 4 system error, 5 a candidate model was held by its gate (the champion\n"
    "kept scoring), 75 another run holds the workspace, 130 interrupted\n";

enum {
    OPT_DATE, OPT_JOBS, OPT_ONLY, OPT_FROM, OPT_UNTIL, OPT_DRY, OPT_FAILFAST, OPT_WAIT, OPT_GRACE,
    OPT_FORCE, OPT_FORCE_DOWN, OPT_NO_CACHE, OPT_EXPLAIN, OPT_NO_UPSTREAM, OPT_PARAM, OPT_METRICS
};
static const cli_opt run_opts[] = {
    [OPT_DATE] = {"--date", NULL, 1},      [OPT_JOBS] = {"--jobs", "-j", 1},
    [OPT_ONLY] = {"--only", NULL, 1},      [OPT_FROM] = {"--from", NULL, 1},
    [OPT_UNTIL] = {"--until", NULL, 1},    [OPT_DRY] = {"--dry-run", NULL, 0},
    [OPT_FAILFAST] = {"--fail-fast", NULL, 0}, [OPT_WAIT] = {"--wait-lock", NULL, 1},
    [OPT_GRACE] = {"--grace", NULL, 1},     [OPT_FORCE] = {"--force", NULL, 1},
    [OPT_FORCE_DOWN] = {"--force-downstream", NULL, 1}, [OPT_NO_CACHE] = {"--no-cache", NULL, 0},
    [OPT_EXPLAIN] = {"--explain", NULL, 0}, [OPT_NO_UPSTREAM] = {"--no-upstream", NULL, 0},
    [OPT_METRICS] = {"--metrics-file", NULL, 1},
    [OPT_PARAM] = {"--param", NULL, 1},
};

typedef struct reporter {
    int tty;
    int backfill; /* several dates: show dates done and an ETA */
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
    if (rp->backfill && pr->dates_total) {
        char eta[32] = "--:--";
        if (pr->dates_done) {
            long left = (long)(pr->elapsed_ms / 1000 * (int64_t)(pr->dates_total - pr->dates_done) /
                               (int64_t)pr->dates_done);
            snprintf(eta, sizeof(eta), "%02ld:%02ld", left / 60, left % 60);
        }
        fprintf(stderr, "\r\033[K[dates %zu/%zu] [stages %zu/%zu] %zu failed, ETA %s  %s%s",
                pr->dates_done, pr->dates_total, pr->done, pr->total, pr->failed, eta,
                pr->running ? "running: " : "", names);
    } else {
        fprintf(stderr, "\r\033[K[%zu/%zu] %s%s  %02ld:%02ld", pr->done, pr->total,
                pr->running ? "running: " : "", names, secs / 60, secs % 60);
    }
    fflush(stderr);
    rp->line_drawn = 1;
}

/* Prints the last `lines` lines of a log file, indented. */
static void print_log_tail(const char *path, int lines)
{
    char *data = NULL;
    size_t len = 0;
    if (!path) return;
    if (!nj_fs_exists(path)) { /* created on the first byte: the stage printed nothing */
        fprintf(stderr, "  (the stage printed nothing)\n");
        return;
    }
    if (nj_fs_read_file(path, &data, &len, NULL) < 0) return;
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
    case NJ_EVENT_DATE_END:
        if (!rp->tty && rp->backfill) {
            long left = pr->dates_done ? (long)(pr->elapsed_ms / 1000 *
                                                (int64_t)(pr->dates_total - pr->dates_done) /
                                                (int64_t)pr->dates_done)
                                       : 0;
            fprintf(stderr,
                    "%s date %s finished: %zu of %zu dates done, %zu running, %zu stages failed,"
                    " ETA %02ld:%02ld\n",
                    ts, ev->ds, pr->dates_done, pr->dates_total, pr->running, pr->failed,
                    left / 60, left % 60);
        }
        break;
    }
    draw_status(rp, pr);
}

/* The command line as one shell-quoted string, for the runs table. */
static char *quoted_args(const char *verb, int argc, char **argv)
{
    nj_buf b;
    nj_buf_init(&b);
    nj_buf_printf(&b, "nightjar %s", verb);
    for (int i = 0; i < argc; i++) {
        nj_buf_putc(&b, ' ');
        nj_shell_quote(&b, argv[i]);
    }
    return nj_buf_detach(&b);
}

/* "train", or "train@2001-03-01" for a node of another date than the run's. */
static void node_label(const nj_plan *plan, const nj_plan_node *node, char *out, size_t size)
{
    if (node->ds && plan->ds && (plan->nrequested > 1 || strcmp(node->ds, plan->ds) != 0))
        snprintf(out, size, "%s@%s", node->stage->name, node->ds);
    else
        snprintf(out, size, "%s", node->stage->name);
}

static void print_plan(const nj_plan *plan)
{
    printf("would run %zu stage%s%s%s:\n", plan->n, plan->n == 1 ? "" : "s",
           plan->ds ? " for " : "", plan->ds ? plan->ds : "");
    for (size_t i = 0; i < plan->n; i++) {
        const nj_plan_node *node = &plan->nodes[i];
        char label[256];
        node_label(plan, node, label, sizeof(label));
        printf("  %s", label);
        for (size_t j = 0; j < node->nupstream; j++) {
            node_label(plan, &plan->nodes[node->upstream[j]], label, sizeof(label));
            printf("%s%s", j ? ", " : " <- ", label);
        }
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

/* ---- shared by run and backfill ------------------------------------------- */

/* Parsed flags common to run and backfill. */
typedef struct run_flags {
    int jobs;
    int64_t wait_ms, grace_ms;
    nj_selection sel;
} run_flags;

static void run_flags_release(run_flags *f)
{
    nj_strs_release(&f->sel.only);
    nj_strs_release(&f->sel.from);
    nj_strs_release(&f->sel.until);
    nj_strs_release(&f->sel.force);
    nj_strs_release(&f->sel.force_downstream);
}

/* Reads -j, --wait-lock, --grace and the selection flags (option indexes
 * given by the verb). Returns 0 or NJ_EXIT_USAGE (message printed). */
static int parse_run_flags(const char *verb, const cli_args *a, int opt_jobs, int opt_wait,
                           int opt_grace, const int sel_opts[5], run_flags *f)
{
    memset(f, 0, sizeof(*f));
    nj_err err = {0};
    f->jobs = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (f->jobs < 1) f->jobs = 1;
    f->grace_ms = 10000;
    if (cli_value(a, opt_jobs)) {
        char *end;
        long j = strtol(cli_value(a, opt_jobs), &end, 10);
        if (*end || j < 1 || j > 4096) {
            cli_error("%s: --jobs must be a whole number from 1 to 4096, got '%s'", verb,
                      cli_value(a, opt_jobs));
            return NJ_EXIT_USAGE;
        }
        f->jobs = (int)j;
    }
    if (cli_value(a, opt_wait)) {
        char *end;
        double secs = strtod(cli_value(a, opt_wait), &end);
        if (*end || secs < 0) {
            cli_error("%s: --wait-lock takes a number of seconds, got '%s'", verb,
                      cli_value(a, opt_wait));
            return NJ_EXIT_USAGE;
        }
        f->wait_ms = (int64_t)(secs * 1000);
    }
    if (cli_value(a, opt_grace) &&
        nj_duration_parse(cli_value(a, opt_grace), &f->grace_ms, &err) < 0) {
        cli_error("%s: --grace: %s", verb, err.msg);
        return NJ_EXIT_USAGE;
    }
    nj_strs *lists[5] = {&f->sel.only, &f->sel.from, &f->sel.until, &f->sel.force,
                         &f->sel.force_downstream};
    for (size_t i = 0; i < a->nvalues; i++)
        for (int k = 0; k < 5; k++)
            if (sel_opts[k] >= 0 && a->which[i] == sel_opts[k]) nj_strs_push(lists[k], a->values[i]);
    return 0;
}

/* What a run holds while it works: the workspace lock, state and cache. */
typedef struct workspace {
    nj_lock *lock;
    nj_state *st;
    nj_cache *cache;
    char *state_path, *logs_dir;
} workspace;

static void workspace_close(workspace *ws)
{
    nj_cache_free(ws->cache);
    nj_state_close(ws->st);
    nj_lock_release(ws->lock);
    free(ws->state_path);
    free(ws->logs_dir);
    memset(ws, 0, sizeof(*ws));
}

/* Locks the workspace, opens state and cache, and recovers what a dead
 * runner left. Returns an exit code (messages printed). */
static int workspace_open(const nj_pipeline *p, int64_t wait_ms, int use_cache, workspace *ws)
{
    memset(ws, 0, sizeof(*ws));
    nj_err err = {0};
    char *lock_path = cli_workspace_path(p, "lock");
    ws->state_path = cli_workspace_path(p, "state.db");
    ws->logs_dir = cli_workspace_path(p, "logs");
    int rc;
    if ((rc = nj_fs_mkdirs(p->workspace, &err)) < 0 ||
        (rc = nj_lock_acquire(lock_path, wait_ms, &ws->lock, &err)) < 0 ||
        (rc = nj_state_open(ws->state_path, &ws->st, &err)) < 0) {
        free(lock_path);
        cli_error("%s", err.msg);
        return cli_exit_for(rc);
    }
    free(lock_path);
    int recovered = 0;
    if ((rc = nj_state_recover(ws->st, &recovered, &err)) < 0 ||
        (use_cache && (rc = nj_cache_open(p, ws->st, &ws->cache, &err)) < 0)) {
        cli_error("%s", err.msg);
        return NJ_EXIT_SYSTEM;
    }
    if (recovered)
        cli_warn("%d attempt%s of an earlier run that died %s marked crashed", recovered,
                 recovered == 1 ? "" : "s", recovered == 1 ? "was" : "were");
    return NJ_EXIT_OK;
}

/* Records a run, executes the plan and records its end. `label` is the
 * run's date or date range. *result is filled when the plan ran. */
/* A release note (gate verdict, publish) above the status line. */
static void on_release_note(void *ctx, const char *line)
{
    reporter *rp = ctx;
    clear_status(rp);
    if (rp->tty) {
        fprintf(stderr, "%s\n", line);
    } else {
        char ts[32];
        stamp(ts, sizeof(ts));
        fprintf(stderr, "%s %s\n", ts, line);
    }
}

/* The Prometheus textfile of a run (node_exporter's textfile collector),
 * written atomically so the collector never reads half a file. */
static int write_metrics_file(const char *path, const nj_pipeline *p, nj_state *st, int64_t run_id,
                              const nj_exec_result *res, const nj_release_summary *rs, int code,
                              int64_t duration_ms)
{
    double last_success = 0;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(nj_state_db(st),
                           "SELECT max(ended_ms) FROM runs WHERE pipeline = ? AND exit_code IN (0, 5)",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, p->name, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW) last_success = (double)sqlite3_column_int64(q, 0) / 1000.0;
        sqlite3_finalize(q);
    }
    nj_buf b;
    nj_buf_init(&b);
    const char *pl = p->name;
#define GAUGE(name, help) nj_buf_printf(&b, "# HELP " name " " help "\n# TYPE " name " gauge\n")
    GAUGE("nightjar_last_success_timestamp_seconds",
          "End of the newest run that succeeded (exit 0, or 5 with a held model).");
    nj_buf_printf(&b, "nightjar_last_success_timestamp_seconds{pipeline=\"%s\"} %.3f\n", pl,
                  last_success);
    GAUGE("nightjar_last_run_exit_code", "Exit code of the last run (see nightjar --help).");
    nj_buf_printf(&b, "nightjar_last_run_exit_code{pipeline=\"%s\"} %d\n", pl, code);
    GAUGE("nightjar_last_run_id", "Id of the last run in the workspace state database.");
    nj_buf_printf(&b, "nightjar_last_run_id{pipeline=\"%s\"} %lld\n", pl, (long long)run_id);
    GAUGE("nightjar_last_run_duration_seconds", "Wall time of the last run.");
    nj_buf_printf(&b, "nightjar_last_run_duration_seconds{pipeline=\"%s\"} %.3f\n", pl,
                  (double)duration_ms / 1000.0);
    GAUGE("nightjar_last_run_stages", "Stage instances of the last run by outcome.");
    static const nj_status shown[] = {NJ_STATUS_SUCCEEDED, NJ_STATUS_CACHED, NJ_STATUS_UP_TO_DATE,
                                      NJ_STATUS_FAILED, NJ_STATUS_UPSTREAM_FAILED};
    for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
        nj_buf_printf(&b, "nightjar_last_run_stages{pipeline=\"%s\",outcome=\"%s\"} %d\n", pl,
                      nj_status_name(shown[i]), res->counts[shown[i]]);
    GAUGE("nightjar_last_run_rows_published", "Rows the last run published to the serving database.");
    nj_buf_printf(&b, "nightjar_last_run_rows_published{pipeline=\"%s\"} %lld\n", pl,
                  (long long)rs->rows_published);
    GAUGE("nightjar_last_run_publish_failures", "Table dates the last run failed to publish.");
    nj_buf_printf(&b, "nightjar_last_run_publish_failures{pipeline=\"%s\"} %d\n", pl,
                  rs->publish_failed);
    GAUGE("nightjar_last_run_gate_held",
          "1 when the last run's gate held a candidate model, 0 when it passed; absent without a verdict.");
    if (rs->gates) nj_buf_printf(&b, "nightjar_last_run_gate_held{pipeline=\"%s\"} %d\n", pl, rs->held > 0);
#undef GAUGE
    nj_err err = {0};
    int rc = nj_fs_write_atomic(path, b.data, b.len, &err);
    nj_buf_release(&b);
    if (rc < 0) {
        cli_error("--metrics-file: %s", err.msg);
        return NJ_EXIT_SYSTEM;
    }
    return NJ_EXIT_OK;
}

static int execute_plan(const nj_pipeline *p, const nj_plan *plan, workspace *ws,
                        const run_flags *f, int fail_fast, int max_active_dates,
                        const char *label, const char *args, const char *metrics_file,
                        int64_t *run_id_out, nj_exec_result *res)
{
    nj_err err = {0};
    int64_t run_id;
    if (nj_state_run_begin(ws->st, p->name, p->file, label, args, &run_id, &err) < 0) {
        cli_error("%s", err.msg);
        return NJ_EXIT_SYSTEM;
    }
    *run_id_out = run_id;
    for (size_t i = 0; i < plan->warnings.len; i++)
        cli_warn("%s", plan->warnings.items[i]);
    reporter rp = {.tty = cli_stderr_is_tty(), .pipeline = p, .backfill = plan->nrequested > 1};
    if (!rp.tty) {
        char ts[32];
        stamp(ts, sizeof(ts));
        fprintf(stderr, "%s run %lld of '%s' for %s: %zu stage%s%s, -j %d\n", ts,
                (long long)run_id, p->name, label, plan->n, plan->n == 1 ? "" : "s",
                plan->ndates > 1 ? " over several dates" : "", f->jobs);
    }
    nj_release *rel = NULL;
    if (nj_release_open(p, ws->st, ws->cache, run_id, on_release_note, &rp, &rel, &err) < 0) {
        cli_error("%s", err.msg);
        nj_state_run_end(ws->st, run_id, NJ_STATUS_FAILED, NJ_EXIT_SYSTEM, NULL);
        return NJ_EXIT_SYSTEM;
    }
    nj_exec_opts eo = {
        .jobs = f->jobs,
        .max_active_dates = max_active_dates,
        .fail_fast = fail_fast,
        .kill_grace_ms = f->grace_ms,
        .logs_dir = ws->logs_dir,
        .state_path = ws->state_path,
        .run_id = run_id,
        .cache = ws->cache,
        .report = on_event,
        .report_ctx = &rp,
        .hooks = nj_release_hooks(rel),
    };
    int64_t t0 = nj_time_mono_ms();
    int rc = nj_exec_run(plan, ws->st, &eo, res, &err);
    clear_status(&rp);
    if (rc < 0) {
        cli_error("%s", err.msg);
        nj_state_run_end(ws->st, run_id, NJ_STATUS_FAILED, NJ_EXIT_SYSTEM, NULL);
        nj_release_free(rel);
        return NJ_EXIT_SYSTEM;
    }
    /* Dates whose source stage ended well publish even when another date
     * failed; an interrupted run publishes nothing more (the next run will). */
    nj_status status = res->status;
    if (status != NJ_STATUS_INTERRUPTED && nj_release_publish(rel, &err) < 0)
        status = NJ_STATUS_FAILED;
    const nj_release_summary *rs = nj_release_summary_of(rel);
    int code = status == NJ_STATUS_SUCCEEDED     ? (rs->held ? NJ_EXIT_HELD : NJ_EXIT_OK)
               : status == NJ_STATUS_INTERRUPTED ? NJ_EXIT_INTERRUPTED
                                                 : NJ_EXIT_FAILED;
    int64_t duration_ms = nj_time_mono_ms() - t0;
    print_summary(run_id, res, duration_ms);
    if (rs->held)
        fprintf(stderr, "%d candidate model%s held by the gate; the champion kept scoring (exit 5)\n",
                rs->held, rs->held == 1 ? " was" : "s were");
    if (rs->publish_failed)
        fprintf(stderr, "%d publish%s failed; the tables keep their earlier rows\n",
                rs->publish_failed, rs->publish_failed == 1 ? "" : "es");
    if (nj_state_run_end(ws->st, run_id, status, code, &err) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
    }
    if (metrics_file &&
        write_metrics_file(metrics_file, p, ws->st, run_id, res, rs, code, duration_ms) != 0 &&
        code == NJ_EXIT_OK)
        code = NJ_EXIT_SYSTEM;
    nj_release_free(rel);
    return code;
}

int cli_apply_params(nj_pipeline *p, const cli_args *a, int opt)
{
    nj_err err = {0};
    for (size_t i = 0; i < a->nvalues; i++) {
        if (a->which[i] != opt) continue;
        if (nj_pipeline_set_param(p, a->values[i], &err) < 0) {
            cli_error("%s: %s", a->verb, err.msg);
            return NJ_EXIT_USAGE;
        }
    }
    return NJ_EXIT_OK;
}

/* The run's default date: today, minus the partition's lag. */
static int32_t default_day(const nj_pipeline *p)
{
    return nj_date_today_local() - (p->partition.enabled ? p->partition.lag_days : 0);
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
    int32_t days = 0;
    const char *date = cli_value(&a, OPT_DATE);
    if (date && nj_date_parse(date, &days, &err) < 0) {
        cli_error("run: --date: %s", err.msg);
        goto out_args;
    }
    static const int sel_opts[5] = {OPT_ONLY, OPT_FROM, OPT_UNTIL, OPT_FORCE, OPT_FORCE_DOWN};
    run_flags f;
    if ((code = parse_run_flags("run", &a, OPT_JOBS, OPT_WAIT, OPT_GRACE, sel_opts, &f))) {
        run_flags_release(&f);
        goto out_args;
    }
    nj_pipeline *p = NULL;
    nj_dag *dag = NULL;
    nj_plan *plan = NULL;
    workspace ws = {0};
    char *args = NULL;
    code = cli_load(a.positional[0], &p, &dag);
    if (code) goto out;
    if ((code = cli_apply_params(p, &a, OPT_PARAM))) goto out;
    if (!date) days = default_day(p);
    nj_plan_opts po = {.dates = &days, .ndates = 1, .no_upstream = cli_flag(&a, OPT_NO_UPSTREAM)};
    int rc = nj_plan_build(p, dag, &po, &f.sel, &plan, &err);
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
    if ((code = workspace_open(p, f.wait_ms, !cli_flag(&a, OPT_NO_CACHE), &ws))) goto out;
    args = quoted_args("run", argc, argv);
    int64_t run_id;
    nj_exec_result res;
    code = execute_plan(p, plan, &ws, &f, cli_flag(&a, OPT_FAILFAST), 0, plan->ds, args,
                        cli_value(&a, OPT_METRICS), &run_id, &res);
out:
    free(args);
    workspace_close(&ws);
    nj_plan_free(plan);
    nj_dag_free(dag);
    nj_pipeline_free(p);
    run_flags_release(&f);
out_args:
    cli_args_release(&a);
    return code;
}

/* ---- backfill ------------------------------------------------------------------ */

static const char backfill_help[] =
    "usage: nightjar backfill PIPELINE --from YYYY-MM-DD --to YYYY-MM-DD [options]\n"
    "\n"
    "Runs a range of dates as one graph: a (stage, date) shared by several dates'\n"
    "windows runs once. Oldest dates first (--backwards: newest first). Running the\n"
    "same command again resumes the backfill; finished dates are kept.\n"
    "\n"
    "options:\n"
    "  -j, --jobs N              at most N stages at once (default: number of CPUs)\n"
    "  --max-active-dates K      at most K dates in flight (default: unlimited)\n"
    "  --reprocess POLICY        missing (default): dates without a successful run, except\n"
    "                            dates that failed; failed: those too; all: every date\n"
    "                            (still using the cache)\n"
    "  --backwards               newest dates first\n"
    "  --only STAGE, --until STAGE, --from-stage STAGE   select stages as for run\n"
    "  --no-upstream             never compute window dates outside the range\n"
    "  --param NAME=VALUE        override a pipeline param (repeatable; part of the identity)\n"
    "  --dry-run                 list the dates and how many stages would run\n"
    "  --fail-fast, --wait-lock SECONDS, --grace DURATION, --metrics-file PATH   as for run\n"
    "\n"
    "Progress and per-date status: nightjar status PIPELINE --backfill ID\n";

enum {
    BF_FROM, BF_TO, BF_JOBS, BF_MAX_ACTIVE, BF_REPROCESS, BF_BACKWARDS, BF_ONLY, BF_UNTIL,
    BF_FROM_STAGE, BF_DRY, BF_FAILFAST, BF_WAIT, BF_GRACE, BF_NO_UPSTREAM, BF_PARAM, BF_METRICS
};
static const cli_opt backfill_opts[] = {
    [BF_FROM] = {"--from", NULL, 1},           [BF_TO] = {"--to", NULL, 1},
    [BF_JOBS] = {"--jobs", "-j", 1},           [BF_MAX_ACTIVE] = {"--max-active-dates", NULL, 1},
    [BF_REPROCESS] = {"--reprocess", NULL, 1}, [BF_BACKWARDS] = {"--backwards", NULL, 0},
    [BF_ONLY] = {"--only", NULL, 1},           [BF_UNTIL] = {"--until", NULL, 1},
    [BF_FROM_STAGE] = {"--from-stage", NULL, 1}, [BF_DRY] = {"--dry-run", NULL, 0},
    [BF_FAILFAST] = {"--fail-fast", NULL, 0},  [BF_WAIT] = {"--wait-lock", NULL, 1},
    [BF_GRACE] = {"--grace", NULL, 1},         [BF_NO_UPSTREAM] = {"--no-upstream", NULL, 0},
    [BF_PARAM] = {"--param", NULL, 1},         [BF_METRICS] = {"--metrics-file", NULL, 1},
};

/* The names of the partitioned stages a selection covers: a date is done
 * when all of them succeeded on it. */
static size_t dated_stages(const nj_pipeline *p, const nj_plan *probe, const char **names)
{
    size_t n = 0;
    for (size_t i = 0; i < probe->n; i++) {
        const nj_plan_node *node = &probe->nodes[i];
        if (!node->ds || node->extra) continue;
        int seen = 0;
        for (size_t k = 0; k < n && !seen; k++)
            seen = strcmp(names[k], node->stage->name) == 0;
        if (!seen) names[n++] = node->stage->name;
    }
    (void)p;
    return n;
}

int cli_backfill(int argc, char **argv)
{
    cli_args a;
    int code = cli_parse("backfill", argc, argv, backfill_opts,
                         sizeof(backfill_opts) / sizeof(backfill_opts[0]), &a);
    if (code < 0) {
        fputs(backfill_help, stdout);
        cli_args_release(&a);
        return NJ_EXIT_OK;
    }
    if (code) goto out_args;
    code = NJ_EXIT_USAGE;
    nj_err err = {0};
    if (a.npositional != 1 || !cli_value(&a, BF_FROM) || !cli_value(&a, BF_TO)) {
        cli_error("backfill: expected PIPELINE --from DATE --to DATE (see 'nightjar backfill --help')");
        goto out_args;
    }
    int32_t from, to;
    if (nj_date_parse(cli_value(&a, BF_FROM), &from, &err) < 0 ||
        nj_date_parse(cli_value(&a, BF_TO), &to, &err) < 0) {
        cli_error("backfill: %s", err.msg);
        goto out_args;
    }
    if (from > to) {
        cli_error("backfill: --from %s is after --to %s", cli_value(&a, BF_FROM),
                  cli_value(&a, BF_TO));
        goto out_args;
    }
    const char *policy = cli_value(&a, BF_REPROCESS) ? cli_value(&a, BF_REPROCESS) : "missing";
    if (strcmp(policy, "missing") && strcmp(policy, "failed") && strcmp(policy, "all")) {
        cli_error("backfill: --reprocess takes missing, failed or all, got '%s'", policy);
        goto out_args;
    }
    int max_active = 0;
    if (cli_value(&a, BF_MAX_ACTIVE)) {
        char *end;
        long k = strtol(cli_value(&a, BF_MAX_ACTIVE), &end, 10);
        if (*end || k < 1) {
            cli_error("backfill: --max-active-dates takes a positive number, got '%s'",
                      cli_value(&a, BF_MAX_ACTIVE));
            goto out_args;
        }
        max_active = (int)k;
    }
    static const int sel_opts[5] = {BF_ONLY, BF_FROM_STAGE, BF_UNTIL, -1, -1};
    run_flags f;
    if ((code = parse_run_flags("backfill", &a, BF_JOBS, BF_WAIT, BF_GRACE, sel_opts, &f))) {
        run_flags_release(&f);
        goto out_args;
    }
    nj_pipeline *p = NULL;
    nj_dag *dag = NULL;
    nj_plan *plan = NULL, *probe = NULL;
    workspace ws = {0};
    char *args = NULL;
    int32_t *dates = NULL;
    const char **stage_names = NULL;
    code = cli_load(a.positional[0], &p, &dag);
    if (code) goto out;
    if ((code = cli_apply_params(p, &a, BF_PARAM))) goto out;
    code = NJ_EXIT_USAGE;
    if (!p->partition.enabled) {
        cli_error("backfill: pipeline '%s' has no 'partition:' section", p->name);
        goto out;
    }
    if (from < p->partition.start) {
        char start[11];
        nj_date_format(p->partition.start, start);
        cli_warn("backfill starts at the partition start %s, not %s", start,
                 cli_value(&a, BF_FROM));
        from = p->partition.start;
        if (from > to) goto out;
    }
    /* One date's plan tells which partitioned stages make a date complete. */
    nj_plan_opts one = {.dates = &from, .ndates = 1};
    if (nj_plan_build(p, dag, &one, &f.sel, &probe, &err) < 0) {
        cli_error("backfill: %s", err.msg);
        code = cli_exit_for(err.code);
        goto out;
    }
    stage_names = nj_xcalloc(probe->n ? probe->n : 1, sizeof(char *));
    size_t nstage_names = dated_stages(p, probe, stage_names);

    if ((code = workspace_open(p, f.wait_ms, 1, &ws))) goto out;
    args = quoted_args("backfill", argc, argv);
    /* The backfill's identity: what it covers and how, not -j or lock waits. */
    nj_buf key;
    nj_buf_init(&key);
    nj_buf_printf(&key, "%s..%s reprocess=%s%s", cli_value(&a, BF_FROM), cli_value(&a, BF_TO),
                  policy, cli_flag(&a, BF_BACKWARDS) ? " backwards" : "");
    for (size_t i = 0; i < a.nvalues; i++)
        if (a.which[i] == BF_ONLY || a.which[i] == BF_UNTIL || a.which[i] == BF_FROM_STAGE ||
            a.which[i] == BF_PARAM)
            nj_buf_printf(&key, " %s=%s", backfill_opts[a.which[i]].name, a.values[i]);
    char from_ds[11], to_ds[11];
    nj_date_format(from, from_ds);
    nj_date_format(to, to_ds);
    int64_t bf_id;
    int resumed;
    int rc = nj_state_backfill_open(ws.st, p->name, key.data, from_ds, to_ds, args, &bf_id,
                                    &resumed, &err);
    nj_buf_release(&key);
    if (rc < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
        goto out;
    }
    /* Which dates to run, by policy. */
    size_t ndates = 0, total = (size_t)(to - from + 1), skipped = 0;
    dates = nj_xcalloc(total, sizeof(int32_t));
    for (int32_t d = from; d <= to; d++) {
        char ds[11];
        nj_date_format(d, ds);
        nj_date_state state;
        if (nj_state_date_status(ws.st, p->name, ds, stage_names, nstage_names, &state, &err) < 0) {
            cli_error("%s", err.msg);
            code = NJ_EXIT_SYSTEM;
            goto out;
        }
        int run = strcmp(policy, "all") == 0 || state == NJ_DATE_MISSING ||
                  (state == NJ_DATE_FAILED && strcmp(policy, "failed") == 0);
        if (run) {
            dates[ndates++] = d;
        } else {
            skipped++;
            nj_state_backfill_date(ws.st, bf_id, ds, state == NJ_DATE_SUCCEEDED ? state : NJ_DATE_SKIPPED, 0, NULL);
        }
    }
    fprintf(stderr, "backfill %lld%s of '%s', %s .. %s: %zu date%s to run, %zu skipped (--reprocess %s)\n",
            (long long)bf_id, resumed ? " (resumed)" : "", p->name, from_ds, to_ds, ndates,
            ndates == 1 ? "" : "s", skipped, policy);
    if (ndates == 0) {
        nj_state_backfill_end(ws.st, bf_id, "succeeded", NULL);
        code = NJ_EXIT_OK;
        goto out;
    }
    int64_t t_plan = nj_time_mono_ms();
    nj_plan_opts po = {.dates = dates, .ndates = ndates, .backwards = cli_flag(&a, BF_BACKWARDS),
                       .no_upstream = cli_flag(&a, BF_NO_UPSTREAM)};
    if (nj_plan_build(p, dag, &po, &f.sel, &plan, &err) < 0) {
        cli_error("backfill: %s", err.msg);
        code = cli_exit_for(err.code);
        goto out;
    }
    fprintf(stderr, "planned %zu stage runs over %zu dates in %lld ms\n", plan->n, plan->ndates,
            (long long)(nj_time_mono_ms() - t_plan));
    if (cli_flag(&a, BF_DRY)) {
        print_plan(plan);
        code = NJ_EXIT_OK;
        goto out;
    }
    for (size_t i = 0; i < ndates; i++) {
        char ds[11];
        nj_date_format(dates[i], ds);
        nj_state_backfill_date(ws.st, bf_id, ds, NJ_DATE_MISSING, 0, NULL);
    }
    char label[32];
    snprintf(label, sizeof(label), "%s..%s", from_ds, to_ds);
    int64_t run_id = 0;
    nj_exec_result res;
    code = execute_plan(p, plan, &ws, &f, cli_flag(&a, BF_FAILFAST), max_active, label, args,
                        cli_value(&a, BF_METRICS), &run_id, &res);
    /* Each date's state after this run. */
    size_t succeeded = 0, failed = 0;
    for (size_t i = 0; i < ndates && ws.st; i++) {
        char ds[11];
        nj_date_format(dates[i], ds);
        nj_date_state state;
        if (nj_state_date_status(ws.st, p->name, ds, stage_names, nstage_names, &state, &err) < 0)
            break;
        succeeded += state == NJ_DATE_SUCCEEDED;
        failed += state == NJ_DATE_FAILED;
        nj_state_backfill_date(ws.st, bf_id, ds, state, run_id, NULL);
    }
    const char *status = code == NJ_EXIT_INTERRUPTED ? "interrupted"
                         : succeeded == ndates       ? "succeeded"
                                                     : "failed";
    nj_state_backfill_end(ws.st, bf_id, status, NULL);
    fprintf(stderr, "backfill %lld %s: %zu of %zu dates succeeded, %zu failed%s\n",
            (long long)bf_id, status, succeeded, ndates, failed,
            strcmp(status, "succeeded") ? "; run the same command again to resume" : "");
out:
    free(args);
    free(dates);
    free(stage_names);
    workspace_close(&ws);
    nj_plan_free(plan);
    nj_plan_free(probe);
    nj_dag_free(dag);
    nj_pipeline_free(p);
    run_flags_release(&f);
out_args:
    cli_args_release(&a);
    return code;
}
