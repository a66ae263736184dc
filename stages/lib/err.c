/* err.c - error formatting and checked allocation for the stage programs. */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int st_err_set(st_err *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int st_err_sys(st_err *err, int errnum, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        size_t len = strlen(err->msg);
        snprintf(err->msg + len, sizeof err->msg - len, ": %s", strerror(errnum));
    }
    return -1;
}

void st_die(const char *prog, int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static void *check(void *ptr, size_t size)
{
    if (!ptr && size) {
        fprintf(stderr, "out of memory allocating %zu bytes\n", size);
        abort();
    }
    return ptr;
}

void *st_xmalloc(size_t size)
{
    return check(malloc(size ? size : 1), size);
}

void *st_xcalloc(size_t n, size_t size)
{
    return check(calloc(n ? n : 1, size ? size : 1), n * size);
}

void *st_xrealloc(void *ptr, size_t size)
{
    return check(realloc(ptr, size ? size : 1), size);
}

char *st_xstrdup(const char *s)
{
    return check(strdup(s), strlen(s) + 1);
}

void st_grow(void **items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    *items = st_xrealloc(*items, n * size);
    *cap = n;
}
