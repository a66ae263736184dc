/* test_spec.c - loading pipeline files: the model, defaults, implicit params
 * and stage uses, and every fixtures/pipelines/bad/X.yaml against the exact
 * diagnostics in its golden X.err (one test case per fixture). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nightjar/dag.h"
#include "nightjar/fs.h"
#include "nightjar/spec.h"
#include "support.h"

TestSuite(spec, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 20);

/* Writes `yaml` to p.yaml and loads it, asserting success. */
static nj_pipeline *load_ok(const char *yaml)
{
    nj_strs diags = {0};
    nj_err err = {0};
    nj_pipeline *p = NULL;
    nj_test_write("p.yaml", yaml);
    int rc = nj_pipeline_load("p.yaml", &p, &diags, &err);
    cr_assert_eq(rc, 0, "load failed: %s: %s", err.msg, diags.len ? diags.items[0] : "");
    cr_assert_not_null(p);
    nj_strs_release(&diags);
    return p;
}

/* Writes `yaml` to p.yaml, loads it expecting failure, and returns the
 * diagnostics joined by newlines (caller frees). */
static char *load_bad(const char *yaml, nj_err *err)
{
    nj_strs diags = {0};
    nj_pipeline *p = (nj_pipeline *)1;
    nj_test_write("p.yaml", yaml);
    cr_assert_eq(nj_pipeline_load("p.yaml", &p, &diags, err), NJ_EPIPELINE);
    cr_assert_null(p);
    nj_buf b;
    nj_buf_init(&b);
    for (size_t i = 0; i < diags.len; i++)
        nj_buf_printf(&b, "%s\n", diags.items[i]);
    nj_strs_release(&diags);
    char *s = nj_buf_detach(&b);
    nj_buf_release(&b);
    return s;
}

Test(spec, loads_the_documented_example)
{
    nj_strs diags = {0};
    nj_err err = {0};
    nj_pipeline *p = NULL;
    const char *path = nj_test_fixture("pipelines/good/demo.yaml");
    cr_assert_eq(nj_pipeline_load(path, &p, &diags, &err), 0, "%s", err.msg);
    cr_assert_eq(diags.len, 0);

    cr_assert_str_eq(p->file, path);
    cr_assert_str_eq(p->name, "demo");
    cr_assert(nj_str_ends(p->dir, "/fixtures/pipelines/good"), "%s", p->dir);
    char *ws = nj_xasprintf("%s/.nightjar", p->dir);
    cr_assert_str_eq(p->workspace, ws);
    free(ws);

    cr_assert_eq(p->nparams, 3);
    cr_assert_str_eq(p->params[0].name, "l2");
    cr_assert_str_eq(p->params[0].value, "0.1");
    cr_assert_eq(p->params[0].is_list, 0);
    nj_param *airports = nj_pipeline_param(p, "airports");
    cr_assert_not_null(airports);
    cr_assert_eq(airports->is_list, 1);
    cr_assert_eq(airports->items.len, 2);
    cr_assert_str_eq(airports->items.items[1], "ATL");
    cr_assert_str_eq(airports->value, "ORD ATL");

    cr_assert_eq(p->nstages, 3);
    cr_assert_str_eq(p->stages[0].name, "prepare");
    cr_assert_str_eq(p->stages[1].name, "train");
    cr_assert_str_eq(p->stages[2].name, "report");

    nj_stage *prepare = &p->stages[0];
    cr_assert_eq(prepare->mark.line, 7);
    cr_assert_eq(prepare->mark.col, 3);
    cr_assert_str_eq(prepare->cmd, "scripts/prepare.sh {{outs.table}}");
    cr_assert_eq(prepare->ndeps, 1);
    cr_assert_str_eq(prepare->deps[0].path, "fixtures/demo/input.csv");
    cr_assert_str_eq(nj_stage_out(prepare, "table")->path, "data/table.csv");
    /* from defaults: */
    cr_assert_eq(prepare->retries, 2);
    cr_assert_eq(prepare->retry_delay_ms, 5000);
    cr_assert_eq(prepare->retry_delay_max_ms, 300000);
    cr_assert_eq(prepare->timeout_ms, 30 * 60 * 1000);
    cr_assert_null(prepare->workdir);

    nj_stage *train = nj_pipeline_stage(p, "train");
    cr_assert_eq(nj_pipeline_stage_index(p, train), 1);
    cr_assert_eq(train->cmd_mark.line, 12);
    cr_assert_eq(train->cmd_mark.col, 10);
    cr_assert_eq(train->nparams, 1);
    cr_assert_str_eq(train->params[0].name, "l2");
    cr_assert_eq(train->nuses, 1);
    cr_assert_str_eq(train->uses[0].name, "prepare");
    cr_assert_eq(train->ncode, 1);
    cr_assert_str_eq(train->code[0].name, "build/stages/nj-train");
    cr_assert_eq(train->nenv, 2);
    cr_assert_str_eq(train->env[0].name, "MODE");
    cr_assert_str_eq(train->env[0].value, "fast");
    cr_assert_str_eq(train->env[1].name, "DS");
    cr_assert_str_eq(train->env[1].value, "{{ds}}");
    /* stage values override defaults: */
    cr_assert_eq(train->timeout_ms, 600000);
    cr_assert_eq(train->retries, 0);
    cr_assert_eq(train->retry_delay_ms, 5000);
    cr_assert_str_eq(train->workdir, "sub/dir");

    nj_stage *report = nj_pipeline_stage(p, "report");
    cr_assert_eq(report->nneeds, 1);
    cr_assert_str_eq(report->needs[0].name, "train");
    cr_assert_eq(report->needs[0].mark.line, 22);
    cr_assert_eq(report->nouts, 0);

    cr_assert_null(nj_pipeline_stage(p, "nope"));
    cr_assert_null(nj_stage_out(train, "nope"));
    cr_assert_null(nj_pipeline_param(p, "nope"));
    nj_pipeline_free(p);
}

