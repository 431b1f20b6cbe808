/*
 * workload.c - synthetic Q/K/V with known attention structure, built
 * deterministically from a seed, with RoPE applied for real.
 *
 * Real attention heads show a handful of patterns (sinks, sliding windows,
 * "slash" diagonals at fixed offsets, vertical columns, retrieval of far
 * facts).  Prism's claim is about where those patterns live in the RoPE
 * spectrum: positional ones in the fast-rotating (high-frequency) pairs,
 * semantic ones in the slow (low-frequency) pairs.  Each pattern here is
 * built in the band that carries it in real models, BEFORE RoPE, and then
 * rotated by the config's theta and layout, so block pooling attenuates it
 * exactly as it would attenuate a real head.  reference/WORKLOADS.md gives
 * the construction and parameters; this comment only the mechanics:
 *
 *  - Positional pairs i in [0, D/4): a head's pre-RoPE q and k are constant
 *    in these pairs, so the rotated dot product is a function of t - s only:
 *      sum_i Re(zq_i conj(zk_i) exp(1j (t - s) w_i)),  w_i = theta^(-2i/D).
 *    Choosing zq_i conj(zk_i) = sqrt(D) * sum_o g_o exp(-1j o w_i) / P puts
 *    logit peaks of height about g_o at the offsets t - s = o.
 *  - Semantic pairs i in [D/2 - D/8, D/2): unit directions (orthonormal
 *    within the subspace) added with amplitude sqrt(G sqrt(D)) on both
 *    sides, so matching tokens gain about G in logit (q.k / sqrt(D)).
 *  - Everything else is Gaussian noise; V is Gaussian.
 *
 * Random streams are keyed by (seed, sequence, head, role), so the result
 * does not depend on the thread count or the order of work.
 */
#include "reference/ref_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Logit gains (in units of q.k / sqrt(D)) and noise levels.  Local keys
 * also share the query's topic (GAIN_TOPIC below), so the patterns that
 * reach outside the query's span get that much more to keep their share. */
#define GAIN_SINK 17.0
#define GAIN_LOCAL 14.0
#define GAIN_SLASH_NEAR 12.0 /* shared by the offsets 0..16 */
#define GAIN_SLASH_FAR 15.0
#define GAIN_VERTICAL 16.0
#define GAIN_NEEDLE 17.0
#define NOISE_STRUCTURED 1.0 /* per-dim std of q and k noise */
#define NOISE_RANDOM 1.3
/* Mean vectors of K and Q (norms in units of sqrt(D)): real keys carry a
 * large mean in slowly rotating dims, which dominates their pooled energy.
 * A key mean only shifts each query's logits by a constant (no effect on
 * attention); the query mean adds a little per-key noise. */
#define KEY_MEAN_NORM 2.0
#define QUERY_MEAN_NORM 0.5
/* Topics: the text is a sequence of spans of TOPIC_SPAN tokens, each about
 * one of TOPICS recurring topics; tokens of the same topic attract each
 * other a little (GAIN_TOPIC).  This is the block-coherent semantic
 * structure real text has and pooling keeps. */
#define TOPICS PRISM_WORKLOAD_TOPICS
#define TOPIC_SPAN PRISM_WORKLOAD_TOPIC_SPAN
#define GAIN_TOPIC 3.0
#define SEMANTIC_DIRECTIONS (2 + PRISM_WORKLOAD_MAX_NEEDLES + TOPICS)

static const char *const workload_names[] = {
    "sink", "local", "slash", "vertical", "needle", "random", "mixed"};

const char *prism_workload_name(prism_workload_kind kind) {
    return (unsigned)kind < PRISM_ARRAY_LEN(workload_names)
               ? workload_names[kind]
               : NULL;
}

prism_status prism_workload_parse(const char *name, prism_workload_kind *out) {
    for (size_t i = 0; name && i < PRISM_ARRAY_LEN(workload_names); i++)
        if (!strcmp(name, workload_names[i])) {
            *out = (prism_workload_kind)i;
            return PRISM_OK;
        }
    return PRISM_ERR_INVALID_ARGUMENT;
}

