/*
 * cache_open.c - where the cache lives: opening, closing, accessors.
 *
 * The writable directory is resolved once, at open, from options->dir,
 * $PRISM_CACHE_DIR, $XDG_CACHE_HOME/prism or ~/.cache/prism, created with
 * mode 0700 and checked: it must be a directory we can write, owned by
 * us or root and writable by no other account (the trust rule of
 * cache_entry.c).  Any failure is one warning and memory-only mode, never
 * an error, because a program that can compile in memory should not fail
 * for want of a cache; an untrusted directory is then neither read nor
 * written (not even a lock file).
 * Read-only layers ($PRISM_CACHE_PATH) get the same checks (minus write
 * access); a missing one is skipped quietly since shipped caches are
 * optional.  Only out of memory makes prism_cache_open() fail.
 */
#include "cache/cache_internal.h"
#include "base/parse.h"

#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* malloc'd "a/b" with trailing slashes of a dropped ("/" stays "/"). */
static char *join_dup(const char *a, const char *b) {
    size_t na = strlen(a), nb = b ? strlen(b) : 0;
    while (na > 1 && a[na - 1] == '/')
        na--;
    char *d = malloc(na + nb + 2);
    if (!d)
        return NULL;
    memcpy(d, a, na);
    d[na] = '\0';
    if (b) {
        d[na] = '/';
        memcpy(d + na + 1, b, nb + 1);
    }
    return d;
}

/* ---- locating and preparing the writable directory ---------------------- */

/* Home directory from $HOME, else the password database. */
static char *home_dir(void) {
    const char *h = getenv("HOME");
    if (h && *h)
        return prism_cache__strdup(h);
    struct passwd pw, *res = NULL;
    size_t size = 4096;
    char *result = NULL;
    for (;;) {
        char *buf = malloc(size);
        if (!buf)
            return NULL;
        int rc = getpwuid_r(geteuid(), &pw, buf, size, &res);
        if (rc == ERANGE && size < (1u << 20)) {
            free(buf);
            size *= 2;
            continue;
        }
        if (rc == 0 && res && res->pw_dir && *res->pw_dir)
            result = prism_cache__strdup(res->pw_dir);
        free(buf);
        return result;
    }
}

/* options->dir, $PRISM_CACHE_DIR, $XDG_CACHE_HOME/prism (absolute only, as
 * the XDG spec says), ~/.cache/prism.  NULL: no candidate or no memory. */
