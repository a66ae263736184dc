/* nj-evaluate - how good is a model on a later day, compared with the
 * base-rate forecast and the current champion, and has the input drifted?
 *
 * Writes one JSON document (see the usage text for its shape). Metrics with
 * no meaning (AUC of a single class) are null. Exit: 0 ok (drift warnings
 * included), 1 bad input, 2 usage.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/args.h"
#include "lib/dataset.h"
#include "lib/date.h"
#include "lib/drift.h"
#include "lib/features.h"
#include "lib/err.h"
#include "lib/metrics.h"
#include "lib/model.h"
#include "lib/outfile.h"

static const char *const prog = "nj-evaluate";
static const char usage[] =
    "usage: nj-evaluate --model MODEL.bin --features FEATURES/D.csv ... --out METRICS.json\n"
    "                   [--champion CHAMPION.bin|""] [--top-origins 10]\n"
    "                   [--reference FEATURES/TRAIN1.csv ...] [--psi-warn 0.2]\n"
    "                   [--ks-warn 0.1] [--drift-bins 10]\n"
    "\n"
    "Scores the rows of --features with the model and writes AUC, log loss, Brier\n"
    "score and a 10-bin calibration table for the model, the base-rate baseline\n"
    "(the model's training positive rate) and --champion if given; the same for\n"
    "each of the --top-origins busiest origins; and, with --reference (the\n"
    "training window's feature files), each feature's population stability index\n"
    "and Kolmogorov-Smirnov statistic, warning on stderr above --psi-warn or\n"
    "--ks-warn (never for the weekday features, which a single day cannot match).\n"
    "Exit: 0 ok, 1 bad input, 2 usage.\n";

/* Column of each model feature in the dataset, by name; -1 if missing. */
static int map_columns(const st_model *m, const char *path, const st_dataset *d, int *cols,
                       st_err *err)
{
    for (int j = 0; j < m->fit.p; j++) {
        cols[j] = -1;
        for (int k = 0; k < d->p; k++)
            if (!strcmp(m->names[j], d->names[k])) cols[j] = k;
        if (cols[j] < 0)
            return st_err_set(err, "model '%s' needs feature '%s', which the feature files lack",
                              path, m->names[j]);
    }
    if (atof(d->prior_weight) != m->prior_weight || atoi(d->label_delay_min) != m->label_delay_min)
        return st_err_set(err,
                          "model '%s' was trained with prior_weight=%g label_delay_min=%d but "
                          "the features have prior_weight=%s label_delay_min=%s",
                          path, m->prior_weight, m->label_delay_min, d->prior_weight,
                          d->label_delay_min);
    return 0;
}

static double *predict_all(const st_model *m, const int *cols, const st_dataset *d)
{
    double *p = st_xmalloc(d->n * sizeof *p);
    double *row = st_xmalloc((size_t)m->fit.p * sizeof *row);
    for (size_t i = 0; i < d->n; i++) {
        for (int j = 0; j < m->fit.p; j++)
            row[j] = d->x[i * (size_t)d->p + (size_t)cols[j]];
        p[i] = st_logreg_predict(&m->fit, row);
    }
    free(row);
    return p;
}

/* A JSON string with quotes and backslashes escaped (paths are the only
 * free text written). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

/* {"auc":..,"log_loss":..,"brier":..,"calibration":[...]} over rows[0..n). */
static void json_metrics(FILE *f, const double *p, const double *y, size_t n)
{
    st_calibration_bin bins[ST_CALIBRATION_BINS];
    fputs("{\"auc\": ", f);
    json_num(f, st_auc(p, y, n));
    fputs(", \"log_loss\": ", f);
    json_num(f, st_log_loss(p, y, n));
    fputs(", \"brier\": ", f);
    json_num(f, st_brier(p, y, n));
    fputs(", \"calibration\": [", f);
    st_calibration(p, y, n, bins);
    for (int b = 0; b < ST_CALIBRATION_BINS; b++) {
        fprintf(f, "%s{\"lo\": %.1f, \"hi\": %.1f, \"n\": %zu, \"mean_pred\": ", b ? ", " : "",
                bins[b].lo, bins[b].hi, bins[b].n);
        json_num(f, bins[b].mean_pred);
        fputs(", \"observed\": ", f);
        json_num(f, bins[b].observed);
        fputc('}', f);
    }
    fputs("]}", f);
}

