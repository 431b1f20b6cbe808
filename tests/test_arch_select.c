/*
 * test_arch_select.c - which kernels a plan picks for a device, and the
 * archs behind that choice (no GPU needed).
 *
 * base/arch.c says which images run on which compute capability; the
 * plans then take the device's own cubin, else its family's, else the PTX
 * image.  The plans here run on the stand-in libcuda of tests/fake_cuda
 * (ctest puts it on LD_LIBRARY_PATH), whose FAKE_CUDA_CC sets the compute
 * capability it reports and whose trace (FAKE_CUDA_TRACE) says whether
 * each module loaded was a cubin or PTX.  Kernels compile through NVRTC
 * for real.
 */
#include <criterion/criterion.h>

#include "base/arch.h"
#include "fake_testutil.h"
#include "base/cuda_driver.h"
#include "compile/cubin_info.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the arch table ------------------------------------------------------ */

static int candidates(int major, int minor, char *out, size_t size) {
    prism_arch a[PRISM_ARCH_COUNT_];
    int n = prism_arch_candidates(major, minor, a);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t used = strlen(out);
        snprintf(out + used, size - used, "%s%s", i ? " " : "",
                 prism_arch_name(a[i]));
    }
    return n;
}

Test(arch_select, candidates_follow_cubin_compatibility) {
    static const struct {
        int major, minor;
        const char *want;
    } cases[] = {
        {8, 0, "sm_80 compute_80"},
        {8, 6, "sm_86 sm_80 compute_80"},
        {8, 7, "sm_86 sm_80 compute_80"}, /* no sm_87 cubin: the family's */
        {8, 9, "sm_89 sm_86 sm_80 compute_80"},
        {9, 0, "sm_90a compute_80"},
        {9, 1, "compute_80"}, /* sm_90a runs on 9.0 alone */
        {10, 0, "sm_100 compute_80"},
        {10, 3, "sm_100 compute_80"},
        {11, 0, "compute_80"},
        {12, 0, "sm_120 compute_80"},
        {12, 1, "sm_120 compute_80"},
        {13, 0, "compute_80"}, /* a device no cubin knows */
        {7, 5, ""},            /* before mma.sync on bf16: nothing */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[128];
        candidates(cases[i].major, cases[i].minor, got, sizeof got);
        cr_expect_str_eq(got, cases[i].want, "%d.%d", cases[i].major,
                         cases[i].minor);
    }
    cr_assert(prism_arch_is_exact(PRISM_ARCH_SM90A, 9, 0));
    cr_assert_not(prism_arch_is_exact(PRISM_ARCH_SM100, 10, 3));
    cr_assert_not(prism_arch_is_exact(PRISM_ARCH_PTX, 8, 0));
    cr_assert(prism_arch_is_ptx(PRISM_ARCH_PTX));
    cr_assert_not(prism_arch_is_ptx(PRISM_ARCH_SM120));
    cr_assert_not(prism_arch_is_ptx(PRISM_ARCH_COUNT_));
}

Test(arch_select, names_parse_back_and_are_listed) {
    for (int a = 0; a < PRISM_ARCH_COUNT_; a++) {
        const char *name = prism_arch_name((prism_arch)a);
        prism_arch back;
        cr_assert_eq(prism_arch_parse(name, &back), PRISM_OK, "%s", name);
        cr_assert_eq(back, (prism_arch)a);
        cr_assert(strstr(prism_arch_list_text(), name), "%s", name);
    }
    prism_arch x;
    cr_assert_eq(prism_arch_parse("sm_100a", &x), PRISM_ERR_UNSUPPORTED);
    cr_assert_eq(prism_arch_parse("compute_90", &x), PRISM_ERR_UNSUPPORTED);
}

Test(arch_select, every_config_keeps_a_ptx_image) {
    prism_arch t[] = {PRISM_ARCH_SM80, PRISM_ARCH_SM90A}, out[9];
    cr_assert_eq(prism_arch_with_ptx(t, 2, out), 3);
    cr_assert_eq(out[2], PRISM_ARCH_PTX);
    prism_arch u[] = {PRISM_ARCH_PTX, PRISM_ARCH_SM120};
    cr_assert_eq(prism_arch_with_ptx(u, 2, out), 2, "listed once");
}

/* ---- plans on the stand-in driver ---------------------------------------- */

static char g_dir[64], g_trace[96];
static char g_warnings[16384]; /* every warning, one per line */

static void record(void *user, prism_log_level level, const char *msg) {
    (void)user;
    size_t used = strlen(g_warnings);
    if (level == PRISM_LOG_WARN)
        snprintf(g_warnings + used, sizeof g_warnings - used, "%s\n", msg);
}

