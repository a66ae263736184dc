/* gc.c - reachability over the run cache and object store (see gc.h). */
#include "nightjar/gc.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nightjar/util.h"

/* A set of hashes: open addressing on the first 8 bytes (already uniform). */
typedef struct hash_set {
    nj_hash *slots;
    unsigned char *used;
    size_t cap, len;
} hash_set;

static size_t slot_of(const nj_hash *h, size_t cap)
{
    uint64_t v;
    memcpy(&v, h->bytes, sizeof(v));
    return (size_t)(v & (cap - 1));
}

static int set_has(const hash_set *s, const nj_hash *h)
{
    if (!s->cap) return 0;
    for (size_t i = slot_of(h, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i]) return 0;
        if (nj_hash_equal(&s->slots[i], h)) return 1;
    }
}

static int set_add(hash_set *s, const nj_hash *h); /* 1 if newly added */
static void set_grow(hash_set *s)
{
    hash_set bigger = {0};
    bigger.cap = s->cap ? s->cap * 2 : 1024;
    bigger.slots = nj_xcalloc(bigger.cap, sizeof(nj_hash));
    bigger.used = nj_xcalloc(bigger.cap, 1);
    for (size_t i = 0; i < s->cap; i++)
        if (s->used[i]) set_add(&bigger, &s->slots[i]);
    free(s->slots);
    free(s->used);
    *s = bigger;
}

static int set_add(hash_set *s, const nj_hash *h)
{
    if ((s->len + 1) * 2 > s->cap) set_grow(s);
    for (size_t i = slot_of(h, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i]) {
            s->used[i] = 1;
            s->slots[i] = *h;
            s->len++;
            return 1;
        }
        if (nj_hash_equal(&s->slots[i], h)) return 0;
    }
}

static void set_release(hash_set *s)
{
    free(s->slots);
    free(s->used);
    memset(s, 0, sizeof(*s));
}

/* Marks an output ("name kind hex size" line list) and, for trees, what the
 * tree object lists. Missing or unreadable trees mark what they can. */
static void mark_outputs(nj_store *store, const char *outputs, hash_set *live)
{
    for (const char *line = outputs; line && *line;) {
        char name[128], kind, hex[NJ_HASH_HEX_SIZE];
        nj_hash h;
        if (sscanf(line, "%127s %c %64s", name, &kind, hex) == 3 &&
            nj_hash_from_hex(hex, &h, NULL) == 0 && set_add(live, &h) && kind == 't') {
            char *data = NULL;
            size_t len = 0;
            nj_manifest m;
            nj_manifest_init(&m);
            if (nj_store_read(store, &h, &data, &len, NULL) == 0 &&
                nj_manifest_parse(data, len, hex, &m, NULL) == 0)
                for (size_t i = 0; i < m.len; i++)
                    if (m.items[i].kind != NJ_ENTRY_DIR) set_add(live, &m.items[i].hash);
            nj_manifest_release(&m);
            free(data);
        }
        line = strchr(line, '\n');
        if (line) line++;
    }
}

