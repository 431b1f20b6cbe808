/*
 * cache.c - lookup, the memory layer, the per-key lock and publishing.
 *
 * Design, and why:
 *
 *  - Content-addressed.  An entry's name is the SHA-256 of everything that
 *    decides its bytes (cache_entry.c), so an entry is never stale: a new
 *    NVRTC, source or option set is a new key.  mtime and PATH are never
 *    consulted for staleness; mtime only records the last access for LRU
 *    eviction (cache_maint.c).
 *
 *  - Readers take no lock.  Entries appear only by rename(2) of a complete,
 *    fsync'd temp file from the same directory, so a reader sees either no
 *    file or a whole one; anything else (a disk that lied, a hand edit) is
 *    caught by the checksums and treated as a miss.
 *
 *  - One build per key across processes and threads.  A miss takes an OFD
 *    write lock (fcntl F_OFD_SETLK, polled: cache_lock.c) on
 *    DIR/<key>.lock, then looks again:
 *    whoever waited on the lock finds the entry the holder published.  OFD
 *    locks belong to the open file description, so two threads of one
 *    process that each open() the lock file exclude each other too (classic
 *    POSIX locks would not), and the kernel drops them when a process dies.
 *    The holder unlinks the lock file before closing it; a waiter that then
 *    gets the lock on the unlinked inode sees that the path no longer names
 *    its file and starts over, so there are never two live lock files.
 *
 *  - A wait is bounded.  A holder can be stopped (SIGSTOP, a debugger) or
 *    hung, and the kernel drops its lock only when it dies.  So a waiter
 *    warns after a few seconds, naming the key and the holder's pid (which
 *    the holder writes into the lock file), and after PRISM_LOCK_TIMEOUT
 *    builds the kernel itself.  It publishes what it built: entries
 *    appear only by rename of a complete file and every complete entry of
 *    a key is valid, so two publishers can only replace one good entry
 *    with another, and the next process finds the kernel without waiting.
 *
 *  - Degrade, never fail.  A cache dir that cannot be created, is not
 *    writable or is not trusted (owned by another account than us or root,
 *    or writable by group or others: cache_internal.h) leaves the cache in
 *    memory-only mode with one warning; so does an untrusted entry, which
 *    is skipped; a failed publish is a warning too.  Read-only layers (PRISM_CACHE_PATH) are searched after
 *    the writable dir and never written, not even a lock file.
 *
 *  - The memory layer (cache_mem.c) is a chained hash table on the key
 *    under one mutex; lookups copy the payload out so callers own what
 *    they get.
 *
 * The files of the cache depend one way: this file uses cache_maint.c
 * (eviction after a publish), which like cache_open.c uses only the lower
 * cache_mem.c, cache_lock.c and cache_entry.c.
 */
#include "cache/cache_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- warn-once ---------------------------------------------------------- */

