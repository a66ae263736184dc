/* test_snapshot.c - deterministic snapshot archives: same bytes whatever the
 * timestamps, creation order and umask; round trips in every format; hostile
 * archives refused before anything is written; clear errors for bad inputs. */
#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/hash.h"
#include "nightjar/snapshot.h"
#include "nightjar/util.h"
#include "support.h"

TestSuite(snapshot, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 60);

#define DAY "data/raw/2001-01-05"

static const char *const FORMATS[] = {"tar.zst", "tar.gz", "tar"};

/* ---- helpers --------------------------------------------------------------- */

static void write_file(const char *path, const char *text, mode_t mode)
{
    nj_test_write(path, text);
    cr_assert_eq(chmod(path, mode), 0, "chmod %s: %s", path, strerror(errno));
}

static void mkdirs(const char *dir)
{
    nj_err err = {0};
    cr_assert_eq(nj_fs_mkdirs(dir, &err), 0, "%s", err.msg);
}

static char *read_all(const char *path, size_t *len)
{
    nj_err err = {0};
    char *data = NULL;
    cr_assert_eq(nj_fs_read_file(path, &data, len, &err), 0, "%s", err.msg);
    return data;
}

static int same_file_bytes(const char *a, const char *b)
{
    size_t la, lb;
    char *x = read_all(a, &la), *y = read_all(b, &lb);
    int same = la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static void set_times(const char *path, time_t atime, time_t mtime)
{
    struct timespec ts[2] = {{.tv_sec = atime, .tv_nsec = 123}, {.tv_sec = mtime, .tv_nsec = 456}};
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0, "utimensat %s: %s", path,
                 strerror(errno));
}

/* The day's inputs beneath `root`: plain and executable files, a nested
 * directory, an empty one, a symlink and a hard link, created in forward or
 * reverse order. */
static void make_day_masked(const char *root, int reverse, mode_t mask)
{
    char p[PATH_MAX];
    static const char *const files[][3] = {
        {"flights.csv", "date,delay\n2001-01-05,12\n", "644"},
        {"run.sh", "#!/bin/sh\necho hi\n", "755"},
        {"sub/deep/notes.txt", "deep\n", "644"},
        {"sub/a.txt", "a\n", "644"},
    };
    size_t n = sizeof(files) / sizeof(files[0]);
    for (size_t k = 0; k < n; k++) {
        size_t i = reverse ? n - 1 - k : k;
        snprintf(p, sizeof(p), "%s/" DAY "/%s", root, files[i][0]);
        write_file(p, files[i][1], (mode_t)strtol(files[i][2], NULL, 8) & ~mask);
    }
    snprintf(p, sizeof(p), "%s/" DAY "/empty", root);
    mkdirs(p);
    snprintf(p, sizeof(p), "%s/" DAY "/latest", root);
    cr_assert_eq(symlink("flights.csv", p), 0);
    char from[PATH_MAX];
    snprintf(from, sizeof(from), "%s/" DAY "/flights.csv", root);
    snprintf(p, sizeof(p), "%s/" DAY "/sub/hard.csv", root);
    cr_assert_eq(link(from, p), 0);
}

static void make_day(const char *root, int reverse)
{
    make_day_masked(root, reverse, 0);
}

/* Sets atime/mtime of everything beneath `dir` (symlinks themselves too). */
static void touch_tree(const char *dir, time_t atime, time_t mtime)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s", dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *child = nj_path_join(dir, e->d_name);
        struct stat st;
        cr_assert_eq(lstat(child, &st), 0);
        if (S_ISDIR(st.st_mode)) touch_tree(child, atime, mtime);
        set_times(child, atime, mtime);
        free(child);
    }
    closedir(d);
}

/* Gives everything beneath `dir` another owner, when we may. */
static void chown_tree(const char *dir, uid_t uid, gid_t gid)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s", dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *child = nj_path_join(dir, e->d_name);
        struct stat st;
        cr_assert_eq(lstat(child, &st), 0);
        if (S_ISDIR(st.st_mode)) chown_tree(child, uid, gid);
        cr_assert_eq(lchown(child, uid, gid), 0, "lchown %s: %s", child, strerror(errno));
        free(child);
    }
    closedir(d);
}

