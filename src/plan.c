/* plan.c - the (stage, date) graph of a run or backfill: selection, window
 * expansion, and a topological order that prefers old (or new) dates. */
#include "nightjar/plan.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/fs.h"
#include "nightjar/instance.h"

#define NO_DAY INT32_MIN

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

/* ---- building -------------------------------------------------------------- */

typedef struct builder {
    const nj_pipeline *p;
    const nj_dag *dag;
    const nj_plan_opts *opts;
    const unsigned char *selected;
    nj_plan_node *nodes;
    size_t n, cap;
    /* (stage, day) -> node index + 1, open addressing */
    uint64_t *keys;
    size_t *vals;
    size_t table_cap;
    size_t *up_cap; /* capacity of nodes[i].upstream */
    nj_strs *warnings;
    nj_strs missing; /* no_upstream: window outputs that do not exist */
} builder;

static uint64_t node_key(size_t stage, int32_t day)
{
    return ((uint64_t)stage << 32) ^ (uint32_t)day;
}

/* splitmix64's finaliser: every bit of the key reaches the low bits, which
 * the mask keeps (a plain multiply leaves the stage, in the high half, out
 * of them, and every stage of one date collides). */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t *table_slot(builder *b, uint64_t key)
{
    size_t mask = b->table_cap - 1;
    for (size_t i = (size_t)mix(key) & mask;; i = (i + 1) & mask)
        if (!b->vals[i] || b->keys[i] == key) {
            b->keys[i] = key;
            return &b->vals[i];
        }
}

static void table_grow(builder *b)
{
    size_t old_cap = b->table_cap;
    uint64_t *old_keys = b->keys;
    size_t *old_vals = b->vals;
    b->table_cap = old_cap ? old_cap * 2 : 1024;
    b->keys = nj_xcalloc(b->table_cap, sizeof(*b->keys));
    b->vals = nj_xcalloc(b->table_cap, sizeof(*b->vals));
    for (size_t i = 0; i < old_cap; i++)
        if (old_vals[i]) *table_slot(b, old_keys[i]) = old_vals[i];
    free(old_keys);
    free(old_vals);
}

/* The day a stage's node has on requested date `day`. */
static int32_t stage_day(const builder *b, size_t stage, int32_t day)
{
    if (!b->p->partition.enabled) return day; /* every stage runs for the run's date */
    return b->p->stages[stage].partitioned ? day : NO_DAY;
}

static size_t find_node(builder *b, size_t stage, int32_t day)
{
    if (!b->table_cap) return SIZE_MAX;
    size_t v = *table_slot(b, node_key(stage, day));
    return v ? v - 1 : SIZE_MAX;
}

static size_t add_node(builder *b, size_t stage, int32_t day, int extra)
{
    size_t found = find_node(b, stage, day);
    if (found != SIZE_MAX) {
        if (!extra) b->nodes[found].extra = 0;
        return found;
    }
    if ((b->n + 1) * 2 > b->table_cap) table_grow(b);
    nj_plan_node node = {0};
    node.stage = &b->p->stages[stage];
    node.stage_index = stage;
    node.day = day;
    node.extra = extra;
    if (day != NO_DAY) {
        node.ds = nj_xmalloc(11);
        nj_date_format(day, node.ds);
    }
    size_t old_cap = b->cap;
    NJ_PUSH(b->nodes, b->n, b->cap, node);
    if (b->cap != old_cap) {
        b->up_cap = nj_xrealloc(b->up_cap, b->cap * sizeof(*b->up_cap));
        memset(b->up_cap + old_cap, 0, (b->cap - old_cap) * sizeof(*b->up_cap));
    }
    *table_slot(b, node_key(stage, day)) = b->n;
    return b->n - 1;
}

static void add_edge(builder *b, size_t from, size_t to)
{
    nj_plan_node *t = &b->nodes[to];
    for (size_t i = 0; i < t->nupstream; i++)
        if (t->upstream[i] == from) return;
    NJ_PUSH(t->upstream, t->nupstream, b->up_cap[to], from);
}

/* 1 when every output of stage a on `day` exists on disk. */
static int outputs_exist(builder *b, size_t a, int32_t day)
{
    char ds[11];
    nj_date_format(day, ds);
    nj_instance inst;
    if (nj_instance_render(b->p, &b->p->stages[a], ds, NULL, &inst, NULL) < 0) return 0;
    int ok = 1;
    for (size_t i = 0; i < inst.nouts && ok; i++)
        ok = nj_fs_exists(inst.outs[i].abs);
    nj_instance_release(&inst);
    return ok;
}

