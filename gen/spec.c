/*
 * spec.c - config -> kernel spec.
 *
 * Every shape constant of a kernel is fixed here, at generation time, so
 * the CUDA compiler sees literals: loops over the head dim unroll and
 * index arithmetic folds.  Tunables come first (their defaults, or the
 * config's `tuning:` overrides), then the kernel's own shape constants.
 */
#include "gen/spec.h"

#include "base/base.h"

#include <ctype.h>
#include <string.h>

static prism_constant *next_slot(prism_kernel_spec *spec, const char *name,
                                 const char *comment) {
    if (spec->n_constants >= PRISM_MAX_CONSTANTS)
        return NULL;
    prism_constant *c = &spec->constants[spec->n_constants++];
    memset(c, 0, sizeof *c);
    prism_strlcpy(c->name, name, sizeof c->name);
    prism_strlcpy(c->comment, comment ? comment : "", sizeof c->comment);
    return c;
}

prism_status prism_spec_add_int(prism_kernel_spec *spec, const char *name,
                                int64_t value, const char *comment) {
    prism_constant *c = next_slot(spec, name, comment);
    if (!c)
        return PRISM_ERR_GENERATE;
    c->kind = PRISM_CONST_INT;
    c->i = value;
    return PRISM_OK;
}

prism_status prism_spec_add_float(prism_kernel_spec *spec, const char *name,
                                  double value, const char *comment) {
    prism_constant *c = next_slot(spec, name, comment);
    if (!c)
        return PRISM_ERR_GENERATE;
    c->kind = PRISM_CONST_FLOAT;
    c->f = value;
    return PRISM_OK;
}

prism_status prism_spec_add_bool(prism_kernel_spec *spec, const char *name,
                                 bool value, const char *comment) {
    prism_constant *c = next_slot(spec, name, comment);
    if (!c)
        return PRISM_ERR_GENERATE;
    c->kind = PRISM_CONST_BOOL;
    c->i = value ? 1 : 0;
    return PRISM_OK;
}

int64_t prism_spec_int(const prism_kernel_spec *spec, const char *name,
                       int64_t fallback) {
    for (int i = 0; i < spec->n_constants; i++)
        if (!strcmp(spec->constants[i].name, name) &&
            spec->constants[i].kind != PRISM_CONST_FLOAT)
            return spec->constants[i].i;
    return fallback;
}

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
        if (o && !prism_kernel_check_tunable(def->name, t->name, value,
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
        spec->constants[spec->n_constants - 1].tunable = true;
    }
    return PRISM_OK;
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
    prism_status st = prism_config_validate(cfg, err, err_size);
    if (st != PRISM_OK)
        return st;
    memset(spec, 0, sizeof *spec);
    spec->def = def;
    spec->cfg = cfg;
    spec->arch = arch;
    spec->templates[0] = def->template_file;
    st = add_tunables(spec, err, err_size);
    if (st != PRISM_OK)
        return st;
    return def->add_constants(spec, err, err_size);
}
