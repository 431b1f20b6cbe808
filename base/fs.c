/*
 * tune_fs.c - see tune_fs.h.
 *
 * Plain POSIX: the tuning database and the packs are small trees of small
 * files, so simple recursive code with explicit error paths is enough.
 * Atomic publication follows the cache's own recipe (cache/cache.c): a
 * uniquely named temp file beside the target, fsync, rename, fsync of the
 * directory.
 */
#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bool prism_fs_join(char *buf, size_t size, const char *a, const char *b) {
    size_t na = strlen(a);
    while (na > 1 && a[na - 1] == '/')
        na--;
    int n = snprintf(buf, size, "%.*s/%s", (int)na, a, b);
    if (n < 0 || (size_t)n >= size) {
        if (size)
            buf[0] = '\0';
        return false;
    }
    return true;
}

prism_status prism_fs_mkdir_p(const char *path, mode_t mode, char *err,
                              size_t err_size) {
    char buf[PRISM_PATH_MAX * 2];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return prism_errorf(err, err_size, PRISM_ERR_IO,
                            "cannot create directory '%s': bad length", path);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1;; p++) {
        bool end = *p == '\0';
        if (!end && *p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return prism_errorf(err, err_size, PRISM_ERR_IO,
                                "cannot create directory %s: %s", buf,
                                strerror(errno));
        if (end)
            break;
        *p = '/';
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return prism_errorf(err, err_size, PRISM_ERR_IO,
                            "%s exists and is not a directory", path);
    return PRISM_OK;
}

/* fsync of the directory holding path, so a rename survives a crash. */
static void sync_parent(const char *path) {
    char dir[PRISM_PATH_MAX * 2];
    prism_strlcpy(dir, path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        prism_strlcpy(dir, ".", sizeof dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

prism_status prism_fs_atomic_open(prism_fs_atomic *a, const char *path,
                                  char *err, size_t err_size) {
    memset(a, 0, sizeof *a);
    a->fd = -1;
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long salt = (unsigned long long)ts.tv_nsec ^
                              ((unsigned long long)(uintptr_t)a << 7);
    int n = snprintf(a->tmp, sizeof a->tmp, "%.*s.tmp.%ld.%016llx",
                     (int)dir_len, path, (long)getpid(), salt);
    if (n < 0 || (size_t)n >= sizeof a->tmp || strlen(path) >= sizeof a->path)
        return prism_errorf(err, err_size, PRISM_ERR_IO, "path too long: %s",
                            path);
    prism_strlcpy(a->path, path, sizeof a->path);
    a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (a->fd < 0)
        return prism_errorf(err, err_size, PRISM_ERR_IO, "cannot create %s: %s",
                            a->tmp, strerror(errno));
    return PRISM_OK;
}

prism_status prism_fs_atomic_write(prism_fs_atomic *a, const void *data,
                                   size_t size, char *err, size_t err_size) {
    const unsigned char *p = data;
    while (size > 0) {
        ssize_t w = write(a->fd, p, size);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return prism_errorf(err, err_size, PRISM_ERR_IO,
                                "cannot write %s: %s", a->path,
                                strerror(w < 0 ? errno : EIO));
        p += w;
        size -= (size_t)w;
    }
    return PRISM_OK;
}

prism_status prism_fs_atomic_commit(prism_fs_atomic *a, char *err,
                                    size_t err_size) {
    int rc = fsync(a->fd);
    int e = errno;
    if (close(a->fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    a->fd = -1;
    if (rc == 0 && rename(a->tmp, a->path) != 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0) {
        unlink(a->tmp);
        return prism_errorf(err, err_size, PRISM_ERR_IO, "cannot write %s: %s",
                            a->path, strerror(e));
    }
    sync_parent(a->path);
    return PRISM_OK;
}

void prism_fs_atomic_abort(prism_fs_atomic *a) {
    if (a->fd >= 0) {
        close(a->fd);
        unlink(a->tmp);
    }
    a->fd = -1;
}

prism_status prism_fs_write_atomic(const char *path, const void *data,
                                   size_t size, char *err, size_t err_size) {
    prism_fs_atomic a;
    prism_status st = prism_fs_atomic_open(&a, path, err, err_size);
    if (st == PRISM_OK)
        st = prism_fs_atomic_write(&a, data, size, err, err_size);
    if (st == PRISM_OK)
        return prism_fs_atomic_commit(&a, err, err_size);
    prism_fs_atomic_abort(&a);
    return st;
}

prism_status prism_fs_read_all(const char *path, size_t max_size, char **data,
                               size_t *size, bool *absent, char *err,
                               size_t err_size) {
    *data = NULL;
    *size = 0;
    if (absent)
        *absent = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (absent)
            *absent = errno == ENOENT;
        return prism_errorf(err, err_size, PRISM_ERR_IO, "cannot open %s: %s",
                            path, strerror(errno));
    }
    struct stat st;
    char *buf = NULL;
    prism_status status = PRISM_ERR_IO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        prism_errorf(err, err_size, PRISM_ERR_IO, "%s is not a regular file",
                     path);
        goto done;
    }
    if ((uint64_t)st.st_size > max_size) {
        prism_errorf(err, err_size, PRISM_ERR_IO,
                     "%s is %lld bytes; at most %zu expected", path,
                     (long long)st.st_size, max_size);
        goto done;
    }
    size_t want = (size_t)st.st_size, got = 0;
    buf = malloc(want + 1);
    if (!buf) {
        status = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                              "out of memory reading %s", path);
        goto done;
    }
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            prism_errorf(err, err_size, PRISM_ERR_IO, "cannot read %s: %s",
                         path, strerror(errno));
            goto done;
        }
        if (r == 0)
            break; /* shrank while reading: what we have is what there is */
        got += (size_t)r;
    }
    buf[got] = '\0';
    *data = buf;
    *size = got;
    buf = NULL;
    status = PRISM_OK;
done:
    free(buf);
    close(fd);
    return status;
}

prism_status prism_fs_rm_rf(const char *path, char *err, size_t err_size) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? PRISM_OK
                               : prism_errorf(err, err_size, PRISM_ERR_IO,
                                              "cannot remove %s: %s", path,
                                              strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return prism_errorf(err, err_size, PRISM_ERR_IO,
                                "cannot open %s: %s", path, strerror(errno));
        struct dirent *de;
        prism_status st2 = PRISM_OK;
        while (st2 == PRISM_OK && (de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char child[PRISM_PATH_MAX * 2];
            if (!prism_fs_join(child, sizeof child, path, de->d_name))
                st2 = prism_errorf(err, err_size, PRISM_ERR_IO,
                                   "path too long under %s", path);
            else
                st2 = prism_fs_rm_rf(child, err, err_size);
        }
        closedir(d);
        if (st2 != PRISM_OK)
            return st2;
        if (rmdir(path) != 0)
            return prism_errorf(err, err_size, PRISM_ERR_IO,
                                "cannot remove %s: %s", path, strerror(errno));
        return PRISM_OK;
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return prism_errorf(err, err_size, PRISM_ERR_IO, "cannot remove %s: %s",
                            path, strerror(errno));
    return PRISM_OK;
}

bool prism_fs_dir_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool empty = true;
    struct dirent *de;
    while (empty && (de = readdir(d)) != NULL)
        empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
    closedir(d);
    return empty;
}

static bool list_push(prism_fs_list *l, const char *rel,
                      const struct stat *st) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        prism_fs_item *v = realloc(l->items, cap * sizeof *v);
        if (!v)
            return false;
        l->items = v;
        l->cap = cap;
    }
    size_t len = strlen(rel) + 1;
    char *copy = malloc(len);
    if (!copy)
        return false;
    memcpy(copy, rel, len);
    prism_fs_item *it = &l->items[l->n++];
    it->path = copy;
    it->regular = S_ISREG(st->st_mode);
    it->dir = S_ISDIR(st->st_mode);
    it->size = it->regular ? (int64_t)st->st_size : 0;
    return true;
}

