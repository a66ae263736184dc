/* gate.c - promotion gate rules: a hand-written tokenizer/parser for the
 * tiny grammar in gate.h, and the evaluation that turns metrics into a
 * PASS / FAIL / SKIPPED verdict per rule with a line for people.
 */
#include "nightjar/gate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {">=", ">", "<=", "<", "==", "!="};

const char *nj_gate_op_name(nj_gate_op op)
{
    return (unsigned)op < 6 ? op_names[op] : "?";
}

const char *nj_gate_outcome_name(nj_gate_outcome outcome)
{
    return outcome == NJ_GATE_PASS ? "PASS" : outcome == NJ_GATE_FAIL ? "FAIL" : "SKIPPED";
}

void nj_gate_init(nj_gate *gate)
{
    memset(gate, 0, sizeof(*gate));
}

static void rule_release(nj_gate_rule *r)
{
    free(r->text);
    free(r->metric);
    free(r->lhs.champion);
    free(r->lhs.literal);
    free(r->rhs.champion);
    free(r->rhs.literal);
}

void nj_gate_release(nj_gate *gate)
{
    if (!gate) return;
    for (size_t i = 0; i < gate->len; i++)
        rule_release(&gate->rules[i]);
    free(gate->rules);
    nj_gate_init(gate);
}

typedef struct scanner {
    const char *text, *p;
    int lead; /* blanks trimmed before text: columns count in the caller's string */
    int *col;
    nj_err *err;
} scanner;

static int fail(scanner *s, const char *at, const char *fmt, ...) NJ_PRINTF(3, 4);
static int fail(scanner *s, const char *at, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (s->col) *s->col = (int)(at - s->text) + s->lead + 1;
    return nj_err_set(s->err, NJ_EFORMAT, "gate rule '%s': %s", s->text, what);
}

static void skip_space(scanner *s)
{
    while (*s->p == ' ' || *s->p == '\t')
        s->p++;
}

static int is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* A dotted metric path at p, or NULL (nothing consumed) when there is none.
 * Caller frees. */
static char *scan_metric(scanner *s)
{
    const char *start = s->p, *q = s->p;
    for (;;) {
        if (!is_name_start(*q)) return NULL;
        while (is_name_char(*q))
            q++;
        if (*q != '.' || !is_name_start(q[1])) break;
        q++;
    }
    s->p = q;
    return nj_xstrndup(start, (size_t)(q - start));
}

static int scan_number(scanner *s, nj_gate_operand *out)
{
    const char *q = s->p;
    if (*q == '+' || *q == '-') q++;
    int digits = 0;
    while (*q >= '0' && *q <= '9')
        q++, digits++;
    if (*q == '.') {
        q++;
        while (*q >= '0' && *q <= '9')
            q++, digits++;
    }
    if (!digits) return -1;
    if ((*q == 'e' || *q == 'E') &&
        ((q[1] >= '0' && q[1] <= '9') ||
         ((q[1] == '+' || q[1] == '-') && q[2] >= '0' && q[2] <= '9'))) {
        q += 2;
        while (*q >= '0' && *q <= '9')
            q++;
    }
    out->literal = nj_xstrndup(s->p, (size_t)(q - s->p));
    out->number = strtod(out->literal, NULL);
    s->p = q;
    return isfinite(out->number) ? 0 : -2;
}

static int scan_operand(scanner *s, nj_gate_operand *out, const char *after)
{
    skip_space(s);
    const char *at = s->p;
    if (strncmp(s->p, "champion.", 9) == 0) {
        s->p += 9;
        if (!(out->champion = scan_metric(s)))
            return fail(s, s->p, "expected a metric name after '%s'", "champion.");
        return 0;
    }
    int rc = scan_number(s, out);
    if (rc == -2) return fail(s, at, "number '%s' is out of range", out->literal);
    if (rc == 0) return 0;
    char *name = scan_metric(s);
    if (name) {
        rc = fail(s, at, "'%.60s' is not a number or 'champion.%.60s'", name, name);
        free(name);
        return rc;
    }
    return fail(s, at, "expected a number or 'champion.METRIC' after '%s'", after);
}

