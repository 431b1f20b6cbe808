/*
 * tune_yaml.c - see tune_yaml.h.
 */
#include "tune/tune_yaml.h"

#include "config/config_rules.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ------------------------------------------------------------- */

static int out_write(void *user, unsigned char *text, size_t n) {
    prism_yaml_out *o = user;
    if (o->size + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->size + n + 1)
            cap *= 2;
        char *d = realloc(o->data, cap);
        if (!d) {
            o->oom = true;
            return 0;
        }
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->size, text, n);
    o->size += n;
    o->data[o->size] = '\0';
    return 1;
}

static void emit(prism_yaml_out *o, yaml_event_t *ev, int made) {
    if (!o->ok || !made) {
        if (made)
            yaml_event_delete(ev);
        o->ok = false;
        return;
    }
    if (!yaml_emitter_emit(&o->em, ev)) /* consumes the event either way */
        o->ok = false;
}

bool prism_yaml_out_begin(prism_yaml_out *o) {
    memset(o, 0, sizeof *o);
    if (!yaml_emitter_initialize(&o->em))
        return false;
    o->started = o->ok = true;
    yaml_emitter_set_output(&o->em, out_write, o);
    yaml_emitter_set_unicode(&o->em, 1);
    yaml_emitter_set_width(&o->em, 120);
    yaml_event_t ev;
    emit(o, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    emit(o, &ev,
         yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
    return o->ok;
}

void prism_yaml_scalar(prism_yaml_out *o, const char *text, bool quoted) {
    yaml_event_t ev;
    int made = yaml_scalar_event_initialize(
        &ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), !quoted,
        quoted,
        quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE);
    emit(o, &ev, made);
}

void prism_yaml_map_start(prism_yaml_out *o, bool flow) {
    yaml_event_t ev;
    emit(o, &ev,
         yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                             flow ? YAML_FLOW_MAPPING_STYLE
                                                  : YAML_BLOCK_MAPPING_STYLE));
}

void prism_yaml_map_end(prism_yaml_out *o) {
    yaml_event_t ev;
    emit(o, &ev, yaml_mapping_end_event_initialize(&ev));
}

void prism_yaml_seq_start(prism_yaml_out *o, bool flow) {
    yaml_event_t ev;
    emit(o, &ev,
         yaml_sequence_start_event_initialize(
             &ev, NULL, NULL, 1,
             flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE));
}

void prism_yaml_seq_end(prism_yaml_out *o) {
    yaml_event_t ev;
    emit(o, &ev, yaml_sequence_end_event_initialize(&ev));
}

void prism_yaml_kv_str(prism_yaml_out *o, const char *key, const char *value) {
    prism_yaml_scalar(o, key, false);
    prism_yaml_scalar(o, value, true);
}

void prism_yaml_kv_word(prism_yaml_out *o, const char *key, const char *value) {
    prism_yaml_scalar(o, key, false);
    prism_yaml_scalar(o, value, false);
}

void prism_yaml_kv_int(prism_yaml_out *o, const char *key, long long value) {
    char num[32];
    snprintf(num, sizeof num, "%lld", value);
    prism_yaml_kv_word(o, key, num);
}

/* Shortest text that reads back as exactly v, in the C locale. */
static void format_double(double v, char *out, size_t size) {
    if (isnan(v)) {
        prism_strlcpy(out, ".nan", size);
        return;
    }
    if (isinf(v)) {
        prism_strlcpy(out, v > 0 ? ".inf" : "-.inf", size);
        return;
    }
    locale_t c = prism_c_locale();
    locale_t previous = c ? uselocale(c) : (locale_t)0;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, v);
        if (!c || strtod_l(out, NULL, c) == v)
            break;
    }
    if (c)
        uselocale(previous);
    /* "1" would read back as an integer; keep numbers recognizable */
    if (!strpbrk(out, ".e") && strlen(out) + 2 < size)
        strcat(out, ".0");
}

void prism_yaml_kv_double(prism_yaml_out *o, const char *key, double value) {
    char num[40];
    format_double(value, num, sizeof num);
    prism_yaml_kv_word(o, key, num);
}

prism_status prism_yaml_out_end(prism_yaml_out *o, char **text, size_t *size,
                                char *err, size_t err_size) {
    *text = NULL;
    *size = 0;
    if (!o->started)
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory starting the YAML emitter");
    yaml_event_t ev;
    emit(o, &ev, yaml_document_end_event_initialize(&ev, 1));
    emit(o, &ev, yaml_stream_end_event_initialize(&ev));
    bool ok = o->ok && !o->oom && yaml_emitter_flush(&o->em) && o->data;
    char problem[160];
    prism_strlcpy(problem, o->em.problem ? o->em.problem : "out of memory",
                  sizeof problem);
    yaml_emitter_delete(&o->em);
    o->started = false;
    if (!ok) {
        free(o->data);
        o->data = NULL;
        return prism_errorf(err, err_size,
                            o->oom ? PRISM_ERR_OUT_OF_MEMORY
                                   : PRISM_ERR_INTERNAL,
                            "cannot write YAML: %s", problem);
    }
    *text = o->data;
    *size = o->size;
    o->data = NULL;
    return PRISM_OK;
}

/* ---- reading ------------------------------------------------------------- */

