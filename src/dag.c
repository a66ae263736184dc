/* dag.c - the stage graph of a loaded pipeline: edges, topological order,
 * cycle reports, dot and text output.
 *
 * Node i is p->stages[i]. Edges are kept as adjacency lists: each node's
 * upstream nodes (ascending, with the NJ_EDGE_* bits of each edge) and its
 * downstream nodes (ascending), so building, sorting and walking the graph
 * cost O(stages + edges), not O(stages^2): a thousand-stage pipeline is
 * loaded on every run, even one with nothing to do. The only self-edge that
 * can exist, `needs: [self]`, is kept apart in `self_kinds`: it is a cycle
 * to report, never a list entry. An nj_dag owns its arrays and borrows
 * nothing after nj_dag_build() returns, except that node indexes refer to
 * the pipeline it was built from.
 */
#include "nightjar/dag.h"

#include "nightjar/pathset.h"

#include <stdlib.h>
#include <string.h>

#include "nightjar/fs.h"
#include "nightjar/strmap.h"

struct nj_dag {
    size_t n;
    size_t *order;             /* n node indexes, topological, file order among ready */
    size_t *up_start;          /* up_items[up_start[i] .. up_start[i+1]) are i's upstream */
    size_t *up_items;
    unsigned char *up_kinds;   /* NJ_EDGE_* bits of the edge up_items[k] -> its node */
    size_t *down_start;
    size_t *down_items;
    unsigned char *self_kinds; /* n entries: bits of an edge i -> i (only `needs`) */
};

void nj_dag_free(nj_dag *dag)
{
    if (!dag) return;
    free(dag->order);
    free(dag->up_start);
    free(dag->up_items);
    free(dag->up_kinds);
    free(dag->down_start);
    free(dag->down_items);
    free(dag->self_kinds);
    free(dag);
}

/* One edge into the node being collected: from `from`, with `kinds` bits. */
typedef struct in_edge {
    size_t from;
    unsigned char kinds;
} in_edge;

typedef struct edge_builder {
    nj_dag *dag;
    size_t reader; /* the node whose upstream edges are being collected */
    in_edge *items;
    size_t len, cap;
    size_t total_cap; /* capacity of dag->up_items / up_kinds */
} edge_builder;

static void add_in_edge(edge_builder *eb, size_t from, int kinds)
{
    if (from == eb->reader) {
        eb->dag->self_kinds[from] |= (unsigned char)kinds;
        return;
    }
    in_edge e = {from, (unsigned char)kinds};
    NJ_PUSH(eb->items, eb->len, eb->cap, e);
}

static void add_path_edge(void *ctx, const nj_pathset_entry *e)
{
    edge_builder *eb = ctx;
    /* A stage reading its own output is not an edge. */
    if (e->owner != eb->reader) add_in_edge(eb, e->owner, NJ_EDGE_PATH);
}

static int in_edge_cmp(const void *a, const void *b)
{
    const in_edge *x = a, *y = b;
    return x->from < y->from ? -1 : x->from > y->from;
}

/* Sorts the collected edges into node `reader`'s upstream list, merging the
 * bits of edges from the same node. */
static void close_node(edge_builder *eb)
{
    nj_dag *dag = eb->dag;
    size_t u = dag->up_start[eb->reader];
    if (eb->len > 1) qsort(eb->items, eb->len, sizeof(*eb->items), in_edge_cmp);
    if (u + eb->len > eb->total_cap) {
        size_t cap = eb->total_cap;
        nj_grow(&dag->up_items, &cap, u + eb->len, sizeof(*dag->up_items));
        cap = eb->total_cap;
        nj_grow(&dag->up_kinds, &cap, u + eb->len, sizeof(*dag->up_kinds));
        eb->total_cap = cap;
    }
    for (size_t k = 0; k < eb->len; k++) {
        if (u > dag->up_start[eb->reader] && dag->up_items[u - 1] == eb->items[k].from) {
            dag->up_kinds[u - 1] |= eb->items[k].kinds;
            continue;
        }
        dag->up_items[u] = eb->items[k].from;
        dag->up_kinds[u++] = eb->items[k].kinds;
    }
    dag->up_start[eb->reader + 1] = u;
    eb->len = 0;
}

