/*
 * common.c - status strings, version, names of enums, and the small helpers
 * of internal.h.  Everything here is stateless and thread-safe.
 */
#include "base/base.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *prism_status_string(prism_status status) {
    switch (status) {
#define PRISM_STATUS_TEXT_(name, value, text) \
    case name:                                \
        return text;
        PRISM_STATUS_TABLE(PRISM_STATUS_TEXT_)
#undef PRISM_STATUS_TEXT_
    }
    return "unknown status";
}

const char *prism_status_name(prism_status status) {
    switch (status) {
#define PRISM_STATUS_NAME_(name, value, text) \
    case name:                                \
        return #name;
        PRISM_STATUS_TABLE(PRISM_STATUS_NAME_)
#undef PRISM_STATUS_NAME_
    }
    return "PRISM_STATUS_UNKNOWN";
}

const char *prism_version(void) { return PRISM_VERSION_STRING; }

int prism_version_number(void) { return PRISM_VERSION_NUMBER; }

static const char *const dtype_names[] = {"bf16", "fp16", "fp32"};
static const char *const layout_names[] = {"half", "interleaved"};

const char *prism_dtype_name(prism_dtype dtype) {
    return (unsigned)dtype < PRISM_ARRAY_LEN(dtype_names) ? dtype_names[dtype]
                                                          : NULL;
}

const char *prism_rope_layout_name(prism_rope_layout layout) {
    return (unsigned)layout < PRISM_ARRAY_LEN(layout_names)
               ? layout_names[layout]
               : NULL;
}

prism_status prism_errorf(char *err, size_t size, prism_status status,
                          const char *fmt, ...) {
    if (err && size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, size, fmt, ap);
        va_end(ap);
    }
    return status;
}

static const char *level_name(prism_log_level level) {
    switch (level) {
    case PRISM_LOG_DEBUG: return "debug";
    case PRISM_LOG_INFO: return "info";
    case PRISM_LOG_WARN: return "warning";
    case PRISM_LOG_ERROR: return "error";
    }
    return "log";
}

void prism_log(const prism_logger *logger, prism_log_level level,
               const char *fmt, ...) {
    prism_log_level min = logger ? logger->level : PRISM_LOG_WARN;
    if (level < min)
        return;
    char line[PRISM_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (logger && logger->fn)
        logger->fn(logger->user, level, line);
    else
        fprintf(stderr, "prism: %s: %s\n", level_name(level), line);
}

double prism_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

void prism_strlcpy(char *dst, const char *src, size_t size) {
    if (!size)
        return;
    size_t n = src ? strlen(src) : 0;
    if (n >= size)
        n = size - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

void prism_sha256(const void *data, size_t size, unsigned char digest[32]) {
    unsigned int len = 32;
    /* EVP_Digest is one-shot and thread-safe; it fails only on allocation,
     * in which case the digest is zeroed and can never match a real one. */
    if (!EVP_Digest(data, size, digest, &len, EVP_sha256(), NULL))
        memset(digest, 0, 32);
}

void prism_hex(const unsigned char *bytes, size_t n, char *hex) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * n] = '\0';
}
