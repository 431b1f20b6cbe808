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
 * so those errors still carry a line and column.
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
    K_TUNING   /* kernel -> tunable -> integer           */
} kind;

typedef struct section section;

typedef struct field {
    const char *key;
    kind kind;
    int id;        /* prism_config_field, or -1 for sections           */
    size_t offset; /* member of prism_config for scalar kinds          */
    bool required;
    const section *sub; /* K_SECTION                                    */
    const char *hint;   /* what to add when a required key is missing   */
} field;

struct section {
    const char *path; /* "" for the top level                         */
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
static const section threshold_section = {"prism.thresholds", threshold_fields};

static const field temp_fields[] = {
    {"high", K_DOUBLE, PRISM_CF_TEMP_HIGH, AT(temp_high), false, NULL, NULL},
    {"low", K_DOUBLE, PRISM_CF_TEMP_LOW, AT(temp_low), false, NULL, NULL},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section temp_section = {"prism.temps", temp_fields};

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
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section prism_section = {"prism", prism_fields};

static const field model_fields[] = {
    {"head_dim", K_INT, PRISM_CF_HEAD_DIM, AT(head_dim), true, NULL,
     "head_dim: 64, 128 or 256"},
    {"q_heads", K_INT, PRISM_CF_Q_HEADS, AT(q_heads), true, NULL,
     "q_heads: the number of query heads"},
    {"kv_heads", K_INT, PRISM_CF_KV_HEADS, AT(kv_heads), true, NULL,
     "kv_heads: the number of key/value heads"},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section model_section = {"model", model_fields};

static const field rope_fields[] = {
    {"layout", K_LAYOUT, PRISM_CF_LAYOUT, AT(rope_layout), false, NULL, NULL},
    {"theta", K_DOUBLE, PRISM_CF_THETA, AT(rope_theta), true, NULL,
     "theta: the RoPE base, e.g. 500000"},
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section rope_section = {"rope", rope_fields};

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
    {NULL, K_INT, -1, 0, false, NULL, NULL}};
static const section root_section = {"", root_fields};

static bool fail_node(loader *L, const yaml_node_t *n, const char *fmt, ...)
    PRISM_PRINTF(3, 4);

static bool fail_node(loader *L, const yaml_node_t *n, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return prism_loader_fail(L, prism_loader_mark(&n->start_mark), "%s", what);
}

/* ------------------------------------------------------------------------ */
/* Scalars                                                                   */
/* ------------------------------------------------------------------------ */

static const char *text_of(const yaml_node_t *n) {
    return (const char *)n->data.scalar.value;
}

static bool is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE &&
           n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool is_null(const yaml_node_t *n) {
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (!is_plain(n))
        return false;
    for (size_t i = 0; i < PRISM_ARRAY_LEN(nulls); i++)
        if (!strcmp(text_of(n), nulls[i]))
            return true;
    return false;
}

/* A scalar for a message: at most 40 bytes, one line. */
static const char *snippet(const yaml_node_t *n, char *buf, size_t size) {
    prism_config_printable(text_of(n), n->data.scalar.length, buf, size);
    if (n->data.scalar.length > 40 && size > 44)
        memcpy(buf + 40, "...", 4);
    return buf;
}

/* "a mapping", "nothing (null)", "the string \"x\"", "'x'" */
static const char *describe(const yaml_node_t *n, char *buf, size_t size) {
    char s[80];
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a sequence";
    if (is_null(n))
        return "nothing (null)";
    snippet(n, s, sizeof s);
    snprintf(buf, size, is_plain(n) ? "'%s'" : "the string \"%s\"", s);
    return buf;
}

bool prism_loader_wrong_type(loader *L, const yaml_node_t *n, const char *path,
                             const char *expected, const char *fix) {
    char buf[100];
    return fail_node(L, n, "%s: expected %s, got %s; %s", path, expected,
                     describe(n, buf, sizeof buf), fix);
}

static bool has_nul(const yaml_node_t *n) {
    return strlen(text_of(n)) != n->data.scalar.length;
}

/* Any non-null scalar without NUL bytes. */
static bool read_string(loader *L, const yaml_node_t *n, const char *path,
                        const char **out) {
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return prism_loader_wrong_type(L, n, path, "a string",
                                       "write a single word");
    if (has_nul(n))
        return fail_node(L, n,
                         "%s: the string contains a NUL byte; remove "
                         "the \\0 escape",
                         path);
    *out = text_of(n);
    return true;
}

static bool digits(const char **s, const char *end) {
    const char *start = *s;
    while (*s < end && **s >= '0' && **s <= '9')
        (*s)++;
    return *s > start;
}

/* YAML 1.2 core schema: [-+]?[0-9]+ */
static bool int_syntax(const char *s, size_t n) {
    const char *end = s + n;
    if (s < end && (*s == '-' || *s == '+'))
        s++;
    return digits(&s, end) && s == end;
}

/* YAML 1.2 core schema: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool float_syntax(const char *s, size_t n) {
    const char *end = s + n;
    if (s < end && (*s == '-' || *s == '+'))
        s++;
    if (s < end && *s == '.') {
        s++;
        if (!digits(&s, end))
            return false;
    } else {
        if (!digits(&s, end))
            return false;
        if (s < end && *s == '.') {
            s++;
            digits(&s, end);
        }
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '-' || *s == '+'))
            s++;
        if (!digits(&s, end))
            return false;
    }
    return s == end;
}

static bool read_int64(loader *L, const yaml_node_t *n, const char *path,
                       long long *out) {
    static const char fix[] = "write a whole number such as 128";
    char buf[80];
    if (!is_plain(n) || !int_syntax(text_of(n), n->data.scalar.length))
        return prism_loader_wrong_type(L, n, path, "an integer", fix);
    errno = 0;
    *out = strtoll(text_of(n), NULL, 10);
    if (errno == ERANGE)
        return fail_node(L, n,
                         "%s: %s is out of range; see configs/README.md "
                         "for the allowed values",
                         path, snippet(n, buf, sizeof buf));
    return true;
}

static bool read_int(loader *L, const yaml_node_t *n, const char *path,
                     int *out) {
    long long v;
    char buf[80];
    if (!read_int64(L, n, path, &v))
        return false;
    if (v < INT_MIN || v > INT_MAX)
        return fail_node(L, n,
                         "%s: %s is out of range; see configs/README.md "
                         "for the allowed values",
                         path, snippet(n, buf, sizeof buf));
    *out = (int)v;
    return true;
}

static bool read_double(loader *L, const yaml_node_t *n, const char *path,
                        double *out) {
    char buf[80];
    locale_t c = prism_c_locale();
    if (!is_plain(n) || !float_syntax(text_of(n), n->data.scalar.length))
        return prism_loader_wrong_type(
            L, n, path, "a number",
            "write a finite decimal number such as 0.95");
    if (!c) {
        L->status =
            prism_errorf(L->err, L->err_size, PRISM_ERR_OUT_OF_MEMORY,
                         "%s: out of memory creating the C locale", L->file);
        return false;
    }
    *out = strtod_l(text_of(n), NULL, c);
    if (isinf(*out))
        return fail_node(L, n,
                         "%s: %s is out of range; write a finite "
                         "number",
                         path, snippet(n, buf, sizeof buf));
    return true;
}

static bool read_bool(loader *L, const yaml_node_t *n, const char *path,
                      bool *out) {
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    for (size_t i = 0; is_plain(n) && i < PRISM_ARRAY_LEN(yes); i++) {
        if (!strcmp(text_of(n), yes[i]) || !strcmp(text_of(n), no[i])) {
            *out = !strcmp(text_of(n), yes[i]);
            return true;
        }
    }
    return prism_loader_wrong_type(
        L, n, path, "a boolean",
        "write true or false (YAML 1.1 yes/no/on/off are not "
        "accepted)");
}

/* Index of text in names[0..count), or -1. */
static int lookup(const char *text, const char *const *names, int count) {
    for (int i = 0; i < count; i++)
        if (!strcmp(text, names[i]))
            return i;
    return -1;
}

static bool read_choice(loader *L, const yaml_node_t *n, const char *path,
                        const char *const *names, int count, int *out) {
    const char *s;
    char buf[80], list[128] = "";
    if (!read_string(L, n, path, &s))
        return false;
    if ((*out = lookup(s, names, count)) >= 0)
        return true;
    for (int i = 0; i < count; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, names[i], sizeof list - strlen(list) - 1);
    }
    return fail_node(L, n, "%s '%s' is not supported; allowed: %s", path,
                     snippet(n, buf, sizeof buf), list);
}

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
    if (k->type != YAML_SCALAR_NODE || is_null(k) || has_nul(k))
        return prism_loader_wrong_type(
            L, k, where, "a plain string key",
            "keys are lowercase words such as head_dim");
    *key = text_of(k);
    return true;
}

/* Two occurrences of one key: libyaml keeps both, the schema does not. */
static bool duplicate(loader *L, const yaml_node_t *again,
                      const yaml_node_t *first, const char *path) {
    position p = prism_loader_mark(&first->start_mark);
    return fail_node(L, again,
                     "duplicate key '%s' (first at line %d, "
                     "column %d); keep one of them",
                     path, p.line, p.column);
}

static bool unknown_key(loader *L, const yaml_node_t *k, const section *s) {
    char list[256] = "", buf[80], path[160];
    const char *hint = "";
    for (const field *f = s->fields; f->key; f++) {
        strncat(list, f == s->fields ? "" : ", ",
                sizeof list - strlen(list) - 1);
        strncat(list, f->key, sizeof list - strlen(list) - 1);
        if (!strcasecmp(f->key, text_of(k)))
            hint = " (keys are lowercase)";
    }
    join(path, sizeof path, s->path, snippet(k, buf, sizeof buf));
    return fail_node(L, k, "unknown key '%s'%s; allowed keys %s%s: %s", path,
                     hint, *s->path ? "of " : "at the top level", s->path,
                     list);
}

static int find_field(const section *s, const char *key) {
    for (int i = 0; s->fields[i].key; i++)
        if (!strcmp(s->fields[i].key, key))
            return i;
    return -1;
}

static bool walk_section(loader *L, const yaml_node_t *map, const section *s);
static bool read_targets(loader *L, const yaml_node_t *n);
static bool read_tuning(loader *L, const yaml_node_t *n);

static bool read_name(loader *L, const yaml_node_t *n) {
    const char *s;
    if (!read_string(L, n, "name", &s))
        return false;
    if (n->data.scalar.length >= PRISM_NAME_MAX)
        return fail_node(L, n, "name is %zu bytes long; use at most %d",
                         n->data.scalar.length, PRISM_NAME_MAX - 1);
    prism_strlcpy(L->cfg.name, s, sizeof L->cfg.name);
    return true;
}

static bool read_sub(loader *L, const field *f, const char *path,
                     const yaml_node_t *n) {
    if (!f->required && is_null(n))
        return true; /* an optional mapping left empty: all defaults */
    if (n->type != YAML_MAPPING_NODE)
        return prism_loader_wrong_type(
            L, n, path, "a mapping",
            "indent its keys below it, see configs/README.md");
    return walk_section(L, n, f->sub);
}

static bool read_value(loader *L, const field *f, const char *path,
                       const yaml_node_t *n) {
    static const char *const dtypes[] = {"bf16", "fp16"};
    static const char *const layouts[] = {"half", "interleaved"};
    char *member = (char *)&L->cfg + f->offset;
    int choice = 0;
    bool ok = true;
    switch (f->kind) {
    case K_SECTION: return read_sub(L, f, path, n);
    case K_NAME: ok = read_name(L, n); break;
    case K_INT: ok = read_int(L, n, path, (int *)(void *)member); break;
    case K_DOUBLE:
        ok = read_double(L, n, path, (double *)(void *)member);
        break;
    case K_BOOL: ok = read_bool(L, n, path, (bool *)(void *)member); break;
    case K_DTYPE:
        if ((ok = read_choice(L, n, path, dtypes, 2, &choice)))
            L->cfg.dtype = (prism_dtype)choice;
        break;
    case K_LAYOUT:
        if ((ok = read_choice(L, n, path, layouts, 2, &choice)))
            L->cfg.rope_layout = (prism_rope_layout)choice;
        break;
    case K_TARGETS: ok = read_targets(L, n); break;
    case K_TUNING: ok = read_tuning(L, n); break;
    }
    if (ok && f->id >= 0)
        L->at[f->id] = prism_loader_mark(&n->start_mark);
    return ok;
}

static bool missing(loader *L, const yaml_node_t *map, const section *s,
                    const yaml_node_t *const *seen) {
    char path[96];
    for (int i = 0; s->fields[i].key; i++) {
        if (!s->fields[i].required || seen[i])
            continue;
        join(path, sizeof path, s->path, s->fields[i].key);
        return fail_node(L, map, "missing required key '%s'; add %s", path,
                         s->fields[i].hint);
    }
    return true;
}

/* Checks and stores every key of one mapping of the schema. */
static bool walk_section(loader *L, const yaml_node_t *map, const section *s) {
    const yaml_node_t *seen[MAX_FIELDS] = {NULL};
    char path[96];
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node_at(L, p->key), *v = node_at(L, p->value);
        const char *key;
        if (!read_key(L, k, s->path, &key))
            return false;
        int i = find_field(s, key);
        if (i < 0)
            return unknown_key(L, k, s);
        join(path, sizeof path, s->path, key);
        if (seen[i])
            return duplicate(L, k, seen[i], path);
        seen[i] = k;
        if (!read_value(L, &s->fields[i], path, v))
            return false;
    }
    return missing(L, map, s, seen);
}

