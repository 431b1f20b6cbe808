"""Prism's block selection in torch, vectorised over heads and blocks.

An independent implementation of the method's numerical contract (block
mean pooling, RoPE frequency bands, energy calibration, per-band softmax and
top-p, forced sink and diagonal blocks), used to cross-check the library and
as the selection of the mean-pooling baseline (one band over all dims).
Everything is computed in float64 from the given q and k.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch


def pool_blocks(x: torch.Tensor, bs: int) -> torch.Tensor:
    """x [H, S, D] -> block means [H, ceil(S/bs), D] (float64); the last
    partial block is divided by its number of valid tokens."""
    H, S, D = x.shape
    n = -(-S // bs)
    pad = n * bs - S
    xf = x.double()
    if pad:
        xf = torch.cat([xf, xf.new_zeros(H, pad, D)], dim=1)
    sums = xf.view(H, n, bs, D).sum(2)
    cnt = torch.full((n,), float(bs), dtype=torch.float64, device=x.device)
    cnt[-1] = bs - pad
    return sums / cnt[None, :, None]


def band_dims(D: int, width: int, band: str, layout: str = "half") -> list:
    """Dims of the high band (first width/2 rotary pairs) or the low band
    (last width/2 pairs) for the half or interleaved RoPE layout."""
    half = D // 2
    pairs = range(0, width // 2) if band == "high" else range(half - width // 2, half)
    if layout == "half":
        return [i for i in pairs] + [i + half for i in pairs]
    return [d for i in pairs for d in (2 * i, 2 * i + 1)]


def block_causal(nq: int, nk: int, device) -> torch.Tensor:
    i = torch.arange(nq, device=device)[:, None]
    j = torch.arange(nk, device=device)[None, :]
    return j <= i + (nk - nq)


def top_p(probs: torch.Tensor, thr: float, allowed: torch.Tensor) -> torch.Tensor:
    """Per row: blocks in decreasing probability (ties to the lower index)
    while the mass before them is below thr; restricted to `allowed`."""
    p = torch.where(allowed, probs, torch.zeros_like(probs))
    sp, order = torch.sort(p, dim=-1, descending=True, stable=True)
    before = torch.cumsum(sp, dim=-1) - sp
    keep_sorted = before < thr
    keep = torch.zeros_like(keep_sorted)
    keep.scatter_(-1, order, keep_sorted)
    return keep & allowed


def band_probs(pq, pk, dims, scale, allowed):
    lq, lk = pq[..., dims], pk[..., dims]
    logits = torch.einsum("hid,hjd->hij", lq, lk) / scale[:, None, None]
    logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=-1)


def select(q: torch.Tensor, k: torch.Tensor, bs: int, *,
           high_dim: int, low_dim: Optional[int],
           threshold_high: float, threshold_low: float = 0.0,
           calibrate: bool = True, temp_high: float = 1.0, temp_low: float = 1.0,
           force_sink: bool = True, force_recent: bool = True,
           layout: str = "half", return_scales: bool = False,
           recent_blocks: int = 1):
    """q [1 or none, Hq, Sq, D], k [.., Hkv, Sk, D] -> bool [Hq, nq, nk].

    low_dim None: a single band (the high band), as mean pooling over all
    dims does with high_dim = D, calibrate False, temp_high 1.
    recent_blocks: with force_recent, how many of each row's most recent
    block-causal blocks are forced (1, the diagonal, is the library's rule;
    more is an experiment the library cannot express)."""
    if q.dim() == 4:
        q, k = q[0], k[0]
    Hq, Sq, D = q.shape
    Hkv, Sk = k.shape[0], k.shape[1]
    g = Hq // Hkv
    pq = pool_blocks(q, bs)
    pk = pool_blocks(k, bs).repeat_interleave(g, dim=0)
    nq, nk = pq.shape[1], pk.shape[1]
    allowed = block_causal(nq, nk, q.device).expand(Hq, nq, nk)
    dh = band_dims(D, high_dim, "high", layout)
    bands = [(dh, high_dim, threshold_high, temp_high)]
    if low_dim is not None:
        bands.append((band_dims(D, low_dim, "low", layout), low_dim, threshold_low, temp_low))

    def rms(x, dims=None):
        x = x if dims is None else x[..., dims]
        return x.pow(2).mean(dim=(1, 2)).sqrt()

    rq, rk = rms(pq), rms(pk)
    sel = torch.zeros(Hq, nq, nk, dtype=torch.bool, device=q.device)
    scales = []
    for dims, width, thr, temp in bands:
        if calibrate:
            t = (math.sqrt(width / D) * (rms(pq, dims) / rq.clamp_min(1e-6))
                 * (rms(pk, dims) / rk.clamp_min(1e-6)))
        else:
            t = torch.full((Hq,), float(temp), dtype=torch.float64, device=q.device)
        scale = (math.sqrt(width) * t).clamp_min(1e-12)
        scales.append(scale)
        sel |= top_p(band_probs(pq, pk, dims, scale, allowed), thr, allowed)
    if force_sink:
        sel[:, :, 0] = True
    if force_recent:
        i = torch.arange(nq, device=q.device)
        for r in range(max(1, recent_blocks)):
            j = i + (nk - nq) - r
            ok = j >= 0
            sel[:, i[ok], j[ok]] = True
    sel &= allowed
    return (sel, scales) if return_scales else sel


def select_like_config(q, k, cfg) -> torch.Tensor:
    """select() with the fields of a prism_lib.Config."""
    s = cfg.s
    return select(q, k, s.block_size, high_dim=s.high_dim, low_dim=s.low_dim,
                  threshold_high=s.threshold_high, threshold_low=s.threshold_low,
                  calibrate=bool(s.calibrate), temp_high=s.temp_high,
                  temp_low=s.temp_low, force_sink=bool(s.force_sink),
                  force_recent=bool(s.force_recent),
                  layout="half" if s.rope_layout == 0 else "interleaved")


def meanpool_select(q, k, bs: int, threshold: float) -> torch.Tensor:
    """The mean-pooling baseline: one band of all D dims, no calibration,
    logits / sqrt(D), top-p, forced sink and diagonal."""
    D = q.shape[-1]
    return select(q, k, bs, high_dim=D, low_dim=None, threshold_high=threshold,
                  calibrate=False, temp_high=1.0)
