/*
 * qkv_file.c - reads the .qkv files of real Q/K/V (format: qkv_file.h).
 *
 * The header is JSON written by Python's json module.  A full JSON library
 * would be a dependency for one small, flat object, so a strict little
 * parser below turns it into a token array (objects, arrays, strings,
 * numbers, literals, with their extents), and the loader looks up the
 * keys it needs.  Every size in the header is checked against the file
 * before any tensor is used: shapes against the declared heads, tokens and
 * head dim, byte counts against the shapes, offsets against the data.
 */
#include "reference/qkv_file.h"
#include "base/base.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- a strict JSON tokenizer -------------------------------------------- */

typedef enum { J_OBJECT, J_ARRAY, J_STRING, J_NUMBER, J_LITERAL } jtype;

typedef struct jtok {
    jtype type;
    int start, end; /* text extent; strings without their quotes */
    int size;       /* members (object: keys) or items            */
    int next;       /* index of the token after this value        */
} jtok;

typedef struct jparser {
    const char *s;
    int len, pos, depth;
    jtok *tok;
    int n, cap;
} jparser;

static void skip_ws(jparser *p) {
    while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]))
        p->pos++;
}

static int new_tok(jparser *p, jtype type, int start) {
    if (p->n == p->cap)
        return -1;
    p->tok[p->n] = (jtok){type, start, start, 0, 0};
    return p->n++;
}

static int parse_value(jparser *p);

static int parse_string(jparser *p) {
    int t = new_tok(p, J_STRING, p->pos + 1);
    if (t < 0)
        return -1;
    for (p->pos++; p->pos < p->len; p->pos++) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->tok[t].end = p->pos++;
            return t;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\' && ++p->pos >= p->len)
            return -1;
    }
    return -1;
}

static int parse_number(jparser *p) {
    int t = new_tok(p, J_NUMBER, p->pos);
    if (t < 0)
        return -1;
    while (p->pos < p->len && strchr("+-0123456789.eE", p->s[p->pos]))
        p->pos++;
    p->tok[t].end = p->pos;
    return p->tok[t].end > p->tok[t].start ? t : -1;
}

static int parse_literal(jparser *p) {
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < PRISM_ARRAY_LEN(words); i++) {
        int n = (int)strlen(words[i]);
        if (p->len - p->pos >= n && !memcmp(p->s + p->pos, words[i], (size_t)n)) {
            int t = new_tok(p, J_LITERAL, p->pos);
            if (t < 0)
                return -1;
            p->pos += n;
            p->tok[t].end = p->pos;
            return t;
        }
    }
    return -1;
}

/* An object or array: members separated by commas up to the closer. */
static int parse_container(jparser *p, bool object) {
    int t = new_tok(p, object ? J_OBJECT : J_ARRAY, p->pos);
    if (t < 0 || ++p->depth > 8)
        return -1;
    char close = object ? '}' : ']';
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return t;
    }
    for (;;) {
        skip_ws(p);
        if (object) {
            if (p->pos >= p->len || p->s[p->pos] != '"' || parse_string(p) < 0)
                return -1;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos++] != ':')
                return -1;
        }
        if (parse_value(p) < 0)
            return -1;
        p->tok[t].size++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            p->depth--;
            return t;
        }
        return -1;
    }
}

static int parse_value(jparser *p) {
    skip_ws(p);
    if (p->pos >= p->len)
        return -1;
    char c = p->s[p->pos];
    int t = c == '{'   ? parse_container(p, true)
            : c == '[' ? parse_container(p, false)
            : c == '"' ? parse_string(p)
            : (c == '-' || (c >= '0' && c <= '9')) ? parse_number(p)
                                                    : parse_literal(p);
    if (t >= 0)
        p->tok[t].next = p->n;
    return t;
}

/* Index of the value of `key` in object token obj, or -1. */
static int jget(const jparser *p, int obj, const char *key) {
    if (obj < 0 || p->tok[obj].type != J_OBJECT)
        return -1;
    size_t kl = strlen(key);
    for (int i = obj + 1, m = 0; m < p->tok[obj].size; m++) {
        const jtok *k = &p->tok[i];
        int v = i + 1;
        if ((size_t)(k->end - k->start) == kl &&
            !memcmp(p->s + k->start, key, kl))
            return v;
        i = p->tok[v].next;
    }
    return -1;
}

