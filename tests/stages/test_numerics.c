/* test_numerics.c - AUC, log loss, Brier, calibration, PSI/KS and the
 * logistic regression fit, against values worked out by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "lib/drift.h"
#include "lib/logreg.h"
#include "lib/metrics.h"

TestSuite(metrics, .timeout = 10);

Test(metrics, auc_counts_pairs_and_half_ties)
{
    /* Positives score 0.8, 0.4; negatives 0.6, 0.4, 0.2. Pairs (pos > neg):
     * 0.8 beats all 3; 0.4 beats 0.2, ties 0.4 (1/2), loses to 0.6.
     * AUC = (3 + 1 + 0.5) / (2 * 3) = 0.75. */
    double s[] = {0.8, 0.6, 0.4, 0.4, 0.2};
    double y[] = {1, 0, 1, 0, 0};
    cr_assert_float_eq(st_auc(s, y, 5), 0.75, 1e-12);
}

Test(metrics, auc_of_perfect_reversed_and_constant_scores)
{
    double y[] = {0, 0, 1, 1};
    double up[] = {0.1, 0.2, 0.3, 0.4}, down[] = {0.4, 0.3, 0.2, 0.1}, flat[] = {1, 1, 1, 1};
    cr_assert_float_eq(st_auc(up, y, 4), 1.0, 1e-12);
    cr_assert_float_eq(st_auc(down, y, 4), 0.0, 1e-12);
    cr_assert_float_eq(st_auc(flat, y, 4), 0.5, 1e-12);
    double one_class[] = {1, 1, 1, 1};
    cr_assert(isnan(st_auc(up, one_class, 4)));
}

Test(metrics, log_loss_and_brier_by_hand)
{
    /* -(ln 0.8 + ln 0.6) / 2 = 0.3669845...; Brier ((0.2)^2 + (0.4)^2) / 2 = 0.1 */
    double p[] = {0.8, 0.4};
    double y[] = {1, 0};
    cr_assert_float_eq(st_log_loss(p, y, 2), -(log(0.8) + log(0.6)) / 2, 1e-12);
    cr_assert_float_eq(st_log_loss(p, y, 2), 0.36698, 1e-5);
    cr_assert_float_eq(st_brier(p, y, 2), 0.1, 1e-12);
}

Test(metrics, log_loss_clips_certain_mistakes)
{
    double p[] = {0.0};
    double y[] = {1};
    cr_assert_float_eq(st_log_loss(p, y, 1), -log(1e-15), 1e-9);
}

Test(metrics, calibration_bins)
{
    double p[] = {0.05, 0.15, 0.12, 1.0};
    double y[] = {0, 1, 0, 1};
    st_calibration_bin b[ST_CALIBRATION_BINS];
    st_calibration(p, y, 4, b);
    cr_assert_eq(b[0].n, 1);
    cr_assert_eq(b[1].n, 2);
    cr_assert_float_eq(b[1].mean_pred, 0.135, 1e-12);
    cr_assert_float_eq(b[1].observed, 0.5, 1e-12);
    cr_assert_eq(b[9].n, 1); /* p = 1 lands in the last bin */
    cr_assert(isnan(b[5].observed));
}

TestSuite(drift, .timeout = 10);

Test(drift, identical_samples_do_not_drift)
{
    double a[1000];
    for (int i = 0; i < 1000; i++)
        a[i] = i % 37;
    cr_assert_float_eq(st_psi(a, 1000, a, 1000, 10), 0.0, 1e-12);
    cr_assert_float_eq(st_ks(a, 1000, a, 1000), 0.0, 1e-12);
}

Test(drift, ks_of_shifted_uniforms)
{
    /* U{0..99} against U{50..149}: the CDFs differ by at most 0.5. */
    double a[100], b[100];
    for (int i = 0; i < 100; i++)
        a[i] = i, b[i] = i + 50;
    cr_assert_float_eq(st_ks(a, 100, b, 100), 0.5, 1e-12);
}

Test(drift, psi_of_a_binary_feature_by_hand)
{
    /* Reference 50% ones, current 80% ones: two bins (edges merge).
     * PSI = (0.2 - 0.5) ln(0.2/0.5) + (0.8 - 0.5) ln(0.8/0.5) = 0.4158883 */
    double ref[10] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1};
    double cur[10] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    double want = -0.3 * log(0.4) + 0.3 * log(1.6);
    cr_assert_float_eq(st_psi(ref, 10, cur, 10, 10), want, 1e-12);
}

Test(drift, psi_of_deciles_with_one_bin_moved)
{
    /* Reference 0..999 in deciles; current moves the first decile's 100
     * values into the last one: shares 0 (floored 1e-4) and 0.2 against 0.1. */
    double ref[1000], cur[1000];
    for (int i = 0; i < 1000; i++)
        ref[i] = i, cur[i] = i < 100 ? 950 : i;
    double want = (1e-4 - 0.1) * log(1e-4 / 0.1) + (0.2 - 0.1) * log(0.2 / 0.1);
    cr_assert_float_eq(st_psi(ref, 1000, cur, 1000, 10), want, 1e-9);
}

TestSuite(logreg, .timeout = 10);

