/* store.h - the content-addressed object store shared by every workspace.
 *
 * An object is a file named by the SHA-256 of its bytes; a directory is kept
 * as one object per file plus a tree object whose bytes are the manifest of
 * hash.h, so the tree object's hash equals nj_hash_path(dir).
 *
 *     <dir>/objects/sha256/ba/7816bf8f01cfea41...   one object, mode 0444 or 0555
 *     <dir>/tmp/                                     writes in progress
 *     <dir>/corrupt/                                 objects found corrupt, moved aside
 *
 * Invariants (what makes one store safe to share between processes):
 *  - An object appears under objects/ only whole: it is written to a unique
 *    temp file in <dir>/tmp/, made read-only, fsynced, then renamed into
 *    place without replacing an existing object (RENAME_NOREPLACE, or
 *    link+unlink where that is missing), and its directory is fsynced.
 *  - Identical content is stored once: when the object already exists the
 *    temp file is dropped. The first writer's mode wins: 0555 if its source
 *    had the owner-execute bit, else 0444.
 *  - An object is never modified in place. Anything read from the store is
 *    verified against its name first (see nj_store_restore()); an object
 *    whose bytes do not match is refused with NJ_ECORRUPT and moved to
 *    <dir>/corrupt/ so that the next put of that content stores it afresh.
 *
 *     nj_err err = {0};
 *     nj_store *store = NULL;
 *     nj_hash h;
 *     if (nj_store_open(".nightjar/store", &store, &err) < 0 ||
 *         nj_store_put_file(store, "out/model.bin", &h, NULL, &err) < 0 ||
 *         nj_store_restore(store, &h, "other/model.bin", NJ_LINK_AUTO, &err) < 0)
 *         fprintf(stderr, "nightjar: error: %s\n", err.msg);
 *     nj_store_free(store);
 */
#ifndef NJ_STORE_H
#define NJ_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/err.h"
#include "nightjar/hash.h"

typedef struct nj_store nj_store; /* opaque */

/* How a restored file shares storage with its object. Whatever the mode, a
 * restored file is read-only (0444, or 0555 as its object / tree entry). */
typedef enum nj_link_mode {
    NJ_LINK_AUTO,     /* reflink, else hardlink, else copy */
    NJ_LINK_REFLINK,  /* ioctl FICLONE (btrfs, xfs, ...); an error elsewhere */
    NJ_LINK_HARDLINK, /* link(2); copies an entry whose exec bit differs from the object */
    NJ_LINK_COPY,     /* a private copy */
} nj_link_mode;

/* Parses the config strings "auto", "reflink", "hardlink", "copy". Returns 0
 * or NJ_EFORMAT with "invalid link mode 'x' (expected auto, reflink, hardlink
 * or copy)". */
int nj_link_mode_parse(const char *text, nj_link_mode *out, nj_err *err);
const char *nj_link_mode_name(nj_link_mode mode); /* "auto", ...; static string */

/* Opens (creating when missing) the store at `dir`. The caller frees *out
 * with nj_store_free(). */
int nj_store_open(const char *dir, nj_store **out, nj_err *err);
void nj_store_free(nj_store *store); /* NULL is fine */

/* The store's absolute directory; borrowed, valid until nj_store_free(). */
const char *nj_store_dir(const nj_store *store);

/* Lets the store consult a stat cache (hash.h) when it hashes workspace files
 * in nj_store_put_file()/nj_store_put_tree(), and when it verifies an object
 * before a hardlink restore (an object whose signature is unchanged since it
 * was last verified is not read again). The struct is copied; `cache->ctx`
 * must outlive the store. NULL turns caching off (the default). */
void nj_store_set_cache(nj_store *store, const nj_hash_cache *cache);

/* "<dir>/objects/sha256/ab/cdef..." whether or not it exists; caller frees. */
char *nj_store_object_path(const nj_store *store, const nj_hash *hash);
/* 1 if the object exists, else 0. Does not verify it. */
int nj_store_has(const nj_store *store, const nj_hash *hash);

