/*
 * cmd_autotune.c - `prism autotune` (and the prism-autotune executable):
 * find the fastest legal variant of every kernel of a config on this
 * machine's GPU(s) and record it in the tuning database, which plans then
 * use automatically.
 *
 *   prism autotune CONFIG [--seq N...] [--density P...] [--budget SECONDS]
 *                         [--devices all|LIST] [--resume]
 *
 * The search itself is autotune/tune_run.c; this file parses arguments,
 * shows progress (a bar redrawn in place on a terminal, one line per
 * measured candidate otherwise, both on stderr) and prints the closing
 * tables on stdout: one per GPU model, each followed by a line for every
 * kernel and bucket its GPUs disagreed on.
 */
#include "autotune/autotune.h"
#include "tools/common/cli.h"
#include "base/parse.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char autotune_usage[] =
    "usage: prism autotune CONFIG [--seq N...] [--density P...]\n"
    "                      [--budget SECONDS] [--devices all|LIST] [--resume]\n"
    "\n"
    "Times every legal combination of each kernel's tunables on the GPU and\n"
    "records the fastest whose output matches the default's, per sequence-\n"
    "length bucket (powers of two, 4K..256K; a length uses the bucket >= it).\n"
    "Plans created afterwards on this GPU use those kernels automatically;\n"
    "a config's own `tuning:` overrides still win.\n"
    "\n"
    "  --seq N...        lengths to tune, one per bucket (K/M suffixes, "
    "powers of\n"
    "                    two: 32K = 32768; default: every bucket "
    "4096..262144)\n"
    "  --density P...    attention mask densities in (0, 1] (default 0.1 0.2)\n"
    "  --budget SECONDS  stop starting new work after this long (default 600)\n"
    "  --devices all|LIST  GPUs to tune: all, or ordinals such as 0,1\n"
    "                    (default 0); see below\n"
    "  --resume          keep the candidates already timed in the database\n"
    "\n"
    "Several GPUs are grouped by model (name, SM count, driver and NVRTC):\n"
    "every model is tuned at once, one thread per GPU, and gets its own\n"
    "entries.  The GPUs of one model split the candidates; then the 3\n"
    "fastest of each kernel and bucket are timed again on each of them, and\n"
    "each one's recorded time is the median over those GPUs (any other\n"
    "candidate whose single time is no slower than the best median is\n"
    "timed on each GPU too).  So the entry's winner is the candidate with\n"
    "the best median over the model's GPUs.  Where the GPUs' own fastest\n"
    "differ, a line names the GPUs, their winners and times.\n"
    "\n"
    "The database is $PRISM_TUNE_DIR, else tuning/ in the kernel cache\n"
    "directory; $PRISM_TUNE=off makes plans ignore it.\n";

typedef struct autotune_args {
    const char *config;
    prism_autotune_options o;
} autotune_args;

static int opt_devices(const char *cmd, const cli_option *o,
                       const char *text, bool trailing) {
    (void)trailing;
    prism_autotune_options *t = o->dest;
    if (!strcmp(text, "all")) {
        t->all_devices = true;
        return CLI_OK;
    }
    const char *p = text;
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 1023 || (*end && *end != ','))
            return cli_usage(cmd,
                             "--devices '%s' is not 'all' or a "
                             "list of GPU ordinals such as 0,1",
                             text);
        if (t->n_devices >= PRISM_TUNE_MAX_DEVICES)
            return cli_usage(cmd, "--devices lists more than %d GPUs",
                             PRISM_TUNE_MAX_DEVICES);
        t->devices[t->n_devices++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return t->n_devices ? CLI_OK : cli_usage(cmd, "--devices needs a value");
}

/* --seq N...: lengths, each once; a word after them that is no length is
 * CONFIG (trailing). */
static int opt_seqs(const char *cmd, const cli_option *o, const char *text,
                    bool trailing) {
    prism_autotune_options *t = o->dest;
    int64_t v;
    if (!prism_parse_count(text, 0, INT64_MAX, &v))
        return trailing ? CLI_SKIP
                        : cli_usage(cmd, "--seq '%s': expected a length such "
                                         "as 4096 or 32K (K = 1024)",
                                    text);
    if (v < 1 || v > (1LL << 30) || t->n_seqs >= PRISM_TUNE_MAX_SEQS)
        return cli_usage(cmd, "--seq takes up to %d lengths in [1, 2^30]",
                         PRISM_TUNE_MAX_SEQS);
    for (int i = 0; i < t->n_seqs; i++)
        if (t->seqs[i] == v)
            return CLI_OK;
    t->seqs[t->n_seqs++] = (int)v;
    return CLI_OK;
}

