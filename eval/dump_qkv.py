"""Writes real Q/K/V (post-RoPE) of chosen layers as test fixtures.

Runs SmolLM2-135M-Instruct densely on the first --tokens tokens of a text and
writes, for each layer in --layers, one file DIR/<text>-S<tokens>-L<layer>-<dtype>.qkv:

  bytes 0-7    magic "PRISMQKV"
  bytes 8-11   N: uint32, little-endian, length of the header
  bytes 12..   header: N bytes of UTF-8 JSON, padded with spaces so that
               12 + N is a multiple of 64 (the data start is 64-byte aligned)
  data         the tensors back to back, each C-contiguous [H, S, D],
               little-endian, fp32 or bf16 (bf16 = the upper 16 bits of the
               fp32 value, round-to-nearest-even)

The header names every tensor with its shape and byte offset from the data
start: {"format": "prism-qkv", "version": 1, "dtype": "bf16", "tokens": S,
"layer": l, "q_heads": 9, "kv_heads": 3, "head_dim": 64, "rope_layout":
"half", "rope_theta": 100000.0, "text": ..., "text_sha256": ..., "model": ...,
"tensors": [{"name": "q", "shape": [9, S, 64], "offset": 0, "bytes": ...},
{"name": "k", ...}, {"name": "v", ...}]} and, with --with-output, "o": exact
causal attention of these q, k, v computed in fp32 (then stored in the
file's dtype).  Query token t has position t; keys and queries cover the
same S tokens (Sq = Sk).

  python3 -m eval.dump_qkv --text pyref --tokens 2048 --layers 0 15 29 --out eval/out/qkv
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "eval"

MAGIC = b"PRISMQKV"


def _to_bytes(t: torch.Tensor, dtype: str) -> bytes:
    t = t.detach().to("cpu").contiguous()
    if dtype == "fp32":
        return t.float().numpy().astype("<f4").tobytes()
    if dtype == "bf16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    raise ValueError(dtype)


def write(path: str, header: dict, tensors: dict, dtype: str):
    """tensors: name -> [H, S, D] torch tensor."""
    blobs, entries, off = [], [], 0
    for name, t in tensors.items():
        b = _to_bytes(t, dtype)
        entries.append({"name": name, "shape": list(t.shape), "offset": off, "bytes": len(b)})
        blobs.append(b)
        off += len(b)
    h = dict(header, format="prism-qkv", version=1, dtype=dtype, tensors=entries)
    js = json.dumps(h, sort_keys=True).encode()
    n = len(js) + (-(12 + len(js)) % 64)
    js = js + b" " * (n - len(js))
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<I", n) + js)
        for b in blobs:
            f.write(b)


def read(path: str):
    """-> (header dict, {name: float32 numpy [H, S, D]})."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:8] != MAGIC:
        raise ValueError(f"{path}: not a prism-qkv file")
    (n,) = struct.unpack("<I", raw[8:12])
    h = json.loads(raw[12:12 + n].decode())
    base = 12 + n
    out = {}
    for e in h["tensors"]:
        b = raw[base + e["offset"]: base + e["offset"] + e["bytes"]]
        if h["dtype"] == "fp32":
            a = np.frombuffer(b, dtype="<f4")
        else:
            a = (np.frombuffer(b, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        out[e["name"]] = a.reshape(e["shape"])
    return h, out


def main(argv=None):
    from eval import model as MD
    from eval import texts as TX

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default="pyref")
    ap.add_argument("--text-dir", default=None)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--layers", type=int, nargs="+", default=[0, 15, 29])
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--with-output", action="store_true",
                    help="also store exact attention output o")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="eval/out/qkv")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    net, tok, g = MD.load(a.device)
    c = g.config
    text = TX.load(a.text, a.text_dir)
    ids = torch.tensor(tok.encode(text).ids[:a.tokens])
    S = ids.shape[0]
    want = set(a.layers)
    bad = [l for l in want if not 0 <= l < c.n_layers]
    if bad:
        ap.error(f"layers {bad} out of range 0..{c.n_layers - 1}")
    got = {}

    def rec(q, k, v, layer):
        o = MD.dense_attention(q, k, v)
        if layer in want:
            got[layer] = (q[0].cpu(), k[0].cpu(), v[0].cpu(), o[0].float().cpu())
        return o

    net.forward(ids, rec, logits=False, layers=max(want) + 1)
    os.makedirs(a.out, exist_ok=True)
    for layer in sorted(want):
        q, k, v, o = got[layer]
        tensors = {"q": q, "k": k, "v": v}
        if a.with_output:
            tensors["o"] = o
        header = {"tokens": S, "layer": layer, "q_heads": c.n_heads,
                  "kv_heads": c.n_kv_heads, "head_dim": c.head_dim,
                  "rope_layout": "half", "rope_theta": c.rope_theta,
                  "text": a.text, "text_sha256": TX.sha256(text),
                  "model": os.path.basename(g.path)}
        path = os.path.join(a.out, f"{a.text}-S{S}-L{layer}-{a.dtype}.qkv")
        write(path, header, tensors, a.dtype)
        print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