void prism_cache__warn_once(prism_cache *cache, cache_layer *layer,
                            unsigned bit, const char *fmt, ...) {
    pthread_mutex_lock(&cache->lock);
    bool first = !(layer->warned & bit);
    layer->warned |= bit;
    pthread_mutex_unlock(&cache->lock);
    if (!first)
        return;
    char line[PRISM_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    prism_log(&cache->logger, PRISM_LOG_WARN, "%s", line);
}

/* ---- disk lookup -------------------------------------------------------- */

/* Looks for key in one layer.  A corrupt entry is logged (unless
 * *reported says this call already did) and counted; untrusted and
 * unreadable entries warn once per layer.  true: found and valid. */
static bool layer_get(prism_cache *cache, cache_layer *layer, bool writable,
                      const prism_cache_key *key, prism_cache_entry *out,
                      bool *reported) {
    char path[CACHE_PATH_BUF], name[CACHE_NAME_MAX], why[256];
    snprintf(name, sizeof name, "%s%s", key->hex, CACHE_ENTRY_EXT);
    if (!prism_cache__path_join(path, layer->dir, name))
        return false;
    unsigned flags = writable ? CACHE_READ_TOUCH : 0;
    switch (prism_cache__entry_read(path, key->bytes, flags, out, NULL, why,
                                    sizeof why)) {
    case CACHE_READ_OK:
        return true;
    case CACHE_READ_ABSENT:
        return false;
    case CACHE_READ_CORRUPT:
        if (*reported)
            return false;
        *reported = true;
        if (writable) { /* counted as replaced: build_and_publish does */
            pthread_mutex_lock(&cache->lock);
            cache->counters.corrupt++;
            pthread_mutex_unlock(&cache->lock);
            prism_log(&cache->logger, PRISM_LOG_WARN,
                      "corrupt kernel cache entry %s (%s); rebuilding and "
                      "replacing it",
                      path, why);
        } else {
            prism_log(&cache->logger, PRISM_LOG_WARN,
                      "corrupt kernel cache entry %s (%s) in the read-only "
                      "layer %s; ignoring it, it is never replaced there. "
                      "Fix: re-ship that cache ('prism cache verify' lists "
                      "its bad entries) or remove %s from PRISM_CACHE_PATH",
                      path, why, layer->dir, layer->dir);
        }
        return false;
    case CACHE_READ_UNTRUSTED:
        prism_cache__warn_once(
            cache, layer, CACHE_WARNED_UNTRUSTED,
            "ignoring kernel cache entry %s (%s); entries of %s that "
            "another account owns or can write are never loaded (a kernel "
            "runs with your rights)%s. Fix: %s",
            path, why, layer->dir,
            writable ? " and are rebuilt and replaced" : "",
            writable ? "find out who wrote them; delete them or let them be "
                       "replaced"
                     : "have the layer's owner chmod go-w and chown its "
                       "entries, or remove it from PRISM_CACHE_PATH");
        return false;
    case CACHE_READ_ERROR:
        prism_cache__warn_once(
            cache, layer, CACHE_WARNED_UNREADABLE,
            "cannot read kernel cache entry %s (%s); treating "
            "it as a miss",
            path, why);
        return false;
    }
    return false;
}

/* Writable dir, then (read_only_too) each read-only layer; counts a disk
 * hit.  *rw_reported carries "corruption of the writable entry already
 * logged" from the unlocked lookup to the re-check under the lock, so one
 * bad file gives one warning; read-only layers are searched once per call. */
static bool disk_get(prism_cache *cache, const prism_cache_key *key,
                     bool read_only_too, prism_cache_entry *out,
                     bool *rw_reported) {
    bool found = cache->rw.dir[0] &&
                 layer_get(cache, &cache->rw, true, key, out, rw_reported);
    for (int i = 0; !found && read_only_too && i < cache->n_ro; i++) {
        bool rep = false;
        found = layer_get(cache, &cache->ro[i], false, key, out, &rep);
    }
    if (found) {
        pthread_mutex_lock(&cache->lock);
        cache->counters.disk_hits++;
        pthread_mutex_unlock(&cache->lock);
        prism_cache__mem_put(cache, key->bytes, out);
    }
    return found;
}

/* ---- in-flight builds without a lock file ------------------------------ */

/* Without a writable dir there is no lock file; threads of this process
 * still build a key once, by waiting on the in-flight list. */
static void inflight_enter(prism_cache *cache, cache_inflight *me,
                           const unsigned char *key) {
    memcpy(me->key, key, 32);
    pthread_mutex_lock(&cache->lock);
    for (;;) {
        cache_inflight *f = cache->inflight;
        while (f && memcmp(f->key, key, 32) != 0)
            f = f->next;
        if (!f)
            break;
        pthread_cond_wait(&cache->inflight_done, &cache->lock);
    }
    me->next = cache->inflight;
    cache->inflight = me;
    pthread_mutex_unlock(&cache->lock);
}

static void inflight_leave(prism_cache *cache, cache_inflight *me) {
    pthread_mutex_lock(&cache->lock);
    for (cache_inflight **p = &cache->inflight; *p; p = &(*p)->next) {
        if (*p == me) {
            *p = me->next;
            break;
        }
    }
    pthread_cond_broadcast(&cache->inflight_done);
    pthread_mutex_unlock(&cache->lock);
}

/* ---- publishing --------------------------------------------------------- */

static void random_hex(char out[17]) {
    static _Atomic unsigned long counter;
    unsigned char r[8];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                     ((uint64_t)getpid() << 17) ^ (uint64_t)++counter;
        memcpy(r, &v, sizeof r);
    }
    prism_hex(r, sizeof r, out);
}

static bool write_full(int fd, const void *buf, size_t size) {
    const char *p = buf;
    while (size) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        size -= (size_t)n;
    }
    return true;
}

/* Temp file in the same dir, write, fsync, rename over the final name,
 * fsync the dir so the rename survives a crash.  On failure the temp file
 * is removed and err names the path. */
static prism_status publish(prism_cache *cache, const prism_cache_key *key,
                            const prism_cache_entry *e, char *err,
                            size_t err_size) {
    unsigned char header[CACHE_HEADER_SIZE];
    char tmp[CACHE_PATH_BUF], final[CACHE_PATH_BUF], name[CACHE_NAME_MAX],
        rnd[17];
    const char *what = "create";
    random_hex(rnd);
    snprintf(name, sizeof name, "%s%ld.%s", CACHE_TMP_PREFIX, (long)getpid(),
             rnd);
    prism_cache__path_join(tmp, cache->rw.dir, name);
    snprintf(name, sizeof name, "%s%s", key->hex, CACHE_ENTRY_EXT);
    prism_cache__path_join(final, cache->rw.dir, name);
    prism_cache__header_encode(key->bytes, &e->meta, e->payload,
                               e->payload_size, header);

    int fd =
        open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        goto fail;
    what = "write";
    if (!write_full(fd, header, sizeof header) ||
        !write_full(fd, e->payload, e->payload_size))
        goto fail;
    what = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    what = "close";
    int rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail;
    what = "rename";
    if (rename(tmp, final) != 0)
        goto fail;
    int dfd = open(cache->rw.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd); /* best effort: the entry is already complete */
        close(dfd);
    }
    return PRISM_OK;