/* A non-negative integer below 2^53. */
static bool jint(const jparser *p, int t, int64_t *out) {
    if (t < 0 || p->tok[t].type != J_NUMBER)
        return false;
    int64_t v = 0;
    for (int i = p->tok[t].start; i < p->tok[t].end; i++) {
        char c = p->s[i];
        if (c < '0' || c > '9' || v > (INT64_C(1) << 53) / 10)
            return false;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

/* A decimal number such as 100000.0 or 1e4, without locale. */
static bool jdouble(const jparser *p, int t, double *out) {
    if (t < 0 || p->tok[t].type != J_NUMBER)
        return false;
    const char *s = p->s + p->tok[t].start, *end = p->s + p->tok[t].end;
    double v = 0, scale = 1;
    int exp = 0, esign = 1, digits = 0;
    bool neg = s < end && *s == '-';
    s += neg;
    for (; s < end && *s >= '0' && *s <= '9'; s++, digits++)
        v = v * 10 + (*s - '0');
    if (s < end && *s == '.')
        for (s++; s < end && *s >= '0' && *s <= '9'; s++, digits++)
            v += (*s - '0') * (scale /= 10);
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '-' || *s == '+'))
            esign = *s++ == '-' ? -1 : 1;
        for (; s < end && *s >= '0' && *s <= '9' && exp < 400; s++)
            exp = exp * 10 + (*s - '0');
    }
    if (s != end || !digits)
        return false;
    for (; exp > 0; exp--)
        v = esign > 0 ? v * 10 : v / 10;
    *out = neg ? -v : v;
    return true;
}

static bool jstr_is(const jparser *p, int t, const char *want) {
    return t >= 0 && p->tok[t].type == J_STRING &&
           (size_t)(p->tok[t].end - p->tok[t].start) == strlen(want) &&
           !memcmp(p->s + p->tok[t].start, want, strlen(want));
}

/* A string value for a message: printable ASCII, escapes left as written. */
static void jstr_copy(const jparser *p, int t, char *out, size_t size) {
    size_t n = 0;
    for (int i = t >= 0 ? p->tok[t].start : 0;
         t >= 0 && p->tok[t].type == J_STRING && i < p->tok[t].end &&
         n + 1 < size;
         i++) {
        unsigned char c = (unsigned char)p->s[i];
        out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[n] = '\0';
}

/* ---- the loader ------------------------------------------------------------ */

typedef struct loading {
    const char *path;
    char *err;
    size_t err_size;
    const unsigned char *data; /* the tensors' bytes */
    uint64_t data_size;
    prism_qkv_file *f;
} loading;

static prism_status bad(const loading *L, const char *what) {
    return prism_errorf(L->err, L->err_size, PRISM_ERR_INVALID_ARGUMENT,
                        "%s: not a valid .qkv file: %s", L->path, what);
}

static prism_status read_all(const char *path, unsigned char **buf,
                             uint64_t *size, char *err, size_t err_size) {
    FILE *fp = fopen(path, "rb");
    struct stat st;
    if (!fp || fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = fp ? (errno ? errno : EINVAL) : errno;
        if (fp)
            fclose(fp);
        return prism_errorf(err, err_size, PRISM_ERR_IO, "%s: cannot read: %s",
                            path, strerror(e));
    }
    *size = (uint64_t)st.st_size;
    *buf = malloc(*size ? (size_t)*size : 1);
    if (!*buf) {
        fclose(fp);
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "%s: out of memory for %llu bytes", path,
                            (unsigned long long)*size);
    }
    size_t got = fread(*buf, 1, (size_t)*size, fp);
    fclose(fp);
    if (got != (size_t)*size)
        return prism_errorf(err, err_size, PRISM_ERR_IO,
                            "%s: short read (%zu of %llu bytes)", path, got,
                            (unsigned long long)*size);
    return PRISM_OK;
}

