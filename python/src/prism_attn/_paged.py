"""Paged K/V: launches over the page pools of a serving engine's KV cache.

The keys and values are read in place through a page table
(prism.h, ``prism_paged_kv``): k_cache / v_cache are page pools,
[num_pages, page_size, Hkv, D] (``kv_layout="nhd"``, vLLM) or
[num_pages, Hkv, page_size, D] (``"hnd"``, FlashInfer), and row b of the
int32 page table [B, max_pages] lists sequence b's pages in order.  The
queries are regular or ragged as without pages; they are the last keys
of their sequence, so a chunk of a chunked prefill has more keys than
queries (the cached prefix, then the chunk, whose K and V the caller
wrote into its pages before the call).

Every paged call takes the validating path (the table and the key
lengths are arguments of each call); the contiguous launches of
_launch.py are untouched.  The library checks the table's entries on
CPU plans and names the field it refuses.
"""

from __future__ import annotations

import numbers
from ctypes import addressof, byref
from typing import TYPE_CHECKING

import torch

from . import _lib, _params
from ._lib import Batch, BlockMaskStruct, PagedKV, Tensor
from ._launch import (_LAYOUTS, _Call, _current_stream, _fail,
                      check_heads, check_last_dim, dtype_code)

if TYPE_CHECKING:  # pragma: no cover
    from ._kernel import Kernel

KV_LAYOUTS = ("nhd", "hnd")


def pooled_bytes(kern: "Kernel", num_pages: int, page_size: int,
                 kv_heads: int) -> int:
    """prism_paged_pooled_bytes for the kernel's config (0: refused)."""
    return _lib.lib().prism_paged_pooled_bytes(
        kern._cfg, int(num_pages), int(page_size), int(kv_heads))


def _int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {value!r}")
    return int(value)


def key_lengths(cu_q, seqlens_k, cu_k):
    """(seqlen_k or None, cu_seqlens_k or None) from the paged call's key
    lengths: an int for a regular batch, or per-sequence lengths (int32
    [B]) or their offsets (cu_seqlens_k) for a ragged one."""
    if seqlens_k is None and cu_k is None:
        raise ValueError("a paged call needs the key lengths: seqlens_k (an "
                         "int for a regular batch, int32 [B] for a ragged "
                         "one) or cu_seqlens_k")
    if seqlens_k is not None and cu_k is not None:
        raise ValueError("pass seqlens_k or cu_seqlens_k, not both")
    if cu_k is not None or isinstance(seqlens_k, torch.Tensor):
        if cu_q is None:
            raise ValueError("per-sequence key lengths (a tensor seqlens_k or "
                             "cu_seqlens_k) need a ragged batch: packed q "
                             "with cu_seqlens_q")
        if cu_k is None:
            t = seqlens_k
            if t.dtype != torch.int32 or t.dim() != 1:
                raise ValueError(f"seqlens_k must be an int or a 1-D int32 "
                                 f"tensor [B], got {t.dtype} "
                                 f"{tuple(t.shape)}")
            cu_k = torch.zeros(t.numel() + 1, dtype=torch.int32,
                               device=t.device)
            torch.cumsum(t, 0, out=cu_k[1:])
        return None, cu_k
    if cu_q is not None:
        raise ValueError("a ragged batch (cu_seqlens_q) takes per-sequence "
                         "key lengths: seqlens_k as an int32 [B] tensor, or "
                         "cu_seqlens_k")
    n = _int("seqlens_k", seqlens_k)
    return n, None