static int opt_budget(const char *cmd, const cli_option *o, const char *text,
                      bool trailing) {
    (void)trailing;
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end || !(v > 0))
        return cli_usage(cmd,
                         "--%s needs a positive number of seconds, got '%s'",
                         o->name, text);
    *(double *)o->dest = v;
    return CLI_OK;
}

static int parse_autotune(int argc, char **argv, autotune_args *a) {
    memset(a, 0, sizeof *a);
    a->o.budget_s = 600;
    cli_reals density = {a->o.densities, 0, PRISM_TUNE_MAX_SHAPES};
    const cli_option opts[] = {
        CLI_OPT_CUSTOM("seq", &a->o, opt_seqs, true, true),
        CLI_OPT_CUSTOM("density", &density, cli_opt_density, true, true),
        CLI_OPT_CUSTOM("budget", &a->o.budget_s, opt_budget, false, false),
        CLI_OPT_CUSTOM("devices", &a->o, opt_devices, false, false),
        CLI_OPT_FLAG("resume", 0, &a->o.resume),
    };
    cli_spec spec = {"autotune", opts, PRISM_ARRAY_LEN(opts), &a->config, 1};
    int n_pos;
    int rc = cli_parse(&spec, argc, argv, &n_pos);
    a->o.n_densities = density.n;
    if (rc != CLI_OK)
        return rc;
    if (!a->config)
        return cli_usage("autotune", "need a CONFIG file");
    return CLI_OK;
}

typedef struct progress_state {
    bool tty;
    bool open; /* a bar is drawn and its line not yet ended */
} progress_state;

