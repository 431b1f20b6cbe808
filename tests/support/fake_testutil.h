/*
 * fake_testutil.h - for tests that run CUDA plans on the stand-in driver
 * of tests/fake_cuda: skip cleanly where it is not the driver loaded, and
 * the shipped configs they make plans of.
 */
#ifndef PRISM_FAKE_TESTUTIL_H
#define PRISM_FAKE_TESTUTIL_H

#include "prism.h"

/* Skips the calling test unless the loaded CUDA driver is the stand-in
 * (ctest puts tests/fake_cuda on LD_LIBRARY_PATH); a real driver or none
 * skips with the reason. */
void skip_unless_fake_driver(void);

/* configs/NAME of the source tree, loaded; the calling test fails with
 * the loader's message if it does not load. */
prism_config shipped_config(const char *name);

#endif
