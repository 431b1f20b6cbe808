/*
 * tar.c - see tar.h.  The ustar header (POSIX.1-1988, 512 bytes):
 *
 *   off  size  field              off  size  field
 *     0   100  name                257     6  magic "ustar\0"
 *   100     8  mode (octal)        263     2  version "00"
 *   108     8  uid                 265    32  uname
 *   116     8  gid                 297    32  gname
 *   124    12  size (octal)        329     8  devmajor
 *   136    12  mtime (octal)       337     8  devminor
 *   148     8  checksum            345   155  prefix
 *   156     1  type flag           500    12  (padding)
 *   157   100  link name
 *
 * The checksum is the sum of the header's bytes with the checksum field
 * read as spaces.  Data follows in 512-byte blocks; two zero blocks end
 * the archive.
 */
#include "cache/tar.h"

#include "base/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK 512
#define MAX_MEMBER ((size_t)1 << 32) /* a pack member is a cubin or a text */

static unsigned checksum(const unsigned char *h) {
    unsigned sum = 0;
    for (int i = 0; i < BLOCK; i++)
        sum += (i >= 148 && i < 156) ? ' ' : h[i];
    return sum;
}

/* Splits name into prefix/name fields; false when it cannot fit. */
static bool put_name(unsigned char *h, const char *name) {
    size_t n = strlen(name);
    if (n <= 100) {
        memcpy(h, name, n);
        return true;
    }
    for (size_t cut = n - 1; cut > 0; cut--) {
        if (name[cut] != '/' || cut > 155 || n - cut - 1 > 100)
            continue;
        memcpy(h + 345, name, cut);
        memcpy(h, name + cut + 1, n - cut - 1);
        return true;
    }
    return false;
}

/* value as width-1 zero-padded octal digits and a NUL; false if too big */
static bool put_octal(unsigned char *f, int width, uint64_t value) {
    for (int i = width - 2; i >= 0; i--) {
        f[i] = (unsigned char)('0' + (value & 7));
        value >>= 3;
    }
    f[width - 1] = '\0';
    return value == 0;
}

static bool make_header(unsigned char *h, const char *name, char type,
                        uint64_t size, int64_t mtime) {
    memset(h, 0, BLOCK);
    if (!put_name(h, name) || size >= ((uint64_t)1 << 33))
        return false;
    if (!put_octal(h + 100, 8, type == '5' ? 0755u : 0644u) ||
        !put_octal(h + 108, 8, 0) || !put_octal(h + 116, 8, 0) ||
        !put_octal(h + 124, 12, size) ||
        !put_octal(h + 136, 12, (uint64_t)(mtime > 0 ? mtime : 0)))
        return false;
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memcpy(h + 265, "root", 4);
    memcpy(h + 297, "root", 4);
    put_octal(h + 148, 7, checksum(h)); /* 6 digits, NUL, then a space */
    h[155] = ' ';
    return true;
}

