/* registry.c - model versions, champion/previous aliases and the event log
 * in the state database (see registry.h for the tables and invariants).
 */
#include "nightjar/registry.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/json.h"
#include "nightjar/util.h"

struct nj_registry {
    sqlite3 *db; /* borrowed from the nj_state */
    const char *path;
};

static int db_error(nj_registry *reg, nj_err *err, const char *what)
{
    return nj_err_set(err, NJ_EDB, "%s in '%s': %s", what, reg->path, sqlite3_errmsg(reg->db));
}

static int exec_sql(nj_registry *reg, const char *sql, nj_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(reg->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = nj_err_set(err, NJ_EDB, "database error in '%s': %s", reg->path,
                            msg ? msg : sqlite3_errmsg(reg->db));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

int nj_registry_open(nj_state *st, nj_registry **out, nj_err *err)
{
    nj_registry *reg = nj_xcalloc(1, sizeof(*reg));
    reg->db = nj_state_db(st);
    reg->path = sqlite3_db_filename(reg->db, "main");
    if (!reg->path || !*reg->path) reg->path = "state database";
    *out = NULL;
    int rc = exec_sql(reg, NJ_REGISTRY_SCHEMA, err);
    if (rc < 0) {
        nj_registry_free(reg);
        return rc;
    }
    *out = reg;
    return 0;
}

void nj_registry_free(nj_registry *reg)
{
    free(reg);
}

/* One transaction per change; nested in the caller's when there is one. */
static int txn_begin(nj_registry *reg, int *nested, nj_err *err)
{
    *nested = !sqlite3_get_autocommit(reg->db);
    return exec_sql(reg, *nested ? "SAVEPOINT nj_registry" : "BEGIN IMMEDIATE", err);
}

static int txn_commit(nj_registry *reg, int nested, nj_err *err)
{
    return exec_sql(reg, nested ? "RELEASE nj_registry" : "COMMIT", err);
}

static void txn_rollback(nj_registry *reg, int nested)
{
    exec_sql(reg, nested ? "ROLLBACK TO nj_registry; RELEASE nj_registry" : "ROLLBACK", NULL);
}

static int prepare(nj_registry *reg, const char *sql, sqlite3_stmt **q, nj_err *err)
{
    if (sqlite3_prepare_v2(reg->db, sql, -1, q, NULL) != SQLITE_OK)
        return db_error(reg, err, "cannot prepare registry query");
    return 0;
}

static void bind_run(sqlite3_stmt *q, int i, int64_t run_id)
{
    if (run_id)
        sqlite3_bind_int64(q, i, run_id);
    else
        sqlite3_bind_null(q, i);
}

/* Steps a statement that returns no rows, then finalizes it. */
static int step_done(nj_registry *reg, sqlite3_stmt *q, const char *what, nj_err *err)
{
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : db_error(reg, err, what);
    sqlite3_finalize(q);
    return rc;
}

static char *column_dup(sqlite3_stmt *q, int i)
{
    return nj_xstrdup((const char *)sqlite3_column_text(q, i));
}

static int add_event(nj_registry *reg, const char *pipeline, const char *action,
                     const char *version, const char *previous, int64_t run_id, const char *detail,
                     nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(reg,
                     "INSERT INTO model_events (pipeline, ts_ms, action, version, "
                     "previous_version, run_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_text(q, 1, pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, nj_time_now_ms());
    sqlite3_bind_text(q, 3, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, version, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, previous, -1, SQLITE_STATIC);
    bind_run(q, 6, run_id);
    sqlite3_bind_text(q, 7, detail, -1, SQLITE_STATIC);
    return step_done(reg, q, "cannot record model event", err);
}

static int set_alias(nj_registry *reg, const char *pipeline, const char *alias, const char *version,
                     nj_err *err)
{
    sqlite3_stmt *q;
    int rc;
    if (!version) {
        if ((rc = prepare(reg, "DELETE FROM model_aliases WHERE pipeline = ?1 AND alias = ?2", &q,
                          err)) < 0)
            return rc;
    } else {
        if ((rc = prepare(reg,
                          "INSERT INTO model_aliases (pipeline, alias, version, updated_ms) "
                          "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (pipeline, alias) DO UPDATE SET "
                          "version = excluded.version, updated_ms = excluded.updated_ms",
                          &q, err)) < 0)
            return rc;
        sqlite3_bind_text(q, 3, version, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, nj_time_now_ms());
    }
    sqlite3_bind_text(q, 1, pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, alias, -1, SQLITE_STATIC);
    return step_done(reg, q, "cannot set model alias", err);
}

/* Runs a query with text parameters (NULL-terminated list) whose first row's
 * first column is returned in *out (caller frees; NULL when no row). */
static int query_text(nj_registry *reg, const char *sql, char **out, nj_err *err, ...)
    __attribute__((sentinel));
static int query_text(nj_registry *reg, const char *sql, char **out, nj_err *err, ...)
{
    sqlite3_stmt *q;
    *out = NULL;
    int rc = prepare(reg, sql, &q, err);
    if (rc < 0) return rc;
    va_list ap;
    va_start(ap, err);
    const char *arg;
    for (int i = 1; (arg = va_arg(ap, const char *)) != NULL; i++)
        sqlite3_bind_text(q, i, arg, -1, SQLITE_TRANSIENT);
    va_end(ap);
    int step = sqlite3_step(q);
    if (step == SQLITE_ROW)
        *out = column_dup(q, 0);
    else if (step != SQLITE_DONE)
        rc = db_error(reg, err, "cannot query the model registry");
    sqlite3_finalize(q);
    return rc;
}

int nj_registry_register(nj_registry *reg, const nj_model_record *m, int *created, nj_err *err)
{
    char *owner = NULL;
    int rc, nested = 0;
    if (created) *created = 0;
    if (!m->version || !*m->version || !m->pipeline || !m->stage)
        return nj_err_set(err, NJ_EUSAGE, "a model needs a version, a pipeline and a stage");
    if (m->metrics) {
        nj_json *doc = NULL;
        rc = nj_json_parse(m->metrics, strlen(m->metrics), "metrics", &doc, err);
        nj_json_free(doc);
        if (rc < 0) return nj_err_prefix(err, "model '%s'", m->version), rc;
    }
    if ((rc = txn_begin(reg, &nested, err)) < 0) return rc;
    if ((rc = query_text(reg, "SELECT pipeline FROM models WHERE version = ?1", &owner, err,
                         m->version, (char *)NULL)) < 0)
        goto fail;
    if (owner) {
        if (strcmp(owner, m->pipeline) != 0) {
            rc = nj_err_set(err, NJ_EUSAGE, "model '%s' is already registered by pipeline '%s'",
                            m->version, owner);
            goto fail;
        }
        free(owner);
        return txn_commit(reg, nested, err);
    }
    sqlite3_stmt *q;
    if ((rc = prepare(reg,
                      "INSERT INTO models (version, pipeline, stage, ds, run_id, created_ms, path, "
                      "training_dates, metrics) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                      &q, err)) < 0)
        goto fail;
    sqlite3_bind_text(q, 1, m->version, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, m->pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, m->stage, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, m->ds, -1, SQLITE_STATIC);
    bind_run(q, 5, m->run_id);
    sqlite3_bind_int64(q, 6, m->created_ms ? m->created_ms : nj_time_now_ms());
    sqlite3_bind_text(q, 7, m->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 8, m->training_dates, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 9, m->metrics, -1, SQLITE_STATIC);
    if ((rc = step_done(reg, q, "cannot register model", err)) < 0 ||
        (rc = add_event(reg, m->pipeline, "register", m->version, NULL, m->run_id, NULL, err)) <
            0 ||
        (rc = txn_commit(reg, nested, err)) < 0)
        goto fail;
    if (created) *created = 1;
    return 0;
fail:
    free(owner);
    txn_rollback(reg, nested);
    return rc;
}

static void record_from_row(sqlite3_stmt *q, nj_model_record *m)
{
    memset(m, 0, sizeof(*m));
    m->version = column_dup(q, 0);
    m->pipeline = column_dup(q, 1);
    m->stage = column_dup(q, 2);
    m->ds = column_dup(q, 3);
    m->run_id = sqlite3_column_int64(q, 4);
    m->created_ms = sqlite3_column_int64(q, 5);
    m->path = column_dup(q, 6);
    m->training_dates = column_dup(q, 7);
    m->metrics = column_dup(q, 8);
    m->aliases = column_dup(q, 9);
}

#define MODEL_COLUMNS                                                                              \
    "SELECT m.version, m.pipeline, m.stage, m.ds, m.run_id, m.created_ms, m.path, "                \
    "m.training_dates, m.metrics, (SELECT group_concat(a.alias, ',') FROM (SELECT alias FROM "     \
    "model_aliases a WHERE a.pipeline = m.pipeline AND a.version = m.version ORDER BY alias) a) "  \
    "FROM models m "

int nj_registry_get(nj_registry *reg, const char *version, nj_model_record *out, nj_err *err)
{
    sqlite3_stmt *q;
    memset(out, 0, sizeof(*out));
    int rc = prepare(reg, MODEL_COLUMNS "WHERE m.version = ?1", &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_text(q, 1, version, -1, SQLITE_STATIC);
    int step = sqlite3_step(q);
    if (step == SQLITE_ROW)
        record_from_row(q, out);
    else if (step == SQLITE_DONE)
        rc = nj_err_set(err, NJ_ENOTFOUND, "no model '%s'", version);
    else
        rc = db_error(reg, err, "cannot read model");
    sqlite3_finalize(q);
    return rc;
}

void nj_model_record_release(nj_model_record *m)
{
    if (!m) return;
    free(m->version);
    free(m->pipeline);
    free(m->stage);
    free(m->ds);
    free(m->path);
    free(m->training_dates);
    free(m->metrics);
    free(m->aliases);
    memset(m, 0, sizeof(*m));
}

int nj_registry_alias(nj_registry *reg, const char *pipeline, const char *alias, char **version,
                      nj_err *err)
{
    return query_text(reg, "SELECT version FROM model_aliases WHERE pipeline = ?1 AND alias = ?2",
                      version, err, pipeline, alias, (char *)NULL);
}

int nj_registry_resolve(nj_registry *reg, const char *pipeline, const char *prefix, char **version,
                        nj_err *err)
{
    *version = NULL;
    size_t len = strlen(prefix);
    if (len < 4 || strspn(prefix, "0123456789abcdefABCDEF") != len)
        return nj_err_set(err, NJ_EUSAGE, "model version '%s' must be at least 4 hex digits",
                          prefix);
    sqlite3_stmt *q;
    int rc = prepare(reg,
                     "SELECT version FROM models WHERE pipeline = ?1 AND substr(version, 1, ?3) = "
                     "lower(?2) ORDER BY version LIMIT 3",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_text(q, 1, pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)len);
    nj_strs found = {0};
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW)
        nj_strs_push(&found, (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    if (step != SQLITE_DONE)
        rc = db_error(reg, err, "cannot query the model registry");
    else if (found.len == 0)
        rc = nj_err_set(err, NJ_ENOTFOUND, "pipeline '%s' has no model '%s'", pipeline, prefix);
    else if (found.len > 1)
        rc = nj_err_set(err, NJ_EUSAGE,
                        "model version '%s' is ambiguous in pipeline '%s': %s, %s%s", prefix,
                        pipeline, found.items[0], found.items[1], found.len > 2 ? ", ..." : "");
    else
        *version = nj_xstrdup(found.items[0]);
    nj_strs_release(&found);
    return rc;
}

static int require_model(nj_registry *reg, const char *pipeline, const char *version, nj_err *err)
{
    char *found = NULL;
    int rc = query_text(reg, "SELECT version FROM models WHERE pipeline = ?1 AND version = ?2",
                        &found, err, pipeline, version, (char *)NULL);
    if (rc == 0 && !found)
        rc = nj_err_set(err, NJ_ENOTFOUND, "model '%s' is not registered for pipeline '%s'",
                        version, pipeline);
    free(found);
    return rc;
}

int nj_registry_promote(nj_registry *reg, const char *pipeline, const char *version, int64_t run_id,
                        const char *detail, int *changed, nj_err *err)
{
    char *champion = NULL;
    int rc, nested;
    if (changed) *changed = 0;
    if ((rc = txn_begin(reg, &nested, err)) < 0) return rc;
    if ((rc = require_model(reg, pipeline, version, err)) < 0 ||
        (rc = nj_registry_alias(reg, pipeline, NJ_ALIAS_CHAMPION, &champion, err)) < 0)
        goto fail;
    if (champion && strcmp(champion, version) == 0) {
        free(champion);
        return txn_commit(reg, nested, err);
    }
    if ((champion && (rc = set_alias(reg, pipeline, NJ_ALIAS_PREVIOUS, champion, err)) < 0) ||
        (rc = set_alias(reg, pipeline, NJ_ALIAS_CHAMPION, version, err)) < 0 ||
        (rc = add_event(reg, pipeline, "promote", version, champion, run_id, detail, err)) < 0 ||
        (rc = txn_commit(reg, nested, err)) < 0)
        goto fail;
    free(champion);
    if (changed) *changed = 1;
    return 0;
fail:
    free(champion);
    txn_rollback(reg, nested);
    return rc;
}

int nj_registry_rollback(nj_registry *reg, const char *pipeline, int64_t run_id, const char *detail,
                         char **new_champion, nj_err *err)
{
    char *champion = NULL, *previous = NULL, *before = NULL, *why = NULL;
    int rc, nested;
    if (new_champion) *new_champion = NULL;
    if ((rc = txn_begin(reg, &nested, err)) < 0) return rc;
    if ((rc = nj_registry_alias(reg, pipeline, NJ_ALIAS_CHAMPION, &champion, err)) < 0 ||
        (rc = nj_registry_alias(reg, pipeline, NJ_ALIAS_PREVIOUS, &previous, err)) < 0)
        goto fail;
    if (!previous) {
        rc = nj_err_set(err, NJ_ENOTFOUND, "pipeline '%s' has no previous model to roll back to",
                        pipeline);
        goto fail;
    }
    /* What `previous` replaced when it last became champion: the `previous`
     * alias that its promote or rollback event left behind. */
    if ((rc = query_text(reg,
                         "SELECT previous_version FROM model_events WHERE pipeline = ?1 AND "
                         "version = ?2 AND action IN ('promote', 'rollback') ORDER BY id DESC "
                         "LIMIT 1",
                         &before, err, pipeline, previous, (char *)NULL)) < 0)
        goto fail;
    if (before && champion && strcmp(before, champion) == 0) { /* never champion = previous */
        free(before);
        before = NULL;
    }
    why = detail ? nj_xasprintf("from %s: %s", champion ? champion : "none", detail)
                 : nj_xasprintf("from %s", champion ? champion : "none");
    if ((rc = set_alias(reg, pipeline, NJ_ALIAS_CHAMPION, previous, err)) < 0 ||
        (rc = set_alias(reg, pipeline, NJ_ALIAS_PREVIOUS, before, err)) < 0 ||
        (rc = add_event(reg, pipeline, "rollback", previous, before, run_id, why, err)) < 0 ||
        (rc = txn_commit(reg, nested, err)) < 0)
        goto fail;
    if (new_champion) {
        *new_champion = previous;
        previous = NULL;
    }
    rc = 0;
    goto done;
fail:
    txn_rollback(reg, nested);
done:
    free(champion);
    free(previous);
    free(before);
    free(why);
    return rc;
}

int nj_registry_hold(nj_registry *reg, const char *pipeline, const char *version, int64_t run_id,
                     const char *detail, nj_err *err)
{
    char *champion = NULL;
    int rc, nested;
    if ((rc = txn_begin(reg, &nested, err)) < 0) return rc;
    if ((rc = require_model(reg, pipeline, version, err)) < 0 ||
        (rc = nj_registry_alias(reg, pipeline, NJ_ALIAS_CHAMPION, &champion, err)) < 0 ||
        (rc = add_event(reg, pipeline, "hold", version, champion, run_id, detail, err)) < 0 ||
        (rc = txn_commit(reg, nested, err)) < 0) {
        txn_rollback(reg, nested);
    }
    free(champion);
    return rc;
}

int nj_registry_list(nj_registry *reg, const char *pipeline, nj_model_record **out, size_t *n,
                     nj_err *err)
{
    sqlite3_stmt *q;
    *out = NULL;
    *n = 0;
    int rc = prepare(reg,
                     MODEL_COLUMNS "WHERE m.pipeline = ?1 ORDER BY m.created_ms DESC, "
                                   "m.rowid DESC",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_text(q, 1, pipeline, -1, SQLITE_STATIC);
    size_t cap = 0;
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        nj_grow(out, &cap, *n + 1, sizeof(**out));
        record_from_row(q, &(*out)[(*n)++]);
    }
    sqlite3_finalize(q);
    if (step != SQLITE_DONE) {
        rc = db_error(reg, err, "cannot list models");
        for (size_t i = 0; i < *n; i++)
            nj_model_record_release(&(*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

void nj_model_event_release(nj_model_event *e)
{
    if (!e) return;
    free(e->pipeline);
    free(e->action);
    free(e->version);
    free(e->previous_version);
    free(e->detail);
    memset(e, 0, sizeof(*e));
}

int nj_registry_events(nj_registry *reg, const char *pipeline, int limit, nj_model_event **out,
                       size_t *n, nj_err *err)
{
    sqlite3_stmt *q;
    *out = NULL;
    *n = 0;
    int rc = prepare(reg,
                     "SELECT id, ts_ms, run_id, pipeline, action, version, previous_version, "
                     "detail FROM model_events WHERE pipeline = ?1 ORDER BY id DESC LIMIT ?2",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_text(q, 1, pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, limit > 0 ? limit : -1);
    size_t cap = 0;
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        nj_grow(out, &cap, *n + 1, sizeof(**out));
        nj_model_event *e = &(*out)[(*n)++];
        e->id = sqlite3_column_int64(q, 0);
        e->ts_ms = sqlite3_column_int64(q, 1);
        e->run_id = sqlite3_column_int64(q, 2);
        e->pipeline = column_dup(q, 3);
        e->action = column_dup(q, 4);
        e->version = column_dup(q, 5);
        e->previous_version = column_dup(q, 6);
        e->detail = column_dup(q, 7);
    }
    sqlite3_finalize(q);
    if (step != SQLITE_DONE) {
        rc = db_error(reg, err, "cannot list model events");
        for (size_t i = 0; i < *n; i++)
            nj_model_event_release(&(*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}
