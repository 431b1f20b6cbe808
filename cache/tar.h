/*
 * tar.h - POSIX ustar archives, written and read without external tools.
 *
 * Packs ship as one file so they can be copied and checksummed as a unit;
 * ustar is what every tar(1) extracts.  Only what packs need: regular
 * files and directories, names up to 255 bytes (prefix + name), sizes
 * below 8 GiB, no compression.
 */
#ifndef PRISM_TAR_H
#define PRISM_TAR_H

#include "base/base.h"

#include <stdbool.h>
#include <stdint.h>

/* Archives every file and directory under dir (paths relative to dir,
 * sorted; `first`, when a file of dir, goes first) into out_path,
 * atomically.  mtime is stamped on every member (reproducible packs).
 * Symbolic links and special files are an error. */
prism_status prism_tar_write_dir(const char *dir, const char *first,
                                 const char *out_path, int64_t mtime, char *err,
                                 size_t err_size);

/* One member of an archive being read: its name (no trailing '/' for
 * directories), ustar type flag ('0' file, '5' directory, others as
 * found) and, for files, the whole content. */
typedef prism_status (*prism_tar_member_fn)(void *user, const char *name,
                                            char type,
                                            const unsigned char *data,
                                            size_t size, char *err,
                                            size_t err_size);

/* Reads an archive member by member.  A header with a bad checksum or
 * magic, a malformed size or a truncated member is an error (the archive
 * itself has been altered); the callback's error stops the walk. */
prism_status prism_tar_read(const char *path, prism_tar_member_fn fn,
                            void *user, char *err, size_t err_size);

#endif
