/* plan.h - what one run or backfill will do: a graph of (stage, date) nodes.
 *
 * Selection (the run command's flags):
 *   --only S    exactly the named stages (their inputs must already exist)
 *   --from S    S and everything downstream of it
 *   --until S   S and everything upstream of it
 * Several flags of one kind add up; different kinds intersect. No flag
 * selects every stage. --force S and --force-downstream S mark nodes to run
 * whatever the cache says (they do not select). An unknown name is an
 * NJ_EUSAGE error with a suggestion: "unknown stage 'trian' (did you mean 'train'?)".
 *
 * Dates: every selected stage gets a node for each requested date: a
 * partitioned stage one per date, an unpartitioned stage of a partitioned
 * pipeline one node in all (ds NULL), and in a pipeline without `partition:`
 * every stage runs for the run's date. Same-date edges (paths, references,
 * needs) connect nodes of one date; a window dep {stage: a, window: [-28d,
 * -1d]} connects (a, d-28) .. (a, d-1) to (b, d), skipping dates before
 * partition.start (with a warning), and adds the upstream nodes of dates
 * outside the requested ones (`extra`), unless no_upstream is set: then
 * those dates' outputs must already exist, or the plan fails naming them.
 * A node shared by several dates' windows is one node: it runs once.
 *
 * Order: topological; among ready nodes the oldest date first (newest with
 * `backwards`), then file order. nodes[i].rank is that position, which the
 * scheduler uses as priority. */
#ifndef NJ_PLAN_H
#define NJ_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/dag.h"
#include "nightjar/err.h"
#include "nightjar/spec.h"
#include "nightjar/util.h"

typedef struct nj_selection {
    nj_strs only, from, until;
    nj_strs force;            /* rerun these despite the cache */
    nj_strs force_downstream; /* rerun these and everything downstream of them */
} nj_selection;

typedef struct nj_plan_opts {
    const int32_t *dates; /* requested dates (days since 1970-01-01), ascending, >= 1 */
    size_t ndates;
    int backwards;   /* prefer newer dates */
    int no_upstream; /* never add window dates outside `dates` */
} nj_plan_opts;

typedef struct nj_plan_node {
    const nj_stage *stage; /* borrowed from the pipeline */
    size_t stage_index;
    char *ds;       /* "YYYY-MM-DD", or NULL for an unpartitioned stage */
    int32_t day;    /* ds as days; INT32_MIN when ds is NULL */
    int extra;      /* only here as the window upstream of a requested date */
    size_t *upstream; /* plan node indexes this node waits for */
    size_t nupstream;
    size_t *downstream;
    size_t ndownstream;
    int forced; /* --force / --force-downstream: run even when cached */
} nj_plan_node;

typedef struct nj_plan {
    const nj_pipeline *pipeline; /* borrowed */
    char *ds;                    /* the first requested date, for messages */
    nj_plan_node *nodes;         /* in scheduling order (topological) */
    size_t n;
    size_t ndates;               /* distinct dates among the nodes */
    size_t nrequested;           /* dates asked for (1 for `run`) */
    nj_strs warnings;            /* e.g. windows cut short by partition.start */
} nj_plan;

/* Builds the plan. Caller frees with nj_plan_free. */
int nj_plan_build(const nj_pipeline *p, const nj_dag *dag, const nj_plan_opts *opts,
                  const nj_selection *sel, nj_plan **out, nj_err *err);
/* The plan of one date (`ds` "YYYY-MM-DD"), as `nightjar run` makes it. */
int nj_plan_build_date(const nj_pipeline *p, const nj_dag *dag, const char *ds,
                       const nj_selection *sel, nj_plan **out, nj_err *err);
void nj_plan_free(nj_plan *plan); /* NULL is fine */

#endif
