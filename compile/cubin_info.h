/*
 * cubin_info.h - a kernel's resource use, read from its cubin.
 *
 * ptxas reports registers, stack frame, spills and shared memory in the
 * program log when asked (-v), but some NVRTC builds return an empty log
 * for a successful compile.  The cubin itself records most of the same
 * numbers, so they can be read back from it whatever the log says, and
 * from cubins that were cached or packed without a log.
 */
#ifndef PRISM_CUBIN_INFO_H
#define PRISM_CUBIN_INFO_H

#include <stdbool.h>
#include <stddef.h>

/* Each field is the largest over the cubin's functions, or -1 when the
 * cubin does not say. */
typedef struct prism_cubin_stats {
    int registers;    /* per thread (EIATTR_REGCOUNT)                      */
    int frame_bytes;  /* stack frame, local memory (EIATTR_FRAME_SIZE)     */
    int stack_bytes;  /* stack with calls (EIATTR_MAX_STACK_SIZE)          */
    int shared_bytes; /* static shared memory of an entry point, as ptxas
                         counts it: without the 1 KB sm_90 and newer cubins
                         reserve at the start of each kernel's section     */
} prism_cubin_stats;

/* Reads the statistics of an ELF cubin of `size` bytes.  Never trusts the
 * image: anything out of bounds or malformed leaves the fields it concerns
 * at -1.  Returns whether the registers were found (the image is a cubin
 * whose attributes could be read).  Thread-safe; allocates nothing. */
bool prism_cubin_read_stats(const void *image, size_t size,
                            prism_cubin_stats *out);

/* Whether image starts like an ELF file (a cubin) rather than PTX text. */
bool prism_cubin_is_elf(const void *image, size_t size);

#endif
