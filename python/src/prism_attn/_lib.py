"""The ctypes view of libprism's public C API (include/prism.h).

Everything the package does goes through the functions and structs declared
here, mirrored field for field from prism.h.  Calling the library through
ctypes (rather than a compiled extension) keeps the wheel independent of
the Python and torch versions: one wheel serves CPython 3.9 and later.

Loading order: libprism needs NVRTC (libnvrtc.so.13) at load time, which
hosts keep in different places (the CUDA toolkit, torch's nvidia wheels), so
NVRTC is loaded first from the first place that has it; libprism then finds
it already in the process.  ``PRISM_ATTN_LIBRARY`` points at another
libprism.so (a development build); ``PRISM_ATTN_NVRTC`` at a libnvrtc.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import threading
from ctypes import (POINTER, Structure, byref, c_bool, c_char, c_char_p,
                    c_double, c_int, c_int32, c_int64, c_size_t, c_uint64,
                    c_void_p)
from pathlib import Path

# --- status codes: prism.h's PRISM_STATUS_TABLE -----------------------------
OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_OUT_OF_MEMORY = 2
ERR_CONFIG = 4
ERR_UNSUPPORTED = 5
ERR_NO_DRIVER = 10
ERR_NO_DEVICE = 11

DTYPE_BF16, DTYPE_FP16, DTYPE_FP32 = 0, 1, 2
ROPE_HALF, ROPE_INTERLEAVED = 0, 1
DEVICE_CUDA, DEVICE_CPU = 0, 1
LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR = 0, 1, 2, 3

NAME_MAX = 128
PATH_MAX = 1024
MAX_TARGETS = 8
MAX_TUNING = 32
ERR_BUF = 1024

# --- size limits: prism.h's PRISM_MAX_* (the package reads them only here) --
MAX_BATCH = 65536                  # PRISM_MAX_BATCH: sequences per plan/call
MAX_SEQLEN = 1 << 24               # PRISM_MAX_SEQLEN: lengths and totals
MAX_WORKSPACE_BYTES = 1 << 39      # PRISM_MAX_WORKSPACE_BYTES: a plan's limits
MAX_TENSOR_BYTES = 1 << 48         # PRISM_MAX_TENSOR_BYTES: a tensor's span


class TuningOverride(Structure):
    _fields_ = [("kernel", c_char * 64), ("param", c_char * 64),
                ("value", c_int64), ("line", c_int), ("column", c_int)]


MAX_LAYER = 1023          # PRISM_MAX_LAYER: highest layer index
MAX_LAYER_RANGES = 16     # PRISM_MAX_LAYER_RANGES
MAX_LAYER_OVERRIDES = 16  # PRISM_MAX_LAYER_OVERRIDES
MAX_HEADS = 1024          # prism_params: q_heads and kv_heads, 1..1024


class LayerRange(Structure):
    """prism_layer_range."""
    _fields_ = [("first", c_int), ("last", c_int)]


class LayerOverride(Structure):
    """prism_layer_override."""
    _fields_ = [
        ("n_ranges", c_int), ("ranges", LayerRange * MAX_LAYER_RANGES),
        ("fields", ctypes.c_uint), ("high_dim", c_int), ("low_dim", c_int),
        ("threshold_high", c_double), ("threshold_low", c_double),
        ("calibrate", c_bool), ("temp_high", c_double), ("temp_low", c_double),
        ("force_sink", c_bool), ("force_recent", c_bool),
        ("recent_blocks", c_int),
    ]


class Config(Structure):
    """prism_config."""
    _fields_ = [
        ("name", c_char * NAME_MAX), ("source", c_char * PATH_MAX),
        ("head_dim", c_int), ("q_heads", c_int), ("kv_heads", c_int),
        ("dtype", c_int), ("rope_layout", c_int), ("rope_theta", c_double),
        ("block_size", c_int), ("high_dim", c_int), ("low_dim", c_int),
        ("threshold_high", c_double), ("threshold_low", c_double),
        ("calibrate", c_bool), ("temp_high", c_double), ("temp_low", c_double),
        ("force_sink", c_bool), ("force_recent", c_bool),
        ("recent_blocks", c_int),
        ("n_targets", c_int), ("targets", c_int * MAX_TARGETS),
        ("n_tuning", c_int), ("tuning", TuningOverride * MAX_TUNING),
        ("n_dense", c_int), ("dense", LayerRange * MAX_LAYER_RANGES),
        ("n_layer_overrides", c_int),
        ("layer_overrides", LayerOverride * MAX_LAYER_OVERRIDES),
    ]


LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p)


class ContextOptions(Structure):
    """prism_context_options."""
    _fields_ = [
        ("device_ordinal", c_int), ("log", LOG_FN), ("log_user", c_void_p),
        ("log_level", c_int), ("cache_dir", c_char_p),
        ("cache_path", c_char_p), ("cache_max_bytes", c_int64),
        ("disable_disk_cache", c_bool), ("disable_jit", c_bool),
        ("compile_threads", c_int), ("device", c_int), ("cpu_threads", c_int),
    ]


class PlanLimits(Structure):
    """prism_plan_limits."""
    _fields_ = [("max_batch", c_int), ("max_seqlen_q", c_int),
                ("max_seqlen_k", c_int), ("caller_workspace", c_bool),
                ("paged", c_bool)]


class Tensor(Structure):
    """prism_tensor: data and the B, H, S element strides (D stride 1)."""
    _fields_ = [("data", c_void_p), ("stride_b", c_int64),
                ("stride_h", c_int64), ("stride_s", c_int64)]


class PagedKV(Structure):
    """prism_paged_kv: K/V page pools read through a page table."""
    _fields_ = [("page_table", c_void_p), ("max_pages", c_int),
                ("page_size", c_int), ("num_pages", c_int),
                ("pooled_keys", c_void_p)]


class Batch(Structure):
    """prism_batch."""
    _fields_ = [
        ("dtype", c_int), ("batch", c_int), ("seqlen_q", c_int),
        ("seqlen_k", c_int), ("cu_seqlens_q", c_void_p),
        ("cu_seqlens_k", c_void_p), ("total_q", c_int), ("total_k", c_int),
        ("params", c_void_p),  # const prism_params *, NULL: the config's
        ("paged", c_void_p),   # const prism_paged_kv *, NULL: contiguous K/V
    ]


class Params(Structure):
    """prism_params: the run-time method parameters of one launch."""
    _fields_ = [
        ("threshold_high", c_double), ("threshold_low", c_double),
        ("calibrate", c_bool), ("temp_high", c_double),
        ("temp_low", c_double), ("force_sink", c_bool),
        ("force_recent", c_bool), ("softmax_scale", c_double),
        ("q_heads", c_int), ("kv_heads", c_int), ("recent_blocks", c_int),
    ]


class BlockMaskStruct(Structure):
    """prism_block_mask."""
    _fields_ = [("counts", c_void_p), ("indices", c_void_p),
                ("nq", c_int), ("nk", c_int)]


class Counters(Structure):
    _fields_ = [("memory_hits", c_uint64), ("disk_hits", c_uint64),
                ("misses", c_uint64), ("compiles", c_uint64),
                ("corrupt", c_uint64), ("compile_ms", c_double)]


class PrismError(RuntimeError):
    """A libprism call failed.

    Attributes:
        status: the prism_status value (an int).
        status_name: its enum name, e.g. ``"PRISM_ERR_BAD_SHAPE"``.
        message: the library's message for the failing call.
    """

    def __init__(self, status: int, message: str):
        self.status = int(status)
        self.status_name = status_name(self.status)
        self.message = message
        super().__init__(f"{self.status_name}: {message}")


# --- loading ------------------------------------------------------------------
_PACKAGE_LIB = Path(__file__).resolve().parent / "lib" / "libprism.so"
_lock = threading.Lock()
_lib = None
_nvrtc = None


def _nvrtc_candidates():
    env = os.environ.get("PRISM_ATTN_NVRTC")
    if env:
        yield env
    yield "libnvrtc.so.13"  # the loader's own search (ld.so.conf, LD_LIBRARY_PATH)
    # torch's CUDA wheels carry NVRTC in site-packages/nvidia/...
    for base in sys.path:
        for pattern in ("nvidia/cu13/lib/libnvrtc.so.13*",
                        "nvidia/cuda_nvrtc/lib/libnvrtc.so.13*"):
            yield from sorted(glob.glob(os.path.join(base, pattern)))
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                 "/usr/local/cuda", "/usr/local/cuda-13"):
        if root:
            yield from sorted(glob.glob(os.path.join(root, "lib*",
                                                     "libnvrtc.so.13*")))


def _load_nvrtc():
    errors = []
    for cand in _nvrtc_candidates():
        try:
            return ctypes.CDLL(cand, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            errors.append(str(e))
    return None


def library_path() -> str:
    """The libprism.so the package loads (``PRISM_ATTN_LIBRARY`` overrides)."""
    return os.environ.get("PRISM_ATTN_LIBRARY") or str(_PACKAGE_LIB)


def lib():
    """The loaded libprism (loaded on first use, with its prototypes set)."""
    global _lib, _nvrtc
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            _nvrtc = _load_nvrtc()
            path = library_path()
            try:
                handle = ctypes.CDLL(path)
            except OSError as e:
                hint = ("" if _nvrtc else
                        "; NVRTC (libnvrtc.so.13, CUDA 13) was not found: "
                        "install the CUDA 13 toolkit or set PRISM_ATTN_NVRTC "
                        "to its path")
                raise ImportError(f"cannot load libprism from {path}: {e}"
                                  f"{hint}") from e
            _declare(handle)
            _lib = handle
    return _lib


_declared: list = []  # the names _declare gives prototypes, in order


def _proto(handle, name, restype, *argtypes):
    if name not in _declared:
        _declared.append(name)
    fn = getattr(handle, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


def raw_function(name: str):
    """A function object of its own for a declared libprism function, with
    the prototype of ``_declare`` but every pointer argument as c_void_p
    (for addresses computed as ints, e.g. inside one argument block).

    The prototype is derived, never restated: ctypes passes arguments
    beyond ``argtypes`` with its default conversion (a C int), so a short
    list silently truncates a trailing pointer such as the stream."""
    h = lib()
    declared = getattr(h, name)
    fn = h[name]  # indexing makes a new function object
    fn.restype = declared.restype
    fn.argtypes = [c_void_p if issubclass(t, ctypes._Pointer) else t
                   for t in declared.argtypes]
    return fn


def _declare(h):
    P = POINTER
    _proto(h, "prism_status_string", c_char_p, c_int)
    _proto(h, "prism_status_name", c_char_p, c_int)
    _proto(h, "prism_version", c_char_p)
    _proto(h, "prism_version_number", c_int)
    _proto(h, "prism_dtype_name", c_char_p, c_int)
    _proto(h, "prism_arch_name", c_char_p, c_int)
    _proto(h, "prism_config_init", None, P(Config))
    _proto(h, "prism_config_load_file", c_int, c_char_p, P(Config), c_char_p,
           c_size_t)
    _proto(h, "prism_config_load_string", c_int, c_char_p, c_size_t, c_char_p,
           P(Config), c_char_p, c_size_t)
    _proto(h, "prism_config_validate", c_int, P(Config), c_char_p, c_size_t)
    _proto(h, "prism_config_to_yaml", c_void_p, P(Config))
    _proto(h, "prism_config_for_layer", c_int, P(Config), c_int, P(Config),
           P(c_bool))
    _proto(h, "prism_params_init_from_config", None, P(Config), P(Params))
    _proto(h, "prism_params_validate", c_int, P(Params), c_char_p, c_size_t)
    _proto(h, "prism_context_options_init", None, P(ContextOptions))
    _proto(h, "prism_context_create", c_int, P(ContextOptions),
           P(c_void_p))
    _proto(h, "prism_context_destroy", None, c_void_p)
    _proto(h, "prism_context_last_error", c_char_p, c_void_p)
    _proto(h, "prism_context_counters", c_int, c_void_p, P(Counters))
    _proto(h, "prism_plan_create", c_int, c_void_p, P(Config), P(PlanLimits),
           P(c_void_p))
    _proto(h, "prism_plan_destroy", None, c_void_p)
    _proto(h, "prism_plan_workspace_size", c_size_t, c_void_p, P(Batch))
    _proto(h, "prism_plan_arch", c_int, c_void_p)
    _proto(h, "prism_plan_config", P(Config), c_void_p)
    _proto(h, "prism_plan_last_error", c_char_p, c_void_p)
    _proto(h, "prism_estimate", c_int, c_void_p, P(Batch), P(Tensor),
           P(Tensor), P(BlockMaskStruct), c_void_p, c_size_t, c_void_p)
    _proto(h, "prism_sparse_attention", c_int, c_void_p, P(Batch), P(Tensor),
           P(Tensor), P(Tensor), P(BlockMaskStruct), P(Tensor), c_void_p,
           c_void_p, c_size_t, c_void_p)
    _proto(h, "prism_prefill", c_int, c_void_p, P(Batch), P(Tensor),
           P(Tensor), P(Tensor), P(Tensor), c_void_p, P(BlockMaskStruct),
           c_void_p, c_size_t, c_void_p)
    _proto(h, "prism_plan_density", c_int, c_void_p, P(c_double))
    _proto(h, "prism_paged_pooled_bytes", c_size_t, P(Config), c_int, c_int,
           c_int)
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [c_void_p]
    libc.free.restype = None
    h._free = libc.free


def status_name(status: int) -> str:
    """prism_status_name: ``"PRISM_ERR_CONFIG"``, ... for a status value."""
    return lib().prism_status_name(int(status)).decode()


def version() -> str:
    """The loaded library's version string."""
    return lib().prism_version().decode()


def config_to_yaml(cfg: Config) -> str:
    """prism_config_to_yaml: the resolved config as YAML text."""
    h = lib()
    ptr = h.prism_config_to_yaml(byref(cfg))
    if not ptr:
        raise MemoryError("prism_config_to_yaml: out of memory")
    try:
        return ctypes.string_at(ptr).decode()
    finally:
        h._free(ptr)


def err_buf():
    return ctypes.create_string_buffer(ERR_BUF)


def c_int32_ptr(addr: int):
    return ctypes.cast(addr, POINTER(c_int32))
