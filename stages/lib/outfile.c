/* outfile.c - see outfile.h. */
#include "outfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int st_outfile_open(st_outfile *out, const char *path, st_err *err)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(path) + 32;
    out->path = st_xstrdup(path);
    out->tmp = st_xmalloc(len);
    snprintf(out->tmp, len, "%s.tmp.%ld", path, (long)getpid());
    out->file = fopen(out->tmp, "w");
    if (!out->file) {
        int errnum = errno;
        st_err_sys(err, errnum, "cannot create '%s'", out->tmp);
        st_outfile_abort(out);
        return -1;
    }
    return 0;
}

int st_outfile_commit(st_outfile *out, st_err *err)
{
    int failed = fflush(out->file) != 0 || ferror(out->file) || fsync(fileno(out->file)) != 0;
    int errnum = errno;
    if (fclose(out->file) != 0 && !failed) failed = 1, errnum = errno;
    out->file = NULL;
    if (failed) {
        st_err_sys(err, errnum, "cannot write '%s'", out->tmp);
        st_outfile_abort(out);
        return -1;
    }
    if (rename(out->tmp, out->path) != 0) {
        st_err_sys(err, errno, "cannot rename '%s' to '%s'", out->tmp, out->path);
        st_outfile_abort(out);
        return -1;
    }
    free(out->tmp);
    free(out->path);
    memset(out, 0, sizeof *out);
    return 0;
}

void st_outfile_abort(st_outfile *out)
{
    if (out->file) fclose(out->file);
    if (out->tmp) unlink(out->tmp);
    free(out->tmp);
    free(out->path);
    memset(out, 0, sizeof *out);
}