static void add_edges(nj_dag *dag, const nj_pipeline *p)
{
    size_t n = dag->n;
    /* Path edges: an output of a equals a dep of b, or one lies inside the
     * other. The outputs are indexed once so each dep is one lookup; stage
     * names likewise. */
    nj_pathset outs = {0};
    nj_strmap names;
    nj_strmap_init(&names);
    for (size_t a = 0; a < n; a++) {
        nj_strmap_put(&names, p->stages[a].name, &p->stages[a]);
        for (size_t i = 0; i < p->stages[a].nouts; i++)
            nj_pathset_add(&outs, p->stages[a].outs[i].path, a, i);
    }
    nj_pathset_sort(&outs);
    edge_builder eb = {.dag = dag, .total_cap = n + 1};
    for (size_t b = 0; b < n; b++) {
        const nj_stage *sb = &p->stages[b];
        eb.reader = b;
        for (size_t k = 0; k < sb->ndeps; k++) {
            const nj_dep *dep = &sb->deps[k];
            const nj_stage *a;
            if (dep->path) {
                nj_pathset_overlaps(&outs, dep->path, add_path_edge, &eb);
            } else if (dep->stage && (a = nj_strmap_get(&names, dep->stage)) && a != sb) {
                add_in_edge(&eb, (size_t)(a - p->stages), NJ_EDGE_WINDOW);
            }
        }
        for (size_t k = 0; k < sb->nuses; k++) {
            const nj_stage *a = nj_strmap_get(&names, sb->uses[k].name);
            if (a && a != sb) add_in_edge(&eb, (size_t)(a - p->stages), NJ_EDGE_REF);
        }
        /* `needs: [self]` stays: it is a cycle the user must hear about. */
        for (size_t k = 0; k < sb->nneeds; k++) {
            const nj_stage *a = nj_strmap_get(&names, sb->needs[k].name);
            if (a) add_in_edge(&eb, (size_t)(a - p->stages), NJ_EDGE_NEEDS);
        }
        close_node(&eb);
    }
    free(eb.items);
    nj_strmap_release(&names);
    nj_pathset_release(&outs);
}

/* Derives the downstream lists from the upstream ones. Visiting the readers
 * in ascending order leaves each downstream list ascending. */
static void index_downstream(nj_dag *dag)
{
    size_t n = dag->n, count = dag->up_start[n];
    dag->down_start = nj_xcalloc(n + 1, sizeof(size_t));
    dag->down_items = nj_xcalloc(count, sizeof(size_t));
    for (size_t k = 0; k < count; k++)
        dag->down_start[dag->up_items[k] + 1]++;
    for (size_t i = 0; i < n; i++)
        dag->down_start[i + 1] += dag->down_start[i];
    size_t *fill = nj_xcalloc(n + 1, sizeof(size_t));
    memcpy(fill, dag->down_start, (n + 1) * sizeof(size_t));
    for (size_t b = 0; b < n; b++)
        for (size_t k = dag->up_start[b]; k < dag->up_start[b + 1]; k++)
            dag->down_items[fill[dag->up_items[k]]++] = b;
    free(fill);
}

/* A binary min-heap of node indexes: the ready node first in the file. */
typedef struct ready_heap {
    size_t *items;
    size_t len;
} ready_heap;

static void heap_push(ready_heap *h, size_t v)
{
    size_t i = h->len++;
    while (i > 0 && h->items[(i - 1) / 2] > v) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = v;
}

static size_t heap_pop(ready_heap *h)
{
    size_t top = h->items[0], last = h->items[--h->len], i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->len) break;
        if (c + 1 < h->len && h->items[c + 1] < h->items[c]) c++;
        if (h->items[c] >= last) break;
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->len > 0) h->items[i] = last;
    return top;
}

