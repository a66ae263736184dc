/* err.h - the one error type of nightjar: a code and a message with context.
 *
 * Every fallible function takes an `nj_err *err` last and returns 0 on
 * success or a negative code: -errno for system errors, or one of the NJ_E*
 * codes below. On failure err->msg holds a lowercase message that names what
 * failed first and the subject in quotes, e.g.
 *     cannot rename 'a.tmp' to 'a': No space left on device
 * `err` may be NULL when the caller only wants the code.
 *
 *     nj_err err = {0};
 *     if (nj_fs_write_atomic(path, buf, len, &err) < 0)
 *         fprintf(stderr, "nightjar: error: %s\n", err.msg);
 */
#ifndef NJ_ERR_H
#define NJ_ERR_H

#include <stddef.h>

/* name, value, description. Values stay clear of -errno (errno < 1000). */
#define NJ_ERR_MAP(X)                                                                              \
    X(EPIPELINE, -1001, "invalid pipeline")                                                        \
    X(ECYCLE, -1002, "dependency cycle")                                                           \
    X(ELOCKED, -1003, "workspace locked by another run")                                           \
    X(ESTAGE, -1004, "stage failed")                                                               \
    X(EUSAGE, -1005, "usage error")                                                                \
    X(EDB, -1006, "database error")                                                                \
    X(EARCHIVE, -1007, "archive error")                                                            \
    X(ECORRUPT, -1008, "corrupted data")                                                           \
    X(EINTERRUPTED, -1009, "interrupted")                                                          \
    X(ENOTFOUND, -1010, "not found")                                                               \
    X(EFORMAT, -1011, "malformed input")                                                           \
    X(EHELD, -1012, "held by gate")

enum {
#define NJ_ERR_ENUM(name, value, desc) NJ_##name = value,
    NJ_ERR_MAP(NJ_ERR_ENUM)
#undef NJ_ERR_ENUM
};

typedef struct nj_err {
    int code; /* 0, -errno, or NJ_E* */
    char msg[1024];
} nj_err;

#define NJ_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* Sets err (if not NULL) and returns `code`. */
int nj_err_set(nj_err *err, int code, const char *fmt, ...) NJ_PRINTF(3, 4);

/* Like nj_err_set() with code -errnum; appends ": <strerror(errnum)>". */
int nj_err_sys(nj_err *err, int errnum, const char *fmt, ...) NJ_PRINTF(3, 4);

/* Prepends "<prefix>: " to err->msg, keeping the code; returns err->code. */
int nj_err_prefix(nj_err *err, const char *fmt, ...) NJ_PRINTF(2, 3);

/* "EPIPELINE", "ENOENT", ... for logs and tests; never NULL. */
const char *nj_err_name(int code);

/* Aborts with "internal error, please report". For broken invariants only. */
_Noreturn void nj_bug(const char *file, int line, const char *fmt, ...) NJ_PRINTF(3, 4);
#define NJ_BUG(...) nj_bug(__FILE__, __LINE__, __VA_ARGS__)

#endif
