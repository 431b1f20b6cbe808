"""Where the selection loses: per-layer and per-head diagnostics.

Teacher-forced: every layer is fed the dense run's q, k, v, so each number
is that layer's own error, not the upstream layers' errors carried along.

diagnose()  per layer and head, at one setting: density; the share of the
            exact attention mass inside the kept blocks (recall) for
            Prism's selection, each of its two bands alone, the oracle
            (Prism's counts by exact mass) and sink + recent (Prism's
            counts); the relative attention-output error of each.
screen()    per layer, for a setting: density, recall and output error
            (a cheap look at a setting before a whole-model run).
ablate()    whole-model runs with the setting in one layer only (dense
            elsewhere): what each layer alone costs in perplexity.
"""
from __future__ import annotations

import dataclasses
import time

import torch

from . import methods as M
from . import prism_ref as R
from .model import dense_attention
from .run_eval import log, score


def row_mass(q, k, bs):
    """Exact attention mass per (head, query block, key block), each row
    normalised to 1."""
    m = M.block_attention_mass(q, k, bs).double()
    return m / m.sum(-1, keepdim=True).clamp_min(1e-30)


def per_head_err(o, od):
    """||o - od|| / ||od|| per head: [Hq]."""
    d = (o.double() - od.double())[0]
    return (d.flatten(1).norm(dim=1) / od.double()[0].flatten(1).norm(dim=1)).tolist()


def per_head_density(bm):
    nq, nk = bm.shape[1], bm.shape[2]
    return (bm.sum((1, 2)).double() / M.causal_block_count(nq, nk)).tolist()


def band_masks(q, k, s):
    """Each band's own top-p mask plus the forced blocks: (high, low)."""
    qb, kb = q.to(torch.bfloat16)[0], k.to(torch.bfloat16)[0]
    _, scales = R.select(qb, kb, s.bs, high_dim=s.high_dim, low_dim=s.low_dim,
                         threshold_high=s.thr_high, threshold_low=s.thr_low,
                         calibrate=s.calibrate, temp_high=s.temp_high,
                         temp_low=s.temp_low, return_scales=True)
    Hq, D = qb.shape[0], qb.shape[-1]
    g = Hq // kb.shape[0]
    pq = R.pool_blocks(qb, s.bs)
    pk = R.pool_blocks(kb, s.bs).repeat_interleave(g, dim=0)
    nq, nk = pq.shape[1], pk.shape[1]
    allowed = R.block_causal(nq, nk, q.device).expand(Hq, nq, nk)
    out = []
    for band, width, thr, scale in (("high", s.high_dim, s.thr_high, scales[0]),
                                    ("low", s.low_dim, s.thr_low, scales[1])):
        dims = R.band_dims(D, width, band)
        m = R.top_p(R.band_probs(pq, pk, dims, scale, allowed), thr, allowed)
        m[:, :, 0] = True
        i = torch.arange(nq)
        m[:, i, i + (nk - nq)] = True
        out.append(m & allowed)
    return out


def recall(mass, bm):
    """Mean over rows of the exact mass inside the kept blocks: [Hq]."""
    return (mass * bm).sum(-1).mean(-1).tolist()


def diagnose(qkv, sels):
    out = []
    for li in sorted(qkv):
        q, k, v = qkv[li]
        s = sels[li]
        t0 = time.time()
        od = dense_attention(q, k, v)
        mass = row_mass(q, k, s.bs)
        bm = s.select(q, k)
        counts = bm.sum(-1)
        allowed = R.block_causal(bm.shape[1], bm.shape[2], q.device).expand_as(bm)
        masks = {"prism": bm,
                 "oracle": M.top_count_mask(mass, counts, allowed),
                 "sink_recent": M.sink_recent_mask(counts, bm.shape[2])}
        hi, lo = band_masks(q, k, s)
        masks["high_only"], masks["low_only"] = hi, lo
        entry = {"layer": li}
        for name, m in masks.items():
            o = M.block_sparse_attention(q, k, v, m, s.bs)
            entry[name] = {"density": per_head_density(m), "recall": recall(mass, m),
                           "rel_err": per_head_err(o, od)}
        # how concentrated the true attention is: blocks to reach 95% mass
        srt = mass.sort(-1, descending=True).values.cumsum(-1)
        need = (srt < 0.95).sum(-1) + 1
        entry["blocks_for_95"] = (need.double() / allowed.sum(-1)).mean(-1).tolist()
        out.append(entry)
        log(f"  layer {li:2d}: prism err {sum(entry['prism']['rel_err']) / 9:.3f} "
            f"oracle {sum(entry['oracle']['rel_err']) / 9:.3f} "
            f"recall {sum(entry['prism']['recall']) / 9:.3f} ({time.time() - t0:.1f} s)")
    return out


def screen(qkv, sels):
    out = []
    for li in sorted(qkv):
        q, k, v = qkv[li]
        s = sels[li]
        if s.dense:
            out.append({"layer": li, "density": 1.0, "recall": 1.0, "rel_err": 0.0})
            continue
        bm = s.select(q, k)
        o = M.block_sparse_attention(q, k, v, bm, s.bs)
        od = dense_attention(q, k, v)
        mass = row_mass(q, k, s.bs)
        out.append({"layer": li,
                    "density": sum(per_head_density(bm)) / bm.shape[0],
                    "recall": sum(recall(mass, bm)) / bm.shape[0],
                    "rel_err": ((o - od).norm() / od.norm()).item()})
    return out


def ablate(net, ids, xs, dense_lp, base_ppl, sels, method_cls, layers=None):
    """The setting in one layer at a time (every layer, or `layers`),
    resumed from the dense run's hidden states at that layer."""
    dense = dataclasses.replace(sels[0], dense=True)
    out = []
    for li in sorted(xs):
        if sels[li].dense or (layers is not None and li not in layers):
            continue
        one = [dense] * len(sels)
        one[li] = sels[li]
        m = method_cls(one)
        t0 = time.time()
        logits = net.forward(ids, m, start=li, x=xs[li])
        r = score(logits, dense_lp, ids)
        r.update(layer=li, density=m.density[li],
                 ppl_delta_pct=100.0 * (r["ppl"] - base_ppl) / base_ppl)
        out.append(r)
        log(f"  only layer {li:2d}: {r['ppl_delta_pct']:+.2f}% kl {r['kl']:.4f} "
            f"density {r['density']:.3f} ({time.time() - t0:.0f} s)")
    return out
