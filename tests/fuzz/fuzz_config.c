/*
 * fuzz_config.c - libFuzzer target for the YAML config loader.
 *
 * Feeds arbitrary bytes to prism_config_load_string() and checks the
 * loader's promises rather than only "no crash": a failure is one
 * non-empty line with a status of PRISM_ERR_CONFIG; a success is a config
 * that prism_config_validate() accepts, whose prism_config_to_yaml() text
 * loads back to the same YAML text.  ASan and UBSan catch the rest.
 *
 * Build and run (the library must be instrumented too, or libFuzzer sees
 * no coverage of the loader and ASan does not check it):
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DPRISM_FUZZ=ON \
 *         -DPRISM_BUILD_TESTS=OFF \
 *         -DPRISM_SANITIZE=fuzzer-no-link,address,undefined
 *   cmake --build build-fuzz --target fuzz_config
 *   mkdir -p /tmp/fuzz-config
 *   ./build-fuzz/fuzz_config -max_total_time=60 \
 *         -dict=tests/fuzz/config.dict /tmp/fuzz-config tests/fuzz/corpus
 * New inputs go to the first directory, so the seed corpus stays clean.
 */
#include "prism.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what, const char *detail) {
    fprintf(stderr, "fuzz_config: %s\n%s\n", what, detail ? detail : "");
    abort();
}

static void check_round_trip(const prism_config *cfg) {
    char err[2048] = "";
    prism_config again;
    if (prism_config_validate(cfg, err, sizeof err) != PRISM_OK)
        fail("a loaded config does not validate", err);
    char *yaml = prism_config_to_yaml(cfg);
    if (!yaml)
        return; /* out of memory */
    if (prism_config_load_string(yaml, strlen(yaml), cfg->source, &again, err,
                                 sizeof err) != PRISM_OK)
        fail(err, yaml);
    char *twice = prism_config_to_yaml(&again);
    if (twice && strcmp(yaml, twice))
        fail("to_yaml is not stable across a reload", twice);
    free(twice);
    free(yaml);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[2048] = "";
    prism_config cfg;
    prism_status st = prism_config_load_string(
        (const char *)data, size, "fuzz.yaml", &cfg, err, sizeof err);
    if (st == PRISM_OK) {
        check_round_trip(&cfg);
        return 0;
    }
    if (st != PRISM_ERR_CONFIG && st != PRISM_ERR_OUT_OF_MEMORY)
        fail("unexpected status", prism_status_name(st));
    if (!err[0] || strchr(err, '\n'))
        fail("the error is not one non-empty line", err);
    if (strncmp(err, "fuzz.yaml:", 10))
        fail("the error does not start with the name", err);
    return 0;
}
