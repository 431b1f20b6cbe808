"""A plain torch implementation of the Prism method, the tests' oracle.

Written from docs/method.md (sections 2-7) in float64, independent of the
C library: block mean pooling, the RoPE frequency bands, energy
calibration, dual-band block scores, top-p selection per band with the
sink and diagonal blocks, and attention restricted to the selected blocks
with bottom-right causality.  Inputs are [B, H, S, D] tensors.
"""

from __future__ import annotations

import math

import torch


def band_dims(head_dim: int, width: int, high: bool, interleaved: bool):
    """The dims of the high band (first width/2 pairs) or the low band
    (last width/2 pairs)."""
    half = head_dim // 2
    pairs = range(0, width // 2) if high else range(half - width // 2, half)
    dims = []
    for i in pairs:
        dims += [2 * i, 2 * i + 1] if interleaved else [i, i + half]
    return torch.tensor(sorted(dims))


def pool(x: torch.Tensor, bs: int) -> torch.Tensor:
    """Mean of each block of bs tokens (the last block over its own)."""
    b, h, s, d = x.shape
    n = -(-s // bs)
    pad = torch.zeros(b, h, n * bs, d, dtype=torch.float64)
    pad[:, :, :s] = x.double()
    counts = torch.full((n,), float(bs), dtype=torch.float64)
    counts[-1] = s - (n - 1) * bs
    return pad.view(b, h, n, bs, d).sum(3) / counts[:, None]


def top_p(prob: torch.Tensor, threshold: float) -> torch.Tensor:
    """keep[j]: blocks by decreasing probability (ties to the lower j)
    while the mass before them is below the threshold."""
    keep = torch.zeros(prob.shape[0], dtype=torch.bool)
    order = sorted(range(prob.shape[0]), key=lambda j: (-float(prob[j]), j))
    mass = 0.0
    for j in order:
        if mass >= threshold:
            break
        keep[j] = True
        mass += float(prob[j])
    return keep


def estimate(q, k, cfg: dict) -> torch.Tensor:
    """bool [B, Hq, nq, nk]: the blocks Prism selects."""
    p = cfg["prism"]
    bs, d = p["block_size"], cfg["model"]["head_dim"]
    dh, dl = p["high_dim"], p["low_dim"]
    inter = cfg["rope"]["layout"] == "interleaved"
    hi = band_dims(d, dh, True, inter)
    lo = band_dims(d, dl, False, inter)
    pq, pk = pool(q, bs), pool(k, bs)
    b, hq, nq, _ = pq.shape
    hkv, nk = pk.shape[1], pk.shape[2]
    group = hq // hkv
    out = torch.zeros(b, hq, nq, nk, dtype=torch.bool)

    def rms(x, dims):
        return math.sqrt(float((x[:, dims] ** 2).mean()))

    for bi in range(b):
        for h in range(hq):
            xq, xk = pq[bi, h], pk[bi, h // group]
            if p["calibrate"]:
                rq, rk = rms(xq, slice(None)), rms(xk, slice(None))
                th = (math.sqrt(dh / d) * rms(xq, hi) / max(rq, 1e-6)
                      * rms(xk, hi) / max(rk, 1e-6))
                tl = (math.sqrt(dl / d) * rms(xq, lo) / max(rq, 1e-6)
                      * rms(xk, lo) / max(rk, 1e-6))
            else:
                th, tl = p["temps"]["high"], p["temps"]["low"]
            sh, sl = math.sqrt(dh) * th, math.sqrt(dl) * tl
            for i in range(nq):
                allowed = min(max(i + nk - nq + 1, 0), nk)
                if allowed == 0:
                    continue
                lh = xk[:allowed, hi] @ xq[i, hi] / max(sh, 1e-12)
                ll = xk[:allowed, lo] @ xq[i, lo] / max(sl, 1e-12)
                keep = (top_p(torch.softmax(lh, 0), p["thresholds"]["high"])
                        | top_p(torch.softmax(ll, 0), p["thresholds"]["low"]))
                if p["force_sink"]:
                    keep[0] = True
                if p["force_recent"]:
                    keep[max(0, allowed - p.get("recent_blocks", 1)):allowed] = True
                out[bi, h, i, :allowed] = keep
    return out


def attention(q, k, v, blocks: torch.Tensor, bs: int, scale=None):
    """Attention over the selected blocks, causal with queries at the end,
    logits scaled by `scale` (1/sqrt(D) when None); returns (o, lse) in
    float64."""
    b, hq, sq, d = q.shape
    hkv, sk = k.shape[1], k.shape[2]
    g = hq // hkv
    kk = k.double().repeat_interleave(g, 1)
    vv = v.double().repeat_interleave(g, 1)
    allow = blocks.repeat_interleave(bs, 2)[:, :, :sq]
    allow = allow.repeat_interleave(bs, 3)[..., :sk]
    t = torch.arange(sq)[:, None] + (sk - sq)
    allow = allow & (torch.arange(sk)[None, :] <= t)
    s = q.double() @ kk.transpose(-1, -2) * (scale or 1 / math.sqrt(d))
    s = s.masked_fill(~allow, float("-inf"))
    lse = torch.logsumexp(s, -1)
    p = torch.exp(s - lse[..., None]).nan_to_num(0.0)
    return p @ vv, lse


def rope(x: torch.Tensor, theta: float, first: int = 0,
         interleaved: bool = False) -> torch.Tensor:
    """x [B, H, S, D] rotated at positions first .. first + S - 1."""
    d = x.shape[-1]
    freq = theta ** (-torch.arange(0, d // 2, dtype=torch.float64) * 2 / d)
    pos = torch.arange(first, first + x.shape[2], dtype=torch.float64)
    ang = pos[:, None] * freq[None, :]
    cos, sin = torch.cos(ang), torch.sin(ang)
    xd = x.double()
    if interleaved:
        a, b = xd[..., 0::2], xd[..., 1::2]
        out = torch.empty_like(xd)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out
    a, b = xd[..., : d // 2], xd[..., d // 2:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], -1)


def workload(b, hq, hkv, sq, sk, d, theta, seed, dtype=torch.bfloat16,
             interleaved=False):
    """Inputs with structure (a shared direction per head plus noise, RoPE
    applied), so that the selection is neither empty nor dense."""
    g = torch.Generator().manual_seed(seed)
    base_q = torch.randn(1, hq, 1, d, generator=g, dtype=torch.float64)
    base_k = base_q.view(1, hkv, hq // hkv, 1, d)[:, :, 0]
    q = base_q * 2 + torch.randn(b, hq, sq, d, generator=g, dtype=torch.float64)
    k = base_k * 2 + torch.randn(b, hkv, sk, d, generator=g, dtype=torch.float64)
    # a few strong keys far from the diagonal
    spikes = torch.randint(0, sk, (4,), generator=g)
    k[:, :, spikes] *= 4
    v = torch.randn(b, hkv, sk, d, generator=g, dtype=torch.float64)
    q = rope(q, theta, sk - sq, interleaved)
    k = rope(k, theta, 0, interleaved)
    return q.to(dtype), k.to(dtype), v.to(dtype)
