/* cache.c - stage keys, the run cache (index.db beside the object store),
 * the stat cache and last keys (in the workspace state database), and the
 * run / cached / up-to-date decision. See cache.h for the model. */
#include "nightjar/cache.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/strmap.h"
#include "nightjar/util.h"

#define KEY_HEADER "nightjar-key 1\n"

static const char index_schema[] =
    "CREATE TABLE IF NOT EXISTS entries ("
    "  key TEXT PRIMARY KEY,"
    "  stage TEXT NOT NULL,"
    "  outputs TEXT NOT NULL," /* "name kind hash size\n" per output */
    "  created_ms INTEGER NOT NULL,"
    "  used_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS uses ("
    "  key TEXT NOT NULL,"
    "  workspace TEXT NOT NULL,"
    "  run_id INTEGER NOT NULL,"
    "  used_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (key, workspace, run_id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS uses_by_workspace ON uses(workspace, run_id);"
    /* Objects kept whatever gc decides: registered models, published data. */
    "CREATE TABLE IF NOT EXISTS pins ("
    "  hash TEXT NOT NULL,"
    "  workspace TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  PRIMARY KEY (hash, workspace, reason)) WITHOUT ROWID;";

struct nj_cache {
    const nj_pipeline *p;
    nj_state *st;
    sqlite3 *sdb; /* the workspace state database (borrowed) */
    sqlite3 *idb; /* <dir>/index.db */
    nj_store *store;
    nj_store *worker_store; /* the same directory without the stat cache, for pool threads */
    char *dir;
    char *index_path;
    nj_link_mode link;
    nj_hash_cache hc;
    sqlite3_stmt *stat_dir, *stat_put, *key_date, *key_components, *key_put, *entry_get,
        *entry_put, *entry_del, *use_put;
    int in_tx;
    /* The stat cache and the last keys, read from the state database a
     * directory (a date) at a time on first use and then answered from
     * memory: one query per directory instead of one per file. Writes go to
     * the database and to these copies alike. */
    nj_strmap stat_dirs;  /* directory -> itself (owned), once loaded */
    nj_strmap stat_rows;  /* absolute path -> stat_row */
    nj_strmap key_dates;  /* ds -> key_date */
};

/* One stat-cache row in memory. */
typedef struct stat_row {
    nj_file_sig sig;
    nj_hash hash;
    char path[]; /* the map's key */
} stat_row;

/* One instance's last key in memory; components are read only when needed. */
typedef struct key_row {
    char *key, *outputs;
    char stage[]; /* the map's key */
} key_row;

/* The last keys of one date ("" for unpartitioned stages), by stage. */
typedef struct key_date {
    nj_strmap by_stage;
    char ds[];
} key_date;

/* ---- small helpers ----------------------------------------------------- */

static int sdb_error(nj_cache *c, nj_err *err, const char *what)
{
    return nj_err_set(err, NJ_EDB, "%s: %s", what, sqlite3_errmsg(c->sdb));
}

static int idb_error(nj_cache *c, nj_err *err, const char *what)
{
    return nj_err_set(err, NJ_EDB, "%s in '%s': %s", what, c->index_path, sqlite3_errmsg(c->idb));
}

static void bind_text(sqlite3_stmt *q, int i, const char *s)
{
    sqlite3_bind_text(q, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

/* Appends s with '\\' and '\n' escaped, so every key component is one line. */
static void put_escaped(nj_buf *b, const char *s)
{
    for (;;) {
        size_t plain = strcspn(s, "\\\n");
        nj_buf_add(b, s, plain);
        s += plain;
        if (!*s) return;
        nj_buf_puts(b, *s == '\\' ? "\\\\" : "\\n");
        s++;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- the stat cache, backed by the state database --------------------- */

/* The directory part of an absolute path, as a new string. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return nj_xstrndup(path, slash ? (size_t)(slash - path) : 0);
}

/* Reads every stat-cache row of the files directly in `dir` into memory:
 * the paths in [dir/, dir0) ('0' follows '/'), without those in its
 * subdirectories, which are loaded when one of their own files is asked for. */
static void load_stat_dir(nj_cache *c, char *dir)
{
    nj_strmap_put(&c->stat_dirs, dir, dir);
    size_t n = strlen(dir);
    char *lo = nj_xasprintf("%s/", dir), *hi = nj_xasprintf("%s0", dir);
    sqlite3_stmt *q = c->stat_dir;
    sqlite3_reset(q);
    sqlite3_bind_text(q, 1, lo, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, hi, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)n + 2);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(q, 0);
        if (!path || sqlite3_column_bytes(q, 7) != NJ_HASH_SIZE) continue;
        size_t len = strlen(path);
        stat_row *row = nj_xmalloc(sizeof(*row) + len + 1);
        memcpy(row->path, path, len + 1);
        memset(&row->sig, 0, sizeof(row->sig));
        row->sig.dev = (uint64_t)sqlite3_column_int64(q, 1);
        row->sig.ino = (uint64_t)sqlite3_column_int64(q, 2);
        row->sig.size = (uint64_t)sqlite3_column_int64(q, 3);
        row->sig.mtime_ns = sqlite3_column_int64(q, 4);
        row->sig.ctime_ns = sqlite3_column_int64(q, 5);
        row->sig.mode = (uint32_t)sqlite3_column_int64(q, 6);
        memcpy(row->hash.bytes, sqlite3_column_blob(q, 7), NJ_HASH_SIZE);
        free(nj_strmap_put(&c->stat_rows, row->path, row));
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    free(lo);
    free(hi);
}

static int stat_lookup(void *ctx, const char *path, const nj_file_sig *sig, nj_hash *hash)
{
    nj_cache *c = ctx;
    char *dir = dir_of(path);
    if (nj_strmap_get(&c->stat_dirs, dir))
        free(dir);
    else
        load_stat_dir(c, dir); /* the map keeps dir */
    const stat_row *row = nj_strmap_get(&c->stat_rows, path);
    if (!row || !nj_file_sig_equal(&row->sig, sig)) return 0;
    *hash = row->hash;
    return 1;
}

static void stat_store(void *ctx, const char *path, const nj_file_sig *sig, const nj_hash *hash)
{
    nj_cache *c = ctx;
    sqlite3_stmt *q = c->stat_put;
    sqlite3_reset(q);
    bind_text(q, 1, path);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)sig->dev);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)sig->ino);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)sig->size);
    sqlite3_bind_int64(q, 5, sig->mtime_ns);
    sqlite3_bind_int64(q, 6, sig->ctime_ns);
    sqlite3_bind_int64(q, 7, sig->mode);
    sqlite3_bind_blob(q, 8, hash->bytes, NJ_HASH_SIZE, SQLITE_TRANSIENT);
    /* Best effort: a lost stat-cache row only costs a rehash later. */
    sqlite3_step(q);
    sqlite3_reset(q);
    /* Keep the copy in memory current (a directory not loaded yet will read
     * the new row from the database). */
    char *dir = dir_of(path);
    if (nj_strmap_get(&c->stat_dirs, dir)) {
        size_t len = strlen(path);
        stat_row *row = nj_xmalloc(sizeof(*row) + len + 1);
        memcpy(row->path, path, len + 1);
        row->sig = *sig;
        row->hash = *hash;
        free(nj_strmap_put(&c->stat_rows, row->path, row));
    }
    free(dir);
}

