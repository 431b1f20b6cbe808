/*
 * test_status.c - status table, version, enum names, half conversions.
 */
#include <criterion/criterion.h>

#include "base/half.h"
#include "prism.h"

#include <math.h>
#include <string.h>

Test(status, every_status_has_a_distinct_string_and_name) {
    static const prism_status all[] = {
#define PRISM_STATUS_LIST_(name, value, text) name,
        PRISM_STATUS_TABLE(PRISM_STATUS_LIST_)
#undef PRISM_STATUS_LIST_
    };
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_neq(prism_status_string(all[i]), "unknown status");
        cr_assert(strncmp(prism_status_name(all[i]), "PRISM_", 6) == 0);
        for (size_t j = 0; j < i; j++) {
            cr_assert_neq(all[i], all[j]);
            cr_assert_str_neq(prism_status_string(all[i]),
                              prism_status_string(all[j]));
        }
    }
    cr_assert_eq(PRISM_OK, 0);
    cr_assert_str_eq(prism_status_string((prism_status)9999), "unknown status");
}

Test(status, version_matches_the_header) {
    cr_assert_str_eq(prism_version(), PRISM_VERSION_STRING);
    cr_assert_eq(prism_version_number(), PRISM_VERSION_NUMBER);
}

Test(status, arch_names_round_trip) {
    for (int a = 0; a < PRISM_ARCH_COUNT_; a++) {
        prism_arch back;
        cr_assert_eq(prism_arch_parse(prism_arch_name((prism_arch)a), &back),
                     PRISM_OK);
        cr_assert_eq(back, (prism_arch)a);
    }
    prism_arch x;
    cr_assert_eq(prism_arch_parse("sm_90", &x), PRISM_ERR_UNSUPPORTED);
    cr_assert_eq(prism_arch_parse("compute_90a", &x), PRISM_ERR_UNSUPPORTED);
    cr_assert_null(prism_arch_name((prism_arch)17));
    cr_assert_str_eq(prism_dtype_name(PRISM_DTYPE_BF16), "bf16");
    cr_assert_str_eq(prism_rope_layout_name(PRISM_ROPE_INTERLEAVED),
                     "interleaved");
}

Test(half, conversions_round_to_nearest_even) {
    /* exhaustive: every fp16 and bf16 value survives a round trip */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = prism_fp16_to_f32((uint16_t)h);
        if (isnan(f))
            cr_assert(isnan(prism_fp16_to_f32(prism_f32_to_fp16(f))));
        else
            cr_assert_eq(prism_f32_to_fp16(f), h, "fp16 %04x", h);
        float g = prism_bf16_to_f32((uint16_t)h);
        if (isnan(g))
            cr_assert(isnan(prism_bf16_to_f32(prism_f32_to_bf16(g))));
        else
            cr_assert_eq(prism_f32_to_bf16(g), h, "bf16 %04x", h);
    }
    /* ties go to even */
    cr_assert_eq(prism_f32_to_bf16(1.0f + 1.0f / 256.0f), 0x3f80);
    cr_assert_eq(prism_f32_to_bf16(1.0f + 3.0f / 256.0f), 0x3f82);
    cr_assert_eq(prism_f32_to_fp16(1.0f + 1.0f / 2048.0f), 0x3c00);
    cr_assert_eq(prism_f32_to_fp16(1.0f + 3.0f / 2048.0f), 0x3c02);
    cr_assert_eq(prism_f32_to_fp16(65520.0f), 0x7c00); /* overflow: inf */
    cr_assert_eq(prism_f32_to_fp16(65504.0f), 0x7bff);
    cr_assert_eq(prism_f32_to_fp16(1e-8f), 0x0000);
    cr_assert_eq(prism_f32_to_fp16(-3e-8f), 0x8001); /* rounds up to min */
}
