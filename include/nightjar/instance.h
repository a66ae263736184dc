/* instance.h - one stage instance (a stage on a date), rendered: its command,
 * the paths it reads and writes, its environment and code files.
 *
 * Rendering happens once per instance; the scheduler runs what it describes
 * and the cache hashes it. Relative paths are relative to the pipeline
 * directory (as written in the file, after templates); absolute ones are
 * ready to open.
 *
 * A snapshot stage (stage->snapshot) runs nightjar itself:
 *     /path/to/nightjar snapshot create --format tar.zst --out OUT -- INPUT...
 * in the pipeline directory; its key_cmd is "snapshot tar.zst INPUT..."
 * so the key does not depend on where the binary lives.
 *
 * Inputs are the stage's path `deps`, one path per existing date of each
 * stage dep (window), then every upstream output its command names with
 * {{stages.S.outs.x}}, without duplicates.
 * nj_instance_producer() finds the stage that writes an input, so a missing
 * input can be restored from the producer's cached result.
 */
#ifndef NJ_INSTANCE_H
#define NJ_INSTANCE_H

#include <stddef.h>

#include "nightjar/err.h"
#include "nightjar/spec.h"

typedef struct nj_path_pair {
    char *rel; /* as rendered, e.g. "data/2001-03-01/table.csv" (or absolute if written so) */
    char *abs; /* joined with the pipeline directory */
} nj_path_pair;

typedef struct nj_input {
    nj_path_pair path;
    const char *tmpl;  /* the path as written (borrowed), NULL for a window input */
    const nj_dep *dep; /* a stage dep: the window this input comes from, else NULL */
    char *dep_ds;      /* a stage dep: the upstream date this path belongs to */
} nj_input;

typedef struct nj_instance {
    const nj_pipeline *pipeline; /* borrowed */
    const nj_stage *stage;       /* borrowed */
    char *ds;                    /* NULL when the run has no date */
    char *cmd;                   /* rendered, shell-quoted values */
    char *key_cmd;               /* what the cache key hashes as the command */
    char *cwd;                   /* absolute */
    nj_path_pair *outs;          /* parallel to stage->outs */
    size_t nouts;
    nj_input *inputs;
    size_t ninputs;
    nj_path_pair *code; /* parallel to stage->code */
    size_t ncode;
    char **env; /* "NAME=value", parallel to stage->env */
    size_t nenv;
} nj_instance;

/* Renders stage `s` of `p` for date `ds` (may be NULL), with `champion` the
 * path {{models.champion}} renders to (NULL: none, or a caller that only
 * needs paths). Returns 0, or a negative code with err->msg naming the
 * template that failed; *out is then released. */
int nj_instance_render(const nj_pipeline *p, const nj_stage *s, const char *ds,
                       const char *champion, nj_instance *out, nj_err *err);
void nj_instance_release(nj_instance *inst);

/* The other stage whose output is exactly input `in` (and that output), or
 * NULL. Linear in the pipeline's outputs: for the rare missing input only. */
const nj_stage *nj_instance_producer(const nj_instance *inst, const nj_input *in,
                                     const nj_out **out);

#endif
