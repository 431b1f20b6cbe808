/*
 * config_validate.c - defaults, rules and YAML output of a kernel config.
 *
 * Why this file exists apart from the loader: a config can be built in code
 * as well as read from YAML, and both must obey the same rules.  The rules
 * are written once here, as prism_config_check() (with the rules between
 * tuning overrides in config_tuning.c), and report the field that broke
 * them; the loader turns that field into a line and column, and
 * prism_config_validate() into the config's name.  prism_config_to_yaml()
 * writes the resolved config back in the schema of configs/README.md, with
 * numbers in shortest round-trip form, so loading its output gives the same
 * struct again.  It writes invalid configs too (tools hash partial ones),
 * reading every field without undefined behaviour: a bool's byte other
 * than 0 is true, out-of-range enums are written as numbers.  Numbers are parsed and printed in the "C" locale: a host
 * program that calls setlocale() must not change what a config means.
 */
#include "config/config_rules.h"
#include "config/tunables.h"
#include "base/arch.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Defaults                                                                  */
/* ------------------------------------------------------------------------ */

void prism_config_band_defaults(int head_dim, int *high_dim, int *low_dim) {
    /* docs/method.md §8: dh = 64, dl = 96 at D = 128; they scale with D. */
    *high_dim = head_dim / 2;
    *low_dim = (int)(3LL * head_dim / 4);
}

void prism_config_init(prism_config *cfg) {
    if (!cfg)
        return;
    /* Zeroed first so unused bytes of the strings compare equal. */
    memset(cfg, 0, sizeof *cfg);
    prism_strlcpy(cfg->name, "default", sizeof cfg->name);
    prism_strlcpy(cfg->source, "<memory>", sizeof cfg->source);
    cfg->head_dim = 128;
    cfg->q_heads = 32;
    cfg->kv_heads = 8;
    cfg->dtype = PRISM_DTYPE_BF16;
    cfg->rope_layout = PRISM_ROPE_HALF;
    cfg->rope_theta = 500000.0;
    cfg->block_size = 128;
    prism_config_band_defaults(cfg->head_dim, &cfg->high_dim, &cfg->low_dim);
    cfg->threshold_high = 0.95;
    cfg->threshold_low = 0.95;
    cfg->calibrate = true;
    cfg->temp_high = 1.0;
    cfg->temp_low = 1.0;
    cfg->force_sink = true;
    cfg->force_recent = true;
    cfg->recent_blocks = 1;
    cfg->n_targets = 2;
    cfg->targets[0] = PRISM_ARCH_SM80;
    cfg->targets[1] = PRISM_ARCH_SM90A;
    cfg->n_tuning = 0;
}

/* ------------------------------------------------------------------------ */
/* Locale                                                                    */
/* ------------------------------------------------------------------------ */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale_value;

static void c_locale_create(void) {
    c_locale_value = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

locale_t prism_c_locale(void) {
    /* Kept for the life of the process, like the C library's own locales. */
    pthread_once(&c_locale_once, c_locale_create);
    return c_locale_value;
}

/* ------------------------------------------------------------------------ */
/* Rules                                                                     */
/* ------------------------------------------------------------------------ */

void prism_config_printable(const char *text, size_t max, char *out,
                            size_t out_size) {
    size_t n = 0;
    if (!out_size)
        return;
    for (size_t i = 0; text && i < max && text[i] && n + 4 < out_size; i++) {
        if (i == 64) {
            memcpy(out + n, "...", 3);
            n += 3;
            break;
        }
        unsigned char ch = (unsigned char)text[i];
        out[n++] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
    }
    out[n] = '\0';
}

void prism_config_one_line(const char *text, char *out, size_t out_size) {
    size_t n = 0;
    if (!out_size)
        return;
    for (; text && text[n] && n + 1 < out_size; n++) {
        unsigned char ch = (unsigned char)text[n];
        out[n] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    out[n] = '\0';
}

static bool broken(prism_config_problem *p, prism_config_field field, int index,
                   const char *fmt, ...) PRISM_PRINTF(4, 5);

static bool broken(prism_config_problem *p, prism_config_field field, int index,
                   const char *fmt, ...) {
    va_list ap;
    p->field = field;
    p->index = index;
    p->override = -1;
    va_start(ap, fmt);
    vsnprintf(p->text, sizeof p->text, fmt, ap);
    va_end(ap);
    return false;
}


static bool check_name(const prism_config *c, prism_config_problem *p) {
    size_t n = strnlen(c->name, sizeof c->name);
    if (n == sizeof c->name)
        return broken(p, PRISM_CF_NAME, -1,
                      "name is not terminated within %d bytes; use at most "
                      "%d characters",
                      PRISM_NAME_MAX, PRISM_NAME_MAX - 1);
    if (n == 0)
        return broken(p, PRISM_CF_NAME, -1,
                      "name is empty; use printable ASCII characters "
                      "other than '/'");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)c->name[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '/')
            return broken(p, PRISM_CF_NAME, -1,
                          "name contains the byte 0x%02x; use printable "
                          "ASCII characters other than '/'",
                          ch);
    }
    return true;
}

