"""Kernels: a config bound to a device, and the launches over torch tensors.

A Kernel owns one libprism context per device kind and creates plans on
demand, one per (dtype, length bucket): the C plan fixes the dtype, and a
GPU plan picks its tuned kernels by the bucket of its longest key length
(powers of two, as the tuning database's buckets).  CPU plans take the
same buckets: the library bounds a plan's limits (prism.h's PRISM_MAX_*,
mirrored in _lib.py), so no one plan serves every length.  Plans are
created with caller_workspace, so every launch takes its workspace from
torch's allocator: on the current stream, visible to the allocator's
accounting, and inside a CUDA graph's private pool during capture.

The launch functions (_launch.py) are the custom ops' implementations and
the eager path alike; they validate what the C library cannot see (dtypes,
devices, layouts, shapes against the config) and raise ``TypeError`` /
``ValueError``, while the library's own refusals become ``PrismError``.

Every call may change the method's run-time parameters (_params.py) and
runs the head counts of its tensors.  A config's per-layer settings
(``layers:``) resolve to a Kernel per layer (``Kernel.for_layer``); a
dense layer's Kernel runs attention over every block-causal block.
"""

from __future__ import annotations

import itertools
import logging
import numbers
import sys
import threading
from ctypes import byref, c_bool, c_void_p
from typing import Any, Mapping, Optional, Tuple

import torch
from torch.fx.experimental.symbolic_shapes import guard_scalar

from . import _config, _lib, _params
from ._lib import PlanLimits, PrismError
from ._mask import BlockMask
from . import _launch, _paged
from ._launch import dtype_code as _dtype_code

_log = logging.getLogger("prism_attn")

_MIN_BUCKET = 4096          # the tuning database's smallest bucket

# --- contexts (one per device) ----------------------------------------------------
_contexts: dict = {}
_contexts_lock = threading.Lock()


@_lib.LOG_FN
def _log_cb(user, level, message):  # pragma: no cover - library warnings
    text = message.decode(errors="replace") if message else ""
    _log.log({0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING}
             .get(level, logging.ERROR), "%s", text)


def _context(device: torch.device) -> int:
    key = (device.type, device.index)
    ctx = _contexts.get(key)
    if ctx is not None:
        return ctx
    with _contexts_lock:
        if key not in _contexts:
            h = _lib.lib()
            opts = _lib.ContextOptions()
            h.prism_context_options_init(opts)
            opts.log = _log_cb
            opts.log_level = _lib.LOG_WARN
            if device.type == "cpu":
                opts.device = _lib.DEVICE_CPU
            else:
                opts.device = _lib.DEVICE_CUDA
                opts.device_ordinal = device.index or 0
            out = c_void_p()
            st = h.prism_context_create(opts, byref(out))
            if st != _lib.OK:
                msg = h.prism_context_last_error(None)
                raise PrismError(st, f"cannot create a prism context on "
                                     f"{device}: "
                                     f"{msg.decode(errors='replace')}")
            _contexts[key] = out.value
    return _contexts[key]


def _normalize_device(device: Any) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"Prism runs on CUDA and CPU devices, not {dev}")
    if dev.type == "cuda":
        # an ordinal torch cannot see would only fail at the first call
        n = torch.cuda.device_count()
        if n == 0:
            raise ValueError(f"no CUDA device for a kernel on {dev}: torch "
                             "sees none (CUDA_VISIBLE_DEVICES, the driver, "
                             "or a CPU-only torch); use device='cpu'")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= n:
            raise ValueError(f"no CUDA device {dev}: this process sees {n} "
                             f"CUDA device(s), cuda:0..cuda:{n - 1} "
                             "(CUDA_VISIBLE_DEVICES renumbers them)")
    return dev


# --- kernels ------------------------------------------------------------------------
_kernels: dict = {}
_registry: dict = {}
_kernels_lock = threading.Lock()
_ids = itertools.count(1)


