/* dataset.c - see dataset.h. */
#include "dataset.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "date.h"

int st_comment_value(const char *comment, const char *key, char *buf, size_t len)
{
    size_t klen = strlen(key);
    for (const char *p = comment; p && *p;) {
        while (*p == ' ')
            p++;
        size_t tok = strcspn(p, " ");
        if (tok > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            snprintf(buf, len, "%.*s", (int)(tok - klen - 1), p + klen + 1);
            return 0;
        }
        p += tok;
    }
    return -1;
}

/* Checks that the comment's parameter `key` equals *have (or sets it). */
static int check_param(st_csv *csv, const char *key, char **have, st_err *err)
{
    char value[64];
    if (!csv->comment || st_comment_value(csv->comment, key, value, sizeof value) < 0)
        return st_err_set(err, "%s:1: no '%s=' in the '# nj-features' comment line", csv->path,
                          key);
    if (!*have)
        *have = st_xstrdup(value);
    else if (strcmp(*have, value) != 0)
        return st_err_set(err, "%s:1: %s=%s differs from %s=%s of the earlier feature files",
                          csv->path, key, value, key, *have);
    return 0;
}

static const char *const id_columns[ST_DATASET_ID_COLUMNS] = {"flight_id", "dep_time", "origin",
                                                              "destination"};

static int check_header(st_dataset *d, st_csv *csv, st_err *err)
{
    int p = csv->ncols - ST_DATASET_ID_COLUMNS - 1;
    int ok = p > 0 && strcmp(csv->header[csv->ncols - 1], "label") == 0;
    for (int i = 0; ok && i < ST_DATASET_ID_COLUMNS; i++)
        ok = strcmp(csv->header[i], id_columns[i]) == 0;
    if (!ok)
        return st_err_set(err,
                          "%s:%ld: header must be 'flight_id,dep_time,origin,destination,"
                          "<features>...,label'",
                          csv->path, csv->lineno);
    if (!d->names) {
        d->p = p;
        d->names = st_xcalloc((size_t)p, sizeof *d->names);
        for (int j = 0; j < p; j++)
            d->names[j] = st_xstrdup(csv->header[ST_DATASET_ID_COLUMNS + j]);
        return 0;
    }
    ok = p == d->p;
    for (int j = 0; ok && j < p; j++)
        ok = strcmp(d->names[j], csv->header[ST_DATASET_ID_COLUMNS + j]) == 0;
    if (!ok)
        return st_err_set(err, "%s:%ld: feature columns differ from the earlier feature files",
                          csv->path, csv->lineno);
    return 0;
}

static int parse_double(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *s && !*end && !errno && isfinite(*v) ? 0 : -1;
}

int st_dataset_load(st_dataset *d, const char *path, st_err *err)
{
    st_csv csv;
    int rc;
    if (st_csv_open(&csv, path, err) < 0) return -1;
    if (check_header(d, &csv, err) < 0 ||
        check_param(&csv, "prior_weight", &d->prior_weight, err) < 0 ||
        check_param(&csv, "label_delay_min", &d->label_delay_min, err) < 0)
        goto fail;
    while ((rc = st_csv_next(&csv, err)) > 0) {
        if (csv.nfields != csv.ncols) {
            st_err_set(err, "%s:%ld: %d fields, expected %d", path, csv.lineno, csv.nfields,
                       csv.ncols);
            goto fail;
        }
        if (d->n == d->cap) {
            size_t cap = d->cap;
            st_grow((void **)&d->y, &cap, d->n + 1, sizeof *d->y);
            d->x = st_xrealloc(d->x, cap * (size_t)d->p * sizeof *d->x);
            d->origin = st_xrealloc(d->origin, cap * sizeof *d->origin);
            d->day = st_xrealloc(d->day, cap * sizeof *d->day);
            d->cap = cap;
        }
        int minute;
        if (strlen(csv.fields[2]) != 3 ||
            st_datetime_parse(csv.fields[1], &d->day[d->n], &minute) < 0) {
            st_err_set(err, "%s:%ld: bad dep_time '%s' or origin '%s'", path, csv.lineno,
                       csv.fields[1], csv.fields[2]);
            goto fail;
        }
        memcpy(d->origin[d->n], csv.fields[2], 4);
        for (int j = 0; j <= d->p; j++) {
            const char *field = csv.fields[ST_DATASET_ID_COLUMNS + j];
            double v;
            if (parse_double(field, &v) < 0) {
                st_err_set(err, "%s:%ld: %s '%s' is not a number", path, csv.lineno,
                           csv.header[ST_DATASET_ID_COLUMNS + j], field);
                goto fail;
            }
            if (j < d->p)
                d->x[d->n * (size_t)d->p + (size_t)j] = v;
            else if (v != 0 && v != 1) {
                st_err_set(err, "%s:%ld: label '%s' is not 0 or 1", path, csv.lineno, field);
                goto fail;
            } else
                d->y[d->n] = v;
        }
        d->n++;
    }
    if (rc < 0) goto fail;
    st_csv_close(&csv);
    return 0;
fail:
    st_csv_close(&csv);
    return -1;
}

double *st_dataset_column(const st_dataset *d, int j)
{
    double *col = st_xmalloc(d->n * sizeof *col);
    for (size_t i = 0; i < d->n; i++)
        col[i] = d->x[i * (size_t)d->p + (size_t)j];
    return col;
}

void st_dataset_release(st_dataset *d)
{
    for (int j = 0; j < d->p; j++)
        free(d->names[j]);
    free(d->names);
    free(d->prior_weight);
    free(d->label_delay_min);
    free(d->x);
    free(d->y);
    free(d->origin);
    free(d->day);
    memset(d, 0, sizeof *d);
}
