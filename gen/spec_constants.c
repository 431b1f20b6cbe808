/*
 * spec_constants.c - the constant table of a kernel spec.
 *
 * The constants are the whole interface between a config and a template:
 * spec.c adds the tunables, each kernel's row in kernels.c its shape
 * constants, and the emitter writes them out as literals.  These few
 * functions are all that code shares, kept apart so that the kernel rows
 * (which add constants) and the spec builder (which walks the rows) each
 * depend on them and not on each other.
 */
#include "gen/spec.h"

#include "base/base.h"

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

prism_status prism_spec_add_launch(prism_kernel_spec *spec, const char *name,
                                   int64_t value, const char *comment) {
    prism_status st = prism_spec_add_int(spec, name, value, comment);
    if (st == PRISM_OK)
        spec->constants[spec->n_constants - 1].group = PRISM_CONST_LAUNCH;
    return st;
}

int64_t prism_spec_int(const prism_kernel_spec *spec, const char *name,
                       int64_t fallback) {
    for (int i = 0; i < spec->n_constants; i++)
        if (!strcmp(spec->constants[i].name, name) &&
            spec->constants[i].kind != PRISM_CONST_FLOAT)
            return spec->constants[i].i;
    return fallback;
}