/* ---- last keys, backed by the state database ------------------------------ */

/* The date's last keys, read with one query the first time it is needed. */
static key_date *keys_of_date(nj_cache *c, const char *ds)
{
    key_date *kd = nj_strmap_get(&c->key_dates, ds);
    if (kd) return kd;
    size_t len = strlen(ds);
    kd = nj_xmalloc(sizeof(*kd) + len + 1);
    memcpy(kd->ds, ds, len + 1);
    nj_strmap_init(&kd->by_stage);
    nj_strmap_put(&c->key_dates, kd->ds, kd);
    sqlite3_stmt *q = c->key_date;
    sqlite3_reset(q);
    bind_text(q, 1, c->p->name);
    bind_text(q, 2, ds);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *stage = (const char *)sqlite3_column_text(q, 0);
        if (!stage) continue;
        size_t n = strlen(stage);
        key_row *row = nj_xmalloc(sizeof(*row) + n + 1);
        memcpy(row->stage, stage, n + 1);
        row->key = nj_xstrdup((const char *)sqlite3_column_text(q, 1));
        row->outputs = nj_xstrdup((const char *)sqlite3_column_text(q, 2));
        nj_strmap_put(&kd->by_stage, row->stage, row);
    }
    sqlite3_reset(q);
    return kd;
}

static void free_key_row(key_row *row)
{
    if (!row) return;
    free(row->key);
    free(row->outputs);
    free(row);
}

/* Sets the in-memory copy of an instance's last key (the database is
 * written by the caller). */
static void remember_key(nj_cache *c, const char *stage, const char *ds, const char *key,
                         const char *outputs)
{
    key_date *kd = keys_of_date(c, ds);
    size_t n = strlen(stage);
    key_row *row = nj_xmalloc(sizeof(*row) + n + 1);
    memcpy(row->stage, stage, n + 1);
    row->key = nj_xstrdup(key);
    row->outputs = nj_xstrdup(outputs);
    free_key_row(nj_strmap_put(&kd->by_stage, row->stage, row));
}

static void free_key_row_value(void *v)
{
    free_key_row(v);
}

static void free_key_date(void *v)
{
    key_date *kd = v;
    nj_strmap_free_values(&kd->by_stage, free_key_row_value);
    free(kd);
}

/* ---- opening ------------------------------------------------------------ */

static int prepare_all(nj_cache *c, nj_err *err)
{
    struct {
        sqlite3 *db;
        sqlite3_stmt **q;
        const char *sql;
    } stmts[] = {
        {c->sdb, &c->stat_dir,
         "SELECT path, dev, ino, size, mtime_ns, ctime_ns, mode, hash FROM stat_cache"
         " WHERE path >= ?1 AND path < ?2 AND instr(substr(path, ?3), '/') = 0"},
        {c->sdb, &c->stat_put,
         "INSERT OR REPLACE INTO stat_cache (path, dev, ino, size, mtime_ns, ctime_ns, mode, hash)"
         " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"},
        {c->sdb, &c->key_date, "SELECT stage, key, outputs FROM stage_keys WHERE pipeline = ? AND ds = ?"},
        {c->sdb, &c->key_components,
         "SELECT components FROM stage_keys WHERE pipeline = ? AND stage = ? AND ds = ?"},
        {c->sdb, &c->key_put,
         "INSERT OR REPLACE INTO stage_keys (pipeline, stage, ds, key, components, outputs, run_id,"
         " updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"},
        {c->idb, &c->entry_get, "SELECT outputs FROM entries WHERE key = ?"},
        {c->idb, &c->entry_put,
         "INSERT INTO entries (key, stage, outputs, created_ms, used_ms) VALUES (?, ?, ?, ?, ?)"
         " ON CONFLICT(key) DO UPDATE SET outputs = excluded.outputs, used_ms = excluded.used_ms"},
        {c->idb, &c->entry_del, "DELETE FROM entries WHERE key = ?"},
        {c->idb, &c->use_put,
         "INSERT OR REPLACE INTO uses (key, workspace, run_id, used_ms) VALUES (?, ?, ?, ?)"},
    };
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        if (sqlite3_prepare_v3(stmts[i].db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[i].q,
                               NULL) != SQLITE_OK)
            return nj_err_set(err, NJ_EDB, "cannot prepare cache query: %s",
                              sqlite3_errmsg(stmts[i].db));
    return 0;
}

