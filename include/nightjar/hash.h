/* hash.h - SHA-256 content hashes of buffers, files and directory trees.
 *
 * Every cached step in nightjar is named by content: a file by the SHA-256 of
 * its bytes, a directory by the SHA-256 of its canonical manifest (below).
 * This module owns the hash type, the incremental hasher (OpenSSL EVP, which
 * uses the CPU's SHA instructions), file signatures for a stat cache kept by
 * the caller, and the manifest encoding that the object store also uses as
 * its tree object.
 *
 *     nj_err err = {0};
 *     nj_hash h;
 *     char hex[NJ_HASH_HEX_SIZE];
 *     if (nj_hash_path("outputs/model", NULL, &h, &err) < 0)
 *         fprintf(stderr, "nightjar: error: %s\n", err.msg);
 *     nj_hash_hex(&h, hex);          // "ba7816bf..."
 *
 * Tree manifest, version 1 (the bytes whose SHA-256 is a directory's hash):
 *
 *     "nightjar-tree 1\n"
 *     then one line per entry, sorted bytewise by path (as strcmp does):
 *     "<kind> <hash> <size> <path>\n"
 *
 *   kind  'f' regular file; 'x' regular file whose owner-execute bit is set
 *         (the only mode bit that is recorded); 'l' symbolic link, hash and
 *         size are those of the link target text (never followed); 'd' an
 *         empty directory, hash is 64 zeros and size 0 (a directory that has
 *         entries is implied by them and not listed).
 *   hash  64 lowercase hex digits of the content SHA-256.
 *   size  decimal byte count.
 *   path  relative to the hashed directory, '/'-separated, never "", "." or
 *         ".." components; a backslash is written "\\" and a newline "\n",
 *         every other byte as is.
 *
 * Timestamps, owners, other mode bits and the order in which files were
 * created do not matter; content, the executable bit, link targets and names
 * do. An empty directory hashes to sha256("nightjar-tree 1\n"). Note that a
 * file whose bytes happen to be a manifest has the same hash as the
 * directory: callers that need to tell them apart record the kind too.
 *
 * Threads: all functions are safe to call from several threads at once on
 * different objects. Do not call nj_hash_files() (or nj_hash_path() on a
 * directory) from inside a libuv thread-pool work callback: it waits for the
 * same pool. Parallel hashing keeps at most one job per core in flight, but
 * libuv's pool has 4 threads unless UV_THREADPOOL_SIZE is set before its
 * first use; main() should set it to the core count on bigger machines.
 */
#ifndef NJ_HASH_H
#define NJ_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/err.h"
#include "nightjar/util.h"

struct stat;

#define NJ_HASH_SIZE 32
#define NJ_HASH_HEX_SIZE 65 /* 64 hex digits and a NUL */

typedef struct nj_hash {
    unsigned char bytes[NJ_HASH_SIZE];
} nj_hash;

/* Writes 64 lowercase hex digits and a NUL to `out`. */
void nj_hash_hex(const nj_hash *hash, char out[NJ_HASH_HEX_SIZE]);
/* Parses exactly 64 hex digits (either case). Returns 0, or NJ_EFORMAT with
 * "invalid sha256 'xyz': ..." */
int nj_hash_from_hex(const char *hex, nj_hash *out, nj_err *err);
/* 1 if equal, else 0. */
int nj_hash_equal(const nj_hash *a, const nj_hash *b);

/* An incremental SHA-256. A hasher is reusable: nj_hasher_final() resets it.
 *
 *     nj_hasher *h = nj_hasher_new();
 *     nj_hasher_update(h, "ab", 2);
 *     nj_hasher_update(h, "c", 1);
 *     nj_hasher_final(h, &hash);     // sha256("abc")
 *     nj_hasher_free(h);
 *
 * Failures inside OpenSSL (out of memory) abort like nj_xmalloc(). */
typedef struct nj_hasher nj_hasher;
nj_hasher *nj_hasher_new(void); /* caller frees with nj_hasher_free() */
void nj_hasher_update(nj_hasher *h, const void *data, size_t len);
void nj_hasher_final(nj_hasher *h, nj_hash *out); /* and resets h */
void nj_hasher_free(nj_hasher *h);                /* NULL is fine */

/* sha256 of `len` bytes at `data`. */
void nj_hash_buffer(const void *data, size_t len, nj_hash *out);

/* The content hash of the regular file at `path` (symlinks followed), read in
 * 1 MiB blocks with sequential read-ahead. *size (may be NULL) gets the byte
 * count. Returns 0, or -errno with "cannot read 'path': ...", or -EISDIR /
 * -EINVAL when `path` is not a regular file. */
int nj_hash_file(const char *path, nj_hash *out, uint64_t *size, nj_err *err);

/* Hashes the open file `fd` from its current offset to end of file, moving
 * the offset there; `name` is only for messages. The fd stays the caller's. */
int nj_hash_fd(int fd, const char *name, nj_hash *out, uint64_t *size, nj_err *err);

