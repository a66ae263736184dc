/* exec.c - the scheduler: a libuv loop that spawns stage attempts, enforces
 * timeouts, retries with backoff, handles signals, and records everything.
 *
 * Each plan node moves through this state table:
 *
 *   WAITING --all upstream succeeded--> READY --slot free--> RUNNING
 *   RUNNING --exit 0, outputs present--> DONE(succeeded)
 *   RUNNING --failure, attempts left--> RETRY_WAIT --delay--> READY
 *   RUNNING --failure, no attempts left--> DONE(failed); downstream DONE(upstream_failed)
 *   RUNNING --runner interrupted--> DONE(interrupted)
 *   WAITING/READY at the end of the loop: never started (counted as not_run)
 *
 * Handles: one uv_timer per node (timeout, then kill grace, or retry delay),
 * a SIGCHLD watcher that reaps attempts (spawned with posix_spawn, which
 * vforks: ~1.5 ms cheaper per stage than libuv's fork here), signal watchers
 * and a progress tick that are unref'd so they never keep the loop alive:
 * the loop ends exactly when no process runs and no retry is pending.
 */
#include "nightjar/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "nightjar/cache.h"
#include "nightjar/fs.h"
#include "nightjar/instance.h"
#include "nightjar/template.h"
#include "nightjar/util.h"

extern char **environ;

typedef enum { PHASE_WAITING, PHASE_READY, PHASE_RUNNING, PHASE_RETRY_WAIT, PHASE_DONE } phase;
typedef enum { TIMER_NONE, TIMER_TIMEOUT, TIMER_GRACE, TIMER_RETRY } timer_purpose;
typedef enum { KILL_NONE, KILL_TIMEOUT, KILL_INTERRUPT, KILL_STOP } kill_reason;

typedef struct runner runner;

typedef struct node_run {
    runner *r;
    size_t index;
    phase phase;
    nj_status outcome;
    size_t waiting_on; /* upstream nodes not yet succeeded */
    int attempt;       /* attempts started so far */
    int64_t attempt_id;
    int64_t started_ms;         /* wall clock, first attempt */
    int64_t attempt_start_mono;
    nj_instance inst; /* rendered before the first attempt */
    int rendered;
    nj_key key; /* with a cache: computed before the first attempt */
    int keyed;
    char *run_reason; /* why the cache let it run, recorded with its outcome */
    char *log_path;
    /* stdout+stderr arrive through a pipe; the log file is created on the
     * first byte, so a quiet stage costs no file at all. */
    uv_pipe_t *out_pipe; /* non-NULL while the output is read */
    int log_fd;          /* -1 until the first byte */
    pid_t pid; /* > 0 while the attempt's main process runs */
    pid_t pgid;
    long day_slot; /* index into runner.days, -1 for a node without a date */
    uv_timer_t timer;
    timer_purpose timer_purpose;
    kill_reason killing;
} node_run;

struct runner {
    uv_loop_t loop;
    const nj_plan *plan;
    const nj_pipeline *pipeline;
    nj_state *st;
    const nj_exec_opts *opts;
    node_run *nodes;
    /* Ready nodes: a min-heap of plan indexes, since plan order is priority
     * (oldest date first, then file order). */
    size_t *ready;
    size_t ready_len, ready_cap;
    /* --max-active-dates: the distinct dates of the plan, sorted, and for
     * each how many of its nodes are not done yet and whether it started. */
    int32_t *days;
    size_t *day_left;
    unsigned char *day_active;
    size_t ndays, active_days, dates_done;
    size_t running, done, failed;
    int interrupted; /* a signal arrived */
    int stopping;    /* no new starts: interrupt, fail-fast or database failure */
    int signal_count;
    uv_signal_t signals[3];
    uv_signal_t sigchld; /* ref'd only while attempts run */
    uv_timer_t tick, grace;
    int64_t start_mono;
    char *run_logs_dir;
    int db_failed;
    nj_err db_err;
};

static void schedule(runner *r);
static void start_attempt(node_run *n);
static void report(runner *r, nj_event *ev);
static void drain_output(node_run *n);
static void batch_begin(runner *r);
static void batch_end(runner *r);

/* ---- the ready heap and active dates ------------------------------------- */

static void ready_push(runner *r, size_t v)
{
    nj_grow(&r->ready, &r->ready_cap, r->ready_len + 1, sizeof(size_t));
    size_t i = r->ready_len++;
    r->ready[i] = v;
    while (i > 0 && r->ready[i] < r->ready[(i - 1) / 2]) {
        size_t p = (i - 1) / 2, t = r->ready[p];
        r->ready[p] = r->ready[i];
        r->ready[i] = t;
        i = p;
    }
}

static size_t ready_pop(runner *r)
{
    size_t top = r->ready[0];
    r->ready[0] = r->ready[--r->ready_len];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, rr = l + 1, m = i;
        if (l < r->ready_len && r->ready[l] < r->ready[m]) m = l;
        if (rr < r->ready_len && r->ready[rr] < r->ready[m]) m = rr;
        if (m == i) break;
        size_t t = r->ready[m];
        r->ready[m] = r->ready[i];
        r->ready[i] = t;
        i = m;
    }
    return top;
}

