/* csv.c - see csv.h. */
#include "csv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* Reads one line into csv->line without its newline; 1, 0 at EOF, -1. */
static int read_line(st_csv *csv, st_err *err)
{
    errno = 0;
    ssize_t len = getline(&csv->line, &csv->line_cap, csv->file);
    if (len < 0) {
        if (ferror(csv->file)) return st_err_sys(err, errno, "cannot read '%s'", csv->path);
        return 0;
    }
    csv->lineno++;
    while (len > 0 && (csv->line[len - 1] == '\n' || csv->line[len - 1] == '\r'))
        csv->line[--len] = '\0';
    if (strlen(csv->line) != (size_t)len)
        return st_err_set(err, "%s:%ld: line contains a NUL byte", csv->path, csv->lineno);
    return 1;
}

static int split(st_csv *csv, st_err *err)
{
    char *p = csv->line;
    csv->nfields = 0;
    if (strchr(p, '"'))
        return st_err_set(err, "%s:%ld: quoted fields are not supported", csv->path, csv->lineno);
    for (;;) {
        if (csv->nfields == ST_CSV_MAX_FIELDS)
            return st_err_set(err, "%s:%ld: more than %d fields", csv->path, csv->lineno,
                              ST_CSV_MAX_FIELDS);
        csv->fields[csv->nfields++] = p;
        char *comma = strchr(p, ',');
        if (!comma) return 0;
        *comma = '\0';
        p = comma + 1;
    }
}

int st_csv_open(st_csv *csv, const char *path, st_err *err)
{
    memset(csv, 0, sizeof *csv);
    csv->path = st_xstrdup(path);
    csv->file = fopen(path, "r");
    if (!csv->file) {
        st_err_sys(err, errno, "cannot open '%s'", path);
        goto fail;
    }
    int rc = read_line(csv, err);
    if (rc > 0 && strncmp(csv->line, "# ", 2) == 0) {
        csv->comment = st_xstrdup(csv->line + 2);
        rc = read_line(csv, err);
    }
    if (rc < 0) goto fail;
    if (rc == 0) {
        st_err_set(err, "'%s': file is empty (no header line)", path);
        goto fail;
    }
    if (split(csv, err) < 0) goto fail;
    csv->ncols = csv->nfields;
    csv->header = st_xcalloc((size_t)csv->ncols, sizeof *csv->header);
    for (int i = 0; i < csv->ncols; i++)
        csv->header[i] = st_xstrdup(csv->fields[i]);
    return 0;
fail:
    st_csv_close(csv);
    return -1;
}

int st_csv_expect_header(st_csv *csv, const char *const *names, int n, st_err *err)
{
    int same = csv->ncols == n;
    for (int i = 0; same && i < n; i++)
        same = strcmp(csv->header[i], names[i]) == 0;
    if (same) return 0;
    char have[400] = "", want[400] = "";
    for (int i = 0; i < csv->ncols; i++)
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? "," : "",
                 csv->header[i]);
    for (int i = 0; i < n; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", i ? "," : "", names[i]);
    return st_err_set(err, "%s:%ld: header is '%s' but expected '%s'", csv->path, csv->lineno, have,
                      want);
}

int st_csv_column(const st_csv *csv, const char *name)
{
    for (int i = 0; i < csv->ncols; i++)
        if (strcmp(csv->header[i], name) == 0) return i;
    return -1;
}

int st_csv_next(st_csv *csv, st_err *err)
{
    int rc = read_line(csv, err);
    if (rc <= 0) return rc;
    if (split(csv, err) < 0) return -1;
    return 1;
}

void st_csv_close(st_csv *csv)
{
    if (csv->file) fclose(csv->file);
    for (int i = 0; i < csv->ncols; i++)
        free(csv->header[i]);
    free(csv->header);
    free(csv->comment);
    free(csv->line);
    free(csv->path);
    memset(csv, 0, sizeof *csv);
}
