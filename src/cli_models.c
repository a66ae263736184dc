/* cli_models.c - what a pipeline released, for people: `nightjar models`
 * (list, promote, rollback, events), `nightjar metrics` and `nightjar
 * lineage`.
 *
 * Everything shown is read from the workspace's state database: the model
 * registry's tables (registry.h) and those of schema 5 (state.c: stage_metrics,
 * gate_decisions, model_sources, publications, runs.git_commit), plus the
 * snapshots table. The registry is reached through registry.h; the other
 * tables have no query module of their own, so the few read-only queries that
 * join them live here, next to the only code that prints them.
 *
 * Only `models promote` and `models rollback` write: each holds the
 * workspace lock (as `run` does) for the whole change, pins the new
 * champion's object in the cache so gc keeps it, and records the event with
 * no run (a change typed by hand). The looking verbs never create a table:
 * a registry that was never opened reads as empty.
 */
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_internal.h"
#include "nightjar/cache.h"
#include "nightjar/fs.h"
#include "nightjar/hash.h"
#include "nightjar/json.h"
#include "nightjar/lock.h"
#include "nightjar/registry.h"
#include "nightjar/store.h"
#include "nightjar/util.h"

/* ---- small helpers -------------------------------------------------------- */

/* "2001-03-02 02:14:05" in UTC, or "-" for no time. */
static void format_utc(int64_t ms, char *out, size_t size)
{
    if (ms <= 0) {
        snprintf(out, size, "-");
        return;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm);
}

/* A metric for a table cell: whole numbers as such, others to 4 digits. */
static void format_number(double v, char *out, size_t size)
{
    if (v == (double)(long long)v && v > -1e15 && v < 1e15)
        snprintf(out, size, "%lld", (long long)v);
    else
        snprintf(out, size, "%.4g", v);
}

/* Parses JSON text stored in the database; NULL when absent or not JSON. */
static nj_json *parse_stored(const char *text)
{
    nj_json *doc = NULL;
    nj_err err = {0};
    if (!text || nj_json_parse(text, strlen(text), "stored JSON", &doc, &err) < 0) return NULL;
    return doc;
}

/* Writes stored JSON text compactly, re-serialised so that the output is
 * valid JSON whatever the row holds: null when absent, a string when the
 * text is not JSON. */
static void write_stored_json(FILE *f, const char *text)
{
    nj_json *doc = parse_stored(text);
    if (!doc) {
        cli_json_str(f, text);
        return;
    }
    nj_buf b;
    nj_buf_init(&b);
    nj_json_write(&b, doc);
    fwrite(b.data, 1, b.len, f);
    nj_buf_release(&b);
    nj_json_free(doc);
}

/* "auc=0.6712 log_loss=0.4012 brier=0.1521": the numbers directly under
 * `obj`, at most `max` of them, into `out`. Empty when there are none. */
static void headline_metrics(const nj_json *obj, size_t max, nj_buf *out)
{
    if (!obj || obj->type != NJ_JSON_OBJECT) return;
    size_t shown = 0;
    for (size_t i = 0; i < obj->len && shown < max; i++) {
        if (obj->items[i].type != NJ_JSON_NUMBER) continue;
        char num[32];
        format_number(obj->items[i].number, num, sizeof(num));
        nj_buf_printf(out, "%s%s=%s", shown ? " " : "", obj->keys[i], num);
        shown++;
    }
}

/* "2001-02-01..2001-02-28 (28)" from a JSON array of dates; the raw text
 * when it is not one; "-" when absent. */
static void training_summary(const char *dates, nj_buf *out)
{
    nj_json *doc = parse_stored(dates);
    if (!dates || !*dates) {
        nj_buf_puts(out, "-");
    } else if (!doc || doc->type != NJ_JSON_ARRAY) {
        nj_buf_puts(out, dates);
    } else if (doc->len == 0) {
        nj_buf_puts(out, "none");
    } else {
        const nj_json *first = &doc->items[0], *last = &doc->items[doc->len - 1];
        const char *a = first->type == NJ_JSON_STRING ? first->string : "?";
        const char *b = last->type == NJ_JSON_STRING ? last->string : "?";
        if (doc->len == 1)
            nj_buf_printf(out, "%s (1)", a);
        else
            nj_buf_printf(out, "%s..%s (%zu)", a, b, doc->len);
    }
    nj_json_free(doc);
}

/* Prints a table line without the padding of its last column. */
static void put_line(nj_buf *line)
{
    while (line->len && line->data[line->len - 1] == ' ')
        line->data[--line->len] = '\0';
    puts(line->data);
    nj_buf_reset(line);
}

static char *column_dup(sqlite3_stmt *q, int i)
{
    return nj_xstrdup((const char *)sqlite3_column_text(q, i));
}

static int db_fail(sqlite3 *db, const char *what)
{
    cli_error("%s in '%s': %s", what, sqlite3_db_filename(db, "main"), sqlite3_errmsg(db));
    return NJ_EXIT_SYSTEM;
}

/* Prepares `sql` and binds the text arguments that follow (NULL ends them;
 * a NULL argument cannot be bound this way). Returns an exit code. */
static int prepare(sqlite3 *db, sqlite3_stmt **q, const char *sql, ...) __attribute__((sentinel));
static int prepare(sqlite3 *db, sqlite3_stmt **q, const char *sql, ...)
{
    if (sqlite3_prepare_v2(db, sql, -1, q, NULL) != SQLITE_OK)
        return db_fail(db, "cannot read the state database");
    va_list ap;
    va_start(ap, sql);
    const char *arg;
    for (int i = 1; (arg = va_arg(ap, const char *)) != NULL; i++)
        sqlite3_bind_text(*q, i, arg, -1, SQLITE_TRANSIENT);
    va_end(ap);
    return NJ_EXIT_OK;
}

/* Steps `q`: 1 for a row, 0 when done, -1 on an error (printed). */
static int step(sqlite3 *db, sqlite3_stmt *q)
{
    int s = sqlite3_step(q);
    if (s == SQLITE_ROW) return 1;
    if (s == SQLITE_DONE) return 0;
    db_fail(db, "cannot read the state database");
    return -1;
}

static int table_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1,
                           &q, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int found = sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    return found;
}

/* --last N: a positive count, or `fallback` when not given. Returns 0, or
 * -1 after printing a usage error. */