static nj_snapshot_info snap(const char *base, const char *format, const char *dest)
{
    nj_err err = {0};
    nj_snapshot_info info;
    const char *inputs[] = {DAY "/"};
    cr_assert_eq(nj_snapshot_create(inputs, 1, base, format, dest, &info, &err), 0, "%s", err.msg);
    return info;
}

static nj_hash hash_path(const char *path)
{
    nj_err err = {0};
    nj_hash h;
    cr_assert_eq(nj_hash_path(path, NULL, &h, &err), 0, "%s", err.msg);
    return h;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0, "lstat %s: %s", path, strerror(errno));
    return st.st_mode;
}

/* Names in `dir`, sorted and joined by spaces ("" when empty). */
static char *list_dir(const char *dir)
{
    nj_strs names = {0};
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s", dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            nj_strs_push(&names, e->d_name);
    closedir(d);
    for (size_t i = 1; i < names.len; i++)
        for (size_t j = i; j > 0 && strcmp(names.items[j - 1], names.items[j]) > 0; j--) {
            char *t = names.items[j];
            names.items[j] = names.items[j - 1];
            names.items[j - 1] = t;
        }
    nj_buf b;
    nj_buf_init(&b);
    for (size_t i = 0; i < names.len; i++)
        nj_buf_printf(&b, "%s%s", i ? " " : "", names.items[i]);
    nj_strs_release(&names);
    char *s = nj_buf_detach(&b);
    nj_buf_release(&b);
    return s;
}

/* The names in `dir` are exactly `want` (nothing left over, nothing partial). */
#define assert_dir(dir, want)                                                                      \
    do {                                                                                           \
        char *names_ = list_dir(dir);                                                              \
        cr_assert_str_eq(names_, want);                                                            \
        free(names_);                                                                              \
    } while (0)

/* ---- determinism ------------------------------------------------------------- */

Test(snapshot, same_bytes_whatever_times_order_and_umask)
{
    mode_t old = umask(022);
    make_day("a", 0);
    touch_tree("a", 1000000000, 1000000000);
    umask(077);
    make_day_masked("b", 1, 077); /* files 0600 and 0700, directories 0700 */
    touch_tree("b", 1700000000, 1234567890);
    umask(old);
    if (geteuid() == 0) chown_tree("b", 4321, 8765); /* owners must not matter either */

    for (size_t i = 0; i < sizeof(FORMATS) / sizeof(FORMATS[0]); i++) {
        char da[64], db[64];
        snprintf(da, sizeof(da), "a.%s", FORMATS[i]);
        snprintf(db, sizeof(db), "b.%s", FORMATS[i]);
        nj_snapshot_info ia = snap("a", FORMATS[i], da);
        if (strcmp(FORMATS[i], "tar.gz") == 0) sleep(1); /* a gzip timestamp would differ */
        nj_snapshot_info ib = snap("b", FORMATS[i], db);
        cr_assert(same_file_bytes(da, db), "%s archives differ", FORMATS[i]);
        cr_assert(nj_hash_equal(&ia.hash, &ib.hash));
        nj_hash file_hash = hash_path(da);
        cr_assert(nj_hash_equal(&ia.hash, &file_hash), "info.hash is the archive's sha256");
        cr_assert_eq(ia.entries, 7); /* 6 files and links, 1 empty directory */
        cr_assert_eq(ib.entries, 7);
        cr_assert_eq(ia.bytes, ib.bytes);
        cr_assert_eq(ia.bytes, 2 * strlen("date,delay\n2001-01-05,12\n") +
                                   strlen("#!/bin/sh\necho hi\n") + strlen("deep\n") + 2);
        struct stat st;
        cr_assert_eq(stat(da, &st), 0);
        cr_assert_eq((uint64_t)st.st_size, ia.archive_bytes);
    }
}

