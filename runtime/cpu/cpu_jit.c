/*
 * cpu_jit.c - the CPU backend's compiler: LLVM module -> optimized object
 * file for this host, through the kernel cache, linked with ORC LLJIT.
 *
 * Per plan:
 *   1. host     triple, LLVMGetHostCPUName(), LLVMGetHostCPUFeatures(); the
 *               widest vector unit picks the kernels' register blocks
 *   2. emit     gen/cpu/llvm_module.c builds the module; LLVMVerifyModule
 *               checks it; the target triple and data layout are set
 *   3. key      prism_cache_key_compute over
 *                 source        the module's IR text, BEFORE optimization
 *                               (printed after step 2, so it names the
 *                               triple and data layout too)
 *                 nvrtc_version "llvm 14.0.6" (the LLVM that compiles)
 *                 arch          "TRIPLE / CPU / FEATURES", e.g.
 *                               "x86_64-pc-linux-gnu / znver3 / +avx,..."
 *                 options       the pass pipeline and codegen settings
 *               so a different LLVM, CPU or feature set is a different
 *               entry, and a hit skips optimization and codegen entirely
 *   4. build    (miss only) LLVMRunPasses("default<O3>") with the host
 *               target machine, then LLVMTargetMachineEmitToMemoryBuffer
 *               (LLVMObjectFile): the cached payload is that object file
 *   5. link     a fresh LLJIT per plan; LLVMOrcLLJITAddObjectFile; the five
 *               entry points are looked up by name.  The process's symbols
 *               are visible to the object in case LLVM emitted a memset.
 *
 * The code model is LLVM's JIT default (large on x86-64), so the object
 * links wherever LLJIT maps it.  LLVM errors come back as prism_status with
 * LLVM's message; nothing here aborts.  The plan owns the LLJIT, which owns
 * the code: destroying the plan unmaps it.
 */
#include "runtime/cpu/cpu_backend.h"
#include "runtime/context.h"

#include <stdlib.h>
#include <string.h>

#ifdef PRISM_WITH_LLVM

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <llvm/Config/llvm-config.h>

#include <pthread.h>

#define PIPELINE "default<O3>"

struct prism_cpu_code {
    LLVMOrcLLJITRef jit;
};

static pthread_once_t llvm_once = PTHREAD_ONCE_INIT;
static bool llvm_ready;

static void llvm_init(void) {
    llvm_ready = !LLVMInitializeNativeTarget() && !LLVMInitializeNativeAsmPrinter();
}

/* Copies an LLVM error's message into err and consumes the error. */
static prism_status llvm_fail(LLVMErrorRef e, prism_status st, const char *what,
                              char *err, size_t err_size) {
    char *msg = LLVMGetErrorMessage(e);
    prism_errorf(err, err_size, st, "CPU backend: %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return st;
}

/* The host as LLVM sees it.  Strings are LLVM-allocated. */
typedef struct host {
    char *triple, *cpu, *features;
    prism_llvm_target target;
    char *arch; /* the key's arch string (malloc'd; NULL when out of memory) */
} host;

static bool has_feature(const char *features, const char *name) {
    size_t n = strlen(name);
    for (const char *at = features; (at = strstr(at, name)); at += n) {
        bool starts = at > features && at[-1] == '+' &&
                      (at - 1 == features || at[-2] == ',');
        if (starts && (at[n] == ',' || at[n] == '\0'))
            return true;
    }
    return false;
}

static void host_free(host *h) {
    LLVMDisposeMessage(h->triple);
    LLVMDisposeMessage(h->cpu);
    LLVMDisposeMessage(h->features);
    free(h->arch);
}

static void host_detect(host *h) {
    char *raw = LLVMGetDefaultTargetTriple();
    h->triple = LLVMNormalizeTargetTriple(raw);
    LLVMDisposeMessage(raw);
    h->cpu = LLVMGetHostCPUName();
    h->features = LLVMGetHostCPUFeatures();
    if (has_feature(h->features, "avx512f"))
        h->target = (prism_llvm_target){512, 32};
    else if (has_feature(h->features, "avx"))
        h->target = (prism_llvm_target){256, 16};
    else
        h->target = (prism_llvm_target){128, 16};
    size_t n = strlen(h->triple) + strlen(h->cpu) + strlen(h->features) + 8;
    if ((h->arch = malloc(n)))
        snprintf(h->arch, n, "%s / %s / %s", h->triple, h->cpu, h->features);
}

static prism_status make_machine(const host *h, LLVMTargetMachineRef *tm,
                                 char *err, size_t err_size) {
    LLVMTargetRef target;
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(h->triple, &target, &msg)) {
        prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                     "CPU backend: no LLVM target for %s: %s", h->triple,
                     msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return PRISM_ERR_UNSUPPORTED;
    }
    *tm = LLVMCreateTargetMachine(target, h->triple, h->cpu, h->features,
                                  LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                  LLVMCodeModelJITDefault);
    if (!*tm)
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "CPU backend: LLVM cannot target CPU %s (%s)",
                            h->cpu, h->triple);
    return PRISM_OK;
}

