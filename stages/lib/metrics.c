/* metrics.c - see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>

#include "err.h"

typedef struct scored {
    double score;
    double y;
} scored;

static int by_score(const void *a, const void *b)
{
    double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return (x > y) - (x < y);
}

double st_auc(const double *score, const double *y, size_t n)
{
    scored *s = st_xmalloc(n * sizeof *s);
    double pos = 0;
    for (size_t i = 0; i < n; i++) {
        s[i].score = score[i];
        s[i].y = y[i];
        pos += y[i] > 0.5;
    }
    double neg = (double)n - pos;
    if (pos == 0 || neg == 0) {
        free(s);
        return NAN;
    }
    qsort(s, n, sizeof *s, by_score);
    /* Sum of the (1-based, tie-averaged) ranks of the positives. */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double tie_pos = 0;
        while (j < n && s[j].score == s[i].score)
            tie_pos += s[j++].y > 0.5;
        double avg_rank = ((double)(i + 1) + (double)j) / 2.0;
        rank_sum += tie_pos * avg_rank;
        i = j;
    }
    free(s);
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

double st_log_loss(const double *p, const double *y, size_t n)
{
    if (n == 0) return NAN;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double q = fmin(fmax(p[i], 1e-15), 1 - 1e-15);
        sum -= y[i] > 0.5 ? log(q) : log1p(-q);
    }
    return sum / (double)n;
}

double st_brier(const double *p, const double *y, size_t n)
{
    if (n == 0) return NAN;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (p[i] - y[i]) * (p[i] - y[i]);
    return sum / (double)n;
}

void st_calibration(const double *p, const double *y, size_t n,
                    st_calibration_bin bins[ST_CALIBRATION_BINS])
{
    double sum_p[ST_CALIBRATION_BINS] = {0}, sum_y[ST_CALIBRATION_BINS] = {0};
    for (int b = 0; b < ST_CALIBRATION_BINS; b++) {
        bins[b].lo = (double)b / ST_CALIBRATION_BINS;
        bins[b].hi = (double)(b + 1) / ST_CALIBRATION_BINS;
        bins[b].n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        int b = (int)(p[i] * ST_CALIBRATION_BINS);
        b = b < 0 ? 0 : b >= ST_CALIBRATION_BINS ? ST_CALIBRATION_BINS - 1 : b;
        bins[b].n++;
        sum_p[b] += p[i];
        sum_y[b] += y[i];
    }
    for (int b = 0; b < ST_CALIBRATION_BINS; b++) {
        bins[b].mean_pred = bins[b].n ? sum_p[b] / (double)bins[b].n : NAN;
        bins[b].observed = bins[b].n ? sum_y[b] / (double)bins[b].n : NAN;
    }
}