/* One entry of "tensors": its shape, byte count and place in the data. */
static prism_status take_tensor(loading *L, const jparser *p, int e) {
    prism_qkv_file *f = L->f;
    int name = jget(p, e, "name"), shape = jget(p, e, "shape");
    int64_t off, bytes, dim[3];
    if (!jint(p, jget(p, e, "offset"), &off) ||
        !jint(p, jget(p, e, "bytes"), &bytes) || shape < 0 ||
        p->tok[shape].type != J_ARRAY || p->tok[shape].size != 3)
        return bad(L, "a tensor entry lacks name, shape [H, S, D], offset or "
                      "bytes");
    for (int i = 0; i < 3; i++)
        if (!jint(p, shape + 1 + i, &dim[i]))
            return bad(L, "a tensor shape is not three integers");
    void **slot = jstr_is(p, name, "q")   ? &f->q
                  : jstr_is(p, name, "k") ? &f->k
                  : jstr_is(p, name, "v") ? &f->v
                  : jstr_is(p, name, "o") ? &f->o
                                          : NULL;
    if (!slot)
        return PRISM_OK; /* an unknown tensor is skipped */
    int64_t heads = (slot == &f->k || slot == &f->v) ? f->kv_heads : f->q_heads;
    size_t es = prism_dtype_size(f->dtype);
    if (dim[0] != heads || dim[1] != f->tokens || dim[2] != f->head_dim)
        return bad(L, "a tensor's shape does not match q_heads/kv_heads, "
                      "tokens and head_dim");
    if (bytes != heads * f->tokens * f->head_dim * (int64_t)es ||
        off % (int64_t)es || (uint64_t)off > L->data_size ||
        (uint64_t)bytes > L->data_size - (uint64_t)off)
        return bad(L, "a tensor's bytes or offset do not fit its shape or "
                      "the file (truncated?)");
    if (*slot)
        return bad(L, "a tensor is listed twice");
    *slot = (void *)(L->data + off);
    return PRISM_OK;
}

static prism_status take_shapes(loading *L, const jparser *p) {
    prism_qkv_file *f = L->f;
    int64_t v[5];
    const char *keys[5] = {"tokens", "layer", "q_heads", "kv_heads", "head_dim"};
    for (int i = 0; i < 5; i++)
        if (!jint(p, jget(p, 0, keys[i]), &v[i]))
            return bad(L, "the header lacks tokens, layer, q_heads, kv_heads "
                          "or head_dim as non-negative integers");
    if (v[0] < 1 || v[0] > (1 << 24) || v[1] > 1 << 20 || v[2] < 1 ||
        v[2] > 1024 || v[3] < 1 || v[3] > 1024 || v[2] % v[3] || v[4] < 2 ||
        v[4] > 1024 || v[4] % 2)
        return bad(L, "tokens, heads or head_dim out of range (q_heads must "
                      "be a multiple of kv_heads, head_dim even)");
    f->tokens = (int)v[0];
    f->layer = (int)v[1];
    f->q_heads = (int)v[2];
    f->kv_heads = (int)v[3];
    f->head_dim = (int)v[4];
    int layout = jget(p, 0, "rope_layout");
    if (jstr_is(p, layout, "half"))
        f->rope_layout = PRISM_ROPE_HALF;
    else if (jstr_is(p, layout, "interleaved"))
        f->rope_layout = PRISM_ROPE_INTERLEAVED;
    else
        return bad(L, "rope_layout is not \"half\" or \"interleaved\"");
    if (!jdouble(p, jget(p, 0, "rope_theta"), &f->rope_theta) ||
        !(f->rope_theta > 0))
        return bad(L, "rope_theta is not a number > 0");
    jstr_copy(p, jget(p, 0, "text"), f->text, sizeof f->text);
    jstr_copy(p, jget(p, 0, "model"), f->model, sizeof f->model);
    return PRISM_OK;
}

