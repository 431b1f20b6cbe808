"""Attention methods for the model runner, all at block level.

Every method is a callable ``m(q, k, v, layer) -> o`` (see model.py) that
also records, per layer, the density of its block mask (selected blocks /
block-causal blocks, averaged over heads) and optionally the relative
error of its output against exact attention on the same inputs.

  dense          exact causal attention (SDPA)
  prism          the library: prism_prefill (selection + attention) in the
                 plan's dtype (bf16 by default), read back through the mask
  prism-sel      the library's selection (prism_estimate), attention in
                 torch float32 (separates selection from bf16 rounding)
  prism-nocalib  the library with calibrate=false (temps 1.0)
  prism-nocalib-sel  its selection with float32 torch attention
  prism-ref      eval/prism_ref.py's selection (torch), float32 attention
  meanpool       one band over all dims, logits / sqrt(D), top-p at the
                 same threshold, forced sink and diagonal; float32 attention
  sink-recent    per row and head, block 0 plus the most recent blocks, as
                 many as the library's prism selection keeps for that row
                 and head on the same q and k; float32 attention
  oracle         per row and head, Prism's count of blocks chosen by their
                 exact attention mass (what an estimator that knew the true
                 attention would keep at Prism's density); float32 attention
  dense-lib      the library's block-sparse attention with every causal
                 block selected (the bf16 rounding floor of `prism`)
  prism-layers   the library with a config's per-layer settings (its
                 layers: section): each layer runs the plan of its resolved
                 config (prism_config_for_layer), dense layers run exact
                 attention; density counts dense layers as 1
  prism-layers-sel  the same selections with float32 torch attention
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from . import prism_ref
from .model import dense_attention

METHODS = ["dense", "prism", "prism-sel", "prism-nocalib", "prism-nocalib-sel",
           "prism-ref", "meanpool", "sink-recent", "oracle", "dense-lib",
           "prism-layers", "prism-layers-sel"]
LIB_METHODS = {"prism", "prism-sel", "prism-nocalib", "prism-nocalib-sel",
               "sink-recent", "oracle", "dense-lib", "prism-layers",
               "prism-layers-sel"}
# methods that take their whole setting from the config, not the grid
LAYERED_METHODS = {"prism-layers", "prism-layers-sel"}


def causal_block_count(nq: int, nk: int) -> int:
    off = nk - nq
    return sum(min(nk, i + off + 1) for i in range(nq))


def block_sparse_attention(q, k, v, bm: torch.Tensor, bs: int,
                           budget_bytes: Optional[int] = None) -> torch.Tensor:
    """Exact attention restricted to the selected blocks, in float32.

    q [1,Hq,Sq,D], k/v [1,Hkv,Sk,D], bm bool [Hq,nq,nk]; token-level causal
    mask everywhere (it only bites inside the diagonal block).  Query rows
    are processed in chunks of whole blocks so the [Hq, rows, keys] score
    tile stays within `budget_bytes`."""
    _, Hq, Sq, D = q.shape
    Hkv, Sk = k.shape[1], k.shape[2]
    g = Hq // Hkv
    dev = q.device
    qf = q[0].float()
    kf = k[0].float().repeat_interleave(g, dim=0)
    vf = v[0].float().repeat_interleave(g, dim=0)
    off = Sk - Sq
    if budget_bytes is None:
        budget_bytes = (512 << 20) if dev.type == "cuda" else (64 << 20)
    rows = max(bs, (budget_bytes // (Hq * Sk * 4)) // bs * bs)
    out = torch.empty(Hq, Sq, D, dtype=torch.float32, device=dev)
    scale = 1.0 / math.sqrt(D)
    kpos = torch.arange(Sk, device=dev)
    for t0 in range(0, Sq, rows):
        t1 = min(Sq, t0 + rows)
        kend = min(Sk, t1 + off)                 # causal: no key past the last query
        b0, b1 = t0 // bs, -(-t1 // bs)
        tok = bm[:, b0:b1].repeat_interleave(bs, dim=1)[:, t0 - b0 * bs: t1 - b0 * bs]
        tok = tok.repeat_interleave(bs, dim=2)[:, :, :kend]
        qpos = torch.arange(t0, t1, device=dev) + off
        allow = tok & (kpos[None, :kend] <= qpos[:, None])[None]
        s = torch.matmul(qf[:, t0:t1], kf[:, :kend].transpose(1, 2)) * scale
        s.masked_fill_(~allow, float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num_(0.0)
        out[:, t0:t1] = torch.matmul(p, vf[:, :kend])
    return out.unsqueeze(0)


def block_attention_mass(q, k, bs: int, budget_bytes: Optional[int] = None) -> torch.Tensor:
    """Exact causal attention probabilities summed per (query block, key
    block): [Hq, nq, nk] float32 (each row sums to the block's query count)."""
    _, Hq, Sq, D = q.shape
    Hkv, Sk = k.shape[1], k.shape[2]
    g = Hq // Hkv
    dev = q.device
    qf = q[0].float()
    kf = k[0].float().repeat_interleave(g, dim=0)
    off = Sk - Sq
    nq, nk = -(-Sq // bs), -(-Sk // bs)
    if budget_bytes is None:
        budget_bytes = (512 << 20) if dev.type == "cuda" else (64 << 20)
    rows = max(bs, (budget_bytes // (Hq * nk * bs * 4)) // bs * bs)
    mass = torch.zeros(Hq, nq, nk, dtype=torch.float32, device=dev)
    kpos = torch.arange(Sk, device=dev)
    scale = 1.0 / math.sqrt(D)
    for t0 in range(0, Sq, rows):
        t1 = min(Sq, t0 + rows)
        qpos = torch.arange(t0, t1, device=dev) + off
        s = torch.matmul(qf[:, t0:t1], kf.transpose(1, 2)) * scale
        s.masked_fill_(~(kpos[None, :] <= qpos[:, None])[None], float("-inf"))
        p = torch.softmax(s, dim=-1)
        p = F.pad(p, (0, nk * bs - Sk)).view(Hq, t1 - t0, nk, bs).sum(-1)
        qb = torch.arange(t0, t1, device=dev) // bs
        mass.index_add_(1, qb, p)
    return mass


def top_count_mask(score: torch.Tensor, counts: torch.Tensor, allowed: torch.Tensor):
    """Per row the counts[h, i] allowed blocks of highest score (ties to the
    lower index)."""
    sc = score.masked_fill(~allowed, float("-inf"))
    order = torch.sort(sc, dim=-1, descending=True, stable=True).indices
    rank_keep = torch.arange(score.shape[-1], device=score.device) < counts.long()[..., None]
    keep = torch.zeros_like(allowed)
    keep.scatter_(-1, order, rank_keep)
    return keep & allowed


def full_block_mask(Hq, nq, nk, device) -> torch.Tensor:
    return prism_ref.block_causal(nq, nk, device).expand(Hq, nq, nk).clone()


def sink_recent_mask(counts: torch.Tensor, nk: int) -> torch.Tensor:
    """counts [Hq, nq] -> bool [Hq, nq, nk]: block 0 plus the counts-1 most
    recent block-causal blocks (the diagonal included) of each row."""
    Hq, nq = counts.shape
    dev = counts.device
    j = torch.arange(nk, device=dev)[None, None, :]
    d = (torch.arange(nq, device=dev) + (nk - nq))[None, :, None]
    c = counts.long()[:, :, None]
    recent = (j <= d) & (j > d - (c - 1))
    sink = (j == 0) & (c >= 1)
    return recent | sink


class Method:
    """Base: per-layer density and (optional) relative error records."""

    name = "?"
    uses_lib = False

    def __init__(self, bs: int = 64, threshold: float = 1.0, track_error: bool = False):
        self.bs, self.threshold, self.track_error = bs, threshold, track_error
        self.reset()

    def reset(self):
        self.density: Dict[int, float] = {}
        self.rel_err: Dict[int, float] = {}
        self.lib_density: Dict[int, float] = {}
        self.counts: Dict[int, torch.Tensor] = {}
        self.keep_counts = False

    def attend(self, q, k, v, layer):  # -> (o, bool mask or None)
        raise NotImplementedError

    def __call__(self, q, k, v, layer):
        o, bm = self.attend(q, k, v, layer)
        if bm is None:
            self.density[layer] = 1.0
        else:
            nq, nk = bm.shape[-2], bm.shape[-1]
            self.density[layer] = (bm.sum().item()
                                   / (bm.shape[0] * causal_block_count(nq, nk)))
            if self.keep_counts:
                self.counts[layer] = bm.sum(-1).to(torch.int32).cpu()
        if self.track_error:
            od = dense_attention(q.float(), k.float(), v.float())
            self.rel_err[layer] = ((o.float() - od).norm() / od.norm()).item()
        return o

    def summary(self) -> dict:
        L = sorted(self.density)
        r = {"density": sum(self.density.values()) / max(1, len(L)),
             "layer_density": [self.density[i] for i in L]}
        if self.rel_err:
            r["layer_rel_err"] = [self.rel_err[i] for i in sorted(self.rel_err)]
        if self.lib_density:
            r["lib_density"] = sum(self.lib_density.values()) / len(self.lib_density)
        return r


class Dense(Method):
    name = "dense"

    def attend(self, q, k, v, layer):
        return dense_attention(q, k, v), None


class TorchMasked(Method):
    """A selection computed in Python, attention in float32 torch."""

    def select(self, q, k, layer) -> torch.Tensor:
        raise NotImplementedError

    def attend(self, q, k, v, layer):
        bm = self.select(q, k, layer)
        return block_sparse_attention(q, k, v, bm, self.bs).to(q.dtype), bm


class MeanPool(TorchMasked):
    name = "meanpool"

    def select(self, q, k, layer):
        return prism_ref.meanpool_select(q, k, self.bs, self.threshold)


class PrismRef(TorchMasked):
    """prism_ref.select with a config's fields; q, k are rounded to the
    config's dtype first, as the library sees them."""
    name = "prism-ref"

    def __init__(self, cfg, **kw):
        self.cfg = cfg
        super().__init__(cfg.s.block_size, cfg.s.threshold_high, **kw)
        from .prism_lib import TORCH_DTYPE
        self.round = TORCH_DTYPE[cfg.s.dtype]

    def select(self, q, k, layer):
        return prism_ref.select_like_config(q.to(self.round), k.to(self.round), self.cfg)


class LibMethod(Method):
    uses_lib = True

    def __init__(self, plan, **kw):
        self.plan = plan
        super().__init__(plan.bs, plan.cfg.s.threshold_high, **kw)

    def _lib_density(self, layer):
        self.lib_density[layer] = self.plan.density()


class LibPrism(LibMethod):
    """prism_prefill: the library's selection and attention."""
    name = "prism"

    def attend(self, q, k, v, layer):
        from .prism_lib import mask_to_bool
        o, counts, indices = self.plan.prefill(q, k, v)
        self._lib_density(layer)
        return o.to(q.dtype), mask_to_bool(counts, indices)


class LibSelect(LibMethod):
    """prism_estimate's selection, float32 torch attention."""
    name = "prism-sel"

    def attend(self, q, k, v, layer):
        from .prism_lib import mask_to_bool
        counts, indices = self.plan.estimate(q, k)
        self._lib_density(layer)
        bm = mask_to_bool(counts, indices)
        return block_sparse_attention(q, k, v, bm, self.bs).to(q.dtype), bm


class SinkRecent(LibMethod):
    """Sink + most recent blocks with Prism's per-row, per-head counts."""
    name = "sink-recent"

    def __init__(self, plan, **kw):
        super().__init__(plan, **kw)
        self.prism_counts: Dict[int, torch.Tensor] = {}

    def attend(self, q, k, v, layer):
        counts, _ = self.plan.estimate(q, k)
        nk = -(-k.shape[2] // self.bs)
        bm = sink_recent_mask(counts, nk)
        if self.keep_counts:
            self.prism_counts[layer] = counts.cpu()
        return block_sparse_attention(q, k, v, bm, self.bs).to(q.dtype), bm


class Oracle(LibMethod):
    """Per row and head, as many blocks as libprism's selection keeps, chosen
    by their exact attention mass on the same q, k: what an estimator that
    knew the true attention would keep at Prism's density."""
    name = "oracle"

    def attend(self, q, k, v, layer):
        counts, _ = self.plan.estimate(q, k)
        mass = block_attention_mass(q, k, self.bs)
        nq, nk = mass.shape[1], mass.shape[2]
        allowed = prism_ref.block_causal(nq, nk, q.device).expand_as(mass)
        bm = top_count_mask(mass, counts, allowed)
        return block_sparse_attention(q, k, v, bm, self.bs).to(q.dtype), bm


class LibDense(LibMethod):
    """The library's attention over the full block-causal mask."""
    name = "dense-lib"

    def attend(self, q, k, v, layer):
        from .prism_lib import bool_to_mask
        nq, nk = -(-q.shape[2] // self.bs), -(-k.shape[2] // self.bs)
        bm = full_block_mask(q.shape[1], nq, nk, q.device)
        counts, idx = bool_to_mask(bm)
        o = self.plan.sparse_attention(q, k, v, counts, idx)
        return o.to(q.dtype), bm


class LibLayers(Method):
    """Per-layer plans from a config's layers: section; None = dense."""
    name = "prism-layers"
    uses_lib = True

    def __init__(self, layer_plans, torch_attention=False, **kw):
        self.layer_plans, self.torch_attention = layer_plans, torch_attention
        first = next((p for p in layer_plans if p is not None), None)
        super().__init__(first.bs if first else 64,
                         first.cfg.s.threshold_high if first else 1.0, **kw)

    def attend(self, q, k, v, layer):
        from .prism_lib import mask_to_bool
        plan = self.layer_plans[layer]
        if plan is None:
            self.lib_density[layer] = 1.0
            return dense_attention(q, k, v), None
        self.bs = plan.bs
        if self.torch_attention:
            counts, indices = plan.estimate(q, k)
            bm = mask_to_bool(counts, indices)
            o = block_sparse_attention(q, k, v, bm, plan.bs)
        else:
            o, counts, indices = plan.prefill(q, k, v)
            bm = mask_to_bool(counts, indices)
        self.lib_density[layer] = plan.density()
        return o.to(q.dtype), bm


def make_method(name: str, bs: int, threshold: float, plans=None,
                track_error: bool = False) -> Method:
    """plans: a callable (calibrate: bool, bs, threshold) -> prism_lib.Plan,
    for the library methods; its .layered() gives the per-layer plans of
    the config (prism-layers)."""
    kw = dict(track_error=track_error)
    if name in LAYERED_METHODS:
        if plans is None:
            raise ValueError(f"{name} needs the library")
        m = LibLayers(plans.layered(), torch_attention=name.endswith("-sel"), **kw)
        m.name = name
        return m
    if name == "dense":
        return Dense(bs, 1.0, **kw)
    if name == "meanpool":
        return MeanPool(bs, threshold, **kw)
    if name == "prism-ref":
        return PrismRef(plans(True, bs, threshold).cfg, **kw)
    if name in LIB_METHODS and plans is None:
        raise ValueError(f"{name} needs the library")
    if name == "prism":
        return LibPrism(plans(True, bs, threshold), **kw)
    if name == "prism-sel":
        return LibSelect(plans(True, bs, threshold), **kw)
    if name == "prism-nocalib":
        m = LibPrism(plans(False, bs, threshold), **kw)
        m.name = name
        return m
    if name == "prism-nocalib-sel":
        m = LibSelect(plans(False, bs, threshold), **kw)
        m.name = name
        return m
    if name == "sink-recent":
        return SinkRecent(plans(True, bs, threshold), **kw)
    if name == "oracle":
        return Oracle(plans(True, bs, threshold), **kw)
    if name == "dense-lib":
        return LibDense(plans(True, bs, 1.0), **kw)
    raise ValueError(f"unknown method {name!r}; known: {METHODS}")