/* Kahn's algorithm, always taking the ready node that comes first in the
 * file (a heap keyed by node index). Returns how many nodes got an order;
 * the rest are on or behind a cycle and are flagged in `done` as 0. */
static size_t topo_sort(nj_dag *dag, unsigned char *done)
{
    size_t n = dag->n, emitted = 0;
    size_t *indegree = nj_xcalloc(n, sizeof(*indegree));
    ready_heap ready = {nj_xcalloc(n, sizeof(size_t)), 0};
    for (size_t i = 0; i < n; i++) {
        indegree[i] = dag->up_start[i + 1] - dag->up_start[i] + (dag->self_kinds[i] != 0);
        if (indegree[i] == 0) heap_push(&ready, i);
    }
    while (ready.len > 0) {
        size_t next = heap_pop(&ready), k;
        done[next] = 1;
        dag->order[emitted++] = next;
        const size_t *down = nj_dag_downstream(dag, next, &k);
        for (size_t j = 0; j < k; j++)
            if (--indegree[down[j]] == 0) heap_push(&ready, down[j]);
    }
    free(ready.items);
    free(indegree);
    return emitted;
}

/* Looks for a path from `start` back to itself through nodes not in `done`,
 * depth first, successors in file order; an edge that closes the cycle is
 * taken as soon as it is seen, so "a -> a" wins over a longer loop. Writes
 * the path (without the repeated start) to `path` and returns its length, or
 * 0 when start is not on a cycle (it merely sits behind one).
 *
 * Example: a needs c, b needs a, c needs b (edges c->a, a->b, b->c). From a:
 * a has no edge back to a, descend to b; b has none, descend to c; c -> a
 * closes it: path a, b, c, reported as "a -> b -> c -> a". */
static size_t find_cycle(const nj_dag *dag, const unsigned char *done, size_t start, size_t *path)
{
    size_t n = dag->n;
    unsigned char *seen = nj_xcalloc(n, 1);
    size_t *next_child = nj_xcalloc(n, sizeof(*next_child)); /* position in the down list */
    size_t depth = 0, found = 0;
    path[depth++] = start;
    seen[start] = 1;
    while (depth > 0) {
        size_t u = path[depth - 1], k;
        if (next_child[u] == 0 && nj_dag_edge_kinds(dag, u, start)) {
            found = depth;
            break;
        }
        const size_t *down = nj_dag_downstream(dag, u, &k);
        size_t j = next_child[u];
        while (j < k && (done[down[j]] || seen[down[j]]))
            j++;
        if (j == k) {
            next_child[u] = k + 1; /* never 0 again: the closing check is done */
            depth--;
            continue;
        }
        next_child[u] = j + 1;
        seen[down[j]] = 1;
        path[depth++] = down[j];
    }
    free(seen);
    free(next_child);
    return found;
}

/* Marks in `mark` every node not in `done` reachable from i along the edges
 * (forward or backward). */
static void reach(const nj_dag *dag, const unsigned char *done, size_t i, int forward,
                  unsigned char *mark)
{
    size_t *stack = nj_xcalloc(dag->n, sizeof(*stack));
    size_t top = 0;
    mark[i] = 1;
    stack[top++] = i;
    while (top > 0) {
        size_t u = stack[--top], k;
        const size_t *next = forward ? nj_dag_downstream(dag, u, &k) : nj_dag_upstream(dag, u, &k);
        for (size_t j = 0; j < k; j++) {
            size_t v = next[j];
            if (!done[v] && !mark[v]) {
                mark[v] = 1;
                stack[top++] = v;
            }
        }
    }
    free(stack);
}

/* Reports one cycle per strongly connected component among the unsorted
 * nodes, starting at the component's first stage in file order. Returns the
 * number reported; err gets the first. */
