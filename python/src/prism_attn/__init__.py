"""prism_attn: Prism spectral-aware block-sparse attention for PyTorch.

Thin bindings of libprism (the C library shipped inside this package) over
torch tensors::

    import prism_attn
    kern = prism_attn.kernel("configs/llama-3.1-8b.yaml", device="cuda")
    o = kern.prefill(q, k, v)                 # [B, Hq, S, D], fp16 / bf16
    o, mask = kern.prefill(q, k, v, return_mask=True)
    mask.to_flex_block_mask()                 # FlexAttention BlockMask
    o2 = kern.sparse_attention(q, k, v, mask)
    o = kern.prefill(q, k, v, threshold=0.9)  # run-time method parameters
    o = kern.for_layer(3).prefill(q, k, v)    # a config's per-layer settings

``prism_attn.hf.register()`` adds ``attn_implementation="prism"`` to
Hugging Face transformers.  docs/python.md is the reference.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise ImportError("prism_attn needs PyTorch: pip install torch") from e

from ._config import from_hf_config
from ._kernel import DenseKernel, Kernel, get_kernel, kernel
from ._lib import PrismError, library_path
from ._lib import status_name as _status_name
from ._lib import version as _version
from ._mask import BlockMask
from . import _ops  # noqa: F401  (registers torch.ops.prism_attn.*)

__version__ = "0.2.0"


def library_version() -> str:
    """The version string of the loaded libprism."""
    return _version()


def status_name(status: int) -> str:
    """The enum name of a prism_status value (``"PRISM_ERR_CONFIG"``...)."""
    return _status_name(status)


__all__ = ["BlockMask", "DenseKernel", "Kernel", "PrismError", "from_hf_config",
           "get_kernel", "kernel", "library_path", "library_version",
           "status_name"]
