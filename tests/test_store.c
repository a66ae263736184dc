/* test_store.c - the content-addressed object store: put, restore with every
 * link mode, corruption, concurrency between processes, failed puts. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/hash.h"
#include "nightjar/store.h"
#include "nightjar/util.h"
#include "support.h"

TestSuite(store, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 60);

static nj_store *open_store(void)
{
    nj_err err = {0};
    nj_store *s = NULL;
    cr_assert_eq(nj_store_open("st", &s, &err), 0, "%s", err.msg);
    return s;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    nj_err err = {0};
    cr_assert_eq(nj_fs_mkdirs_parent(path, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_fs_write_atomic(path, data, len, &err), 0, "%s", err.msg);
}

static nj_hash put(nj_store *s, const char *path)
{
    nj_err err = {0};
    nj_hash h;
    cr_assert_eq(nj_store_put_file(s, path, &h, NULL, &err), 0, "%s", err.msg);
    return h;
}

static nj_hash hash_of(const char *path)
{
    nj_err err = {0};
    nj_hash h;
    cr_assert_eq(nj_hash_path(path, NULL, &h, &err), 0, "%s", err.msg);
    return h;
}

/* Entries in a directory, "." and ".." aside; -1 when it cannot be opened. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

static int count_visit(void *ctx, const nj_hash *hash, const char *path)
{
    (void)hash, (void)path;
    (*(int *)ctx)++;
    return 0;
}

static int count_objects(nj_store *s)
{
    nj_err err = {0};
    int n = 0;
    cr_assert_eq(nj_store_foreach(s, count_visit, &n, &err), 0, "%s", err.msg);
    return n;
}

static void assert_read_only(const char *path)
{
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0, "%s", path);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq(st.st_mode & 0222, 0, "'%s' has mode %o", path, st.st_mode & 07777);
}

/* Makes an object writable and flips one byte, as a careless user would. */
static void corrupt_object(nj_store *s, const nj_hash *h)
{
    char *obj = nj_store_object_path(s, h);
    cr_assert_eq(chmod(obj, 0644), 0);
    int fd = open(obj, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, "X", 1, 1), 1);
    close(fd);
    free(obj);
}

