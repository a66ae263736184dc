/* test_gate.c - gate rules: parsing with columns, evaluation against one
 * metrics document (nj-evaluate's shape) or two, skips without a champion,
 * null metrics, and the lines people read. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "nightjar/gate.h"
#include "support.h"

TestSuite(gate, .timeout = 10);

/* nj-evaluate's layout: candidate under overall.model, champion (same data)
 * under overall.champion. */
static const char evaluated[] =
    "{\"rows\": 1200, \"model\": {\"version\": \"abc\"}, \"champion\": {\"version\": \"def\"},"
    " \"overall\": {\"model\": {\"auc\": 0.6712, \"log_loss\": 0.524, \"brier\": 0.19,"
    "   \"note\": \"x\"},"
    " \"base_rate\": {\"auc\": null, \"log_loss\": 0.6},"
    " \"champion\": {\"auc\": 0.6745, \"log_loss\": 0.53, \"brier\": null}}}";

static nj_json *doc(const char *text)
{
    nj_err err = {0};
    nj_json *v = NULL;
    cr_assert_eq(nj_json_parse(text, strlen(text), "metrics.json", &v, &err), 0, "%s", err.msg);
    return v;
}

static void add_ok(nj_gate *g, const char *rule)
{
    nj_err err = {0};
    cr_assert_eq(nj_gate_add(g, rule, NULL, &err), 0, "%s", err.msg);
}

static void add_fails(const char *rule, int want_col, const char *msg)
{
    nj_gate g;
    nj_gate_init(&g);
    nj_err err = {0};
    int col = -1;
    cr_assert_eq(nj_gate_add(&g, rule, &col, &err), NJ_EFORMAT, "rule %s", rule);
    cr_assert_str_eq(err.msg, msg);
    cr_assert_eq(col, want_col, "rule %s: col %d", rule, col);
    cr_assert_eq(g.len, 0);
    nj_gate_release(&g);
}

Test(gate, parses_the_grammar)
{
    nj_gate g;
    nj_gate_init(&g);
    add_ok(&g, "  auc >= 0.60 ");
    add_ok(&g, "auc >= champion.auc - 0.002");
    add_ok(&g, "log_loss<=champion.log_loss*1.01");
    add_ok(&g, "brier < 2e-1");
    add_ok(&g, "calib.slope != 1");
    add_ok(&g, "auc > 1.5 / champion.auc");
    cr_assert_eq(g.len, 6);
    cr_assert_str_eq(g.rules[0].text, "auc >= 0.60");
    cr_assert_eq(g.rules[0].op, NJ_GATE_GE);
    cr_assert_eq(g.rules[0].lhs.number, 0.60);
    cr_assert_eq(g.rules[0].arith, 0);
    cr_assert_eq(g.rules[0].uses_champion, 0);
    cr_assert_str_eq(g.rules[1].lhs.champion, "auc");
    cr_assert_eq(g.rules[1].arith, '-');
    cr_assert_eq(g.rules[1].rhs.number, 0.002);
    cr_assert_str_eq(g.rules[1].rhs.literal, "0.002");
    cr_assert_eq(g.rules[1].uses_champion, 1);
    cr_assert_str_eq(g.rules[2].metric, "log_loss");
    cr_assert_eq(g.rules[2].op, NJ_GATE_LE);
    cr_assert_eq(g.rules[2].arith, '*');
    cr_assert_eq(g.rules[3].op, NJ_GATE_LT);
    cr_assert_eq(g.rules[3].lhs.number, 0.2);
    cr_assert_str_eq(g.rules[4].metric, "calib.slope");
    cr_assert_eq(g.rules[4].op, NJ_GATE_NE);
    cr_assert_eq(g.rules[5].lhs.number, 1.5);
    cr_assert_str_eq(g.rules[5].rhs.champion, "auc");
    nj_gate_release(&g);
    nj_gate_release(NULL);
}

Test(gate, reports_parse_errors_with_a_column)
{
    add_fails("auc >> 0.6", 5,
              "gate rule 'auc >> 0.6': expected one of >=, >, <=, <, ==, != after 'auc'");
    add_fails("auc = 0.6", 5,
              "gate rule 'auc = 0.6': expected one of >=, >, <=, <, ==, != after 'auc'");
    add_fails(">= 0.6", 1, "gate rule '>= 0.6': expected a metric name");
    add_fails("  auc => 1", 7,
              "gate rule 'auc => 1': expected one of >=, >, <=, <, ==, != after 'auc'");
    add_fails("auc >=", 7, "gate rule 'auc >=': expected a number or 'champion.METRIC' after '>='");
    add_fails("auc >= champion.", 17,
              "gate rule 'auc >= champion.': expected a metric name after "
              "'champion.'");
    add_fails("auc >= logloss", 8,
              "gate rule 'auc >= logloss': 'logloss' is not a number or 'champion.logloss'");
    add_fails("auc >= champion.auc - ", 22,
              "gate rule 'auc >= champion.auc -': expected a number or 'champion.METRIC' after "
              "'-'");
    add_fails("auc >= 0.6 or brier < 1", 12,
              "gate rule 'auc >= 0.6 or brier < 1': unexpected 'or brier < 1' at the end");
    add_fails("auc >= 1e999", 8, "gate rule 'auc >= 1e999': number '1e999' is out of range");
}

