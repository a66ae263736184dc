/* err.h - errors and small allocation helpers shared by the stage programs.
 *
 * The stage programs are standalone binaries that link only libc and libm,
 * not the runner's library, so they carry their own tiny error type with the
 * prefix st_ (stage) to keep their names apart from the runner's nj_ ones.
 * A fallible function returns 0 (or a count) on success and -1 on failure
 * with err->msg set to a lowercase message that names the file and line
 * first when there is one:
 *     landing/x.csv:17: delay 'abc' is not an integer
 * The program's main prints it as "nj-ingest: <msg>" and exits with
 * ST_EXIT_DATA; usage errors exit with ST_EXIT_USAGE.
 */
#ifndef ST_ERR_H
#define ST_ERR_H

#include <stddef.h>

#define ST_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* Exit codes of every stage program. */
enum { ST_EXIT_OK = 0, ST_EXIT_DATA = 1, ST_EXIT_USAGE = 2 };

typedef struct st_err {
    char msg[1024];
} st_err;

/* Formats err->msg (err may be NULL) and returns -1. */
int st_err_set(st_err *err, const char *fmt, ...) ST_PRINTF(2, 3);
/* Like st_err_set() and appends ": <strerror(errnum)>". */
int st_err_sys(st_err *err, int errnum, const char *fmt, ...) ST_PRINTF(3, 4);

/* Prints "<prog>: <msg>" to stderr and exits with `code`. */
_Noreturn void st_die(const char *prog, int code, const char *fmt, ...) ST_PRINTF(3, 4);

/* Allocation that aborts with a message on exhaustion: the stages are batch
 * programs where running out of memory has no sensible recovery. */
void *st_xmalloc(size_t size);
void *st_xcalloc(size_t n, size_t size);
void *st_xrealloc(void *ptr, size_t size);
char *st_xstrdup(const char *s);

/* Grows *items (of `size` bytes each) so that it holds at least `need`;
 * *cap is the current capacity in items. */
void st_grow(void **items, size_t *cap, size_t need, size_t size);

#endif
