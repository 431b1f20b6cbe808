/*
 * host_table.c - `prism cache verify`'s table of what this host will use.
 *
 *   this host: Prism 0.2.0 looking up nvrtc 13.0 keys; JIT on
 *   device 0: NVIDIA H100 80GB HBM3, compute capability 9.0: plans take
 *     sm_90a, then compute_80
 *   key           config            kernel        arch        this host
 *   3f2a9c0d11e4  llama-3.1-8b      attention     sm_90a      yes: ...
 *   host summary: 3 of 9 entries used here (3 first choice); 3 spare; ...
 */
#include "tools/prism/host_table.h"

#include "base/arch.h"

#include <stdlib.h>
#include <string.h>

static void print_host(const prism_host *h, FILE *out) {
    fprintf(out, "this host: Prism %s looking up %s keys; %s%s%s\n",
            h->prism_version, h->compiler,
            h->jit ? "JIT on (a miss compiles)" : "no JIT (",
            h->jit ? "" : h->no_jit, h->jit ? "" : "): a miss is an error");
    if (!h->device) {
        fprintf(out, "device: none (%s), so no arch is matched\n",
                h->no_device);
        return;
    }
    fprintf(out, "device %d: %s, compute capability %d.%d: plans take ",
            h->ordinal, h->device_name, h->cc_major, h->cc_minor);
    if (h->n_order == 0)
        fprintf(out, "nothing (Prism needs 8.0 or newer)");
    for (int i = 0; i < h->n_order; i++)
        fprintf(out, "%s%s", i == 0 ? "" : i + 1 < h->n_order ? ", " : ", then ",
                prism_arch_name(h->order[i]));
    fprintf(out, "\n");
}

/* ", N what" when N > 0, after the first part printed without a comma. */
static void part(FILE *out, bool *first, int n, const char *what) {
    if (n <= 0)
        return;
    fprintf(out, "%s%d %s", *first ? "" : ", ", n, what);
    *first = false;
}

static void print_summary(const prism_host_table *t, const prism_host *h,
                          FILE *out) {
    const int *c = t->counts;
    int used = c[PRISM_HOST_USES] + c[PRISM_HOST_FALLBACK];
    int no = c[PRISM_HOST_OTHER_DEVICE] + c[PRISM_HOST_OTHER_COMPILER] +
             c[PRISM_HOST_OTHER_RELEASE] + c[PRISM_HOST_UNTRUSTED] +
             c[PRISM_HOST_BAD];
    bool first = true;
    fprintf(out, "host summary: ");
    if (h->device)
        fprintf(out, "%d of %zu entries used here (%d first choice, %d "
                     "fallback); ",
                used, t->n, c[PRISM_HOST_USES], c[PRISM_HOST_FALLBACK]);
    else
        fprintf(out, "%zu entries; %d would serve a device of their arch "
                     "(none here to tell); ",
                t->n, c[PRISM_HOST_NO_DEVICE] + used);
    fprintf(out, "%d spare; %d never", c[PRISM_HOST_SPARE], no);
    if (no) {
        fprintf(out, " (");
        part(out, &first, c[PRISM_HOST_OTHER_DEVICE], "other devices");
        part(out, &first, c[PRISM_HOST_OTHER_COMPILER], "other compilers");
        part(out, &first, c[PRISM_HOST_OTHER_RELEASE], "other releases");
        part(out, &first, c[PRISM_HOST_UNTRUSTED], "untrusted");
        part(out, &first, c[PRISM_HOST_BAD], "bad");
        fprintf(out, ")");
    }
    fprintf(out, "\n");
}

/* By config, kernel, then arch in the order of the arch table. */
static int by_kernel(const void *pa, const void *pb) {
    const prism_cache_meta *a = &((const prism_host_row *)pa)->entry.meta;
    const prism_cache_meta *b = &((const prism_host_row *)pb)->entry.meta;
    int c = strcmp(a->config_name, b->config_name);
    if (!c)
        c = strcmp(a->kernel_name, b->kernel_name);
    if (!c) {
        prism_arch x = PRISM_ARCH_COUNT_, y = PRISM_ARCH_COUNT_;
        prism_arch_parse(a->arch, &x);
        prism_arch_parse(b->arch, &y);
        c = x != y ? (x < y ? -1 : 1) : strcmp(a->arch, b->arch);
    }
    return c ? c
             : strcmp(((const prism_host_row *)pa)->entry.key_hex,
                      ((const prism_host_row *)pb)->entry.key_hex);
}

void cli_print_host_table(prism_host_table *t, FILE *out) {
    prism_host h;
    prism_host_probe(0, &h);
    if (t->n)
        qsort(t->rows, t->n, sizeof *t->rows, by_kernel);
    prism_host_table_judge(t, &h);
    print_host(&h, out);
    if (t->n)
        fprintf(out, "%-12s  %-17s %-13s %-11s %s\n", "key", "config",
                "kernel", "arch", "this host");
    for (size_t i = 0; i < t->n; i++) {
        const prism_host_row *r = &t->rows[i];
        const prism_cache_meta *m = &r->entry.meta;
        bool ok = m->arch[0] != '\0'; /* the header was read */
        fprintf(out, "%.12s  %-17s %-13s %-11s %s: %s\n", r->entry.key_hex,
                ok ? m->config_name : "?", ok ? m->kernel_name : "?",
                ok ? m->arch : "?", prism_host_use_name(r->use), r->why);
    }
    print_summary(t, &h, out);
}
