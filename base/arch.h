/*
 * arch.h - what each prism_arch is and which devices run it.
 *
 * One table (arch.c) says, for every arch the generator targets, its name,
 * the compute capability it is compiled for and what kind of image it is,
 * so that the plan's choice for a device, the config loader's messages
 * and the list of images a config keeps all follow from the same rows.
 */
#ifndef PRISM_ARCH_H
#define PRISM_ARCH_H

#include "prism.h"

#include <stdbool.h>

/* Whether arch is PTX (the driver compiles it at load) rather than a
 * cubin. */
bool prism_arch_is_ptx(prism_arch arch);

/* Whether a kernel image of arch runs on a device of compute capability
 * major.minor: a cubin on its own compute capability and, unless it is
 * arch-specific (sm_90a), on later minors of the same major; PTX on any
 * compute capability at or above its own. */
bool prism_arch_runs_on(prism_arch arch, int major, int minor);

/* Whether arch is a cubin built for exactly compute capability
 * major.minor. */
bool prism_arch_is_exact(prism_arch arch, int major, int minor);

/* The archs whose images run on major.minor, best first: the cubin built
 * for exactly that compute capability, then the family's cubins (same
 * major, earlier minors, newest first), then the PTX.  Returns their count
 * (0: nothing runs there, e.g. before 8.0). */
int prism_arch_candidates(int major, int minor,
                          prism_arch out[PRISM_ARCH_COUNT_]);

/* "sm_80, sm_86, ..., compute_80": every name, for messages. */
const char *prism_arch_list_text(void);

/* The images a config keeps: its targets, then the PTX unless a target
 * is the PTX already.  out holds PRISM_MAX_TARGETS + 1; returns the
 * count. */
int prism_arch_with_ptx(const prism_arch *targets, int n, prism_arch *out);

#endif
