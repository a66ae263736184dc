/* release.h - what a run does with what its stages made: judge a candidate
 * model at the gate, keep the registry and metrics, publish tables.
 *
 * During the run (as scheduler hooks, exec.h):
 *   - a stage declaring `metrics:` has its JSON recorded in stage_metrics
 *     (a file that is not JSON fails the stage);
 *   - the gate stage's {{models.champion}} is the model its candidate is
 *     judged against: the champion, or, when the candidate already is the
 *     champion (a rerun after it was promoted), the model it replaced, so a
 *     rerun renders the same command and is cached;
 *   - when the gate stage ends well, the candidate (an output of another
 *     stage) is stored, registered by content hash and pinned, and the rules
 *     are evaluated on the metrics:
 *         pass  -> promoted: champion <- candidate, previous <- old champion
 *         fail  -> held: the champion keeps scoring; the run exits 5
 *         pass, but the candidate was trained for an older date than the
 *         champion, or was rolled back by hand before -> kept (not promoted)
 *     every verdict that changes something is a gate_decisions row;
 *   - any other stage's {{models.champion}} is the champion after its
 *     date's gate (plan.c orders gates by date); with none it fails with a
 *     message saying so.
 * After the run (nj_release_publish): each table's date whose `from` stage
 * ended well is published to the serving database in one transaction, with
 * the champion that stage used as model_version, unless the same output
 * with the same model and table spec is already there. */
#ifndef NJ_RELEASE_H
#define NJ_RELEASE_H

#include <stdint.h>

#include "nightjar/cache.h"
#include "nightjar/err.h"
#include "nightjar/exec.h"
#include "nightjar/plan.h"
#include "nightjar/spec.h"
#include "nightjar/state.h"

typedef struct nj_release nj_release;

typedef struct nj_release_summary {
    int gates;              /* gate verdicts this run (including cached gate stages) */
    int held;               /* of which held */
    int promoted;           /* of which promoted a new champion */
    int tables_published;   /* (table, date) publishes done */
    int tables_unchanged;   /* already published as they are */
    int publish_failed;     /* publishes that failed (the run fails) */
    int64_t rows_published; /* rows inserted by the publishes done */
} nj_release_summary;

/* Prints a line about one publish or verdict, for the run's report. */
typedef void (*nj_release_note_fn)(void *ctx, const char *line);

/* For the run `run_id` of `p` (st and cache borrowed; cache may be NULL
 * with --no-cache: then a store is opened for the models alone). Records
 * the git commit of the pipeline's repository on the run. */
int nj_release_open(const nj_pipeline *p, nj_state *st, nj_cache *cache, int64_t run_id,
                    nj_release_note_fn note, void *note_ctx, nj_release **out, nj_err *err);
void nj_release_free(nj_release *rel); /* NULL is fine */

/* The scheduler hooks of this release (valid while rel is). */
const nj_exec_hooks *nj_release_hooks(nj_release *rel);

/* Publishes what the run made publishable (see above). Returns 0, or the
 * first error (every table and date is still tried; failures are counted in
 * the summary). */
int nj_release_publish(nj_release *rel, nj_err *err);

const nj_release_summary *nj_release_summary_of(const nj_release *rel);

/* For `why` and dry runs: hooks that render {{models.champion}} as a run
 * would now, reading the registry in `st` and touching nothing. */
int nj_release_open_readonly(const nj_pipeline *p, nj_state *st, nj_cache *cache,
                             nj_release **out, nj_err *err);

#endif
