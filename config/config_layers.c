/*
 * config_layers.c - the config of one decoder layer.
 *
 * A config may make some layers dense and give others their own method
 * parameters (layers.dense, layers.overrides).  An engine does not want to
 * interpret those rules itself: it asks for each layer's config, gets a
 * plain config back (no layers section left, so every layer with the same
 * settings yields the same bytes) and makes one plan per distinct result.
 * The rules themselves (ranges, no layer named twice, the values an
 * override may take) are prism_config_check()'s; this file only applies a
 * config that passed them.
 */
#include "config/config_rules.h"

#include <string.h>

static bool contains(const prism_layer_range *r, int n, int layer) {
    for (int i = 0; i < n; i++)
        if (layer >= r[i].first && layer <= r[i].last)
            return true;
    return false;
}

static void apply(const prism_layer_override *o, prism_config *c) {
    unsigned f = o->fields;
    if (f & PRISM_LAYER_HIGH_DIM)
        c->high_dim = o->high_dim;
    if (f & PRISM_LAYER_LOW_DIM)
        c->low_dim = o->low_dim;
    if (f & PRISM_LAYER_THRESHOLD_HIGH)
        c->threshold_high = o->threshold_high;
    if (f & PRISM_LAYER_THRESHOLD_LOW)
        c->threshold_low = o->threshold_low;
    if (f & PRISM_LAYER_CALIBRATE)
        c->calibrate = o->calibrate;
    if (f & PRISM_LAYER_TEMP_HIGH)
        c->temp_high = o->temp_high;
    if (f & PRISM_LAYER_TEMP_LOW)
        c->temp_low = o->temp_low;
    if (f & PRISM_LAYER_FORCE_SINK)
        c->force_sink = o->force_sink;
    if (f & PRISM_LAYER_FORCE_RECENT)
        c->force_recent = o->force_recent;
    if (f & PRISM_LAYER_RECENT_BLOCKS)
        c->recent_blocks = o->recent_blocks;
}

prism_status prism_config_for_layer(const prism_config *cfg, int layer,
                                    prism_config *out, bool *dense) {
    prism_config_problem problem;
    if (!cfg || !out || !dense)
        return PRISM_ERR_NULL_POINTER;
    if (layer < 0 || layer > PRISM_MAX_LAYER)
        return PRISM_ERR_INVALID_ARGUMENT;
    if (!prism_config_check(cfg, &problem))
        return PRISM_ERR_CONFIG;
    /* Read everything needed from cfg before writing out: they may alias. */
    bool is_dense = contains(cfg->dense, cfg->n_dense, layer);
    prism_layer_override match = {0};
    bool matched = false;
    for (int i = 0; i < cfg->n_layer_overrides && !matched; i++) {
        const prism_layer_override *o = &cfg->layer_overrides[i];
        if (contains(o->ranges, o->n_ranges, layer)) {
            match = *o;
            matched = true;
        }
    }
    if (out != cfg)
        memcpy(out, cfg, sizeof *out);
    out->n_dense = 0;
    memset(out->dense, 0, sizeof out->dense);
    out->n_layer_overrides = 0;
    memset(out->layer_overrides, 0, sizeof out->layer_overrides);
    if (matched)
        apply(&match, out);
    *dense = is_dense;
    return PRISM_OK;
}
