/* state.h - the workspace's state database: runs, stage outcomes, attempts.
 *
 * One SQLite file per workspace (<workspace>/state.db), in WAL mode with a
 * busy timeout, schema version in PRAGMA user_version and forward-only
 * migrations. Every state change is one transaction, so a runner killed at
 * any instant leaves a consistent database: at worst rows still saying
 * `running`, which nj_state_recover() turns into `crashed` the next time a
 * runner holds the workspace lock.
 *
 * Tables (see state.c for the exact schema):
 *   runs        one row per `nightjar run`: pipeline, date, times, status,
 *               exit code, nightjar version, arguments, pid, host
 *   stage_runs  one row per stage instance in a run: its final outcome
 *               (succeeded, failed, upstream_failed, ...) and why
 *   attempts    one row per process started: attempt number, times, status,
 *               exit code or signal, pid, host, log path
 *
 *     nj_state *st;
 *     if (nj_state_open(".nightjar/state.db", &st, &err) < 0) ...
 *     nj_state_run_begin(st, &run, &run_id, &err);
 *     ...
 *     nj_state_close(st);
 */
#ifndef NJ_STATE_H
#define NJ_STATE_H

#include <stdint.h>
#include <sys/types.h>

#include "nightjar/err.h"

typedef struct nj_state nj_state;
typedef struct sqlite3 sqlite3;

/* Status of a run, a stage instance or an attempt, stored as its name. */
#define NJ_STATUS_MAP(X)                                                                           \
    X(RUNNING, "running")                                                                          \
    X(SUCCEEDED, "succeeded")                                                                      \
    X(FAILED, "failed")                                                                            \
    X(TIMEOUT, "timeout")                                                                          \
    X(INTERRUPTED, "interrupted")                                                                  \
    X(CRASHED, "crashed")                                                                          \
    X(UPSTREAM_FAILED, "upstream_failed")                                                          \
    X(CACHED, "cached")                                                                            \
    X(UP_TO_DATE, "up_to_date")                                                                    \
    X(HELD, "held")

typedef enum {
#define NJ_STATUS_ENUM(name, text) NJ_STATUS_##name,
    NJ_STATUS_MAP(NJ_STATUS_ENUM)
#undef NJ_STATUS_ENUM
    NJ_STATUS_COUNT
} nj_status;

const char *nj_status_name(nj_status s);
/* Returns the status with that name, or -1. */
int nj_status_parse(const char *name);

/* Opens (creating and migrating as needed) the database at `path`. */
int nj_state_open(const char *path, nj_state **out, nj_err *err);
void nj_state_close(nj_state *st); /* NULL is fine */
/* Groups the writes of one burst of work (e.g. one event-loop callback of
 * the scheduler) into one transaction; nests, only the outermost commits.
 * Each write is still atomic and a crash loses at most the open burst. */
int nj_state_begin(nj_state *st, nj_err *err);
int nj_state_commit(nj_state *st, nj_err *err);

/* The underlying handle, for modules that keep their own tables here. Borrowed. */
sqlite3 *nj_state_db(nj_state *st);

typedef struct nj_run_record {
    int64_t id;
    char *pipeline;      /* pipeline name */
    char *pipeline_file; /* absolute path of the pipeline file */
    char *ds;            /* logical date or NULL */
    int64_t started_ms, ended_ms; /* ended_ms 0 while running */
    nj_status status;
    int exit_code;       /* -1 while running */
    char *version;
    char *args;          /* the command line, shell-quoted */
    int64_t pid;
    char *host;
    /* Filled by queries: how many stage instances ended in each status. */
    int counts[NJ_STATUS_COUNT];
} nj_run_record;
void nj_run_record_release(nj_run_record *r);

/* Inserts a run with status `running`, started now, this pid and host. */
int nj_state_run_begin(nj_state *st, const char *pipeline, const char *pipeline_file,
                       const char *ds, const char *args, int64_t *run_id, nj_err *err);
int nj_state_run_end(nj_state *st, int64_t run_id, nj_status status, int exit_code, nj_err *err);

/* Records the final outcome of a stage instance in a run (one row per
 * (run, stage, ds); a second call replaces the first). `reason` may be NULL. */
int nj_state_stage_end(nj_state *st, int64_t run_id, const char *stage, const char *ds,
                       nj_status status, int attempts, int64_t started_ms, const char *reason,
                       nj_err *err);

typedef struct nj_attempt_record {
    int64_t id, run_id;
    char *stage, *ds;
    int attempt; /* 1-based */
    int64_t started_ms, ended_ms;
    nj_status status;
    int exit_code; /* -1 when killed by a signal or still running */
    int signal;    /* 0 unless killed by a signal */
    int64_t pid;
    char *host, *log_path, *cmd, *error;
} nj_attempt_record;
void nj_attempt_record_release(nj_attempt_record *a);

/* Inserts an attempt with status `running` started now. pid may be set later. */
int nj_state_attempt_begin(nj_state *st, int64_t run_id, const char *stage, const char *ds,
                           int attempt, const char *cmd, const char *log_path,
                           int64_t *attempt_id, nj_err *err);
