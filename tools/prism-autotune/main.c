/*
 * main.c - the prism-autotune executable: `prism autotune` under its own
 * name, for hosts that ship the tuner apart from the full CLI.  It links
 * the same command code (tools/common), and checks on the way out, as
 * prism does, that what went to stdout was written.
 */
#include "tools/common/cli.h"

#include <string.h>

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("prism-autotune %s\n", prism_version());
        return cli_finish(CLI_OK);
    }
    return cli_finish(prism_cmd_autotune(argc, argv));
}