Test(store, put_lays_out_objects_by_hash_read_only)
{
    nj_store *s = open_store();
    nj_test_write("a.txt", "abc");
    nj_err err = {0};
    nj_hash h;
    uint64_t size = 0;
    cr_assert_eq(nj_store_put_file(s, "a.txt", &h, &size, &err), 0, "%s", err.msg);
    cr_assert_eq(size, 3);
    nj_hash want = hash_of("a.txt");
    cr_assert(nj_hash_equal(&h, &want));
    char *obj = nj_store_object_path(s, &h);
    char *expect = nj_xasprintf("%s/objects/sha256/ba/"
                                "7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                                nj_store_dir(s));
    cr_assert_str_eq(obj, expect);
    cr_assert_eq(nj_store_dir(s)[0], '/');
    struct stat st;
    cr_assert_eq(stat(obj, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0444);
    char *text = nj_test_read(obj);
    cr_assert_str_eq(text, "abc");
    cr_assert(nj_store_has(s, &h));
    cr_assert_eq(nj_store_verify(s, &h, &err), 0, "%s", err.msg);

    nj_test_write("tool", "#!/bin/sh\necho hi\n");
    cr_assert_eq(chmod("tool", 0755), 0);
    nj_hash t = put(s, "tool");
    char *tobj = nj_store_object_path(s, &t);
    cr_assert_eq(stat(tobj, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0555, "an executable source gives a 0555 object");
    free(tobj);
    free(text);
    free(obj);
    free(expect);
    nj_store_free(s);
    nj_store_free(NULL);
}

Test(store, identical_content_is_stored_once)
{
    nj_store *s = open_store();
    nj_test_write("a", "same bytes");
    nj_test_write("b", "same bytes");
    nj_test_write("c", "other bytes");
    nj_hash a = put(s, "a"), a2 = put(s, "a"), b = put(s, "b"), c = put(s, "c");
    cr_assert(nj_hash_equal(&a, &a2));
    cr_assert(nj_hash_equal(&a, &b));
    cr_assert_not(nj_hash_equal(&a, &c));
    cr_assert_eq(count_objects(s), 2);
    cr_assert_eq(count_entries("st/tmp"), 0, "no temp file may be left");

    nj_err err = {0};
    nj_hash buf;
    cr_assert_eq(nj_store_put_buffer(s, "same bytes", 10, &buf, &err), 0);
    cr_assert(nj_hash_equal(&buf, &a));
    cr_assert_eq(count_objects(s), 2);
    nj_store_free(s);
}

/* Restores `h` to dest with `mode`; returns the code. */
static int restore(nj_store *s, const nj_hash *h, const char *dest, nj_link_mode mode, nj_err *err)
{
    return nj_store_restore(s, h, dest, mode, err);
}

Test(store, restore_each_mode_gives_identical_read_only_bytes)
{
    nj_store *s = open_store();
    size_t len = (3u << 20) + 11;
    char *data = nj_xmalloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(i * 7 + i / 4096);
    write_bytes("src.bin", data, len);
    nj_hash h = put(s, "src.bin");
    nj_err err = {0};
    nj_link_mode modes[] = {NJ_LINK_AUTO, NJ_LINK_HARDLINK, NJ_LINK_COPY, NJ_LINK_REFLINK};
    for (int i = 0; i < 4; i++) {
        char *dest = nj_xasprintf("out/%s/model.bin", nj_link_mode_name(modes[i]));
        write_bytes(dest, "old content", 11); /* replaced whole */
        int rc = restore(s, &h, dest, modes[i], &err);
        if (modes[i] == NJ_LINK_REFLINK && rc < 0) {
            /* ext4, tmpfs: no reflinks; the old file must be intact. */
            cr_assert(strstr(err.msg, "cannot reflink"), "%s", err.msg);
            char *old = nj_test_read(dest);
            cr_assert_str_eq(old, "old content");
            free(old);
            free(dest);
            continue;
        }
        cr_assert_eq(rc, 0, "%s: %s", nj_link_mode_name(modes[i]), err.msg);
        nj_hash got = hash_of(dest);
        cr_assert(nj_hash_equal(&got, &h), "%s", nj_link_mode_name(modes[i]));
        assert_read_only(dest);
        char *dir = nj_path_dirname(dest);
        cr_assert_eq(count_entries(dir), 1, "no temp file next to '%s'", dest);
        free(dir);
        free(dest);
    }
    /* A hardlink is the object itself: modifying it is impossible without chmod. */
    struct stat o, l;
    char *obj = nj_store_object_path(s, &h);
    cr_assert_eq(stat(obj, &o), 0);
    cr_assert_eq(stat("out/hardlink/model.bin", &l), 0);
    cr_assert_eq(o.st_ino, l.st_ino);
    cr_assert_eq(stat("out/copy/model.bin", &l), 0);
    cr_assert_neq(o.st_ino, l.st_ino, "copy mode must not share the inode");
    free(obj);
    free(data);
    nj_store_free(s);
}

Test(store, link_mode_strings)
{
    nj_err err = {0};
    nj_link_mode m;
    const char *names[] = {"auto", "reflink", "hardlink", "copy"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(nj_link_mode_parse(names[i], &m, &err), 0);
        cr_assert_eq((int)m, i);
        cr_assert_str_eq(nj_link_mode_name(m), names[i]);
    }
    cr_assert_eq(nj_link_mode_parse("symlink", &m, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg,
                     "invalid link mode 'symlink' (expected auto, reflink, hardlink or copy)");
}

Test(store, corrupted_object_is_refused_and_never_linked)
{
    nj_store *s = open_store();
    nj_test_write("f", "precious model weights");
    nj_hash h = put(s, "f");
    char *obj = nj_store_object_path(s, &h);
    nj_err err = {0};
    nj_link_mode modes[] = {NJ_LINK_HARDLINK, NJ_LINK_COPY, NJ_LINK_AUTO, NJ_LINK_REFLINK};
    for (int i = 0; i < 4; i++) {
        corrupt_object(s, &h);
        nj_test_write("out/f", "previous");
        int rc = restore(s, &h, "out/f", modes[i], &err);
        if (modes[i] == NJ_LINK_REFLINK && rc != NJ_ECORRUPT) {
            /* no reflinks on this filesystem (run with TMPDIR on xfs/btrfs) */
            cr_assert(strstr(err.msg, "cannot reflink"), "%s", err.msg);
            cr_assert_eq(nj_store_remove(s, &h, &err), 0);
            put(s, "f");
            continue;
        }
        cr_assert_eq(rc, NJ_ECORRUPT, "%s: %s", nj_link_mode_name(modes[i]), err.msg);
        char *quoted = nj_xasprintf("object '%s' is corrupt", obj);
        cr_assert(strstr(err.msg, quoted), "%s", err.msg);
        free(quoted);
        char *text = nj_test_read("out/f");
        cr_assert_str_eq(text, "previous", "dest must be untouched");
        free(text);
        cr_assert_eq(count_entries("out"), 1, "no temp file left");
        /* Moved aside, so a new put stores good bytes again. */
        cr_assert_not(nj_store_has(s, &h));
        nj_hash again = put(s, "f");
        cr_assert(nj_hash_equal(&again, &h));
        cr_assert_eq(restore(s, &h, "out/f", modes[i], &err), 0, "%s", err.msg);
        text = nj_test_read("out/f");
        cr_assert_str_eq(text, "precious model weights");
        free(text);
        cr_assert_eq(unlink("out/f"), 0);
    }

    corrupt_object(s, &h);
    cr_assert_eq(nj_store_verify(s, &h, &err), NJ_ECORRUPT);
    cr_assert(strstr(err.msg, obj), "%s", err.msg);
    cr_assert_eq(nj_store_verify(s, &h, &err), -ENOENT, "verify moved it to corrupt/");
    cr_assert(strstr(err.msg, obj), "%s", err.msg);
    cr_assert_gt(count_entries("st/corrupt"), 0);
    free(obj);
    nj_store_free(s);
}

Test(store, missing_object_and_remove)
{
    nj_store *s = open_store();
    nj_err err = {0};
    nj_hash h;
    nj_hash_buffer("never stored", 12, &h);
    cr_assert_eq(nj_store_verify(s, &h, &err), -ENOENT);
    cr_assert_eq(restore(s, &h, "out/x", NJ_LINK_AUTO, &err), -ENOENT);
    cr_assert_not(nj_fs_exists("out/x"));
    nj_test_write("f", "x");
    h = put(s, "f");
    cr_assert_eq(nj_store_remove(s, &h, &err), 0);
    cr_assert_not(nj_store_has(s, &h));
    cr_assert_eq(nj_store_remove(s, &h, &err), 0, "missing is fine");
    nj_store_free(s);
}

static void make_output_tree(void)
{
    nj_test_write("out/model/weights.bin", "weights v1");
    nj_test_write("out/model/config.json", "{\"layers\": 3}");
    nj_test_write("out/bin/run", "#!/bin/sh\n");
    cr_assert_eq(chmod("out/bin/run", 0755), 0);
    nj_test_write("out/dup1", "same");
    nj_test_write("out/dup2", "same");
    cr_assert_eq(symlink("model/weights.bin", "out/latest"), 0);
    cr_assert_eq(mkdir("out/logs", 0755), 0);
}

Test(store, tree_round_trips_with_each_mode)
{
    nj_store *s = open_store();
    make_output_tree();
    nj_err err = {0};
    nj_hash tree;
    cr_assert_eq(nj_store_put_tree(s, "out", &tree, &err), 0, "%s", err.msg);
    nj_hash want = hash_of("out");
    cr_assert(nj_hash_equal(&tree, &want), "tree object hash = nj_hash_path(dir)");
    /* 4 distinct files + link target + tree object */
    cr_assert_eq(count_objects(s), 6);
    cr_assert_eq(count_entries("st/tmp"), 0);

    nj_link_mode modes[] = {NJ_LINK_AUTO, NJ_LINK_HARDLINK, NJ_LINK_COPY};
    for (int i = 0; i < 3; i++) {
        nj_test_write("restored/stale.txt", "left from an older run");
        cr_assert_eq(nj_store_restore_tree(s, &tree, "restored", modes[i], &err), 0, "%s: %s",
                     nj_link_mode_name(modes[i]), err.msg);
        nj_hash got = hash_of("restored");
        cr_assert(nj_hash_equal(&got, &tree), "%s", nj_link_mode_name(modes[i]));
        cr_assert_not(nj_fs_exists("restored/stale.txt"), "old contents are replaced");
        assert_read_only("restored/model/weights.bin");
        struct stat st;
        cr_assert_eq(stat("restored/bin/run", &st), 0);
        cr_assert(st.st_mode & S_IXUSR);
        char target[64] = {0};
        cr_assert_gt(readlink("restored/latest", target, sizeof(target) - 1), 0);
        cr_assert_str_eq(target, "model/weights.bin");
        cr_assert(nj_fs_is_dir("restored/logs"));
        cr_assert_eq(count_entries("."), 3, "no temp directory left beside 'restored'");
    }

    /* Restoring into a path that does not exist yet. */
    cr_assert_eq(nj_store_restore_tree(s, &tree, "fresh/a/b", NJ_LINK_AUTO, &err), 0, "%s",
                 err.msg);
    nj_hash got = hash_of("fresh/a/b");
    cr_assert(nj_hash_equal(&got, &tree));

    /* A file object is not a tree. */
    nj_hash file = put(s, "out/dup1");
    cr_assert_eq(nj_store_restore_tree(s, &file, "bad", NJ_LINK_AUTO, &err), NJ_ECORRUPT);
    cr_assert_not(nj_fs_exists("bad"));
    nj_store_free(s);
}

Test(store, tree_restore_with_corrupt_file_leaves_dest_alone)
{
    nj_store *s = open_store();
    make_output_tree();
    nj_err err = {0};
    nj_hash tree, weights = hash_of("out/model/weights.bin");
    cr_assert_eq(nj_store_put_tree(s, "out", &tree, &err), 0, "%s", err.msg);
    nj_test_write("dest/keep.txt", "previous output");
    corrupt_object(s, &weights);
    cr_assert_eq(nj_store_restore_tree(s, &tree, "dest", NJ_LINK_HARDLINK, &err), NJ_ECORRUPT);
    char *text = nj_test_read("dest/keep.txt");
    cr_assert_str_eq(text, "previous output");
    free(text);
    cr_assert_eq(count_entries("."), 3, "only out, dest and st: no temp directory");
    nj_store_free(s);
}

/* Child of the concurrency test: puts shared files and its own, many times. */
static int child_puts(int id)
{
    nj_err err = {0};
    nj_store *s = NULL;
    if (nj_store_open("st", &s, &err) < 0) return 10;
    for (int round = 0; round < 20; round++) {
        for (int k = 0; k < 5; k++) {
            char path[64];
            snprintf(path, sizeof(path), "shared/%d", k);
            nj_hash h;
            if (nj_store_put_file(s, path, &h, NULL, &err) < 0) return 11;
            snprintf(path, sizeof(path), "own%d/%d", id, k);
            if (nj_store_put_file(s, path, &h, NULL, &err) < 0) return 12;
        }
        nj_hash tree;
        if (nj_store_put_tree(s, "shared", &tree, &err) < 0) return 13;
    }
    nj_store_free(s);
    return 0;
}

static int verify_visit(void *ctx, const nj_hash *hash, const char *path)
{
    nj_err err = {0};
    (void)path;
    return nj_store_verify(ctx, hash, &err);
}

Test(store, concurrent_processes_share_one_store)
{
    for (int k = 0; k < 5; k++) {
        char path[64], text[128];
        snprintf(path, sizeof(path), "shared/%d", k);
        size_t len = (size_t)snprintf(text, sizeof(text), "shared file %d", k);
        char *big = nj_xmalloc(200000 + len);
        memset(big, 'a' + k, 200000);
        memcpy(big + 200000, text, len);
        write_bytes(path, big, 200000 + len);
        free(big);
        for (int id = 0; id < 2; id++) {
            snprintf(path, sizeof(path), "own%d/%d", id, k);
            snprintf(text, sizeof(text), "private %d of process %d", k, id);
            nj_test_write(path, text);
        }
    }
    pid_t pids[2];
    for (int id = 0; id < 2; id++) {
        pids[id] = fork();
        cr_assert_geq(pids[id], 0);
        if (pids[id] == 0) _exit(child_puts(id));
    }
    for (int id = 0; id < 2; id++) {
        int status;
        cr_assert_eq(waitpid(pids[id], &status, 0), pids[id]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %d", id, status);
    }
    nj_store *s = open_store();
    /* 5 shared + 10 own + 1 tree of shared/ */
    cr_assert_eq(count_objects(s), 16);
    nj_err err = {0};
    cr_assert_eq(nj_store_foreach(s, verify_visit, s, &err), 0);
    cr_assert_eq(count_entries("st/tmp"), 0);
    nj_store_free(s);
}

Test(store, failed_put_leaves_no_temp_and_no_object)
{
    nj_store *s = open_store();
    nj_err err = {0};
    nj_hash h;
    cr_assert_eq(nj_store_put_file(s, "missing", &h, NULL, &err), -ENOENT);
    cr_assert(strstr(err.msg, "'missing'"), "%s", err.msg);
    cr_assert_eq(mkdir("adir", 0755), 0);
    cr_assert_lt(nj_store_put_file(s, "adir", &h, NULL, &err), 0);
    cr_assert_eq(mkfifo("fifo", 0600), 0);
    cr_assert_eq(nj_store_put_file(s, "fifo", &h, NULL, &err), -EINVAL, "refused, not waited on");
    cr_assert(strstr(err.msg, "'fifo'"), "%s", err.msg);
    if (geteuid() != 0) {
        nj_test_write("secret", "x");
        cr_assert_eq(chmod("secret", 0), 0);
        cr_assert_eq(nj_store_put_file(s, "secret", &h, NULL, &err), -EACCES);
    }

    /* A write that fails halfway (file size limit) in a child process. */
    size_t len = 1u << 20;
    char *data = nj_xcalloc(1, len);
    write_bytes("big", data, len);
    free(data);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = {65536, 65536};
        setrlimit(RLIMIT_FSIZE, &lim);
        nj_err e = {0};
        nj_hash x;
        int rc = nj_store_put_file(s, "big", &x, NULL, &e);
        _exit(rc == -EFBIG && strstr(e.msg, "cannot write") ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    cr_assert_eq(count_entries("st/tmp"), 0, "the temp file must be removed");
    cr_assert_eq(count_objects(s), 0);

    /* A tree with an unhashable entry stores no tree object. */
    nj_test_write("t/a", "a");
    cr_assert_eq(mkfifo("t/pipe", 0600), 0);
    cr_assert_lt(nj_store_put_tree(s, "t", &h, &err), 0);
    cr_assert(strstr(err.msg, "'t/pipe'"), "%s", err.msg);
    cr_assert_eq(count_objects(s), 0);
    cr_assert_eq(count_entries("st/tmp"), 0);
    nj_store_free(s);
}

Test(store, clean_temp_removes_only_stale_files)
{
    nj_store *s = open_store();
    nj_test_write("st/tmp/object.tmp.1.0", "crashed writer");
    nj_test_write("st/tmp/object.tmp.2.0", "live writer");
    struct timespec old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
    cr_assert_eq(utimensat(AT_FDCWD, "st/tmp/object.tmp.1.0", old, 0), 0);
    nj_err err = {0};
    size_t removed = 99;
    cr_assert_eq(nj_store_clean_temp(s, NJ_STORE_TEMP_MAX_AGE_MS, &removed, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(removed, 1);
    cr_assert_not(nj_fs_exists("st/tmp/object.tmp.1.0"));
    cr_assert(nj_fs_exists("st/tmp/object.tmp.2.0"));
    nj_store_free(s);
}

Test(store, read_returns_verified_bytes)
{
    nj_store *s = open_store();
    nj_err err = {0};
    nj_hash h;
    cr_assert_eq(nj_store_put_buffer(s, "metadata", 8, &h, &err), 0);
    char *data = NULL;
    size_t len = 0;
    cr_assert_eq(nj_store_read(s, &h, &data, &len, &err), 0, "%s", err.msg);
    cr_assert_eq(len, 8);
    cr_assert_str_eq(data, "metadata");
    free(data);
    corrupt_object(s, &h);
    cr_assert_eq(nj_store_read(s, &h, &data, &len, &err), NJ_ECORRUPT);
    nj_store_free(s);
}

Test(store, exec_bit_of_tree_entry_wins_over_object_mode)
{
    nj_store *s = open_store();
    nj_test_write("plain", "#!/bin/sh\nexit 0\n");
    nj_hash h = put(s, "plain"); /* object is 0444 */
    nj_test_write("t/tool", "#!/bin/sh\nexit 0\n");
    cr_assert_eq(chmod("t/tool", 0755), 0);
    nj_err err = {0};
    nj_hash tree;
    cr_assert_eq(nj_store_put_tree(s, "t", &tree, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_store_restore_tree(s, &tree, "r", NJ_LINK_HARDLINK, &err), 0, "%s", err.msg);
    struct stat st, o;
    cr_assert_eq(stat("r/tool", &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0555);
    char *obj = nj_store_object_path(s, &h);
    cr_assert_eq(stat(obj, &o), 0);
    cr_assert_eq(o.st_mode & 07777, 0444, "the shared object keeps its mode");
    cr_assert_neq(o.st_ino, st.st_ino, "a copy, since a link would have the wrong mode");
    free(obj);
    nj_store_free(s);
}

Test(store, put_repairs_a_truncated_object)
{
    nj_store *s = open_store();
    nj_test_write("f", "some longer content");
    nj_hash h = put(s, "f");
    char *obj = nj_store_object_path(s, &h);
    cr_assert_eq(chmod(obj, 0644), 0);
    cr_assert_eq(truncate(obj, 4), 0);
    nj_err err = {0};
    put(s, "f"); /* the size differs, so put replaces the object */
    cr_assert_eq(nj_store_verify(s, &h, &err), 0, "%s", err.msg);
    struct stat st;
    cr_assert_eq(stat(obj, &st), 0);
    cr_assert_eq(st.st_size, 19);
    cr_assert_eq(st.st_mode & 07777, 0444, "the new object is read-only again");
    free(obj);
    nj_store_free(s);
}

/* A stat cache that knows one file: lets put skip reading it. */
struct one_entry_cache {
    const char *path;
    nj_hash hash;
    int lookups;
};

static int one_lookup(void *ctx, const char *path, const nj_file_sig *sig, nj_hash *hash)
{
    struct one_entry_cache *c = ctx;
    (void)sig;
    c->lookups++;
    if (strcmp(path, c->path) != 0) return 0;
    *hash = c->hash;
    return 1;
}

Test(store, stat_cache_skips_reading_known_stored_files)
{
    nj_store *s = open_store();
    nj_err err = {0};
    struct one_entry_cache oc = {.path = "t/big"};
    cr_assert_eq(nj_store_put_buffer(s, "cached content", 14, &oc.hash, &err), 0);
    nj_test_write("t/big", "actual content");
    nj_test_write("t/small", "x");
    nj_hash_cache cache = {one_lookup, NULL, &oc};
    nj_store_set_cache(s, &cache);
    nj_hash h;
    /* The cache vouches for t/big (whose size matches the stored object). */
    cr_assert_eq(nj_store_put_file(s, "t/big", &h, NULL, &err), 0, "%s", err.msg);
    cr_assert(nj_hash_equal(&h, &oc.hash));
    nj_hash tree, real;
    cr_assert_eq(nj_store_put_tree(s, "t", &tree, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_hash_path("t", NULL, &real, &err), 0);
    cr_assert_not(nj_hash_equal(&tree, &real), "the cached hash was used for t/big");
    cr_assert_geq(oc.lookups, 3);
    nj_store_set_cache(s, NULL);
    cr_assert_eq(nj_store_put_tree(s, "t", &tree, &err), 0, "%s", err.msg);
    cr_assert(nj_hash_equal(&tree, &real));
    nj_store_free(s);
}
