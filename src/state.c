/* state.c - the workspace state database (SQLite): schema, migrations,
 * recording runs, stage outcomes and attempts, and the queries behind
 * `status`, `history` and `logs`.
 *
 * Invariants:
 *   - every function that changes rows does so in exactly one transaction;
 *   - a row whose status is `running` belongs to a live runner only while
 *     that runner holds the workspace lock; otherwise it is a leftover of a
 *     crash, and nj_state_recover() is the only thing that rewrites it.
 */
#include "nightjar/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/json.h"
#include "nightjar/strmap.h"
#include "nightjar/util.h"

/* Statements prepared once per handle: the hot writes of the scheduler. */
enum {
    Q_RUN_BEGIN,
    Q_RUN_END,
    Q_STAGE_END,
    Q_UNCHANGED,
    Q_ATTEMPT_BEGIN,
    Q_ATTEMPT_PID,
    Q_ATTEMPT_END,
    Q_COUNT
};

struct nj_state {
    sqlite3 *db;
    sqlite3_stmt *stmts[Q_COUNT];
    int tx_depth; /* nj_state_begin() nesting */
    /* Instances found up to date and unchanged in the open transaction, as
     * the JSON array being built ("[" plus pairs), written as one
     * unchanged_stages row when it commits; len 0 when there are none. */
    nj_buf unchanged;
    int64_t unchanged_run;
    char *path;     /* as given, for messages */
    char *abs_path; /* absolute: the NIGHTJAR_STATE marker in stage environments */
    char host[256];
};

static const char *const status_names[] = {
#define NJ_STATUS_TEXT(name, text) text,
    NJ_STATUS_MAP(NJ_STATUS_TEXT)
#undef NJ_STATUS_TEXT
};

const char *nj_status_name(nj_status s)
{
    return s < NJ_STATUS_COUNT ? status_names[s] : "unknown";
}

int nj_status_parse(const char *name)
{
    for (int i = 0; i < NJ_STATUS_COUNT; i++)
        if (name && strcmp(status_names[i], name) == 0) return i;
    return -1;
}

/* Each entry migrates the schema from version i to i+1. Never edit a shipped
 * entry: append a new one. */
