/* release.c - the gate, metrics and publishing of a run; see release.h. */
#include "nightjar/release.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nightjar/fs.h"
#include "nightjar/gate.h"
#include "nightjar/hash.h"
#include "nightjar/instance.h"
#include "nightjar/json.h"
#include "nightjar/publish.h"
#include "nightjar/registry.h"
#include "nightjar/store.h"
#include "nightjar/util.h"

/* The champion version a stage instance rendered with. */
typedef struct used_model {
    size_t stage;
    char *ds;      /* NULL for an unpartitioned stage */
    char *version; /* NULL: none (the gate stage's first date) */
} used_model;

/* A table's date whose source stage ended well. */
typedef struct ready_table {
    size_t table;
    char *ds;
    char *path;    /* absolute path of the source output */
    char *version; /* model_version of its rows, or NULL */
} ready_table;

struct nj_release {
    const nj_pipeline *p;
    nj_state *st;
    sqlite3 *db;
    nj_cache *cache;     /* borrowed or own_cache */
    nj_cache *own_cache; /* opened for --no-cache runs that register models */
    nj_registry *reg;
    int64_t run_id;
    nj_release_note_fn note;
    void *note_ctx;
    nj_exec_hooks hooks;
    used_model *used;
    size_t nused, used_cap;
    ready_table *ready;
    size_t nready, ready_cap;
    nj_release_summary summary;
};

static int same_ds(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void note(nj_release *rel, const char *fmt, ...) NJ_PRINTF(2, 3);
static void note(nj_release *rel, const char *fmt, ...)
{
    if (!rel->note) return;
    va_list ap;
    va_start(ap, fmt);
    char *line = nj_xvasprintf(fmt, ap);
    va_end(ap);
    rel->note(rel->note_ctx, line);
    free(line);
}

static int db_error(nj_release *rel, nj_err *err, const char *what)
{
    return nj_err_set(err, NJ_EDB, "%s: %s", what, sqlite3_errmsg(rel->db));
}

static void bind_opt_text(sqlite3_stmt *q, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(q, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, i);
}

static char *column_dup(sqlite3_stmt *q, int i)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    return t ? nj_xstrdup((const char *)t) : NULL;
}

/* ---- git ----------------------------------------------------------------------- */

/* The commit HEAD names in the git repository holding `dir`, read from the
 * files (no child process), or NULL: outside a repository, or a layout this
 * reader does not know. */
static char *git_head(const char *dir)
{
    char *cur = nj_xstrdup(dir);
    char *gitdir = NULL;
    for (;;) {
        char *candidate = nj_path_join(cur, ".git/HEAD");
        int found = nj_fs_exists(candidate);
        free(candidate);
        if (found) {
            gitdir = nj_path_join(cur, ".git");
            break;
        }
        if (strcmp(cur, "/") == 0) break;
        char *up = nj_path_dirname(cur);
        free(cur);
        cur = up;
    }
    free(cur);
    if (!gitdir) return NULL;
    char *head_path = nj_path_join(gitdir, "HEAD"), *text = NULL, *commit = NULL;
    size_t len = 0;
    if (nj_fs_read_file(head_path, &text, &len, NULL) == 0) {
        text[strcspn(text, "\r\n")] = '\0';
        if (strncmp(text, "ref: ", 5) != 0) {
            commit = nj_xstrdup(text);
        } else {
            const char *ref = text + 5;
            char *ref_path = nj_path_join(gitdir, ref), *value = NULL;
            if (nj_fs_read_file(ref_path, &value, &len, NULL) == 0) {
                value[strcspn(value, "\r\n")] = '\0';
                commit = value;
                value = NULL;
            } else {
                char *packed = nj_path_join(gitdir, "packed-refs");
                if (nj_fs_read_file(packed, &value, &len, NULL) == 0) {
                    for (char *line = strtok(value, "\n"); line && !commit;
                         line = strtok(NULL, "\n")) {
                        char *space = strchr(line, ' ');
                        if (space && strcmp(space + 1, ref) == 0)
                            commit = nj_xstrndup(line, (size_t)(space - line));
                    }
                }
                free(packed);
            }
            free(value);
            free(ref_path);
        }
    }
    free(text);
    free(head_path);
    free(gitdir);
    if (commit && strspn(commit, "0123456789abcdef") < 40) {
        free(commit);
        commit = NULL;
    }
    return commit;
}

/* ---- the registry ---------------------------------------------------------------- */

