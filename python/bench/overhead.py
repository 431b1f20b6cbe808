#!/usr/bin/env python3
"""Host time per call: prism_attn's op against libprism called directly.

Three ways to launch the same prefill on the same plan:
  direct   ctypes prism_prefill with every argument built beforehand
           (output, workspace, structs): the C launch alone
  kernel   Kernel.prefill, the eager path (validation, plan lookup,
           torch.empty for the output and the workspace, ctypes call)
  op       torch.ops.prism_attn.prefill, the custom op through the
           dispatcher (what a compiled graph runs)
Each call is timed on the host alone (perf_counter around the call, no
synchronisation inside); the device queue is drained every few calls so it
never fills.  Small shapes keep the device ahead of the host.  Prints the
median and the 10th/90th percentiles in microseconds, and the overhead
over the direct launch.

    python bench/overhead.py [--device cuda|cpu] [--seq N] [--calls N]
"""

import argparse
import ctypes
import statistics
import time

import torch

import prism_attn
from prism_attn import _lib


def config(head_dim, heads, kv_heads, block):
    return {"name": "overhead", "model": {"head_dim": head_dim,
                                          "q_heads": heads,
                                          "kv_heads": kv_heads},
            "rope": {"theta": 500000}, "prism": {"block_size": block}}


def timed(fn, calls, sync):
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
        if i % 8 == 7:
            sync()
    sync()
    times.sort()
    n = len(times)
    return statistics.median(times), times[n // 10], times[(9 * n) // 10]


def direct_call(kern, q, k, v):
    """A closure launching prism_prefill with pre-built arguments."""
    from prism_attn._launch import _Call
    c = _Call(kern, q, k, v, None, None, "bhsd", 0, 0, None)
    o = torch.empty_like(q)
    buf, ws, size = c.workspace()
    args = (c.plan, ctypes.byref(c.batch), ctypes.byref(c.tensor(q)),
            ctypes.byref(c.tensor(k)), ctypes.byref(c.tensor(v)),
            ctypes.byref(c.tensor(o)), None, None, ws, size, c.stream)
    fn = _lib.lib().prism_prefill

    def call():
        st = fn(*args)
        if st:
            raise RuntimeError(_lib.status_name(st))
    call.keep = (buf, o, c)  # c holds the prism_params c.batch points at
    return call


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available()
                    else "cpu")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    dev = torch.device(args.device)
    kern = prism_attn.kernel(config(128, args.heads, max(1, args.heads // 4),
                                    128), dev)
    shape_q = (1, args.heads, args.seq, 128)
    shape_k = (1, max(1, args.heads // 4), args.seq, 128)
    q = torch.randn(shape_q, dtype=torch.bfloat16, device=dev)
    k = torch.randn(shape_k, dtype=torch.bfloat16, device=dev)
    v = torch.randn(shape_k, dtype=torch.bfloat16, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    kern.prefill(q, k, v)  # plan creation, compilation
    sync()
    op = torch.ops.prism_attn.prefill.default
    ways = {
        "direct": direct_call(kern, q, k, v),
        "kernel": lambda: kern.prefill(q, k, v),
        "op": lambda: op(q, k, v, None, None, kern.id, "bhsd", 0, 0,
                         *kern.params.values()),
    }
    for fn in ways.values():  # warm-up
        timed(fn, 50, sync)
    results = {name: timed(fn, args.calls, sync) for name, fn in ways.items()}
    base = results["direct"][0]
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'host'}),"
          f" B=1 Hq={args.heads} S={args.seq} D=128 bf16, {args.calls} calls")
    print(f"{'launch':8s} {'median us':>10s} {'p10':>8s} {'p90':>8s} "
          f"{'over C':>8s}")
    for name, (med, p10, p90) in results.items():
        print(f"{name:8s} {med:10.1f} {p10:8.1f} {p90:8.1f} "
              f"{med - base:8.1f}")


if __name__ == "__main__":
    main()
