/*
 * tunables.c - the table of every kernel's tunables, and the check of one
 * override against it.
 *
 * The values are those the templates accept (gen/templates/); 0 means "the
 * template picks per shape".  A new tunable is a line here plus its use in
 * the template; a new kernel is an entry here and a row in gen/kernels.c.
 */
#include "config/tunables.h"

#include <stdio.h>
#include <string.h>

static const int64_t threads_64_256[] = {64, 128, 256, -1};
static const int64_t block_m_values[] = {0, 64, 128, -1};
static const int64_t block_n_values[] = {0, 32, 64, 128, -1};
static const int64_t warp_m_values[] = {0, 16, 32, -1};
static const int64_t threads_128_256[] = {128, 256, -1};
static const int64_t path_values[] = {0, 1, 2, -1};
static const int64_t stages_values[] = {0, 2, 3, -1};
static const int64_t overlap_values[] = {0, 1, 2, -1};

const prism_kernel_tunables prism_tunables_table[PRISM_KERNEL_COUNT] = {
    [PRISM_KERNEL_POOL_STATS] =
        {"pool_stats",
         {{"threads", 128, threads_64_256,
           "threads per CTA of the pooling kernel"}}},
    [PRISM_KERNEL_ESTIMATE] =
        {"estimate",
         {{"threads", 256, threads_128_256,
           "threads per CTA; threads/32 query-block rows share each "
           "pooled-K tile, one warp selects each row"}}},
    [PRISM_KERNEL_ATTENTION] =
        {"attention",
         {{"block_m", 0, block_m_values,
           "query rows per CTA (0: 128 for D <= 128, else 64)"},
          {"block_n", 0, block_n_values,
           "keys per shared-memory tile (0: per head dim and arch)"},
          {"warp_m", 0, warp_m_values,
           "query rows per warp (0: 32 where registers allow)"},
          {"path", 0, path_values,
           "0: wgmma/TMA on sm_90a where the shape allows, else "
           "mma.sync; 1: mma.sync; 2: wgmma/TMA"},
          {"stages", 0, stages_values,
           "wgmma path: K/V pipeline stages (0: 3 where shared "
           "memory allows, else 2)"},
          {"overlap", 0, overlap_values,
           "wgmma path: 1 overlaps S of tile i with P V of tile "
           "i-1; 2 the plain loop; "
           "0 overlap with 3 stages"}}},
};

const prism_kernel_tunables *prism_tunables_find(const char *kernel) {
    for (int i = 0; kernel && i < PRISM_KERNEL_COUNT; i++)
        if (!strcmp(prism_tunables_table[i].kernel, kernel))
            return &prism_tunables_table[i];
    return NULL;
}

/* Appends "a, b, c" to out[*used..size), keeping *used the full length. */
static void append(char *out, size_t size, size_t *used, int i,
                   const char *text) {
    *used += (size_t)snprintf(out + *used, *used < size ? size - *used : 0,
                              "%s%s", i ? ", " : "", text);
}

static void list_kernels(char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < PRISM_KERNEL_COUNT; i++)
        append(out, size, &used, i, prism_tunables_table[i].kernel);
}

static void list_names(char *out, size_t size, const prism_kernel_tunables *k) {
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < PRISM_MAX_TUNABLES && k->tunables[i].name; i++)
        append(out, size, &used, i, k->tunables[i].name);
}

static void list_values(char *out, size_t size, const int64_t *values) {
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; values[i] >= 0; i++) {
        char number[24];
        snprintf(number, sizeof number, "%lld", (long long)values[i]);
        append(out, size, &used, i, number);
    }
}

bool prism_tunables_check(const char *kernel, const char *param,
                          int64_t value, char *allowed, size_t size) {
    char buf[512];
    const prism_kernel_tunables *k = prism_tunables_find(kernel);
    if (!k) {
        list_kernels(buf, sizeof buf);
        if (allowed && size)
            snprintf(allowed, size, "kernels: %s", buf);
        return false;
    }
    for (int i = 0; i < PRISM_MAX_TUNABLES && k->tunables[i].name; i++) {
        const prism_tunable *t = &k->tunables[i];
        if (!param || strcmp(t->name, param))
            continue;
        for (int j = 0; t->allowed[j] >= 0; j++)
            if (t->allowed[j] == value)
                return true;
        list_values(buf, sizeof buf, t->allowed);
        if (allowed && size)
            snprintf(allowed, size, "%s.%s values: %s", kernel, param, buf);
        return false;
    }
    list_names(buf, sizeof buf, k);
    if (allowed && size)
        snprintf(allowed, size, "%s tunables: %s", kernel, buf);
    return false;
}
