"""Launches: argument checks, the C structs, and the call into libprism.

Two paths build the same arguments.  The first call with a new signature
(shapes, strides, dtypes, devices and layout of q, k, v) goes through
``_Call``, which validates everything the C library cannot see -- dtypes,
devices, layouts, shapes against the config -- and raises ``TypeError`` /
``ValueError`` with what is wrong.  Its result, a ``_Geometry``, is cached
by that signature, so later calls with the same signature only allocate
the outputs and the workspace from torch, copy a prepared argument block
(the prism_batch and prism_tensor structs laid out flat in one ctypes
struct) and write the data pointers into it.  The run-time parameters
(prism_params) are C structs made and checked once per signature and
settings; the block points at the kernel's defaults unless a call gives
others.  Ragged batches always take the validating path (their
cu_seqlens are part of the arguments).

The head counts are the tensors' (q and k heads), not the config's: a
tensor-parallel shard runs on the same plan and kernels.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING
from ctypes import Structure, addressof, byref, c_int, c_int64, c_void_p

import torch

from . import _lib, _params
from ._lib import Batch, BlockMaskStruct, PrismError, Tensor

if TYPE_CHECKING:  # pragma: no cover
    from ._kernel import Kernel

_DTYPES = {torch.bfloat16: _lib.DTYPE_BF16, torch.float16: _lib.DTYPE_FP16}
_LAYOUTS = ("bhsd", "bshd")
_GEOMETRY_CACHE = 256  # signatures kept per kernel
_PARAMS_CACHE = 64     # settings kept per signature
_F32, _I32, _U8 = torch.float32, torch.int32, torch.uint8
_empty_like = torch.empty_like


def dtype_code(dtype: torch.dtype) -> int:
    """The prism_dtype of a torch dtype (TypeError for the others)."""
    code = _DTYPES.get(dtype)
    if code is None:
        raise TypeError(
            f"Prism runs float16 and bfloat16 tensors, not {dtype} (both "
            "backends; cast with .to(torch.bfloat16))")
    return code


def layout_code(layout) -> int:
    """The index of a 4-D layout in _LAYOUTS (ValueError for others)."""
    try:
        return _LAYOUTS.index(layout)
    except ValueError:
        raise ValueError(f"layout must be 'bhsd' or 'bshd', not {layout!r}") \
            from None


def _tensor_fields(name):
    return [(name, c_void_p), (name + "_b", c_int64), (name + "_h", c_int64),
            (name + "_s", c_int64)]


class _Args(Structure):
    """prism_batch, the prism_tensors of q, k, v, o and a prism_block_mask,
    back to back with the C structs' own layouts."""
    _fields_ = ([("dtype", c_int), ("batch", c_int), ("seqlen_q", c_int),
                 ("seqlen_k", c_int), ("cu_seqlens_q", c_void_p),
                 ("cu_seqlens_k", c_void_p), ("total_q", c_int),
                 ("total_k", c_int), ("params", c_void_p),
                 ("paged", c_void_p)]
                + _tensor_fields("q") + _tensor_fields("k")
                + _tensor_fields("v") + _tensor_fields("o")
                + [("counts", c_void_p), ("indices", c_void_p),
                   ("nq", c_int), ("nk", c_int)])


_OFF_Q, _OFF_K = _Args.q.offset, _Args.k.offset
_OFF_V, _OFF_O = _Args.v.offset, _Args.o.offset
_OFF_M = _Args.counts.offset
assert _OFF_Q == ctypes.sizeof(Batch)
assert _OFF_K - _OFF_Q == ctypes.sizeof(Tensor)
assert ctypes.sizeof(_Args) - _OFF_M == ctypes.sizeof(BlockMaskStruct)


_RAW_NAMES = ("prism_prefill", "prism_estimate", "prism_sparse_attention")


class _RawFunctions(dict):
    """libprism's launch functions with every pointer as c_void_p, for the
    argument block's interior addresses (prototypes from _lib._declare),
    made on first use."""

    def __missing__(self, name):
        for n in _RAW_NAMES:
            self.setdefault(n, _lib.raw_function(n))
        return self[name]


_RAW = _RawFunctions()


def _raw_functions() -> dict:
    """The raw launch functions by name (see _RawFunctions)."""
    _RAW[_RAW_NAMES[0]]
    return _RAW


