"""The package's CUDA launch path, checked in a process of its own:

    python launch_checks.py fake   on the stand-in driver (tests/fake_cuda),
                                   started by test_fake_cuda.py with the
                                   stand-in first on LD_LIBRARY_PATH
    python launch_checks.py cuda   on the GPU, started by test_gpu.py before
                                   its tests

A launch that passes the library a wrong argument can crash the process
(a stream handle or a pointer the driver dereferences); here that ends
this process, and the test that started it fails with its output.

Every call of the package on CUDA plans: prefill with and without the
mask and lse (twice: the validating path, then the cached argument block),
both layouts, estimate then sparse attention, ragged batches, run-time
parameters and a shard of the heads; each on the
default stream and on another one, in bf16 and fp16, with the GPU suite's
first shape (D 64, block 64, Hq 8, Hkv 2, S 1024, batch 2).

On the stand-in, device memory is host memory and kernels do nothing, so
CPU tensors serve as device tensors: a kernel made for the CPU is switched
to a CUDA context, and torch's current stream is replaced by the one a
check names.  Everything else -- plans, argument blocks, the prototypes of
the raw launch functions, workspaces, streams -- is the package's own.  The
stand-in refuses streams it did not make, so a stream that does not reach
the driver intact fails the launch.

Prints one line per check ("PASS name", or "FAIL name" and the traceback)
and exits 1 if any failed.
"""

import contextlib
import ctypes
import os
import sys
import traceback

import torch

import prism_attn
from prism_attn import _config, _kernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import make_config  # noqa: E402

SHAPE = dict(head_dim=64, q_heads=8, kv_heads=2, block_size=64)


class Fake:
    """The stand-in driver: its streams, and kernels over CPU tensors."""

    device = torch.device("cpu")

    def __init__(self):
        self.drv = ctypes.CDLL("libcuda.so.1")
        name = ctypes.create_string_buffer(64)
        self.drv.cuDeviceGetName(name, 64, 0)
        if b"Fake" not in name.value:
            sys.exit(f"libcuda.so.1 is not the stand-in driver "
                     f"({name.value.decode()}): check LD_LIBRARY_PATH")
        self.current = 0  # what torch would call the current stream
        torch._C._cuda_getCurrentRawStream = lambda index: self.current

    def kernel(self):
        kern = _kernel.Kernel(_config.load(make_config(**SHAPE)), self.device)
        kern._cuda, kern._align = True, 256
        kern._ctx = _kernel._context(torch.device("cuda", 0))
        return kern

    def streams(self):
        s = ctypes.c_void_p()
        if self.drv.cuStreamCreate(ctypes.byref(s), 0) != 0:
            sys.exit("cuStreamCreate failed on the stand-in driver")
        # the default stream (0), then one far from 32-bit values
        return [0, s.value]

    @contextlib.contextmanager
    def on(self, stream):
        saved, self.current = self.current, stream
        try:
            yield
        finally:
            self.current = saved

    def sync(self):
        pass


class Cuda:
    """The GPU, through torch's streams."""

    device = torch.device("cuda", 0)

    def kernel(self):
        return prism_attn.kernel(make_config(**SHAPE), self.device)

    def streams(self):
        return [torch.cuda.default_stream(self.device),
                torch.cuda.Stream(self.device)]

    def on(self, stream):
        return torch.cuda.stream(stream)

    def sync(self):
        torch.cuda.synchronize(self.device)


def _launches():
    """Launches enqueued since the last call (the stand-in's trace)."""
    path = os.environ.get("FAKE_CUDA_TRACE")
    if not path:
        return None
    try:
        with open(path) as f:
            n = sum(line.startswith("launch") for line in f)
    except FileNotFoundError:
        return 0
    os.unlink(path)
    return n


def _inputs(dev, dtype, b=2, hq=8, hkv=2, s=1024, d=64):
    q = torch.randn(b, hq, s, d, dtype=dtype)
    k = torch.randn(b, hkv, s, d, dtype=dtype)
    return q.to(dev), k.to(dev), torch.randn_like(k).to(dev)


def check_prefill_with_mask_and_lse(kern, dev, dtype):
    q, k, v = _inputs(dev, dtype)
    _launches()
    for _ in range(2):  # the validating path, then the cached block
        o, lse, mask = kern.prefill(q, k, v, return_lse=True,
                                    return_mask=True)
        assert o.shape == q.shape and lse.shape == (2, 8, 1024)
        assert mask.indices.shape == (2, 8, 16, 16)
        n = _launches()
        assert n is None or n >= 3, f"prefill enqueued {n} launches"
    assert kern.prefill(q, k, v).shape == q.shape  # mask in the workspace
    t = [x.transpose(1, 2).contiguous() for x in (q, k, v)]
    o2 = kern.prefill(*t, layout="bshd", return_mask=True)[0]
    assert o2.shape == t[0].shape


