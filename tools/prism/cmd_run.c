/*
 * cmd_run.c - `prism run CONFIG --device cpu --seq N`: the whole Prism
 * pipeline on a synthetic workload, measured against dense attention.
 *
 * This is the command a reader runs first: it shows what the method buys
 * (density: the share of block-causal work a sparse kernel does) and what
 * it costs (recall: the share of each query's dense attention mass the
 * selection keeps; error: relative L2 error of the output), for Prism, Prism
 * without calibration and the mean-pooling baseline, side by side.  Inputs
 * are built in fp32 by the reference workloads, rounded to the config's
 * dtype, and every method reads the same rounded tensors.  Outputs are kept
 * in fp32 so the error column measures the selection, not output rounding.
 * With --device gpu the generated kernels run too (tools/prism/run_gpu.c) and
 * their selection and output are scored the same way, with GPU times.
 * With --device cpu the "prism" and "dense" rows run on the LLVM CPU
 * backend (tools/prism/run_cpu.c) unless --backend reference asks for the plain
 * reference, the oracle, which every row then uses (as --device gpu does).
 * With --input the workload is real: q, k, v of model layers read from .qkv
 * files (tools/prism/run_input.c), each measured with its layer's config.
 */
#include "tools/common/cli.h"
#include "base/base.h"
#include "base/threadpool.h"
#include "reference/reference.h"
#include "tools/prism/run_cpu.h"
#include "tools/prism/run_gpu.h"
#include "tools/prism/run_input.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum { N_METHODS = PRISM_REF_METHOD_COUNT_, GPU_SLOT = N_METHODS };

static void usage(FILE *out) {
    fputs(
        "usage: prism run CONFIG --device cpu|gpu --seq N [options]\n"
        "       prism run CONFIG --device cpu|gpu --input PATH [options]\n"
        "\n"
        "Builds a synthetic workload with the shapes of CONFIG (a YAML kernel\n"
        "config), runs Prism, Prism without calibration, the mean-pooling\n"
        "baseline and dense causal attention on it with the CPU reference,\n"
        "and prints per method: density (selected / block-causal blocks),\n"
        "attention-mass recall per query token (mean, min), relative L2\n"
        "output error per head against dense (mean, max) and the time of\n"
        "each stage (pool / estimate / attention, milliseconds).\n"
        "\n"
        "options:\n"
        "  --device D       cpu: the CPU rows only; gpu: also the generated\n"
        "                   kernels (a row 'prism-gpu' with GPU stage times)\n"
        "  --backend B      llvm: 'prism' and 'dense' run on the LLVM CPU\n"
        "                   backend (default with --device cpu; the other\n"
        "                   methods estimate with the reference and attend\n"
        "                   on the backend); reference: everything on the\n"
        "                   CPU reference (default with --device gpu)\n"
        "  --input PATH     real q, k, v instead of a synthetic workload: a\n"
        "                   .qkv file (written by python3 -m eval.dump_qkv,\n"
        "                   format in docs/fidelity.md) or a directory of\n"
        "                   them, one table each; lengths come from the\n"
        "                   file, and a config with a layers: section is\n"
        "                   resolved for the file's layer\n"
        "  --seq N          key length Sk (required without --input; 8k = 8192)\n"
        "  --sq M           query length Sq, the last M positions (default\n"
        "                   N; N - M must be a multiple of the block size)\n"
        "  --batch B        sequences (default 1)\n"
        "  --workload W     sink | local | slash | vertical | needle |\n"
        "                   random | mixed (default mixed; see\n"
        "                   reference/WORKLOADS.md)\n"
        "  --seed S         workload seed (default 1)\n"
        "  --threads T      CPU threads (default: all online CPUs)\n"
        "  --reps R         llvm backend: run each stage R times and report\n"
        "                   the fastest (default 1)\n"
        "  --json           print the results as one JSON object (per\n"
        "                   input file with --input: JSON lines)\n"
        "  -h, --help       print this help\n"
        "\n"
        "\n"
        "Counts take a K or M suffix, powers of two (8k = 8192).  Each option\n"
        "is given once.\n"
        "\n"
        "exit status: 0 success, 1 failure, 2 usage error.\n",
        out);
}

