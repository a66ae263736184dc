/* nj-train - fit the delay model on the feature files of a training window.
 *
 * The model file records what the fit saw: feature names, coefficients, the
 * training dates, the row count and the sha256 of every input file (see
 * lib/model.h). The fit is deterministic: same inputs, same bytes out.
 * Exit: 0 ok, 1 bad input or a failed fit, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/args.h"
#include "lib/dataset.h"
#include "lib/err.h"
#include "lib/logreg.h"
#include "lib/model.h"
#include "lib/sha256.h"

static const char *const prog = "nj-train";
static const char usage[] =
    "usage: nj-train --features FEATURES/D1.csv FEATURES/D2.csv ... --out MODEL.bin\n"
    "                [--l2 1.0]\n"
    "\n"
    "Fits L2-regularised logistic regression (Newton's method on standardised\n"
    "features; penalty --l2 / 2 * |w|^2, i.e. scikit-learn's C = 1 / l2) to the\n"
    "rows of all --features files, which must come from nj-features with the\n"
    "same parameters. Writes a text model with the feature names, coefficients,\n"
    "training dates, row count and the sha256 of each input. Fit time goes to\n"
    "stderr. Exit: 0 ok, 1 bad input or failed fit, 2 usage.\n";

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int by_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    st_list inputs = {0};
    const char *out_path = NULL;
    double l2 = 1.0;
    st_opt opts[] = {{"features", ST_OPT_LIST, &inputs},
                     {"out", ST_OPT_STRING, &out_path},
                     {"l2", ST_OPT_DOUBLE, &l2},
                     {0}};
    st_args_parse(argc, argv, opts, prog, usage);
    st_args_require(out_path, "out", prog, usage);
    if (inputs.n == 0) st_die(prog, ST_EXIT_USAGE, "--features needs at least one file");
    if (!(l2 >= 0)) st_die(prog, ST_EXIT_USAGE, "--l2 must be >= 0");

    st_err err = {{0}};
    st_dataset data = {0};
    st_model model = {0};
    char(*sha)[65] = st_xcalloc(inputs.n, sizeof *sha);
    int *days = NULL;
    for (size_t i = 0; i < inputs.n; i++)
        if (st_sha256_file(inputs.items[i], sha[i], &err) < 0 ||
            st_dataset_load(&data, inputs.items[i], &err) < 0)
            goto fail;

    double t0 = seconds();
    if (st_logreg_fit(data.x, data.y, data.n, data.p, l2, &model.fit, &err) < 0) {
        char msg[sizeof err.msg];
        snprintf(msg, sizeof msg, "%s", err.msg);
        st_err_set(&err, "cannot fit %zu rows: %s", data.n, msg);
        goto fail;
    }
    double fit_time = seconds() - t0;

    /* The distinct departure dates of the training rows, in order. */
    days = st_xmalloc(data.n * sizeof *days);
    memcpy(days, data.day, data.n * sizeof *days);
    qsort(days, data.n, sizeof *days, by_int);
    size_t ndays = 0;
    for (size_t i = 0; i < data.n; i++)
        if (ndays == 0 || days[i] != days[ndays - 1]) days[ndays++] = days[i];

    model.names = data.names; /* borrowed */
    model.l2 = l2;
    model.prior_weight = atof(data.prior_weight);
    model.label_delay_min = atoi(data.label_delay_min);
    model.rows = data.n;
    for (size_t i = 0; i < data.n; i++)
        model.positives += data.y[i] > 0.5;
    model.train_days = days;
    model.ntrain_days = ndays;
    if (st_model_write(&model, out_path, sha, inputs.items, inputs.n, &err) < 0) goto fail;
    fprintf(stderr,
            "%s: fit %zu rows x %d features from %zu files in %.3f s (%d Newton iterations, "
            "base rate %.4f) -> %s\n",
            prog, data.n, data.p, inputs.n, fit_time, model.fit.iterations,
            st_model_base_rate(&model), out_path);
    st_logreg_release(&model.fit);
    st_dataset_release(&data);
    st_list_release(&inputs);
    free(sha);
    free(days);
    return ST_EXIT_OK;
fail:
    st_logreg_release(&model.fit);
    st_dataset_release(&data);
    st_list_release(&inputs);
    free(sha);
    free(days);
    st_die(prog, ST_EXIT_DATA, "%s", err.msg);
}
