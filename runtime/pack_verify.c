/*
 * pack_verify.c - `prism cache verify PACK`: a pack against its manifest.
 *
 * Both forms of a pack reduce to the same check: a list of the files it
 * holds (path, size, SHA-256) and the manifest's list.  A directory is
 * walked without following links; an archive is read member by member and
 * hashed in memory.  Every difference is reported, not just the first, so
 * one run tells what to re-ship: a file whose bytes changed (ALTERED), a
 * file the manifest lists that is absent (MISSING), a file it does not
 * list (EXTRA), and anything that is not a plain file.  The manifest has
 * no signature: it protects against corruption and accidental edits, not
 * against someone who rewrites it (sign the archive for that).
 */
#include "runtime/pack.h"

#include "compile/nvrtc_compile.h"
#include "cache/tar.h"
#include "base/fs.h"
#include "tune/tune_yaml.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct held { /* one file found in the pack */
    char *path;
    int64_t size;
    char sha[65];
    bool listed;
} held;

typedef struct verifier {
    prism_pack_line_fn fn;
    void *user;
    int problems;
    held *files;
    size_t n, cap;
    char *manifest; /* its text, when found */
    size_t manifest_size;
} verifier;

static void problem(verifier *V, const char *fmt, ...) PRISM_PRINTF(2, 3);
static void problem(verifier *V, const char *fmt, ...) {
    char line[PRISM_PATH_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (strncmp(line, "note:", 5))
        V->problems++;
    if (V->fn)
        V->fn(V->user, line);
}

static held *find(verifier *V, const char *path) {
    for (size_t i = 0; i < V->n; i++)
        if (!strcmp(V->files[i].path, path))
            return &V->files[i];
    return NULL;
}

static prism_status add_held(verifier *V, const char *path, int64_t size,
                             const char *sha, char *err, size_t err_size) {
    if (find(V, path)) {
        problem(V, "DUPLICATE: %s (stored twice)", path);
        return PRISM_OK;
    }
    if (V->n == V->cap) {
        size_t cap = V->cap ? V->cap * 2 : 64;
        held *v = realloc(V->files, cap * sizeof *v);
        if (!v)
            return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                                "out of memory");
        V->files = v;
        V->cap = cap;
    }
    held *h = &V->files[V->n];
    size_t len = strlen(path) + 1;
    if (!(h->path = malloc(len)))
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "out of memory");
    memcpy(h->path, path, len);
    h->size = size;
    memcpy(h->sha, sha, 65);
    h->listed = false;
    V->n++;
    return PRISM_OK;
}

static prism_status collect_dir(verifier *V, const char *dir, char *err,
                                size_t err_size) {
    prism_fs_list list;
    prism_status st = prism_fs_walk(dir, &list, err, err_size);
    char path[PRISM_PATH_MAX * 2], hex[65];
    for (size_t i = 0; st == PRISM_OK && i < list.n; i++) {
        const prism_fs_item *it = &list.items[i];
        int64_t size = 0;
        if (it->dir)
            continue;
        if (!it->regular) {
            problem(V, "BAD: %s is not a regular file", it->path);
            continue;
        }
        if (!prism_fs_join(path, sizeof path, dir, it->path)) {
            problem(V, "BAD: %s has too long a path", it->path);
            continue;
        }
        if (!strcmp(it->path, PRISM_PACK_MANIFEST)) {
            bool absent;
            st = prism_fs_read_all(path, 64u << 20, &V->manifest,
                                   &V->manifest_size, &absent, err, err_size);
            continue;
        }
        if ((st = prism_fs_sha256_file(path, hex, &size, err, err_size)) ==
            PRISM_OK)
            st = add_held(V, it->path, size, hex, err, err_size);
    }
    prism_fs_list_free(&list);
    return st;
}

static prism_status tar_member(void *user, const char *name, char type,
                               const unsigned char *data, size_t size,
                               char *err, size_t err_size) {
    verifier *V = user;
    if (type == '5')
        return PRISM_OK;
    if (type != '0') {
        problem(V, "BAD: %s is not a regular file (type '%c')", name, type);
        return PRISM_OK;
    }
    if (!strcmp(name, PRISM_PACK_MANIFEST)) {
        if (V->manifest) {
            problem(V, "DUPLICATE: %s (stored twice)", name);
            return PRISM_OK;
        }
        if (!(V->manifest = malloc(size + 1)))
            return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                                "out of memory");
        memcpy(V->manifest, data, size);
        V->manifest[size] = '\0';
        V->manifest_size = size;
        return PRISM_OK;
    }
    unsigned char digest[32];
    char hex[65];
    prism_sha256(data, size, digest);
    prism_hex(digest, 32, hex);
    return add_held(V, name, (int64_t)size, hex, err, err_size);
}

