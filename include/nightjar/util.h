/* util.h - small shared helpers: allocation that never returns NULL, a
 * growable byte buffer, string lists, durations, calendar dates and clocks.
 *
 *     nj_buf b;
 *     nj_buf_init(&b);
 *     nj_buf_printf(&b, "%s=%d", "retries", 2);
 *     char *s = nj_buf_detach(&b);   // caller frees s
 */
#ifndef NJ_UTIL_H
#define NJ_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "nightjar/err.h"

/* Allocation: on out-of-memory these print a message and exit(4). */
void *nj_xmalloc(size_t size);
void *nj_xcalloc(size_t n, size_t size);
void *nj_xrealloc(void *ptr, size_t size);
char *nj_xstrdup(const char *s);                 /* NULL gives NULL */
char *nj_xstrndup(const char *s, size_t n);
char *nj_xasprintf(const char *fmt, ...) NJ_PRINTF(1, 2); /* caller frees */
char *nj_xvasprintf(const char *fmt, va_list ap) NJ_PRINTF(1, 0); /* caller frees; uses up ap */

/* Grows *items (of *cap elements of `size` bytes) to hold at least `need`. */
void nj_grow(void *items_ptr, size_t *cap, size_t need, size_t size);
#define NJ_PUSH(items, len, cap, value)                                                            \
    do {                                                                                           \
        nj_grow(&(items), &(cap), (len) + 1, sizeof(*(items)));                                    \
        (items)[(len)++] = (value);                                                                \
    } while (0)

/* A growable byte buffer, always NUL-terminated after init. */
typedef struct nj_buf {
    char *data;
    size_t len, cap;
} nj_buf;
void nj_buf_init(nj_buf *b);
void nj_buf_release(nj_buf *b);
void nj_buf_reset(nj_buf *b);                    /* len = 0, keeps memory */
void nj_buf_add(nj_buf *b, const void *data, size_t len);
void nj_buf_puts(nj_buf *b, const char *s);
void nj_buf_putc(nj_buf *b, char c);
void nj_buf_printf(nj_buf *b, const char *fmt, ...) NJ_PRINTF(2, 3);
/* Returns the contents (caller frees) and leaves b empty, owning no memory:
 * it may be appended to again, or released. */
char *nj_buf_detach(nj_buf *b);

/* A list of owned strings. */
typedef struct nj_strs {
    char **items;
    size_t len, cap;
} nj_strs;
void nj_strs_push(nj_strs *l, const char *s);   /* copies s */
int nj_strs_contains(const nj_strs *l, const char *s);
void nj_strs_release(nj_strs *l);

int nj_str_starts(const char *s, const char *prefix);
int nj_str_ends(const char *s, const char *suffix);

/* Levenshtein distance, for "did you mean" suggestions. */
size_t nj_edit_distance(const char *a, const char *b);

/* Parses "250ms", "90s", "5m", "2h", "1d" (a bare number means seconds)
 * into milliseconds. Returns 0, or NJ_EFORMAT. */
int nj_duration_parse(const char *text, int64_t *ms, nj_err *err);
/* Formats a duration for people: "850ms", "12.3s", "4m05s", "2h10m". */
void nj_duration_format(int64_t ms, char *out, size_t size);

/* Calendar dates as days since 1970-01-01 (proleptic Gregorian). */
int nj_date_parse(const char *text, int32_t *days, nj_err *err); /* "YYYY-MM-DD" only */
void nj_date_format(int32_t days, char out[11]);                 /* "YYYY-MM-DD" */
int32_t nj_date_today_local(void);

/* Clocks in milliseconds: wall time since the epoch, and a monotonic one. */
int64_t nj_time_now_ms(void);
int64_t nj_time_mono_ms(void);
/* "2026-11-23T16:04:05Z" style local time with offset, for people and logs. */
void nj_time_format(int64_t epoch_ms, char *out, size_t size);

#endif
