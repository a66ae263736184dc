/* drift.h - how far a feature's distribution today is from the training
 * window's: population stability index and the two-sample
 * Kolmogorov-Smirnov statistic.
 *
 * Rule of thumb for PSI: < 0.1 stable, 0.1-0.2 moderate, > 0.2 a shift worth
 * a look (nj-evaluate --psi-warn defaults to 0.2). */
#ifndef ST_DRIFT_H
#define ST_DRIFT_H

#include <stddef.h>

/* PSI = sum_b (cur_b - ref_b) * ln(cur_b / ref_b) over `bins` bins cut at
 * the reference's quantiles. Quantile edges that coincide are merged, so a
 * 0/1 feature gets 2 bins, not 10. Shares are floored at 1e-4 so an empty
 * bin costs a finite amount. 0 when either sample is empty. */
double st_psi(const double *ref, size_t nref, const double *cur, size_t ncur, int bins);

/* KS = max_x |F_ref(x) - F_cur(x)| over the empirical CDFs; 0..1. 0 when
 * either sample is empty. */
double st_ks(const double *ref, size_t nref, const double *cur, size_t ncur);

#endif
