/* metrics.h - quality of probability forecasts against 0/1 outcomes. */
#ifndef ST_METRICS_H
#define ST_METRICS_H

#include <stddef.h>

#define ST_CALIBRATION_BINS 10

/* Area under the ROC curve: the probability that a random positive scores
 * above a random negative, ties counting one half (Mann-Whitney U with
 * average ranks). NaN when y holds only one class. O(n log n). */
double st_auc(const double *score, const double *y, size_t n);

/* Mean negative log-likelihood, p clipped to [1e-15, 1 - 1e-15] as
 * scikit-learn does. NaN for n = 0. */
double st_log_loss(const double *p, const double *y, size_t n);

/* Mean squared error of p against y. NaN for n = 0. */
double st_brier(const double *p, const double *y, size_t n);

/* One bin of a reliability table: forecasts in [lo, hi) (the last bin
 * includes 1), how many, their mean, and the observed positive rate
 * (mean_pred and observed are NaN when n = 0). */
typedef struct st_calibration_bin {
    double lo, hi;
    size_t n;
    double mean_pred;
    double observed;
} st_calibration_bin;

/* Fills ST_CALIBRATION_BINS equal-width bins over [0, 1]. */
void st_calibration(const double *p, const double *y, size_t n,
                    st_calibration_bin bins[ST_CALIBRATION_BINS]);

#endif
