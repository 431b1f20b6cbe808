"""torch.library custom ops: what torch.compile traces instead of ctypes.

Dynamo cannot look inside a ctypes call, so under torch.compile the Kernel
methods call these ops, which the compiled graph keeps as opaque nodes.
Each op has a fake (meta) implementation giving the outputs' shapes, dtypes
and strides from the inputs alone.  The method parameters travel as one
int, a settings id (_params.settings_id, 0 for the kernel's defaults; the
head counts are the tensors'), so a compiled graph or a captured CUDA
graph runs the settings it was traced with.

Each op has two forms.  A regular batch (4-D q, k, v) calls the short
one, whose schema is the tensors and one int, the call id
(_kernel.call_id: kernel id, layout code and settings id): its lengths
are the tensors' shapes.  A ragged batch calls the ``varlen`` overloads,
which also take cu_seqlens_q/k, max_seqlen_q/k (SymInt) and the kernel
and settings ids as ints of their own (packed 3-D inputs have one
layout).

The ops are defined with ``torch.library.Library`` and implemented for the
CPU and CUDA dispatch keys directly: no Python autograd layer runs per
call (Prism has no backward), which keeps the dispatcher's share of a call
small (python/bench/overhead.py measures it).  The dispatcher boxes every
schema argument into an IValue and back into a Python object for the
implementation, so the schemas are kept short: a string costs more than
an int, and each argument costs about as much as any other.  Each output
combination is an overload of its own (``prefill.lse``, ``prefill.mask``,
``prefill.varlen_lse``, ...), so a call allocates only what it returns.
In eager mode the Kernel methods call the implementations directly,
without the dispatcher.
"""

from __future__ import annotations

from typing import List

import torch

from . import _kernel, _launch, _params
from ._kernel import _registry

# A regular batch: the tensors and one call id.  A ragged batch (varlen):
# the tensors, cu_seqlens, the kernel id, the longest lengths, the
# settings id.
_REGULAR = "int call_id"
_RAGGED = ("Tensor cu_seqlens_q, Tensor cu_seqlens_k, int kernel_id, "
           "SymInt max_seqlen_q, SymInt max_seqlen_k, int params_id")
_QKV = "Tensor q, Tensor k, Tensor v, "
_QKV_MASK = "Tensor q, Tensor k, Tensor v, Tensor counts, Tensor indices, "
_O, _O_LSE = "Tensor", "(Tensor, Tensor)"
_O_MASK, _O_LSE_MASK = "(Tensor, Tensor, Tensor)", \
    "(Tensor, Tensor, Tensor, Tensor)"
_MASK = "(Tensor, Tensor)"

SCHEMAS = {
    name: f"{name}({args}) -> {ret}" for name, args, ret in (
        ("prefill", _QKV + _REGULAR, _O),
        ("prefill.lse", _QKV + _REGULAR, _O_LSE),
        ("prefill.mask", _QKV + _REGULAR, _O_MASK),
        ("prefill.lse_mask", _QKV + _REGULAR, _O_LSE_MASK),
        ("prefill.varlen", _QKV + _RAGGED, _O),
        ("prefill.varlen_lse", _QKV + _RAGGED, _O_LSE),
        ("prefill.varlen_mask", _QKV + _RAGGED, _O_MASK),
        ("prefill.varlen_lse_mask", _QKV + _RAGGED, _O_LSE_MASK),
        ("estimate", "Tensor q, Tensor k, " + _REGULAR, _MASK),
        ("estimate.varlen", "Tensor q, Tensor k, " + _RAGGED, _MASK),
        ("sparse_attention", _QKV_MASK + _REGULAR, _O),
        ("sparse_attention.lse", _QKV_MASK + _REGULAR, _O_LSE),
        ("sparse_attention.varlen", _QKV_MASK + _RAGGED, _O),
        ("sparse_attention.varlen_lse", _QKV_MASK + _RAGGED, _O_LSE),
    )
}

_LIBRARY = torch.library.Library("prism_attn", "DEF")
for _schema in SCHEMAS.values():
    _LIBRARY.define(_schema)


# --- implementations ---------------------------------------------------------------
# A settings id's values are the full tuple of _params.FIELDS (None: the
# kernel's defaults); each launch reads the fields it uses.
_settings = _params.settings
_launch_prefill, _launch_estimate = _launch.prefill, _launch.estimate
_launch_sparse = _launch.sparse


class _Calls(dict):
    """call id -> (kernel, layout, settings values), resolved on first use
    (_kernel.resolve_call_id: ValueError for an id that names no kernel or
    no settings; those are not kept)."""

    def __missing__(self, cid):
        entry = self[cid] = _kernel.resolve_call_id(cid)
        return entry


