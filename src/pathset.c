/* pathset.c - overlap queries on a sorted array of paths.
 *
 * All paths with a given prefix form one contiguous run of a sorted array,
 * so "inside P" is the run starting at the first path >= "P/", and "contains
 * P" is an exact lookup of each of P's parent directories. */
#include "nightjar/pathset.h"

#include <stdlib.h>
#include <string.h>

#include "nightjar/util.h"

void nj_pathset_add(nj_pathset *set, const char *path, size_t owner, size_t sub)
{
    nj_pathset_entry e = {path, owner, sub};
    NJ_PUSH(set->items, set->len, set->cap, e);
}

static int entry_cmp(const void *a, const void *b)
{
    const nj_pathset_entry *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    if (c) return c;
    if (x->owner != y->owner) return x->owner < y->owner ? -1 : 1;
    return x->sub < y->sub ? -1 : x->sub > y->sub;
}

void nj_pathset_sort(nj_pathset *set)
{
    if (set->len) qsort(set->items, set->len, sizeof(*set->items), entry_cmp);
}

/* Index of the first entry whose path is >= key (first `len` bytes of key). */
static size_t lower_bound(const nj_pathset *set, const char *key, size_t len)
{
    size_t lo = 0, hi = set->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *p = set->items[mid].path;
        if (strncmp(p, key, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Calls fn for every entry equal to the first `len` bytes of path. */
static void exact(const nj_pathset *set, const char *path, size_t len,
                  void (*fn)(void *, const nj_pathset_entry *), void *ctx)
{
    for (size_t i = lower_bound(set, path, len); i < set->len; i++) {
        const char *p = set->items[i].path;
        if (strncmp(p, path, len) != 0 || p[len] != '\0') break;
        fn(ctx, &set->items[i]);
    }
}

void nj_pathset_overlaps(const nj_pathset *set, const char *path,
                         void (*fn)(void *ctx, const nj_pathset_entry *e), void *ctx)
{
    if (strcmp(path, ".") == 0) {
        for (size_t i = 0; i < set->len; i++)
            if (set->items[i].path[0] != '/') fn(ctx, &set->items[i]);
        return;
    }
    /* Parent directories of path, then path itself. */
    for (const char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/'))
        exact(set, path, (size_t)(s - path), fn, ctx);
    if (path[0] != '/') exact(set, ".", 1, fn, ctx);
    size_t n = strlen(path);
    exact(set, path, n, fn, ctx);
    /* Everything inside path: the run of entries starting with "path/". */
    char *prefix = nj_xasprintf("%s/", path);
    for (size_t i = lower_bound(set, prefix, n + 1); i < set->len; i++) {
        if (strncmp(set->items[i].path, prefix, n + 1) != 0) break;
        fn(ctx, &set->items[i]);
    }
    free(prefix);
}

void nj_pathset_release(nj_pathset *set)
{
    free(set->items);
    memset(set, 0, sizeof(*set));
}