Test(snapshot, different_content_gives_different_hash)
{
    make_day("a", 0);
    nj_snapshot_info base = snap("a", NULL, "0.tar.zst");

    write_file("a/" DAY "/sub/a.txt", "b\n", 0644); /* same size, other byte */
    nj_snapshot_info changed = snap("a", NULL, "1.tar.zst");
    cr_assert_not(nj_hash_equal(&base.hash, &changed.hash));

    write_file("a/" DAY "/sub/a.txt", "a\n", 0644);
    nj_snapshot_info back = snap("a", NULL, "2.tar.zst");
    cr_assert(nj_hash_equal(&base.hash, &back.hash), "same content again, same hash");

    cr_assert_eq(chmod("a/" DAY "/sub/a.txt", 0755), 0);
    nj_snapshot_info exec = snap("a", NULL, "3.tar.zst");
    cr_assert_not(nj_hash_equal(&base.hash, &exec.hash), "the exec bit is content");
    cr_assert_eq(chmod("a/" DAY "/sub/a.txt", 0600), 0);
    nj_snapshot_info private = snap("a", NULL, "4.tar.zst");
    cr_assert(nj_hash_equal(&base.hash, &private.hash), "other mode bits are not");

    cr_assert_eq(rename("a/" DAY "/sub/a.txt", "a/" DAY "/sub/b.txt"), 0);
    nj_snapshot_info renamed = snap("a", NULL, "5.tar.zst");
    cr_assert_not(nj_hash_equal(&base.hash, &renamed.hash));
}

Test(snapshot, overlapping_inputs_are_stored_once)
{
    make_day("a", 0);
    nj_err err = {0};
    const char *one[] = {"data"};
    const char *two[] = {DAY "/sub", "./data//", DAY "/flights.csv"};
    cr_assert_eq(nj_snapshot_create(one, 1, "a", "tar", "one.tar", NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_snapshot_create(two, 3, "a", "tar", "two.tar", NULL, &err), 0, "%s", err.msg);
    cr_assert(same_file_bytes("one.tar", "two.tar"));
}

/* Every header field that could carry the machine's state is fixed. */
Test(snapshot, headers_are_normalised)
{
    make_day("a", 0);
    /* A name longer than ustar's 100 bytes and a non-ASCII one need pax records. */
    char longname[PATH_MAX];
    snprintf(longname, sizeof(longname), "a/" DAY "/%0150d.csv", 7);
    write_file(longname, "long\n", 0644);
    write_file("a/" DAY "/caf\xc3\xa9-\xff.txt", "bytes\n", 0644);
    touch_tree("a", 1500000000, 1500000000);
    snap("a", "tar", "s.tar");

    size_t len;
    char *bytes = read_all("s.tar", &len);
    static const char *const forbidden[] = {"atime=", "ctime=", "mtime=", "LIBARCHIVE.", "SCHILY.",
                                            "uname=", "gname=", "uid=",   "gid="};
    for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++)
        cr_assert_null(memmem(bytes, len, forbidden[i], strlen(forbidden[i])), "found '%s'",
                       forbidden[i]);
    cr_assert_not_null(memmem(bytes, len, "path=", 5), "the long name went into a pax record");
    free(bytes);

    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    cr_assert_eq(archive_read_open_filename(a, "s.tar", 10240), ARCHIVE_OK);
    struct archive_entry *e;
    char prev[PATH_MAX] = "";
    size_t n = 0;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s", name);
        if (archive_entry_filetype(e) == AE_IFDIR) {
            cr_assert(nj_str_ends(path, "/"), "tar's directory convention");
            path[strlen(path) - 1] = '\0';
        }
        cr_assert(strcmp(prev, path) < 0, "'%s' sorted after '%s'", path, prev);
        snprintf(prev, sizeof(prev), "%s", path);
        cr_assert_eq(archive_entry_mtime(e), 0, "%s", name);
        cr_assert_eq(archive_entry_mtime_nsec(e), 0, "%s", name);
        cr_assert_not(archive_entry_atime_is_set(e), "%s", name);
        cr_assert_not(archive_entry_ctime_is_set(e), "%s", name);
        cr_assert_eq(archive_entry_uid(e), 0);
        cr_assert_eq(archive_entry_gid(e), 0);
        cr_assert(!archive_entry_uname(e) || !*archive_entry_uname(e));
        cr_assert(!archive_entry_gname(e) || !*archive_entry_gname(e));
        cr_assert_eq(archive_entry_xattr_count(e), 0);
        cr_assert_null(archive_entry_hardlink(e), "hard links are stored as files");
        mode_t type = archive_entry_filetype(e), perm = archive_entry_perm(e);
        if (type == AE_IFREG)
            cr_assert(perm == 0644 || perm == 0755, "%s: %o", name, perm);
        else if (type == AE_IFDIR)
            cr_assert_eq(perm, 0755, "%s", name);
        else
            cr_assert_eq(type, AE_IFLNK, "%s", name);
        if (strcmp(name, DAY "/sub/hard.csv") == 0) cr_assert_eq(archive_entry_size(e), 25);
        if (strcmp(name, DAY "/run.sh") == 0) cr_assert_eq(perm, 0755);
        if (strcmp(path, DAY "/empty") == 0) cr_assert_eq(type, AE_IFDIR);
        n++;
    }
    cr_assert_eq(n, 9);
    archive_read_free(a);

    /* gzip: no name, no timestamp (bytes 4-7), so no time of day leaks in. */
    snap("a", "tar.gz", "s.tar.gz");
    unsigned char *gz = (unsigned char *)read_all("s.tar.gz", &len);
    cr_assert(gz[0] == 0x1f && gz[1] == 0x8b);
    cr_assert_eq(gz[3], 0, "no FNAME or other optional gzip fields");
    cr_assert(gz[4] == 0 && gz[5] == 0 && gz[6] == 0 && gz[7] == 0, "zero gzip mtime");
    free(gz);
}

