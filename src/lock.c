/* lock.c - flock-based workspace lock with the holder's pid inside. */
#include "nightjar/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "nightjar/util.h"

struct nj_lock {
    int fd;
    char *path;
};

/* Builds the "another run (...) holds" message from what the holder wrote. */
static int locked_error(int fd, const char *path, nj_err *err)
{
    char text[256] = {0};
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    long long pid = 0, started = 0;
    if (n > 0) sscanf(text, "pid %lld started %lld", &pid, &started);
    if (pid <= 0)
        return nj_err_set(err, NJ_ELOCKED, "another run holds '%s'", path);
    char when[64];
    nj_time_format(started, when, sizeof(when));
    return nj_err_set(err, NJ_ELOCKED, "another run (pid %lld, started %s) holds '%s'", pid, when,
                      path);
}

int nj_lock_acquire(const char *path, int64_t wait_ms, nj_lock **out, nj_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return nj_err_sys(err, errno, "cannot open lock file '%s'", path);
    int64_t deadline = nj_time_mono_ms() + (wait_ms > 0 ? wait_ms : 0);
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK) {
            int rc = nj_err_sys(err, errno, "cannot lock '%s'", path);
            close(fd);
            return rc;
        }
        if (wait_ms >= 0 && nj_time_mono_ms() >= deadline) {
            int rc = locked_error(fd, path, err);
            close(fd);
            return rc;
        }
        usleep(50 * 1000);
    }
    char text[128];
    int len = snprintf(text, sizeof(text), "pid %lld started %lld\n", (long long)getpid(),
                       (long long)nj_time_now_ms());
    /* Best effort: the content only feeds the message above. */
    if (ftruncate(fd, 0) == 0 && pwrite(fd, text, (size_t)len, 0) != len) {
        /* ignored */
    }
    nj_lock *lock = nj_xcalloc(1, sizeof(*lock));
    lock->fd = fd;
    lock->path = nj_xstrdup(path);
    *out = lock;
    return 0;
}

void nj_lock_release(nj_lock *lock)
{
    if (!lock) return;
    /* Clear the holder's details first so a racing reader never blames us. */
    if (ftruncate(lock->fd, 0) != 0) {
        /* ignored: closing releases the lock regardless */
    }
    close(lock->fd);
    free(lock->path);
    free(lock);
}
