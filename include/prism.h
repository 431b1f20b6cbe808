/*
 * prism.h - the one public header of libprism.
 *
 * Prism is spectral-aware block-sparse attention for long-context prefill.
 * libprism turns a YAML kernel config into specialized CUDA source, compiles
 * it with NVRTC into cubins, keeps those in a verified on-disk cache, and
 * launches them through plans (or runs the same pipeline on the CPU with
 * LLVM).  Everything here is C11 and every symbol carries the prism_ /
 * PRISM_ prefix.
 *
 * Conventions
 *  - Every fallible call returns a prism_status; PRISM_OK is 0.
 *  - Handles are opaque and come in create/destroy pairs; destroy(NULL) is a
 *    no-op.  A handle keeps the message of its last error
 *    (prism_context_last_error()).
 *  - The library never aborts or exits and never prints unless no logger is
 *    installed (then warnings go to stderr).
 *  - Thread safety is stated on each function.
 *  - The functions declared here (marked PRISM_API) are the whole interface:
 *    libprism.so exports them and nothing else.
 */
#ifndef PRISM_H
#define PRISM_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is compiled with hidden visibility and PRISM_BUILDING_LIBRARY
 * defined, so only the functions marked PRISM_API are exported from the
 * shared library.  Programs that use it define nothing: for them it is
 * empty. */
#if defined(PRISM_BUILDING_LIBRARY) && defined(__GNUC__)
#define PRISM_API __attribute__((visibility("default")))
#else
#define PRISM_API
#endif

#define PRISM_VERSION_MAJOR 0
#define PRISM_VERSION_MINOR 2
#define PRISM_VERSION_PATCH 0
#define PRISM_VERSION_STRING "0.2.0"
#define PRISM_VERSION_NUMBER \
    (PRISM_VERSION_MAJOR * 10000 + PRISM_VERSION_MINOR * 100 + PRISM_VERSION_PATCH)

/* ------------------------------------------------------------------------ */
/* Status codes: one X-macro table, the enum and the strings come from it.  */
/* ------------------------------------------------------------------------ */
#define PRISM_STATUS_TABLE(X)                                                  \
    X(PRISM_OK, 0, "success")                                                  \
    X(PRISM_ERR_INVALID_ARGUMENT, 1, "invalid argument")                       \
    X(PRISM_ERR_OUT_OF_MEMORY, 2, "out of host memory")                        \
    X(PRISM_ERR_IO, 3, "file input/output error")                              \
    X(PRISM_ERR_CONFIG, 4, "invalid kernel config")                            \
    X(PRISM_ERR_UNSUPPORTED, 5, "unsupported configuration")                   \
    X(PRISM_ERR_GENERATE, 6, "code generation failed")                         \
    X(PRISM_ERR_NVRTC, 7, "NVRTC compilation failed")                          \
    X(PRISM_ERR_CACHE, 8, "kernel cache error")                                \
    X(PRISM_ERR_CACHE_MISS, 9, "kernel not in cache and JIT disabled")        \
    X(PRISM_ERR_NO_DRIVER, 10, "CUDA driver not found")                        \
    X(PRISM_ERR_NO_DEVICE, 11, "no CUDA device")                               \
    X(PRISM_ERR_CUDA, 12, "CUDA driver call failed")                           \
    X(PRISM_ERR_NULL_POINTER, 13, "null pointer argument")                     \
    X(PRISM_ERR_MISALIGNED, 14, "misaligned pointer")                          \
    X(PRISM_ERR_BAD_STRIDE, 15, "invalid strides")                             \
    X(PRISM_ERR_BAD_SHAPE, 16, "invalid shape")                                \
    X(PRISM_ERR_DTYPE_MISMATCH, 17, "dtype does not match the plan")           \
    X(PRISM_ERR_NO_KERNEL, 18, "no kernel for this architecture")             \
    X(PRISM_ERR_INTERNAL, 19, "internal error")

typedef enum prism_status {
#define PRISM_STATUS_ENUM_(name, value, text) name = value,
    PRISM_STATUS_TABLE(PRISM_STATUS_ENUM_)
#undef PRISM_STATUS_ENUM_
} prism_status;

/* Thread-safe.  Never NULL; unknown values give "unknown status". */
PRISM_API const char *prism_status_string(prism_status status);
/* Thread-safe.  The enum name, e.g. "PRISM_ERR_CONFIG". */
PRISM_API const char *prism_status_name(prism_status status);
/* Thread-safe.  The library's version string (may differ from the header). */
PRISM_API const char *prism_version(void);
/* Thread-safe.  PRISM_VERSION_NUMBER of the library actually linked. */
PRISM_API int prism_version_number(void);

/* ------------------------------------------------------------------------ */
/* Enumerations shared by configs, the generator and the runtime.           */
/* ------------------------------------------------------------------------ */
typedef enum prism_dtype {
    PRISM_DTYPE_BF16 = 0,
    PRISM_DTYPE_FP16 = 1,
    PRISM_DTYPE_FP32 = 2 /* reference and CPU paths only */
} prism_dtype;

