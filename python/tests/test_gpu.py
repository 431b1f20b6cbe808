"""GPU tests (skipped without CUDA): outputs against SDPA, masks against
the CPU backend, run-time parameters, head shards and per-layer settings,
torch.compile, CUDA-graph replay on new inputs (also with parameters,
and the custom op called with a settings id),
the transformers model, and timing tables of the package's calls against
the C library called directly.

Before the first of them runs, launch_checks.py runs every launch of the
package on the GPU in a child process (test_launch_path_in_a_child): a
launch that crashes there fails that test, and every other test fails at
set-up with its output, instead of taking the interpreter down with it.
Each test makes its own inputs and kernels (kernels are cached by config,
so they are shared, never their state), and conftest.py prints a GPU
test's failure as soon as it happens.
"""

import os
import subprocess
import sys

import pytest
import torch

import prism_attn
import reference as R
from conftest import make_config, run_launch_checks

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device")
F = torch.nn.functional


@pytest.fixture(scope="session")
def launch_problem():
    """None when launch_checks.py passed on the GPU, else its report."""
    return run_launch_checks("cuda")


@pytest.fixture(autouse=True)
def _launches_work(request, launch_problem):
    if launch_problem and request.node.name != "test_launch_path_in_a_child":
        failed = [ln for ln in launch_problem.splitlines()
                  if ln.startswith("FAIL") or "CRASHED" in ln]
        pytest.fail("not run: the package's launches failed on this GPU "
                    "(test_launch_path_in_a_child has the output): "
                    + "; ".join(failed[:4] or ["see there"]), pytrace=False)


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def gpu_kernel(**kw):
    return prism_attn.kernel(make_config(**kw), "cuda")


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                          enable_gqa=True)


def assert_close(got, want, atol, what):
    got, want = got.float().cpu(), want.float().cpu()
    assert got.shape == want.shape, (
        f"{what}: shape {tuple(got.shape)}, want {tuple(want.shape)}")
    err = (got - want).abs()
    bad = ~torch.isfinite(got)
    assert not bad.any(), (f"{what}: {int(bad.sum())} non-finite values, "
                           f"first at {tuple(bad.nonzero()[0].tolist())}")
    worst = float(err.max())
    where = tuple(torch.nonzero(err == err.max())[0].tolist())
    assert worst < atol, (f"{what}: max |error| {worst:.3g} at {where} "
                          f"(got {float(got[where]):.4g}, want "
                          f"{float(want[where]):.4g}), tolerance {atol}")


def test_launch_path_in_a_child(launch_problem):
    """Every launch (prefill, estimate, sparse attention, ragged, both
    layouts, lse and mask, two streams, bf16 and fp16), in a child
    process."""
    assert launch_problem is None, launch_problem


def full_causal_mask(like):
    """Every block-causal block of `like`'s geometry, as a BlockMask."""
    nq, nk = like.counts.shape[-1], like.indices.shape[-1]
    rows = torch.arange(nq, dtype=torch.int32, device=like.counts.device)
    counts = (rows + (nk - nq) + 1).clamp(max=nk).expand_as(like.counts)
    cols = torch.arange(nk, dtype=torch.int32, device=like.counts.device)
    indices = cols.expand_as(like.indices).contiguous()
    return prism_attn.BlockMask(counts.contiguous(), indices, like.block_size,
                                like.seqlen_q, like.seqlen_k)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim,block", [(64, 64), (128, 128)])
def test_dense_matches_sdpa(dtype, head_dim, block):
    """Attention over every block-causal block is SDPA's causal attention.
    Thresholds 1.0 keep blocks until the kept mass reaches 1.0 in the
    estimator's arithmetic (docs/method.md section 6), so blocks whose
    probability rounds to nothing may be left out: the selection is
    compared with the CPU backend's instead of with the full mask."""
    kern = gpu_kernel(head_dim=head_dim, q_heads=8, kv_heads=2,
                      block_size=block,
                      thresholds={"high": 1.0, "low": 1.0})
    q, k, v = (x.cuda() for x in R.workload(2, 8, 2, 1024, 1024, head_dim,
                                            10000.0, 1, dtype=dtype))
    _, mask = kern.prefill(q, k, v, return_mask=True)
    torch.cuda.synchronize()
    assert mask.density() > 0.9, f"thresholds 1.0: density {mask.density()}"
    full = full_causal_mask(mask)
    o = kern.sparse_attention(q, k, v, full)
    assert_close(o, sdpa(q, k, v), 2e-2, "attention over every block "
                 "against SDPA")
    t = [x.transpose(1, 2).contiguous() for x in (q, k, v)]
    o2 = kern.sparse_attention(*t, full, layout="bshd")
    assert_close(o2.transpose(1, 2), o, 1e-2, "layout bshd against bhsd")


