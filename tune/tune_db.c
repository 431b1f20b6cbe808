/*
 * tune_db.c - one tuning database entry <-> YAML (libyaml emitter and
 * parser), and its atomic publication.
 *
 * An entry is written whole by one process and read by many, so the file
 * is a plain YAML document published with rename(2); there is no locking
 * because two writers of the same entry measured the same thing and the
 * last complete file wins.  The reader is strict: any field missing or of
 * the wrong type, an unknown format, a kernel or tunable this build does
 * not have, or a value that is no longer legal makes the whole entry
 * invalid, because half-trusted timings could pick a kernel that does not
 * build.  Example (abridged):
 *
 *   format: 1
 *   prism_version: "0.1.0"
 *   date: "2026-12-01T10:00:00Z"
 *   device:
 *     name: "NVIDIA H100 80GB HBM3"
 *     sm_count: 132
 *     compute_capability: "9.0"
 *     nvrtc: "13.0 (V13.0.88)"
 *     driver: 13000
 *     key: "5f1c...64 hex"
 *   config: {name: "default", hash: "9a0e...64 hex"}
 *   kernel: "attention"
 *   bucket: 4096
 *   seq: 4096
 *   complete: true
 *   candidates:
 *   - values: {block_m: 0, block_n: 0, warp_m: 0}
 *     status: ok
 *     registers: 255
 *     spill_bytes: 0
 *     shared_bytes: 0
 *     median_ms: 0.2093
 *     min_ms: 0.2071
 *     max_ms: 0.2150
 *     timings:
 *     - {density: 0.1, median_ms: 0.0901, min_ms: 0.0893, max_ms: 0.0934,
 *        reps: 100}
 *     - {density: 0.2, median_ms: 0.1192, min_ms: 0.1178, max_ms: 0.1216,
 *        reps: 100}
 *   - values: {block_m: 64, block_n: 128, warp_m: 32}
 *     status: pruned
 *     reason: "spills 48 bytes"
 *
 * median/min/max of a candidate are sums over its timings (the workload
 * the bucket stands for); the best candidate is recomputed on every read,
 * never stored, so a file cannot disagree with itself.
 */
#include "tune/tune.h"
#include "base/fs.h"
#include "tune/tune_yaml.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ------------------------------------------------------------- */

static void emit_candidate(prism_yaml_out *o, const prism_tune_entry *en,
                           const prism_tune_candidate *c) {
    prism_yaml_map_start(o, false);
    prism_yaml_scalar(o, "values", false);
    prism_yaml_map_start(o, true);
    for (int t = 0; t < en->n_tunables; t++)
        prism_yaml_kv_int(o, en->tunables[t], (long long)c->values[t]);
    prism_yaml_map_end(o);
    prism_yaml_kv_word(o, "status", prism_tune_status_name(c->status));
    if (c->reason[0])
        prism_yaml_kv_str(o, "reason", c->reason);
    if (c->registers >= 0)
        prism_yaml_kv_int(o, "registers", c->registers);
    if (c->spill_bytes >= 0)
        prism_yaml_kv_int(o, "spill_bytes", c->spill_bytes);
    if (c->shared_bytes >= 0)
        prism_yaml_kv_int(o, "shared_bytes", c->shared_bytes);
    if (c->status == PRISM_TUNE_OK) {
        prism_yaml_kv_double(o, "median_ms", c->median_ms);
        prism_yaml_kv_double(o, "min_ms", c->min_ms);
        prism_yaml_kv_double(o, "max_ms", c->max_ms);
    }
    if (c->n_timings > 0) {
        prism_yaml_scalar(o, "timings", false);
        prism_yaml_seq_start(o, false);
        for (int i = 0; i < c->n_timings && i < PRISM_TUNE_MAX_SHAPES; i++) {
            const prism_tune_timing *t = &c->timings[i];
            prism_yaml_map_start(o, true);
            prism_yaml_kv_double(o, "density", t->density);
            prism_yaml_kv_double(o, "median_ms", t->median_ms);
            prism_yaml_kv_double(o, "min_ms", t->min_ms);
            prism_yaml_kv_double(o, "max_ms", t->max_ms);
            prism_yaml_kv_int(o, "reps", t->reps);
            prism_yaml_map_end(o);
        }
        prism_yaml_seq_end(o);
    }
    prism_yaml_map_end(o);
}

