/* fs.c - durable writes, directory trees and lexical path handling. */
#include "nightjar/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nightjar/util.h"

static atomic_uint temp_counter;

int nj_fs_open_temp(const char *path, mode_t mode, char **tmp_path, nj_err *err)
{
    for (int tries = 0; tries < 100; tries++) {
        char *tmp = nj_xasprintf("%s.tmp.%ld.%u", path, (long)getpid(),
                                 atomic_fetch_add(&temp_counter, 1));
        int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd >= 0) {
            *tmp_path = tmp;
            return fd;
        }
        int e = errno;
        free(tmp);
        if (e != EEXIST) return nj_err_sys(err, e, "cannot create temporary file for '%s'", path);
    }
    return nj_err_set(err, -EEXIST, "cannot create temporary file for '%s'", path);
}

int nj_fs_make_temp_dir(const char *dest, mode_t mode, char **out, nj_err *err)
{
    for (int tries = 0; tries < 100; tries++) {
        char *tmp = nj_xasprintf("%s.tmp.%ld.%u", dest, (long)getpid(),
                                 atomic_fetch_add(&temp_counter, 1));
        if (mkdir(tmp, mode) == 0) {
            *out = tmp;
            return 0;
        }
        int e = errno;
        free(tmp);
        if (e != EEXIST)
            return nj_err_sys(err, e, "cannot create temporary directory for '%s'", dest);
    }
    return nj_err_set(err, -EEXIST, "cannot create temporary directory for '%s'", dest);
}

int nj_fs_fsync_parent(const char *path, nj_err *err)
{
    char *dir = nj_path_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0 || fsync(fd) != 0) rc = nj_err_sys(err, errno, "cannot fsync directory '%s'", dir);
    if (fd >= 0) close(fd);
    free(dir);
    return rc;
}

int nj_fs_commit_temp(int fd, const char *tmp, const char *path, nj_err *err)
{
    int rc = 0;
    if (fsync(fd) != 0) rc = nj_err_sys(err, errno, "cannot fsync '%s'", tmp);
    if (close(fd) != 0 && rc == 0) rc = nj_err_sys(err, errno, "cannot close '%s'", tmp);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = nj_err_sys(err, errno, "cannot rename '%s' to '%s'", tmp, path);
    if (rc < 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return rc;
    }
    return nj_fs_fsync_parent(path, err);
}

int nj_fs_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int nj_fs_write_atomic(const char *path, const void *buf, size_t len, nj_err *err)
{
    char *tmp;
    int fd = nj_fs_open_temp(path, 0666, &tmp, err);
    if (fd < 0) return fd;
    int rc;
    if (nj_fs_write_all(fd, buf, len) != 0) {
        rc = nj_err_sys(err, errno, "cannot write '%s'", tmp);
        close(fd);
        unlink(tmp);
    } else {
        rc = nj_fs_commit_temp(fd, tmp, path, err);
    }
    free(tmp);
    return rc;
}

int nj_fs_read_file(const char *path, char **data, size_t *len, nj_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nj_err_sys(err, errno, "cannot open '%s'", path);
    nj_buf b;
    nj_buf_init(&b);
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int rc = nj_err_sys(err, errno, "cannot read '%s'", path);
            close(fd);
            nj_buf_release(&b);
            return rc;
        }
        if (n == 0) break;
        nj_buf_add(&b, chunk, (size_t)n);
    }
    close(fd);
    if (len) *len = b.len;
    *data = nj_buf_detach(&b);
    nj_buf_release(&b);
    return 0;
}

int nj_fs_mkdirs(const char *dir, nj_err *err)
{
    char *p = nj_xstrdup(dir);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            rc = nj_err_sys(err, errno, "cannot create directory '%s'", p);
            break;
        }
        *s = saved;
        if (saved == '\0') break;
    }
    if (rc == 0 && !nj_fs_is_dir(p))
        rc = nj_err_set(err, -ENOTDIR, "cannot create directory '%s': a file is in the way", p);
    free(p);
    return rc;
}