def test_masks_and_outputs_match_cpu_backend():
    cfg = make_config(head_dim=128, q_heads=8, kv_heads=2, block_size=64)
    gpu = prism_attn.kernel(cfg, "cuda")
    cpu = prism_attn.kernel(cfg, "cpu")
    q, k, v = R.workload(1, 8, 2, 1000, 1512, 128, 10000.0, 2)
    og, lg, mg = gpu.prefill(q.cuda(), k.cuda(), v.cuda(), return_lse=True,
                             return_mask=True)
    oc, lc, mc = cpu.prefill(q, k, v, return_lse=True, return_mask=True)
    bg, bc = mg.to_block_dense().cpu(), mc.to_block_dense()
    differ = int((bg != bc).sum())
    assert differ <= bc.numel() // 1000, (
        f"{differ} of {bc.numel()} mask blocks differ between the GPU and "
        f"the CPU backends (density GPU {mg.density():.4f}, CPU "
        f"{mc.density():.4f})")
    assert 0.0 < mc.density() < 1.0, f"CPU density {mc.density()}"
    # attention over the same (CPU) mask on both
    mc_gpu = prism_attn.BlockMask(mc.counts.cuda(), mc.indices.cuda(),
                                  mc.block_size, mc.seqlen_q, mc.seqlen_k)
    o2 = gpu.sparse_attention(q.cuda(), k.cuda(), v.cuda(), mc_gpu)
    assert_close(o2, oc, 2e-2, "GPU sparse attention over the CPU mask")
    if differ == 0:
        assert_close(og, oc, 2e-2, "GPU prefill against CPU prefill")
        assert_close(lg, lc, 1e-2, "GPU lse against CPU lse")


def test_varlen_matches_regular():
    kern = gpu_kernel(head_dim=128, q_heads=8, kv_heads=2, block_size=128)
    lens = [(300, 812), (1024, 1024)]
    seqs = [[x.cuda() for x in R.workload(1, 8, 2, sq, sk, 128, 1e4, i)]
            for i, (sq, sk) in enumerate(lens)]
    pack = [torch.cat([s[j][0].transpose(0, 1) for s in seqs])
            for j in range(3)]
    cu_q = torch.tensor([0, 300, 1324], dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, 812, 1836], dtype=torch.int32, device="cuda")
    o = kern.prefill(*pack, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                     max_seqlen_q=1024, max_seqlen_k=1024)
    for i, s in enumerate(seqs):
        oi = kern.prefill(*s)
        a, b = int(cu_q[i]), int(cu_q[i + 1])
        assert_close(o[a:b], oi[0].transpose(0, 1), 1e-2,
                     f"ragged sequence {i} {lens[i]} against its own call")


def test_flex_attention_agrees(fresh_dynamo):
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    kern = gpu_kernel(head_dim=128, q_heads=8, kv_heads=2, block_size=128)
    q, k, v = (x.cuda() for x in R.workload(1, 8, 2, 2048, 2048, 128, 1e4, 3))
    o, mask = kern.prefill(q, k, v, return_mask=True)
    fa = torch.compile(flex.flex_attention)
    fo = fa(q, k, v, block_mask=mask.to_flex_block_mask(), enable_gqa=True)
    assert_close(fo, o, 2e-2, "flex_attention over the mask (causal)")
    fo2 = fa(q, k, v, block_mask=mask.to_flex_block_mask(False),
             enable_gqa=True)
    assert_close(fo2, o, 2e-2, "flex_attention over the mask (no mask_mod)")


