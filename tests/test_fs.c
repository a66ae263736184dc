/* test_fs.c - durable writes, trees and lexical paths. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/fs.h"
#include "nightjar/util.h"
#include "support.h"

TestSuite(fs, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 10);

static void assert_norm(const char *in, const char *want)
{
    char *got = nj_path_normalize(in);
    cr_assert_str_eq(got, want, "normalize('%s')", in);
    free(got);
}

Test(fs, normalizes_paths_lexically)
{
    assert_norm("a/b/../c", "a/c");
    assert_norm("./a//b/", "a/b");
    assert_norm("../x", "../x");
    assert_norm("a/../../x", "../x");
    assert_norm("/a/../../b", "/b");
    assert_norm("", ".");
    assert_norm("a/..", ".");
    assert_norm("../../a/./b/..", "../../a");
}

Test(fs, detects_escaping_and_containment)
{
    cr_assert(nj_path_escapes(".."));
    cr_assert(nj_path_escapes("../x"));
    cr_assert_not(nj_path_escapes("..x/y"));
    cr_assert(nj_path_within("data/raw/x.csv", "data/raw"));
    cr_assert(nj_path_within("data/raw", "data/raw"));
    cr_assert_not(nj_path_within("data/rawer", "data/raw"));
}

Test(fs, atomic_write_replaces_whole_file_and_leaves_no_temp)
{
    nj_err err = {0};
    cr_assert_eq(nj_fs_write_atomic("f.txt", "old", 3, &err), 0);
    cr_assert_eq(nj_fs_write_atomic("f.txt", "new content", 11, &err), 0);
    char *s = nj_test_read("f.txt");
    cr_assert_str_eq(s, "new content");
    free(s);
    DIR *d = opendir(".");
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') entries++;
    closedir(d);
    cr_assert_eq(entries, 1, "a temp file was left behind");
}

Test(fs, atomic_write_failure_keeps_old_file_and_names_path)
{
    nj_err err = {0};
    cr_assert_eq(nj_fs_write_atomic("f.txt", "old", 3, &err), 0);
    cr_assert_lt(nj_fs_write_atomic("missing/dir/f.txt", "x", 1, &err), 0);
    cr_assert(strstr(err.msg, "missing/dir/f.txt") != NULL, "%s", err.msg);
    char *s = nj_test_read("f.txt");
    cr_assert_str_eq(s, "old");
    free(s);
}

Test(fs, mkdirs_and_remove_tree)
{
    nj_err err = {0};
    cr_assert_eq(nj_fs_mkdirs("a/b/c", &err), 0);
    nj_test_write("a/b/c/f", "x");
    nj_test_write("a/g", "y");
    cr_assert(nj_fs_is_dir("a/b/c"));
    cr_assert_eq(nj_fs_remove_tree("a", &err), 0);
    cr_assert_not(nj_fs_exists("a"));
    cr_assert_eq(nj_fs_remove_tree("a", &err), 0, "missing is fine");
}
