/*
 * fuzz_cubin.c - libFuzzer target for the cubin statistics reader.
 *
 * Cubins reach the reader from cache files and kernel packs, so it must
 * take any bytes: it may find nothing, never read outside the image, and
 * whatever it finds is in range (ASan and UBSan catch the rest).  The
 * input is copied into a buffer of exactly its size so that any read past
 * the end is caught.  Seed it with real cubins, e.g. the payloads of a
 * kernel pack, or those `prism compile` leaves in a cache directory:
 *   cmake --build build-fuzz --target fuzz_cubin
 *   ./build-fuzz/fuzz_cubin -max_total_time=60 /tmp/fuzz-cubin SEEDS
 */
#include "compile/cubin_info.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    prism_cubin_stats s;
    bool ok = prism_cubin_read_stats(copy, size, &s);
    if (s.registers < -1 || s.frame_bytes < -1 || s.stack_bytes < -1 ||
        s.shared_bytes < -1 || ok != (s.registers >= 0))
        abort();
    free(copy);
    return 0;
}
