/* instance.c - rendering a stage instance's command, paths and env. */
#include "nightjar/instance.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/template.h"
#include "nightjar/util.h"

typedef struct render_env {
    const nj_pipeline *p;
    const nj_stage *s;
    const char *ds;
    const char *champion;
} render_env;

static int render(const render_env *re, const char *tmpl, int shell_quote, char **out,
                  nj_err *err)
{
    nj_render_ctx ctx = {
        .pipeline = re->p,
        .stage = re->s,
        .ds = re->ds,
        .shell_quote = shell_quote,
        .absolute_paths = re->s->workdir != NULL,
        .champion = re->champion,
    };
    return nj_template_render(tmpl, &ctx, out, err);
}

static int render_path(const render_env *re, const char *tmpl, nj_path_pair *out, nj_err *err)
{
    int rc = render(re, tmpl, 0, &out->rel, err);
    if (rc < 0) return rc;
    out->abs = nj_path_join(re->p->dir, out->rel);
    return 0;
}

const nj_stage *nj_instance_producer(const nj_instance *inst, const nj_input *in,
                                     const nj_out **out)
{
    const nj_pipeline *p = inst->pipeline;
    if (in->dep) {
        const nj_stage *up = nj_pipeline_stage(p, in->dep->stage);
        const nj_out *o = up ? nj_stage_out(up, in->dep->out) : NULL;
        if (out) *out = o;
        return o ? up : NULL;
    }
    for (size_t i = 0; i < p->nstages; i++) {
        if (&p->stages[i] == inst->stage) continue;
        for (size_t j = 0; j < p->stages[i].nouts; j++)
            if (strcmp(p->stages[i].outs[j].path, in->tmpl) == 0) {
                if (out) *out = &p->stages[i].outs[j];
                return &p->stages[i];
            }
    }
    return NULL;
}

typedef struct inputs_walk {
    const nj_pipeline *p;
    const char ***templates;
    size_t *n, *cap;
} inputs_walk;

static int has_template(const inputs_walk *w, const char *t)
{
    for (size_t i = 0; i < *w->n; i++)
        if (strcmp((*w->templates)[i], t) == 0) return 1;
    return 0;
}

static int add_stage_out_ref(void *ctx, const char *expr, size_t len, size_t offset)
{
    (void)offset;
    inputs_walk *w = ctx;
    nj_expr e;
    if (nj_template_parse_expr(expr, len, &e, NULL) < 0 || e.kind != NJ_EXPR_STAGE_OUT) return 0;
    char *stage = nj_xstrndup(e.stage, e.stage_len), *name = nj_xstrndup(e.name, e.name_len);
    const nj_stage *up = nj_pipeline_stage(w->p, stage);
    const nj_out *o = up ? nj_stage_out(up, name) : NULL;
    if (o && !has_template(w, o->path)) NJ_PUSH(*w->templates, *w->n, *w->cap, (const char *)o->path);
    free(stage);
    free(name);
    return 0;
}

/* The command of a built-in snapshot stage (see instance.h). */
static int render_snapshot_cmd(const render_env *re, nj_instance *out, nj_err *err)
{
    const nj_stage *s = re->s;
    if (s->nouts != 1) return nj_err_set(err, NJ_EPIPELINE, "snapshot stage '%s' needs one output", s->name);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) return nj_err_sys(err, errno, "cannot find the nightjar binary (/proc/self/exe)");
    self[n] = '\0';
    nj_buf cmd, key;
    nj_buf_init(&cmd);
    nj_buf_init(&key);
    char *out_path = NULL;
    int rc = render(re, s->outs[0].path, 0, &out_path, err);
    nj_shell_quote(&cmd, self);
    nj_buf_printf(&cmd, " snapshot create --format %s --out ", s->snapshot->format);
    if (rc == 0) nj_shell_quote(&cmd, out_path);
    nj_buf_puts(&cmd, " --");
    nj_buf_printf(&key, "snapshot %s", s->snapshot->format);
    for (size_t i = 0; i < s->snapshot->inputs.len && rc == 0; i++) {
        char *in = NULL;
        if ((rc = render(re, s->snapshot->inputs.items[i], 0, &in, err)) < 0) break;
        nj_buf_putc(&cmd, ' ');
        nj_shell_quote(&cmd, in);
        nj_buf_putc(&key, ' ');
        nj_shell_quote(&key, in);
        free(in);
    }
    free(out_path);
    if (rc < 0) {
        nj_buf_release(&cmd);
        nj_buf_release(&key);
        return rc;
    }
    out->cmd = nj_buf_detach(&cmd);
    out->key_cmd = nj_buf_detach(&key);
    return 0;
}

