/*
 * plan.c - what every backend shares of a plan: its last-error slot.
 *
 * The backends (runtime/cuda, runtime/cpu) report failures through
 * prism_plan_fail; the dispatcher above them (runtime/dispatch/plan.c)
 * does the same.  Keeping it here lets both depend on this layer only.
 */
#include "runtime/plan.h"

#include <stdarg.h>
#include <stdio.h>

prism_status prism_plan_fail(prism_plan *plan, prism_status status,
                             const char *fmt, ...) {
    char msg[PRISM_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (plan) {
        prism_strlcpy(plan->last_error, msg, sizeof plan->last_error);
        prism_context_fail(plan->ctx, status, msg);
    }
    return status;
}
