"""torch.compile(fullgraph=True) traces the Kernel methods through the
custom ops, and the ops' fake implementations agree with the real ones
(torch.library.opcheck)."""

import pytest
import torch
from torch.library import opcheck

import prism_attn
import reference as R


@pytest.fixture
def kern(cpu_kernel):
    return cpu_kernel()


def test_compile_fullgraph_prefill(kern):
    q, k, v = R.workload(1, 4, 2, 96, 160, 64, 10000.0, 20)

    def f(q, k, v):
        o, lse, mask = kern.prefill(q * 1.0, k, v, return_lse=True,
                                    return_mask=True)
        return o + 0, lse, mask

    want = f(q, k, v)
    got = torch.compile(f, fullgraph=True)(q, k, v)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert isinstance(got[2], prism_attn.BlockMask)
    assert torch.equal(got[2].to_block_dense(), want[2].to_block_dense())


def test_compile_fullgraph_estimate_sparse(kern):
    q, k, v = R.workload(2, 4, 2, 64, 64, 64, 10000.0, 21)

    def g(q, k, v):
        return kern.sparse_attention(q, k, v, kern.estimate(q, k))

    assert torch.equal(torch.compile(g, fullgraph=True)(q, k, v),
                       kern.prefill(q, k, v))


def test_compile_varlen(kern):
    q = torch.randn(100, 4, 64, dtype=torch.bfloat16)
    k = torch.randn(130, 2, 64, dtype=torch.bfloat16)
    cu_q = torch.tensor([0, 40, 100], dtype=torch.int32)
    cu_k = torch.tensor([0, 50, 130], dtype=torch.int32)

    def f(q, k, v):
        return kern.prefill(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                            max_seqlen_q=60, max_seqlen_k=80)

    assert torch.equal(torch.compile(f, fullgraph=True)(q, k, k),
                       f(q, k, k))


def test_compile_with_params(kern):
    """Settings reach the compiled graph as the op's arguments: each value
    runs as in eager mode."""
    q, k, v = R.workload(1, 4, 2, 128, 192, 64, 10000.0, 23)

    def f(q, k, v):
        a, ma = kern.prefill(q, k, v, threshold=0.9, softmax_scale=0.1,
                             return_mask=True)
        mb = kern.estimate(q, k, threshold=0.98, calibrate=False)
        b = kern.sparse_attention(q, k, v, mb, softmax_scale=0.2,
                                  return_lse=True)
        return a, ma, mb, b

    want = f(q, k, v)
    got = torch.compile(f, fullgraph=True)(q, k, v)
    assert torch.equal(got[0], want[0])
    for i in (1, 2):
        assert torch.equal(got[i].to_block_dense(), want[i].to_block_dense())
    assert torch.equal(got[3][0], want[3][0])
    assert torch.equal(got[3][1], want[3][1])
    assert not torch.equal(want[1].to_block_dense(),
                           want[2].to_block_dense())


def test_compile_dynamic_varlen_and_threshold(kern):
    """dynamic=True: ragged lengths (SymInt max_seqlen) and a threshold
    passed as arguments of the compiled function."""
    def f(q, k, cu_q, cu_k, mq, mk, threshold):
        return kern.prefill(q, k, k, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                            max_seqlen_q=mq, max_seqlen_k=mk,
                            threshold=threshold, return_lse=True,
                            return_mask=True)

    cf = torch.compile(f, dynamic=True, fullgraph=True)
    for lens_q, lens_k, threshold in (([0, 40, 100], [0, 50, 130], 0.9),
                                      ([0, 70, 150], [0, 90, 200], 0.8)):
        q = torch.randn(lens_q[-1], 4, 64, dtype=torch.bfloat16)
        k = torch.randn(lens_k[-1], 2, 64, dtype=torch.bfloat16)
        cu_q = torch.tensor(lens_q, dtype=torch.int32)
        cu_k = torch.tensor(lens_k, dtype=torch.int32)
        mq = max(b - a for a, b in zip(lens_q, lens_q[1:]))
        mk = max(b - a for a, b in zip(lens_k, lens_k[1:]))
        args = (q, k, cu_q, cu_k, mq, mk, threshold)
        got, want = cf(*args), f(*args)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert torch.equal(got[2].to_block_dense(), want[2].to_block_dense())


