/* logreg.h - L2-regularised logistic regression fitted by Newton's method.
 *
 * Minimises   sum_i logloss(y_i, sigmoid(b + w.z_i)) + (l2 / 2) * |w|^2
 * where z is x standardised with the training mean and standard deviation
 * (the intercept b is not penalised). That is scikit-learn's
 * LogisticRegression(C = 1 / l2) on the standardised matrix, which is what
 * scripts/bench-model compares against. Newton's method with a Cholesky solve
 * converges in a handful of passes over the data for the ~20 features the
 * stages use, and it has no random start and no thread-dependent sums, so
 * the same input gives bit-identical coefficients (the data pass runs on
 * all cores but sums its fixed chunks in a fixed order).
 *
 * The fitted model is stored on the raw feature scale, so scoring is one
 * dot product: p = sigmoid(intercept + sum_j coef[j] * x[j]).
 */
#ifndef ST_LOGREG_H
#define ST_LOGREG_H

#include <stddef.h>

#include "err.h"

typedef struct st_logreg {
    int p;            /* number of features */
    double intercept; /* raw scale */
    double *coef;     /* [p], raw scale */
    double *mean;     /* [p], training mean of each feature */
    double *scale;    /* [p], training standard deviation (1 if constant) */
    int iterations;   /* Newton steps taken */
    double objective; /* final penalised negative log-likelihood */
} st_logreg;

/* Fits the model to n rows of x (row-major, n x p) and labels y (0 or 1).
 * Returns 0 or -1 ("no rows", "labels are all 0", "did not converge",
 * "hessian is not positive definite"). On success the caller releases
 * *model with st_logreg_release(). */
int st_logreg_fit(const double *x, const double *y, size_t n, int p, double l2, st_logreg *model,
                  st_err *err);

/* st_logreg_fit() on exactly `threads` threads (>= 1) however small n is;
 * the result is the same bits for every thread count, which the tests check
 * through this. st_logreg_fit() uses one thread per online CPU (at most 8)
 * and just one below 10000 rows. */
int st_logreg_fit_threads(const double *x, const double *y, size_t n, int p, double l2,
                          int threads, st_logreg *model, st_err *err);

/* Probability of the positive class for one row of p raw features. */
double st_logreg_predict(const st_logreg *model, const double *row);

/* Numerically safe 1 / (1 + exp(-z)). */
double st_sigmoid(double z);

/* Allocates coef, mean and scale for p features, zeroed. */
void st_logreg_init(st_logreg *model, int p);
void st_logreg_release(st_logreg *model);

#endif