/* xorshift: a tiny fixed generator, so the synthetic data never changes. */
static double uniform(unsigned long long *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

Test(logreg, recovers_known_coefficients)
{
    enum { N = 200000, P = 3 };
    const double truth[P] = {1.5, -2.0, 0.5}, b = -0.7;
    double *x = malloc(sizeof(double) * N * P), *y = malloc(sizeof(double) * N);
    unsigned long long seed = 42;
    for (int i = 0; i < N; i++) {
        double eta = b;
        for (int j = 0; j < P; j++) {
            x[i * P + j] = 3 * uniform(&seed) - 1 + j; /* different means and scales */
            eta += truth[j] * x[i * P + j];
        }
        y[i] = uniform(&seed) < st_sigmoid(eta);
    }
    st_logreg m;
    cr_assert_eq(st_logreg_fit(x, y, N, P, 1e-6, &m, NULL), 0);
    for (int j = 0; j < P; j++)
        cr_assert_float_eq(m.coef[j], truth[j], 0.05);
    cr_assert_float_eq(m.intercept, b, 0.08);
    cr_assert_lt(m.iterations, 15);

    /* Deterministic: a second fit gives the same bits. */
    st_logreg again;
    cr_assert_eq(st_logreg_fit(x, y, N, P, 1e-6, &again, NULL), 0);
    for (int j = 0; j < P; j++)
        cr_assert(m.coef[j] == again.coef[j]);
    st_logreg_release(&m);
    st_logreg_release(&again);
    free(x);
    free(y);
}

Test(logreg, l2_shrinks_coefficients)
{
    double x[] = {0, 1, 2, 3, 4, 5}, y[] = {0, 0, 1, 0, 1, 1};
    st_logreg weak, strong;
    cr_assert_eq(st_logreg_fit(x, y, 6, 1, 0.01, &weak, NULL), 0);
    cr_assert_eq(st_logreg_fit(x, y, 6, 1, 100, &strong, NULL), 0);
    cr_assert_gt(weak.coef[0], 0);
    cr_assert_lt(fabs(strong.coef[0]), fabs(weak.coef[0]) / 5);
    st_logreg_release(&weak);
    st_logreg_release(&strong);
}

Test(logreg, refuses_a_single_class)
{
    double x[] = {1, 2, 3}, y[] = {1, 1, 1};
    st_logreg m;
    st_err err;
    cr_assert_eq(st_logreg_fit(x, y, 3, 1, 1, &m, &err), -1);
    cr_assert_str_eq(err.msg, "labels are all 1: nothing to learn");
}

/* A flight-like matrix: P features of different means and scales, a few
 * correlated, labels drawn from a known model. Caller frees *x and *y. */
static void make_flightlike(int n, int p, double **x, double **y)
{
    unsigned long long seed = 7;
    *x = malloc(sizeof(double) * (size_t)n * (size_t)p);
    *y = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) {
        double eta = -1.2, *row = *x + (size_t)i * (size_t)p;
        for (int j = 0; j < p; j++) {
            row[j] = (j + 1) * 10 * uniform(&seed) + j * j;
            if (j % 4 == 3) row[j] += 0.5 * row[j - 1]; /* correlated with its neighbour */
            eta += (j % 2 ? 0.4 : -0.3) * (row[j] - j * j) / ((j + 1) * 10);
        }
        (*y)[i] = uniform(&seed) < st_sigmoid(eta);
    }
}

/* The data pass runs its fixed chunks on however many threads there are and
 * adds them in chunk order, so the thread count must not change one bit. */
Test(logreg, same_bits_on_any_thread_count)
{
    enum { N = 30011, P = 15 }; /* N not a multiple of the chunk or block size */
    double *x, *y;
    make_flightlike(N, P, &x, &y);
    st_logreg one;
    cr_assert_eq(st_logreg_fit_threads(x, y, N, P, 1.0, 1, &one, NULL), 0);
    const int counts[] = {2, 3, 8, 64};
    for (size_t t = 0; t < sizeof counts / sizeof counts[0]; t++) {
        st_logreg m;
        cr_assert_eq(st_logreg_fit_threads(x, y, N, P, 1.0, counts[t], &m, NULL), 0);
        cr_assert_eq(m.iterations, one.iterations);
        cr_assert(m.objective == one.objective, "objective differs on %d threads", counts[t]);
        cr_assert(m.intercept == one.intercept, "intercept differs on %d threads", counts[t]);
        for (int j = 0; j < P; j++)
            cr_assert(m.coef[j] == one.coef[j], "coef %d differs on %d threads", j, counts[t]);
        st_logreg_release(&m);
    }
    st_logreg_release(&one);
    free(x);
    free(y);
}

/* The fit is the optimum, not just close to the truth: the gradient of the
 * penalised objective (on the standardised scale, as logreg.h defines it)
 * is zero to within what rounding leaves, and the objective reported is the
 * objective at the coefficients returned. */
Test(logreg, stops_at_the_optimum)
{
    enum { N = 20000, P = 15 };
    const double l2 = 3.0;
    double *x, *y;
    make_flightlike(N, P, &x, &y);
    st_logreg m;
    cr_assert_eq(st_logreg_fit_threads(x, y, N, P, l2, 2, &m, NULL), 0);
    double grad[P + 1] = {0}, f = 0;
    for (int i = 0; i < N; i++) {
        const double *row = x + (size_t)i * P;
        double eta = m.intercept;
        for (int j = 0; j < P; j++)
            eta += m.coef[j] * row[j];
        double mu = st_sigmoid(eta);
        f += (eta > 0 ? eta : 0) + log1p(exp(-fabs(eta))) - y[i] * eta;
        grad[0] += mu - y[i];
        for (int j = 0; j < P; j++)
            grad[j + 1] += (mu - y[i]) * (row[j] - m.mean[j]) / m.scale[j];
    }
    for (int j = 0; j < P; j++) {
        double w = m.coef[j] * m.scale[j]; /* the standardised coefficient */
        grad[j + 1] += l2 * w;
        f += 0.5 * l2 * w * w;
    }
    for (int j = 0; j <= P; j++)
        cr_assert_lt(fabs(grad[j]) / N, 1e-7, "gradient[%d] = %g", j, grad[j]);
    cr_assert_float_eq(m.objective, f, 1e-9 * f);
    st_logreg_release(&m);
    free(x);
    free(y);
}
