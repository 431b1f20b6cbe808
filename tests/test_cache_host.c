/*
 * test_cache_host.c - which cache entries a host will use
 * (runtime/dispatch/host_use.c, `prism cache verify`).
 *
 * Entries are published with the library and a fake builder (no NVRTC),
 * each with the header facts the verdict reads: config, kernel, arch,
 * compiler; the release is rewritten in a header where a test needs
 * another one.  Hosts are written by hand (a device's compute capability,
 * JIT on or off) or, for the command, come from the stand-in libcuda of
 * tests/fake_cuda and its FAKE_CUDA_CC.
 */
#include "cache_testutil.h"
#include "cli_testutil.h"
#include "runtime/dispatch/host_use.h"
#include "cache/tar.h"
#include "base/arch.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *g_dir;
static char g_out[65536];

static void setup(void) {
    g_dir = cache_tu_mkdtemp();
    cr_assert_not_null(g_dir);
}

static void teardown(void) {
    cache_tu_rm_rf(g_dir);
    free(g_dir);
}

TestSuite(cache_host, .init = setup, .fini = teardown, .timeout = 120);

/* Publishes one entry into dir; returns its key. */
static prism_cache_key publish(const char *dir, const char *config,
                               const char *kernel, const char *arch,
                               const char *compiler) {
    char src[256];
    snprintf(src, sizeof src, "%s/%s/%s/%s", config, kernel, arch, compiler);
    prism_cache_key key = cache_tu_key(src);
    prism_cache_meta meta = cache_tu_meta(kernel);
    prism_strlcpy(meta.config_name, config, sizeof meta.config_name);
    prism_strlcpy(meta.arch, arch, sizeof meta.arch);
    prism_strlcpy(meta.compiler, compiler, sizeof meta.compiler);
    prism_cache *c = cache_tu_open(dir, NULL, 0);
    cr_assert_not_null(c);
    cache_tu_builder b = {.size = 500, .fill = 3};
    prism_cache_entry e;
    bool hit;
    cr_assert_eq(prism_cache_get(c, &key, &meta, cache_tu_build, &b, &e, &hit,
                                 NULL, 0),
                 PRISM_OK);
    prism_cache_entry_free(&e);
    prism_cache_close(c);
    return key;
}

/* Rewrites the 8-byte field at 344 (the release) or the 16 at 328 (the
 * compiler) of an entry's header, with its checksum. */
static void rewrite_header(const char *dir, const prism_cache_key *key,
                           size_t at, size_t width, const char *value) {
    char path[2048];
    unsigned char h[384];
    cache_tu_entry_path(path, sizeof path, dir, key);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    memset(h + at, 0, width);
    memcpy(h + at, value, strlen(value));
    prism_sha256(h, 352, h + 352);
    cr_assert_eq(pwrite(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
}

static prism_host host_for(int major, int minor, bool jit) {
    prism_host h;
    memset(&h, 0, sizeof h);
    prism_strlcpy(h.prism_version, PRISM_VERSION_STRING, sizeof h.prism_version);
    prism_strlcpy(h.compiler, "nvrtc 13.0", sizeof h.compiler);
    h.jit = jit;
    if (major) {
        h.device = true;
        h.cc_major = major;
        h.cc_minor = minor;
        h.n_order = prism_arch_candidates(major, minor, h.order);
    }
    return h;
}

static prism_host_table table_of(const char *dir, const prism_host *h) {
    prism_host_table t = {0};
    char err[1024];
    cr_assert_eq(prism_host_table_add_dir(&t, dir, NULL, true, err, sizeof err),
                 PRISM_OK, "%s", err);
    prism_host_table_judge(&t, h);
    return t;
}

/* The verdict of the row whose key is key. */
static const prism_host_row *row(const prism_host_table *t,
                                 const prism_cache_key *key) {
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->rows[i].entry.key_hex, key->hex))
            return &t->rows[i];
    cr_assert_fail("no row for %.12s", key->hex);
    return NULL;
}

#define EXPECT_USE(t, key, want, needle)                                       \
    do {                                                                       \
        const prism_host_row *r_ = row(t, key);                                \
        cr_expect_eq(r_->use, want, "%s %s: %s (%s)", r_->entry.meta.kernel_name, \
                     r_->entry.meta.arch, prism_host_use_name(r_->use),       \
                     r_->why);                                                 \
        cr_expect(strstr(r_->why, needle), "%s", r_->why);                     \
    } while (0)