/* Switches index.db to WAL and creates its tables. Two runs creating a
 * shared cache at the same instant can get SQLITE_BUSY here without the busy
 * handler being consulted (changing the journal mode, upgrading a read lock),
 * so each step is retried for up to 30 s. */
static int setup_index(nj_cache *c, nj_err *err)
{
    static const char *const steps[] = {
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        NULL, /* the schema, in BEGIN IMMEDIATE ... COMMIT */
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char *sql = steps[i] ? nj_xstrdup(steps[i])
                             : nj_xasprintf("BEGIN IMMEDIATE; %s COMMIT;", index_schema);
        int rc = SQLITE_BUSY;
        char *msg = NULL;
        for (int tries = 0; tries < 300; tries++) {
            sqlite3_free(msg);
            msg = NULL;
            rc = sqlite3_exec(c->idb, sql, NULL, NULL, &msg);
            if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
            sqlite3_exec(c->idb, "ROLLBACK", NULL, NULL, NULL);
            usleep(100 * 1000);
        }
        free(sql);
        if (rc != SQLITE_OK) {
            int code = nj_err_set(err, NJ_EDB, "cannot set up the run cache '%s': %s",
                                  c->index_path, msg ? msg : sqlite3_errmsg(c->idb));
            sqlite3_free(msg);
            return code;
        }
        sqlite3_free(msg);
    }
    return 0;
}

