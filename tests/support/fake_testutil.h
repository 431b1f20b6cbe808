/*
 * fake_testutil.h - for tests that run CUDA plans on the stand-in driver
 * of tests/fake_cuda: skip cleanly where it is not the driver loaded.
 */
#ifndef PRISM_FAKE_TESTUTIL_H
#define PRISM_FAKE_TESTUTIL_H

/* Skips the calling test unless the loaded CUDA driver is the stand-in
 * (ctest puts tests/fake_cuda on LD_LIBRARY_PATH); a real driver or none
 * skips with the reason. */
void skip_unless_fake_driver(void);

#endif