typedef struct build_job {
    LLVMModuleRef mod;
    LLVMTargetMachineRef tm;
} build_job;

/* Cache builder: optimize, then emit the object file as the payload. */
static prism_status build_object(void *user, void **payload,
                                 size_t *payload_size, prism_cache_meta *meta,
                                 char **log, char *err, size_t err_size) {
    build_job *job = user;
    *log = NULL;
    double t0 = prism_now_ms();
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMErrorRef e = LLVMRunPasses(job->mod, PIPELINE, job->tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    if (e)
        return llvm_fail(e, PRISM_ERR_GENERATE, "running " PIPELINE, err,
                         err_size);
    char *msg = NULL;
    LLVMMemoryBufferRef obj = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(job->tm, job->mod, LLVMObjectFile,
                                            &msg, &obj)) {
        prism_errorf(err, err_size, PRISM_ERR_GENERATE,
                     "CPU backend: code generation failed: %s",
                     msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return PRISM_ERR_GENERATE;
    }
    size_t size = LLVMGetBufferSize(obj);
    void *copy = malloc(size ? size : 1);
    if (!copy) {
        LLVMDisposeMemoryBuffer(obj);
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "CPU backend: out of memory for the object file");
    }
    memcpy(copy, LLVMGetBufferStart(obj), size);
    LLVMDisposeMemoryBuffer(obj);
    *payload = copy;
    *payload_size = size;
    meta->compile_ms = prism_now_ms() - t0;
    return PRISM_OK;
}

/* Links the object and resolves the entry points. */
static prism_status link_object(const void *obj, size_t size,
                                prism_cpu_code *code, prism_cpu_kernels *k,
                                char *err, size_t err_size) {
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&code->jit, NULL);
    if (e)
        return llvm_fail(e, PRISM_ERR_INTERNAL, "creating LLJIT", err,
                         err_size);
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(code->jit);
    LLVMOrcDefinitionGeneratorRef gen = NULL;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        &gen, LLVMOrcLLJITGetGlobalPrefix(code->jit), NULL, NULL);
    if (e)
        return llvm_fail(e, PRISM_ERR_INTERNAL, "process symbols", err,
                         err_size);
    LLVMOrcJITDylibAddGenerator(jd, gen);
    LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(
        obj, size, "prism_cpu.o");
    if ((e = LLVMOrcLLJITAddObjectFile(code->jit, jd, buf)))
        return llvm_fail(e, PRISM_ERR_CACHE, "loading the object file", err,
                         err_size);
    static const char *const names[] = {
        PRISM_CPU_POOL_NAME, PRISM_CPU_SCORE_NAME, PRISM_CPU_LOAD_Q_NAME,
        PRISM_CPU_ATTEND_NAME, PRISM_CPU_STORE_O_NAME};
    LLVMOrcExecutorAddress addr[5];
    for (int i = 0; i < 5; i++) {
        if ((e = LLVMOrcLLJITLookup(code->jit, &addr[i], names[i]))) {
            char what[96];
            snprintf(what, sizeof what, "looking up %s", names[i]);
            return llvm_fail(e, PRISM_ERR_CACHE, what, err, err_size);
        }
    }
    k->pool = (prism_cpu_pool_fn)(uintptr_t)addr[0];
    k->score = (prism_cpu_score_fn)(uintptr_t)addr[1];
    k->load_q = (prism_cpu_load_q_fn)(uintptr_t)addr[2];
    k->attend = (prism_cpu_attend_fn)(uintptr_t)addr[3];
    k->store_o = (prism_cpu_store_o_fn)(uintptr_t)addr[4];
    return PRISM_OK;
}

