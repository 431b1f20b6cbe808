"""torch.library custom ops: what torch.compile traces instead of ctypes.

Dynamo cannot look inside a ctypes call, so under torch.compile the Kernel
methods call these ops, which the compiled graph keeps as opaque nodes.
Each op has a fake (meta) implementation giving the outputs' shapes, dtypes
and strides from the inputs alone.  The kernel travels as its integer id
and the method parameters as one int, a settings id (``params_id``:
_params.settings_id, 0 for the kernel's defaults; the head counts are the
tensors'), so a compiled graph or a captured CUDA graph runs the settings
it was traced with.

The ops are defined with ``torch.library.Library`` and implemented for the
CPU and CUDA dispatch keys directly: no Python autograd layer runs per
call (Prism has no backward), which keeps the dispatcher's share of a call
small (python/bench/overhead.py measures it).  The dispatcher boxes every
schema argument into an IValue and back into a Python object for the
implementation, so the schema is kept short: nine scalar settings cost
more than the rest of the arguments together, one id costs as much as any
int.  Each output combination is an overload of its own (``prefill.lse``,
``prefill.mask``, ...), so a call allocates only what it returns.  In
eager mode the Kernel methods call the implementations directly, without
the dispatcher.
"""

from __future__ import annotations

from typing import List

import torch

from . import _launch, _params
from ._kernel import _registry

_ARGS = ("Tensor q, Tensor k, {v}Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, "
         "int kernel_id, str layout, SymInt max_seqlen_q, "
         "SymInt max_seqlen_k, int params_id")

SCHEMAS = {
    "prefill": "prefill(" + _ARGS.format(v="Tensor v, ") + ") -> Tensor",
    "prefill.lse": "prefill.lse(" + _ARGS.format(v="Tensor v, ")
                   + ") -> (Tensor, Tensor)",
    "prefill.mask": "prefill.mask(" + _ARGS.format(v="Tensor v, ")
                    + ") -> (Tensor, Tensor, Tensor)",
    "prefill.lse_mask": "prefill.lse_mask(" + _ARGS.format(v="Tensor v, ")
                        + ") -> (Tensor, Tensor, Tensor, Tensor)",
    "estimate": "estimate(" + _ARGS.format(v="") + ") -> (Tensor, Tensor)",
    "sparse_attention": "sparse_attention(Tensor q, Tensor k, Tensor v, "
                        "Tensor counts, Tensor indices, Tensor? cu_seqlens_q, "
                        "Tensor? cu_seqlens_k, int kernel_id, str layout, "
                        "SymInt max_seqlen_q, SymInt max_seqlen_k, "
                        "int params_id) -> Tensor",
    "sparse_attention.lse": "sparse_attention.lse(Tensor q, Tensor k, "
                            "Tensor v, Tensor counts, Tensor indices, "
                            "Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, "
                            "int kernel_id, str layout, SymInt max_seqlen_q, "
                            "SymInt max_seqlen_k, int params_id) "
                            "-> (Tensor, Tensor)",
}

_LIBRARY = torch.library.Library("prism_attn", "DEF")
for _schema in SCHEMAS.values():
    _LIBRARY.define(_schema)


# --- implementations ---------------------------------------------------------------
# A settings id's values are the full tuple of _params.FIELDS (None: the
# kernel's defaults); each launch reads the fields it uses.
_settings = _params.settings


def _prefill(q, k, v, cq, ck, kid, layout, mq, mk, pid):
    return _launch.prefill(_registry[kid], q, k, v, cq, ck, layout, mq, mk,
                           False, False, _settings(pid))[0]


def _prefill_lse(q, k, v, cq, ck, kid, layout, mq, mk, pid):
    o, lse, _, _ = _launch.prefill(_registry[kid], q, k, v, cq, ck, layout,
                                   mq, mk, True, False, _settings(pid))
    return o, lse


def _prefill_mask(q, k, v, cq, ck, kid, layout, mq, mk, pid):
    o, _, counts, indices = _launch.prefill(_registry[kid], q, k, v, cq, ck,
                                            layout, mq, mk, False, True,
                                            _settings(pid))
    return o, counts, indices


def _prefill_lse_mask(q, k, v, cq, ck, kid, layout, mq, mk, pid):
    return _launch.prefill(_registry[kid], q, k, v, cq, ck, layout, mq, mk,
                           True, True, _settings(pid))