def check_estimate_then_sparse(kern, dev, dtype):
    q, k, v = _inputs(dev, dtype)
    mask = kern.estimate(q, k)
    o, lse = kern.sparse_attention(q, k, v, mask, return_lse=True)
    assert kern.sparse_attention(q, k, v, mask).shape == q.shape


def check_ragged(kern, dev, dtype):
    """Ragged batches take the declared prototypes (_lib._declare)."""
    q, k, v = (x[0].transpose(0, 1).contiguous()
               for x in _inputs(dev, dtype, b=1))
    cu = torch.tensor([0, 300, 1024], dtype=torch.int32, device=dev)
    o, lse, mask = kern.prefill(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu,
                                max_seqlen_q=724, max_seqlen_k=724,
                                return_lse=True, return_mask=True)
    assert o.shape == q.shape and lse.shape == (8, 1024)
    mask = kern.estimate(q, k, cu_seqlens_q=cu, cu_seqlens_k=cu,
                         max_seqlen_q=724, max_seqlen_k=724)
    kern.sparse_attention(q, k, v, mask)


def check_params_and_shard(kern, dev, dtype):
    """Run-time parameters and a head shard reach the library (it checks
    every launch's prism_params: a wrong pointer fails the call)."""
    q, k, v = _inputs(dev, dtype)
    for _ in range(2):  # the validating path, then the cached block
        o, lse, mask = kern.prefill(q, k, v, threshold=0.9, softmax_scale=0.1,
                                    return_lse=True, return_mask=True)
        assert o.shape == q.shape and mask.indices.shape == (2, 8, 16, 16)
    shard = kern.prefill(q[:, :4], k[:, :1], v[:, :1], return_lse=True)
    assert shard[0].shape == (2, 4, 1024, 64) and shard[1].shape == (2, 4, 1024)
    mask = kern.estimate(q[:, 4:], k[:, 1:], calibrate=False, temp=0.5)
    assert mask.indices.shape == (2, 4, 16, 16)
    kern.sparse_attention(q[:, 4:], k[:, 1:], v[:, 1:], mask,
                          softmax_scale=0.2)
    try:
        kern.prefill(q, k, v, threshold=1.5)
    except ValueError as e:
        assert "params.threshold_high" in str(e), e
    else:
        raise AssertionError("threshold 1.5 was accepted")
    r = [x[0].transpose(0, 1).contiguous()[:, :4 if i == 0 else 1]
         for i, x in enumerate((q, k, v))]
    cu = torch.tensor([0, 300, 1024], dtype=torch.int32, device=dev)
    o = kern.prefill(r[0], r[1], r[2], cu_seqlens_q=cu, cu_seqlens_k=cu,
                     max_seqlen_q=724, max_seqlen_k=724, threshold=0.8)
    assert o.shape == r[0].shape


def check_unknown_stream_is_refused(kern, dev, dtype, target):
    """The stand-in refuses a stream it never made: the stream the
    package passes is the one that reaches the driver."""
    q, k, v = _inputs(dev, dtype)
    with target.on(0xDEAD0000BEEF):
        try:
            kern.prefill(q, k, v)
        except prism_attn.PrismError as e:
            assert e.status_name == "PRISM_ERR_CUDA", e
        else:
            raise AssertionError("a launch on an unknown stream succeeded")


def check_missing_ordinal_is_refused():
    """A context for a CUDA ordinal the driver does not have is refused
    by the library with its message (prism_attn.kernel refuses such a
    device before; this is the library's own check, under it)."""
    try:
        _kernel._context(torch.device("cuda", 64))
    except prism_attn.PrismError as e:
        assert e.status_name == "PRISM_ERR_NO_DEVICE", e
        assert "device_ordinal = 64" in str(e), e
    else:
        raise AssertionError("a context on CUDA device 64 was created")


CHECKS = (check_prefill_with_mask_and_lse, check_estimate_then_sparse,
          check_ragged, check_params_and_shard)


def _run(name, fn) -> bool:
    try:
        fn()
        print("PASS", name, flush=True)
        return True
    except Exception:
        print("FAIL", name, flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        return False


def main(argv) -> int:
    if argv[1:] not in (["fake"], ["cuda"]):
        sys.exit("usage: launch_checks.py fake|cuda")
    target = Fake() if argv[1] == "fake" else Cuda()
    torch.manual_seed(0)
    kern, dev = target.kernel(), target.device
    ok = True
    for dtype in (torch.bfloat16, torch.float16):
        for i, stream in enumerate(target.streams()):
            for check in CHECKS:
                def call(check=check, stream=stream):
                    with target.on(stream):
                        check(kern, dev, dtype)
                    target.sync()
                ok &= _run(f"{check.__name__}[{dtype}, stream {i}]", call)
        if isinstance(target, Fake):
            ok &= _run(f"check_unknown_stream_is_refused[{dtype}]",
                       lambda: check_unknown_stream_is_refused(
                           kern, dev, dtype, target))
    ok &= _run("check_missing_ordinal_is_refused",
               check_missing_ordinal_is_refused)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
