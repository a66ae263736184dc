/* test_lock.c - the workspace lock: exclusive, names its holder, released
 * by the kernel when the holder dies, never inherited by stage processes. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nightjar/lock.h"
#include "nightjar/util.h"
#include "support.h"

TestSuite(lock, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 20);

/* Forks a child that takes the lock, signals readiness through a pipe, and
 * then holds it until killed. */
static pid_t hold_in_child(void)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        nj_lock *l;
        if (nj_lock_acquire("lock", 0, &l, NULL) != 0) _exit(1);
        if (write(fds[1], "x", 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    char c;
    cr_assert_eq(read(fds[0], &c, 1), 1, "the child could not take the lock");
    close(fds[0]);
    close(fds[1]);
    return pid;
}

Test(lock, second_holder_is_refused_with_the_holders_pid)
{
    pid_t holder = hold_in_child();
    nj_lock *l = NULL;
    nj_err err = {0};
    cr_assert_eq(nj_lock_acquire("lock", 0, &l, &err), NJ_ELOCKED);
    cr_assert_null(l);
    char want[64];
    snprintf(want, sizeof(want), "another run (pid %d, started ", (int)holder);
    cr_assert(strstr(err.msg, want) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "holds 'lock'") != NULL, "%s", err.msg);
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
}

Test(lock, released_by_the_kernel_when_the_holder_dies)
{
    pid_t holder = hold_in_child();
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    nj_lock *l = NULL;
    nj_err err = {0};
    cr_assert_eq(nj_lock_acquire("lock", 0, &l, &err), 0, "%s", err.msg);
    nj_lock_release(l);
}

Test(lock, waits_for_the_holder_when_asked)
{
    pid_t holder = hold_in_child();
    pid_t killer = fork();
    if (killer == 0) {
        usleep(300 * 1000);
        kill(holder, SIGKILL);
        _exit(0);
    }
    nj_lock *l = NULL;
    nj_err err = {0};
    int64_t t0 = nj_time_mono_ms();
    cr_assert_eq(nj_lock_acquire("lock", 5000, &l, &err), 0, "%s", err.msg);
    cr_assert_geq(nj_time_mono_ms() - t0, 250);
    nj_lock_release(l);
    waitpid(holder, NULL, 0);
    waitpid(killer, NULL, 0);
}

Test(lock, the_lock_fd_is_close_on_exec)
{
    nj_lock *l = NULL;
    cr_assert_eq(nj_lock_acquire("lock", 0, &l, NULL), 0);
    /* Every fd the process has open that refers to "lock" must be CLOEXEC,
     * or a stage process would inherit and outlive the lock. */
    int checked = 0;
    for (int fd = 3; fd < 256; fd++) {
        char link[64], target[4096];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n < 0) continue;
        target[n] = '\0';
        if (!nj_str_ends(target, "/lock")) continue;
        cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "lock fd %d is inheritable", fd);
        checked++;
    }
    cr_assert_eq(checked, 1);
    nj_lock_release(l);
}
