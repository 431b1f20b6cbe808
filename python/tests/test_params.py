"""Run-time method parameters and head counts on the CPU backend: a call's
settings select what the reference selects at those settings and what a
kernel configured with them selects, on the same plans; another softmax
scale is the reference's attention at that scale; a shard of the heads is
the slice of the full call; bad values raise errors naming the field."""

import copy
import math

import pytest
import torch

import prism_attn
import reference as R
from conftest import make_config


def with_prism(kern, **prism):
    """kern's config dict with prism fields replaced (for the reference)."""
    cfg = copy.deepcopy(kern.config)
    cfg["prism"].update(prism)
    return cfg


@pytest.fixture
def kern(cpu_kernel):
    return cpu_kernel()


def test_defaults_are_the_config(kern):
    assert kern.params == {
        "threshold_high": 0.95, "threshold_low": 0.95, "calibrate": True,
        "temp_high": 1.0, "temp_low": 1.0, "force_sink": True,
        "force_recent": True, "recent_blocks": 1, "softmax_scale": 0.0}


@pytest.mark.parametrize("threshold", [0.9, 0.98])
def test_thresholds_match_reference_and_config(kern, threshold):
    q, k, v = R.workload(2, 4, 2, 300, 300, 64, 10000.0, 0)
    kern.prefill(q, k, v)
    plans = dict(kern._plans)
    o, lse, mask = kern.prefill(q, k, v, threshold=threshold,
                                return_lse=True, return_mask=True)
    want = R.estimate(q, k, with_prism(
        kern, thresholds={"high": threshold, "low": threshold}))
    got = mask.to_block_dense()
    assert torch.equal(got, want), f"{int((got != want).sum())} blocks differ"
    ro, rl = R.attention(q, k, v, got, kern.block_size)
    assert (o.double() - ro).abs().max() < 2e-2
    assert (lse.double() - rl).abs().max() < 1e-3
    # the library's selection of a kernel configured with the threshold
    other = prism_attn.kernel(make_config(thresholds={"high": threshold,
                                                      "low": threshold}),
                              "cpu")
    o2, m2 = other.prefill(q, k, v, return_mask=True)
    assert torch.equal(m2.to_block_dense(), got) and torch.equal(o2, o)
    assert kern._plans == plans  # the same plan, no new kernels


def test_thresholds_change_the_selection(kern):
    q, k, v = R.workload(1, 4, 2, 512, 512, 64, 10000.0, 1)
    low = kern.estimate(q, k, threshold=0.9)
    high = kern.estimate(q, k, threshold=0.98)
    assert low.density() < high.density() < 1.0
    # and a call without settings is back at the config's
    want = R.estimate(q, k, kern.config)
    assert torch.equal(kern.estimate(q, k).to_block_dense(), want)


@pytest.mark.parametrize("settings,prism", [
    ({"threshold_high": 0.8, "threshold_low": 0.99},
     {"thresholds": {"high": 0.8, "low": 0.99}}),
    ({"calibrate": False, "temp_high": 0.5, "temp_low": 2.0},
     {"calibrate": False, "temps": {"high": 0.5, "low": 2.0}}),
    ({"calibrate": False, "temp": 0.7, "force_sink": False},
     {"calibrate": False, "temps": {"high": 0.7, "low": 0.7},
      "force_sink": False}),
    ({"force_recent": False, "threshold": 0.85},
     {"force_recent": False, "thresholds": {"high": 0.85, "low": 0.85}}),
    ({"recent_blocks": 3, "threshold": 0.5},
     {"recent_blocks": 3, "thresholds": {"high": 0.5, "low": 0.5}}),
])
def test_each_setting_matches_reference(kern, settings, prism):
    q, k, v = R.workload(1, 4, 2, 256, 320, 64, 10000.0, 2)
    mask = kern.estimate(q, k, **settings)
    want = R.estimate(q, k, with_prism(kern, **prism))
    assert torch.equal(mask.to_block_dense(), want)
    _, m2 = kern.prefill(q, k, v, params=settings, return_mask=True)
    assert torch.equal(m2.to_block_dense(), want)