/* The model, base-rate and (if any) champion metrics of the rows in idx. */
static void json_forecasts(FILE *f, const size_t *idx, size_t n, double *const *preds,
                           const char *const *labels, int npreds, const double *y)
{
    double *p = st_xmalloc((n ? n : 1) * sizeof *p), *yy = st_xmalloc((n ? n : 1) * sizeof *yy);
    for (size_t i = 0; i < n; i++)
        yy[i] = y[idx[i]];
    for (int k = 0; k < npreds; k++) {
        for (size_t i = 0; i < n; i++)
            p[i] = preds[k][idx[i]];
        fprintf(f, "%s\"%s\": ", k ? ", " : "", labels[k]);
        json_metrics(f, p, yy, n);
    }
    free(p);
    free(yy);
}

typedef struct origin_count {
    char code[4];
    size_t n;
} origin_count;

static int by_count_desc(const void *a, const void *b)
{
    const origin_count *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? 1 : -1;
    return strcmp(x->code, y->code);
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *champion_path = NULL, *out_path = NULL;
    st_list inputs = {0}, reference = {0};
    int top_origins = 10, drift_bins = 10;
    double psi_warn = 0.2, ks_warn = 0.1;
    st_opt opts[] = {
        {"model", ST_OPT_STRING, &model_path},       {"features", ST_OPT_LIST, &inputs},
        {"champion", ST_OPT_STRING, &champion_path}, {"out", ST_OPT_STRING, &out_path},
        {"top-origins", ST_OPT_INT, &top_origins},   {"reference", ST_OPT_LIST, &reference},
        {"psi-warn", ST_OPT_DOUBLE, &psi_warn},      {"ks-warn", ST_OPT_DOUBLE, &ks_warn},
        {"drift-bins", ST_OPT_INT, &drift_bins},     {0}};
    st_args_parse(argc, argv, opts, prog, usage);
    /* An empty --champion is no champion: nightjar renders {{models.champion}}
     * so in the gate stage before any model was promoted. */
    if (champion_path && !*champion_path) champion_path = NULL;
    st_args_require(model_path, "model", prog, usage);
    st_args_require(out_path, "out", prog, usage);
    if (inputs.n == 0) st_die(prog, ST_EXIT_USAGE, "--features needs at least one file");
    if (top_origins < 0 || drift_bins < 2)
        st_die(prog, ST_EXIT_USAGE, "--top-origins must be >= 0 and --drift-bins >= 2");

    int rc = ST_EXIT_OK;
    st_err err = {{0}};
    st_model model = {0}, champion = {0};
    st_dataset data = {0}, ref = {0};
    st_outfile out = {0};
    double *preds[3] = {NULL, NULL, NULL};
    int *cols = NULL, *champion_cols = NULL;
    size_t *idx = NULL;
    origin_count *origins = NULL;
    size_t norigins = 0, origins_cap = 0;
    if (st_model_load(&model, model_path, &err) < 0 ||
        (champion_path && st_model_load(&champion, champion_path, &err) < 0))
        goto fail;
    for (size_t i = 0; i < inputs.n; i++)
        if (st_dataset_load(&data, inputs.items[i], &err) < 0) goto fail;
    if (data.n == 0) {
        st_err_set(&err, "'%s': no rows to evaluate", inputs.items[0]);
        goto fail;
    }
    cols = st_xmalloc((size_t)model.fit.p * sizeof *cols);
    if (map_columns(&model, model_path, &data, cols, &err) < 0) goto fail;
    preds[0] = predict_all(&model, cols, &data);
    preds[1] = st_xmalloc(data.n * sizeof *preds[1]);
    for (size_t i = 0; i < data.n; i++)
        preds[1][i] = st_model_base_rate(&model);
    if (champion_path) {
        champion_cols = st_xmalloc((size_t)champion.fit.p * sizeof *champion_cols);
        if (map_columns(&champion, champion_path, &data, champion_cols, &err) < 0) goto fail;
        preds[2] = predict_all(&champion, champion_cols, &data);
    }
    const char *labels[3] = {"model", "base_rate", "champion"};
    int npreds = champion_path ? 3 : 2;

    if (st_outfile_open(&out, out_path, &err) < 0) goto fail;
    FILE *f = out.file;
    size_t positives = 0;
    int first = data.day[0], last = data.day[0];
    for (size_t i = 0; i < data.n; i++) {
        positives += data.y[i] > 0.5;
        first = data.day[i] < first ? data.day[i] : first;
        last = data.day[i] > last ? data.day[i] : last;
    }
    char d1[11], d2[11];
    fprintf(f, "{\n  \"dates\": [\"%s\", \"%s\"],\n  \"rows\": %zu,\n  \"positives\": %zu,\n",
            st_date_format(first, d1), st_date_format(last, d2), data.n, positives);
    fputs("  \"model\": {\"path\": ", f);
    json_str(f, model_path);
    fprintf(f, ", \"version\": \"%s\", \"train_rows\": %zu, \"base_rate\": %.6g},\n", model.version,
            model.rows, st_model_base_rate(&model));
    if (champion_path) {
        fputs("  \"champion\": {\"path\": ", f);
        json_str(f, champion_path);
        fprintf(f, ", \"version\": \"%s\"},\n", champion.version);
    } else
        fprintf(f, "  \"champion\": null,\n");

    idx = st_xmalloc(data.n * sizeof *idx);
    for (size_t i = 0; i < data.n; i++)
        idx[i] = i;
    fputs("  \"overall\": {", f);
    json_forecasts(f, idx, data.n, preds, labels, npreds, data.y);
    fputs("},\n", f);
    double auc[3];
    for (int k = 0; k < npreds; k++)
        auc[k] = st_auc(preds[k], data.y, data.n);

    /* Busiest origins first; ties by code so the order is deterministic. */
    for (size_t i = 0; i < data.n; i++) {
        size_t k = 0;
        while (k < norigins && strcmp(origins[k].code, data.origin[i]))
            k++;
        if (k == norigins) {
            st_grow((void **)&origins, &origins_cap, norigins + 1, sizeof *origins);
            memcpy(origins[k].code, data.origin[i], 4);
            origins[k].n = 0;
            norigins++;
        }
        origins[k].n++;
    }
    qsort(origins, norigins, sizeof *origins, by_count_desc);
    fputs("  \"by_origin\": [", f);
    for (size_t k = 0; k < norigins && k < (size_t)top_origins; k++) {
        size_t n = 0;
        for (size_t i = 0; i < data.n; i++)
            if (!strcmp(data.origin[i], origins[k].code)) idx[n++] = i;
        fprintf(f, "%s\n    {\"origin\": \"%s\", \"rows\": %zu, ", k ? "," : "", origins[k].code,
                n);
        json_forecasts(f, idx, n, preds, labels, npreds, data.y);
        fputc('}', f);
    }
    fputs("\n  ],\n", f);

    int warnings = 0;
    if (reference.n) {
        for (size_t i = 0; i < reference.n; i++)
            if (st_dataset_load(&ref, reference.items[i], &err) < 0) goto fail;
        fprintf(f,
                "  \"drift\": {\"reference_rows\": %zu, \"psi_warn\": %g, \"ks_warn\": %g, "
                "\"features\": [",
                ref.n, psi_warn, ks_warn);
        for (int j = 0; j < model.fit.p; j++) {
            int rj = -1;
            for (int k = 0; k < ref.p; k++)
                if (!strcmp(ref.names[k], model.names[j])) rj = k;
            if (rj < 0) {
                st_err_set(&err, "reference feature files lack feature '%s'", model.names[j]);
                goto fail;
            }
            double *r = st_dataset_column(&ref, rj), *c = st_dataset_column(&data, cols[j]);
            double psi = st_psi(r, ref.n, c, data.n, drift_bins);
            double ks = st_ks(r, ref.n, c, data.n);
            int calendar = st_feature_is_calendar(model.names[j]);
            int warn = !calendar && (psi > psi_warn || ks > ks_warn);
            if (warn) {
                warnings++;
                fprintf(stderr,
                        "%s: warning: feature '%s' drifted: psi %.3f (warn > %g), ks %.3f "
                        "(warn > %g)\n",
                        prog, model.names[j], psi, psi_warn, ks, ks_warn);
            }
            fprintf(f,
                    "%s\n    {\"name\": \"%s\", \"psi\": %.6g, \"ks\": %.6g, \"calendar\": %s, "
                    "\"warn\": %s}",
                    j ? "," : "", model.names[j], psi, ks, calendar ? "true" : "false",
                    warn ? "true" : "false");
            free(r);
            free(c);
        }
        fprintf(f, "\n  ], \"warnings\": %d}\n}\n", warnings);
    } else {
        fputs("  \"drift\": null\n}\n", f);
    }
    if (st_outfile_commit(&out, &err) < 0) goto fail;
    fprintf(stderr, "%s: %s..%s: %zu rows, AUC model %.4f, base rate %.4f", prog, d1, d2, data.n,
            auc[0], auc[1]);
    if (champion_path) fprintf(stderr, ", champion %.4f", auc[2]);
    fprintf(stderr, "; %d drift warnings -> %s\n", warnings, out_path);
    goto done;
fail:
    rc = ST_EXIT_DATA;
    st_outfile_abort(&out);
done:
    for (int k = 0; k < 3; k++)
        free(preds[k]);
    free(cols);
    free(champion_cols);
    free(idx);
    free(origins);
    st_model_release(&model);
    st_model_release(&champion);
    st_dataset_release(&data);
    st_dataset_release(&ref);
    st_list_release(&inputs);
    st_list_release(&reference);
    if (rc != ST_EXIT_OK) st_die(prog, rc, "%s", err.msg);
    return rc;
}