def _estimate(q, k, cq, ck, kid, layout, mq, mk, pid):
    return _launch.estimate(_registry[kid], q, k, cq, ck, layout, mq, mk,
                            _settings(pid))


def _sparse(q, k, v, counts, indices, cq, ck, kid, layout, mq, mk, pid):
    return _launch.sparse(_registry[kid], q, k, v, counts, indices, cq, ck,
                          layout, mq, mk, False, _settings(pid))[0]


def _sparse_lse(q, k, v, counts, indices, cq, ck, kid, layout, mq, mk, pid):
    return _launch.sparse(_registry[kid], q, k, v, counts, indices, cq, ck,
                          layout, mq, mk, True, _settings(pid))


_IMPLS = {"prefill": _prefill, "prefill.lse": _prefill_lse,
          "prefill.mask": _prefill_mask, "prefill.lse_mask": _prefill_lse_mask,
          "estimate": _estimate, "sparse_attention": _sparse,
          "sparse_attention.lse": _sparse_lse}
for _name, _fn in _IMPLS.items():
    for _key in ("CPU", "CUDA"):
        _LIBRARY.impl(_name, _fn, _key)


# --- fake implementations ---------------------------------------------------------
def _heads(q, cu_q, layout) -> int:
    return q.shape[1] if cu_q is not None or layout == "bhsd" else q.shape[2]


def _fake_lse(q, cu_q, layout):
    h = _heads(q, cu_q, layout)
    if cu_q is not None:
        return q.new_empty((h, q.shape[0]), dtype=torch.float32)
    s = 2 if layout == "bhsd" else 1
    return q.new_empty((q.shape[0], h, q.shape[s]), dtype=torch.float32)


def _fake_mask(q, k, cu_q, kid, layout, mq, mk):
    bs = _registry[kid].block_size
    if cu_q is not None:
        b, sq, sk = cu_q.shape[0] - 1, mq, mk
    else:
        s = 2 if layout == "bhsd" else 1
        b, sq, sk = q.shape[0], q.shape[s], k.shape[s]
    rows = (b, _heads(q, cu_q, layout), (sq + bs - 1) // bs)
    return (q.new_empty(rows, dtype=torch.int32),
            q.new_empty(rows + ((sk + bs - 1) // bs,), dtype=torch.int32))


# The fakes run while tracing: an unknown settings id fails there (the
# values themselves were checked when the id was made).
def _fake_prefill(q, k, v, cq, ck, kid, layout, mq, mk, pid):
    _settings(pid)
    return torch.empty_like(q)


def _fake_prefill_lse(q, k, v, cq, ck, kid, layout, mq, mk, pid):
    _settings(pid)
    return torch.empty_like(q), _fake_lse(q, cq, layout)


def _fake_prefill_mask(q, k, v, cq, ck, kid, layout, mq, mk, pid):
    _settings(pid)
    return (torch.empty_like(q),) + _fake_mask(q, k, cq, kid, layout, mq, mk)


def _fake_prefill_lse_mask(q, k, v, cq, ck, kid, layout, mq, mk, pid):
    _settings(pid)
    return ((torch.empty_like(q), _fake_lse(q, cq, layout))
            + _fake_mask(q, k, cq, kid, layout, mq, mk))


def _fake_estimate(q, k, cq, ck, kid, layout, mq, mk, pid):
    _settings(pid)
    return _fake_mask(q, k, cq, kid, layout, mq, mk)


def _fake_sparse(q, k, v, counts, indices, cq, ck, kid, layout, mq, mk,
                 pid):
    _settings(pid)
    return torch.empty_like(q)


def _fake_sparse_lse(q, k, v, counts, indices, cq, ck, kid, layout, mq, mk,
                     pid):
    _settings(pid)
    return torch.empty_like(q), _fake_lse(q, cq, layout)


_FAKES = {"prefill": _fake_prefill, "prefill.lse": _fake_prefill_lse,
          "prefill.mask": _fake_prefill_mask,
          "prefill.lse_mask": _fake_prefill_lse_mask,
          "estimate": _fake_estimate, "sparse_attention": _fake_sparse,
          "sparse_attention.lse": _fake_sparse_lse}
for _name, _fn in _FAKES.items():
    torch.library.register_fake("prism_attn::" + _name, _fn, lib=_LIBRARY)


__all__: List[str] = list(SCHEMAS)