typedef enum prism_rope_layout {
    PRISM_ROPE_HALF = 0,       /* rotate_half: pair i = dims (i, i + D/2) */
    PRISM_ROPE_INTERLEAVED = 1 /* GPT-J: pair i = dims (2i, 2i + 1)       */
} prism_rope_layout;

/* What kernels are compiled for.  Each sm_ arch is a cubin: sm_XY runs
 * on compute capability X.Z with Z >= Y (sm_100 on 10.0 and 10.3, sm_120
 * on 12.0 and 12.1), except sm_90a, which runs on 9.0 only (its wgmma and
 * TMA attention uses instructions of that chip alone).  Every arch but
 * sm_90a runs the mma.sync attention.  PRISM_ARCH_PTX ("compute_80") is
 * PTX of the mma.sync kernels, which the driver compiles at load for any
 * device of compute capability 8.0 or newer, including those no cubin
 * covers; every config keeps one besides its targets.  A plan picks the
 * cubin of the device's own arch, else one of its family, else the PTX
 * (docs/deploy.md). */
typedef enum prism_arch {
    PRISM_ARCH_SM80 = 0,
    PRISM_ARCH_SM86 = 1,
    PRISM_ARCH_SM89 = 2,
    PRISM_ARCH_SM90A = 3,
    PRISM_ARCH_SM100 = 4,
    PRISM_ARCH_SM120 = 5,
    PRISM_ARCH_PTX = 6,
    PRISM_ARCH_COUNT_ = 7
} prism_arch;

/* Thread-safe.  "bf16", "half", "sm_90a"...; NULL for out-of-range values. */
PRISM_API const char *prism_dtype_name(prism_dtype dtype);
PRISM_API const char *prism_rope_layout_name(prism_rope_layout layout);
PRISM_API const char *prism_arch_name(prism_arch arch);
/* Thread-safe.  Parses "sm_80", "sm_86", "sm_89", "sm_90a", "sm_100",
 * "sm_120" and "compute_80" (exact spelling). */
PRISM_API prism_status prism_arch_parse(const char *name, prism_arch *out);

/* ------------------------------------------------------------------------ */
/* Kernel config: the single source of truth for one model family.          */
/* The YAML schema is documented in configs/README.md.                      */
/* ------------------------------------------------------------------------ */
#define PRISM_NAME_MAX 128
#define PRISM_PATH_MAX 1024
#define PRISM_MAX_TARGETS 8
#define PRISM_MAX_TUNING 32

typedef struct prism_tuning_override {
    char kernel[64]; /* kernel name, e.g. "pool_stats" */
    char param[64];  /* tunable name, e.g. "threads"    */
    int64_t value;
    int line, column; /* where it was written, for later validation errors */
} prism_tuning_override;

/* Per-layer settings ("layers:" in YAML, configs/README.md).  A model's
 * decoder layers are numbered from 0; a config may make some of them dense
 * (they skip Prism) and give others their own method parameters.  The
 * shapes (head_dim, heads, dtype, RoPE, block_size) are the model's and
 * the same in every layer.  prism_config_for_layer() resolves one layer. */
#define PRISM_MAX_RECENT_BLOCKS 4096 /* prism.recent_blocks            */
#define PRISM_MAX_LAYER 1023         /* highest layer index a config names */
#define PRISM_MAX_LAYER_RANGES 16    /* ranges per list                    */
#define PRISM_MAX_LAYER_OVERRIDES 16 /* entries of layers.overrides        */

/* Layers first..last, both included. */
typedef struct prism_layer_range {
    int first, last;
} prism_layer_range;

/* The method fields a layer override may set: bits of its `fields`. */
typedef enum prism_layer_field {
    PRISM_LAYER_HIGH_DIM = 1 << 0,
    PRISM_LAYER_LOW_DIM = 1 << 1,
    PRISM_LAYER_THRESHOLD_HIGH = 1 << 2,
    PRISM_LAYER_THRESHOLD_LOW = 1 << 3,
    PRISM_LAYER_CALIBRATE = 1 << 4,
    PRISM_LAYER_TEMP_HIGH = 1 << 5,
    PRISM_LAYER_TEMP_LOW = 1 << 6,
    PRISM_LAYER_FORCE_SINK = 1 << 7,
    PRISM_LAYER_FORCE_RECENT = 1 << 8,
    PRISM_LAYER_RECENT_BLOCKS = 1 << 9,
    PRISM_LAYER_ALL_ = (1 << 10) - 1
} prism_layer_field;

/* Method parameters for some layers (one entry of layers.overrides): the
 * fields whose bit is set in `fields` replace the top-level ones for the
 * listed layers; the others keep the top-level value. */
typedef struct prism_layer_override {
    int n_ranges; /* 1..PRISM_MAX_LAYER_RANGES                             */
    prism_layer_range ranges[PRISM_MAX_LAYER_RANGES];
    unsigned fields; /* prism_layer_field bits, at least one               */
    int high_dim, low_dim;
    double threshold_high, threshold_low;
    bool calibrate;
    double temp_high, temp_low;
    bool force_sink, force_recent;
    int recent_blocks;
} prism_layer_override;

/* Which fields shape the generated code: head_dim, dtype, rope_layout,
 * block_size, high_dim, low_dim, targets and tuning.  The head counts and
 * the method's settings (thresholds, calibrate, temps, force_*) are only
 * the defaults of a launch's run-time parameters (prism_params): changing
 * them changes no kernel and no cache key. */
