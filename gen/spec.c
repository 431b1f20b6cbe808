/*
 * spec.c - config -> kernel spec.
 *
 * Every shape constant of a kernel is fixed here, at generation time, so
 * the CUDA compiler sees literals: loops over the head dim unroll and
 * index arithmetic folds.  Tunables come first (their defaults, or the
 * config's `tuning:` overrides), then the kernel's own shape constants
 * (its row in kernels.c), then its launch shape (gen/launch.c); the
 * constant table is spec_constants.c.  The config is trusted: it was
 * validated when it was loaded or where it entered the library (the
 * public entry points), so building a spec never validates it again.
 */
#include "gen/spec.h"

#include "base/base.h"

#include <ctype.h>
#include <string.h>

/* The config's override of one tunable, if any. */
static const prism_tuning_override *find_override(const prism_config *cfg,
                                                  const char *kernel,
                                                  const char *param) {
    for (int i = 0; i < cfg->n_tuning && i < PRISM_MAX_TUNING; i++)
        if (!strcmp(cfg->tuning[i].kernel, kernel) &&
            !strcmp(cfg->tuning[i].param, param))
            return &cfg->tuning[i];
    return NULL;
}

static prism_status add_tunables(prism_kernel_spec *spec, char *err,
                                 size_t n) {
    const prism_kernel_def *def = spec->def;
    for (int i = 0; i < PRISM_MAX_TUNABLES && def->tunables[i].name; i++) {
        const prism_tunable *t = &def->tunables[i];
        const prism_tuning_override *o =
            find_override(spec->cfg, def->name, t->name);
        int64_t value = o ? o->value : t->default_value;
        char allowed[512];
        if (o && !prism_tunables_check(def->name, t->name, value,
                                       allowed, sizeof allowed))
            return prism_errorf(err, n, PRISM_ERR_CONFIG,
                                "%s:%d:%d: tuning %s.%s = %lld is not legal; "
                                "%s",
                                spec->cfg->source, o->line, o->column,
                                def->name, t->name, (long long)value, allowed);
        char upper[48];
        size_t k = 0;
        for (; t->name[k] && k + 1 < sizeof upper; k++)
            upper[k] = (char)toupper((unsigned char)t->name[k]);
        upper[k] = '\0';
        if (prism_spec_add_int(spec, upper, value, t->doc) != PRISM_OK)
            return prism_errorf(err, n, PRISM_ERR_GENERATE,
                                "kernel spec for '%s' is full", def->name);
        spec->constants[spec->n_constants - 1].group = PRISM_CONST_TUNABLE;
    }
    return PRISM_OK;
}

bool prism_spec_paged(prism_kernel_spec *spec) {
    if (!spec || !spec->def->paged_entry)
        return false;
    memset(spec->entry_points, 0, sizeof spec->entry_points);
    spec->entry_points[2] = spec->def->paged_entry;
    spec->paged = true;
    spec->name = spec->def->paged_name;
    return true;
}

prism_status prism_spec_build(const prism_config *cfg, int index,
                              prism_arch arch, prism_kernel_spec *spec,
                              char *err, size_t err_size) {
    if (!cfg || !spec)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_spec_build: cfg and spec must not be NULL");
    const prism_kernel_def *def = prism_kernel_def_at(index);
    if (!def)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "kernel index %d out of range [0, %d)", index,
                            prism_kernel_count());
    if (!prism_arch_name(arch))
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "unknown arch value %d", (int)arch);
    memset(spec, 0, sizeof *spec);
    spec->def = def;
    spec->cfg = cfg;
    spec->arch = arch;
    memcpy(spec->templates, def->templates, sizeof spec->templates);
    memcpy(spec->entry_points, def->entry_points, sizeof spec->entry_points);
    spec->name = def->name;
    prism_status st = add_tunables(spec, err, err_size);
    if (st == PRISM_OK)
        st = def->add_constants(spec, err, err_size);
    if (st == PRISM_OK)
        st = def->launch(spec, err, err_size);
    return st;
}
