/* template.c - the {{ ... }} mini-language: scanning, parsing one
 * expression, rendering with shell quoting.
 *
 * Loading (spec.c) uses nj_template_scan() and nj_template_parse_expr() to
 * check every expression and to find the params and stages a stage uses;
 * running uses nj_template_render(). Both go through the same parser, so an
 * expression that loads is one that renders. A stage dep's paths over its
 * window ({{deps.S.O}}, nj_template_window_paths) are the upstream output's
 * path template rendered once per date. Owns nothing beyond the strings it
 * returns.
 */
#include "nightjar/template.h"

#include <stdlib.h>
#include <string.h>

#include "nightjar/fs.h"

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int nj_template_scan(const char *tmpl, nj_template_visit_fn visit, void *ctx, nj_err *err)
{
    const char *p = tmpl;
    for (;;) {
        const char *open = strstr(p, "{{");
        if (!open) return 0;
        const char *start = open + 2;
        while (is_blank(*start))
            start++;
        /* A quoted literal may itself contain "}}": look for the braces after
         * its closing quote. Without a closing quote, parse_expr rejects it. */
        const char *close = NULL;
        if (*start == '\'') {
            const char *quote = strchr(start + 1, '\'');
            if (quote) close = strstr(quote + 1, "}}");
        }
        if (!close) close = strstr(start, "}}");
        if (!close)
            return nj_err_set(err, NJ_EFORMAT, "unclosed '{{' at offset %zu",
                              (size_t)(open - tmpl));
        const char *end = close;
        while (end > start && is_blank(end[-1]))
            end--;
        int rc = visit(ctx, start, (size_t)(end - start), (size_t)(open - tmpl));
        if (rc) return rc;
        p = close + 2;
    }
}

/* Length of the run of characters at s (at most n) that belong to a name:
 * letters, digits, '_' and the characters in `extra`. */
static size_t name_span(const char *s, size_t n, const char *extra)
{
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || (c && strchr(extra, c))))
            break;
        i++;
    }
    return i;
}

static int starts_with(const char *s, size_t n, const char *prefix)
{
    size_t m = strlen(prefix);
    return n >= m && memcmp(s, prefix, m) == 0;
}

/* "ds" or "ds_nodash", then optionally [+-] N [dw], blanks allowed between. */
static int parse_ds(const char *s, size_t n, nj_expr *out)
{
    size_t i;
    if (starts_with(s, n, "ds_nodash")) {
        out->nodash = 1;
        i = 9;
    } else if (starts_with(s, n, "ds")) {
        i = 2;
    } else {
        return -1;
    }
    while (i < n && is_blank(s[i]))
        i++;
    if (i == n) return 0;
    if (s[i] != '+' && s[i] != '-') return -1;
    int sign = s[i++] == '-' ? -1 : 1;
    while (i < n && is_blank(s[i]))
        i++;
    int32_t amount = 0;
    size_t digits = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        if (++digits > 6) return -1; /* a million days is plenty */
        amount = amount * 10 + (s[i++] - '0');
    }
    if (digits == 0 || i + 1 != n) return -1;
    if (s[i] == 'w')
        amount *= 7;
    else if (s[i] != 'd')
        return -1;
    out->day_offset = sign * amount;
    return 0;
}