def kernel(config: _config.ConfigLike, device: Any = None, *,
           overrides: Optional[Mapping[str, Any]] = None) -> "Kernel":
    """The Kernel for a config on a device, created once and cached.

    Args:
        config: a YAML file path, a dict in the YAML schema
            (configs/README.md), or a Hugging Face model config (head_dim,
            heads, RoPE base and layout are derived from it).
        device: where the kernel runs (``"cuda"``, ``"cuda:1"``, ``"cpu"``;
            default: CUDA when available, else CPU).
        overrides: fields merged over the config, e.g.
            ``{"prism": {"thresholds": {"high": 0.9, "low": 0.9}}}``.

    Kernels are cached per (resolved config, device): the same arguments
    give the same object, whose plans (compiled kernels) are reused.  A
    config with per-layer settings (``layers:``) gives the Kernel of its
    top-level settings; ``kernel.for_layer(i)`` gives layer i's.
    """
    cfg = _config.load(config, overrides=overrides)
    return _cached(cfg, _normalize_device(device), False)


def _cached(cfg: _lib.Config, dev: torch.device, dense: bool) -> "Kernel":
    key = (_lib.config_to_yaml(cfg), dev, dense)
    k = _kernels.get(key)
    if k is None:
        with _kernels_lock:
            k = _kernels.get(key)
            if k is None:
                k = (DenseKernel if dense else Kernel)(cfg, dev)
                _kernels[key] = k
    return k


def get_kernel(kernel_id: int) -> "Kernel":
    """The kernel of an id (the custom ops carry kernels by id)."""
    return _registry[kernel_id]


# --- call ids: the regular-batch ops' one int ------------------------------
# bits 0-1 the layout's code (_launch.layout_code), 2-31 the kernel id,
# 32-62 the settings id: an int64 of the op's schema.
_KERNEL_SHIFT, _PARAMS_SHIFT = 2, 32
_KERNEL_LIMIT, _PARAMS_LIMIT = 1 << 30, 1 << 31


def call_id(kernel_id: int, layout: str, params_id: int) -> int:
    """The ``call_id`` of the regular-batch custom ops: a kernel id, a
    4-D layout (``ValueError`` for others) and a settings id in one int."""
    code = _launch.layout_code(layout)
    if not 0 <= kernel_id < _KERNEL_LIMIT:
        raise ValueError(f"kernel_id {kernel_id!r} is outside "
                         f"0..{_KERNEL_LIMIT - 1}: a call id cannot hold it")
    if not 0 <= params_id < _PARAMS_LIMIT:
        raise ValueError(f"params_id {params_id!r} is not a settings id: "
                         "pass 0 (the kernel's defaults) or one from "
                         "Kernel.params_id()")
    return (params_id << _PARAMS_SHIFT | kernel_id << _KERNEL_SHIFT
            | code)


def split_call_id(cid: int) -> Tuple[int, str, int]:
    """(kernel_id, layout, params_id) of a call id (ValueError for an int
    that no call id is)."""
    if not 0 <= cid < 1 << 63:
        raise ValueError(f"call_id {cid!r} is not a call id: make one "
                         "with Kernel.call_id()")
    code = cid & ((1 << _KERNEL_SHIFT) - 1)
    if code >= len(_launch._LAYOUTS):
        raise ValueError(f"call_id {cid!r} has no layout (code {code}): "
                         "make one with Kernel.call_id()")
    return ((cid >> _KERNEL_SHIFT) & (_KERNEL_LIMIT - 1),
            _launch._LAYOUTS[code], cid >> _PARAMS_SHIFT)


def resolve_call_id(cid: int):
    """(kernel, layout, settings values or None) of a call id; ValueError
    for an id that names no kernel or no settings."""
    kid, layout, pid = split_call_id(cid)
    kern = _registry.get(kid)
    if kern is None:
        raise ValueError(f"call_id {cid!r} names kernel_id {kid}, which is "
                         "no kernel's id (Kernel.id)")
    return kern, layout, _params.settings(pid)


def _bucket(n: int) -> int:
    """A plan's max_seqlen for a key length n: the power of two at or above
    it (at least _MIN_BUCKET, at most the library's PRISM_MAX_SEQLEN)."""
    return min(_lib.MAX_SEQLEN,
               max(_MIN_BUCKET, 1 << max(0, n - 1).bit_length()))


