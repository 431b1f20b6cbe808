"""ctypes binding to libprism (include/prism.h) for torch tensors.

The library is found through $PRISM_LIB (the path of libprism.so), else
``build/libprism.so`` at the root of this repository.  The structs are the
Python package's mirror of prism.h; ``check_layout()`` verifies them at load time
against what the library itself writes (prism_config_init's SPEC defaults,
and prism_config_to_yaml of a config changed through these structs), and
the test suite also compares sizes and offsets with a compiled C program.

Device and dtype: a CPU context (PRISM_DEVICE_CPU) takes host tensors, a
CUDA context device tensors; both run only the dtypes a config may name,
bf16 and fp16 (prism_config_validate rejects fp32), so float32 activations
are rounded to the plan's dtype on the way in and the output is returned in
that dtype.
"""
from __future__ import annotations

import ctypes as C
import importlib.util
import os
import re
from typing import Optional

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LIB = os.path.join(REPO, "build", "libprism.so")
DEFAULT_CONFIG = os.path.join(REPO, "configs", "smollm2-135m.yaml")

class LibraryNotFound(RuntimeError):
    pass


class PrismError(RuntimeError):
    pass


def _package_structs():
    """The Python package's ctypes mirror of prism.h (python/src/prism_attn/
    _lib.py), loaded by path: one definition of every struct for the
    package and this runner, checked against the header by the package's
    ABI tests.  Loading the module runs no library code, and the package
    itself (which needs an installed build) is not imported."""
    path = os.path.join(REPO, "python", "src", "prism_attn", "_lib.py")
    spec = importlib.util.spec_from_file_location("_prism_attn_structs", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_S = _package_structs()
TuningOverride = _S.TuningOverride
LayerRange = _S.LayerRange
LayerOverride = _S.LayerOverride
ConfigStruct = _S.Config
LOG_FN = _S.LOG_FN
ContextOptions = _S.ContextOptions
PlanLimits = _S.PlanLimits
Tensor = _S.Tensor
Batch = _S.Batch
BlockMask = _S.BlockMaskStruct
PRISM_MAX_LAYER_RANGES = _S.MAX_LAYER_RANGES
PRISM_MAX_LAYER_OVERRIDES = _S.MAX_LAYER_OVERRIDES
DTYPE_BF16, DTYPE_FP16, DTYPE_FP32 = _S.DTYPE_BF16, _S.DTYPE_FP16, _S.DTYPE_FP32
ROPE_HALF, ROPE_INTERLEAVED = _S.ROPE_HALF, _S.ROPE_INTERLEAVED
DEVICE_CUDA, DEVICE_CPU = _S.DEVICE_CUDA, _S.DEVICE_CPU
PRISM_OK = _S.OK

TORCH_DTYPE = {DTYPE_BF16: torch.bfloat16, DTYPE_FP16: torch.float16,
               DTYPE_FP32: torch.float32}
DTYPE_OF = {torch.bfloat16: DTYPE_BF16, torch.float16: DTYPE_FP16}


def find_library(path: Optional[str] = None) -> str:
    p = path or os.environ.get("PRISM_LIB") or DEFAULT_LIB
    if not os.path.exists(p):
        raise LibraryNotFound(
            f"libprism not found at {p}: build it (bash .ci/setup) or set "
            "PRISM_LIB to the path of libprism.so")
    return p


def _preload_nvrtc():
    """libprism links libnvrtc.so.13; where the loader does not find it on
    its own (no LD_LIBRARY_PATH), try the usual CUDA places first."""
    cands = [os.environ.get("PRISM_NVRTC"), "/usr/local/cuda/lib64/libnvrtc.so.13",
             "/usr/local/cuda/lib/libnvrtc.so.13"]
    try:  # the pip wheel that torch depends on
        import nvidia.cu13 as _nv  # type: ignore
        cands.append(os.path.join(os.path.dirname(_nv.__file__), "lib", "libnvrtc.so.13"))
    except Exception:
        pass
    try:
        import nvidia.cuda_nvrtc as _nv2  # type: ignore
        cands.append(os.path.join(list(_nv2.__path__)[0], "lib", "libnvrtc.so.13"))
    except Exception:
        pass
    for c in cands:
        if c and os.path.exists(c):
            try:
                C.CDLL(c, mode=C.RTLD_GLOBAL)
                return
            except OSError:
                pass


_LIB = None


def lib(path: Optional[str] = None):
    """The loaded library (once per process), with prototypes set."""
    global _LIB
    if _LIB is not None:
        return _LIB
    p = find_library(path)
    try:
        L = C.CDLL(p)
    except OSError as e:
        if "nvrtc" not in str(e):
            raise LibraryNotFound(f"cannot load {p}: {e}") from e
        _preload_nvrtc()
        try:
            L = C.CDLL(p)
        except OSError as e2:
            raise LibraryNotFound(f"cannot load {p}: {e2}") from e2
    st = C.c_int
    P = C.c_void_p
    sig = {
        "prism_status_string": (C.c_char_p, [st]),
        "prism_version": (C.c_char_p, []),
        "prism_version_number": (C.c_int, []),
        "prism_config_init": (None, [C.POINTER(ConfigStruct)]),
        "prism_config_load_file": (st, [C.c_char_p, C.POINTER(ConfigStruct), C.c_char_p, C.c_size_t]),
        "prism_config_validate": (st, [C.POINTER(ConfigStruct), C.c_char_p, C.c_size_t]),
        "prism_config_to_yaml": (P, [C.POINTER(ConfigStruct)]),
        "prism_config_for_layer": (st, [C.POINTER(ConfigStruct), C.c_int,
                                        C.POINTER(ConfigStruct), C.POINTER(C.c_bool)]),
        "prism_context_options_init": (None, [C.POINTER(ContextOptions)]),
        "prism_context_create": (st, [C.POINTER(ContextOptions), C.POINTER(P)]),
        "prism_context_destroy": (None, [P]),
        "prism_context_last_error": (C.c_char_p, [P]),
        "prism_plan_create": (st, [P, C.POINTER(ConfigStruct), C.POINTER(PlanLimits), C.POINTER(P)]),
        "prism_plan_destroy": (None, [P]),
        "prism_plan_last_error": (C.c_char_p, [P]),
        "prism_plan_density": (st, [P, C.POINTER(C.c_double)]),
        "prism_estimate": (st, [P, C.POINTER(Batch), C.POINTER(Tensor), C.POINTER(Tensor),
                                C.POINTER(BlockMask), P, C.c_size_t, P]),
        "prism_sparse_attention": (st, [P, C.POINTER(Batch), C.POINTER(Tensor), C.POINTER(Tensor),
                                        C.POINTER(Tensor), C.POINTER(BlockMask), C.POINTER(Tensor),
                                        C.POINTER(C.c_float), P, C.c_size_t, P]),
        "prism_prefill": (st, [P, C.POINTER(Batch), C.POINTER(Tensor), C.POINTER(Tensor),
                               C.POINTER(Tensor), C.POINTER(Tensor), C.POINTER(C.c_float),
                               C.POINTER(BlockMask), P, C.c_size_t, P]),
    }
    for name, (res, args) in sig.items():
        f = getattr(L, name)
        f.restype, f.argtypes = res, args
    libc = C.CDLL(None)
    libc.free.argtypes = [P]
    L._free = libc.free
    _LIB = L
    check_layout(L)
    return L


def _yaml_of(L, cfg: ConfigStruct) -> str:
    ptr = L.prism_config_to_yaml(C.byref(cfg))
    if not ptr:
        raise MemoryError("prism_config_to_yaml")
    try:
        return C.string_at(ptr).decode()
    finally:
        L._free(ptr)


def check_layout(L):
    """Fails loudly when these ctypes structs do not match the library."""
    c = ConfigStruct()
    L.prism_config_init(C.byref(c))
    got = (c.head_dim, c.q_heads, c.kv_heads, c.dtype, c.rope_layout, c.rope_theta,
           c.block_size, c.high_dim, c.low_dim, c.threshold_high, c.threshold_low,
           c.calibrate, c.temp_high, c.temp_low, c.force_sink, c.force_recent,
           c.n_targets, c.n_tuning)
    want = (128, 32, 8, DTYPE_BF16, ROPE_HALF, 500000.0, 128, 64, 96, 0.95, 0.95,
            True, 1.0, 1.0, True, True, 2, 0)
    assert got == want, f"prism_config layout mismatch: {got} != {want}"
    # Fields written here must come back from the library's own printer.
    c.block_size, c.threshold_high, c.threshold_low = 32, 0.25, 0.5
    c.calibrate, c.temp_high, c.temp_low = False, 1.75, 2.5
    c.force_sink, c.force_recent = False, True
    y = _yaml_of(L, c)
    for pat in (r"block_size: 32\b", r"high: 0\.25\b", r"low: 0\.5\b",
                r"calibrate: false", r"high: 1\.75\b", r"low: 2\.5\b",
                r"force_sink: false", r"force_recent: true"):
        assert re.search(pat, y), f"prism_config layout: {pat!r} not in\n{y}"


def _check(L, status, what, plan=None, ctx=None):
    if status == PRISM_OK:
        return
    msg = L.prism_status_string(status).decode()
    detail = ""
    if plan:
        detail = L.prism_plan_last_error(plan).decode()
    elif ctx:
        detail = L.prism_context_last_error(ctx).decode()
    raise PrismError(f"{what}: {msg}: {detail}")


class Config:
    """A prism_config built in memory: init, optional YAML, overrides."""

    FIELDS = ("block_size", "high_dim", "low_dim", "threshold_high",
              "threshold_low", "calibrate", "temp_high", "temp_low",
              "force_sink", "force_recent", "dtype")

    def __init__(self, yaml_path: Optional[str] = DEFAULT_CONFIG, **overrides):
        L = lib()
        self.s = ConfigStruct()
        L.prism_config_init(C.byref(self.s))
        if yaml_path:
            err = C.create_string_buffer(1024)
            st = L.prism_config_load_file(yaml_path.encode(), C.byref(self.s), err, 1024)
            if st != PRISM_OK:
                raise PrismError(err.value.decode())
        self.set(**overrides)

    def set(self, **kw):
        for k, v in kw.items():
            if k not in self.FIELDS:
                raise KeyError(f"unknown config field {k}")
            if isinstance(v, torch.dtype):
                v = DTYPE_OF[v]
            setattr(self.s, k, v)
        err = C.create_string_buffer(1024)
        st = lib().prism_config_validate(C.byref(self.s), err, 1024)
        if st != PRISM_OK:
            raise PrismError(err.value.decode())
        return self

    def __getattr__(self, k):
        if k in ("s",):
            raise AttributeError(k)
        return getattr(self.s, k)

    def yaml(self) -> str:
        return _yaml_of(lib(), self.s)

    def for_layer(self, layer: int):
        """(Config of decoder layer `layer`, dense?) through the library's
        prism_config_for_layer: the layers: section of the YAML resolved."""
        L = lib()
        out = Config.__new__(Config)
        out.s = ConfigStruct()
        dense = C.c_bool()
        st = L.prism_config_for_layer(C.byref(self.s), layer, C.byref(out.s),
                                      C.byref(dense))
        if st != PRISM_OK:
            err = C.create_string_buffer(1024)
            L.prism_config_validate(C.byref(self.s), err, 1024)
            raise PrismError(f"prism_config_for_layer({layer}): "
                             f"{L.prism_status_string(st).decode()}: {err.value.decode()}")
        return out, bool(dense.value)

    def key(self) -> bytes:
        """The struct's bytes: equal for layers that can share one plan."""
        return bytes(self.s)


class Context:
    def __init__(self, device="cpu", cpu_threads=0, cache_dir=None):
        L = lib()
        self.device = torch.device(device)
        o = ContextOptions()
        L.prism_context_options_init(C.byref(o))
        o.device = DEVICE_CUDA if self.device.type == "cuda" else DEVICE_CPU
        if self.device.type == "cuda":
            o.device_ordinal = self.device.index or 0
        o.cpu_threads = cpu_threads
        self._cache = cache_dir.encode() if cache_dir else None
        if self._cache:
            o.cache_dir = self._cache
        h = C.c_void_p()
        st = L.prism_context_create(C.byref(o), C.byref(h))
        if st != PRISM_OK:
            raise PrismError(f"prism_context_create: {L.prism_status_string(st).decode()}")
        self.h = h

    def close(self):
        if getattr(self, "h", None):
            lib().prism_context_destroy(self.h)
            self.h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _tensor(t: torch.Tensor) -> Tensor:
    assert t.dim() == 4 and t.stride(3) == 1
    return Tensor(t.data_ptr(), t.stride(0), t.stride(1), t.stride(2))


class Plan:
    """One plan: a config on a context for sequences up to max_seqlen."""

    def __init__(self, ctx: Context, cfg: Config, max_seqlen: int):
        L = lib()
        self.ctx, self.cfg = ctx, cfg
        self.dtype = TORCH_DTYPE[cfg.s.dtype]
        self.bs = cfg.s.block_size
        self.hq, self.hkv, self.d = cfg.s.q_heads, cfg.s.kv_heads, cfg.s.head_dim
        lim = PlanLimits(1, max_seqlen, max_seqlen, False)
        h = C.c_void_p()
        st = L.prism_plan_create(ctx.h, C.byref(cfg.s), C.byref(lim), C.byref(h))
        _check(L, st, "prism_plan_create", ctx=ctx.h)
        self.h = h
        self.max_seqlen = max_seqlen

    def close(self):
        if getattr(self, "h", None):
            lib().prism_plan_destroy(self.h)
            self.h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- helpers -----------------------------------------------------------
    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.ctx.device, self.dtype)
        return x.contiguous()

    def _batch(self, sq, sk):
        return Batch(self.cfg.s.dtype, 1, sq, sk, None, None, 0, 0)

    def _stream(self):
        if self.ctx.device.type == "cuda":
            return C.c_void_p(torch.cuda.current_stream(self.ctx.device).cuda_stream)
        return None

    def new_mask(self, sq, sk):
        nq, nk = -(-sq // self.bs), -(-sk // self.bs)
        dev = self.ctx.device
        counts = torch.zeros(self.hq * nq, dtype=torch.int32, device=dev)
        indices = torch.zeros(self.hq * nq * nk, dtype=torch.int32, device=dev)
        return counts, indices, BlockMask(counts.data_ptr(), indices.data_ptr(), nq, nk)

    # -- launches ----------------------------------------------------------
    def prefill(self, q, k, v):
        """q [1,Hq,S,D], k/v [1,Hkv,S,D] -> (o [1,Hq,S,D] in the plan's
        dtype, counts [Hq,nq] int32, indices [Hq,nq,nk] int32)."""
        L = lib()
        q, k, v = self._prep(q), self._prep(k), self._prep(v)
        sq, sk = q.shape[2], k.shape[2]
        o = torch.empty_like(q)
        counts, indices, m = self.new_mask(sq, sk)
        b = self._batch(sq, sk)
        tq, tk, tv, to = _tensor(q), _tensor(k), _tensor(v), _tensor(o)
        st = L.prism_prefill(self.h, C.byref(b), C.byref(tq), C.byref(tk), C.byref(tv),
                             C.byref(to), None, C.byref(m), None, 0, self._stream())
        _check(L, st, "prism_prefill", plan=self.h)
        return o, counts.view(self.hq, m.nq), indices.view(self.hq, m.nq, m.nk)

    def estimate(self, q, k):
        """The selection only: (counts [Hq,nq], indices [Hq,nq,nk])."""
        L = lib()
        q, k = self._prep(q), self._prep(k)
        sq, sk = q.shape[2], k.shape[2]
        counts, indices, m = self.new_mask(sq, sk)
        b = self._batch(sq, sk)
        tq, tk = _tensor(q), _tensor(k)
        st = L.prism_estimate(self.h, C.byref(b), C.byref(tq), C.byref(tk), C.byref(m),
                              None, 0, self._stream())
        _check(L, st, "prism_estimate", plan=self.h)
        return counts.view(self.hq, m.nq), indices.view(self.hq, m.nq, m.nk)

    def sparse_attention(self, q, k, v, counts, indices):
        """The library's block-sparse attention over a given mask."""
        L = lib()
        q, k, v = self._prep(q), self._prep(k), self._prep(v)
        sq, sk = q.shape[2], k.shape[2]
        counts = counts.to(self.ctx.device, torch.int32).contiguous()
        indices = indices.to(self.ctx.device, torch.int32).contiguous()
        nq, nk = indices.shape[-2], indices.shape[-1]
        m = BlockMask(counts.data_ptr(), indices.data_ptr(), nq, nk)
        o = torch.empty_like(q)
        b = self._batch(sq, sk)
        tq, tk, tv, to = _tensor(q), _tensor(k), _tensor(v), _tensor(o)
        st = L.prism_sparse_attention(self.h, C.byref(b), C.byref(tq), C.byref(tk),
                                      C.byref(tv), C.byref(m), C.byref(to), None,
                                      None, 0, self._stream())
        _check(L, st, "prism_sparse_attention", plan=self.h)
        return o

    def density(self) -> float:
        d = C.c_double()
        _check(lib(), lib().prism_plan_density(self.h, C.byref(d)),
               "prism_plan_density", plan=self.h)
        return d.value


def mask_to_bool(counts: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(counts [..., nq], indices [..., nq, nk]) -> bool [..., nq, nk]."""
    nk = indices.shape[-1]
    j = torch.arange(nk, device=indices.device)
    valid = j < counts.unsqueeze(-1)
    idx = torch.where(valid, indices.long(), torch.full_like(indices, nk, dtype=torch.long))
    out = torch.zeros(*indices.shape[:-1], nk + 1, dtype=torch.bool, device=indices.device)
    out.scatter_(-1, idx, True)
    return out[..., :nk]


def bool_to_mask(bm: torch.Tensor):
    """bool [..., nq, nk] -> (counts int32, ascending indices int32)."""
    nk = bm.shape[-1]
    j = torch.arange(nk, device=bm.device)
    key = torch.where(bm, j, j + nk)
    idx = key.sort(dim=-1).values
    counts = bm.sum(-1).to(torch.int32)
    idx = torch.where(idx < nk, idx, torch.zeros_like(idx)).to(torch.int32)
    return counts, idx