typedef struct prism_config {
    char name[PRISM_NAME_MAX];   /* "name:" or the file's base name       */
    char source[PRISM_PATH_MAX]; /* file the config came from, or "<memory>" */

    int head_dim; /* D: 64, 128 or 256 (any even value in [16, 512])       */
    int q_heads;  /* Hq (run-time default)                                 */
    int kv_heads; /* Hkv; Hq % Hkv == 0 (run-time default)                 */
    prism_dtype dtype;

    prism_rope_layout rope_layout;
    double rope_theta;

    int block_size;        /* BS, power of two in [16, 256]                */
    int high_dim;          /* dh, even, <= head_dim                        */
    int low_dim;           /* dl, even, <= head_dim                        */
    double threshold_high; /* top-p mass for the high band, (0, 1]         */
    double threshold_low;  /* top-p mass for the low band, (0, 1]          */
    bool calibrate;
    double temp_high, temp_low; /* used when calibrate is false            */
    bool force_sink;   /* always select key block 0                         */
    bool force_recent; /* always select the diagonal key block (and the
                          recent_blocks - 1 before it)                      */
    int recent_blocks; /* with force_recent: the last recent_blocks key
                          blocks up to the diagonal, a local window;
                          1..PRISM_MAX_RECENT_BLOCKS, 1 = the diagonal     */

    int n_targets;
    prism_arch targets[PRISM_MAX_TARGETS];

    int n_tuning;
    prism_tuning_override tuning[PRISM_MAX_TUNING];

    /* layers.dense: layers that skip Prism and run dense attention.  No
     * layer may be named twice in dense and overrides together. */
    int n_dense;
    prism_layer_range dense[PRISM_MAX_LAYER_RANGES];
    int n_layer_overrides;
    prism_layer_override layer_overrides[PRISM_MAX_LAYER_OVERRIDES];
} prism_config;

/* Thread-safe.  Fills *cfg with the docs/method.md §8 defaults for D=128:
 * Hq=32, Hkv=8, bf16, half layout, theta 500000, BS=128, dh=64, dl=96,
 * thresholds 0.95/0.95, calibration on, temps 1.0, sink and diagonal forced,
 * targets sm_80 and sm_90a.  Band widths default per head dim (see README). */
PRISM_API void prism_config_init(prism_config *cfg);

/* Thread-safe.  Loads and strictly validates a YAML config: every rule of
 * prism_config_validate(), and the tuning overrides against each target
 * arch, so that a config that loads (and so passes `prism check`)
 * generates for all its targets (e.g. attention.stages needs the wgmma
 * kernel, which only sm_90a has).  On failure returns PRISM_ERR_CONFIG (or
 * PRISM_ERR_IO) and writes one line "FILE:LINE:COLUMN: what is wrong; what
 * is allowed" into err, the position being the offending value (for
 * tuning, the override). */
PRISM_API prism_status prism_config_load_file(const char *path,
                                              prism_config *cfg, char *err,
                                              size_t err_size);
/* Thread-safe.  The same from memory; `name` is used in messages. */
PRISM_API prism_status prism_config_load_string(const char *yaml, size_t length,
                                                const char *name,
                                                prism_config *cfg, char *err,
                                                size_t err_size);
/* Thread-safe.  Validates a config built in memory (no line numbers):
 * every field, every tuning override, bools holding 0 or 1, and that the
 * overrides together can be built for some arch.  Whether they can be
 * built for a given arch is checked where that arch is known: by the
 * loaders for each target, by generation and plans for the arch they
 * build (a config tuned for sm_90a may keep other targets). */
PRISM_API prism_status prism_config_validate(const prism_config *cfg, char *err,
                                             size_t err_size);
/* Thread-safe.  Writes the resolved config as YAML (defaults filled in).
 * Any config is written, valid or not, without validating it: a bool whose
 * byte is not 0 is written as true, out-of-range enums as numbers, so
 * loading the text reports what is wrong.  Returns a malloc'd string the
 * caller frees, or NULL when out of memory. */
PRISM_API char *prism_config_to_yaml(const prism_config *cfg);

/* Thread-safe (reads cfg, writes only *out and *dense).  The config of
 * decoder layer `layer` (0-based): *out becomes a copy of cfg with the
 * fields of the layers.overrides entry that names the layer, if any, and
 * with no layers section (n_dense = n_layer_overrides = 0), so it is a
 * plain config for prism_plan_create(); *dense is true when layers.dense
 * names the layer (the caller then runs dense attention and *out is the
 * top-level config).  A layer no entry names gets the top-level config.
 * Two layers whose *out compare equal (memcmp) can share one plan.  out may
 * be cfg.  Returns PRISM_ERR_NULL_POINTER, PRISM_ERR_INVALID_ARGUMENT for a
 * layer outside 0..PRISM_MAX_LAYER, or PRISM_ERR_CONFIG when cfg does not
 * pass prism_config_validate() (which gives the message); *out and *dense
 * are unchanged then. */
PRISM_API prism_status prism_config_for_layer(const prism_config *cfg,
                                              int layer, prism_config *out,
                                              bool *dense);

