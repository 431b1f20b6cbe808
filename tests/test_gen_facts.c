/*
 * test_gen_facts.c - what the generator fixes for a kernel, each in one
 * place:
 *
 *   - a kernel's source carries exactly the constants its templates use,
 *     so a config change reaches the sources (and cache keys) of the
 *     kernels it concerns and no other;
 *   - the launch shape is computed on the host from the spec
 *     (gen/launch.c) and is what the templates used to report from the
 *     cubin, for every shipped config and arch;
 *   - the parameter blocks (gen/templates/KERNEL_params.h) compile as C11
 *     here and as CUDA C++ under NVRTC, with the same sizes and
 *     alignments on both sides.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "compile/nvrtc_compile.h"
#include "gen/spec.h"
#include "gen/templates.h"

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/templates/attention_params.h"
#include "gen/templates/estimate_params.h"
#include "gen/templates/pool_stats_params.h"

static const char *const configs[] = {"default.yaml", "gemma-2-9b.yaml",
                                      "gptj-6b.yaml", "llama-3.1-8b.yaml",
                                      "qwen3-8b.yaml", "smollm2-135m.yaml"};

static prism_config load(const char *name) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/configs/%s", PRISM_SOURCE_DIR, name);
    prism_config cfg;
    cr_assert_eq(prism_config_load_file(path, &cfg, err, sizeof err), PRISM_OK,
                 "%s", err);
    return cfg;
}

static char *generate(const prism_config *cfg, int k, prism_arch arch) {
    char *src = NULL, err[1024];
    cr_assert_eq(prism_generate_source(cfg, k, arch, &src, err, sizeof err),
                 PRISM_OK, "%s", err);
    return src;
}

/* Copy of text with comments and string / character literals blanked. */
static char *code_only(const char *text) {
    size_t n = strlen(text);
    char *c = malloc(n + 1);
    memcpy(c, text, n + 1);
    for (size_t i = 0; i < n;) {
        size_t end = i;
        if (c[i] == '/' && c[i + 1] == '/') {
            for (end = i; end < n && c[end] != '\n'; end++)
                ;
        } else if (c[i] == '/' && c[i + 1] == '*') {
            const char *close = strstr(c + i + 2, "*/");
            end = close ? (size_t)(close - c) + 2 : n;
        } else if (c[i] == '"' || c[i] == '\'') {
            for (end = i + 1; end < n && c[end] != c[i]; end++)
                end += c[end] == '\\';
            end = end < n ? end + 1 : n;
        }
        if (end == i) {
            i++;
            continue;
        }
        memset(c + i, ' ', end - i);
        i = end;
    }
    return c;
}

/* Is `name` a whole identifier somewhere in code? */
static bool names(const char *code, const char *name) {
    size_t n = strlen(name);
    for (const char *at = code; (at = strstr(at, name)); at += n) {
        bool left = at == code || !(isalnum((unsigned char)at[-1]) || at[-1] == '_');
        bool right = !(isalnum((unsigned char)at[n]) || at[n] == '_');
        if (left && right)
            return true;
    }
    return false;
}

/* ---- only the constants a kernel uses ----------------------------------- */

typedef struct kernel_case {
    int config, kernel;
    prism_arch arch;
} kernel_case;

ParameterizedTestParameters(gen_facts, each_source_has_the_constants_it_uses) {
    static kernel_case cases[6 * 3 * PRISM_ARCH_COUNT_];
    int n = 0;
    for (int c = 0; c < 6; c++)
        for (int k = 0; k < 3; k++)
            for (int a = 0; a < PRISM_ARCH_COUNT_; a++)
                cases[n++] = (kernel_case){c, k, (prism_arch)a};
    return cr_make_param_array(kernel_case, cases, n);
}

/* Every constant of the spec is in the source iff the templates' code
 * names it. */
