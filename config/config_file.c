/*
 * config_file.c - reads a config file into memory for the loader.
 *
 * Kept apart from the YAML code because its failures are of another kind:
 * they are PRISM_ERR_IO, name the path and carry the errno text, and have
 * no line or column.  A config is small, so anything over 1 MiB is refused
 * before parsing (a wrong path pointing at a model checkpoint should fail
 * at once, not after reading gigabytes).  Only regular files are read: a
 * FIFO or a device is refused before the first read (it is opened without
 * blocking, so a FIFO with no writer cannot hang the caller), and a path
 * longer than PRISM_PATH_MAX is refused rather than cut short.
 */
#include "config/config_rules.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static prism_status io_error(const char *path, const char *what, int errnum,
                             char *err, size_t err_size) {
    char text[128], name[PRISM_PATH_MAX];
    prism_config_one_line(path, name, sizeof name);
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    const char *msg = strerror_r(errnum, text, sizeof text);
#else
    const char *msg = strerror_r(errnum, text, sizeof text) ? "error" : text;
#endif
    return prism_errorf(err, err_size, PRISM_ERR_IO,
                        "%s: cannot %s the config: %s; check the path and "
                        "its permissions",
                        name, what, msg);
}

static prism_status too_large(const char *path, char *err, size_t err_size) {
    char name[PRISM_PATH_MAX];
    prism_config_one_line(path, name, sizeof name);
    return prism_errorf(err, err_size, PRISM_ERR_IO,
                        "%s: the file is larger than 1 MiB; a config is at "
                        "most %d bytes, check the path",
                        name, PRISM_CONFIG_MAX_BYTES);
}

static prism_status no_memory(const char *path, char *err, size_t err_size) {
    char name[PRISM_PATH_MAX];
    prism_config_one_line(path, name, sizeof name);
    return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                        "%s: out of memory reading the config", name);
}

static prism_status not_regular(const char *path, const struct stat *st,
                                char *err, size_t err_size) {
    char name[PRISM_PATH_MAX];
    prism_config_one_line(path, name, sizeof name);
    return prism_errorf(err, err_size, PRISM_ERR_IO,
                        "%s: not a regular file (%s); a config must be a "
                        "file, check the path",
                        name,
                        S_ISFIFO(st->st_mode)   ? "a FIFO"
                        : S_ISCHR(st->st_mode)  ? "a character device"
                        : S_ISBLK(st->st_mode)  ? "a block device"
                        : S_ISSOCK(st->st_mode) ? "a socket"
                                                : "a special file");
}

/* Reads to the end, giving up past PRISM_CONFIG_MAX_BYTES. */
static prism_status read_fd(int fd, const char *path, char **out,
                            size_t *length, char *err, size_t err_size) {
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    if (!buf)
        return no_memory(path, err, err_size);
    for (;;) {
        if (used == cap) {
            char *bigger =
                cap > PRISM_CONFIG_MAX_BYTES ? NULL : realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                return cap > PRISM_CONFIG_MAX_BYTES
                           ? too_large(path, err, err_size)
                           : no_memory(path, err, err_size);
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + used, cap - used);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            free(buf);
            return io_error(path, "read", e, err, err_size);
        }
        if (got == 0)
            break;
        used += (size_t)got;
    }
    if (used > PRISM_CONFIG_MAX_BYTES) {
        free(buf);
        return too_large(path, err, err_size);
    }
    *out = buf;
    *length = used;
    return PRISM_OK;
}

static prism_status read_file(const char *path, char **out, size_t *length,
                              char *err, size_t err_size) {
    struct stat st;
    if (strlen(path) >= PRISM_PATH_MAX)
        return io_error(path, "open", ENAMETOOLONG, err, err_size);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return io_error(path, "open", errno, err, err_size);
    prism_status status;
    if (fstat(fd, &st) != 0)
        status = io_error(path, "stat", errno, err, err_size);
    else if (S_ISDIR(st.st_mode))
        status = io_error(path, "read", EISDIR, err, err_size);
    else if (!S_ISREG(st.st_mode))
        status = not_regular(path, &st, err, err_size);
    else if (st.st_size > PRISM_CONFIG_MAX_BYTES)
        status = too_large(path, err, err_size);
    else
        status = read_fd(fd, path, out, length, err, err_size);
    close(fd);
    return status;
}

prism_status prism_config_load_file(const char *path, prism_config *cfg,
                                    char *err, size_t err_size) {
    char *text = NULL;
    size_t length = 0;
    if (!path || !cfg)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_config_load_file: %s is NULL",
                            path ? "cfg" : "path");
    prism_status status = read_file(path, &text, &length, err, err_size);
    if (status != PRISM_OK)
        return status;
    /* The path names the config in messages and in cfg->source. */
    status = prism_config_load_string(text, length, path, cfg, err, err_size);
    free(text);
    return status;
}