static bool check_model(const prism_config *c, prism_config_problem *p) {
    if (c->head_dim != 64 && c->head_dim != 128 && c->head_dim != 256)
        return broken(p, PRISM_CF_HEAD_DIM, -1,
                      "model.head_dim %d is not supported; allowed: 64, 128, "
                      "256",
                      c->head_dim);
    if (c->q_heads < 1 || c->q_heads > 1024)
        return broken(p, PRISM_CF_Q_HEADS, -1,
                      "model.q_heads %d is out of range; allowed: 1..1024",
                      c->q_heads);
    if (c->kv_heads < 1 || c->kv_heads > 1024)
        return broken(p, PRISM_CF_KV_HEADS, -1,
                      "model.kv_heads %d is out of range; allowed: 1..1024",
                      c->kv_heads);
    if (c->q_heads % c->kv_heads)
        return broken(p, PRISM_CF_KV_HEADS, -1,
                      "model.q_heads %d is not a multiple of model.kv_heads "
                      "%d; kv_heads must divide q_heads (GQA groups)",
                      c->q_heads, c->kv_heads);
    if (c->dtype != PRISM_DTYPE_BF16 && c->dtype != PRISM_DTYPE_FP16)
        return broken(p, PRISM_CF_DTYPE, -1,
                      "dtype %d is not supported by the kernels; allowed: "
                      "bf16, fp16",
                      (int)c->dtype);
    if (c->rope_layout != PRISM_ROPE_HALF &&
        c->rope_layout != PRISM_ROPE_INTERLEAVED)
        return broken(p, PRISM_CF_LAYOUT, -1,
                      "rope.layout %d is not known; allowed: half, "
                      "interleaved",
                      (int)c->rope_layout);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return broken(p, PRISM_CF_THETA, -1,
                      "rope.theta %g is not a finite number > 0; use the "
                      "model's RoPE base, e.g. 10000 or 500000",
                      c->rope_theta);
    return true;
}

/* `where` is "prism" for the top level, "layers.overrides[N]" for an
 * override: the start of the key a message names. */
static bool check_band(const prism_config *c, const char *where,
                       prism_config_field field, const char *key, int width,
                       prism_config_problem *p) {
    const char *what = NULL;
    if (width % 2)
        what = "is odd";
    else if (width < 2)
        what = "is below 2";
    else if (width > c->head_dim)
        what = "exceeds head_dim";
    if (!what)
        return true;
    return broken(p, field, -1,
                  "%s.%s %d %s; band widths must be even, 2..head_dim "
                  "(%d)",
                  where, key, width, what, c->head_dim);
}

static bool check_fraction(const char *where, prism_config_field field,
                           const char *key, double v,
                           prism_config_problem *p) {
    if (v > 0 && v <= 1)
        return true;
    return broken(p, field, -1,
                  "%s.thresholds.%s %g is outside (0, 1]; use a top-p "
                  "mass such as 0.95",
                  where, key, v);
}

static bool check_temp(const char *where, prism_config_field field,
                       const char *key, double v, prism_config_problem *p) {
    if (v > 0 && isfinite(v))
        return true;
    return broken(p, field, -1,
                  "%s.temps.%s %g is not a finite number > 0; the "
                  "default is 1.0",
                  where, key, v);
}

/* The local window force_recent keeps: at least the diagonal block. */
static bool check_recent(const char *where, int blocks,
                         prism_config_problem *p) {
    if (blocks >= 1 && blocks <= PRISM_MAX_RECENT_BLOCKS)
        return true;
    return broken(p, PRISM_CF_RECENT_BLOCKS, -1,
                  "%s.recent_blocks %d is out of range; allowed: 1 (the "
                  "diagonal block) up to %d key blocks",
                  where, blocks, PRISM_MAX_RECENT_BLOCKS);
}

