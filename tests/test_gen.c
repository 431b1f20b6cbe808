/*
 * test_gen.c - the generator: registry, spec constants, emitted source.
 */
#include <criterion/criterion.h>

#include "gen/kernels.h"
#include "gen/spec.h"
#include "gen/templates.h"

#include <stdlib.h>
#include <string.h>

static prism_config base_config(int head_dim) {
    prism_config cfg;
    prism_config_init(&cfg);
    cfg.head_dim = head_dim;
    cfg.high_dim = head_dim / 2;
    cfg.low_dim = head_dim * 3 / 4;
    strcpy(cfg.name, "unit");
    strcpy(cfg.source, "unit.yaml");
    return cfg;
}

Test(gen, registry_lists_pool_stats_first) {
    cr_assert_geq(prism_kernel_count(), 1);
    cr_assert_str_eq(prism_kernel_name(0), "pool_stats");
    cr_assert_null(prism_kernel_name(-1));
    cr_assert_null(prism_kernel_name(prism_kernel_count()));
    cr_assert_not_null(prism_kernel_def_find("pool_stats"));
    cr_assert_null(prism_kernel_def_find("nope"));
}

/* The kernel rows and the tunables the config checks overrides against
 * (config/tunables.c) are two tables; they must name the same kernels in
 * the same order, each row pointing at its own kernel's tunables. */
Test(gen, registry_matches_the_config_tunables) {
    cr_assert_eq(prism_kernel_count(), PRISM_KERNEL_COUNT);
    for (int i = 0; i < PRISM_KERNEL_COUNT; i++) {
        const prism_kernel_def *def = prism_kernel_def_at(i);
        const prism_kernel_tunables *t = &prism_tunables_table[i];
        cr_assert_str_eq(def->name, t->kernel);
        cr_assert_eq(def->tunables, t->tunables, "%s", def->name);
        cr_assert_eq(prism_tunables_find(def->name), t);
    }
    cr_assert_null(prism_tunables_find("nope"));
    cr_assert_null(prism_tunables_find(NULL));
}

Test(gen, every_kernel_template_is_embedded) {
    cr_assert_not_null(prism_template_find("common.cuh"));
    for (int i = 0; i < prism_kernel_count(); i++) {
        const prism_kernel_def *def = prism_kernel_def_at(i);
        cr_assert_not_null(def->templates[0]);
        for (int j = 0; j < PRISM_MAX_TEMPLATES && def->templates[j]; j++) {
            const prism_template *t = prism_template_find(def->templates[j]);
            cr_assert_not_null(t, "%s of %s", def->templates[j], def->name);
            cr_assert_gt(t->size, 100);
            cr_assert_eq(strlen(t->text), t->size);
        }
    }
}

Test(gen, tunable_check_names_the_allowed_values) {
    char allowed[256];
    cr_assert(prism_tunables_check("pool_stats", "threads", 256, allowed,
                                   sizeof allowed));
    cr_assert_not(prism_tunables_check("pool_stats", "threads", 96,
                                       allowed, sizeof allowed));
    cr_assert_str_eq(allowed, "pool_stats.threads values: 64, 128, 256");
    cr_assert_not(prism_tunables_check("pool_stats", "warps", 4, allowed,
                                       sizeof allowed));
    cr_assert_str_eq(allowed, "pool_stats tunables: threads");
    cr_assert_not(prism_tunables_check("nope", "threads", 4, allowed,
                                       sizeof allowed));
    cr_assert(strstr(allowed, "kernels: pool_stats") != NULL);
}

typedef struct const_case {
    int head_dim;
    prism_rope_layout layout;
    int high_pair_end, low_pair_begin;
} const_case;