static int parse_last(const char *verb, const char *text, int fallback, int *out)
{
    *out = fallback;
    if (!text) return 0;
    char *end;
    long n = strtol(text, &end, 10);
    if (*end || n < 1 || n > 1000000) {
        cli_error("%s: --last takes a positive number, got '%s'", verb, text);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/* Opens the registry of a looking verb: NULL in *reg (not an error) when no
 * model was ever registered, so that looking creates no table. */
static int open_registry_if_any(nj_state *st, nj_registry **reg)
{
    *reg = NULL;
    if (!st || !table_exists(nj_state_db(st), "models")) return NJ_EXIT_OK;
    nj_err err = {0};
    if (nj_registry_open(st, reg, &err) < 0) {
        cli_error("%s", err.msg);
        return NJ_EXIT_SYSTEM;
    }
    return NJ_EXIT_OK;
}

/* ---- models list ---------------------------------------------------------- */

static const char models_help[] =
    "usage: nightjar models list PIPELINE [--json]\n"
    "       nightjar models promote PIPELINE VERSION [--wait-lock SECONDS]\n"
    "       nightjar models rollback PIPELINE [--wait-lock SECONDS]\n"
    "       nightjar models events PIPELINE [--last N] [--json]\n"
    "\n"
    "list      the registered model versions, newest first: version, when it was\n"
    "          registered (UTC), the training stage and date, the dates it was\n"
    "          trained on, its headline metrics and its aliases (champion, previous)\n"
    "promote   makes VERSION (a unique prefix of at least 4 hex digits) the champion;\n"
    "          the old champion becomes `previous`\n"
    "rollback  makes `previous` the champion again\n"
    "events    the registry's log: registrations, promotions, holds, rollbacks\n"
    "          (newest first, default the last 20)\n"
    "\n"
    "promote and rollback take the workspace lock like run (exit 75 when another\n"
    "run holds it, unless it is released within --wait-lock SECONDS), record the\n"
    "change with no run id, and pin the new champion so gc keeps it.\n";

static void print_model_json(const nj_model_record *m)
{
    char when[32];
    format_utc(m->created_ms, when, sizeof(when));
    printf("{\"version\": ");
    cli_json_str(stdout, m->version);
    printf(", \"stage\": ");
    cli_json_str(stdout, m->stage);
    printf(", \"ds\": ");
    cli_json_str(stdout, m->ds && *m->ds ? m->ds : NULL);
    printf(", \"run_id\": ");
    if (m->run_id)
        printf("%lld", (long long)m->run_id);
    else
        printf("null");
    printf(", \"created_ms\": %lld, \"created\": ", (long long)m->created_ms);
    if (m->created_ms > 0)
        printf("\"%.10sT%sZ\"", when, when + 11);
    else
        printf("null");
    printf(", \"path\": ");
    cli_json_str(stdout, m->path);
    printf(", \"training_dates\": ");
    write_stored_json(stdout, m->training_dates);
    printf(", \"metrics\": ");
    write_stored_json(stdout, m->metrics);
    printf(", \"aliases\": [");
    if (m->aliases) {
        const char *s = m->aliases;
        int first = 1;
        while (*s) {
            size_t n = strcspn(s, ",");
            char *alias = nj_xstrndup(s, n);
            printf("%s", first ? "" : ", ");
            cli_json_str(stdout, alias);
            free(alias);
            first = 0;
            s += n;
            if (*s) s++;
        }
    }
    printf("]}");
}

static int models_list(cli_session *ss, int json)
{
    nj_registry *reg = NULL;
    nj_model_record *models = NULL;
    size_t n = 0;
    nj_err err = {0};
    int code = open_registry_if_any(ss->st, &reg);
    if (code == NJ_EXIT_OK && reg && nj_registry_list(reg, ss->p->name, &models, &n, &err) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
    }
    if (code) goto out;
    if (json) {
        printf("[");
        for (size_t i = 0; i < n; i++) {
            printf("%s\n  ", i ? "," : "");
            print_model_json(&models[i]);
        }
        printf("%s]\n", n ? "\n" : "");
        goto out;
    }
    if (n == 0) {
        printf("no models registered for '%s'\n", ss->p->name);
        goto out;
    }
    printf("%-12s  %-19s  %-24s  %-28s  %-17s  %s\n", "VERSION", "CREATED (UTC)", "STAGE@DATE",
           "TRAINED ON", "ALIASES", "METRICS");
    for (size_t i = 0; i < n; i++) {
        const nj_model_record *m = &models[i];
        char when[32];
        format_utc(m->created_ms, when, sizeof(when));
        char *where = nj_xasprintf("%s@%s", m->stage, m->ds && *m->ds ? m->ds : "-");
        nj_buf dates, metrics;
        nj_buf_init(&dates);
        nj_buf_init(&metrics);
        training_summary(m->training_dates, &dates);
        nj_json *doc = parse_stored(m->metrics);
        headline_metrics(doc, 4, &metrics);
        nj_json_free(doc);
        printf("%-12.12s  %-19s  %-24s  %-28s  %-17s  %s\n", m->version, when, where, dates.data,
               m->aliases ? m->aliases : "-", metrics.len ? metrics.data : "-");
        free(where);
        nj_buf_release(&dates);
        nj_buf_release(&metrics);
    }
out:
    for (size_t i = 0; i < n; i++)
        nj_model_record_release(&models[i]);
    free(models);
    nj_registry_free(reg);
    return code;
}

/* ---- models events -------------------------------------------------------- */

static int models_events(cli_session *ss, int last, int json)
{
    nj_registry *reg = NULL;
    nj_model_event *ev = NULL;
    size_t n = 0;
    nj_err err = {0};
    int code = open_registry_if_any(ss->st, &reg);
    if (code == NJ_EXIT_OK && reg &&
        nj_registry_events(reg, ss->p->name, last, &ev, &n, &err) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
    }
    if (code) goto out;
    if (json) printf("[");
    if (!json && n == 0) printf("no model events recorded for '%s'\n", ss->p->name);
    if (!json && n)
        printf("%5s  %-19s  %-8s  %-12s  %-12s  %7s  %s\n", "ID", "TIME (UTC)", "ACTION", "VERSION",
               "PREVIOUS", "RUN", "DETAIL");
    for (size_t i = 0; i < n; i++) {
        const nj_model_event *e = &ev[i];
        char when[32];
        format_utc(e->ts_ms, when, sizeof(when));
        if (json) {
            printf("%s\n  {\"id\": %lld, \"ts_ms\": %lld, \"action\": ", i ? "," : "",
                   (long long)e->id, (long long)e->ts_ms);
            cli_json_str(stdout, e->action);
            printf(", \"version\": ");
            cli_json_str(stdout, e->version);
            printf(", \"previous_version\": ");
            cli_json_str(stdout, e->previous_version);
            printf(", \"run_id\": ");
            if (e->run_id)
                printf("%lld", (long long)e->run_id);
            else
                printf("null");
            printf(", \"detail\": ");
            cli_json_str(stdout, e->detail);
            printf("}");
            continue;
        }
        char run[24] = "by hand";
        if (e->run_id) snprintf(run, sizeof(run), "%lld", (long long)e->run_id);
        /* A multi-line detail (a gate's rules) on one line. */
        nj_buf detail;
        nj_buf_init(&detail);
        for (const char *c = e->detail ? e->detail : ""; *c; c++)
            if (*c == '\n')
                nj_buf_puts(&detail, "; ");
            else
                nj_buf_putc(&detail, *c);
        nj_buf line;
        nj_buf_init(&line);
        nj_buf_printf(&line, "%5lld  %-19s  %-8s  %-12.12s  %-12.12s  %7s  %s", (long long)e->id,
                      when, e->action, e->version ? e->version : "-",
                      e->previous_version ? e->previous_version : "-", run, detail.data);
        put_line(&line);
        nj_buf_release(&line);
        nj_buf_release(&detail);
    }
    if (json) printf("%s]\n", n ? "\n" : "");
out:
    for (size_t i = 0; i < n; i++)
        nj_model_event_release(&ev[i]);
    free(ev);
    nj_registry_free(reg);
    return code;
}

/* ---- models promote / rollback -------------------------------------------- */

/* What a changing verb holds: the pipeline, the workspace lock, the state,
 * the registry and the cache (for pins). */
typedef struct locked {
    cli_session s;
    nj_lock *lock;
    nj_registry *reg;
} locked;

static void locked_close(locked *l)
{
    nj_registry_free(l->reg);
    cli_session_close(&l->s); /* the state and cache, before the lock goes */
    nj_lock_release(l->lock);
    memset(l, 0, sizeof(*l));
}

/* Loads the pipeline, takes the workspace lock and opens state, registry
 * and cache. Returns an exit code (the error printed). */
static int locked_open(locked *l, const char *verb, const char *path, int64_t wait_ms)
{
    int code = cli_session_load(&l->s, path);
    if (code) return code;
    const nj_pipeline *p = l->s.p;
    char *state_path = cli_workspace_path(p, "state.db");
    int ran = nj_fs_exists(state_path);
    free(state_path);
    if (!ran) {
        cli_error("%s: pipeline '%s' has never run in %s: no models are registered", verb, p->name,
                  p->workspace);
        return NJ_EXIT_FAILED;
    }
    nj_err err = {0};
    char *lock_path = cli_workspace_path(p, "lock");
    int rc = nj_lock_acquire(lock_path, wait_ms, &l->lock, &err);
    free(lock_path);
    if (rc < 0) {
        cli_error("%s", err.msg);
        return cli_exit_for(rc);
    }
    if ((code = cli_session_open(&l->s, 1))) return code;
    if (nj_registry_open(l->s.st, &l->reg, &err) < 0) {
        cli_error("%s", err.msg);
        return NJ_EXIT_SYSTEM;
    }
    return NJ_EXIT_OK;
}

/* Pins the model object so that gc keeps it, and warns when it is no longer
 * in the store (a champion that cannot be restored would fail scoring). */
static int pin_model(locked *l, const char *version)
{
    nj_err err = {0};
    if (nj_cache_pin(l->s.cache, version, "model", &err) < 0) {
        cli_error("%s", err.msg);
        return NJ_EXIT_SYSTEM;
    }
    nj_hash h;
    if (nj_hash_from_hex(version, &h, NULL) == 0 && !nj_store_has(nj_cache_store(l->s.cache), &h))
        cli_warn("the object of model %.12s is not in the cache '%s'", version,
                 nj_cache_dir(l->s.cache));
    return NJ_EXIT_OK;
}

static int parse_wait(const char *verb, const char *text, int64_t *wait_ms)
{
    *wait_ms = 0;
    if (!text) return 0;
    char *end;
    double secs = strtod(text, &end);
    if (*end || end == text || secs < 0) {
        cli_error("%s: --wait-lock takes a number of seconds, got '%s'", verb, text);
        return -1;
    }
    *wait_ms = (int64_t)(secs * 1000);
    return 0;
}

static int models_promote(locked *l, const char *prefix)
{
    const char *pipeline = l->s.p->name;
    char *version = NULL, *champion = NULL;
    nj_err err = {0};
    int code = NJ_EXIT_OK, changed = 0;
    if (nj_registry_resolve(l->reg, pipeline, prefix, &version, &err) < 0 ||
        nj_registry_alias(l->reg, pipeline, NJ_ALIAS_CHAMPION, &champion, &err) < 0) {
        cli_error("models promote: %s", err.msg);
        code = cli_exit_for(err.code);
        goto out;
    }
    if (champion && strcmp(champion, version) == 0) {
        printf("%.12s is already the champion of '%s'; nothing changed\n", version, pipeline);
        goto out;
    }
    if ((code = pin_model(l, version))) goto out;
    if (nj_registry_promote(l->reg, pipeline, version, 0, NULL, &changed, &err) < 0) {
        cli_error("models promote: %s", err.msg);
        code = cli_exit_for(err.code);
        goto out;
    }
    if (champion)
        printf("champion of '%s' is now %.12s (was %.12s)\n", pipeline, version, champion);
    else
        printf("champion of '%s' is now %.12s (there was none)\n", pipeline, version);
out:
    free(version);
    free(champion);
    return code;
}

static int models_rollback(locked *l)
{
    const char *pipeline = l->s.p->name;
    char *champion = NULL, *previous = NULL, *now = NULL, *after = NULL;
    nj_err err = {0};
    int code = NJ_EXIT_OK;
    if (nj_registry_alias(l->reg, pipeline, NJ_ALIAS_CHAMPION, &champion, &err) < 0 ||
        nj_registry_alias(l->reg, pipeline, NJ_ALIAS_PREVIOUS, &previous, &err) < 0) {
        cli_error("models rollback: %s", err.msg);
        code = NJ_EXIT_SYSTEM;
        goto out;
    }
    if (previous && (code = pin_model(l, previous))) goto out;
    if (nj_registry_rollback(l->reg, pipeline, 0, NULL, &now, &err) < 0 ||
        nj_registry_alias(l->reg, pipeline, NJ_ALIAS_PREVIOUS, &after, &err) < 0) {
        cli_error("models rollback: %s", err.msg);
        code = cli_exit_for(err.code);
        goto out;
    }
    printf("champion of '%s' is now %.12s (was %.12s); previous is now %.12s\n", pipeline, now,
           champion ? champion : "none", after ? after : "none");
out:
    free(champion);
    free(previous);
    free(now);
    free(after);
    return code;
}

int cli_models(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(models_help, argc < 1 ? stderr : stdout);
        return argc < 1 ? NJ_EXIT_USAGE : NJ_EXIT_OK;
    }
    const char *sub = argv[0];
    enum { LIST, PROMOTE, ROLLBACK, EVENTS } which;
    if (strcmp(sub, "list") == 0)
        which = LIST;
    else if (strcmp(sub, "promote") == 0)
        which = PROMOTE;
    else if (strcmp(sub, "rollback") == 0)
        which = ROLLBACK;
    else if (strcmp(sub, "events") == 0)
        which = EVENTS;
    else {
        static const char *const subs[] = {"list", "promote", "rollback", "events"};
        const char *hint = nj_suggest(sub, subs, 4);
        if (hint)
            cli_error("models: unknown command '%s' (did you mean '%s'?)", sub, hint);
        else
            cli_error("models: unknown command '%s' (list, promote, rollback or events)", sub);
        return NJ_EXIT_USAGE;
    }
    static const cli_opt opts[] = {
        {"--json", NULL, 0}, {"--last", NULL, 1}, {"--wait-lock", NULL, 1}};
    /* Each command takes only its own options: list --json; events --last,
     * --json; promote and rollback --wait-lock. */
    static const cli_opt *const tables[] = {opts, opts, opts + 2, opts + 2};
    static const size_t sizes[] = {1, 2, 1, 1};
    static const char *const names[] = {"models list", "models events", "models promote",
                                        "models rollback"};
    int t = which == LIST ? 0 : which == EVENTS ? 1 : which == PROMOTE ? 2 : 3;
    size_t npos = which == PROMOTE ? 2 : 1;
    cli_args a;
    int code = cli_parse_verb(names[t], models_help, argc - 1, argv + 1, tables[t], sizes[t], npos,
                              npos, &a);
    if (code >= 0) goto out_args;
    if (which == LIST || which == EVENTS) {
        int last = 20;
        if (which == EVENTS && parse_last(names[t], cli_value(&a, 1), 20, &last) < 0) {
            code = NJ_EXIT_USAGE;
            goto out_args;
        }
        cli_session ss = {0};
        if (!(code = cli_session_load(&ss, a.positional[0])) && !(code = cli_session_open(&ss, 0)))
            code = which == LIST ? models_list(&ss, cli_flag(&a, 0))
                                 : models_events(&ss, last, cli_flag(&a, 0));
        cli_session_close(&ss);
        goto out_args;
    }
    int64_t wait_ms;
    if (parse_wait(names[t], cli_value(&a, 0), &wait_ms) < 0) {
        code = NJ_EXIT_USAGE;
        goto out_args;
    }
    locked l = {0};
    if (!(code = locked_open(&l, names[t], a.positional[0], wait_ms)))
        code = which == PROMOTE ? models_promote(&l, a.positional[1]) : models_rollback(&l);
    locked_close(&l);
out_args:
    cli_args_release(&a);
    return code;
}

/* ---- metrics -------------------------------------------------------------- */

static const char metrics_help[] =
    "usage: nightjar metrics PIPELINE [--stage S] [--last N] [--json]\n"
    "\n"
    "The metrics each stage with `metrics:` recorded, per date, newest first (the\n"
    "last N dates, default 30), one table per stage: date, run, a column per number\n"
    "and, where a gate judged that date's candidate model, its decision (promoted,\n"
    "held with the failing rules, or kept). For the gate's stage the numbers are\n"
    "those under the gate's candidate metrics (e.g. overall.model); for others the\n"
    "top-level numbers of the document.\n"
    "\n"
    "--json prints an array of {stage, ds, run_id, recorded_ms, metrics: <the whole\n"
    "document>, gate: {decision, passed, checks, candidate, baseline, run_id,\n"
    "decided_ms, detail} or null}.\n";

typedef struct gate_row {
    char *decision, *checks, *candidate, *baseline, *detail;
    int passed;
    int64_t run_id, decided_ms;
} gate_row;

typedef struct metric_row {
    char *stage, *ds, *metrics;
    int64_t run_id, recorded_ms;
    int has_gate;
    gate_row gate;
} metric_row;

static void metric_row_release(metric_row *r)
{
    free(r->stage);
    free(r->ds);
    free(r->metrics);
    free(r->gate.decision);
    free(r->gate.checks);
    free(r->gate.candidate);
    free(r->gate.baseline);
    free(r->gate.detail);
}

/* The gate's stage of `stage_name`, or NULL when it has no gate. */
static const nj_stage *gate_of(const nj_pipeline *p, const char *stage_name)
{
    const nj_stage *g = p->gate_stage;
    return g && g->gate && strcmp(g->name, stage_name) == 0 ? g : NULL;
}

/* The newest gate decision about (stage, ds): recorded under the stage that
 * has the gate, or under the candidate's training stage. */
static int read_gate_row(sqlite3 *db, const nj_pipeline *p, metric_row *r)
{
    const nj_stage *g = gate_of(p, r->stage);
    sqlite3_stmt *q;
    int code = prepare(db, &q,
                       "SELECT decision, passed, checks, candidate, baseline, detail, run_id, "
                       "decided_ms FROM gate_decisions WHERE pipeline = ?1 AND ds = ?2 AND "
                       "stage IN (?3, ?4) ORDER BY id DESC LIMIT 1",
                       p->name, r->ds, r->stage, g ? g->gate->stage : r->stage, (char *)NULL);
    if (code) return code;
    int row = step(db, q);
    if (row > 0) {
        r->has_gate = 1;
        r->gate.decision = column_dup(q, 0);
        r->gate.passed = sqlite3_column_int(q, 1);
        r->gate.checks = column_dup(q, 2);
        r->gate.candidate = column_dup(q, 3);
        r->gate.baseline = column_dup(q, 4);
        r->gate.detail = column_dup(q, 5);
        r->gate.run_id = sqlite3_column_int64(q, 6);
        r->gate.decided_ms = sqlite3_column_int64(q, 7);
    }
    sqlite3_finalize(q);
    return row < 0 ? NJ_EXIT_SYSTEM : NJ_EXIT_OK;
}

/* The newest `last` rows of each stage (all stages, or `only`), grouped by
 * stage, newest date first. */
static int read_metric_rows(sqlite3 *db, const nj_pipeline *p, const char *only, int last,
                            metric_row **out, size_t *n)
{
    sqlite3_stmt *q;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    int code = prepare(db, &q,
                       "SELECT stage, ds, run_id, metrics, recorded_ms FROM stage_metrics "
                       "WHERE pipeline = ?1 AND (?2 IS NULL OR stage = ?2) ORDER BY stage, ds DESC",
                       p->name, (char *)NULL);
    if (code) return code;
    if (only) sqlite3_bind_text(q, 2, only, -1, SQLITE_STATIC);
    int row, in_stage = 0;
    while ((row = step(db, q)) > 0) {
        const char *stage = (const char *)sqlite3_column_text(q, 0);
        if (*n && strcmp((*out)[*n - 1].stage, stage) == 0) {
            if (in_stage >= last) continue;
        } else {
            in_stage = 0;
        }
        in_stage++;
        nj_grow(out, &cap, *n + 1, sizeof(**out));
        metric_row *r = &(*out)[(*n)++];
        memset(r, 0, sizeof(*r));
        r->stage = column_dup(q, 0);
        r->ds = column_dup(q, 1);
        r->run_id = sqlite3_column_int64(q, 2);
        r->metrics = column_dup(q, 3);
        r->recorded_ms = sqlite3_column_int64(q, 4);
    }
    sqlite3_finalize(q);
    if (row < 0) return NJ_EXIT_SYSTEM;
    for (size_t i = 0; i < *n; i++)
        if ((code = read_gate_row(db, p, &(*out)[i]))) return code;
    return NJ_EXIT_OK;
}

static void print_gate_json(const metric_row *r)
{
    if (!r->has_gate) {
        printf("null");
        return;
    }
    const gate_row *g = &r->gate;
    printf("{\"decision\": ");
    cli_json_str(stdout, g->decision);
    printf(", \"passed\": %s, \"checks\": ", g->passed ? "true" : "false");
    write_stored_json(stdout, g->checks);
    printf(", \"candidate\": ");
    cli_json_str(stdout, g->candidate);
    printf(", \"baseline\": ");
    cli_json_str(stdout, g->baseline);
    printf(", \"run_id\": %lld, \"decided_ms\": %lld, \"detail\": ", (long long)g->run_id,
           (long long)g->decided_ms);
    cli_json_str(stdout, g->detail);
    printf("}");
}

/* "promoted 3ceeedf0a41d", "held 3ceeedf0a41d: auc >= 0.6: 0.55 >= 0.6 → FAIL; ...".
 * A hold's failing rules come from its detail, else from the FAIL checks. */
static void gate_text(const gate_row *g, nj_buf *out)
{
    nj_buf_printf(out, "%s %.12s", g->decision, g->candidate ? g->candidate : "?");
    if (strcmp(g->decision, "held") != 0) return;
    const char *sep = ": ";
    if (g->detail && *g->detail) {
        const char *s = g->detail;
        while (*s) {
            size_t len = strcspn(s, "\n");
            if (len) {
                nj_buf_puts(out, sep);
                nj_buf_add(out, s, len);
                sep = "; ";
            }
            s += len;
            if (*s) s++;
        }
        return;
    }
    nj_json *checks = parse_stored(g->checks);
    const nj_json *list = nj_json_get(checks, "checks");
    for (size_t i = 0; list && list->type == NJ_JSON_ARRAY && i < list->len; i++) {
        const nj_json *outcome = nj_json_get(&list->items[i], "outcome");
        const nj_json *text = nj_json_get(&list->items[i], "text");
        if (!outcome || outcome->type != NJ_JSON_STRING || strcmp(outcome->string, "fail") != 0 ||
            !text || text->type != NJ_JSON_STRING)
            continue;
        nj_buf_printf(out, "%s%s", sep, text->string);
        sep = "; ";
    }
    nj_json_free(checks);
}

#define MAX_METRIC_COLUMNS 8

/* One table: the rows [from, to) of one stage. */
static void print_metric_table(const nj_pipeline *p, const metric_row *rows, size_t from, size_t to)
{
    const nj_stage *g = gate_of(p, rows[from].stage);
    const char *root = g ? g->gate->candidate_root : NULL;
    nj_json **docs = nj_xcalloc(to - from, sizeof(nj_json *));
    const char *cols[MAX_METRIC_COLUMNS];
    size_t ncols = 0, more = 0;
    int any_gate = g != NULL;
    for (size_t i = from; i < to; i++) {
        docs[i - from] = parse_stored(rows[i].metrics);
        any_gate |= rows[i].has_gate;
        const nj_json *obj = nj_json_path(docs[i - from], root);
        for (size_t k = 0; obj && obj->type == NJ_JSON_OBJECT && k < obj->len; k++) {
            if (obj->items[k].type != NJ_JSON_NUMBER) continue;
            size_t c = 0;
            while (c < ncols && strcmp(cols[c], obj->keys[k]) != 0)
                c++;
            if (c < ncols) continue;
            if (ncols < MAX_METRIC_COLUMNS)
                cols[ncols++] = obj->keys[k];
            else
                more++;
        }
    }
    printf("%s", rows[from].stage);
    if (root && *root) printf(" (metrics under '%s', judged by the gate)", root);
    if (more) printf(" (%zu more numbers in --json)", more);
    printf("\n");
    nj_buf line;
    nj_buf_init(&line);
    nj_buf_printf(&line, "%-10s  %6s", "DATE", "RUN");
    for (size_t c = 0; c < ncols; c++)
        nj_buf_printf(&line, "  %-10s", cols[c]);
    if (any_gate) nj_buf_puts(&line, "  GATE");
    put_line(&line);
    for (size_t i = from; i < to; i++) {
        const metric_row *r = &rows[i];
        nj_buf_printf(&line, "%-10s  %6lld", *r->ds ? r->ds : "-", (long long)r->run_id);
        const nj_json *obj = nj_json_path(docs[i - from], root);
        for (size_t c = 0; c < ncols; c++) {
            const nj_json *v = nj_json_get(obj, cols[c]);
            char num[32] = "-";
            if (v && v->type == NJ_JSON_NUMBER) format_number(v->number, num, sizeof(num));
            nj_buf_printf(&line, "  %-10s", num);
        }
        if (any_gate) {
            nj_buf_puts(&line, "  ");
            if (r->has_gate)
                gate_text(&r->gate, &line);
            else
                nj_buf_puts(&line, "-");
        }
        put_line(&line);
    }
    nj_buf_release(&line);
    for (size_t i = from; i < to; i++)
        nj_json_free(docs[i - from]);
    free(docs);
}

/* The position of a stage in the pipeline file; unknown ones last. */
static size_t stage_rank(const nj_pipeline *p, const char *name)
{
    const nj_stage *s = nj_pipeline_stage(p, name);
    return s ? nj_pipeline_stage_index(p, s) : p->nstages;
}

static int compare_rows(const nj_pipeline *p, const metric_row *a, const metric_row *b)
{
    size_t ra = stage_rank(p, a->stage), rb = stage_rank(p, b->stage);
    if (ra != rb) return ra < rb ? -1 : 1;
    int c = strcmp(a->stage, b->stage);
    if (c) return c;
    return -strcmp(a->ds, b->ds);
}

/* Insertion sort by (pipeline order, stage, newest date): rows are few. */
static void sort_metric_rows(const nj_pipeline *p, metric_row *rows, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        metric_row tmp = rows[i];
        size_t j = i;
        while (j > 0 && compare_rows(p, &rows[j - 1], &tmp) > 0) {
            rows[j] = rows[j - 1];
            j--;
        }
        rows[j] = tmp;
    }
}