/* The header records the key's compiler and release, and reads back. */
Test(cache_host, entries_record_compiler_and_release) {
    prism_cache_key k = publish(g_dir, "llama", "attention", "sm_90a",
                                "nvrtc 13.0");
    prism_host h = host_for(9, 0, true);
    prism_host_table t = table_of(g_dir, &h);
    cr_assert_eq(t.n, 1);
    cr_expect_str_eq(t.rows[0].entry.meta.compiler, "nvrtc 13.0");
    cr_expect_str_eq(t.rows[0].entry.meta.prism_version, PRISM_VERSION_STRING);
    cr_expect_str_eq(t.rows[0].entry.meta.arch, "sm_90a");
    EXPECT_USE(&t, &k, PRISM_HOST_USES, "first choice");
    prism_host_table_free(&t);
}

/* An H100 with JIT: its sm_90a cubins; the PTX is spare (the plan compiles
 * sm_90a when missing); sm_80 does not run there; an entry keyed for
 * another NVRTC or another release never comes up. */
Test(cache_host, hopper_with_jit) {
    prism_cache_key a90 = publish(g_dir, "llama", "attention", "sm_90a",
                                  "nvrtc 13.0");
    prism_cache_key a80 = publish(g_dir, "llama", "attention", "sm_80",
                                  "nvrtc 13.0");
    prism_cache_key ptx = publish(g_dir, "llama", "attention", "compute_80",
                                  "nvrtc 13.0");
    prism_cache_key old = publish(g_dir, "llama", "estimate", "sm_90a",
                                  "nvrtc 12.8");
    prism_cache_key rel = publish(g_dir, "llama", "pool_stats", "sm_90a",
                                  "nvrtc 13.0");
    rewrite_header(g_dir, &rel, 344, 8, "0.1.0");
    prism_host h = host_for(9, 0, true);
    prism_host_table t = table_of(g_dir, &h);
    EXPECT_USE(&t, &a90, PRISM_HOST_USES, "first choice");
    EXPECT_USE(&t, &a80, PRISM_HOST_OTHER_DEVICE, "runs on 8.x; this device is 9.0");
    EXPECT_USE(&t, &ptx, PRISM_HOST_SPARE, "sm_90a");
    EXPECT_USE(&t, &old, PRISM_HOST_OTHER_COMPILER, "nvrtc 12.8");
    EXPECT_USE(&t, &rel, PRISM_HOST_OTHER_RELEASE, "Prism 0.1.0");
    cr_expect_eq(t.counts[PRISM_HOST_USES], 1);
    cr_expect_eq(t.counts[PRISM_HOST_SPARE], 1);
    prism_host_table_free(&t);
}

/* An 8.6 device with JIT off takes what is there, best first: sm_80 is
 * the fallback while no sm_86 is found, the PTX spare behind it, and the
 * PTX alone serves a kernel nothing better of is here. */
Test(cache_host, family_and_ptx_without_jit) {
    prism_cache_key a80 = publish(g_dir, "qwen", "attention", "sm_80",
                                  "nvrtc 13.0");
    prism_cache_key aptx = publish(g_dir, "qwen", "attention", "compute_80",
                                   "nvrtc 13.0");
    prism_cache_key eptx = publish(g_dir, "qwen", "estimate", "compute_80",
                                   "nvrtc 13.0");
    prism_cache_key p86 = publish(g_dir, "qwen", "pool_stats", "sm_86",
                                  "nvrtc 13.0");
    prism_host h = host_for(8, 6, false);
    prism_host_table t = table_of(g_dir, &h);
    EXPECT_USE(&t, &a80, PRISM_HOST_FALLBACK, "no sm_86");
    EXPECT_USE(&t, &aptx, PRISM_HOST_SPARE, "comes first");
    EXPECT_USE(&t, &eptx, PRISM_HOST_FALLBACK, "compute_80 serves");
    EXPECT_USE(&t, &p86, PRISM_HOST_USES, "first choice");
    prism_host_table_free(&t);
    /* the same entries on a 12.1 device: only the PTX runs there */
    h = host_for(12, 1, false);
    t = table_of(g_dir, &h);
    EXPECT_USE(&t, &a80, PRISM_HOST_OTHER_DEVICE, "this device is 12.1");
    EXPECT_USE(&t, &aptx, PRISM_HOST_FALLBACK, "no sm_120");
    EXPECT_USE(&t, &p86, PRISM_HOST_OTHER_DEVICE, "8.6 and later 8.x");
    prism_host_table_free(&t);
}