/* ------------------------------------------------------------------------ */
/* Random numbers: splitmix64 seeding a xoshiro256** stream                 */
/* ------------------------------------------------------------------------ */
typedef struct rng {
    uint64_t s[4];
    bool has_spare;
    double spare;
} rng;

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

enum { ROLE_LAYOUT = 1, ROLE_Q = 2, ROLE_K = 3, ROLE_V = 4 };

static rng rng_stream(uint64_t seed, int64_t seq, int64_t head, int role) {
    uint64_t st = seed;
    uint64_t key = splitmix64(&st) ^ ((uint64_t)seq * 0x632be59bd9b4e019ull) ^
                   ((uint64_t)head * 0x85157af5ull) ^ ((uint64_t)role << 56);
    rng r = {{0, 0, 0, 0}, false, 0.0};
    for (int i = 0; i < 4; i++)
        r.s[i] = splitmix64(&key);
    return r;
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r) {
    uint64_t result = rotl(r->s[1] * 5, 7) * 9, t = r->s[1] << 17;
    r->s[2] ^= r->s[0];
    r->s[3] ^= r->s[1];
    r->s[1] ^= r->s[2];
    r->s[0] ^= r->s[3];
    r->s[2] ^= t;
    r->s[3] = rotl(r->s[3], 45);
    return result;
}

/* Uniform in (0, 1). */
static double rng_uniform(rng *r) {
    return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [lo, hi] (hi >= lo). */
static int64_t rng_range(rng *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)(rng_uniform(r) * (double)(hi - lo + 1));
}

/* Standard normal by Box-Muller. */
static double rng_normal(rng *r) {
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1)), ang = 6.283185307179586 * u2;
    r->spare = rad * sin(ang);
    r->has_spare = true;
    return rad * cos(ang);
}

/* ------------------------------------------------------------------------ */
/* RoPE                                                                     */
/* ------------------------------------------------------------------------ */

static inline void pair_dims(int D, prism_rope_layout layout, int pair, int *a,
                             int *b) {
    if (layout == PRISM_ROPE_INTERLEAVED) {
        *a = 2 * pair;
        *b = 2 * pair + 1;
    } else {
        *a = pair;
        *b = pair + D / 2;
    }
}

static inline double rope_freq(double theta, int pair, int D) {
    return pow(theta, -2.0 * pair / D);
}

