/*
 * run_input.h - the real-input half of `prism run --input PATH`.
 */
#ifndef PRISM_RUN_INPUT_H
#define PRISM_RUN_INPUT_H

#include "reference/qkv_file.h"
#include "tools/common/cli.h"

typedef struct run_inputs {
    int n;
    char **paths; /* the files, in name order */
} run_inputs;

/* PATH is a .qkv file or a directory of them.  Prints and returns
 * CLI_FAIL when it is neither or the directory holds none. */
int run_inputs_list(const char *path, run_inputs *in);
void run_inputs_free(run_inputs *in);

/* Loads one file, checks its shapes and RoPE against cfg and resolves the
 * config of its layer into layer_cfg (*dense: the layer skips Prism).
 * Prints and returns CLI_FAIL on failure; prism_qkv_free(file) either way. */
int run_input_load(const char *path, const prism_config *cfg,
                   prism_qkv_file *file, prism_config *layer_cfg, bool *dense);

#endif
