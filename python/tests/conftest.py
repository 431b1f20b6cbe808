"""Shared fixtures: small configs as dicts (the tests need no files of the
repository, so they also run beside an installed wheel on another host)."""

import os
import subprocess
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


def run_launch_checks(mode, env=None, timeout=1200):
    """Runs launch_checks.py MODE ("fake" or "cuda") in a child process;
    None when every check passed, else what went wrong with its output."""
    script = os.path.join(os.path.dirname(__file__), "launch_checks.py")
    try:
        run = subprocess.run([sys.executable, script, mode], env=env,
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return f"launch_checks.py {mode} ran over {timeout} s:\n{e.stdout}"
    out = (run.stdout or "") + (run.stderr or "")
    if run.returncode < 0:
        return (f"the launch path CRASHED (signal {-run.returncode}) in "
                f"launch_checks.py {mode}:\n{out}")
    if run.returncode != 0 or "PASS" not in run.stdout:
        return f"launch_checks.py {mode} failed (exit {run.returncode}):\n{out}"
    return None


@pytest.fixture
def cpu_kernel():
    """kernel(**make_config kwargs) on the CPU."""
    def make(**kw):
        return prism_attn.kernel(make_config(**kw), "cpu")
    return make


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_runtest_logreport(report):
    """GPU tests print a failure as it happens, not only in the summary:
    if a later test crashes the interpreter, the reason is still seen."""
    if report.failed and "test_gpu.py" in report.nodeid:
        sys.stderr.write(f"\n{report.nodeid} {report.when} FAILED:\n"
                         f"{report.longreprtext}\n")
        sys.stderr.flush()
