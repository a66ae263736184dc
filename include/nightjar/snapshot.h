/* snapshot.h - deterministic archives of a date's input data, and their safe
 * extraction.
 *
 * A snapshot freezes the exact input files of one run in one archive so any
 * past result can be rebuilt byte for byte. Identical inputs give a
 * byte-identical archive, hence the same SHA-256, whatever the files'
 * timestamps, owners, creation order or the umask.
 *
 *     const char *inputs[] = {"data/raw/2001-01-05/"};
 *     nj_snapshot_info info;
 *     nj_err err = {0};
 *     if (nj_snapshot_create(inputs, 1, ".", "tar.zst", "snap.tar.zst", &info, &err) < 0 ||
 *         nj_snapshot_extract("snap.tar.zst", "restored", &err) < 0)
 *         fprintf(stderr, "nightjar: error: %s\n", err.msg);
 *     // restored/data/raw/2001-01-05/flights.csv
 *
 * Archive layout (what makes it deterministic):
 *  - tar, libarchive's "restricted pax" writer with hdrcharset=BINARY: names
 *    and link targets are stored as raw bytes, never converted through the
 *    locale. That option makes every entry carry a small pax header holding
 *    only "hdrcharset=BINARY" (plus "path"/"linkpath"/"size" when ustar
 *    cannot hold them); no pax header ever carries a time, and there are no
 *    ACLs, xattrs or file flags.
 *  - One entry per regular file, symlink and *empty* directory beneath the
 *    inputs, exactly the entries of a tree manifest (hash.h): a directory
 *    with entries is implied by them. Entries are sorted bytewise by path
 *    (strcmp, as in a manifest); a path reached through two overlapping
 *    inputs is stored once.
 *  - Entry names are normalised relative paths ("data/raw/x/flights.csv";
 *    the tar writer appends the conventional '/' to a directory's name);
 *    mtime 0, uid/gid 0, no uname/gname; mode 0755 for files with the
 *    owner-execute bit, else 0644; 0755 for directories; 0777 for symlinks.
 *  - No zero padding after the last block, so a truncated file is noticed.
 *  - Symlinks beneath an input are stored as symlinks with their target
 *    text as is, but must not lead out of the snapshot's root (base_dir),
 *    judged as extraction does, so every snapshot made can be extracted; an
 *    input named directly is followed like nj_hash_path() does. Hardlinked
 *    files are stored as separate regular files. Fifos, sockets and devices
 *    are refused.
 *  - Formats: "tar.zst" (the default; zstd level 3, single-threaded),
 *    "tar.gz" (deflate level 6, no name and a zero timestamp in the gzip
 *    header), "tar". The bytes depend on the libarchive, zlib and libzstd
 *    versions, so "identical" means on one build of nightjar.
 *  - Any tar reader can list and extract a snapshot; GNU tar warns once per
 *    entry that it ignores the "hdrcharset" keyword, bsdtar does not.
 *
 * Extraction refuses, before anything is written, any entry that is an
 * absolute path, has a ".." component, appears twice, lies beneath a
 * symlink or a file entry, is a symlink whose target (resolved through the
 * archive's other symlinks) leaves the destination, is a hard link to
 * anything but an earlier regular file of the archive, or is not a file,
 * directory, symlink or hard link.
 */
#ifndef NJ_SNAPSHOT_H
#define NJ_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/err.h"
#include "nightjar/hash.h"

#define NJ_SNAPSHOT_DEFAULT_FORMAT "tar.zst"

/* What nj_snapshot_create() wrote. */
typedef struct nj_snapshot_info {
    size_t entries;         /* files, symlinks and empty directories */
    uint64_t bytes;         /* content bytes of the files (uncompressed) */
    uint64_t archive_bytes; /* size of the archive file */
    nj_hash hash;           /* SHA-256 of the archive file's bytes */
} nj_snapshot_info;