/* The path of model `version` in the store (caller frees), or an error. */
static int model_path(nj_release *rel, const char *version, char **path, nj_err *err)
{
    nj_model_record m = {0};
    int rc = nj_registry_get(rel->reg, version, &m, err);
    if (rc < 0) return rc;
    if (!m.path || !nj_fs_exists(m.path)) {
        rc = nj_err_set(err, NJ_ENOTFOUND,
                        "model %.12s of pipeline '%s' is missing from the store%s%s", version,
                        rel->p->name, m.path ? " at " : "", m.path ? m.path : "");
        nj_model_record_release(&m);
        return rc;
    }
    *path = m.path;
    m.path = NULL;
    nj_model_record_release(&m);
    return 0;
}

/* The candidate stage's output for date `ds`, rendered, and its content hash. */
static int candidate_of(nj_release *rel, const char *ds, nj_instance *inst, const char **path,
                        char version[NJ_HASH_HEX_SIZE], nj_err *err)
{
    const nj_gate_spec *g = rel->p->gate_stage->gate;
    const nj_stage *s = nj_pipeline_stage(rel->p, g->stage);
    const char *stage_ds = s->partitioned ? ds : NULL;
    int rc = nj_instance_render(rel->p, s, stage_ds, NULL, inst, err);
    if (rc < 0) return rc;
    *path = NULL;
    for (size_t i = 0; i < s->nouts; i++)
        if (strcmp(s->outs[i].name, g->out) == 0) *path = inst->outs[i].abs;
    struct stat sb;
    if (stat(*path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = nj_err_set(err, NJ_ENOTFOUND,
                        "gate: candidate '%s' (output '%s' of stage '%s') is not a file",
                        inst->outs[0].rel, g->out, g->stage);
        nj_instance_release(inst);
        return rc;
    }
    nj_hash h;
    if ((rc = nj_hash_file(*path, &h, NULL, err)) < 0) {
        nj_instance_release(inst);
        return rc;
    }
    nj_hash_hex(&h, version);
    return 0;
}

/* What the gate stage judges its candidate against: the champion, or the
 * model the candidate replaced when it is the champion already. */
static int baseline_of(nj_release *rel, const char *candidate, char **baseline, nj_err *err)
{
    char *champion = NULL;
    int rc = nj_registry_alias(rel->reg, rel->p->name, NJ_ALIAS_CHAMPION, &champion, err);
    if (rc < 0 || !champion || strcmp(champion, candidate) != 0) {
        *baseline = champion;
        return rc;
    }
    free(champion);
    *baseline = NULL;
    nj_model_event *ev = NULL;
    size_t n = 0;
    if ((rc = nj_registry_events(rel->reg, rel->p->name, 0, &ev, &n, err)) < 0) return rc;
    for (size_t i = 0; i < n && !*baseline; i++) /* newest first */
        if (strcmp(ev[i].action, "promote") == 0 && ev[i].version &&
            strcmp(ev[i].version, candidate) == 0 && ev[i].previous_version)
            *baseline = nj_xstrdup(ev[i].previous_version);
    for (size_t i = 0; i < n; i++)
        nj_model_event_release(&ev[i]);
    free(ev);
    return 0;
}

static void remember_use(nj_release *rel, size_t stage, const char *ds, const char *version)
{
    for (size_t i = 0; i < rel->nused; i++)
        if (rel->used[i].stage == stage && same_ds(rel->used[i].ds, ds)) {
            free(rel->used[i].version);
            rel->used[i].version = nj_xstrdup(version);
            return;
        }
    used_model u = {stage, nj_xstrdup(ds), nj_xstrdup(version)};
    NJ_PUSH(rel->used, rel->nused, rel->used_cap, u);
}

static const char *used_version(const nj_release *rel, size_t stage, const char *ds)
{
    for (size_t i = 0; i < rel->nused; i++)
        if (rel->used[i].stage == stage && same_ds(rel->used[i].ds, ds))
            return rel->used[i].version;
    return NULL;
}

static int champion_hook(void *ctx, const nj_plan_node *node, char **path, nj_err *err)
{
    nj_release *rel = ctx;
    *path = NULL;
    char *version = NULL;
    int rc;
    if (node->stage == rel->p->gate_stage) {
        nj_instance inst;
        const char *cand_path;
        char cand[NJ_HASH_HEX_SIZE];
        if ((rc = candidate_of(rel, node->ds, &inst, &cand_path, cand, err)) < 0) return rc;
        nj_instance_release(&inst);
        if ((rc = baseline_of(rel, cand, &version, err)) < 0) return rc;
    } else {
        if ((rc = nj_registry_alias(rel->reg, rel->p->name, NJ_ALIAS_CHAMPION, &version, err)) < 0)
            return rc;
        if (!version)
            return nj_err_set(err, NJ_ENOTFOUND,
                              "stage '%s' uses {{models.champion}} but pipeline '%s' has no "
                              "champion yet: the gate of stage '%s' has promoted no model "
                              "(see 'nightjar metrics')",
                              node->stage->name, rel->p->name, rel->p->gate_stage->name);
    }
    if (version) rc = model_path(rel, version, path, err);
    if (rc == 0) remember_use(rel, node->stage_index, node->ds, version);
    free(version);
    return rc;
}

/* ---- metrics and the gate ------------------------------------------------------- */

static const char *out_path(const nj_stage *s, const nj_instance *inst, const char *name)
{
    for (size_t i = 0; i < s->nouts; i++)
        if (strcmp(s->outs[i].name, name) == 0) return inst->outs[i].abs;
    return NULL;
}

/* Loads the stage's metrics document and records it when it changed. */
static int record_metrics(nj_release *rel, const nj_stage *s, const nj_instance *inst,
                          nj_json **doc, nj_err *err)
{
    const char *path = out_path(s, inst, s->metrics);
    char *text = NULL;
    size_t len = 0;
    int rc = nj_fs_read_file(path, &text, &len, err);
    if (rc < 0) return nj_err_prefix(err, "metrics of stage '%s'", s->name);
    if ((rc = nj_json_parse(text, len, path, doc, err)) < 0) {
        free(text);
        return nj_err_prefix(err, "metrics of stage '%s' are not JSON", s->name);
    }
    nj_hash h;
    nj_hash_buffer(text, len, &h);
    char hex[NJ_HASH_HEX_SIZE];
    nj_hash_hex(&h, hex);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(
            rel->db,
            "INSERT INTO stage_metrics (pipeline, stage, ds, run_id, metrics, hash,"
            " recorded_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (pipeline, stage, ds) DO UPDATE SET run_id = excluded.run_id,"
            " metrics = excluded.metrics, hash = excluded.hash,"
            " recorded_ms = excluded.recorded_ms WHERE hash != excluded.hash",
            -1, &q, NULL) != SQLITE_OK) {
        free(text);
        return db_error(rel, err, "cannot record metrics");
    }
    sqlite3_bind_text(q, 1, rel->p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, inst->ds ? inst->ds : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, rel->run_id);
    sqlite3_bind_text(q, 5, text, (int)len, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, hex, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, nj_time_now_ms());
    rc = sqlite3_step(q) == SQLITE_DONE ? 0 : db_error(rel, err, "cannot record metrics");
    sqlite3_finalize(q);
    free(text);
    return rc;
}

