/* test_state.c - the state database: recording, queries, crash recovery,
 * schema versioning. */
#include <criterion/criterion.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nightjar/state.h"
#include "support.h"

TestSuite(state, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 20);

static nj_state *open_state(void)
{
    nj_state *st = NULL;
    nj_err err = {0};
    cr_assert_eq(nj_state_open("ws/state.db", &st, &err), 0, "%s", err.msg);
    return st;
}

Test(state, records_a_run_with_its_stages_and_attempts)
{
    nj_state *st = open_state();
    nj_err err = {0};
    int64_t run, a1, a2;
    cr_assert_eq(nj_state_run_begin(st, "demo", "/p/demo.yaml", "2001-03-01", "nightjar run x", &run,
                                    &err),
                 0);
    cr_assert_eq(nj_state_attempt_begin(st, run, "train", "2001-03-01", 1, "cmd", "/l/1", &a1, &err), 0);
    cr_assert_eq(nj_state_attempt_set_pid(st, a1, 4242, &err), 0);
    cr_assert_eq(nj_state_attempt_end(st, a1, NJ_STATUS_FAILED, 3, 0, "exited with status 3", &err), 0);
    cr_assert_eq(nj_state_attempt_begin(st, run, "train", "2001-03-01", 2, "cmd", "/l/2", &a2, &err), 0);
    cr_assert_eq(nj_state_attempt_end(st, a2, NJ_STATUS_SUCCEEDED, 0, 0, NULL, &err), 0);
    cr_assert_eq(nj_state_stage_end(st, run, "train", "2001-03-01", NJ_STATUS_SUCCEEDED, 2, 1, NULL,
                                    &err),
                 0);
    cr_assert_eq(nj_state_stage_end(st, run, "report", "2001-03-01", NJ_STATUS_UPSTREAM_FAILED, 0, 0,
                                    "upstream 'x' failed", &err),
                 0);
    cr_assert_eq(nj_state_run_end(st, run, NJ_STATUS_FAILED, 1, &err), 0);

    nj_run_record r;
    cr_assert_eq(nj_state_run(st, run, &r, &err), 0);
    cr_assert_str_eq(r.pipeline, "demo");
    cr_assert_str_eq(r.ds, "2001-03-01");
    cr_assert_eq(r.status, NJ_STATUS_FAILED);
    cr_assert_eq(r.exit_code, 1);
    cr_assert_eq(r.pid, getpid());
    cr_assert_eq(r.counts[NJ_STATUS_SUCCEEDED], 1);
    cr_assert_eq(r.counts[NJ_STATUS_UPSTREAM_FAILED], 1);
    nj_run_record_release(&r);

    nj_attempt_record *att;
    size_t n;
    cr_assert_eq(nj_state_attempts(st, "demo", "train", 0, &att, &n, &err), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(att[0].status, NJ_STATUS_FAILED);
    cr_assert_eq(att[0].exit_code, 3);
    cr_assert_eq(att[0].pid, 4242);
    cr_assert_str_eq(att[0].error, "exited with status 3");
    cr_assert_str_eq(att[1].log_path, "/l/2");
    for (size_t i = 0; i < n; i++)
        nj_attempt_record_release(&att[i]);
    free(att);
    nj_state_close(st);
}

Test(state, latest_stages_come_from_the_newest_run_that_ran_them)
{
    nj_state *st = open_state();
    nj_err err = {0};
    int64_t r1, r2;
    nj_state_run_begin(st, "demo", "f", NULL, "", &r1, &err);
    nj_state_stage_end(st, r1, "a", NULL, NJ_STATUS_FAILED, 1, 1, "boom", &err);
    nj_state_stage_end(st, r1, "b", NULL, NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    nj_state_run_begin(st, "demo", "f", NULL, "", &r2, &err);
    nj_state_stage_end(st, r2, "a", NULL, NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    /* another pipeline in the same workspace never leaks in */
    int64_t other;
    nj_state_run_begin(st, "other", "g", NULL, "", &other, &err);
    nj_state_stage_end(st, other, "a", NULL, NJ_STATUS_FAILED, 1, 1, NULL, &err);

    nj_stage_record *recs;
    size_t n;
    cr_assert_eq(nj_state_latest_stages(st, "demo", &recs, &n, &err), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(recs[0].stage, "a");
    cr_assert_eq(recs[0].status, NJ_STATUS_SUCCEEDED);
    cr_assert_eq(recs[0].run_id, r2);
    cr_assert_str_eq(recs[1].stage, "b");
    cr_assert_eq(recs[1].run_id, r1);
    for (size_t i = 0; i < n; i++)
        nj_stage_record_release(&recs[i]);
    free(recs);
    nj_state_close(st);
}

Test(state, recover_marks_running_rows_crashed_and_kills_the_orphan)
{
    nj_state *st = open_state();
    nj_err err = {0};
    int64_t run, att;
    nj_state_run_begin(st, "demo", "f", NULL, "", &run, &err);
    nj_state_attempt_begin(st, run, "s", NULL, 1, "sleep", NULL, &att, &err);
    /* A child carrying the attempt's marker, as the scheduler would start it,
     * in its own process group. */
    pid_t child = fork();
    if (child == 0) {
        setpgid(0, 0);
        char id[64], state_path[256];
        snprintf(id, sizeof(id), "NIGHTJAR_ATTEMPT_ID=%lld", (long long)att);
        char *cwd = getcwd(NULL, 0);
        snprintf(state_path, sizeof(state_path), "NIGHTJAR_STATE=%s/ws/state.db", cwd);
        char *envp[] = {id, state_path, NULL};
        execle("/bin/sleep", "sleep", "30", (char *)NULL, envp);
        _exit(127);
    }
    usleep(100 * 1000);
    nj_state_attempt_set_pid(st, att, child, &err);

    int recovered = 0;
    cr_assert_eq(nj_state_recover(st, &recovered, &err), 0, "%s", err.msg);
    cr_assert_eq(recovered, 1);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the orphan was not killed");

    nj_run_record r;
    nj_state_run(st, run, &r, &err);
    cr_assert_eq(r.status, NJ_STATUS_CRASHED);
    nj_run_record_release(&r);
    nj_attempt_record *a;
    size_t n;
    nj_state_attempts(st, "demo", "s", run, &a, &n, &err);
    cr_assert_eq(n, 1);
    cr_assert_eq(a[0].status, NJ_STATUS_CRASHED);
    nj_attempt_record_release(&a[0]);
    free(a);
    cr_assert_eq(nj_state_recover(st, &recovered, &err), 0);
    cr_assert_eq(recovered, 0, "recovery is idempotent");
    nj_state_close(st);
}

Test(state, recover_leaves_an_unrelated_process_with_a_reused_pid_alone)
{
    nj_state *st = open_state();
    nj_err err = {0};
    int64_t run, att;
    nj_state_run_begin(st, "demo", "f", NULL, "", &run, &err);
    nj_state_attempt_begin(st, run, "s", NULL, 1, "sleep", NULL, &att, &err);
    pid_t bystander = fork();
    if (bystander == 0) {
        setpgid(0, 0);
        execl("/bin/sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    usleep(100 * 1000);
    nj_state_attempt_set_pid(st, att, bystander, &err); /* same pid, no marker */
    int recovered;
    cr_assert_eq(nj_state_recover(st, &recovered, &err), 0);
    cr_assert_eq(waitpid(bystander, NULL, WNOHANG), 0, "an unrelated process was killed");
    kill(bystander, SIGKILL);
    waitpid(bystander, NULL, 0);
    nj_state_close(st);
}

Test(state, refuses_a_database_from_a_newer_nightjar)
{
    nj_state *st = open_state();
    nj_state_close(st);
    sqlite3 *db;
    sqlite3_open("ws/state.db", &db);
    sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL);
    sqlite3_close(db);
    nj_err err = {0};
    cr_assert_eq(nj_state_open("ws/state.db", &st, &err), NJ_EDB);
    cr_assert(strstr(err.msg, "schema version 999, newer than this nightjar understands") != NULL,
              "%s", err.msg);
}

Test(state, status_names_round_trip)
{
    for (int s = 0; s < NJ_STATUS_COUNT; s++)
        cr_assert_eq(nj_status_parse(nj_status_name((nj_status)s)), s);
    cr_assert_eq(nj_status_parse("bogus"), -1);
    cr_assert_str_eq(nj_status_name(NJ_STATUS_UPSTREAM_FAILED), "upstream_failed");
}

/* ---- unchanged instances: one row per transaction, read as outcomes ---- */

static void end_unchanged(nj_state *st, int64_t run, const char *stage, const char *ds)
{
    nj_err err = {0};
    cr_assert_eq(nj_state_stage_end(st, run, stage, ds, NJ_STATUS_UP_TO_DATE, 0, 0, "unchanged",
                                    &err),
                 0, "%s", err.msg);
}

static int64_t count_rows(nj_state *st, const char *sql)
{
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(nj_state_db(st), sql, -1, &q, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(nj_state_db(st)));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

static void free_records(nj_stage_record *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        nj_stage_record_release(&recs[i]);
    free(recs);
}

Test(state, unchanged_instances_of_a_transaction_are_one_row_and_count_in_history)
{
    nj_state *st = open_state();
    nj_err err = {0};
    int64_t r1, r2;
    nj_state_run_begin(st, "demo", "f", NULL, "", &r1, &err);
    nj_state_stage_end(st, r1, "a", NULL, NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    nj_state_stage_end(st, r1, "b", NULL, NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    nj_state_stage_end(st, r1, "c", NULL, NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    nj_state_run_begin(st, "demo", "f", NULL, "", &r2, &err);
    cr_assert_eq(nj_state_begin(st, &err), 0);
    end_unchanged(st, r2, "a", NULL);
    end_unchanged(st, r2, "b", NULL);
    /* up to date for another reason, or after an attempt: a row of its own */
    nj_state_stage_end(st, r2, "c", NULL, NJ_STATUS_UP_TO_DATE, 0, 0, "param 'n' changed 1 → 2",
                       &err);
    cr_assert_eq(nj_state_commit(st, &err), 0, "%s", err.msg);
    cr_assert_eq(count_rows(st, "SELECT count(*) FROM unchanged_stages"), 1);
    cr_assert_eq(count_rows(st, "SELECT count(*) FROM stage_runs WHERE run_id = 2"), 1);
    cr_assert_eq(count_rows(st, "SELECT count(*) FROM stage_outcomes WHERE run_id = 2"
                                " AND status = 'up_to_date'"),
                 3, "the view shows every outcome as a row");

    nj_run_record r;
    cr_assert_eq(nj_state_run(st, r2, &r, &err), 0);
    cr_assert_eq(r.counts[NJ_STATUS_UP_TO_DATE], 3);
    nj_run_record_release(&r);

    nj_stage_record *recs;
    size_t n;
    cr_assert_eq(nj_state_run_stages(st, r2, &recs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(recs[0].stage, "a");
    cr_assert_str_eq(recs[0].reason, "unchanged");
    cr_assert_str_eq(recs[2].stage, "c");
    cr_assert_str_eq(recs[2].reason, "param 'n' changed 1 → 2");
    free_records(recs, n);
    nj_state_close(st);
}

Test(state, an_uncommitted_transaction_loses_its_unchanged_instances_with_everything_else)
{
    nj_state *st = open_state();
    nj_err err = {0};
    int64_t r1;
    nj_state_run_begin(st, "demo", "f", NULL, "", &r1, &err);
    cr_assert_eq(nj_state_begin(st, &err), 0);
    end_unchanged(st, r1, "a", NULL);
    nj_state_close(st); /* a runner killed mid-burst */
    st = open_state();
    cr_assert_eq(count_rows(st, "SELECT count(*) FROM unchanged_stages"), 0);
    /* Outside a transaction, the outcome is written at once. */
    end_unchanged(st, r1, "b", NULL);
    cr_assert_eq(count_rows(st, "SELECT count(*) FROM stage_outcomes WHERE stage = 'b'"), 1);
    nj_state_close(st);
}

Test(state, latest_stages_take_a_newer_unchanged_outcome_over_an_older_failure)
{
    nj_state *st = open_state();
    nj_err err = {0};
    int64_t r1, r2, r3, r4;
    nj_state_run_begin(st, "demo", "f", NULL, "", &r1, &err);
    nj_state_stage_end(st, r1, "a", "2001-01-01", NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    nj_state_stage_end(st, r1, "b", "2001-01-01", NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    nj_state_stage_end(st, r1, "c", "2001-01-01", NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    nj_state_run_begin(st, "demo", "f", NULL, "", &r2, &err);
    nj_state_stage_end(st, r2, "a", "2001-01-01", NJ_STATUS_FAILED, 1, 1, "boom", &err);
    end_unchanged(st, r2, "b", "2001-01-01");
    nj_state_run_begin(st, "demo", "f", NULL, "", &r3, &err);
    end_unchanged(st, r3, "a", "2001-01-01"); /* its inputs went back */
    nj_state_run_begin(st, "demo", "f", NULL, "", &r4, &err);
    nj_state_stage_end(st, r4, "b", "2001-01-01", NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    /* another pipeline's unchanged rows never leak in */
    int64_t other;
    nj_state_run_begin(st, "other", "g", NULL, "", &other, &err);
    end_unchanged(st, other, "c", "2001-01-01");

    nj_stage_record *recs;
    size_t n;
    cr_assert_eq(nj_state_latest_stages(st, "demo", &recs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(recs[0].stage, "a");
    cr_assert_eq(recs[0].status, NJ_STATUS_UP_TO_DATE, "a newer unchanged beats the failure");
    cr_assert_eq(recs[0].run_id, r3);
    cr_assert_str_eq(recs[0].reason, "unchanged");
    cr_assert_str_eq(recs[0].ds, "2001-01-01");
    cr_assert_str_eq(recs[1].stage, "b");
    cr_assert_eq(recs[1].status, NJ_STATUS_SUCCEEDED, "a newer stage_runs row beats unchanged");
    cr_assert_eq(recs[1].run_id, r4);
    cr_assert_str_eq(recs[2].stage, "c");
    cr_assert_eq(recs[2].run_id, r1);
    free_records(recs, n);

    const char *stages[] = {"a", "b", "c"};
    nj_date_state state;
    cr_assert_eq(nj_state_date_status(st, "demo", "2001-01-01", stages, 3, &state, &err), 0);
    cr_assert_eq(state, NJ_DATE_SUCCEEDED, "a's failure was followed by an unchanged outcome");
    nj_state_close(st);
}

Test(state, a_failure_after_an_unchanged_outcome_is_the_latest)
{
    nj_state *st = open_state();
    nj_err err = {0};
    int64_t r1, r2, r3;
    nj_state_run_begin(st, "demo", "f", NULL, "", &r1, &err);
    nj_state_stage_end(st, r1, "a", "2001-01-01", NJ_STATUS_SUCCEEDED, 1, 1, NULL, &err);
    nj_state_run_begin(st, "demo", "f", NULL, "", &r2, &err);
    end_unchanged(st, r2, "a", "2001-01-01");
    nj_state_run_begin(st, "demo", "f", NULL, "", &r3, &err);
    nj_state_stage_end(st, r3, "a", "2001-01-01", NJ_STATUS_FAILED, 1, 1, "boom", &err);

    nj_stage_record *recs;
    size_t n;
    cr_assert_eq(nj_state_latest_stages(st, "demo", &recs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(recs[0].status, NJ_STATUS_FAILED);
    cr_assert_eq(recs[0].run_id, r3);
    free_records(recs, n);
    const char *stages[] = {"a"};
    nj_date_state state;
    cr_assert_eq(nj_state_date_status(st, "demo", "2001-01-01", stages, 1, &state, &err), 0);
    cr_assert_eq(state, NJ_DATE_FAILED);
    /* an unchanged outcome of another date says nothing about this one */
    int64_t r4;
    nj_state_run_begin(st, "demo", "f", NULL, "", &r4, &err);
    end_unchanged(st, r4, "a", "2001-01-02");
    cr_assert_eq(nj_state_date_status(st, "demo", "2001-01-01", stages, 1, &state, &err), 0);
    cr_assert_eq(state, NJ_DATE_FAILED);
    nj_state_close(st);
}