/* Emits, verifies and targets the module; prints its text for the key. */
static prism_status emit(const prism_config *cfg, const host *h,
                         LLVMTargetMachineRef tm, LLVMContextRef llctx,
                         LLVMModuleRef *mod, char **text, char *err,
                         size_t err_size) {
    prism_status st =
        prism_llvm_emit_module(cfg, &h->target, llctx, mod, err, err_size);
    if (st != PRISM_OK)
        return st;
    char *msg = NULL;
    if (LLVMVerifyModule(*mod, LLVMReturnStatusAction, &msg)) {
        prism_errorf(err, err_size, PRISM_ERR_GENERATE,
                     "CPU backend: generated IR is invalid: %s",
                     msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return PRISM_ERR_GENERATE;
    }
    LLVMDisposeMessage(msg);
    LLVMSetTarget(*mod, h->triple);
    LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(*mod, layout);
    LLVMDisposeTargetData(layout);
    *text = LLVMPrintModuleToString(*mod);
    return PRISM_OK;
}

prism_status prism_cpu_jit_build(prism_context *ctx, const prism_config *cfg,
                                 prism_cpu_code **out, prism_cpu_kernels *k,
                                 prism_cpu_jit_info *info, char *err,
                                 size_t err_size) {
    *out = NULL;
    memset(info, 0, sizeof *info);
    pthread_once(&llvm_once, llvm_init);
    if (!llvm_ready)
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "CPU backend: LLVM has no native target for "
                            "this host");
    double t0 = prism_now_ms();
    host h;
    host_detect(&h);
    LLVMTargetMachineRef tm = NULL;
    LLVMContextRef llctx = LLVMContextCreate();
    LLVMModuleRef mod = NULL;
    char *text = NULL;
    prism_cache_entry entry;
    memset(&entry, 0, sizeof entry);
    prism_cpu_code *code = calloc(1, sizeof *code);
    prism_status st = code && h.arch ? PRISM_OK : PRISM_ERR_OUT_OF_MEMORY;
    if (st != PRISM_OK) {
        prism_errorf(err, err_size, st, "CPU backend: out of memory");
        goto done;
    }
    if ((st = make_machine(&h, &tm, err, err_size)) != PRISM_OK ||
        (st = emit(cfg, &h, tm, llctx, &mod, &text, err, err_size)) != PRISM_OK)
        goto done;

    /* one literal per element: the pipeline's is spelled apart, as a
     * concatenation inside the list reads like a missing comma */
    static const char pipeline_option[] = "pipeline=" PIPELINE;
    const char *options[] = {pipeline_option, "opt=aggressive",
                             "reloc=pic", "code-model=jit-default",
                             "payload=object"};
    prism_cache_key_input in = {
        .source = text,
        .nvrtc_version = "llvm " LLVM_VERSION_STRING,
        .arch = h.arch,
        .options = options,
        .n_options = (int)(sizeof options / sizeof options[0]),
    };
    prism_cache_key key;
    if ((st = prism_cache_key_compute(&in, &key)) != PRISM_OK) {
        prism_errorf(err, err_size, st, "CPU backend: cannot hash the module");
        goto done;
    }
    prism_cache_meta meta;
    memset(&meta, 0, sizeof meta);
    prism_strlcpy(meta.config_name, cfg->name, sizeof meta.config_name);
    prism_strlcpy(meta.kernel_name, "cpu", sizeof meta.kernel_name);
    snprintf(meta.arch, sizeof meta.arch, "cpu-%s", h.cpu);
    prism_strlcpy(meta.compiler, in.nvrtc_version, sizeof meta.compiler);
    build_job job = {mod, tm};
    st = prism_cache_get(ctx->cache, &key, &meta, build_object, &job, &entry,
                         &info->cache_hit, err, err_size);
    if (st != PRISM_OK)
        goto done;
    if ((st = link_object(entry.payload, entry.payload_size, code, k, err,
                          err_size)) != PRISM_OK)
        goto done;
    memcpy(info->key_hex, key.hex, sizeof info->key_hex);
    prism_strlcpy(info->cpu, h.cpu, sizeof info->cpu);
    info->vector_bits = h.target.vector_bits;
    info->compile_ms = entry.meta.compile_ms;
    info->lookup_ms = prism_now_ms() - t0;
    prism_log(&ctx->logger, PRISM_LOG_INFO,
              "CPU kernels for '%s' (%s, %d-bit vectors): %s in %.1f ms",
              cfg->name, h.cpu, h.target.vector_bits,
              info->cache_hit ? "cache hit" : "compiled", info->lookup_ms);
    *out = code;
    code = NULL;

done:
    prism_cpu_jit_free(code);
    prism_cache_entry_free(&entry);
    LLVMDisposeMessage(text);
    if (mod)
        LLVMDisposeModule(mod);
    LLVMContextDispose(llctx);
    if (tm)
        LLVMDisposeTargetMachine(tm);
    host_free(&h);
    return st;
}

void prism_cpu_jit_free(prism_cpu_code *code) {
    if (!code)
        return;
    if (code->jit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(code->jit);
        if (e)
            LLVMConsumeError(e);
    }
    free(code);
}

void prism_cpu_jit_host(char *cpu, size_t cpu_size, char *compiler,
                        size_t compiler_size) {
    char *name = LLVMGetHostCPUName();
    prism_strlcpy(cpu, name ? name : "", cpu_size);
    LLVMDisposeMessage(name);
    prism_strlcpy(compiler, "llvm " LLVM_VERSION_STRING, compiler_size);
}

#else /* !PRISM_WITH_LLVM */

prism_status prism_cpu_jit_build(prism_context *ctx, const prism_config *cfg,
                                 prism_cpu_code **out, prism_cpu_kernels *k,
                                 prism_cpu_jit_info *info, char *err,
                                 size_t err_size) {
    (void)ctx;
    (void)cfg;
    (void)k;
    *out = NULL;
    memset(info, 0, sizeof *info);
    return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                        "CPU plans need the LLVM CPU backend, and this "
                        "libprism was built without it: reconfigure with "
                        "-DPRISM_WITH_LLVM=ON and LLVM installed "
                        "(llvm-config-N for -DPRISM_LLVM_VERSION=N)");
}

void prism_cpu_jit_free(prism_cpu_code *code) { (void)code; }

void prism_cpu_jit_host(char *cpu, size_t cpu_size, char *compiler,
                        size_t compiler_size) {
    prism_strlcpy(cpu, "", cpu_size);
    prism_strlcpy(compiler, "", compiler_size);
}

#endif /* PRISM_WITH_LLVM */
