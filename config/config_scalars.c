/*
 * config_scalars.c - strict YAML scalars for the config loader.
 *
 * Types follow the YAML 1.2 core schema on plain scalars only: a quoted
 * "128" is a string, 1e3 is not an integer, yes/no are not booleans, and
 * numbers are read in the "C" locale.  Every reader reports a wrong type
 * the same way ("PATH: expected WHAT, got WHAT-IT-IS; FIX") at the node's
 * line and column.  Kept apart from the schema walker (config_walk.c) so
 * that the walker's sections, and the per-layer sections, read values the
 * same way without calling back into one another.
 */
#include "config/config_loader.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef prism_loader loader;
typedef prism_position position;

bool prism_loader_fail_node(loader *L, const yaml_node_t *n, const char *fmt, ...) {
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

const char *prism_loader_text(const yaml_node_t *n) {
    return (const char *)n->data.scalar.value;
}

bool prism_loader_is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE &&
           n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

bool prism_loader_is_null(const yaml_node_t *n) {
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (!prism_loader_is_plain(n))
        return false;
    for (size_t i = 0; i < PRISM_ARRAY_LEN(nulls); i++)
        if (!strcmp(prism_loader_text(n), nulls[i]))
            return true;
    return false;
}

/* A scalar for a message: at most 40 bytes, one line. */
const char *prism_loader_snippet(const yaml_node_t *n, char *buf, size_t size) {
    prism_config_printable(prism_loader_text(n), n->data.scalar.length, buf, size);
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
    if (prism_loader_is_null(n))
        return "nothing (null)";
    prism_loader_snippet(n, s, sizeof s);
    snprintf(buf, size, prism_loader_is_plain(n) ? "'%s'" : "the string \"%s\"", s);
    return buf;
}

bool prism_loader_wrong_type(loader *L, const yaml_node_t *n, const char *path,
                             const char *expected, const char *fix) {
    char buf[100];
    return prism_loader_fail_node(L, n, "%s: expected %s, got %s; %s", path, expected,
                     describe(n, buf, sizeof buf), fix);
}

bool prism_loader_has_nul(const yaml_node_t *n) {
    return strlen(prism_loader_text(n)) != n->data.scalar.length;
}

/* Any non-null scalar without NUL bytes. */
bool prism_loader_read_string(loader *L, const yaml_node_t *n, const char *path,
                        const char **out) {
    if (n->type != YAML_SCALAR_NODE || prism_loader_is_null(n))
        return prism_loader_wrong_type(L, n, path, "a string",
                                       "write a single word");
    if (prism_loader_has_nul(n))
        return prism_loader_fail_node(L, n,
                         "%s: the string contains a NUL byte; remove "
                         "the \\0 escape",
                         path);
    *out = prism_loader_text(n);
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

bool prism_loader_read_int64(loader *L, const yaml_node_t *n, const char *path,
                       long long *out) {
    static const char fix[] = "write a whole number such as 128";
    char buf[80];
    if (!prism_loader_is_plain(n) || !int_syntax(prism_loader_text(n), n->data.scalar.length))
        return prism_loader_wrong_type(L, n, path, "an integer", fix);
    errno = 0;
    *out = strtoll(prism_loader_text(n), NULL, 10);
    if (errno == ERANGE)
        return prism_loader_fail_node(L, n,
                         "%s: %s is out of range; see configs/README.md "
                         "for the allowed values",
                         path, prism_loader_snippet(n, buf, sizeof buf));
    return true;
}

bool prism_loader_read_int(loader *L, const yaml_node_t *n, const char *path,
                     int *out) {
    long long v;
    char buf[80];
    if (!prism_loader_read_int64(L, n, path, &v))
        return false;
    if (v < INT_MIN || v > INT_MAX)
        return prism_loader_fail_node(L, n,
                         "%s: %s is out of range; see configs/README.md "
                         "for the allowed values",
                         path, prism_loader_snippet(n, buf, sizeof buf));
    *out = (int)v;
    return true;
}

bool prism_loader_read_double(loader *L, const yaml_node_t *n, const char *path,
                        double *out) {
    char buf[80];
    locale_t c = prism_c_locale();
    if (!prism_loader_is_plain(n) || !float_syntax(prism_loader_text(n), n->data.scalar.length))
        return prism_loader_wrong_type(
            L, n, path, "a number",
            "write a finite decimal number such as 0.95");
    if (!c) {
        L->status =
            prism_errorf(L->err, L->err_size, PRISM_ERR_OUT_OF_MEMORY,
                         "%s: out of memory creating the C locale", L->file);
        return false;
    }
    *out = strtod_l(prism_loader_text(n), NULL, c);
    if (isinf(*out))
        return prism_loader_fail_node(L, n,
                         "%s: %s is out of range; write a finite "
                         "number",
                         path, prism_loader_snippet(n, buf, sizeof buf));
    return true;
}

bool prism_loader_read_bool(loader *L, const yaml_node_t *n, const char *path,
                      bool *out) {
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    for (size_t i = 0; prism_loader_is_plain(n) && i < PRISM_ARRAY_LEN(yes); i++) {
        if (!strcmp(prism_loader_text(n), yes[i]) || !strcmp(prism_loader_text(n), no[i])) {
            *out = !strcmp(prism_loader_text(n), yes[i]);
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

bool prism_loader_read_choice(loader *L, const yaml_node_t *n, const char *path,
                        const char *const *names, int count, int *out) {
    const char *s;
    char buf[80], list[128] = "";
    if (!prism_loader_read_string(L, n, path, &s))
        return false;
    if ((*out = lookup(s, names, count)) >= 0)
        return true;
    for (int i = 0; i < count; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, names[i], sizeof list - strlen(list) - 1);
    }
    return prism_loader_fail_node(L, n, "%s '%s' is not supported; allowed: %s", path,
                     prism_loader_snippet(n, buf, sizeof buf), list);
}