ParameterizedTest(kernel_case *kc, gen_facts,
                  each_source_has_the_constants_it_uses) {
    prism_config cfg = load(configs[kc->config]);
    prism_kernel_spec spec;
    char err[512];
    cr_assert_eq(prism_spec_build(&cfg, kc->kernel, kc->arch, &spec, err,
                                  sizeof err),
                 PRISM_OK, "%s", err);
    char *src = generate(&cfg, kc->kernel, kc->arch);
    char *body = strstr(src, "// ---- gen/templates/common.cuh ----");
    cr_assert_not_null(body);
    char *code = code_only(body);
    for (int i = 0; i < spec.n_constants; i++) {
        char decl[96];
        snprintf(decl, sizeof decl, " %s ", spec.constants[i].name);
        bool emitted = memmem(src, (size_t)(body - src), decl, strlen(decl));
        cr_expect_eq(emitted, names(code, spec.constants[i].name),
                     "%s %s %s: %s is %s", configs[kc->config],
                     spec.def->name, prism_arch_name(kc->arch),
                     spec.constants[i].name,
                     emitted ? "emitted but unused" : "used but not emitted");
    }
    free(code);
    free(src);
}

/* A config change and the kernels whose sources it must change. */
typedef struct change_case {
    char what[32];
    bool changes[3]; /* pool_stats, estimate, attention */
} change_case;

static void apply(prism_config *c, const char *what) {
    if (!strcmp(what, "threshold_high"))
        c->threshold_high = 0.9;
    else if (!strcmp(what, "force_sink"))
        c->force_sink = false;
    else if (!strcmp(what, "calibrate"))
        c->calibrate = false;
    else if (!strcmp(what, "temp_low"))
        c->temp_low = 0.5;
    else if (!strcmp(what, "dtype"))
        c->dtype = PRISM_DTYPE_FP16;
    else if (!strcmp(what, "rope_layout"))
        c->rope_layout = PRISM_ROPE_INTERLEAVED;
    else if (!strcmp(what, "low_dim"))
        c->low_dim = 64;
    else if (!strcmp(what, "kv_heads"))
        c->kv_heads = 4;
    else if (!strcmp(what, "q_heads")) {
        c->q_heads = 4;
        c->kv_heads = 1;
    }
    else if (!strcmp(what, "name"))
        strcpy(c->name, "renamed");
    else if (!strcmp(what, "source"))
        strcpy(c->source, "/elsewhere/entirely.yaml");
    else if (!strcmp(what, "pool_threads")) {
        c->n_tuning = 1;
        strcpy(c->tuning[0].kernel, "pool_stats");
        strcpy(c->tuning[0].param, "threads");
        c->tuning[0].value = 256;
    } else
        cr_assert_fail("unknown change %s", what);
}

