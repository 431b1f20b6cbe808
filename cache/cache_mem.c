/*
 * cache_mem.c - the memory layer: the entries this process has already
 * looked up or built.
 *
 * A chained hash table on the key under the cache's one mutex.  Lookups
 * copy the payload out, so callers own what they get and an entry can be
 * dropped (prism_cache_clear, close) while a copy is in use.  Out of
 * memory here never fails a lookup: it only costs a later disk read.
 * Lookup (cache.c), maintenance (cache_maint.c) and closing (cache_open.c)
 * all use it; it uses nothing of theirs.
 */
#include "cache/cache_internal.h"

#include <stdlib.h>
#include <string.h>

static size_t bucket_of(const prism_cache *cache, const unsigned char *key) {
    uint64_t h = 0;
    memcpy(&h, key, sizeof h); /* a SHA-256 is already uniform */
    return (size_t)(h % cache->n_buckets);
}

static cache_mem_node *mem_find(prism_cache *cache, const unsigned char *key) {
    for (cache_mem_node *n = cache->buckets[bucket_of(cache, key)]; n;
         n = n->next)
        if (memcmp(n->key, key, 32) == 0)
            return n;
    return NULL;
}

static void *dup_bytes(const void *p, size_t n) {
    void *d = malloc(n ? n : 1);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

/* Copies a memory entry out (caller holds the lock).  false: no memory. */
static bool mem_copy_out(const cache_mem_node *n, prism_cache_entry *out) {
    memset(out, 0, sizeof *out);
    out->meta = n->meta;
    out->payload = dup_bytes(n->payload, n->payload_size);
    out->payload_size = n->payload_size;
    out->log = n->log ? prism_cache__strdup(n->log) : NULL;
    if (!out->payload || (n->log && !out->log)) {
        prism_cache_entry_free(out);
        return false;
    }
    return true;
}

/* Memory lookup; counts a hit. */
bool prism_cache__mem_get(prism_cache *cache, const unsigned char *key,
                          prism_cache_entry *out) {
    pthread_mutex_lock(&cache->lock);
    cache_mem_node *n = mem_find(cache, key);
    bool ok = n && mem_copy_out(n, out);
    if (ok)
        cache->counters.memory_hits++;
    pthread_mutex_unlock(&cache->lock);
    return ok;
}

/* Doubles the table when it gets full; a failed grow is harmless. */
static void mem_grow(prism_cache *cache) {
    size_t n_new = cache->n_buckets * 2;
    cache_mem_node **b = calloc(n_new, sizeof *b);
    if (!b)
        return;
    cache_mem_node **old = cache->buckets;
    size_t n_old = cache->n_buckets;
    cache->buckets = b;
    cache->n_buckets = n_new;
    for (size_t i = 0; i < n_old; i++) {
        for (cache_mem_node *n = old[i], *next; n; n = next) {
            next = n->next;
            size_t j = bucket_of(cache, n->key);
            n->next = b[j];
            b[j] = n;
        }
    }
    free(old);
}

/* Keeps a copy of e in memory.  Out of memory only costs a later disk read. */
void prism_cache__mem_put(prism_cache *cache, const unsigned char *key,
                          const prism_cache_entry *e) {
    cache_mem_node *n = calloc(1, sizeof *n);
    if (!n)
        return;
    memcpy(n->key, key, 32);
    n->meta = e->meta;
    n->payload_size = e->payload_size;
    n->payload = dup_bytes(e->payload, e->payload_size);
    n->log = e->log ? prism_cache__strdup(e->log) : NULL;
    if (!n->payload || (e->log && !n->log)) {
        free(n->payload);
        free(n->log);
        free(n);
        return;
    }
    pthread_mutex_lock(&cache->lock);
    if (mem_find(cache, key)) {
        pthread_mutex_unlock(&cache->lock);
        free(n->payload);
        free(n->log);
        free(n);
        return;
    }
    if (cache->n_nodes >= cache->n_buckets)
        mem_grow(cache);
    size_t b = bucket_of(cache, key);
    n->next = cache->buckets[b];
    cache->buckets[b] = n;
    cache->n_nodes++;
    pthread_mutex_unlock(&cache->lock);
}

void prism_cache__mem_clear(prism_cache *cache) {
    pthread_mutex_lock(&cache->lock);
    for (size_t i = 0; i < cache->n_buckets; i++) {
        for (cache_mem_node *n = cache->buckets[i], *next; n; n = next) {
            next = n->next;
            free(n->payload);
            free(n->log);
            free(n);
        }
        cache->buckets[i] = NULL;
    }
    cache->n_nodes = 0;
    pthread_mutex_unlock(&cache->lock);
}