int nj_template_parse_expr(const char *expr, size_t len, nj_expr *out, nj_err *err)
{
    memset(out, 0, sizeof(*out));
    if (len >= 2 && expr[0] == '\'' && expr[len - 1] == '\'' && !memchr(expr + 1, '\'', len - 2)) {
        out->kind = NJ_EXPR_LITERAL;
        out->name = expr + 1;
        out->name_len = len - 2;
        return 0;
    }
    if (starts_with(expr, len, "params.")) {
        const char *name = expr + 7;
        size_t n = len - 7;
        if (n > 0 && name_span(name, n, "-") == n) {
            out->kind = NJ_EXPR_PARAM;
            out->name = name;
            out->name_len = n;
            return 0;
        }
    } else if (starts_with(expr, len, "outs.")) {
        const char *name = expr + 5;
        size_t n = len - 5;
        if (n > 0 && name_span(name, n, "") == n) {
            out->kind = NJ_EXPR_OUT;
            out->name = name;
            out->name_len = n;
            return 0;
        }
    } else if (starts_with(expr, len, "stages.")) {
        /* Stage names may contain '.', so split at the last ".outs.". */
        const char *rest = expr + 7;
        size_t n = len - 7;
        for (size_t k = n; k-- > 0;) {
            if (!starts_with(rest + k, n - k, ".outs.")) continue;
            const char *name = rest + k + 6;
            size_t name_len = n - k - 6;
            if (k > 0 && name_span(rest, k, ".-") == k && name_len > 0 &&
                name_span(name, name_len, "") == name_len) {
                out->kind = NJ_EXPR_STAGE_OUT;
                out->stage = rest;
                out->stage_len = k;
                out->name = name;
                out->name_len = name_len;
                return 0;
            }
            break;
        }
    } else if (starts_with(expr, len, "deps.")) {
        /* deps.STAGE.OUT: stage names may contain '.', output names may not,
         * so split at the last '.'. */
        const char *rest = expr + 5;
        size_t n = len - 5, k = n;
        while (k > 0 && rest[k - 1] != '.')
            k--;
        if (k > 1) {
            size_t stage_len = k - 1, name_len = n - k;
            const char *name = rest + k;
            if (name_span(rest, stage_len, ".-") == stage_len && name_len > 0 &&
                name_span(name, name_len, "") == name_len) {
                out->kind = NJ_EXPR_DEPS;
                out->stage = rest;
                out->stage_len = stage_len;
                out->name = name;
                out->name_len = name_len;
                return 0;
            }
        }
    } else if (len == 15 && memcmp(expr, "models.champion", 15) == 0) {
        out->kind = NJ_EXPR_CHAMPION;
        return 0;
    } else if (parse_ds(expr, len, out) == 0) {
        out->kind = NJ_EXPR_DS;
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return nj_err_set(err, NJ_EFORMAT, "unknown template expression '{{%.*s}}'", (int)len, expr);
}

void nj_shell_quote(nj_buf *b, const char *value)
{
    static const char safe[] = "_./:=@%+,-";
    int plain = value[0] != '\0';
    for (const char *p = value; *p && plain; p++) {
        char c = *p;
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                strchr(safe, c) != NULL;
    }
    if (plain) {
        nj_buf_puts(b, value);
        return;
    }
    /* 'it'\''s': close the quote, an escaped quote, reopen. */
    nj_buf_putc(b, '\'');
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            nj_buf_puts(b, "'\\''");
        else
            nj_buf_putc(b, *p);
    }
    nj_buf_putc(b, '\'');
}

typedef struct render_state {
    const nj_render_ctx *ctx;
    const char *tmpl;
    size_t pos; /* of the first byte of tmpl not yet copied */
    nj_buf out;
    nj_err *err;
    int in_path; /* rendering an output path: only params and ds make sense */
} render_state;

static int render_into(const char *tmpl, const nj_render_ctx *ctx, int in_path, nj_buf *out,
                       nj_err *err);

static int stage_lists_param(const nj_stage *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->nparams; i++)
        if (strlen(s->params[i].name) == len && memcmp(s->params[i].name, name, len) == 0) return 1;
    return 0;
}

static const nj_param *find_param(const nj_pipeline *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->nparams; i++)
        if (strlen(p->params[i].name) == len && memcmp(p->params[i].name, name, len) == 0)
            return &p->params[i];
    return NULL;
}

static const nj_out *find_out(const nj_stage *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->nouts; i++)
        if (strlen(s->outs[i].name) == len && memcmp(s->outs[i].name, name, len) == 0)
            return &s->outs[i];
    return NULL;
}

static void emit(render_state *st, const char *value)
{
    if (st->ctx->shell_quote)
        nj_shell_quote(&st->out, value);
    else
        nj_buf_puts(&st->out, value);
}

/* Renders the path of output `o` of stage `owner` (it may hold {{ds}} or
 * params) and emits it, made absolute when the context asks for it. */
static int emit_out(render_state *st, const nj_stage *owner, const nj_out *o, const char *expr,
                    size_t len)
{
    nj_render_ctx sub = *st->ctx;
    sub.stage = owner;
    sub.shell_quote = 0;
    nj_buf path;
    nj_buf_init(&path);
    int rc = render_into(o->path, &sub, 1, &path, st->err);
    if (rc) {
        nj_buf_release(&path);
        nj_err_prefix(st->err, "in '{{%.*s}}'", (int)len, expr);
        return rc;
    }
    if (st->ctx->absolute_paths && st->ctx->pipeline->dir) {
        char *abs = nj_path_join(st->ctx->pipeline->dir, path.data);
        emit(st, abs);
        free(abs);
    } else {
        emit(st, path.data);
    }
    nj_buf_release(&path);
    return 0;
}

static const nj_stage *find_stage(const nj_pipeline *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->nstages; i++)
        if (strlen(p->stages[i].name) == len && memcmp(p->stages[i].name, name, len) == 0)
            return &p->stages[i];
    return NULL;
}

/* The stage dep {stage: S, out: O} of `s` that {{deps.S.O}} names, or NULL. */
static const nj_dep *find_stage_dep(const nj_stage *s, const nj_expr *e)
{
    for (size_t i = 0; i < s->ndeps; i++) {
        const nj_dep *d = &s->deps[i];
        if (d->stage && strlen(d->stage) == e->stage_len &&
            memcmp(d->stage, e->stage, e->stage_len) == 0 && strlen(d->out) == e->name_len &&
            memcmp(d->out, e->name, e->name_len) == 0)
            return d;
    }
    return NULL;
}

