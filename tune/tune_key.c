/*
 * tune_key.c - what a tuning result is keyed on: the device, the config,
 * the sequence-length bucket.  See tune.h for why each field is in a key.
 *
 * Keys are hashes of canonical text so that they are stable across runs,
 * hosts and struct layouts: the device key hashes its fields as
 * length-prefixed strings, the config hash hashes the resolved YAML of the
 * config with the fields that do not change a kernel's output cleared.
 */
#include "tune/tune.h"
#include "base/arch.h"

#include <stdlib.h>
#include <string.h>

/* Appends "<len>:<text>\n" to buf; false when it does not fit. */
static bool put_field(char *buf, size_t size, size_t *used, const char *text) {
    int n = snprintf(buf + *used, size - *used, "%zu:%s\n", strlen(text), text);
    if (n < 0 || (size_t)n >= size - *used)
        return false;
    *used += (size_t)n;
    return true;
}

void prism_tune_device_set_key(prism_tune_device *dev) {
    char buf[1024], num[64];
    size_t used = 0;
    bool ok = put_field(buf, sizeof buf, &used, "prism-tuning-device-1") &&
              put_field(buf, sizeof buf, &used, dev->name);
    snprintf(num, sizeof num, "%d", dev->sm_count);
    ok = ok && put_field(buf, sizeof buf, &used, num);
    snprintf(num, sizeof num, "%d.%d", dev->cc_major, dev->cc_minor);
    ok = ok && put_field(buf, sizeof buf, &used, num) &&
         put_field(buf, sizeof buf, &used, dev->nvrtc);
    snprintf(num, sizeof num, "%d", dev->driver_version);
    ok = ok && put_field(buf, sizeof buf, &used, num);
    unsigned char digest[32];
    /* fields are bounded by their arrays, so the buffer always fits; the
     * check only guards against a future field outgrowing it */
    prism_sha256(buf, ok ? used : 0, digest);
    prism_hex(digest, 32, dev->key);
}

bool prism_tune_device_arch(const prism_tune_device *dev, prism_arch *arch) {
    prism_arch best[PRISM_ARCH_COUNT_];
    if (prism_arch_candidates(dev->cc_major, dev->cc_minor, best) == 0)
        return false;
    *arch = best[0];
    return true;
}

prism_status prism_tune_config_hash(const prism_config *cfg, char hex[65]) {
    hex[0] = '\0';
    prism_config *c = malloc(sizeof *c);
    if (!c)
        return PRISM_ERR_OUT_OF_MEMORY;
    *c = *cfg;
    memset(c->name, 0, sizeof c->name);
    memset(c->source, 0, sizeof c->source);
    c->n_targets = 0;
    memset(c->targets, 0, sizeof c->targets);
    c->n_tuning = 0;
    memset(c->tuning, 0, sizeof c->tuning);
    char *yaml = prism_config_to_yaml(c);
    free(c);
    if (!yaml)
        return PRISM_ERR_OUT_OF_MEMORY;
    unsigned char digest[32];
    prism_sha256(yaml, strlen(yaml), digest);
    free(yaml);
    prism_hex(digest, 32, hex);
    return PRISM_OK;
}

int prism_tune_bucket(int64_t seqlen) {
    int64_t b = PRISM_TUNE_MIN_BUCKET;
    while (b < seqlen && b < PRISM_TUNE_MAX_BUCKET)
        b *= 2;
    return (int)b;
}

const char *prism_tune_status_name(prism_tune_status status) {
    switch (status) {
    case PRISM_TUNE_UNTIMED:
        return "untimed";
    case PRISM_TUNE_OK:
        return "ok";
    case PRISM_TUNE_PRUNED:
        return "pruned";
    case PRISM_TUNE_FAILED:
        return "failed";
    case PRISM_TUNE_MISMATCH:
        return "mismatch";
    }
    return "unknown";
}

void prism_tune_file_name(const char *device_key, const char *config_hash,
                          const char *kernel, int bucket, char *buf,
                          size_t size) {
    snprintf(buf, size, "%.16s-%.16s-%s-%d.yaml", config_hash, device_key,
             kernel, bucket);
}

void prism_tune_entry_free(prism_tune_entry *e) {
    if (!e)
        return;
    free(e->candidates);
    memset(e, 0, sizeof *e);
}

prism_status prism_tune_entry_init(prism_tune_entry *e,
                                   const prism_kernel_def *def, int n) {
    memset(e, 0, sizeof *e);
    if (n < 0 || n > PRISM_TUNE_MAX_CANDIDATES)
        return PRISM_ERR_INVALID_ARGUMENT;
    e->format = PRISM_TUNE_FORMAT;
    prism_strlcpy(e->prism_version, prism_version(), sizeof e->prism_version);
    prism_strlcpy(e->kernel, def->name, sizeof e->kernel);
    for (int i = 0; i < PRISM_MAX_TUNABLES && def->tunables[i].name; i++)
        prism_strlcpy(e->tunables[e->n_tunables++], def->tunables[i].name,
                      sizeof e->tunables[0]);
    if (n > 0 && !(e->candidates = calloc((size_t)n, sizeof *e->candidates)))
        return PRISM_ERR_OUT_OF_MEMORY;
    e->n_candidates = n;
    for (int i = 0; i < n; i++) {
        e->candidates[i].registers = -1;
        e->candidates[i].spill_bytes = -1;
        e->candidates[i].shared_bytes = -1;
    }
    return PRISM_OK;
}

int prism_tune_entry_best(const prism_tune_entry *e) {
    int best = -1;
    for (int i = 0; i < e->n_candidates; i++) {
        const prism_tune_candidate *c = &e->candidates[i];
        if (c->status != PRISM_TUNE_OK)
            continue;
        if (best < 0 || c->median_ms < e->candidates[best].median_ms)
            best = i;
    }
    return best;
}

void prism_tune_values_text(const prism_kernel_def *def, const int64_t *values,
                            char *buf, size_t size) {
    size_t used = 0;
    if (size)
        buf[0] = '\0';
    for (int i = 0;
         i < PRISM_MAX_TUNABLES && def->tunables[i].name && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s=%lld", i ? " " : "",
                         def->tunables[i].name, (long long)values[i]);
        if (n > 0)
            used += (size_t)n;
    }
}
