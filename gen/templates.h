/*
 * templates.h - the CUDA templates of gen/templates/, embedded at build time by
 * gen/embed_templates.cmake.
 */
#ifndef PRISM_TEMPLATES_H
#define PRISM_TEMPLATES_H

#include <stddef.h>

typedef struct prism_template {
    const char *name; /* file name, e.g. "pool_stats.cu" */
    const char *text;
    size_t size;
} prism_template;

extern const prism_template prism_templates[];
extern const int prism_template_count;

/* NULL when no template has that name. */
const prism_template *prism_template_find(const char *name);

#endif