static bool check_method(const prism_config *c, prism_config_problem *p) {
    int bs = c->block_size;
    if (bs < 16 || bs > 256 || (bs & (bs - 1)))
        return broken(p, PRISM_CF_BLOCK_SIZE, -1,
                      "prism.block_size %d is not a power of two in 16..256; "
                      "allowed: 16, 32, 64, 128, 256",
                      bs);
    const char *w = "prism";
    return check_band(c, w, PRISM_CF_HIGH_DIM, "high_dim", c->high_dim, p) &&
           check_band(c, w, PRISM_CF_LOW_DIM, "low_dim", c->low_dim, p) &&
           check_fraction(w, PRISM_CF_THRESHOLD_HIGH, "high",
                          c->threshold_high, p) &&
           check_fraction(w, PRISM_CF_THRESHOLD_LOW, "low", c->threshold_low,
                          p) &&
           check_temp(w, PRISM_CF_TEMP_HIGH, "high", c->temp_high, p) &&
           check_temp(w, PRISM_CF_TEMP_LOW, "low", c->temp_low, p) &&
           check_recent(w, c->recent_blocks, p);
}

/* A bool of a struct built in code may hold any byte (memset, a cast from
 * an int); reading it as a bool would be undefined, so its byte is read. */
static bool check_switch(prism_config_field field, const char *key,
                         const bool *value, prism_config_problem *p) {
    unsigned char byte;
    memcpy(&byte, value, 1);
    if (byte <= 1)
        return true;
    return broken(p, field, -1,
                  "%s holds the byte %u, not a bool; set it to true or false",
                  key, (unsigned)byte);
}

static bool check_switches(const prism_config *c, prism_config_problem *p) {
    return check_switch(PRISM_CF_CALIBRATE, "prism.calibrate", &c->calibrate,
                        p) &&
           check_switch(PRISM_CF_FORCE_SINK, "prism.force_sink",
                        &c->force_sink, p) &&
           check_switch(PRISM_CF_FORCE_RECENT, "prism.force_recent",
                        &c->force_recent, p);
}

static bool check_targets(const prism_config *c, prism_config_problem *p) {
    if (c->n_targets < 1)
        return broken(p, PRISM_CF_TARGETS, -1,
                      "targets is empty; list at least one of %s",
                      prism_arch_list_text());
    if (c->n_targets > PRISM_MAX_TARGETS)
        return broken(p, PRISM_CF_TARGETS, -1,
                      "targets has %d entries; at most %d, each one of %s",
                      c->n_targets, PRISM_MAX_TARGETS, prism_arch_list_text());
    for (int i = 0; i < c->n_targets; i++) {
        if ((unsigned)c->targets[i] >= PRISM_ARCH_COUNT_)
            return broken(p, PRISM_CF_TARGETS, i,
                          "targets[%d] = %d is not a known arch; allowed: %s",
                          i, (int)c->targets[i], prism_arch_list_text());
        for (int j = 0; j < i; j++)
            if (c->targets[j] == c->targets[i])
                return broken(p, PRISM_CF_TARGETS, i,
                              "targets lists %s twice; list each arch once",
                              prism_arch_name(c->targets[i]));
    }
    return true;
}

static bool same_override(const prism_tuning_override *a,
                          const prism_tuning_override *b) {
    return !strcmp(a->kernel, b->kernel) && !strcmp(a->param, b->param);
}

static bool check_tuning(const prism_config *c, prism_config_problem *p) {
    char allowed[512];
    if (c->n_tuning < 0 || c->n_tuning > PRISM_MAX_TUNING)
        return broken(p, PRISM_CF_TUNING, -1,
                      "tuning has %d overrides; at most %d", c->n_tuning,
                      PRISM_MAX_TUNING);
    for (int i = 0; i < c->n_tuning; i++) {
        const prism_tuning_override *t = &c->tuning[i];
        if (strnlen(t->kernel, sizeof t->kernel) == sizeof t->kernel ||
            strnlen(t->param, sizeof t->param) == sizeof t->param)
            return broken(p, PRISM_CF_TUNING, i,
                          "tuning[%d] has an unterminated kernel or "
                          "parameter name; terminate both strings",
                          i);
        if (!prism_tunables_check(t->kernel, t->param, t->value, allowed,
                                  sizeof allowed))
            return broken(p, PRISM_CF_TUNING, i,
                          "tuning.%s.%s = %lld is not allowed; %s", t->kernel,
                          t->param, (long long)t->value, allowed);
        for (int j = 0; j < i; j++)
            if (same_override(&c->tuning[j], t))
                return broken(p, PRISM_CF_TUNING, i,
                              "tuning.%s.%s is set twice; set it once",
                              t->kernel, t->param);
    }
    return true;
}