def test_compile_settings_as_inputs(kern):
    """Settings passed into the compiled function: each value becomes a
    settings id of its graph (a recompile per value, also once automatic
    dynamic shapes make the floats symbolic) and runs as in eager mode."""
    q, k, v = R.workload(1, 4, 2, 128, 192, 64, 10000.0, 28)

    def f(q, k, v, threshold, scale):
        return kern.prefill(q, k, v, threshold=threshold,
                            softmax_scale=scale, return_mask=True)

    cf = torch.compile(f, fullgraph=True)
    for threshold, scale in ((0.9, 0.1), (0.8, 0.1), (0.7, 0.2), (0.9, 0.1),
                             (0.6, 0.3)):
        got, want = cf(q, k, v, threshold, scale), f(q, k, v, threshold,
                                                     scale)
        assert torch.equal(got[0], want[0])
        assert torch.equal(got[1].counts, want[1].counts)


def test_compile_head_shard(cpu_kernel):
    kern = cpu_kernel(q_heads=9, kv_heads=3)
    q, k, v = R.workload(1, 9, 3, 96, 96, 64, 10000.0, 24)

    def f(q, k, v):
        return kern.prefill(q, k, v, return_lse=True)

    o, lse = torch.compile(f, fullgraph=True)(q[:, :3], k[:, :1], v[:, :1])
    want, wlse = kern.prefill(q, k, v, return_lse=True)
    assert torch.equal(o, want[:, :3]) and torch.equal(lse, wlse[:, :3])


def test_compile_bad_params_raise(kern):
    q, k, v = R.workload(1, 4, 2, 64, 64, 64, 10000.0, 25)

    def f(q, k, v):
        return kern.prefill(q, k, v, threshold=1.5)

    with pytest.raises(Exception, match=r"params\.threshold_high 1\.5"):
        torch.compile(f, fullgraph=True)(q, k, v)


# Slots of the mask past each row's count are undefined, so outputs that
# include the mask are compared by opcheck's schema and fake-tensor tests
# only; the others also through AOT dispatch.
_NO_COMPARE = ("test_schema", "test_autograd_registration", "test_faketensor")


def test_opcheck(kern):
    q, k, v = R.workload(1, 4, 2, 64, 96, 64, 10000.0, 22)
    ops = torch.ops.prism_attn
    call = kern.call_id()
    other = kern.call_id(threshold=0.9, softmax_scale=0.2)
    opcheck(ops.prefill.default, (q, k, v, call))
    opcheck(ops.prefill.lse, (q, k, v, other))
    opcheck(ops.prefill.mask, (q, k, v, other), test_utils=_NO_COMPARE)
    opcheck(ops.prefill.lse_mask, (q, k, v, call), test_utils=_NO_COMPARE)
    opcheck(ops.estimate.default, (q, k, other), test_utils=_NO_COMPARE)
    counts, indices = ops.estimate(q, k, call)
    args = (q, k, v, counts, indices)
    opcheck(ops.sparse_attention.default, args + (call,))
    opcheck(ops.sparse_attention.lse, args + (other,))
    # a head shard, bshd
    t = tuple(x[:, :2].transpose(1, 2).contiguous() for x in (q, k, v))
    opcheck(ops.prefill.lse, t + (kern.call_id("bshd", threshold=0.9),))


