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


# Slots of the mask past each row's count are undefined, so outputs that
# include the mask are compared by opcheck's schema and fake-tensor tests
# only; the others also through AOT dispatch.
_NO_COMPARE = ("test_schema", "test_autograd_registration", "test_faketensor")


def test_opcheck(kern):
    q, k, v = R.workload(1, 4, 2, 64, 96, 64, 10000.0, 22)
    ops = torch.ops.prism_attn
    opcheck(ops.prefill.default,
            (q, k, v, None, None, kern.id, "bhsd", 0, 0, True, False))
    opcheck(ops.prefill.default,
            (q, k, v, None, None, kern.id, "bhsd", 0, 0, True, True),
            test_utils=_NO_COMPARE)
    opcheck(ops.estimate.default,
            (q, k, None, None, kern.id, "bhsd", 0, 0), test_utils=_NO_COMPARE)
    counts, indices = ops.estimate(q, k, None, None, kern.id, "bhsd", 0, 0)
    opcheck(ops.sparse_attention.default,
            (q, k, v, counts, indices, None, None, kern.id, "bhsd", 0, 0,
             True))