static int exec_sql(sqlite3 *db, const char *sql, nj_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    int rc = nj_err_set(err, NJ_EDB, "gc: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return rc;
}

typedef struct sweep_ctx {
    nj_store *store;
    const hash_set *live;
    const nj_gc_opts *opts;
    nj_gc_report *report;
    int64_t now_ms;
} sweep_ctx;

static int sweep_object(void *ctx, const nj_hash *hash, const char *path)
{
    sweep_ctx *sc = ctx;
    if (set_has(sc->live, hash)) {
        sc->report->objects_kept++;
        return 0;
    }
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    int64_t mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    if (sc->now_ms - mtime_ms < sc->opts->min_age_ms) {
        sc->report->objects_too_young++;
        return 0;
    }
    sc->report->objects_removed++;
    sc->report->bytes_removed += (uint64_t)st.st_size;
    if (!sc->opts->dry_run) nj_store_remove(sc->store, hash, NULL);
    return 0;
}

int nj_gc_run(nj_cache *cache, nj_state *st, const char *pipeline, const char *workspace,
              const nj_gc_opts *opts, nj_gc_report *out, nj_err *err)
{
    memset(out, 0, sizeof(*out));
    sqlite3 *sdb = nj_state_db(st), *idb = nj_cache_index(cache);
    nj_store *store = nj_cache_store(cache);
    int64_t now = nj_time_now_ms();
    int rc = 0;

    /* 1. Which runs of this pipeline are kept. */
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(sdb,
                           "SELECT id, started_ms FROM runs WHERE pipeline = ? ORDER BY id DESC",
                           -1, &q, NULL) != SQLITE_OK)
        return nj_err_set(err, NJ_EDB, "gc: %s", sqlite3_errmsg(sdb));
    sqlite3_bind_text(q, 1, pipeline, -1, SQLITE_TRANSIENT);
    nj_buf dropped;
    nj_buf_init(&dropped);
    for (size_t rank = 0; sqlite3_step(q) == SQLITE_ROW; rank++) {
        int64_t id = sqlite3_column_int64(q, 0), started = sqlite3_column_int64(q, 1);
        int keep = rank == 0;
        if (opts->keep_runs > 0 && rank < (size_t)opts->keep_runs) keep = 1;
        if (opts->keep_days > 0 && now - started <= (int64_t)opts->keep_days * 86400000) keep = 1;
        if (keep) {
            out->runs_kept++;
        } else {
            out->runs_dropped++;
            nj_buf_printf(&dropped, "%s%lld", dropped.len ? "," : "", (long long)id);
        }
    }
    sqlite3_finalize(q);

    /* 2. Forget the dropped runs' uses, then entries nobody uses. Table
     * `gc_live` (temporary) collects the outputs that stay reachable. */
    if (!opts->dry_run) rc = exec_sql(idb, "BEGIN IMMEDIATE", err);
    if (rc == 0 && dropped.len) {
        char *sql = sqlite3_mprintf("DELETE FROM uses WHERE workspace = %Q AND run_id IN (%s)",
                                    workspace, dropped.data);
        if (opts->dry_run) {
            sqlite3_free(sql);
            sql = sqlite3_mprintf("CREATE TEMP TABLE IF NOT EXISTS gc_dropped AS SELECT * FROM uses"
                                  " WHERE workspace = %Q AND run_id IN (%s)",
                                  workspace, dropped.data);
        }
        rc = exec_sql(idb, sql, err);
        sqlite3_free(sql);
    }
    const char *unused = opts->dry_run
                             ? "SELECT key, outputs FROM entries e WHERE NOT EXISTS (SELECT 1 "
                               "FROM uses u WHERE u.key = e.key AND NOT EXISTS (SELECT 1 FROM "
                               "temp.gc_dropped d WHERE d.key = u.key AND d.workspace = "
                               "u.workspace AND d.run_id = u.run_id))"
                             : "SELECT key, outputs FROM entries e WHERE NOT EXISTS (SELECT 1 "
                               "FROM uses u WHERE u.key = e.key)";
    if (rc == 0 && opts->dry_run && !dropped.len)
        rc = exec_sql(idb, "CREATE TEMP TABLE IF NOT EXISTS gc_dropped (key, workspace, run_id)",
                      err);
    hash_set live = {0};
    if (rc == 0 && sqlite3_prepare_v2(idb, unused, -1, &q, NULL) == SQLITE_OK) {
        nj_strs dead = {0};
        while (sqlite3_step(q) == SQLITE_ROW)
            nj_strs_push(&dead, (const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        out->entries_removed = dead.len;
        for (size_t i = 0; i < dead.len && !opts->dry_run && rc == 0; i++) {
            char *sql = sqlite3_mprintf("DELETE FROM entries WHERE key = %Q", dead.items[i]);
            rc = exec_sql(idb, sql, err);
            sqlite3_free(sql);
        }
        /* 3. Mark what stays: remaining entries, last keys, pins. */
        if (rc == 0 && sqlite3_prepare_v2(idb, "SELECT key, outputs FROM entries", -1, &q, NULL) ==
                           SQLITE_OK) {
            while (sqlite3_step(q) == SQLITE_ROW) {
                if (opts->dry_run &&
                    nj_strs_contains(&dead, (const char *)sqlite3_column_text(q, 0)))
                    continue;
                out->entries_kept++;
                mark_outputs(store, (const char *)sqlite3_column_text(q, 1), &live);
            }
            sqlite3_finalize(q);
        }
        nj_strs_release(&dead);
    } else if (rc == 0) {
        rc = nj_err_set(err, NJ_EDB, "gc: %s", sqlite3_errmsg(idb));
    }
    if (rc == 0 && sqlite3_prepare_v2(sdb, "SELECT outputs FROM stage_keys", -1, &q, NULL) ==
                       SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW)
            mark_outputs(store, (const char *)sqlite3_column_text(q, 0), &live);
        sqlite3_finalize(q);
    }
    if (rc == 0 && sqlite3_prepare_v2(idb, "SELECT hash FROM pins", -1, &q, NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            char line[200];
            snprintf(line, sizeof(line), "pin f %s 0", (const char *)sqlite3_column_text(q, 0));
            mark_outputs(store, line, &live);
        }
        sqlite3_finalize(q);
    }
    /* Commit the entry removals before sweeping: an object is only removed
     * once no committed entry points at it. */
    if (!opts->dry_run) {
        if (rc == 0)
            rc = exec_sql(idb, "COMMIT", err);
        else
            exec_sql(idb, "ROLLBACK", NULL);
    }

    /* 4. Sweep. */
    if (rc == 0) {
        sweep_ctx sc = {store, &live, opts, out, now};
        rc = nj_store_foreach(store, sweep_object, &sc, err);
    }
    if (rc == 0 && !opts->dry_run)
        rc = nj_store_clean_temp(store, NJ_STORE_TEMP_MAX_AGE_MS, &out->temp_removed, err);
    set_release(&live);
    nj_buf_release(&dropped);
    return rc;
}

/* ---- verify ---------------------------------------------------------------- */

typedef struct verify_ctx {
    nj_store *store;
    nj_verify_report *report;
} verify_ctx;

static int verify_object(void *ctx, const nj_hash *hash, const char *path)
{
    verify_ctx *vc = ctx;
    nj_err err = {0};
    vc->report->objects_checked++;
    if (nj_store_verify(vc->store, hash, &err) == NJ_ECORRUPT) {
        vc->report->objects_corrupt++;
        char *line = nj_xasprintf("corrupt object '%s' (moved aside): %s", path, err.msg);
        nj_strs_push(&vc->report->problems, line);
        free(line);
    }
    return 0;
}

/* The first object an entry's outputs need that the store lacks, or "". */
static void find_missing(nj_store *store, const char *outputs, char *missing, size_t size)
{
    hash_set need = {0};
    mark_outputs(store, outputs, &need);
    missing[0] = '\0';
    for (size_t i = 0; i < need.cap && !missing[0]; i++) {
        if (!need.used[i] || nj_store_has(store, &need.slots[i])) continue;
        char hex[NJ_HASH_HEX_SIZE];
        nj_hash_hex(&need.slots[i], hex);
        snprintf(missing, size, "%s", hex);
    }
    set_release(&need);
}

int nj_verify_run(nj_cache *cache, int repair, nj_verify_report *out, nj_err *err)
{
    memset(out, 0, sizeof(*out));
    nj_store *store = nj_cache_store(cache);
    sqlite3 *idb = nj_cache_index(cache);
    verify_ctx vc = {store, out};
    int rc = nj_store_foreach(store, verify_object, &vc, err);
    if (rc < 0) return rc;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(idb, "SELECT key, stage, outputs FROM entries", -1, &q, NULL) !=
        SQLITE_OK)
        return nj_err_set(err, NJ_EDB, "verify: %s", sqlite3_errmsg(idb));
    nj_strs broken = {0};
    while (sqlite3_step(q) == SQLITE_ROW) {
        out->entries_checked++;
        char missing[NJ_HASH_HEX_SIZE];
        find_missing(store, (const char *)sqlite3_column_text(q, 2), missing, sizeof(missing));
        if (!missing[0]) continue;
        out->entries_broken++;
        char *line = nj_xasprintf("cache entry %.12s of stage '%s' needs missing object %.12s",
                                  (const char *)sqlite3_column_text(q, 0),
                                  (const char *)sqlite3_column_text(q, 1), missing);
        nj_strs_push(&out->problems, line);
        free(line);
        nj_strs_push(&broken, (const char *)sqlite3_column_text(q, 0));
    }
    sqlite3_finalize(q);
    for (size_t i = 0; repair && i < broken.len && rc == 0; i++) {
        char *sql = sqlite3_mprintf("DELETE FROM entries WHERE key = %Q", broken.items[i]);
        rc = exec_sql(idb, sql, err);
        sqlite3_free(sql);
        if (rc == 0) out->entries_removed++;
    }
    nj_strs_release(&broken);
    return rc;
}
