/*
 * internal.h - helpers shared by every module of libprism (not installed).
 *
 * Error reporting follows one pattern everywhere: a function that fails
 * writes a one-line message with prism_errorf() into a caller-supplied
 * buffer and returns a status.  Handles copy that line into their
 * last-error slot.  Nothing here allocates behind the caller's back.
 */
#ifndef PRISM_INTERNAL_H
#define PRISM_INTERNAL_H

#include "prism.h"

#include <stdarg.h>
#include <stdio.h>

#define PRISM_ERRMSG_MAX 1024

#if defined(__GNUC__)
#define PRISM_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PRISM_PRINTF(fmt, args)
#endif

#define PRISM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Formats into err (if err && size) and returns status.  Safe with NULL. */
prism_status prism_errorf(char *err, size_t size, prism_status status,
                          const char *fmt, ...) PRISM_PRINTF(4, 5);

/* A logger bound to a context (or the stderr default). */
typedef struct prism_logger {
    prism_log_fn fn;
    void *user;
    prism_log_level level;
} prism_logger;

void prism_log(const prism_logger *logger, prism_log_level level,
               const char *fmt, ...) PRISM_PRINTF(3, 4);

/* Monotonic wall clock in milliseconds. */
double prism_now_ms(void);

/* Copies src into dst (size bytes), always NUL-terminated. */
void prism_strlcpy(char *dst, const char *src, size_t size);

/* SHA-256 (OpenSSL libcrypto).  hex must hold 65 bytes. */
void prism_sha256(const void *data, size_t size, unsigned char digest[32]);
void prism_hex(const unsigned char *bytes, size_t n, char *hex);

#endif /* PRISM_INTERNAL_H */
