/* csv.h - a line-at-a-time reader for the simple CSV the stages exchange.
 *
 * The landing area and every stage output are plain comma-separated values
 * without quoting (airport codes, numbers, ids), so the reader splits on
 * commas and rejects a double quote rather than guess. One optional first
 * line starting with "# " carries provenance (nj-features writes its
 * parameters there) and is kept in csv->comment. The header is required.
 *
 *     st_csv csv;
 *     if (st_csv_open(&csv, path, &err) < 0) ...
 *     if (st_csv_expect_header(&csv, names, 6, &err) < 0) ...
 *     while ((rc = st_csv_next(&csv, &err)) > 0)
 *         use(csv.fields[0], ..., csv.nfields, csv.lineno);
 *     st_csv_close(&csv);
 *
 * Fields point into a buffer that is reused by the next st_csv_next().
 */
#ifndef ST_CSV_H
#define ST_CSV_H

#include <stdio.h>

#include "err.h"

#define ST_CSV_MAX_FIELDS 256

typedef struct st_csv {
    FILE *file;
    char *path; /* owned copy, for messages */
    char *line; /* getline buffer */
    size_t line_cap;
    long lineno;   /* 1-based number of the line in `fields` */
    char *comment; /* "# ..." first line without "# ", or NULL */
    char **header; /* owned copies of the header names */
    int ncols;     /* number of header names */
    char *fields[ST_CSV_MAX_FIELDS];
    int nfields; /* fields on the current line (may differ from ncols) */
} st_csv;

/* Opens `path` and reads the optional comment and the header line. Fails
 * with "'<path>': file is empty" when there is no header. */
int st_csv_open(st_csv *csv, const char *path, st_err *err);

/* Fails with "<path>:<line>: header is 'a,b' but expected 'a,b,c'" unless
 * the header is exactly `names`. */
int st_csv_expect_header(st_csv *csv, const char *const *names, int n, st_err *err);

/* Index of the header column `name`, or -1. */
int st_csv_column(const st_csv *csv, const char *name);

/* Reads the next line into fields. Returns 1 for a line, 0 at end of file,
 * -1 on a read error or a line with a double quote or too many fields. A
 * trailing '\r' is dropped. An empty line is one empty field. */
int st_csv_next(st_csv *csv, st_err *err);

/* Closes the file and frees everything; fine on a zeroed st_csv. */
void st_csv_close(st_csv *csv);

#endif