typedef struct run_args {
    const char *config;
    const char *input;             /* --input PATH                   */
    const char *file_path;         /* the .qkv file being run        */
    const prism_qkv_file *file;    /* its tensors, or NULL           */
    bool seed_given;
    const char *device;
    const char *backend; /* "llvm" or "reference" */
    bool backend_given;
    long long seq, sq, batch, threads, reps;
    uint64_t seed;
    prism_workload_kind workload;
    bool json;
} run_args;

static int opt_seed(const char *cmd, const cli_option *o, const char *value,
                    bool trailing) {
    (void)trailing;
    run_args *a = o->dest;
    char *end = NULL;
    errno = 0;
    unsigned long long s = strtoull(value, &end, 0);
    if (errno || end == value || *end || value[0] == '-')
        return cli_usage(cmd, "--%s '%s': expected a non-negative integer",
                         o->name, value);
    a->seed = (uint64_t)s;
    a->seed_given = true;
    return CLI_OK;
}

static int opt_workload(const char *cmd, const cli_option *o,
                        const char *value, bool trailing) {
    (void)trailing;
    if (prism_workload_parse(value, o->dest) == PRISM_OK)
        return CLI_OK;
    return cli_usage(cmd,
                     "--%s '%s': allowed values are sink, local, slash, "
                     "vertical, needle, random, mixed",
                     o->name, value);
}

static int parse_args(int argc, char **argv, run_args *a) {
    const cli_option opts[] = {
        CLI_OPT_FLAG("json", 0, &a->json),
        CLI_OPT_STRING("device", 0, &a->device),
        CLI_OPT_STRING("backend", 0, &a->backend),
        CLI_OPT_STRING("input", 0, &a->input),
        CLI_OPT_COUNT("seq", &a->seq, 1, INT32_MAX),
        CLI_OPT_COUNT("sq", &a->sq, 1, INT32_MAX),
        CLI_OPT_COUNT("batch", &a->batch, 1, 4096),
        CLI_OPT_COUNT("reps", &a->reps, 1, 1000),
        CLI_OPT_COUNT("threads", &a->threads, 1, 1024),
        CLI_OPT_CUSTOM("seed", a, opt_seed, false, false),
        CLI_OPT_CUSTOM("workload", &a->workload, opt_workload, false, false),
    };
    cli_spec spec = {"run", opts, PRISM_ARRAY_LEN(opts), &a->config, 1};
    int n_pos;
    int rc = cli_parse(&spec, argc, argv, &n_pos);
    if (rc != CLI_OK)
        return rc;
    a->backend_given = a->backend != NULL;
    if (!a->config)
        return cli_usage("run", "missing CONFIG, a YAML kernel config");
    if (!a->device)
        return cli_usage("run", "missing --device; allowed values: cpu, gpu");
    if (strcmp(a->device, "cpu") && strcmp(a->device, "gpu"))
        return cli_usage("run", "--device '%s': allowed values: cpu, gpu",
                         a->device);
    bool gpu = !strcmp(a->device, "gpu");
    if (!a->backend)
        a->backend = gpu ? "reference" : "llvm";
    if (strcmp(a->backend, "llvm") && strcmp(a->backend, "reference"))
        return cli_usage("run", "--backend '%s': allowed values: llvm, "
                         "reference", a->backend);
    if (gpu && !strcmp(a->backend, "llvm"))
        return cli_usage("run", "--backend llvm is the CPU backend: use it "
                         "with --device cpu");
    if (a->input && (a->seq || a->sq || a->batch || a->seed_given ||
                     a->workload != PRISM_WORKLOAD_COUNT_))
        return cli_usage("run", "--input takes its tensors and lengths from "
                         "the file: drop --seq, --sq, --batch, --workload "
                         "and --seed");
    if (a->input)
        return CLI_OK;
    if (!a->batch)
        a->batch = 1;
    if (a->workload == PRISM_WORKLOAD_COUNT_)
        a->workload = PRISM_WORKLOAD_MIXED;
    if (!a->seq)
        return cli_usage("run", "missing --seq N, the sequence length "
                         "(or --input PATH)");
    if (!a->sq)
        a->sq = a->seq;
    if (a->sq > a->seq)
        return cli_usage("run",
                         "--sq %lld exceeds --seq %lld (the queries "
                         "are the last Sq of the Sk positions)",
                         a->sq, a->seq);
    return CLI_OK;
}

