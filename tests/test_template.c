/* test_template.c - scanning and parsing {{ ... }}, rendering commands with
 * shell quoting, output paths relative or absolute, date arithmetic. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/spec.h"
#include "nightjar/template.h"
#include "support.h"

TestSuite(template, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 10);

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

static const char *demo = "pipeline: demo\n"
                          "params:\n"
                          "  l2: 0.1\n"
                          "  evil: 'x; rm -rf ~'\n"
                          "  quote: \"it's\"\n"
                          "  airports: [ORD, 'New York']\n"
                          "stages:\n"
                          "  prepare:\n"
                          "    cmd: prep {{outs.table}} {{outs.daily}}\n"
                          "    outs: {table: data/table.csv, daily: 'data/{{ds}}/day.csv'}\n"
                          "  train:\n"
                          "    cmd: train --in {{stages.prepare.outs.table}} --out {{outs.model}}\n"
                          "    params: [l2, evil, quote, airports]\n"
                          "    outs: {model: models/model.bin}\n";

/* Renders `tmpl` for stage `stage` of p, asserting success; caller frees. */
static char *render(const nj_pipeline *p, const char *stage, const char *tmpl, const char *ds,
                    int quote, int absolute)
{
    nj_render_ctx ctx = {p, stage ? nj_pipeline_stage(p, stage) : NULL, ds, quote, absolute, NULL};
    nj_err err = {0};
    char *out = NULL;
    cr_assert_eq(nj_template_render(tmpl, &ctx, &out, &err), 0, "%s: %s", tmpl, err.msg);
    return out;
}

#define ASSERT_RENDERS(p, stage, tmpl, ds, quote, want)                                            \
    do {                                                                                           \
        char *got_ = render(p, stage, tmpl, ds, quote, 0);                                         \
        cr_assert_str_eq(got_, want, "%s", tmpl);                                                  \
        free(got_);                                                                                \
    } while (0)

struct seen {
    char exprs[4][32];
    size_t offsets[4];
    size_t n;
    int stop_after;
};

static int record(void *arg, const char *expr, size_t len, size_t offset)
{
    struct seen *s = arg;
    snprintf(s->exprs[s->n], sizeof(s->exprs[0]), "%.*s", (int)len, expr);
    s->offsets[s->n++] = offset;
    return s->n == (size_t)s->stop_after ? 42 : 0;
}

Test(template, scan_visits_trimmed_expressions_with_offsets)
{
    struct seen s = {.stop_after = 0};
    cr_assert_eq(nj_template_scan("a {{ x }} b {{y}}{{ '}}' }}", record, &s, NULL), 0);
    cr_assert_eq(s.n, 3);
    cr_assert_str_eq(s.exprs[0], "x");
    cr_assert_eq(s.offsets[0], 2);
    cr_assert_str_eq(s.exprs[1], "y");
    cr_assert_eq(s.offsets[1], 12);
    cr_assert_str_eq(s.exprs[2], "'}}'", "a quoted literal may contain braces");

    struct seen stop = {.stop_after = 1};
    cr_assert_eq(nj_template_scan("{{a}} {{b}}", record, &stop, NULL), 42);
    cr_assert_eq(stop.n, 1);
}