class _PagedCall(_Call):
    """One paged launch's validated geometry and C arguments: _Call's, with
    k and v as page pools and the prism_paged_kv the batch points at."""

    __slots__ = ("paged", "k_t", "v_t")

    def __init__(self, kern: "Kernel", q, k, v, page_table, cu_q, cu_k,
                 seqlen_k, layout, kv_layout, mq, mk, pooled_keys, values):
        self.kernel = kern
        dtype = q.dtype
        code = dtype_code(dtype)
        for name, t in (("q", q), ("k_cache", k), ("v_cache", v)):
            if t is None:
                continue
            if t.dtype != dtype:
                raise TypeError(f"{name} is {t.dtype} but q is {dtype}: q "
                                "and the caches must share one dtype")
            if t.device != kern.device:
                raise ValueError(f"{name} is on {t.device} but the kernel "
                                 f"runs on {kern.device}")
        self.varlen = cu_q is not None
        self.layout = layout
        hq = self._queries(q, cu_q, cu_k, layout, mq, mk, seqlen_k)
        page_size, num_pages = self._pools(k, v, kv_layout, hq)
        self._table(page_table, q.device, page_size)
        self._check_limits()
        bs = kern.block_size
        self.nq = (self.Sq + bs - 1) // bs
        self.nk = (self.Sk + bs - 1) // bs
        self.device = q.device
        keys_p = self._pooled(pooled_keys, num_pages, page_size)
        self.paged = PagedKV(page_table.data_ptr(), page_table.shape[1],
                             page_size, num_pages, keys_p)
        self.params = _params.struct(
            kern._defaults if values is None else values, self.hq, self.hkv)
        self.plan = kern._plan(code, self.Sk)
        self.stream = _current_stream(kern._cuda, q.device.index)
        self.batch = Batch(code, self.B, self.Sq, self.Sk,
                           cu_q.data_ptr() if self.varlen else None,
                           cu_k.data_ptr() if self.varlen else None,
                           self.total_q, 0, addressof(self.params),
                           addressof(self.paged))

    def _queries(self, q, cu_q, cu_k, layout, mq, mk, seqlen_k) -> int:
        kern = self.kernel
        if q.stride(-1) != 1:
            raise ValueError("q must be contiguous in its last (head_dim) "
                             f"dimension; its strides are {tuple(q.stride())}")
        if q.shape[-1] != kern.head_dim:
            raise ValueError(f"q has head_dim {q.shape[-1]} but the config "
                             f"'{kern.config['name']}' has {kern.head_dim}")
        if self.varlen:
            if q.dim() != 3:
                raise ValueError("with cu_seqlens_q, q must be packed 3-D "
                                 f"[total, heads, head_dim], got "
                                 f"{tuple(q.shape)}")
            for name, t in (("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
                if t.dtype != torch.int32 or t.dim() != 1 or t.numel() < 2:
                    raise ValueError(f"{name} must be a 1-D int32 tensor of "
                                     f"B + 1 offsets, got {t.dtype} "
                                     f"{tuple(t.shape)}")
                if t.device != q.device or not t.is_contiguous():
                    raise ValueError(f"{name} must be contiguous on "
                                     f"{q.device}")
            if cu_q.numel() != cu_k.numel():
                raise ValueError("cu_seqlens_q and the key lengths must "
                                 "have one entry per sequence each")
            self.B, self.Sq, self.Sk = cu_q.numel() - 1, mq, mk
            self.total_q = q.shape[0]
            if q.device.type == "cpu" and int(cu_q[-1]) != q.shape[0]:
                raise ValueError(f"cu_seqlens_q[-1] = {int(cu_q[-1])} but q "
                                 f"packs {q.shape[0]} tokens")
            hq = q.shape[1]
        else:
            if layout not in _LAYOUTS:
                raise ValueError(f"layout must be 'bhsd' or 'bshd', not "
                                 f"{layout!r}")
            if q.dim() != 4:
                raise ValueError(f"q must be 4-D ({layout.upper()}), got "
                                 f"shape {tuple(q.shape)}; packed 3-D q "
                                 "needs cu_seqlens_q")
            s_axis = 2 if layout == "bhsd" else 1
            self.B, self.Sq, self.Sk = q.shape[0], q.shape[s_axis], seqlen_k
            self.total_q = 0
            hq = q.shape[1 if layout == "bhsd" else 2]
        if self.Sq < 1 or self.Sk < self.Sq:
            raise ValueError(f"need 1 <= Sq <= Sk (the queries are the last "
                             f"Sq of the Sk keys), got Sq={self.Sq}, "
                             f"Sk={self.Sk}")
        return hq

    def _pools(self, k, v, kv_layout, hq):
        """(page_size, num_pages) of the pools; sets hkv, k_t and v_t."""
        kern = self.kernel
        if kv_layout not in KV_LAYOUTS:
            raise ValueError(f"kv_layout must be 'nhd' ([num_pages, "
                             f"page_size, Hkv, D]) or 'hnd' ([num_pages, Hkv, "
                             f"page_size, D]), not {kv_layout!r}")
        shape = ("[num_pages, page_size, Hkv, D]" if kv_layout == "nhd"
                 else "[num_pages, Hkv, page_size, D]")
        h_axis, s_axis = (2, 1) if kv_layout == "nhd" else (1, 2)
        for name, t in (("k_cache", k), ("v_cache", v)):
            if t is None:
                continue
            if t.dim() != 4:
                raise ValueError(f"{name} must be a 4-D page pool {shape} "
                                 f"(kv_layout={kv_layout!r}), got shape "
                                 f"{tuple(t.shape)}")
            check_last_dim(kern, name, t)
        if v is not None and v.shape != k.shape:
            raise ValueError(f"v_cache has shape {tuple(v.shape)} but k_cache "
                             f"has {tuple(k.shape)}")
        hkv = k.shape[h_axis]
        check_heads(hq, hkv, f"the caches {hkv}")
        self.hq, self.hkv = hq, hkv
        page_size, num_pages = k.shape[s_axis], k.shape[0]
        bs = kern.block_size
        if page_size < 1 or page_size % bs:
            raise ValueError(f"page_size {page_size} (dim {s_axis} of "
                             f"k_cache) must be a multiple of the config's "
                             f"block_size {bs} (a key block never straddles "
                             f"two pages)")
        if num_pages < 1 or num_pages > 2**31 - 1:
            raise ValueError(f"the pools have {num_pages} pages; they need "
                             f"1 to 2**31 - 1")

        def pool(t):
            if t is None:
                return None
            s = t.stride()
            return Tensor(t.data_ptr(), s[0], s[h_axis], s[s_axis])

        self.k_t, self.v_t = pool(k), pool(v)
        return page_size, num_pages

    def _table(self, table, device, page_size):
        if not isinstance(table, torch.Tensor):
            raise TypeError(f"page_table must be an int32 tensor [B, "
                            f"max_pages], not {type(table).__name__}")
        if table.dtype != torch.int32:
            raise TypeError(f"page_table must be int32, not {table.dtype}")
        if table.dim() != 2 or table.shape[0] != self.B:
            raise ValueError(f"page_table must be [B, max_pages] with B = "
                             f"{self.B}, got {tuple(table.shape)}")
        if table.device != device:
            raise ValueError(f"page_table is on {table.device}, q on {device}")
        if not table.is_contiguous():
            raise ValueError("page_table must be contiguous (row b, entry i "
                             "at b * max_pages + i)")
        if table.shape[1] * page_size < self.Sk:
            raise ValueError(f"page_table's {table.shape[1]} pages per "
                             f"sequence of {page_size} tokens hold "
                             f"{table.shape[1] * page_size} keys, fewer than "
                             f"the longest sequence's {self.Sk}")

    def _pooled(self, buf, num_pages, page_size):
        if buf is None:
            return None
        need = pooled_bytes(self.kernel, num_pages, page_size, self.hkv)
        if (not isinstance(buf, torch.Tensor) or buf.dtype != torch.float32
                or not buf.is_contiguous() or buf.device != self.device):
            raise ValueError(f"pooled_keys must be a contiguous float32 "
                             f"tensor on {self.device} (see "
                             f"Kernel.pooled_keys_buffer)")
        if buf.numel() * 4 < need:
            raise ValueError(f"pooled_keys holds {buf.numel() * 4} bytes; "
                             f"{num_pages} pages of {page_size} tokens with "
                             f"{self.hkv} KV heads need {need} (make it "
                             f"with Kernel.pooled_keys_buffer)")
        if buf.data_ptr() % 16:
            raise ValueError("pooled_keys must be 16-byte aligned")
        return buf.data_ptr()


# --- the launches -------------------------------------------------------------------
def prefill(kern, q, k, v, page_table, cu_q, cu_k, seqlen_k, layout,
            kv_layout, mq, mk, pooled_keys, want_lse, want_mask, values):
    """(o, lse or None, counts or None, indices or None)."""
    c = _PagedCall(kern, q, k, v, page_table, cu_q, cu_k, seqlen_k, layout,
                   kv_layout, mq, mk, pooled_keys, values)
    o = torch.empty_like(q)
    lse = c.new_lse() if want_lse else None
    counts = indices = mask_p = None
    if want_mask:
        counts, indices = c.new_mask()
        mask_p = byref(BlockMaskStruct(counts.data_ptr(), indices.data_ptr(),
                                       c.nq, c.nk))
    buf, ws, ws_size = c.workspace()
    st = _lib.lib().prism_prefill(
        c.plan, byref(c.batch), byref(c.tensor(q)), byref(c.k_t),
        byref(c.v_t), byref(c.tensor(o)),
        lse.data_ptr() if lse is not None else None, mask_p, ws, ws_size,
        c.stream)
    if st:
        raise _fail(c.plan, st)
    return o, lse, counts, indices


def estimate(kern, q, k, page_table, cu_q, cu_k, seqlen_k, layout, kv_layout,
             mq, mk, pooled_keys, values):
    """(counts, indices)."""
    c = _PagedCall(kern, q, k, None, page_table, cu_q, cu_k, seqlen_k, layout,
                   kv_layout, mq, mk, pooled_keys, values)
    counts, indices = c.new_mask()
    m = BlockMaskStruct(counts.data_ptr(), indices.data_ptr(), c.nq, c.nk)
    buf, ws, ws_size = c.workspace()
    st = _lib.lib().prism_estimate(
        c.plan, byref(c.batch), byref(c.tensor(q)), byref(c.k_t), byref(m),
        ws, ws_size, c.stream)
    if st:
        raise _fail(c.plan, st)
    return counts, indices


def sparse(kern, q, k, v, page_table, counts, indices, cu_q, cu_k, seqlen_k,
           layout, kv_layout, mq, mk, want_lse, values):
    """(o, lse or None): attention over a given mask, K/V in pages."""
    c = _PagedCall(kern, q, k, v, page_table, cu_q, cu_k, seqlen_k, layout,
                   kv_layout, mq, mk, None, values)
    c.check_mask(counts, indices)
    o = torch.empty_like(q)
    lse = c.new_lse() if want_lse else None
    m = BlockMaskStruct(counts.data_ptr(), indices.data_ptr(), c.nq, c.nk)
    buf, ws, ws_size = c.workspace()
    st = _lib.lib().prism_sparse_attention(
        c.plan, byref(c.batch), byref(c.tensor(q)), byref(c.k_t),
        byref(c.v_t), byref(m), byref(c.tensor(o)),
        lse.data_ptr() if lse is not None else None, ws, ws_size, c.stream)
    if st:
        raise _fail(c.plan, st)
    return o, lse
