/* test_dag.c - edges from paths, references and needs; topological order;
 * cycles reported as paths; text and dot output. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/dag.h"
#include "nightjar/spec.h"
#include "support.h"

TestSuite(dag, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 10);

static nj_pipeline *load_ok(const char *yaml)
{
    nj_strs diags = {0};
    nj_err err = {0};
    nj_pipeline *p = NULL;
    nj_test_write("p.yaml", yaml);
    cr_assert_eq(nj_pipeline_load("p.yaml", &p, &diags, &err), 0, "%s: %s", err.msg,
                 diags.len ? diags.items[0] : "");
    nj_strs_release(&diags);
    return p;
}

static nj_dag *build_ok(const nj_pipeline *p)
{
    nj_strs diags = {0};
    nj_err err = {0};
    nj_dag *dag = NULL;
    cr_assert_eq(nj_dag_build(p, &dag, &diags, &err), 0, "%s", err.msg);
    cr_assert_eq(diags.len, 0);
    return dag;
}

static size_t idx(const nj_pipeline *p, const char *name)
{
    nj_stage *s = nj_pipeline_stage(p, name);
    cr_assert_not_null(s, "no stage '%s'", name);
    return nj_pipeline_stage_index(p, s);
}

/* "a,b,c": the stage names in topological order. Caller frees. */
static char *order_names(const nj_dag *dag, const nj_pipeline *p)
{
    nj_buf b;
    nj_buf_init(&b);
    const size_t *order = nj_dag_order(dag);
    for (size_t i = 0; i < nj_dag_count(dag); i++)
        nj_buf_printf(&b, "%s%s", i ? "," : "", p->stages[order[i]].name);
    char *s = nj_buf_detach(&b);
    nj_buf_release(&b);
    return s;
}

Test(dag, edges_from_paths_references_and_needs)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "stages:\n"
                             "  fetch: {cmd: f, outs: {raw: data/raw, log: logs/fetch.log}}\n"
                             "  clean:\n"
                             "    cmd: c {{stages.fetch.outs.raw}}\n"
                             "    deps: [data/raw/x.csv]\n"
                             "    outs: {table: data/clean.csv}\n"
                             "  stats: {cmd: s, deps: [data/clean.csv, logs]}\n"
                             "  report: {cmd: r, needs: [stats, fetch]}\n");
    nj_dag *dag = build_ok(p);
    size_t fetch = idx(p, "fetch"), clean = idx(p, "clean"), stats = idx(p, "stats"),
           report = idx(p, "report");
    /* an out directory feeds a dep inside it, and the reference adds its bit */
    cr_assert_eq(nj_dag_edge_kinds(dag, fetch, clean), NJ_EDGE_PATH | NJ_EDGE_REF);
    cr_assert_eq(nj_dag_edge_kinds(dag, clean, stats), NJ_EDGE_PATH);
    /* a dep directory takes in an out file inside it */
    cr_assert_eq(nj_dag_edge_kinds(dag, fetch, stats), NJ_EDGE_PATH);
    cr_assert_eq(nj_dag_edge_kinds(dag, stats, report), NJ_EDGE_NEEDS);
    cr_assert_eq(nj_dag_edge_kinds(dag, fetch, report), NJ_EDGE_NEEDS);
    cr_assert_eq(nj_dag_edge_kinds(dag, clean, fetch), 0, "edges have a direction");
    cr_assert_eq(nj_dag_edge_kinds(dag, clean, report), 0);

    size_t n;
    const size_t *up = nj_dag_upstream(dag, stats, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(up[0], fetch);
    cr_assert_eq(up[1], clean);
    const size_t *down = nj_dag_downstream(dag, fetch, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(down[0], clean);
    cr_assert_eq(down[1], stats);
    cr_assert_eq(down[2], report);
    nj_dag_upstream(dag, fetch, &n);
    cr_assert_eq(n, 0);
    nj_dag_free(dag);
    nj_pipeline_free(p);
}

Test(dag, a_stage_reading_its_own_output_is_not_an_edge)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "stages:\n"
                             "  grow: {cmd: g, deps: [state/db], outs: {db: state/db}}\n");
    nj_dag *dag = build_ok(p);
    size_t n;
    nj_dag_upstream(dag, 0, &n);
    cr_assert_eq(n, 0);
    cr_assert_eq(nj_dag_edge_kinds(dag, 0, 0), 0);
    nj_dag_free(dag);
    nj_pipeline_free(p);
}

Test(dag, order_is_topological_with_file_order_among_ready_stages)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "stages:\n"
                             "  publish: {cmd: p, needs: [train]}\n"
                             "  fetch: {cmd: f}\n"
                             "  train: {cmd: t, needs: [fetch]}\n"
                             "  lint: {cmd: l}\n");
    nj_dag *dag = build_ok(p);
    char *order = order_names(dag, p);
    /* after fetch, train (ready, earlier in the file than lint) goes first */
    cr_assert_str_eq(order, "fetch,train,publish,lint");
    free(order);
    nj_dag_free(dag);
    nj_pipeline_free(p);
}

