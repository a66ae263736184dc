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
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                           -1, &q, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int found = sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    return found;
}

/* Parses "VERB ... [opts]" with between min_pos and max_pos positionals.
 * Returns -1 when the verb should go on, or the exit code to return now. */
static int parse_verb(const char *verb, const char *help, int argc, char **argv,
                      const cli_opt *opts, size_t nopts, size_t min_pos, size_t max_pos,
                      cli_args *a)
{
    int code = cli_parse(verb, argc, argv, opts, nopts, a);
    if (code < 0) {
        fputs(help, stdout);
        return NJ_EXIT_OK;
    }
    if (code) return code;
    if (a->npositional < min_pos || a->npositional > max_pos) {
        cli_error("%s: wrong number of arguments (see 'nightjar %s --help')", verb, verb);
        return NJ_EXIT_USAGE;
    }
    return -1;
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
        printf("%-12.12s  %-19s  %-24s  %-28s  %-17s  %s\n", m->version, when, where,
               dates.data, m->aliases ? m->aliases : "-",
               metrics.len ? metrics.data : "-");
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
        printf("%5s  %-19s  %-8s  %-12s  %-12s  %7s  %s\n", "ID", "TIME (UTC)", "ACTION",
               "VERSION", "PREVIOUS", "RUN", "DETAIL");
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
        /* A multi-line detail (a hold's failing rules) on one line. */
        char *detail = nj_xstrdup(e->detail ? e->detail : "");
        for (char *c = detail; *c; c++)
            if (*c == '\n') *c = ';';
        nj_buf line;
        nj_buf_init(&line);
        nj_buf_printf(&line, "%5lld  %-19s  %-8s  %-12.12s  %-12.12s  %7s  %s", (long long)e->id,
                      when, e->action, e->version ? e->version : "-",
                      e->previous_version ? e->previous_version : "-", run, detail);
        put_line(&line);
        nj_buf_release(&line);
        free(detail);
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
        cli_error("%s: pipeline '%s' has never run in %s: no models are registered", verb,
                  p->name, p->workspace);
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
    static const cli_opt opts[] = {{"--json", NULL, 0}, {"--last", NULL, 1},
                                   {"--wait-lock", NULL, 1}};
    /* Each command takes only its own options: list --json; events --last,
     * --json; promote and rollback --wait-lock. */
    static const cli_opt *const tables[] = {opts, opts, opts + 2, opts + 2};
    static const size_t sizes[] = {1, 2, 1, 1};
    static const char *const names[] = {"models list", "models events", "models promote",
                                        "models rollback"};
    int t = which == LIST ? 0 : which == EVENTS ? 1 : which == PROMOTE ? 2 : 3;
    size_t npos = which == PROMOTE ? 2 : 1;
    cli_args a;
    int code = parse_verb(names[t], models_help, argc - 1, argv + 1, tables[t], sizes[t], npos,
                          npos, &a);
    if (code >= 0) goto out_args;
    if (which == LIST || which == EVENTS) {
        int last = 20;
        if (which == EVENTS && parse_last(names[t], cli_value(&a, 1), 20, &last) < 0) {
            code = NJ_EXIT_USAGE;
            goto out_args;
        }
        cli_session ss = {0};
        if (!(code = cli_session_load(&ss, a.positional[0])) &&
            !(code = cli_session_open(&ss, 0)))
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
static void print_metric_table(const nj_pipeline *p, const metric_row *rows, size_t from,
                               size_t to)
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
    int code = parse_verb("metrics", metrics_help, argc, argv, opts, 3, 1, 1, &a);
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
