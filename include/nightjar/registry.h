/* registry.h - the model registry: model versions, the `champion` and
 * `previous` aliases of each pipeline, and an event log of every change,
 * kept in the workspace's state database.
 *
 * A model version is the content hash (hex) of a training stage's model
 * output. Aliases are per pipeline: `champion` is the model that scores,
 * `previous` the champion before it (what a rollback goes back to).
 *
 * Tables (NJ_REGISTRY_SCHEMA, created on first use by nj_registry_open()):
 *   models         one row per version: pipeline, stage, ds, run_id,
 *                  created_ms, path (in the object store, may be NULL),
 *                  training_dates (text chosen by the caller; nightjar
 *                  writes a JSON array of "YYYY-MM-DD"), metrics (a JSON
 *                  document, checked to parse, may be NULL)
 *   model_aliases  (pipeline, alias) -> version, updated_ms
 *   model_events   id, pipeline, ts_ms, action, version, previous_version,
 *                  run_id (NULL for commands run by hand), detail:
 *       register   version registered; previous_version NULL
 *       promote    version became champion; previous_version = the
 *                  `previous` alias after it (the old champion, or NULL)
 *       rollback   version (the old `previous`) became champion;
 *                  previous_version = the `previous` alias after it;
 *                  detail starts with "from <old champion>"
 *       hold       version failed its gate and was not promoted;
 *                  previous_version = the champion that keeps scoring;
 *                  detail = the failing rules, one per line
 *
 * Invariants: every change is one transaction (BEGIN IMMEDIATE, or a
 * SAVEPOINT when the caller already has a transaction open on the handle);
 * `champion` and `previous` never name the same version; an alias always
 * names a registered model of its pipeline.
 *
 *     nj_registry *reg;
 *     if (nj_registry_open(state, &reg, &err) < 0) ...
 *     nj_model_record m = {.version = hex, .pipeline = "flights", .stage = "train",
 *                          .ds = "2001-03-01", .run_id = run, .metrics = json};
 *     nj_registry_register(reg, &m, NULL, &err);
 *     if (gate_passed) nj_registry_promote(reg, "flights", hex, run, NULL, NULL, &err);
 *     else nj_registry_hold(reg, "flights", hex, run, failing_rules, &err);
 *     nj_registry_free(reg);
 */
#ifndef NJ_REGISTRY_H
#define NJ_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/err.h"
#include "nightjar/state.h"

#define NJ_REGISTRY_SCHEMA                                                                         \
    "CREATE TABLE IF NOT EXISTS models ("                                                          \
    "  version TEXT PRIMARY KEY,"                                                                  \
    "  pipeline TEXT NOT NULL,"                                                                    \
    "  stage TEXT NOT NULL,"                                                                       \
    "  ds TEXT,"                                                                                   \
    "  run_id INTEGER,"                                                                            \
    "  created_ms INTEGER NOT NULL,"                                                               \
    "  path TEXT,"                                                                                 \
    "  training_dates TEXT,"                                                                       \
    "  metrics TEXT);"                                                                             \
    "CREATE INDEX IF NOT EXISTS models_by_pipeline ON models(pipeline, created_ms);"               \
    "CREATE TABLE IF NOT EXISTS model_aliases ("                                                   \
    "  pipeline TEXT NOT NULL,"                                                                    \
    "  alias TEXT NOT NULL,"                                                                       \
    "  version TEXT NOT NULL REFERENCES models(version),"                                          \
    "  updated_ms INTEGER NOT NULL,"                                                               \
    "  PRIMARY KEY (pipeline, alias));"                                                            \
    "CREATE TABLE IF NOT EXISTS model_events ("                                                    \
    "  id INTEGER PRIMARY KEY,"                                                                    \
    "  pipeline TEXT NOT NULL,"                                                                    \
    "  ts_ms INTEGER NOT NULL,"                                                                    \
    "  action TEXT NOT NULL,"                                                                      \
    "  version TEXT,"                                                                              \
    "  previous_version TEXT,"                                                                     \
    "  run_id INTEGER,"                                                                            \
    "  detail TEXT);"                                                                              \
    "CREATE INDEX IF NOT EXISTS model_events_by_pipeline ON model_events(pipeline, id);"

