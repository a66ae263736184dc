/* explain.h - what a run would do and why, without doing it.
 *
 * Walks a plan in order and, for each node, predicts `run`, `cached` or
 * `up-to-date` with the reason, touching nothing on disk:
 *   - a node downstream of one that will run: "upstream 'features' will run"
 *     (its inputs are not known yet);
 *   - a forced node: "forced";
 *   - otherwise the cache's decision (cache.h) for its current inputs.
 * Behind `nightjar why` and `nightjar run --dry-run --explain`. */
#ifndef NJ_EXPLAIN_H
#define NJ_EXPLAIN_H

#include "nightjar/cache.h"
#include "nightjar/exec.h"
#include "nightjar/plan.h"

typedef struct nj_explanation {
    nj_decide_kind kind;
    char reason[768];
} nj_explanation;

/* Fills out[i] for every plan node (out has plan->n entries). `cache` may be
 * NULL (--no-cache): then everything runs, "cache disabled". `hooks` (may be
 * NULL) says what {{models.champion}} is, as for a run. */
int nj_explain_plan(const nj_plan *plan, nj_cache *cache, const nj_exec_hooks *hooks,
                    nj_explanation *out, nj_err *err);

/* "run", "cached", "up-to-date" */
const char *nj_decide_name(nj_decide_kind kind);

#endif
