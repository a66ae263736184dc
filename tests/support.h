/* support.h - shared helpers for the Criterion unit tests.
 *
 *     TestSuite(dag, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir);
 *
 * Each test then runs in a fresh empty directory (removed afterwards), and
 * nj_test_fixture("pipelines/bad/cycle.yaml") gives the absolute path of a
 * file under the repository's fixtures/. */
#ifndef NJ_TEST_SUPPORT_H
#define NJ_TEST_SUPPORT_H

#include <stddef.h>

void nj_test_enter_tmpdir(void);
void nj_test_leave_tmpdir(void);
/* Absolute path of fixtures/<rel> in the source tree; static buffer. */
const char *nj_test_fixture(const char *rel);
/* Writes `text` to `path` (relative to the current directory), creating
 * parent directories; aborts the test on failure. */
void nj_test_write(const char *path, const char *text);
/* Reads a whole file; caller frees. Aborts the test on failure. */
char *nj_test_read(const char *path);

#endif