static const char *const migrations[] = {
    /* 0 -> 1: the core runner's tables */
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY,"
    "  pipeline TEXT NOT NULL,"
    "  pipeline_file TEXT NOT NULL,"
    "  ds TEXT,"
    "  started_ms INTEGER NOT NULL,"
    "  ended_ms INTEGER,"
    "  status TEXT NOT NULL,"
    "  exit_code INTEGER,"
    "  version TEXT NOT NULL,"
    "  args TEXT NOT NULL,"
    "  pid INTEGER NOT NULL,"
    "  host TEXT NOT NULL);"
    "CREATE INDEX runs_by_pipeline ON runs(pipeline, id);"
    "CREATE TABLE stage_runs ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id),"
    "  stage TEXT NOT NULL,"
    "  ds TEXT NOT NULL DEFAULT '',"
    "  status TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  started_ms INTEGER,"
    "  ended_ms INTEGER,"
    "  reason TEXT,"
    "  PRIMARY KEY (run_id, stage, ds));"
    "CREATE INDEX stage_runs_by_stage ON stage_runs(stage, ds, run_id);"
    "CREATE TABLE attempts ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id),"
    "  stage TEXT NOT NULL,"
    "  ds TEXT NOT NULL DEFAULT '',"
    "  attempt INTEGER NOT NULL,"
    "  started_ms INTEGER NOT NULL,"
    "  ended_ms INTEGER,"
    "  status TEXT NOT NULL,"
    "  exit_code INTEGER,"
    "  signal INTEGER,"
    "  pid INTEGER,"
    "  host TEXT NOT NULL,"
    "  log_path TEXT,"
    "  cmd TEXT,"
    "  error TEXT);"
    "CREATE INDEX attempts_by_run ON attempts(run_id, stage, ds, attempt);"
    "CREATE INDEX attempts_running ON attempts(status) WHERE status = 'running';",
    /* 1 -> 2: the cache's per-workspace tables.
     * stat_cache: content hash of a file as long as its signature is unchanged.
     * stage_keys: the last key of each stage instance and the outputs it had,
     *   what `why` compares against and what `up-to-date` means. */
    "CREATE TABLE stat_cache ("
    "  path TEXT PRIMARY KEY,"
    "  dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, mode INTEGER NOT NULL,"
    "  hash BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE stage_keys ("
    "  pipeline TEXT NOT NULL,"
    "  stage TEXT NOT NULL,"
    "  ds TEXT NOT NULL DEFAULT '',"
    "  key TEXT NOT NULL,"
    "  components TEXT NOT NULL,"
    "  outputs TEXT NOT NULL,"
    "  run_id INTEGER,"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (pipeline, stage, ds));",
    /* 2 -> 3: backfills. One row per distinct backfill command (its arguments
     * make `key`), resumed when the same command runs again; one row per date
     * with that date's state after the latest run that worked on it. */
    "CREATE TABLE backfills ("
    "  id INTEGER PRIMARY KEY,"
    "  pipeline TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  from_ds TEXT NOT NULL,"
    "  to_ds TEXT NOT NULL,"
    "  args TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL);"
    "CREATE INDEX backfills_by_key ON backfills(pipeline, key, id);"
    "CREATE TABLE backfill_dates ("
    "  backfill_id INTEGER NOT NULL REFERENCES backfills(id),"
    "  ds TEXT NOT NULL,"
    "  status TEXT NOT NULL," /* missing, succeeded, failed, skipped */
    "  run_id INTEGER,"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (backfill_id, ds)) WITHOUT ROWID;",
    /* 3 -> 4: every archive a snapshot stage wrote, so a past run's exact
     * inputs stay findable after the date is snapshotted again. */
    "CREATE TABLE snapshots ("
    "  pipeline TEXT NOT NULL,"
    "  stage TEXT NOT NULL,"
    "  ds TEXT NOT NULL,"
    "  run_id INTEGER NOT NULL,"
    "  hash TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (pipeline, stage, ds, run_id)) WITHOUT ROWID;",
    /* 4 -> 5: what a run released (release.h). The model registry's own
     * tables are created by registry.c.
     * runs.git_commit: HEAD of the git repository holding the pipeline file.
     * stage_metrics: the newest metrics document of each stage instance that
     *   declares `metrics:` (hash: of the file, so an unchanged one is not
     *   written again).
     * gate_decisions: every verdict of a gate that changed something: promoted
     *   (candidate became champion), held (it failed a rule; baseline keeps
     *   scoring) or kept (it passed but was not promoted: older than the
     *   champion, or rolled back by hand before); checks is the gate result
     *   as JSON (gate.h).
     * model_sources: the training stage instance behind each model version,
     *   with its key and key text as they were when the model was registered.
     * publications: every publish of a table's date, with the key and output
     *   hash of the stage that produced the rows (lineage reads these). */
    "ALTER TABLE runs ADD COLUMN git_commit TEXT;"
    "CREATE TABLE stage_metrics ("
    "  pipeline TEXT NOT NULL,"
    "  stage TEXT NOT NULL,"
    "  ds TEXT NOT NULL DEFAULT '',"
    "  run_id INTEGER NOT NULL,"
    "  metrics TEXT NOT NULL,"
    "  hash TEXT NOT NULL,"
    "  recorded_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (pipeline, stage, ds)) WITHOUT ROWID;"
    "CREATE TABLE gate_decisions ("
    "  id INTEGER PRIMARY KEY,"
    "  pipeline TEXT NOT NULL,"
    "  stage TEXT NOT NULL,"
    "  ds TEXT NOT NULL DEFAULT '',"
    "  run_id INTEGER NOT NULL,"
    "  candidate TEXT NOT NULL,"
    "  baseline TEXT,"
    "  decision TEXT NOT NULL,"
    "  passed INTEGER NOT NULL,"
    "  checks TEXT NOT NULL,"
    "  detail TEXT,"
    "  decided_ms INTEGER NOT NULL);"
    "CREATE INDEX gate_decisions_by_date ON gate_decisions(pipeline, stage, ds, id);"
    "CREATE TABLE model_sources ("
    "  version TEXT PRIMARY KEY,"
    "  stage TEXT NOT NULL,"
    "  ds TEXT NOT NULL DEFAULT '',"
    "  key TEXT,"
    "  components TEXT);"
    "CREATE TABLE publications ("
    "  id INTEGER PRIMARY KEY,"
    "  pipeline TEXT NOT NULL,"
    "  table_name TEXT NOT NULL,"
    "  ds TEXT NOT NULL,"
    "  run_id INTEGER NOT NULL,"
    "  model_version TEXT,"
    "  rows INTEGER NOT NULL,"
    "  duration_ms INTEGER NOT NULL,"
    "  published_ms INTEGER NOT NULL,"
    "  serving_db TEXT NOT NULL,"
    "  serving_id INTEGER NOT NULL,"
    "  stage TEXT NOT NULL,"
    "  source_hash TEXT NOT NULL,"
    "  source_key TEXT,"
    "  source_components TEXT,"
    "  spec_hash TEXT NOT NULL);"
    "CREATE INDEX publications_by_table ON publications(pipeline, table_name, ds, id);",
    /* 5 -> 6: bookkeeping that costs little when most stages have nothing to
     * do (a no-op run of a thousand stages spent more recording outcomes
     * than deciding them).
     * unchanged_stages: the stage instances a run found up to date and
     *   unchanged (status up_to_date, reason 'unchanged', no attempt), as
     *   one row per transaction of the runner holding a JSON array of
     *   [stage, ds] pairs, instead of one stage_runs row each.
     * stage_outcomes: every outcome as one row per (run, stage, ds), from
     *   stage_runs and unchanged_stages alike, for people reading the
     *   database; nightjar's own queries read the two tables.
     * stage_runs_running, runs_running: recovery finds what a dead runner
     *   left `running` without reading the whole history.
     * stage_keys_by_date: the cache reads a date's last keys in one range. */
    "CREATE TABLE unchanged_stages ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id),"
    "  ended_ms INTEGER NOT NULL,"
    "  instances TEXT NOT NULL);"
    "CREATE INDEX unchanged_stages_by_run ON unchanged_stages(run_id);"
    "CREATE VIEW stage_outcomes AS"
    "  SELECT run_id, stage, ds, status, attempts, started_ms, ended_ms, reason FROM stage_runs"
    "  UNION ALL"
    "  SELECT u.run_id, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'),"
    "   'up_to_date', 0, NULL, u.ended_ms, 'unchanged'"
    "  FROM unchanged_stages u, json_each(u.instances) j;"
    "CREATE INDEX stage_runs_running ON stage_runs(status) WHERE status = 'running';"
    "CREATE INDEX runs_running ON runs(status) WHERE status = 'running';"
    "CREATE INDEX stage_keys_by_date ON stage_keys(pipeline, ds);",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

static int db_error(nj_state *st, nj_err *err, const char *what)
{
    return nj_err_set(err, NJ_EDB, "%s in '%s': %s", what, st->path, sqlite3_errmsg(st->db));
}

static int exec_sql(nj_state *st, const char *sql, nj_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = nj_err_set(err, NJ_EDB, "database error in '%s': %s", st->path,
                            msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

static int migrate(nj_state *st, nj_err *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK)
        return db_error(st, err, "cannot read schema version");
    int version = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
    sqlite3_finalize(q);
    if (version > SCHEMA_VERSION)
        return nj_err_set(err, NJ_EDB,
                          "'%s' has schema version %d, newer than this nightjar understands (%d); "
                          "upgrade nightjar",
                          st->path, version, SCHEMA_VERSION);
    while (version < SCHEMA_VERSION) {
        /* BEGIN IMMEDIATE: two runners opening a fresh database at once must not
         * both migrate. Re-read the version inside the transaction. */
        int rc = exec_sql(st, "BEGIN IMMEDIATE", err);
        if (rc < 0) return rc;
        if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK) {
            exec_sql(st, "ROLLBACK", NULL);
            return db_error(st, err, "cannot read schema version");
        }
        version = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
        sqlite3_finalize(q);
        if (version >= SCHEMA_VERSION) {
            exec_sql(st, "COMMIT", NULL);
            break;
        }
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", version + 1);
        if ((rc = exec_sql(st, migrations[version], err)) < 0 ||
            (rc = exec_sql(st, pragma, err)) < 0 || (rc = exec_sql(st, "COMMIT", err)) < 0) {
            exec_sql(st, "ROLLBACK", NULL);
            return nj_err_prefix(err, "cannot migrate to schema version %d", version + 1);
        }
        version++;
    }
    return 0;
}