static bool read_full(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static prism_status add_file(prism_fs_atomic *out, const char *root,
                             const char *rel, int64_t mtime, char *err,
                             size_t err_size) {
    char path[PRISM_PATH_MAX * 2];
    unsigned char buf[64 * BLOCK];
    if (!prism_fs_join(path, sizeof path, root, rel))
        return prism_errorf(err, err_size, PRISM_ERR_IO, "path too long: %s",
                            rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return prism_errorf(err, err_size, PRISM_ERR_IO, "cannot open %s: %s",
                            path, strerror(errno));
    prism_status st = PRISM_OK;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0 || lseek(fd, 0, SEEK_SET) != 0 ||
        !make_header(buf, rel, '0', (uint64_t)size, mtime)) {
        st = prism_errorf(err, err_size, PRISM_ERR_IO,
                          "%s cannot be archived (size or name length)", path);
        goto done;
    }
    if ((st = prism_fs_atomic_write(out, buf, BLOCK, err, err_size)) !=
        PRISM_OK)
        goto done;
    for (off_t left = size; left > 0;) {
        /* sizeof buf is a multiple of BLOCK: only the last chunk pads */
        size_t want = left < (off_t)sizeof buf ? (size_t)left : sizeof buf;
        size_t padded = (want + BLOCK - 1) / BLOCK * BLOCK;
        if (!read_full(fd, buf, want)) {
            st = prism_errorf(err, err_size, PRISM_ERR_IO,
                              "%s changed while being archived", path);
            goto done;
        }
        memset(buf + want, 0, padded - want);
        if ((st = prism_fs_atomic_write(out, buf, padded, err, err_size)) !=
            PRISM_OK)
            goto done;
        left -= (off_t)want;
    }
done:
    close(fd);
    return st;
}

prism_status prism_tar_write_dir(const char *dir, const char *first,
                                 const char *out_path, int64_t mtime, char *err,
                                 size_t err_size) {
    prism_fs_list list;
    prism_status st = prism_fs_walk(dir, &list, err, err_size);
    if (st != PRISM_OK)
        return st;
    prism_fs_atomic out;
    if ((st = prism_fs_atomic_open(&out, out_path, err, err_size)) !=
        PRISM_OK) {
        prism_fs_list_free(&list);
        return st;
    }
    unsigned char h[BLOCK];
    for (size_t i = 0; first && i < list.n && st == PRISM_OK; i++)
        if (list.items[i].regular && !strcmp(list.items[i].path, first))
            st = add_file(&out, dir, first, mtime, err, err_size);
    for (size_t i = 0; i < list.n && st == PRISM_OK; i++) {
        const prism_fs_item *it = &list.items[i];
        if (first && !strcmp(it->path, first) && it->regular)
            continue;
        if (it->dir) {
            char name[PRISM_PATH_MAX];
            snprintf(name, sizeof name, "%s/", it->path);
            st = make_header(h, name, '5', 0, mtime)
                     ? prism_fs_atomic_write(&out, h, BLOCK, err, err_size)
                     : prism_errorf(err, err_size, PRISM_ERR_IO,
                                    "name too long to archive: %s", it->path);
        } else if (it->regular) {
            st = add_file(&out, dir, it->path, mtime, err, err_size);
        } else {
            st = prism_errorf(err, err_size, PRISM_ERR_IO,
                              "%s/%s is not a regular file or directory; a "
                              "pack holds nothing else",
                              dir, it->path);
        }
    }
    memset(h, 0, sizeof h);
    for (int i = 0; i < 2 && st == PRISM_OK; i++)
        st = prism_fs_atomic_write(&out, h, BLOCK, err, err_size);
    prism_fs_list_free(&list);
    if (st != PRISM_OK) {
        prism_fs_atomic_abort(&out);
        return st;
    }
    return prism_fs_atomic_commit(&out, err, err_size);
}

/* ---- reading ------------------------------------------------------------- */

static bool parse_octal(const unsigned char *f, size_t n, uint64_t *out) {
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    size_t digits = 0;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (v >> 60)
            return false;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    for (; i < n; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return false;
    *out = v;
    return digits > 0;
}

static bool all_zero(const unsigned char *h) {
    for (int i = 0; i < BLOCK; i++)
        if (h[i])
            return false;
    return true;
}

prism_status prism_tar_read(const char *path, prism_tar_member_fn fn,
                            void *user, char *err, size_t err_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return prism_errorf(err, err_size, PRISM_ERR_IO, "cannot open %s: %s",
                            path, strerror(errno));
    prism_status st = PRISM_OK;
    unsigned char h[BLOCK];
    unsigned char *data = NULL;
    for (long long member = 0;; member++) {
        if (!read_full(fd, h, BLOCK)) {
            st = prism_errorf(err, err_size, PRISM_ERR_IO,
                              "%s: truncated (no end-of-archive blocks)", path);
            break;
        }
        if (all_zero(h))
            break; /* end of archive */
        uint64_t sum, size;
        if (!parse_octal(h + 148, 8, &sum) || sum != checksum(h) ||
            memcmp(h + 257, "ustar", 5) || !parse_octal(h + 124, 12, &size) ||
            size > MAX_MEMBER) {
            st = prism_errorf(err, err_size, PRISM_ERR_IO,
                              "%s: header of member %lld is corrupt "
                              "(checksum, magic or size)",
                              path, member + 1);
            break;
        }
        char name[PRISM_PATH_MAX];
        char prefix[156] = "", base[101] = "";
        memcpy(prefix, h + 345, 155);
        memcpy(base, h, 100);
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "/" : "", base);
        size_t len = strlen(name);
        while (len > 0 && name[len - 1] == '/')
            name[--len] = '\0';
        char type = h[156] ? (char)h[156] : '0';
        size_t padded = ((size_t)size + BLOCK - 1) / BLOCK * BLOCK;
        free(data);
        data = malloc(padded ? padded : 1);
        if (!data) {
            st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                              "out of memory reading %s", path);
            break;
        }
        if (padded && !read_full(fd, data, padded)) {
            st = prism_errorf(err, err_size, PRISM_ERR_IO,
                              "%s: member %s is truncated", path, name);
            break;
        }
        if ((st = fn(user, name, type, data, (size_t)size, err, err_size)) !=
            PRISM_OK)
            break;
    }
    free(data);
    close(fd);
    return st;
}
