"""Tensor parallelism: python/examples/tensor_parallel.py under torchrun.

Two ranks (gloo on the CPU; NCCL on two and four GPUs, skipped with
fewer) each run Prism prefill on their head shard of a Llama-style
attention layer; the example checks the gathered result on rank 0 and
saves it.  Here the saved masks, head outputs and layer output are
compared again with this process's own one-process run of the same
layer: masks identical per head, head outputs bit for bit on the CPU
backend (to bf16 rounding on GPUs), the all-reduced layer output to
float32 rounding.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

import prism_attn
from conftest import make_config

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "examples", "tensor_parallel.py")
SEQ = 512
# 8 query heads over 4 KV heads: two ranks hold 4 / 2 heads each
CONFIG = make_config(head_dim=64, q_heads=8, kv_heads=4, block_size=32)


def load_example():
    if not os.path.exists(EXAMPLE):
        pytest.skip("the examples are not beside the tests")
    spec = importlib.util.spec_from_file_location("tensor_parallel", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks the module up
    spec.loader.exec_module(mod)
    return mod


def run_example(tmp_path, device, nproc):
    """Runs the example under torchrun; its saved results for SEQ."""
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(CONFIG))  # JSON is YAML's flow style
    out = tmp_path / "tp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", EXAMPLE, "--device", device,
           "--seq", str(SEQ), "--config", str(config), "--iters", "1",
           "--save", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, env=env,
                             timeout=300)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun ran over 300 s:\n{e.stdout}\n{e.stderr}")
    text = run.stdout + run.stderr
    assert run.returncode == 0 and "PASS" in run.stdout, (
        f"the example failed (exit {run.returncode}):\n{text}")
    for rank in range(nproc):  # every rank reported its shard's times
        assert any(ln.split()[:1] == [str(rank)]
                   for ln in run.stdout.splitlines()), text
    return torch.load(out)[SEQ], run.stdout


def one_process(tp, device, world):
    """The layer over all heads in this process: (block mask, head
    outputs, layer output)."""
    kern = prism_attn.kernel(CONFIG, device)
    w = tp.make_weights(kern.q_heads, kern.kv_heads, kern.head_dim).to(device)
    x = tp.make_input(1, SEQ, kern.q_heads * kern.head_dim).to(device)
    o, mask, y, _ = tp.one_device(kern, x, w, world)
    return mask.to_block_dense().cpu(), o.cpu(), y.cpu()


def check(saved, want, exact):
    mask, heads, y = want
    got = saved["mask"]
    assert got.shape == mask.shape
    differ = (got != mask).flatten(2).sum(-1)
    assert int(differ.sum()) == 0, (
        f"block masks differ per (batch, head): {differ.tolist()}")
    causal = torch.ones(mask.shape[-2:], dtype=torch.bool).tril()
    assert not (mask & ~causal).any(), "blocks past the causal ones"
    assert (causal & ~mask).any(), "every causal block selected: not sparse"
    if exact:
        assert torch.equal(saved["heads"], heads), (
            "head outputs differ: max |diff| "
            f"{float((saved['heads'].float() - heads.float()).abs().max())}")
    else:
        err = float((saved["heads"].float() - heads.float()).abs().max())
        assert err < 2e-2, f"head outputs differ by {err}"
    err = float((saved["y"] - y).abs().max())
    assert err <= 1e-4 * max(1.0, float(y.abs().max())), (
        f"layer outputs differ by {err}")
    assert [r["rank"] for r in saved["rows"]] == list(range(len(
        saved["rows"])))


def test_two_ranks_on_cpu(tmp_path):
    tp = load_example()
    saved, _ = run_example(tmp_path, "cpu", 2)
    check(saved, one_process(tp, "cpu", 2), exact=True)


def test_shards_split_whole_kv_heads():
    tp = load_example()
    w = tp.make_weights(8, 4, 16)
    parts = [tp.shard(w, r, 2) for r in range(2)]
    assert [(p.q_heads, p.kv_heads) for p in parts] == [(4, 2), (4, 2)]
    assert torch.equal(torch.cat([p.wq for p in parts]), w.wq)
    assert torch.equal(torch.cat([p.wk for p in parts]), w.wk)
    assert torch.equal(torch.cat([p.wo for p in parts], dim=1), w.wo)
    with pytest.raises(ValueError, match="must divide Hkv"):
        tp.shard(w, 0, 3)


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_on_gpus(tmp_path, world):
    """NCCL, one GPU per rank; skips on hosts with fewer GPUs."""
    count = torch.cuda.device_count()
    if count < world:
        pytest.skip(f"needs {world} CUDA devices, this host has {count}")
    tp = load_example()
    saved, stdout = run_example(tmp_path, "cuda", world)
    print(stdout)
    check(saved, one_process(tp, "cuda:0", world), exact=False)