static void setup(void) {
    strcpy(g_dir, "/tmp/prism-test-arch-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    snprintf(g_trace, sizeof g_trace, "%s/trace", g_dir);
    setenv("PRISM_TUNE", "off", 1);
    setenv("FAKE_CUDA_TRACE", g_trace, 1);
    unsetenv("PRISM_JIT");
    g_warnings[0] = '\0';
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
    unsetenv("FAKE_CUDA_CC");
    unsetenv("FAKE_CUDA_TRACE");
}

/* A context on the stand-in driver, logging into g_log; skips elsewhere. */
static prism_context *fake_context(bool jit) {
    skip_unless_fake_driver();
    prism_context_options o;
    prism_context_options_init(&o);
    o.cache_dir = g_dir;
    o.disable_jit = !jit;
    o.log = record;
    o.log_level = PRISM_LOG_DEBUG;
    prism_context *ctx = NULL;
    cr_assert_eq(prism_context_create(&o, &ctx), PRISM_OK);
    return ctx;
}

/* Modules loaded since the last call: cubins and PTX (the fake's trace). */
static void take_modules(int *cubins, int *ptx) {
    *cubins = *ptx = 0;
    FILE *f = fopen(g_trace, "r");
    char line[128];
    while (f && fgets(line, sizeof line, f)) {
        *cubins += !strcmp(line, "module cubin\n");
        *ptx += !strcmp(line, "module ptx\n");
    }
    if (f)
        fclose(f);
    unlink(g_trace);
}

/* Creates a plan on a device of compute capability cc; returns its status
 * and, on success, the arch it runs. */
static prism_status plan_on(prism_context *ctx, const char *cc,
                            prism_arch *arch) {
    setenv("FAKE_CUDA_CC", cc, 1);
    prism_config cfg = shipped_config("smollm2-135m.yaml");
    prism_plan_limits lim = {1, 256, 256, false, false};
    prism_plan *plan = NULL;
    prism_status st = prism_plan_create(ctx, &cfg, &lim, &plan);
    if (st == PRISM_OK)
        *arch = prism_plan_arch(plan);
    prism_plan_destroy(plan);
    return st;
}

/* Warnings so far that mention text. */
static int warnings_about(const char *text) {
    int n = 0;
    for (const char *p = g_warnings; (p = strstr(p, text)); p++)
        n++;
    return n;
}

/* With JIT: each device gets its own cubin, a device without one its
 * family's, and one no cubin covers the PTX, with one warning. */
Test(arch_select, plans_pick_cubin_then_family_then_ptx, .init = setup,
     .fini = teardown, .timeout = 900) {
    prism_context *ctx = fake_context(true);
    static const struct {
        const char *cc;
        prism_arch want;
    } cases[] = {
        {"8.0", PRISM_ARCH_SM80},   {"10.0", PRISM_ARCH_SM100},
        {"10.3", PRISM_ARCH_SM100}, {"12.0", PRISM_ARCH_SM120},
        {"12.1", PRISM_ARCH_SM120}, {"8.7", PRISM_ARCH_SM86},
        {"13.0", PRISM_ARCH_PTX},   {"11.0", PRISM_ARCH_PTX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        prism_arch arch = PRISM_ARCH_COUNT_;
        int before = warnings_about("PTX"), cubins, ptx;
        take_modules(&cubins, &ptx);
        cr_assert_eq(plan_on(ctx, cases[i].cc, &arch), PRISM_OK, "%s: %s",
                     cases[i].cc, prism_context_last_error(ctx));
        cr_expect_eq(arch, cases[i].want, "%s runs %s, not %s", cases[i].cc,
                     prism_arch_name(arch), prism_arch_name(cases[i].want));
        take_modules(&cubins, &ptx);
        bool is_ptx = cases[i].want == PRISM_ARCH_PTX;
        cr_expect_eq(ptx, is_ptx ? prism_kernel_count() : 0, "%s", cases[i].cc);
        cr_expect_eq(cubins, is_ptx ? 0 : prism_kernel_count(), "%s",
                     cases[i].cc);
        cr_expect_eq(warnings_about("PTX") - before, is_ptx ? 1 : 0,
                     "%s: one warning for PTX, none for a cubin",
                     cases[i].cc);
    }
    prism_arch arch;
    cr_assert_eq(plan_on(ctx, "7.5", &arch), PRISM_ERR_NO_KERNEL);
    prism_context_destroy(ctx);
}

/* Without JIT (a kernel pack or a cache filled elsewhere): whatever runs
 * on the device and is there.  Only the PTX and the sm_100 cubins are. */
Test(arch_select, without_jit_the_images_present_decide, .init = setup,
     .fini = teardown, .timeout = 900) {
    prism_context *jit = fake_context(true);
    prism_config cfg = shipped_config("smollm2-135m.yaml");
    prism_arch built[] = {PRISM_ARCH_PTX, PRISM_ARCH_SM100};
    for (int i = 0; i < 2; i++) {
        prism_module *m = NULL;
        cr_assert_eq(prism_module_build(jit, &cfg, built[i], &m), PRISM_OK,
                     "%s", prism_context_last_error(jit));
        prism_kernel_info info;
        cr_assert_eq(prism_module_kernel_info(m, 0, &info), PRISM_OK);
        cr_assert_eq(prism_cubin_is_elf(info.cubin, info.cubin_size),
                     !prism_arch_is_ptx(built[i]));
        prism_module_destroy(m);
    }
    prism_context_destroy(jit);

    prism_context *ctx = fake_context(false);
    prism_arch arch = PRISM_ARCH_COUNT_;
    cr_assert_eq(plan_on(ctx, "10.3", &arch), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    cr_expect_eq(arch, PRISM_ARCH_SM100, "the family's cubin");
    cr_assert_eq(plan_on(ctx, "9.0", &arch), PRISM_OK, "%s",
                 prism_context_last_error(ctx));
    cr_expect_eq(arch, PRISM_ARCH_PTX, "no sm_90a cubin: the PTX");
    cr_expect_eq(warnings_about("compute capability 9.0: no Prism cubin"), 1);
    cr_assert_eq(plan_on(ctx, "8.9", &arch), PRISM_OK);
    cr_expect_eq(arch, PRISM_ARCH_PTX);
    prism_context_destroy(ctx);
}
