/*
 * params.c - run-time method parameters (prism_params): their defaults
 * from a config, and their checks.
 *
 * The ranges are the config's own (config_validate.c) for the fields a
 * config has, so a config's values always pass and a launch can never run
 * what a config could not say; the softmax scale has no config field and
 * is checked here only.  Messages name the field as "params.FIELD", the
 * way config messages name their YAML keys.
 */
#include "config/params.h"

#include "base/base.h"

#include <math.h>

void prism_params_init_from_config(const prism_config *cfg,
                                   prism_params *params) {
    if (!params)
        return;
    prism_config defaults;
    if (!cfg) {
        prism_config_init(&defaults);
        cfg = &defaults;
    }
    *params = (prism_params){
        .threshold_high = cfg->threshold_high,
        .threshold_low = cfg->threshold_low,
        .calibrate = cfg->calibrate,
        .temp_high = cfg->temp_high,
        .temp_low = cfg->temp_low,
        .force_sink = cfg->force_sink,
        .force_recent = cfg->force_recent,
        .recent_blocks = cfg->recent_blocks,
        .softmax_scale = 0.0,
        .q_heads = cfg->q_heads,
        .kv_heads = cfg->kv_heads,
    };
}

void prism_config_apply_params(prism_config *cfg, const prism_params *p) {
    cfg->threshold_high = p->threshold_high;
    cfg->threshold_low = p->threshold_low;
    cfg->calibrate = p->calibrate;
    cfg->temp_high = p->temp_high;
    cfg->temp_low = p->temp_low;
    cfg->force_sink = p->force_sink;
    cfg->force_recent = p->force_recent;
    cfg->recent_blocks = p->recent_blocks;
    cfg->q_heads = p->q_heads;
    cfg->kv_heads = p->kv_heads;
}

static prism_status bad(char *err, size_t n, const char *field, double v,
                        const char *allowed) {
    return prism_errorf(err, n, PRISM_ERR_INVALID_ARGUMENT,
                        "params.%s %g is out of range; %s", field, v,
                        allowed);
}

static prism_status check_heads(const prism_params *p, char *err, size_t n) {
    if (p->q_heads < 1 || p->q_heads > 1024)
        return bad(err, n, "q_heads", p->q_heads, "allowed: 1..1024");
    if (p->kv_heads < 1 || p->kv_heads > 1024)
        return bad(err, n, "kv_heads", p->kv_heads, "allowed: 1..1024");
    if (p->q_heads % p->kv_heads)
        return prism_errorf(err, n, PRISM_ERR_INVALID_ARGUMENT,
                            "params.q_heads %d is not a multiple of "
                            "params.kv_heads %d; kv_heads must divide "
                            "q_heads (GQA groups)",
                            p->q_heads, p->kv_heads);
    return PRISM_OK;
}

prism_status prism_params_validate(const prism_params *p, char *err,
                                   size_t n) {
    if (!p)
        return prism_errorf(err, n, PRISM_ERR_NULL_POINTER,
                            "prism_params_validate: params is NULL");
    static const char top_p[] = "a top-p mass in (0, 1] such as 0.95";
    static const char temp[] = "a finite number > 0 (the default is 1.0)";
    /* written so that NaN fails every test */
    if (!(p->threshold_high > 0 && p->threshold_high <= 1))
        return bad(err, n, "threshold_high", p->threshold_high, top_p);
    if (!(p->threshold_low > 0 && p->threshold_low <= 1))
        return bad(err, n, "threshold_low", p->threshold_low, top_p);
    if (!(p->temp_high > 0 && isfinite(p->temp_high)))
        return bad(err, n, "temp_high", p->temp_high, temp);
    if (!(p->temp_low > 0 && isfinite(p->temp_low)))
        return bad(err, n, "temp_low", p->temp_low, temp);
    if (!(p->softmax_scale >= 0 && isfinite(p->softmax_scale)))
        return bad(err, n, "softmax_scale", p->softmax_scale,
                   "0 (1/sqrt(head_dim)) or a finite number > 0");
    if (p->recent_blocks < 1 || p->recent_blocks > PRISM_MAX_RECENT_BLOCKS)
        return prism_errorf(err, n, PRISM_ERR_INVALID_ARGUMENT,
                            "params.recent_blocks %d is out of range; "
                            "allowed: 1 (the diagonal block) up to %d",
                            p->recent_blocks, PRISM_MAX_RECENT_BLOCKS);
    return check_heads(p, err, n);
}