static size_t report_cycles(const nj_dag *dag, const nj_pipeline *p, const unsigned char *done,
                            nj_strs *diags, nj_err *err)
{
    size_t n = dag->n, reported = 0;
    unsigned char *covered = nj_xcalloc(n, 1);
    unsigned char *fwd = nj_xcalloc(n, 1), *back = nj_xcalloc(n, 1);
    size_t *path = nj_xcalloc(n, sizeof(*path));
    for (size_t s = 0; s < n; s++) {
        if (done[s] || covered[s]) continue;
        covered[s] = 1;
        size_t len = find_cycle(dag, done, s, path);
        if (len == 0) continue;
        /* Everything in s's component gets no report of its own. */
        memset(fwd, 0, n);
        memset(back, 0, n);
        reach(dag, done, s, 1, fwd);
        reach(dag, done, s, 0, back);
        for (size_t v = 0; v < n; v++)
            if (fwd[v] && back[v]) covered[v] = 1;
        nj_buf b;
        nj_buf_init(&b);
        for (size_t k = 0; k < len; k++)
            nj_buf_printf(&b, "%s -> ", p->stages[path[k]].name);
        nj_buf_puts(&b, p->stages[s].name);
        if (diags) nj_diag_add(diags, p->file, p->stages[s].mark, "dependency cycle: %s", b.data);
        if (reported++ == 0) nj_err_set(err, NJ_ECYCLE, "dependency cycle: %s", b.data);
        nj_buf_release(&b);
    }
    free(covered);
    free(fwd);
    free(back);
    free(path);
    return reported;
}

/* An unpartitioned stage has one result for all dates, so it cannot read a
 * partitioned stage's output through a path either (the spec already
 * refuses stage deps, needs and references). Returns the problems found. */
static size_t check_partitions(const nj_dag *dag, const nj_pipeline *p, nj_strs *diags,
                               nj_err *err)
{
    size_t n = dag->n, problems = 0;
    if (!p->partition.enabled) return 0;
    for (size_t b = 0; b < n; b++) {
        if (p->stages[b].partitioned) continue;
        for (size_t k = dag->up_start[b]; k < dag->up_start[b + 1]; k++) {
            size_t a = dag->up_items[k];
            if (!(dag->up_kinds[k] & NJ_EDGE_PATH) || !p->stages[a].partitioned) continue;
            nj_diag_add(diags, p->file, p->stages[b].mark,
                        "stage '%s' (partitioned: false) cannot read partitioned stage '%s'",
                        p->stages[b].name, p->stages[a].name);
            if (!problems++)
                nj_err_set(err, NJ_EPIPELINE,
                           "stage '%s' (partitioned: false) cannot read partitioned stage '%s'",
                           p->stages[b].name, p->stages[a].name);
        }
    }
    return problems;
}

int nj_dag_build(const nj_pipeline *p, nj_dag **out, nj_strs *diags, nj_err *err)
{
    *out = NULL;
    nj_dag *dag = nj_xcalloc(1, sizeof(*dag));
    size_t n = dag->n = p->nstages;
    dag->order = nj_xcalloc(n, sizeof(*dag->order));
    dag->up_start = nj_xcalloc(n + 1, sizeof(size_t));
    dag->self_kinds = nj_xcalloc(n, 1);
    dag->up_items = nj_xcalloc(n + 1, sizeof(size_t)); /* grown as edges come */
    dag->up_kinds = nj_xcalloc(n + 1, 1);
    add_edges(dag, p);
    index_downstream(dag);

    unsigned char *done = nj_xcalloc(n, 1);
    size_t sorted = topo_sort(dag, done);
    if (sorted < n) {
        size_t cycles = report_cycles(dag, p, done, diags, err);
        free(done);
        nj_dag_free(dag);
        if (cycles == 0) NJ_BUG("%zu stages unsorted but no cycle found", n - sorted);
        if (cycles > 1 && err) {
            size_t used = strlen(err->msg);
            snprintf(err->msg + used, sizeof(err->msg) - used, " (and %zu more)", cycles - 1);
        }
        return NJ_ECYCLE;
    }
    free(done);
    if (check_partitions(dag, p, diags, err) > 0) {
        nj_dag_free(dag);
        return NJ_EPIPELINE;
    }
    *out = dag;
    return 0;
}

size_t nj_dag_count(const nj_dag *dag)
{
    return dag->n;
}

