/*
 * test_cubin_info.c - kernel statistics read from a cubin (no GPU needed).
 *
 * The cubin reader must agree with ptxas's own report wherever NVRTC
 * gives one, so that a host whose NVRTC returns an empty log sees the same
 * numbers; and since cubins come from cache files and kernel packs, it
 * must survive any image: every truncation and many bit flips of a real
 * cubin, and hand-made ELF files whose offsets point anywhere.  Built with
 * the sanitizers (.ci/test), an out-of-bounds read here fails the suite.
 */
#include <criterion/criterion.h>

#include "cli_testutil.h"
#include "base/arch.h"
#include "compile/cubin_info.h"
#include "compile/nvrtc_compile.h"
#include "prism.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static prism_config unit_config(void) {
    prism_config cfg;
    prism_config_init(&cfg);
    strcpy(cfg.name, "unit");
    strcpy(cfg.source, "unit.yaml");
    return cfg;
}

/* Compiles kernel k of cfg for arch; the caller frees r. */
static void compile_kernel(const prism_config *cfg, int k, prism_arch arch,
                           prism_nvrtc_result *r) {
    char *src = NULL, err[1024];
    cr_assert_eq(prism_generate_source(cfg, k, arch, &src, err, sizeof err),
                 PRISM_OK, "%s", err);
    cr_assert_eq(prism_nvrtc_compile(src, "k.cu", arch, r, err, sizeof err),
                 PRISM_OK, "%s", err);
    free(src);
}

/* Every kernel, on every arch whose cubin NVRTC makes: the cubin says what
 * ptxas -v says (registers, static shared memory, stack frame). */
Test(cubin_info, agrees_with_ptxas_report, .timeout = 900) {
    prism_config cfg = unit_config();
    for (int a = 0; a < PRISM_ARCH_COUNT_; a++) {
        prism_arch arch = (prism_arch)a;
        if (prism_arch_is_ptx(arch))
            continue; /* no cubin, no ptxas */
        for (int k = 0; k < prism_kernel_count(); k++) {
            prism_nvrtc_result r;
            compile_kernel(&cfg, k, arch, &r);
            cr_assert_not(r.stats_from_cubin, "this NVRTC writes a log");
            cr_assert_geq(r.registers, 0, "%s", r.log);
            prism_cubin_stats c;
            cr_assert(prism_cubin_read_stats(r.cubin, r.cubin_size, &c));
            const char *what = prism_kernel_name(k);
            cr_expect_eq(c.registers, r.registers, "%s %s: registers %d vs %d",
                         what, prism_arch_name(arch), c.registers,
                         r.registers);
            cr_expect_eq(c.shared_bytes, r.shared_bytes,
                         "%s %s: smem %d vs %d", what, prism_arch_name(arch),
                         c.shared_bytes, r.shared_bytes);
            cr_expect_eq(c.frame_bytes, r.local_bytes, "%s %s: frame %d vs %d",
                         what, prism_arch_name(arch), c.frame_bytes,
                         r.local_bytes);
            /* with no log the same numbers come from the cubin */
            prism_nvrtc_result s;
            memset(&s, 0, sizeof s);
            prism_nvrtc_stats("", r.cubin, r.cubin_size, &s);
            cr_expect(s.stats_from_cubin);
            cr_expect_eq(s.registers, r.registers);
            cr_expect_eq(s.shared_bytes, r.shared_bytes);
            cr_expect_eq(s.local_bytes, r.local_bytes);
            cr_expect_eq(s.spill_bytes, -1, "a cubin does not record spills");
            prism_nvrtc_result_free(&r);
        }
    }
}

/* Section i of an ELF64 cubin (trusted: NVRTC made it): its name and
 * bytes (none for NOBITS); false past the last one. */
static bool elf_section(const unsigned char *elf, size_t size, unsigned i,
                        const char **name, const unsigned char **data,
                        size_t *len) {
    uint64_t shoff;
    uint16_t shentsize, shnum, shstrndx;
    memcpy(&shoff, elf + 0x28, 8);
    memcpy(&shentsize, elf + 0x3a, 2);
    memcpy(&shnum, elf + 0x3c, 2);
    memcpy(&shstrndx, elf + 0x3e, 2);
    if (i >= shnum)
        return false;
    const unsigned char *sh = elf + shoff + (size_t)i * shentsize;
    const unsigned char *strtab = elf + shoff + (size_t)shstrndx * shentsize;
    uint32_t name_off, type;
    uint64_t str_at, off, sz;
    memcpy(&name_off, sh, 4);
    memcpy(&type, sh + 4, 4);
    memcpy(&off, sh + 24, 8);
    memcpy(&sz, sh + 32, 8);
    memcpy(&str_at, strtab + 24, 8);
    cr_assert_leq(off + (type == 8 ? 0 : sz), size);
    *name = (const char *)elf + str_at + name_off;
    *data = elf + off;
    *len = type == 8 ? 0 : (size_t)sz;
    return true;
}