ParameterizedTestParameters(gen_facts, a_change_reaches_the_kernels_it_concerns) {
    static change_case cases[] = {
        /* run-time parameters (prism_params): no kernel changes */
        {"threshold_high", {false, false, false}},
        {"force_sink", {false, false, false}},
        {"calibrate", {false, false, false}},
        {"temp_low", {false, false, false}},
        {"kv_heads", {false, false, false}},
        {"q_heads", {false, false, false}},
        /* what shapes the code */
        {"low_dim", {true, true, false}},
        {"rope_layout", {true, true, false}},
        {"dtype", {true, false, true}},
        {"pool_threads", {true, false, false}},
        /* neither the config's name nor its file: configs of one shape
         * share their kernels */
        {"name", {false, false, false}},
        {"source", {false, false, false}},
    };
    return cr_make_param_array(change_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(change_case *cc, gen_facts,
                  a_change_reaches_the_kernels_it_concerns) {
    for (int a = 0; a < PRISM_ARCH_COUNT_; a++) {
        prism_config before = load("default.yaml"), after = before;
        apply(&after, cc->what);
        for (int k = 0; k < 3; k++) {
            char *x = generate(&before, k, (prism_arch)a);
            char *y = generate(&after, k, (prism_arch)a);
            cr_expect_eq(strcmp(x, y) != 0, cc->changes[k],
                         "%s on %s: %s %s", cc->what,
                         prism_arch_name((prism_arch)a), prism_kernel_name(k),
                         cc->changes[k] ? "unchanged" : "changed");
            free(x);
            free(y);
        }
    }
}

/* ---- launch shapes ------------------------------------------------------ */

/* What the attention templates reported through their former
 * prism_attention_launch array, read from cubins of the previous
 * generator: {threads, tile_m, dynamic smem, tensor maps, tile_n,
 * persistent}. */
typedef struct shape_case {
    char config[24];
    prism_arch arch;
    int threads, tile_m, smem, tensor_maps, tile_n, persistent;
} shape_case;

ParameterizedTestParameters(gen_facts, launch_shapes_are_the_templates_former_ones) {
    static shape_case cases[] = {
        {"default.yaml", PRISM_ARCH_SM80, 128, 128, 102464, 0, 64, 0},
        {"default.yaml", PRISM_ARCH_SM86, 128, 128, 69696, 0, 32, 0},
        {"default.yaml", PRISM_ARCH_SM89, 128, 128, 69696, 0, 32, 0},
        {"default.yaml", PRISM_ARCH_SM90A, 384, 128, 230724, 1, 128, 1},
        {"gemma-2-9b.yaml", PRISM_ARCH_SM80, 128, 64, 98368, 0, 32, 0},
        {"gemma-2-9b.yaml", PRISM_ARCH_SM86, 128, 64, 98368, 0, 32, 0},
        {"gemma-2-9b.yaml", PRISM_ARCH_SM89, 128, 64, 98368, 0, 32, 0},
        {"gemma-2-9b.yaml", PRISM_ARCH_SM90A, 384, 128, 197920, 1, 64, 1},
        {"gptj-6b.yaml", PRISM_ARCH_SM86, 128, 64, 98368, 0, 32, 0},
        {"gptj-6b.yaml", PRISM_ARCH_SM90A, 384, 128, 197920, 1, 64, 1},
        {"llama-3.1-8b.yaml", PRISM_ARCH_SM80, 128, 128, 102464, 0, 64, 0},
        {"llama-3.1-8b.yaml", PRISM_ARCH_SM89, 128, 128, 69696, 0, 32, 0},
        {"llama-3.1-8b.yaml", PRISM_ARCH_SM90A, 384, 128, 230724, 1, 128, 1},
        {"qwen3-8b.yaml", PRISM_ARCH_SM90A, 384, 128, 230724, 1, 128, 1},
        {"smollm2-135m.yaml", PRISM_ARCH_SM80, 128, 64, 41024, 0, 64, 0},
        {"smollm2-135m.yaml", PRISM_ARCH_SM86, 128, 64, 41024, 0, 64, 0},
        {"smollm2-135m.yaml", PRISM_ARCH_SM90A, 128, 64, 41024, 0, 64, 0},
    };
    return cr_make_param_array(shape_case, cases,
                               sizeof cases / sizeof cases[0]);
}

ParameterizedTest(shape_case *sc, gen_facts,
                  launch_shapes_are_the_templates_former_ones) {
    prism_config cfg = load(sc->config);
    int k = prism_kernel_index_of(PRISM_KERNEL_ATTENTION);
    prism_kernel_spec spec;
    char err[512];
    cr_assert_eq(prism_spec_build(&cfg, k, sc->arch, &spec, err, sizeof err),
                 PRISM_OK, "%s", err);
    const prism_launch_shape *l = &spec.launch;
    cr_expect_eq(l->threads, sc->threads);
    cr_expect_eq(l->tile_m, sc->tile_m);
    cr_expect_eq(l->dynamic_smem, sc->smem);
    cr_expect_eq(l->tensor_maps, sc->tensor_maps != 0);
    cr_expect_eq(l->tile_n, sc->tile_n);
    cr_expect_eq(l->grid == PRISM_GRID_PERSISTENT, sc->persistent != 0);
    cr_expect_eq(spec.entry_points[1] != NULL, sc->persistent != 0,
                 "the schedule kernel is an entry point of the persistent one");
    /* the same numbers are the source's launch constants */
    char *src = generate(&cfg, k, sc->arch);
    char line[96];
    snprintf(line, sizeof line, "%-16s = %d;",
             sc->persistent ? "H_SMEM_BYTES" : "ATTN_SMEM_BYTES", sc->smem);
    cr_expect(strstr(src, line), "%s", line);
    free(src);
}

Test(gen_facts, pool_and_estimate_shapes_follow_their_threads) {
    prism_config cfg = load("default.yaml");
    prism_kernel_spec pool, est;
    char err[512];
    cr_assert_eq(prism_spec_build(&cfg, prism_kernel_index_of(PRISM_KERNEL_POOL_STATS),
                                  PRISM_ARCH_SM90A, &pool, err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(prism_spec_build(&cfg, prism_kernel_index_of(PRISM_KERNEL_ESTIMATE),
                                  PRISM_ARCH_SM90A, &est, err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_expect_eq(pool.launch.threads, 128);
    cr_expect_eq(pool.launch.grid, PRISM_GRID_BLOCKS);
    cr_expect_eq(est.launch.threads, 256);
    cr_expect_eq(est.launch.max_rows, 8);
    cr_expect_eq(est.launch.smem_per_row_block, 8);
    prism_grid_input in = {.batch = 2, .seqlen_q = 1000,
                           .q_heads = cfg.q_heads, .kv_heads = cfg.kv_heads,
                           .nq = 8, .nk = 16, .rows_per_cta = 8,
                           .sm_count = 132};
    unsigned g[3];
    prism_launch_grid(&pool.launch, &in, g);
    cr_expect(g[0] == 16 && g[1] == 40 && g[2] == 2, "%u %u %u", g[0], g[1], g[2]);
    prism_launch_grid(&est.launch, &in, g);
    cr_expect(g[0] == 4 * 8 * 2 && g[1] == 1 && g[2] == 1, "%u", g[0]);
    /* the heads are the launch's: a shard of 4 query heads, 1 KV head */
    in.q_heads = 4;
    in.kv_heads = 1;
    prism_launch_grid(&pool.launch, &in, g);
    cr_expect(g[0] == 16 && g[1] == 5 && g[2] == 2, "%u %u %u", g[0], g[1], g[2]);
    prism_launch_grid(&est.launch, &in, g);
    cr_expect(g[0] == 4 * 1 * 2, "%u", g[0]);
}

/* With a pooled-key cache the pooling grid's key CTAs follow the chunk
 * (gen/templates/pool_stats_params.h): a 2K chunk over a 128K prefix in
 * blocks of 128 pools its 16 blocks and sweeps the prefix's 1024 in 32
 * CTAs of 32, where without the cache every one of the 1040 key blocks
 * gets a CTA; a chunk starting inside a block owns that block; a ragged
 * batch, whose lengths the host cannot see, gets bounds that cover every
 * sequence the maxima allow. */
Test(gen_facts, pool_grid_with_the_cache_follows_the_chunk) {
    prism_launch_shape pool = {.grid = PRISM_GRID_BLOCKS, .threads = 128};
    prism_grid_input in = {.batch = 1, .seqlen_q = 2048, .seqlen_k = 133120,
                           .q_heads = 32, .kv_heads = 8, .nq = 16,
                           .nk = 1040, .block_size = 128};
    unsigned g[3];
    int fresh, sweeps;
    prism_launch_grid(&pool, &in, g);
    cr_expect(g[0] == 1040 && g[1] == 40 && g[2] == 1, "%u %u %u", g[0], g[1],
              g[2]);
    in.pooled_keys = true;
    prism_launch_pool_keys(&in, &fresh, &sweeps);
    cr_expect(fresh == 16 && sweeps == 32, "%d %d", fresh, sweeps);
    prism_launch_grid(&pool, &in, g);
    cr_expect(g[0] == 48 && g[1] == 40 && g[2] == 1, "%u %u %u", g[0], g[1],
              g[2]);
    /* 1000 queries over 5000 keys: the prefix is blocks 0..30 (key 4000
     * lies in block 31), the chunk's blocks 31..39 */
    in.seqlen_q = 1000;
    in.seqlen_k = 5000;
    in.nq = 8;
    in.nk = 40;
    prism_launch_pool_keys(&in, &fresh, &sweeps);
    cr_expect(fresh == 9 && sweeps == 1, "%d %d", fresh, sweeps);
    prism_launch_grid(&pool, &in, g);
    cr_expect_eq(g[0], 10);
    /* ragged: at most nq + 1 blocks of a chunk, a prefix of at most
     * seqlen_k / block_size blocks */
    in.ragged = true;
    prism_launch_pool_keys(&in, &fresh, &sweeps);
    cr_expect(fresh == 9 && sweeps == 2, "%d %d", fresh, sweeps);
    /* a prompt in one call has no prefix: a CTA per key block */
    in.ragged = false;
    in.seqlen_q = in.seqlen_k = 5000;
    in.nq = in.nk = 40;
    prism_launch_pool_keys(&in, &fresh, &sweeps);
    cr_expect(fresh == 40 && sweeps == 0, "%d %d", fresh, sweeps);
    /* the rule itself, as the kernels see it per sequence */
    cr_expect_eq(pool_prefix_blocks(2048, 133120, 128), 1024);
    cr_expect_eq(pool_prefix_blocks(1000, 5000, 128), 31);
    cr_expect_eq(pool_prefix_blocks(300, 200, 128), 0);
    cr_expect_eq(pool_prefix_blocks(0, 200, 128), 1);
}

/* The sm_90a kernels divide item indices by the launch's head counts with
 * FastDiv (gen/templates/attention_sm90_produce.cu): exact for every
 * divisor a head count or GQA group can be and every index below 2^31. */
Test(gen_facts, fast_division_is_exact) {
    for (int32_t d = 1; d <= 1024; d++) {
        uint32_t mul, shift;
        prism_launch_fastdiv(d, &mul, &shift);
        uint32_t xs[] = {0, 1, 2, (uint32_t)d - 1, (uint32_t)d, (uint32_t)d + 1,
                         (uint32_t)d * 1000 - 1, (uint32_t)d * 1000,
                         0x7fffffffu, 0x7ffffffeu,
                         (0x7fffffffu / (uint32_t)d) * (uint32_t)d,
                         (0x7fffffffu / (uint32_t)d) * (uint32_t)d - 1};
        uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)d;
        for (int i = 0; i < 2000; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t x = i < (int)(sizeof xs / sizeof xs[0])
                             ? xs[i]
                             : (uint32_t)(rng >> 33); /* below 2^31 */
            uint32_t hi = (uint32_t)(((uint64_t)x * mul) >> 32);
            uint32_t q = (hi + x) >> shift;
            if (q != x / (uint32_t)d)
                cr_assert_fail("%u / %d: %u, not %u", x, d, q,
                               x / (uint32_t)d);
            if (i >= (int)(sizeof xs / sizeof xs[0]) + 200)
                break;
        }
    }
}

/* ---- parameter blocks in both compilers --------------------------------- */

_Static_assert(offsetof(AttnTmaParams, a) == 512, "maps first, a at 512");
_Static_assert(offsetof(AttnParams, scale_log2) == 228, "AttnParams layout");
_Static_assert(offsetof(AttnParams, group) == 256, "AttnParams layout");
_Static_assert(offsetof(EstimateParams, rows_per_cta) == 108,
               "EstimateParams layout");
_Static_assert(offsetof(EstimateParams, force_recent) == 148,
               "EstimateParams layout");
_Static_assert(offsetof(PoolParams, nk_max) == 128, "PoolParams layout");
_Static_assert(offsetof(PoolParams, kv_heads) == 136, "PoolParams layout");

Test(gen_facts, parameter_blocks_agree_between_host_and_device,
     .timeout = 120) {
    struct {
        const char *header, *type;
        size_t size, align;
    } blocks[] = {
        {"pool_stats_params.h", "PoolParams", sizeof(PoolParams),
         _Alignof(PoolParams)},
        {"estimate_params.h", "EstimateParams", sizeof(EstimateParams),
         _Alignof(EstimateParams)},
        {"attention_params.h", "AttnParams", sizeof(AttnParams),
         _Alignof(AttnParams)},
        {"attention_params.h", "AttnTmaParams", sizeof(AttnTmaParams),
         _Alignof(AttnTmaParams)},
    };
    const prism_template *common = prism_template_find("common.cuh");
    cr_assert_not_null(common);
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        const prism_template *h = prism_template_find(blocks[i].header);
        cr_assert_not_null(h, "%s is embedded", blocks[i].header);
        size_t n = common->size + h->size + 512;
        char *src = malloc(n);
        snprintf(src, n,
                 "%s\n%s\n"
                 "static_assert(sizeof(%s) == %zu, \"size\");\n"
                 "static_assert(alignof(%s) == %zu, \"alignment\");\n"
                 "extern \"C\" __global__ void k(const %s p, int *o) "
                 "{ *o = (int)sizeof p; }\n",
                 common->text, h->text, blocks[i].type, blocks[i].size,
                 blocks[i].type, blocks[i].align, blocks[i].type);
        prism_nvrtc_result r;
        char err[1024];
        cr_expect_eq(prism_nvrtc_compile(src, "params.cu", PRISM_ARCH_SM90A, &r,
                                         err, sizeof err),
                     PRISM_OK, "%s under NVRTC: %s\n%s", blocks[i].type, err,
                     r.log ? r.log : "");
        prism_nvrtc_result_free(&r);
        free(src);
    }
}
