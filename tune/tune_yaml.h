/*
 * tune_yaml.h - small helpers over libyaml for the files autotune/ writes
 * and reads back: tuning database entries and pack manifests.
 *
 * Writing goes through libyaml's emitter (so quoting and escaping are
 * always right) into a memory buffer that the caller publishes atomically.
 * Reading loads the document with libyaml's parser and then asks for
 * fields by key with strict types: integers and numbers must be plain
 * scalars, strings may be quoted, a key given twice is an error.  Every
 * failure writes one line ("line N: what") and returns false, so readers
 * are chains of `&&`.  Numbers are printed and parsed in the C locale.
 */
#ifndef PRISM_TUNE_YAML_H
#define PRISM_TUNE_YAML_H

#include "base/base.h"

#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

/* ---- writing ------------------------------------------------------------- */

typedef struct prism_yaml_out {
    yaml_emitter_t em;
    bool ok, oom, started;
    char *data;
    size_t size, cap;
} prism_yaml_out;

/* Starts a stream and a document (implicit markers). */
bool prism_yaml_out_begin(prism_yaml_out *o);
void prism_yaml_scalar(prism_yaml_out *o, const char *text, bool quoted);
void prism_yaml_map_start(prism_yaml_out *o, bool flow);
void prism_yaml_map_end(prism_yaml_out *o);
void prism_yaml_seq_start(prism_yaml_out *o, bool flow);
void prism_yaml_seq_end(prism_yaml_out *o);
/* key: "value" (quoted), key: value (plain word), integer, number. */
void prism_yaml_kv_str(prism_yaml_out *o, const char *key, const char *value);
void prism_yaml_kv_word(prism_yaml_out *o, const char *key, const char *value);
void prism_yaml_kv_int(prism_yaml_out *o, const char *key, long long value);
void prism_yaml_kv_double(prism_yaml_out *o, const char *key, double value);
/* Ends the document; on success *text (malloc'd, NUL-terminated) and
 * *size take the bytes.  Always releases the emitter. */
prism_status prism_yaml_out_end(prism_yaml_out *o, char **text, size_t *size,
                                char *err, size_t err_size);

/* ---- reading ------------------------------------------------------------- */

typedef struct prism_yaml_in {
    yaml_document_t doc;
    bool loaded;
    char *why;
    size_t why_size;
} prism_yaml_in;

/* Parses text; false (why set) when it is not one YAML document. */
bool prism_yaml_in_load(prism_yaml_in *in, const char *text, size_t size,
                        char *why, size_t why_size);
void prism_yaml_in_free(prism_yaml_in *in);
yaml_node_t *prism_yaml_root(prism_yaml_in *in);
yaml_node_t *prism_yaml_node(prism_yaml_in *in, yaml_node_item_t id);

/* Writes "line N: message" (N of node, when given) and returns false. */
bool prism_yaml_bad(prism_yaml_in *in, const yaml_node_t *node, const char *fmt,
                    ...) PRISM_PRINTF(3, 4);

/* The value of key in a mapping, NULL when absent (no error). */
yaml_node_t *prism_yaml_get(prism_yaml_in *in, yaml_node_t *map,
                            const char *key);
/* The value of key, which must be present once with the given type. */
yaml_node_t *prism_yaml_need(prism_yaml_in *in, yaml_node_t *map,
                             const char *key, yaml_node_type_t type);
bool prism_yaml_str(prism_yaml_in *in, yaml_node_t *map, const char *key,
                    char *out, size_t size);
bool prism_yaml_int(prism_yaml_in *in, yaml_node_t *map, const char *key,
                    int64_t lo, int64_t hi, int64_t *out);
bool prism_yaml_double(prism_yaml_in *in, yaml_node_t *map, const char *key,
                       double *out);
bool prism_yaml_bool(prism_yaml_in *in, yaml_node_t *map, const char *key,
                     bool *out);
/* A string of exactly 64 lowercase hex digits. */
bool prism_yaml_hex64(prism_yaml_in *in, yaml_node_t *map, const char *key,
                      char out[65]);
/* Number of items of a sequence or pairs of a mapping node. */
size_t prism_yaml_len(const yaml_node_t *node);

#endif