int nj_state_open(const char *path, nj_state **out, nj_err *err)
{
    *out = NULL;
    nj_state *st = nj_xcalloc(1, sizeof(*st));
    st->path = nj_xstrdup(path);
    st->abs_path = nj_path_absolute(path);
    if (gethostname(st->host, sizeof(st->host) - 1) != 0) strcpy(st->host, "unknown");
    int rc = nj_fs_mkdirs_parent(path, err);
    if (rc < 0) goto fail;
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = db_error(st, err, "cannot open state database");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 10000);
    /* WAL: readers (status, history) never block the runner. synchronous=NORMAL
     * in WAL mode keeps the database consistent across a process crash; only
     * an OS crash may lose the last transactions, never corrupt. */
    if ((rc = exec_sql(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                           "PRAGMA foreign_keys=ON;",
                       err)) < 0)
        goto fail;
    if ((rc = migrate(st, err)) < 0) goto fail;
    *out = st;
    return 0;
fail:
    nj_state_close(st);
    return rc;
}

void nj_state_close(nj_state *st)
{
    if (!st) return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(st->stmts[i]);
    if (st->db) sqlite3_close_v2(st->db);
    nj_buf_release(&st->unchanged);
    free(st->path);
    free(st->abs_path);
    free(st);
}

sqlite3 *nj_state_db(nj_state *st)
{
    return st->db;
}

int nj_state_begin(nj_state *st, nj_err *err)
{
    if (st->tx_depth++ > 0) return 0;
    if (exec_sql(st, "BEGIN", err) < 0) {
        st->tx_depth = 0;
        return err ? err->code : NJ_EDB;
    }
    return 0;
}

static int flush_unchanged(nj_state *st, nj_err *err);

int nj_state_commit(nj_state *st, nj_err *err)
{
    if (st->tx_depth == 0 || --st->tx_depth > 0) return 0;
    int rc = flush_unchanged(st, err);
    if (rc < 0) {
        /* Nothing of the burst half-written: the runner stops on this error. */
        exec_sql(st, "ROLLBACK", NULL);
        return rc;
    }
    return exec_sql(st, "COMMIT", err);
}

/* Binds a possibly-NULL text. */
static void bind_text(sqlite3_stmt *q, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(q, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, i);
}

static char *column_text(sqlite3_stmt *q, int i)
{
    const unsigned char *s = sqlite3_column_text(q, i);
    return s ? nj_xstrdup((const char *)s) : NULL;
}

/* Prepares `sql`, binds nothing; on error fills err. */
static int prepare(nj_state *st, const char *sql, sqlite3_stmt **q, nj_err *err)
{
    if (sqlite3_prepare_v2(st->db, sql, -1, q, NULL) != SQLITE_OK)
        return db_error(st, err, "cannot prepare query");
    return 0;
}

/* The cached statement `id` (prepared on first use), reset and unbound. */
static int cached(nj_state *st, int id, const char *sql, sqlite3_stmt **q, nj_err *err)
{
    if (!st->stmts[id] && sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                             &st->stmts[id], NULL) != SQLITE_OK)
        return db_error(st, err, "cannot prepare query");
    *q = st->stmts[id];
    sqlite3_reset(*q);
    sqlite3_clear_bindings(*q);
    return 0;
}

/* Steps a cached statement that returns no rows and resets it. A single
 * statement is its own transaction in SQLite (autocommit) unless the caller
 * opened one. */
static int step_cached(nj_state *st, sqlite3_stmt *q, nj_err *err, const char *what)
{
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : db_error(st, err, what);
    sqlite3_reset(q);
    return rc;
}


