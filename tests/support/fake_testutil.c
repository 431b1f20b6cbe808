/*
 * fake_testutil.c - the one check that a test talks to tests/fake_cuda,
 * and the shipped configs by name, shared by the suites that drive CUDA
 * plans without a GPU.
 */
#include "fake_testutil.h"

#include "base/cuda_driver.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

void skip_unless_fake_driver(void) {
    const prism_driver *drv;
    char err[256], name[64] = "";
    if (prism_driver_get(&drv, err, sizeof err) != PRISM_OK)
        cr_skip_test("no CUDA driver: run through ctest, which puts "
                     "tests/fake_cuda on LD_LIBRARY_PATH");
    drv->device_get_name(name, sizeof name, 0);
    if (!strstr(name, "Fake"))
        cr_skip_test("the driver is a real one (%s)", name);
}

prism_config shipped_config(const char *name) {
    char path[512], err[1024];
    snprintf(path, sizeof path, "%s/configs/%s", PRISM_SOURCE_DIR, name);
    prism_config cfg;
    cr_assert_eq(prism_config_load_file(path, &cfg, err, sizeof err),
                 PRISM_OK, "%s", err);
    return cfg;
}
