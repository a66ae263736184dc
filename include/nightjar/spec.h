/* spec.h - the pipeline file: loading, validating and the in-memory model.
 *
 * nj_pipeline_load() parses a YAML pipeline with libyaml, checks everything
 * that can be checked without building the graph, and reports every problem
 * at once as one diagnostic line each, always in the form
 *     <file>:<line>:<col>: <message>
 * e.g. "pipelines/x.yaml:12:5: unknown key 'stpes' (did you mean 'stages'?)".
 * Cycles are reported by nj_dag_build() (dag.h) in the same form.
 *
 *     nj_strs diags = {0};
 *     nj_pipeline *p;
 *     if (nj_pipeline_load("pipelines/demo.yaml", &p, &diags, &err) < 0) {
 *         for (size_t i = 0; i < diags.len; i++) puts(diags.items[i]);
 *         ...
 *     }
 *
 * Ownership: an nj_pipeline owns every string and array reachable from it;
 * nj_pipeline_free() releases it all. Paths kept in the model are as written
 * in the file but lexically normalised (nj_path_normalize), and are relative
 * to the pipeline's directory unless absolute. Stages keep file order.
 */
#ifndef NJ_SPEC_H
#define NJ_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/err.h"
#include "nightjar/util.h"

typedef struct nj_mark {
    int line, col; /* 1-based position in the pipeline file; 0 when unknown */
} nj_mark;

/* A named scalar: a pipeline param or an env entry. */
typedef struct nj_param {
    char *name;
    char *value;   /* the scalar's text as written ("0.1", "true", "ORD"); for a
                      list param, the items joined by single spaces */
    nj_strs items; /* a list param's items; empty for a scalar */
    int is_list;
    nj_mark mark;  /* of the value */
} nj_param;

/* A name with the position it was written at: a `needs` entry, a param a
 * stage uses, a `code` path, a stage referenced from a template. */
typedef struct nj_ref {
    char *name;
    nj_mark mark;
} nj_ref;

/* A dep is either a path, or another stage's output over a window of dates:
 *     deps:
 *       - data/lookup.csv                                  path
 *       - {stage: features, out: table}                    same date (window 0..0)
 *       - {stage: features, out: table, window: [-28d, -1d]}  the 28 days before ds
 * A stage dep has path NULL; the planner turns it into (stage, date) edges
 * and the instance into one input path per date that exists (dates before
 * partition.start are skipped). */
typedef struct nj_dep {
    char *path; /* normalised; may contain templates such as {{ds}}; NULL for a stage dep */
    nj_mark mark;
    char *stage; /* stage dep: the upstream stage, else NULL */
    char *out;   /* stage dep: its output name */
    int32_t window_from, window_to; /* days relative to ds, from <= to; 0, 0 = same date */
} nj_dep;

/* The built-in snapshot stage type: instead of `cmd`, nightjar itself writes
 * one deterministic archive of `inputs` to the stage's only output. */
typedef struct nj_snapshot_spec {
    nj_strs inputs; /* path templates (files or directories), normalised */
    char *format;   /* "tar.zst" (default), "tar.gz" or "tar" */
} nj_snapshot_spec;

/* `partition:` - the pipeline's stages are indexed by a logical date. */
typedef struct nj_partition {
    int enabled;     /* 0: no `partition:` section; `ds` is still --date or today */
    int32_t start;   /* first date, days since 1970-01-01 */
    int32_t lag_days; /* default date of a run = today (local) - lag; default 1 */
    nj_mark mark;
} nj_partition;

typedef struct nj_out {
    char *name; /* key under `outs:` */
    char *path; /* normalised, relative, inside the pipeline directory */
    nj_mark mark;
} nj_out;

/* `gate:` - the promotion gate of a stage that evaluates a candidate model
 * and writes `metrics:` (a JSON file):
 *     metrics: metrics                        # the out holding the JSON
 *     gate:
 *       candidate: {stage: train, out: model} # the model being judged
 *       metrics: overall.model                # its metrics in the JSON ("": the top)
 *       champion_metrics: overall.champion    # the champion's, same evaluation data
 *       rules: ["auc >= 0.60", "auc >= champion.auc - 0.002"]
 * At most one stage of a pipeline has a gate. */
typedef struct nj_gate_spec {
    char *stage, *out;  /* the candidate model: an output of another stage */
    nj_mark stage_mark, out_mark, mark; /* mark: of the `gate` key */
    char *candidate_root; /* dotted path below which the candidate's metrics are */
    char *champion_root;  /* the same for the champion */
    nj_strs rules;        /* as written, parsed by gate.h */
    nj_mark *rule_marks;  /* parallel to rules */
} nj_gate_spec;