Test(spec, builtin_defaults_apply_without_a_defaults_section)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "workspace: ../ws/\n"
                             "stages:\n"
                             "  a: {cmd: echo}\n"
                             "  b: {cmd: echo, timeout: none, retry_delay: 250ms, workdir: .}\n"
                             "  c: {cmd: echo, timeout: 0}\n");
    nj_stage *a = &p->stages[0];
    cr_assert_eq(a->retries, NJ_DEFAULT_RETRIES);
    cr_assert_eq(a->retry_delay_ms, NJ_DEFAULT_RETRY_DELAY_MS);
    cr_assert_eq(a->retry_delay_max_ms, NJ_DEFAULT_RETRY_DELAY_MAX_MS);
    cr_assert_eq(a->timeout_ms, NJ_DEFAULT_TIMEOUT_MS);
    cr_assert_eq(p->stages[1].timeout_ms, 0);
    cr_assert_eq(p->stages[1].retry_delay_ms, 250);
    cr_assert_null(p->stages[1].workdir, "workdir '.' means the pipeline directory");
    cr_assert_eq(p->stages[2].timeout_ms, 0);
    /* workspace is relative to the pipeline's directory, normalised */
    char *parent = nj_path_dirname(p->dir);
    char *ws = nj_xasprintf("%s/ws", parent);
    cr_assert_str_eq(p->workspace, ws);
    free(ws);
    free(parent);
    nj_pipeline_free(p);
}