Test(dag, reports_cycle_as_path)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "stages:\n"
                             "  ok: {cmd: o}\n"
                             "  b: {cmd: b, needs: [c, ok]}\n"
                             "  c: {cmd: c, needs: [a]}\n"
                             "  a: {cmd: a, needs: [b]}\n"
                             "  after: {cmd: z, needs: [a]}\n");
    nj_strs diags = {0};
    nj_err err = {0};
    nj_dag *dag = (nj_dag *)1;
    cr_assert_eq(nj_dag_build(p, &dag, &diags, &err), NJ_ECYCLE);
    cr_assert_null(dag);
    /* starts at b, the first of the cycle in file order; 'after' merely sits
     * behind the cycle and is not reported */
    cr_assert_eq(diags.len, 1);
    cr_assert_str_eq(diags.items[0], "p.yaml:4:3: dependency cycle: b -> a -> c -> b");
    cr_assert_str_eq(err.msg, "dependency cycle: b -> a -> c -> b");
    nj_strs_release(&diags);
    nj_pipeline_free(p);
}

Test(dag, reports_one_cycle_per_knot_and_self_needs)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "stages:\n"
                             "  a: {cmd: a, needs: [b]}\n"
                             "  b: {cmd: b, needs: [a, c]}\n"
                             "  c: {cmd: c, needs: [b]}\n"
                             "  me: {cmd: m, needs: [me]}\n");
    nj_strs diags = {0};
    nj_err err = {0};
    nj_dag *dag = NULL;
    cr_assert_eq(nj_dag_build(p, &dag, &diags, &err), NJ_ECYCLE);
    cr_assert_eq(diags.len, 2);
    cr_assert_str_eq(diags.items[0], "p.yaml:3:3: dependency cycle: a -> b -> a");
    cr_assert_str_eq(diags.items[1], "p.yaml:6:3: dependency cycle: me -> me");
    cr_assert_str_eq(err.msg, "dependency cycle: a -> b -> a (and 1 more)");
    nj_strs_release(&diags);
    nj_pipeline_free(p);
}

Test(dag, marks_everything_up_or_downstream)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "stages:\n"
                             "  a: {cmd: a}\n"
                             "  b: {cmd: b, needs: [a]}\n"
                             "  c: {cmd: c, needs: [b]}\n"
                             "  d: {cmd: d, needs: [a]}\n"
                             "  e: {cmd: e}\n");
    nj_dag *dag = build_ok(p);
    unsigned char mark[5] = {0};
    nj_dag_mark_downstream(dag, 1, mark);
    cr_assert_arr_eq(mark, ((unsigned char[]){0, 1, 1, 0, 0}), 5);
    memset(mark, 0, sizeof(mark));
    nj_dag_mark_upstream(dag, 2, mark);
    cr_assert_arr_eq(mark, ((unsigned char[]){1, 1, 1, 0, 0}), 5);
    memset(mark, 0, sizeof(mark));
    nj_dag_mark_downstream(dag, 0, mark);
    cr_assert_arr_eq(mark, ((unsigned char[]){1, 1, 1, 1, 0}), 5);
    nj_dag_free(dag);
    nj_pipeline_free(p);
}

/* Runs `write` into a string. Caller frees. */
static char *capture(void (*write)(const nj_dag *, const nj_pipeline *, FILE *), const nj_dag *dag,
                     const nj_pipeline *p)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    write(dag, p, f);
    fclose(f);
    return text;
}

static const char *text_yaml = "pipeline: demo \"v2\"\n"
                               "stages:\n"
                               "  report: {cmd: r, needs: [train, prepare]}\n"
                               "  prepare: {cmd: p, outs: {t: t.csv}}\n"
                               "  train:\n"
                               "    cmd: t {{stages.prepare.outs.t}}\n"
                               "    deps: [t.csv]\n";

Test(dag, writes_text_in_topological_order)
{
    nj_pipeline *p = load_ok(text_yaml);
    nj_dag *dag = build_ok(p);
    char *text = capture(nj_dag_write_text, dag, p);
    cr_assert_str_eq(text, "prepare\n"
                           "train <- prepare\n"
                           "report <- prepare, train\n");
    free(text);
    nj_dag_free(dag);
    nj_pipeline_free(p);
}

Test(dag, writes_dot_with_edge_kinds)
{
    nj_pipeline *p = load_ok(text_yaml);
    nj_dag *dag = build_ok(p);
    char *dot = capture(nj_dag_write_dot, dag, p);
    cr_assert_str_eq(dot, "digraph \"demo \\\"v2\\\"\" {\n"
                          "    \"report\";\n"
                          "    \"prepare\";\n"
                          "    \"train\";\n"
                          "    \"prepare\" -> \"report\" [label=\"needs\"];\n"
                          "    \"prepare\" -> \"train\" [label=\"path,ref\"];\n"
                          "    \"train\" -> \"report\" [label=\"needs\"];\n"
                          "}\n");
    free(dot);
    nj_dag_free(dag);
    nj_pipeline_free(p);
}

