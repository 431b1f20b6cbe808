/*
 * config_loader.h - the state of one YAML config load, shared by the
 * document layer (config.c), the schema walker (config_walk.c) and its
 * scalar readers (config_scalars.c); the error reporting all of them use is
 * config_loader.c.
 *
 * The loader owns the libyaml document, the config being filled in and the
 * place each field was written, so that an error found late (a band wider
 * than head_dim) can still point at its line and column.  Not installed.
 */
#ifndef PRISM_CONFIG_LOADER_H
#define PRISM_CONFIG_LOADER_H

#include "config/config_rules.h"

#include <yaml.h>

typedef struct prism_position {
    int line, column; /* 1-based; 0 when not written in the file */
} prism_position;

typedef struct prism_loader {
    char file[PRISM_PATH_MAX]; /* FILE of the messages, one line        */
    const char *input;
    size_t length;
    yaml_document_t doc;
    prism_config cfg; /* filled in; copied out only when all passed    */
    prism_position root;
    prism_position at[PRISM_CF_COUNT];
    prism_position target_at[PRISM_MAX_TARGETS];
    /* The walker stores scalars at `base` + a field's offset and their
     * positions in `here`: &cfg and at[] at the top level, an override and
     * its row of override_at[] inside layers.overrides. */
    char *base;
    prism_position *here;
    prism_position override_at[PRISM_MAX_LAYER_OVERRIDES][PRISM_CF_COUNT];
    prism_position override_node[PRISM_MAX_LAYER_OVERRIDES];
    prism_position dense_at[PRISM_MAX_LAYER_RANGES];
    prism_position range_at[PRISM_MAX_LAYER_OVERRIDES][PRISM_MAX_LAYER_RANGES];
    char *err;
    size_t err_size;
    prism_status status;
} prism_loader;

/* 1-based position of a libyaml mark (which counts from 0). */
prism_position prism_loader_mark(const yaml_mark_t *mark);

/* Writes "FILE:LINE:COLUMN: message" and sets PRISM_ERR_CONFIG.  Returns
 * false so callers can `return prism_loader_fail(...)`. */
bool prism_loader_fail(prism_loader *L, prism_position at, const char *fmt, ...)
    PRISM_PRINTF(3, 4);

/* "PATH: expected EXPECTED, got <what n is>; FIX" at n.  Returns false. */
bool prism_loader_wrong_type(prism_loader *L, const yaml_node_t *n,
                             const char *path, const char *expected,
                             const char *fix);

/* Scalars (config_scalars.c): each reader checks the node's type strictly
 * and, on a mismatch, reports it at the node and returns false. */
bool prism_loader_fail_node(prism_loader *L, const yaml_node_t *n,
                            const char *fmt, ...) PRISM_PRINTF(3, 4);
const char *prism_loader_text(const yaml_node_t *n);
bool prism_loader_is_plain(const yaml_node_t *n);
bool prism_loader_is_null(const yaml_node_t *n);
bool prism_loader_has_nul(const yaml_node_t *n);
/* The scalar for a message: at most 40 bytes, one line. */
const char *prism_loader_snippet(const yaml_node_t *n, char *buf, size_t size);
bool prism_loader_read_string(prism_loader *L, const yaml_node_t *n,
                              const char *path, const char **out);
bool prism_loader_read_int64(prism_loader *L, const yaml_node_t *n,
                             const char *path, long long *out);
bool prism_loader_read_int(prism_loader *L, const yaml_node_t *n,
                           const char *path, int *out);
bool prism_loader_read_double(prism_loader *L, const yaml_node_t *n,
                              const char *path, double *out);
bool prism_loader_read_bool(prism_loader *L, const yaml_node_t *n,
                            const char *path, bool *out);
/* One of names[0..count) into *out (its index). */
bool prism_loader_read_choice(prism_loader *L, const yaml_node_t *n,
                              const char *path, const char *const *names,
                              int count, int *out);

/* Checks the root mapping against the schema and stores every value into
 * L->cfg, remembering where each was written.  False on the first error. */
bool prism_loader_walk(prism_loader *L, const yaml_node_t *root);

#endif