void prism_ref_apply_rope(float *x, int64_t n_tokens, int D,
                          int64_t first_position, double theta,
                          prism_rope_layout layout) {
    for (int p = 0; p < D / 2; p++) {
        double w = rope_freq(theta, p, D);
        int a, b;
        pair_dims(D, layout, p, &a, &b);
        for (int64_t r = 0; r < n_tokens; r++) {
            double ang = (double)(first_position + r) * w;
            double c = cos(ang), s = sin(ang);
            float *row = x + r * D;
            double xa = row[a], xb = row[b];
            row[a] = (float)(xa * c - xb * s);
            row[b] = (float)(xa * s + xb * c);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Per-head layout: which components, where, along which directions        */
/* ------------------------------------------------------------------------ */

static unsigned components_of(prism_workload_kind kind, int kv_head) {
    static const unsigned mixed[] = {
        PRISM_PATTERN_SINK | PRISM_PATTERN_LOCAL,
        PRISM_PATTERN_SLASH | PRISM_PATTERN_SINK,
        PRISM_PATTERN_VERTICAL | PRISM_PATTERN_LOCAL,
        PRISM_PATTERN_NEEDLE | PRISM_PATTERN_LOCAL,
        0, /* a random head */
    };
    switch (kind) {
    case PRISM_WORKLOAD_SINK: return PRISM_PATTERN_SINK | PRISM_PATTERN_LOCAL;
    case PRISM_WORKLOAD_LOCAL: return PRISM_PATTERN_LOCAL;
    case PRISM_WORKLOAD_SLASH: return PRISM_PATTERN_SLASH;
    case PRISM_WORKLOAD_VERTICAL:
        return PRISM_PATTERN_VERTICAL | PRISM_PATTERN_LOCAL;
    case PRISM_WORKLOAD_NEEDLE:
        return PRISM_PATTERN_NEEDLE | PRISM_PATTERN_LOCAL;
    case PRISM_WORKLOAD_RANDOM: return 0;
    case PRISM_WORKLOAD_MIXED:
    case PRISM_WORKLOAD_COUNT_: break;
    }
    return mixed[kv_head % (int)PRISM_ARRAY_LEN(mixed)];
}

typedef struct head_layout {
    prism_head_pattern pattern;
    int D, n_pos, n_sem_dims;
    int sem_dims[512];                    /* dims of the semantic pairs */
    double dir[SEMANTIC_DIRECTIONS][512]; /* over sem_dims              */
    double zq_re[256], zq_im[256], zk;    /* positional pairs           */
    double mean_q[1024], mean_k[1024];    /* pre-RoPE means, all dims   */
    double amp_sem;                       /* semantic amplitude         */
    double noise;
} head_layout;

static bool contains(const int64_t *v, int n, int64_t x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

/* Positions of the vertical keys, needles and the slash offset. */
static void place_pattern(prism_head_pattern *p, rng *r, int64_t Sq, int64_t Sk,
                          int block_size) {
    if (p->components & PRISM_PATTERN_SLASH)
        p->slash_far = Sk / 4 >= 64 ? Sk / 4 : 0;
    if (p->components & PRISM_PATTERN_VERTICAL) {
        int64_t hi = Sk / 2 > PRISM_WORKLOAD_SINK_TOKENS ? Sk / 2 : Sk;
        int64_t span = hi - PRISM_WORKLOAD_SINK_TOKENS;
        int want = span < PRISM_WORKLOAD_MAX_VERTICAL
                       ? (int)(span > 0 ? span : 0)
                       : PRISM_WORKLOAD_MAX_VERTICAL;
        while (p->n_vertical < want) {
            int64_t pos = rng_range(r, PRISM_WORKLOAD_SINK_TOKENS, hi - 1);
            if (!contains(p->vertical, p->n_vertical, pos))
                p->vertical[p->n_vertical++] = pos;
        }
    }
    if (p->components & PRISM_PATTERN_NEEDLE) {
        int64_t len = Sk / 16 < block_size ? Sk / 16 : block_size;
        /* keys in [4, Sk/2), queries at absolute positions in
         * [max(Sk - Sq, Sk/2 + len), Sk - len] */
        int64_t q_lo = Sk - Sq > Sk / 2 + len ? Sk - Sq : Sk / 2 + len;
        int64_t q_hi = Sk - len;
        int64_t k_hi = Sk / 2 - len;
        bool room =
            len >= 1 && q_lo <= q_hi && k_hi >= PRISM_WORKLOAD_SINK_TOKENS;
        for (int n = 0; room && n < PRISM_WORKLOAD_MAX_NEEDLES; n++) {
            prism_needle *nd = &p->needles[p->n_needles++];
            nd->length = len;
            nd->key_start = rng_range(r, PRISM_WORKLOAD_SINK_TOKENS, k_hi);
            nd->query_start = rng_range(r, q_lo, q_hi) - (Sk - Sq);
        }
    }
}

/* Orthonormal directions in the semantic subspace (Gram-Schmidt; when the
 * subspace is smaller than the number of directions they repeat). */
static void make_directions(head_layout *L, rng *r) {
    int n = L->n_sem_dims;
    for (int k = 0; k < SEMANTIC_DIRECTIONS; k++) {
        double *u = L->dir[k];
        if (k >= n) {
            memcpy(u, L->dir[k % n], (size_t)n * sizeof *u);
            continue;
        }
        for (;;) {
            for (int d = 0; d < n; d++)
                u[d] = rng_normal(r);
            for (int prev = 0; prev < k; prev++) {
                double dot = 0.0;
                for (int d = 0; d < n; d++)
                    dot += u[d] * L->dir[prev][d];
                for (int d = 0; d < n; d++)
                    u[d] -= dot * L->dir[prev][d];
            }
            double norm = 0.0;
            for (int d = 0; d < n; d++)
                norm += u[d] * u[d];
            if (norm > 1e-6) {
                norm = sqrt(norm);
                for (int d = 0; d < n; d++)
                    u[d] /= norm;
                break;
            }
        }
    }
}

/* Positional coefficients: zq_i conj(zk) = sqrt(D) C_i with zk real and
 * ||zq|| = ||zk|| (keeps the cross terms with noise balanced). */
static void make_positional(head_layout *L, const prism_config *cfg) {
    int P = L->n_pos, D = L->D;
    double c_re[256] = {0}, c_im[256] = {0};
    unsigned comp = L->pattern.components;
    for (int i = 0; i < P; i++) {
        double w = rope_freq(cfg->rope_theta, i, D);
        if (comp & PRISM_PATTERN_LOCAL)
            c_re[i] += GAIN_LOCAL / P;
        if (comp & PRISM_PATTERN_SLASH) {
            int near = PRISM_WORKLOAD_SLASH_NEAR + 1;
            for (int o = 0; o < near; o++) {
                c_re[i] += GAIN_SLASH_NEAR / near / P * cos(o * w);
                c_im[i] -= GAIN_SLASH_NEAR / near / P * sin(o * w);
            }
            if (L->pattern.slash_far > 0) {
                double o = (double)L->pattern.slash_far;
                c_re[i] += GAIN_SLASH_FAR / P * cos(o * w);
                c_im[i] -= GAIN_SLASH_FAR / P * sin(o * w);
            }
        }
    }
    double energy = 0.0;
    for (int i = 0; i < P; i++)
        energy += c_re[i] * c_re[i] + c_im[i] * c_im[i];
    L->zk = pow((double)D * energy / P, 0.25);
    for (int i = 0; i < P; i++) {
        L->zq_re[i] = L->zk > 0 ? sqrt((double)D) * c_re[i] / L->zk : 0.0;
        L->zq_im[i] = L->zk > 0 ? sqrt((double)D) * c_im[i] / L->zk : 0.0;
    }
}

static void layout_for(head_layout *L, const prism_config *cfg,
                       prism_workload_kind kind, uint64_t seed, int b, int g,
                       int64_t Sq, int64_t Sk) {
    memset(L, 0, sizeof *L);
    int D = cfg->head_dim, half = D / 2;
    L->D = D;
    L->pattern.components = components_of(kind, g);
    L->noise = L->pattern.components ? NOISE_STRUCTURED : NOISE_RANDOM;
    L->n_pos = D / 4 > 0 ? D / 4 : 1;
    int n_sem_pairs = D / 8 > 2 ? D / 8 : (half < 2 ? half : 2);
    for (int p = half - n_sem_pairs; p < half; p++) {
        int a, bb;
        pair_dims(D, cfg->rope_layout, p, &a, &bb);
        L->sem_dims[L->n_sem_dims++] = a;
        L->sem_dims[L->n_sem_dims++] = bb;
    }
    L->amp_sem = sqrt(sqrt((double)D));
    rng r = rng_stream(seed, b, g, ROLE_LAYOUT);
    place_pattern(&L->pattern, &r, Sq, Sk,
                  cfg->block_size > 0 ? cfg->block_size : 128);
    make_directions(L, &r);
    make_positional(L, cfg);
    /* The means live in the pairs between the positional and semantic
     * ones, the key mean in the first half of them and the query mean in
     * the second: disjoint pairs, so that the two never meet in a dot
     * product (which RoPE would turn into a positional term). */
    int first = L->n_pos, last = half - n_sem_pairs, mid = (first + last) / 2;
    double *means[2] = {L->mean_k, L->mean_q};
    double norms[2] = {KEY_MEAN_NORM, QUERY_MEAN_NORM};
    int from[2] = {first, mid}, to[2] = {mid, last};
    for (int m = 0; m < 2; m++) {
        double norm2 = 0.0;
        if (from[m] >= to[m])
            continue;
        for (int p = from[m]; p < to[m]; p++) {
            int a, bb;
            pair_dims(D, cfg->rope_layout, p, &a, &bb);
            means[m][a] = rng_normal(&r);
            means[m][bb] = rng_normal(&r);
            norm2 += means[m][a] * means[m][a] + means[m][bb] * means[m][bb];
        }
        double scale = norms[m] * sqrt((double)D) / sqrt(norm2);
        for (int d = 0; d < D; d++)
            means[m][d] *= scale;
    }
}

static void add_direction(float *row, const head_layout *L, int which,
                          double amplitude) {
    for (int d = 0; d < L->n_sem_dims; d++)
        row[L->sem_dims[d]] += (float)(amplitude * L->dir[which][d]);
}

/* ------------------------------------------------------------------------ */
/* Building the tensors                                                     */
/* ------------------------------------------------------------------------ */
enum {
    DIR_SINK = 0,
    DIR_VERTICAL = 1,
    DIR_NEEDLE = 2,
    DIR_TOPIC = DIR_NEEDLE + PRISM_WORKLOAD_MAX_NEEDLES
};

/* Topic of the span holding absolute position pos (a hash: no state). */
static int topic_at(uint64_t seed, int b, int g, int64_t pos) {
    uint64_t st = seed ^ ((uint64_t)b << 40) ^ ((uint64_t)g << 20) ^
                  (uint64_t)(pos / TOPIC_SPAN) * 0x9e3779b97f4a7c15ull;
    return (int)(splitmix64(&st) % TOPICS);
}

typedef struct build_job {
    const prism_config *cfg;
    prism_workload *w;
    head_layout *layouts; /* one per worker */
} build_job;

/* One task = one (sequence, head) of Q, K or V. */
static void build_head(void *ctx, int64_t index, int worker) {
    const build_job *job = ctx;
    prism_workload *w = job->w;
    const prism_config *cfg = job->cfg;
    int D = w->D;
    int64_t per_seq = w->Hq + 2 * w->Hkv;
    int b = (int)(index / per_seq);
    int which = (int)(index % per_seq);
    int role = which < w->Hq            ? ROLE_Q
               : which < w->Hq + w->Hkv ? ROLE_K
                                        : ROLE_V;
    int head = role == ROLE_Q   ? which
               : role == ROLE_K ? which - w->Hq
                                : which - w->Hq - w->Hkv;
    int g = role == ROLE_Q ? head / (w->Hq / w->Hkv) : head;
    int64_t n = role == ROLE_Q ? w->Sq : w->Sk;
    int64_t first_pos = role == ROLE_Q ? w->Sk - w->Sq : 0;
    float *x = role == ROLE_Q   ? w->q + ((size_t)b * w->Hq + head) * n * D
               : role == ROLE_K ? w->k + ((size_t)b * w->Hkv + head) * n * D
                                : w->v + ((size_t)b * w->Hkv + head) * n * D;
    rng r = rng_stream(w->seed, b, role == ROLE_Q ? head : g, role);
    if (role == ROLE_V) {
        for (int64_t i = 0; i < n * D; i++)
            x[i] = (float)rng_normal(&r);
        return;
    }
    head_layout *L = &job->layouts[worker];
    layout_for(L, cfg, w->kind, w->seed, b, g, w->Sq, w->Sk);
    const prism_head_pattern *p = &L->pattern;
    /* query heads of a group differ a little in strength */
    double gain = role == ROLE_Q ? 0.85 + 0.3 * rng_uniform(&r) : 1.0;
    double amp = L->amp_sem * gain;
    bool positional =
        (p->components & (PRISM_PATTERN_LOCAL | PRISM_PATTERN_SLASH)) != 0;
    for (int64_t t = 0; t < n; t++) {
        float *row = x + t * D;
        int64_t pos = first_pos + t;
        const double *mean = role == ROLE_Q ? L->mean_q : L->mean_k;
        for (int d = 0; d < D; d++)
            row[d] = (float)(L->noise * rng_normal(&r) + mean[d]);
        for (int i = 0; positional && i < L->n_pos; i++) {
            int a, bb;
            pair_dims(D, cfg->rope_layout, i, &a, &bb);
            row[a] += (float)(role == ROLE_Q ? gain * L->zq_re[i] : L->zk);
            row[bb] += (float)(role == ROLE_Q ? gain * L->zq_im[i] : 0.0);
        }
        if ((p->components & PRISM_PATTERN_SINK) &&
            (role == ROLE_Q || pos < PRISM_WORKLOAD_SINK_TOKENS))
            add_direction(row, L, DIR_SINK, amp * sqrt(GAIN_SINK));
        if (p->components)
            add_direction(row, L, DIR_TOPIC + topic_at(w->seed, b, g, pos),
                          amp * sqrt(GAIN_TOPIC));
        if ((p->components & PRISM_PATTERN_VERTICAL) &&
            (role == ROLE_Q || contains(p->vertical, p->n_vertical, pos)))
            add_direction(row, L, DIR_VERTICAL, amp * sqrt(GAIN_VERTICAL));
        for (int m = 0; m < p->n_needles; m++) {
            const prism_needle *nd = &p->needles[m];
            int64_t start = role == ROLE_Q ? nd->query_start : nd->key_start;
            if (t >= start && t < start + nd->length)
                add_direction(row, L, DIR_NEEDLE + m, amp * sqrt(GAIN_NEEDLE));
        }
    }
    if (role == ROLE_K)
        w->patterns[(size_t)b * w->Hkv + head] = L->pattern;
    prism_ref_apply_rope(x, n, D, first_pos, cfg->rope_theta, cfg->rope_layout);
}

int prism_ref_workload_topic(const prism_workload *w, int b, int kv_head,
                             int64_t pos) {
    if (!w || !w->patterns || b < 0 || b >= w->B || kv_head < 0 ||
        kv_head >= w->Hkv || pos < 0 || pos >= w->Sk)
        return -1;
    if (!w->patterns[(size_t)b * w->Hkv + kv_head].components)
        return -1;
    return topic_at(w->seed, b, kv_head, pos);
}

prism_status prism_ref_workload_build(const prism_config *cfg, int B,
                                      int64_t Sq, int64_t Sk,
                                      prism_workload_kind kind, uint64_t seed,
                                      prism_workload *out, char *err,
                                      size_t err_size) {
    if (!out || !cfg)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "workload: NULL config or output");
    memset(out, 0, sizeof *out);
    int D = cfg->head_dim;
    if ((unsigned)kind >= PRISM_WORKLOAD_COUNT_)
        return prism_errorf(err, err_size, PRISM_ERR_INVALID_ARGUMENT,
                            "workload: unknown kind %d", (int)kind);
    if (D < 4 || D % 2 || D > 1024 || cfg->q_heads < 1 || cfg->kv_heads < 1 ||
        cfg->q_heads % cfg->kv_heads)
        return prism_errorf(err, err_size, PRISM_ERR_CONFIG,
                            "workload: head_dim %d (even, 4..1024) and heads "
                            "%d/%d (Hq a multiple of Hkv) are not usable",
                            D, cfg->q_heads, cfg->kv_heads);
    if (!(cfg->rope_theta > 1.0))
        return prism_errorf(err, err_size, PRISM_ERR_CONFIG,
                            "workload: rope_theta %g must be > 1",
                            cfg->rope_theta);
    if (B < 1 || Sq < 1 || Sk < Sq)
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "workload: need B >= 1 and 1 <= Sq <= Sk (got "
                            "B=%d, Sq=%lld, Sk=%lld)",
                            B, (long long)Sq, (long long)Sk);
    out->B = B;
    out->Hq = cfg->q_heads;
    out->Hkv = cfg->kv_heads;
    out->D = D;
    out->Sq = Sq;
    out->Sk = Sk;
    out->kind = kind;
    out->seed = seed;
    size_t nq = (size_t)B * out->Hq * Sq * D;
    size_t nk = (size_t)B * out->Hkv * Sk * D;
    out->q = malloc(nq * sizeof *out->q);
    out->k = malloc(nk * sizeof *out->k);
    out->v = malloc(nk * sizeof *out->v);
    out->patterns = calloc((size_t)B * out->Hkv, sizeof *out->patterns);
    int threads = prism_cpu_threads();
    head_layout *layouts = calloc((size_t)threads, sizeof *layouts);
    if (!out->q || !out->k || !out->v || !out->patterns || !layouts) {
        free(layouts);
        prism_ref_workload_free(out);
        return prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                            "workload: out of memory for %zu + 2 x %zu floats",
                            nq, nk);
    }
    build_job job = {cfg, out, layouts};
    prism_parallel_for((int64_t)B * (out->Hq + 2 * out->Hkv), threads,
                           build_head, &job);
    free(layouts);
    return PRISM_OK;
}

void prism_ref_workload_free(prism_workload *w) {
    if (!w)
        return;
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->patterns);
    memset(w, 0, sizeof *w);
}
