/*
 * autotune_main.c - the prism-autotune executable: `prism autotune` under
 * its own name, for hosts that ship the tuner apart from the full CLI.
 * It links the same command code; main.c is compiled into it with its
 * main() renamed (see CMakeLists.txt) for the helpers every command uses.
 */
#include "tools/common/cli.h"

#include <string.h>

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("prism-autotune %s\n", prism_version());
        return CLI_OK;
    }
    return prism_cmd_autotune(argc, argv);
}