static prism_status take_header(loading *L, const jparser *p) {
    prism_qkv_file *f = L->f;
    int64_t version;
    if (p->tok[0].type != J_OBJECT ||
        !jstr_is(p, jget(p, 0, "format"), "prism-qkv"))
        return bad(L, "the header is not a prism-qkv object");
    if (!jint(p, jget(p, 0, "version"), &version) || version != 1)
        return bad(L, "version is not 1, the one this reader knows");
    int dt = jget(p, 0, "dtype");
    if (jstr_is(p, dt, "fp32"))
        f->dtype = PRISM_DTYPE_FP32;
    else if (jstr_is(p, dt, "bf16"))
        f->dtype = PRISM_DTYPE_BF16;
    else
        return bad(L, "dtype is not \"fp32\" or \"bf16\"");
    prism_status st = take_shapes(L, p);
    int list = jget(p, 0, "tensors");
    if (st == PRISM_OK && (list < 0 || p->tok[list].type != J_ARRAY))
        return bad(L, "the header has no tensors list");
    for (int i = 0, e = list + 1; st == PRISM_OK && i < p->tok[list].size;
         i++, e = p->tok[e].next)
        st = take_tensor(L, p, e);
    if (st == PRISM_OK && (!f->q || !f->k || !f->v))
        return bad(L, "q, k or v is missing");
    return st;
}

static prism_status parse_header(loading *L, const unsigned char *buf,
                                 uint64_t size) {
    uint32_t n = (uint32_t)buf[8] | (uint32_t)buf[9] << 8 |
                 (uint32_t)buf[10] << 16 | (uint32_t)buf[11] << 24;
    if (n > PRISM_QKV_MAX_HEADER || 12 + (uint64_t)n > size)
        return bad(L, "the header length is beyond the file or over 1 MiB");
    jparser p = {(const char *)buf + 12, (int)n, 0, 0, NULL, 0, 4096};
    p.tok = malloc((size_t)p.cap * sizeof *p.tok);
    if (!p.tok)
        return prism_errorf(L->err, L->err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "%s: out of memory", L->path);
    prism_status st = PRISM_OK;
    if (parse_value(&p) != 0) {
        st = bad(L, "the header is not valid JSON (or too large)");
    } else {
        skip_ws(&p);
        if (p.pos != p.len)
            st = bad(L, "text after the header's JSON object");
    }
    L->data = buf + 12 + n;
    L->data_size = size - 12 - n;
    if (st == PRISM_OK)
        st = take_header(L, &p);
    free(p.tok);
    return st;
}

prism_status prism_qkv_load(const char *path, prism_qkv_file *out, char *err,
                            size_t err_size) {
    unsigned char *buf = NULL;
    uint64_t size = 0;
    if (!path || !out)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_qkv_load: %s is NULL", path ? "out" : "path");
    memset(out, 0, sizeof *out);
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1)
        return prism_errorf(err, err_size, PRISM_ERR_UNSUPPORTED,
                            "%s: .qkv data is little-endian; this host is not",
                            path);
    prism_status st = read_all(path, &buf, &size, err, err_size);
    loading L = {path, err, err_size, NULL, 0, out};
    if (st == PRISM_OK && (size < 12 || memcmp(buf, PRISM_QKV_MAGIC, 8)))
        st = bad(&L, "no PRISMQKV magic at the start");
    if (st == PRISM_OK)
        st = parse_header(&L, buf, size);
    if (st != PRISM_OK) {
        free(buf);
        memset(out, 0, sizeof *out);
        return st;
    }
    out->storage_ = buf;
    return PRISM_OK;
}

void prism_qkv_free(prism_qkv_file *file) {
    if (!file)
        return;
    free(file->storage_);
    memset(file, 0, sizeof *file);
}

prism_tensor_view prism_qkv_view(const prism_qkv_file *f, char which) {
    void *data = which == 'q' ? f->q : which == 'k' ? f->k : which == 'v' ? f->v
                 : which == 'o' ? f->o : NULL;
    int64_t heads = (which == 'k' || which == 'v') ? f->kv_heads : f->q_heads;
    return prism_view_bhsd(data, f->dtype, 1, heads, f->tokens, f->head_dim);
}