/* ------------------------------------------------------------------------ */
/* Run-time method parameters.                                              */
/* ------------------------------------------------------------------------ */
/* What a launch may change without new kernels.  Kernels are generated,
 * compiled and cached for what shapes their code -- head_dim, block_size,
 * the band widths, dtype, RoPE layout, arch and the tuning choices -- and
 * for nothing else: the method's settings and the head counts below reach
 * them as launch arguments.  So thresholds 0.9 and 0.98, other
 * temperatures, another softmax scale, or a tensor-parallel shard with 4
 * of a model's 32 query heads run on one plan and one set of cubins, with
 * no compile.
 *
 * A launch takes them from prism_batch.params; NULL there (as in a
 * zero-initialised batch) means the plan config's own values, which is
 * prism_params_init_from_config(prism_plan_config(plan), ...).  They are
 * checked on every launch: a bad value fails the launch with
 * PRISM_ERR_INVALID_ARGUMENT and a message naming the field.
 *
 * The head counts are those of the call's tensors: q and o have q_heads
 * heads, k and v kv_heads, and a block mask has q_heads rows per sequence.
 * A plan's own workspace is sized for its config's head counts; a launch
 * with more heads than those passes its own workspace
 * (prism_plan_workspace_size of the batch says how large). */
typedef struct prism_params {
    double threshold_high; /* top-p mass of the high band, (0, 1]          */
    double threshold_low;  /* top-p mass of the low band, (0, 1]           */
    bool calibrate;        /* energy calibration of the band scales         */
    double temp_high;      /* band temperatures used when calibrate is      */
    double temp_low;       /*   false; finite and > 0 either way            */
    bool force_sink;       /* always select key block 0                     */
    bool force_recent;     /* always select the recent_blocks key blocks
                              that end at the diagonal                      */
    double softmax_scale;  /* attention's logit scale: 0 means
                              1/sqrt(head_dim), else finite and > 0         */
    int q_heads;           /* Hq of the tensors, 1..1024                    */
    int kv_heads;          /* Hkv, 1..1024, dividing q_heads (GQA groups)   */
    int recent_blocks;     /* key blocks force_recent keeps, ending at the
                              diagonal: 1..PRISM_MAX_RECENT_BLOCKS          */
} prism_params;

/* Thread-safe.  The config's method settings and head counts, with
 * softmax_scale 0 (1/sqrt(head_dim)): what a launch without params runs.
 * cfg NULL: the prism_config_init defaults. */
PRISM_API void prism_params_init_from_config(const prism_config *cfg,
                                             prism_params *params);
/* Thread-safe.  Checks every field against the ranges above.  Returns
 * PRISM_ERR_INVALID_ARGUMENT (PRISM_ERR_NULL_POINTER for NULL) and writes
 * "params.FIELD VALUE ...; what is allowed" into err. */
PRISM_API prism_status prism_params_validate(const prism_params *params,
                                             char *err, size_t err_size);

/* ------------------------------------------------------------------------ */
/* Context: logger, cache, counters.                                        */
/* ------------------------------------------------------------------------ */
typedef enum prism_log_level {
    PRISM_LOG_DEBUG = 0,
    PRISM_LOG_INFO = 1,
    PRISM_LOG_WARN = 2,
    PRISM_LOG_ERROR = 3
} prism_log_level;

typedef void (*prism_log_fn)(void *user, prism_log_level level,
                             const char *message);

/* Where a context's plans run.  CPU plans compile the config's kernels
 * with LLVM for the host CPU (PRISM_ERR_UNSUPPORTED in a build without
 * the LLVM backend) and take HOST pointers everywhere: tensors, masks,
 * cu_seqlens, lse and workspaces; calls are synchronous and the stream is
 * ignored.  Host tensors need only element alignment and positive
 * strides; a CPU workspace must be 64-byte aligned. */
typedef enum prism_device_kind {
    PRISM_DEVICE_CUDA = 0, /* default */
    PRISM_DEVICE_CPU = 1
} prism_device_kind;

/* The kernel cache.  Kernels (cubins, CPU object code) run with the
 * rights of the process that loads them, so the cache trusts only what no
 * other account could have written: a layer directory or an entry must be
 * owned by the effective uid or by root and be writable by neither group
 * nor others (the sticky bit does not help; the directories above a layer
 * are not checked, since every entry is checked again when read).
 *  - An untrusted writable directory (cache_dir) is not used at all, not
 *    even for lock files: the context compiles in memory only, with one
 *    warning naming the directory and the fix (`chmod go-w DIR`, `chown`).
 *  - An untrusted read-only layer (cache_path) is skipped with one warning.
 *  - An untrusted entry is skipped with one warning per layer; in the
 *    writable directory it is rebuilt and replaced, in a read-only layer it
 *    is left alone.
 * Builds of one kernel are serialised across processes by a lock file
 * beside the entry.  A process that waits for another's build logs one
 * warning after a few seconds naming the kernel's key and the holder's
 * pid; after $PRISM_LOCK_TIMEOUT whole seconds (default 120, at most
 * 86400; 0: do not wait; another value warns and gives 120) it stops
 * waiting, compiles the kernel itself and publishes it: entries appear
 * only by an atomic rename of a complete file and any complete entry of a
 * key is a valid one, so the holder's later publish, if any, is harmless,
 * and the next process finds the kernel without waiting. */
