/*
 * qkv_file.h - real Q/K/V tensors from a model, read from a .qkv file.
 *
 * The synthetic workloads (WORKLOADS.md) know their own structure; real
 * activations are the other half of the evidence.  eval/dump_qkv.py writes
 * one file per decoder layer of a model run, and `prism run --input`, the
 * tests (tests/fixtures) and the GPU checks read it here.  The format
 * (docs/fidelity.md, eval/README.md):
 *
 *   bytes 0-7    magic "PRISMQKV"
 *   bytes 8-11   N, uint32 little-endian: the header's length
 *   bytes 12..   N bytes of UTF-8 JSON, space-padded so 12 + N is a
 *                multiple of 64
 *   data         tensors back to back, each C-contiguous [H, S, D],
 *                little-endian fp32 or bf16
 *
 * The header gives format "prism-qkv", version 1, dtype "fp32" | "bf16",
 * tokens (S), layer, q_heads, kv_heads, head_dim, rope_layout, rope_theta,
 * text, model, and tensors: [{name, shape, offset, bytes}] with q [Hq,S,D],
 * k and v [Hkv,S,D] and optionally o [Hq,S,D] (exact causal attention of
 * q, k, v).  Query token t has position t; Sq = Sk = S.
 *
 * Internal to the project (not installed).  Every check a hostile or
 * truncated file could fail is made before a byte of data is used.
 */
#ifndef PRISM_QKV_FILE_H
#define PRISM_QKV_FILE_H

#include "reference/reference.h"

#define PRISM_QKV_MAGIC "PRISMQKV"
#define PRISM_QKV_MAX_HEADER (1 << 20)

typedef struct prism_qkv_file {
    prism_dtype dtype; /* PRISM_DTYPE_FP32 or PRISM_DTYPE_BF16 */
    int tokens, layer, q_heads, kv_heads, head_dim;
    prism_rope_layout rope_layout;
    double rope_theta;
    char text[64], model[128]; /* provenance, for messages      */
    void *q, *k, *v;           /* [H, S, D] in dtype            */
    void *o;                   /* [Hq, S, D] or NULL when absent */
    void *storage_;            /* the file's bytes              */
} prism_qkv_file;

/* Reads and checks the whole file.  On failure returns PRISM_ERR_IO (cannot
 * read), PRISM_ERR_INVALID_ARGUMENT (not a valid .qkv file) or
 * PRISM_ERR_OUT_OF_MEMORY with a one-line reason naming the path in err;
 * *out is zeroed then. */
prism_status prism_qkv_load(const char *path, prism_qkv_file *out, char *err,
                            size_t err_size);
/* NULL and zeroed files are fine. */
void prism_qkv_free(prism_qkv_file *file);

/* The view of one tensor ('q', 'k', 'v' or 'o') as [1, H, S, D]; a view
 * with data NULL when the file lacks it. */
prism_tensor_view prism_qkv_view(const prism_qkv_file *file, char which);

#endif