/* A manifest path must stay inside the pack. */
static bool safe_path(const char *p) {
    if (!*p || p[0] == '/' || strstr(p, "//"))
        return false;
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        s += n;
        if (*s == '/')
            s++;
    }
    return true;
}

static void check_manifest(verifier *V) {
    char why[PRISM_ERRMSG_MAX], nvrtc[256], path[PRISM_PATH_MAX], sha[65];
    prism_yaml_in in;
    yaml_node_t *root, *files;
    int64_t format, size;
    if (!prism_yaml_in_load(&in, V->manifest, V->manifest_size, why,
                            sizeof why) ||
        (root = prism_yaml_root(&in))->type != YAML_MAPPING_NODE ||
        !prism_yaml_int(&in, root, "format", 0, INT32_MAX, &format) ||
        !prism_yaml_str(&in, root, "nvrtc_version", nvrtc, sizeof nvrtc) ||
        !(files = prism_yaml_need(&in, root, "files", YAML_SEQUENCE_NODE))) {
        if (in.loaded && prism_yaml_root(&in)->type != YAML_MAPPING_NODE)
            /* the only failure above that leaves why unset */
            snprintf(why, sizeof why, "not a mapping");
        problem(V, "BAD: %s: %s", PRISM_PACK_MANIFEST, why);
        prism_yaml_in_free(&in);
        return;
    }
    if (format != PRISM_PACK_FORMAT) {
        problem(V, "BAD: %s: format %lld; this build reads format %d",
                PRISM_PACK_MANIFEST, (long long)format, PRISM_PACK_FORMAT);
        prism_yaml_in_free(&in);
        return;
    }
    if (strcmp(nvrtc, prism_nvrtc_version()))
        problem(V,
                "note: packed with NVRTC %s, this host has %s: its "
                "kernels will miss and be compiled",
                nvrtc, prism_nvrtc_version());
    for (yaml_node_item_t *it = files->data.sequence.items.start;
         it < files->data.sequence.items.top; it++) {
        yaml_node_t *m = prism_yaml_node(&in, *it);
        if (!m || m->type != YAML_MAPPING_NODE ||
            !prism_yaml_str(&in, m, "path", path, sizeof path) ||
            !prism_yaml_int(&in, m, "size", 0, INT64_MAX, &size) ||
            !prism_yaml_hex64(&in, m, "sha256", sha)) {
            problem(V, "BAD: %s: %s", PRISM_PACK_MANIFEST,
                    m ? why : "a file entry is not a mapping");
            continue;
        }
        if (!safe_path(path) || !strcmp(path, PRISM_PACK_MANIFEST)) {
            problem(V, "BAD: %s lists an invalid path '%s'",
                    PRISM_PACK_MANIFEST, path);
            continue;
        }
        held *h = find(V, path);
        if (!h) {
            problem(V, "MISSING: %s", path);
        } else if (h->listed) {
            problem(V, "BAD: %s lists %s twice", PRISM_PACK_MANIFEST, path);
        } else {
            h->listed = true;
            if (h->size != size)
                problem(V, "ALTERED: %s (%lld bytes, the manifest says %lld)",
                        path, (long long)h->size, (long long)size);
            else if (strcmp(h->sha, sha))
                problem(V,
                        "ALTERED: %s (sha256 %.16s..., the manifest says "
                        "%.16s...)",
                        path, h->sha, sha);
        }
    }
    for (size_t i = 0; i < V->n; i++)
        if (!V->files[i].listed)
            problem(V, "EXTRA: %s (not in the manifest)", V->files[i].path);
    prism_yaml_in_free(&in);
}

prism_status prism_pack_verify(const char *pack, prism_pack_line_fn fn,
                               void *user, int *problems, int *files, char *err,
                               size_t err_size) {
    if (problems)
        *problems = 0;
    if (files)
        *files = 0;
    if (!pack)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_pack_verify: NULL pack");
    verifier V = {.fn = fn, .user = user};
    struct stat st_;
    prism_status st;
    if (stat(pack, &st_) != 0)
        return prism_errorf(err, err_size, PRISM_ERR_IO,
                            "%s: no such pack (a directory or a .tar)", pack);
    if (S_ISDIR(st_.st_mode))
        st = collect_dir(&V, pack, err, err_size);
    else
        st = prism_tar_read(pack, tar_member, &V, err, err_size);
    if (st == PRISM_OK) {
        if (!V.manifest)
            problem(&V,
                    "MISSING: %s (not a pack, or its manifest was "
                    "deleted)",
                    PRISM_PACK_MANIFEST);
        else
            check_manifest(&V);
        st = V.problems ? PRISM_ERR_CACHE : PRISM_OK;
    }
    if (problems)
        *problems = V.problems;
    if (files)
        *files = (int)V.n;
    for (size_t i = 0; i < V.n; i++)
        free(V.files[i].path);
    free(V.files);
    free(V.manifest);
    return st;
}