/* ptxas on several threads (prism_nvrtc_extra.ptxas_threads, which stays
 * out of the cache key) makes the same cubin for every kernel on sm_80
 * and sm_90a: every section but the tool note, which records the command
 * line, is byte for byte the same -- the SASS of every function, its
 * attributes, constants and relocations. */
Test(cubin_info, ptxas_threads_leave_the_code_alone, .timeout = 600) {
    prism_config cfg = unit_config();
    static const prism_arch archs[] = {PRISM_ARCH_SM90A, PRISM_ARCH_SM80};
    for (int a = 0; a < 2; a++)
        for (int k = 0; k < prism_kernel_count(); k++) {
            char *src = NULL, err[1024];
            cr_assert_eq(prism_generate_source(&cfg, k, archs[a], &src, err,
                                               sizeof err),
                         PRISM_OK, "%s", err);
            prism_nvrtc_result r[2];
            for (int t = 0; t < 2; t++) {
                prism_nvrtc_extra extra = {.ptxas_threads = t ? 4 : 1};
                cr_assert_eq(prism_nvrtc_compile_ex(src, "k.cu", archs[a],
                                                    &extra, &r[t], err,
                                                    sizeof err),
                             PRISM_OK, "%s", err);
            }
            const char *n0, *n1;
            const unsigned char *d0, *d1;
            size_t l0, l1;
            int texts = 0;
            unsigned i = 0;
            for (; elf_section(r[0].cubin, r[0].cubin_size, i, &n0, &d0, &l0);
                 i++) {
                cr_assert(elf_section(r[1].cubin, r[1].cubin_size, i, &n1, &d1,
                                      &l1));
                cr_assert_str_eq(n0, n1);
                texts += !strncmp(n0, ".text.", 6);
                if (!strcmp(n0, ".note.nv.tkinfo"))
                    continue;
                cr_expect(l0 == l1 && !memcmp(d0, d1, l0), "%s %s: %s differs",
                          prism_kernel_name(k), prism_arch_name(archs[a]), n0);
            }
            cr_assert_not(elf_section(r[1].cubin, r[1].cubin_size, i, &n1,
                                      &d1, &l1));
            cr_assert_gt(texts, 0);
            prism_nvrtc_result_free(&r[0]);
            prism_nvrtc_result_free(&r[1]);
            free(src);
        }
}

/* An NVRTC whose log is empty after a successful compile (tests/
 * quiet_nvrtc): `prism compile` still reports registers and shared memory,
 * read from the cubin, and says that the stack frame stands for spills. */
Test(cubin_info, statistics_survive_an_empty_log, .timeout = 300) {
    char out[8192];
    int rc = cli_tu_run(out, sizeof out, NULL, 0,
                        "dir=$(mktemp -d) && PRISM_CACHE_DIR=$dir "
                        "PRISM_NVRTC_PATH='%s' '%s' compile "
                        "'%s/configs/smollm2-135m.yaml' --arch sm_80; "
                        "rc=$?; rm -rf \"$dir\"; exit $rc",
                        PRISM_QUIET_NVRTC, PRISM_CLI_PATH, PRISM_SOURCE_DIR);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_null(strstr(out, "regs  -1"), "%s", out);
    cr_assert_null(strstr(out, "smem     -1"), "%s", out);
    cr_assert(strstr(out, "spills   ~0"), "%s", out);
    cr_assert(strstr(out, "N is the stack frame read from the cubin"), "%s",
              out);
}

/* Any field outside its possible range is a reader bug. */
static void check_sane(const prism_cubin_stats *c, bool ok) {
    cr_assert(c->registers >= -1 && c->frame_bytes >= -1 &&
              c->stack_bytes >= -1 && c->shared_bytes >= -1);
    cr_assert_eq(ok, c->registers >= 0);
    if (!ok)
        cr_assert_eq(c->shared_bytes, -1);
}

/* Every prefix of a real cubin, each in a buffer of exactly that size (so
 * the sanitizers see any read past it), then bit flips: every bit of the
 * ELF header and the section header table, and random ones elsewhere. */
