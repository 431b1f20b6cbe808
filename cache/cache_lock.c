/*
 * cache_lock.c - the per-key lock file of the writable directory.
 *
 * One build per key across processes: a miss takes an OFD write lock on
 * DIR/<key>.lock (cache.c says why OFD locks and why the holder unlinks the
 * file before closing it); maintenance (cache_maint.c) takes the same lock
 * to tell a stale lock file from a held one.
 *
 * A wait is bounded and can be reported: the lock is polled with
 * F_OFD_SETLK (no signals, nothing a library may not do) with a backoff
 * from 1 to 50 ms, so the waiter can tell the caller once it has waited a
 * while and give up at a deadline.  The holder writes its pid into the
 * lock file, because F_OFD_GETLK reports -1 for the pid of an OFD lock and
 * a message that only says "someone" cannot be acted on.
 */
#include "cache/cache_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* One non-blocking attempt; 0, or -1 with errno (EAGAIN: held). */
static int try_lock(int fd) {
    struct flock fl;
    memset(&fl, 0, sizeof fl); /* l_pid must be 0 for OFD locks */
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    int rc;
    do
        rc = fcntl(fd, F_OFD_SETLK, &fl);
    while (rc != 0 && errno == EINTR);
    if (rc != 0 && errno == EACCES)
        errno = EAGAIN;
    return rc;
}

/* Records our pid in the lock file we now hold (best effort: a waiter that
 * cannot read it says "pid unknown"). */
static void write_pid(int fd) {
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, text, (size_t)n, 0) != n)
        (void)ftruncate(fd, 0);
}

long prism_cache__lock_holder(int fd) {
    char text[32];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    char *end;
    long pid = strtol(text, &end, 10);
    return pid > 0 && (*end == '\n' || *end == '\0') ? pid : -1;
}

/* Polls fd's lock until it is ours (0) or the wait runs out (-1, errno
 * EAGAIN without a wait, ETIMEDOUT at the deadline). */
static int lock_polling(int fd, const cache_lock_wait *wait, int64_t start,
                        bool *noticed) {
    int64_t delay = 1;
    for (;;) {
        if (try_lock(fd) == 0)
            return 0;
        if (errno != EAGAIN)
            return -1;
        if (!wait || wait->timeout_ms <= 0)
            return -1;
        int64_t waited = now_ms() - start;
        if (!*noticed && waited >= wait->notice_ms && wait->notice) {
            *noticed = true;
            wait->notice(wait->user, prism_cache__lock_holder(fd), waited);
        }
        if (waited >= wait->timeout_ms) {
            errno = ETIMEDOUT;
            return -1;
        }
        int64_t left = wait->timeout_ms - waited;
        sleep_ms(delay < left ? delay : left);
        delay = delay * 2 > 50 ? 50 : delay * 2;
    }
}

int prism_cache__lock_acquire(const char *path, bool create,
                              const cache_lock_wait *wait) {
    int64_t start = now_ms();
    bool noticed = false;
    for (;;) {
        int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0);
        int fd = open(path, flags, 0600);
        if (fd < 0)
            return -1;
        if (lock_polling(fd, wait, start, &noticed) != 0) {
            int e = errno;
            if ((e == ETIMEDOUT || e == EAGAIN) && wait && wait->holder)
                *wait->holder = prism_cache__lock_holder(fd);
            close(fd);
            errno = e;
            return -1;
        }
        /* The previous holder may have unlinked this file while we waited:
         * only the file the path names now is the lock. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            write_pid(fd);
            return fd;
        }
        close(fd);
        if (!create) {
            errno = ENOENT;
            return -1;
        }
    }
}

void prism_cache__lock_release(const char *path, int fd) {
    if (fd < 0)
        return;
    (void)unlink(path);
    close(fd);
}