Test(spec, implicit_params_come_after_listed_ones_in_order_of_first_use)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "params: {a: 1, b: 2, c: 3, d: 4, e: 5}\n"
                             "stages:\n"
                             "  s:\n"
                             "    params: [b]\n"
                             "    cmd: run {{params.c}} {{ params.b }} {{params.a}} {{params.c}}\n"
                             "    deps: ['in/{{params.e}}.csv']\n"
                             "    env: {D: '{{params.d}}'}\n");
    nj_stage *s = &p->stages[0];
    const char *want[] = {"b", "c", "a", "e", "d"};
    cr_assert_eq(s->nparams, 5);
    for (size_t i = 0; i < 5; i++)
        cr_assert_str_eq(s->params[i].name, want[i], "params[%zu]", i);
    /* an implicit param remembers where it was first used */
    cr_assert_eq(s->params[1].mark.line, 6);
    cr_assert_eq(s->params[1].mark.col, 14);
    nj_pipeline_free(p);
}

Test(spec, stage_references_become_uses_once_and_never_self)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "stages:\n"
                             "  a: {cmd: echo, outs: {o: a.out, p: a2.out}}\n"
                             "  b:\n"
                             "    cmd: cat {{stages.a.outs.o}} {{stages.a.outs.p}} > "
                             "{{stages.b.outs.o}}\n"
                             "    outs: {o: b.out}\n"
                             "    env: {IN: '{{stages.c.outs.o}}'}\n"
                             "  c: {cmd: echo, outs: {o: c.out}}\n");
    nj_stage *b = &p->stages[1];
    cr_assert_eq(b->nuses, 2);
    cr_assert_str_eq(b->uses[0].name, "a");
    cr_assert_str_eq(b->uses[1].name, "c");
    cr_assert_eq(b->uses[0].mark.line, 5);
    cr_assert_eq(b->uses[0].mark.col, 14);
    nj_pipeline_free(p);
}

Test(spec, paths_are_normalised_and_templates_kept)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "stages:\n"
                             "  s:\n"
                             "    cmd: echo\n"
                             "    deps: ['./data//{{ds}}/x.csv', /abs/./in.csv, ../shared/in.csv]\n"
                             "    outs: {model: out//model.bin/}\n"
                             "    code: [bin/../build/tool]\n"
                             "    workdir: sub/./dir/\n");
    nj_stage *s = &p->stages[0];
    cr_assert_str_eq(s->deps[0].path, "data/{{ds}}/x.csv");
    cr_assert_str_eq(s->deps[1].path, "/abs/in.csv", "absolute deps are fine");
    cr_assert_str_eq(s->deps[2].path, "../shared/in.csv", "deps may live outside");
    cr_assert_str_eq(s->outs[0].path, "out/model.bin");
    cr_assert_str_eq(s->code[0].name, "build/tool");
    cr_assert_str_eq(s->workdir, "sub/dir");
    nj_pipeline_free(p);
}

Test(spec, unreadable_file_is_an_errno_error_without_diagnostics)
{
    nj_strs diags = {0};
    nj_err err = {0};
    nj_pipeline *p = (nj_pipeline *)1;
    cr_assert_eq(nj_pipeline_load("nope.yaml", &p, &diags, &err), -ENOENT);
    cr_assert_str_eq(err.msg, "cannot read pipeline 'nope.yaml': No such file or directory");
    cr_assert_null(p);
    cr_assert_eq(diags.len, 0);
}

Test(spec, counts_problems_in_the_error_message)
{
    nj_err err = {0};
    char *d = load_bad("pipeline: x\nstages: {a: {cmd: echo, retries: x}}\n", &err);
    cr_assert_str_eq(err.msg, "1 problem in 'p.yaml'");
    cr_assert_str_eq(d, "p.yaml:2:34: stage 'a': 'retries' must be a non-negative integer\n");
    free(d);
    d = load_bad("stages: {a: {cmd: echo, retries: x, timeout: y}}\n", &err);
    cr_assert_eq(err.code, NJ_EPIPELINE);
    cr_assert_str_eq(err.msg, "3 problems in 'p.yaml'");
    free(d);
}