Test(snapshot, each_format_has_its_magic)
{
    make_day("a", 0);
    snap("a", NULL, "default");
    snap("a", "tar.zst", "s.tar.zst");
    snap("a", "tar.gz", "s.tar.gz");
    snap("a", "tar", "s.tar");
    cr_assert(same_file_bytes("default", "s.tar.zst"), "tar.zst is the default");
    size_t len;
    unsigned char *zst = (unsigned char *)read_all("s.tar.zst", &len);
    cr_assert(zst[0] == 0x28 && zst[1] == 0xb5 && zst[2] == 0x2f && zst[3] == 0xfd);
    free(zst);
    char *tar = read_all("s.tar", &len);
    cr_assert(len > 262 && memcmp(tar + 257, "ustar", 5) == 0);
    cr_assert_eq(len % 512, 0);
    free(tar);
}

/* ---- round trips -------------------------------------------------------------- */

Test(snapshot, round_trip_gives_identical_tree_in_every_format)
{
    mode_t old = umask(077); /* extraction must not depend on it */
    make_day("a", 0);
    /* Larger than one copy block, with no repeating pattern. */
    nj_buf big;
    nj_buf_init(&big);
    for (long i = 0; i < 300000; i++)
        nj_buf_printf(&big, "%ld,", i * 7919);
    write_file("a/" DAY "/big.csv", big.data, 0644);
    nj_buf_release(&big);
    nj_hash want = hash_path("a/" DAY);

    for (size_t i = 0; i < sizeof(FORMATS) / sizeof(FORMATS[0]); i++) {
        nj_err err = {0};
        char archive[64], out[64], p[PATH_MAX];
        snprintf(archive, sizeof(archive), "s.%s", FORMATS[i]);
        snprintf(out, sizeof(out), "restored/%zu", i);
        snap("a", FORMATS[i], archive);
        cr_assert_eq(nj_snapshot_extract(archive, out, &err), 0, "%s", err.msg);

        snprintf(p, sizeof(p), "%s/" DAY, out);
        nj_hash got = hash_path(p);
        cr_assert(nj_hash_equal(&want, &got), "%s: restored tree differs", FORMATS[i]);

        snprintf(p, sizeof(p), "%s/" DAY "/big.csv", out);
        cr_assert(same_file_bytes(p, "a/" DAY "/big.csv"));
        cr_assert_eq(mode_of(p) & 07777, 0644);
        snprintf(p, sizeof(p), "%s/" DAY "/run.sh", out);
        cr_assert_eq(mode_of(p) & 07777, 0755);
        snprintf(p, sizeof(p), "%s/" DAY "/empty", out);
        cr_assert(S_ISDIR(mode_of(p)), "the empty directory round-trips");
        cr_assert_eq(mode_of(p) & 07777, 0755);
        snprintf(p, sizeof(p), "%s/data/raw", out);
        cr_assert_eq(mode_of(p) & 07777, 0755, "implied directories too");
        cr_assert_eq(mode_of(out) & 07777, 0755);
        snprintf(p, sizeof(p), "%s/" DAY "/latest", out);
        cr_assert(S_ISLNK(mode_of(p)));
        char target[64] = {0};
        cr_assert_eq(readlink(p, target, sizeof(target) - 1), (ssize_t)strlen("flights.csv"));
        cr_assert_str_eq(target, "flights.csv");
        snprintf(p, sizeof(p), "%s/" DAY "/sub/hard.csv", out);
        struct stat st;
        cr_assert_eq(stat(p, &st), 0);
        cr_assert_eq(st.st_nlink, 1, "a hard link comes back as its own file");

        /* The restored tree snapshots to the same bytes. */
        char again[64];
        snprintf(again, sizeof(again), "again.%s", FORMATS[i]);
        snap(out, FORMATS[i], again);
        cr_assert(same_file_bytes(archive, again));
    }
    assert_dir("restored", "0 1 2");
    umask(old);
}