@pytest.mark.parametrize("scale", [0.05, 0.3])
def test_softmax_scale_matches_reference(kern, scale):
    q, k, v = R.workload(1, 4, 2, 200, 264, 64, 10000.0, 3)
    o, lse, mask = kern.prefill(q, k, v, softmax_scale=scale,
                                return_lse=True, return_mask=True)
    blocks = mask.to_block_dense()
    # the scale is attention's only: the selection is the default one
    assert torch.equal(blocks, R.estimate(q, k, kern.config))
    ro, rl = R.attention(q, k, v, blocks, kern.block_size, scale=scale)
    assert (o.double() - ro).abs().max() < 2e-2
    assert (lse.double() - rl).abs().max() < 1e-3
    o2, lse2 = kern.sparse_attention(q, k, v, mask, softmax_scale=scale,
                                     return_lse=True)
    assert torch.equal(o2, o) and torch.equal(lse2, lse)
    default = kern.sparse_attention(q, k, v, mask,
                                    softmax_scale=1 / math.sqrt(64))
    assert torch.equal(default, kern.sparse_attention(q, k, v, mask))


@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_head_shard_is_a_slice_of_the_full_call(cpu_kernel, layout):
    """3 of 9 query heads and 1 of 3 KV heads (one tensor-parallel rank of
    three) on the kernel of the 9-head config: the slice of the full
    call, with no new plan."""
    kern = cpu_kernel(q_heads=9, kv_heads=3)
    q, k, v = R.workload(2, 9, 3, 192, 256, 64, 10000.0, 4)
    o, lse, mask = kern.prefill(q, k, v, return_lse=True, return_mask=True)
    plans = len(kern._plans)
    part = (q[:, 3:6], k[:, 1:2], v[:, 1:2])
    if layout == "bshd":
        part = tuple(x.transpose(1, 2) for x in part)
    o2, lse2, m2 = kern.prefill(*part, layout=layout, return_lse=True,
                                return_mask=True)
    if layout == "bshd":
        o2 = o2.transpose(1, 2)
    assert torch.equal(o2, o[:, 3:6]) and torch.equal(lse2, lse[:, 3:6])
    assert torch.equal(m2.to_block_dense(), mask.to_block_dense()[:, 3:6])
    s = kern.sparse_attention(*part, m2, layout=layout)
    assert torch.equal(s.transpose(1, 2) if layout == "bshd" else s,
                       o[:, 3:6])
    assert len(kern._plans) == plans


def test_more_heads_than_the_config(kern):
    q, k, v = R.workload(1, 8, 2, 128, 128, 64, 10000.0, 5)  # config 4 / 2
    o, mask = kern.prefill(q, k, v, return_mask=True)
    want = R.estimate(q, k, kern.config)
    assert torch.equal(mask.to_block_dense(), want)
    ro, _ = R.attention(q, k, v, want, kern.block_size)
    assert (o.double() - ro).abs().max() < 2e-2


def test_ragged_with_params_and_shard(cpu_kernel):
    kern = cpu_kernel(q_heads=9, kv_heads=3)
    q = torch.randn(300, 9, 64, dtype=torch.bfloat16)
    k = torch.randn(420, 3, 64, dtype=torch.bfloat16)
    cu_q = torch.tensor([0, 100, 300], dtype=torch.int32)
    cu_k = torch.tensor([0, 160, 420], dtype=torch.int32)
    kw = dict(cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=200,
              max_seqlen_k=260, threshold=0.9, softmax_scale=0.2,
              return_lse=True, return_mask=True)
    o, lse, m = kern.prefill(q, k, k, **kw)
    o2, lse2, m2 = kern.prefill(q[:, 6:9], k[:, 2:3], k[:, 2:3], **kw)
    assert torch.equal(o2, o[:, 6:9]) and torch.equal(lse2, lse[6:9])
    assert torch.equal(m2.to_block_dense(), m.to_block_dense()[:, 6:9])
    est = kern.estimate(q, k, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                        max_seqlen_q=200, max_seqlen_k=260, threshold=0.9)
    assert torch.equal(est.to_block_dense(), m.to_block_dense())