prism_status prism_tune_entry_to_yaml(const prism_tune_entry *en, char **text,
                                      size_t *size, char *err,
                                      size_t err_size) {
    prism_yaml_out o;
    prism_yaml_out_begin(&o);
    prism_yaml_map_start(&o, false);
    prism_yaml_kv_int(&o, "format", en->format);
    prism_yaml_kv_str(&o, "prism_version", en->prism_version);
    prism_yaml_kv_str(&o, "date", en->date);
    prism_yaml_scalar(&o, "device", false);
    prism_yaml_map_start(&o, false);
    prism_yaml_kv_str(&o, "name", en->device.name);
    prism_yaml_kv_int(&o, "sm_count", en->device.sm_count);
    char cc[32];
    snprintf(cc, sizeof cc, "%d.%d", en->device.cc_major, en->device.cc_minor);
    prism_yaml_kv_str(&o, "compute_capability", cc);
    prism_yaml_kv_str(&o, "nvrtc", en->device.nvrtc);
    prism_yaml_kv_int(&o, "driver", en->device.driver_version);
    prism_yaml_kv_str(&o, "key", en->device.key);
    prism_yaml_map_end(&o);
    prism_yaml_scalar(&o, "config", false);
    prism_yaml_map_start(&o, true);
    prism_yaml_kv_str(&o, "name", en->config_name);
    prism_yaml_kv_str(&o, "hash", en->config_hash);
    prism_yaml_map_end(&o);
    prism_yaml_kv_str(&o, "kernel", en->kernel);
    prism_yaml_kv_int(&o, "bucket", en->bucket);
    prism_yaml_kv_int(&o, "seq", en->seq);
    prism_yaml_kv_word(&o, "complete", en->complete ? "true" : "false");
    prism_yaml_scalar(&o, "candidates", false);
    prism_yaml_seq_start(&o, false);
    for (int i = 0; i < en->n_candidates; i++)
        emit_candidate(&o, en, &en->candidates[i]);
    prism_yaml_seq_end(&o);
    prism_yaml_map_end(&o);
    return prism_yaml_out_end(&o, text, size, err, err_size);
}

prism_status prism_tune_entry_write(const char *dir, const prism_tune_entry *en,
                                    char *path_out, char *err,
                                    size_t err_size) {
    char name[256], path[PRISM_PATH_MAX];
    prism_tune_file_name(en->device.key, en->config_hash, en->kernel,
                         en->bucket, name, sizeof name);
    if (!prism_fs_join(path, sizeof path, dir, name))
        return prism_errorf(err, err_size, PRISM_ERR_IO,
                            "tuning directory path too long: %s", dir);
    prism_status st = prism_fs_mkdir_p(dir, 0755, err, err_size);
    if (st != PRISM_OK)
        return st;
    char *text = NULL;
    size_t size = 0;
    if ((st = prism_tune_entry_to_yaml(en, &text, &size, err, err_size)) !=
        PRISM_OK)
        return st;
    st = prism_fs_write_atomic(path, text, size, err, err_size);
    free(text);
    if (st == PRISM_OK && path_out)
        prism_strlcpy(path_out, path, PRISM_PATH_MAX);
    return st;
}

/* ---- reading ------------------------------------------------------------- */

typedef prism_yaml_in reader;
#define bad prism_yaml_bad

static bool read_device(reader *r, yaml_node_t *root, prism_tune_device *d) {
    yaml_node_t *m = prism_yaml_need(r, root, "device", YAML_MAPPING_NODE);
    int64_t sm, drv;
    char cc[32], key[65];
    if (!m || !prism_yaml_str(r, m, "name", d->name, sizeof d->name) ||
        !prism_yaml_int(r, m, "sm_count", 1, 100000, &sm) ||
        !prism_yaml_str(r, m, "compute_capability", cc, sizeof cc) ||
        !prism_yaml_str(r, m, "nvrtc", d->nvrtc, sizeof d->nvrtc) ||
        !prism_yaml_int(r, m, "driver", 0, INT32_MAX, &drv) ||
        !prism_yaml_hex64(r, m, "key", key))
        return false;
    char tail;
    if (sscanf(cc, "%d.%d%c", &d->cc_major, &d->cc_minor, &tail) != 2)
        return bad(r, m, "compute_capability '%s' is not MAJOR.MINOR", cc);
    d->sm_count = (int)sm;
    d->driver_version = (int)drv;
    prism_tune_device_set_key(d);
    if (strcmp(d->key, key))
        return bad(r, m, "device key does not match the device fields");
    return true;
}

static bool read_status(reader *r, yaml_node_t *map, prism_tune_status *out) {
    char word[32];
    if (!prism_yaml_str(r, map, "status", word, sizeof word))
        return false;
    for (int s = PRISM_TUNE_UNTIMED; s <= PRISM_TUNE_MISMATCH; s++)
        if (!strcmp(word, prism_tune_status_name((prism_tune_status)s))) {
            *out = (prism_tune_status)s;
            return true;
        }
    return bad(r, map, "unknown status '%s'", word);
}