fail:;
    int e_no = errno;
    if (fd >= 0)
        close(fd);
    (void)unlink(tmp);
    return prism_errorf(err, err_size, PRISM_ERR_IO,
                        "cannot %s cache entry %s: %s", what,
                        strcmp(what, "rename") ? tmp : final, strerror(e_no));
}

/* ---- waiting for another builder ---------------------------------------- */

typedef struct lock_waiter {
    prism_cache *cache;
    const prism_cache_key *key;
    const prism_cache_meta *meta; /* may be NULL */
    const char *lock_path;
} lock_waiter;

static const char *kernel_of(const prism_cache_meta *meta) {
    return meta && meta->kernel_name[0] ? meta->kernel_name : "?";
}

static void describe_pid(long pid, char *out, size_t size) {
    if (pid > 0)
        snprintf(out, size, "pid %ld", pid);
    else
        snprintf(out, size, "a process of unknown pid");
}

/* Said once per wait, a few seconds in: who we wait for and what next. */
static void lock_notice(void *user, long pid, int64_t waited_ms) {
    const lock_waiter *w = user;
    char who[48];
    describe_pid(pid, who, sizeof who);
    prism_log(&w->cache->logger, PRISM_LOG_WARN,
              "waiting %.1f s for %s, which builds kernel %s (key %s) and "
              "holds %s; after %lld s (PRISM_LOCK_TIMEOUT) this process "
              "builds it itself. If %s is stopped or hung, resume or end it",
              (double)waited_ms / 1000.0, who, kernel_of(w->meta), w->key->hex,
              w->lock_path, (long long)(w->cache->lock_timeout_ms / 1000), who);
}

/* Takes the per-key lock, waiting at most PRISM_LOCK_TIMEOUT; -1 when the
 * build goes ahead without it (already logged). */
static int lock_key(prism_cache *cache, const prism_cache_key *key,
                    const prism_cache_meta *meta, const char *lock_path) {
    lock_waiter w = {cache, key, meta, lock_path};
    long holder = -1;
    int64_t timeout = cache->lock_timeout_ms;
    int64_t notice = timeout / 2 < CACHE_LOCK_NOTICE_MS ? timeout / 2
                                                        : CACHE_LOCK_NOTICE_MS;
    cache_lock_wait wait = {timeout, notice, lock_notice, &w, &holder};
    int fd = prism_cache__lock_acquire(lock_path, true, &wait);
    if (fd >= 0)
        return fd;
    if (errno == ETIMEDOUT || errno == EAGAIN) {
        char who[48];
        describe_pid(holder, who, sizeof who);
        prism_log(&cache->logger, PRISM_LOG_WARN,
                  "%s still holds %s after %lld s (PRISM_LOCK_TIMEOUT); "
                  "building kernel %s (key %s) here without the lock and "
                  "publishing it atomically",
                  who, lock_path, (long long)(timeout / 1000), kernel_of(meta),
                  key->hex);
        return -1;
    }
    prism_cache__warn_once(cache, &cache->rw, CACHE_WARNED_LOCK,
                           "cannot lock %s (%s); building without the lock, "
                           "so other processes may build the same kernel. "
                           "Fix: make %s writable",
                           lock_path, strerror(errno), cache->rw.dir);
    return -1;
}

/* ---- lookup ------------------------------------------------------------- */

static bool key_valid(const prism_cache_key *key) {
    char hex[65];
    prism_hex(key->bytes, 32, hex);
    return memcmp(hex, key->hex, 65) == 0;
}

