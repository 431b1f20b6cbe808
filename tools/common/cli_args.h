/*
 * cli_args.h - the one argument parser of the prism tools.
 *
 * Every command describes its options in a table of cli_option and hands
 * argv to cli_parse, which walks it with getopt_long, so every command
 * accepts the same forms (--seq 8k, --seq=8k, -o DIR, -oDIR, options
 * before or after the positional arguments, -- to end the options) and
 * reports the same mistakes the same way: an unknown option, a missing
 * value, a value that is not a number, and a single-value option given
 * twice (instead of the last one silently winning) are usage errors that
 * name the option.  Numbers go through base/parse.h: K, M, G are binary
 * (8k = 8192 tokens, 100K = 102400 bytes).
 */
#ifndef PRISM_CLI_ARGS_H
#define PRISM_CLI_ARGS_H

#include "prism.h"

#include <stdbool.h>
#include <stdint.h>

/* A custom value that does not belong to a greedy option (see below): the
 * word is left to the positional arguments. */
enum { CLI_SKIP = -1 };

typedef enum cli_kind {
    CLI_FLAG,   /* bool *: set to true; may be repeated                   */
    CLI_STRING, /* const char **                                          */
    CLI_COUNT,  /* long long *: a count in [min, max] (prism_parse_count) */
    CLI_BYTES,  /* long long *: a size in [min, max] (prism_parse_bytes)  */
    CLI_CUSTOM, /* parse(): lists, enumerations, anything else            */
} cli_kind;

typedef struct cli_option cli_option;

/* Reads `value` for option o of command cmd into o->dest.  Returns CLI_OK,
 * or prints one usage line and returns CLI_USAGE.  With `trailing` (a
 * further word after a greedy option) a word that is not a value of the
 * option returns CLI_SKIP without printing. */
typedef int (*cli_parse_fn)(const char *cmd, const cli_option *o,
                            const char *value, bool trailing);

struct cli_option {
    const char *name; /* long name: "seq" for --seq                     */
    char short_name;  /* 'o' for -o; 0 for none                         */
    cli_kind kind;
    void *dest;
    int64_t min, max;   /* CLI_COUNT, CLI_BYTES                         */
    cli_parse_fn parse; /* CLI_CUSTOM                                   */
    bool repeat;        /* CLI_CUSTOM: may be given more than once      */
    bool greedy;        /* CLI_CUSTOM: also takes the words after its
                           value while parse accepts them (--seq 4K 8K) */
};

/* Table rows, one per kind (short names only where given). */
#define CLI_OPT_FLAG(n, s, d)                                                  \
    { .name = (n), .short_name = (s), .kind = CLI_FLAG, .dest = (d) }
#define CLI_OPT_STRING(n, s, d)                                                \
    { .name = (n), .short_name = (s), .kind = CLI_STRING, .dest = (d) }
#define CLI_OPT_COUNT(n, d, lo, hi)                                            \
    { .name = (n), .kind = CLI_COUNT, .dest = (d), .min = (lo), .max = (hi) }
#define CLI_OPT_BYTES(n, d, lo, hi)                                            \
    { .name = (n), .kind = CLI_BYTES, .dest = (d), .min = (lo), .max = (hi) }
#define CLI_OPT_CUSTOM(n, d, fn, rep, greed)                                   \
    {                                                                          \
        .name = (n), .kind = CLI_CUSTOM, .dest = (d), .parse = (fn),           \
        .repeat = (rep), .greedy = (greed)                                     \
    }

/* What cli_parse needs besides argv: the command's name for messages
 * ("run", "cache prune"), its options, and room for its positional
 * arguments (more than max_pos is a usage error). */
typedef struct cli_spec {
    const char *cmd;
    const cli_option *opts;
    int n_opts;
    const char **pos;
    int max_pos;
} cli_spec;

/* Parses argv[1..argc) (argv[0] is the command's name).  Fills the
 * options' destinations and spec->pos, with their count in *n_pos.
 * Returns CLI_OK or, after printing one usage line, CLI_USAGE.  -h and
 * --help are the callers' business (cli_wants_help) and are not listed. */
int cli_parse(const cli_spec *spec, int argc, char **argv, int *n_pos);

/* --arch A...: appends to a cli_archs, once per distinct arch. */
typedef struct cli_archs {
    prism_arch v[PRISM_MAX_TARGETS];
    int n;
} cli_archs;
int cli_opt_arch(const char *cmd, const cli_option *o, const char *value,
                 bool trailing);

/* A list of numbers in (0, 1] (mask densities), up to its capacity. */
typedef struct cli_reals {
    double *v;
    int n, cap;
} cli_reals;
int cli_opt_density(const char *cmd, const cli_option *o, const char *value,
                    bool trailing);

#endif
