/* gate.h - promotion gate rules: parse "auc >= champion.auc - 0.002" once at
 * load time, evaluate against a candidate's (and a champion's) metrics.
 *
 * Grammar (spaces optional between tokens):
 *
 *     rule     := METRIC OP expr
 *     OP       := ">=" | ">" | "<=" | "<" | "==" | "!="
 *     expr     := operand [ ("+" | "-" | "*" | "/") operand ]
 *     operand  := NUMBER | "champion." METRIC
 *     METRIC   := NAME ("." NAME)*        NAME := [A-Za-z_][A-Za-z0-9_]*
 *     NUMBER   := [+-]? digits [. digits] [(e|E) [+-] digits]   (also ".5")
 *
 * METRIC is a dotted path (nj_json_path) below the candidate's metrics root;
 * "champion.METRIC" is the same path below the champion's root. Where the
 * roots are is the caller's choice (nj_gate_source), so one metrics file can
 * hold both (nj-evaluate writes "overall.model" and "overall.champion") or
 * they can come from two files. Examples:
 *     auc >= 0.60
 *     auc >= champion.auc - 0.002
 *     log_loss <= champion.log_loss * 1.01
 *     brier < 0.2
 *
 * Evaluation:
 *   - no champion (its source is NULL, or its root is missing or JSON null):
 *     rules that mention champion.X are SKIPPED, the others apply;
 *   - a metric path that does not exist, or holds something other than a
 *     number or null, is an error (a misspelt metric must not silently pass
 *     or hold a model);
 *   - the candidate's metric is null (e.g. AUC of a single-class day): FAIL,
 *     a model that cannot be measured is not promoted;
 *   - a champion metric that is null: SKIPPED, with the reason;
 *   - the gate passes when no rule FAILs (skipped rules do not count).
 *
 *     nj_gate gate;
 *     nj_gate_init(&gate);
 *     int col;
 *     if (nj_gate_add(&gate, "auc >= champion.auc - 0.002", &col, &err) < 0) ...
 *     nj_gate_source cand = {doc, "overall.model", "metrics.json"};
 *     nj_gate_source champ = {doc, "overall.champion", "metrics.json"};
 *     nj_gate_result res;
 *     if (nj_gate_evaluate(&gate, &cand, &champ, &res, &err) < 0) ...
 *     for (size_t i = 0; i < res.len; i++) puts(res.checks[i].text);
 *         // "auc >= champion.auc - 0.002: 0.6712 >= 0.6745 - 0.002 = 0.6725 → FAIL"
 *     nj_gate_result_release(&res);
 *     nj_gate_release(&gate);
 */
#ifndef NJ_GATE_H
#define NJ_GATE_H

#include <stddef.h>

#include "nightjar/err.h"
#include "nightjar/json.h"
#include "nightjar/util.h"

typedef enum nj_gate_op {
    NJ_GATE_GE,
    NJ_GATE_GT,
    NJ_GATE_LE,
    NJ_GATE_LT,
    NJ_GATE_EQ,
    NJ_GATE_NE,
} nj_gate_op;

/* A number or a champion metric. */
typedef struct nj_gate_operand {
    char *champion; /* metric path below the champion's root, or NULL for a number */
    double number;  /* when champion is NULL */
    char *literal;  /* the number as written ("0.002"), for messages; NULL for a metric */
} nj_gate_operand;

/* One parsed rule. Owned by its nj_gate. */
typedef struct nj_gate_rule {
    char *text;   /* the rule as written, trimmed */
    char *metric; /* candidate metric path: the left side */
    nj_gate_op op;
    nj_gate_operand lhs; /* the expression's first operand */
    char arith;          /* '+', '-', '*', '/', or 0 when the expression is lhs alone */
    nj_gate_operand rhs; /* second operand when arith != 0 */
    int uses_champion;   /* 1 if either operand is a champion metric */
} nj_gate_rule;

/* An ordered list of rules. */
typedef struct nj_gate {
    nj_gate_rule *rules;
    size_t len, cap;
} nj_gate;

void nj_gate_init(nj_gate *gate);
void nj_gate_release(nj_gate *gate); /* frees every rule; gate is re-initialised */

/* Parses `text` and appends it to `gate`. Returns 0, or NJ_EFORMAT with e.g.
 * "gate rule 'auc >> 0.6': expected one of >=, >, <=, <, ==, != after 'auc'"
 * and *col (may be NULL) set to the 1-based column in `text` where the
 * problem is, so that a pipeline loader can report file:line:col. */
int nj_gate_add(nj_gate *gate, const char *text, int *col, nj_err *err);

/* "<=", ">", ... */
const char *nj_gate_op_name(nj_gate_op op);

/* Where one side's metrics are: the object at dotted path `root` in `doc`
 * ("" or NULL: doc itself). `name` (e.g. the file path) is for messages. All
 * borrowed for the duration of the call. */
typedef struct nj_gate_source {
    const nj_json *doc;
    const char *root;
    const char *name;
} nj_gate_source;

typedef enum nj_gate_outcome {
    NJ_GATE_PASS,
    NJ_GATE_FAIL,
    NJ_GATE_SKIPPED,
} nj_gate_outcome;

/* The verdict on one rule. */
typedef struct nj_gate_check {
    const nj_gate_rule *rule; /* borrowed from the gate: valid while it is */
    nj_gate_outcome outcome;
    double value;     /* the candidate's metric; NaN when null or skipped */
    double threshold; /* the expression's value; NaN when it cannot be computed */
    char *text;       /* for people, owned: "auc >= 0.60: 0.6712 >= 0.60 → PASS",
                       * "auc >= champion.auc: no champion → SKIPPED" */
} nj_gate_check;

typedef struct nj_gate_result {
    nj_gate_check *checks; /* one per rule, in rule order */
    size_t len;
    int passed; /* 1 when no check failed */
    size_t failed, skipped;
    int has_champion; /* 0 when the champion source was absent or null */
} nj_gate_result;

/* Evaluates every rule. `champion` may be NULL (no champion). Fills *out
 * (caller releases it, also after a failure) and returns 0 whatever the
 * verdict; returns NJ_EFORMAT for metrics that cannot be read: "metrics
 * 'metrics.json' have no 'overall.model.acu' (gate rule 'acu >= 0.6')", or
 * the candidate's root missing. */
int nj_gate_evaluate(const nj_gate *gate, const nj_gate_source *candidate,
                     const nj_gate_source *champion, nj_gate_result *out, nj_err *err);

void nj_gate_result_release(nj_gate_result *res);

/* Appends "PASS", "FAIL" or "SKIPPED". */
const char *nj_gate_outcome_name(nj_gate_outcome outcome);

/* Appends the texts of the checks, one per line ("\n"-separated), all of them
 * or (only_failed) just the failures: the detail of a registry hold. */
void nj_gate_result_format(const nj_gate_result *res, int only_failed, nj_buf *out);

/* Appends the result as JSON for --json output and the state database:
 * {"passed":false,"has_champion":true,"checks":[{"rule":"auc >= 0.6",
 *  "outcome":"fail","value":0.55,"threshold":0.6,"text":"..."}]}
 * (value and threshold are null when unknown). */
void nj_gate_result_write_json(const nj_gate_result *res, nj_buf *out);

#endif