/* One row of the results table. */
typedef struct method_result {
    const char *name;
    double density;
    prism_ref_summary recall, error;
    prism_ref_timing time;
    bool is_dense;
} method_result;

/* Everything the run allocates, freed in one place. */
typedef struct run_state {
    prism_workload w;
    void *q, *k, *v;        /* inputs in the config's dtype */
    float *out_dense, *out; /* fp32 outputs                 */
    prism_tensor_view qv, kv, vv, ov_dense, ov;
    float *recall[N_METHODS + 1]; /* + the GPU's selection */
    prism_selection sel[N_METHODS], full;
    gpu_run_result gpu;
    prism_ref_agreement gpu_agree; /* the GPU's mask vs the reference's */
    bool with_gpu;
    cpu_backend_run cpu; /* --backend llvm */
} run_state;

static void run_state_free(run_state *s) {
    prism_ref_workload_free(&s->w);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->out_dense);
    free(s->out);
    for (int m = 0; m < N_METHODS; m++) {
        free(s->recall[m]);
        prism_selection_free(&s->sel[m]);
    }
    free(s->recall[GPU_SLOT]);
    prism_selection_free(&s->full);
    gpu_run_result_free(&s->gpu);
    cpu_backend_close(&s->cpu);
}

/* Rounds the tensor `from` [B, H, S, D] (the fp32 workload or a file's
 * tensor) into a new buffer of the config's dtype; NULL when out of
 * memory. */
static void *view_copy(prism_tensor_view from, prism_dtype dtype) {
    int64_t B = from.shape[0], H = from.shape[1], S = from.shape[2],
            D = from.shape[3];
    size_t n = (size_t)(B * H * S * D);
    void *dst = malloc(n * prism_dtype_size(dtype));
    if (!dst)
        return NULL;
    prism_tensor_view to = prism_view_bhsd(dst, dtype, B, H, S, D);
    if (prism_view_copy(&to, &from, NULL, 0) != PRISM_OK) {
        free(dst);
        return NULL;
    }
    return dst;
}

static void *rounded_copy(const float *src, prism_dtype dtype, int64_t B,
                          int64_t H, int64_t S, int64_t D) {
    return view_copy(prism_view_bhsd((void *)src, PRISM_DTYPE_FP32, B, H, S, D),
                     dtype);
}

/* The line saying what the inputs were. */
static void print_source(const run_args *a) {
    if (a->file)
        printf("input %s: text %s, layer %d, S=%d, %s\n", a->file_path,
               a->file->text, a->file->layer, a->file->tokens,
               prism_dtype_name(a->file->dtype));
    else
        printf("workload %s, batch %lld, Sq=%lld Sk=%lld, seed %" PRIu64 "\n",
               prism_workload_name(a->workload), a->batch, a->sq, a->seq,
               a->seed);
}