static int unknown_stage(const char *verb, const nj_pipeline *p, const char *name)
{
    const char **names = nj_xcalloc(p->nstages + 1, sizeof(char *));
    for (size_t i = 0; i < p->nstages; i++)
        names[i] = p->stages[i].name;
    const char *hint = nj_suggest(name, names, p->nstages);
    if (hint)
        cli_error("%s: unknown stage '%s' (did you mean '%s'?)", verb, name, hint);
    else
        cli_error("%s: unknown stage '%s' in pipeline '%s'", verb, name, p->name);
    free(names);
    return NJ_EXIT_USAGE;
}

int cli_metrics(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--stage", NULL, 1}, {"--last", NULL, 1}, {"--json", NULL, 0}};
    cli_args a;
    int code = cli_parse_verb("metrics", metrics_help, argc, argv, opts, 3, 1, 1, &a);
    if (code >= 0) goto out_args;
    int last;
    if (parse_last("metrics", cli_value(&a, 1), 30, &last) < 0) {
        code = NJ_EXIT_USAGE;
        goto out_args;
    }
    const char *only = cli_value(&a, 0);
    int json = cli_flag(&a, 2);
    cli_session ss = {0};
    metric_row *rows = NULL;
    size_t n = 0;
    if ((code = cli_session_load(&ss, a.positional[0])) || (code = cli_session_open(&ss, 0)))
        goto out;
    const nj_pipeline *p = ss.p;
    if (ss.st && (code = read_metric_rows(nj_state_db(ss.st), p, only, last, &rows, &n))) goto out;
    if (n == 0 && only) {
        const nj_stage *s = nj_pipeline_stage(p, only);
        if (!s) {
            code = unknown_stage("metrics", p, only);
            goto out;
        }
        if (!s->metrics) {
            cli_error("metrics: stage '%s' declares no `metrics:` and none were recorded", only);
            code = NJ_EXIT_FAILED;
            goto out;
        }
    }
    sort_metric_rows(p, rows, n);
    if (json) {
        printf("[");
        for (size_t i = 0; i < n; i++) {
            printf("%s\n  {\"stage\": ", i ? "," : "");
            cli_json_str(stdout, rows[i].stage);
            printf(", \"ds\": ");
            cli_json_str(stdout, *rows[i].ds ? rows[i].ds : NULL);
            printf(", \"run_id\": %lld, \"recorded_ms\": %lld, \"metrics\": ",
                   (long long)rows[i].run_id, (long long)rows[i].recorded_ms);
            write_stored_json(stdout, rows[i].metrics);
            printf(", \"gate\": ");
            print_gate_json(&rows[i]);
            printf("}");
        }
        printf("%s]\n", n ? "\n" : "");
        goto out;
    }
    if (n == 0) {
        if (only)
            printf("no metrics recorded for stage '%s' of '%s' yet\n", only, p->name);
        else
            printf("no metrics recorded for '%s' yet\n", p->name);
        goto out;
    }
    for (size_t from = 0; from < n;) {
        size_t to = from + 1;
        while (to < n && strcmp(rows[to].stage, rows[from].stage) == 0)
            to++;
        if (from) printf("\n");
        print_metric_table(p, rows, from, to);
        from = to;
    }
out:
    for (size_t i = 0; i < n; i++)
        metric_row_release(&rows[i]);
    free(rows);
    cli_session_close(&ss);
out_args:
    cli_args_release(&a);
    return code;
}