_calls = _Calls()


def _prefill(q, k, v, cid):
    kern, layout, values = _calls[cid]
    return _launch_prefill(kern, q, k, v, None, None, layout, 0, 0, False,
                           False, values)[0]


def _prefill_lse(q, k, v, cid):
    kern, layout, values = _calls[cid]
    o, lse, _, _ = _launch_prefill(kern, q, k, v, None, None, layout, 0, 0,
                                   True, False, values)
    return o, lse


def _prefill_mask(q, k, v, cid):
    kern, layout, values = _calls[cid]
    o, _, counts, indices = _launch_prefill(kern, q, k, v, None, None, layout,
                                            0, 0, False, True, values)
    return o, counts, indices


def _prefill_lse_mask(q, k, v, cid):
    kern, layout, values = _calls[cid]
    return _launch_prefill(kern, q, k, v, None, None, layout, 0, 0, True,
                           True, values)


def _estimate(q, k, cid):
    kern, layout, values = _calls[cid]
    return _launch_estimate(kern, q, k, None, None, layout, 0, 0, values)


def _sparse(q, k, v, counts, indices, cid):
    kern, layout, values = _calls[cid]
    return _launch_sparse(kern, q, k, v, counts, indices, None, None, layout,
                          0, 0, False, values)[0]


def _sparse_lse(q, k, v, counts, indices, cid):
    kern, layout, values = _calls[cid]
    return _launch_sparse(kern, q, k, v, counts, indices, None, None, layout,
                          0, 0, True, values)


# Ragged batches: packed 3-D inputs (their one layout; "bhsd" is not read).
def _prefill_varlen(q, k, v, cq, ck, kid, mq, mk, pid):
    return _launch_prefill(_registry[kid], q, k, v, cq, ck, "bhsd", mq, mk,
                           False, False, _settings(pid))[0]


def _prefill_varlen_lse(q, k, v, cq, ck, kid, mq, mk, pid):
    o, lse, _, _ = _launch_prefill(_registry[kid], q, k, v, cq, ck, "bhsd",
                                   mq, mk, True, False, _settings(pid))
    return o, lse


def _prefill_varlen_mask(q, k, v, cq, ck, kid, mq, mk, pid):
    o, _, counts, indices = _launch_prefill(_registry[kid], q, k, v, cq, ck,
                                            "bhsd", mq, mk, False, True,
                                            _settings(pid))
    return o, counts, indices


def _prefill_varlen_lse_mask(q, k, v, cq, ck, kid, mq, mk, pid):
    return _launch_prefill(_registry[kid], q, k, v, cq, ck, "bhsd", mq, mk,
                           True, True, _settings(pid))


def _estimate_varlen(q, k, cq, ck, kid, mq, mk, pid):
    return _launch_estimate(_registry[kid], q, k, cq, ck, "bhsd", mq, mk,
                            _settings(pid))


def _sparse_varlen(q, k, v, counts, indices, cq, ck, kid, mq, mk, pid):
    return _launch_sparse(_registry[kid], q, k, v, counts, indices, cq, ck,
                          "bhsd", mq, mk, False, _settings(pid))[0]


def _sparse_varlen_lse(q, k, v, counts, indices, cq, ck, kid, mq, mk, pid):
    return _launch_sparse(_registry[kid], q, k, v, counts, indices, cq, ck,
                          "bhsd", mq, mk, True, _settings(pid))


_IMPLS = {"prefill": _prefill, "prefill.lse": _prefill_lse,
          "prefill.mask": _prefill_mask, "prefill.lse_mask": _prefill_lse_mask,
          "estimate": _estimate, "sparse_attention": _sparse,
          "sparse_attention.lse": _sparse_lse,
          "prefill.varlen": _prefill_varlen,
          "prefill.varlen_lse": _prefill_varlen_lse,
          "prefill.varlen_mask": _prefill_varlen_mask,
          "prefill.varlen_lse_mask": _prefill_varlen_lse_mask,
          "estimate.varlen": _estimate_varlen,
          "sparse_attention.varlen": _sparse_varlen,
          "sparse_attention.varlen_lse": _sparse_varlen_lse}
assert set(_IMPLS) == set(SCHEMAS)
for _name, _fn in _IMPLS.items():
    for _key in ("CPU", "CUDA"):
        _LIBRARY.impl(_name, _fn, _key)


# --- fake implementations ---------------------------------------------------------
# The fakes run while tracing: an unknown call id or settings id fails
# there (the values themselves were checked when the id was made).  A
# regular batch's lengths are its tensors' shapes (symbolic under dynamic
# shapes); a ragged batch's are max_seqlen_q/k.
def _axes(layout):
    """(heads axis, sequence axis) of a 4-D layout."""
    return (1, 2) if layout == "bhsd" else (2, 1)


