/* pathset.h - a sorted set of paths answering "which entries overlap this
 * path?" in O(log n): entries equal to it, directories that contain it, and
 * paths inside it. Used to find which stage writes what another reads, and
 * two stages writing overlapping outputs, without comparing every pair.
 *
 *     nj_pathset set = {0};
 *     nj_pathset_add(&set, "data/raw", 0, 0);       // stage 0's output 0
 *     nj_pathset_sort(&set);
 *     nj_pathset_overlaps(&set, "data/raw/x.csv", fn, ctx);  // calls fn for it
 *     nj_pathset_release(&set);
 *
 * Paths are lexically normalised (nj_path_normalize) and borrowed: they must
 * outlive the set. "." overlaps every relative path. */
#ifndef NJ_PATHSET_H
#define NJ_PATHSET_H

#include <stddef.h>

typedef struct nj_pathset_entry {
    const char *path;
    size_t owner, sub; /* caller's labels, e.g. stage and output index */
} nj_pathset_entry;

typedef struct nj_pathset {
    nj_pathset_entry *items;
    size_t len, cap;
} nj_pathset;

void nj_pathset_add(nj_pathset *set, const char *path, size_t owner, size_t sub);
/* Sorts by path, then owner, then sub. Call once after the last add. */
void nj_pathset_sort(nj_pathset *set);
/* Calls fn for each overlapping entry, in sorted order. */
void nj_pathset_overlaps(const nj_pathset *set, const char *path,
                         void (*fn)(void *ctx, const nj_pathset_entry *e), void *ctx);
void nj_pathset_release(nj_pathset *set);

#endif
