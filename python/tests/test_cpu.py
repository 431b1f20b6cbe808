"""The package on the CPU backend against the torch reference of the
method (reference.py): masks block for block, outputs and log-sum-exp
within bf16 rounding, and the layouts, ragged batches and mask
conversions agreeing with each other."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import prism_attn
import reference as R


def check_against_reference(kern, q, k, v, atol=2e-2):
    o, lse, mask = kern.prefill(q, k, v, return_lse=True, return_mask=True)
    want = R.estimate(q, k, kern.config)
    got = mask.to_block_dense()
    assert torch.equal(got, want), f"{int((got != want).sum())} blocks differ"
    ro, rl = R.attention(q, k, v, got, kern.block_size)
    assert (o.double() - ro).abs().max() < atol
    assert (lse.double() - rl).abs().max() < 1e-3
    return o, lse, mask


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("threshold", [0.95, 0.7])
def test_prefill_matches_reference(cpu_kernel, seed, threshold):
    kern = cpu_kernel(thresholds={"high": threshold, "low": threshold})
    q, k, v = R.workload(2, 4, 2, 300, 300, 64, 10000.0, seed)
    _, _, mask = check_against_reference(kern, q, k, v)
    assert 0.0 < mask.density() < 1.0


def test_prefix_sk_greater_than_sq(cpu_kernel):
    kern = cpu_kernel()
    q, k, v = R.workload(1, 4, 2, 100, 450, 64, 10000.0, 3)
    check_against_reference(kern, q, k, v)


def test_interleaved_fp16_head_dim_128(cpu_kernel):
    kern = cpu_kernel(head_dim=128, q_heads=2, kv_heads=1, block_size=64,
                      layout="interleaved")
    q, k, v = R.workload(1, 2, 1, 257, 257, 128, 10000.0, 4,
                         dtype=torch.float16, interleaved=True)
    check_against_reference(kern, q, k, v, atol=5e-3)


def test_no_calibration_temperatures(cpu_kernel):
    kern = cpu_kernel(calibrate=False, temps={"high": 0.5, "low": 2.0},
                      force_sink=False)
    q, k, v = R.workload(1, 4, 2, 200, 200, 64, 10000.0, 5)
    check_against_reference(kern, q, k, v)


def test_bshd_equals_bhsd(cpu_kernel):
    kern = cpu_kernel()
    q, k, v = R.workload(2, 4, 2, 130, 200, 64, 10000.0, 6)
    o, lse, m = kern.prefill(q, k, v, return_lse=True, return_mask=True)
    t = [x.transpose(1, 2).contiguous() for x in (q, k, v)]
    o2, lse2, m2 = kern.prefill(*t, layout="bshd", return_lse=True,
                                return_mask=True)
    assert o2.shape == t[0].shape
    assert torch.equal(o2.transpose(1, 2), o)
    assert torch.equal(lse2, lse)
    assert torch.equal(m2.to_block_dense(), m.to_block_dense())


def test_strided_views(cpu_kernel):
    """Non-contiguous B/H/S strides (a transposed view) are taken as is."""
    kern = cpu_kernel()
    q, k, v = R.workload(1, 4, 2, 96, 96, 64, 10000.0, 7)
    qv = q.transpose(1, 2).contiguous().transpose(1, 2)
    assert not qv.is_contiguous()
    o = kern.prefill(qv, k, v)
    assert o.stride() == qv.stride()
    assert torch.equal(o, kern.prefill(q, k, v))


def test_varlen_equals_separate_sequences(cpu_kernel):
    kern = cpu_kernel()
    lens = [(70, 150), (200, 200), (33, 64)]
    seqs = [R.workload(1, 4, 2, sq, sk, 64, 10000.0, 10 + i)
            for i, (sq, sk) in enumerate(lens)]

    def pack(i):
        return torch.cat([s[i][0].transpose(0, 1) for s in seqs])

    q, k, v = pack(0), pack(1), pack(2)
    cu_q = torch.tensor([0, 70, 270, 303], dtype=torch.int32)
    cu_k = torch.tensor([0, 150, 350, 414], dtype=torch.int32)
    o, lse, m = kern.prefill(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                             return_lse=True, return_mask=True)
    assert o.shape == q.shape and lse.shape == (4, 303)
    assert (m.seqlen_q, m.seqlen_k) == (200, 200)
    blocks = m.to_block_dense()
    for i, (sq, sk) in enumerate(lens):
        oi, li, mi = kern.prefill(*seqs[i], return_lse=True, return_mask=True)
        a, b = int(cu_q[i]), int(cu_q[i + 1])
        assert torch.equal(o[a:b], oi[0].transpose(0, 1))
        assert torch.equal(lse[:, a:b], li[0])
        bi = mi.to_block_dense()[0]
        nq, nk = bi.shape[-2:]
        assert torch.equal(blocks[i, :, :nq, :nk], bi)
        assert not blocks[i, :, nq:].any() and not blocks[i, :, :, nk:].any()
    dense = m.to_dense()
    assert dense.shape == (3, 4, 200, 200)


def test_estimate_then_sparse_equals_prefill(cpu_kernel):
    kern = cpu_kernel()
    q, k, v = R.workload(2, 4, 2, 160, 224, 64, 10000.0, 8)
    mask = kern.estimate(q, k)
    o, lse = kern.sparse_attention(q, k, v, mask, return_lse=True)
    o2, lse2, m2 = kern.prefill(q, k, v, return_lse=True, return_mask=True)
    assert torch.equal(mask.to_block_dense(), m2.to_block_dense())
    assert torch.equal(o, o2) and torch.equal(lse, lse2)


def test_sparse_attention_own_mask(cpu_kernel):
    kern = cpu_kernel()
    q, k, v = R.workload(1, 4, 2, 128, 192, 64, 10000.0, 9)
    nq, nk = 4, 6
    causal = torch.ones(nq, nk, dtype=torch.bool).tril(nk - nq)
    blocks = (torch.rand(1, 4, nq, nk) < 0.5) & causal
    blocks[..., 0] = True
    mask = prism_attn.BlockMask.from_block_dense(blocks, 32, 128, 192)
    o = kern.sparse_attention(q, k, v, mask)
    ro, _ = R.attention(q, k, v, blocks, 32)
    assert (o.double() - ro).abs().max() < 2e-2
    assert torch.equal(mask.to_block_dense(), blocks)


def test_dense_mask_and_density(cpu_kernel):
    """Thresholds 1.0 select every block-causal block: with a prefix that
    is a whole number of blocks (Sk - Sq = 64 here), that is exactly
    dense causal attention."""
    kern = cpu_kernel(thresholds={"high": 1.0, "low": 1.0})
    q, k, v = R.workload(1, 4, 2, 100, 164, 64, 10000.0, 11)
    o, mask = kern.prefill(q, k, v, return_mask=True)
    assert mask.density() == pytest.approx(1.0)
    dense = mask.to_dense()
    want = torch.ones(100, 164, dtype=torch.bool).tril(64)
    assert torch.equal(dense, want.expand(1, 4, 100, 164))
    sdpa = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(2, 1),
        v.float().repeat_interleave(2, 1), attn_mask=want)
    assert (o.float() - sdpa).abs().max() < 2e-2


def test_partial_block_prefix_follows_block_rule(cpu_kernel):
    """With Sk - Sq not a multiple of the block size, row i may select key
    blocks up to i + nk - nq (the method's block-causal rule), which can
    end before the row's own positions: even at thresholds 1.0 some keys
    a dense causal mask would show are not attended."""
    kern = cpu_kernel(thresholds={"high": 1.0, "low": 1.0})
    q, k, v = R.workload(1, 4, 2, 100, 150, 64, 10000.0, 11)
    _, mask = kern.prefill(q, k, v, return_mask=True)
    dense = mask.to_dense()[0, 0]
    causal = torch.ones(100, 150, dtype=torch.bool).tril(50)
    assert not (dense & ~causal).any()
    assert not dense[14, 64]  # query 14 sits at position 64, block 2


def test_flex_block_mask_shares_memory(cpu_kernel):
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    kern = cpu_kernel()
    q, k, v = R.workload(1, 4, 2, 128, 128, 64, 10000.0, 12)
    o, mask = kern.prefill(q, k, v, return_mask=True)
    bm = mask.to_flex_block_mask()
    assert bm.kv_num_blocks.data_ptr() == mask.counts.data_ptr()
    assert bm.kv_indices.data_ptr() == mask.indices.data_ptr()
    assert bm.BLOCK_SIZE == (32, 32)
    try:
        fo = flex.flex_attention(q.float(), k.float(), v.float(),
                                 block_mask=bm, enable_gqa=True)
    except Exception as e:  # eager CPU support differs between torch builds
        pytest.skip(f"flex_attention does not run eagerly here: {e}")
    assert (o.float() - fo).abs().max() < 2e-2


def test_kernel_cache_and_plans(cpu_kernel):
    a = cpu_kernel()
    assert cpu_kernel() is a
    assert prism_attn.get_kernel(a.id) is a
    q, k, v = R.workload(1, 4, 2, 64, 64, 64, 10000.0, 13)
    a.prefill(q, k, v)
    a.prefill(q.half(), k.half(), v.half())
    a.close()
    assert a.prefill(q, k, v).shape == q.shape


def test_overhead_bench_runs():
    """bench/overhead.py, whose table the GPU suite prints, runs (its
    direct launch builds the package's own call arguments)."""
    bench = os.path.join(os.path.dirname(__file__), "..", "bench",
                         "overhead.py")
    if not os.path.exists(bench):
        pytest.skip("bench/overhead.py is not beside the tests")
    mock = ["--mock"] if shutil.which("cc") else []
    run = subprocess.run([sys.executable, bench, "--device", "cpu",
                          "--calls", "20", "--seq", "128"] + mock,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split()[0] for line in run.stdout.splitlines()[2:]]
    assert rows == ["direct", "kernel", "kernel+params", "op", "op+params"], \
        run.stdout