/* ---- lineage -------------------------------------------------------------- */

static const char lineage_help[] =
    "usage: nightjar lineage PIPELINE --table T --ds YYYY-MM-DD [--json]\n"
    "\n"
    "The chain behind one published date of a serving table, every link read from\n"
    "the state database:\n"
    "  publication    the newest publish of T for that date: run, rows, when, where\n"
    "  run            that run: start, command line, git commit, nightjar version, host\n"
    "  source key     the key text of the stage whose output was published\n"
    "  model          the model version that stage used: its training stage and date,\n"
    "                 metrics and aliases\n"
    "  training key   the key text of the training stage instance (params, code and\n"
    "                 input hashes)\n"
    "  training dates each date the model was trained on and its snapshot archive\n"
    "                 (the newest one written no later than the model's run)\n"
    "  gate           the gate decision that promoted the model\n"
    "A link that is not recorded is printed as missing. Exit 1 when the table has\n"
    "no publication for that date (the published dates are listed).\n";

typedef struct publication {
    int64_t id, run_id, rows, duration_ms, published_ms, serving_id;
    char *model_version, *serving_db, *stage, *source_hash, *source_key, *source_components,
        *spec_hash;
} publication;

typedef struct run_info {
    int found;
    int64_t started_ms, ended_ms;
    char *status, *args, *git_commit, *version, *host, *ds;
} run_info;