Test(cubin_info, survives_truncated_and_flipped_cubins, .timeout = 600) {
    prism_config cfg = unit_config();
    prism_nvrtc_result r;
    compile_kernel(&cfg, 0, PRISM_ARCH_SM80, &r);
    const unsigned char *cubin = r.cubin;
    size_t size = r.cubin_size;
    prism_cubin_stats c;
    for (size_t n = 0; n < size; n += n < 4096 ? 1 : 61) {
        unsigned char *copy = malloc(n ? n : 1);
        memcpy(copy, cubin, n);
        check_sane(&c, prism_cubin_read_stats(copy, n, &c));
        free(copy);
    }
    unsigned char *copy = malloc(size);
    memcpy(copy, cubin, size);
    uint64_t shoff = 0;
    memcpy(&shoff, cubin + 0x28, 8);
    cr_assert_lt(shoff, size, "the section headers end the file");
    for (size_t bit = 0; bit < 8 * size; bit++) {
        size_t byte = bit / 8;
        bool header = byte < 64 || byte >= shoff;
        if (!header && (bit * 2654435761u) % 97 != 0)
            continue; /* about 1% of the rest */
        copy[byte] ^= (unsigned char)(1u << (bit % 8));
        check_sane(&c, prism_cubin_read_stats(copy, size, &c));
        copy[byte] = cubin[byte];
    }
    /* random bytes over random spans */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        size_t at = (size_t)rand() % size;
        size_t n = size - at < 8 ? size - at : 8;
        for (size_t j = 0; j < n; j++)
            copy[at + j] = (unsigned char)rand();
        check_sane(&c, prism_cubin_read_stats(copy, size, &c));
        memcpy(copy + at, cubin + at, n);
    }
    free(copy);
    prism_nvrtc_result_free(&r);
}

/* ---- hand-made images ---------------------------------------------------- */

typedef struct elf_builder {
    unsigned char buf[2048];
    size_t used;
} elf_builder;

