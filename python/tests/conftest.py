"""Shared fixtures: small configs as dicts (the tests need no files of the
repository, so they also run beside an installed wheel on another host)."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

import prism_attn  # noqa: E402


def make_config(head_dim=64, q_heads=4, kv_heads=2, block_size=32,
                layout="half", theta=10000.0, **prism):
    cfg = {"name": "test", "dtype": "bf16",
           "model": {"head_dim": head_dim, "q_heads": q_heads,
                     "kv_heads": kv_heads},
           "rope": {"layout": layout, "theta": theta},
           "prism": {"block_size": block_size}}
    cfg["prism"].update(prism)
    return cfg


@pytest.fixture
def cpu_kernel():
    """kernel(**make_config kwargs) on the CPU."""
    def make(**kw):
        return prism_attn.kernel(make_config(**kw), "cpu")
    return make


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