/* ---- layers: dense layers and per-layer overrides ----------------------- */

/* "layers.dense" or "layers.overrides[N].layers": the list of owner -1 or N. */
static void list_name(int owner, char *out, size_t size) {
    if (owner < 0)
        snprintf(out, size, "layers.dense");
    else
        snprintf(out, size, "layers.overrides[%d].layers", owner);
}

static const prism_layer_range *owner_ranges(const prism_config *c, int owner,
                                             int *n) {
    if (owner < 0) {
        *n = c->n_dense;
        return c->dense;
    }
    *n = c->layer_overrides[owner].n_ranges;
    return c->layer_overrides[owner].ranges;
}

static bool check_ranges(const prism_config *c, int owner,
                         prism_config_problem *p) {
    char name[64];
    int n;
    const prism_layer_range *r = owner_ranges(c, owner, &n);
    prism_config_field field = owner < 0 ? PRISM_CF_DENSE : PRISM_CF_LAYERS;
    list_name(owner, name, sizeof name);
    if (n < (owner < 0 ? 0 : 1) || n > PRISM_MAX_LAYER_RANGES)
        return broken(p, field, -1, "%s has %d entries; list 1..%d layers or "
                      "ranges", name, n, PRISM_MAX_LAYER_RANGES);
    for (int i = 0; i < n; i++)
        if (r[i].first < 0 || r[i].last > PRISM_MAX_LAYER ||
            r[i].first > r[i].last)
            return broken(p, field, i,
                          "%s[%d] = %d-%d is not a range of layers; write a "
                          "layer 0..%d or a range a-b with a <= b",
                          name, i, r[i].first, r[i].last, PRISM_MAX_LAYER);
    return true;
}

/* The rules of the fields an override sets: those of the top level. */
static bool check_override_fields(const prism_config *c, int i,
                                  prism_config_problem *p) {
    const prism_layer_override *o = &c->layer_overrides[i];
    char w[48];
    unsigned f = o->fields;
    snprintf(w, sizeof w, "layers.overrides[%d]", i);
    if (f & ~(unsigned)PRISM_LAYER_ALL_)
        return broken(p, PRISM_CF_LAYERS, -1, "%s sets unknown field bits "
                      "0x%x; use prism_layer_field bits", w,
                      f & ~(unsigned)PRISM_LAYER_ALL_);
    if (!f)
        return broken(p, PRISM_CF_LAYERS, -1,
                      "%s sets no field; give at least one of high_dim, "
                      "low_dim, thresholds, calibrate, temps, force_sink, "
                      "force_recent, recent_blocks", w);
    return (!(f & PRISM_LAYER_HIGH_DIM) ||
            check_band(c, w, PRISM_CF_HIGH_DIM, "high_dim", o->high_dim, p)) &&
           (!(f & PRISM_LAYER_LOW_DIM) ||
            check_band(c, w, PRISM_CF_LOW_DIM, "low_dim", o->low_dim, p)) &&
           (!(f & PRISM_LAYER_THRESHOLD_HIGH) ||
            check_fraction(w, PRISM_CF_THRESHOLD_HIGH, "high",
                           o->threshold_high, p)) &&
           (!(f & PRISM_LAYER_THRESHOLD_LOW) ||
            check_fraction(w, PRISM_CF_THRESHOLD_LOW, "low", o->threshold_low,
                           p)) &&
           (!(f & PRISM_LAYER_TEMP_HIGH) ||
            check_temp(w, PRISM_CF_TEMP_HIGH, "high", o->temp_high, p)) &&
           (!(f & PRISM_LAYER_TEMP_LOW) ||
            check_temp(w, PRISM_CF_TEMP_LOW, "low", o->temp_low, p)) &&
           (!(f & PRISM_LAYER_RECENT_BLOCKS) ||
            check_recent(w, o->recent_blocks, p));
}