static bool read_values(reader *r, yaml_node_t *cand,
                        const prism_kernel_def *def, int64_t *values) {
    yaml_node_t *m = prism_yaml_need(r, cand, "values", YAML_MAPPING_NODE);
    if (!m)
        return false;
    size_t n = 0;
    for (int t = 0; t < PRISM_MAX_TUNABLES && def->tunables[t].name; t++, n++) {
        int64_t v;
        char allowed[512];
        if (!prism_yaml_int(r, m, def->tunables[t].name, INT64_MIN, INT64_MAX,
                            &v))
            return false;
        if (!prism_tunables_check(def->name, def->tunables[t].name, v,
                                  allowed, sizeof allowed))
            return bad(r, m, "%s.%s = %lld is no longer legal; %s", def->name,
                       def->tunables[t].name, (long long)v, allowed);
        values[t] = v;
    }
    if (prism_yaml_len(m) != n)
        return bad(r, m, "values name %zu tunables; %s has %zu",
                   prism_yaml_len(m), def->name, n);
    return true;
}

static bool read_timings(reader *r, yaml_node_t *cand,
                         prism_tune_candidate *c) {
    yaml_node_t *s = prism_yaml_get(r, cand, "timings");
    if (!s)
        return true;
    if (s->type != YAML_SEQUENCE_NODE)
        return bad(r, s, "'timings' must be a list");
    for (yaml_node_item_t *it = s->data.sequence.items.start;
         it < s->data.sequence.items.top; it++) {
        yaml_node_t *m = prism_yaml_node(r, *it);
        if (!m || m->type != YAML_MAPPING_NODE)
            return bad(r, s, "each timing must be a mapping");
        if (c->n_timings >= PRISM_TUNE_MAX_SHAPES)
            return bad(r, m, "more than %d timings", PRISM_TUNE_MAX_SHAPES);
        prism_tune_timing *t = &c->timings[c->n_timings++];
        int64_t reps;
        if (!prism_yaml_double(r, m, "density", &t->density) ||
            !prism_yaml_double(r, m, "median_ms", &t->median_ms) ||
            !prism_yaml_double(r, m, "min_ms", &t->min_ms) ||
            !prism_yaml_double(r, m, "max_ms", &t->max_ms) ||
            !prism_yaml_int(r, m, "reps", 1, 1000000, &reps))
            return false;
        t->reps = (int)reps;
    }
    return true;
}

/* Optional integer field: -1 when absent. */
static bool read_opt_int(reader *r, yaml_node_t *map, const char *key,
                         int *out) {
    int64_t v = -1;
    if (prism_yaml_get(r, map, key) &&
        !prism_yaml_int(r, map, key, -1, INT32_MAX, &v))
        return false;
    *out = (int)v;
    return true;
}

static bool read_candidate(reader *r, yaml_node_t *m,
                           const prism_kernel_def *def,
                           prism_tune_candidate *c) {
    if (m->type != YAML_MAPPING_NODE)
        return bad(r, m, "each candidate must be a mapping");
    if (!read_values(r, m, def, c->values) || !read_status(r, m, &c->status) ||
        !read_opt_int(r, m, "registers", &c->registers) ||
        !read_opt_int(r, m, "spill_bytes", &c->spill_bytes) ||
        !read_opt_int(r, m, "shared_bytes", &c->shared_bytes) ||
        !read_timings(r, m, c))
        return false;
    if (prism_yaml_get(r, m, "reason") &&
        !prism_yaml_str(r, m, "reason", c->reason, sizeof c->reason))
        return false;
    if (c->status != PRISM_TUNE_OK)
        return true;
    if (!prism_yaml_double(r, m, "median_ms", &c->median_ms) ||
        !prism_yaml_double(r, m, "min_ms", &c->min_ms) ||
        !prism_yaml_double(r, m, "max_ms", &c->max_ms))
        return false;
    if (!(c->median_ms > 0 && isfinite(c->max_ms) && c->min_ms > 0 &&
          c->min_ms <= c->median_ms && c->median_ms <= c->max_ms))
        return bad(r, m,
                   "an ok candidate needs 0 < min_ms <= median_ms <= "
                   "max_ms, all finite");
    return true;
}