Test(snapshot, extracts_into_an_empty_directory_but_not_a_full_one)
{
    make_day("a", 0);
    snap("a", NULL, "s.tar.zst");
    nj_err err = {0};
    mkdirs("empty");
    cr_assert_eq(nj_snapshot_extract("s.tar.zst", "empty", &err), 0, "%s", err.msg);
    cr_assert(nj_fs_exists("empty/" DAY "/flights.csv"));

    write_file("full/keep.txt", "mine\n", 0644);
    cr_assert_eq(nj_snapshot_extract("s.tar.zst", "full", &err), -EEXIST);
    cr_assert_str_eq(err.msg, "cannot extract snapshot 's.tar.zst' into 'full': it exists and is "
                              "not an empty directory");
    assert_dir("full", "keep.txt");
    assert_dir(".", "a empty full s.tar.zst");
}

typedef struct listing {
    nj_buf text;
} listing;

static int add_entry(void *ctx, const nj_snapshot_entry *e)
{
    listing *l = ctx;
    nj_buf_printf(&l->text, "%c %s %llu%s%s\n", (char)e->kind, e->path, (unsigned long long)e->size,
                  e->target ? " -> " : "", e->target ? e->target : "");
    return 0;
}

static int stop_at_second(void *ctx, const nj_snapshot_entry *e)
{
    (void)e;
    return ++*(int *)ctx == 2 ? 42 : 0;
}

Test(snapshot, lists_entries_in_order)
{
    make_day("a", 0);
    snap("a", NULL, "s.tar.zst");
    nj_err err = {0};
    listing l;
    nj_buf_init(&l.text);
    cr_assert_eq(nj_snapshot_list_entries("s.tar.zst", add_entry, &l, &err), 0, "%s", err.msg);
    cr_assert_str_eq(l.text.data, "d " DAY "/empty 0\n"
                                  "f " DAY "/flights.csv 25\n"
                                  "l " DAY "/latest 0 -> flights.csv\n"
                                  "x " DAY "/run.sh 18\n"
                                  "f " DAY "/sub/a.txt 2\n"
                                  "f " DAY "/sub/deep/notes.txt 5\n"
                                  "f " DAY "/sub/hard.csv 25\n");
    nj_buf_release(&l.text);

    int calls = 0;
    cr_assert_eq(nj_snapshot_list_entries("s.tar.zst", stop_at_second, &calls, &err), 42);
    cr_assert_eq(calls, 2);

    cr_assert_eq(nj_snapshot_list_entries("missing.tar", add_entry, &l, &err), -ENOENT);
    cr_assert(nj_str_starts(err.msg, "cannot read snapshot 'missing.tar': "), "%s", err.msg);
}

/* ---- bad inputs ------------------------------------------------------------------ */

Test(snapshot, missing_input_names_it)
{
    make_day("a", 0);
    write_file("old.tar", "previous snapshot\n", 0644);
    nj_err err = {0};
    const char *inputs[] = {DAY, "data/raw/2001-01-06"};
    cr_assert_eq(nj_snapshot_create(inputs, 2, "a", "tar", "old.tar", NULL, &err), -ENOENT);
    cr_assert_str_eq(err.msg, "cannot read snapshot input 'a/data/raw/2001-01-06': No such file or "
                              "directory");
    char *old = nj_test_read("old.tar");
    cr_assert_str_eq(old, "previous snapshot\n", "a failed snapshot keeps the old archive");
    free(old);
    assert_dir(".", "a old.tar");
}

