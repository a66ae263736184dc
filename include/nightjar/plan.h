/* plan.h - what one run will do: the stage instances it covers, in
 * topological order, with their dependencies inside the plan.
 *
 * Selection (the run command's flags):
 *   --only S    exactly the named stages (their inputs must already exist)
 *   --from S    S and everything downstream of it
 *   --until S   S and everything upstream of it
 * Several flags of one kind add up; different kinds intersect. No flag
 * selects every stage. --force S and --force-downstream S mark nodes to run
 * whatever the cache says (they do not select). An unknown name is an NJ_EUSAGE error with a
 * suggestion: "unknown stage 'trian' (did you mean 'train'?)".
 */
#ifndef NJ_PLAN_H
#define NJ_PLAN_H

#include <stddef.h>

#include "nightjar/dag.h"
#include "nightjar/err.h"
#include "nightjar/spec.h"
#include "nightjar/util.h"

typedef struct nj_selection {
    nj_strs only, from, until;
    nj_strs force;            /* rerun these despite the cache */
    nj_strs force_downstream; /* rerun these and everything downstream of them */
} nj_selection;

typedef struct nj_plan_node {
    const nj_stage *stage; /* borrowed from the pipeline */
    size_t stage_index;
    size_t *upstream; /* plan node indexes this node waits for */
    size_t nupstream;
    size_t *downstream;
    size_t ndownstream;
    int forced; /* --force / --force-downstream: run even when cached */
} nj_plan_node;

typedef struct nj_plan {
    const nj_pipeline *pipeline; /* borrowed */
    char *ds;                    /* logical date of the run, or NULL */
    nj_plan_node *nodes;         /* topological order */
    size_t n;
} nj_plan;

/* Builds the plan; `ds` may be NULL. Caller frees with nj_plan_free. */
int nj_plan_build(const nj_pipeline *p, const nj_dag *dag, const char *ds,
                  const nj_selection *sel, nj_plan **out, nj_err *err);
void nj_plan_free(nj_plan *plan); /* NULL is fine */

#endif
