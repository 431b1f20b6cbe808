/*
 * config_loader.h - the state of one YAML config load, shared by the
 * document layer (config.c) and the schema walker (config_walk.c); the
 * error reporting both use is config_loader.c.
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

/* Checks the root mapping against the schema and stores every value into
 * L->cfg, remembering where each was written.  False on the first error. */
bool prism_loader_walk(prism_loader *L, const yaml_node_t *root);

#endif