def _current_stream(cuda: bool, index):
    """torch's current CUDA stream on device `index` as a raw CUstream
    (an int; 0 is the default stream), None for a CPU kernel."""
    if not cuda:
        return None
    return torch._C._cuda_getCurrentRawStream(index)


def _like(dtype, device, shape) -> torch.Tensor:
    """A one-element tensor expanded to `shape`: torch.empty_like of it is
    a new contiguous tensor of that shape, dtype and device, allocated as
    torch.empty would (current stream, a CUDA graph's pool during
    capture) without parsing the shape and keywords on every call."""
    return torch.empty(1, dtype=dtype, device=device).expand(shape)


class _Geometry:
    """A validated signature: the plan, a prepared argument block, the
    prism_params structs of the settings it ran with, and the sizes of
    what each call allocates (as templates for torch.empty_like)."""

    __slots__ = ("plan", "raw", "ws_alloc", "ws_size", "align", "device",
                 "cuda", "cuda_index", "lse_shape", "rows", "nk", "hq", "hkv",
                 "params", "default", "ws_like", "lse_like", "counts_like",
                 "indices_like")

    def __init__(self, c: "_Call", q, k, v):
        kern = c.kernel
        o = torch.empty_like(q)  # o's strides follow q's
        a = _Args()
        ctypes.memmove(addressof(a), addressof(c.batch), ctypes.sizeof(Batch))
        for name, t in (("q", q), ("k", k), ("v", v), ("o", o)):
            if t is None:
                continue
            s = c.tensor(t)
            setattr(a, name + "_b", s.stride_b)
            setattr(a, name + "_h", s.stride_h)
            setattr(a, name + "_s", s.stride_s)
        a.nq, a.nk = c.nq, c.nk
        self.raw = bytes(a)  # its params pointer: the kernel's defaults
        self.plan = c.plan
        self.ws_size = c.workspace_size()
        self.align = kern._align
        self.ws_alloc = self.ws_size + self.align
        self.device = c.device
        self.cuda, self.cuda_index = kern._cuda, c.device.index
        self.hq, self.hkv = c.hq, c.hkv
        self.lse_shape = (c.B, c.hq, c.Sq)
        self.rows = (c.B, c.hq, c.nq)
        self.nk = c.nk
        dev = c.device
        self.ws_like = _like(_U8, dev, (self.ws_alloc,))
        self.lse_like = _like(_F32, dev, self.lse_shape)
        self.counts_like = _like(_I32, dev, self.rows)
        self.indices_like = _like(_I32, dev, self.rows + (self.nk,))
        self.default = (c.params, addressof(c.params))
        self.params = {kern._defaults: self.default}


def _params_entry(g: _Geometry, values):
    """(struct, address) of the prism_params of `values` with g's head
    counts, made and checked once per signature and values; the caller
    holds it over the launch (another thread may evict it from g)."""
    entry = g.params.get(values)
    if entry is None:
        p = _params.struct(values, g.hq, g.hkv)
        if len(g.params) >= _PARAMS_CACHE:
            g.params = {k: e for k, e in g.params.items() if e is g.default}
        entry = g.params[values] = (p, addressof(p))
    return entry


def _geometry(kern, q, k, v, layout) -> _Geometry:
    if v is None:
        key = (q.shape, k.shape, q.stride(), k.stride(), q.dtype, k.dtype,
               q.device, k.device, layout)
    else:
        key = (q.shape, k.shape, v.shape, q.stride(), k.stride(), v.stride(),
               q.dtype, k.dtype, v.dtype, q.device, k.device, v.device, layout)
    g = kern._geometry.get(key)
    if g is None:
        g = _Geometry(_Call(kern, q, k, v, None, None, layout, 0, 0, None),
                      q, k, v)
        if len(kern._geometry) >= _GEOMETRY_CACHE:
            kern._geometry.clear()
        kern._geometry[key] = g
    return g


def check_last_dim(kern, name: str, t: torch.Tensor) -> None:
    """A K/V/Q tensor (or page pool) must be contiguous in head_dim and
    have the config's head_dim."""
    if t.stride(-1) != 1:
        raise ValueError(f"{name} must be contiguous in its last "
                         f"(head_dim) dimension; its strides are "
                         f"{tuple(t.stride())}")
    if t.shape[-1] != kern.head_dim:
        raise ValueError(f"{name} has head_dim {t.shape[-1]} but the "
                         f"config '{kern.config['name']}' has "
                         f"{kern.head_dim}")


