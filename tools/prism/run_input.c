/*
 * run_input.c - real Q/K/V as the workload of `prism run --input PATH`.
 *
 * PATH is one .qkv file (reference/qkv_file.h) or a directory of them,
 * taken in name order.  Each file is one layer of a model run; its shapes
 * must be the config's, and the config is resolved for that layer
 * (prism_config_for_layer), so a config with per-layer settings is
 * measured on each layer with the settings that layer would get.
 */
#include "tools/prism/run_input.h"

#include "base/base.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_qkv(const char *name) {
    size_t n = strlen(name);
    return n > 4 && !strcmp(name + n - 4, ".qkv") && name[0] != '.';
}

/* Appends dir/name to the list. */
static int add(run_inputs *in, const char *dir, const char *name) {
    char **grown = realloc(in->paths, (size_t)(in->n + 1) * sizeof *grown);
    if (!grown)
        return cli_fail("out of memory listing the inputs");
    in->paths = grown;
    size_t len = strlen(name) + (dir ? strlen(dir) + 2 : 1);
    if (!(in->paths[in->n] = malloc(len)))
        return cli_fail("out of memory listing the inputs");
    if (dir)
        snprintf(in->paths[in->n], len, "%s/%s", dir, name);
    else
        snprintf(in->paths[in->n], len, "%s", name);
    in->n++;
    return CLI_OK;
}

int run_inputs_list(const char *path, run_inputs *in) {
    struct stat st;
    memset(in, 0, sizeof *in);
    if (stat(path, &st) != 0)
        return cli_fail("--input %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return add(in, NULL, path);
    DIR *d = opendir(path);
    if (!d)
        return cli_fail("--input %s: %s", path, strerror(errno));
    int rc = CLI_OK;
    for (struct dirent *e; rc == CLI_OK && (e = readdir(d)) != NULL;)
        if (is_qkv(e->d_name))
            rc = add(in, path, e->d_name);
    closedir(d);
    if (rc == CLI_OK && in->n == 0)
        return cli_fail("--input %s: no .qkv files in the directory (write "
                        "them with python3 -m eval.dump_qkv)", path);
    if (rc == CLI_OK)
        qsort(in->paths, (size_t)in->n, sizeof *in->paths, by_name);
    return rc;
}

void run_inputs_free(run_inputs *in) {
    for (int i = 0; i < in->n; i++)
        free(in->paths[i]);
    free(in->paths);
    memset(in, 0, sizeof *in);
}

int run_input_load(const char *path, const prism_config *cfg,
                   prism_qkv_file *file, prism_config *layer_cfg,
                   bool *dense) {
    char err[PRISM_ERRMSG_MAX];
    if (prism_qkv_load(path, file, err, sizeof err) != PRISM_OK)
        return cli_fail("%s", err);
    if (file->q_heads != cfg->q_heads || file->kv_heads != cfg->kv_heads ||
        file->head_dim != cfg->head_dim)
        return cli_fail("%s: shapes Hq=%d Hkv=%d D=%d differ from config "
                        "'%s' (Hq=%d Hkv=%d D=%d); use the model's config",
                        path, file->q_heads, file->kv_heads, file->head_dim,
                        cfg->name, cfg->q_heads, cfg->kv_heads, cfg->head_dim);
    if (file->rope_layout != cfg->rope_layout ||
        file->rope_theta != cfg->rope_theta)
        return cli_fail("%s: RoPE %s theta %g differs from config '%s' (%s "
                        "theta %g); use the model's config",
                        path, prism_rope_layout_name(file->rope_layout),
                        file->rope_theta, cfg->name,
                        prism_rope_layout_name(cfg->rope_layout),
                        cfg->rope_theta);
    if (prism_config_for_layer(cfg, file->layer, layer_cfg, dense) != PRISM_OK)
        return cli_fail("%s: config '%s' has no setting for layer %d", path,
                        cfg->name, file->layer);
    return CLI_OK;
}