/* key and components of stage `stage` on `ds` as the cache last recorded them. */
static void last_key(nj_release *rel, const char *stage, const char *ds, char **key,
                     char **components, char **outputs)
{
    *key = *components = NULL;
    if (outputs) *outputs = NULL;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(rel->db,
                           "SELECT key, components, outputs FROM stage_keys WHERE pipeline = ? AND"
                           " stage = ? AND ds = ?",
                           -1, &q, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(q, 1, rel->p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, stage, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, ds ? ds : "", -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) {
        *key = column_dup(q, 0);
        *components = column_dup(q, 1);
        if (outputs) *outputs = column_dup(q, 2);
    }
    sqlite3_finalize(q);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The dates of the candidate's window inputs, as a JSON array. */
static char *training_dates(const nj_instance *inst)
{
    nj_strs dates = {0};
    for (size_t i = 0; i < inst->ninputs; i++)
        if (inst->inputs[i].dep_ds && !nj_strs_contains(&dates, inst->inputs[i].dep_ds))
            nj_strs_push(&dates, inst->inputs[i].dep_ds);
    if (dates.len) qsort(dates.items, dates.len, sizeof(*dates.items), cmp_str);
    nj_buf b;
    nj_buf_init(&b);
    nj_buf_putc(&b, '[');
    for (size_t i = 0; i < dates.len; i++) {
        if (i) nj_buf_putc(&b, ',');
        nj_json_write_string(&b, dates.items[i]);
    }
    nj_buf_putc(&b, ']');
    nj_strs_release(&dates);
    return nj_buf_detach(&b);
}

/* Stores, registers and pins the candidate of date `ds`. */
static int register_candidate(nj_release *rel, const char *ds, const nj_json *metrics,
                              char version[NJ_HASH_HEX_SIZE], nj_err *err)
{
    const nj_gate_spec *g = rel->p->gate_stage->gate;
    nj_instance inst;
    const char *path;
    int rc = candidate_of(rel, ds, &inst, &path, version, err);
    if (rc < 0) return rc;
    nj_store *store = nj_cache_store(rel->cache);
    nj_hash h;
    if ((rc = nj_store_put_file(store, path, &h, NULL, err)) < 0) goto out;
    char *object = nj_store_object_path(store, &h);
    char *dates = training_dates(&inst);
    nj_buf mbuf;
    nj_buf_init(&mbuf);
    if (metrics) nj_json_write(&mbuf, metrics);
    nj_model_record m = {
        .version = version,
        .pipeline = (char *)rel->p->name,
        .stage = g->stage,
        .ds = inst.ds,
        .run_id = rel->run_id,
        .path = object,
        .training_dates = dates,
        .metrics = metrics ? mbuf.data : NULL,
    };
    int created = 0;
    rc = nj_registry_register(rel->reg, &m, &created, err);
    nj_buf_release(&mbuf);
    free(dates);
    free(object);
    if (rc == 0) rc = nj_cache_pin(rel->cache, version, "model", err);
    if (rc == 0 && created) {
        char *key, *components;
        last_key(rel, g->stage, inst.ds, &key, &components, NULL);
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(rel->db,
                               "INSERT OR IGNORE INTO model_sources (version, stage, ds, key,"
                               " components) VALUES (?, ?, ?, ?, ?)",
                               -1, &q, NULL) != SQLITE_OK) {
            rc = db_error(rel, err, "cannot record a model's source");
        } else {
            sqlite3_bind_text(q, 1, version, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 2, g->stage, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 3, inst.ds ? inst.ds : "", -1, SQLITE_STATIC);
            bind_opt_text(q, 4, key);
            bind_opt_text(q, 5, components);
            if (sqlite3_step(q) != SQLITE_DONE)
                rc = db_error(rel, err, "cannot record a model's source");
            sqlite3_finalize(q);
        }
        free(key);
        free(components);
    }
out:
    nj_instance_release(&inst);
    return rc;
}

/* Why a candidate that passed is not promoted, or NULL: it was trained for
 * an older date than the champion, or was rolled back by hand before. */
static char *reason_to_keep(nj_release *rel, const char *candidate, const char *champion,
                            nj_err *err)
{
    char *reason = NULL;
    nj_model_record cand = {0}, champ = {0};
    if (champion && nj_registry_get(rel->reg, candidate, &cand, err) == 0 &&
        nj_registry_get(rel->reg, champion, &champ, err) == 0 && cand.ds && champ.ds &&
        strcmp(cand.ds, champ.ds) < 0)
        reason = nj_xasprintf("trained for %s, older than the champion %.12s (trained for %s)",
                              cand.ds, champion, champ.ds);
    nj_model_record_release(&cand);
    nj_model_record_release(&champ);
    if (reason) return reason;
    nj_model_event *ev = NULL;
    size_t n = 0;
    if (nj_registry_events(rel->reg, rel->p->name, 0, &ev, &n, err) < 0) return NULL;
    char from[80];
    snprintf(from, sizeof(from), "from %s", candidate);
    for (size_t i = 0; i < n && !reason; i++)
        if (strcmp(ev[i].action, "rollback") == 0 && ev[i].detail &&
            strncmp(ev[i].detail, from, strlen(from)) == 0)
            reason =
                nj_xstrdup("rolled back by hand before; 'nightjar models promote' brings it back");
    for (size_t i = 0; i < n; i++)
        nj_model_event_release(&ev[i]);
    free(ev);
    return reason;
}

/* 1 when the newest decision of (gate stage, ds) already says this. */
static int decision_known(nj_release *rel, const char *ds, const char *candidate,
                          const char *baseline, const char *decision, const char *checks)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(rel->db,
                           "SELECT candidate, baseline, decision, checks FROM gate_decisions"
                           " WHERE pipeline = ? AND stage = ? AND ds = ? ORDER BY id DESC LIMIT 1",
                           -1, &q, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(q, 1, rel->p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, rel->p->gate_stage->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, ds ? ds : "", -1, SQLITE_STATIC);
    int known = 0;
    if (sqlite3_step(q) == SQLITE_ROW) {
        const char *b = (const char *)sqlite3_column_text(q, 1);
        known = strcmp((const char *)sqlite3_column_text(q, 0), candidate) == 0 &&
                ((!b && !baseline) || (b && baseline && strcmp(b, baseline) == 0)) &&
                strcmp((const char *)sqlite3_column_text(q, 2), decision) == 0 &&
                strcmp((const char *)sqlite3_column_text(q, 3), checks) == 0;
    }
    sqlite3_finalize(q);
    return known;
}

static int record_decision(nj_release *rel, const char *ds, const char *candidate,
                           const char *baseline, const char *decision, int passed,
                           const char *checks, const char *detail, nj_err *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(rel->db,
                           "INSERT INTO gate_decisions (pipeline, stage, ds, run_id, candidate,"
                           " baseline, decision, passed, checks, detail, decided_ms)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(rel, err, "cannot record a gate decision");
    sqlite3_bind_text(q, 1, rel->p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, rel->p->gate_stage->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, ds ? ds : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, rel->run_id);
    sqlite3_bind_text(q, 5, candidate, -1, SQLITE_STATIC);
    bind_opt_text(q, 6, baseline);
    sqlite3_bind_text(q, 7, decision, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 8, passed);
    sqlite3_bind_text(q, 9, checks, -1, SQLITE_STATIC);
    bind_opt_text(q, 10, detail);
    sqlite3_bind_int64(q, 11, nj_time_now_ms());
    int rc =
        sqlite3_step(q) == SQLITE_DONE ? 0 : db_error(rel, err, "cannot record a gate decision");
    sqlite3_finalize(q);
    return rc;
}

static int judge(nj_release *rel, const nj_plan_node *node, const nj_json *doc,
                 const char *metrics_name, nj_err *err)
{
    const nj_gate_spec *g = node->stage->gate;
    char candidate[NJ_HASH_HEX_SIZE];
    const nj_json *cand_metrics = nj_json_path(doc, g->candidate_root);
    int rc = register_candidate(rel, node->ds, cand_metrics, candidate, err);
    if (rc < 0) return rc;

    /* The baseline is what the stage rendered as {{models.champion}}; a
     * gate stage that does not use it is judged against the champion. */
    char *baseline = NULL, *champion = NULL;
    if ((rc = nj_registry_alias(rel->reg, rel->p->name, NJ_ALIAS_CHAMPION, &champion, err)) < 0)
        return rc;
    if (node->stage->uses_champion) {
        const char *v = used_version(rel, node->stage_index, node->ds);
        baseline = v ? nj_xstrdup(v) : NULL;
    } else {
        baseline = champion ? nj_xstrdup(champion) : NULL;
    }

    nj_gate gate;
    nj_gate_init(&gate);
    for (size_t i = 0; i < g->rules.len && rc == 0; i++)
        rc = nj_gate_add(&gate, g->rules.items[i], NULL, err);
    nj_gate_source cand = {doc, g->candidate_root, metrics_name};
    nj_gate_source champ = {doc, g->champion_root, metrics_name};
    nj_gate_result res = {0};
    if (rc == 0)
        rc =
            nj_gate_evaluate(&gate, &cand, baseline && g->champion_root ? &champ : NULL, &res, err);
    if (rc < 0) goto out;

    nj_buf checks, detail;
    nj_buf_init(&checks);
    nj_buf_init(&detail);
    nj_gate_result_write_json(&res, &checks);
    const char *decision;
    char *keep = NULL;
    if (!res.passed) {
        decision = "held";
        nj_gate_result_format(&res, 1, &detail);
    } else if (champion && strcmp(champion, candidate) == 0) {
        decision = "promoted"; /* already, by an earlier run of this date */
    } else if ((keep = reason_to_keep(rel, candidate, champion, err))) {
        decision = "kept";
        nj_buf_puts(&detail, keep);
    } else {
        decision = "promoted";
        nj_gate_result_format(&res, 0, &detail);
    }
    const char *ds_label = node->ds ? node->ds : "-";
    int fresh = !decision_known(rel, node->ds, candidate, baseline, decision, checks.data);
    if (fresh) {
        if (strcmp(decision, "held") == 0)
            rc = nj_registry_hold(rel->reg, rel->p->name, candidate, rel->run_id, detail.data, err);
        else if (strcmp(decision, "promoted") == 0 &&
                 !(champion && strcmp(champion, candidate) == 0))
            rc = nj_registry_promote(rel->reg, rel->p->name, candidate, rel->run_id, detail.data,
                                     NULL, err);
        if (rc == 0)
            rc = record_decision(rel, node->ds, candidate, baseline, decision, res.passed,
                                 checks.data, detail.len ? detail.data : NULL, err);
    }
    if (rc == 0) {
        rel->summary.gates++;
        if (strcmp(decision, "held") == 0) {
            rel->summary.held++;
            if (champion)
                note(rel, "gate %s@%s: candidate %.12s HELD, champion %.12s keeps scoring:\n%s",
                     node->stage->name, ds_label, candidate, champion, detail.data);
            else
                note(rel, "gate %s@%s: candidate %.12s HELD, and there is no champion yet:\n%s",
                     node->stage->name, ds_label, candidate, detail.data);
        } else if (strcmp(decision, "kept") == 0) {
            note(rel, "gate %s@%s: candidate %.12s passed but is not promoted: %s",
                 node->stage->name, ds_label, candidate, detail.data);
        } else if (fresh && !(champion && strcmp(champion, candidate) == 0)) {
            rel->summary.promoted++;
            note(rel, "gate %s@%s: candidate %.12s promoted to champion%s%.12s%s",
                 node->stage->name, ds_label, candidate, champion ? " (previous: " : "",
                 champion ? champion : "", champion ? ")" : "");
        }
    }
    free(keep);
    nj_buf_release(&checks);
    nj_buf_release(&detail);
out:
    nj_gate_result_release(&res);
    nj_gate_release(&gate);
    free(baseline);
    free(champion);
    return rc;
}

static void remember_ready(nj_release *rel, const nj_plan_node *node, const nj_instance *inst)
{
    for (size_t t = 0; t < rel->p->ntables; t++) {
        const nj_publish_spec *tb = &rel->p->tables[t];
        if (strcmp(tb->stage, node->stage->name) != 0) continue;
        const char *version =
            node->stage->uses_champion ? used_version(rel, node->stage_index, node->ds) : NULL;
        ready_table r = {t, nj_xstrdup(node->ds), nj_xstrdup(out_path(node->stage, inst, tb->out)),
                         nj_xstrdup(version)};
        NJ_PUSH(rel->ready, rel->nready, rel->ready_cap, r);
    }
}

static int node_done_hook(void *ctx, const nj_plan_node *node, const nj_instance *inst, nj_err *err)
{
    nj_release *rel = ctx;
    const nj_stage *s = node->stage;
    int rc = 0;
    if (s->metrics) {
        nj_json *doc = NULL;
        rc = record_metrics(rel, s, inst, &doc, err);
        if (rc == 0 && s == rel->p->gate_stage)
            rc = judge(rel, node, doc, out_path(s, inst, s->metrics), err);
        nj_json_free(doc);
    }
    if (rc == 0) remember_ready(rel, node, inst);
    return rc;
}

/* ---- publishing ------------------------------------------------------------------ */

/* A hash of what decides a table's rows besides its input: name, columns
 * with types, key and keep_partitions. */
static void spec_hash(const nj_publish_spec *tb, char out[NJ_HASH_HEX_SIZE])
{
    nj_buf b;
    nj_buf_init(&b);
    nj_buf_printf(&b, "table %s\n", tb->name);
    for (size_t i = 0; i < tb->ncolumns; i++)
        nj_buf_printf(&b, "column %s %s\n", tb->columns[i].name,
                      nj_column_type_name(tb->columns[i].type));
    for (size_t i = 0; i < tb->nkey; i++)
        nj_buf_printf(&b, "key %s\n", tb->key[i]);
    nj_buf_printf(&b, "keep %d\n", tb->keep_partitions);
    nj_hash h;
    nj_hash_buffer(b.data, b.len, &h);
    nj_hash_hex(&h, out);
    nj_buf_release(&b);
}

/* The hash of output `out` in an outputs text ("name kind hash size" lines). */
static char *output_hash(const char *outputs, const char *out)
{
    size_t n = strlen(out);
    for (const char *line = outputs; line && *line;) {
        const char *end = strchr(line, '\n');
        if (!end) end = line + strlen(line);
        if ((size_t)(end - line) > n + 3 && strncmp(line, out, n) == 0 && line[n] == ' ') {
            const char *hash = strchr(line + n + 1, ' ');
            if (hash) {
                hash++;
                size_t len = strcspn(hash, " \n");
                return nj_xstrndup(hash, len);
            }
        }
        line = *end ? end + 1 : end;
    }
    return NULL;
}

/* 1 when the newest publication of (table, ds) has this input, model and
 * spec, and the serving database still shows it as the newest of its date. */
static int already_published(nj_release *rel, const nj_publish_spec *tb, const char *ds,
                             const char *source_hash, const char *version, const char *spec)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(rel->db,
                           "SELECT source_hash, model_version, spec_hash, serving_db, serving_id"
                           " FROM publications WHERE pipeline = ? AND table_name = ? AND ds = ?"
                           " ORDER BY id DESC LIMIT 1",
                           -1, &q, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(q, 1, rel->p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, tb->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, ds, -1, SQLITE_STATIC);
    int same = 0;
    int64_t serving_id = 0;
    if (sqlite3_step(q) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(q, 1);
        same = strcmp((const char *)sqlite3_column_text(q, 0), source_hash) == 0 &&
               ((!v && !version) || (v && version && strcmp(v, version) == 0)) &&
               strcmp((const char *)sqlite3_column_text(q, 2), spec) == 0 &&
               strcmp((const char *)sqlite3_column_text(q, 3), rel->p->publish_db) == 0;
        serving_id = sqlite3_column_int64(q, 4);
    }
    sqlite3_finalize(q);
    if (!same) return 0;
    /* The serving database may have been replaced or edited since. */
    sqlite3 *serving;
    if (!nj_fs_exists(rel->p->publish_db) ||
        sqlite3_open_v2(rel->p->publish_db, &serving, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return 0;
    sqlite3_busy_timeout(serving, 10000);
    same = 0;
    if (sqlite3_prepare_v2(
            serving, "SELECT max(id) FROM nightjar_publications WHERE table_name = ? AND ds = ?",
            -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, tb->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, ds, -1, SQLITE_STATIC);
        same = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int64(q, 0) == serving_id;
        sqlite3_finalize(q);
    }
    sqlite3_close_v2(serving);
    return same;
}

static int record_publication(nj_release *rel, const nj_publish_spec *tb, const ready_table *r,
                              const nj_publish_stats *stats, const char *source_hash,
                              const char *key, const char *components, const char *spec,
                              nj_err *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(
            rel->db,
            "INSERT INTO publications (pipeline, table_name, ds, run_id, model_version,"
            " rows, duration_ms, published_ms, serving_db, serving_id, stage,"
            " source_hash, source_key, source_components, spec_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            -1, &q, NULL) != SQLITE_OK)
        return db_error(rel, err, "cannot record a publication");
    sqlite3_bind_text(q, 1, rel->p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, tb->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, r->ds, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, rel->run_id);
    bind_opt_text(q, 5, r->version);
    sqlite3_bind_int64(q, 6, stats->rows);
    sqlite3_bind_int64(q, 7, stats->duration_ms);
    sqlite3_bind_int64(q, 8, nj_time_now_ms());
    sqlite3_bind_text(q, 9, rel->p->publish_db, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 10, stats->publication_id);
    sqlite3_bind_text(q, 11, tb->stage, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 12, source_hash, -1, SQLITE_STATIC);
    bind_opt_text(q, 13, key);
    bind_opt_text(q, 14, components);
    sqlite3_bind_text(q, 15, spec, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : db_error(rel, err, "cannot record a publication");
    sqlite3_finalize(q);
    return rc;
}

static int publish_one(nj_release *rel, nj_publisher **pub, const ready_table *r, nj_err *err)
{
    const nj_publish_spec *tb = &rel->p->tables[r->table];
    if (!r->ds)
        return nj_err_set(err, NJ_EUSAGE,
                          "publish: table '%s' needs a date, but stage '%s' is not partitioned",
                          tb->name, tb->stage);
    char spec[NJ_HASH_HEX_SIZE];
    spec_hash(tb, spec);
    char *key, *components, *outputs;
    last_key(rel, tb->stage, r->ds, &key, &components, &outputs);
    char *source_hash = outputs ? output_hash(outputs, tb->out) : NULL;
    int rc = 0;
    if (!source_hash) { /* --no-cache: nothing recorded the output's hash */
        nj_hash h;
        if ((rc = nj_hash_file(r->path, &h, NULL, err)) == 0) {
            source_hash = nj_xmalloc(NJ_HASH_HEX_SIZE);
            nj_hash_hex(&h, source_hash);
        }
    }
    if (rc == 0 && already_published(rel, tb, r->ds, source_hash, r->version, spec)) {
        rel->summary.tables_unchanged++;
        goto out;
    }
    if (rc == 0 && !*pub) rc = nj_publish_open(rel->p->publish_db, pub, err);
    nj_publish_table t = {tb->name, tb->columns,        tb->ncolumns, (const char *const *)tb->key,
                          tb->nkey, tb->keep_partitions};
    nj_publish_stats stats = {0};
    if (rc == 0)
        rc = nj_publish_csv(*pub, &t, r->path, r->ds, r->version, rel->run_id, &stats, err);
    if (rc == 0)
        rc = record_publication(rel, tb, r, &stats, source_hash, key, components, spec, err);
    if (rc == 0) {
        rel->summary.tables_published++;
        rel->summary.rows_published += stats.rows;
        note(rel, "published %s %s: %lld rows%s%.12s%s in %lld ms", tb->name, r->ds,
             (long long)stats.rows, r->version ? " (model " : "", r->version ? r->version : "",
             r->version ? ")" : "", (long long)stats.duration_ms);
    }
out:
    free(source_hash);
    free(key);
    free(components);
    free(outputs);
    if (rc < 0) nj_err_prefix(err, "publish: table '%s' on %s", tb->name, r->ds);
    return rc;
}

int nj_release_publish(nj_release *rel, nj_err *err)
{
    nj_publisher *pub = NULL;
    int first = 0;
    for (size_t i = 0; i < rel->nready; i++) {
        nj_err local = {0};
        if (publish_one(rel, &pub, &rel->ready[i], &local) < 0) {
            rel->summary.publish_failed++;
            note(rel, "%s", local.msg);
            if (!first) {
                first = local.code;
                if (err) *err = local;
            }
        }
    }
    nj_publish_close(pub);
    return first;
}

/* ---- life cycle ------------------------------------------------------------------ */

static int open_common(const nj_pipeline *p, nj_state *st, nj_cache *cache, nj_release **out,
                       nj_err *err)
{
    *out = NULL;
    nj_release *rel = nj_xcalloc(1, sizeof(*rel));
    rel->p = p;
    rel->st = st;
    rel->db = nj_state_db(st);
    rel->cache = cache;
    rel->hooks.ctx = rel;
    int rc = 0;
    if (p->gate_stage) {
        if (!rel->cache) {
            rc = nj_cache_open(p, st, &rel->own_cache, err);
            rel->cache = rel->own_cache;
        }
        if (rc == 0) rc = nj_registry_open(st, &rel->reg, err);
        rel->hooks.champion = champion_hook;
    }
    if (rc < 0) {
        nj_release_free(rel);
        return rc;
    }
    *out = rel;
    return 0;
}

int nj_release_open(const nj_pipeline *p, nj_state *st, nj_cache *cache, int64_t run_id,
                    nj_release_note_fn note_fn, void *note_ctx, nj_release **out, nj_err *err)
{
    int rc = open_common(p, st, cache, out, err);
    if (rc < 0) return rc;
    nj_release *rel = *out;
    rel->run_id = run_id;
    rel->note = note_fn;
    rel->note_ctx = note_ctx;
    rel->hooks.node_done = node_done_hook;
    char *commit = git_head(p->dir);
    if (commit) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(rel->db, "UPDATE runs SET git_commit = ? WHERE id = ?", -1, &q,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_text(q, 1, commit, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 2, run_id);
            sqlite3_step(q);
            sqlite3_finalize(q);
        }
        free(commit);
    }
    return 0;
}

int nj_release_open_readonly(const nj_pipeline *p, nj_state *st, nj_cache *cache, nj_release **out,
                             nj_err *err)
{
    return open_common(p, st, cache, out, err);
}

const nj_exec_hooks *nj_release_hooks(nj_release *rel)
{
    return &rel->hooks;
}

const nj_release_summary *nj_release_summary_of(const nj_release *rel)
{
    return &rel->summary;
}

void nj_release_free(nj_release *rel)
{
    if (!rel) return;
    for (size_t i = 0; i < rel->nused; i++) {
        free(rel->used[i].ds);
        free(rel->used[i].version);
    }
    free(rel->used);
    for (size_t i = 0; i < rel->nready; i++) {
        free(rel->ready[i].ds);
        free(rel->ready[i].path);
        free(rel->ready[i].version);
    }
    free(rel->ready);
    nj_registry_free(rel->reg);
    nj_cache_free(rel->own_cache);
    free(rel);
}
