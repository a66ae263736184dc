/* lock.h - the workspace run lock.
 *
 * A run holds an exclusive kernel flock() on <workspace>/lock for its whole
 * duration. The kernel drops it when the process dies, however it dies, so
 * no lock file ever needs manual removal. The file is opened O_CLOEXEC so a
 * stage process can never inherit (and outlive the runner with) the lock.
 * The holder writes its pid and start time inside, only for the message a
 * second runner prints:
 *     another run (pid 4242, started 2026-11-23 02:00:01) holds '/srv/x/.nightjar/lock'
 */
#ifndef NJ_LOCK_H
#define NJ_LOCK_H

#include <stdint.h>

#include "nightjar/err.h"

typedef struct nj_lock nj_lock;

/* Takes the lock at `path`, waiting up to `wait_ms` (0: not at all, <0:
 * forever) for the holder to finish. Returns 0 with *out set (release with
 * nj_lock_release), NJ_ELOCKED with the message above, or -errno. */
int nj_lock_acquire(const char *path, int64_t wait_ms, nj_lock **out, nj_err *err);
void nj_lock_release(nj_lock *lock); /* NULL is fine */

#endif