/* Renders the path template `tmpl` of stage `s` for the date text `ds`. */
static int render_path(const nj_pipeline *p, const nj_stage *s, const char *tmpl, const char *ds,
                       char **out, nj_err *err)
{
    nj_render_ctx ctx = {.pipeline = p, .stage = s, .ds = ds};
    nj_buf b;
    nj_buf_init(&b);
    int rc = render_into(tmpl, &ctx, 1, &b, err);
    if (rc) {
        nj_buf_release(&b);
        *out = NULL;
        return rc;
    }
    *out = nj_buf_detach(&b);
    nj_buf_release(&b);
    return 0;
}

int nj_template_render_for_date(const nj_pipeline *p, const nj_stage *s, const char *tmpl,
                                int32_t date, char **out, nj_err *err)
{
    char ds[11];
    nj_date_format(date, ds);
    return render_path(p, s, tmpl, ds, out, err);
}

int nj_template_window_paths(const nj_pipeline *p, const nj_dep *dep, const char *ds,
                             nj_strs *rel_paths, nj_err *err)
{
    if (!dep->stage) NJ_BUG("window paths of a path dep '%s'", dep->path);
    const nj_stage *owner = find_stage(p, dep->stage, strlen(dep->stage));
    if (!owner) return nj_err_set(err, NJ_ENOTFOUND, "dep on unknown stage '%s'", dep->stage);
    const nj_out *o = find_out(owner, dep->out, strlen(dep->out));
    if (!o)
        return nj_err_set(err, NJ_ENOTFOUND, "stage '%s' has no output '%s'", owner->name,
                          dep->out);
    char *path;
    int rc;
    if (!p->partition.enabled || !owner->partitioned) {
        /* One instance for all dates: its path does not depend on ds. */
        if ((rc = render_path(p, owner, o->path, ds, &path, err)) < 0) return rc;
        nj_strs_push(rel_paths, path);
        free(path);
        return 0;
    }
    if (!ds)
        return nj_err_set(err, NJ_ENOTFOUND, "no logical date to render the dep on stage '%s'",
                          owner->name);
    int32_t days, first, last;
    if ((rc = nj_date_parse(ds, &days, err)) < 0) return rc;
    nj_dep_window(p, dep, days, &first, &last);
    for (int32_t d = first; d <= last; d++) {
        if ((rc = nj_template_render_for_date(p, owner, o->path, d, &path, err)) < 0) return rc;
        nj_strs_push(rel_paths, path);
        free(path);
    }
    return 0;
}

