/* dag.h - the stage graph: which stage needs which, in what order.
 *
 * Node i is p->stages[i]. An edge a -> b (b needs a) comes from
 *   - a path: an out of a equals a dep of b, or one lies inside the other
 *     (an out directory "data/raw" feeds a dep "data/raw/x.csv");
 *   - a reference {{stages.a.outs.x}} in b's cmd;
 *   - `needs: [a]` in b;
 *   - a stage dep {stage: a, out: x, window: [...]} in b (NJ_EDGE_WINDOW: the
 *     planner connects dates through the window; the other kinds are same-date).
 * Each edge remembers which of these made it (a bit set), for `nightjar dag`.
 *
 * The graph is validated when built: a cycle is a diagnostic
 *     "<file>:<line>:<col>: dependency cycle: a -> b -> a"
 * at the mark of the first stage of the path (in file order), one per cycle
 * found. An nj_dag borrows the pipeline it was built from; free it first.
 */
#ifndef NJ_DAG_H
#define NJ_DAG_H

#include <stdio.h>

#include "nightjar/err.h"
#include "nightjar/spec.h"

typedef struct nj_dag nj_dag;

enum {
    NJ_EDGE_PATH = 1 << 0,
    NJ_EDGE_REF = 1 << 1,
    NJ_EDGE_NEEDS = 1 << 2,
    NJ_EDGE_WINDOW = 1 << 3, /* a stage dep {stage, out[, window]}: dates per the window */
};

/* Returns 0 and a new graph in *out; or NJ_ECYCLE with diagnostics added (and
 * *out NULL). */
int nj_dag_build(const nj_pipeline *p, nj_dag **out, nj_strs *diags, nj_err *err);
void nj_dag_free(nj_dag *dag); /* NULL is fine */

size_t nj_dag_count(const nj_dag *dag);
/* All node indexes in a topological order; among ready nodes, file order wins.
 * Borrowed, nj_dag_count() entries. */
const size_t *nj_dag_order(const nj_dag *dag);
/* Direct upstream / downstream nodes of node i, ascending. Borrowed. */
const size_t *nj_dag_upstream(const nj_dag *dag, size_t i, size_t *n);
const size_t *nj_dag_downstream(const nj_dag *dag, size_t i, size_t *n);
/* NJ_EDGE_* bits of the edge from -> to, 0 when there is none. */
int nj_dag_edge_kinds(const nj_dag *dag, size_t from, size_t to);

/* Marks in `mark` (nj_dag_count() bytes, set to 1) every node reachable from
 * node i going downstream (including i) or upstream (including i). */
void nj_dag_mark_downstream(const nj_dag *dag, size_t i, unsigned char *mark);
void nj_dag_mark_upstream(const nj_dag *dag, size_t i, unsigned char *mark);

/* Graphviz output of the stage graph (stage names, edge labels). */
void nj_dag_write_dot(const nj_dag *dag, const nj_pipeline *p, FILE *f);
/* Plain text: one line per stage in topological order, "stage <- up1, up2". */
void nj_dag_write_text(const nj_dag *dag, const nj_pipeline *p, FILE *f);

#endif