typedef struct nj_stage {
    char *name; /* [A-Za-z0-9_.-]+ */
    nj_mark mark; /* of the stage's key */
    char *cmd;    /* template text, rendered by nj_template_render() */
    nj_mark cmd_mark;
    nj_dep *deps;
    size_t ndeps;
    nj_out *outs;
    size_t nouts;
    nj_ref *needs; /* explicit ordering on other stages */
    size_t nneeds;
    nj_ref *params; /* names of pipeline params the stage uses */
    size_t nparams;
    nj_ref *code; /* files that implement the stage (hashed into its key) */
    size_t ncode;
    nj_ref *uses; /* stages named by {{stages.S.outs.x}} in cmd, one entry each */
    size_t nuses;
    nj_param *env; /* extra environment, in file order */
    size_t nenv;
    char *workdir; /* normalised, relative to the pipeline dir; NULL: the pipeline dir */
    int partitioned; /* 1: one instance per date (default when the pipeline has a
                        partition); 0: `partitioned: false`, one instance for all dates */
    nj_snapshot_spec *snapshot; /* the built-in snapshot type, or NULL (then cmd is set) */
    int retries;   /* extra attempts after the first */
    int64_t retry_delay_ms, retry_delay_max_ms;
    int64_t timeout_ms; /* 0: no timeout */
    char *metrics;      /* `metrics:`: the name of the output holding a JSON document, or NULL */
    nj_mark metrics_mark;
    nj_gate_spec *gate; /* or NULL */
    int uses_champion;  /* cmd has {{models.champion}}; the stage then also `needs`
                           the gate stage, unless it is the gate stage */
} nj_stage;

/* `publish:` - tables of the serving database loaded from stage outputs:
 *     publish:
 *       database: serving/flights.db          # default serving/<pipeline>.db
 *       tables:
 *         flight_delay_risk:
 *           from: {stage: score, out: predictions}
 *           columns: {flight_id: text, p_delay: real}
 *           key: [flight_id]
 *           keep_partitions: 60
 * The column and key arrays are shaped for publish.h (nj_publish_table). */
typedef struct nj_publish_spec {
    char *name;
    char *stage, *out; /* `from` */
    nj_mark mark, from_mark;
    struct nj_publish_column *columns; /* names owned by the pipeline */
    size_t ncolumns;
    char **key;
    size_t nkey;
    int keep_partitions; /* 0: keep all */
} nj_publish_spec;

typedef struct nj_pipeline {
    char *file;      /* the path as given, used in every diagnostic */
    char *dir;       /* absolute directory containing the file */
    char *name;      /* `pipeline:` */
    char *workspace; /* absolute; `workspace:` or <dir>/.nightjar */
    char *cache_dir;  /* absolute `cache.dir`, or NULL: $NIGHTJAR_CACHE, else <workspace>/cache */
    char *cache_link; /* `cache.link`: "auto" (default), "reflink", "hardlink" or "copy" */
    nj_partition partition;
    nj_param *params;
    size_t nparams;
    nj_stage *stages;
    size_t nstages;
    char *publish_db; /* absolute path of the serving database; NULL without `publish:` */
    nj_publish_spec *tables;
    size_t ntables;
    const nj_stage *gate_stage; /* the one stage with a `gate:`, or NULL */
} nj_pipeline;

/* Defaults applied when neither the stage nor `defaults:` says otherwise. */
#define NJ_DEFAULT_RETRIES 0
#define NJ_DEFAULT_RETRY_DELAY_MS 5000
#define NJ_DEFAULT_RETRY_DELAY_MAX_MS 300000
#define NJ_DEFAULT_TIMEOUT_MS 0

/* Loads and validates `path`. Returns 0 and a new pipeline in *out (caller
 * frees with nj_pipeline_free); NJ_EPIPELINE with one line per problem added
 * to *diags and err->msg "N problems in '<file>'"; or -errno when the file
 * cannot be read (err->msg names it). On failure *out is NULL. */
int nj_pipeline_load(const char *path, nj_pipeline **out, nj_strs *diags, nj_err *err);
void nj_pipeline_free(nj_pipeline *p); /* NULL is fine */

/* Borrowed pointers, valid until nj_pipeline_free(); NULL when absent. */
nj_stage *nj_pipeline_stage(const nj_pipeline *p, const char *name);
nj_out *nj_stage_out(const nj_stage *s, const char *name);
nj_param *nj_pipeline_param(const nj_pipeline *p, const char *name);
/* Overrides a param from the command line ("l2=0.5"). Returns 0, or
 * NJ_EUSAGE for a malformed assignment or an unknown param (with a
 * suggestion). Call before rendering anything. */
int nj_pipeline_set_param(nj_pipeline *p, const char *assignment, nj_err *err);

/* Index of stage `s` in p->stages. */
size_t nj_pipeline_stage_index(const nj_pipeline *p, const nj_stage *s);

/* The upstream dates a stage dep (dep->stage set) reads for the downstream
 * date `ds` (days since 1970-01-01): ds + window_from .. ds + window_to,
 * without the dates before partition.start. Returns how many dates (0 when
 * none exists, then *first > *last) and the range in *first, *last. When the
 * upstream stage is not partitioned (or the pipeline has no partition) it has
 * one instance for all dates: returns 1 with *first = *last = ds. Example:
 * window [-28d, -1d], start 2001-01-01, ds 2001-01-05 -> 4 dates,
 * 2001-01-01 .. 2001-01-04. Calling it on a path dep is a bug. */
int32_t nj_dep_window(const nj_pipeline *p, const nj_dep *dep, int32_t ds, int32_t *first,
                      int32_t *last);

/* Appends "<file>:<line>:<col>: <message>" to diags. */
void nj_diag_add(nj_strs *diags, const char *file, nj_mark mark, const char *fmt, ...)
    NJ_PRINTF(4, 5);

/* The closest of `candidates` to `word` by edit distance, if close enough to
 * suggest (distance <= max(1, (strlen(word)+1)/3), so "stpes" -> "stages" and
 * "trian" -> "train"); NULL otherwise. Ties go to the earlier candidate.
 * Borrowed. */
const char *nj_suggest(const char *word, const char *const *candidates, size_t n);

#endif