bool prism_yaml_in_load(prism_yaml_in *in, const char *text, size_t size,
                        char *why, size_t why_size) {
    memset(in, 0, sizeof *in);
    in->why = why;
    in->why_size = why_size;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return prism_yaml_bad(in, NULL, "out of memory starting the parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, size);
    in->loaded = yaml_parser_load(&parser, &in->doc);
    if (!in->loaded)
        prism_yaml_bad(in, NULL, "line %d: not YAML (%s)",
                       (int)parser.problem_mark.line + 1,
                       parser.problem ? parser.problem : "parse error");
    yaml_parser_delete(&parser);
    if (in->loaded && !yaml_document_get_root_node(&in->doc)) {
        yaml_document_delete(&in->doc);
        in->loaded = false;
        return prism_yaml_bad(in, NULL, "empty document");
    }
    return in->loaded;
}

void prism_yaml_in_free(prism_yaml_in *in) {
    if (in->loaded)
        yaml_document_delete(&in->doc);
    in->loaded = false;
}

yaml_node_t *prism_yaml_root(prism_yaml_in *in) {
    return in->loaded ? yaml_document_get_root_node(&in->doc) : NULL;
}

yaml_node_t *prism_yaml_node(prism_yaml_in *in, yaml_node_item_t id) {
    return yaml_document_get_node(&in->doc, id);
}

bool prism_yaml_bad(prism_yaml_in *in, const yaml_node_t *n, const char *fmt,
                    ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!in->why || !in->why_size)
        return false;
    if (n)
        snprintf(in->why, in->why_size, "line %d: %s",
                 (int)n->start_mark.line + 1, msg);
    else
        snprintf(in->why, in->why_size, "%s", msg);
    return false;
}

static const char *text_of(const yaml_node_t *n) {
    return (const char *)n->data.scalar.value;
}

static yaml_node_t *find(prism_yaml_in *in, yaml_node_t *map, const char *key,
                         int *count) {
    yaml_node_t *found = NULL;
    *count = 0;
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&in->doc, p->key);
        if (!k || k->type != YAML_SCALAR_NODE || strcmp(text_of(k), key))
            continue;
        if (!found)
            found = yaml_document_get_node(&in->doc, p->value);
        (*count)++;
    }
    return found;
}

yaml_node_t *prism_yaml_get(prism_yaml_in *in, yaml_node_t *map,
                            const char *key) {
    int count;
    return find(in, map, key, &count);
}

yaml_node_t *prism_yaml_need(prism_yaml_in *in, yaml_node_t *map,
                             const char *key, yaml_node_type_t type) {
    int count;
    yaml_node_t *n = find(in, map, key, &count);
    if (!n)
        return prism_yaml_bad(in, map, "missing '%s'", key), NULL;
    if (count > 1)
        return prism_yaml_bad(in, n, "'%s' is given twice", key), NULL;
    if (n->type != type)
        return prism_yaml_bad(in, n, "'%s' has the wrong type", key), NULL;
    return n;
}

bool prism_yaml_str(prism_yaml_in *in, yaml_node_t *map, const char *key,
                    char *out, size_t size) {
    yaml_node_t *n = prism_yaml_need(in, map, key, YAML_SCALAR_NODE);
    if (!n)
        return false;
    if (n->data.scalar.length >= size ||
        strlen(text_of(n)) != n->data.scalar.length)
        return prism_yaml_bad(in, n, "'%s' is too long or holds a NUL", key);
    memcpy(out, text_of(n), n->data.scalar.length + 1);
    return true;
}

bool prism_yaml_int(prism_yaml_in *in, yaml_node_t *map, const char *key,
                    int64_t lo, int64_t hi, int64_t *out) {
    yaml_node_t *n = prism_yaml_need(in, map, key, YAML_SCALAR_NODE);
    if (!n)
        return false;
    const char *s = text_of(n);
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || errno || end == s ||
        *end || v < lo || v > hi)
        return prism_yaml_bad(in, n, "'%s' must be an integer in [%lld, %lld]",
                              key, (long long)lo, (long long)hi);
    *out = v;
    return true;
}

bool prism_yaml_double(prism_yaml_in *in, yaml_node_t *map, const char *key,
                       double *out) {
    yaml_node_t *n = prism_yaml_need(in, map, key, YAML_SCALAR_NODE);
    if (!n)
        return false;
    const char *s = text_of(n);
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !strcmp(s, ".inf")) {
        *out = INFINITY;
        return true;
    }
    locale_t c = prism_c_locale();
    char *end = NULL;
    errno = 0;
    double v = c ? strtod_l(s, &end, c) : strtod(s, &end);
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || errno || end == s ||
        *end || isnan(v))
        return prism_yaml_bad(in, n, "'%s' must be a number", key);
    *out = v;
    return true;
}

bool prism_yaml_bool(prism_yaml_in *in, yaml_node_t *map, const char *key,
                     bool *out) {
    yaml_node_t *n = prism_yaml_need(in, map, key, YAML_SCALAR_NODE);
    if (!n)
        return false;
    bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (plain && !strcmp(text_of(n), "true"))
        *out = true;
    else if (plain && !strcmp(text_of(n), "false"))
        *out = false;
    else
        return prism_yaml_bad(in, n, "'%s' must be true or false", key);
    return true;
}

bool prism_yaml_hex64(prism_yaml_in *in, yaml_node_t *map, const char *key,
                      char out[65]) {
    if (!prism_yaml_str(in, map, key, out, 65))
        return false;
    bool ok = strlen(out) == 64;
    for (int i = 0; ok && i < 64; i++)
        ok = (out[i] >= '0' && out[i] <= '9') ||
             (out[i] >= 'a' && out[i] <= 'f');
    return ok ? true
              : prism_yaml_bad(in, prism_yaml_get(in, map, key),
                               "'%s' must be 64 lowercase hex digits", key);
}

size_t prism_yaml_len(const yaml_node_t *n) {
    if (n->type == YAML_SEQUENCE_NODE)
        return (size_t)(n->data.sequence.items.top -
                        n->data.sequence.items.start);
    if (n->type == YAML_MAPPING_NODE)
        return (size_t)(n->data.mapping.pairs.top -
                        n->data.mapping.pairs.start);
    return 0;
}
