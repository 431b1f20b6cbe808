"""Tensor-parallel prefill: a Llama-style attention layer over N processes.

    torchrun --nproc-per-node 2 python/examples/tensor_parallel.py \\
        [--seq 32768 131072] [--device cuda|cpu] [--config FILE.yaml]

One process per GPU (``cuda:LOCAL_RANK``, NCCL) or per CPU process (gloo).
The layer is Megatron-style: q, k and v are column-parallel, so rank r
holds query heads [r*Hq/N, (r+1)*Hq/N) and the KV heads of their groups,
[r*Hkv/N, (r+1)*Hkv/N) (N must divide Hkv); each rank applies RoPE and
runs Prism prefill on its head shard with the model's kernel (the head
counts are the tensors', so no other config or compile is needed); o_proj
is row-parallel: each rank multiplies its heads' outputs by its columns of
the weight and an all-reduce sums the partial products (in float32).

Rank 0 then runs the same layer unsharded (all heads in one process) and
checks:

* the selection (block mask) of every head is identical to the unsharded
  call's (the masks are gathered from the ranks);
* the gathered head outputs equal the unsharded call's (bit for bit on
  the CPU backend, to bf16 rounding on GPUs);
* the all-reduced layer output equals the unsharded layer's to float32
  rounding.

The unsharded run projects q, k and v with each rank's weight slice in
turn, so Prism gets the same inputs in both runs; the attention and the
masks are what is compared, not the rounding of a wider matmul.

It prints per-rank prefill times: Prism on the shard, SDPA on the same
shard, and the scaling efficiency t1 / (N * t_shard), where t1 is Prism
over all heads in one process.  On the CPU backend the ranks share the
host's cores, so CPU times say little about scaling.

NVLink multicast (NVLS, NVLink SHARP) stays off: NCCL_NVLS_ENABLE=0, and
for PyTorch's symmetric memory and NVSHMEM, should anything start them,
TORCH_SYMM_MEM_DISABLE_MULTICAST=1 and NVSHMEM_DISABLE_NVLS=1; they are
set here before torch.distributed starts.

``--save FILE`` writes rank 0's gathered results (masks, head outputs,
layer output) with torch.save, for tests to compare against their own
one-process run.  The functions above ``main`` are importable (the tests
use them); the process group is only created by ``main``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass

MULTICAST_OFF = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

import prism_attn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "..", "configs", "llama-3.1-8b.yaml")


# --- the layer ---------------------------------------------------------------
@dataclass
class Weights:
    """A Llama attention layer's projections, or one rank's slice of them:
    wq [Hq*D, hidden], wk / wv [Hkv*D, hidden], wo [hidden, Hq*D] (the
    query, key and value heads are the slices' heads)."""
    wq: torch.Tensor
    wk: torch.Tensor
    wv: torch.Tensor
    wo: torch.Tensor
    q_heads: int
    kv_heads: int
    head_dim: int

    def to(self, device) -> "Weights":
        return Weights(self.wq.to(device), self.wk.to(device),
                       self.wv.to(device), self.wo.to(device), self.q_heads,
                       self.kv_heads, self.head_dim)


def make_weights(q_heads: int, kv_heads: int, head_dim: int,
                 dtype=torch.bfloat16, seed: int = 0) -> Weights:
    """Random projections (on the CPU, the same in every process)."""
    g = torch.Generator().manual_seed(seed)
    hidden = q_heads * head_dim

    def w(rows, cols):
        scale = 1 / math.sqrt(cols)
        return (torch.randn(rows, cols, generator=g) * scale).to(dtype)

    q, kv = q_heads * head_dim, kv_heads * head_dim
    return Weights(w(q, hidden), w(kv, hidden), w(kv, hidden), w(hidden, q),
                   q_heads, kv_heads, head_dim)


def make_input(batch: int, seqlen: int, hidden: int, dtype=torch.bfloat16,
               seed: int = 1) -> torch.Tensor:
    """Hidden states [B, S, hidden] (on the CPU, the same in every process):
    noise around a shared direction, which after RoPE makes attention depend
    on distance, and a few strong tokens that draw attention from far away,
    so that the selection is sparse rather than uniform."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(1, 1, hidden, generator=g)
    x = torch.randn(batch, seqlen, hidden, generator=g) + 2 * shared
    strong = torch.randint(0, seqlen, (max(1, seqlen // 512),), generator=g)
    x[:, strong] *= 3
    return x.to(dtype)


def shard(w: Weights, rank: int, world: int) -> Weights:
    """Rank's slice: its query heads, their KV heads, its columns of wo."""
    if w.kv_heads % world:
        raise ValueError(f"{world} ranks cannot split {w.kv_heads} KV heads: "
                         "the number of ranks must divide Hkv")
    hq, hkv, d = w.q_heads // world, w.kv_heads // world, w.head_dim
    q = slice(rank * hq * d, (rank + 1) * hq * d)
    kv = slice(rank * hkv * d, (rank + 1) * hkv * d)
    return Weights(w.wq[q], w.wk[kv], w.wv[kv], w.wo[:, q], hq, hkv, d)


def rope(x: torch.Tensor, theta: float, layout: str) -> torch.Tensor:
    """RoPE over positions 0..S-1 of x [B, H, S, D], as the model applies
    it before attention: ``half`` is rotate_half (Llama's Hugging Face
    layout), ``interleaved`` rotates pairs (2i, 2i+1)."""
    s, d = x.shape[2], x.shape[3]
    inv = theta ** (-torch.arange(0, d, 2, device=x.device,
                                  dtype=torch.float32) / d)
    ang = torch.arange(s, device=x.device, dtype=torch.float32)[:, None] * inv
    cos, sin = ang.cos(), ang.sin()
    xf = x.float()
    if layout == "interleaved":
        a, b = xf[..., 0::2], xf[..., 1::2]
        out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
        return out.flatten(-2).to(x.dtype)
    a, b = xf[..., : d // 2], xf[..., d // 2:]
    out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    return out.to(x.dtype)


def project(x: torch.Tensor, w: Weights, theta: float, layout: str):
    """q [B, Hq, S, D], k, v [B, Hkv, S, D] of w's heads, q and k rotated."""
    b, s, _ = x.shape
    d = w.head_dim

    def heads(weight, n):
        return (x @ weight.t()).view(b, s, n, d).transpose(1, 2).contiguous()

    q = rope(heads(w.wq, w.q_heads), theta, layout)
    k = rope(heads(w.wk, w.kv_heads), theta, layout)
    return q, k, heads(w.wv, w.kv_heads)


def project_all(x: torch.Tensor, w: Weights, world: int, theta: float,
                layout: str):
    """The unsharded projections of all heads, made with each rank's
    weight slice in turn (the same inputs the ranks give Prism)."""
    parts = [project(x, shard(w, r, world), theta, layout)
             for r in range(world)]
    return tuple(torch.cat([p[i] for p in parts], dim=1) for i in range(3))


def o_proj(o: torch.Tensor, wo: torch.Tensor) -> torch.Tensor:
    """o [B, H, S, D] times wo's columns of those heads, in float32:
    [B, S, hidden] (a rank's partial sum, or the whole product)."""
    b, h, s, d = o.shape
    return o.transpose(1, 2).reshape(b, s, h * d).float() @ wo.float().t()


def sdpa_call(q, k, v):
    """SDPA's causal attention over q, k, v as a function of no arguments
    for timing: the KV heads are repeated to the query heads beforehand
    (not timed), and on GPUs only the fused backends may run (the math
    backend would materialise S x S scores)."""
    group = q.shape[1] // k.shape[1]
    k, v = (t.repeat_interleave(group, dim=1) for t in (k, v))
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                SDPBackend.EFFICIENT_ATTENTION]

    def call():
        if q.device.type != "cuda":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        with sdpa_kernel(backends):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return call


def one_device(kern, x: torch.Tensor, w: Weights, world: int):
    """The whole layer on kern's device: (head outputs, block mask,
    float32 layer output, q, k, v)."""
    theta, layout = kern.config["rope"]["theta"], kern.config["rope"]["layout"]
    q, k, v = project_all(x, w, world, theta, layout)
    o, mask = kern.prefill(q, k, v, return_mask=True)
    return o, mask, o_proj(o, w.wo), (q, k, v)


# --- timing ------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, iters: int) -> float:
    """Median wall time of fn() in ms after one untimed call."""
    fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


# --- the run -----------------------------------------------------------------
def _gather(t: torch.Tensor, world: int, rank: int):
    """t from every rank, on rank 0 (as raw bytes: any dtype, any
    backend); None elsewhere."""
    raw = t.contiguous().view(torch.uint8)
    out = [torch.empty_like(raw) for _ in range(world)] if rank == 0 else None
    dist.gather(raw, out, dst=0)
    return None if out is None else [r.view(t.dtype) for r in out]


def run_one(kern, w: Weights, seqlen: int, args, rank: int, world: int,
            device: torch.device):
    """One sequence length: the shard's prefill on every rank, the
    unsharded layer on rank 0, the checks and the table.  Returns rank
    0's results (None elsewhere) and whether the checks passed."""
    theta, layout = kern.config["rope"]["theta"], kern.config["rope"]["layout"]
    dtype = w.wq.dtype
    hidden = w.q_heads * w.head_dim
    x = make_input(args.batch, seqlen, hidden, dtype).to(device)
    mine = shard(w, rank, world)
    q, k, v = project(x, mine, theta, layout)
    kern.warmup(dtype, seqlen)

    # the rank's part of the layer
    o, mask = kern.prefill(q, k, v, return_mask=True)
    y = o_proj(o, mine.wo)
    dist.all_reduce(y)
    heads = _gather(o, world, rank)
    blocks = _gather(mask.to_block_dense().to(torch.uint8), world, rank)

    # the shard's times, all ranks at once (as tensor parallelism runs)
    dist.barrier()
    t_prism = median_ms(lambda: kern.prefill(q, k, v), device, args.iters)
    dist.barrier()
    t_sdpa = median_ms(sdpa_call(q, k, v), device, args.iters)
    row = {"rank": rank, "device": str(device),
           "heads": f"{mine.q_heads}/{mine.kv_heads}", "prism": t_prism,
           "sdpa": t_sdpa, "density": mask.density()}
    rows = [None] * world
    dist.all_gather_object(rows, row)
    del q, k, v, o, mask
    dist.barrier()

    ok, result = True, None
    if rank == 0:
        o1, mask1, y1, (q1, k1, v1) = one_device(kern, x, w, world)
        t1 = median_ms(lambda: kern.prefill(q1, k1, v1), device, args.iters)
        t1_sdpa = median_ms(sdpa_call(q1, k1, v1), device, args.iters)
        density1 = mask1.density()
        del q1, k1, v1
        heads = torch.cat(heads, dim=1)
        blocks = torch.cat(blocks, dim=1).bool()
        ok = report(seqlen, world, args, w, dtype, rows, t1, t1_sdpa,
                    density1, blocks, mask1.to_block_dense(), heads, o1,
                    y, y1, device)
        result = {"mask": blocks.cpu(), "heads": heads.cpu(),
                  "y": y.cpu(), "rows": rows, "t1": t1,
                  "t1_sdpa": t1_sdpa}
    dist.barrier()
    return result, ok


def report(seqlen, world, args, w, dtype, rows, t1, t1_sdpa, density1,
           blocks, blocks1, heads, o1, y, y1, device) -> bool:
    """Prints the table and the checks; True when the checks passed."""
    dt = str(dtype).replace("torch.", "")
    print(f"\nS={seqlen}  TP={world}  B={args.batch}  Hq/Hkv={w.q_heads}/"
          f"{w.kv_heads}  D={w.head_dim}  {dt}  {device.type}")
    print(f"{'rank':>4}  {'device':<8} {'heads':>6}  {'prism ms':>9}  "
          f"{'sdpa ms':>9}  {'sdpa/prism':>10}  {'density':>7}  "
          f"{'efficiency':>10}")
    for r in rows:
        eff = t1 / (world * r["prism"])
        print(f"{r['rank']:>4}  {r['device']:<8} {r['heads']:>6}  "
              f"{r['prism']:>9.3f}  {r['sdpa']:>9.3f}  "
              f"{r['sdpa'] / r['prism']:>10.2f}  {r['density']:>7.3f}  "
              f"{eff:>10.2f}")
    print(f"{'unsharded, all heads':<21} {t1:>9.3f}  {t1_sdpa:>9.3f}  "
          f"{t1_sdpa / t1:>10.2f}  {density1:>7.3f}")
    slowest = max(r["prism"] for r in rows)
    print(f"the layer waits for the slowest rank: {slowest:.3f} ms, "
          f"efficiency {t1 / (world * slowest):.2f}, speed-up over the "
          f"unsharded layer {t1 / slowest:.2f}x")
    print("efficiency = t1 / (TP * t_shard), t1 = Prism over all heads, "
          "unsharded")

    ok = True
    differ = (blocks != blocks1).flatten(2).sum(-1)  # [B, Hq]
    same = int((differ == 0).sum())
    if same != differ.numel():
        ok = False
        print(f"FAIL masks: {differ.numel() - same} of {differ.numel()} "
              f"(batch, head) masks differ from the unsharded ones "
              f"({int(differ.sum())} blocks)")
    else:
        print(f"ok   masks identical per head ({same} (batch, head) masks)")
    err = float((heads.float() - o1.float()).abs().max())
    exact = torch.equal(heads, o1)
    # the CPU backend gives a head the same bits whatever the other heads;
    # GPU kernels are allowed bf16 rounding
    tol = 0.0 if device.type == "cpu" else args.atol
    if (device.type == "cpu" and not exact) or not err <= tol:
        ok = False
        print(f"FAIL head outputs: max |diff| {err:.3g} over tolerance {tol}")
    else:
        print(f"ok   head outputs {'bit for bit' if exact else 'to rounding'}"
              f" (max |diff| {err:.3g})")
    scale = float(y1.abs().max())
    yerr = float((y - y1).abs().max())
    if not yerr <= 1e-4 * max(scale, 1.0):
        ok = False
        print(f"FAIL layer output: max |diff| {yerr:.3g} "
              f"(max |y| {scale:.3g})")
    else:
        print(f"ok   layer output (all-reduced o_proj) max |diff| {yerr:.3g} "
              f"(max |y| {scale:.3g})")
    return ok


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq", type=int, nargs="+", default=None,
                    help="sequence lengths (default: 32768 131072 on CUDA, "
                         "2048 on the CPU)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None,
                    help="default: cuda when available")
    ap.add_argument("--config", default=DEFAULT_CONFIG,
                    help="a Prism config (YAML); its head counts and "
                         "head_dim shape the layer (default: Llama 3.1 8B)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    ap.add_argument("--iters", type=int, default=5,
                    help="timed calls per measurement (the median)")
    ap.add_argument("--atol", type=float, default=2e-2,
                    help="head outputs' tolerance on GPUs (CPU: exact)")
    ap.add_argument("--save", default=None,
                    help="rank 0 writes its results here (torch.save)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.update(MULTICAST_OFF)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.seq is None:
        args.seq = [32768, 131072] if args.device == "cuda" else [2048]
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        kern = prism_attn.kernel(args.config, device)
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
        w = make_weights(kern.q_heads, kern.kv_heads, kern.head_dim,
                         dtype).to(device)
        if kern.kv_heads % world:
            raise SystemExit(f"{world} ranks cannot split the config's "
                             f"{kern.kv_heads} KV heads")
        results, ok = {}, True
        for seqlen in args.seq:
            res, passed = run_one(kern, w, seqlen, args, rank, world, device)
            ok = ok and passed
            if res is not None:
                results[seqlen] = res
        if rank == 0:
            if args.save:
                torch.save(results, args.save)
            print("PASS" if ok else "FAIL")
        flag = torch.tensor([int(ok)], device=device)
        dist.broadcast(flag, src=0)
        return 0 if int(flag) else 1
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
