/* support.c - temp directories and fixture paths for unit tests. */
#include "support.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/util.h"

static char tmpdir[PATH_MAX];
static char olddir[PATH_MAX];

void nj_test_enter_tmpdir(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof(tmpdir), "%s/nj-test-XXXXXX", base);
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp failed");
    cr_assert_not_null(getcwd(olddir, sizeof(olddir)));
    cr_assert_eq(chdir(tmpdir), 0);
}

void nj_test_leave_tmpdir(void)
{
    if (olddir[0] && chdir(olddir) != 0) return;
    if (tmpdir[0]) nj_fs_remove_tree(tmpdir, NULL);
}

const char *nj_test_fixture(const char *rel)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/fixtures/%s", NJ_SOURCE_DIR, rel);
    return path;
}

void nj_test_write(const char *path, const char *text)
{
    nj_err err = {0};
    cr_assert_eq(nj_fs_mkdirs_parent(path, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_fs_write_atomic(path, text, strlen(text), &err), 0, "%s", err.msg);
}

char *nj_test_read(const char *path)
{
    nj_err err = {0};
    char *data = NULL;
    cr_assert_eq(nj_fs_read_file(path, &data, NULL, &err), 0, "%s", err.msg);
    return data;
}