def check_heads(hq: int, hkv: int, kv: str) -> None:
    """GQA head counts: the key/value heads divide the query heads, 1 to
    MAX_HEADS of each.  `kv` says where hkv came from, e.g. "k has 4"."""
    if not 1 <= hkv <= hq <= _lib.MAX_HEADS or hq % hkv:
        raise ValueError(
            f"q has {hq} heads and {kv}: the key/value heads must divide "
            f"the query heads (GQA groups), 1 to {_lib.MAX_HEADS} of each")


def _fail(plan, st) -> PrismError:
    msg = _lib.lib().prism_plan_last_error(plan).decode(errors="replace")
    return PrismError(st, msg)


# --- the three launches -------------------------------------------------------------
# `values` is a tuple of _params.FIELDS, or None for the kernel's defaults.
def prefill(kern, q, k, v, cu_q, cu_k, layout, mq, mk, want_lse, want_mask,
            values=None):
    """(o, lse or None, counts or None, indices or None)."""
    if cu_q is not None or cu_k is not None:
        return _prefill_ragged(kern, q, k, v, cu_q, cu_k, layout, mq, mk,
                               want_lse, want_mask, values)
    g = _geometry(kern, q, k, v, layout)
    a = _Args.from_buffer_copy(g.raw)
    if values is not None:  # else the block points at the defaults
        held = _params_entry(g, values)  # alive until the launch returns
        a.params = held[1]
    o = _empty_like(q)
    a.q, a.k, a.v, a.o = q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr()
    base = addressof(a)
    lse = counts = indices = None
    lse_p = mask_p = None
    if want_lse:
        lse = _empty_like(g.lse_like)
        lse_p = lse.data_ptr()
    if want_mask:
        counts = _empty_like(g.counts_like)
        indices = _empty_like(g.indices_like)
        a.counts, a.indices = counts.data_ptr(), indices.data_ptr()
        mask_p = base + _OFF_M
    buf = _empty_like(g.ws_like)
    align = g.align
    st = _RAW["prism_prefill"](
        g.plan, base, base + _OFF_Q, base + _OFF_K, base + _OFF_V,
        base + _OFF_O, lse_p, mask_p, (buf.data_ptr() + align - 1) & -align,
        g.ws_size,
        torch._C._cuda_getCurrentRawStream(g.cuda_index) if g.cuda else None)
    if st:
        raise _fail(g.plan, st)
    return o, lse, counts, indices


def estimate(kern, q, k, cu_q, cu_k, layout, mq, mk, values=None):
    """(counts, indices)."""
    if cu_q is not None or cu_k is not None:
        return _estimate_ragged(kern, q, k, cu_q, cu_k, mq, mk, values)
    g = _geometry(kern, q, k, None, layout)
    a = _Args.from_buffer_copy(g.raw)
    if values is not None:  # else the block points at the defaults
        held = _params_entry(g, values)  # alive until the launch returns
        a.params = held[1]
    a.q, a.k = q.data_ptr(), k.data_ptr()
    counts = _empty_like(g.counts_like)
    indices = _empty_like(g.indices_like)
    a.counts, a.indices = counts.data_ptr(), indices.data_ptr()
    buf = _empty_like(g.ws_like)
    align = g.align
    base = addressof(a)
    st = _RAW["prism_estimate"](
        g.plan, base, base + _OFF_Q, base + _OFF_K, base + _OFF_M,
        (buf.data_ptr() + align - 1) & -align, g.ws_size,
        torch._C._cuda_getCurrentRawStream(g.cuda_index) if g.cuda else None)
    if st:
        raise _fail(g.plan, st)
    return counts, indices