static int requested(const builder *b, int32_t day)
{
    for (size_t i = 0; i < b->opts->ndates; i++)
        if (b->opts->dates[i] == day) return 1;
    return 0;
}

/* Node i waits for upstream stage a on `day`. */
static void connect(builder *b, size_t i, size_t a, int32_t day)
{
    if (!b->selected[a]) return; /* its output must already exist */
    size_t j = find_node(b, a, day);
    if (j == SIZE_MAX) {
        if (day != NO_DAY && b->opts->no_upstream && !requested(b, day)) {
            if (!outputs_exist(b, a, day)) {
                char ds[11];
                nj_date_format(day, ds);
                char *what = nj_xasprintf("%s@%s", b->p->stages[a].name, ds);
                if (!nj_strs_contains(&b->missing, what)) nj_strs_push(&b->missing, what);
                free(what);
            }
            return;
        }
        j = add_node(b, a, day, 1);
    }
    add_edge(b, j, i);
}

static void wire_node(builder *b, size_t i)
{
    size_t s = b->nodes[i].stage_index;
    int32_t day = b->nodes[i].day;
    const nj_stage *st = &b->p->stages[s];
    size_t nup;
    const size_t *up = nj_dag_upstream(b->dag, s, &nup);
    for (size_t k = 0; k < nup; k++) {
        size_t a = up[k];
        int kinds = nj_dag_edge_kinds(b->dag, a, s);
        if (kinds & (NJ_EDGE_PATH | NJ_EDGE_REF | NJ_EDGE_NEEDS))
            connect(b, i, a, day == NO_DAY ? stage_day(b, a, NO_DAY) : stage_day(b, a, day));
        if (!(kinds & NJ_EDGE_WINDOW)) continue;
        for (size_t d = 0; d < st->ndeps; d++) {
            const nj_dep *dep = &st->deps[d];
            if (!dep->stage || strcmp(dep->stage, b->p->stages[a].name) != 0) continue;
            if (day == NO_DAY || !b->p->stages[a].partitioned) {
                connect(b, i, a, stage_day(b, a, day));
                continue;
            }
            int skipped = 0;
            for (int32_t off = dep->window_from; off <= dep->window_to; off++) {
                if (b->p->partition.enabled && day + off < b->p->partition.start) {
                    skipped++;
                    continue;
                }
                connect(b, i, a, day + off);
            }
            if (skipped) {
                char ds[11];
                nj_date_format(day, ds);
                char *w = nj_xasprintf("stage '%s' on %s: %d of the %d dates of its window on '%s'"
                                       " are before the partition start; it sees the other %d",
                                       st->name, ds, skipped,
                                       dep->window_to - dep->window_from + 1, dep->stage,
                                       dep->window_to - dep->window_from + 1 - skipped);
                if (!nj_strs_contains(b->warnings, w)) nj_strs_push(b->warnings, w);
                free(w);
            }
        }
    }
}

/* ---- ordering ---------------------------------------------------------------- */

typedef struct order_ctx {
    const nj_plan_node *nodes;
    const size_t *topo_rank; /* stage index -> position in the dag's order */
    int backwards;
} order_ctx;

/* -1 when node x should come before node y among ready nodes. */
static int before(const order_ctx *o, size_t x, size_t y)
{
    const nj_plan_node *a = &o->nodes[x], *b = &o->nodes[y];
    if (a->day != b->day) {
        /* Unpartitioned nodes (NO_DAY) first: every date may need them. */
        if (a->day == NO_DAY) return 1;
        if (b->day == NO_DAY) return 0;
        return o->backwards ? a->day > b->day : a->day < b->day;
    }
    return o->topo_rank[a->stage_index] < o->topo_rank[b->stage_index];
}

static void heap_push(size_t *heap, size_t *len, size_t v, const order_ctx *o)
{
    size_t i = (*len)++;
    heap[i] = v;
    while (i > 0 && before(o, heap[i], heap[(i - 1) / 2])) {
        size_t p = (i - 1) / 2, t = heap[p];
        heap[p] = heap[i];
        heap[i] = t;
        i = p;
    }
}

static size_t heap_pop(size_t *heap, size_t *len, const order_ctx *o)
{
    size_t top = heap[0];
    heap[0] = heap[--(*len)];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *len && before(o, heap[l], heap[m])) m = l;
        if (r < *len && before(o, heap[r], heap[m])) m = r;
        if (m == i) break;
        size_t t = heap[m];
        heap[m] = heap[i];
        heap[i] = t;
        i = m;
    }
    return top;
}