Test(spec, syntax_error_is_reported_alone)
{
    nj_err err = {0};
    /* the unknown key would be a problem too, but nothing after a syntax
     * error can be trusted */
    char *d = load_bad("stpes: 1\nstages: {a: [\n", &err);
    cr_assert(nj_str_starts(d, "p.yaml:3:1: syntax error: "), "%s", d);
    cr_assert_eq(strchr(d, '\n'), d + strlen(d) - 1, "one line only: %s", d);
    cr_assert_str_eq(err.msg, "1 problem in 'p.yaml'");
    free(d);
}

Test(spec, every_problem_is_reported_in_file_order)
{
    nj_err err = {0};
    char *d = load_bad("stages:\n"
                       "  b: {cmd: echo, needs: [zz]}\n"
                       "  a: {cmdd: echo}\n"
                       "pipline: x\n",
                       &err);
    cr_assert_str_eq(d, "p.yaml:1:1: missing required key 'pipeline'\n"
                        "p.yaml:2:26: stage 'b': needs unknown stage 'zz'\n"
                        "p.yaml:3:3: stage 'a': missing required key 'cmd'\n"
                        "p.yaml:3:7: stage 'a': unknown key 'cmdd' (did you mean 'cmd'?)\n"
                        "p.yaml:4:1: unknown key 'pipline' (did you mean 'pipeline'?)\n");
    free(d);
}

Test(spec, template_errors_point_at_the_braces_when_possible)
{
    nj_err err = {0};
    char *d = load_bad("pipeline: x\n"
                       "stages:\n"
                       "  a:\n"
                       "    cmd: 'run {{bad}}'\n"
                       "    env:\n"
                       "      X: \"esc\\t{{bad}}\"\n"
                       "      Y: |\n"
                       "        {{bad}}\n",
                       &err);
    cr_assert_str_eq(d, "p.yaml:4:15: stage 'a': unknown template expression '{{bad}}'\n"
                        /* escapes break the mapping: the scalar's start */
                        "p.yaml:6:10: stage 'a': unknown template expression '{{bad}}'\n"
                        "p.yaml:7:10: stage 'a': unknown template expression '{{bad}}'\n");
    free(d);
}

Test(spec, suggests_close_names_only)
{
    const char *top[] = {"pipeline", "workspace", "params", "defaults", "stages"};
    cr_assert_str_eq(nj_suggest("stpes", top, 5), "stages");
    cr_assert_str_eq(nj_suggest("pipline", top, 5), "pipeline");
    cr_assert_null(nj_suggest("colour", top, 5));
    cr_assert_null(nj_suggest("x", top, 5));
    const char *stages[] = {"prepare", "train"};
    cr_assert_str_eq(nj_suggest("trian", stages, 2), "train");
    cr_assert_str_eq(nj_suggest("prepar", stages, 2), "prepare");
    const char *params[] = {"l1", "l2"};
    cr_assert_str_eq(nj_suggest("l3", params, 2), "l1", "ties go to the first candidate");
    cr_assert_null(nj_suggest("l3", params, 0));
}

Test(spec, diag_add_formats_position)
{
    nj_strs d = {0};
    nj_diag_add(&d, "f.yaml", (nj_mark){3, 7}, "bad '%s'", "x");
    nj_diag_add(&d, "f.yaml", (nj_mark){0, 0}, "no position");
    cr_assert_str_eq(d.items[0], "f.yaml:3:7: bad 'x'");
    cr_assert_str_eq(d.items[1], "f.yaml: no position");
    nj_strs_release(&d);
}

/* ---- partitions, stage deps, snapshots ----------------------------------------- */

static int32_t date_of(const char *text)
{
    int32_t days = 0;
    cr_assert_eq(nj_date_parse(text, &days, NULL), 0, "%s", text);
    return days;
}