typedef struct prism_context_options {
    int device_ordinal;      /* CUDA device of the context's GPU plans     */
    prism_log_fn log;        /* NULL: warnings and errors go to stderr     */
    void *log_user;
    prism_log_level log_level; /* messages below this level are dropped    */
    const char *cache_dir;   /* NULL: $PRISM_CACHE_DIR, $XDG_CACHE_HOME/prism,
                                ~/.cache/prism                            */
    const char *cache_path;  /* NULL: $PRISM_CACHE_PATH (read-only layers)  */
    int64_t cache_max_bytes; /* 0: $PRISM_CACHE_MAX_BYTES or 2 GiB          */
    bool disable_disk_cache; /* memory layer only                          */
    bool disable_jit;        /* a miss is PRISM_ERR_CACHE_MISS ($PRISM_JIT=off) */
    int compile_threads;     /* kernels compiled at once, and ptxas threads
                                per kernel; 0: number of online CPUs       */
    prism_device_kind device; /* PRISM_DEVICE_CUDA (0) or PRISM_DEVICE_CPU */
    int cpu_threads;         /* CPU plans' worker threads; 0: online CPUs  */
} prism_context_options;

typedef struct prism_counters {
    uint64_t memory_hits; /* found in the in-process layer                  */
    uint64_t disk_hits;   /* found in the writable or a read-only layer     */
    uint64_t misses;      /* not found anywhere                             */
    uint64_t compiles;    /* NVRTC compilations run by this context         */
    uint64_t corrupt;     /* entries of the writable directory rejected
                             (bad magic, hash, truncation) and rebuilt; a
                             bad entry of a read-only layer is skipped,
                             with a warning naming it, but not counted:
                             nothing here can replace it               */
    double compile_ms;    /* wall time spent in NVRTC                       */
} prism_counters;

typedef struct prism_context prism_context;

/* Thread-safe. */
PRISM_API void prism_context_options_init(prism_context_options *options);
/* Thread-safe.  options may be NULL (defaults).  Checks the options:
 * PRISM_ERR_INVALID_ARGUMENT for an unknown device kind or a negative
 * device_ordinal, cpu_threads, compile_threads or cache_max_bytes;
 * PRISM_ERR_NO_DEVICE for a nonzero CUDA device_ordinal the CUDA driver
 * says is not there (without a driver, and for ordinal 0, the first plan
 * reports a missing device).  The message names the field; it is logged
 * as an error and prism_context_last_error(NULL) returns it. */
PRISM_API prism_status
prism_context_create(const prism_context_options *options, prism_context **out);
/* Not thread-safe with other calls on the same context.  NULL is a no-op. */
PRISM_API void prism_context_destroy(prism_context *ctx);
/* The message of the last failing call on this context (from any thread).
 * Never NULL; valid until the next failing call.  Read it from the thread
 * that saw the failure when several threads share the context.  With ctx
 * NULL: the message of this thread's last failed prism_context_create
 * ("no context (NULL)" before any). */
PRISM_API const char *prism_context_last_error(const prism_context *ctx);
/* Thread-safe. */
PRISM_API prism_status prism_context_counters(const prism_context *ctx,
                                              prism_counters *out);
/* Thread-safe.  The writable cache directory in use ("" when none). */
PRISM_API const char *prism_context_cache_dir(const prism_context *ctx);

/* ------------------------------------------------------------------------ */
/* Kernels: generation and compilation.                                      */
/* ------------------------------------------------------------------------ */

/* Thread-safe.  Number of kernels every config generates, and their names
 * in pipeline order ("pool_stats", ...). */
PRISM_API int prism_kernel_count(void);
PRISM_API const char *prism_kernel_name(int index);

/* Thread-safe.  Generates the CUDA source of one kernel for one arch.
 * *source is malloc'd; the caller frees it. */
PRISM_API prism_status prism_generate_source(const prism_config *cfg,
                                             int kernel_index, prism_arch arch,
                                             char **source, char *err,
                                             size_t err_size);

typedef struct prism_kernel_info {
    const char *name;        /* kernel name                                 */
    prism_arch arch;
    bool cache_hit;          /* served without compiling                    */
    char key_hex[65];        /* cache key, SHA-256 in hex                   */
    /* Resource use, -1 where unknown: from ptxas's report when NVRTC
     * returned one, else read from the cubin, which records all but the
     * spills (spill_bytes -1; local_bytes, the stack frame, bounds them:
     * 0 means nothing spills). */
    int registers;           /* per thread                                  */
    int spill_bytes;         /* spill stores + loads, bytes                 */
    int shared_bytes;        /* static shared memory                        */
    int local_bytes;         /* stack frame                                 */
    double compile_ms;       /* NVRTC time when compiled, else the cached one */
    double lookup_ms;        /* time this call spent getting the cubin       */
    const void *cubin;       /* owned by the module                         */
    size_t cubin_size;
} prism_kernel_info;

typedef struct prism_module prism_module;

