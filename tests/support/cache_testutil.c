/*
 * cache_testutil.c - see cache_testutil.h.
 */
#include "cache_testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void record_warning(void *user, prism_log_level level,
                           const char *message) {
    cache_tu_log *log = user;
    if (level < PRISM_LOG_WARN)
        return;
    pthread_mutex_lock(&log->lock);
    log->warnings++;
    size_t n = strlen(log->text);
    snprintf(log->text + n, sizeof log->text - n, "%s\n", message);
    pthread_mutex_unlock(&log->lock);
}

void cache_tu_log_init(cache_tu_log *log, prism_logger *logger) {
    memset(log, 0, sizeof *log);
    pthread_mutex_init(&log->lock, NULL);
    logger->fn = record_warning;
    logger->user = log;
    logger->level = PRISM_LOG_DEBUG;
}

int cache_tu_log_count(cache_tu_log *log, const char *needle) {
    int count = 0;
    pthread_mutex_lock(&log->lock);
    for (const char *line = log->text; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char buf[2048];
        snprintf(buf, sizeof buf, "%.*s", (int)n, line);
        if (strstr(buf, needle))
            count++;
        line += n + (end ? 1 : 0);
    }
    pthread_mutex_unlock(&log->lock);
    return count;
}

void cache_tu_expected(unsigned char *buf, size_t size, unsigned char fill) {
    for (size_t i = 0; i < size; i++)
        buf[i] = (unsigned char)(fill + i * 7);
}

int cache_tu_payload_ok(const prism_cache_entry *e, size_t size,
                        unsigned char fill) {
    if (!e->payload || e->payload_size != size)
        return 0;
    unsigned char *want = malloc(size ? size : 1);
    if (!want)
        return 0;
    cache_tu_expected(want, size, fill);
    int ok = memcmp(want, e->payload, size) == 0;
    free(want);
    return ok;
}

prism_status cache_tu_build(void *user, void **payload, size_t *payload_size,
                            prism_cache_meta *meta, char **log, char *err,
                            size_t err_size) {
    cache_tu_builder *b = user;
    int call = atomic_fetch_add(&b->calls, 1);
    bool fail =
        b->fail != PRISM_OK && (b->fail_first == 0 || call < b->fail_first);
    if (b->record_path) {
        int fd = open(b->record_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                      0600);
        if (fd >= 0) {
            char line[64];
            int n = snprintf(line, sizeof line, "build %ld\n", (long)getpid());
            if (write(fd, line, (size_t)n) != n)
                perror("record");
            close(fd);
        }
    }
    if (b->delay_ms)
        usleep((useconds_t)b->delay_ms * 1000);
    *log = strdup(fail ? "error: injected failure log" : "ptxas info: ok");
    if (fail) {
        snprintf(err, err_size, "boom: injected build failure");
        return b->fail;
    }
    unsigned char *p = malloc(b->size ? b->size : 1);
    if (!p)
        return PRISM_ERR_OUT_OF_MEMORY;
    cache_tu_expected(p, b->size, b->fill);
    *payload = p;
    *payload_size = b->size;
    meta->registers = 42;
    meta->spill_bytes = 8;
    meta->shared_bytes = 4096;
    meta->local_bytes = 16;
    meta->compile_ms = 12.5;
    return PRISM_OK;
}

prism_cache_key cache_tu_key(const char *source) {
    static const char *const opts[] = {"--std=c++17", "-default-device",
                                       "--gpu-architecture=sm_90a"};
    prism_cache_key_input in = {
        .source = source,
        .nvrtc_version = "13.0 (test)",
        .arch = "sm_90a",
        .options = opts,
        .n_options = 3,
    };
    prism_cache_key key;
    prism_cache_key_compute(&in, &key);
    return key;
}

prism_cache_meta cache_tu_meta(const char *kernel) {
    prism_cache_meta m;
    memset(&m, 0, sizeof m);
    prism_strlcpy(m.config_name, "llama3-8b", sizeof m.config_name);
    prism_strlcpy(m.kernel_name, kernel, sizeof m.kernel_name);
    prism_strlcpy(m.arch, "sm_90a", sizeof m.arch);
    return m;
}

char *cache_tu_mkdtemp(void) {
    char tmpl[] = "/tmp/prism-cache-test.XXXXXX";
    if (!mkdtemp(tmpl))
        return NULL;
    return strdup(tmpl);
}

static int remove_one(const char *path, const struct stat *st, int flag,
                      struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void cache_tu_rm_rf(const char *path) {
    if (path)
        nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int cache_tu_count(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int count = 0;
    size_t ns = strlen(suffix);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (n >= ns && !strcmp(de->d_name + n - ns, suffix))
            count++;
    }
    closedir(d);
    return count;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *cache_tu_listing(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return strdup("<missing>");
    char *names[256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 256)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, compare_names);
    size_t total = 1;
    for (int i = 0; i < n; i++)
        total += strlen(names[i]) + 1;
    char *out = calloc(1, total);
    for (int i = 0; i < n; i++) {
        if (out) {
            strcat(out, names[i]);
            strcat(out, "\n");
        }
        free(names[i]);
    }
    return out;
}

void cache_tu_entry_path(char *buf, size_t size, const char *dir,
                         const prism_cache_key *key) {
    snprintf(buf, size, "%s/%s.prc", dir, key->hex);
}

prism_cache *cache_tu_open(const char *dir, const prism_logger *logger,
                           int64_t max_bytes) {
    prism_cache_options o = {
        .dir = dir,
        .read_only_path = "",
        .max_bytes = max_bytes,
        .logger = logger,
    };
    prism_cache *c = NULL;
    char err[PRISM_ERRMSG_MAX];
    if (prism_cache_open(&o, &c, err, sizeof err) != PRISM_OK)
        return NULL;
    return c;
}