static int render_expr(render_state *st, const char *expr, size_t len)
{
    const nj_render_ctx *ctx = st->ctx;
    nj_expr e;
    int rc = nj_template_parse_expr(expr, len, &e, st->err);
    if (rc) return rc;
    if (st->in_path &&
        (e.kind == NJ_EXPR_OUT || e.kind == NJ_EXPR_STAGE_OUT || e.kind == NJ_EXPR_DEPS ||
         e.kind == NJ_EXPR_CHAMPION))
        return nj_err_set(st->err, NJ_EFORMAT, "'{{%.*s}}' is not allowed in a path", (int)len,
                          expr);
    switch (e.kind) {
    case NJ_EXPR_LITERAL:
        nj_buf_add(&st->out, e.name, e.name_len);
        return 0;
    case NJ_EXPR_DS: {
        if (!ctx->ds)
            return nj_err_set(st->err, NJ_ENOTFOUND, "no logical date to render '{{%.*s}}'",
                              (int)len, expr);
        int32_t days;
        rc = nj_date_parse(ctx->ds, &days, st->err);
        if (rc < 0) return rc;
        char date[11];
        nj_date_format(days + e.day_offset, date);
        if (e.nodash) {
            /* "2024-03-01" -> "20240301" */
            memmove(date + 4, date + 5, 2);
            memmove(date + 6, date + 8, 3);
        }
        emit(st, date);
        return 0;
    }
    case NJ_EXPR_PARAM: {
        const nj_param *prm = find_param(ctx->pipeline, e.name, e.name_len);
        if (!prm)
            return nj_err_set(st->err, NJ_ENOTFOUND, "unknown param '%.*s' in '{{%.*s}}'",
                              (int)e.name_len, e.name, (int)len, expr);
        if (ctx->stage && !stage_lists_param(ctx->stage, e.name, e.name_len))
            return nj_err_set(st->err, NJ_ENOTFOUND,
                              "stage '%s' does not list param '%.*s' used in '{{%.*s}}'",
                              ctx->stage->name, (int)e.name_len, e.name, (int)len, expr);
        if (!prm->is_list) {
            emit(st, prm->value);
            return 0;
        }
        /* A list param: separately quoted words in a command. */
        for (size_t i = 0; i < prm->items.len; i++) {
            if (i > 0) nj_buf_putc(&st->out, ' ');
            emit(st, prm->items.items[i]);
        }
        return 0;
    }
    case NJ_EXPR_OUT: {
        if (!ctx->stage)
            return nj_err_set(st->err, NJ_ENOTFOUND, "'{{%.*s}}' outside a stage", (int)len, expr);
        const nj_out *o = find_out(ctx->stage, e.name, e.name_len);
        if (!o)
            return nj_err_set(st->err, NJ_ENOTFOUND, "unknown output '%.*s' in '{{%.*s}}'",
                              (int)e.name_len, e.name, (int)len, expr);
        return emit_out(st, ctx->stage, o, expr, len);
    }
    case NJ_EXPR_STAGE_OUT: {
        const nj_stage *owner = NULL;
        for (size_t i = 0; i < ctx->pipeline->nstages && !owner; i++) {
            const nj_stage *s = &ctx->pipeline->stages[i];
            if (strlen(s->name) == e.stage_len && memcmp(s->name, e.stage, e.stage_len) == 0)
                owner = s;
        }
        if (!owner)
            return nj_err_set(st->err, NJ_ENOTFOUND, "unknown stage '%.*s' in '{{%.*s}}'",
                              (int)e.stage_len, e.stage, (int)len, expr);
        const nj_out *o = find_out(owner, e.name, e.name_len);
        if (!o)
            return nj_err_set(st->err, NJ_ENOTFOUND,
                              "stage '%s' has no output '%.*s' in '{{%.*s}}'", owner->name,
                              (int)e.name_len, e.name, (int)len, expr);
        return emit_out(st, owner, o, expr, len);
    }
    case NJ_EXPR_DEPS: {
        if (!ctx->stage)
            return nj_err_set(st->err, NJ_ENOTFOUND, "'{{%.*s}}' outside a stage", (int)len, expr);
        const nj_dep *dep = find_stage_dep(ctx->stage, &e);
        if (!dep)
            return nj_err_set(st->err, NJ_ENOTFOUND,
                              "stage '%s': '{{%.*s}}' needs a dep {stage: %.*s, out: %.*s}",
                              ctx->stage->name, (int)len, expr, (int)e.stage_len, e.stage,
                              (int)e.name_len, e.name);
        nj_strs paths = {0};
        rc = nj_template_window_paths(ctx->pipeline, dep, ctx->ds, &paths, st->err);
        if (rc) {
            nj_strs_release(&paths);
            nj_err_prefix(st->err, "in '{{%.*s}}'", (int)len, expr);
            return rc;
        }
        /* Like a list param: one (quoted) word per path, oldest date first. */
        for (size_t i = 0; i < paths.len; i++) {
            if (i > 0) nj_buf_putc(&st->out, ' ');
            if (ctx->absolute_paths && ctx->pipeline->dir) {
                char *abs = nj_path_join(ctx->pipeline->dir, paths.items[i]);
                emit(st, abs);
                free(abs);
            } else {
                emit(st, paths.items[i]);
            }
        }
        nj_strs_release(&paths);
        return 0;
    }
    case NJ_EXPR_CHAMPION:
        emit(st, ctx->champion ? ctx->champion : "");
        return 0;
    default:
        NJ_BUG("unhandled template expression kind %d", e.kind);
    }
}

static int render_visit(void *arg, const char *expr, size_t len, size_t offset)
{
    render_state *st = arg;
    nj_buf_add(&st->out, st->tmpl + st->pos, offset - st->pos);
    int rc = render_expr(st, expr, len);
    if (rc) return rc;
    /* Skip past the closing braces: blanks after the expression, then "}}". */
    const char *end = expr + len;
    while (is_blank(*end))
        end++;
    st->pos = (size_t)(end + 2 - st->tmpl);
    return 0;
}

static int render_into(const char *tmpl, const nj_render_ctx *ctx, int in_path, nj_buf *out,
                       nj_err *err)
{
    render_state st = {
        .ctx = ctx, .tmpl = tmpl, .pos = 0, .out = *out, .err = err, .in_path = in_path};
    int rc = nj_template_scan(tmpl, render_visit, &st, err);
    if (rc == 0) nj_buf_puts(&st.out, tmpl + st.pos);
    *out = st.out;
    return rc;
}

int nj_template_render(const char *tmpl, const nj_render_ctx *ctx, char **out, nj_err *err)
{
    nj_buf b;
    nj_buf_init(&b);
    int rc = render_into(tmpl, ctx, 0, &b, err);
    if (rc) {
        nj_buf_release(&b);
        *out = NULL;
        return rc;
    }
    *out = nj_buf_detach(&b);
    nj_buf_release(&b);
    return 0;
}
