/* util.c - allocation, buffers, string lists, durations, dates, clocks. */
#include "nightjar/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Noreturn void out_of_memory(size_t size)
{
    fprintf(stderr, "nightjar: error: out of memory allocating %zu bytes\n", size);
    exit(4);
}

void *nj_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) out_of_memory(size);
    return p;
}

void *nj_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) out_of_memory(n * size);
    return p;
}

void *nj_xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p) out_of_memory(size);
    return p;
}

char *nj_xstrdup(const char *s)
{
    return s ? nj_xstrndup(s, strlen(s)) : NULL;
}

char *nj_xstrndup(const char *s, size_t n)
{
    char *p = nj_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *nj_xvasprintf(const char *fmt, va_list ap)
{
    /* Most results are short: format once into the stack, and only a longer
     * one a second time into the heap. */
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    if ((size_t)n < sizeof(small)) return nj_xstrndup(small, (size_t)n);
    char *p = nj_xmalloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *nj_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = nj_xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

void nj_grow(void *items_ptr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return;
    size_t n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    void **items = items_ptr;
    *items = nj_xrealloc(*items, n * size);
    *cap = n;
}

void nj_buf_init(nj_buf *b)
{
    b->cap = 64;
    b->len = 0;
    b->data = nj_xmalloc(b->cap);
    b->data[0] = '\0';
}

void nj_buf_release(nj_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void nj_buf_reset(nj_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

static void buf_reserve(nj_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t n = b->cap ? b->cap : 64;
    while (n < b->len + extra + 1)
        n *= 2;
    b->data = nj_xrealloc(b->data, n);
    b->cap = n;
}

void nj_buf_add(nj_buf *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void nj_buf_puts(nj_buf *b, const char *s)
{
    nj_buf_add(b, s, strlen(s));
}

void nj_buf_putc(nj_buf *b, char c)
{
    buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void nj_buf_printf(nj_buf *b, const char *fmt, ...)
{
    /* Format straight into the free space; only when it does not fit, grow
     * and format again. */
    buf_reserve(b, 0);
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->data + b->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= room) {
        buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    b->len += (size_t)n;
    b->data[b->len] = '\0';
}

char *nj_buf_detach(nj_buf *b)
{
    char *s = b->data ? b->data : nj_xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

void nj_strs_push(nj_strs *l, const char *s)
{
    NJ_PUSH(l->items, l->len, l->cap, nj_xstrdup(s));
}

int nj_strs_contains(const nj_strs *l, const char *s)
{
    for (size_t i = 0; i < l->len; i++)
        if (strcmp(l->items[i], s) == 0) return 1;
    return 0;
}

void nj_strs_release(nj_strs *l)
{
    for (size_t i = 0; i < l->len; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->len = l->cap = 0;
}

int nj_str_starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int nj_str_ends(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

size_t nj_edit_distance(const char *a, const char *b)
{
    /* Optimal string alignment: Levenshtein plus adjacent transpositions, so
     * the typo "rnu" is one edit away from "run". Three rolling rows. */
    size_t n = strlen(a), m = strlen(b);
    size_t *prev2 = nj_xmalloc((m + 1) * sizeof(size_t));
    size_t *prev = nj_xmalloc((m + 1) * sizeof(size_t));
    size_t *row = nj_xmalloc((m + 1) * sizeof(size_t));
    for (size_t j = 0; j <= m; j++)
        prev[j] = j;
    for (size_t i = 1; i <= n; i++) {
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < best) best = prev[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            row[j] = best;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = row;
        row = t;
    }
    size_t d = prev[m];
    free(prev2);
    free(prev);
    free(row);
    return d;
}

int nj_duration_parse(const char *text, int64_t *ms, nj_err *err)
{
    const char *p = text;
    char *end;
    if (!isdigit((unsigned char)*p)) goto bad;
    errno = 0;
    double value = strtod(p, &end);
    if (errno || end == p || value < 0) goto bad;
    double unit;
    if (*end == '\0' || strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "m") == 0)
        unit = 60e3;
    else if (strcmp(end, "h") == 0)
        unit = 3600e3;
    else if (strcmp(end, "d") == 0)
        unit = 86400e3;
    else
        goto bad;
    double total = value * unit;
    if (total > 9e15) goto bad;
    *ms = (int64_t)(total + 0.5);
    return 0;
bad:
    return nj_err_set(err, NJ_EFORMAT,
                      "invalid duration '%s' (expected a number with ms, s, m, h or d, e.g. '90s')",
                      text);
}

void nj_duration_format(int64_t ms, char *out, size_t size)
{
    if (ms < 1000)
        snprintf(out, size, "%lldms", (long long)ms);
    else if (ms < 60000)
        snprintf(out, size, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(out, size, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else
        snprintf(out, size, "%lldh%02lldm", (long long)(ms / 3600000),
                 (long long)(ms / 60000 % 60));
}

/* Howard Hinnant's days_from_civil / civil_from_days. */
static int32_t days_from_civil(int y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int32_t)doe - 719468;
}

static void civil_from_days(int32_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)yoe + era * 400 + (*m <= 2);
}

int nj_date_parse(const char *text, int32_t *days, nj_err *err)
{
    int y;
    unsigned m, d;
    char extra;
    if (strlen(text) != 10 || text[4] != '-' || text[7] != '-' ||
        sscanf(text, "%4d-%2u-%2u%c", &y, &m, &d, &extra) != 3)
        goto bad;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)text[i])) goto bad;
    if (m < 1 || m > 12 || d < 1 || d > 31) goto bad;
    int32_t z = days_from_civil(y, m, d);
    int y2;
    unsigned m2, d2;
    civil_from_days(z, &y2, &m2, &d2);
    if (y2 != y || m2 != m || d2 != d) goto bad; /* e.g. 2001-02-30 */
    *days = z;
    return 0;
bad:
    return nj_err_set(err, NJ_EFORMAT, "invalid date '%s' (expected YYYY-MM-DD)", text);
}

void nj_date_format(int32_t days, char out[11])
{
    int y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(out, 11, "%04u-%02u-%02u", (unsigned)y % 10000u, m % 100u, d % 100u);
}

int32_t nj_date_today_local(void)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    return days_from_civil(tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday);
}

int64_t nj_time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t nj_time_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nj_time_format(int64_t epoch_ms, char *out, size_t size)
{
    time_t secs = (time_t)(epoch_ms / 1000);
    struct tm tm;
    localtime_r(&secs, &tm);
    strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm);
}
