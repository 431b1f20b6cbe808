/*
 * config_rules.h - the constraints of a kernel config, shared by the YAML
 * loader (config.c) and the in-memory validator (config_validate.c).
 *
 * Every rule lives in one place, prism_config_check() (and, for the rules
 * that depend on the arch, prism_config_check_arch()), which says which
 * field broke it and why.  The loader maps that field back to the line and
 * column it was read from; prism_config_validate() names the config
 * instead.  So a file and a struct built in code can never disagree about
 * what is legal.  Not installed.
 */
#ifndef PRISM_CONFIG_RULES_H
#define PRISM_CONFIG_RULES_H

#include "base/base.h"

#include <locale.h>
#include <stdbool.h>

/* Configs larger than this are rejected before parsing. */
#define PRISM_CONFIG_MAX_BYTES (1024 * 1024)

/* The fields a rule can point at. */
typedef enum prism_config_field {
    PRISM_CF_NAME,
    PRISM_CF_HEAD_DIM,
    PRISM_CF_Q_HEADS,
    PRISM_CF_KV_HEADS,
    PRISM_CF_DTYPE,
    PRISM_CF_LAYOUT,
    PRISM_CF_THETA,
    PRISM_CF_BLOCK_SIZE,
    PRISM_CF_HIGH_DIM,
    PRISM_CF_LOW_DIM,
    PRISM_CF_THRESHOLD_HIGH,
    PRISM_CF_THRESHOLD_LOW,
    PRISM_CF_CALIBRATE,
    PRISM_CF_TEMP_HIGH,
    PRISM_CF_TEMP_LOW,
    PRISM_CF_FORCE_SINK,
    PRISM_CF_FORCE_RECENT,
    PRISM_CF_RECENT_BLOCKS,
    PRISM_CF_TARGETS,
    PRISM_CF_TUNING,
    PRISM_CF_DENSE,  /* layers.dense                        */
    PRISM_CF_LAYERS, /* the layers of a layers.overrides entry */
    PRISM_CF_COUNT
} prism_config_field;

/* A broken rule: the field, the entry of targets[], tuning[] or a layer
 * list (else -1), the layers.overrides entry it is in (else -1) and "what
 * is wrong; what is allowed" without any location prefix. */
typedef struct prism_config_problem {
    prism_config_field field;
    int index;
    int override;
    char text[512];
} prism_config_problem;

/* Band widths for head dim D when the config gives none: D/2 and 3D/4. */
void prism_config_band_defaults(int head_dim, int *high_dim, int *low_dim);

/* Checks every rule that holds whatever the arch: the fields, each tuning
 * override against its legal values, and that some arch can build the
 * overrides together (prism_config_check_some_arch).  Returns true when
 * cfg passes; otherwise fills *p with the first broken rule and returns
 * false.  prism_config_validate() is this. */
bool prism_config_check(const prism_config *cfg, prism_config_problem *p);

/* The rules between tuning overrides, the shape and one arch
 * (config_tuning.c): the generator's rules for the kernels it builds for
 * `arch`.  cfg must pass the single-override checks first. */
bool prism_config_check_arch(const prism_config *cfg, prism_arch arch,
                             prism_config_problem *p);

/* True when prism_config_check_arch passes for at least one arch. */
bool prism_config_check_some_arch(const prism_config *cfg,
                                  prism_config_problem *p);

/* prism_config_check, then prism_config_check_arch for every target: what
 * the loader requires, so that a config that loads (and so passes `prism
 * check`) generates for each of its targets.  In-memory configs are
 * validated without it because tuned variants (the tuning database, the
 * autotuner) keep the targets of their base config but are built for one
 * arch, which the generator checks. */
bool prism_config_check_targets(const prism_config *cfg,
                                prism_config_problem *p);

/* Copies a config name for a message: at most 64 bytes, control and
 * non-ASCII bytes replaced by '?'.  Safe on unterminated arrays. */
void prism_config_printable(const char *text, size_t max, char *out,
                            size_t out_size);

/* Copies a file name for a message: control bytes become '?', so the
 * message stays one line whatever the caller named the config. */
void prism_config_one_line(const char *text, char *out, size_t out_size);

/* The "C" locale, for locale-independent strtod and printf of numbers.
 * Created once; NULL only when the C library cannot allocate it. */
locale_t prism_c_locale(void);

#endif
