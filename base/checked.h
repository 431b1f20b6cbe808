/*
 * checked.h - size arithmetic that cannot wrap.
 *
 * Every size the library computes from a caller's numbers (plan limits,
 * batch shapes, strides) goes through these helpers.  They saturate at
 * SIZE_MAX / INT64_MAX instead of wrapping, so a product of absurd inputs
 * stays absurd and is caught by one comparison against a documented limit
 * (include/prism.h: PRISM_MAX_*) rather than turning into a small number
 * that passes every check and then overruns a buffer.
 */
#ifndef PRISM_BASE_CHECKED_H
#define PRISM_BASE_CHECKED_H

#include <stddef.h>
#include <stdint.h>

/* a * b, or SIZE_MAX when it does not fit. */
static inline size_t prism_size_mul(size_t a, size_t b) {
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* a + b, or SIZE_MAX when it does not fit. */
static inline size_t prism_size_add(size_t a, size_t b) {
    size_t r;
    return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* The product of n factors, saturating. */
static inline size_t prism_size_mul4(size_t a, size_t b, size_t c, size_t d) {
    return prism_size_mul(prism_size_mul(a, b), prism_size_mul(c, d));
}

/* n rounded up to a power-of-two alignment, saturating. */
static inline size_t prism_size_align(size_t n, size_t align) {
    size_t r = prism_size_add(n, align - 1);
    return r == SIZE_MAX ? SIZE_MAX : r & ~(align - 1);
}

/* a * b + c on int64, false when any step overflows. */
static inline int prism_i64_mul_add(int64_t a, int64_t b, int64_t c,
                                    int64_t *out) {
    int64_t m;
    return !__builtin_mul_overflow(a, b, &m) &&
           !__builtin_add_overflow(m, c, out);
}

#endif