#define NJ_ALIAS_CHAMPION "champion"
#define NJ_ALIAS_PREVIOUS "previous"

typedef struct nj_registry nj_registry;

/* Creates the tables if missing. `st` is borrowed and must outlive the
 * registry. Caller frees *out with nj_registry_free(). */
int nj_registry_open(nj_state *st, nj_registry **out, nj_err *err);
void nj_registry_free(nj_registry *reg); /* NULL is fine */

typedef struct nj_model_record {
    char *version; /* content hash, hex */
    char *pipeline;
    char *stage;          /* the training stage */
    char *ds;             /* its date, or NULL */
    int64_t run_id;       /* 0: none */
    int64_t created_ms;   /* 0 when registering: now */
    char *path;           /* may be NULL */
    char *training_dates; /* may be NULL */
    char *metrics;        /* JSON text, may be NULL */
    char *aliases;        /* filled by queries: "champion", "previous", or NULL */
} nj_model_record;
/* Frees the strings of a record filled by a query. */
void nj_model_record_release(nj_model_record *m);

/* Registers a model (the record's strings are copied). Idempotent by
 * version: registering it again changes nothing and sets *created (may be
 * NULL) to 0; a new model gets a `register` event and *created = 1. Returns
 * NJ_EUSAGE when the version is already registered by another pipeline, and
 * NJ_EFORMAT when metrics is not valid JSON. */
int nj_registry_register(nj_registry *reg, const nj_model_record *m, int *created, nj_err *err);

/* The model with that exact version, or NJ_ENOTFOUND. Caller releases *out. */
int nj_registry_get(nj_registry *reg, const char *version, nj_model_record *out, nj_err *err);

/* The version an alias names, in *version (caller frees), or NULL when the
 * alias is unset (that is not an error). */
int nj_registry_alias(nj_registry *reg, const char *pipeline, const char *alias, char **version,
                      nj_err *err);

/* For commands typed by people: the one version of `pipeline` that starts
 * with `prefix` (at least 4 hex digits), in *version (caller frees). Returns
 * NJ_ENOTFOUND, or NJ_EUSAGE for an ambiguous prefix naming the candidates. */
int nj_registry_resolve(nj_registry *reg, const char *pipeline, const char *prefix, char **version,
                        nj_err *err);

/* Makes `version` champion and the old champion `previous`, in one
 * transaction with a `promote` event. Promoting the current champion changes
 * nothing (*changed = 0; changed may be NULL). run_id 0 means none; detail
 * may be NULL. NJ_ENOTFOUND when the version is not registered for the
 * pipeline. */
int nj_registry_promote(nj_registry *reg, const char *pipeline, const char *version, int64_t run_id,
                        const char *detail, int *changed, nj_err *err);

/* Makes `previous` champion again; the new `previous` is the champion that
 * model replaced when it last became champion (from the event log), or none.
 * One transaction with a `rollback` event. *champion (may be NULL; caller
 * frees) gets the new champion. NJ_ENOTFOUND with "pipeline 'x' has no
 * previous model to roll back to" when there is none. */
int nj_registry_rollback(nj_registry *reg, const char *pipeline, int64_t run_id, const char *detail,
                         char **champion, nj_err *err);

/* Records that `version` was held by its gate; `detail` lists the failing
 * rules (nj_gate_result_format(res, 1, ...)). Aliases do not change. */
int nj_registry_hold(nj_registry *reg, const char *pipeline, const char *version, int64_t run_id,
                     const char *detail, nj_err *err);

/* The models of a pipeline, newest first, with their aliases. Caller
 * releases each record and frees the array. */
int nj_registry_list(nj_registry *reg, const char *pipeline, nj_model_record **out, size_t *n,
                     nj_err *err);

typedef struct nj_model_event {
    int64_t id, ts_ms, run_id;                                     /* run_id 0: none */
    char *pipeline, *action, *version, *previous_version, *detail; /* may be NULL but action */
} nj_model_event;
void nj_model_event_release(nj_model_event *e);

/* Events of a pipeline, newest first, at most `limit` (0: all). Caller
 * releases each event and frees the array. */
int nj_registry_events(nj_registry *reg, const char *pipeline, int limit, nj_model_event **out,
                       size_t *n, nj_err *err);

#endif
