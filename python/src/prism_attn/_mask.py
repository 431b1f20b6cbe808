"""Prism's block mask as torch tensors, and its conversions.

The library's mask format (prism.h, prism_block_mask) is, per batch entry b,
query head h and query block i, a count of selected key blocks and their
ascending indices in a row of nk slots; slots past the count are undefined.
That is exactly FlexAttention's ``kv_num_blocks`` [B, H, nq] and
``kv_indices`` [B, H, nq, nk] (int32), so the conversion to a FlexAttention
BlockMask passes the same tensors, without a copy.  Token-level causality
inside the selected blocks (key position <= query position + Sk - Sq) is
part of the method, not of the mask, and comes along as the BlockMask's
mask_mod or in the dense conversion.
"""

from __future__ import annotations

import inspect
from typing import Optional

import torch


class BlockMask:
    """Selected key blocks per (batch, query head, query block).

    Attributes:
        counts: int32 [B, Hq, nq], the number of selected key blocks per row.
        indices: int32 [B, Hq, nq, nk], their ascending indices; entries at
            and past ``counts`` are undefined.
        block_size: tokens per block (the config's ``prism.block_size``).
        seqlen_q, seqlen_k: the query and key lengths (for a ragged batch,
            the longest sequence's).
        cu_seqlens_q, cu_seqlens_k: int32 [B + 1] for a ragged batch, else
            None.

    Row i of sequence b may select key blocks 0 .. i + nk_b - nq_b (the
    block-causal range; queries are the last Sq of the Sk positions).
    """

    def __init__(self, counts: torch.Tensor, indices: torch.Tensor,
                 block_size: int, seqlen_q: int, seqlen_k: int,
                 cu_seqlens_q: Optional[torch.Tensor] = None,
                 cu_seqlens_k: Optional[torch.Tensor] = None):
        self.counts = counts
        self.indices = indices
        self.block_size = block_size
        self.seqlen_q = seqlen_q
        self.seqlen_k = seqlen_k
        self.cu_seqlens_q = cu_seqlens_q
        self.cu_seqlens_k = cu_seqlens_k

    # --- shape ------------------------------------------------------------------
    @property
    def nq(self) -> int:
        """Query blocks per row set: ceil(seqlen_q / block_size)."""
        return self.indices.shape[-2]

    @property
    def nk(self) -> int:
        """Key blocks: ceil(seqlen_k / block_size)."""
        return self.indices.shape[-1]

    @property
    def shape(self) -> torch.Size:
        """[B, Hq, nq, nk]: the block matrix this mask stands for."""
        return self.indices.shape

    def __repr__(self) -> str:
        b, h, nq, nk = self.indices.shape
        ragged = ", ragged" if self.cu_seqlens_q is not None else ""
        return (f"BlockMask(B={b}, Hq={h}, nq={nq}, nk={nk}, "
                f"block_size={self.block_size}, seqlen_q={self.seqlen_q}, "
                f"seqlen_k={self.seqlen_k}{ragged}, "
                f"device={self.counts.device})")

    # --- sizes of each sequence ---------------------------------------------------
    def _lengths(self):
        """Per-sequence query and key lengths, as [B] int64 tensors."""
        return _lengths(self.counts.shape[0], self.seqlen_q, self.seqlen_k,
                        self.cu_seqlens_q, self.cu_seqlens_k,
                        self.counts.device)

    def causal_counts(self) -> torch.Tensor:
        """int64 [B, 1, nq]: the block-causal blocks of each row."""
        sq, sk = self._lengths()
        return _causal_counts(sq, sk, self.block_size, self.nq)

    def density(self) -> float:
        """Selected blocks over block-causal blocks (synchronises)."""
        causal = self.causal_counts().sum() * self.counts.shape[1]
        selected = self.counts.to(torch.int64).sum()
        return float(selected) / max(float(causal), 1.0)

    # --- conversions --------------------------------------------------------------
    def to_block_dense(self) -> torch.Tensor:
        """bool [B, Hq, nq, nk]: True where a key block is selected."""
        nk = self.nk
        slot = torch.arange(nk, device=self.counts.device, dtype=torch.int32)
        valid = slot < self.counts[..., None]
        idx = torch.where(valid, self.indices, nk).to(torch.int64)
        dense = torch.zeros(*self.indices.shape[:-1], nk + 1, dtype=torch.bool,
                            device=self.counts.device)
        dense.scatter_(-1, idx, True)
        return dense[..., :nk]

    def to_dense(self, causal: bool = True) -> torch.Tensor:
        """bool [B, Hq, seqlen_q, seqlen_k]: the keys each query sees.

        With causal (the method's semantics), a query at position t of its
        sequence sees key u when u's block is selected and u <= t + Sk - Sq;
        without, whole selected blocks.  For a ragged batch, positions past
        a sequence's own lengths are False.  Memory is B*Hq*Sq*Sk bytes:
        for tests and inspection, not for long sequences.
        """
        bs = self.block_size
        blocks = self.to_block_dense()
        dense = blocks.repeat_interleave(bs, dim=-2)[..., :self.seqlen_q, :]
        dense = dense.repeat_interleave(bs, dim=-1)[..., :self.seqlen_k]
        if not causal and self.cu_seqlens_q is None:
            return dense
        sq, sk = self._lengths()
        dev = dense.device
        t = torch.arange(self.seqlen_q, device=dev)
        u = torch.arange(self.seqlen_k, device=dev)
        keep = ((t[None, :, None] < sq[:, None, None]) &
                (u[None, None, :] < sk[:, None, None]))
        if causal:
            offset = (sk - sq)[:, None, None]
            keep = keep & (u[None, None, :] <= t[None, :, None] + offset)
        return dense & keep[:, None]

    def to_flex_block_mask(self, block_mask_mod: bool = True):
        """A FlexAttention BlockMask over the same tensors (no copy).

        ``kv_num_blocks`` and ``kv_indices`` are this mask's counts and
        indices, every selected block a partial one.  FlexAttention's
        mask_mod is the truth its fused kernels only accelerate (and all
        that its unfused eager path applies), so by default the mask_mod
        is the whole rule: the key's block selected (a lookup in a bool
        [B, Hq, nq, nk] copy of the selection, B*Hq*nq*nk bytes) and
        kv <= q + Sk - Sq.  With ``block_mask_mod=False`` it is the causal
        rule alone, which fused kernels (torch.compile'd flex_attention)
        still combine with the block sparsity, without the extra tensor.
        Use with ``flex_attention(q, k, v, block_mask=...,
        enable_gqa=True)`` on [B, H, S, D] tensors.  Not for ragged
        batches.
        """
        if self.cu_seqlens_q is not None:
            raise NotImplementedError(
                "a ragged (cu_seqlens) mask has no FlexAttention BlockMask "
                "form: convert each sequence's rows separately")
        from torch.nn.attention.flex_attention import BlockMask as FlexMask
        offset = self.seqlen_k - self.seqlen_q
        bs = self.block_size

        if block_mask_mod:
            blocks = self.to_block_dense()

            def mask_mod(b, h, q_idx, kv_idx):
                return ((kv_idx <= q_idx + offset)
                        & blocks[b, h, q_idx // bs, kv_idx // bs])
        else:
            def mask_mod(b, h, q_idx, kv_idx):
                return kv_idx <= q_idx + offset

        kwargs = dict(BLOCK_SIZE=(bs, bs), mask_mod=mask_mod)
        params = inspect.signature(FlexMask.from_kv_blocks).parameters
        if "seq_lengths" in params:
            kwargs["seq_lengths"] = (self.seqlen_q, self.seqlen_k)
        return FlexMask.from_kv_blocks(self.counts, self.indices, **kwargs)

    @classmethod
    def block_causal(cls, batch: int, heads: int, block_size: int,
                     seqlen_q: int, seqlen_k: int,
                     cu_seqlens_q: Optional[torch.Tensor] = None,
                     cu_seqlens_k: Optional[torch.Tensor] = None,
                     device=None) -> "BlockMask":
        """Every block-causal block (row i selects key blocks 0 .. i + nk -
        nq of its sequence): what a dense layer attends to.  With
        cu_seqlens, seqlen_q / seqlen_k are the longest sequence's and the
        rows past a sequence's own blocks select nothing.  No device
        synchronisation (usable under torch.compile and CUDA graphs)."""
        bs = block_size
        nq, nk = -(-seqlen_q // bs), -(-seqlen_k // bs)
        if cu_seqlens_q is not None:
            device = cu_seqlens_q.device
        sq, sk = _lengths(batch, seqlen_q, seqlen_k, cu_seqlens_q,
                          cu_seqlens_k, device)
        rows = _causal_counts(sq, sk, bs, nq).to(torch.int32)
        counts = rows.expand(batch, heads, nq).contiguous()
        cols = torch.arange(nk, dtype=torch.int32, device=device)
        indices = cols.expand(batch, heads, nq, nk).contiguous()
        return cls(counts, indices, bs, seqlen_q, seqlen_k, cu_seqlens_q,
                   cu_seqlens_k)

    @classmethod
    def from_block_dense(cls, blocks: torch.Tensor, block_size: int,
                         seqlen_q: int, seqlen_k: int) -> "BlockMask":
        """A mask from a bool [B, Hq, nq, nk] block matrix (e.g. for
        :meth:`Kernel.sparse_attention` with a mask of your own).  Blocks
        outside the block-causal range are rejected by the library."""
        if blocks.dtype != torch.bool or blocks.dim() != 4:
            raise ValueError("blocks must be a bool [B, Hq, nq, nk] tensor")
        counts = blocks.sum(-1, dtype=torch.int32)
        order = torch.argsort((~blocks).to(torch.int8), dim=-1, stable=True)
        return cls(counts.contiguous(), order.to(torch.int32).contiguous(),
                   block_size, seqlen_q, seqlen_k)


def _lengths(b: int, seqlen_q: int, seqlen_k: int, cu_q, cu_k, device):
    """Per-sequence query and key lengths, as [B] int64 tensors."""
    if cu_q is None:
        sq = torch.full((b,), seqlen_q, dtype=torch.int64, device=device)
        sk = torch.full((b,), seqlen_k, dtype=torch.int64, device=device)
        return sq, sk
    cq = cu_q.to(device=device, dtype=torch.int64)
    ck = cu_k.to(device=device, dtype=torch.int64)
    return cq[1:] - cq[:-1], ck[1:] - ck[:-1]


def _causal_counts(sq, sk, bs: int, nq: int) -> torch.Tensor:
    """int64 [B, 1, nq]: block-causal blocks per row of sequences with
    query and key lengths sq, sk ([B] tensors)."""
    nq_b = (sq + bs - 1) // bs
    nk_b = (sk + bs - 1) // bs
    i = torch.arange(nq, device=sq.device)
    allowed = i[None, :] + (nk_b - nq_b)[:, None] + 1
    allowed = torch.minimum(allowed.clamp(min=0), nk_b[:, None])
    allowed = torch.where(i[None, :] < nq_b[:, None], allowed,
                          torch.zeros_like(allowed))
    return allowed[:, None, :]