def _fake_lse(q, layout):
    h, s = _axes(layout)
    return q.new_empty((q.shape[0], q.shape[h], q.shape[s]),
                       dtype=torch.float32)


def _fake_mask(q, k, kern, layout):
    bs = kern.block_size
    h, s = _axes(layout)
    rows = (q.shape[0], q.shape[h], (q.shape[s] + bs - 1) // bs)
    return (q.new_empty(rows, dtype=torch.int32),
            q.new_empty(rows + ((k.shape[s] + bs - 1) // bs,),
                        dtype=torch.int32))


def _fake_varlen_lse(q):
    return q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)


def _fake_varlen_mask(q, cq, kid, mq, mk):
    bs = _registry[kid].block_size
    rows = (cq.shape[0] - 1, q.shape[1], (mq + bs - 1) // bs)
    return (q.new_empty(rows, dtype=torch.int32),
            q.new_empty(rows + ((mk + bs - 1) // bs,), dtype=torch.int32))


def _fake_prefill(q, k, v, cid):
    _calls[cid]
    return torch.empty_like(q)


def _fake_prefill_lse(q, k, v, cid):
    _, layout, _ = _calls[cid]
    return torch.empty_like(q), _fake_lse(q, layout)


def _fake_prefill_mask(q, k, v, cid):
    kern, layout, _ = _calls[cid]
    return (torch.empty_like(q),) + _fake_mask(q, k, kern, layout)


def _fake_prefill_lse_mask(q, k, v, cid):
    kern, layout, _ = _calls[cid]
    return ((torch.empty_like(q), _fake_lse(q, layout))
            + _fake_mask(q, k, kern, layout))


def _fake_estimate(q, k, cid):
    kern, layout, _ = _calls[cid]
    return _fake_mask(q, k, kern, layout)


def _fake_sparse(q, k, v, counts, indices, cid):
    _calls[cid]
    return torch.empty_like(q)


def _fake_sparse_lse(q, k, v, counts, indices, cid):
    _, layout, _ = _calls[cid]
    return torch.empty_like(q), _fake_lse(q, layout)


def _fake_prefill_varlen(q, k, v, cq, ck, kid, mq, mk, pid):
    _settings(pid)
    return torch.empty_like(q)


def _fake_prefill_varlen_lse(q, k, v, cq, ck, kid, mq, mk, pid):
    _settings(pid)
    return torch.empty_like(q), _fake_varlen_lse(q)


def _fake_prefill_varlen_mask(q, k, v, cq, ck, kid, mq, mk, pid):
    _settings(pid)
    return (torch.empty_like(q),) + _fake_varlen_mask(q, cq, kid, mq, mk)


def _fake_prefill_varlen_lse_mask(q, k, v, cq, ck, kid, mq, mk, pid):
    _settings(pid)
    return ((torch.empty_like(q), _fake_varlen_lse(q))
            + _fake_varlen_mask(q, cq, kid, mq, mk))


def _fake_estimate_varlen(q, k, cq, ck, kid, mq, mk, pid):
    _settings(pid)
    return _fake_varlen_mask(q, cq, kid, mq, mk)


def _fake_sparse_varlen(q, k, v, counts, indices, cq, ck, kid, mq, mk,
                        pid):
    _settings(pid)
    return torch.empty_like(q)


def _fake_sparse_varlen_lse(q, k, v, counts, indices, cq, ck, kid, mq, mk,
                            pid):
    _settings(pid)
    return torch.empty_like(q), _fake_varlen_lse(q)


_FAKES = {"prefill": _fake_prefill, "prefill.lse": _fake_prefill_lse,
          "prefill.mask": _fake_prefill_mask,
          "prefill.lse_mask": _fake_prefill_lse_mask,
          "estimate": _fake_estimate, "sparse_attention": _fake_sparse,
          "sparse_attention.lse": _fake_sparse_lse,
          "prefill.varlen": _fake_prefill_varlen,
          "prefill.varlen_lse": _fake_prefill_varlen_lse,
          "prefill.varlen_mask": _fake_prefill_varlen_mask,
          "prefill.varlen_lse_mask": _fake_prefill_varlen_lse_mask,
          "estimate.varlen": _fake_estimate_varlen,
          "sparse_attention.varlen": _fake_sparse_varlen,
          "sparse_attention.varlen_lse": _fake_sparse_varlen_lse}
assert set(_FAKES) == set(SCHEMAS)
for _name, _fn in _FAKES.items():
    torch.library.register_fake("prism_attn::" + _name, _fn, lib=_LIBRARY)


__all__: List[str] = list(SCHEMAS)