Test(template, scan_reports_unclosed_braces)
{
    struct seen s = {.stop_after = 0};
    nj_err err = {0};
    cr_assert_eq(nj_template_scan("ok {{a}} {{ b", record, &s, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "unclosed '{{' at offset 9");
    cr_assert_eq(s.n, 1);
}

Test(template, parses_every_expression_form)
{
    nj_expr e;
    cr_assert_eq(nj_template_parse_expr("params.l2", 9, &e, NULL), 0);
    cr_assert_eq(e.kind, NJ_EXPR_PARAM);
    cr_assert_eq(e.name_len, 2);
    cr_assert_eq(strncmp(e.name, "l2", 2), 0);

    const char *so = "stages.fetch.v2.outs.table";
    cr_assert_eq(nj_template_parse_expr(so, strlen(so), &e, NULL), 0);
    cr_assert_eq(e.kind, NJ_EXPR_STAGE_OUT);
    cr_assert_eq(e.stage_len, 8, "stage names may contain dots");
    cr_assert_eq(strncmp(e.stage, "fetch.v2", 8), 0);
    cr_assert_eq(strncmp(e.name, "table", e.name_len), 0);

    cr_assert_eq(nj_template_parse_expr("ds - 2w", 7, &e, NULL), 0);
    cr_assert_eq(e.kind, NJ_EXPR_DS);
    cr_assert_eq(e.day_offset, -14);
    cr_assert_eq(e.nodash, 0);
    cr_assert_eq(nj_template_parse_expr("ds_nodash+3d", 12, &e, NULL), 0);
    cr_assert_eq(e.nodash, 1);
    cr_assert_eq(e.day_offset, 3);
    cr_assert_eq(nj_template_parse_expr("'{{'", 4, &e, NULL), 0);
    cr_assert_eq(e.kind, NJ_EXPR_LITERAL);
    cr_assert_eq(e.name_len, 2);

    const char *dp = "deps.fetch.v2.table";
    cr_assert_eq(nj_template_parse_expr(dp, strlen(dp), &e, NULL), 0);
    cr_assert_eq(e.kind, NJ_EXPR_DEPS);
    cr_assert_eq(e.stage_len, 8, "stage names may contain dots");
    cr_assert_eq(strncmp(e.stage, "fetch.v2", 8), 0);
    cr_assert_eq(e.name_len, 5);
    cr_assert_eq(strncmp(e.name, "table", 5), 0);

    nj_err err = {0};
    const char *bad[] = {"foo",     "params.",    "params.a b",     "outs.a-b",  "ds + 1x",
                         "ds - d",  "dsx",        "stages.a.outs.", "stages..x", "ds - 1d 2d",
                         "'a'b'",   "",           "deps.",          "deps.x",    "deps..t",
                         "deps.x.", "deps.a.b-c", "deps.a b.c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(nj_template_parse_expr(bad[i], strlen(bad[i]), &e, &err), NJ_EFORMAT,
                     "'%s' should not parse", bad[i]);
    nj_template_parse_expr("foo", 3, &e, &err);
    cr_assert_str_eq(err.msg, "unknown template expression '{{foo}}'");
}

Test(template, shell_quotes_only_when_needed)
{
    nj_buf b;
    nj_buf_init(&b);
    nj_shell_quote(&b, "a-Z_0.9/x:y=z@%+,");
    cr_assert_str_eq(b.data, "a-Z_0.9/x:y=z@%+,");
    nj_buf_reset(&b);
    nj_shell_quote(&b, "");
    cr_assert_str_eq(b.data, "''");
    nj_buf_reset(&b);
    nj_shell_quote(&b, "x; rm -rf ~");
    cr_assert_str_eq(b.data, "'x; rm -rf ~'");
    nj_buf_reset(&b);
    nj_shell_quote(&b, "it's $HOME");
    cr_assert_str_eq(b.data, "'it'\\''s $HOME'");
    nj_buf_release(&b);
}

Test(template, command_values_cannot_inject_shell_syntax)
{
    nj_pipeline *p = load_ok(demo);
    ASSERT_RENDERS(p, "train", "run {{params.l2}} {{ params.evil }}", NULL, 1,
                   "run 0.1 'x; rm -rf ~'");
    ASSERT_RENDERS(p, "train", "run {{params.quote}}", NULL, 1, "run 'it'\\''s'");
    ASSERT_RENDERS(p, "train", "run {{params.airports}}", NULL, 1, "run ORD 'New York'");
    /* unquoted (env values, paths): the text as is, list items joined by spaces */
    ASSERT_RENDERS(p, "train", "{{params.evil}}", NULL, 0, "x; rm -rf ~");
    ASSERT_RENDERS(p, "train", "{{params.airports}}", NULL, 0, "ORD New York");
    /* a literal is template text, never quoted */
    ASSERT_RENDERS(p, "train", "echo {{ '{{' }}x}}", NULL, 1, "echo {{x}}");
    ASSERT_RENDERS(p, "train", "plain } and { braces", NULL, 1, "plain } and { braces");
    nj_pipeline_free(p);
}

Test(template, output_paths_relative_or_absolute)
{
    nj_pipeline *p = load_ok(demo);
    char *cmd = nj_pipeline_stage(p, "train")->cmd;
    ASSERT_RENDERS(p, "train", cmd, NULL, 1, "train --in data/table.csv --out models/model.bin");
    char *abs = render(p, "train", cmd, NULL, 1, 1);
    char *want =
        nj_xasprintf("train --in %s/data/table.csv --out %s/models/model.bin", p->dir, p->dir);
    cr_assert_str_eq(abs, want);
    free(abs);
    free(want);
    /* an output path holding {{ds}} is rendered too */
    ASSERT_RENDERS(p, "prepare", "{{outs.daily}}", "2024-03-01", 1, "data/2024-03-01/day.csv");
    nj_pipeline_free(p);
}

Test(template, logical_date_and_arithmetic)
{
    nj_pipeline *p = load_ok(demo);
    ASSERT_RENDERS(p, "train", "{{ds}}", "2024-03-01", 1, "2024-03-01");
    ASSERT_RENDERS(p, "train", "{{ds_nodash}}", "2024-03-01", 1, "20240301");
    ASSERT_RENDERS(p, "train", "{{ds - 1d}}", "2024-03-01", 1, "2024-02-29");
    ASSERT_RENDERS(p, "train", "{{ds + 7d}}", "2024-03-01", 1, "2024-03-08");
    ASSERT_RENDERS(p, "train", "{{ds - 2w}}", "2024-03-01", 1, "2024-02-16");
    ASSERT_RENDERS(p, "train", "{{ds_nodash - 1d}}", "2024-01-01", 1, "20231231");
    ASSERT_RENDERS(p, "train", "{{ds-1d}}..{{ds}}", "2023-03-01", 1, "2023-02-28..2023-03-01");
    nj_pipeline_free(p);
}

Test(template, render_errors_name_the_expression)
{
    nj_pipeline *p = load_ok(demo);
    nj_render_ctx ctx = {p, nj_pipeline_stage(p, "train"), NULL, 1, 0, NULL};
    nj_err err = {0};
    char *out = (char *)1;
    cr_assert_eq(nj_template_render("x {{ds}}", &ctx, &out, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "no logical date to render '{{ds}}'");
    cr_assert_null(out);
    cr_assert_eq(nj_template_render("{{foo}}", &ctx, &out, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "unknown template expression '{{foo}}'");
    cr_assert_eq(nj_template_render("{{outs.nope}}", &ctx, &out, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "unknown output 'nope' in '{{outs.nope}}'");
    cr_assert_eq(nj_template_render("{{stages.x.outs.y}}", &ctx, &out, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "unknown stage 'x' in '{{stages.x.outs.y}}'");
    cr_assert_eq(nj_template_render("{{ x", &ctx, &out, &err), NJ_EFORMAT);
    /* a stage may only see the params it lists (they are part of its key) */
    ctx.stage = nj_pipeline_stage(p, "prepare");
    cr_assert_eq(nj_template_render("{{params.l2}}", &ctx, &out, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "stage 'prepare' does not list param 'l2' used in '{{params.l2}}'");
    ctx.ds = "2024-02-30";
    cr_assert_eq(nj_template_render("{{ds}}", &ctx, &out, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "invalid date '2024-02-30' (expected YYYY-MM-DD)");
    nj_pipeline_free(p);
}

/* features writes one file per date; train reads the 3 days before ds,
 * report the same date, and lookup is built once for all dates. */
static const char *daily = "pipeline: daily\n"
                           "partition: {start: 2001-01-01}\n"
                           "stages:\n"
                           "  lookup:\n"
                           "    cmd: echo\n"
                           "    partitioned: false\n"
                           "    outs: {t: ref/lookup table.csv}\n"
                           "  features:\n"
                           "    cmd: echo {{outs.table}}\n"
                           "    outs: {table: 'data/{{ds}}/f.csv', spaced: 'data/{{ds}} x.csv'}\n"
                           "  train:\n"
                           "    cmd: train {{deps.features.table}} --ref {{deps.lookup.t}}\n"
                           "    deps:\n"
                           "      - {stage: features, out: table, window: [-3d, -1d]}\n"
                           "      - {stage: features, out: spaced, window: [-1d, 0d]}\n"
                           "      - {stage: lookup, out: t}\n"
                           "  report:\n"
                           "    cmd: report {{ deps.features.table }}\n"
                           "    deps: [{stage: features, out: table}]\n";

Test(template, deps_render_each_date_of_the_window_in_order)
{
    nj_pipeline *p = load_ok(daily);
    const char *cmd = nj_pipeline_stage(p, "train")->cmd;
    /* in the middle of the range: the full window, oldest first */
    ASSERT_RENDERS(p, "train", cmd, "2001-03-01", 1,
                   "train data/2001-02-26/f.csv data/2001-02-27/f.csv data/2001-02-28/f.csv "
                   "--ref 'ref/lookup table.csv'");
    /* at the start of the range: dates before partition.start are skipped */
    ASSERT_RENDERS(p, "train", cmd, "2001-01-02", 1,
                   "train data/2001-01-01/f.csv --ref 'ref/lookup table.csv'");
    ASSERT_RENDERS(p, "train", cmd, "2001-01-01", 1, "train  --ref 'ref/lookup table.csv'");
    /* each path is its own quoted word */
    ASSERT_RENDERS(p, "train", "{{deps.features.spaced}}", "2001-01-05", 1,
                   "'data/2001-01-04 x.csv' 'data/2001-01-05 x.csv'");
    ASSERT_RENDERS(p, "train", "{{deps.features.spaced}}", "2001-01-05", 0,
                   "data/2001-01-04 x.csv data/2001-01-05 x.csv");
    /* the same date */
    ASSERT_RENDERS(p, "report", nj_pipeline_stage(p, "report")->cmd, "2001-01-09", 1,
                   "report data/2001-01-09/f.csv");

    char *abs = render(p, "train", "{{deps.features.table}}", "2001-01-03", 1, 1);
    char *want = nj_xasprintf("%s/data/2001-01-01/f.csv %s/data/2001-01-02/f.csv", p->dir, p->dir);
    cr_assert_str_eq(abs, want);
    free(abs);
    free(want);
    nj_pipeline_free(p);
}

Test(template, window_paths_for_the_planner)
{
    nj_pipeline *p = load_ok(daily);
    const nj_stage *train = nj_pipeline_stage(p, "train");
    nj_strs paths = {0};
    nj_err err = {0};

    cr_assert_eq(nj_template_window_paths(p, &train->deps[0], "2001-01-03", &paths, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(paths.len, 2, "2001-01-00 does not exist");
    cr_assert_str_eq(paths.items[0], "data/2001-01-01/f.csv");
    cr_assert_str_eq(paths.items[1], "data/2001-01-02/f.csv");
    nj_strs_release(&paths);

    cr_assert_eq(nj_template_window_paths(p, &train->deps[0], "2001-06-10", &paths, &err), 0);
    cr_assert_eq(paths.len, 3);
    cr_assert_str_eq(paths.items[0], "data/2001-06-07/f.csv");
    cr_assert_str_eq(paths.items[2], "data/2001-06-09/f.csv");
    nj_strs_release(&paths);

    cr_assert_eq(nj_template_window_paths(p, &train->deps[0], "2001-01-01", &paths, &err), 0);
    cr_assert_eq(paths.len, 0, "nothing before the start");

    /* an unpartitioned upstream: its one path, whatever the date */
    cr_assert_eq(nj_template_window_paths(p, &train->deps[2], "1990-01-01", &paths, &err), 0);
    cr_assert_eq(paths.len, 1);
    cr_assert_str_eq(paths.items[0], "ref/lookup table.csv");
    nj_strs_release(&paths);

    /* a partitioned upstream needs a date */
    cr_assert_eq(nj_template_window_paths(p, &train->deps[0], NULL, &paths, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "no logical date to render the dep on stage 'features'");
    cr_assert_eq(nj_template_window_paths(p, &train->deps[0], "2001-02-30", &paths, &err),
                 NJ_EFORMAT);
    cr_assert_eq(paths.len, 0);

    char *one = NULL;
    cr_assert_eq(nj_template_render_for_date(p, nj_pipeline_stage(p, "features"), "x/{{ds_nodash}}",
                                             11323, &one, &err),
                 0);
    cr_assert_str_eq(one, "x/20010101");
    free(one);
    nj_pipeline_free(p);
}

Test(template, deps_render_errors)
{
    nj_pipeline *p = load_ok(daily);
    nj_render_ctx ctx = {p, nj_pipeline_stage(p, "report"), "2001-01-05", 1, 0, NULL};
    nj_err err = {0};
    char *out = (char *)1;
    cr_assert_eq(nj_template_render("{{deps.lookup.t}}", &ctx, &out, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "stage 'report': '{{deps.lookup.t}}' needs a dep {stage: lookup, "
                              "out: t}");
    cr_assert_null(out);
    ctx.ds = NULL;
    cr_assert_eq(nj_template_render("{{deps.features.table}}", &ctx, &out, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "in '{{deps.features.table}}': no logical date to render the dep on "
                              "stage 'features'");
    ctx.stage = NULL;
    cr_assert_eq(nj_template_render("{{deps.features.table}}", &ctx, &out, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "'{{deps.features.table}}' outside a stage");
    nj_pipeline_free(p);
}

Test(template, champion_renders_the_model_path_or_an_empty_word)
{
    nj_pipeline *p = load_ok(demo);
    nj_render_ctx ctx = {p, nj_pipeline_stage(p, "train"), NULL, 1, 0, "/store/ab cd"};
    char *out = NULL;
    nj_err err = {0};
    cr_assert_eq(nj_template_render("eval --champion {{models.champion}}", &ctx, &out, &err), 0,
                 "%s", err.msg);
    cr_assert_str_eq(out, "eval --champion '/store/ab cd'");
    free(out);
    ctx.champion = NULL;
    cr_assert_eq(nj_template_render("eval --champion {{ models.champion }}", &ctx, &out, &err), 0);
    cr_assert_str_eq(out, "eval --champion ''", "no champion is one empty word, not a missing one");
    free(out);
    ctx.shell_quote = 0;
    cr_assert_eq(nj_template_render("{{models.champion}}/x", &ctx, &out, &err), 0);
    free(out);
    nj_pipeline_free(p);
}