def test_torch_compile_fullgraph(fresh_dynamo):
    kern = gpu_kernel(head_dim=128, q_heads=8, kv_heads=2, block_size=128)
    q, k, v = (x.cuda() for x in R.workload(1, 8, 2, 1024, 1024, 128, 1e4, 4))

    def f(q, k, v):
        return kern.prefill(q * 0.5, k, v, return_lse=True)

    want = f(q, k, v)
    got = torch.compile(f, fullgraph=True)(q, k, v)
    assert torch.equal(got[0], want[0]), "compiled o differs from eager"
    assert torch.equal(got[1], want[1]), "compiled lse differs from eager"
    got = torch.compile(f, fullgraph=True, mode="reduce-overhead")(q, k, v)
    assert torch.equal(got[0], want[0]), \
        "reduce-overhead (CUDA graphs) o differs from eager"


def capture(calls):
    """Runs each call once (plan creation), again on a side stream (the
    warm-up CUDA graphs need), then captures them in one CUDA graph;
    returns the graph and the calls' captured outputs."""
    for call in calls:
        call()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        outs = [call() for call in calls]
    return g, outs


def test_cuda_graph_replay_new_inputs():
    kern = gpu_kernel(head_dim=128, q_heads=8, kv_heads=2, block_size=128)
    q, k, v = (x.cuda() for x in R.workload(1, 8, 2, 2048, 2048, 128, 1e4, 5))
    kern.prefill(q, k, v)  # plan creation before capture
    sq, sk, sv = q.clone(), k.clone(), v.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            kern.prefill(sq, sk, sv)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out, mask = kern.prefill(sq, sk, sv, return_mask=True)
    for seed in (6, 7):
        q2, k2, v2 = (x.cuda() for x in R.workload(1, 8, 2, 2048, 2048, 128,
                                                   1e4, seed))
        sq.copy_(q2), sk.copy_(k2), sv.copy_(v2)
        g.replay()
        torch.cuda.synchronize()
        want, wmask = kern.prefill(q2, k2, v2, return_mask=True)
        assert torch.equal(out, want), f"replayed o differs (seed {seed})"
        assert torch.equal(mask.to_block_dense(), wmask.to_block_dense()), \
            f"replayed mask differs (seed {seed})"


def test_params_match_cpu_backend():
    """Thresholds 0.9 and 0.98 and another softmax scale, given per call,
    select and attend as the CPU backend does with the same values."""
    cfg = make_config(head_dim=128, q_heads=8, kv_heads=2, block_size=64)
    gpu = prism_attn.kernel(cfg, "cuda")
    cpu = prism_attn.kernel(cfg, "cpu")
    q, k, v = R.workload(1, 8, 2, 1024, 1024, 128, 10000.0, 8)
    qg, kg, vg = q.cuda(), k.cuda(), v.cuda()
    densities = []
    for threshold in (0.9, 0.98):
        mg = gpu.estimate(qg, kg, threshold=threshold)
        mc = cpu.estimate(q, k, threshold=threshold)
        bg, bc = mg.to_block_dense().cpu(), mc.to_block_dense()
        differ = int((bg != bc).sum())
        assert differ <= bc.numel() // 1000, (
            f"threshold {threshold}: {differ} of {bc.numel()} mask blocks "
            f"differ between the GPU and the CPU backends")
        densities.append(mc.density())
    assert densities[0] < densities[1], densities
    full = full_causal_mask(mg)
    o = gpu.sparse_attention(qg, kg, vg, full, softmax_scale=0.05)
    want = F.scaled_dot_product_attention(qg, kg, vg, is_causal=True,
                                          enable_gqa=True, scale=0.05)
    assert_close(o, want, 2e-2, "softmax_scale 0.05 against SDPA's")


