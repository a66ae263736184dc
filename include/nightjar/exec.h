/* exec.h - the scheduler: runs a plan's stage instances as child processes on
 * a libuv event loop.
 *
 * - A node starts once all its upstream nodes succeeded, at most `jobs` at
 *   once, in plan (topological, then file) order.
 * - Each attempt runs `/bin/sh -c CMD` in its own session and process group
 *   (so it can be signalled as a whole, grandchildren included), with stdin
 *   from /dev/null and stdout+stderr appended to a per-attempt log file.
 *   Declared outputs are removed before each attempt and must exist after a
 *   successful one.
 * - A failed attempt (non-zero exit, signal, timeout, missing output) is
 *   retried after retry_delay * 2^(attempt-1), capped at retry_delay_max,
 *   with "equal jitter" (half fixed, half random), up to `retries` times.
 *   After the last failure every node downstream is `upstream_failed` and
 *   independent branches go on; with fail_fast everything stops instead.
 * - A timeout sends SIGTERM to the attempt's process group and SIGKILL after
 *   the grace period.
 * - SIGINT/SIGTERM/SIGHUP to the runner: no new starts, the signal is
 *   forwarded to every running process group, SIGKILL after the grace
 *   period, attempts recorded `interrupted`. A second signal kills at once.
 * Every attempt and outcome is recorded in the state database as it happens.
 *
 * Signal handlers are libuv signal watchers: signals become loop events, no
 * logic runs in signal context.
 */
#ifndef NJ_EXEC_H
#define NJ_EXEC_H

#include <stdint.h>

#include "nightjar/err.h"
#include "nightjar/instance.h"
#include "nightjar/plan.h"
#include "nightjar/state.h"

typedef enum {
    NJ_EVENT_ATTEMPT_START, /* a process was spawned */
    NJ_EVENT_ATTEMPT_END,   /* it ended (status says how); retry may follow */
    NJ_EVENT_RETRY,         /* a retry is scheduled after delay_ms */
    NJ_EVENT_NODE_END,      /* final outcome of a node */
    NJ_EVENT_INTERRUPT,     /* the runner got a signal (signal field) */
    NJ_EVENT_TICK,          /* once a second while anything runs */
    NJ_EVENT_CACHE_PROBLEM, /* a cached result was unusable (reason); the stage will run */
    NJ_EVENT_DATE_END,      /* every node of date `ds` is done */
} nj_event_kind;

typedef struct nj_event {
    nj_event_kind kind;
    size_t node; /* plan index */
    const char *stage, *ds;
    int attempt;
    nj_status status;     /* ATTEMPT_END, NODE_END */
    int exit_code;        /* -1 if none */
    int signal;           /* killed by, or received (INTERRUPT) */
    int64_t delay_ms;     /* RETRY */
    int64_t duration_ms;  /* ATTEMPT_END, NODE_END */
    const char *cmd;      /* rendered command */
    const char *log_path; /* of the attempt */
    const char *reason;   /* why it failed / was not run, or NULL */
} nj_event;

typedef struct nj_progress {
    size_t total, done, running, failed;
    size_t dates_total, dates_done; /* distinct dates of the plan, and those finished */
    const char *running_names[8]; /* first few running stages */
    size_t nrunning_names;
    int64_t elapsed_ms;
} nj_progress;

typedef void (*nj_exec_report_fn)(void *ctx, const nj_event *ev, const nj_progress *progress);

/* What the scheduler asks its caller while it works (release.h answers for
 * `nightjar run`). Every member may be NULL. */
typedef struct nj_exec_hooks {
    void *ctx;
    /* For a stage whose cmd uses {{models.champion}}, just before it is
     * rendered: the path to render in *path (caller frees; NULL: none), or a
     * negative code that fails the node with err->msg. */
    int (*champion)(void *ctx, const nj_plan_node *node, char **path, nj_err *err);
    /* A node ended well (ran, cached or up to date), before anything
     * downstream starts: a negative return fails it with err->msg. */
    int (*node_done)(void *ctx, const nj_plan_node *node, const nj_instance *inst, nj_err *err);
} nj_exec_hooks;

typedef struct nj_exec_opts {
    int jobs;              /* >= 1 */
    int max_active_dates;  /* > 0: at most this many dates in flight at once */
    int fail_fast;         /* stop everything after the first failed node */
    int64_t kill_grace_ms; /* between SIGTERM and SIGKILL */
    const char *logs_dir;  /* absolute; per-run subdirectory is created */
    const char *state_path; /* absolute path of the state db, marked into stage env */
    int64_t run_id;
    struct nj_cache *cache; /* NULL: run every selected stage, leave the cache alone */
    nj_exec_report_fn report; /* may be NULL */
    void *report_ctx;
    const nj_exec_hooks *hooks; /* may be NULL */
} nj_exec_opts;

typedef struct nj_exec_result {
    nj_status status; /* SUCCEEDED, FAILED or INTERRUPTED */
    int counts[NJ_STATUS_COUNT]; /* node outcomes */
    size_t not_run; /* nodes never started (fail-fast or interrupt) */
} nj_exec_result;

/* Runs the plan to completion. Returns 0 with *result filled (stage failures
 * are results, not errors), or a negative code when the runner itself could
 * not go on (state database, event loop). */
int nj_exec_run(const nj_plan *plan, nj_state *st, const nj_exec_opts *opts,
                nj_exec_result *result, nj_err *err);

#endif
