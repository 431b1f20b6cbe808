"""Kernel configs from the three places a Python user has them.

A config is what the C library validates and compiles: a YAML file, a dict
with the same nesting as the YAML schema (configs/README.md), or a Hugging
Face model config from which the attention shape and the RoPE layout are
derived.  Dicts travel to the library as JSON text, which is YAML too, so
the library's own strict loader checks them and its messages (with the
offending key) reach the user unchanged.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import re
from typing import Any, Mapping, Optional, Union

from . import _lib
from ._lib import Config, PrismError

ConfigLike = Union[str, "os.PathLike[str]", Mapping[str, Any], Any]

# model_type values whose RoPE rotates adjacent pairs (2i, 2i+1)
_INTERLEAVED_MODEL_TYPES = {"gptj", "codegen", "cohere", "cohere2"}


def load(config: ConfigLike, *, overrides: Optional[Mapping[str, Any]] = None
         ) -> Config:
    """A validated prism_config from a path, a dict or an HF config.

    overrides: a dict merged (recursively) over the config's fields, e.g.
    ``{"prism": {"thresholds": {"high": 1.0, "low": 1.0}}}``.
    """
    if isinstance(config, Config):
        cfg = Config()
        ctypes_copy(cfg, config)
        if overrides:
            return load(to_dict(cfg), overrides=overrides)
        return cfg
    if isinstance(config, (str, os.PathLike)):
        if not overrides:
            return _load_file(os.fspath(config))
        cfg = _load_file(os.fspath(config))
        return load(to_dict(cfg), overrides=overrides)
    if isinstance(config, Mapping):
        data = copy.deepcopy(dict(config))
    elif _looks_like_hf_config(config):
        data = from_hf_config(config)
    else:
        raise TypeError(
            "config must be a YAML path, a dict in the YAML schema or a "
            f"Hugging Face PretrainedConfig, not {type(config).__name__}")
    if overrides:
        data = merge(data, overrides)
    return _load_string(json.dumps(data), data.get("name") or "<dict>")


def _load_file(path: str) -> Config:
    cfg, err = Config(), _lib.err_buf()
    st = _lib.lib().prism_config_load_file(path.encode(), cfg, err, len(err))
    if st != _lib.OK:
        raise PrismError(st, err.value.decode(errors="replace"))
    return cfg


def _load_string(text: str, name: str) -> Config:
    cfg, err = Config(), _lib.err_buf()
    raw = text.encode()
    st = _lib.lib().prism_config_load_string(raw, len(raw), name.encode(), cfg,
                                             err, len(err))
    if st != _lib.OK:
        raise PrismError(st, err.value.decode(errors="replace"))
    return cfg


def ctypes_copy(dst: Config, src: Config) -> None:
    ctypes.memmove(ctypes.byref(dst), ctypes.byref(src), ctypes.sizeof(Config))


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict:
    """base with extra merged in, nested mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def to_dict(cfg: Config) -> dict:
    """The resolved config as a dict in the YAML schema."""
    lib = _lib.lib()
    targets = []
    for i in range(cfg.n_targets):
        name = lib.prism_arch_name(cfg.targets[i])
        targets.append(name.decode() if name else str(cfg.targets[i]))
    tuning: dict = {}
    for i in range(cfg.n_tuning):
        t = cfg.tuning[i]
        tuning.setdefault(t.kernel.decode(), {})[t.param.decode()] = t.value
    out = {
        "name": cfg.name.decode(),
        "model": {"head_dim": cfg.head_dim, "q_heads": cfg.q_heads,
                  "kv_heads": cfg.kv_heads},
        "dtype": lib.prism_dtype_name(cfg.dtype).decode(),
        "rope": {"layout": "interleaved" if cfg.rope_layout else "half",
                 "theta": cfg.rope_theta},
        "prism": {
            "block_size": cfg.block_size, "high_dim": cfg.high_dim,
            "low_dim": cfg.low_dim,
            "thresholds": {"high": cfg.threshold_high,
                           "low": cfg.threshold_low},
            "calibrate": bool(cfg.calibrate),
            "temps": {"high": cfg.temp_high, "low": cfg.temp_low},
            "force_sink": bool(cfg.force_sink),
            "force_recent": bool(cfg.force_recent),
            "recent_blocks": int(cfg.recent_blocks),
        },
        "targets": targets,
        "tuning": tuning,
    }
    layers = _layers_dict(cfg)
    if layers:
        out["layers"] = layers
    return out


