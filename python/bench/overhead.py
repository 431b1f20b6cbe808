#!/usr/bin/env python3
"""Host time per call: prism_attn's launches against libprism called directly.

Ways to launch the same prefill on the same plan:
  direct          ctypes prism_prefill with every argument built beforehand
                  (output, workspace, structs): the C launch alone
  kernel          Kernel.prefill, the eager path (signature lookup, params,
                  torch.empty for the output and the workspace, ctypes call)
  kernel+params   the same with run-time parameters (threshold=0.9)
  op              torch.ops.prism_attn.prefill, the custom op through the
                  dispatcher (what a compiled graph runs) in its short
                  form for regular batches (q, k, v, call_id), default
                  params (Kernel.call_id())
  op+params       the same op with other parameter values (the call id
                  of threshold=0.9, from Kernel.call_id)
  compiled        (--compiled) a torch.compile'd function calling
                  Kernel.prefill: guards, the graph's wrapper, the op
Each call is timed on the host alone (perf_counter around the call, no
synchronisation inside); the device queue is drained every few calls so it
never fills.  Small shapes keep the device ahead of the host.  Prints the
median and the 10th/90th percentiles in microseconds, and the median over
the direct launch ("over C"): the package's host overhead.  With
--rounds N every path is timed N times, in turn, and each row shows its
round of least median: on a shared host that is the figure least
disturbed by other work.

With --mock, the library's launch functions are replaced by a C function
that returns at once (compiled here with cc): only the host work of each
path remains, which is how the overhead is measured on the CPU backend,
whose real launches run the attention synchronously.

With --breakdown, a second table splits the op path's host time:
  launch          the op's implementation called directly (_launch.prefill:
                  signature lookup, output and workspace from torch, the
                  argument block, the ctypes call), no dispatcher
  empty op        an op of prism_attn::prefill's schema for regular
                  batches (q, k, v and one int, the call id) whose
                  implementation returns a tensor made beforehand: the
                  dispatcher alone (boxing the arguments into IValues, the
                  dispatch, unboxing them into Python objects, the result)
  empty op, long form
                  the same with the long schema the ragged overloads keep
                  and regular batches used to take (cu_seqlens_q/k,
                  kernel_id, str layout, max_seqlen_q/k, params_id): what
                  the short schema saves
  empty op, 9 scalars
                  the long schema with the nine scalar settings it used to
                  take in place of params_id: what one id saved
The op path is about "launch" plus "empty op".

    python bench/overhead.py [--device cuda|cpu] [--seq N] [--calls N]
                             [--rounds N] [--mock] [--compiled]
                             [--breakdown]
"""

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import prism_attn
from prism_attn import _launch, _lib


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


def no_op_library():
    """A shared library whose prism_no_op returns 0 (PRISM_OK) at once."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        sys.exit("--mock needs a C compiler (cc) to build its no-op launch")
    d = tempfile.mkdtemp(prefix="prism-overhead-")
    src, so = os.path.join(d, "no_op.c"), os.path.join(d, "libno_op.so")
    with open(src, "w") as f:
        f.write("int prism_no_op(void) { return 0; }\n")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", so, src], check=True)
    return ctypes.CDLL(so)


def mock_launches():
    """Points the package's launches (and the direct one) at a no-op with
    each launch function's own prototype."""
    lib = no_op_library()
    raw = _launch._raw_functions()
    for name in list(raw):
        fn = lib["prism_no_op"]  # a new function object per prototype
        fn.restype, fn.argtypes = raw[name].restype, raw[name].argtypes
        raw[name] = fn
    fn = lib["prism_no_op"]
    declared = _lib.lib().prism_prefill
    fn.restype, fn.argtypes = declared.restype, declared.argtypes
    return fn


def direct_call(kern, q, k, v, prefill):
    """A closure launching prism_prefill with pre-built arguments."""
    c = _launch._Call(kern, q, k, v, None, None, "bhsd", 0, 0, None)
    o = torch.empty_like(q)
    buf, ws, size = c.workspace()
    args = (c.plan, ctypes.byref(c.batch), ctypes.byref(c.tensor(q)),
            ctypes.byref(c.tensor(k)), ctypes.byref(c.tensor(v)),
            ctypes.byref(c.tensor(o)), None, None, ws, size, c.stream)

    def call():
        st = prefill(*args)
        if st:
            raise RuntimeError(_lib.status_name(st))
    call.keep = (buf, o, c)
    return call


_EMPTY_LIB = None