/* ------------------------------------------------------------------------ */
/* targets and tuning                                                        */
/* ------------------------------------------------------------------------ */

static bool read_arch(loader *L, const yaml_node_t *n, prism_arch *out) {
    const char *s;
    char buf[80];
    if (!read_string(L, n, "targets", &s))
        return false;
    if (prism_arch_parse(s, out) == PRISM_OK)
        return true;
    return fail_node(L, n, "unknown arch '%s' in targets; allowed: %s",
                     snippet(n, buf, sizeof buf), prism_arch_list_text());
}

static bool read_targets(loader *L, const yaml_node_t *n) {
    if (n->type != YAML_SEQUENCE_NODE)
        return prism_loader_wrong_type(L, n, "targets", "a sequence",
                                       "write a list such as [sm_80, sm_90a]");
    yaml_node_item_t *items = n->data.sequence.items.start;
    long count = n->data.sequence.items.top - items;
    if (count == 0)
        return fail_node(L, n, "targets is empty; list at least one of %s",
                         prism_arch_list_text());
    if (count > PRISM_MAX_TARGETS)
        return fail_node(L, n,
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
        if (!strcmp(text_of(e), text_of(k)))
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
    if (!read_int64(L, v, path, &value))
        return false;
    if (L->cfg.n_tuning >= PRISM_MAX_TUNING)
        return fail_node(L, v, "too many tuning overrides; at most %d",
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
    if (is_null(map))
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
            return fail_node(L, k, "unknown tunable '%s.%s'; %s", path,
                             snippet(k, buf, sizeof buf), allowed);
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
    if (is_null(n))
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
            return fail_node(L, k, "unknown kernel '%s' in tuning; %s",
                             snippet(k, buf, sizeof buf), allowed);
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

bool prism_loader_walk(loader *L, const yaml_node_t *root) {
    return walk_section(L, root, &root_section);
}