const size_t *nj_dag_order(const nj_dag *dag)
{
    return dag->order;
}

const size_t *nj_dag_upstream(const nj_dag *dag, size_t i, size_t *n)
{
    *n = dag->up_start[i + 1] - dag->up_start[i];
    return dag->up_items + dag->up_start[i];
}

const size_t *nj_dag_downstream(const nj_dag *dag, size_t i, size_t *n)
{
    *n = dag->down_start[i + 1] - dag->down_start[i];
    return dag->down_items + dag->down_start[i];
}

int nj_dag_edge_kinds(const nj_dag *dag, size_t from, size_t to)
{
    if (from >= dag->n || to >= dag->n) return 0;
    if (from == to) return dag->self_kinds[to];
    size_t lo = dag->up_start[to], hi = dag->up_start[to + 1];
    while (lo < hi) { /* the upstream list is ascending */
        size_t mid = lo + (hi - lo) / 2;
        if (dag->up_items[mid] == from) return dag->up_kinds[mid];
        if (dag->up_items[mid] < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static void mark_reachable(const nj_dag *dag, size_t i, unsigned char *mark, int downstream)
{
    size_t *stack = nj_xcalloc(dag->n + 1, sizeof(*stack));
    size_t top = 0;
    mark[i] = 1;
    stack[top++] = i;
    while (top > 0) {
        size_t u = stack[--top], k;
        const size_t *next =
            downstream ? nj_dag_downstream(dag, u, &k) : nj_dag_upstream(dag, u, &k);
        for (size_t j = 0; j < k; j++)
            if (!mark[next[j]]) {
                mark[next[j]] = 1;
                stack[top++] = next[j];
            }
    }
    free(stack);
}

void nj_dag_mark_downstream(const nj_dag *dag, size_t i, unsigned char *mark)
{
    mark_reachable(dag, i, mark, 1);
}

void nj_dag_mark_upstream(const nj_dag *dag, size_t i, unsigned char *mark)
{
    mark_reachable(dag, i, mark, 0);
}

/* A double-quoted dot ID. */
static void dot_id(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void nj_dag_write_dot(const nj_dag *dag, const nj_pipeline *p, FILE *f)
{
    static const struct {
        int bit;
        const char *label;
    } kinds[] = {{NJ_EDGE_PATH, "path"}, {NJ_EDGE_REF, "ref"}, {NJ_EDGE_NEEDS, "needs"}};
    fputs("digraph ", f);
    dot_id(f, p->name ? p->name : "");
    fputs(" {\n", f);
    for (size_t i = 0; i < dag->n; i++) {
        fputs("    ", f);
        dot_id(f, p->stages[i].name);
        fputs(";\n", f);
    }
    for (size_t from = 0; from < dag->n; from++) {
        size_t k;
        const size_t *down = nj_dag_downstream(dag, from, &k);
        for (size_t j = 0; j < k; j++) {
            int bits = nj_dag_edge_kinds(dag, from, down[j]);
            fputs("    ", f);
            dot_id(f, p->stages[from].name);
            fputs(" -> ", f);
            dot_id(f, p->stages[down[j]].name);
            fputs(" [label=\"", f);
            const char *sep = "";
            for (size_t b = 0; b < sizeof(kinds) / sizeof(kinds[0]); b++)
                if (bits & kinds[b].bit) {
                    fprintf(f, "%s%s", sep, kinds[b].label);
                    sep = ",";
                }
            fputs("\"];\n", f);
        }
    }
    fputs("}\n", f);
}

void nj_dag_write_text(const nj_dag *dag, const nj_pipeline *p, FILE *f)
{
    for (size_t k = 0; k < dag->n; k++) {
        size_t i = dag->order[k], nup;
        const size_t *up = nj_dag_upstream(dag, i, &nup);
        fputs(p->stages[i].name, f);
        for (size_t j = 0; j < nup; j++)
            fprintf(f, "%s%s", j == 0 ? " <- " : ", ", p->stages[up[j]].name);
        fputc('\n', f);
    }
}