static bool overlap(const prism_layer_range *a, const prism_layer_range *b,
                    int *layer) {
    int lo = a->first > b->first ? a->first : b->first;
    int hi = a->last < b->last ? a->last : b->last;
    *layer = lo;
    return lo <= hi;
}

/* Range i of list `owner` against every range before it (lists in the
 * order dense, overrides[0], overrides[1]...). */
static bool check_disjoint(const prism_config *c, int owner, int i,
                           prism_config_problem *p) {
    int n, m, layer;
    const prism_layer_range *r = owner_ranges(c, owner, &n);
    for (int o = -1; o <= owner; o++) {
        const prism_layer_range *q = owner_ranges(c, o, &m);
        for (int j = 0; j < (o == owner ? i : m); j++) {
            if (!overlap(&r[i], &q[j], &layer))
                continue;
            char here[64], there[64];
            list_name(owner, here, sizeof here);
            list_name(o, there, sizeof there);
            broken(p, owner < 0 ? PRISM_CF_DENSE : PRISM_CF_LAYERS, i,
                   "layer %d is named twice, in %s[%d] and %s[%d]; name each "
                   "layer once (overrides do not stack)",
                   layer, there, j, here, i);
            p->override = owner;
            return false;
        }
    }
    return true;
}

static bool check_layers(const prism_config *c, prism_config_problem *p) {
    if (c->n_layer_overrides < 0 ||
        c->n_layer_overrides > PRISM_MAX_LAYER_OVERRIDES)
        return broken(p, PRISM_CF_LAYERS, -1, "layers.overrides has %d "
                      "entries; at most %d", c->n_layer_overrides,
                      PRISM_MAX_LAYER_OVERRIDES);
    for (int o = -1; o < c->n_layer_overrides; o++) {
        if (!check_ranges(c, o, p) || (o >= 0 && !check_override_fields(c, o, p))) {
            p->override = o;
            return false;
        }
    }
    for (int o = -1; o < c->n_layer_overrides; o++) {
        int n;
        owner_ranges(c, o, &n);
        for (int i = 0; i < n; i++)
            if (!check_disjoint(c, o, i, p))
                return false;
    }
    return true;
}

bool prism_config_check(const prism_config *cfg, prism_config_problem *p) {
    return check_name(cfg, p) && check_model(cfg, p) && check_method(cfg, p) &&
           check_switches(cfg, p) && check_targets(cfg, p) &&
           check_tuning(cfg, p) && check_layers(cfg, p) &&
           prism_config_check_some_arch(cfg, p);
}

bool prism_config_check_targets(const prism_config *cfg,
                                prism_config_problem *p) {
    if (!prism_config_check(cfg, p))
        return false;
    for (int i = 0; i < cfg->n_targets; i++)
        if (!prism_config_check_arch(cfg, cfg->targets[i], p))
            return false;
    return true;
}

prism_status prism_config_validate(const prism_config *cfg, char *err,
                                   size_t err_size) {
    prism_config_problem p;
    char name[80];
    if (!cfg)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "prism_config_validate: cfg is NULL; pass a "
                            "config from prism_config_init()");
    if (prism_config_check(cfg, &p))
        return PRISM_OK;
    prism_config_printable(cfg->name, sizeof cfg->name, name, sizeof name);
    return prism_errorf(err, err_size, PRISM_ERR_CONFIG, "config '%s': %s",
                        name, p.text);
}

/* ------------------------------------------------------------------------ */
/* YAML output                                                               */
/* ------------------------------------------------------------------------ */

/* Shortest text that strtod() reads back as exactly v.  Whole numbers keep
 * a ".0" so they read as floats to a human too. */
static void format_double(double v, char *out, size_t size) {
    locale_t c = prism_c_locale();
    if (isnan(v)) {
        snprintf(out, size, ".nan");
        return;
    }
    if (isinf(v)) {
        snprintf(out, size, v > 0 ? ".inf" : "-.inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, size, "%.1f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, v);
        if (c && strtod_l(out, NULL, c) == v)
            return;
    }
}

