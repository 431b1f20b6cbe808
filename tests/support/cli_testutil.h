/*
 * cli_testutil.h - running a command line (the prism binaries) from a
 * test and capturing what it printed: the one runner the CLI suites wrap
 * with their own environment and binary.
 */
#ifndef PRISM_CLI_TESTUTIL_H
#define PRISM_CLI_TESTUTIL_H

#include <stddef.h>

/* Runs the shell command fmt, ... with its stdout in out (NUL-terminated,
 * at most out_size - 1 bytes) and its stderr in err (the same), or, with
 * err NULL, in out too (2>&1).  Returns the exit code, -1 when the
 * command did not exit (a signal). */
int cli_tu_run(char *out, size_t out_size, char *err, size_t err_size,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
