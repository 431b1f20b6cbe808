/*
 * params.h - a config's run-time part, for the code that needs the two
 * views of it side by side.
 *
 * A launch's method settings and head counts (prism_params, prism.h)
 * start as a config's values and may be replaced per call.  Code that
 * takes a whole config -- the reference (reference/), the tools -- runs
 * with a launch's values by applying them to a copy of the config.
 */
#ifndef PRISM_CONFIG_PARAMS_H
#define PRISM_CONFIG_PARAMS_H

#include "prism.h"

/* Writes the run-time fields of params into cfg (softmax_scale has no
 * config field: the reference's attention takes it as an option). */
void prism_config_apply_params(prism_config *cfg, const prism_params *params);

#endif
