/*
 * cache_lock.c - the per-key lock file of the writable directory.
 *
 * One build per key across processes: a miss takes an OFD write lock on
 * DIR/<key>.lock (cache.c says why OFD locks and why the holder unlinks the
 * file before closing it); maintenance (cache_maint.c) takes the same lock
 * to tell a stale lock file from a held one.
 */
#include "cache/cache_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int prism_cache__lock_acquire(const char *path, bool create, bool wait) {
    for (;;) {
        int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0);
        int fd = open(path, flags, 0600);
        if (fd < 0)
            return -1;
        struct flock fl;
        memset(&fl, 0, sizeof fl); /* l_pid must be 0 for OFD locks */
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        int rc;
        do
            rc = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
        while (rc != 0 && errno == EINTR);
        if (rc != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        /* The previous holder may have unlinked this file while we waited:
         * only the file the path names now is the lock. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            return fd;
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