int nj_state_attempt_set_pid(nj_state *st, int64_t attempt_id, int64_t pid, nj_err *err);
/* Ends an attempt. `error` (may be NULL) says why it failed beyond the exit code. */
int nj_state_attempt_end(nj_state *st, int64_t attempt_id, nj_status status, int exit_code,
                         int signal, const char *error, nj_err *err);

/* Marks every run, stage instance and attempt still `running` as `crashed`:
 * call only while holding the workspace lock, when no live runner can own
 * them. A stage process left behind by the dead runner is killed: it is
 * recognised by NIGHTJAR_ATTEMPT_ID=<id> and NIGHTJAR_STATE=<this database's
 * absolute path> in /proc/<pid>/environ, which the scheduler sets.  Sets
 * *recovered to the number of attempts marked. */
int nj_state_recover(nj_state *st, int *recovered, nj_err *err);

/* Queries. Arrays are allocated (caller frees each record with its release
 * function, then the array). */
/* Runs of a pipeline, newest first, at most `limit` (0: all). */
int nj_state_runs(nj_state *st, const char *pipeline, int limit, nj_run_record **out, size_t *n,
                  nj_err *err);
/* One run by id, or NJ_ENOTFOUND. */
int nj_state_run(nj_state *st, int64_t run_id, nj_run_record *out, nj_err *err);

typedef struct nj_stage_record {
    char *stage, *ds;
    int64_t run_id;
    nj_status status;
    int attempts;
    int64_t started_ms, ended_ms;
    char *reason;
} nj_stage_record;
void nj_stage_record_release(nj_stage_record *s);
/* The latest outcome of every stage of a pipeline (one row per stage and ds,
 * from the newest run that included it), ordered by stage name then ds. */
int nj_state_latest_stages(nj_state *st, const char *pipeline, nj_stage_record **out, size_t *n,
                           nj_err *err);
/* The stage instances of one run. */
int nj_state_run_stages(nj_state *st, int64_t run_id, nj_stage_record **out, size_t *n,
                        nj_err *err);

/* Attempts of `stage` in `run_id` (0: the newest run of the pipeline in
 * which the stage has an attempt), ordered by attempt number. */
int nj_state_attempts(nj_state *st, const char *pipeline, const char *stage, int64_t run_id,
                      nj_attempt_record **out, size_t *n, nj_err *err);

/* ---- backfills ----
 * A date's state, from the latest outcome of each of `stages` on it:
 * succeeded (all succeeded, cached or up to date), failed (one failed,
 * timed out or was upstream_failed), else missing (never run, interrupted,
 * crashed, or partly run). */
typedef enum { NJ_DATE_MISSING, NJ_DATE_SUCCEEDED, NJ_DATE_FAILED, NJ_DATE_SKIPPED } nj_date_state;
const char *nj_date_state_name(nj_date_state s);
int nj_state_date_status(nj_state *st, const char *pipeline, const char *ds,
                         const char *const *stages, size_t nstages, nj_date_state *out,
                         nj_err *err);
/* Finds the unfinished backfill of `pipeline` with the same `key` (its
 * arguments) and resumes it (*resumed = 1), or records a new one. */
int nj_state_backfill_open(nj_state *st, const char *pipeline, const char *key,
                           const char *from_ds, const char *to_ds, const char *args,
                           int64_t *id, int *resumed, nj_err *err);
int nj_state_backfill_date(nj_state *st, int64_t id, const char *ds, nj_date_state state,
                           int64_t run_id, nj_err *err);
/* status: running, succeeded, failed, interrupted */
int nj_state_backfill_end(nj_state *st, int64_t id, const char *status, nj_err *err);

typedef struct nj_backfill_row {
    const char *pipeline, *from_ds, *to_ds, *args, *status; /* the backfill */
    const char *ds, *date_status;                          /* one date, or NULL */
    int64_t run_id;
} nj_backfill_row;
typedef void (*nj_backfill_visit_fn)(void *ctx, const nj_backfill_row *row);
/* Calls fn once per date of backfill `id` (strings borrowed for the call). */
int nj_state_backfill_show(nj_state *st, int64_t id, nj_backfill_visit_fn fn, void *ctx,
                           nj_err *err);


/* Snapshot history: every archive a snapshot stage wrote, per date and run. */
int nj_state_snapshot_add(nj_state *st, const char *pipeline, const char *stage, const char *ds,
                          int64_t run_id, const char *hash_hex, uint64_t size, nj_err *err);
typedef void (*nj_snapshot_record_fn)(void *ctx, const char *ds, int64_t run_id,
                                     const char *hash_hex, uint64_t size, int64_t created_ms);
/* Calls fn for each recorded archive of `stage`, by date then run. */
int nj_state_snapshots(nj_state *st, const char *pipeline, const char *stage,
                       nj_snapshot_record_fn fn, void *ctx, nj_err *err);

#endif