/* With --max-active-dates K, a node of a date that has not started yet waits
 * while K other dates are in flight. */
static int date_may_start(runner *r, node_run *n)
{
    if (n->day_slot < 0) return 1;
    if (r->day_active[n->day_slot]) return 1;
    if (r->opts->max_active_dates > 0 && r->active_days >= (size_t)r->opts->max_active_dates)
        return 0;
    r->day_active[n->day_slot] = 1;
    r->active_days++;
    return 1;
}

static void date_node_done(runner *r, node_run *n)
{
    if (n->day_slot < 0) return;
    if (--r->day_left[n->day_slot] != 0) return;
    if (r->day_active[n->day_slot]) {
        r->day_active[n->day_slot] = 0;
        r->active_days--;
    }
    r->dates_done++;
    char ds[11];
    nj_date_format(r->days[n->day_slot], ds);
    nj_event ev = {0};
    ev.kind = NJ_EVENT_DATE_END;
    ev.ds = ds;
    ev.exit_code = -1;
    report(r, &ev);
}

static int cmp_days(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* Fills r->days with the plan's distinct dates and each node's slot. */
static void index_days(runner *r)
{
    const nj_plan *plan = r->plan;
    r->days = nj_xcalloc(plan->n ? plan->n : 1, sizeof(int32_t));
    for (size_t i = 0; i < plan->n; i++)
        if (plan->nodes[i].ds) r->days[r->ndays++] = plan->nodes[i].day;
    if (r->ndays) qsort(r->days, r->ndays, sizeof(int32_t), cmp_days);
    size_t m = 0;
    for (size_t i = 0; i < r->ndays; i++)
        if (i == 0 || r->days[i] != r->days[m - 1]) r->days[m++] = r->days[i];
    r->ndays = m;
    r->day_left = nj_xcalloc(m ? m : 1, sizeof(size_t));
    r->day_active = nj_xcalloc(m ? m : 1, 1);
    for (size_t i = 0; i < plan->n; i++) {
        node_run *n = &r->nodes[i];
        n->day_slot = -1;
        if (!plan->nodes[i].ds) continue;
        int32_t *hit = bsearch(&plan->nodes[i].day, r->days, m, sizeof(int32_t), cmp_days);
        n->day_slot = hit - r->days;
        r->day_left[n->day_slot]++;
    }
}
static void finish_node(node_run *n, nj_status status, const char *reason);

/* ---- reporting ---------------------------------------------------------- */

static void report(runner *r, nj_event *ev)
{
    if (!r->opts->report) return;
    nj_progress pr = {0};
    pr.total = r->plan->n;
    pr.done = r->done;
    pr.running = r->running;
    pr.failed = r->failed;
    pr.dates_total = r->ndays;
    pr.dates_done = r->dates_done;
    pr.elapsed_ms = nj_time_mono_ms() - r->start_mono;
    for (size_t i = 0; r->running && i < r->plan->n && pr.nrunning_names < 8; i++)
        if (r->nodes[i].pid > 0) pr.running_names[pr.nrunning_names++] = r->plan->nodes[i].stage->name;
    r->opts->report(r->opts->report_ctx, ev, &pr);
}

static nj_event node_event(node_run *n, nj_event_kind kind)
{
    nj_event ev = {0};
    ev.kind = kind;
    ev.node = n->index;
    ev.stage = n->r->plan->nodes[n->index].stage->name;
    ev.ds = n->r->plan->nodes[n->index].ds;
    ev.attempt = n->attempt;
    ev.exit_code = -1;
    ev.cmd = n->inst.cmd;
    ev.log_path = n->log_path;
    return ev;
}

/* A database write failed: remember the first error and stop starting work.
 * The run ends with a system error; what was committed stays consistent. */
static void db_failed(runner *r, const nj_err *err);

/* ---- killing ------------------------------------------------------------ */

static void signal_group(node_run *n, int sig)
{
    if (n->pgid > 0) kill(-n->pgid, sig);
}

static void stop_everything(runner *r, kill_reason why, int sig);

static void grace_expired(uv_timer_t *t)
{
    runner *r = t->data;
    for (size_t i = 0; i < r->plan->n; i++)
        if (r->nodes[i].pid > 0) signal_group(&r->nodes[i], SIGKILL);
}

static void db_failed(runner *r, const nj_err *err)
{
    if (!r->db_failed) {
        r->db_failed = 1;
        r->db_err = *err;
    }
    stop_everything(r, KILL_STOP, SIGTERM);
}

/* Stops starting work, signals every running process group, and arms the
 * grace timer that SIGKILLs what is left. Nodes waiting to retry end now. */
static void stop_everything(runner *r, kill_reason why, int sig)
{
    if (r->stopping && why != KILL_INTERRUPT) return;
    r->stopping = 1;
    for (size_t i = 0; i < r->plan->n; i++) {
        node_run *n = &r->nodes[i];
        if (n->pid > 0) {
            if (n->killing == KILL_NONE || why == KILL_INTERRUPT) n->killing = why;
            signal_group(n, sig);
        } else if (n->phase == PHASE_RETRY_WAIT) {
            uv_timer_stop(&n->timer);
            finish_node(n, NJ_STATUS_INTERRUPTED,
                        why == KILL_INTERRUPT ? "interrupted while waiting to retry"
                                              : "stopped while waiting to retry");
        }
    }
    if (r->running > 0) uv_timer_start(&r->grace, grace_expired, (uint64_t)r->opts->kill_grace_ms, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    runner *r = h->data;
    r->signal_count++;
    nj_event ev = {0};
    ev.kind = NJ_EVENT_INTERRUPT;
    ev.signal = signum;
    ev.exit_code = -1;
    report(r, &ev);
    if (r->signal_count > 1) {
        /* Second signal: the user means it. */
        grace_expired(&r->grace);
        return;
    }
    r->interrupted = 1;
    stop_everything(r, KILL_INTERRUPT, signum);
}

/* ---- node preparation --------------------------------------------------- */

/* Restores each missing input of the node that another stage produces
 * from the cache (e.g. `--only train` after the features were cleaned
 * away). Returns 0 when every input exists, or fills err with why not. */
static int restore_missing_inputs(node_run *n, nj_err *err)
{
    runner *r = n->r;
    for (size_t i = 0; i < n->inst.ninputs; i++) {
        const nj_input *in = &n->inst.inputs[i];
        if (nj_fs_exists(in->path.abs)) continue;
        if (!r->opts->cache || !nj_instance_producer(&n->inst, in, NULL))
            return nj_err_set(err, NJ_ENOTFOUND, "dep '%s' does not exist", in->path.rel);
        int rc = nj_cache_restore_input(r->opts->cache, &n->inst, in, err);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Renders the node. Without a cache, also makes sure its inputs exist; with
 * one, computing the key finds a missing input without a stat of its own
 * (see settled_by_cache). Returns 0 or fills err with why it fails. */
static int prepare_node(node_run *n, nj_err *err)
{
    runner *r = n->r;
    const nj_plan_node *pn = &r->plan->nodes[n->index];
    const nj_exec_hooks *hooks = r->opts->hooks;
    char *champion = NULL;
    int rc;
    if (pn->stage->uses_champion && hooks && hooks->champion &&
        (rc = hooks->champion(hooks->ctx, pn, &champion, err)) < 0)
        return rc;
    rc = nj_instance_render(r->pipeline, pn->stage, pn->ds, champion, &n->inst, err);
    free(champion);
    if (rc < 0) return rc;
    n->rendered = 1;
    return r->opts->cache ? 0 : restore_missing_inputs(n, err);
}

/* Asks the cache whether the node needs to run. Returns 1 when it finished
 * the node (cached, up to date, or failed to compute its key), else 0. */
static int settled_by_cache(node_run *n)
{
    runner *r = n->r;
    nj_cache *cache = r->opts->cache;
    if (!cache) return 0;
    nj_err err = {0};
    int rc = nj_cache_key(cache, &n->inst, &n->key, &err);
    /* An input is missing: restore what the cache can, then key again. */
    if (rc == NJ_ENOTFOUND && (rc = restore_missing_inputs(n, &err)) == 0)
        rc = nj_cache_key(cache, &n->inst, &n->key, &err);
    if (rc < 0) {
        finish_node(n, NJ_STATUS_FAILED, err.msg);
        return 1;
    }
    n->keyed = 1;
    if (r->plan->nodes[n->index].forced) {
        n->run_reason = nj_xstrdup("forced");
        return 0;
    }
    nj_decision d;
    if (nj_cache_decide(cache, &n->inst, &n->key, 1, r->opts->run_id, &d, &err) < 0) {
        db_failed(r, &err);
        finish_node(n, NJ_STATUS_INTERRUPTED, err.msg);
        return 1;
    }
    if (d.kind == NJ_DECIDE_RUN) {
        n->run_reason = nj_xstrdup(d.reason);
        if (d.cache_damaged) {
            /* Not routine: the store lost or damaged an object. Say so. */
            nj_event ev = node_event(n, NJ_EVENT_CACHE_PROBLEM);
            ev.reason = d.reason;
            report(r, &ev);
        }
        return 0;
    }
    finish_node(n, d.kind == NJ_DECIDE_CACHED ? NJ_STATUS_CACHED : NJ_STATUS_UP_TO_DATE, d.reason);
    return 1;
}

/* environ, minus names the stage overrides, plus the NIGHTJAR_* markers and
 * the stage's own env. NULL-terminated; caller frees each entry and the array. */
static char **build_env(node_run *n)
{
    runner *r = n->r;
    const nj_stage *s = r->plan->nodes[n->index].stage;
    size_t count = 0, cap = 0;
    char **env = NULL;
    char *own[7];
    size_t nown = 0;
    own[nown++] = nj_xasprintf("NIGHTJAR_RUN_ID=%lld", (long long)r->opts->run_id);
    own[nown++] = nj_xasprintf("NIGHTJAR_ATTEMPT_ID=%lld", (long long)n->attempt_id);
    own[nown++] = nj_xasprintf("NIGHTJAR_STATE=%s", r->opts->state_path ? r->opts->state_path : "");
    own[nown++] = nj_xasprintf("NIGHTJAR_STAGE=%s", s->name);
    own[nown++] = nj_xasprintf("NIGHTJAR_ATTEMPT=%d", n->attempt);
    own[nown++] = nj_xasprintf("NIGHTJAR_PIPELINE=%s", r->pipeline->name);
    if (n->inst.ds) own[nown++] = nj_xasprintf("NIGHTJAR_DS=%s", n->inst.ds);
    for (char **e = environ; *e; e++) {
        size_t name_len = strcspn(*e, "=");
        int overridden = nj_str_starts(*e, "NIGHTJAR_RUN_ID=") ||
                         nj_str_starts(*e, "NIGHTJAR_ATTEMPT") ||
                         nj_str_starts(*e, "NIGHTJAR_STATE=") ||
                         nj_str_starts(*e, "NIGHTJAR_STAGE=") || nj_str_starts(*e, "NIGHTJAR_DS=") ||
                         nj_str_starts(*e, "NIGHTJAR_PIPELINE=");
        for (size_t i = 0; i < n->inst.nenv && !overridden; i++)
            overridden = strncmp(n->inst.env[i], *e, name_len + 1) == 0;
        if (!overridden) NJ_PUSH(env, count, cap, nj_xstrdup(*e));
    }
    for (size_t i = 0; i < nown; i++)
        NJ_PUSH(env, count, cap, own[i]);
    for (size_t i = 0; i < n->inst.nenv; i++)
        NJ_PUSH(env, count, cap, nj_xstrdup(n->inst.env[i]));
    NJ_PUSH(env, count, cap, NULL);
    return env;
}

static void free_env(char **env)
{
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

/* ---- attempts ----------------------------------------------------------- */

static int64_t retry_delay_ms(const nj_stage *s, int attempt)
{
    int64_t delay = s->retry_delay_ms;
    for (int i = 1; i < attempt && delay < s->retry_delay_max_ms; i++)
        delay *= 2;
    if (delay > s->retry_delay_max_ms) delay = s->retry_delay_max_ms;
    /* Equal jitter: retries of many stages that failed together spread out,
     * yet none waits less than half its nominal delay. */
    return delay / 2 + (delay > 1 ? (int64_t)(random() % (delay / 2 + 1)) : 0);
}

static void on_timer(uv_timer_t *t);

/* ---- storing outputs in the cache ---------------------------------------------
 * A succeeded node's downstream may start at once: its outputs are in the
 * workspace. Putting them in the object store (hash, copy, fsync, rename)
 * happens on libuv's thread pool meanwhile, and the cache entry is recorded
 * back on the loop thread when that is done; the loop, and so the run, ends
 * only after every store finished. A failure to store is a warning: the
 * result is simply not cached. */

typedef struct store_job {
    uv_work_t req;
    node_run *n;
    char *outputs;
    int rc;
    nj_err err;
} store_job;

static void store_work(uv_work_t *req)
{
    store_job *job = req->data;
    job->rc = nj_cache_store_outputs(job->n->r->opts->cache, &job->n->inst, 1, &job->outputs,
                                     &job->err);
}

static void store_commit(node_run *n, int rc, const char *outputs, nj_err *err)
{
    runner *r = n->r;
    if (rc == 0)
        rc = nj_cache_commit_outputs(r->opts->cache, &n->inst, &n->key, outputs, r->opts->run_id,
                                     err);
    if (rc < 0) {
        nj_event ev = node_event(n, NJ_EVENT_CACHE_PROBLEM);
        ev.reason = err->msg;
        report(r, &ev);
    }
}

static void store_done(uv_work_t *req, int status)
{
    store_job *job = req->data;
    if (status == UV_ECANCELED) job->rc = nj_err_set(&job->err, -ECANCELED, "storing cancelled");
    store_commit(job->n, job->rc, job->outputs, &job->err);
    free(job->outputs);
    free(job);
}

static void store_outputs(node_run *n)
{
    int has_dir = 0;
    for (size_t i = 0; i < n->inst.nouts; i++)
        has_dir |= nj_fs_is_dir(n->inst.outs[i].abs);
    if (has_dir) {
        /* Trees hash their files on the pool themselves: store them here. */
        char *outputs = NULL;
        nj_err err = {0};
        int rc = nj_cache_store_outputs(n->r->opts->cache, &n->inst, 0, &outputs, &err);
        store_commit(n, rc, outputs, &err);
        free(outputs);
        return;
    }
    store_job *job = nj_xcalloc(1, sizeof(*job));
    job->req.data = job;
    job->n = n;
    int uvrc = uv_queue_work(&n->r->loop, &job->req, store_work, store_done);
    if (uvrc < 0) {
        nj_err err = {0};
        nj_err_set(&err, -EIO, "cannot queue storing: %s", uv_strerror(uvrc));
        store_commit(n, -EIO, NULL, &err);
        free(job);
    }
}

/* The attempt ended with `status`; decide between retry and final outcome. */
static void attempt_failed(node_run *n, nj_status status, const char *reason)
{
    runner *r = n->r;
    const nj_stage *s = r->plan->nodes[n->index].stage;
    if (status == NJ_STATUS_INTERRUPTED) {
        finish_node(n, NJ_STATUS_INTERRUPTED, reason);
    } else if (n->attempt <= s->retries && !r->stopping) {
        int64_t delay = retry_delay_ms(s, n->attempt);
        n->phase = PHASE_RETRY_WAIT;
        n->timer_purpose = TIMER_RETRY;
        uv_timer_start(&n->timer, on_timer, (uint64_t)delay, 0);
        nj_event ev = node_event(n, NJ_EVENT_RETRY);
        ev.delay_ms = delay;
        ev.reason = reason;
        report(r, &ev);
    } else {
        finish_node(n, NJ_STATUS_FAILED, reason);
    }
}

static void attempt_exited(node_run *n, int64_t exit_status, int term_signal)
{
    runner *r = n->r;
    batch_begin(r); /* ended after the scheduling pass below */
    uv_timer_stop(&n->timer);
    drain_output(n);
    n->pid = 0;
    if (--r->running == 0) uv_unref((uv_handle_t *)&r->sigchld);
    /* The attempt is over: whatever is left of its process group goes too. */
    signal_group(n, n->killing != KILL_NONE ? SIGKILL : SIGTERM);
    n->pgid = 0;
    if (r->running == 0) uv_timer_stop(&r->grace);

    nj_status status = NJ_STATUS_SUCCEEDED;
    char reason[1024] = "";
    const nj_stage *s = r->plan->nodes[n->index].stage;
    if (n->killing == KILL_INTERRUPT || n->killing == KILL_STOP) {
        status = NJ_STATUS_INTERRUPTED;
        snprintf(reason, sizeof(reason), "%s",
                 r->interrupted ? "interrupted by signal" : "stopped after another failure");
    } else if (n->killing == KILL_TIMEOUT) {
        char d[32];
        nj_duration_format(s->timeout_ms, d, sizeof(d));
        status = NJ_STATUS_TIMEOUT;
        snprintf(reason, sizeof(reason), "timed out after %s", d);
    } else if (term_signal) {
        status = NJ_STATUS_FAILED;
        snprintf(reason, sizeof(reason), "killed by signal %d (%s)", term_signal,
                 strsignal(term_signal));
    } else if (exit_status != 0) {
        status = NJ_STATUS_FAILED;
        snprintf(reason, sizeof(reason), "exited with status %lld", (long long)exit_status);
    } else {
        for (size_t i = 0; i < n->inst.nouts; i++) {
            if (nj_fs_exists(n->inst.outs[i].abs)) continue;
            status = NJ_STATUS_FAILED;
            snprintf(reason, sizeof(reason), "stage '%s' did not write declared output '%s'",
                     s->name, s->outs[i].path);
            break;
        }
    }
    n->killing = KILL_NONE;
    int code = term_signal ? -1 : (int)exit_status;
    nj_err err = {0};
    if (nj_state_attempt_end(r->st, n->attempt_id, status, code, term_signal,
                             reason[0] ? reason : NULL, &err) < 0)
        db_failed(r, &err);
    nj_event ev = node_event(n, NJ_EVENT_ATTEMPT_END);
    ev.status = status;
    ev.exit_code = code;
    ev.signal = term_signal;
    ev.duration_ms = nj_time_mono_ms() - n->attempt_start_mono;
    ev.reason = reason[0] ? reason : NULL;
    report(r, &ev);
    if (status == NJ_STATUS_SUCCEEDED) {
        if (n->keyed) store_outputs(n);
        finish_node(n, NJ_STATUS_SUCCEEDED, n->run_reason);
    } else {
        attempt_failed(n, status, reason);
    }
    schedule(r);
    batch_end(r);
}

static void on_timer(uv_timer_t *t)
{
    node_run *n = t->data;
    switch (n->timer_purpose) {
    case TIMER_TIMEOUT:
        n->killing = KILL_TIMEOUT;
        signal_group(n, SIGTERM);
        n->timer_purpose = TIMER_GRACE;
        uv_timer_start(&n->timer, on_timer, (uint64_t)n->r->opts->kill_grace_ms, 0);
        break;
    case TIMER_GRACE:
        signal_group(n, SIGKILL);
        break;
    case TIMER_RETRY:
        n->phase = PHASE_READY;
        ready_push(n->r, n->index);
        schedule(n->r);
        break;
    case TIMER_NONE:
        break;
    }
}

/* Removes declared outputs (a stage must write them anew) and creates their
 * parent directories. */
static int reset_outputs(node_run *n, nj_err *err)
{
    for (size_t i = 0; i < n->inst.nouts; i++) {
        int rc = nj_fs_remove_tree(n->inst.outs[i].abs, err);
        if (rc == 0) rc = nj_fs_mkdirs_parent(n->inst.outs[i].abs, err);
        if (rc < 0) return rc;
    }
    return 0;
}

/* ---- attempt output ------------------------------------------------------- */

static void write_log(node_run *n, const char *data, size_t len)
{
    if (n->log_fd < 0)
        n->log_fd = open(n->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    /* A log that cannot be written must not fail the stage: its output is
     * lost, which `nightjar logs` then shows as an empty log. */
    if (n->log_fd >= 0 && nj_fs_write_all(n->log_fd, data, len) != 0) {
        close(n->log_fd);
        n->log_fd = -2;
    }
}

static void alloc_output(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = nj_xmalloc(65536);
    buf->len = 65536;
}

static void on_pipe_closed(uv_handle_t *h)
{
    free(h);
}

static void close_output(node_run *n)
{
    if (n->out_pipe) {
        uv_read_stop((uv_stream_t *)n->out_pipe);
        uv_close((uv_handle_t *)n->out_pipe, on_pipe_closed);
        n->out_pipe = NULL;
    }
    if (n->log_fd >= 0) close(n->log_fd);
    n->log_fd = -1;
}

static void on_output(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    node_run *n = stream->data;
    if (nread > 0) write_log(n, buf->base, (size_t)nread);
    free(buf->base);
    if (nread < 0) { /* EOF, or the pipe broke: nothing more will come */
        uv_read_stop(stream);
        uv_close((uv_handle_t *)stream, on_pipe_closed);
        if (n->out_pipe == (uv_pipe_t *)stream) n->out_pipe = NULL;
    }
}

/* The main process exited: take what is still in the pipe (non-blocking;
 * a background process that keeps the pipe open gets no more), then close. */
static void drain_output(node_run *n)
{
    if (n->out_pipe) {
        uv_os_fd_t fd;
        char chunk[65536];
        if (uv_fileno((uv_handle_t *)n->out_pipe, &fd) == 0) {
            ssize_t got;
            while ((got = read(fd, chunk, sizeof(chunk))) > 0)
                write_log(n, chunk, (size_t)got);
        }
    }
    close_output(n);
}

/* Starts `/bin/sh -c CMD` in `cwd` as the leader of a new session (so its
 * whole process group can be signalled), stdin from /dev/null, stdout and
 * stderr into `out_fd`, signals at their defaults. Returns 0 or an errno. */
static int spawn_shell(char *const args[], char *const env[], const char *cwd, int out_fd,
                       pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    posix_spawn_file_actions_addchdir_np(&fa, cwd);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    const int reset[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT};
    for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
        sigaddset(&defaults, reset[i]);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    int e = posix_spawn(pid, "/bin/sh", &fa, &attr, args, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return e;
}

/* SIGCHLD: reap every attempt that ended. A child that is not an attempt
 * (none are started otherwise) is reaped and ignored. */
static void on_sigchld(uv_signal_t *h, int signum)
{
    (void)signum;
    runner *r = h->data;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < r->plan->n; i++) {
            node_run *n = &r->nodes[i];
            if (n->pid != pid) continue;
            if (WIFSIGNALED(status))
                attempt_exited(n, 0, WTERMSIG(status));
            else
                attempt_exited(n, WEXITSTATUS(status), 0);
            break;
        }
    }
}

static void start_attempt(node_run *n)
{
    runner *r = n->r;
    const nj_stage *s = r->plan->nodes[n->index].stage;
    nj_err err = {0};
    n->attempt++;
    n->phase = PHASE_RUNNING;
    n->attempt_start_mono = nj_time_mono_ms();
    if (n->attempt == 1) n->started_ms = nj_time_now_ms();
    free(n->log_path);
    /* One run may hold several dates of a stage (backfills, windows). */
    const char *ds = r->plan->nodes[n->index].ds;
    if (ds && (r->plan->nrequested > 1 || !r->plan->ds || strcmp(ds, r->plan->ds) != 0))
        n->log_path = nj_xasprintf("%s/%s@%s.%d.log", r->run_logs_dir, s->name, ds, n->attempt);
    else
        n->log_path = nj_xasprintf("%s/%s.%d.log", r->run_logs_dir, s->name, n->attempt);
    if (nj_state_attempt_begin(r->st, r->opts->run_id, s->name, n->inst.ds, n->attempt, n->inst.cmd,
                               n->log_path, &n->attempt_id, &err) < 0) {
        db_failed(r, &err);
        finish_node(n, NJ_STATUS_INTERRUPTED, err.msg);
        return;
    }

    int out[2] = {-1, -1};
    n->log_fd = -1;
    int rc = reset_outputs(n, &err);
    if (rc == 0 && pipe2(out, O_CLOEXEC) != 0)
        rc = nj_err_sys(&err, errno, "cannot create the output pipe of stage '%s'", s->name);
    if (rc == 0) {
        char *args[] = {"/bin/sh", "-c", n->inst.cmd, NULL};
        char **env = build_env(n);
        pid_t pid = 0;
        int e = spawn_shell(args, env, n->inst.cwd, out[1], &pid);
        free_env(env);
        if (e != 0)
            rc = nj_err_sys(&err, e, "cannot start '/bin/sh' in '%s'", n->inst.cwd);
        else
            n->pid = pid;
    }
    if (out[1] >= 0) close(out[1]); /* the child has its copy: EOF comes when it is done */
    if (rc == 0) {
        n->out_pipe = nj_xcalloc(1, sizeof(*n->out_pipe));
        uv_pipe_init(&r->loop, n->out_pipe, 0);
        n->out_pipe->data = n;
        if (uv_pipe_open(n->out_pipe, out[0]) == 0) {
            uv_read_start((uv_stream_t *)n->out_pipe, alloc_output, on_output);
        } else {
            close(out[0]);
            uv_close((uv_handle_t *)n->out_pipe, on_pipe_closed);
            n->out_pipe = NULL;
        }
    } else if (out[0] >= 0) {
        close(out[0]);
    }
    if (rc < 0) {
        nj_err dberr = {0};
        if (nj_state_attempt_end(r->st, n->attempt_id, NJ_STATUS_FAILED, -1, 0, err.msg, &dberr) <
            0)
            db_failed(r, &dberr);
        nj_event ev = node_event(n, NJ_EVENT_ATTEMPT_END);
        ev.status = NJ_STATUS_FAILED;
        ev.reason = err.msg;
        report(r, &ev);
        attempt_failed(n, NJ_STATUS_FAILED, err.msg);
        return;
    }
    n->pgid = n->pid;
    if (r->running++ == 0) uv_ref((uv_handle_t *)&r->sigchld);
    if (nj_state_attempt_set_pid(r->st, n->attempt_id, n->pid, &err) < 0) db_failed(r, &err);
    if (s->timeout_ms > 0) {
        n->timer_purpose = TIMER_TIMEOUT;
        uv_timer_start(&n->timer, on_timer, (uint64_t)s->timeout_ms, 0);
    }
    nj_event ev = node_event(n, NJ_EVENT_ATTEMPT_START);
    report(r, &ev);
}

/* ---- node outcomes and scheduling ---------------------------------------- */

static void finish_node(node_run *n, nj_status status, const char *reason)
{
    runner *r = n->r;
    const nj_plan_node *pn = &r->plan->nodes[n->index];
    const nj_exec_hooks *hooks = r->opts->hooks;
    nj_err hook_err = {0};
    if ((status == NJ_STATUS_SUCCEEDED || status == NJ_STATUS_CACHED ||
         status == NJ_STATUS_UP_TO_DATE) &&
        n->rendered && hooks && hooks->node_done &&
        hooks->node_done(hooks->ctx, pn, &n->inst, &hook_err) < 0) {
        status = NJ_STATUS_FAILED;
        reason = hook_err.msg;
    }
    n->phase = PHASE_DONE;
    n->outcome = status;
    r->done++;
    date_node_done(r, n);
    if (status != NJ_STATUS_SUCCEEDED && status != NJ_STATUS_CACHED &&
        status != NJ_STATUS_UP_TO_DATE)
        r->failed++;
    nj_err err = {0};
    if (!r->db_failed &&
        nj_state_stage_end(r->st, r->opts->run_id, pn->stage->name, pn->ds, status,
                           n->attempt, n->started_ms, reason, &err) < 0)
        db_failed(r, &err);
    nj_event ev = node_event(n, NJ_EVENT_NODE_END);
    ev.status = status;
    ev.reason = reason;
    ev.duration_ms = n->started_ms ? nj_time_now_ms() - n->started_ms : 0;
    report(r, &ev);

    if (status == NJ_STATUS_SUCCEEDED || status == NJ_STATUS_CACHED ||
        status == NJ_STATUS_UP_TO_DATE) {
        for (size_t i = 0; i < pn->ndownstream; i++) {
            node_run *d = &r->nodes[pn->downstream[i]];
            if (--d->waiting_on == 0 && d->phase == PHASE_WAITING) {
                d->phase = PHASE_READY;
                ready_push(r, d->index);
            }
        }
        return;
    }
    if (status == NJ_STATUS_FAILED && r->opts->fail_fast) stop_everything(r, KILL_STOP, SIGTERM);
    if (status == NJ_STATUS_FAILED || status == NJ_STATUS_UPSTREAM_FAILED) {
        /* Downstream of downstream keeps naming the stage that actually failed. */
        char why[512];
        if (status == NJ_STATUS_FAILED)
            snprintf(why, sizeof(why), "upstream '%s' failed", pn->stage->name);
        else
            snprintf(why, sizeof(why), "%.500s", reason);
        for (size_t i = 0; i < pn->ndownstream; i++) {
            node_run *d = &r->nodes[pn->downstream[i]];
            if (d->phase == PHASE_WAITING) finish_node(d, NJ_STATUS_UPSTREAM_FAILED, why);
        }
    }
}

/* Starts ready nodes while slots are free. Cache decisions settle nodes
 * without a slot, so a whole no-op run happens in one call; the cache
 * batches every write of one call into one transaction per database. */
/* One transaction per burst of work on each database (see nj_state_begin). */
static void batch_begin(runner *r)
{
    nj_err err = {0};
    if (r->db_failed) return;
    if (nj_state_begin(r->st, &err) < 0 ||
        (r->opts->cache && nj_cache_begin(r->opts->cache, &err) < 0))
        db_failed(r, &err);
}

static void batch_end(runner *r)
{
    nj_err err = {0};
    if (r->opts->cache && nj_cache_commit(r->opts->cache, &err) < 0) db_failed(r, &err);
    if (nj_state_commit(r->st, &err) < 0) db_failed(r, &err);
}

static void schedule(runner *r)
{
    nj_err err = {0};
    batch_begin(r);
    size_t *deferred = NULL, ndeferred = 0, deferred_cap = 0;
    while (!r->stopping && r->running < (size_t)r->opts->jobs && r->ready_len > 0) {
        node_run *n = &r->nodes[ready_pop(r)];
        if (n->phase != PHASE_READY) continue;
        if (!date_may_start(r, n)) {
            NJ_PUSH(deferred, ndeferred, deferred_cap, n->index);
            continue;
        }
        if (n->attempt == 0) {
            if (!n->rendered && prepare_node(n, &err) < 0) {
                finish_node(n, NJ_STATUS_FAILED, err.msg);
                continue;
            }
            if (!n->keyed && settled_by_cache(n)) continue;
        }
        start_attempt(n);
    }
    /* Deadlock guard: a date in flight may need older dates through its
     * windows, which the limit keeps out. When nothing runs and only such
     * nodes are left, admit the first of them beyond the limit. */
    if (ndeferred && r->running == 0 && !r->stopping && r->ready_len == 0) {
        node_run *n = &r->nodes[deferred[0]];
        r->day_active[n->day_slot] = 1;
        r->active_days++;
        ready_push(r, deferred[0]);
        for (size_t i = 1; i < ndeferred; i++)
            ready_push(r, deferred[i]);
        free(deferred);
        schedule(r);
        batch_end(r);
        return;
    }
    for (size_t i = 0; i < ndeferred; i++)
        ready_push(r, deferred[i]);
    free(deferred);
    batch_end(r);
}

static void on_tick(uv_timer_t *t)
{
    runner *r = t->data;
    nj_event ev = {0};
    ev.kind = NJ_EVENT_TICK;
    ev.exit_code = -1;
    report(r, &ev);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int nj_exec_run(const nj_plan *plan, nj_state *st, const nj_exec_opts *opts,
                nj_exec_result *result, nj_err *err)
{
    memset(result, 0, sizeof(*result));
    runner r = {0};
    r.plan = plan;
    r.pipeline = plan->pipeline;
    r.st = st;
    r.opts = opts;
    r.start_mono = nj_time_mono_ms();
    r.run_logs_dir = nj_xasprintf("%s/%lld", opts->logs_dir, (long long)opts->run_id);
    int rc = nj_fs_mkdirs(r.run_logs_dir, err);
    if (rc < 0) {
        free(r.run_logs_dir);
        return rc;
    }
    int uvrc = uv_loop_init(&r.loop);
    if (uvrc < 0) {
        free(r.run_logs_dir);
        return nj_err_set(err, -EIO, "cannot start the event loop: %s", uv_strerror(uvrc));
    }
    srandom((unsigned)(nj_time_now_ms() ^ getpid()));

    r.nodes = nj_xcalloc(plan->n ? plan->n : 1, sizeof(*r.nodes));
    for (size_t i = 0; i < plan->n; i++) {
        node_run *n = &r.nodes[i];
        n->r = &r;
        n->index = i;
        n->waiting_on = plan->nodes[i].nupstream;
        uv_timer_init(&r.loop, &n->timer);
        n->timer.data = n;
        if (n->waiting_on == 0) {
            n->phase = PHASE_READY;
            ready_push(&r, i);
        }
    }
    index_days(&r);
    const int signums[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&r.loop, &r.signals[i]);
        r.signals[i].data = &r;
        uv_signal_start(&r.signals[i], on_signal, signums[i]);
        uv_unref((uv_handle_t *)&r.signals[i]);
    }
    uv_signal_init(&r.loop, &r.sigchld);
    r.sigchld.data = &r;
    uv_signal_start(&r.sigchld, on_sigchld, SIGCHLD);
    uv_unref((uv_handle_t *)&r.sigchld);
    uv_timer_init(&r.loop, &r.grace);
    r.grace.data = &r;
    uv_timer_init(&r.loop, &r.tick);
    r.tick.data = &r;
    uv_timer_start(&r.tick, on_tick, 1000, 1000);
    uv_unref((uv_handle_t *)&r.tick);

    schedule(&r);
    uv_run(&r.loop, UV_RUN_DEFAULT);

    for (size_t i = 0; i < plan->n; i++)
        close_handle((uv_handle_t *)&r.nodes[i].timer);
    for (int i = 0; i < 3; i++)
        close_handle((uv_handle_t *)&r.signals[i]);
    close_handle((uv_handle_t *)&r.grace);
    close_handle((uv_handle_t *)&r.sigchld);
    close_handle((uv_handle_t *)&r.tick);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);

    for (size_t i = 0; i < plan->n; i++) {
        node_run *n = &r.nodes[i];
        if (n->phase == PHASE_DONE)
            result->counts[n->outcome]++;
        else
            result->not_run++;
        nj_instance_release(&n->inst);
        nj_key_release(&n->key);
        free(n->run_reason);
        free(n->log_path);
    }
    if (r.interrupted)
        result->status = NJ_STATUS_INTERRUPTED;
    else if (r.failed > 0 || result->not_run > 0)
        result->status = NJ_STATUS_FAILED;
    else
        result->status = NJ_STATUS_SUCCEEDED;
    free(r.nodes);
    free(r.ready);
    free(r.days);
    free(r.day_left);
    free(r.day_active);
    free(r.run_logs_dir);
    if (r.db_failed) {
        if (err) *err = r.db_err;
        return r.db_err.code ? r.db_err.code : NJ_EDB;
    }
    return 0;
}
