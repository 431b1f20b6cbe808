/*
 * parse.h - the one place numbers, sizes and switches written by a user
 * are read, whether they come from a command-line flag or an environment
 * variable, so that `8k` or `OFF` means the same thing everywhere.
 *
 * Suffixes are binary for every quantity: K = 1024, M = 1024^2,
 * G = 1024^3, in either case.  A token count of `8k` is 8192 tokens (the
 * "32K context" of model cards), a size of `100K` is 102400 bytes.  Sizes
 * also take a trailing B, KB or KiB (all the same: 100K = 100KB = 100KiB).
 * No sign, no fraction, no spaces, nothing after the suffix.
 *
 * Switches are case-insensitive: on/1/true/yes and off/0/false/no.
 *
 * These functions only parse: they print nothing and never read the
 * environment themselves except in the prism_env_* helpers, which write a
 * one-line message naming the variable for the caller to log.
 */
#ifndef PRISM_PARSE_H
#define PRISM_PARSE_H

#include "base/base.h"

#include <stdbool.h>
#include <stdint.h>

/* Reads a count such as "4096", "8k" or "1M" into *out when the text is
 * one and lies in [min, max]; false otherwise (*out untouched). */
bool prism_parse_count(const char *text, int64_t min, int64_t max,
                       int64_t *out);

/* Reads a size in bytes such as "500M", "100KiB" or "2GB" into *out when
 * the text is one and lies in [min, max]; false otherwise. */
bool prism_parse_bytes(const char *text, int64_t min, int64_t max,
                       int64_t *out);

/* Reads a switch (on/off, 1/0, true/false, yes/no, any case) into *out;
 * false when the text is none of them. */
bool prism_parse_bool(const char *text, bool *out);

/* The words prism_parse_bool accepts, for messages. */
#define PRISM_BOOL_WORDS "on/off, 1/0, true/false or yes/no"

/* $name as a switch: unset or empty gives `fallback`.  Any other value
 * that is not a switch also gives `fallback` and returns
 * PRISM_ERR_INVALID_ARGUMENT with a message naming the variable in err. */
prism_status prism_env_bool(const char *name, bool fallback, bool *out,
                            char *err, size_t err_size);

/* $name as a size in bytes of at least 1 (prism_parse_bytes): unset or
 * empty gives `fallback`; anything else that is not such a size gives
 * `fallback` and PRISM_ERR_INVALID_ARGUMENT with a message in err. */
prism_status prism_env_bytes(const char *name, int64_t fallback, int64_t *out,
                             char *err, size_t err_size);

/* Checks that a path given by a user fits PRISM_PATH_MAX (with its NUL);
 * `what` names it in the message ("config", "PRISM_TUNE_DIR", ...).
 * Paths are never cut short: a longer one is PRISM_ERR_INVALID_ARGUMENT. */
prism_status prism_check_path_length(const char *path, const char *what,
                                     char *err, size_t err_size);

#endif