/* One input per existing date of each stage dep's window, oldest first. */
static int add_window_inputs(const nj_pipeline *p, const nj_stage *s, const char *ds,
                             nj_instance *out, nj_err *err)
{
    size_t cap = out->ninputs;
    for (size_t i = 0; i < s->ndeps; i++) {
        const nj_dep *dep = &s->deps[i];
        if (dep->path || !dep->stage) continue;
        int32_t day = 0;
        if (ds && nj_date_parse(ds, &day, err) < 0) return NJ_EFORMAT;
        for (int32_t off = dep->window_from; off <= dep->window_to; off++) {
            char dep_ds[11];
            nj_date_format(day + off, dep_ds);
            if (ds && p->partition.enabled && day + off < p->partition.start) continue;
            /* The same dep narrowed to one date renders that date's path. */
            nj_dep one = *dep;
            one.window_from = one.window_to = 0;
            nj_strs rels = {0};
            int rc = nj_template_window_paths(p, &one, ds ? dep_ds : NULL, &rels, err);
            for (size_t k = 0; rc == 0 && k < rels.len; k++) {
                nj_input in = {.dep = dep, .dep_ds = ds ? nj_xstrdup(dep_ds) : NULL};
                in.path.rel = nj_xstrdup(rels.items[k]);
                in.path.abs = nj_path_join(p->dir, in.path.rel);
                NJ_PUSH(out->inputs, out->ninputs, cap, in);
            }
            nj_strs_release(&rels);
            if (rc < 0) return rc;
            if (!ds) break;
        }
    }
    return 0;
}

int nj_instance_render(const nj_pipeline *p, const nj_stage *s, const char *ds,
                       const char *champion, nj_instance *out, nj_err *err)
{
    memset(out, 0, sizeof(*out));
    out->pipeline = p;
    out->stage = s;
    out->ds = nj_xstrdup(ds);
    render_env re = {p, s, ds, champion};
    int rc = s->snapshot ? render_snapshot_cmd(&re, out, err) : render(&re, s->cmd, 1, &out->cmd, err);
    if (rc < 0) goto fail;
    if (!out->key_cmd) out->key_cmd = nj_xstrdup(out->cmd);
    out->cwd = s->workdir ? nj_path_join(p->dir, s->workdir) : nj_xstrdup(p->dir);

    out->outs = nj_xcalloc(s->nouts, sizeof(*out->outs));
    for (; out->nouts < s->nouts; out->nouts++)
        if ((rc = render_path(&re, s->outs[out->nouts].path, &out->outs[out->nouts], err)) < 0)
            goto fail;

    /* Input templates, borrowed from the pipeline, without duplicates. */
    const char **templates = NULL;
    size_t ntemplates = 0, cap = 0;
    for (size_t i = 0; i < s->ndeps; i++)
        if (s->deps[i].path) NJ_PUSH(templates, ntemplates, cap, (const char *)s->deps[i].path);
    inputs_walk w = {p, &templates, &ntemplates, &cap};
    if (s->cmd) nj_template_scan(s->cmd, add_stage_out_ref, &w, NULL);
    out->inputs = nj_xcalloc(ntemplates, sizeof(*out->inputs));
    for (; out->ninputs < ntemplates; out->ninputs++) {
        nj_input *in = &out->inputs[out->ninputs];
        in->tmpl = templates[out->ninputs];
        if ((rc = render_path(&re, in->tmpl, &in->path, err)) < 0) break;
    }
    free(templates);
    if (rc < 0) {
        out->ninputs++; /* release the partly rendered one too */
        goto fail;
    }
    if ((rc = add_window_inputs(p, s, ds, out, err)) < 0) goto fail;

    out->code = nj_xcalloc(s->ncode, sizeof(*out->code));
    for (; out->ncode < s->ncode; out->ncode++)
        if ((rc = render_path(&re, s->code[out->ncode].name, &out->code[out->ncode], err)) < 0)
            goto fail;

    out->env = nj_xcalloc(s->nenv, sizeof(char *));
    for (; out->nenv < s->nenv; out->nenv++) {
        char *value;
        if ((rc = render(&re, s->env[out->nenv].value, 0, &value, err)) < 0) goto fail;
        out->env[out->nenv] = nj_xasprintf("%s=%s", s->env[out->nenv].name, value);
        free(value);
    }
    return 0;
fail:
    nj_instance_release(out);
    return rc;
}

static void release_pairs(nj_path_pair *pairs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(pairs[i].rel);
        free(pairs[i].abs);
    }
    free(pairs);
}

void nj_instance_release(nj_instance *inst)
{
    free(inst->ds);
    free(inst->cmd);
    free(inst->key_cmd);
    free(inst->cwd);
    release_pairs(inst->outs, inst->nouts);
    for (size_t i = 0; i < inst->ninputs; i++) {
        free(inst->inputs[i].path.rel);
        free(inst->inputs[i].path.abs);
        free(inst->inputs[i].dep_ds);
    }
    free(inst->inputs);
    release_pairs(inst->code, inst->ncode);
    for (size_t i = 0; i < inst->nenv; i++)
        free(inst->env[i]);
    free(inst->env);
    memset(inst, 0, sizeof(*inst));
}