static void evaluate(const char *const *rules, size_t n, const nj_gate_source *cand,
                     const nj_gate_source *champ, nj_gate *g, nj_gate_result *res)
{
    nj_gate_init(g);
    for (size_t i = 0; i < n; i++)
        add_ok(g, rules[i]);
    nj_err err = {0};
    cr_assert_eq(nj_gate_evaluate(g, cand, champ, res, &err), 0, "%s", err.msg);
    cr_assert_eq(res->len, n);
}

Test(gate, evaluates_against_the_champion_in_the_same_file)
{
    nj_json *m = doc(evaluated);
    const char *rules[] = {
        "auc >= 0.60", "auc >= champion.auc - 0.002", "log_loss <= champion.log_loss * 1.01",
        "brier < 0.2", "brier <= champion.brier",     "auc > 0.6712"};
    nj_gate_source cand = {m, "overall.model", "metrics.json"};
    nj_gate_source champ = {m, "overall.champion", "metrics.json"};
    nj_gate g;
    nj_gate_result res;
    evaluate(rules, 6, &cand, &champ, &g, &res);
    cr_assert_eq(res.has_champion, 1);
    cr_assert_str_eq(res.checks[0].text, "auc >= 0.60: 0.6712 >= 0.60 → PASS");
    cr_assert_str_eq(res.checks[1].text,
                     "auc >= champion.auc - 0.002: 0.6712 >= 0.6745 - 0.002 = 0.6725 → FAIL");
    cr_assert_eq(res.checks[1].outcome, NJ_GATE_FAIL);
    cr_assert_float_eq(res.checks[1].threshold, 0.6725, 1e-12);
    cr_assert_eq(res.checks[1].value, 0.6712);
    cr_assert_str_eq(res.checks[2].text,
                     "log_loss <= champion.log_loss * 1.01: 0.524 <= 0.53 * 1.01 = 0.5353 → PASS");
    cr_assert_str_eq(res.checks[3].text, "brier < 0.2: 0.19 < 0.2 → PASS");
    cr_assert_str_eq(res.checks[4].text,
                     "brier <= champion.brier: champion.brier is null → SKIPPED");
    cr_assert_str_eq(res.checks[5].text, "auc > 0.6712: 0.6712 > 0.6712 → FAIL");
    cr_assert_eq(res.failed, 2);
    cr_assert_eq(res.skipped, 1);
    cr_assert_eq(res.passed, 0);

    nj_buf b;
    nj_buf_init(&b);
    nj_gate_result_format(&res, 1, &b);
    cr_assert_str_eq(b.data, "auc >= champion.auc - 0.002: 0.6712 >= 0.6745 - 0.002 = 0.6725 → "
                             "FAIL\nauc > 0.6712: 0.6712 > 0.6712 → FAIL");
    nj_buf_reset(&b);
    nj_gate_result_write_json(&res, &b);
    nj_json *j = doc(b.data);
    cr_assert_eq(nj_json_get(j, "passed")->boolean, 0);
    cr_assert_str_eq(nj_json_path(j, "checks.1.outcome")->string, "fail");
    cr_assert_eq(nj_json_path(j, "checks.4.threshold")->type, NJ_JSON_NULL);
    cr_assert_str_eq(nj_json_path(j, "checks.0.rule")->string, "auc >= 0.60");
    nj_json_free(j);
    nj_buf_release(&b);
    nj_gate_result_release(&res);
    nj_gate_release(&g);
    nj_json_free(m);
}

Test(gate, shows_enough_digits_to_explain_a_close_call)
{
    nj_json *m = doc("{\"auc\": 0.6725, \"champion\": {\"auc\": 0.67451}}");
    const char *rules[] = {"auc >= champion.auc - 0.002", "auc > 1000000 * 2"};
    nj_gate_source cand = {m, NULL, "m.json"}, champ = {m, "champion", "m.json"};
    nj_gate g;
    nj_gate_result res;
    evaluate(rules, 2, &cand, &champ, &g, &res);
    cr_assert_str_eq(res.checks[0].text,
                     "auc >= champion.auc - 0.002: 0.6725 >= 0.67451 - 0.002 = 0.67251 → FAIL");
    cr_assert_str_eq(res.checks[1].text, "auc > 1000000 * 2: 0.6725 > 1000000 * 2 = 2e+06 → FAIL");
    nj_gate_result_release(&res);
    nj_gate_release(&g);
    nj_json_free(m);
}

