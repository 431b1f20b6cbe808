"""Configs from dicts, files and Hugging Face configs; the ctypes structs
against the C header's layout."""

import ctypes
import os
import shutil
import subprocess

import pytest

import prism_attn
from prism_attn import _lib
from conftest import make_config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HEADER = os.path.join(ROOT, "include", "prism.h")


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


@pytest.mark.skipif(shutil.which("cc") is None or not os.path.exists(HEADER),
                    reason="needs a C compiler and include/prism.h")
def test_struct_layout_matches_header(tmp_path):
    structs = {"prism_config": _lib.Config,
               "prism_context_options": _lib.ContextOptions,
               "prism_plan_limits": _lib.PlanLimits,
               "prism_tensor": _lib.Tensor, "prism_batch": _lib.Batch,
               "prism_block_mask": _lib.BlockMaskStruct,
               "prism_counters": _lib.Counters}
    lines = ['#include "prism.h"', "#include <stdio.h>",
             "#include <stddef.h>", "int main(void) {"]
    for cname, py in structs.items():
        lines.append(f'printf("{cname} %zu\\n", sizeof({cname}));')
        for field, _ in py._fields_:
            lines.append(f'printf("{cname}.{field} %zu\\n", '
                         f'offsetof({cname}, {field}));')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-std=c11", "-I", os.path.dirname(HEADER),
                    str(src), "-o", str(exe)], check=True)
    got = dict(line.rsplit(" ", 1) for line in
               subprocess.check_output([str(exe)]).decode().splitlines())
    for cname, py in structs.items():
        assert int(got[cname]) == ctypes.sizeof(py), cname
        for field, _ in py._fields_:
            assert int(got[f"{cname}.{field}"]) == getattr(py, field).offset