/* No device: the arch cannot be matched, and the verdict says which
 * devices would run the entry; the other checks still apply. */
Test(cache_host, without_a_device_says_so) {
    prism_cache_key a90 = publish(g_dir, "llama", "attention", "sm_90a",
                                  "nvrtc 13.0");
    prism_cache_key ptx = publish(g_dir, "llama", "attention", "compute_80",
                                  "nvrtc 13.0");
    prism_cache_key old = publish(g_dir, "llama", "estimate", "sm_90a",
                                  "nvrtc 12.8");
    prism_host h = host_for(0, 0, true);
    prism_host_table t = table_of(g_dir, &h);
    EXPECT_USE(&t, &a90, PRISM_HOST_NO_DEVICE, "9.0 only");
    EXPECT_USE(&t, &ptx, PRISM_HOST_NO_DEVICE, "8.0 and newer");
    EXPECT_USE(&t, &old, PRISM_HOST_OTHER_COMPILER, "nvrtc 12.8");
    prism_host_table_free(&t);
}

/* An entry that does not record its compiler (written before entries
 * did) takes the pack manifest's, when the caller knows it. */
Test(cache_host, unrecorded_compiler) {
    prism_cache_key k = publish(g_dir, "llama", "attention", "sm_90a", "");
    prism_host h = host_for(9, 0, true);
    prism_host_table t = table_of(g_dir, &h);
    EXPECT_USE(&t, &k, PRISM_HOST_USES, "not recorded");
    prism_host_table_free(&t);
    char err[1024];
    t = (prism_host_table){0};
    cr_assert_eq(prism_host_table_add_dir(&t, g_dir, "nvrtc 12.4", true, err,
                                          sizeof err),
                 PRISM_OK, "%s", err);
    prism_host_table_judge(&t, &h);
    EXPECT_USE(&t, &k, PRISM_HOST_OTHER_COMPILER, "nvrtc 12.4");
    prism_host_table_free(&t);
}

/* The trust rule: a group-writable entry, then a group-writable
 * directory (a lookup skips every entry of it); a damaged header. */
Test(cache_host, untrusted_and_damaged_entries) {
    prism_cache_key a = publish(g_dir, "llama", "attention", "sm_90a",
                                "nvrtc 13.0");
    prism_cache_key b = publish(g_dir, "llama", "estimate", "sm_90a",
                                "nvrtc 13.0");
    prism_cache_key c = publish(g_dir, "llama", "pool_stats", "sm_90a",
                                "nvrtc 13.0");
    char path[2048];
    cache_tu_entry_path(path, sizeof path, g_dir, &a);
    cr_assert_eq(chmod(path, 0664), 0);
    cache_tu_entry_path(path, sizeof path, g_dir, &b);
    int fd = open(path, O_RDWR);
    cr_assert_eq(pwrite(fd, "X", 1, 100), 1); /* the config name */
    close(fd);
    prism_host h = host_for(9, 0, true);
    prism_host_table t = table_of(g_dir, &h);
    EXPECT_USE(&t, &a, PRISM_HOST_UNTRUSTED, "writable");
    EXPECT_USE(&t, &b, PRISM_HOST_BAD, "checksum");
    EXPECT_USE(&t, &c, PRISM_HOST_USES, "first choice");
    prism_host_table_free(&t);
    cr_assert_eq(chmod(g_dir, 0770), 0);
    t = table_of(g_dir, &h);
    EXPECT_USE(&t, &c, PRISM_HOST_UNTRUSTED, "its directory is writable");
    cr_expect_str_eq(row(&t, &c)->entry.meta.arch, "sm_90a",
                     "the header is still shown");
    prism_host_table_free(&t);
    cr_assert_eq(chmod(g_dir, 0700), 0);
}