def test_opcheck_varlen(kern):
    """The ragged overloads: cu_seqlens, the kernel id, max_seqlen_q/k and
    the settings id as arguments of their own."""
    ops = torch.ops.prism_attn
    q = torch.randn(100, 4, 64, dtype=torch.bfloat16)
    k = torch.randn(130, 2, 64, dtype=torch.bfloat16)
    v = torch.randn_like(k)
    cu_q = torch.tensor([0, 40, 100], dtype=torch.int32)
    cu_k = torch.tensor([0, 50, 130], dtype=torch.int32)
    other = kern.params_id(threshold=0.9, softmax_scale=0.2)
    ragged = (cu_q, cu_k, kern.id, 60, 80)
    opcheck(ops.prefill.varlen, (q, k, v) + ragged + (0,))
    opcheck(ops.prefill.varlen_lse, (q, k, v) + ragged + (other,))
    opcheck(ops.prefill.varlen_mask, (q, k, v) + ragged + (other,),
            test_utils=_NO_COMPARE)
    opcheck(ops.prefill.varlen_lse_mask, (q, k, v) + ragged + (0,),
            test_utils=_NO_COMPARE)
    opcheck(ops.estimate.varlen, (q, k) + ragged + (other,),
            test_utils=_NO_COMPARE)
    counts, indices = ops.estimate.varlen(q, k, *ragged, 0)
    args = (q, k, v, counts, indices) + ragged
    opcheck(ops.sparse_attention.varlen, args + (0,))
    opcheck(ops.sparse_attention.varlen_lse, args + (other,))


