/*
 * host_use.c - which kernel cache entries this host will use: the host's
 * facts (prism_host_probe) and a verdict per entry (host_use.h says what
 * decides it).
 *
 * The arch verdict follows the plans' choice (runtime/cuda/cuda_plan.c):
 * a plan tries the device's candidates in order and takes the first whose
 * kernels it gets.  With JIT on, that is always the first candidate (a
 * miss is compiled), so an entry of a later one is spare.  With JIT off,
 * the first candidate found wins: an entry of a later one serves while no
 * better image of the same config's kernel is found -- here, that is, for
 * a pack checked on its own, or in any layer of the cache in use.
 */
#include "runtime/dispatch/host_use.h"

#include "runtime/cpu/cpu_backend.h"
#include "compile/nvrtc_compile.h"
#include "cache/tar.h"
#include "base/arch.h"
#include "base/cuda_driver.h"
#include "base/parse.h"

#include <stdlib.h>
#include <string.h>

void prism_host_probe(int ordinal, prism_host *h) {
    memset(h, 0, sizeof *h);
    prism_strlcpy(h->prism_version, PRISM_VERSION_STRING,
                  sizeof h->prism_version);
    prism_strlcpy(h->compiler, prism_nvrtc_version(), sizeof h->compiler);
    h->ordinal = ordinal;
    const prism_driver *drv;
    char err[PRISM_ERRMSG_MAX];
    int count = 0;
    CUdevice dev;
    if (prism_driver_get(&drv, err, sizeof err) != PRISM_OK) {
        prism_strlcpy(h->no_device, err, sizeof h->no_device);
    } else if (drv->device_get_count(&count) != CUDA_SUCCESS || count == 0) {
        prism_strlcpy(h->no_device, "no CUDA device", sizeof h->no_device);
    } else if (ordinal < 0 || ordinal >= count ||
               drv->device_get(&dev, ordinal) != CUDA_SUCCESS) {
        snprintf(h->no_device, sizeof h->no_device,
                 "no CUDA device %d (this machine has %d)", ordinal, count);
    } else if (drv->device_get_attribute(
                   &h->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                   dev) != CUDA_SUCCESS ||
               drv->device_get_attribute(
                   &h->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                   dev) != CUDA_SUCCESS) {
        snprintf(h->no_device, sizeof h->no_device,
                 "CUDA device %d does not say its compute capability",
                 ordinal);
    } else {
        h->device = true;
        if (drv->device_get_name(h->device_name, (int)sizeof h->device_name,
                                 dev) != CUDA_SUCCESS)
            prism_strlcpy(h->device_name, "?", sizeof h->device_name);
        h->device_name[sizeof h->device_name - 1] = '\0';
        h->n_order = prism_arch_candidates(h->cc_major, h->cc_minor, h->order);
    }
    bool jit = true;
    char why[PRISM_ERRMSG_MAX];
    if (prism_env_bool("PRISM_JIT", true, &jit, why, sizeof why) != PRISM_OK)
        jit = true; /* as a context does: a bad value is ignored */
    if (!jit)
        prism_strlcpy(h->no_jit, "PRISM_JIT=off", sizeof h->no_jit);
    else if (prism_nvrtc_load(err, sizeof err) != PRISM_OK)
        prism_strlcpy(h->no_jit, err, sizeof h->no_jit);
    else
        h->jit = true;
    prism_cpu_jit_host(h->cpu_name, sizeof h->cpu_name, h->cpu_compiler,
                       sizeof h->cpu_compiler);
}

const char *prism_host_use_name(prism_host_use use) {
    static const char *const names[PRISM_HOST_USE_COUNT_] = {
        [PRISM_HOST_USES] = "yes",
        [PRISM_HOST_FALLBACK] = "fallback",
        [PRISM_HOST_SPARE] = "spare",
        [PRISM_HOST_NO_DEVICE] = "no device",
        [PRISM_HOST_OTHER_DEVICE] = "no",
        [PRISM_HOST_OTHER_COMPILER] = "no",
        [PRISM_HOST_OTHER_RELEASE] = "no",
        [PRISM_HOST_UNTRUSTED] = "untrusted",
        [PRISM_HOST_BAD] = "bad",
    };
    return (unsigned)use < PRISM_HOST_USE_COUNT_ ? names[use] : "?";
}

/* ---- collecting rows ----------------------------------------------------- */

typedef struct adder {
    prism_host_table *t;
    const char *compiler;
    const char *untrusted; /* the layer's reason, or NULL */
    bool oom;
} adder;