int nj_state_run_begin(nj_state *st, const char *pipeline, const char *pipeline_file,
                       const char *ds, const char *args, int64_t *run_id, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = cached(st, Q_RUN_BEGIN,
                     "INSERT INTO runs (pipeline, pipeline_file, ds, started_ms, status, version,"
                     " args, pid, host) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                     &q, err);
    if (rc < 0) return rc;
    bind_text(q, 1, pipeline);
    bind_text(q, 2, pipeline_file);
    bind_text(q, 3, ds);
    sqlite3_bind_int64(q, 4, nj_time_now_ms());
    bind_text(q, 5, NJ_VERSION);
    bind_text(q, 6, args);
    sqlite3_bind_int64(q, 7, (sqlite3_int64)getpid());
    bind_text(q, 8, st->host);
    rc = step_cached(st, q, err, "cannot record run");
    if (rc == 0) *run_id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int nj_state_run_end(nj_state *st, int64_t run_id, nj_status status, int exit_code, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = cached(st, Q_RUN_END, "UPDATE runs SET ended_ms = ?, status = ?, exit_code = ? WHERE id = ?",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, nj_time_now_ms());
    bind_text(q, 2, nj_status_name(status));
    sqlite3_bind_int(q, 3, exit_code);
    sqlite3_bind_int64(q, 4, run_id);
    return step_cached(st, q, err, "cannot record end of run");
}

/* Writes the pending unchanged instances as one unchanged_stages row. */
static int flush_unchanged(nj_state *st, nj_err *err)
{
    if (st->unchanged.len == 0) return 0;
    nj_buf_putc(&st->unchanged, ']');
    sqlite3_stmt *q;
    int rc = cached(st, Q_UNCHANGED,
                    "INSERT INTO unchanged_stages (run_id, ended_ms, instances) VALUES (?, ?, ?)", &q,
                    err);
    if (rc == 0) {
        sqlite3_bind_int64(q, 1, st->unchanged_run);
        sqlite3_bind_int64(q, 2, nj_time_now_ms());
        sqlite3_bind_text(q, 3, st->unchanged.data, (int)st->unchanged.len, SQLITE_STATIC);
        rc = step_cached(st, q, err, "cannot record unchanged stages");
        sqlite3_clear_bindings(q);
    }
    nj_buf_reset(&st->unchanged);
    return rc;
}

/* The JSON text of one unchanged instance, as unchanged_stages.instances
 * holds it: ["stage","ds"]. Always written this one way, so a search for
 * the text finds the instance (see nj_state_date_status). */
static void put_instance(nj_buf *b, const char *stage, const char *ds)
{
    nj_buf_putc(b, '[');
    nj_json_write_string(b, stage);
    nj_buf_putc(b, ',');
    nj_json_write_string(b, ds ? ds : "");
    nj_buf_putc(b, ']');
}

int nj_state_stage_end(nj_state *st, int64_t run_id, const char *stage, const char *ds,
                       nj_status status, int attempts, int64_t started_ms, const char *reason,
                       nj_err *err)
{
    sqlite3_stmt *q;
    int rc;
    if (status == NJ_STATUS_UP_TO_DATE && attempts == 0 && started_ms == 0 && reason &&
        strcmp(reason, "unchanged") == 0) {
        if (st->unchanged.len && st->unchanged_run != run_id && (rc = flush_unchanged(st, err)) < 0)
            return rc;
        if (!st->unchanged.data) nj_buf_init(&st->unchanged);
        nj_buf_putc(&st->unchanged, st->unchanged.len ? ',' : '[');
        put_instance(&st->unchanged, stage, ds);
        st->unchanged_run = run_id;
        /* Outside a transaction every write is its own. */
        return st->tx_depth == 0 ? flush_unchanged(st, err) : 0;
    }
    rc = cached(st, Q_STAGE_END,
                "INSERT OR REPLACE INTO stage_runs (run_id, stage, ds, status, attempts,"
                " started_ms, ended_ms, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, run_id);
    bind_text(q, 2, stage);
    bind_text(q, 3, ds ? ds : "");
    bind_text(q, 4, nj_status_name(status));
    sqlite3_bind_int(q, 5, attempts);
    if (started_ms)
        sqlite3_bind_int64(q, 6, started_ms);
    else
        sqlite3_bind_null(q, 6);
    sqlite3_bind_int64(q, 7, nj_time_now_ms());
    bind_text(q, 8, reason);
    return step_cached(st, q, err, "cannot record stage outcome");
}

int nj_state_attempt_begin(nj_state *st, int64_t run_id, const char *stage, const char *ds,
                           int attempt, const char *cmd, const char *log_path,
                           int64_t *attempt_id, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = cached(st, Q_ATTEMPT_BEGIN,
                     "INSERT INTO attempts (run_id, stage, ds, attempt, started_ms, status, host,"
                     " log_path, cmd) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, run_id);
    bind_text(q, 2, stage);
    bind_text(q, 3, ds ? ds : "");
    sqlite3_bind_int(q, 4, attempt);
    sqlite3_bind_int64(q, 5, nj_time_now_ms());
    bind_text(q, 6, st->host);
    bind_text(q, 7, log_path);
    bind_text(q, 8, cmd);
    rc = step_cached(st, q, err, "cannot record attempt");
    if (rc == 0) *attempt_id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int nj_state_attempt_set_pid(nj_state *st, int64_t attempt_id, int64_t pid, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = cached(st, Q_ATTEMPT_PID, "UPDATE attempts SET pid = ? WHERE id = ?", &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, pid);
    sqlite3_bind_int64(q, 2, attempt_id);
    return step_cached(st, q, err, "cannot record attempt pid");
}

int nj_state_attempt_end(nj_state *st, int64_t attempt_id, nj_status status, int exit_code,
                         int signal, const char *error, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = cached(st, Q_ATTEMPT_END,
                     "UPDATE attempts SET ended_ms = ?, status = ?, exit_code = ?, signal = ?,"
                     " error = ? WHERE id = ?",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, nj_time_now_ms());
    bind_text(q, 2, nj_status_name(status));
    if (exit_code >= 0)
        sqlite3_bind_int(q, 3, exit_code);
    else
        sqlite3_bind_null(q, 3);
    if (signal > 0)
        sqlite3_bind_int(q, 4, signal);
    else
        sqlite3_bind_null(q, 4);
    bind_text(q, 5, error);
    sqlite3_bind_int64(q, 6, attempt_id);
    return step_cached(st, q, err, "cannot record end of attempt");
}

/* 1 if /proc/<pid>/environ holds NIGHTJAR_ATTEMPT_ID=<attempt_id> and
 * NIGHTJAR_STATE=<this database>: the process is still the stage we started,
 * not an unrelated one that reused the pid, nor another workspace's attempt
 * with the same id. */
static int process_is_attempt(const nj_state *st, int64_t pid, int64_t attempt_id)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%lld/environ", (long long)pid);
    char *want_id = nj_xasprintf("NIGHTJAR_ATTEMPT_ID=%lld", (long long)attempt_id);
    char *want_state = nj_xasprintf("NIGHTJAR_STATE=%s", st->abs_path);
    char *env = NULL;
    size_t len = 0;
    int found_id = 0, found_state = 0;
    if (nj_fs_read_file(path, &env, &len, NULL) == 0) {
        for (size_t i = 0; i < len; i += strlen(env + i) + 1) {
            found_id |= strcmp(env + i, want_id) == 0;
            found_state |= strcmp(env + i, want_state) == 0;
        }
    }
    free(env);
    free(want_id);
    free(want_state);
    return found_id && found_state;
}

/* Kills every process still carrying the crashed attempt's marker: the
 * leader's process group, and any member that left it. */
static void kill_leftovers(const nj_state *st, int64_t pid, int64_t attempt_id)
{
    if (pid > 0 && process_is_attempt(st, pid, attempt_id)) kill(-(pid_t)pid, SIGKILL);
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long p = strtol(e->d_name, &end, 10);
        if (*end || p <= 1 || p == getpid()) continue;
        if (process_is_attempt(st, p, attempt_id)) kill((pid_t)p, SIGKILL);
    }
    closedir(d);
}

int nj_state_recover(nj_state *st, int *recovered, nj_err *err)
{
    *recovered = 0;
    sqlite3_stmt *q;
    int rc = prepare(st, "SELECT id, pid FROM attempts WHERE status = 'running'", &q, err);
    if (rc < 0) return rc;
    while (sqlite3_step(q) == SQLITE_ROW) {
        kill_leftovers(st, sqlite3_column_int64(q, 1), sqlite3_column_int64(q, 0));
        (*recovered)++;
    }
    sqlite3_finalize(q);
    char sql[512];
    snprintf(sql, sizeof(sql),
             "BEGIN IMMEDIATE;"
             "UPDATE attempts SET status = 'crashed', ended_ms = %lld,"
             " error = 'the runner died while this attempt ran' WHERE status = 'running';"
             "UPDATE stage_runs SET status = 'crashed', ended_ms = %lld WHERE status = 'running';"
             "UPDATE runs SET status = 'crashed', ended_ms = %lld WHERE status = 'running';"
             "COMMIT;",
             (long long)nj_time_now_ms(), (long long)nj_time_now_ms(),
             (long long)nj_time_now_ms());
    rc = exec_sql(st, sql, err);
    if (rc < 0) exec_sql(st, "ROLLBACK", NULL);
    return rc;
}

void nj_run_record_release(nj_run_record *r)
{
    free(r->pipeline);
    free(r->pipeline_file);
    free(r->ds);
    free(r->version);
    free(r->args);
    free(r->host);
    memset(r, 0, sizeof(*r));
}

#define RUN_COLUMNS                                                                                \
    "id, pipeline, pipeline_file, ds, started_ms, ended_ms, status, exit_code, version, args,"    \
    " pid, host"

static void read_run(sqlite3_stmt *q, nj_run_record *r)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(q, 0);
    r->pipeline = column_text(q, 1);
    r->pipeline_file = column_text(q, 2);
    r->ds = column_text(q, 3);
    r->started_ms = sqlite3_column_int64(q, 4);
    r->ended_ms = sqlite3_column_int64(q, 5);
    int s = nj_status_parse((const char *)sqlite3_column_text(q, 6));
    r->status = s < 0 ? NJ_STATUS_CRASHED : (nj_status)s;
    r->exit_code = sqlite3_column_type(q, 7) == SQLITE_NULL ? -1 : sqlite3_column_int(q, 7);
    r->version = column_text(q, 8);
    r->args = column_text(q, 9);
    r->pid = sqlite3_column_int64(q, 10);
    r->host = column_text(q, 11);
}

static int count_stage_outcomes(nj_state *st, nj_run_record *r, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(st, "SELECT status, count(*) FROM stage_runs WHERE run_id = ? GROUP BY 1",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, r->id);
    while (sqlite3_step(q) == SQLITE_ROW) {
        int s = nj_status_parse((const char *)sqlite3_column_text(q, 0));
        if (s >= 0) r->counts[s] = sqlite3_column_int(q, 1);
    }
    sqlite3_finalize(q);
    rc = prepare(st,
                 "SELECT coalesce(sum(json_array_length(instances)), 0) FROM unchanged_stages"
                 " WHERE run_id = ?",
                 &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, r->id);
    if (sqlite3_step(q) == SQLITE_ROW) r->counts[NJ_STATUS_UP_TO_DATE] += sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return 0;
}

int nj_state_runs(nj_state *st, const char *pipeline, int limit, nj_run_record **out, size_t *n,
                  nj_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *q;
    int rc = prepare(st,
                     "SELECT " RUN_COLUMNS " FROM runs WHERE pipeline = ? ORDER BY id DESC LIMIT ?",
                     &q, err);
    if (rc < 0) return rc;
    bind_text(q, 1, pipeline);
    sqlite3_bind_int(q, 2, limit > 0 ? limit : -1);
    size_t cap = 0;
    nj_run_record r;
    while (sqlite3_step(q) == SQLITE_ROW) {
        read_run(q, &r);
        NJ_PUSH(*out, *n, cap, r);
    }
    sqlite3_finalize(q);
    for (size_t i = 0; i < *n && rc == 0; i++)
        rc = count_stage_outcomes(st, &(*out)[i], err);
    return rc;
}

int nj_state_run(nj_state *st, int64_t run_id, nj_run_record *out, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(st, "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?", &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, run_id);
    if (sqlite3_step(q) == SQLITE_ROW) {
        read_run(q, out);
        rc = 0;
    } else {
        rc = nj_err_set(err, NJ_ENOTFOUND, "no run with id %lld", (long long)run_id);
    }
    sqlite3_finalize(q);
    if (rc == 0) rc = count_stage_outcomes(st, out, err);
    return rc;
}

void nj_stage_record_release(nj_stage_record *s)
{
    free(s->stage);
    free(s->ds);
    free(s->reason);
    memset(s, 0, sizeof(*s));
}

static int query_stages(nj_state *st, const char *sql, const char *text_arg, int64_t int_arg,
                        nj_stage_record **out, size_t *n, nj_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *q;
    int rc = prepare(st, sql, &q, err);
    if (rc < 0) return rc;
    if (text_arg)
        bind_text(q, 1, text_arg);
    else
        sqlite3_bind_int64(q, 1, int_arg);
    size_t cap = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        nj_stage_record s = {0};
        s.stage = column_text(q, 0);
        s.ds = column_text(q, 1);
        s.run_id = sqlite3_column_int64(q, 2);
        int status = nj_status_parse((const char *)sqlite3_column_text(q, 3));
        s.status = status < 0 ? NJ_STATUS_CRASHED : (nj_status)status;
        s.attempts = sqlite3_column_int(q, 4);
        s.started_ms = sqlite3_column_int64(q, 5);
        s.ended_ms = sqlite3_column_int64(q, 6);
        s.reason = column_text(q, 7);
        NJ_PUSH(*out, *n, cap, s);
    }
    sqlite3_finalize(q);
    return 0;
}

static int cmp_stage_records(const void *a, const void *b)
{
    const nj_stage_record *x = a, *y = b;
    int c = strcmp(x->stage, y->stage);
    return c ? c : strcmp(x->ds, y->ds);
}

/* "stage\x1fds": one string naming an instance, for a map. Caller frees. */
static char *instance_name(const char *stage, const char *ds)
{
    return nj_xasprintf("%s\x1f%s", stage, ds ? ds : "");
}

/* Lays the unchanged instances of `pipeline` over the latest outcomes read
 * from stage_runs: an instance found unchanged by a newer run than the one
 * of its record now has that run's up_to_date outcome.
 *
 * unchanged_stages is read newest run first. A record is settled once a row
 * names it (the newest such row wins) or once the rows read are older than
 * its own run (none left can replace it), so the reading stops as soon as
 * every record is settled; in the usual history, where the newest run found
 * everything unchanged, that is after one row. An instance only ever gets a
 * last key, and so can only be found unchanged, in a run that also recorded
 * it in stage_runs; one met without a record is added all the same. */
static int overlay_unchanged(nj_state *st, const char *pipeline, nj_stage_record **recs, size_t *n,
                             nj_err *err)
{
    size_t cap = *n, norig = *n, nsettled = 0, passed = 0;
    nj_strmap by_name; /* instance name -> record index + 1 */
    nj_strmap_init(&by_name);
    nj_strs names = {0}; /* the map's keys */
    for (size_t i = 0; i < norig; i++) {
        char *name = instance_name((*recs)[i].stage, (*recs)[i].ds);
        NJ_PUSH(names.items, names.len, names.cap, name);
        nj_strmap_put(&by_name, name, (void *)(uintptr_t)(i + 1));
    }
    unsigned char *settled = nj_xcalloc(norig ? norig : 1, 1);
    /* The records by run, newest first; those before `passed` are from runs
     * at least as new as the unchanged row being read. */
    size_t *by_run = nj_xcalloc(norig ? norig : 1, sizeof(size_t));
    for (size_t i = 0; i < norig; i++) {
        size_t j = i;
        for (; j > 0 && (*recs)[by_run[j - 1]].run_id < (*recs)[i].run_id; j--)
            by_run[j] = by_run[j - 1];
        by_run[j] = i;
    }

    sqlite3_stmt *q;
    int rc = prepare(st,
                     "SELECT u.run_id, u.ended_ms, u.instances FROM unchanged_stages u"
                     " JOIN runs r ON r.id = u.run_id WHERE r.pipeline = ?"
                     " ORDER BY u.run_id DESC, u.rowid DESC",
                     &q, err);
    if (rc == 0) bind_text(q, 1, pipeline);
    while (rc == 0 && sqlite3_step(q) == SQLITE_ROW) {
        int64_t run_id = sqlite3_column_int64(q, 0);
        for (; passed < norig && (*recs)[by_run[passed]].run_id >= run_id; passed++)
            if (!settled[by_run[passed]]) {
                settled[by_run[passed]] = 1;
                nsettled++;
            }
        if (norig > 0 && nsettled == norig) break;
        const char *text = (const char *)sqlite3_column_text(q, 2);
        nj_json *list = NULL;
        if (!text || nj_json_parse(text, strlen(text), "unchanged_stages", &list, NULL) < 0 ||
            list->type != NJ_JSON_ARRAY) {
            nj_json_free(list);
            continue; /* not written by nightjar: ignore */
        }
        for (size_t k = 0; k < list->len; k++) {
            const nj_json *pair = &list->items[k];
            if (pair->type != NJ_JSON_ARRAY || pair->len != 2 ||
                pair->items[0].type != NJ_JSON_STRING || pair->items[1].type != NJ_JSON_STRING)
                continue;
            char *name = instance_name(pair->items[0].string, pair->items[1].string);
            size_t found = (size_t)(uintptr_t)nj_strmap_get(&by_name, name);
            if (found) {
                free(name);
                if (found > norig || settled[found - 1]) continue; /* a newer row named it */
                settled[found - 1] = 1;
                nsettled++;
            } else { /* see above: not expected, but not lost either */
                nj_stage_record rec = {0};
                rec.stage = nj_xstrdup(pair->items[0].string);
                rec.ds = nj_xstrdup(pair->items[1].string);
                NJ_PUSH(*recs, *n, cap, rec);
                NJ_PUSH(names.items, names.len, names.cap, name);
                nj_strmap_put(&by_name, name, (void *)(uintptr_t)*n);
                found = *n;
            }
            nj_stage_record *r = &(*recs)[found - 1];
            free(r->reason);
            r->run_id = run_id;
            r->status = NJ_STATUS_UP_TO_DATE;
            r->attempts = 0;
            r->started_ms = 0;
            r->ended_ms = sqlite3_column_int64(q, 1);
            r->reason = nj_xstrdup("unchanged");
        }
        nj_json_free(list);
    }
    if (rc == 0) sqlite3_finalize(q);
    nj_strs_release(&names);
    free(by_run);
    free(settled);
    nj_strmap_release(&by_name);
    if (*n > 1) qsort(*recs, *n, sizeof(**recs), cmp_stage_records);
    return rc;
}

int nj_state_latest_stages(nj_state *st, const char *pipeline, nj_stage_record **out, size_t *n,
                           nj_err *err)
{
    int rc = query_stages(st,
                          "SELECT s.stage, s.ds, s.run_id, s.status, s.attempts, s.started_ms,"
                          " s.ended_ms, s.reason FROM stage_runs s"
                          " JOIN runs r ON r.id = s.run_id"
                          " WHERE r.pipeline = ?1 AND s.run_id = (SELECT max(s2.run_id)"
                          "  FROM stage_runs s2 JOIN runs r2 ON r2.id = s2.run_id"
                          "  WHERE r2.pipeline = ?1 AND s2.stage = s.stage AND s2.ds = s.ds)"
                          " ORDER BY s.stage, s.ds",
                          pipeline, 0, out, n, err);
    if (rc == 0) rc = overlay_unchanged(st, pipeline, out, n, err);
    return rc;
}

int nj_state_run_stages(nj_state *st, int64_t run_id, nj_stage_record **out, size_t *n,
                        nj_err *err)
{
    return query_stages(st,
                        "SELECT stage, ds, run_id, status, attempts, started_ms, ended_ms, reason"
                        " FROM stage_runs WHERE run_id = ?1"
                        " UNION ALL"
                        " SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'),"
                        "  u.run_id, 'up_to_date', 0, NULL, u.ended_ms, 'unchanged'"
                        " FROM unchanged_stages u, json_each(u.instances) j WHERE u.run_id = ?1"
                        " ORDER BY 6, 1, 2",
                        NULL, run_id, out, n, err);
}

void nj_attempt_record_release(nj_attempt_record *a)
{
    free(a->stage);
    free(a->ds);
    free(a->host);
    free(a->log_path);
    free(a->cmd);
    free(a->error);
    memset(a, 0, sizeof(*a));
}

int nj_state_attempts(nj_state *st, const char *pipeline, const char *stage, int64_t run_id,
                      nj_attempt_record **out, size_t *n, nj_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *q;
    int rc = prepare(
        st,
        "SELECT a.id, a.run_id, a.stage, a.ds, a.attempt, a.started_ms, a.ended_ms, a.status,"
        " a.exit_code, a.signal, a.pid, a.host, a.log_path, a.cmd, a.error"
        " FROM attempts a WHERE a.stage = ?2 AND a.run_id = CASE WHEN ?3 > 0 THEN ?3 ELSE"
        "  (SELECT max(a2.run_id) FROM attempts a2 JOIN runs r ON r.id = a2.run_id"
        "   WHERE r.pipeline = ?1 AND a2.stage = ?2) END"
        " ORDER BY a.ds, a.attempt",
        &q, err);
    if (rc < 0) return rc;
    bind_text(q, 1, pipeline);
    bind_text(q, 2, stage);
    sqlite3_bind_int64(q, 3, run_id);
    size_t cap = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        nj_attempt_record a = {0};
        a.id = sqlite3_column_int64(q, 0);
        a.run_id = sqlite3_column_int64(q, 1);
        a.stage = column_text(q, 2);
        a.ds = column_text(q, 3);
        a.attempt = sqlite3_column_int(q, 4);
        a.started_ms = sqlite3_column_int64(q, 5);
        a.ended_ms = sqlite3_column_int64(q, 6);
        int s = nj_status_parse((const char *)sqlite3_column_text(q, 7));
        a.status = s < 0 ? NJ_STATUS_CRASHED : (nj_status)s;
        a.exit_code = sqlite3_column_type(q, 8) == SQLITE_NULL ? -1 : sqlite3_column_int(q, 8);
        a.signal = sqlite3_column_int(q, 9);
        a.pid = sqlite3_column_int64(q, 10);
        a.host = column_text(q, 11);
        a.log_path = column_text(q, 12);
        a.cmd = column_text(q, 13);
        a.error = column_text(q, 14);
        NJ_PUSH(*out, *n, cap, a);
    }
    sqlite3_finalize(q);
    return 0;
}

