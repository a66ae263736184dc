/* cache.h - stage keys, the run cache, and deciding whether a stage runs.
 *
 * The key of a stage instance is the SHA-256 of a canonical text (below) of
 * everything that determines its outputs: the rendered command, its env
 * values, the values of the params it uses, the content hash of every input
 * (deps and upstream outputs, sorted by path), its output names and paths,
 * the hashes of its `code` files, and the format version. Not the stage's
 * name, not the time. Key text, one component per line, sorted per kind:
 *
 *     nightjar-key 1
 *     cmd build/stages/nj-train --l2 0.1 --out models/model.bin
 *     env MODE=fast
 *     param l2 0.1
 *     dep data/features.csv f 9f8e7d...        (f: a file, t: a directory tree)
 *     out model models/model.bin
 *     code build/stages/nj-train 1a2b3c...
 *     template build/stages/nj-train --l2 {{params.l2}} --out {{outs.model}}
 *
 * The last line is kept with the key but not hashed: `why` uses it to tell an
 * edited command from a param that changed what it renders to.
 * (Newlines and backslashes inside values are written "\n" and "\\".)
 *
 * Where things live:
 *   - objects: the object store (store.h) at `cache.dir` in the pipeline,
 *     else $NIGHTJAR_CACHE, else <workspace>/cache; it may be shared by
 *     several workspaces and pipelines at once;
 *   - the run cache, key -> outputs (name, kind, object hash, size), in
 *     <cache dir>/index.db beside the objects, so every workspace sharing the
 *     store shares hits; with `uses` rows saying which run of which
 *     workspace produced or restored each entry (what gc keeps);
 *   - per workspace, in the state database: the stat cache (path and file
 *     signature -> content hash, so an unchanged file is never read twice)
 *     and each instance's last key and outputs (what `why` compares with and
 *     what "up-to-date" means).
 *
 * Decisions (nj_cache_decide):
 *   up-to-date  the key equals the instance's last key and every output on
 *               disk still has the recorded content: nothing to do;
 *   cached      the run cache knows the key: outputs that are missing or
 *               different are restored from the store, the stage is not run;
 *   run         otherwise, with the reason from nj_cache_explain().
 */
#ifndef NJ_CACHE_H
#define NJ_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/err.h"
#include "nightjar/hash.h"
#include "nightjar/instance.h"
#include "nightjar/state.h"
#include "nightjar/store.h"

typedef struct nj_cache nj_cache;

/* Opens the cache of pipeline `p` whose workspace state is `st` (borrowed;
 * must outlive the cache). Creates the store directory when missing. */
int nj_cache_open(const nj_pipeline *p, nj_state *st, nj_cache **out, nj_err *err);
void nj_cache_free(nj_cache *c); /* NULL is fine */
/* The object store and its absolute directory; borrowed. */
nj_store *nj_cache_store(nj_cache *c);
const char *nj_cache_dir(const nj_cache *c);
/* The run cache's database (index.db), for gc and verify; borrowed. */
struct sqlite3 *nj_cache_index(nj_cache *c);

/* Groups many decisions and records into one transaction on each database
 * (a no-op run of a thousand stages is then two commits, not thousands). */
int nj_cache_begin(nj_cache *c, nj_err *err);
int nj_cache_commit(nj_cache *c, nj_err *err);

typedef struct nj_key {
    nj_hash hash;
    char hex[NJ_HASH_HEX_SIZE];
    char *text; /* the canonical text above; owned */
} nj_key;
void nj_key_release(nj_key *k);

/* Computes the key of `inst`, hashing its inputs and code files through the
 * stat cache. A missing input gives NJ_ENOTFOUND "dep 'x' does not exist". */
int nj_cache_key(nj_cache *c, const nj_instance *inst, nj_key *out, nj_err *err);

typedef enum { NJ_DECIDE_RUN, NJ_DECIDE_CACHED, NJ_DECIDE_UP_TO_DATE } nj_decide_kind;

typedef struct nj_decision {
    nj_decide_kind kind;
    int cache_damaged; /* run because a cached result's objects were missing or corrupt */
    char reason[768]; /* "never run", "param 'l2' changed 0.1 -> 0.2", "output 'x' missing", ... */
} nj_decision;

/* Decides what to do with `inst` of key `key`. With `restore` 0 nothing on
 * disk changes (dry runs, `why`): a cached result is reported as it would be.
 * With `restore` 1 outputs are restored and the instance's last key updated.
 * An entry whose objects are missing or corrupt is dropped and the decision
 * is `run` with the reason. Returns 0, or a negative code for a failure of
 * the cache itself (database). */
int nj_cache_decide(nj_cache *c, const nj_instance *inst, const nj_key *key, int restore,
                    int64_t run_id, nj_decision *out, nj_err *err);

/* After a successful attempt: stores the outputs in the object store,
 * records key -> outputs in the run cache (with a `uses` row for run_id),
 * and makes `key` the instance's last key. nj_cache_store_outputs() followed
 * by nj_cache_commit_outputs(). */
int nj_cache_record(nj_cache *c, const nj_instance *inst, const nj_key *key, int64_t run_id,
                    nj_err *err);

/* The first half of nj_cache_record(): puts every output in the object store
 * and writes the outputs text ("name kind hash size" lines; caller frees) to
 * *outputs. Touches no database. With `worker` set it may run on a thread
 * other than the one using the cache (libuv's pool), and uses a store handle
 * without the stat cache; outputs that are directories must then not be
 * stored this way (their trees are hashed on the pool themselves). */
int nj_cache_store_outputs(nj_cache *c, const nj_instance *inst, int worker, char **outputs,
                           nj_err *err);
/* The second half, on the cache's own thread: records the entry, the use and
 * the instance's last key. */
int nj_cache_commit_outputs(nj_cache *c, const nj_instance *inst, const nj_key *key,
                            const char *outputs, int64_t run_id, nj_err *err);

/* Keeps object `hash_hex` whatever gc decides (registered models), for this
 * workspace; `reason` says why ("model"). Pinning twice changes nothing. */
int nj_cache_pin(nj_cache *c, const char *hash_hex, const char *reason, nj_err *err);

/* Why `inst` would run: the differences between `key` and the instance's last
 * recorded key, e.g. "never run", "cmd changed", "dep 'data/raw.csv' changed
 * (sha256 1a2b3c... -> 9f8e7d...)", "param 'l2' changed 0.1 -> 0.2",
 * "code 'build/stages/nj-train' changed", "env 'MODE' changed"; several
 * joined by ", ". */
void nj_cache_explain(nj_cache *c, const nj_instance *inst, const nj_key *key, char *out,
                      size_t size);

/* A missing input of `inst` produced by another stage: restores it from
 * the producer's last recorded outputs for the same date. Returns 0 when
 * restored, NJ_ENOTFOUND when nothing is recorded, or another error. */
int nj_cache_restore_input(nj_cache *c, const nj_instance *inst, const nj_input *in,
                           nj_err *err);

#endif
