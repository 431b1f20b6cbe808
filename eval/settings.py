"""Per-layer selection settings for the fidelity experiments.

A setting says, for every decoder layer, whether it runs dense attention or
Prism's selection, and with which method parameters.  It is written as a
short spec so that a command line reproduces a table row exactly:

    bs=64,thr=0.95                      every layer alike
    bs=64,thr=0.95;0-2:dense;3-10:thr=0.99

The first clause sets every layer; each later clause `RANGE:KEYS` applies
to the layers of RANGE (`a` or `a-b`, inclusive), later clauses winning.
Keys: `bs` block size; `thr` both thresholds, `th` / `tl` one of them;
`hd` / `ld` band widths (`ld=0`: one band); `cal` 1/0 calibration; `temp`
both temperatures, `temph` / `templ`; `sink` 1/0; `recent` forced recent
blocks per row (1 = the diagonal); `heads` the query heads that select
(`heads=0+3`; the others keep every block, for per-head experiments);
`dense` the layer skips Prism.

`heads` and `ld=0` are Python-only: the library always has two bands and
every head selects.  `recent` is the library's `recent_blocks` (0:
force_recent off).  Everything else is a prism_config field,
and `from_config()` builds a setting from a YAML config through the
library's own per-layer resolution (prism_config_for_layer), so the config
file and these experiments mean the same thing.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import torch

from . import prism_ref


@dataclasses.dataclass(frozen=True)
class LayerSel:
    """One layer's selection; `dense` ignores the rest."""
    dense: bool = False
    bs: int = 64
    high_dim: int = 32
    low_dim: Optional[int] = 48          # None: a single (high) band
    thr_high: float = 0.95
    thr_low: float = 0.95
    calibrate: bool = True
    temp_high: float = 1.0
    temp_low: float = 1.0
    sink: bool = True
    recent: int = 1
    heads: Optional[tuple] = None        # None: every query head selects

    def select(self, q: torch.Tensor, k: torch.Tensor,
               round_to=torch.bfloat16) -> torch.Tensor:
        """bool [Hq, nq, nk] on q, k rounded as the library sees them."""
        bm = prism_ref.select(
            q.to(round_to), k.to(round_to), self.bs, high_dim=self.high_dim,
            low_dim=self.low_dim, threshold_high=self.thr_high,
            threshold_low=self.thr_low, calibrate=self.calibrate,
            temp_high=self.temp_high, temp_low=self.temp_low,
            force_sink=self.sink, force_recent=self.recent > 0,
            recent_blocks=self.recent)
        if self.heads is not None:
            full = prism_ref.block_causal(bm.shape[1], bm.shape[2], bm.device)
            for h in range(bm.shape[0]):
                if h not in self.heads:
                    bm[h] = full
        return bm


_FLOAT = {"thr": ("thr_high", "thr_low"), "th": ("thr_high",), "tl": ("thr_low",),
          "temp": ("temp_high", "temp_low"), "temph": ("temp_high",),
          "templ": ("temp_low",)}
_INT = {"bs": "bs", "hd": "high_dim", "recent": "recent"}
_BOOL = {"cal": "calibrate", "sink": "sink"}


def _apply(sel: LayerSel, keys: str) -> LayerSel:
    kw = {}
    for item in filter(None, (x.strip() for x in keys.split(","))):
        if item == "dense":
            kw["dense"] = True
            continue
        if "=" not in item:
            raise ValueError(f"setting key {item!r}: write key=value (or dense)")
        key, val = (x.strip() for x in item.split("=", 1))
        if key in _FLOAT:
            for f in _FLOAT[key]:
                kw[f] = float(val)
        elif key in _INT:
            kw[_INT[key]] = int(val)
        elif key == "heads":
            kw["heads"] = tuple(int(h) for h in val.split("+"))
        elif key == "ld":
            kw["low_dim"] = int(val) or None
        elif key in _BOOL:
            kw[_BOOL[key]] = val not in ("0", "false", "no")
        else:
            raise ValueError(f"unknown setting key {key!r}")
    return dataclasses.replace(sel, **kw)


def _range(text: str):
    a, _, b = text.partition("-")
    lo, hi = int(a), int(b) if b else int(a)
    if lo < 0 or hi < lo:
        raise ValueError(f"bad layer range {text!r}")
    return lo, hi


def parse(spec: str, n_layers: int) -> List[LayerSel]:
    """The per-layer selections of a spec (see the module docstring)."""
    clauses = [c.strip() for c in spec.split(";") if c.strip()]
    if not clauses:
        raise ValueError("empty setting")
    base = _apply(LayerSel(), clauses[0])
    out = [base] * n_layers
    for c in clauses[1:]:
        if ":" not in c:
            raise ValueError(f"clause {c!r}: write RANGE:keys")
        rng, keys = c.split(":", 1)
        lo, hi = _range(rng.strip())
        for li in range(lo, min(hi, n_layers - 1) + 1):
            out[li] = _apply(out[li], keys)
    return out


def from_config(path: str, n_layers: int, lib_dtype=None) -> List[LayerSel]:
    """Per-layer selections of a YAML config, resolved by the library
    (prism_config_for_layer), so the config file is the single source."""
    from . import prism_lib as P
    base = P.Config(path)
    out = []
    for li in range(n_layers):
        cfg, dense = base.for_layer(li)
        s = cfg.s
        out.append(LayerSel(dense=dense, bs=s.block_size, high_dim=s.high_dim,
                            low_dim=s.low_dim, thr_high=s.threshold_high,
                            thr_low=s.threshold_low, calibrate=bool(s.calibrate),
                            temp_high=s.temp_high, temp_low=s.temp_low,
                            sink=bool(s.force_sink),
                            recent=s.recent_blocks if s.force_recent else 0))
    return out


def describe(sels: List[LayerSel]) -> Dict[str, object]:
    """A compact JSON view: the distinct selections and their layers."""
    groups: Dict[LayerSel, List[int]] = {}
    for li, s in enumerate(sels):
        groups.setdefault(s, []).append(li)
    return {"groups": [{"layers": ls, **dataclasses.asdict(s)}
                       for s, ls in groups.items()]}