/* Thread-safe on one context.  Generates every kernel of cfg for arch and
 * gets their cubins from the cache, compiling misses in parallel threads. */
PRISM_API prism_status prism_module_build(prism_context *ctx,
                                          const prism_config *cfg,
                                          prism_arch arch, prism_module **out);
/* NULL is a no-op. */
PRISM_API void prism_module_destroy(prism_module *module);
/* Thread-safe for concurrent readers. */
PRISM_API int prism_module_kernel_count(const prism_module *module);
PRISM_API prism_status prism_module_kernel_info(const prism_module *module,
                                                int index,
                                                prism_kernel_info *out);
/* NVRTC program log of one kernel (may be empty; never NULL). */
PRISM_API const char *prism_module_kernel_log(const prism_module *module,
                                              int index);

/* ------------------------------------------------------------------------ */
/* GPU plans and launches.                                                  */
/* ------------------------------------------------------------------------ */

/* A CUstream (cuda.h's CUstream is the same type); NULL is the default
 * stream. */
typedef struct CUstream_st *prism_stream;

/* Size limits.  Every size derived from a caller's numbers is computed
 * without wrapping and checked against these; beyond them a plan or call
 * fails with PRISM_ERR_BAD_SHAPE (limits, batches) or PRISM_ERR_BAD_STRIDE
 * (tensors), naming the argument.
 *   PRISM_MAX_BATCH           max_batch and a batch's sequence count
 *   PRISM_MAX_SEQLEN          max_seqlen_q/k, a batch's lengths and totals
 *   PRISM_MAX_WORKSPACE_BYTES workspace a plan's limits may need
 *   PRISM_MAX_TENSOR_BYTES    the byte span a tensor's strides and extents
 *                             reach: (B-1)|sb| + (H-1)|sh| + (S-1)|ss| + D
 *                             elements.  Within it the library trusts the
 *                             caller that the memory exists. */
#define PRISM_MAX_BATCH 65536
#define PRISM_MAX_SEQLEN (1 << 24)
#define PRISM_MAX_WORKSPACE_BYTES ((size_t)1 << 39)
#define PRISM_MAX_TENSOR_BYTES ((int64_t)1 << 48)

typedef struct prism_plan_limits {
    int max_batch;     /* sequences per launch (a ragged batch counts each) */
    int max_seqlen_q;  /* longest query sequence                           */
    int max_seqlen_k;  /* longest key sequence                             */
    bool caller_workspace; /* true: the plan allocates no workspace and every
                              estimate/prefill passes one                  */
    bool paged;        /* true: a CUDA plan also compiles and loads its paged
                          K/V programs at creation (prism_plan_create_async
                          then overlaps them too); false: at its first paged
                          launch, which waits for them.  CPU plans need none */
} prism_plan_limits;

/* A device tensor of shape [B, H, S, D]: element strides for B, H and S;
 * the D stride is 1.  For ragged batches B is 1 and S runs over the packed
 * tokens of every sequence (FlashAttention's varlen layout).  GPU kernels
 * need 16-byte aligned data and strides that are multiples of 8. */
typedef struct prism_tensor {
    void *data;
    int64_t stride_b, stride_h, stride_s;
} prism_tensor;

/* Paged K/V: the paged KV cache of serving engines, read in place.
 * With prism_batch.paged set, the calls' k and v tensors describe page pools
 * and each sequence's keys are found through its row of a page table:
 *   - k->data (v->data) is the first element of page 0; stride_b is the
 *     element distance from one page to the next, stride_h and stride_s
 *     the head and token strides inside a page (the D stride is 1), so
 *       NHD (vLLM)       [pages, page_size, Hkv, D]:
 *                        stride_b page_size*Hkv*D, stride_h D, stride_s Hkv*D
 *       HND (FlashInfer) [pages, Hkv, page_size, D]:
 *                        stride_b Hkv*page_size*D, stride_h page_size*D,
 *                        stride_s D
 *     and K and V may have different strides (a combined [pages, 2, ...]
 *     cache is two pools with equal strides);
 *   - key t (0-based) of sequence b is row t % page_size of page
 *     page_table[b * max_pages + t / page_size];
 *   - sequence b has seqlen_k keys (regular batch) or cu_seqlens_k[b+1] -
 *     cu_seqlens_k[b] (ragged batch: cu_seqlens_k gives the key lengths
 *     and total_k is not used).  Q, O, lse and masks are as without pages,
 *     regular or ragged; the queries are the last keys, so a chunk of a
 *     longer prefill has Sk > Sq: the prefix in the cache, then the chunk
 *     (whose K and V the caller wrote into its pages before the call).
 * page_size must be a positive multiple of the config's block_size (so a
 * key block never straddles two pages): with block_size 128, pages of
 * 128, 256, 384, ... tokens; vLLM's 16-token pages need a config with
 * block_size 16 and pages of 16, 32, ... .  Every call checks the fields
 * and fails with a message naming the field: page_size, num_pages,
 * max_pages against seqlen_k (a table too short for the longest
 * sequence), alignment of the table (4 bytes) and of pooled_keys (16).
 * Where the table is host memory (CPU plans) every entry a sequence uses
 * is checked to lie in [0, num_pages) before anything is read.  A CUDA
 * plan's table is device memory the host cannot see: its entries are the
 * caller's promise (an entry out of range reads out of bounds, as a bad
 * pointer would), as are: the entries used are pages of the pools, rows
 * of a sequence's last page past its length hold finite values (the
 * sm_90a kernel loads whole key tiles and masks the scores; zeroed or
 * previously written pages qualify).  Sequences may share pages (a
 * common prefix): nothing writes to the pools.
 *
 * Pooled-key cache (optional).  Each chunk of a chunked prefill pools
 * every key block of its prefix again, although a full block's mean never
 * changes.  pooled_keys, when not NULL, is a side buffer of
 * prism_paged_pooled_bytes() bytes that keeps, per page, each full key
 * block's mean and band energies: [num_pages][page_size / block_size]
 * [kv_heads][head_dim + 4] floats (mean, the three energies, a mark).  An
 * estimate or prefill reads the entry of every full block whose entry is
 * marked, and pools and writes (then marks) every full block whose entry
 * is not; partial blocks are pooled every time and never written.  The
 * work is placed for a chunked prefill: the blocks that end at or before
 * the call's first query (key Sk - Sq) are taken as written by earlier
 * chunks and read in bulk, the ones after them pooled one by one, so the
 * pooling grows with the chunk; a prefix block found unwritten is pooled
 * and written all the same, only slower.
 * Selections with and without the buffer are identical.  The contract:
 * the buffer starts zeroed, and the caller zeroes a page's entries (the
 * page's (page_size / block_size) * kv_heads * (head_dim + 4) floats)
 * whenever the page is given other keys (a freed page reused); a layer
 * needs its own buffer as it has its own K.  Calls that share a buffer
 * run one at a time (one stream); attention does not use it. */