/* Header strings are printed to terminals: no control characters. */
static void printable(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

static void add_row(void *user, const prism_cache_inspected *e) {
    adder *A = user;
    prism_host_table *t = A->t;
    if (A->oom)
        return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        prism_host_row *v = realloc(t->rows, cap * sizeof *v);
        if (!v) {
            A->oom = true;
            return;
        }
        t->rows = v;
        t->cap = cap;
    }
    prism_host_row *r = &t->rows[t->n++];
    memset(r, 0, sizeof *r);
    r->entry = *e;
    prism_cache_meta *m = &r->entry.meta;
    if (!m->compiler[0] && A->compiler)
        prism_strlcpy(m->compiler, A->compiler, sizeof m->compiler);
    printable(m->config_name);
    printable(m->kernel_name);
    printable(m->arch);
    printable(m->compiler);
    printable(m->prism_version);
    if (A->untrusted && e->state == PRISM_CACHE_ENTRY_OK) {
        r->entry.state = PRISM_CACHE_ENTRY_UNTRUSTED;
        prism_strlcpy(r->entry.why, A->untrusted, sizeof r->entry.why);
    }
}

prism_status prism_host_table_add_dir(prism_host_table *t, const char *dir,
                                      const char *compiler, bool check_dir,
                                      char *err, size_t err_size) {
    char why[256], reason[300];
    adder A = {.t = t, .compiler = compiler};
    if (check_dir && !prism_cache_dir_trusted(dir, why, sizeof why)) {
        const char *w = strncmp(why, "untrusted: ", 11) ? why : why + 11;
        snprintf(reason, sizeof reason, "its directory is %s", w);
        A.untrusted = reason;
    }
    prism_status st = prism_cache_inspect_dir(dir, add_row, &A, err, err_size);
    if (st == PRISM_OK && A.oom)
        st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                          "out of memory listing %s", dir);
    return st;
}

static prism_status tar_member(void *user, const char *name, char type,
                               const unsigned char *data, size_t size,
                               char *err, size_t err_size) {
    adder *A = user;
    prism_cache_inspected e;
    if (type == '0' && prism_cache_inspect_image(name, data, size, &e))
        add_row(A, &e);
    if (A->oom)
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory");
    return PRISM_OK;
}

prism_status prism_host_table_add_tar(prism_host_table *t, const char *tar,
                                      const char *compiler, char *err,
                                      size_t err_size) {
    adder A = {.t = t, .compiler = compiler};
    return prism_tar_read(tar, tar_member, &A, err, err_size);
}

void prism_host_table_free(prism_host_table *t) {
    if (!t)
        return;
    free(t->rows);
    memset(t, 0, sizeof *t);
}

/* ---- verdicts -------------------------------------------------------------- */

/* Where arch stands among the device's candidates (-1: not there). */
static int rank_of(const prism_host *h, prism_arch arch) {
    for (int i = 0; i < h->n_order; i++)
        if (h->order[i] == arch)
            return i;
    return -1;
}

/* "8.x", "8.6 and later 8.x", "9.0 only", "8.0 and newer": the devices
 * that run arch, from base/arch.c's rule. */
static void devices_of(prism_arch arch, char *out, size_t size) {
    int major = 0, minor = 0;
    for (int M = 8; M <= 13 && !major; M++)
        for (int m = 0; m <= 9; m++)
            if (prism_arch_is_exact(arch, M, m) ||
                (prism_arch_is_ptx(arch) && prism_arch_runs_on(arch, M, m))) {
                major = M;
                minor = m;
                break;
            }
    if (prism_arch_is_ptx(arch))
        snprintf(out, size, "%d.%d and newer, through the driver's JIT",
                 major, minor);
    else if (!prism_arch_runs_on(arch, major, minor + 1))
        snprintf(out, size, "%d.%d only", major, minor);
    else if (minor == 0)
        snprintf(out, size, "%d.x", major);
    else
        snprintf(out, size, "%d.%d and later %d.x", major, minor, major);
}

/* The verdict from the entry alone (no other rows), and the arch's rank
 * among the device's candidates when that matters (else -1). */
