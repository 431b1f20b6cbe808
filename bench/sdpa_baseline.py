#!/usr/bin/env python3
"""Times PyTorch SDPA (flash = FlashAttention-2, and cuDNN) on the shapes
`prism bench` uses, so ratios are taken on the same card in the same run.

Usage: sdpa_baseline.py --seq 8192 32768 [--heads 32 --kv-heads 8 --dim 128]
                        [--batch 1] [--dtype bf16] [--reps 20] [--no-flush]
                        [--json OUT]
Prints one line per (backend, seq): median ms, min, max, TFLOP/s counted as
2*2*B*Hq*D*Sq*Sk/2 (causal); --batch B times B sequences of each length
(`prism bench --batch`'s shape).  Inputs rotate over several buffers so the L2
cache does not flatter repeated runs, and, as in `prism bench`, a 256 MB
buffer is cleared on the stream before each repetition's start event: L2
is cold and the host's dispatch runs while the GPU is busy, so the events
time the GPU's work (--no-flush: start on an idle GPU, dispatch included).
"""
import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_backend(backend, q_sets, k_sets, v_sets, reps, warmup, flush):
    times = []
    with sdpa_kernel([backend]):
        for i in range(warmup + reps):
            q, k, v = (q_sets[i % len(q_sets)], k_sets[i % len(k_sets)],
                       v_sets[i % len(v_sets)])
            if flush is not None:
                flush.fill_(i % 100)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           enable_gqa=True)
            end.record()
            end.synchronize()
            if i >= warmup:
                times.append(start.elapsed_time(end))
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, nargs="+", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-flush", action="store_true",
                    help="no 256 MB clear before each repetition")
    ap.add_argument("--json")
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    results = []
    flush = None if args.no_flush else torch.empty(256 << 20, dtype=torch.int8,
                                                   device="cuda")
    for seq in args.seq:
        n_sets = 3 if args.batch * seq <= 32768 else 1
        gen = torch.Generator(device="cuda").manual_seed(seq)
        mk = lambda h: [torch.randn(args.batch, h, seq, args.dim, device="cuda",
                                    dtype=dtype, generator=gen)
                        for _ in range(n_sets)]
        q_sets, k_sets, v_sets = mk(args.heads), mk(args.kv_heads), mk(args.kv_heads)
        flops = 2 * 2 * args.batch * args.heads * args.dim * seq * seq / 2
        for name, backend in (("sdpa-flash", SDPBackend.FLASH_ATTENTION),
                              ("sdpa-cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                reps = args.reps if seq <= 65536 else max(5, args.reps // 4)
                t = time_backend(backend, q_sets, k_sets, v_sets, reps,
                                 args.warmup, flush)
            except Exception as exc:  # backend unavailable for this shape
                print(f"{name:12s} B {args.batch:4d} seq {seq:7d}  unavailable: {exc}".splitlines()[0])
                continue
            med = statistics.median(t)
            row = {"method": name, "batch": args.batch, "seq": seq, "ms": med, "min": min(t),
                   "max": max(t), "tflops": flops / med / 1e9,
                   "flush": flush is not None,
                   "device": torch.cuda.get_device_name()}
            results.append(row)
            print(f"{name:12s} B {args.batch:4d} seq {seq:7d}  {med:9.3f} ms  (min {min(t):.3f}, "
                  f"max {max(t):.3f})  {row['tflops']:6.1f} TFLOP/s")
        del q_sets, k_sets, v_sets
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