typedef struct prism_paged_kv {
    const int32_t *page_table; /* [batch, max_pages] page ids; device
                                  memory for CUDA plans, host for CPU     */
    int max_pages;             /* entries per sequence in page_table      */
    int page_size;             /* tokens per page, a multiple of
                                  block_size                              */
    int num_pages;             /* pages in each pool: ids lie in
                                  [0, num_pages)                          */
    float *pooled_keys;        /* NULL, or the pooled-key cache (above)   */
} prism_paged_kv;

/* The sequences of one launch. */
typedef struct prism_batch {
    prism_dtype dtype;           /* must match the plan's config            */
    int batch;                   /* number of sequences                     */
    int seqlen_q, seqlen_k;      /* fixed lengths; with cu_seqlens, the
                                    longest sequence of the batch           */
    const int32_t *cu_seqlens_q; /* device [batch + 1] or NULL              */
    const int32_t *cu_seqlens_k; /* device [batch + 1]; both or neither     */
    int total_q, total_k;        /* with cu_seqlens: tokens in the packed
                                    Q and K/V (cu_seqlens_*[batch])         */
    const prism_params *params;  /* run-time method parameters and head
                                    counts; NULL: the plan config's.  Host
                                    memory, read during the call only.
                                    (New after 0.2.0: the struct grew by
                                    this pointer; zero-initialised batches
                                    keep working.) */
    const prism_paged_kv *paged; /* NULL: k and v are [B, Hkv, Sk,
                                    D] tensors; else page pools read
                                    through a page table (above).  Host
                                    memory, read during the call only.
                                    (New after 0.2.0, after params.) */
} prism_batch;

/* Thread-safe.  Bytes of a pooled-key cache (prism_paged_kv.pooled_keys)
 * for num_pages pages of page_size tokens and kv_heads KV heads with the
 * config's head_dim and block_size; 0 when cfg is NULL, page_size is not
 * a positive multiple of block_size, a count is not positive, or the size
 * passes PRISM_MAX_TENSOR_BYTES. */
PRISM_API size_t prism_paged_pooled_bytes(const prism_config *cfg,
                                          int num_pages, int page_size,
                                          int kv_heads);

/* A block mask on the device, in the format of reference/reference.h
 * (Hq: the launch's q_heads, prism_params):
 * counts[(b * Hq + h) * nq + i] selected key blocks of query block i, their
 * ascending indices at indices[((b * Hq + h) * nq + i) * nk + c].
 * nq = ceil(seqlen_q / block_size) and nk = ceil(seqlen_k / block_size) of
 * the batch's (longest) lengths. */
typedef struct prism_block_mask {
    int32_t *counts;
    int32_t *indices;
    int nq, nk;
} prism_block_mask;

typedef struct prism_plan prism_plan;

/* Thread-safe on one context.  Loads (or JIT-compiles) the config's kernels
 * for the context's device and allocates the workspace for `limits` (and
 * the config's head counts).  Configs that differ only in run-time
 * parameters (prism_params) share their kernels: no compile.
 * Returns PRISM_ERR_NO_DRIVER / PRISM_ERR_NO_DEVICE where there is no GPU
 * and PRISM_ERR_NO_KERNEL for a device arch without kernels. */
PRISM_API prism_status prism_plan_create(prism_context *ctx,
                                         const prism_config *cfg,
                                         const prism_plan_limits *limits,
                                         prism_plan **out);
