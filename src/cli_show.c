/* cli_show.c - the verbs that only look: validate, dag, status, history, logs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_internal.h"
#include "nightjar/fs.h"
#include "nightjar/util.h"

static const char validate_help[] =
    "usage: nightjar validate PIPELINE\n"
    "\n"
    "Checks the pipeline file and its graph and reports every problem at once,\n"
    "each as FILE:LINE:COL: MESSAGE. Exit 0 when valid, 3 when not.\n";

int cli_validate(int argc, char **argv)
{
    cli_args a;
    int code = cli_parse_verb("validate", validate_help, argc, argv, NULL, 0, 1, 1, &a);
    if (code < 0) {
        cli_session s = {0};
        code = cli_session_load(&s, a.positional[0]);
        if (code == NJ_EXIT_OK)
            printf("%s: pipeline '%s' is valid: %zu stage%s\n", a.positional[0], s.p->name,
                   s.p->nstages, s.p->nstages == 1 ? "" : "s");
        cli_session_close(&s);
    }
    cli_args_release(&a);
    return code;
}

static const char dag_help[] =
    "usage: nightjar dag PIPELINE [--dot]\n"
    "\n"
    "Prints the stage graph in topological order, one stage per line with the\n"
    "stages it needs (\"train <- features\"), or as Graphviz with --dot:\n"
    "    nightjar dag pipelines/demo.yaml --dot | dot -Tsvg > dag.svg\n";

int cli_dag(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--dot", NULL, 0}};
    cli_args a;
    int code = cli_parse_verb("dag", dag_help, argc, argv, opts, 1, 1, 1, &a);
    if (code < 0) {
        cli_session s = {0};
        code = cli_session_load(&s, a.positional[0]);
        if (code == NJ_EXIT_OK) {
            if (cli_flag(&a, 0))
                nj_dag_write_dot(s.dag, s.p, stdout);
            else
                nj_dag_write_text(s.dag, s.p, stdout);
        }
        cli_session_close(&s);
    }
    cli_args_release(&a);
    return code;
}

static void format_time(int64_t ms, char *out, size_t size)
{
    if (ms <= 0)
        snprintf(out, size, "-");
    else
        nj_time_format(ms, out, size);
}

typedef struct backfill_print {
    int header_done;
    size_t counts[4];
} backfill_print;

static void print_backfill_row(void *ctx, const nj_backfill_row *row)
{
    backfill_print *bp = ctx;
    if (!bp->header_done) {
        printf("backfill of '%s', %s .. %s: %s\n  %s\n", row->pipeline, row->from_ds, row->to_ds,
               row->status, row->args);
        printf("%-10s  %-10s  %s\n", "DATE", "STATUS", "RUN");
        bp->header_done = 1;
    }
    if (!row->ds) return;
    static const char *const names[] = {"missing", "succeeded", "failed", "skipped"};
    for (int i = 0; i < 4; i++)
        if (strcmp(row->date_status, names[i]) == 0) bp->counts[i]++;
    if (row->run_id)
        printf("%-10s  %-10s  %lld\n", row->ds, row->date_status, (long long)row->run_id);
    else
        printf("%-10s  %-10s  -\n", row->ds, row->date_status);
}

static int show_backfill(const nj_pipeline *p, const char *id_text)
{
    char *end;
    long long id = strtoll(id_text, &end, 10);
    if (*end || id < 1) {
        cli_error("status: --backfill takes a backfill id, got '%s'", id_text);
        return NJ_EXIT_USAGE;
    }
    nj_state *st = NULL;
    int code = cli_open_state_if_any(p, &st);
    if (code) return code;
    nj_err err = {0};
    backfill_print bp = {0};
    if (!st || nj_state_backfill_show(st, id, print_backfill_row, &bp, &err) < 0) {
        cli_error("status: %s", st ? err.msg : "no backfill has run yet");
        code = NJ_EXIT_FAILED;
    } else {
        printf("%zu succeeded, %zu failed, %zu missing, %zu skipped\n", bp.counts[1], bp.counts[2],
               bp.counts[0], bp.counts[3]);
    }
    nj_state_close(st);
    return code;
}

static const char status_help[] =
    "usage: nightjar status PIPELINE [--json] [--backfill ID]\n"
    "\n"
    "Prints each stage's latest outcome: status, the run it belongs to, attempts,\n"
    "when it ended and why it failed or was not run. Stages that never ran say so.\n"
    "With --backfill ID: that backfill's arguments and each date's status.\n";

int cli_status(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--json", NULL, 0}, {"--backfill", NULL, 1}};
    cli_args a;
    int code = cli_parse_verb("status", status_help, argc, argv, opts, 2, 1, 1, &a);
    if (code >= 0) goto out_args;
    cli_session ss = {0};
    nj_stage_record *recs = NULL;
    size_t nrecs = 0;
    if ((code = cli_session_load(&ss, a.positional[0]))) goto out;
    const nj_pipeline *p = ss.p;
    if (cli_value(&a, 1)) {
        code = show_backfill(p, cli_value(&a, 1));
        goto out;
    }
    code = cli_session_open(&ss, 0);
    nj_err err = {0};
    if (code == NJ_EXIT_OK && ss.st &&
        nj_state_latest_stages(ss.st, p->name, &recs, &nrecs, &err) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
    }
    if (code) goto out;
    int json = cli_flag(&a, 0);
    if (json)
        printf("[");
    else
        printf("%-24s %-16s %6s %8s  %-19s  %s\n", "STAGE", "STATUS", "RUN", "ATTEMPTS", "ENDED",
               "REASON");
    int first = 1;
    for (size_t i = 0; i < p->nstages; i++) {
        const char *name = p->stages[i].name;
        int any = 0;
        for (size_t j = 0; j < nrecs; j++) {
            if (strcmp(recs[j].stage, name) != 0) continue;
            any = 1;
            char ended[32];
            format_time(recs[j].ended_ms, ended, sizeof(ended));
            if (json) {
                printf("%s\n  {\"stage\": ", first ? "" : ",");
                cli_json_str(stdout, name);
                printf(", \"ds\": ");
                cli_json_str(stdout, recs[j].ds[0] ? recs[j].ds : NULL);
                printf(", \"status\": \"%s\", \"run_id\": %lld, \"attempts\": %d,"
                       " \"started_ms\": %lld, \"ended_ms\": %lld, \"reason\": ",
                       nj_status_name(recs[j].status), (long long)recs[j].run_id, recs[j].attempts,
                       (long long)recs[j].started_ms, (long long)recs[j].ended_ms);
                cli_json_str(stdout, recs[j].reason);
                printf("}");
            } else {
                printf("%-24s %-16s %6lld %8d  %-19s  %s\n", name, nj_status_name(recs[j].status),
                       (long long)recs[j].run_id, recs[j].attempts, ended,
                       recs[j].reason ? recs[j].reason : "");
            }
            first = 0;
        }
        if (any) continue;
        if (json) {
            printf("%s\n  {\"stage\": ", first ? "" : ",");
            cli_json_str(stdout, name);
            printf(", \"status\": \"never_run\"}");
        } else {
            printf("%-24s %-16s %6s %8s  %-19s  %s\n", name, "never run", "-", "-", "-", "");
        }
        first = 0;
    }
    if (json) printf("\n]\n");
out:
    for (size_t j = 0; j < nrecs; j++)
        nj_stage_record_release(&recs[j]);
    free(recs);
    cli_session_close(&ss);
out_args:
    cli_args_release(&a);
    return code;
}

static const char history_help[] =
    "usage: nightjar history PIPELINE [--last N] [--json]\n"
    "\n"
    "Lists past runs, newest first (default the last 20): id, start, duration,\n"
    "status, exit code, logical date and how many stages ended in each status.\n";

int cli_history(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--last", NULL, 1}, {"--json", NULL, 0}};
    cli_args a;
    int code = cli_parse_verb("history", history_help, argc, argv, opts, 2, 1, 1, &a);
    if (code >= 0) goto out_args;
    int last = 20;
    if (cli_value(&a, 0)) {
        char *end;
        long n = strtol(cli_value(&a, 0), &end, 10);
        if (*end || n < 1) {
            cli_error("history: --last takes a positive number, got '%s'", cli_value(&a, 0));
            code = NJ_EXIT_USAGE;
            goto out_args;
        }
        last = (int)n;
    }
    cli_session ss = {0};
    nj_run_record *runs = NULL;
    size_t nruns = 0;
    if ((code = cli_session_load(&ss, a.positional[0])) || (code = cli_session_open(&ss, 0)))
        goto out;
    const nj_pipeline *p = ss.p;
    nj_err err = {0};
    if (ss.st && nj_state_runs(ss.st, p->name, last, &runs, &nruns, &err) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
    }
    if (code) goto out;
    int json = cli_flag(&a, 1);
    if (json) {
        printf("[");
    } else if (nruns == 0) {
        printf("no runs of '%s' recorded in %s\n", p->name, p->workspace);
    } else {
        printf("%6s  %-19s  %9s  %-12s %4s  %-10s  %s\n", "RUN", "STARTED", "DURATION", "STATUS",
               "EXIT", "DATE", "STAGES");
    }
    for (size_t i = 0; i < nruns; i++) {
        nj_run_record *r = &runs[i];
        char started[32], dur[32] = "-";
        format_time(r->started_ms, started, sizeof(started));
        if (r->ended_ms) nj_duration_format(r->ended_ms - r->started_ms, dur, sizeof(dur));
        if (json) {
            printf("%s\n  {\"run_id\": %lld, \"pipeline\": ", i ? "," : "", (long long)r->id);
            cli_json_str(stdout, r->pipeline);
            printf(", \"ds\": ");
            cli_json_str(stdout, r->ds);
            printf(", \"status\": \"%s\", \"exit_code\": ", nj_status_name(r->status));
            if (r->exit_code >= 0)
                printf("%d", r->exit_code);
            else
                printf("null");
            printf(", \"started_ms\": %lld, \"ended_ms\": %lld, \"pid\": %lld, \"host\": ",
                   (long long)r->started_ms, (long long)r->ended_ms, (long long)r->pid);
            cli_json_str(stdout, r->host);
            printf(", \"version\": ");
            cli_json_str(stdout, r->version);
            printf(", \"args\": ");
            cli_json_str(stdout, r->args);
            printf(", \"stages\": {");
            const char *sep = "";
            for (int s = 0; s < NJ_STATUS_COUNT; s++) {
                if (!r->counts[s]) continue;
                printf("%s\"%s\": %d", sep, nj_status_name((nj_status)s), r->counts[s]);
                sep = ", ";
            }
            printf("}}");
        } else {
            char counts[256] = "";
            size_t used = 0;
            for (int s = 0; s < NJ_STATUS_COUNT && used < sizeof(counts) - 40; s++)
                if (r->counts[s])
                    used += (size_t)snprintf(counts + used, sizeof(counts) - used, "%s%d %s",
                                             used ? ", " : "", r->counts[s],
                                             nj_status_name((nj_status)s));
            char exit_text[16] = "-";
            if (r->exit_code >= 0) snprintf(exit_text, sizeof(exit_text), "%d", r->exit_code);
            printf("%6lld  %-19s  %9s  %-12s %4s  %-10s  %s\n", (long long)r->id, started, dur,
                   nj_status_name(r->status), exit_text, r->ds ? r->ds : "-", counts);
        }
    }
    if (json) printf("%s]\n", nruns ? "\n" : "");
out:
    for (size_t i = 0; i < nruns; i++)
        nj_run_record_release(&runs[i]);
    free(runs);
    cli_session_close(&ss);
out_args:
    cli_args_release(&a);
    return code;
}

static const char logs_help[] =
    "usage: nightjar logs PIPELINE STAGE [--date D] [--run ID] [--attempt N]\n"
    "\n"
    "Prints the output (stdout and stderr) of one attempt of a stage: by default\n"
    "the last attempt in the newest run that ran the stage (of its latest date, or\n"
    "of --date D). Exit 1 if there is none.\n";

int cli_logs(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--run", NULL, 1}, {"--attempt", NULL, 1}, {"--date", NULL, 1}};
    cli_args a;
    int code = cli_parse_verb("logs", logs_help, argc, argv, opts, 3, 2, 2, &a);
    if (code >= 0) goto out_args;
    long long run_id = 0;
    long attempt = 0;
    char *end;
    if (cli_value(&a, 0) && ((run_id = strtoll(cli_value(&a, 0), &end, 10)) < 1 || *end)) {
        cli_error("logs: --run takes a run id, got '%s'", cli_value(&a, 0));
        code = NJ_EXIT_USAGE;
        goto out_args;
    }
    if (cli_value(&a, 1) && ((attempt = strtol(cli_value(&a, 1), &end, 10)) < 1 || *end)) {
        cli_error("logs: --attempt takes a positive number, got '%s'", cli_value(&a, 1));
        code = NJ_EXIT_USAGE;
        goto out_args;
    }
    cli_session ss = {0};
    nj_attempt_record *att = NULL;
    size_t natt = 0;
    if ((code = cli_session_load(&ss, a.positional[0]))) goto out;
    const nj_pipeline *p = ss.p;
    const char *stage = a.positional[1];
    if (!nj_pipeline_stage(p, stage)) {
        const char **names = nj_xcalloc(p->nstages, sizeof(char *));
        for (size_t i = 0; i < p->nstages; i++)
            names[i] = p->stages[i].name;
        const char *hint = nj_suggest(stage, names, p->nstages);
        if (hint)
            cli_error("logs: unknown stage '%s' (did you mean '%s'?)", stage, hint);
        else
            cli_error("logs: unknown stage '%s'", stage);
        free(names);
        code = NJ_EXIT_USAGE;
        goto out;
    }
    code = cli_session_open(&ss, 0);
    nj_err err = {0};
    if (code == NJ_EXIT_OK && ss.st &&
        nj_state_attempts(ss.st, p->name, stage, run_id, &att, &natt, &err) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
    }
    if (code) goto out;
    nj_attempt_record *pick = NULL;
    const char *want_ds = cli_value(&a, 2);
    for (size_t i = 0; i < natt; i++)
        if ((attempt == 0 || att[i].attempt == attempt) &&
            (!want_ds || (att[i].ds && strcmp(att[i].ds, want_ds) == 0)))
            pick = &att[i];
    if (!pick) {
        if (run_id && attempt)
            cli_error("logs: stage '%s' has no attempt %ld in run %lld", stage, attempt, run_id);
        else if (want_ds)
            cli_error("logs: stage '%s' has no attempt for %s%s", stage, want_ds,
                      run_id ? " in that run" : " in its newest run (try --run)");
        else if (run_id)
            cli_error("logs: stage '%s' did not run in run %lld", stage, run_id);
        else
            cli_error("logs: stage '%s' has no recorded attempts", stage);
        code = NJ_EXIT_FAILED;
        goto out;
    }
    char *data = NULL;
    size_t len = 0;
    /* A stage that printed nothing has no log file (it is created on the
     * first byte): that is an empty log, not an error. */
    if (pick->log_path && nj_fs_exists(pick->log_path) &&
        nj_fs_read_file(pick->log_path, &data, &len, &err) < 0) {
        cli_error("logs: %s", err.msg);
        code = NJ_EXIT_FAILED;
        goto out;
    }
    fprintf(stderr, "# %s%s%s, run %lld, attempt %d, %s%s%s\n", stage,
            pick->ds && *pick->ds ? " " : "", pick->ds ? pick->ds : "", (long long)pick->run_id,
            pick->attempt, nj_status_name(pick->status), pick->error ? ": " : "",
            pick->error ? pick->error : "");
    if (data) fwrite(data, 1, len, stdout);
    free(data);
out:
    for (size_t i = 0; i < natt; i++)
        nj_attempt_record_release(&att[i]);
    free(att);
    cli_session_close(&ss);
out_args:
    cli_args_release(&a);
    return code;
}
