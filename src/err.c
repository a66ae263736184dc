/* err.c - filling nj_err and naming codes. */
#include "nightjar/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int vset(nj_err *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    }
    return code;
}

int nj_err_set(nj_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int nj_err_sys(nj_err *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, -errnum, fmt, ap);
    va_end(ap);
    if (err) {
        size_t used = strlen(err->msg);
        snprintf(err->msg + used, sizeof(err->msg) - used, ": %s", strerror(errnum));
    }
    return -errnum;
}

int nj_err_prefix(nj_err *err, const char *fmt, ...)
{
    if (!err) return 0;
    char joined[2 * sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(joined, sizeof(joined) / 2, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(joined) / 2) n = (int)(sizeof(joined) / 2 - 1);
    snprintf(joined + n, sizeof(joined) - (size_t)n, ": %s", err->msg);
    memcpy(err->msg, joined, sizeof(err->msg) - 1);
    err->msg[sizeof(err->msg) - 1] = '\0';
    return err->code;
}

const char *nj_err_name(int code)
{
    switch (code) {
    case 0:
        return "OK";
#define NJ_ERR_CASE(name, value, desc)                                                             \
    case value:                                                                                    \
        return #name;
        NJ_ERR_MAP(NJ_ERR_CASE)
#undef NJ_ERR_CASE
    case -ENOENT:
        return "ENOENT";
    case -EACCES:
        return "EACCES";
    case -ENOSPC:
        return "ENOSPC";
    case -EEXIST:
        return "EEXIST";
    case -EIO:
        return "EIO";
    default:
        return code < 0 && code > -1000 ? "ESYSTEM" : "EUNKNOWN";
    }
}

void nj_bug(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "nightjar: internal error, please report: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
