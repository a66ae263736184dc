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
