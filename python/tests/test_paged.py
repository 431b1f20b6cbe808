"""Paged K/V on the CPU backend: a paged call computes exactly what the
contiguous call its pages stand for computes (outputs, log-sum-exp and
selection, bit for bit) for shuffled pages, both pool layouts, pages of
one and two blocks and ragged batches; a chunked prefill over a paged
cache equals the one-shot prefill; the pooled-key cache changes no
selection; bad arguments raise with what is wrong; and the example
script runs."""

import os
import runpy

import pytest
import torch

import prism_attn
import reference as R

BS = 32  # the fixtures' block_size


def paginate(keys, page_size, kv_layout, extra=3, seed=0):
    """Page pools holding each sequence's K (or V) on shuffled pages.

    keys: a list of per-sequence [Hkv, S_b, D] tensors.  Returns the pool
    (pages nobody uses hold random finite values) and the int32 table
    [B, max_pages] (entries past a sequence's pages point at page 0)."""
    g = torch.Generator().manual_seed(seed)
    hkv, d = keys[0].shape[0], keys[0].shape[-1]
    pages = [-(-k.shape[1] // page_size) for k in keys]
    num_pages = sum(pages) + extra
    order = torch.randperm(num_pages, generator=g)
    max_pages = max(pages)
    table = torch.zeros(len(keys), max_pages, dtype=torch.int32)
    shape = ((num_pages, page_size, hkv, d) if kv_layout == "nhd"
             else (num_pages, hkv, page_size, d))
    pool = torch.randn(shape, generator=g).to(keys[0].dtype)
    n = 0
    for b, k in enumerate(keys):
        for i in range(pages[b]):
            page = int(order[n])
            n += 1
            table[b, i] = page
            chunk = k[:, i * page_size:(i + 1) * page_size]
            if kv_layout == "nhd":
                pool[page, :chunk.shape[1]] = chunk.transpose(0, 1)
            else:
                pool[page, :, :chunk.shape[1]] = chunk
    return pool, table


@pytest.mark.parametrize("kv_layout", ["nhd", "hnd"])
@pytest.mark.parametrize("page_blocks", [1, 2])
def test_regular_batch_matches_contiguous(cpu_kernel, kv_layout,
                                          page_blocks):
    kern = cpu_kernel()
    q, k, v = R.workload(2, 4, 2, 96, 230, 64, 10000.0, 21)
    ps = page_blocks * BS
    kc, table = paginate(list(k), ps, kv_layout, seed=1)
    vc, table_v = paginate(list(v), ps, kv_layout, seed=1)
    assert torch.equal(table, table_v)
    want = kern.prefill(q, k, v, return_lse=True, return_mask=True)
    got = kern.prefill(q, kc, vc, page_table=table, seqlens_k=230,
                       kv_layout=kv_layout, return_lse=True, return_mask=True)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert (got[2].seqlen_q, got[2].seqlen_k) == (96, 230)
    assert torch.equal(got[2].to_block_dense(), want[2].to_block_dense())
    # estimate alone, then attention over its mask, read the pages too
    mask = kern.estimate(q, kc, page_table=table, seqlens_k=230,
                         kv_layout=kv_layout)
    assert torch.equal(mask.to_block_dense(), want[2].to_block_dense())
    o = kern.sparse_attention(q, kc, vc, mask, page_table=table,
                              kv_layout=kv_layout)
    assert torch.equal(o, want[0])
    # BSHD queries
    ob = kern.prefill(q.transpose(1, 2), kc, vc, layout="bshd",
                      page_table=table, seqlens_k=230, kv_layout=kv_layout)
    assert torch.equal(ob.transpose(1, 2), want[0])


@pytest.mark.parametrize("kv_layout,page_blocks", [("hnd", 1), ("nhd", 2)])
def test_ragged_batch_matches_contiguous(cpu_kernel, kv_layout, page_blocks):
    kern = cpu_kernel(head_dim=64, q_heads=4, kv_heads=1, block_size=BS)
    lens = [(40, 104), (100, 100), (7, 71)]
    seqs = [R.workload(1, 4, 1, sq, sk, 64, 10000.0, 30 + i)
            for i, (sq, sk) in enumerate(lens)]

    def pack(i):
        return torch.cat([s[i][0].transpose(0, 1) for s in seqs])

    q, k, v = pack(0), pack(1), pack(2)
    cu_q = torch.tensor([0, 40, 140, 147], dtype=torch.int32)
    cu_k = torch.tensor([0, 104, 204, 275], dtype=torch.int32)
    want = kern.prefill(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                        return_lse=True, return_mask=True)
    ps = page_blocks * BS
    kc, table = paginate([s[1][0] for s in seqs], ps, kv_layout, seed=2)
    vc, _ = paginate([s[2][0] for s in seqs], ps, kv_layout, seed=2)
    lens_k = torch.tensor([sk for _, sk in lens], dtype=torch.int32)
    for keys in ({"seqlens_k": lens_k}, {"cu_seqlens_k": cu_k}):
        got = kern.prefill(q, kc, vc, cu_seqlens_q=cu_q, page_table=table,
                           kv_layout=kv_layout, return_lse=True,
                           return_mask=True, **keys)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert torch.equal(got[2].to_block_dense(),
                           want[2].to_block_dense())
        assert torch.equal(got[2].cu_seqlens_k, cu_k)


def _chunked(kern, q, k, v, ps, chunk, pooled):
    """A chunked prefill of one sequence over an HND cache, each chunk's K
    and V written into its pages before the call, as an engine would."""
    hkv, s, d = k.shape[1:]
    pages = -(-s // ps)
    num_pages = pages + 2
    order = torch.randperm(num_pages, generator=torch.Generator()
                           .manual_seed(5))
    table = order[:pages].to(torch.int32).view(1, pages)
    kc = torch.zeros(num_pages, hkv, ps, d, dtype=k.dtype)
    vc = torch.zeros_like(kc)
    buf = kern.pooled_keys_buffer(num_pages, ps) if pooled else None
    outs, masks = [], []
    for q0 in range(0, s, chunk):
        for t in range(q0, q0 + chunk):
            page, row = int(table[0, t // ps]), t % ps
            kc[page, :, row] = k[0, :, t]
            vc[page, :, row] = v[0, :, t]
        o, m = kern.prefill(q[:, :, q0:q0 + chunk], kc, vc, page_table=table,
                            seqlens_k=q0 + chunk, kv_layout="hnd",
                            pooled_keys=buf, calibrate=False,
                            return_mask=True)
        outs.append(o)
        masks.append(m.to_block_dense())
    return torch.cat(outs, dim=2), masks, buf


def test_chunked_prefill_equals_one_shot(cpu_kernel):
    kern = cpu_kernel()
    q, k, v = R.workload(1, 4, 2, 256, 256, 64, 10000.0, 31)
    o, mask = kern.prefill(q, k, v, calibrate=False, return_mask=True)
    full = mask.to_block_dense()
    for pooled in (False, True):
        oc, masks, buf = _chunked(kern, q, k, v, 2 * BS, 2 * BS, pooled)
        assert torch.equal(oc, o), f"pooled_keys={pooled}"
        for c, m in enumerate(masks):
            rows = full[:, :, 2 * c:2 * c + 2, :m.shape[-1]]
            assert torch.equal(m, rows), f"chunk {c}, pooled_keys={pooled}"
        if pooled:
            assert buf.abs().sum() > 0  # the full blocks were written


def test_pooled_keys_keep_selections(cpu_kernel):
    kern = cpu_kernel()
    q, k, v = R.workload(2, 4, 2, 100, 300, 64, 10000.0, 7)
    kc, table = paginate(list(k), 2 * BS, "nhd", seed=3)
    buf = kern.pooled_keys_buffer(kc.shape[0], 2 * BS)
    assert buf.dtype == torch.float32 and not buf.any()
    per_page = 2 * 2 * (64 + 4)  # blocks per page x Hkv x (D + 4)
    assert buf.numel() == kc.shape[0] * per_page
    assert kern.pooled_keys_page(buf, 3, 2 * BS).numel() == per_page
    plain = kern.estimate(q, kc, page_table=table, seqlens_k=300)
    for _ in range(2):  # writing the cache, then reading it
        m = kern.estimate(q, kc, page_table=table, seqlens_k=300,
                          pooled_keys=buf)
        assert torch.equal(m.to_block_dense(), plain.to_block_dense())
    assert buf.any()


def test_bad_inputs_raise(cpu_kernel):
    kern = cpu_kernel()
    q, k, v = R.workload(1, 4, 2, 64, 128, 64, 10000.0, 1)
    kc, table = paginate(list(k), BS, "nhd")
    vc, _ = paginate(list(v), BS, "nhd")

    def call(**kw):
        args = dict(page_table=table, seqlens_k=128)
        args.update(kw)
        return kern.prefill(q, args.pop("k", kc), args.pop("v", vc), **args)

    call()  # the valid call
    with pytest.raises(TypeError, match="page_table must be int32"):
        call(page_table=table.long())
    with pytest.raises(ValueError, match="page_size 48 .* multiple of the "
                                         "config's block_size 32"):
        call(k=torch.zeros(8, 48, 2, 64, dtype=q.dtype),
             v=torch.zeros(8, 48, 2, 64, dtype=q.dtype))
    with pytest.raises(ValueError, match="v_cache has shape"):
        call(v=vc[:-1])
    with pytest.raises(ValueError, match="head_dim"):
        call(k=kc[..., :32], v=vc[..., :32])
    with pytest.raises(ValueError, match="page_table must be \\[B, max_pages"):
        call(page_table=table.view(-1))
    with pytest.raises(ValueError, match="hold 128 keys, fewer than"):
        call(seqlens_k=129)
    with pytest.raises(ValueError, match="Sq <= Sk"):
        call(seqlens_k=32)
    with pytest.raises(ValueError, match="kv_layout must be"):
        call(kv_layout="bhsd")
    with pytest.raises(ValueError, match="need the key lengths|needs the key"):
        kern.prefill(q, kc, vc, page_table=table)
    with pytest.raises(ValueError, match="pass page_table too"):
        kern.prefill(q, k, v, seqlens_k=128)
    with pytest.raises(TypeError, match="seqlens_k must be an int"):
        call(seqlens_k=128.0)
    with pytest.raises(ValueError, match="pooled_keys holds"):
        call(pooled_keys=torch.zeros(16))
    with pytest.raises(ValueError, match="no pooled-key cache"):
        kern.pooled_keys_buffer(4, 48)
    # the library checks a host table's entries and names the field
    bad = table.clone()
    bad[0, 1] = kc.shape[0]
    with pytest.raises(prism_attn.PrismError,
                       match=r"paged.page_table\[0\]\[1\] = "):
        call(page_table=bad)


def test_dense_layer_kernel_reads_pages(cpu_kernel):
    kern = prism_attn.kernel(_dense_config(), "cpu")
    dense = kern.for_layer(0)
    assert dense.dense
    q, k, v = R.workload(1, 4, 2, 64, 192, 64, 10000.0, 4)
    kc, table = paginate(list(k), BS, "hnd")
    vc, _ = paginate(list(v), BS, "hnd")
    want = dense.prefill(q, k, v)
    got = dense.prefill(q, kc, vc, page_table=table, seqlens_k=192,
                        kv_layout="hnd")
    assert torch.equal(got, want)


def _dense_config():
    from conftest import make_config
    cfg = make_config()
    cfg["layers"] = {"dense": [0]}
    return cfg


def test_chunked_prefill_example_runs():
    path = os.path.join(os.path.dirname(__file__), "..", "examples",
                        "chunked_prefill.py")
    if not os.path.exists(path):
        pytest.skip("the examples are not beside the tests")
    runpy.run_path(path, run_name="__main__")