/* Calls the builder and publishes; runs under the per-key lock. */
static prism_status build_and_publish(prism_cache *cache,
                                      const prism_cache_key *key,
                                      const prism_cache_meta *meta_in,
                                      prism_cache_build_fn build, void *user,
                                      prism_cache_entry *out, char *err,
                                      size_t err_size) {
    void *payload = NULL;
    size_t size = 0;
    char *log = NULL;
    prism_cache_meta meta;
    if (meta_in)
        meta = *meta_in;
    else
        memset(&meta, 0, sizeof meta);
    if (err && err_size)
        err[0] = '\0';

    pthread_mutex_lock(&cache->lock);
    cache->counters.misses++;
    cache->counters.compiles++;
    pthread_mutex_unlock(&cache->lock);

    prism_status st = build(user, &payload, &size, &meta, &log, err, err_size);
    if (st == PRISM_OK && !payload && size) {
        st = prism_errorf(err, err_size, PRISM_ERR_INTERNAL,
                          "cache builder for key %s returned no payload",
                          key->hex);
    }
    if (st != PRISM_OK) {
        free(payload);
        out->log = log; /* the build log travels with the error */
        if (err && err_size && !err[0])
            prism_errorf(err, err_size, st,
                         "building kernel %s (key %s) "
                         "failed: %s",
                         meta.kernel_name, key->hex, prism_status_string(st));
        return st;
    }
    if (!payload && !(payload = malloc(1))) {
        free(log);
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory after building key %s", key->hex);
    }
    meta.created_unix = (int64_t)time(NULL);
    out->meta = meta;
    out->payload = payload;
    out->payload_size = size;
    out->log = log;

    pthread_mutex_lock(&cache->lock);
    cache->counters.compile_ms += meta.compile_ms;
    pthread_mutex_unlock(&cache->lock);

    if (cache->rw.dir[0]) {
        char why[PRISM_ERRMSG_MAX];
        if (publish(cache, key, out, why, sizeof why) != PRISM_OK) {
            prism_cache__warn_once(
                cache, &cache->rw, CACHE_WARNED_PUBLISH,
                "%s; the kernel stays in memory only. Fix: free "
                "space in or repair %s, or set PRISM_CACHE_DIR",
                why, cache->rw.dir);
        } else if (prism_cache__evict(cache, cache->max_bytes, key->bytes,
                                      false, NULL, why,
                                      sizeof why) != PRISM_OK) {
            prism_log(&cache->logger, PRISM_LOG_DEBUG, "%s", why);
        }
    }
    prism_cache__mem_put(cache, key->bytes, out);
    return PRISM_OK;
}

prism_status prism_cache_get(prism_cache *cache, const prism_cache_key *key,
                             const prism_cache_meta *meta_in,
                             prism_cache_build_fn build, void *build_user,
                             prism_cache_entry *out, bool *hit, char *err,
                             size_t err_size) {
    bool rw_reported = false;
    bool dummy_hit;
    if (!hit)
        hit = &dummy_hit;
    *hit = false;
    if (!cache || !key || !out)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_cache_get: NULL argument");
    memset(out, 0, sizeof *out);
    if (!key_valid(key))
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "prism_cache_get: the cache key was not computed "
                            "(prism_cache_key_compute failed)");

    if (prism_cache__mem_get(cache, key->bytes, out) ||
        disk_get(cache, key, true, out, &rw_reported)) {
        *hit = true;
        return PRISM_OK;
    }
    if (cache->disable_jit || !build) {
        pthread_mutex_lock(&cache->lock);
        cache->counters.misses++;
        pthread_mutex_unlock(&cache->lock);
        return prism_errorf(
            err, err_size, PRISM_ERR_CACHE_MISS,
            "kernel %s%s%s (key %s) is not in the kernel cache (%s%s) and %s. "
            "Fix: unset PRISM_JIT=off to compile it, or ship a cache that "
            "holds it via PRISM_CACHE_PATH",
            meta_in ? meta_in->kernel_name : "", meta_in ? " " : "",
            meta_in ? meta_in->arch : "", key->hex,
            cache->rw.dir[0] ? cache->rw.dir : "no writable dir",
            cache->n_ro ? " and read-only layers" : "",
            cache->disable_jit ? "JIT compilation is disabled"
                               : "no builder was given");
    }

    /* Miss: serialise builders of this key, then look again, since the one
     * we waited for has published it. */
    char lock_path[CACHE_PATH_BUF], name[CACHE_NAME_MAX];
    int lock_fd = -1;
    cache_inflight me;
    bool in_memory_only = !cache->rw.dir[0];
    if (in_memory_only) {
        inflight_enter(cache, &me, key->bytes);
    } else {
        snprintf(name, sizeof name, "%s%s", key->hex, CACHE_LOCK_EXT);
        prism_cache__path_join(lock_path, cache->rw.dir, name);
        lock_fd = lock_key(cache, key, meta_in, lock_path);
    }

    prism_status st = PRISM_OK;
    if (prism_cache__mem_get(cache, key->bytes, out) ||
        (!in_memory_only && disk_get(cache, key, false, out, &rw_reported)))
        *hit = true;
    else
        st = build_and_publish(cache, key, meta_in, build, build_user, out, err,
                               err_size);

    if (in_memory_only)
        inflight_leave(cache, &me);
    else
        prism_cache__lock_release(lock_path, lock_fd);
    return st;
}