def _max_batch(cfg: _lib.Config, seqlen: int) -> int:
    """A plan's max_batch for max_seqlen `seqlen`.

    The plans take caller workspaces, so max_batch sizes nothing, but the
    library refuses limits whose workspace would be above
    PRISM_MAX_WORKSPACE_BYTES.  The workspace grows with the batch by the
    regions every backend shares (runtime/workspace.c: pooled Q and K, the
    scales, counts and indices), plus backend regions that are smaller;
    keeping the shared ones to a quarter of the limit leaves the rest
    room.  A batch beyond this would need a workspace of over 100 GiB."""
    n = -(-seqlen // cfg.block_size)
    hq, hkv, d = cfg.q_heads, cfg.kv_heads, cfg.head_dim
    per_seq = 4 * (hq * n * (d + n + 3) + hkv * n * d)
    return max(1, min(_lib.MAX_BATCH,
                      _lib.MAX_WORKSPACE_BYTES // (4 * per_seq)))


class Kernel:
    """A validated Prism config bound to one device.

    Create kernels with :func:`prism_attn.kernel` (cached).  The config's
    dtype is not binding: each call runs the plan for its inputs' dtype,
    and the head counts are the inputs' (a tensor-parallel shard with
    fewer heads than the config runs on the same kernels).

    Attributes:
        config: the resolved config, a dict in the YAML schema.
        device: the torch device the kernel runs on.
        head_dim, q_heads, kv_heads, block_size: the config's shape (the
            head counts are what the config says; calls take any).
        params: the method parameters a call runs when it gives none
            (the config's; ``softmax_scale`` 0.0 means 1/sqrt(head_dim)).
        dense: True for a dense layer's kernel (:meth:`for_layer`).
        id: the integer the ragged-batch custom ops
            (``torch.ops.prism_attn.*.varlen*``) take as ``kernel_id``;
            :meth:`params_id` gives their ``params_id``, and
            :meth:`call_id` the one int of the regular-batch ops.
    """

    dense = False

    def __init__(self, cfg: _lib.Config, device: torch.device):
        self._cfg = cfg
        self.device = device
        self.config = _config.to_dict(cfg)
        self.head_dim = cfg.head_dim
        self.q_heads = cfg.q_heads
        self.kv_heads = cfg.kv_heads
        self.block_size = cfg.block_size
        self._defaults = _params.defaults(cfg)
        self._plans: dict = {}
        self._ws_sizes: dict = {}
        self._geometry: dict = {}  # _launch.py's validated signatures
        self._layers: dict = {}
        self._lock = threading.Lock()
        self._ctx = None
        self._cuda = device.type == "cuda"
        self._align = 256 if self._cuda else 64
        self.id = next(_ids)
        _registry[self.id] = self

    def __repr__(self) -> str:
        dense = ", dense" if self.dense else ""
        return (f"{type(self).__name__}({self.config['name']!r}, "
                f"device={self.device}, D={self.head_dim}, Hq={self.q_heads}, "
                f"Hkv={self.kv_heads}, block_size={self.block_size}{dense})")

    @property
    def params(self) -> dict:
        """The default method parameters (a new dict each time)."""
        return _params.describe(self._defaults)

    def params_id(self, params: Optional[Mapping[str, Any]] = None,
                  **settings) -> int:
        """The custom ops' ``params_id`` for these method parameters (as
        :meth:`prefill` takes them) over the kernel's defaults: 0 when
        none are given (the defaults), else the settings id of the
        values, checked once (``ValueError`` out of range) and the same
        for equal values for the life of the process."""
        if not params and not settings:
            return 0
        return _params.settings_id(_params.resolve(
            self._defaults, settings, params, _params.ALL, "params_id"))

    def call_id(self, layout: str = "bhsd",
                params: Optional[Mapping[str, Any]] = None,
                **settings) -> int:
        """The regular-batch custom ops' ``call_id``: this kernel, the
        layout of q, k and v (``"bhsd"`` or ``"bshd"``) and the settings
        id of these method parameters (:meth:`params_id`) in one int."""
        return call_id(self.id, layout, self.params_id(params, **settings))

    # --- per-layer settings ---------------------------------------------------------
    def for_layer(self, layer: int) -> "Kernel":
        """The Kernel of decoder layer ``layer`` (0-based) under the
        config's ``layers:`` section (configs/README.md), resolved by the
        library (prism_config_for_layer): the layer's method parameters as
        its defaults, or, for a layer of ``layers.dense``, a kernel whose
        calls attend to every block-causal block (``.dense`` is True).
        Layers the section does not name get the top-level settings;
        layers with equal settings share one Kernel (and its plans).
        Cached per layer."""
        if type(layer) is int:
            k = self._layers.get(layer)
            if k is not None:
                return k
        elif isinstance(layer, bool) or not isinstance(layer,
                                                       numbers.Integral):
            raise TypeError(f"layer must be an int, not {layer!r}")
        if not 0 <= layer <= _lib.MAX_LAYER:
            raise ValueError(f"layer {layer} is outside 0..{_lib.MAX_LAYER} "
                             "(decoder layers are numbered from 0)")
        out, dense = _lib.Config(), c_bool()
        st = _lib.lib().prism_config_for_layer(self._cfg, int(layer), out,
                                                byref(dense))
        if st != _lib.OK:  # pragma: no cover - the config was validated
            raise PrismError(st, f"resolving layer {layer} of the config "
                                 f"'{self.config['name']}'")
        k = _cached(out, self.device, bool(dense.value))
        self._layers[layer] = k
        return k

    # --- plans ----------------------------------------------------------------------
    def _plan(self, dtype_code: int, seqlen_k: int) -> int:
        bucket = _bucket(seqlen_k)
        key = (dtype_code, bucket)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        with self._lock:
            if key not in self._plans:
                self._plans[key] = self._create_plan(dtype_code, bucket)
        return self._plans[key]

    def _create_plan(self, dtype_code: int, bucket: int) -> int:
        h = _lib.lib()
        if self._ctx is None:
            self._ctx = _context(self.device)
        cfg = _lib.Config()
        _config.ctypes_copy(cfg, self._cfg)
        cfg.dtype = dtype_code
        cfg.n_dense = cfg.n_layer_overrides = 0  # a plan is one layer's
        limits = PlanLimits(_max_batch(cfg, bucket), bucket, bucket, True)
        out = c_void_p()
        st = h.prism_plan_create(self._ctx, cfg, limits, byref(out))
        if st != _lib.OK:
            msg = h.prism_context_last_error(self._ctx).decode(errors="replace")
            raise PrismError(st, f"creating the plan for keys up to {bucket} "
                                 f"(batches up to {limits.max_batch}): {msg}")
        return out.value

    def warmup(self, dtype: torch.dtype = torch.bfloat16,
               max_seqlen: int = _MIN_BUCKET) -> None:
        """Creates the plan for (dtype, max_seqlen) now: compiles or loads
        the kernels, which otherwise happens on the first call (do this
        before CUDA-graph capture)."""
        self._plan(_dtype_code(dtype), max_seqlen)

    def close(self) -> None:
        """Destroys the kernel's plans (the next call creates them again)."""
        h = _lib.lib()
        with self._lock:
            self._geometry.clear()
            self._ws_sizes.clear()
            plans, self._plans = self._plans, {}
            for plan in plans.values():
                h.prism_plan_destroy(plan)

    def __del__(self):
        if not sys.is_finalizing() and getattr(self, "_plans", None):
            try:
                self.close()
            except Exception:  # pragma: no cover
                pass

    # --- public calls ---------------------------------------------------------------
    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                layout: str = "bhsd",
                cu_seqlens_q: Optional[torch.Tensor] = None,
                cu_seqlens_k: Optional[torch.Tensor] = None,
                max_seqlen_q: Optional[int] = None,
                max_seqlen_k: Optional[int] = None,
                return_lse: bool = False, return_mask: bool = False,
                params: Optional[Mapping[str, Any]] = None,
                page_table: Optional[torch.Tensor] = None,
                seqlens_k: Any = None, kv_layout: str = "nhd",
                pooled_keys: Optional[torch.Tensor] = None, **settings):
        """Prism attention: estimation, then block-sparse attention.

        Args:
            q: queries, [B, Hq, Sq, D] (``layout="bhsd"``), [B, Sq, Hq, D]
                (``"bshd"``) or, with cu_seqlens, packed [total_q, Hq, D].
            k, v: keys and values, the same layout with Hkv heads and Sk
                positions (Sk >= Sq: the queries are the last Sq positions).
                Hkv divides Hq; neither need be the config's head count.
            layout: ``"bhsd"`` or ``"bshd"`` for 4-D inputs.
            cu_seqlens_q, cu_seqlens_k: int32 [B + 1] cumulative lengths of a
                ragged batch (FlashAttention's varlen layout), on the
                inputs' device; both or neither.
            max_seqlen_q, max_seqlen_k: the longest sequence of a ragged
                batch; computed from cu_seqlens (a device sync) when None.
            return_lse: also return the fp32 log-sum-exp, [B, Hq, Sq] or
                (ragged) [Hq, total_q].
            return_mask: also return the selection as a :class:`BlockMask`.
            params: a mapping of method parameters (the names below).
            **settings: method parameters for this call, in place of the
                kernel's defaults (:attr:`params`): ``threshold`` (both
                bands) or ``threshold_high`` / ``threshold_low`` (top-p
                mass, (0, 1]), ``calibrate``, ``temp`` or ``temp_high`` /
                ``temp_low`` (band temperatures without calibration),
                ``force_sink``, ``force_recent``, ``recent_blocks``,
                ``softmax_scale``
                (attention's logit scale; 0 means 1/sqrt(D)).
            page_table: paged K/V (docs/python.md, "Paged K/V and chunked
                prefill"): k and v are page pools of a KV cache and this
                int32 [B, max_pages] table lists each sequence's pages.
            seqlens_k: with page_table, the key lengths: an int for a
                regular batch, int32 [B] (or cu_seqlens_k) for a ragged one.
            kv_layout: with page_table, the pools' layout: ``"nhd"``
                [num_pages, page_size, Hkv, D] or ``"hnd"``
                [num_pages, Hkv, page_size, D].
            pooled_keys: with page_table, a pooled-key cache
                (:meth:`pooled_keys_buffer`) that a chunked prefill reuses.

        Returns:
            o (same shape and layout as q), followed by lse and/or the mask
            when asked for: ``o``, ``(o, lse)``, ``(o, mask)`` or
            ``(o, lse, mask)``.
        """
        values = None
        if params or settings:
            values = _params.resolve(self._defaults, settings, params,
                                     _params.ALL, "prefill")
        if (page_table is not None or seqlens_k is not None
                or pooled_keys is not None):
            return self._paged_prefill(
                q, k, v, page_table, cu_seqlens_q, cu_seqlens_k, seqlens_k,
                layout, kv_layout, max_seqlen_q, max_seqlen_k, pooled_keys,
                return_lse, return_mask, values)
        mq, mk = _max_lengths(cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                              max_seqlen_k)
        if torch.compiler.is_compiling():
            o, lse, counts, indices = _op_prefill(
                q, k, v, cu_seqlens_q, cu_seqlens_k, self.id, layout, mq, mk,
                return_lse, return_mask, values)
        else:
            o, lse, counts, indices = _launch.prefill(
                self, q, k, v, cu_seqlens_q, cu_seqlens_k, layout, mq, mk,
                return_lse, return_mask, values)
        if not return_lse and not return_mask:
            return o
        mask = None
        if return_mask:
            sq, sk = _seqlens(q, k, layout, cu_seqlens_q, mq, mk)
            mask = BlockMask(counts, indices, self.block_size, sq, sk,
                             cu_seqlens_q, cu_seqlens_k)
        return _outputs(o, lse if return_lse else None, mask)

    def estimate(self, q: torch.Tensor, k: torch.Tensor, *,
                 layout: str = "bhsd",
                 cu_seqlens_q: Optional[torch.Tensor] = None,
                 cu_seqlens_k: Optional[torch.Tensor] = None,
                 max_seqlen_q: Optional[int] = None,
                 max_seqlen_k: Optional[int] = None,
                 params: Optional[Mapping[str, Any]] = None,
                 page_table: Optional[torch.Tensor] = None,
                 seqlens_k: Any = None, kv_layout: str = "nhd",
                 pooled_keys: Optional[torch.Tensor] = None,
                 **settings) -> BlockMask:
        """Prism estimation only: the selected key blocks as a BlockMask.

        Arguments as in :meth:`prefill` (without v; k is a page pool with
        page_table); the method parameters are the selection's (all but
        ``softmax_scale``).
        """
        values = None
        if params or settings:
            values = _params.resolve(self._defaults, settings, params,
                                     _params.SELECTION, "estimate")
        if (page_table is not None or seqlens_k is not None
                or pooled_keys is not None):
            return self._paged_estimate(
                q, k, page_table, cu_seqlens_q, cu_seqlens_k, seqlens_k,
                layout, kv_layout, max_seqlen_q, max_seqlen_k, pooled_keys,
                values)
        mq, mk = _max_lengths(cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                              max_seqlen_k)
        if torch.compiler.is_compiling():
            ops = torch.ops.prism_attn.estimate
            if cu_seqlens_q is None:
                counts, indices = ops.default(
                    q, k, _graph_call_id(self.id, layout, values))
            else:
                counts, indices = ops.varlen(
                    q, k, cu_seqlens_q, cu_seqlens_k, self.id, mq, mk,
                    _graph_settings_id(values))
        else:
            counts, indices = _launch.estimate(
                self, q, k, cu_seqlens_q, cu_seqlens_k, layout, mq, mk, values)
        sq, sk = _seqlens(q, k, layout, cu_seqlens_q, mq, mk)
        return BlockMask(counts, indices, self.block_size, sq, sk,
                         cu_seqlens_q, cu_seqlens_k)

    def sparse_attention(self, q: torch.Tensor, k: torch.Tensor,
                         v: torch.Tensor, mask: BlockMask, *,
                         layout: str = "bhsd", return_lse: bool = False,
                         params: Optional[Mapping[str, Any]] = None,
                         page_table: Optional[torch.Tensor] = None,
                         kv_layout: str = "nhd", **settings):
        """Block-sparse attention over any block mask (causal inside it).

        The mask is one from :meth:`estimate` or :meth:`prefill`, or one
        built with :meth:`BlockMask.from_block_dense`; a ragged mask
        carries its cu_seqlens.  The one method parameter is
        ``softmax_scale``.  With page_table, k and v are page pools (as in
        :meth:`prefill`) and the key lengths are the mask's.  Returns o,
        or (o, lse) with return_lse.
        """
        values = None
        if params or settings:
            values = _params.resolve(self._defaults, settings, params,
                                     _params.ATTENTION, "sparse_attention")
        cq, ck = mask.cu_seqlens_q, mask.cu_seqlens_k
        if page_table is not None:
            o, lse = _paged_sparse(self, q, k, v, page_table, mask.counts,
                                   mask.indices, cq, ck,
                                   None if cq is not None else mask.seqlen_k,
                                   layout, kv_layout, mask.seqlen_q,
                                   mask.seqlen_k, return_lse, values)
            return (o, lse) if return_lse else o
        mq = mask.seqlen_q if cq is not None else 0
        mk = mask.seqlen_k if cq is not None else 0
        if torch.compiler.is_compiling():
            ops = torch.ops.prism_attn.sparse_attention
            if cq is None and ck is None:
                args = (q, k, v, mask.counts, mask.indices,
                        _graph_call_id(self.id, layout, values))
                return ops.lse(*args) if return_lse else ops.default(*args)
            if cq is None or ck is None:
                raise ValueError("pass both cu_seqlens_q and cu_seqlens_k, "
                                 "or neither")
            args = (q, k, v, mask.counts, mask.indices, cq, ck, self.id, mq,
                    mk, _graph_settings_id(values))
            if return_lse:
                return ops.varlen_lse(*args)
            return ops.varlen(*args)
        o, lse = _launch.sparse(self, q, k, v, mask.counts, mask.indices, cq,
                                ck, layout, mq, mk, return_lse, values)
        return (o, lse) if return_lse else o

    # --- paged K/V ------------------------------------------------------------------
    def pooled_keys_buffer(self, num_pages: int, page_size: int,
                           kv_heads: Optional[int] = None) -> torch.Tensor:
        """A zeroed pooled-key cache for paged calls (``pooled_keys=``):
        float32 on the kernel's device, prism_paged_pooled_bytes() of the
        config for pools of num_pages pages of page_size tokens and
        kv_heads KV heads (default: the config's).  One per layer; zero a
        page's entries (:meth:`pooled_keys_page`) when the page is given
        other keys."""
        hkv = self.kv_heads if kv_heads is None else kv_heads
        for name, n in (("num_pages", num_pages), ("page_size", page_size),
                        ("kv_heads", hkv)):
            _paged._int(name, n)
        size = _paged.pooled_bytes(self, num_pages, page_size, hkv)
        if size == 0:
            raise ValueError(
                f"no pooled-key cache for {num_pages} pages of {page_size} "
                f"tokens and {hkv} KV heads: the counts must be positive, "
                f"page_size a multiple of block_size {self.block_size}, and "
                f"the size within the library's limit")
        return torch.zeros(size // 4, dtype=torch.float32,
                           device=self.device)

    def pooled_keys_page(self, buf: torch.Tensor, page: int, page_size: int,
                         kv_heads: Optional[int] = None) -> torch.Tensor:
        """The view of page ``page``'s entries in a pooled-key cache made
        by :meth:`pooled_keys_buffer` with these page_size and kv_heads:
        ``.zero_()`` it when the page is given other keys."""
        hkv = self.kv_heads if kv_heads is None else kv_heads
        n = (page_size // self.block_size) * hkv * (self.head_dim + 4)
        return buf[page * n:(page + 1) * n]

    def _paged_prefill(self, q, k, v, table, cu_q, cu_k, seqlens_k, layout,
                       kv_layout, mq, mk, pooled, want_lse, want_mask,
                       values):
        if table is None:
            raise ValueError("seqlens_k and pooled_keys are for paged K/V: "
                             "pass page_table too")
        seqlen_k, cu_k = _paged.key_lengths(cu_q, seqlens_k, cu_k)
        mq, mk = _max_lengths(cu_q, cu_k, mq, mk)
        o, lse, counts, indices = _paged_launch_prefill(
            self, q, k, v, table, cu_q, cu_k, seqlen_k, layout, kv_layout,
            mq, mk, pooled, want_lse, want_mask, values)
        mask = None
        if want_mask:
            sq, sk = _paged_seqlens(q, layout, cu_q, mq, mk, seqlen_k)
            mask = BlockMask(counts, indices, self.block_size, sq, sk, cu_q,
                             cu_k)
        return _outputs(o, lse if want_lse else None, mask)

    def _paged_estimate(self, q, k, table, cu_q, cu_k, seqlens_k, layout,
                        kv_layout, mq, mk, pooled, values) -> BlockMask:
        if table is None:
            raise ValueError("seqlens_k and pooled_keys are for paged K/V: "
                             "pass page_table too")
        seqlen_k, cu_k = _paged.key_lengths(cu_q, seqlens_k, cu_k)
        mq, mk = _max_lengths(cu_q, cu_k, mq, mk)
        counts, indices = _paged_launch_estimate(
            self, q, k, table, cu_q, cu_k, seqlen_k, layout, kv_layout, mq,
            mk, pooled, values)
        sq, sk = _paged_seqlens(q, layout, cu_q, mq, mk, seqlen_k)
        return BlockMask(counts, indices, self.block_size, sq, sk, cu_q, cu_k)


# Paged calls have no custom op: under torch.compile they run eagerly (a
# graph break) rather than being traced into the C call.
_paged_launch_prefill = torch.compiler.disable(_paged.prefill)
_paged_launch_estimate = torch.compiler.disable(_paged.estimate)
_paged_sparse = torch.compiler.disable(_paged.sparse)


def _paged_seqlens(q, layout, cu_q, mq, mk, seqlen_k) -> Tuple[int, int]:
    if cu_q is not None:
        return mq, mk
    return q.shape[2 if layout == "bhsd" else 1], seqlen_k


class DenseKernel(Kernel):
    """The kernel of a dense layer (``layers.dense``, :meth:`Kernel.
    for_layer`): no estimation; :meth:`prefill` attends to every
    block-causal block, which is exact causal attention whenever the
    cached prefix (Sk - Sq) is a whole number of blocks, and
    :meth:`estimate` returns that full mask.  The selection's parameters
    are accepted and have no effect; ``softmax_scale`` applies."""

    dense = True

    def for_layer(self, layer: int) -> "Kernel":
        return self

    def estimate(self, q, k, *, layout="bhsd", cu_seqlens_q=None,
                 cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
                 params=None, page_table=None, seqlens_k=None,
                 kv_layout="nhd", pooled_keys=None, **settings) -> BlockMask:
        if params or settings:
            _params.resolve(self._defaults, settings, params,
                            _params.SELECTION, "estimate")
        paged = (page_table is not None or seqlens_k is not None
                 or pooled_keys is not None)
        seqlen_k = None
        if paged:
            if page_table is None:
                raise ValueError("seqlens_k and pooled_keys are for paged "
                                 "K/V: pass page_table too")
            seqlen_k, cu_seqlens_k = _paged.key_lengths(
                cu_seqlens_q, seqlens_k, cu_seqlens_k)
        mq, mk = _max_lengths(cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                              max_seqlen_k)
        if paged:
            sq, sk = _paged_seqlens(q, layout, cu_seqlens_q, mq, mk, seqlen_k)
        else:
            sq, sk = _seqlens(q, k, layout, cu_seqlens_q, mq, mk)
        if cu_seqlens_q is not None:
            b, heads = cu_seqlens_q.shape[0] - 1, q.shape[1]
        else:
            b, heads = q.shape[0], q.shape[1 if layout == "bhsd" else 2]
        return BlockMask.block_causal(b, heads, self.block_size, sq, sk,
                                      cu_seqlens_q, cu_seqlens_k,
                                      device=q.device)

    def prefill(self, q, k, v, *, layout="bhsd", cu_seqlens_q=None,
                cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
                return_lse=False, return_mask=False, params=None,
                page_table=None, seqlens_k=None, kv_layout="nhd",
                pooled_keys=None, **settings):
        scale = {}
        if params or settings:
            values = _params.resolve(self._defaults, settings, params,
                                     _params.ALL, "prefill")
            scale = {"softmax_scale": values[_params.ATTENTION_INDEX]}
        mask = self.estimate(q, k, layout=layout, cu_seqlens_q=cu_seqlens_q,
                             cu_seqlens_k=cu_seqlens_k,
                             max_seqlen_q=max_seqlen_q,
                             max_seqlen_k=max_seqlen_k, page_table=page_table,
                             seqlens_k=seqlens_k, pooled_keys=pooled_keys)
        if page_table is not None:
            scale.update(page_table=page_table, kv_layout=kv_layout)
        out = self.sparse_attention(q, k, v, mask, layout=layout,
                                    return_lse=return_lse, **scale)
        if not return_mask:
            return out
        return (out + (mask,)) if return_lse else (out, mask)


@torch.compiler.assume_constant_result
def _constant_settings_id(values) -> int:
    """_params.settings_id, run while tracing: its result is a constant
    of the graph."""
    return _params.settings_id(values)


def _graph_settings_id(values) -> int:
    """Under torch.compile: the settings id of a call's values (None: 0,
    the kernel's defaults), an int constant of the graph.  A setting that
    is an input of the compiled function may be symbolic; guard_scalar
    specializes it (a guard on its value, so another value recompiles, as
    a float argument of an op does)."""
    if values is None:
        return 0
    return _constant_settings_id(tuple(guard_scalar(x) for x in values))


def _graph_call_id(kernel_id, layout, values) -> int:
    """Under torch.compile: the call id of a regular-batch call, an int
    constant of the graph (the settings id as _graph_settings_id's; the
    kernel id and layout are constants of the trace)."""
    return call_id(kernel_id, layout, _graph_settings_id(values))


def _op_prefill(q, k, v, cu_q, cu_k, kernel_id, layout, mq, mk, want_lse,
                want_mask, values):
    """The prefill op of the outputs asked for, as (o, lse, counts,
    indices) with None for the others: the short overloads (one call id)
    for a regular batch, the varlen ones for a ragged batch."""
    ops = torch.ops.prism_attn.prefill
    if cu_q is None:
        args = (q, k, v, _graph_call_id(kernel_id, layout, values))
        plain, lse_only, mask_only, both = (ops.default, ops.lse, ops.mask,
                                            ops.lse_mask)
    else:
        args = (q, k, v, cu_q, cu_k, kernel_id, mq, mk,
                _graph_settings_id(values))
        plain, lse_only, mask_only, both = (ops.varlen, ops.varlen_lse,
                                            ops.varlen_mask,
                                            ops.varlen_lse_mask)
    if want_mask:
        if want_lse:
            return both(*args)
        o, counts, indices = mask_only(*args)
        return o, None, counts, indices
    if want_lse:
        o, lse = lse_only(*args)
        return o, lse, None, None
    return plain(*args), None, None, None


def _outputs(o, lse, mask):
    """What a prefill returns: o alone, or the tuple of o and those of lse
    and mask that were asked for (None: not asked)."""
    if lse is None and mask is None:
        return o
    return (o,) + tuple(x for x in (lse, mask) if x is not None)


def _max_lengths(cu_q, cu_k, mq, mk) -> Tuple[int, int]:
    """The ragged batch's longest lengths (0, 0 for a regular batch)."""
    if cu_q is None and cu_k is None:
        return 0, 0
    if cu_q is None or cu_k is None:
        raise ValueError("pass both cu_seqlens_q and cu_seqlens_k, or neither")
    if mq is None:
        mq = int((cu_q[1:] - cu_q[:-1]).max()) if cu_q.numel() > 1 else 0
    if mk is None:
        mk = int((cu_k[1:] - cu_k[:-1]).max()) if cu_k.numel() > 1 else 0
    return int(mq), int(mk)


def _seqlens(q, k, layout, cu_q, mq, mk) -> Tuple[int, int]:
    if cu_q is not None:
        return mq, mk
    s = 2 if layout == "bhsd" else 1
    return q.shape[s], k.shape[s]