int nj_gate_add(nj_gate *gate, const char *text, int *col, nj_err *err)
{
    nj_gate_rule r = {0};
    int lead = 0;
    while (text[lead] == ' ' || text[lead] == '\t')
        lead++;
    text += lead;
    size_t n = strlen(text);
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\t'))
        n--;
    r.text = nj_xstrndup(text, n);
    scanner s = {r.text, r.text, lead, col, err};
    int rc;
    if (col) *col = 0;
    if (!(r.metric = scan_metric(&s))) {
        rc = fail(&s, s.p, "expected a metric name");
        goto fail;
    }
    skip_space(&s);
    int op = -1;
    for (int i = 0; i < 6; i++) {
        size_t len = strlen(op_names[i]);
        /* ">>" and "=>" are not ">" followed by something. */
        if (strncmp(s.p, op_names[i], len) == 0 && !(s.p[len] && strchr("<>=!", s.p[len]))) {
            op = i;
            s.p += len;
            break;
        }
    }
    if (op < 0) {
        rc = fail(&s, s.p, "expected one of >=, >, <=, <, ==, != after '%s'", r.metric);
        goto fail;
    }
    r.op = (nj_gate_op)op;
    if ((rc = scan_operand(&s, &r.lhs, op_names[op])) < 0) goto fail;
    skip_space(&s);
    if (*s.p && strchr("+-*/", *s.p)) {
        r.arith = *s.p++;
        char after[2] = {r.arith, 0};
        if ((rc = scan_operand(&s, &r.rhs, after)) < 0) goto fail;
        skip_space(&s);
    }
    if (*s.p) {
        rc = fail(&s, s.p, "unexpected '%s' at the end", s.p);
        goto fail;
    }
    r.uses_champion = r.lhs.champion || r.rhs.champion;
    NJ_PUSH(gate->rules, gate->len, gate->cap, r);
    return 0;
fail:
    rule_release(&r);
    return rc;
}

/* Looks up a metric; 1 when it is a number (*v set), 0 when null (*v NaN),
 * or NJ_EFORMAT when missing or of another type. */
static int metric(const nj_json *root, const nj_gate_source *src, const char *path,
                  const nj_gate_rule *rule, double *v, nj_err *err)
{
    const nj_json *x = nj_json_path(root, path);
    const char *r = src->root && *src->root ? src->root : "";
    const char *dot = *r ? "." : "";
    *v = NAN;
    if (!x)
        return nj_err_set(err, NJ_EFORMAT, "metrics '%s' have no '%s%s%s' (gate rule '%s')",
                          src->name, r, dot, path, rule->text);
    if (x->type == NJ_JSON_NULL) return 0;
    if (x->type != NJ_JSON_NUMBER)
        return nj_err_set(err, NJ_EFORMAT,
                          "metric '%s%s%s' in '%s' is a %s, not a number "
                          "(gate rule '%s')",
                          r, dot, path, src->name, nj_json_type_name(x->type), rule->text);
    *v = x->number;
    return 1;
}

static int compare(double a, nj_gate_op op, double b)
{
    switch (op) {
    case NJ_GATE_GE:
        return a >= b;
    case NJ_GATE_GT:
        return a > b;
    case NJ_GATE_LE:
        return a <= b;
    case NJ_GATE_LT:
        return a < b;
    case NJ_GATE_EQ:
        return a == b;
    case NJ_GATE_NE:
        return a != b;
    }
    return 0;
}

/* How many decimals to show: 4, or more when needed to tell the candidate's
 * value from the threshold, so that a FAIL never reads "0.6725 >= 0.6725". */
static int precision(double v, double t)
{
    char a[64], b[64];
    int prec = 4;
    for (; prec < 17 && v != t && isfinite(v) && isfinite(t); prec++) {
        snprintf(a, sizeof(a), "%.*f", prec, v);
        snprintf(b, sizeof(b), "%.*f", prec, t);
        if (strcmp(a, b) != 0) break;
    }
    return prec;
}

/* `v` with `prec` decimals, trailing zeros dropped; %g for huge or tiny. */
static void fmt_value(char *out, size_t size, double v, int prec)
{
    if (fabs(v) >= 1e6 || (v != 0 && fabs(v) < 1e-4) || !isfinite(v)) {
        snprintf(out, size, "%.6g", v);
        return;
    }
    snprintf(out, size, "%.*f", prec, v);
    char *dot = strchr(out, '.');
    if (dot) {
        char *end = out + strlen(out);
        while (end > dot + 1 && end[-1] == '0')
            *--end = '\0';
        if (end == dot + 1) *dot = '\0';
    }
}

/* A number as written in the rule, or a champion metric's value. */
static void fmt_operand(char *out, size_t size, const nj_gate_operand *o, double v, int prec)
{
    if (o->literal)
        snprintf(out, size, "%s", o->literal);
    else
        fmt_value(out, size, v, prec);
}

