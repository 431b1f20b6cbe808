/*
 * pack.h - self-contained, pretuned kernel caches (`prism cache pack`).
 *
 * A pack is a directory a host program puts on PRISM_CACHE_PATH to create
 * plans with no NVRTC compile at all:
 *
 *   PACK/MANIFEST.yaml         what is in the pack (below)
 *   PACK/<64 hex>.prc          cache entries, exactly as in a cache layer
 *   PACK/tuning/<...>.yaml     the tuning entries of the packed configs
 *
 * Every kernel of every config is compiled for every arch, and so is every
 * variant a packed tuning entry selects, so tuned plans hit the pack too.
 * MANIFEST.yaml (written last) records the format, the prism and NVRTC
 * versions, the date, the archs and configs, and the size and SHA-256 of
 * every other file:
 *
 *   format: 1
 *   kind: prism-cache-pack
 *   prism_version: "0.1.0"
 *   nvrtc_version: "13.0 (V13.0.88)"
 *   created: "2026-12-01T10:00:00Z"
 *   archs: [sm_80, sm_90a]
 *   configs:
 *   - {name: "llama-3.1-8b", hash: "9a0e...", archs: [sm_80, sm_90a]}
 *   files:
 *   - {path: "0c1f...prc", size: 183296, sha256: "77d2..."}
 *   - {path: "tuning/9a0e...-5f1c...-attention-32768.yaml", size: 20412,
 *      sha256: "e3b0..."}
 *
 * A pack can also be one POSIX ustar file (FILE.tar, MANIFEST.yaml first),
 * to be unpacked with any tar before use.  Verification finds any file
 * that is altered, missing or not in the manifest.
 */
#ifndef PRISM_PACK_H
#define PRISM_PACK_H

#include "tune/tune.h"

#define PRISM_PACK_MANIFEST "MANIFEST.yaml"
#define PRISM_PACK_FORMAT 1

typedef struct prism_pack_options {
    const prism_config *configs;
    int n_configs;
    const prism_arch *archs; /* n_archs == 0: each config's own targets */
    int n_archs;
    const char *output; /* a new or empty DIR, or FILE.tar */
    bool paged;         /* also the paged K/V programs (gen/kernels.h),
                           for hosts that launch paged batches */
} prism_pack_options;

typedef struct prism_pack_report {
    int modules;        /* untuned config x arch builds */
    int tuned_variants; /* extra builds for the tuning entries */
    int tuning_entries; /* entries copied */
    int files;          /* files listed in the manifest */
    int64_t bytes;      /* their total size */
    uint64_t compiles;  /* NVRTC compiles it took */
} prism_pack_report;

/* Builds a pack.  Tuning entries come from ctx's tuning directories (the
 * first layer holding a file wins); ctx's logger reports skipped ones. */
prism_status prism_pack_create(prism_context *ctx, const prism_pack_options *o,
                               prism_pack_report *report);

typedef void (*prism_pack_line_fn)(void *user, const char *line);

/* Checks a pack (a directory or a .tar) against its manifest: one line
 * per problem through fn ("ALTERED: path (...)", "MISSING: path",
 * "EXTRA: path", ...), lines starting "note:" for harmless findings.
 * Returns PRISM_OK when all is well, PRISM_ERR_CACHE when problems were
 * found (*problems counts them), another status when the pack cannot be
 * read at all (err says why).  *files counts the files checked. */
prism_status prism_pack_verify(const char *pack, prism_pack_line_fn fn,
                               void *user, int *problems, int *files, char *err,
                               size_t err_size);

#endif
