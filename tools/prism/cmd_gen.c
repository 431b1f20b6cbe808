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
    prism_arch archs[PRISM_MAX_TARGETS];
    int n_archs;
} gen_args;

static int parse_args(int argc, char **argv, gen_args *a) {
    memset(a, 0, sizeof *a);
    a->out_dir = "prism-gen";
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool has_value = i + 1 < argc;
        if ((!strcmp(arg, "-o") || !strcmp(arg, "--output")) && has_value) {
            a->out_dir = argv[++i];
        } else if (!strcmp(arg, "--arch") && has_value) {
            if (a->n_archs >= PRISM_MAX_TARGETS)
                return cli_usage("gen", "too many --arch options");
            if (prism_arch_parse(argv[++i], &a->archs[a->n_archs]) != PRISM_OK)
                return cli_usage("gen", "unknown arch '%s'; use sm_80, sm_86, "
                                        "sm_89 or sm_90a", argv[i]);
            a->n_archs++;
        } else if (!strcmp(arg, "--kernel") && has_value) {
            a->kernel = argv[++i];
        } else if (!strcmp(arg, "--dump") && has_value) {
            a->dump = argv[++i];
            if (strcmp(a->dump, "spec") && strcmp(a->dump, "source"))
                return cli_usage("gen", "--dump takes 'spec' or 'source'");
        } else if (arg[0] == '-') {
            return cli_usage("gen", "unknown or incomplete option '%s'", arg);
        } else if (!a->config) {
            a->config = arg;
        } else {
            return cli_usage("gen", "unexpected argument '%s'", arg);
        }
    }
    if (!a->config)
        return cli_usage("gen", "missing CONFIG");
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
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        return cli_fail("cannot write %s: %s", path, strerror(errno));
    return CLI_OK;
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
        char path[PRISM_PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s.%s.%s.cu", a->out_dir, cfg->name,
                 spec.def->name, prism_arch_name(arch));
        rc = write_file(path, source);
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
    if (a.n_archs == 0) {
        a.n_archs = cfg.n_targets;
        memcpy(a.archs, cfg.targets, sizeof cfg.targets);
    }
    if (!a.dump && mkdir(a.out_dir, 0777) != 0 && errno != EEXIST)
        return cli_fail("cannot create output directory %s: %s", a.out_dir,
                        strerror(errno));
    for (int t = 0; t < a.n_archs; t++)
        for (int k = 0; k < prism_kernel_count(); k++) {
            if (a.kernel && strcmp(a.kernel, prism_kernel_name(k)))
                continue;
            if ((rc = gen_one(&a, &cfg, k, a.archs[t])) != CLI_OK)
                return rc;
        }
    return CLI_OK;
}