Test(spec, partition_is_parsed_with_its_defaults)
{
    nj_pipeline *p =
        load_ok("pipeline: x\n"
                "stages: {a: {cmd: echo}}\n"
                "partition: {by: ds, start: 2001-01-01, granularity: daily, lag: 2d}\n");
    cr_assert_eq(p->partition.enabled, 1);
    cr_assert_eq(p->partition.start, date_of("2001-01-01"));
    cr_assert_eq(p->partition.lag_days, 2);
    cr_assert_eq(p->partition.mark.line, 3);
    cr_assert_eq(p->partition.mark.col, 1);
    nj_pipeline_free(p);

    /* by, granularity and lag are optional: ds, daily, 1d */
    p = load_ok("pipeline: x\npartition: {start: 2024-02-29}\nstages: {a: {cmd: echo}}\n");
    cr_assert_eq(p->partition.enabled, 1);
    cr_assert_eq(p->partition.start, date_of("2024-02-29"));
    cr_assert_eq(p->partition.lag_days, 1);
    nj_pipeline_free(p);

    p = load_ok("pipeline: x\npartition: {start: 2001-01-01, lag: 0d}\nstages: {a: {cmd: echo}}\n");
    cr_assert_eq(p->partition.lag_days, 0);
    nj_pipeline_free(p);

    p = load_ok("pipeline: x\nstages: {a: {cmd: echo}}\n");
    cr_assert_eq(p->partition.enabled, 0, "no partition section");
    nj_pipeline_free(p);
}

Test(spec, partition_errors_name_the_key)
{
    nj_err err = {0};
    char *d = load_bad("pipeline: x\n"
                       "partition: {start: 2001-01-01, granularity: weekly, lag: 1h}\n"
                       "stages: {a: {cmd: echo}}\n",
                       &err);
    cr_assert_str_eq(d, "p.yaml:2:45: partition: unsupported granularity 'weekly': only 'daily' is "
                        "supported\n"
                        "p.yaml:2:58: partition: 'lag' must be a whole number of days such as 0d, "
                        "1d or 2d\n");
    free(d);
}

Test(spec, stages_are_partitioned_by_default_when_the_pipeline_is)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "partition: {start: 2001-01-01}\n"
                             "stages:\n"
                             "  a: {cmd: echo}\n"
                             "  b: {cmd: echo, partitioned: false}\n"
                             "  c: {cmd: echo, partitioned: True}\n");
    cr_assert_eq(p->stages[0].partitioned, 1, "default with a partition");
    cr_assert_eq(p->stages[1].partitioned, 0);
    cr_assert_eq(p->stages[2].partitioned, 1);
    nj_pipeline_free(p);

    p = load_ok("pipeline: x\n"
                "stages:\n"
                "  a: {cmd: echo}\n"
                "  b: {cmd: echo, partitioned: false}\n");
    cr_assert_eq(p->stages[0].partitioned, 0, "no partition: nothing is partitioned");
    cr_assert_eq(p->stages[1].partitioned, 0);
    nj_pipeline_free(p);

    nj_err err = {0};
    char *d = load_bad("pipeline: x\nstages: {a: {cmd: echo, partitioned: yes}}\n", &err);
    cr_assert_str_eq(d, "p.yaml:2:38: stage 'a': 'partitioned' must be true or false\n");
    free(d);
}