static bool read_entry(reader *r, prism_tune_entry *e) {
    yaml_node_t *root = prism_yaml_root(r);
    if (root->type != YAML_MAPPING_NODE)
        return bad(r, root, "the document must be a mapping");
    int64_t v;
    if (!prism_yaml_int(r, root, "format", 0, INT32_MAX, &v))
        return false;
    if (v != PRISM_TUNE_FORMAT)
        return bad(r, root, "format %lld; this build reads format %d",
                   (long long)v, PRISM_TUNE_FORMAT);
    prism_tune_entry head;
    memset(&head, 0, sizeof head);
    yaml_node_t *cfg;
    char kernel[64];
    if (!prism_yaml_str(r, root, "prism_version", head.prism_version,
                        sizeof head.prism_version) ||
        !prism_yaml_str(r, root, "date", head.date, sizeof head.date) ||
        !read_device(r, root, &head.device) ||
        !(cfg = prism_yaml_need(r, root, "config", YAML_MAPPING_NODE)) ||
        !prism_yaml_str(r, cfg, "name", head.config_name,
                        sizeof head.config_name) ||
        !prism_yaml_hex64(r, cfg, "hash", head.config_hash) ||
        !prism_yaml_str(r, root, "kernel", kernel, sizeof kernel))
        return false;
    const prism_kernel_def *def = prism_kernel_def_find(kernel);
    if (!def)
        return bad(r, root, "kernel '%s' is not in this build", kernel);
    if (prism_tune_entry_init(e, def, 0) != PRISM_OK)
        return bad(r, NULL, "out of memory");
    memcpy(e->prism_version, head.prism_version, sizeof e->prism_version);
    memcpy(e->date, head.date, sizeof e->date);
    e->device = head.device;
    memcpy(e->config_name, head.config_name, sizeof e->config_name);
    memcpy(e->config_hash, head.config_hash, sizeof e->config_hash);
    int64_t bucket, seq;
    if (!prism_yaml_int(r, root, "bucket", PRISM_TUNE_MIN_BUCKET,
                        PRISM_TUNE_MAX_BUCKET, &bucket) ||
        !prism_yaml_int(r, root, "seq", 1, INT32_MAX, &seq) ||
        !prism_yaml_bool(r, root, "complete", &e->complete))
        return false;
    if (prism_tune_bucket(bucket) != bucket)
        return bad(r, root, "bucket %lld is not a power of two",
                   (long long)bucket);
    e->bucket = (int)bucket;
    e->seq = (int)seq;
    yaml_node_t *cands =
        prism_yaml_need(r, root, "candidates", YAML_SEQUENCE_NODE);
    if (!cands)
        return false;
    size_t n = prism_yaml_len(cands);
    if (n < 1 || n > PRISM_TUNE_MAX_CANDIDATES)
        return bad(r, cands, "%zu candidates; expected 1 to %d", n,
                   PRISM_TUNE_MAX_CANDIDATES);
    e->candidates = calloc(n, sizeof *e->candidates);
    if (!e->candidates)
        return bad(r, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *m =
            prism_yaml_node(r, cands->data.sequence.items.start[i]);
        e->n_candidates = (int)i + 1;
        if (!m || !read_candidate(r, m, def, &e->candidates[i]))
            return false;
    }
    return true;
}

prism_status prism_tune_entry_parse(const char *text, size_t size,
                                    prism_tune_entry *e, char *why,
                                    size_t why_size) {
    memset(e, 0, sizeof *e);
    reader r;
    if (!prism_yaml_in_load(&r, text, size, why, why_size)) {
        prism_yaml_in_free(&r);
        return PRISM_ERR_CONFIG;
    }
    prism_status st = PRISM_OK;
    if (!read_entry(&r, e)) {
        st = PRISM_ERR_CONFIG;
        prism_tune_entry_free(e);
    }
    prism_yaml_in_free(&r);
    return st;
}

prism_status prism_tune_entry_read(const char *path, prism_tune_entry *e,
                                   bool *absent, char *why, size_t why_size) {
    char *text = NULL;
    size_t size = 0;
    memset(e, 0, sizeof *e);
    prism_status st = prism_fs_read_all(path, PRISM_TUNE_MAX_FILE, &text, &size,
                                        absent, why, why_size);
    if (st != PRISM_OK)
        return st;
    st = prism_tune_entry_parse(text, size, e, why, why_size);
    free(text);
    return st;
}

bool prism_tune_entry_matches(const prism_tune_entry *e,
                              const prism_tune_device *dev,
                              const char *config_hash, const char *kernel,
                              int bucket, char *why, size_t why_size) {
    if (strcmp(e->device.key, dev->key))
        return prism_errorf(why, why_size, PRISM_ERR_CONFIG,
                            "measured on another device or software stack "
                            "(%s, %d SMs, cc %d.%d, NVRTC %s, driver %d)",
                            e->device.name, e->device.sm_count,
                            e->device.cc_major, e->device.cc_minor,
                            e->device.nvrtc, e->device.driver_version),
               false;
    if (strcmp(e->config_hash, config_hash))
        return prism_errorf(why, why_size, PRISM_ERR_CONFIG,
                            "for another config ('%s')", e->config_name),
               false;
    if (strcmp(e->kernel, kernel) || e->bucket != bucket)
        return prism_errorf(why, why_size, PRISM_ERR_CONFIG,
                            "for %s at bucket %d, not %s at %d", e->kernel,
                            e->bucket, kernel, bucket),
               false;
    return true;
}
