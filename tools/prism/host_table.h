/*
 * host_table.h - the table `prism cache verify` prints after its checks:
 * per entry of the cache (or of a pack) whether this host will use it and
 * why not, then one summary line (runtime/dispatch/host_use.h decides).
 */
#ifndef PRISM_HOST_TABLE_H
#define PRISM_HOST_TABLE_H

#include "runtime/dispatch/host_use.h"

#include <stdio.h>

/* Probes this host (device 0), judges t for it and prints the host, the
 * rows and the summary to out. */
void cli_print_host_table(prism_host_table *t, FILE *out);

#endif
