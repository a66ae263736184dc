/* gc.h - keeping the cache small and sound: garbage collection and
 * verification of the object store and run cache.
 *
 * Reachability: objects and run-cache entries form one graph. The roots are
 *   - the runs gc keeps in this workspace (the newest N, or those younger
 *     than D days; the newest run always): every run-cache entry they
 *     produced or restored (`uses` rows);
 *   - every other workspace's `uses` rows (gc never decides for them);
 *   - the last key of every stage instance of this workspace (its current
 *     outputs), and pinned objects (registered models, published data).
 * An entry with no `uses` row left is dropped; an object reachable from no
 * entry, last key or pin - through tree objects to their files - is removed,
 * unless it is younger than `min_age_ms` (a concurrent run may be storing
 * it right now, before recording the entry that will reference it).
 */
#ifndef NJ_GC_H
#define NJ_GC_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/cache.h"
#include "nightjar/state.h"

typedef struct nj_gc_opts {
    int keep_runs;      /* > 0: keep the newest N runs of the pipeline */
    int keep_days;      /* > 0: keep runs started in the last D days */
    int64_t min_age_ms; /* never remove objects younger than this */
    int dry_run;        /* count, remove nothing */
} nj_gc_opts;

typedef struct nj_gc_report {
    size_t runs_kept, runs_dropped;
    size_t entries_removed, entries_kept;
    size_t objects_removed, objects_kept, objects_too_young;
    uint64_t bytes_removed;
    size_t temp_removed;
} nj_gc_report;

int nj_gc_run(nj_cache *cache, nj_state *st, const char *pipeline, const char *workspace,
              const nj_gc_opts *opts, nj_gc_report *out, nj_err *err);

typedef struct nj_verify_report {
    size_t objects_checked, objects_corrupt;
    size_t entries_checked, entries_broken, entries_removed;
    nj_strs problems; /* one line each, for people; caller releases */
} nj_verify_report;

/* Rehashes every object (a corrupt one is moved aside by the store) and
 * checks that every run-cache entry's objects exist. With `repair`, entries
 * pointing at missing or corrupt objects are removed, so the stages that
 * need them are recomputed. */
int nj_verify_run(nj_cache *cache, int repair, nj_verify_report *out, nj_err *err);

#endif