int nj_cache_open(const nj_pipeline *p, nj_state *st, nj_cache **out, nj_err *err)
{
    *out = NULL;
    nj_cache *c = nj_xcalloc(1, sizeof(*c));
    c->p = p;
    c->st = st;
    c->sdb = nj_state_db(st);
    const char *env = getenv("NIGHTJAR_CACHE");
    if (p->cache_dir)
        c->dir = nj_xstrdup(p->cache_dir);
    else if (env && *env)
        c->dir = nj_path_absolute(env);
    else
        c->dir = nj_path_join(p->workspace, "cache");
    c->index_path = nj_path_join(c->dir, "index.db");
    int rc = nj_link_mode_parse(p->cache_link ? p->cache_link : "auto", &c->link, err);
    if (rc < 0) goto fail;
    if ((rc = nj_store_open(c->dir, &c->store, err)) < 0) goto fail;
    if ((rc = nj_store_open(c->dir, &c->worker_store, err)) < 0) goto fail;
    if (sqlite3_open_v2(c->index_path, &c->idb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = idb_error(c, err, "cannot open the run cache");
        goto fail;
    }
    /* Shared by every workspace using this cache directory, concurrently. */
    sqlite3_busy_timeout(c->idb, 30000);
    if ((rc = setup_index(c, err)) < 0) goto fail;
    if ((rc = prepare_all(c, err)) < 0) goto fail;
    c->hc.lookup = stat_lookup;
    c->hc.store = stat_store;
    c->hc.ctx = c;
    nj_store_set_cache(c->store, &c->hc);
    *out = c;
    return 0;
fail:
    nj_cache_free(c);
    return rc;
}

void nj_cache_free(nj_cache *c)
{
    if (!c) return;
    if (c->in_tx) nj_cache_commit(c, NULL);
    sqlite3_stmt *all[] = {c->stat_dir,  c->stat_put,  c->key_date,  c->key_components,
                           c->key_put,   c->entry_get, c->entry_put, c->entry_del,
                           c->use_put};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sqlite3_finalize(all[i]);
    nj_strmap_free_values(&c->stat_dirs, free);
    nj_strmap_free_values(&c->stat_rows, free);
    nj_strmap_free_values(&c->key_dates, free_key_date);
    if (c->idb) sqlite3_close_v2(c->idb);
    nj_store_free(c->store);
    nj_store_free(c->worker_store);
    free(c->dir);
    free(c->index_path);
    free(c);
}

nj_store *nj_cache_store(nj_cache *c)
{
    return c->store;
}

const char *nj_cache_dir(const nj_cache *c)
{
    return c->dir;
}

sqlite3 *nj_cache_index(nj_cache *c)
{
    return c->idb;
}

int nj_cache_begin(nj_cache *c, nj_err *err)
{
    if (c->in_tx) return 0;
    int rc = nj_state_begin(c->st, err);
    if (rc < 0) return rc;
    if (sqlite3_exec(c->idb, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        nj_state_commit(c->st, NULL);
        return idb_error(c, err, "cannot begin a transaction");
    }
    c->in_tx = 1;
    return 0;
}

int nj_cache_commit(nj_cache *c, nj_err *err)
{
    if (!c->in_tx) return 0;
    c->in_tx = 0;
    int rc = nj_state_commit(c->st, err);
    if (sqlite3_exec(c->idb, "COMMIT", NULL, NULL, NULL) != SQLITE_OK && rc == 0)
        rc = idb_error(c, err, "cannot commit");
    return rc;
}

/* ---- keys ---------------------------------------------------------------- */

void nj_key_release(nj_key *k)
{
    free(k->text);
    k->text = NULL;
}

/* Hashes whatever is at `abs`: 'f' and the content hash for a file, 't' and
 * the manifest hash for a directory (one stat, through the stat cache).
 * -ENOENT when nothing is there. */
static int hash_thing(nj_cache *c, const char *abs, char *kind, nj_hash *h, nj_err *err)
{
    int is_dir = 0;
    int rc = nj_hash_paths(&abs, 1, &c->hc, h, &is_dir, err);
    *kind = is_dir ? 't' : 'f';
    return rc;
}

/* Adds "<prefix><line>" for each of n escaped items, sorted. */
static void add_sorted(nj_buf *b, nj_strs *lines)
{
    if (lines->len) qsort(lines->items, lines->len, sizeof(char *), cmp_str);
    for (size_t i = 0; i < lines->len; i++) {
        nj_buf_puts(b, lines->items[i]);
        nj_buf_putc(b, '\n');
    }
    nj_strs_release(lines);
}

int nj_cache_key(nj_cache *c, const nj_instance *inst, nj_key *out, nj_err *err)
{
    memset(out, 0, sizeof(*out));
    const nj_stage *s = inst->stage;
    nj_buf b, line;
    nj_buf_init(&b);
    nj_buf_init(&line);
    nj_strs lines = {0};
    int rc = 0;
    nj_buf_puts(&b, KEY_HEADER "cmd ");
    put_escaped(&b, inst->key_cmd);
    nj_buf_putc(&b, '\n');

    for (size_t i = 0; i < inst->nenv; i++) {
        nj_buf_reset(&line);
        nj_buf_puts(&line, "env ");
        put_escaped(&line, inst->env[i]);
        nj_strs_push(&lines, line.data);
    }
    add_sorted(&b, &lines);
    for (size_t i = 0; i < s->nparams; i++) {
        const nj_param *prm = nj_pipeline_param(c->p, s->params[i].name);
        nj_buf_reset(&line);
        nj_buf_puts(&line, "param ");
        nj_buf_puts(&line, s->params[i].name);
        nj_buf_putc(&line, ' ');
        put_escaped(&line, prm && prm->value ? prm->value : "");
        nj_strs_push(&lines, line.data);
    }
    add_sorted(&b, &lines);
    /* All inputs at once: files the stat cache does not know are hashed in
     * parallel on the thread pool. */
    size_t nin = inst->ninputs;
    const char **paths = nj_xcalloc(nin ? nin : 1, sizeof(char *));
    nj_hash *hashes = nj_xcalloc(nin ? nin : 1, sizeof(nj_hash));
    int *dirs = nj_xcalloc(nin ? nin : 1, sizeof(int));
    for (size_t i = 0; i < nin; i++)
        paths[i] = inst->inputs[i].path.abs;
    rc = nj_hash_paths(paths, nin, &c->hc, hashes, dirs, err);
    /* Only on failure: name a missing input the way the pipeline wrote it. */
    for (size_t i = 0; i < nin && rc == -ENOENT; i++)
        if (!nj_fs_exists(paths[i]))
            rc = nj_err_set(err, NJ_ENOTFOUND, "dep '%s' does not exist", inst->inputs[i].path.rel);
    for (size_t i = 0; i < nin && rc == 0; i++) {
        char hex[NJ_HASH_HEX_SIZE];
        nj_hash_hex(&hashes[i], hex);
        nj_buf_reset(&line);
        nj_buf_puts(&line, "dep ");
        put_escaped(&line, inst->inputs[i].path.rel);
        nj_buf_puts(&line, dirs[i] ? " t " : " f ");
        nj_buf_add(&line, hex, 2 * NJ_HASH_SIZE);
        nj_strs_push(&lines, line.data);
    }
    free(paths);
    free(hashes);
    free(dirs);
    add_sorted(&b, &lines);
    for (size_t i = 0; i < inst->nouts && rc == 0; i++) {
        nj_buf_reset(&line);
        nj_buf_puts(&line, "out ");
        nj_buf_puts(&line, s->outs[i].name);
        nj_buf_putc(&line, ' ');
        put_escaped(&line, inst->outs[i].rel);
        nj_strs_push(&lines, line.data);
    }
    add_sorted(&b, &lines);
    for (size_t i = 0; i < inst->ncode && rc == 0; i++) {
        char kind;
        nj_hash h;
        char hex[NJ_HASH_HEX_SIZE];
        if (!nj_fs_exists(inst->code[i].abs)) {
            rc = nj_err_set(err, NJ_ENOTFOUND, "code '%s' does not exist", inst->code[i].rel);
            break;
        }
        if ((rc = hash_thing(c, inst->code[i].abs, &kind, &h, err)) < 0) break;
        nj_hash_hex(&h, hex);
        nj_buf_reset(&line);
        nj_buf_puts(&line, "code ");
        put_escaped(&line, inst->code[i].rel);
        nj_buf_printf(&line, " %s", hex);
        nj_strs_push(&lines, line.data);
    }
    add_sorted(&b, &lines);
    nj_buf_release(&line);
    if (rc < 0) {
        nj_buf_release(&b);
        return rc;
    }
    nj_hash_buffer(b.data, b.len, &out->hash);
    nj_hash_hex(&out->hash, out->hex);
    /* Not hashed, only kept for `why`: the command as written, so an edited
     * command can be told apart from a changed param it renders. */
    nj_buf_puts(&b, "template ");
    put_escaped(&b, s->cmd ? s->cmd : inst->key_cmd);
    nj_buf_putc(&b, '\n');
    out->text = nj_buf_detach(&b);
    return 0;
}

/* ---- recorded outputs ---------------------------------------------------- */

typedef struct recorded_out {
    char name[128];
    char kind; /* 'f' or 't' */
    nj_hash hash;
    uint64_t size;
} recorded_out;

/* Parses one "name kind hex size" line ending at `end`. Returns 0 or -1. */
static int parse_output_line(const char *line, const char *end, recorded_out *r)
{
    memset(r, 0, sizeof(*r));
    const char *sp = memchr(line, ' ', (size_t)(end - line));
    size_t name_len = sp ? (size_t)(sp - line) : 0;
    if (name_len == 0 || name_len >= sizeof(r->name)) return -1;
    memcpy(r->name, line, name_len);
    const char *p = sp + 1;
    /* kind, space, 64 hex digits, space, at least one digit */
    if (end - p < 2 + 2 * NJ_HASH_SIZE + 2 || p[0] == ' ' || p[1] != ' ' ||
        p[2 + 2 * NJ_HASH_SIZE] != ' ')
        return -1;
    r->kind = p[0];
    char hex[NJ_HASH_HEX_SIZE];
    memcpy(hex, p + 2, 2 * NJ_HASH_SIZE);
    hex[2 * NJ_HASH_SIZE] = '\0';
    if (nj_hash_from_hex(hex, &r->hash, NULL) < 0) return -1;
    uint64_t size = 0;
    for (p += 3 + 2 * NJ_HASH_SIZE; p < end; p++) {
        if (*p < '0' || *p > '9' || size > (UINT64_MAX - 9) / 10) return -1;
        size = size * 10 + (uint64_t)(*p - '0');
    }
    r->size = size;
    return 0;
}

/* Parses "name kind hex size\n" lines (as nj_cache_store_outputs() writes
 * them). Returns the count, or -1 if malformed. */
static int parse_outputs(const char *text, recorded_out **out)
{
    *out = NULL;
    size_t n = 0, cap = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        const char *end = nl ? nl : line + strlen(line);
        recorded_out r;
        if (parse_output_line(line, end, &r) < 0) {
            free(*out);
            *out = NULL;
            return -1;
        }
        NJ_PUSH(*out, n, cap, r);
        line = nl ? nl + 1 : NULL;
    }
    return (int)n;
}

static const nj_path_pair *out_path(const nj_instance *inst, const char *name)
{
    for (size_t i = 0; i < inst->nouts; i++)
        if (strcmp(inst->stage->outs[i].name, name) == 0) return &inst->outs[i];
    return NULL;
}

/* 1 when the output on disk has exactly the recorded content. */
static int output_matches(nj_cache *c, const nj_path_pair *path, const recorded_out *r)
{
    char kind;
    nj_hash h;
    if (hash_thing(c, path->abs, &kind, &h, NULL) < 0) return 0; /* missing or unreadable */
    return kind == r->kind && nj_hash_equal(&h, &r->hash);
}

static int restore_one(nj_cache *c, const recorded_out *r, const char *abs, nj_err *err)
{
    int rc = r->kind == 't' ? nj_store_restore_tree(c->store, &r->hash, abs, c->link, err)
                            : nj_store_restore(c->store, &r->hash, abs, c->link, err);
    if (rc == NJ_ECORRUPT) return rc;
    if (rc == -ENOENT) {
        char hex[NJ_HASH_HEX_SIZE];
        nj_hash_hex(&r->hash, hex);
        return nj_err_set(err, -ENOENT, "object %.12s of output '%s' is missing from the cache",
                          hex, r->name);
    }
    return rc;
}

/* Checks every recorded output against the disk. Sets *first_diff to a
 * description of the first difference ("output 'x' missing" / "modified"),
 * empty when all match. With `restore`, brings differing ones back. */
static int sync_outputs(nj_cache *c, const nj_instance *inst, const recorded_out *outs, int n,
                        int restore, char *first_diff, size_t size, nj_err *err)
{
    first_diff[0] = '\0';
    for (int i = 0; i < n; i++) {
        const nj_path_pair *path = out_path(inst, outs[i].name);
        if (!path) return nj_err_set(err, NJ_ECORRUPT, "recorded output '%s' is not declared",
                                     outs[i].name);
        if (output_matches(c, path, &outs[i])) continue;
        if (!first_diff[0])
            snprintf(first_diff, size, "output '%s' %s", path->rel,
                     nj_fs_exists(path->abs) ? "modified" : "missing");
        if (!restore) continue;
        int rc = restore_one(c, &outs[i], path->abs, err);
        if (rc < 0) return rc;
    }
    return 0;
}

typedef struct last_key {
    char *key, *components, *outputs;
} last_key;

static void last_key_release(last_key *k)
{
    free(k->key);
    free(k->components);
    free(k->outputs);
    memset(k, 0, sizeof(*k));
}

/* The components text of an instance's last key, read from the database
 * (only `why` and a stage about to run need it); caller frees; NULL if none. */
static char *read_components(nj_cache *c, const char *stage, const char *ds)
{
    sqlite3_stmt *q = c->key_components;
    sqlite3_reset(q);
    bind_text(q, 1, c->p->name);
    bind_text(q, 2, stage);
    bind_text(q, 3, ds);
    char *text = NULL;
    if (sqlite3_step(q) == SQLITE_ROW) text = nj_xstrdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_reset(q);
    return text;
}

/* Copies an instance's last key and outputs into *out (components too when
 * asked). Returns 1 if the instance has a last key, else 0. */
static int load_last_key(nj_cache *c, const char *stage, const char *ds, int with_components,
                         last_key *out)
{
    memset(out, 0, sizeof(*out));
    const key_row *row = nj_strmap_get(&keys_of_date(c, ds ? ds : "")->by_stage, stage);
    if (!row) return 0;
    out->key = nj_xstrdup(row->key);
    out->outputs = nj_xstrdup(row->outputs);
    if (with_components) out->components = read_components(c, stage, ds);
    return 1;
}

static int save_last_key(nj_cache *c, const nj_instance *inst, const nj_key *key,
                         const char *outputs, int64_t run_id, nj_err *err)
{
    sqlite3_stmt *q = c->key_put;
    sqlite3_reset(q);
    bind_text(q, 1, c->p->name);
    bind_text(q, 2, inst->stage->name);
    bind_text(q, 3, inst->ds);
    bind_text(q, 4, key->hex);
    bind_text(q, 5, key->text);
    bind_text(q, 6, outputs);
    sqlite3_bind_int64(q, 7, run_id);
    sqlite3_bind_int64(q, 8, nj_time_now_ms());
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : sdb_error(c, err, "cannot record stage key");
    sqlite3_reset(q);
    if (rc == 0) remember_key(c, inst->stage->name, inst->ds ? inst->ds : "", key->hex, outputs);
    return rc;
}

static int record_use(nj_cache *c, const char *key_hex, int64_t run_id, nj_err *err)
{
    sqlite3_stmt *q = c->use_put;
    sqlite3_reset(q);
    bind_text(q, 1, key_hex);
    bind_text(q, 2, c->p->workspace);
    sqlite3_bind_int64(q, 3, run_id);
    sqlite3_bind_int64(q, 4, nj_time_now_ms());
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : idb_error(c, err, "cannot record cache use");
    sqlite3_reset(q);
    return rc;
}

/* The run cache's outputs for `key_hex`, or NULL. Caller frees. */
static char *lookup_entry(nj_cache *c, const char *key_hex)
{
    sqlite3_stmt *q = c->entry_get;
    sqlite3_reset(q);
    bind_text(q, 1, key_hex);
    char *outputs = NULL;
    if (sqlite3_step(q) == SQLITE_ROW) outputs = nj_xstrdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_reset(q);
    return outputs;
}

static void drop_entry(nj_cache *c, const char *key_hex)
{
    sqlite3_stmt *q = c->entry_del;
    sqlite3_reset(q);
    bind_text(q, 1, key_hex);
    sqlite3_step(q);
    sqlite3_reset(q);
}

/* ---- explaining ------------------------------------------------------------ */

typedef struct component {
    const char *kind; /* "cmd", "env", "param", "dep", "out", "code" */
    char *name;
    char *value;
} component;

/* Splits one key line into kind, name and value (see cache.h for the
 * layout of each kind). Returns 0 for lines that are not components. */
static int split_component(const char *line, size_t len, component *cp)
{
    static const char *const kinds[] = {"cmd", "env", "param", "dep", "out", "code", "template"};
    const char *sp = memchr(line, ' ', len);
    if (!sp) return 0;
    size_t k = 0;
    while (k < 7 && !((size_t)(sp - line) == strlen(kinds[k]) &&
                      strncmp(line, kinds[k], (size_t)(sp - line)) == 0))
        k++;
    if (k == 7) return 0;
    char *rest = nj_xstrndup(sp + 1, len - (size_t)(sp + 1 - line));
    char *split = NULL;
    switch (k) {
    case 0: /* cmd TEXT: no name */
    case 6: /* template TEXT */
        split = rest;
        break;
    case 1: /* env NAME=value */
        split = strchr(rest, '=');
        break;
    case 2: /* param NAME value */
    case 4: /* out NAME path */
        split = strchr(rest, ' ');
        break;
    case 3: /* dep PATH K HASH: the value is "K HASH", found from the right */
        split = strrchr(rest, ' ');
        if (split && split - rest >= 2) split -= 2;
        break;
    case 5: /* code PATH HASH */
        split = strrchr(rest, ' ');
        break;
    }
    if (!split) {
        free(rest);
        return 0;
    }
    cp->kind = kinds[k];
    cp->name = nj_xstrndup(rest, (size_t)(split - rest));
    cp->value = nj_xstrdup(k == 0 || k == 6 ? rest : split + 1);
    free(rest);
    return 1;
}

static size_t parse_components(const char *text, component **out)
{
    size_t n = 0, cap = 0;
    *out = NULL;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        component cp;
        if (split_component(line, len, &cp)) NJ_PUSH(*out, n, cap, cp);
        line += len + (nl ? 1 : 0);
    }
    return n;
}

