/*
 * arch.c - the archs Prism compiles for, and which devices run each.
 *
 * Cubin compatibility follows CUDA's rule: a cubin for compute capability
 * X.Y runs on X.Z for Z >= Y, never on another major; an arch-specific
 * cubin (sm_90a) runs on X.Y alone.  PTX runs on any device at or above
 * its compute capability: the driver compiles it when the module loads.
 * The PTX image is compute_80 -- the oldest arch the mma.sync kernels
 * compile for, so it reaches every device a Prism kernel can run on (a
 * newer virtual arch would cut off the devices between 8.0 and it and buy
 * nothing: the kernels use no instruction newer than sm_80, and the
 * driver optimizes the PTX for the device it loads on).
 */
#include "base/arch.h"
#include "base/base.h"

#include <string.h>

typedef enum image_kind {
    CUBIN,          /* runs on later minors of its major too */
    CUBIN_SPECIFIC, /* an "a" arch: its own compute capability only */
    PTX
} image_kind;

typedef struct arch_row {
    const char *name;
    int major, minor;
    image_kind kind;
} arch_row;

static const arch_row arch_table[PRISM_ARCH_COUNT_] = {
    [PRISM_ARCH_SM80] = {"sm_80", 8, 0, CUBIN},
    [PRISM_ARCH_SM86] = {"sm_86", 8, 6, CUBIN},
    [PRISM_ARCH_SM89] = {"sm_89", 8, 9, CUBIN},
    [PRISM_ARCH_SM90A] = {"sm_90a", 9, 0, CUBIN_SPECIFIC},
    [PRISM_ARCH_SM100] = {"sm_100", 10, 0, CUBIN},
    [PRISM_ARCH_SM120] = {"sm_120", 12, 0, CUBIN},
    [PRISM_ARCH_PTX] = {"compute_80", 8, 0, PTX},
};

const char *prism_arch_name(prism_arch arch) {
    return (unsigned)arch < PRISM_ARCH_COUNT_ ? arch_table[arch].name : NULL;
}

prism_status prism_arch_parse(const char *name, prism_arch *out) {
    if (!name || !out)
        return PRISM_ERR_NULL_POINTER;
    for (int i = 0; i < PRISM_ARCH_COUNT_; i++) {
        if (strcmp(name, arch_table[i].name) == 0) {
            *out = (prism_arch)i;
            return PRISM_OK;
        }
    }
    return PRISM_ERR_UNSUPPORTED;
}

bool prism_arch_is_ptx(prism_arch arch) {
    return (unsigned)arch < PRISM_ARCH_COUNT_ && arch_table[arch].kind == PTX;
}

bool prism_arch_runs_on(prism_arch arch, int major, int minor) {
    if ((unsigned)arch >= PRISM_ARCH_COUNT_)
        return false;
    const arch_row *r = &arch_table[arch];
    switch (r->kind) {
    case CUBIN:
        return major == r->major && minor >= r->minor;
    case CUBIN_SPECIFIC:
        return major == r->major && minor == r->minor;
    case PTX:
        return major > r->major || (major == r->major && minor >= r->minor);
    }
    return false;
}

bool prism_arch_is_exact(prism_arch arch, int major, int minor) {
    return (unsigned)arch < PRISM_ARCH_COUNT_ &&
           arch_table[arch].kind != PTX && arch_table[arch].major == major &&
           arch_table[arch].minor == minor;
}

int prism_arch_candidates(int major, int minor,
                          prism_arch out[PRISM_ARCH_COUNT_]) {
    int n = 0;
    /* the exact cubin, then the family's by falling minor, then PTX */
    for (int pass = 0; pass < 3; pass++) {
        int best_minor = 1 << 30;
        for (;;) {
            int pick = -1;
            for (int i = 0; i < PRISM_ARCH_COUNT_; i++) {
                const arch_row *r = &arch_table[i];
                bool want = pass == 0   ? r->kind != PTX && r->minor == minor
                            : pass == 1 ? r->kind != PTX && r->minor < minor &&
                                              r->minor < best_minor
                                        : r->kind == PTX;
                if (want && prism_arch_runs_on((prism_arch)i, major, minor) &&
                    (pick < 0 || r->minor > arch_table[pick].minor))
                    pick = i;
            }
            if (pick < 0)
                break;
            out[n++] = (prism_arch)pick;
            if (pass != 1)
                break;
            best_minor = arch_table[pick].minor;
        }
    }
    return n;
}

const char *prism_arch_list_text(void) {
    return "sm_80, sm_86, sm_89, sm_90a, sm_100, sm_120, compute_80";
}

int prism_arch_with_ptx(const prism_arch *targets, int n, prism_arch *out) {
    int m = 0;
    bool ptx = false;
    for (int i = 0; i < n && i < PRISM_MAX_TARGETS; i++) {
        out[m++] = targets[i];
        ptx |= prism_arch_is_ptx(targets[i]);
    }
    if (!ptx)
        out[m++] = PRISM_ARCH_PTX;
    return m;
}
