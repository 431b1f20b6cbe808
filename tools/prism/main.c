/*
 * main.c - the `prism` command: a flat table of subcommands.
 *
 * Each subcommand is one file of tools/prism/; this file only dispatches,
 * and checks on the way out that what went to stdout was written.
 * The helpers every subcommand shares are in tools/common/cli_common.c.
 */
#include "tools/common/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"check", prism_cmd_check, "validate a config and print it resolved"},
    {"gen", prism_cmd_gen, "write the generated CUDA sources"},
    {"compile", prism_cmd_compile, "compile every kernel through the cache"},
    {"cache", prism_cmd_cache, "inspect and maintain the kernel cache"},
    {"run", prism_cmd_run, "run the Prism pipeline on a workload"},
    {"bench", prism_cmd_bench, "time the GPU kernels of a config"},
    {"autotune", prism_cmd_autotune, "find the fastest kernel variants for "
                                     "this GPU"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: prism COMMAND [ARGS...]\n\n"
                 "Prism %s: spectral-aware block-sparse attention kernel "
                 "compiler.\n\ncommands:\n",
            prism_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'prism COMMAND --help' describes one command.\n"
                 "'prism --version' prints the version.\n");
}

static int dispatch(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("prism %s\n", prism_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "prism: unknown command '%s' (see 'prism --help')\n",
            argv[1]);
    return CLI_USAGE;
}

int main(int argc, char **argv) { return cli_finish(dispatch(argc, argv)); }
