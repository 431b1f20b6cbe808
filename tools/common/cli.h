/*
 * cli.h - shared pieces of the prism command-line tool.
 *
 * Each subcommand lives in its own file as `int prism_cmd_NAME(argc, argv)`
 * with argv[0] the subcommand name, its options read by cli_parse
 * (cli_args.h).  Exit codes: 0 success, 1 failure, 2 usage error.  An
 * error is one line on stderr naming the file or key and the fix; `--help`
 * prints the subcommand's usage on stdout, exit 0.  Whatever a command
 * writes is checked: a lost write to stdout or to a file is a failure.
 */
#ifndef PRISM_CLI_H
#define PRISM_CLI_H

#include "prism.h"
#include "tools/common/cli_args.h"

#include <stdbool.h>
#include <stdio.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

int prism_cmd_check(int argc, char **argv);
int prism_cmd_gen(int argc, char **argv);
int prism_cmd_compile(int argc, char **argv);
int prism_cmd_cache(int argc, char **argv);
int prism_cmd_run(int argc, char **argv);
int prism_cmd_bench(int argc, char **argv);
int prism_cmd_autotune(int argc, char **argv);
/* `prism cache pack ...` (argv as given to prism_cmd_cache) and
 * `prism cache verify PACK` (cmd_pack.c). */
int prism_cmd_cache_pack(int argc, char **argv);
int prism_cmd_cache_verify_pack(const char *pack);

/* Prints "prism: MESSAGE" on stderr and returns CLI_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "prism CMD: MESSAGE (see 'prism CMD --help')" and returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* True when argv holds -h or --help before any "--". */
bool cli_wants_help(int argc, char **argv);
/* $PRISM_VERBOSE as a switch (base/parse.h); a value that is not one is
 * reported once on stderr and counts as off. */
bool cli_verbose(void);
/* Closes stdout and returns rc, or CLI_FAIL with one line on stderr when
 * anything written to stdout was lost (a full disk, a closed pipe, ...):
 * every executable's main returns through it. */
int cli_finish(int rc);
/* Checks a file written with stdio and closes it; on a write error prints
 * one line naming path and returns CLI_FAIL, else CLI_OK. */
int cli_close_file(FILE *f, const char *path);
/* Loads a config file; on failure prints the loader's line, returns false. */
bool cli_load_config(const char *path, prism_config *cfg);
/* Creates a context with the CLI's stderr logger; prints and returns NULL
 * on failure. */
prism_context *cli_context(void);
/* Prints the context's counters as one line on stderr when PRISM_STATS or
 * `verbose` asks for it; always available to `prism compile`. */
void cli_print_counters(const prism_context *ctx, FILE *out);
#endif