/* ---- backfills ------------------------------------------------------------- */

int nj_state_date_status(nj_state *st, const char *pipeline, const char *ds,
                         const char *const *stages, size_t nstages, nj_date_state *out,
                         nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(st,
                     "SELECT s.status, s.run_id FROM stage_runs s JOIN runs r ON r.id = s.run_id"
                     " WHERE r.pipeline = ?1 AND s.stage = ?2 AND s.ds = ?3"
                     " ORDER BY s.run_id DESC LIMIT 1",
                     &q, err);
    if (rc < 0) return rc;
    /* A newer run may have found the instance unchanged (unchanged_stages,
     * searched for the instance's exact JSON text; see put_instance). */
    sqlite3_stmt *uq;
    rc = prepare(st,
                 "SELECT 1 FROM unchanged_stages u JOIN runs r ON r.id = u.run_id"
                 " WHERE r.pipeline = ?1 AND u.run_id > ?2 AND instr(u.instances, ?3) > 0 LIMIT 1",
                 &uq, err);
    if (rc < 0) {
        sqlite3_finalize(q);
        return rc;
    }
    nj_buf pair;
    nj_buf_init(&pair);
    int ok = 1, failed = 0;
    for (size_t i = 0; i < nstages; i++) {
        sqlite3_reset(q);
        bind_text(q, 1, pipeline);
        bind_text(q, 2, stages[i]);
        bind_text(q, 3, ds);
        int has_row = sqlite3_step(q) == SQLITE_ROW;
        int s = has_row ? nj_status_parse((const char *)sqlite3_column_text(q, 0)) : -1;
        /* Only an instance with a stage_runs row can have been found
         * unchanged since (see overlay_unchanged). */
        if (has_row && s != NJ_STATUS_SUCCEEDED && s != NJ_STATUS_CACHED &&
            s != NJ_STATUS_UP_TO_DATE) {
            nj_buf_reset(&pair);
            put_instance(&pair, stages[i], ds);
            sqlite3_reset(uq);
            bind_text(uq, 1, pipeline);
            sqlite3_bind_int64(uq, 2, sqlite3_column_int64(q, 1));
            bind_text(uq, 3, pair.data);
            if (sqlite3_step(uq) == SQLITE_ROW) s = NJ_STATUS_UP_TO_DATE;
        }
        if (!has_row) {
            ok = 0;
            continue;
        }
        if (s != NJ_STATUS_SUCCEEDED && s != NJ_STATUS_CACHED && s != NJ_STATUS_UP_TO_DATE) ok = 0;
        if (s == NJ_STATUS_FAILED || s == NJ_STATUS_UPSTREAM_FAILED || s == NJ_STATUS_TIMEOUT)
            failed = 1;
    }
    nj_buf_release(&pair);
    sqlite3_finalize(uq);
    sqlite3_finalize(q);
    *out = ok ? NJ_DATE_SUCCEEDED : failed ? NJ_DATE_FAILED : NJ_DATE_MISSING;
    return 0;
}