Test(gate, without_a_champion_only_absolute_rules_apply)
{
    /* nj-evaluate without --champion: no overall.champion at all. */
    nj_json *m = doc("{\"champion\": null, \"overall\": {\"model\": {\"auc\": 0.55}}}");
    const char *rules[] = {"auc >= champion.auc - 0.002", "auc >= 0.5"};
    nj_gate_source cand = {m, "overall.model", "metrics.json"};
    nj_gate_source champ = {m, "overall.champion", "metrics.json"};
    nj_gate g;
    nj_gate_result res;
    evaluate(rules, 2, &cand, &champ, &g, &res);
    cr_assert_eq(res.has_champion, 0);
    cr_assert_eq(res.checks[0].outcome, NJ_GATE_SKIPPED);
    cr_assert_str_eq(res.checks[0].text, "auc >= champion.auc - 0.002: no champion → SKIPPED");
    cr_assert(isnan(res.checks[0].threshold));
    cr_assert_eq(res.checks[1].outcome, NJ_GATE_PASS);
    cr_assert_eq(res.passed, 1);
    nj_gate_result_release(&res);
    /* The same with the champion given as a JSON null, and with no source. */
    nj_gate_source null_champ = {m, "champion", "metrics.json"};
    nj_err err = {0};
    cr_assert_eq(nj_gate_evaluate(&g, &cand, &null_champ, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res.checks[0].outcome, NJ_GATE_SKIPPED);
    nj_gate_result_release(&res);
    cr_assert_eq(nj_gate_evaluate(&g, &cand, NULL, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res.skipped, 1);
    cr_assert_eq(res.passed, 1);
    nj_gate_result_release(&res);
    nj_gate_release(&g);
    nj_json_free(m);
}

Test(gate, champion_metrics_may_come_from_another_file)
{
    nj_json *cand_doc = doc("{\"metrics\": {\"auc\": 0.7, \"log_loss\": 0.5}}");
    nj_json *champ_doc = doc("{\"auc\": 0.65, \"log_loss\": 0.52}");
    const char *rules[] = {"auc >= champion.auc", "log_loss <= champion.log_loss",
                           "auc - 0.1 >= 0"};
    nj_gate g;
    nj_gate_init(&g);
    add_ok(&g, rules[0]);
    add_ok(&g, rules[1]);
    nj_gate_source cand = {cand_doc, "metrics", "new.json"}, champ = {champ_doc, "", "old.json"};
    nj_gate_result res;
    nj_err err = {0};
    cr_assert_eq(nj_gate_evaluate(&g, &cand, &champ, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res.passed, 1);
    cr_assert_str_eq(res.checks[0].text, "auc >= champion.auc: 0.7 >= 0.65 → PASS");
    nj_gate_result_release(&res);
    nj_gate_release(&g);
    nj_json_free(cand_doc);
    nj_json_free(champ_doc);
}

Test(gate, null_candidate_metric_fails)
{
    nj_json *m = doc("{\"auc\": null}");
    nj_gate g;
    nj_gate_init(&g);
    add_ok(&g, "auc >= 0.6");
    nj_gate_source cand = {m, NULL, "m.json"};
    nj_gate_result res;
    nj_err err = {0};
    cr_assert_eq(nj_gate_evaluate(&g, &cand, NULL, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res.checks[0].outcome, NJ_GATE_FAIL);
    cr_assert_str_eq(res.checks[0].text, "auc >= 0.6: auc is null → FAIL");
    nj_gate_result_release(&res);
    nj_gate_release(&g);
    nj_json_free(m);
}

Test(gate, missing_or_mistyped_metrics_are_errors)
{
    nj_json *m = doc(evaluated);
    nj_gate_source cand = {m, "overall.model", "metrics.json"};
    nj_gate_source champ = {m, "overall.champion", "metrics.json"};
    nj_gate_result res;
    nj_err err = {0};
    nj_gate g;

    nj_gate_init(&g);
    add_ok(&g, "acu >= 0.6");
    cr_assert_eq(nj_gate_evaluate(&g, &cand, &champ, &res, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg,
                     "metrics 'metrics.json' have no 'overall.model.acu' (gate rule 'acu >= 0.6')");
    nj_gate_result_release(&res);
    nj_gate_release(&g);

    nj_gate_init(&g);
    add_ok(&g, "auc >= champion.acu");
    cr_assert_eq(nj_gate_evaluate(&g, &cand, &champ, &res, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "metrics 'metrics.json' have no 'overall.champion.acu' (gate rule "
                              "'auc >= champion.acu')");
    nj_gate_result_release(&res);
    nj_gate_release(&g);

    nj_gate_init(&g);
    add_ok(&g, "note >= 1");
    cr_assert_eq(nj_gate_evaluate(&g, &cand, &champ, &res, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "metric 'overall.model.note' in 'metrics.json' is a string, not a "
                              "number (gate rule 'note >= 1')");
    nj_gate_result_release(&res);

    nj_gate_source nowhere = {m, "overall.candidate", "metrics.json"};
    cr_assert_eq(nj_gate_evaluate(&g, &nowhere, &champ, &res, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "metrics 'metrics.json' have no object 'overall.candidate'");
    nj_gate_result_release(&res);
    nj_gate_release(&g);
    nj_json_free(m);
}