/* Puts b->nodes in scheduling order and fills downstream lists. */
static void order_nodes(builder *b, const nj_plan_opts *opts, nj_plan *plan)
{
    size_t n = b->n;
    size_t *topo_rank = nj_xcalloc(b->p->nstages, sizeof(size_t));
    const size_t *order = nj_dag_order(b->dag);
    for (size_t k = 0; k < b->p->nstages; k++)
        topo_rank[order[k]] = k;
    size_t *indegree = nj_xcalloc(n ? n : 1, sizeof(size_t));
    size_t *down_count = nj_xcalloc(n ? n : 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        indegree[i] = b->nodes[i].nupstream;
        for (size_t k = 0; k < b->nodes[i].nupstream; k++)
            down_count[b->nodes[i].upstream[k]]++;
    }
    size_t **down = nj_xcalloc(n ? n : 1, sizeof(size_t *));
    size_t *down_len = nj_xcalloc(n ? n : 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++)
        down[i] = nj_xcalloc(down_count[i] ? down_count[i] : 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < b->nodes[i].nupstream; k++) {
            size_t u = b->nodes[i].upstream[k];
            down[u][down_len[u]++] = i;
        }
    order_ctx o = {b->nodes, topo_rank, opts->backwards};
    size_t *heap = nj_xcalloc(n ? n : 1, sizeof(size_t)), hlen = 0;
    size_t *new_index = nj_xcalloc(n ? n : 1, sizeof(size_t));
    size_t *sequence = nj_xcalloc(n ? n : 1, sizeof(size_t)), emitted = 0;
    for (size_t i = 0; i < n; i++)
        if (indegree[i] == 0) heap_push(heap, &hlen, i, &o);
    while (hlen) {
        size_t i = heap_pop(heap, &hlen, &o);
        new_index[i] = emitted;
        sequence[emitted++] = i;
        for (size_t k = 0; k < down_len[i]; k++)
            if (--indegree[down[i][k]] == 0) heap_push(heap, &hlen, down[i][k], &o);
    }
    /* The stage graph is acyclic and windows only look at other dates of
     * upstream stages, so every node is emitted. */
    if (emitted != n) NJ_BUG("plan has a cycle (%zu of %zu nodes ordered)", emitted, n);
    plan->nodes = nj_xcalloc(n ? n : 1, sizeof(nj_plan_node));
    plan->n = n;
    for (size_t k = 0; k < n; k++) {
        size_t i = sequence[k];
        nj_plan_node *dst = &plan->nodes[k];
        *dst = b->nodes[i];
        for (size_t u = 0; u < dst->nupstream; u++)
            dst->upstream[u] = new_index[dst->upstream[u]];
        dst->downstream = down[i];
        dst->ndownstream = down_len[i];
        for (size_t d = 0; d < dst->ndownstream; d++)
            dst->downstream[d] = new_index[dst->downstream[d]];
        down[i] = NULL;
    }
    free(b->nodes);
    b->nodes = NULL;
    free(topo_rank);
    free(indegree);
    free(down_count);
    free(down);
    free(down_len);
    free(heap);
    free(new_index);
    free(sequence);
}

static int cmp_day(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static size_t count_dates(const nj_plan *plan)
{
    int32_t *days = nj_xcalloc(plan->n ? plan->n : 1, sizeof(int32_t));
    size_t m = 0, distinct = 0;
    for (size_t i = 0; i < plan->n; i++)
        if (plan->nodes[i].day != NO_DAY) days[m++] = plan->nodes[i].day;
    if (m) qsort(days, m, sizeof(*days), cmp_day);
    for (size_t i = 0; i < m; i++)
        distinct += i == 0 || days[i] != days[i - 1];
    free(days);
    return distinct;
}

/* The champion is one model per pipeline that each date's gate may replace,
 * so gates decide in date order, and every stage using {{models.champion}}
 * on a date renders before the next date's gate changes it: (gate, d) waits
 * for (gate, d') and for the champion users of d', d' the previous date of
 * the plan that has a gate node. A backfill then replays the nightly
 * sequence of promotions whatever -j is. */
static int cmp_node_day(const void *a, const void *b)
{
    const nj_plan_node *x = *(const nj_plan_node *const *)a, *y = *(const nj_plan_node *const *)b;
    return (x->day > y->day) - (x->day < y->day);
}

static void chain_gates(builder *b)
{
    const nj_stage *gate = b->p->gate_stage;
    if (!gate) return;
    size_t g = nj_pipeline_stage_index(b->p, gate);
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        n += b->nodes[i].stage_index == g && b->nodes[i].day != NO_DAY;
    if (n < 2) return;
    size_t *gates = nj_xmalloc(n * sizeof(*gates));
    const nj_plan_node **sorted = nj_xmalloc(n * sizeof(*sorted));
    size_t m = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->nodes[i].stage_index == g && b->nodes[i].day != NO_DAY) sorted[m++] = &b->nodes[i];
    qsort(sorted, n, sizeof(*sorted), cmp_node_day);
    for (size_t k = 0; k < n; k++)
        gates[k] = (size_t)(sorted[k] - b->nodes);
    for (size_t k = 1; k < n; k++) {
        int32_t prev = b->nodes[gates[k - 1]].day;
        add_edge(b, gates[k - 1], gates[k]);
        for (size_t u = 0; u < b->p->nstages; u++) {
            if (!b->p->stages[u].uses_champion || u == g) continue;
            size_t j = find_node(b, u, stage_day(b, u, prev));
            if (j != SIZE_MAX) add_edge(b, j, gates[k]);
        }
    }
    free(sorted);
    free(gates);
}

