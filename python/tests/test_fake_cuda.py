"""The CUDA launch path without a GPU: launch_checks.py runs the package's
CUDA plans and launches on the stand-in libcuda.so.1 of tests/fake_cuda,
in a child process (the driver is found through LD_LIBRARY_PATH, which
only a new process reads; a crash there fails this test instead of ending
the session).

The stand-in is found through PRISM_ATTN_FAKE_CUDA (its libcuda.so.1 or
the folder holding it), else in the repository's build/fake_cuda.  Without
it the test skips, unless PRISM_ATTN_REQUIRE_FAKE_CUDA=1 (bash .ci/python
builds the stand-in and sets both).
"""

import os
from pathlib import Path

import pytest

from conftest import run_launch_checks


def _fake_cuda_dir():
    env = os.environ.get("PRISM_ATTN_FAKE_CUDA")
    if env:
        p = Path(env)
        return p if p.is_dir() else p.parent
    return Path(__file__).resolve().parents[2] / "build" / "fake_cuda"


def test_cuda_launch_path_on_the_stand_in_driver(tmp_path):
    d = _fake_cuda_dir()
    if not (d / "libcuda.so.1").exists():
        msg = (f"no stand-in driver (tests/fake_cuda) at {d}: set "
               "PRISM_ATTN_FAKE_CUDA to its libcuda.so.1")
        if os.environ.get("PRISM_ATTN_REQUIRE_FAKE_CUDA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(d)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p])
    env["FAKE_CUDA_TRACE"] = str(tmp_path / "trace")
    env["PRISM_TUNE"] = "off"  # no tuning database lookups
    env.setdefault("PRISM_CACHE_DIR", str(tmp_path / "cache"))
    problem = run_launch_checks("fake", env)
    assert problem is None, problem
