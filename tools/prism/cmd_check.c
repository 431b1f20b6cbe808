/*
 * cmd_check.c - `prism check CONFIG`: validate a config, print it resolved.
 *
 * The quickest way to see what a config means: it runs the same strict
 * loader as every other command and prints the config back with every
 * default filled in (prism_config_to_yaml), so a user can see, for example,
 * which band widths a head dim of 64 gets.  The printed text is itself a
 * valid config.  Exit 0 when valid, 1 with one line on stderr when not,
 * 2 on a usage error.
 */
#include "tools/common/cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fputs(
        "usage: prism check [-q] CONFIG\n"
        "\n"
        "Validates CONFIG, a YAML kernel config (schema: configs/README.md),\n"
        "and prints it resolved, with every default filled in, on stdout.\n"
        "The output is itself a valid config.\n"
        "\n"
        "options:\n"
        "  -q, --quiet  print nothing; only the exit status tells\n"
        "  -h, --help   print this help\n"
        "\n"
        "exit status: 0 valid, 1 invalid (one line on stderr: "
        "FILE:LINE:COLUMN: what\nis wrong; what is allowed), 2 usage "
        "error.\n",
        out);
}

int prism_cmd_check(int argc, char **argv) {
    const char *path = NULL;
    bool quiet = false;
    prism_config cfg;
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    const cli_option opts[] = {CLI_OPT_FLAG("quiet", 'q', &quiet)};
    cli_spec spec = {"check", opts, 1, &path, 1};
    int n_pos;
    int rc = cli_parse(&spec, argc, argv, &n_pos);
    if (rc != CLI_OK)
        return rc;
    if (!path)
        return cli_usage("check", "missing CONFIG, a YAML kernel config");
    if (!cli_load_config(path, &cfg))
        return CLI_FAIL;
    if (quiet)
        return CLI_OK;
    char *yaml = prism_config_to_yaml(&cfg);
    if (!yaml)
        return cli_fail("%s: out of memory printing the config", path);
    fputs(yaml, stdout);
    free(yaml);
    return CLI_OK;
}
