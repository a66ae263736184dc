/* test_plan.c - selecting stages with --only/--from/--until. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/plan.h"
#include "support.h"

TestSuite(plan, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 10);

/* a -> b -> c, a -> d, and e on its own. */
static const char pipeline_text[] = "pipeline: p\n"
                                    "stages:\n"
                                    "  a: {cmd: x, outs: {o: a.txt}}\n"
                                    "  b: {cmd: x, deps: [a.txt], outs: {o: b.txt}}\n"
                                    "  c: {cmd: x, needs: [b]}\n"
                                    "  d: {cmd: 'cat {{stages.a.outs.o}}'}\n"
                                    "  e: {cmd: x}\n";

static char *plan_names(const char *only, const char *from, const char *until, int *rc_out,
                        nj_err *err)
{
    nj_test_write("p.yaml", pipeline_text);
    nj_pipeline *p;
    nj_dag *dag;
    nj_strs diags = {0};
    cr_assert_eq(nj_pipeline_load("p.yaml", &p, &diags, err), 0, "%s", err->msg);
    cr_assert_eq(nj_dag_build(p, &dag, &diags, err), 0);
    nj_selection sel = {0};
    if (only) nj_strs_push(&sel.only, only);
    if (from) nj_strs_push(&sel.from, from);
    if (until) nj_strs_push(&sel.until, until);
    nj_plan *plan = NULL;
    *rc_out = nj_plan_build_date(p, dag, "2001-01-01", &sel, &plan, err);
    nj_buf b;
    nj_buf_init(&b);
    for (size_t i = 0; plan && i < plan->n; i++) {
        nj_buf_printf(&b, "%s%s", i ? " " : "", plan->nodes[i].stage->name);
        for (size_t j = 0; j < plan->nodes[i].nupstream; j++)
            nj_buf_printf(&b, "%s%s", j ? "," : "<", plan->nodes[plan->nodes[i].upstream[j]].stage->name);
    }
    nj_plan_free(plan);
    nj_dag_free(dag);
    nj_pipeline_free(p);
    nj_strs_release(&sel.only);
    nj_strs_release(&sel.from);
    nj_strs_release(&sel.until);
    nj_strs_release(&diags);
    char *s = nj_buf_detach(&b);
    nj_buf_release(&b);
    return s;
}

static void assert_plan(const char *only, const char *from, const char *until, const char *want)
{
    nj_err err = {0};
    int rc;
    char *got = plan_names(only, from, until, &rc, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_str_eq(got, want);
    free(got);
}

Test(plan, everything_in_topological_order_with_edges)
{
    assert_plan(NULL, NULL, NULL, "a b<a c<b d<a e");
}

Test(plan, from_selects_downstream)
{
    assert_plan(NULL, "b", NULL, "b c<b");
}

Test(plan, until_selects_upstream)
{
    assert_plan(NULL, NULL, "c", "a b<a c<b");
}

Test(plan, only_selects_exactly_and_drops_edges_to_unselected)
{
    assert_plan("b", NULL, NULL, "b");
}

Test(plan, different_kinds_intersect)
{
    assert_plan(NULL, "a", "b", "a b<a");
}

Test(plan, unknown_stage_is_a_usage_error_with_suggestion)
{
    nj_err err = {0};
    int rc;
    char *got = plan_names(NULL, "bb", NULL, &rc, &err);
    free(got);
    cr_assert_eq(rc, NJ_EUSAGE);
    cr_assert_str_eq(err.msg, "unknown stage 'bb' (did you mean 'b'?)");
}
