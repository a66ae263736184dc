/* template.h - the {{ ... }} mini-language of commands and paths.
 *
 * A template is text with expressions between "{{" and "}}" (spaces inside
 * the braces are ignored). Expressions:
 *     params.NAME            a pipeline param (the stage must list NAME in `params:`)
 *     outs.NAME              this stage's output path
 *     stages.STAGE.outs.NAME another stage's output path (implies an edge)
 *     deps.STAGE.OUT         in `cmd` only: the paths of a stage dep
 *                            {stage: STAGE, out: OUT[, window: [...]]} the
 *                            stage declares, one per date of its window that
 *                            exists, oldest first (see nj_template_window_paths)
 *     models.champion        in `cmd` only: the path of the pipeline's champion
 *                            model (registry.h) in the object store; in the
 *                            gate stage, the model its candidate is judged
 *                            against. '' (an empty word) when there is none
 *     ds                     the logical date, YYYY-MM-DD
 *     ds_nodash              the logical date, YYYYMMDD
 *     ds - 1d, ds + 2w       date arithmetic in days or weeks (also ds_nodash)
 *     '{{'                   a quoted literal, copied as is (never quoted)
 * "{{{{" is not special; a literal "{{" is written "{{ '{{' }}". Anything
 * else is an error at load time.
 *
 * In a command every substituted value is shell-quoted unless it consists only
 * of characters that need no quoting ([A-Za-z0-9_./:=@%+,-]), so a parameter
 * can never inject shell syntax: a value "x; rm -rf ~" renders as
 * 'x; rm -rf ~'. A list param renders as separately quoted words, and so
 * does {{deps.S.O}}: with `window: [-2d, -1d]` at ds 2001-01-10,
 *     cmd: train {{deps.features.table}}
 * renders as "train data/2001-01-08/f.csv data/2001-01-09/f.csv" (nothing at
 * all when no date of the window exists).
 */
#ifndef NJ_TEMPLATE_H
#define NJ_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/err.h"
#include "nightjar/spec.h"

/* One parsed expression (the text between the braces, trimmed). Pointers
 * point into the expression text passed to nj_template_parse_expr(). */
enum {
    NJ_EXPR_LITERAL,   /* '...'      name = the text between the quotes */
    NJ_EXPR_DS,        /* ds, ds_nodash, optionally "+ 3d" / "- 2w"      */
    NJ_EXPR_PARAM,     /* params.NAME       name                          */
    NJ_EXPR_OUT,       /* outs.NAME         name                          */
    NJ_EXPR_STAGE_OUT, /* stages.S.outs.NAME  stage, name                 */
    NJ_EXPR_DEPS,      /* deps.S.NAME       stage, name (S may hold dots)  */
    NJ_EXPR_CHAMPION,  /* models.champion                                 */
};
typedef struct nj_expr {
    int kind;            /* NJ_EXPR_* */
    const char *name;    /* param, output or literal text; not NUL-terminated */
    size_t name_len;
    const char *stage;   /* NJ_EXPR_STAGE_OUT and NJ_EXPR_DEPS only */
    size_t stage_len;
    int nodash;          /* NJ_EXPR_DS: 1 for ds_nodash (YYYYMMDD) */
    int32_t day_offset;  /* NJ_EXPR_DS: days added, e.g. -14 for "ds - 2w" */
} nj_expr;

/* Parses one trimmed expression as handed to a visitor ("params.l2",
 * "ds - 1d", "stages.prepare.outs.table", "'{{'"). Returns 0, or NJ_EFORMAT
 * when it is none of the forms above (err->msg "unknown template expression
 * '{{foo}}'"). */
int nj_template_parse_expr(const char *expr, size_t len, nj_expr *out, nj_err *err);

/* Called for each expression in order: `expr` is the trimmed expression (not
 * NUL-terminated, `len` bytes), `offset` the byte offset of its "{{" in the
 * template. A non-zero return stops the scan and is returned. */
typedef int (*nj_template_visit_fn)(void *ctx, const char *expr, size_t len, size_t offset);

/* Walks the expressions of `tmpl`. Returns 0, the visitor's non-zero value,
 * or NJ_EFORMAT for an unclosed "{{" (err->msg says at which offset). */
int nj_template_scan(const char *tmpl, nj_template_visit_fn visit, void *ctx, nj_err *err);

typedef struct nj_render_ctx {
    const nj_pipeline *pipeline;
    const nj_stage *stage;
    const char *ds;          /* NULL: {{ds}} is an error */
    int shell_quote;         /* 1 for commands, 0 for paths */
    int absolute_paths;      /* 1: output paths rendered absolute (stage has a workdir) */
    const char *champion;    /* {{models.champion}}: a path, or NULL for none */
} nj_render_ctx;

/* Renders `tmpl` into a new string (*out, caller frees). Returns 0 or
 * NJ_EFORMAT / NJ_ENOTFOUND with err->msg naming the expression. */
int nj_template_render(const char *tmpl, const nj_render_ctx *ctx, char **out, nj_err *err);

/* Renders the path template `tmpl` (params and ds only, e.g. an output path
 * of stage `s`) as stage `s` would for the logical date `date` (days since
 * 1970-01-01): "data/{{ds}}/f.csv" -> "data/2001-01-09/f.csv". Returns 0 and
 * a new string in *out (caller frees), or NJ_EFORMAT / NJ_ENOTFOUND with
 * err->msg naming the expression (then *out is NULL). */
int nj_template_render_for_date(const nj_pipeline *p, const nj_stage *s, const char *tmpl,
                                int32_t date, char **out, nj_err *err);

/* The input paths of a stage dep {stage: S, out: O[, window: [from, to]]}
 * for the downstream date `ds` ("YYYY-MM-DD"): O's path rendered for each
 * date of nj_dep_window() (ds+from .. ds+to, without dates before
 * partition.start), oldest first, relative to the pipeline directory, each
 * appended to *rel_paths (copies; the caller releases the list). When S is
 * not partitioned the one path is rendered with `ds` as given (which may
 * then be NULL). Returns 0 (possibly appending nothing), or NJ_ENOTFOUND /
 * NJ_EFORMAT when S or O does not exist or a path does not render; entries
 * appended before the error stay in *rel_paths. */
int nj_template_window_paths(const nj_pipeline *p, const nj_dep *dep, const char *ds,
                             nj_strs *rel_paths, nj_err *err);

/* Appends `value` to b, single-quoted for /bin/sh when it needs quoting. */
void nj_shell_quote(nj_buf *b, const char *value);

#endif