/* A pack shipped as FILE.tar: its members are judged alike, before any
 * trust rule can apply. */
Test(cache_host, entries_of_an_archive) {
    char dir[1100], tar[1100], err[1024];
    snprintf(dir, sizeof dir, "%s/pack", g_dir);
    snprintf(tar, sizeof tar, "%s/pack.tar", g_dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    prism_cache_key a = publish(dir, "llama", "attention", "sm_90a",
                                "nvrtc 13.0");
    prism_cache_key p = publish(dir, "llama", "attention", "compute_80",
                                "nvrtc 13.0");
    cr_assert_eq(prism_tar_write_dir(dir, NULL, tar, 0, err, sizeof err),
                 PRISM_OK, "%s", err);
    prism_host_table t = {0};
    cr_assert_eq(prism_host_table_add_tar(&t, tar, NULL, err, sizeof err),
                 PRISM_OK, "%s", err);
    prism_host h = host_for(9, 0, false);
    prism_host_table_judge(&t, &h);
    cr_assert_eq(t.n, 2);
    EXPECT_USE(&t, &a, PRISM_HOST_USES, "first choice");
    EXPECT_USE(&t, &p, PRISM_HOST_SPARE, "comes first");
    prism_host_table_free(&t);
}

/* `prism cache verify`: the host and its device (the stand-in driver),
 * one line per entry, a summary; without a driver it says so. */
Test(cache_host, verify_prints_the_table) {
    publish(g_dir, "llama", "attention", "sm_90a", "nvrtc 13.0");
    publish(g_dir, "llama", "attention", "sm_80", "nvrtc 13.0");
    publish(g_dir, "llama", "attention", "compute_80", "nvrtc 13.0");
    const char *env = "PRISM_CACHE_DIR='%s' PRISM_CACHE_PATH= "
                      "LD_LIBRARY_PATH='%s' FAKE_CUDA_CC=%s PRISM_JIT=%s "
                      "FAKE_CUDA_DEVICES=%d '%s' cache verify";
    int rc = cli_tu_run(g_out, sizeof g_out, NULL, 0, env, g_dir,
                        PRISM_FAKE_CUDA_DIR, "9.0", "on", 1, PRISM_CLI_PATH);
    cr_assert_eq(rc, 0, "%s", g_out);
    cr_expect(strstr(g_out, "compute capability 9.0: plans take sm_90a, then "
                            "compute_80"),
              "%s", g_out);
    cr_expect(strstr(g_out, "sm_90a      yes: the device's first choice"), "%s",
              g_out);
    cr_expect(strstr(g_out, "sm_80       no: runs on 8.x; this device is 9.0"),
              "%s", g_out);
    cr_expect(strstr(g_out, "host summary: 1 of 3 entries used here (1 first "
                            "choice, 0 fallback); 1 spare; 1 never (1 other "
                            "devices)"),
              "%s", g_out);
    cr_expect(strstr(g_out, "verified 3 entries: all good"), "%s", g_out);
    /* 8.0, JIT off: the sm_80 cubin, and the PTX behind it */
    rc = cli_tu_run(g_out, sizeof g_out, NULL, 0, env, g_dir,
                    PRISM_FAKE_CUDA_DIR, "8.0", "off", 1, PRISM_CLI_PATH);
    cr_assert_eq(rc, 0, "%s", g_out);
    cr_expect(strstr(g_out, "no JIT (PRISM_JIT=off)"), "%s", g_out);
    cr_expect(strstr(g_out, "compute_80  spare: the sm_80 entry"), "%s", g_out);
    /* a driver without devices */
    rc = cli_tu_run(g_out, sizeof g_out, NULL, 0, env, g_dir,
                    PRISM_FAKE_CUDA_DIR, "9.0", "on", 0, PRISM_CLI_PATH);
    cr_assert_eq(rc, 0, "%s", g_out);
    cr_expect(strstr(g_out, "device: none (no CUDA device)"), "%s", g_out);
    cr_expect(strstr(g_out, "sm_90a      no device: runs on 9.0 only"), "%s",
              g_out);
    cr_expect(strstr(g_out, "3 entries; 3 would serve a device of their arch"),
              "%s", g_out);
}
