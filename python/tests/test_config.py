"""Configs from dicts, files and Hugging Face configs (the ctypes structs
against the C header: test_abi.py)."""

import os

import pytest

import prism_attn
from conftest import make_config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_dict_defaults_filled_in():
    k = prism_attn.kernel({"model": {"head_dim": 128, "q_heads": 8,
                                     "kv_heads": 2},
                           "rope": {"theta": 500000}}, "cpu")
    p = k.config["prism"]
    assert (p["block_size"], p["high_dim"], p["low_dim"]) == (128, 64, 96)
    assert p["thresholds"] == {"high": 0.95, "low": 0.95}
    assert (k.head_dim, k.q_heads, k.kv_heads) == (128, 8, 2)


def test_overrides_and_cache():
    a = prism_attn.kernel(make_config(), "cpu")
    b = prism_attn.kernel(make_config(), "cpu",
                          overrides={"prism": {"thresholds": {"high": 0.5}}})
    assert a is not b
    assert b.config["prism"]["thresholds"] == {"high": 0.5, "low": 0.95}
    assert prism_attn.kernel(make_config(), "cpu") is a


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "configs")),
                    reason="the repository's configs are not here")
def test_yaml_file():
    k = prism_attn.kernel(os.path.join(ROOT, "configs", "gptj-6b.yaml"), "cpu")
    assert k.config["rope"]["layout"] == "interleaved"
    assert k.head_dim == 256


def test_hf_config():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(hidden_size=512, num_attention_heads=8,
                                   num_key_value_heads=2,
                                   max_position_embeddings=4096)
    d = prism_attn.from_hf_config(cfg)
    assert d["model"] == {"head_dim": 64, "q_heads": 8, "kv_heads": 2}
    assert d["rope"]["layout"] == "half"
    assert d["rope"]["theta"] > 0
    k = prism_attn.kernel(cfg, "cpu")
    assert k.config["name"] == "llama"
    gptj = transformers.GPTJConfig(n_embd=512, n_head=4)
    assert prism_attn.from_hf_config(gptj)["rope"]["layout"] == "interleaved"