static void format_eta(double s, char *buf, size_t size) {
    long t = s > 0 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

static void on_progress(void *user, const prism_autotune_progress *p) {
    progress_state *s = user;
    char eta[32];
    format_eta(p->eta_s, eta, sizeof eta);
    if (s->tty) {
        char bar[21];
        int filled = p->total ? 20 * p->done / p->total : 20;
        for (int i = 0; i < 20; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[20] = '\0';
        fprintf(stderr,
                "\r[%s] %d/%d  %s @%d  best %.4f ms (default %.4f)  "
                "ETA %s\033[K",
                bar, p->done, p->total, p->kernel, p->bucket, p->best_ms,
                p->default_ms, eta);
        s->open = p->done < p->total;
        if (!s->open)
            fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    if (p->retime && p->status == PRISM_TUNE_OK)
        fprintf(stderr,
                "autotune: [%d/%d] %s @%d %s: %.4f ms on GPU %d (finalist "
                "timed on every GPU) ETA %s\n",
                p->done, p->total, p->kernel, p->bucket, p->values, p->ms,
                p->device, eta);
    else if (p->status == PRISM_TUNE_OK)
        fprintf(stderr,
                "autotune: [%d/%d] %s @%d %s: %.4f ms (best %.4f, "
                "default %.4f) ETA %s\n",
                p->done, p->total, p->kernel, p->bucket, p->values, p->ms,
                p->best_ms, p->default_ms, eta);
    else
        fprintf(stderr, "autotune: [%d/%d] %s @%d %s: %s: %s\n", p->done,
                p->total, p->kernel, p->bucket, p->values,
                prism_tune_status_name(p->status), p->reason ? p->reason : "");
}

static void print_table(const prism_autotune_model *m) {
    printf("%-16s %7s %11s %10s %8s  %-26s %s\n", "kernel", "bucket",
           "default ms", "tuned ms", "speedup", "candidates", "best");
    for (int i = 0; i < m->n_rows; i++) {
        const prism_autotune_row *w = &m->rows[i];
        char counts[64], def[16] = "-", tuned[16] = "-", speed[16] = "-";
        snprintf(counts, sizeof counts, "%d ok %d pruned %d other", w->timed,
                 w->pruned, w->failed + w->mismatched + w->untimed);
        if (w->default_ms > 0)
            snprintf(def, sizeof def, "%.4f", w->default_ms);
        if (w->tuned_ms > 0)
            snprintf(tuned, sizeof tuned, "%.4f", w->tuned_ms);
        if (w->default_ms > 0 && w->tuned_ms > 0)
            snprintf(speed, sizeof speed, "%.2fx", w->default_ms / w->tuned_ms);
        printf("%-16s %7d %11s %10s %8s  %-26s %s\n", w->kernel, w->bucket, def,
               tuned, speed, counts, w->best[0] ? w->best : "-");
    }
}

/* "0,1,3" */
static void ordinals_text(const int *ordinals, int n, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < size; i++) {
        int k = snprintf(buf + used, size - used, "%s%d", i ? "," : "",
                         ordinals[i]);
        used += k > 0 ? (size_t)k : 0;
    }
}

/* One line per (kernel, bucket) whose GPUs' own fastest finalists differ:
 * each GPU's pick and time, what was recorded and what it costs each GPU
 * that would have picked another. */
static void print_disagreements(const prism_autotune_model *m) {
    for (int i = 0; i < m->n_rows; i++) {
        const prism_autotune_row *w = &m->rows[i];
        if (!w->disagree)
            continue;
        int ords[PRISM_TUNE_MAX_DEVICES];
        for (int k = 0; k < w->n_picks; k++)
            ords[k] = w->picks[k].ordinal;
        char gpus[80];
        ordinals_text(ords, w->n_picks, gpus, sizeof gpus);
        printf("GPUs %s disagree on %s @%d:", gpus, w->kernel, w->bucket);
        for (int k = 0; k < w->n_picks; k++)
            printf("%s GPU %d fastest %s (%.4f ms)", k ? "," : "",
                   w->picks[k].ordinal, w->picks[k].best,
                   w->picks[k].best_ms);
        printf("; recorded %s, the best median over the GPUs (%.4f ms)",
               w->best, w->tuned_ms);
        for (int k = 0; k < w->n_picks; k++) {
            const prism_autotune_pick *p = &w->picks[k];
            if (p->best_ms > 0 && p->chosen_ms > 0 && strcmp(p->best, w->best))
                printf(", GPU %d runs it %.2fx slower than its fastest",
                       p->ordinal, p->chosen_ms / p->best_ms);
        }
        printf("\n");
    }
}

static void print_model(const prism_autotune_model *m) {
    char gpus[80];
    ordinals_text(m->ordinals, m->n_devices, gpus, sizeof gpus);
    printf("%s (%d SMs, %s) x%d, GPU%s %s: %d candidates compiled, %d "
           "pruned, %d illegal\n",
           m->device.name, m->device.sm_count, prism_arch_name(m->arch),
           m->n_devices, m->n_devices > 1 ? "s" : "", gpus, m->compiled,
           m->pruned_at_compile, m->illegal);
    print_table(m);
    print_disagreements(m);
    if (m->spills_from_frame > 0)
        printf("%d candidates had no ptxas spill report: their stack "
               "frame, read from the cubin, stood for spills\n",
               m->spills_from_frame);
    if (m->spills_unknown > 0)
        printf("%d candidates could not be checked for spills (no ptxas "
               "report, no readable cubin): timed unchecked\n",
               m->spills_unknown);
}

int prism_cmd_autotune(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(autotune_usage, stdout);
        return CLI_OK;
    }
    autotune_args a;
    int rc = parse_autotune(argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    prism_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return cli_fail("out of memory");
    if (!cli_load_config(a.config, cfg)) {
        free(cfg);
        return CLI_FAIL;
    }
    prism_context *ctx = cli_context();
    if (!ctx) {
        free(cfg);
        return CLI_FAIL;
    }
    progress_state ps = {.tty = isatty(fileno(stderr)) != 0};
    a.o.cfg = cfg;
    a.o.progress = on_progress;
    a.o.progress_user = &ps;
    prism_autotune_report rep;
    prism_status st = prism_autotune_run(ctx, &a.o, &rep);
    if (ps.open) /* the budget ran out with the bar mid-way */
        fputc('\n', stderr);
    if (st != PRISM_OK) {
        rc = cli_fail("%s", prism_context_last_error(ctx));
    } else {
        printf("prism autotune: %s on %d GPU%s of %d model%s, %.1f s\n",
               cfg->name, rep.n_devices, rep.n_devices > 1 ? "s" : "",
               rep.n_models, rep.n_models > 1 ? "s" : "", rep.elapsed_s);
        for (int m = 0; m < rep.n_models; m++) {
            printf("\n");
            print_model(&rep.models[m]);
        }
        printf("\n");
        printf("tuning database: %s\n", rep.tune_dir);
        if (rep.out_of_budget)
            printf("the budget ran out before every candidate was timed; "
                   "run again with --resume to continue\n");
        rc = CLI_OK;
    }
    prism_autotune_report_free(&rep);
    prism_context_destroy(ctx);
    free(cfg);
    return rc;
}
