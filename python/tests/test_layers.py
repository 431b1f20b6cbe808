"""Per-layer settings (a config's ``layers:`` section) on the CPU backend:
Kernel.for_layer resolves a layer through the library, a layer's calls
select what the reference selects at its settings, and a dense layer runs
exact causal attention."""

import math

import pytest
import torch

import prism_attn
import reference as R
from conftest import make_config

F = torch.nn.functional
LAYERS = {"dense": [0],
          "overrides": [{"layers": ["1-2"],
                         "thresholds": {"high": 0.9, "low": 0.9}},
                        {"layers": [3, "5-6"], "high_dim": 16,
                         "calibrate": False}]}


def layered(**kw):
    cfg = make_config(**kw)
    cfg["layers"] = LAYERS
    return cfg


@pytest.fixture
def base():
    return prism_attn.kernel(layered(), "cpu")


def sdpa(q, k, v, scale=None):
    """Causal attention with the queries at the end (float32)."""
    sq, sk = q.shape[-2], k.shape[-2]
    g = q.shape[1] // k.shape[1]
    causal = torch.ones(sq, sk, dtype=torch.bool).tril(sk - sq)
    return F.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(g, 1),
        v.float().repeat_interleave(g, 1), attn_mask=causal, scale=scale)


def test_for_layer_resolves_the_section(base):
    assert base.config["layers"] == {
        "dense": [0],
        "overrides": [{"layers": ["1-2"],
                       "thresholds": {"high": 0.9, "low": 0.9}},
                      {"layers": [3, "5-6"], "high_dim": 16,
                       "calibrate": False}]}
    dense = base.for_layer(0)
    assert dense.dense and isinstance(dense, prism_attn.DenseKernel)
    assert not base.dense and not base.for_layer(1).dense
    assert base.for_layer(1) is base.for_layer(2)
    assert base.for_layer(1).params["threshold_high"] == 0.9
    assert base.for_layer(5) is base.for_layer(3)
    assert base.for_layer(3).config["prism"]["high_dim"] == 16
    assert base.for_layer(3).params["calibrate"] is False
    top = base.for_layer(4)  # named nowhere: the top-level settings
    assert top.params == base.params and "layers" not in top.config
    assert base.for_layer(1023).params == base.params
    assert dense.for_layer(7) is dense


def test_the_section_survives_caching_and_overrides(base, tmp_path):
    assert prism_attn.kernel(base.config, "cpu") is base
    other = prism_attn.kernel(layered(), "cpu",
                              overrides={"prism": {"block_size": 64}})
    assert other.config["layers"] == base.config["layers"]
    assert other.for_layer(0).dense and other.block_size == 64
    path = tmp_path / "layered.yaml"
    path.write_text("""
name: test
model: {head_dim: 64, q_heads: 4, kv_heads: 2}
rope: {theta: 10000.0}
prism: {block_size: 32}
layers:
  dense: [0]
  overrides:
    - layers: 1-2
      thresholds: {high: 0.9, low: 0.9}
    - layers: [3, 5-6]
      high_dim: 16
      calibrate: false
""")
    from_file = prism_attn.kernel(str(path), "cpu")
    assert from_file.config["layers"] == base.config["layers"]
    for i in range(8):
        assert from_file.for_layer(i).params == base.for_layer(i).params
        assert from_file.for_layer(i).dense == base.for_layer(i).dense


def test_layer_settings_match_the_reference(base):
    q, k, v = R.workload(1, 4, 2, 256, 320, 64, 10000.0, 30)
    cfg = base.for_layer(1).config
    _, mask = base.for_layer(1).prefill(q, k, v, return_mask=True)
    want = R.estimate(q, k, cfg)
    assert cfg["prism"]["thresholds"] == {"high": 0.9, "low": 0.9}
    assert torch.equal(mask.to_block_dense(), want)
    assert torch.equal(base.estimate(q, k, threshold=0.9).to_block_dense(),
                       want)
    cfg3 = base.for_layer(3).config
    m3 = base.for_layer(3).estimate(q, k)
    assert torch.equal(m3.to_block_dense(), R.estimate(q, k, cfg3))
    # the config's own Kernel runs the top-level settings
    assert torch.equal(base.estimate(q, k).to_block_dense(),
                       R.estimate(q, k, base.for_layer(4).config))