/* Checks a format name: NULL or "" (the default), "tar.zst", "tar.gz" or
 * "tar". Returns 0 or NJ_EUSAGE with "unknown snapshot format 'zip'
 * (expected tar.zst, tar.gz or tar)". Does not check that libarchive can
 * write it; nj_snapshot_create() does. */
int nj_snapshot_format_check(const char *format, nj_err *err);

/* Writes one archive at `dest` holding every file beneath each of the n
 * `inputs` (files or directories, relative to `base_dir`, which NULL makes
 * the current directory). The archive is written to "<dest>.tmp.<pid>.<n>",
 * fsynced and renamed over `dest` (whose directory must exist); on failure
 * nothing is left behind and an old `dest` is untouched. `info` (may be
 * NULL) gets the entry count, sizes and the archive's hash.
 *
 * Errors name the path: -ENOENT "cannot read snapshot input 'base/data/x':
 * No such file or directory"; -EINVAL "cannot snapshot 'base/p': a fifo is
 * not a file, directory or symlink"; NJ_EUSAGE for an absolute input or one
 * with "..", or for a symlink that points outside the snapshot; -EIO when a
 * file changes size while it is archived; NJ_EARCHIVE with libarchive's
 * message (for instance when zstd is unavailable). */
int nj_snapshot_create(const char *const *inputs, size_t n, const char *base_dir,
                       const char *format, const char *dest, nj_snapshot_info *info, nj_err *err);

/* One archive entry as nj_snapshot_list_entries() reports it. Strings are
 * borrowed for the duration of the callback. */
typedef struct nj_snapshot_entry {
    const char *path;   /* the name as stored, a directory's without its final '/' */
    nj_entry_kind kind; /* NJ_ENTRY_FILE, _EXEC, _LINK or _DIR */
    uint64_t size;      /* a file's content bytes, else 0 */
    const char *target; /* _LINK: the link text; a hard link: the name it repeats; else NULL */
    int hardlink;       /* 1 for a hard link entry (kind FILE or EXEC), else 0 */
} nj_snapshot_entry;

/* Returns 0 to go on, anything else to stop the listing (and be returned). */
typedef int (*nj_snapshot_visit_fn)(void *ctx, const nj_snapshot_entry *entry);

/* Calls fn for every entry of the archive at `path`, in archive order (for
 * our snapshots: sorted). Does not check entries for safety; extraction
 * does. Returns 0, fn's non-zero value, or a negative code: NJ_EARCHIVE (or
 * -errno such as -ENOENT) with "cannot read snapshot 'path': <libarchive's
 * message>", NJ_EARCHIVE with "snapshot 'path': entry 'p' is a fifo, not a
 * file, directory or symlink". */
int nj_snapshot_list_entries(const char *path, nj_snapshot_visit_fn fn, void *ctx, nj_err *err);

/* Extracts the archive at `archive` as the directory `dest_dir`, which must
 * not exist or be an empty directory (its parents are created).
 *
 * 1. Every header is read and checked first (see the top of this file); a
 *    hostile entry fails the whole extraction with NJ_EARCHIVE and nothing is
 *    written, e.g. "snapshot 'a.tar': entry '../evil' escapes the
 *    destination", "snapshot 'a.tar': entry 'link' escapes the destination:
 *    symlink to '/etc'".
 * 2. The entries are written into a fresh "<dest_dir>.tmp.<pid>.<n>/" (mode
 *    0700 while being filled) through libarchive with its secure-extraction
 *    flags, each entry compared again with what step 1 saw; owners are not
 *    restored, modes are 0644/0755 (0755 for directories), mtimes are now.
 * 3. The filesystem is synced, the directory gets mode 0755 and is renamed
 *    to `dest_dir`.
 * On any failure the temp directory is removed: `dest_dir` is left as it
 * was, never partly written. Validation costs one extra read (and
 * decompression) of the archive. */
int nj_snapshot_extract(const char *archive, const char *dest_dir, nj_err *err);

#endif