Test(spec, stage_deps_keep_stage_out_and_window)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "partition: {start: 2001-01-01}\n"
                             "stages:\n"
                             "  lookup: {cmd: echo, partitioned: false, outs: {t: lookup.csv}}\n"
                             "  features: {cmd: echo, outs: {table: 'f/{{ds}}.csv'}}\n"
                             "  train:\n"
                             "    cmd: train {{deps.features.table}}\n"
                             "    deps:\n"
                             "      - in/static.csv\n"
                             "      - {stage: features, out: table, window: [-28d, -1d]}\n"
                             "      - stage: lookup\n"
                             "        out: t\n"
                             "  later:\n"
                             "    cmd: echo\n"
                             "    deps: [{stage: features, out: table, window: [-3d, +2d]}]\n");
    nj_stage *train = nj_pipeline_stage(p, "train");
    cr_assert_eq(train->ndeps, 3);
    cr_assert_str_eq(train->deps[0].path, "in/static.csv");
    cr_assert_null(train->deps[0].stage);

    const nj_dep *w = &train->deps[1];
    cr_assert_null(w->path, "a stage dep has no path");
    cr_assert_str_eq(w->stage, "features");
    cr_assert_str_eq(w->out, "table");
    cr_assert_eq(w->window_from, -28);
    cr_assert_eq(w->window_to, -1);
    cr_assert_eq(w->mark.line, 10);
    cr_assert_eq(w->mark.col, 9);

    const nj_dep *same = &train->deps[2];
    cr_assert_null(same->path);
    cr_assert_str_eq(same->stage, "lookup");
    cr_assert_str_eq(same->out, "t");
    cr_assert_eq(same->window_from, 0, "no window: the same date");
    cr_assert_eq(same->window_to, 0);

    cr_assert_eq(train->nuses, 0, "a stage dep and {{deps...}} record no uses");
    const nj_dep *later = &nj_pipeline_stage(p, "later")->deps[0];
    cr_assert_eq(later->window_from, -3);
    cr_assert_eq(later->window_to, 2);
    nj_pipeline_free(p);

    /* without a partition, a same-date stage dep is fine */
    p = load_ok("pipeline: x\n"
                "stages:\n"
                "  a: {cmd: echo, outs: {o: a.out}}\n"
                "  b: {cmd: 'cat {{deps.a.o}}', deps: [{stage: a, out: o}]}\n");
    cr_assert_str_eq(p->stages[1].deps[0].stage, "a");
    nj_pipeline_free(p);
}

Test(spec, dep_window_skips_dates_before_the_start)
{
    nj_pipeline *p = load_ok("pipeline: x\n"
                             "partition: {start: 2001-01-01}\n"
                             "stages:\n"
                             "  lookup: {cmd: echo, partitioned: false, outs: {t: lookup.csv}}\n"
                             "  f: {cmd: echo, outs: {t: 'f/{{ds}}.csv', u: 'u/{{ds}}.csv'}}\n"
                             "  train:\n"
                             "    cmd: echo\n"
                             "    deps:\n"
                             "      - {stage: f, out: t, window: [-28d, -1d]}\n"
                             "      - {stage: f, out: u}\n"
                             "      - {stage: lookup, out: t}\n");
    const nj_stage *train = nj_pipeline_stage(p, "train");
    const nj_dep *window = &train->deps[0], *same = &train->deps[1], *lookup = &train->deps[2];
    int32_t first, last;

    /* at the start of the range only the dates that exist */
    cr_assert_eq(nj_dep_window(p, window, date_of("2001-01-05"), &first, &last), 4);
    cr_assert_eq(first, date_of("2001-01-01"));
    cr_assert_eq(last, date_of("2001-01-04"));
    /* in the middle the full window */
    cr_assert_eq(nj_dep_window(p, window, date_of("2001-03-01"), &first, &last), 28);
    cr_assert_eq(first, date_of("2001-02-01"));
    cr_assert_eq(last, date_of("2001-02-28"));
    /* on the first date, nothing before it */
    cr_assert_eq(nj_dep_window(p, window, date_of("2001-01-01"), &first, &last), 0);
    cr_assert_gt(first, last);

    cr_assert_eq(nj_dep_window(p, same, date_of("2001-01-01"), &first, &last), 1);
    cr_assert_eq(first, date_of("2001-01-01"));
    cr_assert_eq(last, first);
    cr_assert_eq(nj_dep_window(p, same, date_of("2000-12-31"), &first, &last), 0);

    /* an unpartitioned upstream has one instance for every date */
    cr_assert_eq(nj_dep_window(p, lookup, date_of("1999-05-05"), &first, &last), 1);
    cr_assert_eq(first, date_of("1999-05-05"));
    cr_assert_eq(last, first);
    nj_pipeline_free(p);
}

