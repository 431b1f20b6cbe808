/*
 * config.c - loads a YAML kernel config, strictly.
 *
 * A config is the single source of truth for the kernels of one model
 * family, and a typo in it would otherwise surface as a wrong kernel or a
 * confusing NVRTC error much later.  So the loader accepts exactly the
 * schema of configs/README.md and nothing else: unknown keys, duplicate
 * keys, wrong types, several documents and oversized input are errors, and
 * each error is one line
 *     FILE:LINE:COLUMN: what is wrong; what is allowed
 * pointing at the offending node (1-based, as editors count).
 *
 * The work is in three steps.  This file runs libyaml twice: once over the
 * event stream, cheaply, to catch syntax errors, a second document and
 * pathological nesting (libyaml 0.2.5 composes nodes recursively), then
 * through the document API, which gives a node tree with positions.
 * config_walk.c checks that tree against the schema;
 * prism_config_check_targets() (config_validate.c, config_tuning.c) checks
 * the constraints between values, tuning overrides included, for every
 * target, so that a config that loads generates for all of them.  Nothing
 * is written to the caller's config unless every step passed.
 */
#include "config/config_loader.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef prism_loader loader;
typedef prism_position position;

/* ------------------------------------------------------------------------ */
/* Documents                                                                 */
/* ------------------------------------------------------------------------ */

/* Line and column of a byte offset (reader errors carry only the offset). */
static position offset_position(const loader *L, size_t offset) {
    position p = {1, 1};
    for (size_t i = 0; i < offset && i < L->length; i++) {
        if (L->input[i] == '\n') {
            p.line++;
            p.column = 1;
        } else {
            p.column++;
        }
    }
    return p;
}

static bool syntax_error(loader *L, const yaml_parser_t *parser) {
    if (parser->error == YAML_MEMORY_ERROR) {
        L->status = prism_errorf(L->err, L->err_size, PRISM_ERR_OUT_OF_MEMORY,
                                 "%s: out of memory while parsing", L->file);
        return false;
    }
    const char *problem = parser->problem ? parser->problem : "unknown error";
    if (parser->error == YAML_READER_ERROR)
        return prism_loader_fail(L, offset_position(L, parser->problem_offset),
                                 "invalid input: %s; a config is UTF-8 text",
                                 problem);
    if (parser->context)
        return prism_loader_fail(
            L, prism_loader_mark(&parser->problem_mark),
            "invalid YAML: %s (%s at line %d, column %d); fix "
            "the syntax",
            problem, parser->context, (int)parser->context_mark.line + 1,
            (int)parser->context_mark.column + 1);
    return prism_loader_fail(L, prism_loader_mark(&parser->problem_mark),
                             "invalid YAML: %s; fix the syntax", problem);
}

/* libyaml 0.2.5 composes nodes recursively, so deep nesting would overflow
 * the stack.  A first pass over the events bounds the depth (the schema
 * needs 5 levels) and finds syntax errors and extra documents cheaply. */
#define MAX_DEPTH 16

/* The tag of a node event, or NULL. */
static const char *event_tag(const yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return (const char *)ev->data.scalar.tag;
    case YAML_SEQUENCE_START_EVENT:
        return (const char *)ev->data.sequence_start.tag;
    case YAML_MAPPING_START_EVENT:
        return (const char *)ev->data.mapping_start.tag;
    default: return NULL;
    }
}

static bool check_event(loader *L, const yaml_event_t *ev, int *depth,
                        int *documents) {
    position p = prism_loader_mark(&ev->start_mark);
    const char *tag = event_tag(ev);
    char text[64];
    if (tag) {
        /* The schema gives every value its type; a tag could only
         * contradict it (and !!python/object-style tags mean nothing). */
        prism_config_printable(tag, strlen(tag), text, sizeof text);
        return prism_loader_fail(L, p,
                                 "explicit YAML tags are not supported (found "
                                 "'%s'); remove the tag",
                                 text);
    }
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*documents > 1)
            return prism_loader_fail(L, p,
                                     "a second YAML document starts here; a "
                                     "config is one document, remove the '---' "
                                     "and what follows");
        return true;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (++*depth > MAX_DEPTH)
            return prism_loader_fail(
                L, p,
                "nesting deeper than %d levels; the schema "
                "nests at most 5",
                MAX_DEPTH);
        return true;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: --*depth; return true;
    default: return true;
    }
}

static bool scan_events(loader *L) {
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0, documents = 0;
    bool ok = true, end = false;
    if (!yaml_parser_initialize(&parser)) {
        L->status = prism_errorf(L->err, L->err_size, PRISM_ERR_OUT_OF_MEMORY,
                                 "%s: out of memory", L->file);
        return false;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)L->input,
                                 L->length);
    while (ok && !end) {
        if (!yaml_parser_parse(&parser, &ev)) {
            ok = syntax_error(L, &parser);
            break;
        }
        end = ev.type == YAML_STREAM_END_EVENT;
        ok = check_event(L, &ev, &depth, &documents);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return ok;
}

