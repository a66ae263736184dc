/* test_json.c - the JSON reader: values, escapes, paths, errors with
 * line:col, and the writer round trip. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/json.h"
#include "support.h"

TestSuite(json, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 10);

static nj_json *parse_ok(const char *text)
{
    nj_err err = {0};
    nj_json *v = NULL;
    cr_assert_eq(nj_json_parse(text, strlen(text), "t.json", &v, &err), 0, "%s", err.msg);
    cr_assert_not_null(v);
    return v;
}

static void parse_fails(const char *text, const char *msg)
{
    nj_err err = {0};
    nj_json *v = (nj_json *)1;
    cr_assert_eq(nj_json_parse(text, strlen(text), "metrics.json", &v, &err), NJ_EFORMAT,
                 "input %s", text);
    cr_assert_null(v);
    cr_assert_str_eq(err.msg, msg);
}

Test(json, reads_every_kind_of_value)
{
    nj_json *v = parse_ok(" {\"a\": 1, \"b\": [true, false, null, -2.5e3, \"x\"], \"c\": {}, "
                          "\"d\": [], \"e\": 0.675}\n");
    cr_assert_eq(v->type, NJ_JSON_OBJECT);
    cr_assert_eq(v->len, 5);
    cr_assert_str_eq(v->keys[1], "b");
    const nj_json *b = nj_json_get(v, "b");
    cr_assert_eq(b->type, NJ_JSON_ARRAY);
    cr_assert_eq(b->len, 5);
    cr_assert_eq(b->items[0].type, NJ_JSON_BOOL);
    cr_assert_eq(b->items[0].boolean, 1);
    cr_assert_eq(b->items[1].boolean, 0);
    cr_assert_eq(b->items[2].type, NJ_JSON_NULL);
    cr_assert_eq(b->items[3].number, -2500.0);
    cr_assert_str_eq(b->items[4].string, "x");
    cr_assert_eq(nj_json_get(v, "c")->len, 0);
    cr_assert_eq(nj_json_get(v, "d")->type, NJ_JSON_ARRAY);
    cr_assert_eq(nj_json_get(v, "e")->number, 0.675);
    cr_assert_null(nj_json_get(v, "zz"));
    nj_json_free(v);

    v = parse_ok("42");
    cr_assert_eq(v->type, NJ_JSON_NUMBER);
    cr_assert_eq(v->number, 42.0);
    nj_json_free(v);
    nj_json_free(NULL);
}

Test(json, decodes_escapes_to_utf8)
{
    nj_json *v = parse_ok("\"q\\\"b\\\\s\\/n\\nt\\tr\\rb\\bf\\f \\u00e9 \\u20ac \\ud83d\\ude00\"");
    cr_assert_str_eq(v->string, "q\"b\\s/n\nt\tr\rb\bf\f \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    nj_json_free(v);
}

Test(json, follows_dotted_paths)
{
    nj_json *v = parse_ok("{\"overall\": {\"model\": {\"auc\": 0.675, \"log_loss\": 0.524}},"
                          " \"by_origin\": [{\"origin\": \"SFO\"}, {\"origin\": \"LAX\"}],"
                          " \"champion\": null, \"k\": 1, \"k\": 2}");
    cr_assert_eq(nj_json_path(v, "overall.model.auc")->number, 0.675);
    cr_assert_str_eq(nj_json_path(v, "by_origin.1.origin")->string, "LAX");
    cr_assert_eq(nj_json_path(v, "champion")->type, NJ_JSON_NULL);
    cr_assert_null(nj_json_path(v, "champion.auc"));
    cr_assert_null(nj_json_path(v, "by_origin.2.origin"));
    cr_assert_null(nj_json_path(v, "by_origin.x"));
    cr_assert_null(nj_json_path(v, "overall.model.auc.x"));
    cr_assert_null(nj_json_path(v, "overall..auc"));
    cr_assert_eq(nj_json_path(v, ""), v);
    cr_assert_eq(nj_json_path(v, "k")->number, 2.0, "the last duplicate wins");
    nj_json_free(v);
}

Test(json, reports_errors_with_line_and_column)
{
    parse_fails("{\n  \"model\": {\n    \"auc\": 0.6 \"x\": 1}}",
                "metrics.json:3:16: expected ',' or '}', found '\"'");
    parse_fails("{\"a\": 1,}", "metrics.json:1:9: expected a member name in quotes, found '}'");
    parse_fails("[1, 2", "metrics.json:1:6: expected ',' or ']', found end of input");
    parse_fails("{\"a\" 1}", "metrics.json:1:6: expected ':' after member name, found '1'");
    parse_fails("[01]", "metrics.json:1:3: expected ',' or ']', found '1'");
    parse_fails("[1.]", "metrics.json:1:4: invalid number: expected a digit after '.'");
    parse_fails("[1e+]", "metrics.json:1:5: invalid number: expected a digit in the exponent");
    parse_fails("[-]", "metrics.json:1:2: invalid number");
    parse_fails("[1e999]", "metrics.json:1:2: number out of range");
    parse_fails("\"abc", "metrics.json:1:5: unterminated string");
    parse_fails("\"a\nb\"", "metrics.json:1:3: control character 0x0a in string");
    parse_fails("\"\\q\"", "metrics.json:1:2: invalid escape '\\q'");
    parse_fails("\"\\u12g4\"", "metrics.json:1:2: invalid \\u escape: expected 4 hex digits");
    parse_fails("\"\\ud83d x\"", "metrics.json:1:2: unpaired surrogate \\ud83d");
    parse_fails("\"\\ude00\"", "metrics.json:1:2: unpaired surrogate \\ude00");
    parse_fails("\"\\u0000\"", "metrics.json:1:2: \\u0000 is not supported");
    parse_fails("tru", "metrics.json:1:1: expected a value, found 't'");
    parse_fails("", "metrics.json:1:1: expected a value, found end of input");
    parse_fails("{} {}", "metrics.json:1:4: unexpected text after the JSON value");
    parse_fails("nan", "metrics.json:1:1: expected a value, found 'n'");
}

Test(json, refuses_deep_nesting)
{
    char text[600];
    memset(text, '[', 300);
    text[300] = '\0';
    nj_err err = {0};
    nj_json *v = NULL;
    cr_assert_eq(nj_json_parse(text, 300, "deep.json", &v, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "deep.json:1:257: nesting deeper than 256");
}

Test(json, loads_a_file_and_names_it)
{
    nj_test_write("m.json", "{\"model\": {\"auc\": 0.7}}");
    nj_err err = {0};
    nj_json *v = NULL;
    cr_assert_eq(nj_json_load("m.json", &v, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_json_path(v, "model.auc")->number, 0.7);
    nj_json_free(v);
    cr_assert_lt(nj_json_load("missing.json", &v, &err), 0);
    cr_assert(strstr(err.msg, "'missing.json'"), "%s", err.msg);
    nj_test_write("bad.json", "{\n\"a\": }");
    cr_assert_eq(nj_json_load("bad.json", &v, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "bad.json:2:6: expected a value, found '}'");
}

Test(json, writer_escapes_and_round_trips)
{
    nj_buf b;
    nj_buf_init(&b);
    nj_json_write_string(&b, "a\"b\\c\nd\x01 \xc3\xa9");
    cr_assert_str_eq(b.data, "\"a\\\"b\\\\c\\nd\\u0001 \xc3\xa9\"");
    nj_buf_reset(&b);
    nj_json_write_string(&b, NULL);
    nj_json_write_number(&b, 0.1);
    nj_json_write_number(&b, NAN);
    nj_buf_putc(&b, ' ');
    nj_json_write_number(&b, 1.0 / 3.0);
    cr_assert_str_eq(b.data, "null0.1null 0.3333333333333333");

    const char *doc = "{\"s\":\"t\\u00e9\\n\",\"a\":[1,2.5,true,false,null],\"o\":{}}";
    nj_json *v = parse_ok(doc);
    nj_buf_reset(&b);
    nj_json_write(&b, v);
    cr_assert_str_eq(b.data, "{\"s\":\"t\xc3\xa9\\n\",\"a\":[1,2.5,true,false,null],\"o\":{}}");
    nj_json *again = parse_ok(b.data);
    cr_assert_str_eq(nj_json_get(again, "s")->string, "t\xc3\xa9\n");
    nj_json_free(again);
    nj_json_free(v);
    nj_buf_release(&b);
}

Test(json, reads_nj_evaluate_output)
{
    /* The shape stages/evaluate.c writes, without a champion. */
    nj_json *v = parse_ok(
        "{\n  \"dates\": [\"2001-03-01\", \"2001-03-01\"],\n  \"rows\": 1200,\n"
        "  \"positives\": 240,\n  \"model\": {\"path\": \"m.bin\", \"version\": \"abc\", "
        "\"train_rows\": 9000, \"base_rate\": 0.2},\n  \"champion\": null,\n"
        "  \"overall\": {\"model\": {\"auc\": 0.675, \"log_loss\": 0.524, \"brier\": 0.18, "
        "\"calibration\": [{\"lo\": 0.0, \"hi\": 0.1, \"n\": 3, \"mean_pred\": null, "
        "\"observed\": null}]}, \"base_rate\": {\"auc\": null}},\n  \"drift\": null\n}\n");
    cr_assert_eq(nj_json_path(v, "overall.model.log_loss")->number, 0.524);
    cr_assert_eq(nj_json_path(v, "overall.model.calibration.0.n")->number, 3.0);
    cr_assert_eq(nj_json_path(v, "overall.base_rate.auc")->type, NJ_JSON_NULL);
    cr_assert_null(nj_json_path(v, "overall.champion"));
    nj_json_free(v);
}