/* Hashes n files using every core: large files run as separate jobs on the
 * libuv thread pool (a private uv_loop_t, waited for before returning), runs
 * of small files are grouped into one job each, and a tiny batch is hashed
 * inline. out[i] (and sizes[i], codes[i] when those arrays are not NULL) get
 * file i's hash, size and result (0 or a negative code). Returns 0 when every
 * file was hashed, else the code of the lowest-numbered failed file, whose
 * message is in err. */
int nj_hash_files(const char *const *paths, size_t n, nj_hash *out, uint64_t *sizes, int *codes,
                  nj_err *err);

/* What a stat cache compares to decide that a file is unchanged since its
 * hash was recorded. ctime catches chmod and most in-place rewrites that
 * restore mtime; dev+ino catch a file replaced by rename. */
typedef struct nj_file_sig {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
    uint32_t mode; /* st_mode: type and permission bits */
} nj_file_sig;

/* stat()s `path` (following symlinks). Returns 0 or -errno with
 * "cannot stat 'path': ...". */
int nj_file_sig_read(const char *path, nj_file_sig *out, nj_err *err);
void nj_file_sig_from_stat(const struct stat *st, nj_file_sig *out);
int nj_file_sig_equal(const nj_file_sig *a, const nj_file_sig *b); /* 1 or 0 */

/* An optional stat cache, implemented by the caller (the state database).
 * lookup() returns 1 and fills *hash when `path` was recorded with exactly
 * `sig`, else 0. store() records a fresh result; it is only called for files
 * whose signature did not change while they were read and whose mtime and
 * ctime are more than NJ_HASH_RACY_NS older than the moment reading began,
 * so a later same-size rewrite within one timestamp tick cannot go unseen
 * (git's "racily clean" problem). Both run on the calling thread only; the
 * path is the one passed in, joined with the entry's relative path. */
#define NJ_HASH_RACY_NS (2 * 1000000000LL)
typedef struct nj_hash_cache {
    int (*lookup)(void *ctx, const char *path, const nj_file_sig *sig, nj_hash *hash);
    void (*store)(void *ctx, const char *path, const nj_file_sig *sig, const nj_hash *hash);
    void *ctx;
} nj_hash_cache;

/* The hash of whatever is at `path` (a symlink given as `path` is followed):
 * a regular file gives its content hash, a directory the hash of its
 * manifest. `cache` may be NULL. Anything else is an error naming the path:
 * "cannot hash 'p': not a regular file, directory or symlink". */
int nj_hash_path(const char *path, const nj_hash_cache *cache, nj_hash *out, nj_err *err);

/* nj_hash_path() for n paths at once: directories as nj_hash_path() does,
 * and every regular file the stat cache does not know hashed together on the
 * thread pool, so several large inputs use several cores. is_dir[i] says
 * which hashes are manifests. Returns 0, or the first failure's code (err
 * names the path). */
int nj_hash_paths(const char *const *paths, size_t n, const nj_hash_cache *cache, nj_hash *out,
                  int *is_dir, nj_err *err);

/* A decoded manifest. Entries are sorted by path and own their strings. */
typedef enum nj_entry_kind {
    NJ_ENTRY_FILE = 'f',
    NJ_ENTRY_EXEC = 'x',
    NJ_ENTRY_LINK = 'l',
    NJ_ENTRY_DIR = 'd',
} nj_entry_kind;

typedef struct nj_manifest_entry {
    char *path; /* relative, '/'-separated, unescaped */
    nj_entry_kind kind;
    nj_hash hash;
    uint64_t size;
    char *link_target; /* NJ_ENTRY_LINK from a walk or scan only, else NULL */
    nj_file_sig sig;   /* regular files from a walk or scan only (lstat), else zeros */
} nj_manifest_entry;

typedef struct nj_manifest {
    nj_manifest_entry *items;
    size_t len, cap;
} nj_manifest;

void nj_manifest_init(nj_manifest *m);
void nj_manifest_release(nj_manifest *m); /* frees every entry; m is re-initialised */

/* Walks the directory `dir` and fills `m` (initialised by the caller) with
 * one sorted entry per file, symlink and empty directory beneath it, without
 * reading files: their hash is left zero (sig and size are set). Symlinks are
 * read and hashed. Returns 0 or a negative code naming the offending path
 * (and then `m` is empty). */
int nj_manifest_walk(const char *dir, nj_manifest *m, nj_err *err);

/* nj_manifest_walk() and then the hash of every file, computed in parallel
 * as nj_hash_files() does unless `cache` knows it. */
int nj_manifest_scan(const char *dir, const nj_hash_cache *cache, nj_manifest *m, nj_err *err);

/* Appends the canonical encoding of `m` (which must be sorted) to `out`. */
void nj_manifest_encode(const nj_manifest *m, nj_buf *out);
/* The hash of the encoding: what nj_hash_path() returns for the directory. */
void nj_manifest_hash(const nj_manifest *m, nj_hash *out);

/* Decodes a manifest into `m` (initialised by the caller), checking that it
 * is canonical: the header, strictly increasing paths, safe relative paths,
 * and no entry beneath a file or link entry. Returns 0 or NJ_EFORMAT with
 * "<name>:<line>: ..." (name identifies the object for the message). */
int nj_manifest_parse(const char *data, size_t len, const char *name, nj_manifest *m, nj_err *err);

#endif