/* Stores the regular file at `path` (symlinks followed) and gives its hash
 * and size (`size` may be NULL). Where the filesystem allows, the file is
 * reflinked into the temp file and the clone hashed (no data copied).
 * Otherwise it is hashed first, which is all an unchanged re-put costs, and
 * only a new object is copied, hashed again on the way so that the object is
 * named by the bytes actually copied. With a stat cache that knows the file
 * and an existing object, nothing is read. Returns 0, or a negative code
 * naming `path`; on failure neither a temp file nor an object is left. */
int nj_store_put_file(nj_store *store, const char *path, nj_hash *out, uint64_t *size, nj_err *err);

/* Stores `len` bytes from `data` as an object. */
int nj_store_put_buffer(nj_store *store, const void *data, size_t len, nj_hash *out, nj_err *err);

/* Stores every file and symlink target beneath the directory `dir` and a
 * tree object; *out is the tree object's hash (= nj_hash_path(dir) when
 * nothing changes meanwhile). Files are stored as by nj_store_put_file(),
 * several at once on the libuv thread pool (one per core). A file that
 * changes while it is stored is recorded in the tree as it was stored. */
int nj_store_put_tree(nj_store *store, const char *dir, nj_hash *out, nj_err *err);

/* Reads a whole object into memory (caller frees *data, NUL-terminated) after
 * checking its hash. Meant for tree objects and small metadata. */
int nj_store_read(nj_store *store, const nj_hash *hash, char **data, size_t *len, nj_err *err);

/* Restores the file object `hash` at `dest` (parent directories are created),
 * replacing whatever file was there. The object goes to "<dest>.tmp.<pid>.<n>"
 * and is renamed over `dest`, so a reader sees the old file or the new one,
 * never a partial one.
 *
 * Verification: always. A copy is hashed while it is written and a reflink
 * clone is hashed after cloning (the clone cannot change under us), so what
 * lands at `dest` is exactly what was hashed; a hardlink's object is hashed
 * before linking, unless the stat cache (nj_store_set_cache) vouches for it.
 * A mismatch gives NJ_ECORRUPT with "object '<path>' is corrupt: ...", leaves
 * `dest` untouched and moves the object to <dir>/corrupt/. A missing object
 * gives -ENOENT. */
int nj_store_restore(nj_store *store, const nj_hash *hash, const char *dest, nj_link_mode mode,
                     nj_err *err);

/* Restores the tree object `tree` as the directory `dest`, replacing whatever
 * was there: the tree is built in "<dest>.tmp.<pid>.<n>/", synced, then
 * swapped in with one rename (RENAME_EXCHANGE when `dest` exists) and the
 * old contents removed. Directories are created writable (0777 & ~umask),
 * files read-only with the tree's executable bits. Every object is verified
 * as in nj_store_restore(); on failure `dest` is left as it was. */
int nj_store_restore_tree(nj_store *store, const nj_hash *tree, const char *dest, nj_link_mode mode,
                          nj_err *err);

/* Rehashes the object: 0 when it matches its name, -ENOENT when missing,
 * NJ_ECORRUPT (object moved to <dir>/corrupt/) when not. Never uses the
 * stat cache. */
int nj_store_verify(nj_store *store, const nj_hash *hash, nj_err *err);

/* Removes the object; a missing object is fine. Objects hardlinked into
 * workspaces stay there (they are separate names of the same inode). */
int nj_store_remove(nj_store *store, const nj_hash *hash, nj_err *err);

/* Calls fn for every object, in no particular order, with its hash and path
 * (borrowed for the call). fn may remove the object it is given. A non-zero
 * return from fn stops the walk and is returned. Names that are not objects
 * are skipped. */
typedef int (*nj_store_visit_fn)(void *ctx, const nj_hash *hash, const char *object_path);
int nj_store_foreach(nj_store *store, nj_store_visit_fn fn, void *ctx, nj_err *err);

/* Removes entries of <dir>/tmp/ whose mtime is more than `max_age_ms` old
 * (temp files of crashed writers; a live writer keeps its mtime fresh).
 * *removed (may be NULL) gets the count. Use NJ_STORE_TEMP_MAX_AGE_MS. */
#define NJ_STORE_TEMP_MAX_AGE_MS (60 * 60 * 1000LL)
int nj_store_clean_temp(nj_store *store, int64_t max_age_ms, size_t *removed, nj_err *err);

#endif
