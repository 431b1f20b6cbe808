/*
 * pack.c - building a pack: compile into it, copy tuning entries, write
 * the manifest, optionally archive it.  The layout is in pack.h;
 * pack_verify.c checks one.
 *
 * The compile step opens a context whose writable cache IS the pack
 * directory and that has no read-only layers, so every cubin a plan will
 * ask for is published into the pack by the ordinary cache code (same
 * keys, same entry format, same atomic publication) rather than copied by
 * a second implementation that could drift from it.
 */
#include "runtime/pack.h"

#include "runtime/context.h"
#include "runtime/module.h"
#include "runtime/plan_tuning.h"
#include "compile/nvrtc_compile.h"
#include "cache/tar.h"
#include "base/arch.h"
#include "base/fs.h"
#include "base/parse.h"
#include "tune/tune_yaml.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A tuning entry copied into the pack, and what to build for it. */
typedef struct copied {
    int config, kernel;
    prism_arch arch;
    int64_t values[PRISM_MAX_TUNABLES];
} copied;

typedef struct packer {
    prism_context *ctx;  /* the caller's: tuning sources, logger */
    prism_context *pctx; /* compiles into the pack */
    const prism_pack_options *o;
    prism_pack_report *rep;
    char dir[PRISM_PATH_MAX];
    char (*hashes)[65];
    copied *copies;
    int n_copies, cap_copies;
    char err[PRISM_ERRMSG_MAX];
} packer;

/* The archs asked for, else the config's targets and its PTX image;
 * out holds PRISM_MAX_TARGETS + 1. */
static int config_archs(const packer *P, int c, prism_arch *out) {
    const prism_config *cfg = &P->o->configs[c];
    if (!P->o->n_archs)
        return prism_arch_with_ptx(cfg->targets, cfg->n_targets, out);
    int n = P->o->n_archs;
    for (int i = 0; i < n && i < PRISM_MAX_TARGETS; i++)
        out[i] = P->o->archs[i];
    return n < PRISM_MAX_TARGETS ? n : PRISM_MAX_TARGETS;
}

static bool has_arch(const prism_arch *archs, int n, prism_arch a) {
    for (int i = 0; i < n; i++)
        if (archs[i] == a)
            return true;
    return false;
}

static bool push_copy(packer *P, const copied *c) {
    if (P->n_copies == P->cap_copies) {
        int cap = P->cap_copies ? P->cap_copies * 2 : 16;
        copied *v = realloc(P->copies, sizeof *v * (size_t)cap);
        if (!v)
            return false;
        P->copies = v;
        P->cap_copies = cap;
    }
    P->copies[P->n_copies++] = *c;
    return true;
}

/* Copies one candidate file if it is a valid entry of config c for one of
 * its archs and no earlier layer supplied the same name. */
static prism_status consider_entry(packer *P, int c, const char *dir,
                                   const char *name) {
    char src[PRISM_PATH_MAX], dst[PRISM_PATH_MAX], why[PRISM_ERRMSG_MAX];
    char tdir[PRISM_PATH_MAX];
    if (!prism_fs_join(src, sizeof src, dir, name) ||
        !prism_fs_join(tdir, sizeof tdir, P->dir, "tuning") ||
        !prism_fs_join(dst, sizeof dst, tdir, name))
        return PRISM_OK;
    if (access(dst, F_OK) == 0)
        return PRISM_OK; /* an earlier layer (or config) had it */
    char *text = NULL;
    size_t size = 0;
    prism_tune_entry e;
    prism_arch archs[PRISM_MAX_TARGETS + 1], arch;
    int n_archs = config_archs(P, c, archs);
    if (prism_fs_read_all(src, PRISM_TUNE_MAX_FILE, &text, &size, NULL, why,
                          sizeof why) != PRISM_OK ||
        prism_tune_entry_parse(text, size, &e, why, sizeof why) != PRISM_OK) {
        prism_log(&P->ctx->logger, PRISM_LOG_WARN,
                  "pack: tuning entry %s skipped: %s", src, why);
        free(text);
        return PRISM_OK;
    }
    prism_status st = PRISM_OK;
    int best = prism_tune_entry_best(&e);
    int k = -1;
    for (int i = 0; i < prism_kernel_count(); i++)
        if (!strcmp(prism_kernel_name(i), e.kernel))
            k = i;
    if (strcmp(e.config_hash, P->hashes[c]) || best < 0 || k < 0 ||
        !prism_tune_device_arch(&e.device, &arch) ||
        !has_arch(archs, n_archs, arch)) {
        prism_log(&P->ctx->logger, PRISM_LOG_DEBUG,
                  "pack: %s is not for a packed config and arch", src);
        goto done;
    }
    if ((st = prism_fs_mkdir_p(tdir, 0755, P->err, sizeof P->err)) !=
            PRISM_OK ||
        (st = prism_fs_write_atomic(dst, text, size, P->err, sizeof P->err)) !=
            PRISM_OK)
        goto done;
    copied cp = {.config = c, .kernel = k, .arch = arch};
    memcpy(cp.values, e.candidates[best].values, sizeof cp.values);
    if (!push_copy(P, &cp)) {
        st = prism_errorf(P->err, sizeof P->err, PRISM_ERR_OUT_OF_MEMORY,
                          "out of memory");
        goto done;
    }
    P->rep->tuning_entries++;
done:
    prism_tune_entry_free(&e);
    free(text);
    return st;
}

