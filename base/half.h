/*
 * half.h - fp16 and bf16 conversions on the host, bit-exact with the GPU.
 *
 * Shared by the reference, the workloads, the tests and the CLI so that
 * every place rounds the same way: round to nearest even, NaN preserved,
 * overflow to infinity.  Header-only (static inline) because these sit in
 * inner loops of the reference.
 */
#ifndef PRISM_HALF_H
#define PRISM_HALF_H

#include "prism.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t prism_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float prism_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float prism_bf16_to_f32(uint16_t h) {
    return prism_bits_f32((uint32_t)h << 16);
}

static inline uint16_t prism_f32_to_bf16(float f) {
    uint32_t u = prism_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and a NaN */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static inline float prism_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0)
            return prism_bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31)
        return prism_bits_f32(sign | 0x7f800000u | (man << 13));
    return prism_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t prism_f32_to_fp16(float f) {
    uint32_t u = prism_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u);
    if (absu >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (absu < 0x38800000u) { /* below 2^-14: subnormal or zero */
        if (absu < 0x33000000u) /* below half the smallest subnormal */
            return sign;
        uint32_t exp = absu >> 23;
        uint32_t man = (absu & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - exp; /* 14..24 */
        uint32_t half_man = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (half_man & 1u)))
            half_man++;
        return (uint16_t)(sign | half_man);
    }
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u); /* nearest even */
    return (uint16_t)(sign | (((r >> 13) - (112u << 10)) & 0x7fffu));
}

/* f rounded to the 16-bit input dtype (bf16 or fp16). */
static inline uint16_t prism_f32_to_half(float f, prism_dtype dtype) {
    return dtype == PRISM_DTYPE_BF16 ? prism_f32_to_bf16(f)
                                     : prism_f32_to_fp16(f);
}

/* n near-Gaussian values (sum of 4 xorshift uniforms, unit variance) in the
 * 16-bit dtype; *state carries the generator from one call to the next.
 * Timing inputs for `prism bench` and the autotuner: cheap, not statistics. */
static inline void prism_fill_gaussian16(uint16_t *out, size_t n,
                                         prism_dtype dtype, uint64_t *state) {
    uint64_t x = *state;
    for (size_t i = 0; i < n; i++) {
        float u = 0;
        for (int r = 0; r < 4; r++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            u += (float)(x >> 40) / 16777216.0f;
        }
        out[i] = prism_f32_to_half((u - 2.0f) * 1.7320508f, dtype);
    }
    *state = x;
}

#endif /* PRISM_HALF_H */