/* One document (scan_events made sure) whose root is a mapping. */
static bool parse(loader *L, yaml_parser_t *parser, bool *loaded) {
    if (!yaml_parser_load(parser, &L->doc))
        return syntax_error(L, parser);
    *loaded = true;
    const yaml_node_t *root = yaml_document_get_root_node(&L->doc);
    if (!root)
        return prism_loader_fail(
            L, (position){1, 1},
            "the config is empty; write a mapping with at least "
            "model: and rope:");
    L->root = prism_loader_mark(&root->start_mark);
    if (root->type != YAML_MAPPING_NODE)
        return prism_loader_wrong_type(
            L, root, "the config", "a mapping",
            "write key: value pairs such as model: and rope:");
    return true;
}

/* Where a broken rule inside layers.overrides[o] points. */
static position override_position(const loader *L,
                                  const prism_config_problem *p, int o) {
    position at = L->override_at[o][p->field];
    if (p->field == PRISM_CF_LAYERS && p->index < 0)
        return L->override_node[o]; /* about the entry as a whole */
    if (p->field == PRISM_CF_LAYERS && p->index >= 0 &&
        p->index < PRISM_MAX_LAYER_RANGES && L->range_at[o][p->index].line)
        at = L->range_at[o][p->index];
    return at.line ? at : L->override_node[o];
}

/* Where the field behind a broken rule was written. */
static position problem_position(const loader *L,
                                 const prism_config_problem *p) {
    if (p->override >= 0 && p->override < L->cfg.n_layer_overrides &&
        p->override < PRISM_MAX_LAYER_OVERRIDES)
        return override_position(L, p, p->override);
    position at = L->at[p->field];
    if (p->field == PRISM_CF_DENSE && p->index >= 0 &&
        p->index < PRISM_MAX_LAYER_RANGES && L->dense_at[p->index].line)
        at = L->dense_at[p->index];
    if (p->field == PRISM_CF_TARGETS && p->index >= 0 &&
        p->index < PRISM_MAX_TARGETS && L->target_at[p->index].line)
        at = L->target_at[p->index];
    if (p->field == PRISM_CF_TUNING && p->index >= 0 &&
        p->index < L->cfg.n_tuning) {
        at.line = L->cfg.tuning[p->index].line;
        at.column = L->cfg.tuning[p->index].column;
    }
    return at.line ? at : L->root;
}

static bool resolve(loader *L) {
    prism_config_problem p;
    int high, low;
    prism_config_band_defaults(L->cfg.head_dim, &high, &low);
    if (!L->at[PRISM_CF_HIGH_DIM].line)
        L->cfg.high_dim = high;
    if (!L->at[PRISM_CF_LOW_DIM].line)
        L->cfg.low_dim = low;
    if (prism_config_check_targets(&L->cfg, &p))
        return true;
    return prism_loader_fail(L, problem_position(L, &p), "%s", p.text);
}

/* The base name of path without ".yaml"/".yml", as a valid config name. */
static void default_name(const char *path, char *out, size_t size) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".yaml"))
        n -= 5;
    else if (n > 4 && !strcmp(base + n - 4, ".yml"))
        n -= 4;
    if (n == 0) {
        base = "config";
        n = 6;
    }
    if (n >= size)
        n = size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)base[i];
        out[i] = (ch < 0x20 || ch >= 0x7f || ch == '/') ? '_' : (char)ch;
    }
    out[n] = '\0';
}

static prism_status load_buffer(const char *yaml, size_t length,
                                const char *file, prism_config *cfg, char *err,
                                size_t err_size) {
    yaml_parser_t parser;
    bool loaded = false;
    loader *L = calloc(1, sizeof *L); /* ~20 KiB: keep it off the stack */
    if (!L)
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory loading a config");
    L->input = yaml;
    L->length = length;
    L->err = err;
    L->err_size = err_size;
    L->status = PRISM_OK;
    prism_config_one_line(file, L->file, sizeof L->file);
    prism_config_init(&L->cfg);
    prism_strlcpy(L->cfg.source, file, sizeof L->cfg.source);
    default_name(file, L->cfg.name, sizeof L->cfg.name);
    if (length > PRISM_CONFIG_MAX_BYTES) {
        L->status = prism_errorf(err, err_size, PRISM_ERR_CONFIG,
                                 "%s: the config is %zu bytes; the limit is "
                                 "1 MiB (%d bytes)",
                                 L->file, length, PRISM_CONFIG_MAX_BYTES);
        goto done;
    }
    if (!scan_events(L))
        goto done;
    if (!yaml_parser_initialize(&parser)) {
        L->status = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                                 "%s: out of memory", L->file);
        goto done;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, length);
    if (parse(L, &parser, &loaded) &&
        prism_loader_walk(L, yaml_document_get_root_node(&L->doc)))
        resolve(L);
    if (loaded)
        yaml_document_delete(&L->doc);
    yaml_parser_delete(&parser);
    if (L->status == PRISM_OK)
        memcpy(cfg, &L->cfg, sizeof *cfg);
done:;
    prism_status status = L->status;
    free(L);
    return status;
}

prism_status prism_config_load_string(const char *yaml, size_t length,
                                      const char *name, prism_config *cfg,
                                      char *err, size_t err_size) {
    if (!yaml || !cfg)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_config_load_string: %s is NULL",
                            yaml ? "cfg" : "yaml");
    return load_buffer(yaml, length, name ? name : "<memory>", cfg, err,
                       err_size);
}