Test(spec, snapshot_stage_has_no_cmd_and_its_inputs_are_deps)
{
    nj_pipeline *p =
        load_ok("pipeline: x\n"
                "partition: {start: 2001-01-01}\n"
                "params: {region: eu}\n"
                "stages:\n"
                "  snap:\n"
                "    snapshot:\n"
                "      inputs: ['data/raw/{{ds}}/', './lookup//{{params.region}}.csv']\n"
                "    outs: {archive: 'snapshots/{{ds}}.tar.zst'}\n"
                "  gz:\n"
                "    snapshot: {inputs: [data], format: tar.gz}\n"
                "    outs: {archive: snapshots/all.tar.gz}\n"
                "    partitioned: false\n");
    nj_stage *snap = nj_pipeline_stage(p, "snap");
    cr_assert_null(snap->cmd, "a snapshot stage has no command");
    cr_assert_not_null(snap->snapshot);
    cr_assert_str_eq(snap->snapshot->format, "tar.zst", "the default format");
    cr_assert_eq(snap->snapshot->inputs.len, 2);
    cr_assert_str_eq(snap->snapshot->inputs.items[0], "data/raw/{{ds}}", "normalised");
    cr_assert_str_eq(snap->snapshot->inputs.items[1], "lookup/{{params.region}}.csv");
    /* the inputs are path deps too, so edges and the cache key see them */
    cr_assert_eq(snap->ndeps, 2);
    cr_assert_str_eq(snap->deps[0].path, "data/raw/{{ds}}");
    cr_assert_null(snap->deps[0].stage);
    cr_assert_eq(snap->deps[0].mark.line, 7);
    cr_assert_str_eq(snap->deps[1].path, "lookup/{{params.region}}.csv");
    cr_assert_eq(snap->nparams, 1, "params in inputs are used like in deps");
    cr_assert_str_eq(snap->params[0].name, "region");
    cr_assert_eq(snap->partitioned, 1);

    nj_stage *gz = nj_pipeline_stage(p, "gz");
    cr_assert_str_eq(gz->snapshot->format, "tar.gz");
    cr_assert_eq(gz->partitioned, 0);
    cr_assert_null(nj_pipeline_stage(p, "snap")->workdir);
    nj_pipeline_free(p);

    nj_err err = {0};
    char *d = load_bad("pipeline: x\n"
                       "stages:\n"
                       "  s:\n"
                       "    cmd: tar cf x\n"
                       "    snapshot: {inputs: [a]}\n"
                       "    outs: {x: x.tar.zst}\n",
                       &err);
    cr_assert_str_eq(d, "p.yaml:4:5: stage 's': a snapshot stage has no 'cmd'\n");
    free(d);
}

Test(spec, loads_the_daily_example)
{
    nj_strs diags = {0};
    nj_err err = {0};
    nj_pipeline *p = NULL;
    const char *path = nj_test_fixture("pipelines/good/partitioned.yaml");
    cr_assert_eq(nj_pipeline_load(path, &p, &diags, &err), 0, "%s: %s", err.msg,
                 diags.len ? diags.items[0] : "");
    cr_assert_eq(p->partition.enabled, 1);
    cr_assert_eq(p->partition.start, date_of("2001-01-01"));
    cr_assert_eq(nj_pipeline_stage(p, "lookup")->partitioned, 0);
    cr_assert_eq(nj_pipeline_stage(p, "features")->partitioned, 1);
    cr_assert_not_null(nj_pipeline_stage(p, "snap")->snapshot);
    nj_stage *score = nj_pipeline_stage(p, "score");
    cr_assert_eq(score->ndeps, 2);
    cr_assert_str_eq(score->deps[0].stage, "train");
    nj_pipeline_free(p);
}

/* ---- fixtures ---------------------------------------------------------------- */ /* ----
                                                                                        fixtures
                                                                                        ----------------------------------------------------------------
                                                                                      */

