"""transformers integration on a small randomly initialised Llama-style
model built from a config (nothing is downloaded): thresholds 1.0 give
SDPA's logits; the defaults' density and logit error are reported; decode
and short inputs run SDPA; a config's per-layer settings apply by the
module's layer index, and the module's scaling is the softmax scale."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
import prism_attn  # noqa: E402
import prism_attn.hf as phf  # noqa: E402


def tiny_llama(device="cpu", dtype=torch.bfloat16):
    cfg = transformers.LlamaConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=64, max_position_embeddings=8192)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        cfg, attn_implementation="sdpa", dtype=dtype)
    return model.to(device).eval()


def logits(model, impl, ids, **kw):
    model.set_attn_implementation(impl)
    with torch.no_grad():
        return model(ids, **kw).logits.float()


def run_exact_and_default(device, seqlen, block):
    model = tiny_llama(device)
    ids = torch.randint(0, 512, (1, seqlen), device=device)
    ref = logits(model, "sdpa", ids)
    exact = phf.register("prism_exact", min_seqlen=128, overrides={
        "prism": {"block_size": block,
                  "thresholds": {"high": 1.0, "low": 1.0}}})
    out = logits(model, "prism_exact", ids)
    assert exact.prism_calls == 2 and exact.sdpa_calls == 0
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    default = phf.register("prism_default", min_seqlen=128, record=True,
                           overrides={"prism": {"block_size": block}})
    out = logits(model, "prism_default", ids)
    err = float((out - ref).abs().max())
    density = sum(default.densities) / len(default.densities)
    print(f"\n{device} S={seqlen}: default thresholds: density {density:.3f}"
          f", max logit error {err:.4f} (logits up to "
          f"{float(ref.abs().max()):.2f})")
    return model


def test_thresholds_one_match_sdpa():
    run_exact_and_default("cpu", 512, 64)


def test_fallbacks_and_chunked_prefill():
    model = tiny_llama()
    s = phf.register("prism_chunks", min_seqlen=128, overrides={
        "prism": {"block_size": 64, "thresholds": {"high": 1.0, "low": 1.0}}})
    ids = torch.randint(0, 512, (1, 448))
    ref = logits(model, "sdpa", ids)
    model.set_attn_implementation("prism_chunks")
    with torch.no_grad():
        first = model(ids[:, :256], use_cache=True)
        calls = s.prism_calls
        second = model(ids[:, 256:], past_key_values=first.past_key_values,
                       use_cache=True)  # 192 queries over 448 keys
        assert s.prism_calls == calls + 2  # the prefix is 4 whole blocks
        step = model(ids[:, :1], past_key_values=second.past_key_values)
    assert s.sdpa_calls >= 2  # decoding ran SDPA
    assert step.logits.shape == (1, 1, 512)
    got = torch.cat([first.logits, second.logits], 1).float()
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()
    with torch.no_grad():
        calls = s.prism_calls
        part = model(ids[:, :250], use_cache=True)  # a prefix of 250 keys
        model(ids[:, 250:], past_key_values=part.past_key_values)
    assert s.prism_calls == calls + 2  # only the first chunk ran Prism
    short = logits(model, "prism_chunks", ids[:, :64])
    assert (short - ref[:, :64]).abs().max() < 1e-2 * ref.abs().max() + 1e-3


def test_padding_runs_sdpa():
    model = tiny_llama()
    s = phf.register("prism_pad", min_seqlen=16)
    ids = torch.randint(0, 512, (2, 160))
    mask = torch.ones(2, 160, dtype=torch.long)
    mask[1, :20] = 0
    ref = logits(model, "sdpa", ids, attention_mask=mask)
    out = logits(model, "prism_pad", ids, attention_mask=mask)
    assert s.prism_calls == 0 and s.sdpa_calls == 2
    assert torch.equal(out, ref)


def run_per_layer(device):
    """The module's layer index picks its settings: layer 0 dense (SDPA),
    layer 1 Prism at its own thresholds."""
    model = tiny_llama(device)
    ids = torch.randint(0, 512, (1, 512), device=device)
    ref = logits(model, "sdpa", ids)
    exact = phf.register("prism_dense0", min_seqlen=128, overrides={
        "prism": {"block_size": 64, "thresholds": {"high": 1.0, "low": 1.0}},
        "layers": {"dense": [0]}})
    out = logits(model, "prism_dense0", ids)
    assert (exact.prism_calls, exact.sdpa_calls, exact.dense_calls) == (1, 1, 1)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    cfg = prism_attn.from_hf_config(model.config)
    cfg["prism"] = {"block_size": 64, "thresholds": {"high": 1.0, "low": 1.0}}
    cfg["layers"] = {"overrides": [{"layers": [1], "thresholds": {
        "high": 0.3, "low": 0.3}}]}
    per = phf.register("prism_per_layer", min_seqlen=128, record=True,
                       config=cfg)
    logits(model, "prism_per_layer", ids)
    assert per.prism_calls == 2 and per.dense_calls == 0
    first, second = per.densities
    assert first > 0.99 and second < 0.9, per.densities


def test_per_layer_settings():
    run_per_layer("cpu")


def test_scaling_becomes_the_softmax_scale():
    model = tiny_llama()
    attn = model.model.layers[1].self_attn
    s = phf.register("prism_scale", min_seqlen=16, overrides={
        "prism": {"block_size": 64, "thresholds": {"high": 1.0, "low": 1.0}}})
    q = torch.randn(1, 4, 256, 64, dtype=torch.bfloat16)
    k = torch.randn(1, 2, 256, 64, dtype=torch.bfloat16)
    v = torch.randn(1, 2, 256, 64, dtype=torch.bfloat16)
    o, _ = phf._attention(s, "prism_scale", attn, q, k, v, None, 0.0, 0.05,
                          True, {})
    want = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), is_causal=True, scale=0.05,
        enable_gqa=True)
    assert s.prism_calls == 1
    assert (o.transpose(1, 2).float() - want).abs().max() < 2e-2