static void free_components(component *cs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(cs[i].name);
        free(cs[i].value);
    }
    free(cs);
}

static const component *find_component(const component *cs, size_t n, const char *kind,
                                       const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(cs[i].kind, kind) == 0 && strcmp(cs[i].name, name) == 0) return &cs[i];
    return NULL;
}

static void add_reason(nj_buf *b, const char *fmt, ...) NJ_PRINTF(2, 3);
static void add_reason(nj_buf *b, const char *fmt, ...)
{
    if (b->len) nj_buf_puts(b, ", ");
    va_list ap;
    va_start(ap, fmt);
    char tmp[1024];
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    nj_buf_puts(b, tmp);
}

/* One reason per component kind, in a fixed order, naming what changed. */
static void diff_components(const component *old, size_t nold, const component *new,
                            size_t nnew, nj_buf *b)
{
    static const char *const order[] = {"cmd", "param", "env", "dep", "code", "out"};
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
        const char *kind = order[k];
        int outs_changed = 0;
        for (size_t i = 0; i < nnew; i++) {
            if (strcmp(new[i].kind, kind) != 0) continue;
            const component *o = find_component(old, nold, kind, new[i].name);
            if (o && strcmp(o->value, new[i].value) == 0) continue;
            if (strcmp(kind, "cmd") == 0) {
                /* The rendered command changes with every param it uses:
                 * it only counts as edited when its template changed. */
                const component *ot = find_component(old, nold, "template", "");
                const component *nt = find_component(new, nnew, "template", "");
                if (!ot || !nt || strcmp(ot->value, nt->value) != 0) add_reason(b, "cmd changed");
            }
            else if (strcmp(kind, "out") == 0)
                outs_changed = 1;
            else if (!o)
                add_reason(b, "%s '%s' added", kind, new[i].name);
            else if (strcmp(kind, "param") == 0)
                add_reason(b, "param '%s' changed %s \u2192 %s", new[i].name, o->value,
                           new[i].value);
            else if (strcmp(kind, "dep") == 0)
                add_reason(b, "dep '%s' changed (sha256 %.6s\u2026 \u2192 %.6s\u2026)", new[i].name,
                           o->value + 2, new[i].value + 2);
            else
                add_reason(b, "%s '%s' changed", kind, new[i].name);
        }
        for (size_t i = 0; i < nold; i++) {
            if (strcmp(old[i].kind, kind) != 0 || strcmp(kind, "cmd") == 0) continue;
            if (find_component(new, nnew, kind, old[i].name)) continue;
            if (strcmp(kind, "out") == 0)
                outs_changed = 1;
            else
                add_reason(b, "%s '%s' removed", kind, old[i].name);
        }
        if (outs_changed) add_reason(b, "outputs changed");
    }
}