static int check_rule(const nj_gate_rule *rule, const nj_gate_source *cand,
                      const nj_json *cand_root, const nj_gate_source *champ,
                      const nj_json *champ_root, nj_gate_check *c, nj_err *err)
{
    nj_buf b;
    nj_buf_init(&b);
    nj_buf_printf(&b, "%s: ", rule->text);
    c->rule = rule;
    c->value = c->threshold = NAN;
    double operand[2] = {rule->lhs.number, rule->rhs.number};
    const nj_gate_operand *ops[2] = {&rule->lhs, &rule->rhs};
    int rc = metric(cand_root, cand, rule->metric, rule, &c->value, err);
    if (rc < 0) goto fail;
    int cand_null = rc == 0;
    const char *null_champion = NULL;
    for (int i = 0; i < (rule->arith ? 2 : 1); i++) {
        if (!ops[i]->champion || !champ_root) continue;
        if ((rc = metric(champ_root, champ, ops[i]->champion, rule, &operand[i], err)) < 0)
            goto fail;
        if (rc == 0 && !null_champion) null_champion = ops[i]->champion;
    }
    if (rule->uses_champion && !champ_root) {
        c->outcome = NJ_GATE_SKIPPED;
        nj_buf_puts(&b, "no champion");
    } else if (null_champion) {
        c->outcome = NJ_GATE_SKIPPED;
        nj_buf_printf(&b, "champion.%s is null", null_champion);
    } else if (cand_null) {
        c->outcome = NJ_GATE_FAIL;
        nj_buf_printf(&b, "%s is null", rule->metric);
    } else {
        double t = operand[0];
        switch (rule->arith) {
        case '+':
            t = operand[0] + operand[1];
            break;
        case '-':
            t = operand[0] - operand[1];
            break;
        case '*':
            t = operand[0] * operand[1];
            break;
        case '/':
            t = operand[0] / operand[1];
            break;
        }
        c->threshold = t;
        c->outcome = isfinite(t) && compare(c->value, rule->op, t) ? NJ_GATE_PASS : NJ_GATE_FAIL;
        char v[64], a[64], x[64], tt[64];
        int prec = precision(c->value, t);
        fmt_value(v, sizeof(v), c->value, prec);
        fmt_operand(a, sizeof(a), ops[0], operand[0], prec);
        nj_buf_printf(&b, "%s %s %s", v, nj_gate_op_name(rule->op), a);
        if (rule->arith) {
            fmt_operand(x, sizeof(x), ops[1], operand[1], prec);
            fmt_value(tt, sizeof(tt), t, prec);
            nj_buf_printf(&b, " %c %s = %s", rule->arith, x, tt);
        }
    }
    nj_buf_printf(&b, " → %s", nj_gate_outcome_name(c->outcome));
    c->text = nj_buf_detach(&b);
    return 0;
fail:
    nj_buf_release(&b);
    return rc;
}

int nj_gate_evaluate(const nj_gate *gate, const nj_gate_source *candidate,
                     const nj_gate_source *champion, nj_gate_result *out, nj_err *err)
{
    memset(out, 0, sizeof(*out));
    out->checks = nj_xcalloc(gate->len, sizeof(*out->checks));
    const nj_json *cand_root = nj_json_path(candidate->doc, candidate->root);
    if (!cand_root || cand_root->type != NJ_JSON_OBJECT)
        return nj_err_set(err, NJ_EFORMAT, "metrics '%s' have no object '%s'", candidate->name,
                          candidate->root ? candidate->root : "");
    const nj_json *champ_root = champion ? nj_json_path(champion->doc, champion->root) : NULL;
    if (champ_root && champ_root->type == NJ_JSON_NULL) champ_root = NULL;
    if (champ_root && champ_root->type != NJ_JSON_OBJECT)
        return nj_err_set(err, NJ_EFORMAT, "champion metrics '%s' in '%s' are a %s, not an object",
                          champion->root ? champion->root : "", champion->name,
                          nj_json_type_name(champ_root->type));
    out->has_champion = champ_root != NULL;
    for (size_t i = 0; i < gate->len; i++) {
        nj_gate_check *c = &out->checks[out->len];
        int rc = check_rule(&gate->rules[i], candidate, cand_root, champion, champ_root, c, err);
        if (rc < 0) return rc;
        out->len++;
        out->failed += c->outcome == NJ_GATE_FAIL;
        out->skipped += c->outcome == NJ_GATE_SKIPPED;
    }
    out->passed = out->failed == 0;
    return 0;
}

void nj_gate_result_release(nj_gate_result *res)
{
    if (!res) return;
    for (size_t i = 0; i < res->len; i++)
        free(res->checks[i].text);
    free(res->checks);
    memset(res, 0, sizeof(*res));
}

void nj_gate_result_format(const nj_gate_result *res, int only_failed, nj_buf *out)
{
    int first = 1;
    for (size_t i = 0; i < res->len; i++) {
        if (only_failed && res->checks[i].outcome != NJ_GATE_FAIL) continue;
        if (!first) nj_buf_putc(out, '\n');
        nj_buf_puts(out, res->checks[i].text);
        first = 0;
    }
}

void nj_gate_result_write_json(const nj_gate_result *res, nj_buf *out)
{
    static const char *const outcomes[] = {"pass", "fail", "skipped"};
    nj_buf_printf(out, "{\"passed\":%s,\"has_champion\":%s,\"checks\":[",
                  res->passed ? "true" : "false", res->has_champion ? "true" : "false");
    for (size_t i = 0; i < res->len; i++) {
        const nj_gate_check *c = &res->checks[i];
        nj_buf_puts(out, i ? ",{\"rule\":" : "{\"rule\":");
        nj_json_write_string(out, c->rule->text);
        nj_buf_printf(out, ",\"outcome\":\"%s\",\"value\":", outcomes[c->outcome]);
        nj_json_write_number(out, c->value);
        nj_buf_puts(out, ",\"threshold\":");
        nj_json_write_number(out, c->threshold);
        nj_buf_puts(out, ",\"text\":");
        nj_json_write_string(out, c->text);
        nj_buf_putc(out, '}');
    }
    nj_buf_puts(out, "]}");
}