def test_head_shard_and_layers_on_gpu():
    """A shard of the heads is the slice of the full call; a layered
    config's dense layer is SDPA and its other layers select as the CPU
    backend's do."""
    cfg = make_config(head_dim=128, q_heads=8, kv_heads=2, block_size=128)
    cfg["layers"] = {"dense": [0], "overrides": [
        {"layers": [1], "thresholds": {"high": 0.9, "low": 0.9}}]}
    kern = prism_attn.kernel(cfg, "cuda")
    q, k, v = (x.cuda() for x in R.workload(1, 8, 2, 1024, 1024, 128, 1e4,
                                            9))
    o, lse, mask = kern.prefill(q, k, v, return_lse=True, return_mask=True)
    o2, lse2, m2 = kern.prefill(q[:, 4:], k[:, 1:], v[:, 1:],
                                return_lse=True, return_mask=True)
    b2, b1 = m2.to_block_dense(), mask.to_block_dense()[:, 4:]
    differ = int((b2 != b1).sum())
    assert differ <= b1.numel() // 1000, (
        f"{differ} of {b1.numel()} mask blocks differ between a head shard "
        "and the slice of the full call")
    if differ == 0:
        assert_close(o2, o[:, 4:], 1e-2, "head shard against the full call")
        assert_close(lse2, lse[:, 4:], 1e-2, "head shard lse")
    dense = kern.for_layer(0)
    assert dense.dense
    assert_close(dense.prefill(q, k, v), sdpa(q, k, v), 2e-2,
                 "dense layer against SDPA")
    cpu = prism_attn.kernel(cfg, "cpu").for_layer(1)
    mg = kern.for_layer(1).estimate(q, k)
    mc = cpu.estimate(q.cpu(), k.cpu())
    differ = int((mg.to_block_dense().cpu() != mc.to_block_dense()).sum())
    assert differ <= mc.indices.numel() // 1000, (
        f"layer 1: {differ} mask blocks differ from the CPU backend's")


def test_compile_and_graphs_with_params(fresh_dynamo):
    """Settings and a head shard under torch.compile (also CUDA graphs)
    and in a captured graph replayed on new inputs equal eager calls."""
    kern = gpu_kernel(head_dim=128, q_heads=8, kv_heads=2, block_size=128)
    q, k, v = (x.cuda() for x in R.workload(1, 8, 2, 1024, 1024, 128, 1e4,
                                            10))

    def f(q, k, v):
        return kern.prefill(q, k[:, :1], v[:, :1], threshold=0.9,
                            softmax_scale=0.1, return_lse=True)

    want = f(q[:, :4], k, v)
    for mode in (None, "reduce-overhead"):
        got = torch.compile(f, fullgraph=True, mode=mode)(q[:, :4], k, v)
        assert torch.equal(got[0], want[0]), f"compiled ({mode}) o differs"
        assert torch.equal(got[1], want[1]), f"compiled ({mode}) lse differs"
    dense = prism_attn.kernel(make_config(
        head_dim=128, q_heads=8, kv_heads=2, block_size=128)
        | {"layers": {"dense": [0]}}, "cuda").for_layer(0)
    sq, sk, sv = q.clone(), k.clone(), v.clone()
    calls = [lambda: kern.prefill(sq, sk, sv, threshold=0.98,
                                  calibrate=False, temp=0.5,
                                  return_mask=True),
             lambda: dense.prefill(sq, sk, sv, softmax_scale=0.07)]
    g, ((out, mask), dout) = capture(calls)
    for seed in (11, 12):
        new = [x.cuda() for x in R.workload(1, 8, 2, 1024, 1024, 128, 1e4,
                                            seed)]
        for dst, src in zip((sq, sk, sv), new):
            dst.copy_(src)
        g.replay()
        torch.cuda.synchronize()
        want, wmask = calls[0]()
        assert torch.equal(out, want), f"replayed o differs (seed {seed})"
        assert torch.equal(mask.to_block_dense(), wmask.to_block_dense())
        assert torch.equal(dout, calls[1]()), "replayed dense layer differs"


