/* plan.c - selecting stage instances and wiring their dependencies. */
#include "nightjar/plan.h"

#include <stdlib.h>
#include <string.h>

static int resolve(const nj_pipeline *p, const char *name, size_t *index, nj_err *err)
{
    nj_stage *s = nj_pipeline_stage(p, name);
    if (s) {
        *index = nj_pipeline_stage_index(p, s);
        return 0;
    }
    const char **names = nj_xmalloc(p->nstages * sizeof(*names));
    for (size_t i = 0; i < p->nstages; i++)
        names[i] = p->stages[i].name;
    const char *hint = nj_suggest(name, names, p->nstages);
    int rc = hint ? nj_err_set(err, NJ_EUSAGE, "unknown stage '%s' (did you mean '%s'?)", name,
                               hint)
                  : nj_err_set(err, NJ_EUSAGE, "unknown stage '%s'", name);
    free(names);
    return rc;
}

/* Marks, for one kind of flag, the union of what each named stage selects.
 * direction: 0 = only the stage, 1 = downstream, -1 = upstream. */
static int mark_kind(const nj_pipeline *p, const nj_dag *dag, const nj_strs *names, int direction,
                     unsigned char *mark, nj_err *err)
{
    for (size_t i = 0; i < names->len; i++) {
        size_t index = 0;
        int rc = resolve(p, names->items[i], &index, err);
        if (rc < 0) return rc;
        if (direction > 0)
            nj_dag_mark_downstream(dag, index, mark);
        else if (direction < 0)
            nj_dag_mark_upstream(dag, index, mark);
        else
            mark[index] = 1;
    }
    return 0;
}

int nj_plan_build(const nj_pipeline *p, const nj_dag *dag, const char *ds,
                  const nj_selection *sel, nj_plan **out, nj_err *err)
{
    *out = NULL;
    size_t n = p->nstages;
    unsigned char *selected = nj_xmalloc(n);
    unsigned char *mark = nj_xmalloc(n);
    memset(selected, 1, n);
    const nj_strs *kinds[3] = {&sel->only, &sel->from, &sel->until};
    const int directions[3] = {0, 1, -1};
    int rc = 0;
    for (int k = 0; k < 3 && rc == 0; k++) {
        if (kinds[k]->len == 0) continue;
        memset(mark, 0, n);
        rc = mark_kind(p, dag, kinds[k], directions[k], mark, err);
        for (size_t i = 0; i < n; i++)
            selected[i] &= mark[i];
    }
    if (rc < 0) {
        free(selected);
        free(mark);
        return rc;
    }

    nj_plan *plan = nj_xcalloc(1, sizeof(*plan));
    plan->pipeline = p;
    plan->ds = nj_xstrdup(ds);
    plan->nodes = nj_xcalloc(n, sizeof(*plan->nodes));
    /* node_of[stage] = plan index + 1, 0 when not selected. */
    size_t *node_of = nj_xcalloc(n, sizeof(*node_of));
    const size_t *order = nj_dag_order(dag);
    for (size_t k = 0; k < n; k++) {
        size_t s = order[k];
        if (!selected[s]) continue;
        nj_plan_node *node = &plan->nodes[plan->n];
        node->stage = &p->stages[s];
        node->stage_index = s;
        node_of[s] = ++plan->n;
    }
    memset(mark, 0, n);
    if (rc == 0) rc = mark_kind(p, dag, &sel->force, 0, mark, err);
    if (rc == 0) rc = mark_kind(p, dag, &sel->force_downstream, 1, mark, err);
    if (rc < 0) {
        free(node_of);
        free(selected);
        free(mark);
        nj_plan_free(plan);
        return rc;
    }
    for (size_t i = 0; i < plan->n; i++) {
        nj_plan_node *node = &plan->nodes[i];
        node->forced = mark[node->stage_index];
        size_t nup, cap = 0;
        const size_t *up = nj_dag_upstream(dag, node->stage_index, &nup);
        for (size_t j = 0; j < nup; j++) {
            if (!node_of[up[j]]) continue;
            size_t u = node_of[up[j]] - 1;
            NJ_PUSH(node->upstream, node->nupstream, cap, u);
            nj_plan_node *upnode = &plan->nodes[u];
            /* Capacity equals count here: grow by one each time. */
            upnode->downstream = nj_xrealloc(upnode->downstream,
                                             (upnode->ndownstream + 1) * sizeof(size_t));
            upnode->downstream[upnode->ndownstream++] = i;
        }
    }
    free(node_of);
    free(selected);
    free(mark);
    *out = plan;
    return 0;
}

void nj_plan_free(nj_plan *plan)
{
    if (!plan) return;
    for (size_t i = 0; i < plan->n; i++) {
        free(plan->nodes[i].upstream);
        free(plan->nodes[i].downstream);
    }
    free(plan->nodes);
    free(plan->ds);
    free(plan);
}