static void explain_against(const char *old_text, const nj_key *key, char *out, size_t size)
{
    if (!old_text) {
        snprintf(out, size, "never run");
        return;
    }
    component *old, *new;
    size_t nold = parse_components(old_text, &old);
    size_t nnew = parse_components(key->text, &new);
    nj_buf b;
    nj_buf_init(&b);
    diff_components(old, nold, new, nnew, &b);
    snprintf(out, size, "%s", b.len ? b.data : "key changed");
    nj_buf_release(&b);
    free_components(old, nold);
    free_components(new, nnew);
}

void nj_cache_explain(nj_cache *c, const nj_instance *inst, const nj_key *key, char *out,
                      size_t size)
{
    last_key last;
    load_last_key(c, inst->stage->name, inst->ds, 1, &last);
    explain_against(last.components, key, out, size);
    last_key_release(&last);
}

/* ---- deciding ------------------------------------------------------------- */

static int note_snapshot(nj_cache *c, const nj_instance *inst, const char *outputs,
                         int64_t run_id, nj_err *err);

int nj_cache_decide(nj_cache *c, const nj_instance *inst, const nj_key *key, int restore,
                    int64_t run_id, nj_decision *out, nj_err *err)
{
    memset(out, 0, sizeof(*out));
    last_key last;
    load_last_key(c, inst->stage->name, inst->ds, 0, &last);
    recorded_out *outs = NULL;
    char diff[512];
    int rc = 0, n;

    /* Same key as last time: up to date, or restorable outputs. */
    if (last.key && strcmp(last.key, key->hex) == 0 && (n = parse_outputs(last.outputs, &outs)) >= 0) {
        nj_err rerr = {0};
        rc = sync_outputs(c, inst, outs, n, restore, diff, sizeof(diff), &rerr);
        if (rc == 0) {
            out->kind = diff[0] ? NJ_DECIDE_CACHED : NJ_DECIDE_UP_TO_DATE;
            snprintf(out->reason, sizeof(out->reason), "%s", diff[0] ? diff : "unchanged");
            if (restore) rc = note_snapshot(c, inst, last.outputs, run_id, err);
            goto done;
        }
        out->kind = NJ_DECIDE_RUN;
        out->cache_damaged = 1;
        snprintf(out->reason, sizeof(out->reason), "%.200s and the cached copy is unusable: %.400s",
                 diff, rerr.msg);
        rc = 0;
        goto done;
    }
    free(outs);
    outs = NULL;

    char why[512];
    if (last.key) last.components = read_components(c, inst->stage->name, inst->ds);
    explain_against(last.components, key, why, sizeof(why));
    char *entry = lookup_entry(c, key->hex);
    if (!entry || (n = parse_outputs(entry, &outs)) < 0) {
        out->kind = NJ_DECIDE_RUN;
        snprintf(out->reason, sizeof(out->reason), "%s", why);
        free(entry);
        goto done;
    }
    nj_err rerr = {0};
    rc = sync_outputs(c, inst, outs, n, restore, diff, sizeof(diff), &rerr);
    if (rc < 0) {
        /* Objects gone or corrupt: forget the entry so it is recomputed. */
        if (restore) drop_entry(c, key->hex);
        out->kind = NJ_DECIDE_RUN;
        out->cache_damaged = 1;
        snprintf(out->reason, sizeof(out->reason), "%.300s; the cached result is unusable: %.400s",
                 why, rerr.msg);
        rc = 0;
        free(entry);
        goto done;
    }
    out->kind = diff[0] ? NJ_DECIDE_CACHED : NJ_DECIDE_UP_TO_DATE;
    snprintf(out->reason, sizeof(out->reason), "%s", why);
    if (restore) {
        rc = save_last_key(c, inst, key, entry, run_id, err);
        if (rc == 0) rc = record_use(c, key->hex, run_id, err);
        if (rc == 0) rc = note_snapshot(c, inst, entry, run_id, err);
    }
    free(entry);
done:
    free(outs);
    last_key_release(&last);
    return rc;
}

