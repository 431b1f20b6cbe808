"""torch.library custom ops: what torch.compile traces instead of ctypes.

Dynamo cannot look inside a ctypes call, so under torch.compile the Kernel
methods call these ops, which the compiled graph keeps as opaque nodes.
Each op has a fake (meta) implementation giving the outputs' shapes, dtypes
and strides from the inputs alone.  The kernel travels as its integer id;
outputs the caller did not ask for are empty tensors (an op's outputs are
fixed by its schema).  In eager mode the Kernel methods call the
implementations directly, without the dispatcher's overhead.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from ._kernel import get_kernel

Tensor = torch.Tensor


def _empty(like: Tensor) -> Tensor:
    return like.new_empty((0,), dtype=torch.float32)


def _empty_i32(like: Tensor) -> Tensor:
    return like.new_empty((0,), dtype=torch.int32)


def _geometry(q: Tensor, k: Tensor, kernel_id: int, layout: str,
              varlen: bool, mq: int, mk: int):
    kern = get_kernel(kernel_id)
    bs = kern.block_size
    if varlen:
        b = None
        sq, sk = mq, mk
    else:
        s = 2 if layout == "bhsd" else 1
        b, sq, sk = q.shape[0], q.shape[s], k.shape[s]
    return kern, b, (sq + bs - 1) // bs, (sk + bs - 1) // bs


def _fake_lse(q, cu_q, kern, b, layout):
    if cu_q is not None:
        return q.new_empty((kern.q_heads, q.shape[0]), dtype=torch.float32)
    s = 2 if layout == "bhsd" else 1
    return q.new_empty((b, kern.q_heads, q.shape[s]), dtype=torch.float32)


def _fake_mask(q, cu_q, kern, b, nq, nk):
    if cu_q is not None:
        b = cu_q.shape[0] - 1
    counts = q.new_empty((b, kern.q_heads, nq), dtype=torch.int32)
    return counts, q.new_empty((b, kern.q_heads, nq, nk), dtype=torch.int32)


@torch.library.custom_op("prism_attn::prefill", mutates_args=())
def prefill(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor],
            cu_seqlens_k: Optional[Tensor], kernel_id: int, layout: str,
            max_seqlen_q: int, max_seqlen_k: int, return_lse: bool,
            return_mask: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Kernel.prefill: (o, lse, counts, indices); unrequested ones empty."""
    o, lse, counts, indices = get_kernel(kernel_id)._prefill(
        q, k, v, cu_seqlens_q, cu_seqlens_k, layout, max_seqlen_q,
        max_seqlen_k, return_lse, return_mask)
    return (o, lse if lse is not None else _empty(q),
            counts if counts is not None else _empty_i32(q),
            indices if indices is not None else _empty_i32(q))


@prefill.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, kernel_id, layout, max_seqlen_q,
      max_seqlen_k, return_lse, return_mask):
    kern, b, nq, nk = _geometry(q, k, kernel_id, layout,
                                cu_seqlens_q is not None, max_seqlen_q,
                                max_seqlen_k)
    lse = (_fake_lse(q, cu_seqlens_q, kern, b, layout) if return_lse
           else _empty(q))
    if return_mask:
        counts, indices = _fake_mask(q, cu_seqlens_q, kern, b, nq, nk)
    else:
        counts, indices = _empty_i32(q), _empty_i32(q)
    return torch.empty_like(q), lse, counts, indices


@torch.library.custom_op("prism_attn::estimate", mutates_args=())
def estimate(q: Tensor, k: Tensor, cu_seqlens_q: Optional[Tensor],
             cu_seqlens_k: Optional[Tensor], kernel_id: int, layout: str,
             max_seqlen_q: int, max_seqlen_k: int) -> Tuple[Tensor, Tensor]:
    """Kernel.estimate: (counts, indices) of the block mask."""
    return get_kernel(kernel_id)._estimate(q, k, cu_seqlens_q, cu_seqlens_k,
                                           layout, max_seqlen_q, max_seqlen_k)


@estimate.register_fake
def _(q, k, cu_seqlens_q, cu_seqlens_k, kernel_id, layout, max_seqlen_q,
      max_seqlen_k):
    kern, b, nq, nk = _geometry(q, k, kernel_id, layout,
                                cu_seqlens_q is not None, max_seqlen_q,
                                max_seqlen_k)
    return _fake_mask(q, cu_seqlens_q, kern, b, nq, nk)


@torch.library.custom_op("prism_attn::sparse_attention", mutates_args=())
def sparse_attention(q: Tensor, k: Tensor, v: Tensor, counts: Tensor,
                     indices: Tensor, cu_seqlens_q: Optional[Tensor],
                     cu_seqlens_k: Optional[Tensor], kernel_id: int,
                     layout: str, max_seqlen_q: int, max_seqlen_k: int,
                     return_lse: bool) -> Tuple[Tensor, Tensor]:
    """Kernel.sparse_attention: (o, lse); lse empty unless requested."""
    o, lse = get_kernel(kernel_id)._sparse(
        q, k, v, counts, indices, cu_seqlens_q, cu_seqlens_k, layout,
        max_seqlen_q, max_seqlen_k, return_lse)
    return o, lse if lse is not None else _empty(q)


@sparse_attention.register_fake
def _(q, k, v, counts, indices, cu_seqlens_q, cu_seqlens_k, kernel_id,
      layout, max_seqlen_q, max_seqlen_k, return_lse):
    kern = get_kernel(kernel_id)
    b = None if cu_seqlens_q is not None else q.shape[0]
    lse = (_fake_lse(q, cu_seqlens_q, kern, b, layout) if return_lse
           else _empty(q))
    return torch.empty_like(q), lse


__all__: List[str] = ["prefill", "estimate", "sparse_attention"]