def test_op_with_params_id_in_a_cuda_graph():
    """The custom ops called directly, the regular batch's with a call id
    (kernel, layout and settings id) and the ragged batch's (varlen) with
    a settings id, captured in a CUDA graph and replayed on new inputs,
    equal the eager calls with those settings (the ids are resolved at
    capture, not per replay)."""
    kern = gpu_kernel(head_dim=128, q_heads=8, kv_heads=2, block_size=128)
    q, k, v = (x.cuda() for x in R.workload(1, 8, 2, 1024, 1024, 128, 1e4,
                                            13))
    settings = {"threshold": 0.9, "softmax_scale": 0.1}
    ops = torch.ops.prism_attn.prefill
    sq, sk, sv = q.clone(), k.clone(), v.clone()
    args = (sq, sk, sv, kern.call_id(**settings))
    # a ragged batch of two sequences, packed [total, heads, D]
    cu_q = torch.tensor([0, 300, 1024], dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, 300, 1024], dtype=torch.int32, device="cuda")
    pq, pk, pv = (x[0].transpose(0, 1).contiguous() for x in (q, k, v))
    ragged = (pq, pk, pv, cu_q, cu_k, kern.id, 724, 724,
              kern.params_id(**settings))
    calls = [lambda: ops.lse(*args), lambda: ops.varlen_lse(*ragged)]
    g, ((out, lse), (pout, plse)) = capture(calls)
    for seed in (14, 15):
        new = [x.cuda() for x in R.workload(1, 8, 2, 1024, 1024, 128, 1e4,
                                            seed)]
        packed = [x[0].transpose(0, 1).contiguous() for x in new]
        for dst, src in zip((sq, sk, sv, pq, pk, pv), new + packed):
            dst.copy_(src)
        g.replay()
        torch.cuda.synchronize()
        want, wlse = kern.prefill(*new, return_lse=True, **settings)
        assert torch.equal(out, want), f"replayed o differs (seed {seed})"
        assert torch.equal(lse, wlse), f"replayed lse differs (seed {seed})"
        want, wlse = kern.prefill(*packed, cu_seqlens_q=cu_q,
                                  cu_seqlens_k=cu_k, max_seqlen_q=724,
                                  max_seqlen_k=724, return_lse=True,
                                  **settings)
        assert torch.equal(pout, want), \
            f"replayed ragged o differs (seed {seed})"
        assert torch.equal(plse, wlse), \
            f"replayed ragged lse differs (seed {seed})"


def test_hf_model_on_gpu():
    pytest.importorskip("transformers")
    import test_hf
    test_hf.run_exact_and_default("cuda", 2048, 128)
    test_hf.run_per_layer("cuda")


@pytest.mark.parametrize("flags", [[], ["--mock", "--compiled",
                                         "--breakdown"]],
                         ids=["real", "mock"])
def test_timing_table(flags):
    """Prints the overhead benchmark's table (not a timed assertion):
    real launches, then the host work alone (--mock) with a compiled
    call and the op path's split into launch and dispatcher."""
    bench = os.path.join(os.path.dirname(__file__), "..", "bench",
                         "overhead.py")
    if not os.path.exists(bench):
        pytest.skip("bench/overhead.py is not beside the tests")
    run = subprocess.run([sys.executable, bench, "--calls", "5000"] + flags,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (f"bench/overhead.py exited "
                                 f"{run.returncode}:\n{run.stdout}"
                                 f"{run.stderr}")
    print("\n" + run.stdout)


# --- paged K/V ---------------------------------------------------------------
@pytest.mark.parametrize("kv_layout", ["nhd", "hnd"])
@pytest.mark.parametrize("page_blocks", [1, 2])
@pytest.mark.parametrize("shape", [(64, 32), (128, 128)])  # (D, block_size)
def test_paged_matches_contiguous(kv_layout, page_blocks, shape):
    """A paged prefill on the GPU (both attention kernels: block size 32
    runs mma.sync, 128 at head dim 128 the sm_90a kernel where there is
    one) against the contiguous prefill of the same keys."""
    from test_paged import paginate
    d, bs = shape
    kern = gpu_kernel(head_dim=d, block_size=bs)
    q, k, v = R.workload(2, 4, 2, 300, 700, d, 10000.0, 31)
    ps = page_blocks * bs
    kc, table = paginate(list(k), ps, kv_layout, seed=2)
    vc, _ = paginate(list(v), ps, kv_layout, seed=2)
    dev = [x.cuda() for x in (q, k, v, kc, vc, table)]
    q, k, v, kc, vc, table = dev
    want, wmask = kern.prefill(q, k, v, return_mask=True)
    got, gmask = kern.prefill(q, kc, vc, page_table=table, seqlens_k=700,
                              kv_layout=kv_layout, return_mask=True)
    agree = (gmask.to_block_dense() == wmask.to_block_dense()).float().mean()
    assert float(agree) >= 0.999, f"masks agree on {float(agree):.4f}"
    assert_close(got, want, 2e-2, f"paged {kv_layout} x{page_blocks}")


def test_chunked_prefill_example_on_gpu():
    """The example's chunked prefill over a paged cache with the pooled-key
    buffer, on the GPU, against the one-shot prefill."""
    import runpy
    here = os.path.dirname(os.path.abspath(__file__))
    ns = runpy.run_path(os.path.join(here, "..", "examples",
                                     "chunked_prefill.py"))
    ns["main"]("cuda")