int nj_cache_store_outputs(nj_cache *c, const nj_instance *inst, int worker, char **outputs,
                           nj_err *err)
{
    nj_store *store = worker ? c->worker_store : c->store;
    nj_buf b;
    nj_buf_init(&b);
    int rc = 0;
    for (size_t i = 0; i < inst->nouts && rc == 0; i++) {
        const char *abs = inst->outs[i].abs;
        nj_hash h;
        uint64_t size = 0;
        char hex[NJ_HASH_HEX_SIZE];
        int is_dir = nj_fs_is_dir(abs);
        if (is_dir && worker) NJ_BUG("directory output '%s' stored from a worker", abs);
        rc = is_dir ? nj_store_put_tree(store, abs, &h, err)
                    : nj_store_put_file(store, abs, &h, &size, err);
        if (rc < 0) {
            nj_err_prefix(err, "cannot store output '%s'", inst->outs[i].rel);
            break;
        }
        nj_hash_hex(&h, hex);
        nj_buf_printf(&b, "%s %c %s %llu\n", inst->stage->outs[i].name, is_dir ? 't' : 'f', hex,
                      (unsigned long long)size);
    }
    if (rc < 0) {
        nj_buf_release(&b);
        return rc;
    }
    *outputs = nj_buf_detach(&b);
    return 0;
}