int nj_plan_build(const nj_pipeline *p, const nj_dag *dag, const nj_plan_opts *opts,
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
    memset(mark, 0, n);
    if (rc == 0) rc = mark_kind(p, dag, &sel->force, 0, mark, err);
    if (rc == 0) rc = mark_kind(p, dag, &sel->force_downstream, 1, mark, err);
    if (rc < 0) {
        free(selected);
        free(mark);
        return rc;
    }

    nj_plan *plan = nj_xcalloc(1, sizeof(*plan));
    plan->pipeline = p;
    plan->nrequested = opts->ndates;
    if (opts->ndates) {
        plan->ds = nj_xmalloc(11);
        nj_date_format(opts->dates[0], plan->ds);
    }
    builder b = {.p = p, .dag = dag, .opts = opts, .selected = selected, .warnings = &plan->warnings};
    const size_t *order = nj_dag_order(dag);
    for (size_t d = 0; d < opts->ndates; d++)
        for (size_t k = 0; k < n; k++)
            if (selected[order[k]])
                add_node(&b, order[k], stage_day(&b, order[k], opts->dates[d]), 0);
    for (size_t i = 0; i < b.n; i++) /* b.n grows as windows add upstream dates */
        wire_node(&b, i);
    chain_gates(&b);
    for (size_t i = 0; i < b.n; i++)
        b.nodes[i].forced = mark[b.nodes[i].stage_index];
    if (b.missing.len) {
        nj_buf list;
        nj_buf_init(&list);
        for (size_t i = 0; i < b.missing.len && i < 20; i++)
            nj_buf_printf(&list, "%s%s", i ? ", " : "", b.missing.items[i]);
        if (b.missing.len > 20) nj_buf_printf(&list, " and %zu more", b.missing.len - 20);
        rc = nj_err_set(err, NJ_EUSAGE,
                        "--no-upstream: windows are incomplete, these outputs are missing: %s",
                        list.data);
        nj_buf_release(&list);
    }
    if (rc == 0) {
        order_nodes(&b, opts, plan);
        plan->ndates = count_dates(plan);
    } else {
        for (size_t i = 0; i < b.n; i++) {
            free(b.nodes[i].ds);
            free(b.nodes[i].upstream);
        }
        free(b.nodes);
    }
    free(b.keys);
    free(b.vals);
    free(b.up_cap);
    nj_strs_release(&b.missing);
    free(selected);
    free(mark);
    if (rc < 0) {
        nj_plan_free(plan);
        return rc;
    }
    *out = plan;
    return 0;
}

int nj_plan_build_date(const nj_pipeline *p, const nj_dag *dag, const char *ds,
                       const nj_selection *sel, nj_plan **out, nj_err *err)
{
    int32_t day;
    int rc = nj_date_parse(ds, &day, err);
    if (rc < 0) return rc;
    nj_plan_opts opts = {.dates = &day, .ndates = 1};
    return nj_plan_build(p, dag, &opts, sel, out, err);
}

void nj_plan_free(nj_plan *plan)
{
    if (!plan) return;
    for (size_t i = 0; i < plan->n; i++) {
        free(plan->nodes[i].ds);
        free(plan->nodes[i].upstream);
        free(plan->nodes[i].downstream);
    }
    free(plan->nodes);
    free(plan->ds);
    nj_strs_release(&plan->warnings);
    free(plan);
}
