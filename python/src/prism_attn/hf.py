"""Hugging Face transformers integration: ``attn_implementation="prism"``.

``register()`` adds an attention function (transformers'
AttentionInterface) and a mask function (AttentionMaskInterface) under one
name.  The attention function runs Prism where it pays -- causal prefill of
at least ``min_seqlen`` queries without padding, the keys being the queries
plus any cached prefix of whole blocks (Sk >= Sq, bottom-right causal) --
and SDPA for everything else: decoding, short inputs, padded batches,
static caches, softcapping, sliding windows, training.  The module's
scaling becomes the call's softmax scale, and its layer index picks the
layer's settings from the config's ``layers:`` section: a dense layer runs
SDPA, the others their own thresholds and band settings.

The mask function wraps transformers' SDPA mask.  It answers None (no mask)
exactly when the attention is plain bottom-right causal without padding,
including chunked prefill over a cache, where SDPA's own mask function
materialises the mask; a None mask with Sk > Sq therefore means "causal,
queries at the end", and the SDPA fallback gets that mask spelled out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import torch

from ._kernel import kernel as _kernel

_settings: Dict[str, "Settings"] = {}


@dataclass
class Settings:
    """What :func:`register` was given, per implementation name, and the
    calls' counters: ``prism_calls`` ran Prism, ``sdpa_calls`` ran SDPA,
    ``dense_calls`` of those because the layer is dense."""
    min_seqlen: int = 1024
    overrides: Optional[Mapping[str, Any]] = None
    record: bool = False
    config: Any = None
    densities: List[float] = field(default_factory=list)
    prism_calls: int = 0
    sdpa_calls: int = 0
    dense_calls: int = 0


def register(name: str = "prism", *, min_seqlen: int = 1024,
             overrides: Optional[Mapping[str, Any]] = None,
             record: bool = False, config: Any = None) -> Settings:
    """Registers Prism with transformers as ``attn_implementation=name``.

    Args:
        name: the implementation name models are loaded with.
        min_seqlen: the fewest query tokens a call must have to run Prism;
            shorter prefills (and decoding) run SDPA.
        overrides: config fields merged over the model-derived config, e.g.
            ``{"prism": {"thresholds": {"high": 0.9, "low": 0.9},
            "block_size": 64}}``.
        record: keep each Prism call's mask density in
            ``settings.densities`` (synchronises after every call).
        config: a Prism config (YAML path or dict) to use instead of the
            one derived from the model's config, e.g. one with a
            ``layers:`` section; its head_dim must be the model's (the
            head counts are the tensors').

    Returns:
        the Settings object (its counters tell how many calls ran Prism and
        SDPA).  Use ``AutoModelForCausalLM.from_config(cfg,
        attn_implementation=name)`` or ``model.set_attn_implementation``.
    """
    from transformers import AttentionInterface, AttentionMaskInterface

    settings = Settings(min_seqlen=min_seqlen, overrides=overrides,
                        record=record, config=config)
    _settings[name] = settings

    def attention(module, query, key, value, attention_mask, dropout=0.0,
                  scaling=None, is_causal=None, **kwargs):
        return _attention(settings, name, module, query, key, value,
                          attention_mask, dropout, scaling, is_causal, kwargs)

    attention.__name__ = f"{name}_attention_forward"
    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, _prism_mask)
    return settings


def settings(name: str = "prism") -> Settings:
    """The Settings of a registered name."""
    return _settings[name]


# --- the mask -------------------------------------------------------------------------
def _prism_mask(*args, **kwargs):
    from transformers.masking_utils import causal_mask_function, sdpa_mask

    mask = sdpa_mask(*args, **kwargs)
    q_len = kwargs.get("q_length")
    kv_len = kwargs.get("kv_length")
    if args or q_len is None or kv_len is None:
        return mask  # an unknown calling convention: SDPA's mask as is
    if mask is None:
        if q_len == 1 or q_len == kv_len:
            return None
        # SDPA's top-left causal over a static cache's empty slots: spell
        # it out, a None would read as bottom-right here
        return sdpa_mask(*args, **{**kwargs, "allow_is_causal_skip": False})
    q_off, kv_off = kwargs.get("q_offset"), kwargs.get("kv_offset", 0)
    padding = kwargs.get("attention_mask")
    if (kwargs.get("allow_is_causal_skip", True)
            and kwargs.get("mask_function") is causal_mask_function
            and isinstance(q_off, int) and kv_off == 0
            and q_off + q_len == kv_len
            and not torch.compiler.is_compiling()
            and (padding is None or bool(padding.all()))):
        return None  # causal over a cached prefix, no padding
    return mask


# --- the attention function ----------------------------------------------------------------
def _use_prism(settings: Settings, module, query, key, attention_mask,
               dropout, scaling, is_causal, kwargs) -> bool:
    sq, sk = query.shape[2], key.shape[2]
    return (attention_mask is None and sq >= max(settings.min_seqlen, 2)
            and sk >= sq and query.dtype in (torch.float16, torch.bfloat16)
            and (dropout == 0.0 or not module.training)
            and not (torch.is_grad_enabled() and query.requires_grad)
            and is_causal is not False
            and getattr(module, "is_causal", True)
            and kwargs.get("softcap") is None
            and kwargs.get("sliding_window") is None
            and (scaling is None or scaling > 0)
            and query.device.type in ("cuda", "cpu"))


def _kernel_for(settings: Settings, name: str, module, device):
    """The module's layer's Kernel (a DenseKernel for a dense layer),
    cached on the module."""
    cache = module.__dict__.setdefault("_prism_attn_kernels", {})
    kern = cache.get((name, device))
    if kern is None:
        kern = _kernel(settings.config if settings.config is not None
                       else module.config, device=device,
                       overrides=settings.overrides)
        layer = getattr(module, "layer_idx", None)
        if layer is not None:
            kern = kern.for_layer(layer)
        cache[(name, device)] = kern
    return kern


def _attention(settings, name, module, query, key, value, attention_mask,
               dropout, scaling, is_causal, kwargs):
    kern = None
    if _use_prism(settings, module, query, key, attention_mask, dropout,
                  scaling, is_causal, kwargs):
        kern = _kernel_for(settings, name, module, query.device)
        if kern.dense:
            settings.dense_calls += 1
            kern = None
        # a prefix of whole blocks: otherwise the method's block-causal
        # rule would hide keys a causal mask shows (docs/python.md)
        elif (key.shape[2] - query.shape[2]) % kern.block_size:
            kern = None
    if kern is not None:
        d = query.shape[-1]
        scale = ({} if scaling is None
                 or math.isclose(scaling, d ** -0.5, rel_tol=1e-6)
                 else {"softmax_scale": float(scaling)})
        if settings.record:
            o, mask = kern.prefill(query, key, value, return_mask=True,
                                   **scale)
            settings.densities.append(mask.density())
        else:
            o = kern.prefill(query, key, value, **scale)
        settings.prism_calls += 1
        return o.transpose(1, 2).contiguous(), None
    from transformers.integrations.sdpa_attention import \
        sdpa_attention_forward

    settings.sdpa_calls += 1
    sq, sk = query.shape[2], key.shape[2]
    if attention_mask is None and 1 < sq < sk:
        # bottom-right causal (see the module comment), spelled out
        attention_mask = torch.ones(sq, sk, dtype=torch.bool,
                                    device=query.device).tril(sk - sq)
        attention_mask = attention_mask[None, None]
    return sdpa_attention_forward(module, query, key, value, attention_mask,
                                  dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)