def sparse(kern, q, k, v, counts, indices, cu_q, cu_k, layout, mq, mk,
           want_lse, values=None):
    """(o, lse or None)."""
    if cu_q is not None or cu_k is not None:
        return _sparse_ragged(kern, q, k, v, counts, indices, cu_q, cu_k, mq,
                              mk, want_lse, values)
    g = _geometry(kern, q, k, v, layout)
    _check_mask(g, counts, indices)
    a = _Args.from_buffer_copy(g.raw)
    if values is not None:  # else the block points at the defaults
        held = _params_entry(g, values)  # alive until the launch returns
        a.params = held[1]
    o = _empty_like(q)
    a.q, a.k, a.v, a.o = q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr()
    a.counts, a.indices = counts.data_ptr(), indices.data_ptr()
    lse = lse_p = None
    if want_lse:
        lse = _empty_like(g.lse_like)
        lse_p = lse.data_ptr()
    buf = _empty_like(g.ws_like)
    align = g.align
    base = addressof(a)
    st = _RAW["prism_sparse_attention"](
        g.plan, base, base + _OFF_Q, base + _OFF_K, base + _OFF_V,
        base + _OFF_M, base + _OFF_O, lse_p,
        (buf.data_ptr() + align - 1) & -align, g.ws_size,
        torch._C._cuda_getCurrentRawStream(g.cuda_index) if g.cuda else None)
    if st:
        raise _fail(g.plan, st)
    return o, lse


def _check_mask(g: _Geometry, counts, indices):
    want = g.rows + (g.nk,)
    if tuple(indices.shape) != want or tuple(counts.shape) != g.rows:
        raise ValueError(f"the mask is {tuple(indices.shape)} blocks but "
                         f"these inputs need {want}")
    for name, t in (("counts", counts), ("indices", indices)):
        if (t.dtype != torch.int32 or t.device != g.device
                or not t.is_contiguous()):
            raise ValueError(f"mask {name} must be contiguous int32 on "
                             f"{g.device}")


# --- ragged batches: the validating path every time -------------------------------
def _prefill_ragged(kern, q, k, v, cu_q, cu_k, layout, mq, mk, want_lse,
                    want_mask, values):
    c = _Call(kern, q, k, v, cu_q, cu_k, layout, mq, mk, values)
    o = torch.empty_like(q)
    lse = c.new_lse() if want_lse else None
    counts = indices = None
    mask_p = None
    if want_mask:
        counts, indices = c.new_mask()
        mask_p = byref(BlockMaskStruct(counts.data_ptr(), indices.data_ptr(),
                                       c.nq, c.nk))
    buf, ws, ws_size = c.workspace()
    st = _lib.lib().prism_prefill(
        c.plan, byref(c.batch), byref(c.tensor(q)), byref(c.tensor(k)),
        byref(c.tensor(v)), byref(c.tensor(o)),
        lse.data_ptr() if lse is not None else None, mask_p, ws, ws_size,
        c.stream)
    if st:
        raise _fail(c.plan, st)
    return o, lse, counts, indices


def _estimate_ragged(kern, q, k, cu_q, cu_k, mq, mk, values):
    c = _Call(kern, q, k, None, cu_q, cu_k, "bhsd", mq, mk, values)
    counts, indices = c.new_mask()
    m = BlockMaskStruct(counts.data_ptr(), indices.data_ptr(), c.nq, c.nk)
    buf, ws, ws_size = c.workspace()
    st = _lib.lib().prism_estimate(
        c.plan, byref(c.batch), byref(c.tensor(q)), byref(c.tensor(k)),
        byref(m), ws, ws_size, c.stream)
    if st:
        raise _fail(c.plan, st)
    return counts, indices


def _sparse_ragged(kern, q, k, v, counts, indices, cu_q, cu_k, mq, mk,
                   want_lse, values):
    c = _Call(kern, q, k, v, cu_q, cu_k, "bhsd", mq, mk, values)
    c.check_mask(counts, indices)
    o = torch.empty_like(q)
    lse = c.new_lse() if want_lse else None
    m = BlockMaskStruct(counts.data_ptr(), indices.data_ptr(), c.nq, c.nk)
    buf, ws, ws_size = c.workspace()
    st = _lib.lib().prism_sparse_attention(
        c.plan, byref(c.batch), byref(c.tensor(q)), byref(c.tensor(k)),
        byref(c.tensor(v)), byref(m), byref(c.tensor(o)),
        lse.data_ptr() if lse is not None else None, ws, ws_size, c.stream)
    if st:
        raise _fail(c.plan, st)
    return o, lse


