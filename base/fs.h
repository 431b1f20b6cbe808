/*
 * tune_fs.h - the few file-system operations the tuning database and the
 * cache packs need, in one place so each is written (and audited) once.
 *
 * Every writer publishes atomically (temp file in the same directory,
 * fsync, rename, fsync of the directory): a reader sees the old file or
 * the new one, never half of one, even across a crash.  Walks never follow
 * symbolic links, so a pack or a tuning directory cannot be used to read
 * or delete files elsewhere.
 */
#ifndef PRISM_TUNE_FS_H
#define PRISM_TUNE_FS_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* "a/b" into buf; false (and buf "") when it does not fit. */
bool prism_fs_join(char *buf, size_t size, const char *a, const char *b);

/* mkdir -p; every directory it creates gets `mode`. */
prism_status prism_fs_mkdir_p(const char *path, mode_t mode, char *err,
                              size_t err_size);

/* A file being written: visible at `path` only after commit. */
typedef struct prism_fs_atomic {
    int fd;
    char tmp[PRISM_PATH_MAX + 64];
    char path[PRISM_PATH_MAX];
} prism_fs_atomic;

prism_status prism_fs_atomic_open(prism_fs_atomic *a, const char *path,
                                  char *err, size_t err_size);
prism_status prism_fs_atomic_write(prism_fs_atomic *a, const void *data,
                                   size_t size, char *err, size_t err_size);
/* fsync, rename over path, fsync of the directory; closes either way. */
prism_status prism_fs_atomic_commit(prism_fs_atomic *a, char *err,
                                    size_t err_size);
/* Closes and removes the temp file (after a failed write); idempotent. */
void prism_fs_atomic_abort(prism_fs_atomic *a);

/* Writes data to path atomically (mode 0644). */
prism_status prism_fs_write_atomic(const char *path, const void *data,
                                   size_t size, char *err, size_t err_size);

/* Reads a whole regular file (at most max_size bytes, else an error) into
 * a malloc'd buffer with a NUL after the data.  ENOENT gives
 * PRISM_ERR_IO with *absent set (absent may be NULL). */
prism_status prism_fs_read_all(const char *path, size_t max_size, char **data,
                               size_t *size, bool *absent, char *err,
                               size_t err_size);

/* rm -rf that never follows symbolic links; missing path is success. */
prism_status prism_fs_rm_rf(const char *path, char *err, size_t err_size);

/* True when path is an existing directory with no entries. */
bool prism_fs_dir_empty(const char *path);

/* One file found by prism_fs_walk: its path relative to the root (with
 * '/' separators) and what it is. */
typedef struct prism_fs_item {
    char *path;   /* malloc'd */
    bool regular; /* a regular file */
    bool dir;     /* a directory (not descended into when a link) */
    int64_t size;
} prism_fs_item;

typedef struct prism_fs_list {
    prism_fs_item *items;
    size_t n, cap;
} prism_fs_list;

/* Every entry under root (not root itself), depth first, sorted by path
 * with strcmp.  Symbolic links and other special files are listed with
 * regular = dir = false and are not followed. */
prism_status prism_fs_walk(const char *root, prism_fs_list *out, char *err,
                           size_t err_size);
void prism_fs_list_free(prism_fs_list *list);

/* SHA-256 of a file's bytes (streamed); hex gets 65 bytes. */
prism_status prism_fs_sha256_file(const char *path, char hex[65], int64_t *size,
                                  char *err, size_t err_size);

/* "2026-12-01T10:00:00Z" for t (UTC). */
void prism_fs_utc_date(int64_t t, char *buf, size_t size);

#endif
