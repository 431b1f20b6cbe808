/*
 * config_walk.c - checks a YAML config's node tree against the schema.
 *
 * The schema of configs/README.md is data here: one table per mapping
 * (key, kind, member offset, required?), and one generic walker that takes
 * the keys of a mapping in document order, rejects unknown and duplicate
 * keys (libyaml keeps duplicates; the schema does not), checks each value's
 * type strictly and stores it.  Types follow the YAML 1.2 core schema on
 * plain scalars only: a quoted "128" is a string, 1e3 is not an integer,
 * yes/no are not booleans.  Constraints between values are left to
 * prism_config_check(); this file remembers where each value was written
 * so those errors still carry a line and column.  The scalar readers are
 * config_scalars.c.
 *
 * layers.overrides entries are walked with the same tables as prism:, with
 * offsets into a prism_layer_override: the walker writes at L->base, and
 * an entry's `fields` bits are the keys it was seen to set.
 */
#include "config/config_loader.h"
#include "config/tunables.h"
#include "base/arch.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef prism_loader loader;
typedef prism_position position;

/* ------------------------------------------------------------------------ */
/* The schema                                                                */
/* ------------------------------------------------------------------------ */

typedef enum kind {
    K_SECTION, /* a nested mapping                       */
    K_NAME,    /* the config's name                      */
    K_INT,     /* int member                             */
    K_DOUBLE,  /* double member                          */
    K_BOOL,    /* bool member                            */
    K_DTYPE,   /* bf16 | fp16                            */
    K_LAYOUT,  /* half | interleaved                     */
    K_TARGETS, /* sequence of archs                      */
    K_TUNING,  /* kernel -> tunable -> integer           */
    K_RANGES,  /* layers: 3, "3-10" or a list of these   */
    K_OVERRIDES /* sequence of per-layer mappings        */
} kind;

typedef struct section section;

typedef struct field {
    const char *key;
    kind kind;
    int id;        /* prism_config_field, or -1 for sections           */
    size_t offset; /* member of prism_config (prism_layer_override in
                      layers.overrides) for scalar kinds               */
    bool required;
    const section *sub; /* K_SECTION                                    */
    const char *hint;   /* what to add when a required key is missing   */
} field;

struct section {
    const field *fields;
};

#define MAX_FIELDS 16 /* at least the longest field table */
#define AT(member) offsetof(prism_config, member)

