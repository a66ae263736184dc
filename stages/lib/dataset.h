/* dataset.h - feature files (the output of nj-features) read back into a
 * matrix for nj-train and nj-evaluate.
 *
 * A feature file is CSV with a provenance comment and a header:
 *     # nj-features date=2001-02-01 prior_weight=20 label_delay_min=15 history=...
 *     flight_id,dep_time,origin,destination,<feature>...,label
 * Several files can be appended into one st_dataset; they must agree on the
 * feature names and on prior_weight and label_delay_min, because rows made
 * with different parameters are not the same features.
 */
#ifndef ST_DATASET_H
#define ST_DATASET_H

#include <stddef.h>

#include "err.h"

#define ST_DATASET_ID_COLUMNS 4 /* flight_id,dep_time,origin,destination */

typedef struct st_dataset {
    int p;                 /* features per row */
    char **names;          /* [p] feature names, owned */
    char *prior_weight;    /* from the comment, owned ("20") */
    char *label_delay_min; /* from the comment, owned ("15") */
    size_t n, cap;         /* rows */
    double *x;             /* [n * p] row-major */
    double *y;             /* [n] labels 0 or 1 */
    char (*origin)[4];     /* [n] */
    int *day;              /* [n] departure date */
} st_dataset;

/* Appends the rows of the feature file `path`. Fails naming file and line
 * for a bad header, a mismatch with earlier files, or a bad number. */
int st_dataset_load(st_dataset *d, const char *path, st_err *err);

/* Column j of all rows into a new array the caller frees. */
double *st_dataset_column(const st_dataset *d, int j);

void st_dataset_release(st_dataset *d);

/* Looks up "key=value" in a space-separated comment; writes value into
 * buf. Returns 0, or -1 if the key is missing. */
int st_comment_value(const char *comment, const char *key, char *buf, size_t len);

#endif
