"""Bad inputs give clear exceptions: TypeError for dtypes, ValueError for
devices, layouts, strides and shapes (checked before the library is
called), PrismError with the status name and the library's message for
what the library refuses."""

import pytest
import torch

import prism_attn
from conftest import make_config


@pytest.fixture
def kern(cpu_kernel):
    return cpu_kernel()


def qkv(b=1, sq=64, sk=64, dtype=torch.bfloat16, hq=4, hkv=2, d=64):
    return (torch.randn(b, hq, sq, d, dtype=dtype),
            torch.randn(b, hkv, sk, d, dtype=dtype),
            torch.randn(b, hkv, sk, d, dtype=dtype))


def test_wrong_dtype(kern):
    with pytest.raises(TypeError, match="float16 and bfloat16"):
        kern.prefill(*qkv(dtype=torch.float32))
    q, k, v = qkv()
    with pytest.raises(TypeError, match="share one dtype"):
        kern.prefill(q, k.half(), v)


def test_wrong_device(kern):
    q, k, v = qkv()
    with pytest.raises(ValueError, match="kernel runs on cpu"):
        kern.prefill(q.to("meta"), k, v)


def test_cuda_ordinal_that_does_not_exist():
    """A kernel for a CUDA device this process does not have is refused
    when it is made, naming the device (also on a host without CUDA)."""
    n = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"no CUDA device.*cuda:{n}"):
        prism_attn.kernel(make_config(), f"cuda:{n}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_ordinal_past_the_devices():
    """On a GPU host: the message lists the devices there are, and a
    kernel on an existing device still runs afterwards."""
    n = torch.cuda.device_count()
    with pytest.raises(ValueError, match=rf"sees {n} CUDA device\(s\)"):
        prism_attn.kernel(make_config(), f"cuda:{n + 3}")
    kern = prism_attn.kernel(make_config(), f"cuda:{n - 1}")
    q, k, v = (x.to(kern.device) for x in qkv(sq=128, sk=128))
    assert kern.prefill(q, k, v).device == kern.device


def test_bad_layout(kern):
    with pytest.raises(ValueError, match="layout must be"):
        kern.prefill(*qkv(), layout="sbhd")
    q, k, v = qkv()
    with pytest.raises(ValueError, match="must be 4-D"):
        kern.prefill(q[0], k[0], v[0])


def test_non_contiguous_last_dim(kern):
    q, k, v = qkv()
    wide = torch.randn(1, 4, 64, 128, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="contiguous in its last"):
        kern.prefill(wide[..., ::2], k, v)
    with pytest.raises(ValueError, match="contiguous in its last"):
        kern.prefill(q.transpose(2, 3).contiguous().transpose(2, 3), k, v)


def test_shape_mismatches(kern):
    q, k, v = qkv()
    with pytest.raises(ValueError, match="head_dim 32"):
        kern.prefill(q[..., :32], k, v)
    with pytest.raises(ValueError, match="3 heads"):
        kern.prefill(q[:, :3], k, v)
    with pytest.raises(ValueError, match="batch"):
        kern.prefill(torch.cat([q, q]), k, v)
    with pytest.raises(ValueError, match="v has shape"):
        kern.prefill(q, k, v[:, :, :32])
    with pytest.raises(ValueError, match="Sq <= Sk"):
        kern.prefill(*qkv(sq=64, sk=32))


def test_ragged_arguments(kern):
    q = torch.randn(100, 4, 64, dtype=torch.bfloat16)
    k = torch.randn(100, 2, 64, dtype=torch.bfloat16)
    cu = torch.tensor([0, 40, 100], dtype=torch.int32)
    with pytest.raises(ValueError, match="both cu_seqlens"):
        kern.prefill(q, k, k, cu_seqlens_q=cu)
    with pytest.raises(ValueError, match="int32"):
        kern.prefill(q, k, k, cu_seqlens_q=cu.long(), cu_seqlens_k=cu.long())
    with pytest.raises(ValueError, match="packs"):
        kern.prefill(q, k, k, cu_seqlens_q=torch.tensor([0, 40, 90],
                                                        dtype=torch.int32),
                     cu_seqlens_k=cu)


def test_library_refuses_bad_mask(kern):
    q, k, v = qkv()
    blocks = torch.ones(1, 4, 2, 2, dtype=torch.bool)  # above the diagonal
    mask = prism_attn.BlockMask.from_block_dense(blocks, 32, 64, 64)
    with pytest.raises(prism_attn.PrismError) as err:
        kern.sparse_attention(q, k, v, mask)
    assert err.value.status_name == "PRISM_ERR_INVALID_ARGUMENT"
    assert "block-causal" in err.value.message
    assert "PRISM_ERR_INVALID_ARGUMENT" in str(err.value)


def test_mask_geometry(kern):
    q, k, v = qkv()
    mask = kern.estimate(q, k)
    q2, k2, v2 = qkv(sq=128, sk=128)
    with pytest.raises(ValueError, match="blocks but these inputs need"):
        kern.sparse_attention(q2, k2, v2, mask)


def test_bad_config():
    cfg = make_config()
    cfg["model"]["head_dim"] = 96
    with pytest.raises(prism_attn.PrismError) as err:
        prism_attn.kernel(cfg, "cpu")
    assert err.value.status_name == "PRISM_ERR_CONFIG"
    assert "head_dim" in err.value.message
    with pytest.raises(prism_attn.PrismError, match="PRISM_ERR_CONFIG"):
        prism_attn.kernel(make_config(unknown_key=1), "cpu")
    with pytest.raises(prism_attn.PrismError, match="PRISM_ERR_IO"):
        prism_attn.kernel("/nonexistent/config.yaml", "cpu")
    with pytest.raises(TypeError, match="config must be"):
        prism_attn.kernel(42, "cpu")


def test_unknown_params(kern):
    with pytest.raises(TypeError, match="unknown method parameter 'beta'"):
        kern.prefill(*qkv(), params={"beta": 0.9})
    with pytest.raises(ValueError, match=r"params\.threshold_high 2 is out"):
        kern.prefill(*qkv(), params={"threshold": 2})


def test_heads_must_group(kern):
    q, k, v = qkv(hq=6, hkv=4)
    with pytest.raises(ValueError, match="6 heads and k has 4"):
        kern.prefill(q, k, v)
    q, k, v = qkv(hq=2048, hkv=1, sq=1, sk=1)
    with pytest.raises(ValueError, match="1 to 1024"):
        kern.prefill(q, k, v)


def test_status_names():
    assert prism_attn.status_name(0) == "PRISM_OK"
    assert prism_attn.status_name(16) == "PRISM_ERR_BAD_SHAPE"


@pytest.mark.parametrize("block", [32, 128])
def test_plans_stay_within_the_library_limits(cpu_kernel, block):
    """Every length up to PRISM_MAX_SEQLEN gets a plan whose limits the
    library accepts (its workspace under PRISM_MAX_WORKSPACE_BYTES), or,
    where even one sequence's workspace is above it, a PrismError naming
    the lengths."""
    from prism_attn import _lib
    kern = cpu_kernel(block_size=block)
    h = _lib.lib()
    for n in (1, 5000, 1 << 20, _lib.MAX_SEQLEN):
        try:
            plan = kern._plan(_lib.DTYPE_BF16, n)
        except prism_attn.PrismError as e:
            assert n == _lib.MAX_SEQLEN and block == 32, e
            assert "keys up to 16777216" in str(e), e
            continue
        ws = h.prism_plan_workspace_size(plan, None)
        assert 0 < ws <= _lib.MAX_WORKSPACE_BYTES, (n, ws)
        if n <= 5000:  # short plans take the library's whole batch limit
            b = _lib.Batch(_lib.DTYPE_BF16, _lib.MAX_BATCH, n, n)
            assert h.prism_plan_workspace_size(plan, b) > 0, n
    kern.close()


def test_sizes_beyond_the_library_limits(kern):
    from prism_attn import _lib
    q = torch.zeros(1, 4, 1, 64, dtype=torch.bfloat16)
    k = torch.zeros(1, 2, 1, 64, dtype=torch.bfloat16)
    long_k = k.expand(1, 2, _lib.MAX_SEQLEN + 1, 64)
    with pytest.raises(ValueError, match="PRISM_MAX_SEQLEN"):
        kern.prefill(q, long_k, long_k)
    b = _lib.MAX_BATCH + 1
    with pytest.raises(ValueError, match="PRISM_MAX_BATCH"):
        kern.prefill(q.expand(b, -1, -1, -1), k.expand(b, -1, -1, -1),
                     k.expand(b, -1, -1, -1))
