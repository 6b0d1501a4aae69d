"""Step-time surfaces (interpolation over B and R) and the roofline model."""

import json

import numpy as np
import pytest

from dsbench.core import roofline as rl
from dsbench.core.sps import SpsCurve, StepTimeSurface
from dsbench.readers import read_profile
from dsbench.shipped import read_gpu, read_model_shape


def test_curve_interpolates_and_extrapolates_linearly():
    c = SpsCurve(np.array([1.0, 10.0, 20.0]), np.array([1.0, 1.0, 3.0]))
    np.testing.assert_allclose(c.step_time([1, 5, 15, 30, 0.5]), [1.0, 1.0, 2.0, 5.0, 1.0])
    assert c.sps(15) == pytest.approx(0.5)
    t = c.table(25)
    assert len(t) == 26 and t[0] == t[1] and t[25] == pytest.approx(4.0)


def test_surface_interpolates_between_request_levels():
    b = [1, 100, 8, 100]
    r = [1, 1, 8, 8]
    s = [1.0, 2.0, 3.0, 4.0]
    surf = StepTimeSurface(b, r, s)
    assert surf.step_time(100, 1) == pytest.approx(2.0)
    assert surf.step_time(100, 4.5) == pytest.approx(3.0)  # halfway in R
    assert surf.step_time(100, 15) == pytest.approx(6.0)  # extrapolated in R
    one_d = StepTimeSurface([1, 64], [1, 1], [0.01, 0.02])
    assert one_d.step_time(64, 300) == pytest.approx(0.02)  # a 1-D SPS(B) ignores R


def test_roofline_reproduces_hand_computed_h100_qwen3_8b():
    """B = 512 tokens, R = 64 requests, context 2048 on H100 with default knobs, by hand:
    weights 7,568,097,280 params (36 layers x 192,937,984 + head 622,329,856) x 2 B = 15.136 GB;
    KV 64 x 2048 x 147,456 B = 19.327 GB; memory time 34.463 GB / (3.35 TB/s x 0.8) = 12.860 ms;
    compute 2 x 7.568e9 x 512 + 4 x 36 x 32 x 128 x 2048 x 512 = 7.750e12 + 0.618e12 = 8.368e12
    FLOP / (989.4 TFLOP/s x 0.6) = 14.096 ms -> compute-bound; + 1 ms + 64 x 4 us = 15.352 ms."""
    hw = read_gpu("NVIDIA H100 80GB HBM3")
    m = read_model_shape("qwen3-8b")
    assert m.layers * (m.attn_params + m.dense_mlp_params) + m.head_params == 7_568_097_280
    assert m.kv_bytes_per_token() == 147_456
    t = float(rl.verify_step_s(hw, m, rl.RooflineKnobs(), 512, 64, 2048))
    assert t == pytest.approx(15.352e-3, rel=1e-4)
    # memory-bound decode at R = 1: (15.136 GB + 0.302 GB) / 2.68 TB/s + 1.004 ms = 6.765 ms
    assert float(rl.verify_step_s(hw, m, rl.RooflineKnobs(), 1, 1, 2048)) == pytest.approx(6.765e-3, rel=1e-3)


def test_roofline_is_stepwise_and_monotone():
    hw, m = read_gpu("H100"), read_model_shape("qwen3-8b")
    b = np.arange(1, 4096)
    t = rl.verify_step_s(hw, m, rl.RooflineKnobs(), b, 32, 2048)
    assert np.all(np.diff(t) >= 0)
    jumps = np.flatnonzero(np.diff(t) > 1e-4) + 1  # indices where B crosses a tile edge
    assert len(jumps) > 10 and np.all((b[jumps] - 1) % 64 == 0)


def test_moe_touches_more_experts_as_batch_grows():
    m = read_model_shape("qwen3-30b-a3b")
    touched = m.mlp_params_touched(np.array([1, 8, 64, 4096]))
    assert np.all(np.diff(touched) > 0)
    assert touched[0] == pytest.approx(8 * m.expert_params + m.hidden * m.experts)
    assert touched[-1] == pytest.approx(m.experts * m.expert_params + m.hidden * m.experts, rel=1e-3)


def test_memory_bounds_concurrency():
    hw, m = read_gpu("H100"), read_model_shape("qwen3-8b")
    n = rl.max_requests(hw, m, rl.RooflineKnobs(), 2048)
    # (72 GB usable - 16.38 GB weights) / (2048 x 147,456 B) = 184
    assert n == 184
    # H200: (126.9 GB - 16.38 GB) / 0.302 GB = 365
    assert rl.max_requests(read_gpu("H200"), m, rl.RooflineKnobs(), 2048) == 365


def test_shipped_roofline_points_equal_the_exact_surface():
    p = read_profile("h100-qwen3-8b")
    assert p.source == "roofline"
    exact = p.surface()
    b, r, s = map(np.asarray, (p.batch_tokens, p.requests, p.step_s))
    for level in (1, 64, 1024):
        m = r == level
        np.testing.assert_allclose(exact.step_time(b[m], level), s[m], rtol=1e-12)


def test_unknown_gpu_is_an_error_not_a_default():
    from dsbench.errors import InputError

    with pytest.raises(InputError, match="unknown GPU 'TPU v5'"):
        read_gpu("TPU v5")


def test_model_spec_from_hf_folder(tmp_path):
    cfg = json.loads(read_model_shape.__globals__["resolve_shipped"]("qwen3-4b", "models").read_text())
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    spec = read_model_shape(tmp_path / "m")
    assert (spec.hidden, spec.layers, spec.tied_embeddings) == (2560, 36, True)


def test_noise_that_makes_a_level_faster_never_extrapolates_to_free_passes():
    """A measured profile whose R = 8 level came out slightly faster than R = 1 (ordinary CPU
    noise) once gave no-spec 5e14 tok/s per GPU: linear extrapolation in R went negative and was
    clamped to 1e-12 s. Beyond the measurements, a pass is never cheaper than the last one."""
    surf = StepTimeSurface([1, 64, 8, 64], [1, 1, 8, 8], [0.010, 0.020, 0.0099, 0.0199])
    r = np.array([16, 256, 4096])
    t = np.array([surf.step_time(64, x) for x in r])
    assert np.all(t >= 0.0199)  # the highest measured level's time, not below
    assert surf.step_time(64, 4.5) == pytest.approx((0.020 + 0.0199) / 2)  # inside: interpolated as before
    falling = SpsCurve(np.array([1.0, 10.0, 20.0]), np.array([1.0, 2.0, 1.9]))
    np.testing.assert_allclose(falling.step_time([30, 1000]), [1.9, 1.9])  # in B likewise
