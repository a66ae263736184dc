/* drift.c - see drift.h. Both statistics sort copies of their inputs. */
#include "drift.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double *sorted_copy(const double *v, size_t n)
{
    double *s = st_xmalloc(n * sizeof *s);
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, by_value);
    return s;
}

/* Number of elements of sorted s[0..n) that are <= x. */
static size_t count_le(const double *s, size_t n, double x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

double st_psi(const double *ref, size_t nref, const double *cur, size_t ncur, int bins)
{
    if (nref == 0 || ncur == 0 || bins < 2) return 0;
    double *r = sorted_copy(ref, nref), *c = sorted_copy(cur, ncur);
    /* Upper edges: bin b holds (edge[b-1], edge[b]]; the last is +inf. */
    double *edge = st_xmalloc((size_t)bins * sizeof *edge);
    int nedge = 0;
    for (int b = 1; b < bins; b++) {
        /* The b/bins quantile: the smallest value with at least that share <= it. */
        double e = r[((size_t)b * nref + (size_t)bins - 1) / (size_t)bins - 1];
        if (nedge == 0 || e > edge[nedge - 1]) edge[nedge++] = e;
    }
    edge[nedge++] = INFINITY;
    double psi = 0;
    size_t prev_r = 0, prev_c = 0;
    for (int b = 0; b < nedge; b++) {
        size_t at_r = count_le(r, nref, edge[b]), at_c = count_le(c, ncur, edge[b]);
        double pr = fmax((double)(at_r - prev_r) / (double)nref, 1e-4);
        double pc = fmax((double)(at_c - prev_c) / (double)ncur, 1e-4);
        psi += (pc - pr) * log(pc / pr);
        prev_r = at_r, prev_c = at_c;
    }
    free(edge);
    free(r);
    free(c);
    return psi;
}

double st_ks(const double *ref, size_t nref, const double *cur, size_t ncur)
{
    if (nref == 0 || ncur == 0) return 0;
    double *r = sorted_copy(ref, nref), *c = sorted_copy(cur, ncur);
    size_t i = 0, j = 0;
    double d = 0;
    /* Walk the merged sample; compare the CDFs after each distinct value. */
    while (i < nref && j < ncur) {
        double x = r[i] <= c[j] ? r[i] : c[j];
        while (i < nref && r[i] == x)
            i++;
        while (j < ncur && c[j] == x)
            j++;
        d = fmax(d, fabs((double)i / (double)nref - (double)j / (double)ncur));
    }
    free(r);
    free(c);
    return d;
}