@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_dense_layer_is_exact_attention(base, layout):
    """Sk - Sq = 64, two whole blocks: every block-causal block is exactly
    causal attention."""
    dense = base.for_layer(0)
    q, k, v = R.workload(2, 4, 2, 100, 164, 64, 10000.0, 31)
    args = (q, k, v)
    if layout == "bshd":
        args = tuple(x.transpose(1, 2).contiguous() for x in args)
    o, lse, mask = dense.prefill(*args, layout=layout, return_lse=True,
                                 return_mask=True)
    if layout == "bshd":
        o = o.transpose(1, 2)
    assert mask.density() == pytest.approx(1.0)
    assert (o.float() - sdpa(q, k, v)).abs().max() < 2e-2
    full = torch.ones(2, 4, 4, 6, dtype=torch.bool).tril(2)
    _, rl = R.attention(q, k, v, full, 32)
    assert (lse.double() - rl).abs().max() < 1e-3
    est = dense.estimate(*args[:2], layout=layout, threshold=0.5)  # no-op
    assert torch.equal(est.to_block_dense(), mask.to_block_dense())
    o2 = dense.prefill(*args, layout=layout, softmax_scale=0.3)
    if layout == "bshd":
        o2 = o2.transpose(1, 2)
    assert (o2.float() - sdpa(q, k, v, scale=0.3)).abs().max() < 2e-2


def test_dense_layer_ragged(base):
    dense = base.for_layer(0)
    lens = [(40, 104), (96, 96)]
    seqs = [R.workload(1, 4, 2, sq, sk, 64, 10000.0, 40 + i)
            for i, (sq, sk) in enumerate(lens)]
    pack = [torch.cat([s[j][0].transpose(0, 1) for s in seqs])
            for j in range(3)]
    cu_q = torch.tensor([0, 40, 136], dtype=torch.int32)
    cu_k = torch.tensor([0, 104, 200], dtype=torch.int32)
    o, mask = dense.prefill(*pack, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                            return_mask=True)
    assert mask.density() == pytest.approx(1.0)
    for i, s in enumerate(seqs):
        a, b = int(cu_q[i]), int(cu_q[i + 1])
        want = sdpa(*s)[0].transpose(0, 1)
        assert (o[a:b].float() - want).abs().max() < 2e-2


def test_dense_layer_compiles(base, cpu_kernel):
    dense = base.for_layer(0)
    q, k, v = R.workload(1, 4, 2, 64, 128, 64, 10000.0, 32)

    def f(q, k, v):
        return dense.prefill(q, k, v, return_lse=True, softmax_scale=0.2)

    got = torch.compile(f, fullgraph=True)(q, k, v)
    want = f(q, k, v)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert math.isfinite(float(got[1].max()))


@pytest.mark.parametrize("layer,error", [(-1, ValueError),
                                         (1024, ValueError),
                                         ("1", TypeError), (True, TypeError),
                                         (1.0, TypeError)])
def test_bad_layers(base, layer, error):
    with pytest.raises(error, match="layer"):
        base.for_layer(layer)


def test_block_causal_mask():
    m = prism_attn.BlockMask.block_causal(2, 3, 32, 100, 164)
    assert m.shape == (2, 3, 4, 6) and m.density() == pytest.approx(1.0)
    want = torch.ones(4, 6, dtype=torch.bool).tril(2)
    assert torch.equal(m.to_block_dense(), want.expand(2, 3, 4, 6))