typedef struct model_source {
    int found;
    char *stage, *ds, *key, *components;
} model_source;

typedef struct training_date {
    char *ds;
    int found;
    char *stage, *hash;
    int64_t run_id, size;
} training_date;

typedef struct promotion {
    int found;
    int64_t id, run_id, decided_ms;
    int passed;
    char *stage, *ds, *baseline, *checks;
    int64_t by_hand_ms; /* a promote or rollback typed by hand, when no gate promoted it */
    char *by_hand_action;
} promotion;

typedef struct lineage {
    const char *pipeline, *table, *ds;
    publication pub;
    run_info run;
    int has_registry, has_model;
    nj_model_record model;
    model_source src;
    training_date *dates;
    size_t ndates;
    int dates_known; /* the model's training_dates parsed as an array */
    promotion promo;
} lineage;

static void lineage_release(lineage *l)
{
    publication *p = &l->pub;
    free(p->model_version);
    free(p->serving_db);
    free(p->stage);
    free(p->source_hash);
    free(p->source_key);
    free(p->source_components);
    free(p->spec_hash);
    free(l->run.status);
    free(l->run.args);
    free(l->run.git_commit);
    free(l->run.version);
    free(l->run.host);
    free(l->run.ds);
    nj_model_record_release(&l->model);
    free(l->src.stage);
    free(l->src.ds);
    free(l->src.key);
    free(l->src.components);
    for (size_t i = 0; i < l->ndates; i++) {
        free(l->dates[i].ds);
        free(l->dates[i].stage);
        free(l->dates[i].hash);
    }
    free(l->dates);
    free(l->promo.stage);
    free(l->promo.ds);
    free(l->promo.baseline);
    free(l->promo.checks);
    free(l->promo.by_hand_action);
}