static void put(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static size_t append(elf_builder *b, const void *data, size_t n) {
    size_t at = b->used;
    memcpy(b->buf + at, data, n);
    b->used += n;
    return at;
}

static const char names[] = "\0.shstrtab\0.nv.info\0.nv.shared.k\0"
                            ".nv.shared.reserved.0\0.nv.info.k";
enum { N_SHSTRTAB = 1, N_INFO = 11, N_SHARED = 20, N_RESERVED = 33,
       N_INFO_K = 55 };

/* A cubin-shaped ELF: .nv.info with the given records, a kernel's shared
 * section of `shared` bytes and, when `reserved`, the sm_90 marker. */
static size_t make_elf(elf_builder *b, const unsigned char *records,
                       size_t n_records, uint64_t shared, bool reserved) {
    memset(b, 0, sizeof *b);
    b->used = 64;
    size_t str_at = append(b, names, sizeof names);
    size_t info_at = append(b, records, n_records);
    while (b->used % 8)
        b->used++;
    size_t shoff = b->used;
    struct {
        uint32_t name, type;
        uint64_t off, size;
    } sec[] = {{0, 0, 0, 0},
               {N_SHSTRTAB, 3, str_at, sizeof names},
               {N_INFO, 0x70000000, info_at, n_records},
               {N_SHARED, 8, 0, shared},
               {reserved ? N_RESERVED : N_INFO_K, reserved ? 8 : 0x70000000,
                info_at, reserved ? 0 : n_records}};
    int n = (int)(sizeof sec / sizeof sec[0]);
    for (int i = 0; i < n; i++) {
        unsigned char h[64] = {0};
        put(h, sec[i].name, 4);
        put(h + 4, sec[i].type, 4);
        put(h + 24, sec[i].off, 8);
        put(h + 32, sec[i].size, 8);
        append(b, h, 64);
    }
    memcpy(b->buf, "\177ELF", 4);
    b->buf[4] = 2;
    b->buf[5] = 1;
    put(b->buf + 0x28, shoff, 8);
    put(b->buf + 0x3a, 64, 2);
    put(b->buf + 0x3c, (uint64_t)n, 2);
    put(b->buf + 0x3e, 1, 2);
    return shoff;
}

static const unsigned char good_records[] = {
    0x04, 0x2f, 0x08, 0x00, 1, 0, 0, 0, 40, 0, 0, 0,   /* REGCOUNT 40      */
    0x01, 0x35, 0x00, 0x00,                            /* a flag           */
    0x03, 0x1b, 0xff, 0x00,                            /* MAXREG_COUNT     */
    0x04, 0x11, 0x08, 0x00, 1, 0, 0, 0, 24, 0, 0, 0,   /* FRAME_SIZE 24    */
    0x04, 0x2f, 0x08, 0x00, 2, 0, 0, 0, 64, 0, 0, 0,   /* REGCOUNT 64      */
    0x04, 0x23, 0x08, 0x00, 2, 0, 0, 0, 48, 0, 0, 0,   /* MAX_STACK 48     */
};

Test(cubin_info, reads_a_hand_made_cubin) {
    elf_builder b;
    prism_cubin_stats c;
    make_elf(&b, good_records, sizeof good_records, 3072, true);
    cr_assert(prism_cubin_read_stats(b.buf, b.used, &c));
    cr_expect_eq(c.registers, 64, "the largest of the functions");
    cr_expect_eq(c.frame_bytes, 24);
    cr_expect_eq(c.stack_bytes, 48);
    cr_expect_eq(c.shared_bytes, 2048, "without the reserved 1 KB");
    make_elf(&b, good_records, sizeof good_records, 3072, false);
    cr_assert(prism_cubin_read_stats(b.buf, b.used, &c));
    cr_expect_eq(c.shared_bytes, 3072, "nothing reserved before sm_90");
    prism_nvrtc_result r;
    prism_nvrtc_stats(NULL, b.buf, b.used, &r);
    cr_expect(r.stats_from_cubin);
    cr_expect_eq(r.local_bytes, 48, "the whole stack bounds local memory");
    cr_expect_eq(r.spill_bytes, -1);
}

Test(cubin_info, rejects_what_is_not_a_readable_cubin) {
    elf_builder b;
    prism_cubin_stats c;
    cr_assert_not(prism_cubin_read_stats(NULL, 0, &c));
    cr_assert_not(prism_cubin_read_stats("\177ELF", 4, &c));
    cr_assert_not(prism_cubin_is_elf("//\n// Generated by NVIDIA", 24));
    const char *ptx = "//\n.version 9.0\n.target sm_80\n";
    cr_assert_not(prism_cubin_read_stats(ptx, strlen(ptx), &c));
    check_sane(&c, false);

    /* a record whose length runs past its section: stops there */
    unsigned char long_record[] = {0x04, 0x2f, 0xff, 0x7f, 1, 0, 0, 0,
                                   40, 0, 0, 0};
    make_elf(&b, long_record, sizeof long_record, 0, false);
    cr_assert_not(prism_cubin_read_stats(b.buf, b.used, &c));
    /* an unknown record format: stops there */
    unsigned char odd[] = {0x09, 0x2f, 0x08, 0x00, 0x04, 0x2f, 0x08, 0x00,
                           1, 0, 0, 0, 40, 0, 0, 0};
    make_elf(&b, odd, sizeof odd, 0, false);
    cr_assert_not(prism_cubin_read_stats(b.buf, b.used, &c));
    /* a register count beyond int */
    unsigned char huge[] = {0x04, 0x2f, 0x08, 0x00, 1, 0, 0, 0,
                            0xff, 0xff, 0xff, 0xff};
    make_elf(&b, huge, sizeof huge, 0, false);
    cr_assert_not(prism_cubin_read_stats(b.buf, b.used, &c));

    /* section headers and string offsets pointing anywhere */
    size_t shoff = make_elf(&b, good_records, sizeof good_records, 64, false);
    static const uint64_t wild[] = {0, 1, 63, 64, 2047, 2048, 4096,
                                    0x7fffffffffffffffull,
                                    0xffffffffffffffc0ull,
                                    0xffffffffffffffffull};
    elf_builder w;
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
        /* e_shoff, then each field of each section header */
        w = b;
        put(w.buf + 0x28, wild[i], 8);
        check_sane(&c, prism_cubin_read_stats(w.buf, w.used, &c));
        for (int s = 0; s < 5; s++)
            for (int field = 0; field < 3; field++) {
                static const int at[] = {0, 24, 32};
                static const int width[] = {4, 8, 8};
                w = b;
                put(w.buf + shoff + 64 * (size_t)s + (size_t)at[field],
                    wild[i], width[field]);
                check_sane(&c, prism_cubin_read_stats(w.buf, w.used, &c));
            }
    }
    /* a section count larger than the file */
    w = b;
    put(w.buf + 0x3c, 0xffff, 2);
    check_sane(&c, prism_cubin_read_stats(w.buf, w.used, &c));
    cr_assert_not(prism_cubin_read_stats(w.buf, w.used, &c));
}