Test(gen, spec_constants_follow_the_config) {
    static const const_case cases[] = {
        {64, PRISM_ROPE_HALF, 16, 8},
        {128, PRISM_ROPE_HALF, 32, 16},
        {256, PRISM_ROPE_INTERLEAVED, 64, 32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        prism_config cfg = base_config(cases[i].head_dim);
        cfg.rope_layout = cases[i].layout;
        cfg.q_heads = 12;
        cfg.kv_heads = 4;
        prism_kernel_spec spec;
        char err[512];
        cr_assert_eq(prism_spec_build(&cfg, 0, PRISM_ARCH_SM90A, &spec, err,
                                      sizeof err),
                     PRISM_OK, "%s", err);
        cr_assert_eq(prism_spec_int(&spec, "HEAD_DIM", -1), cases[i].head_dim);
        /* head counts and method settings are launch parameters */
        static const char *const runtime[] = {
            "Q_HEADS", "KV_HEADS", "GQA_GROUP", "THRESHOLD_HIGH",
            "THRESHOLD_LOW", "CALIBRATE", "TEMP_HIGH", "TEMP_LOW",
            "FORCE_SINK", "FORCE_RECENT"};
        for (size_t r = 0; r < sizeof runtime / sizeof runtime[0]; r++)
            for (int c = 0; c < spec.n_constants; c++)
                cr_assert(strcmp(spec.constants[c].name, runtime[r]),
                          "%s is a constant", runtime[r]);
        cr_assert_eq(prism_spec_int(&spec, "HIGH_PAIR_END", -1),
                     cases[i].high_pair_end);
        cr_assert_eq(prism_spec_int(&spec, "LOW_PAIR_BEGIN", -1),
                     cases[i].low_pair_begin);
        cr_assert_eq(prism_spec_int(&spec, "ROPE_INTERLEAVED", -1),
                     cases[i].layout == PRISM_ROPE_INTERLEAVED);
        cr_assert_eq(prism_spec_int(&spec, "THREADS", -1), 128);
    }
}

Test(gen, source_has_banner_constants_and_no_includes) {
    prism_config cfg = base_config(128);
    char *src = NULL, *est = NULL;
    char err[512];
    cr_assert_eq(prism_generate_source(&cfg, 0, PRISM_ARCH_SM80, &src, err,
                                       sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(prism_generate_source(&cfg, 1, PRISM_ARCH_SM80, &est, err,
                                       sizeof err),
                 PRISM_OK, "%s", err);
    const char *banner = "// generated by prism " PRISM_VERSION_STRING
                         " for sm_80; do not edit\n";
    cr_assert(strncmp(src, banner, strlen(banner)) == 0, "banner: %.120s", src);
    cr_assert(strstr(src, "// templates: gen/templates/common.cuh"
                          " + pool_stats_params.h"));
    cr_assert_null(strstr(src, "unit.yaml"), "no path in the source");
    cr_assert_null(strstr(src, "config: unit"),
                   "nor the config's name: configs of one shape share their "
                   "kernels");
    cr_assert(strstr(src, "static constexpr int       HEAD_DIM         = 128;"));
    cr_assert(strstr(est, "static constexpr int       HIGH_PAIR_END    = 32;"));
    cr_assert_null(strstr(est, "THRESHOLD_HIGH   ="), "a launch parameter");
    cr_assert(strstr(src, "static constexpr int       THREADS          = 128;"));
    cr_assert(strstr(src, "extern \"C\" __global__ void __launch_bounds__"));
    cr_assert_null(strstr(src, "\n#include"), "generated source must be "
                                              "self-contained");
    free(src);
    free(est);
}

Test(gen, tuning_override_reaches_the_source) {
    prism_config cfg = base_config(128);
    cfg.n_tuning = 1;
    strcpy(cfg.tuning[0].kernel, "pool_stats");
    strcpy(cfg.tuning[0].param, "threads");
    cfg.tuning[0].value = 256;
    char *src = NULL;
    char err[512];
    cr_assert_eq(prism_generate_source(&cfg, 0, PRISM_ARCH_SM90A, &src, err,
                                       sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert(strstr(src, "THREADS          = 256;"));
    free(src);

    cfg.tuning[0].value = 64; /* below head_dim/2 for D=256 */
    cfg.head_dim = 256;
    cfg.high_dim = 128;
    cfg.low_dim = 192;
    cr_assert_eq(prism_generate_source(&cfg, 0, PRISM_ARCH_SM90A, &src, err,
                                       sizeof err),
                 PRISM_ERR_CONFIG);
    cr_assert(strstr(err, "at least 128"), "%s", err);
}

Test(gen, generation_is_deterministic_and_arch_specific) {
    prism_config cfg = base_config(64);
    char *a = NULL, *b = NULL, *c = NULL;
    cr_assert_eq(prism_generate_source(&cfg, 0, PRISM_ARCH_SM80, &a, NULL, 0), 0);
    cr_assert_eq(prism_generate_source(&cfg, 0, PRISM_ARCH_SM80, &b, NULL, 0), 0);
    cr_assert_eq(prism_generate_source(&cfg, 0, PRISM_ARCH_SM90A, &c, NULL, 0), 0);
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
    free(a);
    free(b);
    free(c);
}

Test(gen, bad_arguments_are_errors_not_crashes) {
    prism_config cfg = base_config(128);
    char *src = (char *)1;
    char err[256];
    cr_assert_eq(prism_generate_source(&cfg, 99, PRISM_ARCH_SM80, &src, err,
                                       sizeof err),
                 PRISM_ERR_INVALID_ARGUMENT);
    cr_assert_null(src);
    cr_assert_eq(prism_generate_source(&cfg, 0, (prism_arch)42, &src, err,
                                       sizeof err),
                 PRISM_ERR_UNSUPPORTED);
    cr_assert_eq(prism_generate_source(NULL, 0, PRISM_ARCH_SM80, &src, err,
                                       sizeof err),
                 PRISM_ERR_NULL_POINTER);
    cfg.kv_heads = 5; /* 32 % 5 != 0 */
    cr_assert_eq(prism_generate_source(&cfg, 0, PRISM_ARCH_SM80, &src, err,
                                       sizeof err),
                 PRISM_ERR_CONFIG);
}