/* A snapshot stage's archive as used (written, restored or found up to
 * date) by run `run_id`: recorded in the snapshot history. */
static int note_snapshot(nj_cache *c, const nj_instance *inst, const char *outputs,
                         int64_t run_id, nj_err *err)
{
    if (!inst->stage->snapshot || run_id <= 0) return 0;
    recorded_out *outs = NULL;
    int rc = 0;
    if (parse_outputs(outputs, &outs) >= 1) {
        char hex[NJ_HASH_HEX_SIZE];
        nj_hash_hex(&outs[0].hash, hex);
        rc = nj_state_snapshot_add(c->st, c->p->name, inst->stage->name, inst->ds, run_id, hex,
                                   outs[0].size, err);
    }
    free(outs);
    return rc;
}

int nj_cache_commit_outputs(nj_cache *c, const nj_instance *inst, const nj_key *key,
                            const char *outputs, int64_t run_id, nj_err *err)
{
    sqlite3_stmt *q = c->entry_put;
    sqlite3_reset(q);
    bind_text(q, 1, key->hex);
    bind_text(q, 2, inst->stage->name);
    bind_text(q, 3, outputs);
    sqlite3_bind_int64(q, 4, nj_time_now_ms());
    sqlite3_bind_int64(q, 5, nj_time_now_ms());
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : idb_error(c, err, "cannot record cache entry");
    sqlite3_reset(q);
    if (rc == 0) rc = record_use(c, key->hex, run_id, err);
    if (rc == 0) rc = save_last_key(c, inst, key, outputs, run_id, err);
    if (rc == 0) rc = note_snapshot(c, inst, outputs, run_id, err);
    return rc;
}

int nj_cache_record(nj_cache *c, const nj_instance *inst, const nj_key *key, int64_t run_id,
                    nj_err *err)
{
    char *outputs = NULL;
    int rc = nj_cache_store_outputs(c, inst, 0, &outputs, err);
    if (rc == 0) rc = nj_cache_commit_outputs(c, inst, key, outputs, run_id, err);
    free(outputs);
    return rc;
}

int nj_cache_restore_input(nj_cache *c, const nj_instance *inst, const nj_input *in, nj_err *err)
{
    const nj_out *producer_out = NULL;
    const nj_stage *producer = nj_instance_producer(inst, in, &producer_out);
    if (!producer)
        return nj_err_set(err, NJ_ENOTFOUND, "dep '%s' does not exist", in->path.rel);
    last_key last;
    recorded_out *outs = NULL;
    int rc = NJ_ENOTFOUND;
    if (load_last_key(c, producer->name, in->dep ? in->dep_ds : inst->ds, 0, &last)) {
        int n = parse_outputs(last.outputs, &outs);
        for (int i = 0; i < n; i++) {
            if (strcmp(outs[i].name, producer_out->name) != 0) continue;
            rc = restore_one(c, &outs[i], in->path.abs, err);
            if (rc < 0)
                nj_err_prefix(err, "dep '%s' does not exist and cannot be restored",
                              in->path.rel);
            break;
        }
    }
    if (rc == NJ_ENOTFOUND)
        nj_err_set(err, NJ_ENOTFOUND,
                   "dep '%s' does not exist and stage '%s' has no cached output to restore it from",
                   in->path.rel, producer->name);
    free(outs);
    last_key_release(&last);
    return rc;
}

int nj_cache_pin(nj_cache *c, const char *hash_hex, const char *reason, nj_err *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(c->idb,
                           "INSERT OR IGNORE INTO pins (hash, workspace, reason) VALUES (?, ?, ?)",
                           -1, &q, NULL) != SQLITE_OK)
        return idb_error(c, err, "cannot pin an object");
    sqlite3_bind_text(q, 1, hash_hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, c->p->workspace, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, reason, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : idb_error(c, err, "cannot pin an object");
    sqlite3_finalize(q);
    return rc;
}
