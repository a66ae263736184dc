/* model.h - the model file written by nj-train and read by nj-evaluate and
 * nj-score. Plain text, one "key value..." per line, so a reviewer can read
 * what a model is and where it came from:
 *
 *     format nj-logreg 1
 *     feature dep_hour 0.0312 12.9 4.6          name, coef, train mean, sd
 *     ...
 *     intercept -2.31
 *     l2 1
 *     prior_weight 20                            feature parameters: nj-score
 *     label_delay_min 15                         rebuilds features with them
 *     rows 420311
 *     positives 70211
 *     iterations 6
 *     train_date 2001-01-04                      one line per date
 *     input 9f2c...e1 features/2001-01-04.csv    sha256 and path, per file
 *
 * The model's version is the first 12 hex digits of the file's sha256.
 */
#ifndef ST_MODEL_H
#define ST_MODEL_H

#include <stddef.h>

#include "err.h"
#include "logreg.h"

typedef struct st_model {
    st_logreg fit;
    char **names; /* [fit.p] feature names */
    double l2;
    double prior_weight;
    int label_delay_min;
    size_t rows, positives;
    int *train_days;
    size_t ntrain_days;
    char version[13]; /* set by st_model_load() */
} st_model;

/* Writes the model atomically-enough for a stage (temp file + rename); the
 * inputs are listed as (sha256, path) pairs. */
int st_model_write(const st_model *m, const char *path, char (*input_sha)[65],
                   char *const *input_paths, size_t ninputs, st_err *err);

/* Reads a model file; fails naming the file and line of a bad line. */
int st_model_load(st_model *m, const char *path, st_err *err);

/* Base rate of the training data: positives / rows. */
double st_model_base_rate(const st_model *m);

void st_model_release(st_model *m);

#endif
