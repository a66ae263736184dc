/* model.c - see model.h. */
#include "model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "date.h"
#include "outfile.h"
#include "sha256.h"

int st_model_write(const st_model *m, const char *path, char (*input_sha)[65],
                   char *const *input_paths, size_t ninputs, st_err *err)
{
    st_outfile out;
    if (st_outfile_open(&out, path, err) < 0) return -1;
    FILE *f = out.file;
    fprintf(f, "format nj-logreg 1\n");
    for (int j = 0; j < m->fit.p; j++)
        fprintf(f, "feature %s %.17g %.17g %.17g\n", m->names[j], m->fit.coef[j], m->fit.mean[j],
                m->fit.scale[j]);
    fprintf(f, "intercept %.17g\n", m->fit.intercept);
    fprintf(f, "l2 %.17g\n", m->l2);
    fprintf(f, "prior_weight %.17g\n", m->prior_weight);
    fprintf(f, "label_delay_min %d\n", m->label_delay_min);
    fprintf(f, "rows %zu\npositives %zu\niterations %d\n", m->rows, m->positives,
            m->fit.iterations);
    for (size_t i = 0; i < m->ntrain_days; i++) {
        char d[11];
        fprintf(f, "train_date %s\n", st_date_format(m->train_days[i], d));
    }
    for (size_t i = 0; i < ninputs; i++)
        fprintf(f, "input %s %s\n", input_sha[i], input_paths[i]);
    return st_outfile_commit(&out, err);
}

static int parse_num(const char *s, double *v)
{
    char *end;
    if (!s) return -1;
    errno = 0;
    *v = strtod(s, &end);
    return *s && !*end && !errno ? 0 : -1;
}

int st_model_load(st_model *m, const char *path, st_err *err)
{
    memset(m, 0, sizeof *m);
    char hex[65];
    if (st_sha256_file(path, hex, err) < 0) return -1;
    memcpy(m->version, hex, 12);
    m->version[12] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return st_err_sys(err, errno, "cannot open '%s'", path);
    char *line = NULL;
    size_t cap = 0, ncap = 0, dcap = 0;
    long lineno = 0;
    int have_format = 0, have_intercept = 0;
    double *coef = NULL, *mean = NULL, *scale = NULL, intercept = 0;
    int p = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        char *save, *key = strtok_r(line, " ", &save);
        char *a = strtok_r(NULL, " ", &save), *b = strtok_r(NULL, " ", &save);
        char *c = strtok_r(NULL, " ", &save), *d = strtok_r(NULL, " ", &save);
        double v, v1, v2;
        if (!key) continue;
        if (!strcmp(key, "format")) {
            if (!a || strcmp(a, "nj-logreg") || !b || strcmp(b, "1")) goto bad;
            have_format = 1;
        } else if (!strcmp(key, "feature")) {
            if (!a || parse_num(b, &v) < 0 || parse_num(c, &v1) < 0 || parse_num(d, &v2) < 0)
                goto bad;
            st_grow((void **)&m->names, &ncap, (size_t)p + 1, sizeof *m->names);
            coef = st_xrealloc(coef, ncap * sizeof *coef);
            mean = st_xrealloc(mean, ncap * sizeof *mean);
            scale = st_xrealloc(scale, ncap * sizeof *scale);
            m->names[p] = st_xstrdup(a);
            coef[p] = v, mean[p] = v1, scale[p] = v2;
            p++;
        } else if (!strcmp(key, "intercept")) {
            if (parse_num(a, &intercept) < 0) goto bad;
            have_intercept = 1;
        } else if (!strcmp(key, "l2")) {
            if (parse_num(a, &m->l2) < 0) goto bad;
        } else if (!strcmp(key, "prior_weight")) {
            if (parse_num(a, &m->prior_weight) < 0) goto bad;
        } else if (!strcmp(key, "label_delay_min")) {
            if (parse_num(a, &v) < 0) goto bad;
            m->label_delay_min = (int)v;
        } else if (!strcmp(key, "rows") || !strcmp(key, "positives")) {
            if (parse_num(a, &v) < 0 || v < 0) goto bad;
            *(key[0] == 'r' ? &m->rows : &m->positives) = (size_t)v;
        } else if (!strcmp(key, "train_date")) {
            int day;
            if (!a || st_date_parse(a, &day) < 0) goto bad;
            st_grow((void **)&m->train_days, &dcap, m->ntrain_days + 1, sizeof *m->train_days);
            m->train_days[m->ntrain_days++] = day;
        }
        /* iterations, input and unknown keys are information only. */
    }
    free(line);
    fclose(f);
    if (!have_format || !have_intercept || p == 0 || m->rows == 0) {
        st_err_set(err,
                   "'%s': not a complete nj-logreg model (no format, feature, intercept "
                   "or rows line)",
                   path);
        goto fail;
    }
    st_logreg_init(&m->fit, p);
    memcpy(m->fit.coef, coef, (size_t)p * sizeof *coef);
    memcpy(m->fit.mean, mean, (size_t)p * sizeof *mean);
    memcpy(m->fit.scale, scale, (size_t)p * sizeof *scale);
    m->fit.intercept = intercept;
    free(coef), free(mean), free(scale);
    return 0;
bad:
    free(line);
    fclose(f);
    st_err_set(err, "%s:%ld: malformed model line", path, lineno);
fail:
    for (int j = 0; j < p; j++)
        free(m->names[j]);
    free(m->names);
    free(coef), free(mean), free(scale);
    free(m->train_days);
    memset(m, 0, sizeof *m);
    return -1;
}

double st_model_base_rate(const st_model *m)
{
    return m->rows ? (double)m->positives / (double)m->rows : 0;
}

void st_model_release(st_model *m)
{
    for (int j = 0; j < m->fit.p; j++)
        free(m->names[j]);
    free(m->names);
    free(m->train_days);
    st_logreg_release(&m->fit);
    memset(m, 0, sizeof *m);
}