# prism_layer_override's fields: (bit, YAML key, sub-key or None, struct field)
_LAYER_FIELDS = (
    (1 << 0, "high_dim", None, "high_dim"),
    (1 << 1, "low_dim", None, "low_dim"),
    (1 << 2, "thresholds", "high", "threshold_high"),
    (1 << 3, "thresholds", "low", "threshold_low"),
    (1 << 4, "calibrate", None, "calibrate"),
    (1 << 5, "temps", "high", "temp_high"),
    (1 << 6, "temps", "low", "temp_low"),
    (1 << 7, "force_sink", None, "force_sink"),
    (1 << 8, "force_recent", None, "force_recent"),
    (1 << 9, "recent_blocks", None, "recent_blocks"),
)


def _ranges(ranges, n: int) -> list:
    return [r.first if r.first == r.last else f"{r.first}-{r.last}"
            for r in ranges[:n]]


def _layers_dict(cfg: Config) -> dict:
    """The config's ``layers:`` section as a dict ({} when it has none)."""
    out: dict = {}
    if cfg.n_dense > 0:
        out["dense"] = _ranges(cfg.dense, cfg.n_dense)
    overrides = []
    for o in cfg.layer_overrides[:max(0, cfg.n_layer_overrides)]:
        entry: dict = {"layers": _ranges(o.ranges, o.n_ranges)}
        for bit, key, sub, field in _LAYER_FIELDS:
            if o.fields & bit:
                value = getattr(o, field)
                if sub is None:
                    entry[key] = value
                else:
                    entry.setdefault(key, {})[sub] = value
        overrides.append(entry)
    if overrides:
        out["overrides"] = overrides
    return out


# --- Hugging Face configs -------------------------------------------------------
def _looks_like_hf_config(obj: Any) -> bool:
    return hasattr(obj, "num_attention_heads") and hasattr(obj, "model_type")


def _rope_theta(hf: Any) -> float:
    params = getattr(hf, "rope_parameters", None)
    if isinstance(params, Mapping):
        if "rope_theta" in params:
            return float(params["rope_theta"])
        # per layer type (full / sliding attention): the full layers'
        for key in ("full_attention", "default"):
            sub = params.get(key)
            if isinstance(sub, Mapping) and "rope_theta" in sub:
                return float(sub["rope_theta"])
    theta = getattr(hf, "rope_theta", None)
    return float(theta) if theta else 10000.0


def from_hf_config(hf: Any, name: Optional[str] = None) -> dict:
    """A config dict for a Hugging Face model config.

    head_dim is ``config.head_dim`` or hidden_size / num_attention_heads;
    the KV heads are ``num_key_value_heads`` (the query heads without it);
    the RoPE base comes from ``rope_parameters`` (transformers 5) or
    ``rope_theta``; the layout is interleaved for GPT-J style models
    (gptj, codegen, cohere) and rotate_half otherwise.  The method
    settings are the defaults; pass overrides to change them.
    """
    heads = int(hf.num_attention_heads)
    head_dim = getattr(hf, "head_dim", None)
    if not head_dim:
        head_dim = int(hf.hidden_size) // heads
    kv = getattr(hf, "num_key_value_heads", None) or heads
    model_type = str(getattr(hf, "model_type", "") or "hf")
    layout = "interleaved" if model_type in _INTERLEAVED_MODEL_TYPES else "half"
    label = name or re.sub(r"[^A-Za-z0-9_.-]", "-", model_type)[:100]
    return {
        "name": label,
        "model": {"head_dim": int(head_dim), "q_heads": heads,
                  "kv_heads": int(kv)},
        "rope": {"layout": layout, "theta": _rope_theta(hf)},
    }