class _Call:
    """One launch's validated geometry and C arguments."""

    __slots__ = ("kernel", "plan", "batch", "layout", "varlen", "B", "Sq",
                 "Sk", "nq", "nk", "device", "stream", "hq", "hkv", "total_q",
                 "params")

    def __init__(self, kern: "Kernel", q, k, v, cu_q, cu_k, layout, mq, mk,
                 values):
        self.kernel = kern
        dtype = q.dtype
        code = dtype_code(dtype)
        for name, t in (("k", k), ("v", v)):
            if t is not None and t.dtype != dtype:
                raise TypeError(f"{name} is {t.dtype} but q is {dtype}: q, k "
                                "and v must share one dtype")
        dev = q.device
        for name, t in (("q", q), ("k", k), ("v", v)):
            if t is not None and t.device != kern.device:
                raise ValueError(f"{name} is on {t.device} but the kernel runs "
                                 f"on {kern.device}: use prism_attn.kernel("
                                 f"config, device={str(t.device)!r})")
        self.varlen = cu_q is not None
        if self.varlen:
            self._ragged(q, k, v, cu_q, cu_k, mq, mk)
        else:
            if cu_k is not None:
                raise ValueError("pass both cu_seqlens_q and cu_seqlens_k, "
                                 "or neither")
            self._regular(q, k, v, layout)
        self.layout = layout
        self._check_limits()
        bs = kern.block_size
        self.nq = (self.Sq + bs - 1) // bs
        self.nk = (self.Sk + bs - 1) // bs
        self.device = dev
        self.params = _params.struct(
            kern._defaults if values is None else values, self.hq, self.hkv)
        self.plan = kern._plan(code, self.Sk)
        self.stream = _current_stream(kern._cuda, dev.index)
        self.batch = Batch(code, self.B, self.Sq, self.Sk,
                           cu_q.data_ptr() if self.varlen else None,
                           cu_k.data_ptr() if self.varlen else None,
                           self.total_q, k.shape[0] if self.varlen else 0,
                           addressof(self.params))

    def _check_limits(self):
        if self.B > _lib.MAX_BATCH:
            raise ValueError(f"batch {self.B} is above the library's limit "
                             f"of {_lib.MAX_BATCH} sequences per call "
                             "(PRISM_MAX_BATCH); split the batch")
        if self.Sk > _lib.MAX_SEQLEN:
            raise ValueError(f"seqlen_k {self.Sk} is above the library's "
                             f"limit of {_lib.MAX_SEQLEN} (PRISM_MAX_SEQLEN)")

    def _heads_dim(self, q, k, v, h_axis):
        """head_dim against the config; the head counts are the tensors'
        (any GQA grouping, e.g. a tensor-parallel shard of the model's)."""
        kern = self.kernel
        for name, t in (("q", q), ("k", k), ("v", v)):
            if t is not None:
                check_last_dim(kern, name, t)
        if v is not None and v.shape != k.shape:
            raise ValueError(f"v has shape {tuple(v.shape)} but k has "
                             f"{tuple(k.shape)}")
        hq, hkv = q.shape[h_axis], k.shape[h_axis]
        check_heads(hq, hkv, f"k has {hkv} (dim {h_axis})")
        self.hq, self.hkv = hq, hkv

    def _regular(self, q, k, v, layout):
        layout_code(layout)
        h_axis, s_axis = (1, 2) if layout == "bhsd" else (2, 1)
        for name, t in (("q", q), ("k", k), ("v", v)):
            if t is not None and t.dim() != 4:
                raise ValueError(
                    f"{name} must be 4-D ({layout.upper()}), got shape "
                    f"{tuple(t.shape)}; packed 3-D inputs need cu_seqlens")
        self._heads_dim(q, k, v, h_axis)
        if k.shape[0] != q.shape[0]:
            raise ValueError(f"q has batch {q.shape[0]} but k has {k.shape[0]}")
        self.B, self.Sq, self.Sk = q.shape[0], q.shape[s_axis], k.shape[s_axis]
        self.total_q = 0
        if self.Sq < 1 or self.Sk < self.Sq:
            raise ValueError(
                f"need 1 <= Sq <= Sk (queries are the last Sq of the Sk "
                f"positions), got Sq={self.Sq}, Sk={self.Sk}")

    def _ragged(self, q, k, v, cu_q, cu_k, mq, mk):
        if cu_k is None:
            raise ValueError("pass both cu_seqlens_q and cu_seqlens_k, or "
                             "neither")
        for name, t in (("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
            if t.dtype != torch.int32 or t.dim() != 1 or t.numel() < 2:
                raise ValueError(f"{name} must be a 1-D int32 tensor of B + 1 "
                                 f"offsets, got {t.dtype} {tuple(t.shape)}")
            if t.device != q.device:
                raise ValueError(f"{name} is on {t.device}, q on {q.device}")
            if not t.is_contiguous():
                raise ValueError(f"{name} must be contiguous")
        if cu_q.numel() != cu_k.numel():
            raise ValueError("cu_seqlens_q and cu_seqlens_k must have the same "
                             "length (B + 1)")
        for name, t in (("q", q), ("k", k), ("v", v)):
            if t is not None and t.dim() != 3:
                raise ValueError(f"with cu_seqlens, {name} must be packed 3-D "
                                 f"[total, heads, head_dim], got "
                                 f"{tuple(t.shape)}")
        self._heads_dim(q, k, v, 1)
        self.B = cu_q.numel() - 1
        self.Sq, self.Sk = mq, mk
        self.total_q = q.shape[0]
        if self.Sq < 1 or self.Sk < self.Sq:
            raise ValueError(f"need 1 <= max_seqlen_q <= max_seqlen_k, got "
                             f"{self.Sq} and {self.Sk}")
        if q.device.type == "cpu" and int(cu_q[-1]) != q.shape[0]:
            raise ValueError(f"cu_seqlens_q[-1] = {int(cu_q[-1])} but q packs "
                             f"{q.shape[0]} tokens")

    def tensor(self, t: torch.Tensor) -> Tensor:
        s = t.stride()
        if self.varlen:
            return Tensor(t.data_ptr(), 0, s[1], s[0])
        if self.layout == "bhsd":
            return Tensor(t.data_ptr(), s[0], s[1], s[2])
        return Tensor(t.data_ptr(), s[0], s[2], s[1])

    def new_lse(self) -> torch.Tensor:
        if self.varlen:
            shape = (self.hq, self.total_q)
        else:
            shape = (self.B, self.hq, self.Sq)
        return torch.empty(shape, dtype=torch.float32, device=self.device)

    def new_mask(self):
        rows = (self.B, self.hq, self.nq)
        counts = torch.empty(rows, dtype=torch.int32, device=self.device)
        indices = torch.empty(rows + (self.nk,), dtype=torch.int32,
                              device=self.device)
        return counts, indices

    def check_mask(self, counts, indices):
        want = (self.B, self.hq, self.nq, self.nk)
        if tuple(indices.shape) != want or tuple(counts.shape) != want[:3]:
            raise ValueError(f"the mask is {tuple(indices.shape)} blocks but "
                             f"these inputs need {want} (block_size "
                             f"{self.kernel.block_size})")
        for name, t in (("counts", counts), ("indices", indices)):
            if (t.dtype != torch.int32 or t.device != self.device
                    or not t.is_contiguous()):
                raise ValueError(f"mask {name} must be contiguous int32 on "
                                 f"{self.device}")

    def workspace_size(self) -> int:
        kern = self.kernel
        key = (self.plan, self.B, self.Sq, self.Sk, self.hq, self.hkv)
        size = kern._ws_sizes.get(key)
        if size is None:
            size = _lib.lib().prism_plan_workspace_size(self.plan,
                                                        byref(self.batch))
            if size == 0:
                raise ValueError(
                    f"a call of {self.B} sequences up to {self.Sk} keys with "
                    f"{self.hq} query heads needs a workspace above the "
                    f"library's limit (PRISM_MAX_WORKSPACE_BYTES, "
                    f"{_lib.MAX_WORKSPACE_BYTES} bytes); split the batch")
            kern._ws_sizes[key] = size
        return size

    def workspace(self):
        size = self.workspace_size()
        align = self.kernel._align
        buf = torch.empty(size + align, dtype=torch.uint8, device=self.device)
        # the caller holds buf until the launch returns; after that the
        # allocator's stream order keeps the memory for the kernels queued
        return buf, (buf.data_ptr() + align - 1) & ~(align - 1), size