static prism_status walk(const char *root, const char *rel, prism_fs_list *out,
                         int depth, char *err, size_t err_size) {
    char dir[PRISM_PATH_MAX * 2];
    bool fits = *rel ? prism_fs_join(dir, sizeof dir, root, rel)
                     : strlen(root) < sizeof dir;
    if (!fits)
        return prism_errorf(err, err_size, PRISM_ERR_IO, "path too long: %s/%s",
                            root, rel);
    if (!*rel)
        prism_strlcpy(dir, root, sizeof dir);
    if (depth > 16)
        return prism_errorf(err, err_size, PRISM_ERR_IO,
                            "%s: directories nested too deep", dir);
    DIR *d = opendir(dir);
    if (!d)
        return prism_errorf(err, err_size, PRISM_ERR_IO, "cannot open %s: %s",
                            dir, strerror(errno));
    prism_status status = PRISM_OK;
    struct dirent *de;
    while (status == PRISM_OK && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char child_rel[PRISM_PATH_MAX], child[PRISM_PATH_MAX * 2];
        int n = *rel ? snprintf(child_rel, sizeof child_rel, "%s/%s", rel,
                                de->d_name)
                     : snprintf(child_rel, sizeof child_rel, "%s", de->d_name);
        struct stat st;
        if (n < 0 || (size_t)n >= sizeof child_rel ||
            !prism_fs_join(child, sizeof child, root, child_rel)) {
            status = prism_errorf(err, err_size, PRISM_ERR_IO,
                                  "path too long under %s", dir);
        } else if (lstat(child, &st) != 0) {
            status = prism_errorf(err, err_size, PRISM_ERR_IO,
                                  "cannot stat %s: %s", child, strerror(errno));
        } else if (!list_push(out, child_rel, &st)) {
            status = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                                  "out of memory listing %s", dir);
        } else if (S_ISDIR(st.st_mode)) {
            status = walk(root, child_rel, out, depth + 1, err, err_size);
        }
    }
    closedir(d);
    return status;
}

