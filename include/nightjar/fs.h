/* fs.h - files and paths: durable writes, directory trees, lexical paths.
 *
 * Durable write protocol (nj_fs_write_atomic): "<path>.tmp.<pid>.<n>" is
 * created with O_CREAT|O_EXCL, written whole, fsynced, renamed over <path>,
 * and the directory fsynced. A crash leaves either the old file or the new
 * one, never a torn one; on failure the temp file is removed and the old
 * file is untouched.
 */
#ifndef NJ_FS_H
#define NJ_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "nightjar/err.h"

int nj_fs_write_atomic(const char *path, const void *buf, size_t len, nj_err *err);

/* Creates a unique temp file next to `path` ("<path>.tmp.<pid>.<n>"), opened
 * O_RDWR|O_CREAT|O_EXCL with `mode`. Writes the temp path (caller frees) to
 * *tmp_path and returns the fd, or a negative code. */
int nj_fs_open_temp(const char *path, mode_t mode, char **tmp_path, nj_err *err);

/* fsync(fd) then rename(tmp, path) then fsync of path's directory. Closes fd
 * in all cases and unlinks tmp on failure. */
int nj_fs_commit_temp(int fd, const char *tmp, const char *path, nj_err *err);

/* write(2) until all `len` bytes are written, retrying on EINTR. Returns 0,
 * or -1 with errno set. */
int nj_fs_write_all(int fd, const void *buf, size_t len);

/* Creates a fresh empty directory "<dest>.tmp.<pid>.<n>" with `mode`; writes
 * its name (caller frees) to *out. */
int nj_fs_make_temp_dir(const char *dest, mode_t mode, char **out, nj_err *err);

/* fsyncs the directory that contains `path`. */
int nj_fs_fsync_parent(const char *path, nj_err *err);

/* Reads a whole file into a NUL-terminated buffer (caller frees *data). */
int nj_fs_read_file(const char *path, char **data, size_t *len, nj_err *err);

/* mkdir -p with mode 0777 & ~umask. Existing directories are fine. */
int nj_fs_mkdirs(const char *dir, nj_err *err);
/* mkdir -p of the directory that will contain `path`. */
int nj_fs_mkdirs_parent(const char *path, nj_err *err);

/* rm -rf: removes a file, symlink or directory tree; missing is fine. Never
 * follows symlinks. */
int nj_fs_remove_tree(const char *path, nj_err *err);

/* 1 if something (even a dangling symlink) is at path, else 0. */
int nj_fs_exists(const char *path);
int nj_fs_is_dir(const char *path);

/* Joins two paths with one '/'; an absolute `rel` is returned as is. Caller frees. */
char *nj_path_join(const char *base, const char *rel);
/* The directory part ("a/b" for "a/b/c", "." for "c"). Caller frees. */
char *nj_path_dirname(const char *path);
/* Lexically normalises: collapses "//" and "/./", resolves "x/.." pairs, drops
 * a trailing '/'. A relative path may keep leading ".." components; "" becomes
 * ".". Caller frees. */
char *nj_path_normalize(const char *path);
/* 1 if a normalised relative path climbs out of its base ("..", "../x"). */
int nj_path_escapes(const char *normalized);
/* 1 if `path` equals `dir` or lies beneath it (both normalised). */
int nj_path_within(const char *path, const char *dir);
/* Absolute form of path against the current directory, normalised. Caller frees. */
char *nj_path_absolute(const char *path);

#endif