@pytest.mark.parametrize("settings,match", [
    ({"threshold": 1.5}, r"params\.threshold_high 1\.5 is out of range"),
    ({"threshold_low": 0.0}, r"params\.threshold_low 0 is out of range"),
    ({"temp_high": -1.0}, r"params\.temp_high -1 is out of range"),
    ({"temp": float("inf")}, r"params\.temp_high inf"),
    ({"softmax_scale": float("nan")}, r"params\.softmax_scale nan"),
    ({"softmax_scale": -0.1}, r"params\.softmax_scale -0\.1"),
    ({"recent_blocks": 0}, r"params\.recent_blocks 0 is out of range"),
])
def test_bad_values_name_the_field(kern, settings, match):
    q, k, v = R.workload(1, 4, 2, 64, 64, 64, 10000.0, 6)
    with pytest.raises(ValueError, match=match):
        kern.prefill(q, k, v, **settings)
    with pytest.raises(ValueError, match=match):  # the cached signature
        kern.prefill(q, k, v, **settings)


@pytest.mark.parametrize("call,settings,match", [
    ("prefill", {"thresold": 0.9}, "unknown method parameter 'thresold'"),
    ("prefill", {"threshold": "high"}, "threshold must be a number"),
    ("prefill", {"threshold": True}, "threshold must be a number"),
    ("prefill", {"calibrate": 2}, "calibrate must be True or False"),
    ("prefill", {"recent_blocks": 2.5}, "recent_blocks must be an integer"),
    ("prefill", {"threshold": 0.9, "threshold_high": 0.8}, "not both"),
    ("estimate", {"softmax_scale": 0.1}, "estimate takes"),
    ("sparse_attention", {"threshold": 0.9}, "sparse_attention takes"),
])
def test_bad_names_and_types(kern, call, settings, match):
    q, k, v = R.workload(1, 4, 2, 64, 64, 64, 10000.0, 7)
    mask = kern.estimate(q, k)
    args = {"prefill": (q, k, v), "estimate": (q, k),
            "sparse_attention": (q, k, v, mask)}[call]
    with pytest.raises(TypeError, match=match):
        getattr(kern, call)(*args, **settings)


def test_params_mapping_and_keywords(kern):
    q, k, v = R.workload(1, 4, 2, 64, 64, 64, 10000.0, 8)
    with pytest.raises(TypeError, match="both as a keyword and in params"):
        kern.prefill(q, k, v, params={"threshold": 0.9}, threshold=0.9)
    with pytest.raises(TypeError, match="params must be a mapping"):
        kern.prefill(q, k, v, params=[("threshold", 0.9)])
    a = kern.prefill(q, k, v, params={"threshold": 0.9}, softmax_scale=0.1)
    b = kern.prefill(q, k, v, threshold=0.9, softmax_scale=0.1)
    assert torch.equal(a, b)


def test_many_settings_on_one_signature(kern):
    """More settings than one signature keeps structs for: the oldest are
    dropped and made again, the defaults stay."""
    q, k, v = R.workload(1, 4, 2, 64, 96, 64, 10000.0, 9)
    first = kern.prefill(q, k, v, softmax_scale=0.01)
    for i in range(100):
        kern.prefill(q, k, v, softmax_scale=0.02 + i * 1e-3)
    assert torch.equal(kern.prefill(q, k, v, softmax_scale=0.01), first)
    assert torch.equal(kern.prefill(q, k, v),
                       kern.prefill(q, k, v, softmax_scale=0.125))
