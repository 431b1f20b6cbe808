"""Wall time of the whole forward pass of SmolLM2-135M at 8K tokens: every
layer's attention dense (PyTorch SDPA) against Prism (libprism's prefill).

The model runs in bf16 on CUDA (float32 on the CPU), on a real text, with
the library's plan made once per setting before timing.  Each variant is
timed over --reps forwards after --warmup ones, with CUDA events around the
whole forward (a host clock after a synchronisation on the CPU); the table
gives the median, the attention share is measured the same way with the
rest of the layer skipped.

    python3 -m eval.time_forward --device cuda --tokens 8192 \\
        --settings 64:0.95 128:0.95 --out eval/out/time.json
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

from eval import model as MD
from eval import texts as TX
from eval import methods as M


def timer(device):
    """A function that times fn() once, in milliseconds."""
    if device.type == "cuda":
        def run(fn):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b)
    else:
        def run(fn):
            t = time.perf_counter()
            fn()
            return (time.perf_counter() - t) * 1e3
    return run


def median_ms(fn, device, warmup, reps):
    t = timer(device)
    for _ in range(warmup):
        t(fn)
    return statistics.median(t(fn) for _ in range(reps))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--text", default="pyref")
    ap.add_argument("--text-dir", default=os.environ.get("PRISM_EVAL_TEXTS"))
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--settings", nargs="+", default=["64:0.95", "128:0.95"],
                    help="BLOCK:THRESHOLD pairs for Prism")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    g = MD.GGUFModel()
    net = MD.SmolLM2(g, dev, dtype)
    tok = MD.build_tokenizer(g)
    ids = torch.tensor(tok.encode(TX.load(a.text, a.text_dir)).ids[:a.tokens])
    S = ids.shape[0]

    from eval import prism_lib as P
    ctx = P.Context(dev)
    rows = []

    def measure(name, attn, density=None):
        ms = median_ms(lambda: net.forward(ids, attn), dev, a.warmup, a.reps)
        rows.append(dict(method=name, forward_ms=round(ms, 3),
                         density=density))
        print(f"{name:24s} forward {ms:9.3f} ms"
              + (f"  density {density:.3f}" if density is not None else ""),
              flush=True)

    measure("dense (SDPA)", MD.dense_attention, 1.0)
    for s in a.settings:
        bs, thr = s.split(":")
        cfg = P.Config(P.DEFAULT_CONFIG, block_size=int(bs),
                       threshold_high=float(thr), threshold_low=float(thr),
                       dtype=torch.bfloat16)
        plan = P.Plan(ctx, cfg, S)
        m = M.make_method("prism", int(bs), float(thr),
                          lambda c, b, t: plan)
        net.forward(ids, m)                      # density on this text
        density = m.summary()["density"]
        # timed without the per-layer density bookkeeping of the method
        measure(f"prism bs={bs} thr={thr}",
                lambda q, k, v, layer: plan.prefill(q, k, v)[0], density)

    meta = dict(device=str(dev), device_name=(torch.cuda.get_device_name(dev)
                                              if dev.type == "cuda" else "cpu"),
                dtype=str(dtype), tokens=S, text=a.text, reps=a.reps,
                torch=torch.__version__)
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
