/* dag.c - the stage graph of a loaded pipeline: edges, topological order,
 * cycle reports, dot and text output.
 *
 * Node i is p->stages[i]. The graph is small (tens to hundreds of stages), so
 * edges live in an n*n matrix of NJ_EDGE_* bits, from which the upstream and
 * downstream lists (ascending) are derived once. An nj_dag owns its arrays
 * and borrows nothing after nj_dag_build() returns, except that node indexes
 * refer to the pipeline it was built from.
 */
#include "nightjar/dag.h"

#include "nightjar/pathset.h"

#include <stdlib.h>
#include <string.h>

#include "nightjar/fs.h"

struct nj_dag {
    size_t n;
    unsigned char *kinds; /* kinds[from * n + to]: NJ_EDGE_* bits */
    size_t *order;        /* n node indexes, topological, file order among ready */
    size_t *up_start;     /* up_items[up_start[i] .. up_start[i+1]) are i's upstream */
    size_t *up_items;
    size_t *down_start;
    size_t *down_items;
};

void nj_dag_free(nj_dag *dag)
{
    if (!dag) return;
    free(dag->kinds);
    free(dag->order);
    free(dag->up_start);
    free(dag->up_items);
    free(dag->down_start);
    free(dag->down_items);
    free(dag);
}

static size_t stage_index(const nj_pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->nstages; i++)
        if (strcmp(p->stages[i].name, name) == 0) return i;
    return p->nstages;
}

typedef struct path_edge {
    nj_dag *dag;
    size_t reader;
} path_edge;

static void add_path_edge(void *ctx, const nj_pathset_entry *e)
{
    path_edge *pe = ctx;
    /* A stage reading its own output is not an edge. */
    if (e->owner != pe->reader) pe->dag->kinds[e->owner * pe->dag->n + pe->reader] |= NJ_EDGE_PATH;
}

static void add_edges(nj_dag *dag, const nj_pipeline *p)
{
    size_t n = dag->n;
    /* Path edges: an output of a equals a dep of b, or one lies inside the
     * other. The outputs are indexed once so each dep is one lookup. */
    nj_pathset outs = {0};
    for (size_t a = 0; a < n; a++)
        for (size_t i = 0; i < p->stages[a].nouts; i++)
            nj_pathset_add(&outs, p->stages[a].outs[i].path, a, i);
    nj_pathset_sort(&outs);
    for (size_t b = 0; b < n; b++) {
        const nj_stage *sb = &p->stages[b];
        path_edge pe = {dag, b};
        for (size_t k = 0; k < sb->ndeps; k++) {
            const nj_dep *dep = &sb->deps[k];
            if (dep->path) {
                nj_pathset_overlaps(&outs, dep->path, add_path_edge, &pe);
            } else if (dep->stage) {
                size_t a = stage_index(p, dep->stage);
                if (a < n && a != b) dag->kinds[a * n + b] |= NJ_EDGE_WINDOW;
            }
        }
        for (size_t k = 0; k < sb->nuses; k++) {
            size_t a = stage_index(p, sb->uses[k].name);
            if (a < n && a != b) dag->kinds[a * n + b] |= NJ_EDGE_REF;
        }
        /* `needs: [self]` stays: it is a cycle the user must hear about. */
        for (size_t k = 0; k < sb->nneeds; k++) {
            size_t a = stage_index(p, sb->needs[k].name);
            if (a < n) dag->kinds[a * n + b] |= NJ_EDGE_NEEDS;
        }
    }
    nj_pathset_release(&outs);
}

/* Fills the upstream/downstream lists from the matrix, without self-edges. */
static void index_edges(nj_dag *dag)
{
    size_t n = dag->n, count = 0;
    for (size_t i = 0; i < n * n; i++)
        count += dag->kinds[i] && i / n != i % n;
    dag->up_start = nj_xcalloc(n + 1, sizeof(size_t));
    dag->down_start = nj_xcalloc(n + 1, sizeof(size_t));
    dag->up_items = nj_xcalloc(count, sizeof(size_t));
    dag->down_items = nj_xcalloc(count, sizeof(size_t));
    size_t u = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        dag->up_start[i] = u;
        dag->down_start[i] = d;
        for (size_t j = 0; j < n; j++) {
            if (j == i) continue;
            if (dag->kinds[j * n + i]) dag->up_items[u++] = j;
            if (dag->kinds[i * n + j]) dag->down_items[d++] = j;
        }
    }
    dag->up_start[n] = u;
    dag->down_start[n] = d;
}

/* Kahn's algorithm, always taking the ready node that comes first in the
 * file. Returns how many nodes got an order; the rest are on or behind a
 * cycle and are flagged in `done` as 0. */
static size_t topo_sort(nj_dag *dag, unsigned char *done)
{
    size_t n = dag->n, emitted = 0;
    size_t *indegree = nj_xcalloc(n, sizeof(*indegree));
    for (size_t from = 0; from < n; from++)
        for (size_t to = 0; to < n; to++)
            indegree[to] += dag->kinds[from * n + to] != 0;
    for (;;) {
        size_t next = 0;
        while (next < n && (done[next] || indegree[next] != 0))
            next++;
        if (next == n) break;
        done[next] = 1;
        dag->order[emitted++] = next;
        for (size_t to = 0; to < n; to++)
            if (dag->kinds[next * n + to]) indegree[to]--;
    }
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
    size_t *next_child = nj_xcalloc(n, sizeof(*next_child));
    size_t depth = 0, found = 0;
    path[depth++] = start;
    seen[start] = 1;
    while (depth > 0) {
        size_t u = path[depth - 1];
        if (next_child[u] == 0 && dag->kinds[u * n + start]) {
            found = depth;
            break;
        }
        size_t v = next_child[u];
        while (v < n && (done[v] || seen[v] || !dag->kinds[u * n + v]))
            v++;
        if (v == n) {
            next_child[u] = n;
            depth--;
            continue;
        }
        next_child[u] = v + 1;
        seen[v] = 1;
        path[depth++] = v;
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
    size_t n = dag->n;
    size_t *stack = nj_xcalloc(n, sizeof(*stack));
    size_t top = 0;
    mark[i] = 1;
    stack[top++] = i;
    while (top > 0) {
        size_t u = stack[--top];
        for (size_t v = 0; v < n; v++) {
            int edge = forward ? dag->kinds[u * n + v] : dag->kinds[v * n + u];
            if (edge && !done[v] && !mark[v]) {
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
        for (size_t a = 0; a < n; a++) {
            if (!(dag->kinds[a * n + b] & NJ_EDGE_PATH) || !p->stages[a].partitioned) continue;
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
    dag->kinds = nj_xcalloc(n * n, 1);
    dag->order = nj_xcalloc(n, sizeof(*dag->order));
    add_edges(dag, p);
    index_edges(dag);

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
    return dag->kinds[from * dag->n + to];
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