/* The same from a YAML config file. */
PRISM_API prism_status
prism_plan_create_from_file(prism_context *ctx, const char *path,
                            const prism_plan_limits *limits, prism_plan **out);

/* A plan being made on a background thread. */
typedef struct prism_plan_pending prism_plan_pending;

/* Thread-safe on one context.  prism_plan_create on a background thread:
 * checks the arguments and validates cfg now (their errors return here),
 * then returns at once while the kernels are fetched or compiled, so a
 * host can overlap a cold compile (seconds per config) with its own
 * start-up.  The thread makes exactly the plan prism_plan_create would,
 * through the same cache: a kernel it compiles is compiled once, and a
 * plan made meanwhile on any thread that needs the same kernel waits for
 * it rather than compiling it again.  Pass *out to prism_plan_wait exactly
 * once, before destroying the context. */
PRISM_API prism_status prism_plan_create_async(prism_context *ctx,
                                               const prism_config *cfg,
                                               const prism_plan_limits *limits,
                                               prism_plan_pending **out);
/* Thread-safe.  Whether the plan is made or has failed (prism_plan_wait
 * then returns at once); false for NULL. */
PRISM_API bool prism_plan_pending_ready(const prism_plan_pending *pending);
/* Waits for the plan, frees pending and returns what prism_plan_create
 * returned: *out the plan, or NULL and the failure's message as the
 * context's last error, set on the calling thread.  Call from one thread
 * only.  out may be NULL: the plan is destroyed, and only its kernels stay
 * (in the cache), a warm-up for plans made later. */
PRISM_API prism_status prism_plan_wait(prism_plan_pending *pending,
                                       prism_plan **out);
/* NULL is a no-op.  Not thread-safe with launches on the same plan. */
PRISM_API void prism_plan_destroy(prism_plan *plan);
/* Thread-safe.  Workspace bytes estimate/prefill need for `batch` (NULL:
 * the plan's limits), with the batch's head counts (batch->params, else
 * the config's); 0 for a NULL plan, a batch outside the plan's limits,
 * invalid params, or more than PRISM_MAX_WORKSPACE_BYTES. */
PRISM_API size_t prism_plan_workspace_size(const prism_plan *plan,
                                           const prism_batch *batch);
/* Thread-safe.  The arch whose kernels the plan runs (PRISM_ARCH_COUNT_
 * for a CPU plan). */
PRISM_API prism_arch prism_plan_arch(const prism_plan *plan);
/* Thread-safe.  The config the plan was made from. */
PRISM_API const prism_config *prism_plan_config(const prism_plan *plan);
/* Never NULL; the message of the last failing call on this plan. */
PRISM_API const char *prism_plan_last_error(const prism_plan *plan);

/* Launches.  Asynchronous on `stream`; no allocation, no synchronisation.
 * Launches on one plan are not thread-safe with each other when they use
 * the plan's own workspace (workspace NULL); with caller workspaces they
 * are.  workspace NULL: the plan's (PRISM_ERR_INVALID_ARGUMENT when the
 * plan was created with caller_workspace, or when batch->params has more
 * heads than the plan's own workspace holds).  Each launch runs
 * batch->params (or the plan config's values: prism_params); a bad field
 * fails it with PRISM_ERR_INVALID_ARGUMENT. */

/* Prism estimation (pooling, calibration, dual-band scores, selection). */
PRISM_API prism_status prism_estimate(prism_plan *plan,
                                      const prism_batch *batch,
                                      const prism_tensor *q,
                                      const prism_tensor *k,
                                      const prism_block_mask *mask,
                                      void *workspace, size_t workspace_size,
                                      prism_stream stream);
/* Block-sparse attention over any block mask.  lse may be NULL, else fp32
 * natural-log log-sum-exp, [batch, Hq, seqlen_q] for a regular batch and
 * [Hq, total_q] for a ragged one (FlashAttention's varlen layout); a query
 * that sees no key gets -inf and a zero output row.  The workspace holds
 * the work queue of the persistent sm_90a kernel (and the CPU backend's
 * scratch); the same workspace serves estimate, attention and prefill.
 * (0.2.0: the workspace arguments are new.) */
PRISM_API prism_status prism_sparse_attention(prism_plan *plan,
                                              const prism_batch *batch,
                                              const prism_tensor *q,
                                              const prism_tensor *k,
                                              const prism_tensor *v,
                                              const prism_block_mask *mask,
                                              const prism_tensor *o, float *lse,
                                              void *workspace,
                                              size_t workspace_size,
                                              prism_stream stream);
/* Both: estimation then attention.  mask may be NULL (kept in the
 * workspace) or receives the selection. */
PRISM_API prism_status prism_prefill(prism_plan *plan, const prism_batch *batch,
                                     const prism_tensor *q,
                                     const prism_tensor *k,
                                     const prism_tensor *v,
                                     const prism_tensor *o, float *lse,
                                     const prism_block_mask *mask,
                                     void *workspace, size_t workspace_size,
                                     prism_stream stream);
/* Density (selected / block-causal blocks) of the last estimate or prefill
 * on this plan.  Synchronises with that launch's stream. */
PRISM_API prism_status prism_plan_density(prism_plan *plan, double *density);

#ifdef __cplusplus
}
#endif
#endif /* PRISM_H */