Test(snapshot, fifo_input_is_refused)
{
    make_day("a", 0);
    cr_assert_eq(mkfifo("a/" DAY "/sub/pipe", 0644), 0);
    nj_err err = {0};
    const char *inputs[] = {DAY};
    cr_assert_eq(nj_snapshot_create(inputs, 1, "a", NULL, "s.tar.zst", NULL, &err), -EINVAL);
    cr_assert_str_eq(err.msg, "cannot snapshot 'a/" DAY "/sub/pipe': a fifo is not a file, "
                              "directory or symlink");
    const char *direct[] = {DAY "/sub/pipe"};
    cr_assert_eq(nj_snapshot_create(direct, 1, "a", NULL, "s.tar.zst", NULL, &err), -EINVAL);
    cr_assert_str_eq(err.msg, "cannot snapshot 'a/" DAY "/sub/pipe': a fifo is not a file, "
                              "directory or symlink");
    assert_dir(".", "a");
}

Test(snapshot, escaping_symlink_input_is_refused)
{
    make_day("a", 0);
    /* Five levels up from data/raw/2001-01-05/sub is outside the snapshot's root. */
    cr_assert_eq(symlink("../../../../../secret", "a/" DAY "/sub/up"), 0);
    nj_err err = {0};
    const char *inputs[] = {DAY};
    cr_assert_eq(nj_snapshot_create(inputs, 1, "a", NULL, "s.tar.zst", NULL, &err), -EINVAL);
    cr_assert_str_eq(err.msg, "cannot snapshot 'a/" DAY "/sub/up': symlink to "
                              "'../../../../../secret' points outside the snapshot");
    cr_assert_eq(unlink("a/" DAY "/sub/up"), 0);
    /* Four levels up is the root: fine, even if the inputs do not hold its target. */
    cr_assert_eq(symlink("../../../../other", "a/" DAY "/sub/up"), 0);
    cr_assert_eq(nj_snapshot_create(inputs, 1, "a", NULL, "s.tar.zst", NULL, &err), 0, "%s",
                 err.msg);
}

Test(snapshot, bad_input_names_and_formats)
{
    make_day("a", 0);
    nj_err err = {0};
    const char *abs[] = {"/etc"};
    cr_assert_eq(nj_snapshot_create(abs, 1, "a", NULL, "s", NULL, &err), NJ_EUSAGE);
    cr_assert_str_eq(err.msg, "snapshot input '/etc' must be a path inside the base directory 'a'");
    const char *up[] = {"data/../../x"};
    cr_assert_eq(nj_snapshot_create(up, 1, "a", NULL, "s", NULL, &err), NJ_EUSAGE);
    const char *ok[] = {DAY};
    cr_assert_eq(nj_snapshot_create(ok, 1, "a", "zip", "s", NULL, &err), NJ_EUSAGE);
    cr_assert_str_eq(err.msg, "unknown snapshot format 'zip' (expected tar.zst, tar.gz or tar)");
    cr_assert_eq(nj_snapshot_format_check("tar.gz", &err), 0);
    cr_assert_eq(nj_snapshot_format_check(NULL, &err), 0);
    assert_dir(".", "a");
}

/* ---- hostile archives ------------------------------------------------------------ */

typedef struct fake_entry {
    const char *path;
    char type;          /* 'f' file, 'd' directory, 'l' symlink, 'h' hard link, 'p' fifo */
    const char *target; /* link text, hard link target or file content */
} fake_entry;

/* Writes a tar archive with libarchive's own writer, which stores whatever
 * names it is given. */
