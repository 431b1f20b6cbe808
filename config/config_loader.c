/*
 * config_loader.c - how a config load reports an error.
 *
 * Both halves of the loader, the document layer (config.c) and the schema
 * walker (config_walk.c), point their errors at a line and column the same
 * way; these two functions are that way, and the only code they share, so
 * the document layer can call the walker without the walker calling back.
 */
#include "config/config_loader.h"

#include <stdarg.h>
#include <stdio.h>

typedef prism_loader loader;
typedef prism_position position;

prism_position prism_loader_mark(const yaml_mark_t *m) {
    position p = {(int)m->line + 1, (int)m->column + 1};
    return p;
}

bool prism_loader_fail(loader *L, position p, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    L->status = prism_errorf(L->err, L->err_size, PRISM_ERR_CONFIG,
                             "%s:%d:%d: %s", L->file, p.line, p.column, what);
    return false;
}