def empty_ops(o):
    """Ops whose implementation returns o, the dispatcher's share of an op
    call: of prism_attn::prefill's short schema (regular batches), of the
    long one (ragged batches; regular ones used to take it) and of the
    long one with the nine scalar settings in place of params_id."""
    global _EMPTY_LIB
    _EMPTY_LIB = torch.library.Library("prism_overhead", "FRAGMENT")
    head = ("Tensor q, Tensor k, Tensor v, Tensor? cu_seqlens_q, "
            "Tensor? cu_seqlens_k, int kernel_id, str layout, "
            "SymInt max_seqlen_q, SymInt max_seqlen_k, ")
    scalars = ("float threshold_high, float threshold_low, bool calibrate, "
               "float temp_high, float temp_low, bool force_sink, "
               "bool force_recent, int recent_blocks, float softmax_scale")
    schemas = (("short", "Tensor q, Tensor k, Tensor v, int call_id"),
               ("long", head + "int params_id"), ("scalars", head + scalars))
    for name, args in schemas:
        _EMPTY_LIB.define(f"{name}({args}) -> Tensor")
        for key in ("CPU", "CUDA"):
            _EMPTY_LIB.impl(name, lambda *args: o, key)
    ops = torch.ops.prism_overhead
    return ops.short.default, ops.long.default, ops.scalars.default


def table(results, c_median=None):
    over = "" if c_median is None else f" {'over C':>8s}"
    print(f"{'path':20s} {'median us':>10s} {'p10':>8s} {'p90':>8s}{over}")
    for name, (med, p10, p90) in results.items():
        over = "" if c_median is None else f" {med - c_median:8.1f}"
        print(f"{name:20s} {med:10.1f} {p10:8.1f} {p90:8.1f}{over}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available()
                    else "cpu")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1,
                    help="time every path N times in turn; report each "
                         "one's round of least median")
    ap.add_argument("--mock", action="store_true",
                    help="replace the C launches by a no-op (host work only)")
    ap.add_argument("--compiled", action="store_true",
                    help="also time a torch.compile'd call")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the op path's parts (launch, dispatcher)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    hkv = max(1, args.heads // 4)
    kern = prism_attn.kernel(config(128, args.heads, hkv, 128), dev)
    q = torch.randn(1, args.heads, args.seq, 128, dtype=torch.bfloat16,
                    device=dev)
    k = torch.randn(1, hkv, args.seq, 128, dtype=torch.bfloat16, device=dev)
    v = torch.randn_like(k)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    kern.prefill(q, k, v)  # plan creation, compilation
    sync()
    prefill = mock_launches() if args.mock else _lib.lib().prism_prefill
    op = torch.ops.prism_attn.prefill.default
    call, other = kern.call_id(), kern.call_id(threshold=0.9)
    ways = {
        "direct": direct_call(kern, q, k, v, prefill),
        "kernel": lambda: kern.prefill(q, k, v),
        "kernel+params": lambda: kern.prefill(q, k, v, threshold=0.9),
        "op": lambda: op(q, k, v, call),
        "op+params": lambda: op(q, k, v, other),
    }
    if args.compiled:
        compiled = torch.compile(lambda q, k, v: kern.prefill(q, k, v),
                                 fullgraph=True)
        compiled(q, k, v)
        ways["compiled"] = lambda: compiled(q, k, v)
    parts = {}
    if args.breakdown:
        short, long, scalars = empty_ops(torch.empty_like(q))
        base = (q, k, v, None, None, kern.id, "bhsd", 0, 0)
        values = tuple(kern.params.values())
        parts = {
            "launch": lambda: _launch.prefill(kern, q, k, v, None, None,
                                              "bhsd", 0, 0, False, False),
            "empty op": lambda: short(q, k, v, call),
            "empty op, long form": lambda: long(*base, 0),
            "empty op, 9 scalars": lambda: scalars(*base, *values),
        }
    for fn in (*ways.values(), *parts.values()):  # warm-up
        timed(fn, 50, sync)
    results, part_results = {}, {}
    for _ in range(max(1, args.rounds)):
        for out, fns in ((results, ways), (part_results, parts)):
            for name, fn in fns.items():
                r = timed(fn, args.calls, sync)
                if name not in out or r[0] < out[name][0]:
                    out[name] = r
    c_median = results["direct"][0]
    name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else "host CPU")
    launch = "no-op C launch (--mock)" if args.mock else "real launches"
    rounds = (f" x {args.rounds} rounds (least median)" if args.rounds > 1
              else "")
    print(f"device {dev} ({name}), {launch}; B=1 Hq={args.heads} "
          f"Hkv={hkv} S={args.seq} D=128 bf16, {args.calls} calls{rounds}; "
          f"torch {torch.__version__}")
    table(results, c_median)
    if part_results:
        print("op path's parts (the op is about launch + empty op):")
        table(part_results)


if __name__ == "__main__":
    main()