struct fixture {
    char name[128]; /* "cycle" for fixtures/pipelines/<kind>/cycle.yaml */
};

static void free_fixtures(struct criterion_test_params *ctp)
{
    cr_free(ctp->params);
}

/* The names (without .yaml) of the pipelines in fixtures/pipelines/<kind>, sorted, in Criterion's
 * shared memory so the test processes can read them. */
static struct criterion_test_params list_fixtures(const char *kind)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/fixtures/pipelines/%s", NJ_SOURCE_DIR, kind);
    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, NULL, alphasort);
    size_t count = 0;
    struct fixture *fx = cr_calloc(n > 0 ? (size_t)n : 1, sizeof(*fx));
    for (int i = 0; i < n; i++) {
        const char *name = entries[i]->d_name;
        size_t len = strlen(name);
        if (len > 5 && len - 5 < sizeof(fx->name) && strcmp(name + len - 5, ".yaml") == 0)
            snprintf(fx[count++].name, sizeof(fx->name), "%.*s", (int)(len - 5), name);
        free(entries[i]);
    }
    free(entries);
    return cr_make_param_array(struct fixture, fx, count, free_fixtures);
}

ParameterizedTestParameters(spec, bad_fixture_matches_golden)
{
    return list_fixtures("bad");
}

/* Loads fixtures/pipelines/bad/X.yaml by that relative path from the source
 * directory (so the golden file names it the same way), builds the graph if
 * it loads, and compares all diagnostics with X.err line for line. */
ParameterizedTest(struct fixture *fx, spec, bad_fixture_matches_golden)
{
    cr_assert_eq(chdir(NJ_SOURCE_DIR), 0);
    char *path = nj_xasprintf("fixtures/pipelines/bad/%s.yaml", fx->name);
    char *golden_path = nj_xasprintf("fixtures/pipelines/bad/%s.err", fx->name);
    char *golden = nj_test_read(golden_path);

    nj_strs diags = {0};
    nj_err err = {0};
    nj_pipeline *p = NULL;
    int rc = nj_pipeline_load(path, &p, &diags, &err);
    if (rc == 0) {
        nj_dag *dag = NULL;
        rc = nj_dag_build(p, &dag, &diags, &err);
        cr_expect_eq(rc, NJ_ECYCLE, "%s loads and builds; a bad fixture must fail", path);
        nj_dag_free(dag);
        nj_pipeline_free(p);
    } else {
        cr_expect_eq(rc, NJ_EPIPELINE, "%s: %s", path, err.msg);
    }
    nj_buf got;
    nj_buf_init(&got);
    for (size_t i = 0; i < diags.len; i++)
        nj_buf_printf(&got, "%s\n", diags.items[i]);
    cr_expect_gt(diags.len, 0, "%s: no diagnostics", path);
    cr_expect_str_eq(got.data, golden, "%s: diagnostics differ from %s", path, golden_path);

    nj_buf_release(&got);
    nj_strs_release(&diags);
    free(golden);
    free(golden_path);
    free(path);
}

ParameterizedTestParameters(spec, good_fixture_loads_and_builds)
{
    return list_fixtures("good");
}

ParameterizedTest(struct fixture *fx, spec, good_fixture_loads_and_builds)
{
    char *rel = nj_xasprintf("pipelines/good/%s.yaml", fx->name);
    nj_strs diags = {0};
    nj_err err = {0};
    nj_pipeline *p = NULL;
    nj_dag *dag = NULL;
    cr_assert_eq(nj_pipeline_load(nj_test_fixture(rel), &p, &diags, &err), 0, "%s: %s: %s", rel,
                 err.msg, diags.len ? diags.items[0] : "");
    cr_assert_eq(nj_dag_build(p, &dag, &diags, &err), 0, "%s: %s", rel, err.msg);
    cr_assert_eq(nj_dag_count(dag), p->nstages);
    nj_dag_free(dag);
    nj_pipeline_free(p);
    free(rel);
}
