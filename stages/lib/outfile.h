/* outfile.h - stage outputs appear whole or not at all.
 *
 * The runner may treat an existing output as done, so a stage that dies
 * half-way must not leave a truncated file under the final name. Output goes
 * to "<path>.tmp.<pid>" and is renamed into place by st_outfile_commit().
 *
 *     st_outfile out;
 *     if (st_outfile_open(&out, path, &err) < 0) ...
 *     fprintf(out.file, ...);
 *     if (st_outfile_commit(&out, &err) < 0) ...   or st_outfile_abort(&out)
 */
#ifndef ST_OUTFILE_H
#define ST_OUTFILE_H

#include <stdio.h>

#include "err.h"

typedef struct st_outfile {
    FILE *file;
    char *path; /* final name, owned */
    char *tmp;  /* temporary name, owned */
} st_outfile;

int st_outfile_open(st_outfile *out, const char *path, st_err *err);
/* Flushes, fsyncs, closes and renames; on failure removes the temp file. */
int st_outfile_commit(st_outfile *out, st_err *err);
/* Closes and removes the temp file; fine on a committed or zeroed outfile. */
void st_outfile_abort(st_outfile *out);

#endif
