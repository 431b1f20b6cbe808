/*
 * cli_args.c - see cli_args.h.
 *
 * getopt_long runs with "-:" at the head of its option string: "-" hands
 * back every positional argument in place (so a greedy option can claim
 * the words after it, and POSIXLY_CORRECT cannot change how a command
 * line reads), ":" reports a missing value apart from an unknown option.
 * opterr is off: the messages are ours, in the CLI's one-line style.
 */
#include "tools/common/cli_args.h"

#include "tools/common/cli.h"
#include "base/arch.h"
#include "base/parse.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define CLI_MAX_OPTIONS 32
#define CLI_LONG_BASE 256 /* getopt's code of option i is CLI_LONG_BASE + i */

static int take_value(const char *cmd, const cli_option *o, const char *value,
                      bool trailing) {
    int64_t v;
    switch (o->kind) {
    case CLI_FLAG:
        *(bool *)o->dest = true;
        return CLI_OK;
    case CLI_STRING:
        *(const char **)o->dest = value;
        return CLI_OK;
    case CLI_COUNT:
        if (prism_parse_count(value, o->min, o->max, &v)) {
            *(long long *)o->dest = v;
            return CLI_OK;
        }
        return cli_usage(cmd,
                         "--%s '%s': expected a whole number in [%lld, %lld], "
                         "such as 4096 or 8k (K = 1024, M = 1024^2)",
                         o->name, value, (long long)o->min, (long long)o->max);
    case CLI_BYTES:
        if (prism_parse_bytes(value, o->min, o->max, &v)) {
            *(long long *)o->dest = v;
            return CLI_OK;
        }
        return cli_usage(cmd,
                         "--%s '%s': expected a size in bytes in [%lld, "
                         "%lld], such as 500M (K = 1024, M = 1024^2, "
                         "G = 1024^3)",
                         o->name, value, (long long)o->min, (long long)o->max);
    case CLI_CUSTOM:
        return o->parse(cmd, o, value, trailing);
    }
    return CLI_USAGE;
}

/* The option getopt_long returned as code c, or NULL. */
static const cli_option *find(const cli_spec *s, int c) {
    if (c >= CLI_LONG_BASE && c < CLI_LONG_BASE + s->n_opts)
        return &s->opts[c - CLI_LONG_BASE];
    for (int i = 0; c > 0 && i < s->n_opts; i++)
        if (s->opts[i].short_name == c)
            return &s->opts[i];
    return NULL;
}

static int add_positional(const cli_spec *s, const char *arg, int *n_pos) {
    if (*n_pos >= s->max_pos)
        return s->max_pos == 0
                   ? cli_usage(s->cmd, "takes no arguments, got '%s'", arg)
                   : cli_usage(s->cmd, "unexpected argument '%s'", arg);
    s->pos[(*n_pos)++] = arg;
    return CLI_OK;
}

/* A word that is not an option: the greedy option before it may take it. */
static int positional(const cli_spec *s, const char *arg,
                      const cli_option **greedy, int *n_pos) {
    if (*greedy) {
        int rc = take_value(s->cmd, *greedy, arg, true);
        if (rc != CLI_SKIP)
            return rc;
        *greedy = NULL;
    }
    return add_positional(s, arg, n_pos);
}

/* getopt_long's '?': an unknown option, or a value given to a flag. */
static int bad_option(const cli_spec *s, int argc, char **argv) {
    const cli_option *o = find(s, optopt);
    if (o)
        return cli_usage(s->cmd, "--%s takes no value", o->name);
    if (optopt > 0 && optopt < CLI_LONG_BASE)
        return cli_usage(s->cmd, "unknown option '-%c'", optopt);
    const char *text = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
    return cli_usage(s->cmd, "unknown option '%s'", text);
}

/* Builds getopt_long's tables from the spec; false if it has too many. */
static bool build_tables(const cli_spec *s, struct option *longs,
                         char *shorts) {
    if (s->n_opts > CLI_MAX_OPTIONS)
        return false;
    char *p = shorts;
    *p++ = '-';
    *p++ = ':';
    for (int i = 0; i < s->n_opts; i++) {
        const cli_option *o = &s->opts[i];
        bool arg = o->kind != CLI_FLAG;
        longs[i] = (struct option){o->name, arg ? required_argument
                                                : no_argument,
                                   NULL, CLI_LONG_BASE + i};
        if (o->short_name) {
            *p++ = o->short_name;
            if (arg)
                *p++ = ':';
        }
    }
    *p = '\0';
    longs[s->n_opts] = (struct option){NULL, 0, NULL, 0};
    return true;
}

int cli_parse(const cli_spec *s, int argc, char **argv, int *n_pos) {
    struct option longs[CLI_MAX_OPTIONS + 1];
    char shorts[3 + 2 * CLI_MAX_OPTIONS];
    const char *seen[CLI_MAX_OPTIONS] = {0};
    const cli_option *greedy = NULL;
    *n_pos = 0;
    if (!build_tables(s, longs, shorts))
        return cli_fail("%s: too many options for the parser", s->cmd);
    optind = 0; /* glibc: start afresh, also after an earlier parse */
    opterr = 0;
    int c, rc = CLI_OK;
    while (rc == CLI_OK &&
           (c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        if (c == 1) {
            rc = positional(s, optarg, &greedy, n_pos);
            continue;
        }
        greedy = NULL;
        const cli_option *o = find(s, c == ':' ? optopt : c);
        if (c == ':')
            return cli_usage(s->cmd, "--%s needs a value",
                             o ? o->name : "option");
        if (c == '?' || !o)
            return bad_option(s, argc, argv);
        int i = (int)(o - s->opts);
        if (o->kind != CLI_FLAG && !o->repeat && seen[i])
            return cli_usage(s->cmd,
                             "--%s given twice ('%s', then '%s'); give it "
                             "once",
                             o->name, seen[i], optarg);
        seen[i] = optarg ? optarg : "";
        rc = take_value(s->cmd, o, optarg, false);
        if (o->greedy)
            greedy = o;
    }
    for (; rc == CLI_OK && optind > 0 && optind < argc; optind++)
        rc = add_positional(s, argv[optind], n_pos); /* after "--" */
    return rc;
}

int cli_opt_arch(const char *cmd, const cli_option *o, const char *value,
                 bool trailing) {
    cli_archs *a = o->dest;
    prism_arch arch;
    if (prism_arch_parse(value, &arch) != PRISM_OK)
        return trailing ? CLI_SKIP
                        : cli_usage(cmd, "--%s '%s': unknown arch; use one of %s",
                                    o->name, value, prism_arch_list_text());
    for (int i = 0; i < a->n; i++)
        if (a->v[i] == arch)
            return CLI_OK; /* --arch sm_80 --arch sm_80: once */
    if (a->n >= PRISM_MAX_TARGETS)
        return cli_usage(cmd, "--%s: at most %d archs", o->name,
                         PRISM_MAX_TARGETS);
    a->v[a->n++] = arch;
    return CLI_OK;
}

int cli_opt_density(const char *cmd, const cli_option *o, const char *value,
                    bool trailing) {
    cli_reals *r = o->dest;
    char *end = NULL;
    double v = strtod(value, &end);
    bool number = end != value && !*end;
    if (trailing && !number)
        return CLI_SKIP;
    if (!number || !(v > 0 && v <= 1))
        return cli_usage(cmd, "--%s '%s': expected a density in (0, 1]",
                         o->name, value);
    if (r->n >= r->cap)
        return cli_usage(cmd, "--%s: at most %d values", o->name, r->cap);
    r->v[r->n++] = v;
    return CLI_OK;
}
