/* explain.c - predicting each plan node's cache decision. */
#include "nightjar/explain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/fs.h"
#include "nightjar/instance.h"

const char *nj_decide_name(nj_decide_kind kind)
{
    switch (kind) {
    case NJ_DECIDE_CACHED:
        return "cached";
    case NJ_DECIDE_UP_TO_DATE:
        return "up-to-date";
    default:
        return "run";
    }
}

static int explain_node(const nj_plan *plan, size_t i, nj_cache *cache,
                        const nj_exec_hooks *hooks, nj_explanation *out,
                        nj_err *err)
{
    const nj_plan_node *node = &plan->nodes[i];
    nj_explanation *e = &out[i];
    e->kind = NJ_DECIDE_RUN;
    if (!cache) {
        snprintf(e->reason, sizeof(e->reason), "cache disabled");
        return 0;
    }
    for (size_t j = 0; j < node->nupstream; j++) {
        if (out[node->upstream[j]].kind != NJ_DECIDE_RUN) continue;
        snprintf(e->reason, sizeof(e->reason), "upstream '%s' will run",
                 plan->nodes[node->upstream[j]].stage->name);
        return 0;
    }
    nj_instance inst;
    nj_err local = {0};
    char *champion = NULL;
    if (node->stage->uses_champion && hooks && hooks->champion &&
        hooks->champion(hooks->ctx, node, &champion, &local) < 0) {
        snprintf(e->reason, sizeof(e->reason), "%.700s", local.msg);
        return 0;
    }
    int rendered = nj_instance_render(plan->pipeline, node->stage, node->ds, champion, &inst, &local);
    free(champion);
    if (rendered < 0) {
        snprintf(e->reason, sizeof(e->reason), "%.700s", local.msg);
        return 0;
    }
    nj_key key = {0};
    int rc = 0;
    if (nj_cache_key(cache, &inst, &key, &local) < 0) {
        snprintf(e->reason, sizeof(e->reason), "%.700s", local.msg);
    } else if (node->forced) {
        snprintf(e->reason, sizeof(e->reason), "forced");
    } else {
        nj_decision d;
        rc = nj_cache_decide(cache, &inst, &key, 0, 0, &d, err);
        e->kind = d.kind;
        snprintf(e->reason, sizeof(e->reason), "%s", d.reason);
    }
    nj_key_release(&key);
    nj_instance_release(&inst);
    return rc;
}

int nj_explain_plan(const nj_plan *plan, nj_cache *cache, const nj_exec_hooks *hooks,
                    nj_explanation *out, nj_err *err)
{
    for (size_t i = 0; i < plan->n; i++) {
        int rc = explain_node(plan, i, cache, hooks, out, err);
        if (rc < 0) return rc;
    }
    return 0;
}