static void emit_quoted(FILE *f, const char *s, size_t max) {
    fputc('"', f);
    for (size_t i = 0; i < max && s[i]; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* Kernel and tunable names are identifiers; anything else is quoted. */
static void emit_key(FILE *f, const char *s, size_t max) {
    size_t n = strnlen(s, max);
    bool plain =
        n > 0 && n < max && (s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z'));
    static const char *const reserved[] = {"null", "true", "false", "yes", "no",
                                           "on",   "off",  "y",     "n"};
    for (size_t i = 0; plain && i < n; i++)
        plain = s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') ||
                (s[i] >= '0' && s[i] <= '9');
    for (size_t i = 0; plain && i < PRISM_ARRAY_LEN(reserved); i++)
        plain = strcmp(s, reserved[i]) != 0;
    if (plain)
        fwrite(s, 1, n, f);
    else
        emit_quoted(f, s, max);
}

static void emit_enum(FILE *f, const char *key, const char *name, int raw) {
    if (name)
        fprintf(f, "%s: %s\n", key, name);
    else
        fprintf(f, "%s: %d\n", key, raw);
}

static void emit_pair(FILE *f, const char *indent, const char *key, double v) {
    char num[40];
    format_double(v, num, sizeof num);
    fprintf(f, "%s%s: %s\n", indent, key, num);
}

static void emit_targets(FILE *f, const prism_config *c) {
    int n = c->n_targets < 0                   ? 0
            : c->n_targets > PRISM_MAX_TARGETS ? PRISM_MAX_TARGETS
                                               : c->n_targets;
    fputs("targets: [", f);
    for (int i = 0; i < n; i++) {
        const char *name = prism_arch_name(c->targets[i]);
        if (name)
            fprintf(f, "%s%s", i ? ", " : "", name);
        else
            fprintf(f, "%s%d", i ? ", " : "", (int)c->targets[i]);
    }
    fputs("]\n", f);
}

static bool same_kernel(const prism_tuning_override *a,
                        const prism_tuning_override *b) {
    return !strncmp(a->kernel, b->kernel, sizeof a->kernel);
}

/* One mapping per kernel, in order of first appearance. */
static void emit_tuning(FILE *f, const prism_config *c) {
    int n = c->n_tuning < 0                  ? 0
            : c->n_tuning > PRISM_MAX_TUNING ? PRISM_MAX_TUNING
                                             : c->n_tuning;
    if (!n) {
        fputs("tuning: {}\n", f);
        return;
    }
    fputs("tuning:\n", f);
    for (int i = 0; i < n; i++) {
        const prism_tuning_override *t = &c->tuning[i];
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = same_kernel(&c->tuning[j], t);
        if (seen)
            continue;
        fputs("  ", f);
        emit_key(f, t->kernel, sizeof t->kernel);
        fputs(":\n", f);
        for (int j = i; j < n; j++) {
            if (!same_kernel(&c->tuning[j], t))
                continue;
            fputs("    ", f);
            emit_key(f, c->tuning[j].param, sizeof t->param);
            fprintf(f, ": %lld\n", (long long)c->tuning[j].value);
        }
    }
}

/* A bool's byte, read as such: a config built in code may hold any byte
 * there, and any byte but 0 is written as true (see prism.h). */
static const char *switch_word(const bool *value) {
    unsigned char byte;
    memcpy(&byte, value, 1);
    return byte ? "true" : "false";
}

static int clamp_count(int n, int max) {
    return n < 0 ? 0 : n > max ? max : n;
}

/* [0-2, 5]: a range as a-b (a plain YAML string), a single layer as a. */
static void emit_ranges(FILE *f, const prism_layer_range *r, int n) {
    fputc('[', f);
    for (int i = 0; i < clamp_count(n, PRISM_MAX_LAYER_RANGES); i++) {
        fprintf(f, "%s%d", i ? ", " : "", r[i].first);
        if (r[i].last != r[i].first)
            fprintf(f, "-%d", r[i].last);
    }
    fputs("]\n", f);
}

/* A band pair (thresholds or temps) with only the halves the override sets. */
static void emit_pair_of(FILE *f, const char *key, unsigned fields,
                         unsigned high_bit, double high, unsigned low_bit,
                         double low) {
    if (!(fields & (high_bit | low_bit)))
        return;
    fprintf(f, "      %s:\n", key);
    if (fields & high_bit)
        emit_pair(f, "        ", "high", high);
    if (fields & low_bit)
        emit_pair(f, "        ", "low", low);
}

static void emit_override(FILE *f, const prism_layer_override *o) {
    unsigned s = o->fields;
    fputs("    - layers: ", f);
    emit_ranges(f, o->ranges, o->n_ranges);
    if (s & PRISM_LAYER_HIGH_DIM)
        fprintf(f, "      high_dim: %d\n", o->high_dim);
    if (s & PRISM_LAYER_LOW_DIM)
        fprintf(f, "      low_dim: %d\n", o->low_dim);
    emit_pair_of(f, "thresholds", s, PRISM_LAYER_THRESHOLD_HIGH,
                 o->threshold_high, PRISM_LAYER_THRESHOLD_LOW,
                 o->threshold_low);
    if (s & PRISM_LAYER_CALIBRATE)
        fprintf(f, "      calibrate: %s\n", o->calibrate ? "true" : "false");
    emit_pair_of(f, "temps", s, PRISM_LAYER_TEMP_HIGH, o->temp_high,
                 PRISM_LAYER_TEMP_LOW, o->temp_low);
    if (s & PRISM_LAYER_FORCE_SINK)
        fprintf(f, "      force_sink: %s\n", o->force_sink ? "true" : "false");
    if (s & PRISM_LAYER_FORCE_RECENT)
        fprintf(f, "      force_recent: %s\n",
                o->force_recent ? "true" : "false");
    if (s & PRISM_LAYER_RECENT_BLOCKS)
        fprintf(f, "      recent_blocks: %d\n", o->recent_blocks);
}

/* Only when the config has per-layer settings: a config without them
 * prints exactly as it did before they existed. */
static void emit_layers(FILE *f, const prism_config *c) {
    int n_over = clamp_count(c->n_layer_overrides, PRISM_MAX_LAYER_OVERRIDES);
    if (c->n_dense <= 0 && n_over == 0)
        return;
    fputs("layers:\n", f);
    if (c->n_dense > 0) {
        fputs("  dense: ", f);
        emit_ranges(f, c->dense, c->n_dense);
    }
    if (n_over)
        fputs("  overrides:\n", f);
    for (int i = 0; i < n_over; i++)
        emit_override(f, &c->layer_overrides[i]);
}

static void emit_config(FILE *f, const prism_config *c) {
    fputs("# Resolved Prism kernel config: every default filled in.\n"
          "# Schema: configs/README.md\n"
          "name: ",
          f);
    emit_quoted(f, c->name, sizeof c->name);
    fprintf(f, "\nmodel:\n  head_dim: %d\n  q_heads: %d\n  kv_heads: %d\n",
            c->head_dim, c->q_heads, c->kv_heads);
    emit_enum(f, "dtype", prism_dtype_name(c->dtype), (int)c->dtype);
    fputs("rope:\n", f);
    emit_enum(f, "  layout", prism_rope_layout_name(c->rope_layout),
              (int)c->rope_layout);
    emit_pair(f, "  ", "theta", c->rope_theta);
    fprintf(f, "prism:\n  block_size: %d\n  high_dim: %d\n  low_dim: %d\n",
            c->block_size, c->high_dim, c->low_dim);
    fputs("  thresholds:\n", f);
    emit_pair(f, "    ", "high", c->threshold_high);
    emit_pair(f, "    ", "low", c->threshold_low);
    fprintf(f, "  calibrate: %s\n", switch_word(&c->calibrate));
    fputs("  temps:\n", f);
    emit_pair(f, "    ", "high", c->temp_high);
    emit_pair(f, "    ", "low", c->temp_low);
    fprintf(f, "  force_sink: %s\n  force_recent: %s\n",
            switch_word(&c->force_sink), switch_word(&c->force_recent));
    fprintf(f, "  recent_blocks: %d\n", c->recent_blocks);
    emit_targets(f, c);
    emit_tuning(f, c);
    emit_layers(f, c);
}

char *prism_config_to_yaml(const prism_config *cfg) {
    char *text = NULL;
    size_t size = 0;
    locale_t c = prism_c_locale();
    if (!cfg || !c)
        return NULL;
    locale_t previous = uselocale(c);
    FILE *f = open_memstream(&text, &size);
    if (!f)
        goto out;
    emit_config(f, cfg);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        text = NULL;
    }
out:
    uselocale(previous);
    return text;
}
