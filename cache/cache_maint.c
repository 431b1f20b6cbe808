/*
 * cache_maint.c - eviction and the maintenance behind `prism cache ...`.
 *
 * Everything here works from a directory scan, never from an index file:
 * an index would need its own locking and could disagree with the files,
 * while a scan of a few thousand entries costs milliseconds next to the
 * seconds of the compile that triggers eviction.  The "last access" of an
 * entry is its mtime, which every disk hit refreshes (atime is unreliable
 * under relatime/noatime mounts).  Removing files while other processes
 * read them is safe: an open entry stays readable after unlink, and a
 * lookup that loses the race simply misses and rebuilds.
 */
#include "cache/cache_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct scan_item {
    char name[CACHE_NAME_MAX];
    bool regular;
    int64_t size;
    struct timespec mtime;
} scan_item;

typedef struct scan_list {
    scan_item *items;
    size_t n, cap;
    int64_t bytes; /* regular entries only */
} scan_list;

static void scan_free(scan_list *s) {
    free(s->items);
    memset(s, 0, sizeof *s);
}

static bool scan_push(scan_list *s, const char *name, const struct stat *st) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        scan_item *v = realloc(s->items, cap * sizeof *v);
        if (!v)
            return false;
        s->items = v;
        s->cap = cap;
    }
    scan_item *it = &s->items[s->n++];
    prism_strlcpy(it->name, name, sizeof it->name);
    it->regular = S_ISREG(st->st_mode);
    it->size = it->regular ? (int64_t)st->st_size : 0;
    it->mtime = st->st_mtim;
    s->bytes += it->size;
    return true;
}

/* Lists the *.prc names of dir.  With `cleanup`, also removes temp files
 * older than CACHE_TMP_MAX_AGE_S and, with `locks`, lock files nobody
 * holds, adding them to *removed.  Files vanishing mid-scan are skipped. */
static prism_status scan_dir(const char *dir, bool cleanup, bool locks,
                             scan_list *out, int *removed, char *err,
                             size_t err_size) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d)
        return prism_errorf(err, err_size, PRISM_ERR_IO,
                            "cannot read cache directory %s: %s", dir,
                            strerror(errno));
    time_t now = time(NULL);
    struct dirent *de;
    struct stat st;
    char path[CACHE_PATH_BUF];
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        bool entry = prism_cache__entry_name_parse(name, NULL);
        bool tmp = cleanup && prism_cache__tmp_name_is(name);
        bool lock = cleanup && locks && prism_cache__lock_name_is(name);
        if (!entry && !tmp && !lock)
            continue;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (entry) {
            if (!scan_push(out, name, &st)) {
                closedir(d);
                scan_free(out);
                return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                                    "out of memory scanning %s", dir);
            }
        } else if (tmp) {
            if (S_ISREG(st.st_mode) &&
                now - st.st_mtime > CACHE_TMP_MAX_AGE_S &&
                unlinkat(dirfd(d), name, 0) == 0 && removed)
                (*removed)++;
        } else if (prism_cache__path_join(path, dir, name)) {
            int fd = prism_cache__lock_acquire(path, false, NULL);
            if (fd >= 0) {
                prism_cache__lock_release(path, fd);
                if (removed)
                    (*removed)++;
            }
        }
    }
    closedir(d);
    return PRISM_OK;
}