int nj_fs_mkdirs_parent(const char *path, nj_err *err)
{
    char *dir = nj_path_dirname(path);
    int rc = nj_fs_mkdirs(dir, err);
    free(dir);
    return rc;
}

int nj_fs_remove_tree(const char *path, nj_err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        return nj_err_sys(err, errno, "cannot stat '%s'", path);
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return nj_err_sys(err, errno, "cannot open directory '%s'", path);
        struct dirent *e;
        int rc = 0;
        while (rc == 0 && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char *child = nj_path_join(path, e->d_name);
            rc = nj_fs_remove_tree(child, err);
            free(child);
        }
        closedir(d);
        if (rc < 0) return rc;
        if (rmdir(path) != 0) return nj_err_sys(err, errno, "cannot remove directory '%s'", path);
        return 0;
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return nj_err_sys(err, errno, "cannot remove '%s'", path);
    return 0;
}

int nj_fs_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int nj_fs_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *nj_path_join(const char *base, const char *rel)
{
    if (rel[0] == '/' || base[0] == '\0') return nj_xstrdup(rel);
    size_t n = strlen(base), m = strlen(rel), slash = base[n - 1] != '/';
    char *out = nj_xmalloc(n + slash + m + 1);
    memcpy(out, base, n);
    out[n] = '/'; /* overwritten by rel when base already ends in '/' */
    memcpy(out + n + slash, rel, m + 1);
    return out;
}

char *nj_path_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return nj_xstrdup(".");
    while (slash > path && slash[-1] == '/')
        slash--;
    if (slash == path) return nj_xstrdup("/");
    return nj_xstrndup(path, (size_t)(slash - path));
}

char *nj_path_normalize(const char *path)
{
    int absolute = path[0] == '/';
    size_t n = strlen(path);
    /* Components are copied into `out`; `starts` remembers where each begins so
     * ".." can drop the previous one. */
    char *out = nj_xmalloc(n + 2);
    size_t *starts = nj_xmalloc((n / 2 + 2) * sizeof(*starts));
    size_t depth = 0, len = 0, leading_up = 0;
    if (absolute) out[len++] = '/';
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != '/')
            e++;
        size_t clen = (size_t)(e - p);
        if (clen == 1 && p[0] == '.') {
            /* skip */
        } else if (clen == 2 && p[0] == '.' && p[1] == '.') {
            if (depth > leading_up) {
                len = starts[--depth];
                if (len > (size_t)absolute) len--; /* the '/' before it */
            } else if (!absolute) {
                if (len > 0) out[len++] = '/';
                starts[depth++] = len;
                leading_up++;
                out[len++] = '.';
                out[len++] = '.';
            }
        } else {
            if (len > (size_t)absolute) out[len++] = '/';
            starts[depth++] = len;
            memcpy(out + len, p, clen);
            len += clen;
        }
        p = e;
    }
    if (len == 0) out[len++] = '.';
    out[len] = '\0';
    free(starts);
    return out;
}

int nj_path_escapes(const char *normalized)
{
    return strcmp(normalized, "..") == 0 || nj_str_starts(normalized, "../");
}

int nj_path_within(const char *path, const char *dir)
{
    if (strcmp(dir, ".") == 0) return path[0] != '/' && !nj_path_escapes(path);
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) != 0) return 0;
    return path[n] == '\0' || path[n] == '/' || (n > 0 && dir[n - 1] == '/');
}

char *nj_path_absolute(const char *path)
{
    if (path[0] == '/') return nj_path_normalize(path);
    char *cwd = getcwd(NULL, 0);
    if (!cwd) return nj_path_normalize(path);
    char *joined = nj_path_join(cwd, path);
    free(cwd);
    char *norm = nj_path_normalize(joined);
    free(joined);
    return norm;
}
