/*
 * config_validate.c - defaults, rules and YAML output of a kernel config.
 *
 * Why this file exists apart from the loader: a config can be built in code
 * as well as read from YAML, and both must obey the same rules.  The rules
 * are written once here, as prism_config_check(), and report the field that
 * broke them; the loader turns that field into a line and column, and
 * prism_config_validate() into the config's name.  prism_config_to_yaml()
 * writes the resolved config back in the schema of configs/README.md, with
 * numbers in shortest round-trip form, so loading its output gives the same
 * struct again.  Numbers are parsed and printed in the "C" locale: a host
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

static bool check_band(const prism_config *c, prism_config_field field,
                       const char *key, int width, prism_config_problem *p) {
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
                  "prism.%s %d %s; band widths must be even, 2..head_dim "
                  "(%d)",
                  key, width, what, c->head_dim);
}

static bool check_fraction(prism_config_field field, const char *key, double v,
                           prism_config_problem *p) {
    if (v > 0 && v <= 1)
        return true;
    return broken(p, field, -1,
                  "prism.thresholds.%s %g is outside (0, 1]; use a top-p "
                  "mass such as 0.95",
                  key, v);
}

static bool check_temp(prism_config_field field, const char *key, double v,
                       prism_config_problem *p) {
    if (v > 0 && isfinite(v))
        return true;
    return broken(p, field, -1,
                  "prism.temps.%s %g is not a finite number > 0; the "
                  "default is 1.0",
                  key, v);
}

static bool check_method(const prism_config *c, prism_config_problem *p) {
    int bs = c->block_size;
    if (bs < 16 || bs > 256 || (bs & (bs - 1)))
        return broken(p, PRISM_CF_BLOCK_SIZE, -1,
                      "prism.block_size %d is not a power of two in 16..256; "
                      "allowed: 16, 32, 64, 128, 256",
                      bs);
    return check_band(c, PRISM_CF_HIGH_DIM, "high_dim", c->high_dim, p) &&
           check_band(c, PRISM_CF_LOW_DIM, "low_dim", c->low_dim, p) &&
           check_fraction(PRISM_CF_THRESHOLD_HIGH, "high", c->threshold_high,
                          p) &&
           check_fraction(PRISM_CF_THRESHOLD_LOW, "low", c->threshold_low, p) &&
           check_temp(PRISM_CF_TEMP_HIGH, "high", c->temp_high, p) &&
           check_temp(PRISM_CF_TEMP_LOW, "low", c->temp_low, p);
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

bool prism_config_check(const prism_config *cfg, prism_config_problem *p) {
    return check_name(cfg, p) && check_model(cfg, p) && check_method(cfg, p) &&
           check_targets(cfg, p) && check_tuning(cfg, p);
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
    fprintf(f, "  calibrate: %s\n", c->calibrate ? "true" : "false");
    fputs("  temps:\n", f);
    emit_pair(f, "    ", "high", c->temp_high);
    emit_pair(f, "    ", "low", c->temp_low);
    fprintf(f, "  force_sink: %s\n  force_recent: %s\n",
            c->force_sink ? "true" : "false",
            c->force_recent ? "true" : "false");
    emit_targets(f, c);
    emit_tuning(f, c);
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