static int by_access_oldest_first(const void *pa, const void *pb) {
    const scan_item *a = pa, *b = pb;
    if (a->mtime.tv_sec != b->mtime.tv_sec)
        return a->mtime.tv_sec < b->mtime.tv_sec ? -1 : 1;
    if (a->mtime.tv_nsec != b->mtime.tv_nsec)
        return a->mtime.tv_nsec < b->mtime.tv_nsec ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int by_access_newest_first(const void *pa, const void *pb) {
    return by_access_oldest_first(pb, pa);
}

static prism_status no_writable_dir(char *err, size_t err_size) {
    return prism_errorf(err, err_size, PRISM_ERR_CACHE,
                        "no writable kernel cache directory. Fix: set "
                        "PRISM_CACHE_DIR to a writable directory you own");
}

prism_status prism_cache__evict(prism_cache *cache, int64_t cap,
                                const unsigned char *keep, bool stale_locks,
                                int *removed, char *err, size_t err_size) {
    if (!cache->rw.dir[0])
        return no_writable_dir(err, err_size);
    scan_list s;
    prism_status st =
        scan_dir(cache->rw.dir, true, stale_locks, &s, removed, err, err_size);
    if (st != PRISM_OK)
        return st;
    if (s.bytes > cap) {
        qsort(s.items, s.n, sizeof *s.items, by_access_oldest_first);
        char path[CACHE_PATH_BUF];
        unsigned char key[32];
        for (size_t i = 0; i < s.n && s.bytes > cap; i++) {
            scan_item *it = &s.items[i];
            if (!it->regular)
                continue;
            if (keep && prism_cache__entry_name_parse(it->name, key) &&
                memcmp(key, keep, 32) == 0)
                continue;
            if (!prism_cache__path_join(path, cache->rw.dir, it->name))
                continue;
            int rc = unlink(path);
            if (rc == 0 || errno == ENOENT)
                s.bytes -= it->size;
            if (rc == 0) {
                if (removed)
                    (*removed)++;
                prism_log(&cache->logger, PRISM_LOG_DEBUG,
                          "evicted kernel cache entry %s (%lld bytes)", path,
                          (long long)it->size);
            }
        }
    }
    scan_free(&s);
    return PRISM_OK;
}

prism_status prism_cache_prune(prism_cache *cache, int64_t max_bytes,
                               int *removed, char *err, size_t err_size) {
    if (removed)
        *removed = 0;
    if (!cache)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_cache_prune: NULL cache");
    return prism_cache__evict(cache,
                              max_bytes > 0 ? max_bytes : cache->max_bytes,
                              NULL, true, removed, err, err_size);
}

prism_status prism_cache_clear(prism_cache *cache, int *removed, char *err,
                               size_t err_size) {
    if (removed)
        *removed = 0;
    if (!cache)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_cache_clear: NULL cache");
    if (!cache->rw.dir[0])
        return no_writable_dir(err, err_size);
    prism_cache__mem_clear(cache);
    scan_list s;
    prism_status st =
        scan_dir(cache->rw.dir, false, false, &s, NULL, err, err_size);
    if (st != PRISM_OK)
        return st;
    char path[CACHE_PATH_BUF];
    for (size_t i = 0; i < s.n; i++) {
        if (!prism_cache__path_join(path, cache->rw.dir, s.items[i].name))
            continue;
        if (unlink(path) == 0) {
            if (removed)
                (*removed)++;
        } else if (errno != ENOENT) {
            st = prism_errorf(err, err_size, PRISM_ERR_IO,
                              "cannot remove %s: %s. Fix: check the "
                              "permissions of %s",
                              path, strerror(errno), cache->rw.dir);
        }
    }
    scan_free(&s);
    return st;
}

/* The layers maintenance walks: the writable dir (if any), then read-only. */
static int layer_count(const prism_cache *cache) {
    return (cache->rw.dir[0] ? 1 : 0) + cache->n_ro;
}

static const char *layer_at(const prism_cache *cache, int i, bool *ro) {
    *ro = !(cache->rw.dir[0] && i == 0);
    return *ro ? cache->ro[i - (cache->rw.dir[0] ? 1 : 0)].dir : cache->rw.dir;
}

prism_status prism_cache_get_usage(prism_cache *cache, prism_cache_usage *out,
                                   char *err, size_t err_size) {
    if (!cache || !out)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_cache_get_usage: NULL argument");
    memset(out, 0, sizeof *out);
    for (int i = 0; i < layer_count(cache); i++) {
        bool ro;
        const char *dir = layer_at(cache, i, &ro);
        scan_list s;
        prism_status st = scan_dir(dir, false, false, &s, NULL, err, err_size);
        if (st != PRISM_OK)
            return st;
        *(ro ? &out->ro_entries : &out->entries) += (int64_t)s.n;
        *(ro ? &out->ro_bytes : &out->bytes) += s.bytes;
        scan_free(&s);
    }
    return PRISM_OK;
}

/* Names in a header are printed to terminals: no control characters. */
static void make_printable(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

static void format_time(int64_t t, char *buf, size_t size) {
    struct tm tm;
    time_t tt = (time_t)t;
    if (!localtime_r(&tt, &tm) ||
        strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, size, "%lld", (long long)t);
}

prism_status prism_cache_list(prism_cache *cache, prism_cache_line_fn fn,
                              void *user, char *err, size_t err_size) {
    if (!cache || !fn)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_cache_list: NULL argument");
    for (int i = 0; i < layer_count(cache); i++) {
        bool ro;
        const char *dir = layer_at(cache, i, &ro);
        scan_list s;
        prism_status st = scan_dir(dir, false, false, &s, NULL, err, err_size);
        if (st != PRISM_OK)
            return st;
        if (s.n)
            qsort(s.items, s.n, sizeof *s.items, by_access_newest_first);
        for (size_t j = 0; j < s.n; j++) {
            char path[CACHE_PATH_BUF], why[256], line[2 * CACHE_PATH_BUF + 512];
            char created[32], accessed[32], where[CACHE_PATH_BUF + 32] = "";
            unsigned char key[32];
            prism_cache_entry e;
            struct stat fst;
            const scan_item *it = &s.items[j];
            if (!prism_cache__entry_name_parse(it->name, key) ||
                !prism_cache__path_join(path, dir, it->name))
                continue;
            if (ro)
                snprintf(where, sizeof where, "  [read-only %s]", dir);
            cache_read_result r = prism_cache__entry_read(
                path, key, CACHE_READ_HEADER_ONLY, &e, &fst, why, sizeof why);
            format_time(it->mtime.tv_sec, accessed, sizeof accessed);
            if (r == CACHE_READ_OK) {
                make_printable(e.meta.config_name);
                make_printable(e.meta.kernel_name);
                make_printable(e.meta.arch);
                format_time(e.meta.created_unix, created, sizeof created);
                snprintf(line, sizeof line,
                         "%.12s  %-20s %-16s %-7s %10lld B  regs %3d  "
                         "created %s  accessed %s%s",
                         it->name, e.meta.config_name, e.meta.kernel_name,
                         e.meta.arch, (long long)it->size,
                         (int)e.meta.registers, created, accessed, where);
            } else if (r != CACHE_READ_ABSENT) {
                snprintf(line, sizeof line, "%.12s  BAD: %s (%s)%s", it->name,
                         path, why, where);
            } else {
                continue; /* removed since the scan */
            }
            prism_cache_entry_free(&e);
            fn(user, line);
        }
        scan_free(&s);
    }
    return PRISM_OK;
}

/* The error line of a verify that found bad entries: what is bad where,
 * and a fix per kind of layer ('prism cache clear' never touches a
 * read-only one). */
static prism_status verify_failed(int rw_bad, int ro_bad, int checked,
                                  const char *ro_dir, int ro_dirs, char *err,
                                  size_t err_size) {
    char ro_part[CACHE_PATH_BUF + 256] = "";
    if (ro_bad)
        snprintf(ro_part, sizeof ro_part,
                 "%s%d in the read-only layer %s%s, which 'prism cache "
                 "clear' does not touch (re-ship that cache or remove it "
                 "from PRISM_CACHE_PATH)",
                 rw_bad ? "; " : "", ro_bad, ro_dir,
                 ro_dirs > 1 ? " and others" : "");
    return prism_errorf(err, err_size, PRISM_ERR_CACHE,
                        "%d of %d kernel cache entries failed verification. "
                        "Fix: %s%s",
                        rw_bad + ro_bad, checked,
                        rw_bad ? "delete the writable directory's bad entries "
                                 "(or run 'prism cache clear'); they are "
                                 "rebuilt on next use"
                               : "",
                        ro_part);
}

prism_status prism_cache_verify(prism_cache *cache, prism_cache_line_fn fn,
                                void *user, int *bad, char *err,
                                size_t err_size) {
    int rw_bad = 0, ro_bad = 0, ro_dirs = 0, n_checked = 0;
    const char *ro_dir = NULL;
    if (bad)
        *bad = 0;
    if (!cache)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_cache_verify: NULL cache");
    for (int i = 0; i < layer_count(cache); i++) {
        bool ro;
        const char *dir = layer_at(cache, i, &ro);
        int layer_bad = 0;
        scan_list s;
        prism_status st = scan_dir(dir, false, false, &s, NULL, err, err_size);
        if (st != PRISM_OK)
            return st;
        for (size_t j = 0; j < s.n; j++) {
            char path[CACHE_PATH_BUF], why[256], line[CACHE_PATH_BUF + 512];
            unsigned char key[32];
            prism_cache_entry e;
            if (!prism_cache__entry_name_parse(s.items[j].name, key) ||
                !prism_cache__path_join(path, dir, s.items[j].name))
                continue;
            cache_read_result r = prism_cache__entry_read(
                path, key, 0, &e, NULL, why, sizeof why);
            prism_cache_entry_free(&e);
            if (r == CACHE_READ_ABSENT)
                continue;
            n_checked++;
            if (r == CACHE_READ_OK)
                continue;
            layer_bad++;
            if (fn) {
                snprintf(line, sizeof line, "%s: %s%s", path, why,
                         ro ? " (read-only layer)" : "");
                fn(user, line);
            }
        }
        scan_free(&s);
        if (ro && layer_bad && !ro_dirs++)
            ro_dir = dir;
        *(ro ? &ro_bad : &rw_bad) += layer_bad;
    }
    if (bad)
        *bad = rw_bad + ro_bad;
    if (rw_bad + ro_bad)
        return verify_failed(rw_bad, ro_bad, n_checked, ro_dir ? ro_dir : "",
                             ro_dirs, err, err_size);
    return PRISM_OK;
}

static int by_name(const void *pa, const void *pb) {
    return strcmp(((const scan_item *)pa)->name, ((const scan_item *)pb)->name);
}

prism_status prism_cache_inspect_dir(const char *dir, prism_cache_inspect_fn fn,
                                     void *user, char *err, size_t err_size) {
    if (!dir || !fn)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_cache_inspect_dir: NULL argument");
    scan_list s;
    prism_status st = scan_dir(dir, false, false, &s, NULL, err, err_size);
    if (st != PRISM_OK)
        return st;
    if (s.n)
        qsort(s.items, s.n, sizeof *s.items, by_name);
    for (size_t j = 0; j < s.n; j++) {
        char path[CACHE_PATH_BUF];
        unsigned char key[32];
        prism_cache_inspected out;
        prism_cache_entry e;
        if (!prism_cache__entry_name_parse(s.items[j].name, key) ||
            !prism_cache__path_join(path, dir, s.items[j].name))
            continue;
        memset(&out, 0, sizeof out);
        prism_hex(key, 32, out.key_hex);
        out.size = s.items[j].size;
        cache_read_result r =
            prism_cache__entry_read(path, key, CACHE_READ_HEADER_ONLY, &e,
                                    NULL, out.why, sizeof out.why);
        if (r == CACHE_READ_ABSENT)
            continue; /* removed since the scan */
        if (r == CACHE_READ_OK) {
            out.meta = e.meta;
            make_printable(out.meta.config_name);
            make_printable(out.meta.kernel_name);
            make_printable(out.meta.arch);
            make_printable(out.meta.compiler);
            make_printable(out.meta.prism_version);
        }
        out.state = r == CACHE_READ_OK          ? PRISM_CACHE_ENTRY_OK
                    : r == CACHE_READ_UNTRUSTED ? PRISM_CACHE_ENTRY_UNTRUSTED
                                                : PRISM_CACHE_ENTRY_BAD;
        prism_cache_entry_free(&e);
        fn(user, &out);
    }
    scan_free(&s);
    return PRISM_OK;
}