def test_compile_dynamic_regular(kern):
    """dynamic=True on a regular batch: the short ops' fakes take the
    lengths from the (symbolic) shapes, for both layouts."""
    def f(q, k, v):
        o, lse, mask = kern.prefill(q, k, v, return_lse=True,
                                    return_mask=True)
        b = kern.sparse_attention(q, k, v, kern.estimate(q, k),
                                  return_lse=True)
        return o, lse, mask, b

    cf = torch.compile(f, dynamic=True, fullgraph=True)
    for sq, sk, seed in ((96, 160, 29), (130, 250, 30)):
        q, k, v = R.workload(1, 4, 2, sq, sk, 64, 10000.0, seed)
        got, want = cf(q, k, v), f(q, k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert torch.equal(got[2].to_block_dense(), want[2].to_block_dense())
        assert torch.equal(got[3][0], want[3][0])
        assert torch.equal(got[3][1], want[3][1])

    def g(q, k, v):
        return kern.prefill(q, k, v, layout="bshd", return_lse=True)

    q, k, v = (x.transpose(1, 2) for x in R.workload(1, 4, 2, 64, 96, 64,
                                                     10000.0, 31))
    got, want = torch.compile(g, dynamic=True, fullgraph=True)(q, k, v), \
        g(q, k, v)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_compile_bad_layout_raises(kern):
    """A layout the ops cannot take fails while tracing, with the eager
    call's message."""
    q, k, v = R.workload(1, 4, 2, 64, 64, 64, 10000.0, 32)

    def f(q, k, v):
        return kern.prefill(q, k, v, layout="sbhd")

    with pytest.raises(ValueError, match="layout must be"):
        f(q, k, v)
    with pytest.raises(Exception, match="layout must be 'bhsd' or 'bshd'"):
        torch.compile(f, fullgraph=True)(q, k, v)


def test_call_id(kern):
    """A call id packs the kernel, the layout and the settings id."""
    from prism_attn import _kernel
    pid = kern.params_id(threshold=0.9)
    for layout in ("bhsd", "bshd"):
        for p in (0, pid):
            cid = _kernel.call_id(kern.id, layout, p)
            assert _kernel.split_call_id(cid) == (kern.id, layout, p)
    assert kern.call_id() == _kernel.call_id(kern.id, "bhsd", 0)
    assert kern.call_id("bshd", threshold=0.9) == \
        _kernel.call_id(kern.id, "bshd", pid)
    assert kern.call_id(params={"threshold": 0.9}) == \
        _kernel.call_id(kern.id, "bhsd", pid)
    assert len({kern.call_id(), kern.call_id("bshd"),
                kern.call_id(threshold=0.9)}) == 3
    with pytest.raises(ValueError, match="layout must be"):
        kern.call_id("sbhd")
    with pytest.raises(ValueError, match=r"params\.threshold_high 1\.5"):
        kern.call_id(threshold=1.5)
    with pytest.raises(ValueError, match="params_id -1 is not"):
        _kernel.call_id(kern.id, "bhsd", -1)
    with pytest.raises(ValueError, match="call_id -1 is not"):
        _kernel.split_call_id(-1)
    with pytest.raises(ValueError, match="has no layout"):
        _kernel.split_call_id(kern.call_id() | 3)


def test_params_id(kern):
    """The ops take the settings as one id: 0 for the kernel's defaults,
    one id per distinct values, checked when it is made."""
    assert kern.params_id() == 0 and kern.params_id(params={}) == 0
    a = kern.params_id(threshold=0.9)
    assert a > 0
    assert kern.params_id(threshold_high=0.9, threshold_low=0.9) == a
    assert kern.params_id(params={"threshold": 0.9}) == a
    assert kern.params_id(threshold=0.8) not in (0, a)
    with pytest.raises(ValueError, match=r"params\.threshold_high 1\.5"):
        kern.params_id(threshold=1.5)
    with pytest.raises(TypeError, match="unknown method parameter"):
        kern.params_id(thresold=0.9)


def test_op_params_id_runs_its_values(kern):
    """An op call with a settings id runs as the eager call with those
    settings; the defaults' id 0 as the eager call without: the short
    form through its call id, the ragged form through params_id."""
    q, k, v = R.workload(1, 4, 2, 128, 192, 64, 10000.0, 26)
    ops = torch.ops.prism_attn
    settings = {"threshold": 0.8, "calibrate": False, "softmax_scale": 0.1}
    pid = kern.params_id(**settings)
    o, counts, indices = ops.prefill.mask(q, k, v, kern.call_id(**settings))
    want, wmask = kern.prefill(q, k, v, return_mask=True, **settings)
    assert torch.equal(o, want) and torch.equal(counts, wmask.counts)
    assert torch.equal(ops.prefill(q, k, v, kern.call_id()),
                       kern.prefill(q, k, v))
    c2, _ = ops.estimate(q, k, kern.call_id(**settings))
    selection = {n: settings[n] for n in ("threshold", "calibrate")}
    assert torch.equal(c2, kern.estimate(q, k, **selection).counts)
    # a ragged batch of one sequence is the regular batch
    cu_q = torch.tensor([0, 128], dtype=torch.int32)
    cu_k = torch.tensor([0, 192], dtype=torch.int32)
    packed = [x[0].transpose(0, 1).contiguous() for x in (q, k, v)]
    ragged = (cu_q, cu_k, kern.id, 128, 192, pid)
    o3, c3, _ = ops.prefill.varlen_mask(*packed, *ragged)
    assert torch.equal(o3, want[0].transpose(0, 1))
    assert torch.equal(c3, wmask.counts)


def test_op_unknown_ids(kern):
    q, k, v = R.workload(1, 4, 2, 64, 64, 64, 10000.0, 27)
    from prism_attn import _kernel
    with pytest.raises(ValueError, match="params_id 123456789 is not"):
        torch.ops.prism_attn.prefill(
            q, k, v, _kernel.call_id(kern.id, "bhsd", 123456789))
    with pytest.raises(ValueError, match="which is no kernel's id"):
        torch.ops.prism_attn.prefill(
            q, k, v, _kernel.call_id((1 << 30) - 1, "bhsd", 0))
    with pytest.raises(ValueError, match="call_id -1 is not"):
        torch.ops.prism_attn.prefill(q, k, v, -1)
    unknown = _kernel.call_id(kern.id, "bhsd", 123456789)

    def f(q, k, v):
        return torch.ops.prism_attn.prefill(q, k, v, unknown)

    with pytest.raises(Exception, match="params_id 123456789 is not"):
        torch.compile(f, fullgraph=True)(q, k, v)

    packed = [x[0].transpose(0, 1).contiguous() for x in (q, k, v)]
    cu = torch.tensor([0, 64], dtype=torch.int32)

    def g(q, k, v):
        return torch.ops.prism_attn.prefill.varlen(q, k, v, cu, cu, kern.id,
                                                   64, 64, -1)

    with pytest.raises(ValueError, match="params_id -1 is not"):
        g(*packed)
    with pytest.raises(Exception, match="params_id -1 is not"):
        torch.compile(g, fullgraph=True)(*packed)
