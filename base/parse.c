/*
 * parse.c - see parse.h.
 *
 * Digits are read by hand rather than with strtoll, which would accept
 * leading spaces, a sign and (with base 0) octal or hex: a user who
 * writes " 8k" or "-1" or "010" should hear about it, not get 8192, a
 * huge number or 8.
 */
#include "base/parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The multiplier of a K/M/G suffix letter, 0 for anything else. */
static int64_t suffix_scale(char c) {
    switch (c) {
    case 'k': case 'K': return INT64_C(1) << 10;
    case 'm': case 'M': return INT64_C(1) << 20;
    case 'g': case 'G': return INT64_C(1) << 30;
    default: return 0;
    }
}

/* Decimal digits, an optional K/M/G and, for sizes, an optional "B" or
 * "iB" after the letter ("B" alone too).  False on anything else or on
 * overflow of int64_t. */
static bool parse_scaled(const char *text, bool bytes, int64_t *out) {
    if (!text || *text < '0' || *text > '9')
        return false;
    int64_t v = 0;
    const char *p = text;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - (*p - '0')) / 10)
            return false;
        v = v * 10 + (*p - '0');
    }
    int64_t scale = suffix_scale(*p);
    if (scale) {
        p++;
        if (bytes && *p == 'i' && p[1] == 'B')
            p += 2;
        else if (bytes && (*p == 'B' || *p == 'b'))
            p++;
    } else {
        scale = 1;
        if (bytes && (*p == 'B' || *p == 'b'))
            p++;
    }
    if (*p || v > INT64_MAX / scale)
        return false;
    *out = v * scale;
    return true;
}

bool prism_parse_count(const char *text, int64_t min, int64_t max,
                       int64_t *out) {
    int64_t v;
    if (!parse_scaled(text, false, &v) || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool prism_parse_bytes(const char *text, int64_t min, int64_t max,
                       int64_t *out) {
    int64_t v;
    if (!parse_scaled(text, true, &v) || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool prism_parse_bool(const char *text, bool *out) {
    static const char *const on[] = {"on", "1", "true", "yes"};
    static const char *const off[] = {"off", "0", "false", "no"};
    if (!text)
        return false;
    for (size_t i = 0; i < PRISM_ARRAY_LEN(on); i++) {
        if (!strcasecmp(text, on[i])) {
            *out = true;
            return true;
        }
        if (!strcasecmp(text, off[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}

prism_status prism_env_bool(const char *name, bool fallback, bool *out,
                            char *err, size_t err_size) {
    const char *v = getenv(name);
    *out = fallback;
    if (!v || !*v || prism_parse_bool(v, out))
        return PRISM_OK;
    return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                        "%s='%s' is not a switch; use %s (using %s)", name, v,
                        PRISM_BOOL_WORDS, fallback ? "on" : "off");
}

prism_status prism_env_bytes(const char *name, int64_t fallback, int64_t *out,
                             char *err, size_t err_size) {
    const char *v = getenv(name);
    *out = fallback;
    if (!v || !*v || prism_parse_bytes(v, 1, INT64_MAX, out))
        return PRISM_OK;
    return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                        "%s='%s' is not a positive size in bytes such as "
                        "4096, 100K, 500M or 2G (binary units); using %lld "
                        "bytes",
                        name, v, (long long)fallback);
}

prism_status prism_check_path_length(const char *path, const char *what,
                                     char *err, size_t err_size) {
    size_t n = path ? strlen(path) : 0;
    if (n < PRISM_PATH_MAX)
        return PRISM_OK;
    return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                        "%s path '%.40s...' is %zu bytes long; paths are "
                        "limited to %d bytes: use a shorter one",
                        what, path, n, PRISM_PATH_MAX - 1);
}
