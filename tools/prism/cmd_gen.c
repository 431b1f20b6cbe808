/*
 * cmd_gen.c - `prism gen`: show the generator's stages.
 *
 *   prism gen CONFIG [-o DIR] [--arch A]... [--kernel NAME] [--dump spec|source]
 *
 * Without --dump it writes one .cu file per (kernel, arch) into DIR and
 * prints the paths.  --dump prints a stage on stdout instead: `spec` (the
 * constants the generator fixed) or `source` (the CUDA text NVRTC gets).
 */
#include "tools/common/cli.h"
#include "gen/spec.h"

#include "base/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char gen_usage[] =
    "usage: prism gen CONFIG [-o DIR] [--arch A]... [--kernel NAME]\n"
    "                 [--dump spec|source]\n\n"
    "Generates the CUDA source of every kernel of CONFIG for each arch\n"
    "(default: the config's targets) and writes DIR/CONFIG.KERNEL.ARCH.cu\n"
    "(DIR defaults to ./prism-gen), printing each path.\n"
    "  --dump spec    print the kernel specs (generation constants) instead\n"
    "  --dump source  print the generated sources instead of writing files\n";

typedef struct gen_args {
    const char *config, *out_dir, *kernel, *dump;
    cli_archs archs;
} gen_args;

static int parse_args(int argc, char **argv, gen_args *a) {
    memset(a, 0, sizeof *a);
    a->out_dir = "prism-gen";
    const cli_option opts[] = {
        CLI_OPT_STRING("output", 'o', &a->out_dir),
        CLI_OPT_CUSTOM("arch", &a->archs, cli_opt_arch, true, false),
        CLI_OPT_STRING("kernel", 0, &a->kernel),
        CLI_OPT_STRING("dump", 0, &a->dump),
    };
    cli_spec spec = {"gen", opts, PRISM_ARRAY_LEN(opts), &a->config, 1};
    int n_pos;
    int rc = cli_parse(&spec, argc, argv, &n_pos);
    if (rc != CLI_OK)
        return rc;
    if (!a->config)
        return cli_usage("gen", "missing CONFIG");
    if (a->dump && strcmp(a->dump, "spec") && strcmp(a->dump, "source"))
        return cli_usage("gen", "--dump takes 'spec' or 'source'");
    if (a->kernel && !prism_kernel_def_find(a->kernel))
        return cli_usage("gen", "unknown kernel '%s'", a->kernel);
    return CLI_OK;
}

static void print_spec(const prism_kernel_spec *spec) {
    printf("kernel %s for %s (template", spec->def->name, prism_arch_name(spec->arch));
    for (int i = 0; i < PRISM_MAX_TEMPLATES && spec->templates[i]; i++)
        printf("%s%s", i ? " + " : " ", spec->templates[i]);
    printf(")\n");
    for (int i = 0; i < spec->n_constants; i++) {
        const prism_constant *c = &spec->constants[i];
        if (c->kind == PRISM_CONST_FLOAT)
            printf("  %-16s = %.9g\n", c->name, c->f);
        else if (c->kind == PRISM_CONST_BOOL)
            printf("  %-16s = %s\n", c->name, c->i ? "true" : "false");
        else
            printf("  %-16s = %lld\n", c->name, (long long)c->i);
    }
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f)
        return cli_fail("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    return cli_close_file(f, path);
}

static int gen_one(const gen_args *a, const prism_config *cfg, int k,
                   prism_arch arch) {
    char err[PRISM_ERRMSG_MAX];
    prism_kernel_spec spec;
    if (prism_spec_build(cfg, k, arch, &spec, err, sizeof err) != PRISM_OK)
        return cli_fail("%s", err);
    if (a->dump && !strcmp(a->dump, "spec")) {
        print_spec(&spec);
        return CLI_OK;
    }
    char *source = NULL;
    if (prism_emit_source(&spec, &source, err, sizeof err) != PRISM_OK)
        return cli_fail("%s", err);
    int rc = CLI_OK;
    if (a->dump) {
        fputs(source, stdout);
    } else {
        char path[PRISM_PATH_MAX];
        int n = snprintf(path, sizeof path, "%s/%s.%s.%s.cu", a->out_dir,
                         cfg->name, spec.def->name, prism_arch_name(arch));
        rc = n >= 0 && (size_t)n < sizeof path
                 ? write_file(path, source)
                 : cli_fail("output path %s/%s... is longer than %d bytes; "
                            "choose a shorter -o DIR",
                            a->out_dir, cfg->name, PRISM_PATH_MAX - 1);
        if (rc == CLI_OK)
            printf("%s\n", path);
    }
    free(source);
    return rc;
}

int prism_cmd_gen(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(gen_usage, stdout);
        return CLI_OK;
    }
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    prism_config cfg;
    if (!cli_load_config(a.config, &cfg))
        return CLI_FAIL;
    if (a.archs.n == 0) {
        a.archs.n = cfg.n_targets;
        memcpy(a.archs.v, cfg.targets, sizeof cfg.targets);
    }
    if (!a.dump && mkdir(a.out_dir, 0777) != 0 && errno != EEXIST)
        return cli_fail("cannot create output directory %s: %s", a.out_dir,
                        strerror(errno));
    for (int t = 0; t < a.archs.n; t++)
        for (int k = 0; k < prism_kernel_count(); k++) {
            if (a.kernel && strcmp(a.kernel, prism_kernel_name(k)))
                continue;
            if ((rc = gen_one(&a, &cfg, k, a.archs.v[t])) != CLI_OK)
                return rc;
        }
    return CLI_OK;
}
