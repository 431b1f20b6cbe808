/*
 * tune.h - the per-GPU tuning database (internal API, not installed).
 *
 * `prism autotune` times every legal combination of a kernel's tunables on
 * one GPU and records the result as one YAML file per
 *   (device key, config, kernel, sequence-length bucket).
 * Plans look the best combination up (runtime/plan_tuning.h) and append it
 * to the config's `tuning:` overrides; the config's own overrides always
 * win.
 *
 * Keys.  The device key is the SHA-256 of the GPU name, SM count, compute
 * capability, NVRTC version and driver version: a new driver or compiler
 * may change which kernel is fastest, so old timings stop matching.  The
 * config hash is the SHA-256 of prism_config_to_yaml() of the config with
 * its name, source, targets and tuning cleared: exactly the fields that
 * decide what the kernels compute.  Buckets are powers of two from 4K to
 * 256K; a length maps to the smallest bucket >= it (clamped to the range).
 *
 * Files.  DIR/<config hash 16>-<device key 16>-<kernel>-<bucket>.yaml, with
 * DIR = $PRISM_TUNE_DIR, else the writable cache dir's tuning/; read-only
 * layers are tuning/ under each $PRISM_CACHE_PATH entry (pretuned packs).
 * The format is in tune_db.c.  A file that is unparsable, incomplete, of
 * another device, config, kernel or bucket, or whose values are no longer
 * legal for the kernel is a miss with one warning.
 */
#ifndef PRISM_TUNE_H
#define PRISM_TUNE_H

#include "base/base.h"
#include "gen/kernels.h"

#include <stdbool.h>
#include <stdint.h>

#define PRISM_TUNE_FORMAT 1
#define PRISM_TUNE_MIN_BUCKET 4096
#define PRISM_TUNE_MAX_BUCKET 262144
#define PRISM_TUNE_MAX_SHAPES 8
#define PRISM_TUNE_MAX_CANDIDATES 1024
#define PRISM_TUNE_MAX_FILE (8u << 20) /* a DB file larger than this is bad */

/* ---- keys ---------------------------------------------------------------- */

typedef struct prism_tune_device {
    char name[256]; /* cuDeviceGetName */
    int sm_count;   /* multiprocessors */
    int cc_major, cc_minor;
    char nvrtc[128];    /* prism_nvrtc_version() */
    int driver_version; /* cuDriverGetVersion, e.g. 13000 */
    char key[65];       /* SHA-256 of the fields above, hex */
} prism_tune_device;

/* Computes dev->key from the other fields. */
void prism_tune_device_set_key(prism_tune_device *dev);
/* The arch Prism generates for the device's compute capability. */
bool prism_tune_device_arch(const prism_tune_device *dev, prism_arch *arch);

/* The config hash (see above) as 64 hex digits. */
prism_status prism_tune_config_hash(const prism_config *cfg, char hex[65]);

/* The bucket of a sequence length. */
int prism_tune_bucket(int64_t seqlen);

/* ---- entries ------------------------------------------------------------- */

typedef enum prism_tune_status {
    PRISM_TUNE_UNTIMED = 0, /* not measured yet (budget ran out) */
    PRISM_TUNE_OK,          /* timed; output matched the default's */
    PRISM_TUNE_PRUNED,      /* never timed: compile error, spills, smem... */
    PRISM_TUNE_FAILED,      /* a launch failed: infinitely slow */
    PRISM_TUNE_MISMATCH     /* output differs from the default's */
} prism_tune_status;

const char *prism_tune_status_name(prism_tune_status status);

/* One timed shape: attention at one mask density, or the estimate stage
 * (density < 0: Prism's own selection). */
typedef struct prism_tune_timing {
    double density; /* requested density, or -1 */
    double median_ms, min_ms, max_ms;
    int reps;
} prism_tune_timing;

typedef struct prism_tune_candidate {
    int64_t values[PRISM_MAX_TUNABLES]; /* in the kernel's tunable order */
    prism_tune_status status;
    char reason[200];                         /* pruned/failed/mismatch: why */
    int registers, spill_bytes, shared_bytes; /* ptxas info, -1 unknown */
    double median_ms, min_ms, max_ms;         /* sums over the timed shapes */
    int n_timings;
    prism_tune_timing timings[PRISM_TUNE_MAX_SHAPES];
} prism_tune_candidate;

typedef struct prism_tune_entry {
    int format;
    char prism_version[32];
    char date[32]; /* UTC, ISO 8601 */
    prism_tune_device device;
    char config_name[PRISM_NAME_MAX];
    char config_hash[65];
    char kernel[64];
    int bucket;
    int seq;       /* the length actually timed */
    bool complete; /* every candidate has a status other than untimed */
    int n_tunables;
    char tunables[PRISM_MAX_TUNABLES][64];
    int n_candidates;
    prism_tune_candidate *candidates; /* malloc'd */
} prism_tune_entry;

/* Frees the candidates and zeroes the entry. */
void prism_tune_entry_free(prism_tune_entry *entry);
/* Sets kernel, tunable names and a candidate array of n (all untimed). */
prism_status prism_tune_entry_init(prism_tune_entry *entry,
                                   const prism_kernel_def *def, int n);
/* Index of the fastest OK candidate, or -1. */
int prism_tune_entry_best(const prism_tune_entry *entry);
/* "block_m=64 block_n=32 warp_m=16" */
void prism_tune_values_text(const prism_kernel_def *def, const int64_t *values,
                            char *buf, size_t size);

/* The file name of an entry (no directory). */
void prism_tune_file_name(const char *device_key, const char *config_hash,
                          const char *kernel, int bucket, char *buf,
                          size_t size);

/* Writes the entry atomically into dir (created if missing) under its file
 * name; *path (optional, PRISM_PATH_MAX) gets the full path. */
prism_status prism_tune_entry_write(const char *dir,
                                    const prism_tune_entry *entry, char *path,
                                    char *err, size_t err_size);
/* Serializes the entry (malloc'd YAML text). */
prism_status prism_tune_entry_to_yaml(const prism_tune_entry *entry,
                                      char **text, size_t *size, char *err,
                                      size_t err_size);
/* Parses and checks an entry: every field present and typed, the format
 * known, the kernel and its tunables those of this build, every value
 * legal.  why gets one line on failure (PRISM_ERR_CONFIG / PRISM_ERR_IO). */
prism_status prism_tune_entry_parse(const char *text, size_t size,
                                    prism_tune_entry *entry, char *why,
                                    size_t why_size);
prism_status prism_tune_entry_read(const char *path, prism_tune_entry *entry,
                                   bool *absent, char *why, size_t why_size);
/* True when the entry is for exactly this device, config, kernel and
 * bucket; why says what differs. */
bool prism_tune_entry_matches(const prism_tune_entry *entry,
                              const prism_tune_device *dev,
                              const char *config_hash, const char *kernel,
                              int bucket, char *why, size_t why_size);

#endif