/* Lists, in the error for a table or date that was never published, what
 * was: the table's dates (newest first), or the tables published at all. */
static int explain_unpublished(sqlite3 *db, const nj_pipeline *p, const char *table, const char *ds)
{
    sqlite3_stmt *q;
    int code = prepare(db, &q,
                       "SELECT ds, count(*) OVER () FROM (SELECT DISTINCT ds FROM publications "
                       "WHERE pipeline = ?1 AND table_name = ?2) ORDER BY ds DESC LIMIT 10",
                       p->name, table, (char *)NULL);
    if (code) return code;
    nj_buf list;
    nj_buf_init(&list);
    int row;
    long long total = 0;
    while ((row = step(db, q)) > 0) {
        nj_buf_printf(&list, "%s%s", list.len ? ", " : "", sqlite3_column_text(q, 0));
        total = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    if (row < 0) goto out;
    if (total) {
        cli_error("lineage: table '%s' of '%s' has no publication for %s; published dates "
                  "(newest first): %s%s",
                  table, p->name, ds, list.data, total > 10 ? ", ..." : "");
        code = NJ_EXIT_FAILED;
        goto out;
    }
    /* Never published: name the tables that were, and the declared ones. */
    nj_buf_reset(&list);
    nj_strs names = {0};
    if ((code = prepare(db, &q,
                        "SELECT DISTINCT table_name FROM publications WHERE pipeline = ?1 "
                        "ORDER BY table_name",
                        p->name, (char *)NULL)))
        goto out;
    while ((row = step(db, q)) > 0)
        nj_strs_push(&names, (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    if (row < 0) {
        nj_strs_release(&names);
        code = NJ_EXIT_SYSTEM;
        goto out;
    }
    for (size_t i = 0; i < names.len; i++)
        nj_buf_printf(&list, "%s%s", i ? ", " : "", names.items[i]);
    for (size_t i = 0; i < p->ntables; i++)
        if (!nj_strs_contains(&names, p->tables[i].name)) nj_strs_push(&names, p->tables[i].name);
    const char *hint = nj_suggest(table, (const char *const *)names.items, names.len);
    char *did_you_mean = hint ? nj_xasprintf(" (did you mean '%s'?)", hint) : nj_xstrdup("");
    if (list.len)
        cli_error("lineage: table '%s' of '%s' was never published%s; published tables: %s", table,
                  p->name, did_you_mean, list.data);
    else
        cli_error("lineage: table '%s' of '%s' was never published%s; nothing has been "
                  "published yet",
                  table, p->name, did_you_mean);
    free(did_you_mean);
    nj_strs_release(&names);
    code = NJ_EXIT_FAILED;
out:
    nj_buf_release(&list);
    return row < 0 ? NJ_EXIT_SYSTEM : code;
}

static int read_publication(sqlite3 *db, const nj_pipeline *p, lineage *l)
{
    sqlite3_stmt *q;
    int code = prepare(db, &q,
                       "SELECT id, run_id, rows, duration_ms, published_ms, serving_id, "
                       "model_version, serving_db, stage, source_hash, source_key, "
                       "source_components, spec_hash FROM publications WHERE pipeline = ?1 AND "
                       "table_name = ?2 AND ds = ?3 ORDER BY id DESC LIMIT 1",
                       p->name, l->table, l->ds, (char *)NULL);
    if (code) return code;
    int row = step(db, q);
    if (row > 0) {
        publication *pub = &l->pub;
        pub->id = sqlite3_column_int64(q, 0);
        pub->run_id = sqlite3_column_int64(q, 1);
        pub->rows = sqlite3_column_int64(q, 2);
        pub->duration_ms = sqlite3_column_int64(q, 3);
        pub->published_ms = sqlite3_column_int64(q, 4);
        pub->serving_id = sqlite3_column_int64(q, 5);
        pub->model_version = column_dup(q, 6);
        pub->serving_db = column_dup(q, 7);
        pub->stage = column_dup(q, 8);
        pub->source_hash = column_dup(q, 9);
        pub->source_key = column_dup(q, 10);
        pub->source_components = column_dup(q, 11);
        pub->spec_hash = column_dup(q, 12);
    }
    sqlite3_finalize(q);
    if (row < 0) return NJ_EXIT_SYSTEM;
    return row ? NJ_EXIT_OK : explain_unpublished(db, p, l->table, l->ds);
}

static int read_run(sqlite3 *db, int64_t run_id, run_info *r)
{
    sqlite3_stmt *q;
    int code = prepare(db, &q,
                       "SELECT started_ms, ended_ms, status, args, git_commit, version, host, ds "
                       "FROM runs WHERE id = ?1",
                       (char *)NULL);
    if (code) return code;
    sqlite3_bind_int64(q, 1, run_id);
    int row = step(db, q);
    if (row > 0) {
        r->found = 1;
        r->started_ms = sqlite3_column_int64(q, 0);
        r->ended_ms = sqlite3_column_int64(q, 1);
        r->status = column_dup(q, 2);
        r->args = column_dup(q, 3);
        r->git_commit = column_dup(q, 4);
        r->version = column_dup(q, 5);
        r->host = column_dup(q, 6);
        r->ds = column_dup(q, 7);
    }
    sqlite3_finalize(q);
    return row < 0 ? NJ_EXIT_SYSTEM : NJ_EXIT_OK;
}

static int read_model_source(sqlite3 *db, const char *version, model_source *s)
{
    sqlite3_stmt *q;
    int code = prepare(db, &q,
                       "SELECT stage, ds, key, components FROM model_sources WHERE "
                       "version = ?1",
                       version, (char *)NULL);
    if (code) return code;
    int row = step(db, q);
    if (row > 0) {
        s->found = 1;
        s->stage = column_dup(q, 0);
        s->ds = column_dup(q, 1);
        s->key = column_dup(q, 2);
        s->components = column_dup(q, 3);
    }
    sqlite3_finalize(q);
    return row < 0 ? NJ_EXIT_SYSTEM : NJ_EXIT_OK;
}

/* For each training date, the archive of the newest snapshot written no
 * later than the model's run (any run when the model has none). */
static int read_training_dates(sqlite3 *db, const nj_pipeline *p, lineage *l)
{
    nj_json *dates = parse_stored(l->model.training_dates);
    if (!dates || dates->type != NJ_JSON_ARRAY) {
        nj_json_free(dates);
        return NJ_EXIT_OK;
    }
    l->dates_known = 1;
    l->dates = nj_xcalloc(dates->len + 1, sizeof(*l->dates));
    sqlite3_stmt *q;
    int code = prepare(db, &q,
                       "SELECT stage, hash, run_id, size FROM snapshots WHERE pipeline = ?1 AND "
                       "ds = ?2 AND run_id <= ?3 ORDER BY run_id DESC, stage LIMIT 1",
                       p->name, (char *)NULL);
    if (code) {
        nj_json_free(dates);
        return code;
    }
    sqlite3_bind_int64(q, 3, l->model.run_id ? l->model.run_id : INT64_MAX);
    int row = 0;
    for (size_t i = 0; i < dates->len && row >= 0; i++) {
        const nj_json *d = &dates->items[i];
        training_date *t = &l->dates[l->ndates++];
        t->ds = nj_xstrdup(d->type == NJ_JSON_STRING ? d->string : "?");
        sqlite3_reset(q);
        sqlite3_bind_text(q, 2, t->ds, -1, SQLITE_STATIC);
        if ((row = step(db, q)) > 0) {
            t->found = 1;
            t->stage = column_dup(q, 0);
            t->hash = column_dup(q, 1);
            t->run_id = sqlite3_column_int64(q, 2);
            t->size = sqlite3_column_int64(q, 3);
        }
    }
    sqlite3_finalize(q);
    nj_json_free(dates);
    return row < 0 ? NJ_EXIT_SYSTEM : NJ_EXIT_OK;
}

static int read_promotion(sqlite3 *db, const nj_pipeline *p, const char *version, int has_events,
                          promotion *pr)
{
    sqlite3_stmt *q;
    int code = prepare(db, &q,
                       "SELECT id, run_id, decided_ms, passed, stage, ds, baseline, checks FROM "
                       "gate_decisions WHERE pipeline = ?1 AND candidate = ?2 AND decision = "
                       "'promoted' ORDER BY id DESC LIMIT 1",
                       p->name, version, (char *)NULL);
    if (code) return code;
    int row = step(db, q);
    if (row > 0) {
        pr->found = 1;
        pr->id = sqlite3_column_int64(q, 0);
        pr->run_id = sqlite3_column_int64(q, 1);
        pr->decided_ms = sqlite3_column_int64(q, 2);
        pr->passed = sqlite3_column_int(q, 3);
        pr->stage = column_dup(q, 4);
        pr->ds = column_dup(q, 5);
        pr->baseline = column_dup(q, 6);
        pr->checks = column_dup(q, 7);
    }
    sqlite3_finalize(q);
    if (row < 0) return NJ_EXIT_SYSTEM;
    if (pr->found || !has_events) return NJ_EXIT_OK;
    /* No gate promoted it: say whether a person did. */
    if ((code = prepare(db, &q,
                        "SELECT ts_ms, action FROM model_events WHERE pipeline = ?1 AND version = "
                        "?2 AND action IN ('promote', 'rollback') AND run_id IS NULL ORDER BY id "
                        "DESC LIMIT 1",
                        p->name, version, (char *)NULL)))
        return code;
    if ((row = step(db, q)) > 0) {
        pr->by_hand_ms = sqlite3_column_int64(q, 0);
        pr->by_hand_action = column_dup(q, 1);
    }
    sqlite3_finalize(q);
    return row < 0 ? NJ_EXIT_SYSTEM : NJ_EXIT_OK;
}

static int read_lineage(nj_state *st, const nj_pipeline *p, lineage *l)
{
    sqlite3 *db = nj_state_db(st);
    int code;
    if ((code = read_publication(db, p, l)) || (code = read_run(db, l->pub.run_id, &l->run)))
        return code;
    const char *version = l->pub.model_version;
    if (!version) return NJ_EXIT_OK;
    l->has_registry = table_exists(db, "models");
    if (l->has_registry) {
        nj_registry *reg = NULL;
        nj_err err = {0};
        if (nj_registry_open(st, &reg, &err) < 0) {
            cli_error("%s", err.msg);
            return NJ_EXIT_SYSTEM;
        }
        int rc = nj_registry_get(reg, version, &l->model, &err);
        nj_registry_free(reg);
        if (rc < 0 && rc != NJ_ENOTFOUND) {
            cli_error("%s", err.msg);
            return NJ_EXIT_SYSTEM;
        }
        l->has_model = rc == 0;
    }
    if ((code = read_model_source(db, version, &l->src))) return code;
    if (l->has_model && (code = read_training_dates(db, p, l))) return code;
    return read_promotion(db, p, version, table_exists(db, "model_events"), &l->promo);
}

#define LABEL "%-15s "
#define MORE "                "

/* The lines of a key text that say what determined the result. */
static int key_line_shown(const char *line)
{
    static const char *const kinds[] = {"cmd ", "env ", "param ", "dep ", "code "};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (nj_str_starts(line, kinds[i])) return 1;
    return 0;
}

static void print_key_text(const char *label, const char *components)
{
    int first = 1;
    const char *s = components ? components : "";
    while (*s) {
        size_t len = strcspn(s, "\n");
        char *line = nj_xstrndup(s, len);
        if (key_line_shown(line)) {
            if (first)
                printf(LABEL "%s\n", label, line);
            else
                printf(MORE "%s\n", line);
            first = 0;
        }
        free(line);
        s += len;
        if (*s) s++;
    }
    if (first) printf(LABEL "missing (no key text recorded)\n", label);
}

static void print_lineage_text(const lineage *l)
{
    char when[32];
    const publication *pub = &l->pub;
    printf("lineage of table '%s' for %s (pipeline '%s')\n\n", l->table, l->ds, l->pipeline);
    format_utc(pub->published_ms, when, sizeof(when));
    printf(LABEL "#%lld at %s UTC: %lld rows into %s (serving id %lld)\n", "publication",
           (long long)pub->id, when, (long long)pub->rows, pub->serving_db,
           (long long)pub->serving_id);
    printf(MORE "from %s@%s output sha256 %s\n", pub->stage, l->ds, pub->source_hash);
    printf(MORE "key %s\n", pub->source_key ? pub->source_key : "missing");
    if (l->run.found) {
        format_utc(l->run.started_ms, when, sizeof(when));
        printf(LABEL "%lld (%s), started %s UTC on %s, nightjar %s, git %s\n", "run",
               (long long)pub->run_id, l->run.status, when, l->run.host, l->run.version,
               l->run.git_commit ? l->run.git_commit : "unknown");
        printf(MORE "%s\n", l->run.args);
    } else {
        printf(LABEL "%lld: missing from the runs table\n", "run", (long long)pub->run_id);
    }
    print_key_text("source key", pub->source_components);
    if (!pub->model_version) {
        printf(LABEL "none recorded (the publication names no model)\n", "model");
        return;
    }
    const char *v = pub->model_version;
    if (!l->has_model) {
        printf(LABEL "%s: missing from the registry\n", "model", v);
    } else {
        const nj_model_record *m = &l->model;
        format_utc(m->created_ms, when, sizeof(when));
        printf(LABEL "%s%s%s%s\n", "model", v, m->aliases ? " (" : "", m->aliases ? m->aliases : "",
               m->aliases ? ")" : "");
        printf(MORE "trained by %s@%s in run %lld, registered %s UTC\n", m->stage,
               m->ds && *m->ds ? m->ds : "-", (long long)m->run_id, when);
        nj_buf metrics;
        nj_buf_init(&metrics);
        nj_json *doc = parse_stored(m->metrics);
        headline_metrics(doc, 6, &metrics);
        nj_json_free(doc);
        printf(MORE "metrics %s\n", metrics.len ? metrics.data : "none recorded");
        nj_buf_release(&metrics);
    }
    if (l->src.found) {
        printf(LABEL "%s@%s, key %s\n", "training", l->src.stage, *l->src.ds ? l->src.ds : "-",
               l->src.key ? l->src.key : "missing");
        print_key_text("training key", l->src.components);
    } else {
        printf(LABEL "missing (no model_sources row for %.12s)\n", "training", v);
    }
    if (!l->has_model || !l->dates_known) {
        printf(LABEL "missing%s\n", "training dates",
               l->has_model ? " (the model records no list of dates)" : "");
    } else if (l->ndates == 0) {
        printf(LABEL "none (the training stage read no dated inputs)\n", "training dates");
    } else {
        nj_buf summary;
        nj_buf_init(&summary);
        training_summary(l->model.training_dates, &summary);
        printf(LABEL "%s\n", "training dates", summary.data);
        nj_buf_release(&summary);
        for (size_t i = 0; i < l->ndates; i++) {
            const training_date *t = &l->dates[i];
            if (t->found)
                printf(MORE "%s  snapshot sha256 %s (stage %s, run %lld, %lld bytes)\n", t->ds,
                       t->hash, t->stage, (long long)t->run_id, (long long)t->size);
            else
                printf(MORE "%s  no snapshot\n", t->ds);
        }
    }
    const promotion *pr = &l->promo;
    if (pr->found) {
        format_utc(pr->decided_ms, when, sizeof(when));
        printf(LABEL "promoted by %s@%s in run %lld at %s UTC over %.12s (%s)\n", "gate", pr->stage,
               *pr->ds ? pr->ds : "-", (long long)pr->run_id, when,
               pr->baseline ? pr->baseline : "no champion", pr->passed ? "passed" : "not passed");
        nj_json *checks = parse_stored(pr->checks);
        const nj_json *list = nj_json_get(checks, "checks");
        for (size_t i = 0; list && list->type == NJ_JSON_ARRAY && i < list->len; i++) {
            const nj_json *text = nj_json_get(&list->items[i], "text");
            if (text && text->type == NJ_JSON_STRING) printf(MORE "%s\n", text->string);
        }
        nj_json_free(checks);
    } else if (pr->by_hand_action) {
        format_utc(pr->by_hand_ms, when, sizeof(when));
        printf(LABEL "missing (no gate promoted it; made champion by hand (%s) at %s UTC)\n",
               "gate", pr->by_hand_action, when);
    } else {
        printf(LABEL "missing (no gate decision promoted it)\n", "gate");
    }
}

static void print_key_json(const char *components)
{
    printf("[");
    const char *s = components ? components : "";
    int first = 1;
    while (*s) {
        size_t len = strcspn(s, "\n");
        char *line = nj_xstrndup(s, len);
        if (len) {
            printf("%s", first ? "" : ", ");
            cli_json_str(stdout, line);
            first = 0;
        }
        free(line);
        s += len;
        if (*s) s++;
    }
    printf("]");
}

static void print_lineage_json(const lineage *l)
{
    const publication *pub = &l->pub;
    printf("{\"pipeline\": ");
    cli_json_str(stdout, l->pipeline);
    printf(", \"table\": ");
    cli_json_str(stdout, l->table);
    printf(", \"ds\": ");
    cli_json_str(stdout, l->ds);
    printf(",\n \"publication\": {\"id\": %lld, \"run_id\": %lld, \"rows\": %lld, "
           "\"duration_ms\": %lld, \"published_ms\": %lld, \"serving_db\": ",
           (long long)pub->id, (long long)pub->run_id, (long long)pub->rows,
           (long long)pub->duration_ms, (long long)pub->published_ms);
    cli_json_str(stdout, pub->serving_db);
    printf(", \"serving_id\": %lld, \"model_version\": ", (long long)pub->serving_id);
    cli_json_str(stdout, pub->model_version);
    printf(", \"spec_hash\": ");
    cli_json_str(stdout, pub->spec_hash);
    printf("},\n \"source\": {\"stage\": ");
    cli_json_str(stdout, pub->stage);
    printf(", \"hash\": ");
    cli_json_str(stdout, pub->source_hash);
    printf(", \"key\": ");
    cli_json_str(stdout, pub->source_key);
    printf(", \"components\": ");
    if (pub->source_components)
        print_key_json(pub->source_components);
    else
        printf("null");
    printf("},\n \"run\": ");
    if (l->run.found) {
        printf("{\"id\": %lld, \"status\": ", (long long)pub->run_id);
        cli_json_str(stdout, l->run.status);
        printf(", \"started_ms\": %lld, \"ended_ms\": %lld, \"args\": ",
               (long long)l->run.started_ms, (long long)l->run.ended_ms);
        cli_json_str(stdout, l->run.args);
        printf(", \"git_commit\": ");
        cli_json_str(stdout, l->run.git_commit);
        printf(", \"version\": ");
        cli_json_str(stdout, l->run.version);
        printf(", \"host\": ");
        cli_json_str(stdout, l->run.host);
        printf("}");
    } else {
        printf("null");
    }
    printf(",\n \"model\": ");
    if (l->has_model)
        print_model_json(&l->model);
    else
        printf("null");
    printf(",\n \"training\": ");
    if (l->src.found) {
        printf("{\"stage\": ");
        cli_json_str(stdout, l->src.stage);
        printf(", \"ds\": ");
        cli_json_str(stdout, *l->src.ds ? l->src.ds : NULL);
        printf(", \"key\": ");
        cli_json_str(stdout, l->src.key);
        printf(", \"components\": ");
        if (l->src.components)
            print_key_json(l->src.components);
        else
            printf("null");
        printf("}");
    } else {
        printf("null");
    }
    printf(",\n \"training_dates\": ");
    if (l->dates_known) {
        printf("[");
        for (size_t i = 0; i < l->ndates; i++) {
            const training_date *t = &l->dates[i];
            printf("%s{\"ds\": ", i ? ", " : "");
            cli_json_str(stdout, t->ds);
            printf(", \"snapshot\": ");
            if (t->found) {
                printf("{\"stage\": ");
                cli_json_str(stdout, t->stage);
                printf(", \"hash\": ");
                cli_json_str(stdout, t->hash);
                printf(", \"run_id\": %lld, \"size\": %lld}", (long long)t->run_id,
                       (long long)t->size);
            } else {
                printf("null");
            }
            printf("}");
        }
        printf("]");
    } else {
        printf("null");
    }
    printf(",\n \"gate\": ");
    const promotion *pr = &l->promo;
    if (pr->found) {
        printf("{\"id\": %lld, \"stage\": ", (long long)pr->id);
        cli_json_str(stdout, pr->stage);
        printf(", \"ds\": ");
        cli_json_str(stdout, *pr->ds ? pr->ds : NULL);
        printf(", \"run_id\": %lld, \"decided_ms\": %lld, \"decision\": \"promoted\", "
               "\"passed\": %s, \"baseline\": ",
               (long long)pr->run_id, (long long)pr->decided_ms, pr->passed ? "true" : "false");
        cli_json_str(stdout, pr->baseline);
        printf(", \"checks\": ");
        write_stored_json(stdout, pr->checks);
        printf("}");
    } else {
        printf("null");
    }
    printf("}\n");
}

int cli_lineage(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--table", NULL, 1}, {"--ds", NULL, 1}, {"--json", NULL, 0}};
    cli_args a;
    int code = cli_parse_verb("lineage", lineage_help, argc, argv, opts, 3, 1, 1, &a);
    if (code >= 0) goto out_args;
    const char *table = cli_value(&a, 0), *ds = cli_value(&a, 1);
    int32_t day;
    nj_err err = {0};
    if (!table || !ds) {
        cli_error("lineage: needs --table T and --ds YYYY-MM-DD (see 'nightjar lineage --help')");
        code = NJ_EXIT_USAGE;
        goto out_args;
    }
    if (nj_date_parse(ds, &day, &err) < 0) {
        cli_error("lineage: --ds: %s", err.msg);
        code = NJ_EXIT_USAGE;
        goto out_args;
    }
    cli_session ss = {0};
    lineage l = {.table = table, .ds = ds};
    if ((code = cli_session_load(&ss, a.positional[0])) || (code = cli_session_open(&ss, 0)))
        goto out;
    l.pipeline = ss.p->name;
    if (!ss.st) {
        cli_error("lineage: pipeline '%s' has never run in %s: nothing was published", ss.p->name,
                  ss.p->workspace);
        code = NJ_EXIT_FAILED;
        goto out;
    }
    if ((code = read_lineage(ss.st, ss.p, &l))) goto out;
    if (cli_flag(&a, 2))
        print_lineage_json(&l);
    else
        print_lineage_text(&l);
out:
    lineage_release(&l);
    cli_session_close(&ss);
out_args:
    cli_args_release(&a);
    return code;
}