static void make_archive(const char *path, const fake_entry *entries, size_t n)
{
    struct archive *a = archive_write_new();
    cr_assert_eq(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    cr_assert_eq(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    for (size_t i = 0; i < n; i++) {
        archive_entry_clear(e);
        archive_entry_copy_pathname(e, entries[i].path);
        const char *content = NULL;
        switch (entries[i].type) {
        case 'f':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            content = entries[i].target ? entries[i].target : "x\n";
            archive_entry_set_size(e, (la_int64_t)strlen(content));
            break;
        case 'd':
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
            break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, 0777);
            archive_entry_copy_symlink(e, entries[i].target);
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_copy_hardlink(e, entries[i].target);
            break;
        case 'p':
            archive_entry_set_filetype(e, AE_IFIFO);
            archive_entry_set_perm(e, 0644);
            break;
        }
        cr_assert_eq(archive_write_header(a, e), ARCHIVE_OK, "%s", archive_error_string(a));
        if (content) archive_write_data(a, content, strlen(content));
    }
    archive_entry_free(e);
    cr_assert_eq(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* Extracting `entries` into "box/dest" fails with `want`, and nothing at all
 * is written: not "box", not a temp directory, nothing beside the archive. */
static void assert_refused(const fake_entry *entries, size_t n, const char *want)
{
    make_archive("evil.tar", entries, n);
    nj_err err = {0};
    cr_assert_eq(nj_snapshot_extract("evil.tar", "box/dest", &err), NJ_EARCHIVE, "%s", err.msg);
    cr_assert_str_eq(err.msg, want);
    char *left = list_dir(".");
    cr_assert_str_eq(left, "evil.tar", "something was written");
    free(left);
    cr_assert_not(nj_fs_exists("../outside"));
    cr_assert_not(nj_fs_exists("../evil"));
    cr_assert_eq(unlink("evil.tar"), 0);
}

#define REFUSED(want, ...)                                                                         \
    do {                                                                                           \
        const fake_entry entries_[] = {__VA_ARGS__};                                               \
        assert_refused(entries_, sizeof(entries_) / sizeof(entries_[0]), want);                    \
    } while (0)

Test(snapshot, hostile_paths_are_refused)
{
    char *cwd = getcwd(NULL, 0);
    char *abs = nj_xasprintf("%s/abs-evil", cwd);
    char *want = nj_xasprintf("snapshot 'evil.tar': entry '%s' escapes the destination", abs);
    /* A harmless entry first: refusal must come before anything is written. */
    REFUSED(want, {"ok.txt", 'f', NULL}, {abs, 'f', NULL});
    cr_assert_not(nj_fs_exists(abs));
    free(want);
    free(abs);
    free(cwd);

    REFUSED("snapshot 'evil.tar': entry '/tmp/evil' escapes the destination", {"ok.txt", 'f', NULL},
            {"/tmp/evil", 'f', NULL});
    REFUSED("snapshot 'evil.tar': entry '../evil' escapes the destination", {"ok.txt", 'f', NULL},
            {"../evil", 'f', NULL});
    REFUSED("snapshot 'evil.tar': entry 'a/../../evil' escapes the destination",
            {"ok.txt", 'f', NULL}, {"a/../../evil", 'f', NULL});
    REFUSED("snapshot 'evil.tar': entry 'a/./../b' escapes the destination",
            {"a/./../b", 'f', NULL});
}

Test(snapshot, hostile_links_are_refused)
{
    REFUSED("snapshot 'evil.tar': entry 'link' escapes the destination: symlink to '../../outside'",
            {"ok.txt", 'f', NULL}, {"link", 'l', "../../outside"});
    REFUSED("snapshot 'evil.tar': entry 'link' escapes the destination: symlink to '/etc'",
            {"ok.txt", 'f', NULL}, {"link", 'l', "/etc"}, {"link/x", 'f', "pwned\n"});
    /* The same pattern with the entry first and a link that looks harmless. */
    REFUSED("snapshot 'evil.tar': entry 'link/x' lies beneath the symlink 'link'",
            {"link/x", 'f', "pwned\n"}, {"link", 'l', "sub"}, {"sub/y", 'f', NULL});
    /* Lexically "d/esc -> up/.." is "d"; on disk "up" is the root, so it is "..". */
    REFUSED("snapshot 'evil.tar': entry 'd/esc' escapes the destination: symlink to 'up/..'",
            {"d/up", 'l', ".."}, {"d/esc", 'l', "up/.."});
    REFUSED("snapshot 'evil.tar': entry 'loop' escapes the destination: symlink to 'loop2'",
            {"loop", 'l', "loop2"}, {"loop2", 'l', "loop"});
    REFUSED("snapshot 'evil.tar': entry 'h' escapes the destination: hard link to '../outside'",
            {"ok.txt", 'f', NULL}, {"h", 'h', "../outside"});
    REFUSED("snapshot 'evil.tar': entry 'h' escapes the destination: hard link to '/etc/passwd'",
            {"h", 'h', "/etc/passwd"});
    REFUSED("snapshot 'evil.tar': entry 'h' is a hard link to 'd/up', which is not a regular file "
            "earlier in the archive",
            {"d/up", 'l', ".."}, {"h", 'h', "d/up"});
    REFUSED("snapshot 'evil.tar': entry 'h' is a hard link to 'later.txt', which is not a regular "
            "file earlier in the archive",
            {"h", 'h', "later.txt"}, {"later.txt", 'f', NULL});
    REFUSED("snapshot 'evil.tar': entry 'f/x' lies beneath the file 'f'", {"f", 'f', NULL},
            {"f/x", 'f', NULL});
}

Test(snapshot, odd_entries_are_refused)
{
    REFUSED("snapshot 'evil.tar': entry 'pipe' is a fifo, not a file, directory or symlink",
            {"ok.txt", 'f', NULL}, {"pipe", 'p', NULL});
    REFUSED("snapshot 'evil.tar': entry 'twice.txt' appears twice", {"twice.txt", 'f', "one\n"},
            {"./twice.txt", 'f', "two\n"});
}

Test(snapshot, safe_links_and_dot_entries_extract)
{
    const fake_entry entries[] = {
        {"./", 'd', NULL},   {"./a/file.txt", 'f', "hello\n"}, {"a/copy.txt", 'h', "a/file.txt"},
        {"d/up", 'l', ".."}, {"d/ok", 'l', "../a/file.txt"},   {"d/self", 'l', "up/d/up"},
    };
    make_archive("good.tar", entries, sizeof(entries) / sizeof(entries[0]));
    nj_err err = {0};
    cr_assert_eq(nj_snapshot_extract("good.tar", "out", &err), 0, "%s", err.msg);
    char *text = nj_test_read("out/d/ok");
    cr_assert_str_eq(text, "hello\n");
    free(text);
    text = nj_test_read("out/a/copy.txt");
    cr_assert_str_eq(text, "hello\n");
    free(text);
    cr_assert(S_ISLNK(mode_of("out/d/up")));
    assert_dir(".", "good.tar out");
}

Test(snapshot, flat_and_empty_trees_round_trip)
{
    nj_err err = {0};
    write_file("flat/one.txt", "1\n", 0644);
    write_file("flat/two.sh", "2\n", 0755);
    const char *all[] = {"."};
    nj_snapshot_info info;
    cr_assert_eq(nj_snapshot_create(all, 1, "flat", "tar", "flat.tar", &info, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(info.entries, 2);
    cr_assert_eq(nj_snapshot_extract("flat.tar", "flat-out", &err), 0, "%s", err.msg);
    nj_hash want = hash_path("flat"), got = hash_path("flat-out");
    cr_assert(nj_hash_equal(&want, &got));

    mkdirs("hollow");
    cr_assert_eq(nj_snapshot_create(all, 1, "hollow", NULL, "hollow.tar.zst", &info, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(info.entries, 0);
    cr_assert_eq(info.bytes, 0);
    cr_assert_eq(nj_snapshot_extract("hollow.tar.zst", "hollow-out", &err), 0, "%s", err.msg);
    cr_assert(nj_fs_is_dir("hollow-out"));
    assert_dir("hollow-out", "");
}

/* An archive that passes validation but fails while being written leaves
 * neither the destination nor a temp directory. */
Test(snapshot, failure_while_writing_leaves_nothing_partial)
{
    char name[400];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    char *toolong = nj_xasprintf("b/%s", name); /* a component over NAME_MAX */
    const fake_entry entries[] = {{"a.txt", 'f', "first\n"}, {toolong, 'f', NULL}};
    make_archive("s.tar", entries, 2);
    nj_err err = {0};
    int rc = nj_snapshot_extract("s.tar", "box/dest", &err);
    cr_assert_lt(rc, 0);
    cr_assert(strstr(err.msg, "from snapshot 's.tar'") != NULL, "%s", err.msg);
    assert_dir("box", "");
    free(toolong);
}

Test(snapshot, corrupt_archive_is_refused)
{
    make_day("a", 0);
    snap("a", "tar.gz", "s.tar.gz");
    size_t len;
    char *bytes = read_all("s.tar.gz", &len);
    nj_err err = {0};
    cr_assert_eq(nj_fs_write_atomic("cut.tar.gz", bytes, len / 2, &err), 0, "%s", err.msg);
    free(bytes);
    cr_assert_lt(nj_snapshot_extract("cut.tar.gz", "out", &err), 0);
    cr_assert(nj_str_starts(err.msg, "cannot read snapshot 'cut.tar.gz': "), "%s", err.msg);
    cr_assert_not(nj_fs_exists("out"));
    assert_dir(".", "a cut.tar.gz s.tar.gz");
}