/* The order the old n*n implementation produced, computed the slow way:
 * repeatedly take the first stage in the file whose upstream are all done. */
static void reference_order(const nj_dag *dag, size_t n, size_t *order)
{
    unsigned char *done = calloc(n, 1);
    for (size_t emitted = 0; emitted < n; emitted++) {
        size_t next = 0;
        for (; next < n; next++) {
            if (done[next]) continue;
            size_t k, ready = 1;
            const size_t *up = nj_dag_upstream(dag, next, &k);
            for (size_t j = 0; j < k; j++)
                ready &= done[up[j]];
            if (ready) break;
        }
        cr_assert_lt(next, n);
        done[next] = 1;
        order[emitted] = next;
    }
    free(done);
}

Test(dag, a_large_layered_graph_has_the_same_order_and_edges_as_the_definition)
{
    /* 30 layers x 40 stages, written in reverse layer order so the file order
     * and the graph order disagree; each stage reads two outputs of the
     * layer below through paths, and every fifth also needs one through
     * `needs` (which adds a bit to an existing edge) and references it. */
    enum { L = 30, W = 40 };
    nj_buf y;
    nj_buf_init(&y);
    nj_buf_puts(&y, "pipeline: big\nstages:\n");
    for (int l = L - 1; l >= 0; l--)
        for (int i = 0; i < W; i++) {
            nj_buf_printf(&y, "  s_%d_%d:\n    outs: {o: out/%d/%d}\n", l, i, l, i);
            if (l == 0) {
                nj_buf_puts(&y, "    cmd: c\n");
                continue;
            }
            nj_buf_printf(&y, "    deps: [out/%d/%d, out/%d/%d]\n", l - 1, i, l - 1, (i + 7) % W);
            if (i % 5 == 0)
                nj_buf_printf(&y, "    cmd: c {{stages.s_%d_%d.outs.o}}\n    needs: [s_%d_%d]\n",
                              l - 1, i, l - 1, i);
            else
                nj_buf_puts(&y, "    cmd: c\n");
        }
    nj_pipeline *p = load_ok(y.data);
    nj_buf_release(&y);
    nj_dag *dag = build_ok(p);
    size_t n = nj_dag_count(dag);
    cr_assert_eq(n, L * W);

    size_t *want = calloc(n, sizeof(size_t));
    reference_order(dag, n, want);
    cr_assert_arr_eq(nj_dag_order(dag), want, n * sizeof(size_t));
    free(want);

    char name[64];
    snprintf(name, sizeof(name), "s_%d_%d", 4, 5);
    size_t b = idx(p, name);
    snprintf(name, sizeof(name), "s_%d_%d", 3, 5);
    size_t a = idx(p, name);
    snprintf(name, sizeof(name), "s_%d_%d", 3, 12);
    size_t a2 = idx(p, name);
    cr_assert_eq(nj_dag_edge_kinds(dag, a, b), NJ_EDGE_PATH | NJ_EDGE_REF | NJ_EDGE_NEEDS);
    cr_assert_eq(nj_dag_edge_kinds(dag, a2, b), NJ_EDGE_PATH);
    cr_assert_eq(nj_dag_edge_kinds(dag, b, a), 0);
    size_t k;
    const size_t *up = nj_dag_upstream(dag, b, &k);
    cr_assert_eq(k, 2, "edges of several kinds between two stages are one edge");
    cr_assert_lt(up[0], up[1], "upstream lists are ascending");
    for (size_t i = 0; i < n; i++) {
        const size_t *down = nj_dag_downstream(dag, i, &k);
        for (size_t j = 1; j < k; j++)
            cr_assert_lt(down[j - 1], down[j], "downstream lists are ascending");
        for (size_t j = 0; j < k; j++)
            cr_assert_neq(nj_dag_edge_kinds(dag, i, down[j]), 0);
    }
    nj_dag_free(dag);
    nj_pipeline_free(p);
}

Test(dag, a_self_need_inside_a_larger_knot_is_reported_as_the_shortest_loop)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "stages:\n"
                             "  a: {cmd: a, needs: [a, b]}\n"
                             "  b: {cmd: b, needs: [a]}\n"
                             "  c: {cmd: c, needs: [b]}\n");
    nj_strs diags = {0};
    nj_err err = {0};
    nj_dag *dag = NULL;
    cr_assert_eq(nj_dag_build(p, &dag, &diags, &err), NJ_ECYCLE);
    cr_assert_eq(diags.len, 1, "one knot, one report");
    cr_assert_str_eq(diags.items[0], "p.yaml:3:3: dependency cycle: a -> a");
    nj_strs_release(&diags);
    nj_pipeline_free(p);
}