static void judge_one(prism_host_row *r, const prism_host *h, int *rank) {
    const prism_cache_meta *m = &r->entry.meta;
    char devs[96];
    prism_arch arch;
    *rank = -1;
    if (r->entry.state != PRISM_CACHE_ENTRY_OK) {
        r->use = r->entry.state == PRISM_CACHE_ENTRY_UNTRUSTED
                     ? PRISM_HOST_UNTRUSTED
                     : PRISM_HOST_BAD;
        prism_strlcpy(r->why, r->entry.why, sizeof r->why);
        return;
    }
    if (m->prism_version[0] && strcmp(m->prism_version, h->prism_version)) {
        r->use = PRISM_HOST_OTHER_RELEASE;
        snprintf(r->why, sizeof r->why,
                 "keyed by Prism %s; this host looks up Prism %s keys",
                 m->prism_version, h->prism_version);
        return;
    }
    if (!strncmp(m->arch, "cpu-", 4)) {
        char want[sizeof m->arch] = "cpu-"; /* as cpu_jit.c names it */
        prism_strlcpy(want + 4, h->cpu_name, sizeof want - 4);
        if (!h->cpu_compiler[0] || strcmp(m->compiler, h->cpu_compiler)) {
            r->use = PRISM_HOST_OTHER_COMPILER;
            snprintf(r->why, sizeof r->why,
                     "CPU code from %s; this host's CPU plans use %s",
                     m->compiler[0] ? m->compiler : "an unrecorded compiler",
                     h->cpu_compiler[0] ? h->cpu_compiler : "no LLVM");
        } else if (strcmp(m->arch, want)) {
            r->use = PRISM_HOST_OTHER_DEVICE;
            snprintf(r->why, sizeof r->why,
                     "CPU code for %s; this host's CPU is %s", m->arch + 4,
                     h->cpu_name);
        } else {
            r->use = PRISM_HOST_USES;
            snprintf(r->why, sizeof r->why, "by CPU plans");
        }
        return;
    }
    if (prism_arch_parse(m->arch, &arch) != PRISM_OK) {
        r->use = PRISM_HOST_OTHER_RELEASE;
        snprintf(r->why, sizeof r->why, "arch '%s' is unknown to Prism %s",
                 m->arch, h->prism_version);
        return;
    }
    if (m->compiler[0] && strcmp(m->compiler, h->compiler)) {
        r->use = PRISM_HOST_OTHER_COMPILER;
        snprintf(r->why, sizeof r->why,
                 "made for %s; this host's keys name %s", m->compiler,
                 h->compiler);
        return;
    }
    const char *unrecorded =
        m->compiler[0] ? "" : " (if made for the same NVRTC: not recorded)";
    devices_of(arch, devs, sizeof devs);
    if (!h->device) {
        r->use = PRISM_HOST_NO_DEVICE;
        snprintf(r->why, sizeof r->why, "runs on %s%s", devs, unrecorded);
        return;
    }
    *rank = rank_of(h, arch);
    if (*rank < 0) {
        r->use = PRISM_HOST_OTHER_DEVICE;
        snprintf(r->why, sizeof r->why, "runs on %s; this device is %d.%d",
                 devs, h->cc_major, h->cc_minor);
    } else if (*rank == 0) {
        r->use = PRISM_HOST_USES;
        snprintf(r->why, sizeof r->why, "the device's first choice%s",
                 unrecorded);
    } else if (h->jit) {
        r->use = PRISM_HOST_SPARE;
        snprintf(r->why, sizeof r->why,
                 "with JIT on, this host takes (or compiles) %s instead",
                 prism_arch_name(h->order[0]));
    } else {
        r->use = PRISM_HOST_FALLBACK; /* unless a better one is found */
        snprintf(r->why, sizeof r->why,
                 "no %s of it is here, so %s serves%s",
                 prism_arch_name(h->order[0]), prism_arch_name(arch),
                 unrecorded);
    }
}

void prism_host_table_judge(prism_host_table *t, const prism_host *h) {
    int *rank = calloc(t->n ? t->n : 1, sizeof *rank);
    memset(t->counts, 0, sizeof t->counts);
    for (size_t i = 0; i < t->n; i++) {
        int r = -1;
        judge_one(&t->rows[i], h, &r);
        if (rank)
            rank[i] = r;
    }
    /* a fallback is spare when a better image of the same config's kernel
     * is here and usable */
    for (size_t i = 0; rank && i < t->n; i++) {
        prism_host_row *r = &t->rows[i];
        if (r->use != PRISM_HOST_FALLBACK)
            continue;
        int best = rank[i];
        size_t by = i;
        for (size_t j = 0; j < t->n; j++) {
            const prism_host_row *o = &t->rows[j];
            if (rank[j] >= 0 && rank[j] < best &&
                (o->use == PRISM_HOST_USES || o->use == PRISM_HOST_FALLBACK) &&
                !strcmp(o->entry.meta.config_name,
                        r->entry.meta.config_name) &&
                !strcmp(o->entry.meta.kernel_name, r->entry.meta.kernel_name)) {
                best = rank[j];
                by = j;
            }
        }
        if (by != i) {
            r->use = PRISM_HOST_SPARE;
            snprintf(r->why, sizeof r->why, "the %s entry %.12s comes first",
                     t->rows[by].entry.meta.arch, t->rows[by].entry.key_hex);
        }
    }
    for (size_t i = 0; i < t->n; i++)
        t->counts[t->rows[i].use]++;
    free(rank);
}