static void print_table(const run_args *a, const prism_config *cfg,
                        const method_result *r, int n, const char *engine) {
    printf("config %s: D=%d Hq=%d Hkv=%d %s, rope %s theta %g, BS=%d, "
           "dh=%d dl=%d, thresholds %.2f/%.2f\n",
           cfg->name, cfg->head_dim, cfg->q_heads, cfg->kv_heads,
           prism_dtype_name(cfg->dtype),
           prism_rope_layout_name(cfg->rope_layout), cfg->rope_theta,
           cfg->block_size, cfg->high_dim, cfg->low_dim, cfg->threshold_high,
           cfg->threshold_low);
    print_source(a);
    printf("device cpu (%s)\n\n", engine);
    printf("%-12s %8s %8s %8s %10s %10s %9s %9s %10s\n", "method", "density",
           "recall", "recall", "error", "error", "pool", "estimate",
           "attention");
    printf("%-12s %8s %8s %8s %10s %10s %9s %9s %10s\n", "", "", "mean", "min",
           "mean", "max", "ms", "ms", "ms");
    for (int m = 0; m < n; m++) {
        if (r[m].is_dense)
            printf("%-12s %8.4f %8.4f %8.4f %10.2e %10.2e %9s %9s %10.1f\n",
                   r[m].name, r[m].density, 1.0, 1.0, 0.0, 0.0, "-", "-",
                   r[m].time.attention_ms);
        else
            printf("%-12s %8.4f %8.4f %8.4f %10.2e %10.2e %9.1f %9.1f "
                   "%10.1f\n",
                   r[m].name, r[m].density, r[m].recall.mean, r[m].recall.min,
                   r[m].error.mean, r[m].error.max, r[m].time.pool_ms,
                   r[m].time.estimate_ms, r[m].time.attention_ms);
    }
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void print_json(const run_args *a, const prism_config *cfg,
                       const method_result *r, int n, int threads,
                       const prism_ref_agreement *gpu_agree) {
    printf("{\"config\": ");
    print_json_string(cfg->name);
    if (a->file) {
        printf(", \"input\": ");
        print_json_string(a->file_path);
        printf(", \"layer\": %d, \"text\": ", a->file->layer);
        print_json_string(a->file->text);
    }
    if (gpu_agree)
        printf(", \"gpu_mask_compared\": %lld, \"gpu_mask_differ\": %lld",
               (long long)gpu_agree->compared, (long long)gpu_agree->differ);
    printf(", \"device\": \"%s\", \"backend\": \"%s\", "
           "\"workload\": \"%s\", \"batch\": %lld, "
           "\"seq_q\": %lld, \"seq_k\": %lld, \"seed\": %" PRIu64
           ", \"threads\": %d, \"dtype\": \"%s\", \"head_dim\": %d, "
           "\"q_heads\": %d, \"kv_heads\": %d, \"block_size\": %d, "
           "\"reps\": %lld, \"methods\": [",
           a->device, a->backend,
           a->file ? "real" : prism_workload_name(a->workload),
           a->batch, a->sq, a->seq, a->seed,
           threads, prism_dtype_name(cfg->dtype), cfg->head_dim, cfg->q_heads,
           cfg->kv_heads, cfg->block_size, a->reps > 0 ? a->reps : 1);
    for (int m = 0; m < n; m++) {
        bool d = r[m].is_dense;
        printf("%s{\"method\": \"%s\", \"density\": %.6f, "
               "\"recall_mean\": %.6f, \"recall_min\": %.6f, "
               "\"error_mean\": %.6e, \"error_max\": %.6e, "
               "\"pool_ms\": %.3f, \"estimate_ms\": %.3f, "
               "\"attention_ms\": %.3f}",
               m ? ", " : "", r[m].name, r[m].density,
               d ? 1.0 : r[m].recall.mean, d ? 1.0 : r[m].recall.min,
               d ? 0.0 : r[m].error.mean, d ? 0.0 : r[m].error.max,
               r[m].time.pool_ms, r[m].time.estimate_ms,
               r[m].time.attention_ms);
    }
    printf("]}\n");
}

/* Builds the workload and rounds it to the config's dtype; allocates the
 * outputs.  Fills s->q/k/v and the views. */
static int prepare_inputs(const run_args *a, const prism_config *cfg,
                          run_state *s, bool llvm) {
    char err[PRISM_ERRMSG_MAX];
    int B = (int)a->batch, Hq = cfg->q_heads, Hkv = cfg->kv_heads;
    int64_t Sq = a->sq, Sk = a->seq, D = cfg->head_dim;
    if (a->file) {
        s->q = view_copy(prism_qkv_view(a->file, 'q'), cfg->dtype);
        s->k = view_copy(prism_qkv_view(a->file, 'k'), cfg->dtype);
        s->v = view_copy(prism_qkv_view(a->file, 'v'), cfg->dtype);
    } else {
        prism_status st = prism_ref_workload_build(
            cfg, B, Sq, Sk, a->workload, a->seed, &s->w, err, sizeof err);
        if (st != PRISM_OK)
            return cli_fail("%s", err);
        s->q = rounded_copy(s->w.q, cfg->dtype, B, Hq, Sq, D);
        s->k = rounded_copy(s->w.k, cfg->dtype, B, Hkv, Sk, D);
        s->v = rounded_copy(s->w.v, cfg->dtype, B, Hkv, Sk, D);
    }
    prism_ref_workload_free(&s->w); /* only the rounded inputs are used */
    size_t n_out = llvm ? 1 : (size_t)B * Hq * Sq * D; /* llvm: run_cpu.c's */
    s->out_dense = malloc(n_out * sizeof(float));
    s->out = malloc(n_out * sizeof(float));
    bool ok = s->q && s->k && s->v && s->out_dense && s->out;
    for (int m = 0; !llvm && m < N_METHODS + s->with_gpu; m++) {
        s->recall[m] = malloc((size_t)B * Hq * Sq * sizeof(float));
        ok = ok && s->recall[m];
    }
    if (!ok)
        return cli_fail("out of memory for batch %lld, Sq=%lld, Sk=%lld",
                        a->batch, a->sq, a->seq);
    s->qv = prism_view_bhsd(s->q, cfg->dtype, B, Hq, Sq, D);
    s->kv = prism_view_bhsd(s->k, cfg->dtype, B, Hkv, Sk, D);
    s->vv = prism_view_bhsd(s->v, cfg->dtype, B, Hkv, Sk, D);
    s->ov_dense = prism_view_bhsd(s->out_dense, PRISM_DTYPE_FP32, B, Hq, Sq, D);
    s->ov = prism_view_bhsd(s->out, PRISM_DTYPE_FP32, B, Hq, Sq, D);
    return CLI_OK;
}

/* Runs every method's estimation: selections, densities, stage times. */
static int estimate_methods(const run_args *a, const prism_config *cfg,
                            int threads, run_state *s, method_result *r,
                            int first) {
    char err[PRISM_ERRMSG_MAX];
    for (int m = first; m < N_METHODS; m++) {
        prism_status st = prism_selection_alloc_for(
            &s->sel[m], (int)a->batch, cfg->q_heads, a->sq, a->seq, NULL,
            cfg->block_size, err, sizeof err);
        if (st != PRISM_OK)
            return cli_fail("%s", err);
        prism_ref_estimate_options eo = {(prism_ref_method)m, threads, false};
        st = prism_ref_estimate(&s->qv, &s->kv, NULL, cfg, &eo, &s->sel[m],
                                NULL, &r[m].time, err, sizeof err);
        if (st != PRISM_OK)
            return cli_fail("%s: %s", prism_ref_method_name(m), err);
        r[m].name = prism_ref_method_name(m);
        r[m].density = prism_ref_density(&s->sel[m], NULL);
    }
    return CLI_OK;
}

/* Dense attention (measuring every selection's recall on the way), then
 * each method's sparse attention and its error against dense. */
static int attend_methods(const run_args *a, const prism_config *cfg,
                          int threads, run_state *s, method_result *r) {
    char err[PRISM_ERRMSG_MAX];
    int B = (int)a->batch;
    prism_status st =
        prism_selection_alloc_for(&s->full, B, cfg->q_heads, a->sq, a->seq,
                                  NULL, cfg->block_size, err, sizeof err);
    if (st != PRISM_OK)
        return cli_fail("%s", err);
    prism_selection_fill_full(&s->full);
    const prism_selection *recall_sel[N_METHODS + 1];
    for (int m = 0; m < N_METHODS; m++)
        recall_sel[m] = &s->sel[m];
    recall_sel[GPU_SLOT] = &s->gpu.sel;
    prism_ref_attention_options with_recall = {
        threads, 0.0, NULL, N_METHODS + s->with_gpu, recall_sel, s->recall};
    method_result *dense = &r[N_METHODS + s->with_gpu];
    dense->name = "dense";
    dense->is_dense = true;
    dense->density = 1.0;
    double t0 = prism_now_ms();
    st = prism_ref_attention(&s->qv, &s->kv, &s->vv, NULL, &s->full,
                             &with_recall, &s->ov_dense, err, sizeof err);
    if (st != PRISM_OK)
        return cli_fail("dense: %s", err);
    dense->time.attention_ms = prism_now_ms() - t0;

    prism_ref_attention_options plain = {threads, 0.0, NULL, 0, NULL, NULL};
    for (int m = 0; m < N_METHODS; m++) {
        r[m].recall = prism_ref_recall_summary(s->recall[m], B, cfg->q_heads,
                                               a->sq, NULL);
        t0 = prism_now_ms();
        st = prism_ref_attention(&s->qv, &s->kv, &s->vv, NULL, &s->sel[m],
                                 &plain, &s->ov, err, sizeof err);
        if (st != PRISM_OK)
            return cli_fail("%s: %s", r[m].name, err);
        r[m].time.attention_ms = prism_now_ms() - t0;
        st = prism_ref_output_error(&s->ov, &s->ov_dense, NULL, &r[m].error,
                                    NULL, err, sizeof err);
        if (st != PRISM_OK)
            return cli_fail("%s: %s", r[m].name, err);
    }
    if (s->with_gpu) {
        method_result *g = &r[GPU_SLOT];
        g->name = "prism-gpu";
        g->density = s->gpu.density;
        g->recall = prism_ref_recall_summary(s->recall[GPU_SLOT], B,
                                             cfg->q_heads, a->sq, NULL);
        g->time.estimate_ms = s->gpu.estimate_ms;
        g->time.attention_ms = s->gpu.attention_ms;
        prism_tensor_view gv = prism_view_bhsd(s->gpu.out, PRISM_DTYPE_FP32, B,
                                               cfg->q_heads, a->sq,
                                               cfg->head_dim);
        st = prism_ref_output_error(&gv, &s->ov_dense, NULL, &g->error, NULL,
                                    err, sizeof err);
        if (st == PRISM_OK)
            st = prism_ref_selection_agreement(&s->sel[PRISM_REF_PRISM],
                                               &s->gpu.sel, &s->gpu_agree,
                                               NULL, 0, err, sizeof err);
        if (st != PRISM_OK)
            return cli_fail("prism-gpu: %s", err);
    }
    return CLI_OK;
}

/* --backend llvm: dense and prism on the backend, the reference's other
 * selections attended on the backend too (run_cpu.c scores them). */
static int attend_llvm(run_state *s, method_result *r) {
    cpu_backend_run *c = &s->cpu;
    method_result *dense = &r[N_METHODS];
    dense->name = "dense";
    dense->is_dense = true;
    dense->density = 1.0;
    int rc = cpu_backend_dense(c, s->q, s->k, s->v, &dense->time.attention_ms);
    r[0].name = prism_ref_method_name(PRISM_REF_PRISM);
    if (rc == CLI_OK)
        rc = cpu_backend_estimate(c, s->q, s->k, &r[0].time.pool_ms,
                                  &r[0].time.estimate_ms, &r[0].density);
    for (int m = 0; rc == CLI_OK && m < N_METHODS; m++)
        rc = cpu_backend_attend(c, s->q, s->k, s->v, m ? &s->sel[m] : &c->sel,
                                &r[m].time.attention_ms, &r[m].recall,
                                &r[m].error);
    return rc;
}

/* Opens the LLVM backend; without it (a build without LLVM) the default
 * backend falls back to the reference, an explicit --backend llvm fails. */
static int open_llvm(run_args *a, const prism_config *cfg, int threads,
                     run_state *s) {
    char why[PRISM_ERRMSG_MAX];
    prism_status st =
        cpu_backend_open(cfg, (int)a->batch, a->sq, a->seq, threads,
                         (int)a->reps, &s->cpu, why, sizeof why);
    if (st == PRISM_OK)
        return CLI_OK;
    cpu_backend_close(&s->cpu);
    if (st != PRISM_ERR_UNSUPPORTED || a->backend_given)
        return cli_fail("llvm backend: %s", why);
    fprintf(stderr, "prism: note: %s; running the reference instead "
                    "(--backend reference)\n", why);
    a->backend = "reference";
    return CLI_OK;
}

static int run(run_args *a, const prism_config *cfg, run_state *s) {
    int threads = a->threads > 0 ? (int)a->threads : prism_cpu_threads();
    if ((a->seq - a->sq) % cfg->block_size != 0)
        return cli_usage("run",
                         "--seq %lld minus --sq %lld must be a multiple "
                         "of the block size %d",
                         a->seq, a->sq, cfg->block_size);
    method_result r[N_METHODS + 2];
    memset(r, 0, sizeof r);
    s->with_gpu = !strcmp(a->device, "gpu");
    int n_rows = N_METHODS + 1 + s->with_gpu;
    int rc = !strcmp(a->backend, "llvm") ? open_llvm(a, cfg, threads, s)
                                         : CLI_OK;
    bool llvm = rc == CLI_OK && !strcmp(a->backend, "llvm");
    if (rc == CLI_OK)
        rc = prepare_inputs(a, cfg, s, llvm);
    if (rc == CLI_OK)
        rc = estimate_methods(a, cfg, threads, s, r, llvm ? 1 : 0);
    if (rc == CLI_OK && s->with_gpu)
        rc = run_gpu(cfg, (int)a->batch, a->sq, a->seq, s->q, s->k, s->v, 10,
                     &s->gpu);
    if (rc == CLI_OK)
        rc = llvm ? attend_llvm(s, r) : attend_methods(a, cfg, threads, s, r);
    if (rc != CLI_OK)
        return rc;
    char engine[200];
    if (llvm)
        prism_strlcpy(engine, s->cpu.device, sizeof engine);
    else
        snprintf(engine, sizeof engine, "reference, %d threads", threads);
    if (a->json)
        print_json(a, cfg, r, n_rows, threads,
                   s->with_gpu ? &s->gpu_agree : NULL);
    else
        print_table(a, cfg, r, n_rows, engine);
    if (llvm && !a->json)
        printf("\nprism and dense ran on the LLVM CPU backend; prism-nocal "
               "and meanpool select with the\nreference and attend on the "
               "backend.  recall = exp(lse - lse_dense) per query; error is\n"
               "against the backend's dense output, both in %s (rounding "
               "included); the prism\nrow's pool column is pooling + "
               "calibration, estimate the scores and top-p.\n",
               prism_dtype_name(cfg->dtype));
    if (s->with_gpu && !a->json)
        printf("\nprism-gpu ran on %s; its estimate column is pooling + "
               "calibration + selection, GPU event medians of 10 runs;\n"
               "its mask differs from the reference's prism mask in %lld of "
               "%lld block-causal blocks\n",
               s->gpu.device, (long long)s->gpu_agree.differ,
               (long long)s->gpu_agree.compared);
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail("cannot write to stdout: %s", strerror(errno));
    return CLI_OK;
}

/* One input file: its layer's config, then the run (or a note that the
 * config makes the layer dense). */
static int run_file(run_args *a, const prism_config *cfg, const char *path) {
    prism_qkv_file file;
    prism_config layer_cfg;
    bool dense = false;
    int rc = run_input_load(path, cfg, &file, &layer_cfg, &dense);
    if (rc == CLI_OK && dense) {
        if (a->json) {
            printf("{\"config\": ");
            print_json_string(cfg->name);
            printf(", \"input\": ");
            print_json_string(path);
            printf(", \"layer\": %d, \"dense\": true}\n", file.layer);
        } else
            printf("input %s: layer %d is dense in config '%s' "
                   "(layers.dense): nothing to select\n\n", path, file.layer,
                   cfg->name);
    } else if (rc == CLI_OK) {
        a->file = &file;
        a->file_path = path;
        a->batch = 1;
        a->seq = a->sq = file.tokens;
        run_state s;
        memset(&s, 0, sizeof s);
        rc = run(a, &layer_cfg, &s);
        run_state_free(&s);
        if (!a->json)
            putchar('\n');
        a->file = NULL;
    }
    prism_qkv_free(&file);
    return rc;
}

int prism_cmd_run(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    run_args a = {0};
    a.seed = 1;
    a.workload = PRISM_WORKLOAD_COUNT_; /* unset: mixed without --input */
    int rc = parse_args(argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    prism_config cfg;
    if (!cli_load_config(a.config, &cfg))
        return CLI_FAIL;
    if (a.input) {
        run_inputs in;
        rc = run_inputs_list(a.input, &in);
        for (int i = 0; rc == CLI_OK && i < in.n; i++)
            rc = run_file(&a, &cfg, in.paths[i]);
        run_inputs_free(&in);
        return rc;
    }
    run_state s;
    memset(&s, 0, sizeof s);
    rc = run(&a, &cfg, &s);
    run_state_free(&s);
    return rc;
}