static char *resolve_dir(const char *dir, bool *oom) {
    *oom = false;
    char *d = NULL;
    const char *env = getenv("PRISM_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (dir && *dir)
        d = join_dup(dir, NULL);
    else if (env && *env)
        d = join_dup(env, NULL);
    else if (xdg && xdg[0] == '/')
        d = join_dup(xdg, "prism");
    else {
        char *home = home_dir();
        if (!home)
            return NULL;
        d = join_dup(home, ".cache/prism");
        free(home);
    }
    *oom = d == NULL;
    return d;
}

/* mkdir -p with mode 0700 for every component it creates. */
static int mkdir_p(const char *path) {
    char buf[CACHE_PATH_BUF];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Checks that dir is a directory we may use; why gets the reason and fix
 * the repair if not (fix stays "" when no command repairs it).  access(2)
 * is asked too because mode bits alone miss read-only mounts.  The trust
 * rule (cache_entry.c) applies to the directory itself, not to its
 * parents: a sticky world-writable /tmp above it is fine, because every
 * entry is checked again when read, so a directory swapped in by another
 * account could only offer entries that fail that check. */
static bool dir_usable(const char *dir, bool writable, char *why,
                       size_t why_size, char *fix, size_t fix_size) {
    struct stat st;
    fix[0] = '\0';
    if (strlen(dir) + 1 + CACHE_NAME_MAX >= CACHE_PATH_BUF) {
        snprintf(why, why_size, "path too long");
        return false;
    }
    if (stat(dir, &st) != 0) {
        snprintf(why, why_size, "%s", strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, why_size, "not a directory");
        return false;
    }
    if (!prism_cache__stat_trusted(&st, dir, why, why_size, fix, fix_size))
        return false;
    if (access(dir, writable ? (R_OK | W_OK | X_OK) : (R_OK | X_OK)) != 0) {
        snprintf(why, why_size, "%s", strerror(errno));
        return false;
    }
    return true;
}

bool prism_cache_dir_trusted(const char *dir, char *why, size_t why_size) {
    char fix[CACHE_PATH_BUF + 64];
    return dir && dir_usable(dir, false, why, why_size, fix, sizeof fix);
}

/* Sets cache->rw.dir to the usable writable dir or "" (one warning). */
static prism_status open_writable(prism_cache *cache, const char *dir) {
    bool oom;
    char why[256], fix[CACHE_PATH_BUF + 64];
    char *d = resolve_dir(dir, &oom);
    if (oom)
        return PRISM_ERR_OUT_OF_MEMORY;
    if (!d) {
        prism_log(&cache->logger, PRISM_LOG_WARN,
                  "no kernel cache directory (HOME unknown); compiling in "
                  "memory only. Fix: set PRISM_CACHE_DIR to a directory you "
                  "own");
    } else if (mkdir_p(d) != 0) {
        prism_log(&cache->logger, PRISM_LOG_WARN,
                  "cannot create kernel cache directory %s (%s); compiling in "
                  "memory only. Fix: set PRISM_CACHE_DIR to a writable "
                  "directory you own",
                  d, strerror(errno));
    } else if (!dir_usable(d, true, why, sizeof why, fix, sizeof fix)) {
        prism_log(&cache->logger, PRISM_LOG_WARN,
                  "kernel cache directory %s is not usable (%s)%s; compiling "
                  "in memory only, nothing is read from or written to it. "
                  "Fix: %s%sset PRISM_CACHE_DIR to a writable directory you "
                  "own (mode 0700)",
                  d, why,
                  fix[0] ? ": another account could put kernels there that "
                           "would run with your rights"
                         : "",
                  fix, fix[0] ? ", or " : "");
    } else {
        cache->rw.dir = d;
        return PRISM_OK;
    }
    free(d);
    cache->rw.dir = prism_cache__strdup("");
    return cache->rw.dir ? PRISM_OK : PRISM_ERR_OUT_OF_MEMORY;
}

/* Splits a colon-separated list into read-only layers; missing dirs are
 * skipped quietly (a shipped cache may be optional), unusable or untrusted
 * ones with a warning each. */
static prism_status open_read_only(prism_cache *cache, const char *path) {
    if (!path)
        path = getenv("PRISM_CACHE_PATH");
    if (!path || !*path)
        return PRISM_OK;
    size_t max = 1;
    for (const char *p = path; *p; p++)
        max += *p == ':';
    cache->ro = calloc(max, sizeof *cache->ro);
    if (!cache->ro)
        return PRISM_ERR_OUT_OF_MEMORY;
    const char *p = path;
    while (*p) {
        size_t n = strcspn(p, ":");
        char part[CACHE_PATH_BUF], why[256], fix[CACHE_PATH_BUF + 64];
        if (n > 0 && n < sizeof part) {
            memcpy(part, p, n);
            part[n] = '\0';
            struct stat st;
            if (stat(part, &st) != 0 && errno == ENOENT) {
                prism_log(&cache->logger, PRISM_LOG_DEBUG,
                          "read-only cache layer %s does not exist; skipped",
                          part);
            } else if (!dir_usable(part, false, why, sizeof why, fix,
                                   sizeof fix)) {
                prism_log(&cache->logger, PRISM_LOG_WARN,
                          "read-only cache layer %s skipped (%s). Fix: %s%s"
                          "remove it from PRISM_CACHE_PATH",
                          part, why, fix, fix[0] ? ", or " : "");
            } else {
                char *d = join_dup(part, NULL);
                if (!d)
                    return PRISM_ERR_OUT_OF_MEMORY;
                cache->ro[cache->n_ro++].dir = d;
            }
        }
        p += n;
        if (*p == ':')
            p++;
    }
    return PRISM_OK;
}

/* options->max_bytes, else $PRISM_CACHE_MAX_BYTES (a size such as 500M,
 * base/parse.h; anything else warns and falls back), else 2 GiB. */
static int64_t resolve_max_bytes(const prism_cache *cache, int64_t option) {
    if (option > 0)
        return option;
    int64_t v;
    char why[PRISM_ERRMSG_MAX];
    if (prism_env_bytes("PRISM_CACHE_MAX_BYTES", CACHE_DEFAULT_MAX_BYTES, &v,
                        why, sizeof why) != PRISM_OK)
        prism_log(&cache->logger, PRISM_LOG_WARN, "%s", why);
    return v;
}

/* $PRISM_LOCK_TIMEOUT in seconds (a count, base/parse.h), else 120;
 * anything else warns and falls back. */
static int64_t resolve_lock_timeout_ms(const prism_cache *cache) {
    const char *text = getenv("PRISM_LOCK_TIMEOUT");
    int64_t s = CACHE_LOCK_TIMEOUT_S;
    if (text && *text &&
        !prism_parse_count(text, 0, CACHE_LOCK_TIMEOUT_MAX_S, &s)) {
        s = CACHE_LOCK_TIMEOUT_S;
        prism_log(&cache->logger, PRISM_LOG_WARN,
                  "PRISM_LOCK_TIMEOUT='%.40s' is not a number of seconds in "
                  "0..%d; using %d",
                  text, CACHE_LOCK_TIMEOUT_MAX_S, CACHE_LOCK_TIMEOUT_S);
    }
    return s * 1000;
}

prism_status prism_cache_open(const prism_cache_options *options,
                              prism_cache **out, char *err, size_t err_size) {
    prism_status st;
    if (!out)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_cache_open: NULL output pointer");
    *out = NULL;
    prism_cache_options defaults = {0};
    if (!options)
        options = &defaults;
    prism_cache *cache = calloc(1, sizeof *cache);
    if (!cache)
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory opening the kernel cache");
    if (options->logger)
        cache->logger = *options->logger;
    else
        cache->logger.level = PRISM_LOG_WARN;
    cache->disable_jit = options->disable_jit;
    pthread_mutex_init(&cache->lock, NULL);
    pthread_cond_init(&cache->inflight_done, NULL);
    cache->n_buckets = 64;
    cache->buckets = calloc(cache->n_buckets, sizeof *cache->buckets);
    if (!cache->buckets) {
        st = PRISM_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    if (options->disable_disk) {
        cache->rw.dir = prism_cache__strdup("");
        st = cache->rw.dir ? PRISM_OK : PRISM_ERR_OUT_OF_MEMORY;
    } else {
        st = open_writable(cache, options->dir);
        if (st == PRISM_OK)
            st = open_read_only(cache, options->read_only_path);
    }
    if (st != PRISM_OK)
        goto fail;
    cache->max_bytes = resolve_max_bytes(cache, options->max_bytes);
    cache->lock_timeout_ms = resolve_lock_timeout_ms(cache);
    *out = cache;
    return PRISM_OK;

fail:
    prism_cache_close(cache);
    return prism_errorf(err, err_size, st,
                        "out of memory opening the kernel cache");
}

void prism_cache_close(prism_cache *cache) {
    if (!cache)
        return;
    if (cache->buckets)
        prism_cache__mem_clear(cache);
    free(cache->buckets);
    for (int i = 0; i < cache->n_ro; i++)
        free(cache->ro[i].dir);
    free(cache->ro);
    free(cache->rw.dir);
    pthread_cond_destroy(&cache->inflight_done);
    pthread_mutex_destroy(&cache->lock);
    free(cache);
}

const char *prism_cache_dir(const prism_cache *cache) {
    return cache && cache->rw.dir ? cache->rw.dir : "";
}

int prism_cache_layer_count(const prism_cache *cache) {
    return cache ? cache->n_ro : 0;
}

const char *prism_cache_layer_dir(const prism_cache *cache, int index) {
    if (!cache || index < 0 || index >= cache->n_ro)
        return NULL;
    return cache->ro[index].dir;
}

int64_t prism_cache_max_bytes(const prism_cache *cache) {
    return cache ? cache->max_bytes : 0;
}

void prism_cache_counters(const prism_cache *cache, prism_counters *out) {
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!cache)
        return;
    prism_cache *c = (prism_cache *)cache; /* the mutex is not logical state */
    pthread_mutex_lock(&c->lock);
    *out = c->counters;
    pthread_mutex_unlock(&c->lock);
}