/* Every entry of config c in the caller's tuning directories. */
static prism_status copy_tuning(packer *P, int c) {
    char(*dirs)[PRISM_PATH_MAX] = malloc(PRISM_TUNE_MAX_DIRS * sizeof *dirs);
    if (!dirs)
        return prism_errorf(P->err, sizeof P->err, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory");
    int n = prism_plan_tuning_dirs(P->ctx, dirs);
    prism_status st = PRISM_OK;
    char prefix[24];
    snprintf(prefix, sizeof prefix, "%.16s-", P->hashes[c]);
    for (int d = 0; d < n && st == PRISM_OK; d++) {
        DIR *dh = dirs[d][0] ? opendir(dirs[d]) : NULL;
        if (!dh)
            continue;
        struct dirent *de;
        while (st == PRISM_OK && (de = readdir(dh)) != NULL) {
            size_t len = strlen(de->d_name);
            if (strncmp(de->d_name, prefix, strlen(prefix)) || len < 5 ||
                strcmp(de->d_name + len - 5, ".yaml"))
                continue;
            st = consider_entry(P, c, dirs[d], de->d_name);
        }
        closedir(dh);
    }
    free(dirs);
    return st;
}

static prism_status build(packer *P, const prism_config *cfg, prism_arch arch) {
    prism_module *m = NULL;
    char err[PRISM_ERRMSG_MAX];
    unsigned programs = PRISM_PROGRAMS_PLAIN |
                        (P->o->paged ? PRISM_PROGRAMS_PAGED : 0);
    prism_status st = prism_config_validate(cfg, err, sizeof err);
    if (st == PRISM_OK)
        st = prism_module_build_programs(P->pctx, cfg, arch, programs, &m,
                                         err, sizeof err);
    if (st != PRISM_OK)
        return prism_errorf(P->err, sizeof P->err, st, "pack: %s for %s: %s",
                            cfg->name, prism_arch_name(arch), err);
    prism_module_destroy(m);
    return PRISM_OK;
}

static prism_status build_all(packer *P) {
    prism_status st = PRISM_OK;
    for (int c = 0; c < P->o->n_configs && st == PRISM_OK; c++) {
        prism_arch archs[PRISM_MAX_TARGETS + 1];
        int n = config_archs(P, c, archs);
        for (int a = 0; a < n && st == PRISM_OK; a++) {
            st = build(P, &P->o->configs[c], archs[a]);
            P->rep->modules += st == PRISM_OK;
        }
    }
    prism_config *tuned = malloc(sizeof *tuned);
    if (!tuned)
        return prism_errorf(P->err, sizeof P->err, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory");
    for (int i = 0; i < P->n_copies && st == PRISM_OK; i++) {
        const copied *cp = &P->copies[i];
        const prism_config *cfg = &P->o->configs[cp->config];
        char why[PRISM_ERRMSG_MAX];
        *tuned = *cfg;
        if (!prism_plan_tuning_merge_kernel(tuned, cfg, cp->kernel, cp->arch,
                                            cp->values, why, sizeof why)) {
            prism_log(&P->ctx->logger, PRISM_LOG_WARN,
                      "pack: a tuned %s of '%s' does not fit the config (%s); "
                      "plans will use the untuned kernel",
                      prism_kernel_name(cp->kernel), cfg->name, why);
            continue;
        }
        st = build(P, tuned, cp->arch);
        P->rep->tuned_variants += st == PRISM_OK;
    }
    free(tuned);
    return st;
}

static void emit_archs(prism_yaml_out *y, const prism_arch *archs, int n) {
    prism_yaml_seq_start(y, true);
    for (int i = 0; i < n; i++)
        prism_yaml_scalar(y, prism_arch_name(archs[i]), false);
    prism_yaml_seq_end(y);
}

static prism_status write_manifest(packer *P, int64_t created) {
    prism_fs_list list;
    prism_status st = prism_fs_walk(P->dir, &list, P->err, sizeof P->err);
    if (st != PRISM_OK)
        return st;
    prism_yaml_out y;
    char date[32], path[PRISM_PATH_MAX * 2], hex[65];
    prism_fs_utc_date(created, date, sizeof date);
    prism_yaml_out_begin(&y);
    prism_yaml_map_start(&y, false);
    prism_yaml_kv_int(&y, "format", PRISM_PACK_FORMAT);
    prism_yaml_kv_word(&y, "kind", "prism-cache-pack");
    prism_yaml_kv_str(&y, "prism_version", prism_version());
    prism_yaml_kv_str(&y, "nvrtc_version", prism_nvrtc_version());
    prism_yaml_kv_str(&y, "created", date);
    prism_arch all[PRISM_ARCH_COUNT_];
    int n_all = 0;
    for (int c = 0; c < P->o->n_configs; c++) {
        prism_arch a[PRISM_MAX_TARGETS + 1];
        int n = config_archs(P, c, a);
        for (int i = 0; i < n; i++)
            if (!has_arch(all, n_all, a[i]) && n_all < PRISM_ARCH_COUNT_)
                all[n_all++] = a[i];
    }
    prism_yaml_scalar(&y, "archs", false);
    emit_archs(&y, all, n_all);
    prism_yaml_scalar(&y, "configs", false);
    prism_yaml_seq_start(&y, false);
    for (int c = 0; c < P->o->n_configs; c++) {
        prism_arch a[PRISM_MAX_TARGETS + 1];
        int n = config_archs(P, c, a);
        prism_yaml_map_start(&y, true);
        prism_yaml_kv_str(&y, "name", P->o->configs[c].name);
        prism_yaml_kv_str(&y, "hash", P->hashes[c]);
        prism_yaml_scalar(&y, "archs", false);
        emit_archs(&y, a, n);
        prism_yaml_map_end(&y);
    }
    prism_yaml_seq_end(&y);
    prism_yaml_scalar(&y, "files", false);
    prism_yaml_seq_start(&y, false);
    for (size_t i = 0; i < list.n && st == PRISM_OK; i++) {
        const prism_fs_item *it = &list.items[i];
        if (it->dir || !strcmp(it->path, PRISM_PACK_MANIFEST))
            continue;
        int64_t size = 0;
        if (!it->regular)
            st = prism_errorf(P->err, sizeof P->err, PRISM_ERR_IO,
                              "pack: %s/%s is not a regular file", P->dir,
                              it->path);
        else if (!prism_fs_join(path, sizeof path, P->dir, it->path))
            st = prism_errorf(P->err, sizeof P->err, PRISM_ERR_IO,
                              "pack: path too long: %s", it->path);
        else
            st = prism_fs_sha256_file(path, hex, &size, P->err, sizeof P->err);
        if (st != PRISM_OK)
            break;
        prism_yaml_map_start(&y, true);
        prism_yaml_kv_str(&y, "path", it->path);
        prism_yaml_kv_int(&y, "size", (long long)size);
        prism_yaml_kv_str(&y, "sha256", hex);
        prism_yaml_map_end(&y);
        P->rep->files++;
        P->rep->bytes += size;
    }
    prism_yaml_seq_end(&y);
    prism_yaml_map_end(&y);
    prism_fs_list_free(&list);
    char *text = NULL;
    size_t size = 0;
    prism_status st2 = prism_yaml_out_end(&y, &text, &size, P->err,
                                          st == PRISM_OK ? sizeof P->err : 0);
    if (st == PRISM_OK)
        st = st2;
    if (st == PRISM_OK &&
        !prism_fs_join(path, sizeof path, P->dir, PRISM_PACK_MANIFEST))
        st = prism_errorf(P->err, sizeof P->err, PRISM_ERR_IO,
                          "pack: path too long: %s", P->dir);
    if (st == PRISM_OK)
        st = prism_fs_write_atomic(path, text, size, P->err, sizeof P->err);
    free(text);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Creates the directory the pack is assembled in. */
static prism_status make_pack_dir(packer *P, bool tar, bool *made) {
    const char *out = P->o->output;
    *made = false;
    if (tar) {
        int n = snprintf(P->dir, sizeof P->dir, "%s.d.XXXXXX", out);
        if (n < 0 || (size_t)n >= sizeof P->dir || !mkdtemp(P->dir))
            return prism_errorf(P->err, sizeof P->err, PRISM_ERR_IO,
                                "pack: cannot create a directory beside %s: %s",
                                out, strerror(errno));
        *made = true;
        return PRISM_OK;
    }
    if (prism_check_path_length(out, "pack output", P->err, sizeof P->err))
        return PRISM_ERR_INVALID_ARGUMENT; /* never a shortened path */
    prism_strlcpy(P->dir, out, sizeof P->dir);
    for (size_t n = strlen(P->dir); n > 1 && P->dir[n - 1] == '/'; n--)
        P->dir[n - 1] = '\0'; /* as the cache spells its directory */
    if (access(out, F_OK) == 0) {
        if (!prism_fs_dir_empty(out))
            return prism_errorf(P->err, sizeof P->err, PRISM_ERR_IO,
                                "pack: %s exists and is not an empty "
                                "directory; choose a new one",
                                out);
        return PRISM_OK;
    }
    prism_status st = prism_fs_mkdir_p(out, 0755, P->err, sizeof P->err);
    *made = st == PRISM_OK;
    return st;
}

prism_status prism_pack_create(prism_context *ctx, const prism_pack_options *o,
                               prism_pack_report *rep) {
    if (!ctx || !o || !rep || !o->output || (!o->configs && o->n_configs))
        return prism_context_fail(ctx, PRISM_ERR_NULL_POINTER,
                                  "prism_pack_create: NULL argument");
    memset(rep, 0, sizeof *rep);
    packer *P = calloc(1, sizeof *P);
    if (!P)
        return prism_context_fail(ctx, PRISM_ERR_OUT_OF_MEMORY,
                                  "out of memory");
    P->ctx = ctx;
    P->o = o;
    P->rep = rep;
    bool tar = ends_with(o->output, ".tar"), made = false;
    int64_t created = (int64_t)time(NULL);
    prism_status st = PRISM_ERR_INVALID_ARGUMENT;
    if (o->n_configs < 1 || o->n_archs < 0 || o->n_archs > PRISM_MAX_TARGETS) {
        prism_errorf(P->err, sizeof P->err, st,
                     "pack: need at least one config and at most %d archs",
                     PRISM_MAX_TARGETS);
        goto done;
    }
    P->hashes = calloc((size_t)o->n_configs, sizeof *P->hashes);
    if (!P->hashes) {
        st = prism_errorf(P->err, sizeof P->err, PRISM_ERR_OUT_OF_MEMORY,
                          "out of memory");
        goto done;
    }
    for (int c = 0; c < o->n_configs; c++)
        if ((st = prism_config_validate(&o->configs[c], P->err,
                                        sizeof P->err)) != PRISM_OK ||
            (st = prism_tune_config_hash(&o->configs[c], P->hashes[c])) !=
                PRISM_OK)
            goto done;
    if ((st = make_pack_dir(P, tar, &made)) != PRISM_OK)
        goto done;
    prism_context_options po;
    prism_context_options_init(&po);
    po.log = ctx->options.log;
    po.log_user = ctx->options.log_user;
    po.log_level = ctx->options.log_level;
    po.cache_dir = P->dir;
    po.cache_path = ""; /* only the pack: every kernel must land in it */
    po.cache_max_bytes = INT64_MAX / 4;
    po.compile_threads = ctx->options.compile_threads;
    if ((st = prism_context_create(&po, &P->pctx)) != PRISM_OK ||
        strcmp(prism_context_cache_dir(P->pctx), P->dir)) {
        st = prism_errorf(P->err, sizeof P->err, PRISM_ERR_CACHE,
                          "pack: cannot use %s as a kernel cache", P->dir);
        goto done;
    }
    for (int c = 0; c < o->n_configs && st == PRISM_OK; c++)
        st = copy_tuning(P, c);
    if (st == PRISM_OK && (st = build_all(P)) == PRISM_OK) {
        prism_counters cn;
        prism_context_counters(P->pctx, &cn);
        rep->compiles = cn.compiles;
        st = write_manifest(P, created);
    }
    if (st == PRISM_OK && tar)
        st = prism_tar_write_dir(P->dir, PRISM_PACK_MANIFEST, o->output,
                                 created, P->err, sizeof P->err);
done:
    prism_context_destroy(P->pctx);
    if (made && (tar || st != PRISM_OK))
        prism_fs_rm_rf(P->dir, NULL, 0);
    if (st != PRISM_OK)
        prism_context_fail(ctx, st, P->err);
    free(P->hashes);
    free(P->copies);
    free(P);
    return st;
}