static const field threshold_fields[] = {
    {"high", K_DOUBLE, PRISM_CF_THRESHOLD_HIGH, AT(threshold_high), false, NULL,
     NULL},
    {"low", K_DOUBLE, PRISM_CF_THRESHOLD_LOW, AT(threshold_low), false, NULL,
     NULL},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section threshold_section = {threshold_fields};

static const field temp_fields[] = {
    {"high", K_DOUBLE, PRISM_CF_TEMP_HIGH, AT(temp_high), false, NULL, NULL},
    {"low", K_DOUBLE, PRISM_CF_TEMP_LOW, AT(temp_low), false, NULL, NULL},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section temp_section = {temp_fields};

static const field prism_fields[] = {
    {"block_size", K_INT, PRISM_CF_BLOCK_SIZE, AT(block_size), false, NULL,
     NULL},
    {"high_dim", K_INT, PRISM_CF_HIGH_DIM, AT(high_dim), false, NULL, NULL},
    {"low_dim", K_INT, PRISM_CF_LOW_DIM, AT(low_dim), false, NULL, NULL},
    {"thresholds", K_SECTION, -1, 0, false, &threshold_section, NULL},
    {"calibrate", K_BOOL, PRISM_CF_CALIBRATE, AT(calibrate), false, NULL, NULL},
    {"temps", K_SECTION, -1, 0, false, &temp_section, NULL},
    {"force_sink", K_BOOL, PRISM_CF_FORCE_SINK, AT(force_sink), false, NULL,
     NULL},
    {"force_recent", K_BOOL, PRISM_CF_FORCE_RECENT, AT(force_recent), false,
     NULL, NULL},
    {"recent_blocks", K_INT, PRISM_CF_RECENT_BLOCKS, AT(recent_blocks), false,
     NULL, NULL},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section prism_section = {prism_fields};

static const field model_fields[] = {
    {"head_dim", K_INT, PRISM_CF_HEAD_DIM, AT(head_dim), true, NULL,
     "head_dim: 64, 128 or 256"},
    {"q_heads", K_INT, PRISM_CF_Q_HEADS, AT(q_heads), true, NULL,
     "q_heads: the number of query heads"},
    {"kv_heads", K_INT, PRISM_CF_KV_HEADS, AT(kv_heads), true, NULL,
     "kv_heads: the number of key/value heads"},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section model_section = {model_fields};

static const field rope_fields[] = {
    {"layout", K_LAYOUT, PRISM_CF_LAYOUT, AT(rope_layout), false, NULL, NULL},
    {"theta", K_DOUBLE, PRISM_CF_THETA, AT(rope_theta), true, NULL,
     "theta: the RoPE base, e.g. 500000"},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section rope_section = {rope_fields};

#define OV(member) offsetof(prism_layer_override, member)

static const field override_threshold_fields[] = {
    {"high", K_DOUBLE, PRISM_CF_THRESHOLD_HIGH, OV(threshold_high), false,
     NULL, NULL},
    {"low", K_DOUBLE, PRISM_CF_THRESHOLD_LOW, OV(threshold_low), false, NULL,
     NULL},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section override_threshold_section = {override_threshold_fields};

static const field override_temp_fields[] = {
    {"high", K_DOUBLE, PRISM_CF_TEMP_HIGH, OV(temp_high), false, NULL, NULL},
    {"low", K_DOUBLE, PRISM_CF_TEMP_LOW, OV(temp_low), false, NULL, NULL},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section override_temp_section = {override_temp_fields};

/* The method keys of prism: except block_size (a shape), plus the layers. */
static const field override_fields[] = {
    {"layers", K_RANGES, PRISM_CF_LAYERS, 0, true, NULL,
     "layers: the layers it applies to, e.g. \"3-10\" or [3, 5]"},
    {"high_dim", K_INT, PRISM_CF_HIGH_DIM, OV(high_dim), false, NULL, NULL},
    {"low_dim", K_INT, PRISM_CF_LOW_DIM, OV(low_dim), false, NULL, NULL},
    {"thresholds", K_SECTION, -1, 0, false, &override_threshold_section, NULL},
    {"calibrate", K_BOOL, PRISM_CF_CALIBRATE, OV(calibrate), false, NULL,
     NULL},
    {"temps", K_SECTION, -1, 0, false, &override_temp_section, NULL},
    {"force_sink", K_BOOL, PRISM_CF_FORCE_SINK, OV(force_sink), false, NULL,
     NULL},
    {"force_recent", K_BOOL, PRISM_CF_FORCE_RECENT, OV(force_recent), false,
     NULL, NULL},
    {"recent_blocks", K_INT, PRISM_CF_RECENT_BLOCKS, OV(recent_blocks), false,
     NULL, NULL},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section override_section = {override_fields};

static const field layers_fields[] = {
    {"dense", K_RANGES, PRISM_CF_DENSE, 0, false, NULL, NULL},
    {"overrides", K_OVERRIDES, -1, 0, false, NULL, NULL},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section layers_section = {layers_fields};

static const field root_fields[] = {
    {"name", K_NAME, PRISM_CF_NAME, 0, false, NULL, NULL},
    {"model", K_SECTION, -1, 0, true, &model_section,
     "a model: mapping with head_dim, q_heads and kv_heads"},
    {"dtype", K_DTYPE, PRISM_CF_DTYPE, AT(dtype), false, NULL, NULL},
    {"rope", K_SECTION, -1, 0, true, &rope_section,
     "a rope: mapping with theta (and layout)"},
    {"prism", K_SECTION, -1, 0, false, &prism_section, NULL},
    {"targets", K_TARGETS, PRISM_CF_TARGETS, 0, false, NULL, NULL},
    {"tuning", K_TUNING, PRISM_CF_TUNING, 0, false, NULL, NULL},
    {"layers", K_SECTION, -1, 0, false, &layers_section, NULL},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section root_section = {root_fields};

/* ------------------------------------------------------------------------ */
/* Mappings                                                                  */
/* ------------------------------------------------------------------------ */

static yaml_node_t *node_at(loader *L, int id) {
    return yaml_document_get_node(&L->doc, id);
}

static void join(char *out, size_t size, const char *parent, const char *key) {
    snprintf(out, size, "%s%s%s", parent, *parent ? "." : "", key);
}

/* A key must be a non-null string; its text for messages is shortened. */
static bool read_key(loader *L, const yaml_node_t *k, const char *parent,
                     const char **key) {
    char where[96];
    snprintf(where, sizeof where, "a key of %s",
             *parent ? parent : "the top level");
    if (k->type != YAML_SCALAR_NODE || prism_loader_is_null(k) || prism_loader_has_nul(k))
        return prism_loader_wrong_type(
            L, k, where, "a plain string key",
            "keys are lowercase words such as head_dim");
    *key = prism_loader_text(k);
    return true;
}

/* Two occurrences of one key: libyaml keeps both, the schema does not. */
static bool duplicate(loader *L, const yaml_node_t *again,
                      const yaml_node_t *first, const char *path) {
    position p = prism_loader_mark(&first->start_mark);
    return prism_loader_fail_node(L, again,
                     "duplicate key '%s' (first at line %d, "
                     "column %d); keep one of them",
                     path, p.line, p.column);
}

static bool unknown_key(loader *L, const yaml_node_t *k, const section *s,
                        const char *where) {
    char list[256] = "", buf[80], path[160];
    const char *hint = "";
    join(path, sizeof path, where, prism_loader_snippet(k, buf, sizeof buf));
    if (s == &override_section && !strcmp(prism_loader_text(k), "block_size"))
        return prism_loader_fail_node(
            L, k, "%s cannot differ between layers: the block size is the "
            "shape of every block mask; set prism.block_size", path);
    for (const field *f = s->fields; f->key; f++) {
        strncat(list, f == s->fields ? "" : ", ",
                sizeof list - strlen(list) - 1);
        strncat(list, f->key, sizeof list - strlen(list) - 1);
        if (!strcasecmp(f->key, prism_loader_text(k)))
            hint = " (keys are lowercase)";
    }
    return prism_loader_fail_node(L, k, "unknown key '%s'%s; allowed keys %s%s: %s", path,
                     hint, *where ? "of " : "at the top level", where,
                     list);
}

static int find_field(const section *s, const char *key) {
    for (int i = 0; s->fields[i].key; i++)
        if (!strcmp(s->fields[i].key, key))
            return i;
    return -1;
}

static bool walk_section(loader *L, const yaml_node_t *map, const section *s,
                         const char *where);
static bool read_targets(loader *L, const yaml_node_t *n);
static bool read_tuning(loader *L, const yaml_node_t *n);
static bool read_ranges(loader *L, const yaml_node_t *n, const char *path);
static bool read_overrides(loader *L, const yaml_node_t *n);

static bool read_name(loader *L, const yaml_node_t *n) {
    const char *s;
    if (!prism_loader_read_string(L, n, "name", &s))
        return false;
    if (n->data.scalar.length >= PRISM_NAME_MAX)
        return prism_loader_fail_node(L, n, "name is %zu bytes long; use at most %d",
                         n->data.scalar.length, PRISM_NAME_MAX - 1);
    prism_strlcpy(L->cfg.name, s, sizeof L->cfg.name);
    return true;
}

static bool read_sub(loader *L, const field *f, const char *path,
                     const yaml_node_t *n) {
    if (!f->required && prism_loader_is_null(n))
        return true; /* an optional mapping left empty: all defaults */
    if (n->type != YAML_MAPPING_NODE)
        return prism_loader_wrong_type(
            L, n, path, "a mapping",
            "indent its keys below it, see configs/README.md");
    return walk_section(L, n, f->sub, path);
}

static bool read_value(loader *L, const field *f, const char *path,
                       const yaml_node_t *n) {
    static const char *const dtypes[] = {"bf16", "fp16"};
    static const char *const layouts[] = {"half", "interleaved"};
    char *member = L->base + f->offset;
    int choice = 0;
    bool ok = true;
    switch (f->kind) {
    case K_SECTION: return read_sub(L, f, path, n);
    case K_NAME: ok = read_name(L, n); break;
    case K_INT: ok = prism_loader_read_int(L, n, path, (int *)(void *)member); break;
    case K_DOUBLE:
        ok = prism_loader_read_double(L, n, path, (double *)(void *)member);
        break;
    case K_BOOL: ok = prism_loader_read_bool(L, n, path, (bool *)(void *)member); break;
    case K_DTYPE:
        if ((ok = prism_loader_read_choice(L, n, path, dtypes, 2, &choice)))
            L->cfg.dtype = (prism_dtype)choice;
        break;
    case K_LAYOUT:
        if ((ok = prism_loader_read_choice(L, n, path, layouts, 2, &choice)))
            L->cfg.rope_layout = (prism_rope_layout)choice;
        break;
    case K_TARGETS: ok = read_targets(L, n); break;
    case K_TUNING: ok = read_tuning(L, n); break;
    case K_RANGES: ok = read_ranges(L, n, path); break;
    case K_OVERRIDES: ok = read_overrides(L, n); break;
    }
    if (ok && f->id >= 0)
        L->here[f->id] = prism_loader_mark(&n->start_mark);
    return ok;
}

static bool missing(loader *L, const yaml_node_t *map, const section *s,
                    const yaml_node_t *const *seen, const char *where) {
    char path[96];
    for (int i = 0; s->fields[i].key; i++) {
        if (!s->fields[i].required || seen[i])
            continue;
        join(path, sizeof path, where, s->fields[i].key);
        return prism_loader_fail_node(L, map, "missing required key '%s'; add %s", path,
                         s->fields[i].hint);
    }
    return true;
}

/* Checks and stores every key of one mapping of the schema; `where` is its
 * path in messages ("" at the top level). */
static bool walk_section(loader *L, const yaml_node_t *map, const section *s,
                         const char *where) {
    const yaml_node_t *seen[MAX_FIELDS] = {NULL};
    char path[96];
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node_at(L, p->key), *v = node_at(L, p->value);
        const char *key;
        if (!read_key(L, k, where, &key))
            return false;
        int i = find_field(s, key);
        if (i < 0)
            return unknown_key(L, k, s, where);
        join(path, sizeof path, where, key);
        if (seen[i])
            return duplicate(L, k, seen[i], path);
        seen[i] = k;
        if (!read_value(L, &s->fields[i], path, v))
            return false;
    }
    return missing(L, map, s, seen, where);
}

/* ------------------------------------------------------------------------ */
/* targets and tuning                                                        */
/* ------------------------------------------------------------------------ */

static bool read_arch(loader *L, const yaml_node_t *n, prism_arch *out) {
    const char *s;
    char buf[80];
    if (!prism_loader_read_string(L, n, "targets", &s))
        return false;
    if (prism_arch_parse(s, out) == PRISM_OK)
        return true;
    return prism_loader_fail_node(L, n,
                     "unknown arch '%s' in targets; allowed: %s",
                     prism_loader_snippet(n, buf, sizeof buf),
                     prism_arch_list_text());
}

static bool read_targets(loader *L, const yaml_node_t *n) {
    if (n->type != YAML_SEQUENCE_NODE)
        return prism_loader_wrong_type(L, n, "targets", "a sequence",
                                       "write a list such as [sm_80, sm_90a]");
    yaml_node_item_t *items = n->data.sequence.items.start;
    long count = n->data.sequence.items.top - items;
    if (count == 0)
        return prism_loader_fail_node(L, n,
                         "targets is empty; list at least one of %s",
                         prism_arch_list_text());
    if (count > PRISM_MAX_TARGETS)
        return prism_loader_fail_node(L, n,
                         "targets has %ld entries; at most %d, each "
                         "arch once",
                         count, PRISM_MAX_TARGETS);
    L->cfg.n_targets = (int)count;
    for (int i = 0; i < (int)count; i++) {
        const yaml_node_t *item = node_at(L, items[i]);
        if (!read_arch(L, item, &L->cfg.targets[i]))
            return false;
        L->target_at[i] = prism_loader_mark(&item->start_mark);
    }
    return true;
}

/* The earlier key of map with the same text as pair p, or NULL. */
static const yaml_node_t *earlier_key(loader *L, const yaml_node_t *map,
                                      const yaml_node_pair_t *p) {
    const yaml_node_t *k = node_at(L, p->key);
    for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p;
         q++) {
        const yaml_node_t *e = node_at(L, q->key);
        if (!strcmp(prism_loader_text(e), prism_loader_text(k)))
            return e;
    }
    return NULL;
}

static bool is_tunable(const prism_kernel_tunables *def, const char *param) {
    for (int i = 0; i < PRISM_MAX_TUNABLES && def->tunables[i].name; i++)
        if (!strcmp(def->tunables[i].name, param))
            return true;
    return false;
}

static bool add_override(loader *L, const prism_kernel_tunables *def,
                         const char *param, const yaml_node_t *v) {
    char path[160];
    long long value;
    snprintf(path, sizeof path, "tuning.%s.%s", def->kernel, param);
    if (!prism_loader_read_int64(L, v, path, &value))
        return false;
    if (L->cfg.n_tuning >= PRISM_MAX_TUNING)
        return prism_loader_fail_node(L, v, "too many tuning overrides; at most %d",
                         PRISM_MAX_TUNING);
    prism_tuning_override *t = &L->cfg.tuning[L->cfg.n_tuning++];
    prism_strlcpy(t->kernel, def->kernel, sizeof t->kernel);
    prism_strlcpy(t->param, param, sizeof t->param);
    t->value = value;
    t->line = (int)v->start_mark.line + 1;
    t->column = (int)v->start_mark.column + 1;
    return true;
}

static bool read_kernel_tuning(loader *L, const prism_kernel_tunables *def,
                               const yaml_node_t *map) {
    char path[160], buf[80], allowed[512];
    snprintf(path, sizeof path, "tuning.%s", def->kernel);
    if (prism_loader_is_null(map))
        return true;
    if (map->type != YAML_MAPPING_NODE)
        return prism_loader_wrong_type(
            L, map, path, "a mapping",
            "write tunable: value pairs such as {threads: 128}");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node_at(L, p->key), *first;
        const char *param;
        if (!read_key(L, k, path, &param))
            return false;
        if (!is_tunable(def, param)) {
            prism_tunables_check(def->kernel, param, 0, allowed,
                                 sizeof allowed);
            return prism_loader_fail_node(L, k, "unknown tunable '%s.%s'; %s", path,
                             prism_loader_snippet(k, buf, sizeof buf), allowed);
        }
        if ((first = earlier_key(L, map, p)) != NULL) {
            char where[224];
            snprintf(where, sizeof where, "%s.%s", path, param);
            return duplicate(L, k, first, where);
        }
        if (!add_override(L, def, param, node_at(L, p->value)))
            return false;
    }
    return true;
}

static bool read_tuning(loader *L, const yaml_node_t *n) {
    char buf[80], allowed[512];
    if (prism_loader_is_null(n))
        return true;
    if (n->type != YAML_MAPPING_NODE)
        return prism_loader_wrong_type(L, n, "tuning", "a mapping",
                                       "write kernel: {tunable: value} pairs");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node_at(L, p->key), *first;
        const char *kernel;
        if (!read_key(L, k, "tuning", &kernel))
            return false;
        const prism_kernel_tunables *def = prism_tunables_find(kernel);
        if (!def) {
            prism_tunables_check(kernel, NULL, 0, allowed, sizeof allowed);
            return prism_loader_fail_node(L, k, "unknown kernel '%s' in tuning; %s",
                             prism_loader_snippet(k, buf, sizeof buf), allowed);
        }
        if ((first = earlier_key(L, n, p)) != NULL) {
            char where[96];
            snprintf(where, sizeof where, "tuning.%s", def->kernel);
            return duplicate(L, k, first, where);
        }
        if (!read_kernel_tuning(L, def, node_at(L, p->value)))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* layers: dense layers and per-layer overrides                              */
/* ------------------------------------------------------------------------ */

/* "a-b" with a and b decimal digits, quoted or not. */
static bool range_syntax(const char *t, prism_layer_range *r) {
    char *end;
    if (*t < '0' || *t > '9')
        return false;
    long long a = strtoll(t, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return false;
    long long b = strtoll(end + 1, &end, 10);
    if (*end)
        return false;
    /* Out-of-range values are kept out of range for prism_config_check. */
    r->first = a > INT_MAX ? INT_MAX : (int)a;
    r->last = b > INT_MAX ? INT_MAX : (int)b;
    return true;
}

static bool read_range(loader *L, const yaml_node_t *n, const char *path,
                       prism_layer_range *r) {
    if (n->type == YAML_SCALAR_NODE && !prism_loader_has_nul(n) &&
        range_syntax(prism_loader_text(n), r))
        return true;
    const char *t = n->type == YAML_SCALAR_NODE ? prism_loader_text(n) : "";
    size_t sign = *t == '-' || *t == '+';
    bool whole = t[sign] && strspn(t + sign, "0123456789") == strlen(t + sign);
    if (!prism_loader_is_plain(n) || !whole)
        return prism_loader_wrong_type(L, n, path, "a layer or a range",
                                       "write a layer such as 3 or a range "
                                       "such as 3-10");
    if (!prism_loader_read_int(L, n, path, &r->first))
        return false;
    r->last = r->first;
    return true;
}

/* A layer, a range or a list of them, into layers.dense or the current
 * override. */
static bool read_ranges(loader *L, const yaml_node_t *n, const char *path) {
    bool top = L->base == (char *)&L->cfg;
    prism_layer_override *o = (prism_layer_override *)(void *)L->base;
    int *count = top ? &L->cfg.n_dense : &o->n_ranges;
    prism_layer_range *r = top ? L->cfg.dense : o->ranges;
    position *at = top ? L->dense_at
                       : L->range_at[o - L->cfg.layer_overrides];
    if (n->type != YAML_SEQUENCE_NODE) {
        at[0] = prism_loader_mark(&n->start_mark);
        *count = 1;
        return read_range(L, n, path, &r[0]);
    }
    yaml_node_item_t *items = n->data.sequence.items.start;
    long len = n->data.sequence.items.top - items;
    if (len == 0)
        return prism_loader_fail_node(L, n, "%s is empty; list layers such "
                                      "as [0, 1] or 0-2", path);
    if (len > PRISM_MAX_LAYER_RANGES)
        return prism_loader_fail_node(L, n, "%s has %ld entries; at most %d "
                                      "(write ranges such as 0-9)",
                                      path, len, PRISM_MAX_LAYER_RANGES);
    *count = (int)len;
    for (int i = 0; i < (int)len; i++) {
        const yaml_node_t *item = node_at(L, items[i]);
        at[i] = prism_loader_mark(&item->start_mark);
        if (!read_range(L, item, path, &r[i]))
            return false;
    }
    return true;
}

/* The fields an override sets: the keys the walker saw. */
static unsigned fields_seen(const position *at) {
    static const struct {
        prism_config_field id;
        unsigned bit;
    } map[] = {{PRISM_CF_HIGH_DIM, PRISM_LAYER_HIGH_DIM},
               {PRISM_CF_LOW_DIM, PRISM_LAYER_LOW_DIM},
               {PRISM_CF_THRESHOLD_HIGH, PRISM_LAYER_THRESHOLD_HIGH},
               {PRISM_CF_THRESHOLD_LOW, PRISM_LAYER_THRESHOLD_LOW},
               {PRISM_CF_CALIBRATE, PRISM_LAYER_CALIBRATE},
               {PRISM_CF_TEMP_HIGH, PRISM_LAYER_TEMP_HIGH},
               {PRISM_CF_TEMP_LOW, PRISM_LAYER_TEMP_LOW},
               {PRISM_CF_FORCE_SINK, PRISM_LAYER_FORCE_SINK},
               {PRISM_CF_FORCE_RECENT, PRISM_LAYER_FORCE_RECENT},
               {PRISM_CF_RECENT_BLOCKS, PRISM_LAYER_RECENT_BLOCKS}};
    unsigned f = 0;
    for (size_t i = 0; i < PRISM_ARRAY_LEN(map); i++)
        if (at[map[i].id].line)
            f |= map[i].bit;
    return f;
}

static bool read_override(loader *L, const yaml_node_t *n, int i) {
    char path[48];
    snprintf(path, sizeof path, "layers.overrides[%d]", i);
    if (n->type != YAML_MAPPING_NODE)
        return prism_loader_wrong_type(
            L, n, path, "a mapping",
            "write {layers: 3-10, thresholds: {high: 0.99}}");
    L->base = (char *)&L->cfg.layer_overrides[i];
    L->here = L->override_at[i];
    L->override_node[i] = prism_loader_mark(&n->start_mark);
    bool ok = walk_section(L, n, &override_section, path);
    L->cfg.layer_overrides[i].fields = fields_seen(L->override_at[i]);
    L->base = (char *)&L->cfg;
    L->here = L->at;
    return ok;
}

static bool read_overrides(loader *L, const yaml_node_t *n) {
    if (n->type != YAML_SEQUENCE_NODE)
        return prism_loader_wrong_type(
            L, n, "layers.overrides", "a sequence",
            "write one '- layers: ...' entry per group of layers");
    yaml_node_item_t *items = n->data.sequence.items.start;
    long len = n->data.sequence.items.top - items;
    if (len == 0)
        return prism_loader_fail_node(L, n, "layers.overrides is empty; add "
                                      "an entry or remove the key");
    if (len > PRISM_MAX_LAYER_OVERRIDES)
        return prism_loader_fail_node(L, n, "layers.overrides has %ld "
                                      "entries; at most %d",
                                      len, PRISM_MAX_LAYER_OVERRIDES);
    for (int i = 0; i < (int)len; i++) {
        L->cfg.n_layer_overrides = i + 1;
        if (!read_override(L, node_at(L, items[i]), i))
            return false;
    }
    return true;
}

bool prism_loader_walk(loader *L, const yaml_node_t *root) {
    L->base = (char *)&L->cfg;
    L->here = L->at;
    return walk_section(L, root, &root_section, "");
}