const char *nj_date_state_name(nj_date_state s)
{
    static const char *const names[] = {"missing", "succeeded", "failed", "skipped"};
    return s <= NJ_DATE_SKIPPED ? names[s] : "unknown";
}

int nj_state_backfill_open(nj_state *st, const char *pipeline, const char *key,
                           const char *from_ds, const char *to_ds, const char *args,
                           int64_t *id, int *resumed, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(st,
                     "SELECT id FROM backfills WHERE pipeline = ? AND key = ? AND status != "
                     "'succeeded' ORDER BY id DESC LIMIT 1",
                     &q, err);
    if (rc < 0) return rc;
    bind_text(q, 1, pipeline);
    bind_text(q, 2, key);
    *resumed = sqlite3_step(q) == SQLITE_ROW;
    if (*resumed) *id = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    if (*resumed) return 0;
    rc = prepare(st,
                 "INSERT INTO backfills (pipeline, key, from_ds, to_ds, args, status, created_ms,"
                 " updated_ms) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                 &q, err);
    if (rc < 0) return rc;
    bind_text(q, 1, pipeline);
    bind_text(q, 2, key);
    bind_text(q, 3, from_ds);
    bind_text(q, 4, to_ds);
    bind_text(q, 5, args);
    sqlite3_bind_int64(q, 6, nj_time_now_ms());
    sqlite3_bind_int64(q, 7, nj_time_now_ms());
    rc = sqlite3_step(q) == SQLITE_DONE ? 0 : db_error(st, err, "cannot record backfill");
    sqlite3_finalize(q);
    if (rc == 0) *id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int nj_state_backfill_date(nj_state *st, int64_t id, const char *ds, nj_date_state state,
                           int64_t run_id, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(st,
                     "INSERT INTO backfill_dates (backfill_id, ds, status, run_id, updated_ms)"
                     " VALUES (?, ?, ?, ?, ?) ON CONFLICT(backfill_id, ds) DO UPDATE SET"
                     " status = excluded.status, run_id = coalesce(excluded.run_id, run_id),"
                     " updated_ms = excluded.updated_ms",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, id);
    bind_text(q, 2, ds);
    bind_text(q, 3, nj_date_state_name(state));
    if (run_id > 0)
        sqlite3_bind_int64(q, 4, run_id);
    else
        sqlite3_bind_null(q, 4);
    sqlite3_bind_int64(q, 5, nj_time_now_ms());
    rc = sqlite3_step(q) == SQLITE_DONE ? 0 : db_error(st, err, "cannot record backfill date");
    sqlite3_finalize(q);
    return rc;
}

int nj_state_backfill_end(nj_state *st, int64_t id, const char *status, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(st, "UPDATE backfills SET status = ?, updated_ms = ? WHERE id = ?", &q, err);
    if (rc < 0) return rc;
    bind_text(q, 1, status);
    sqlite3_bind_int64(q, 2, nj_time_now_ms());
    sqlite3_bind_int64(q, 3, id);
    rc = sqlite3_step(q) == SQLITE_DONE ? 0 : db_error(st, err, "cannot record backfill end");
    sqlite3_finalize(q);
    return rc;
}

int nj_state_backfill_show(nj_state *st, int64_t id, nj_backfill_visit_fn fn, void *ctx,
                           nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(st,
                     "SELECT b.pipeline, b.from_ds, b.to_ds, b.args, b.status, d.ds, d.status,"
                     " d.run_id FROM backfills b LEFT JOIN backfill_dates d ON d.backfill_id = b.id"
                     " WHERE b.id = ? ORDER BY d.ds",
                     &q, err);
    if (rc < 0) return rc;
    sqlite3_bind_int64(q, 1, id);
    int rows = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        rows++;
        nj_backfill_row row = {
            .pipeline = (const char *)sqlite3_column_text(q, 0),
            .from_ds = (const char *)sqlite3_column_text(q, 1),
            .to_ds = (const char *)sqlite3_column_text(q, 2),
            .args = (const char *)sqlite3_column_text(q, 3),
            .status = (const char *)sqlite3_column_text(q, 4),
            .ds = (const char *)sqlite3_column_text(q, 5),
            .date_status = (const char *)sqlite3_column_text(q, 6),
            .run_id = sqlite3_column_int64(q, 7),
        };
        fn(ctx, &row);
    }
    sqlite3_finalize(q);
    if (!rows) return nj_err_set(err, NJ_ENOTFOUND, "no backfill with id %lld", (long long)id);
    return 0;
}

int nj_state_snapshot_add(nj_state *st, const char *pipeline, const char *stage, const char *ds,
                          int64_t run_id, const char *hash_hex, uint64_t size, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(st,
                     "INSERT OR REPLACE INTO snapshots (pipeline, stage, ds, run_id, hash, size,"
                     " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     &q, err);
    if (rc < 0) return rc;
    bind_text(q, 1, pipeline);
    bind_text(q, 2, stage);
    bind_text(q, 3, ds ? ds : "");
    sqlite3_bind_int64(q, 4, run_id);
    bind_text(q, 5, hash_hex);
    sqlite3_bind_int64(q, 6, (sqlite3_int64)size);
    sqlite3_bind_int64(q, 7, nj_time_now_ms());
    rc = sqlite3_step(q) == SQLITE_DONE ? 0 : db_error(st, err, "cannot record snapshot");
    sqlite3_finalize(q);
    return rc;
}

int nj_state_snapshots(nj_state *st, const char *pipeline, const char *stage,
                       nj_snapshot_record_fn fn, void *ctx, nj_err *err)
{
    sqlite3_stmt *q;
    int rc = prepare(st,
                     "SELECT ds, run_id, hash, size, created_ms FROM snapshots"
                     " WHERE pipeline = ? AND stage = ? ORDER BY ds, run_id",
                     &q, err);
    if (rc < 0) return rc;
    bind_text(q, 1, pipeline);
    bind_text(q, 2, stage);
    while (sqlite3_step(q) == SQLITE_ROW)
        fn(ctx, (const char *)sqlite3_column_text(q, 0), sqlite3_column_int64(q, 1),
           (const char *)sqlite3_column_text(q, 2), (uint64_t)sqlite3_column_int64(q, 3),
           sqlite3_column_int64(q, 4));
    sqlite3_finalize(q);
    return 0;
}