static int cmp_item(const void *a, const void *b) {
    return strcmp(((const prism_fs_item *)a)->path,
                  ((const prism_fs_item *)b)->path);
}

prism_status prism_fs_walk(const char *root, prism_fs_list *out, char *err,
                           size_t err_size) {
    memset(out, 0, sizeof *out);
    prism_status st = walk(root, "", out, 0, err, err_size);
    if (st != PRISM_OK) {
        prism_fs_list_free(out);
        return st;
    }
    if (out->n)
        qsort(out->items, out->n, sizeof *out->items, cmp_item);
    return PRISM_OK;
}

void prism_fs_list_free(prism_fs_list *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].path);
    free(l->items);
    memset(l, 0, sizeof *l);
}

prism_status prism_fs_sha256_file(const char *path, char hex[65], int64_t *size,
                                  char *err, size_t err_size) {
    hex[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return prism_errorf(err, err_size, PRISM_ERR_IO, "cannot open %s: %s",
                            path, strerror(errno));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    prism_status status = PRISM_OK;
    int64_t total = 0;
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        status = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                              "cannot start SHA-256");
        goto done;
    }
    unsigned char buf[65536];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            status = prism_errorf(err, err_size, PRISM_ERR_IO,
                                  "cannot read %s: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)r);
        total += r;
    }
    unsigned char digest[32];
    unsigned int len = 32;
    if (!EVP_DigestFinal_ex(md, digest, &len)) {
        status = prism_errorf(err, err_size, PRISM_ERR_INTERNAL,
                              "SHA-256 of %s failed", path);
        goto done;
    }
    prism_hex(digest, 32, hex);
    if (size)
        *size = total;
done:
    EVP_MD_CTX_free(md);
    close(fd);
    return status;
}

void prism_fs_utc_date(int64_t t, char *buf, size_t size) {
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
        prism_strlcpy(buf, "unknown", size);
}
