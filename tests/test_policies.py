"""Verification policies, above all DSpark's Algorithm 1 and its early stop."""

import numpy as np
import pytest

from dsbench.core.acceptance import RoundSampler
from dsbench.core.policies import (
    Policy,
    dspark_async_lengths,
    dspark_lengths,
    dspark_lengths_reference,
    expected_throughput_path,
    fixed_lengths,
    threshold_lengths,
    topk_lengths,
)
from dsbench.readers import read_acceptance, read_profile
from tests.conftest import smooth_verify_table


def _expected_theta(conf, lengths, verify_s, fixed_s=0.0):
    """Expected committed tokens per second of a schedule: (R + sum of admitted survivals) / time."""
    a = np.cumprod(conf, axis=-1)
    r, g = conf.shape
    admitted = np.arange(g)[None, :] < lengths[:, None]
    return (r + a[admitted].sum()) / (fixed_s + verify_s[r + lengths.sum()])


def _random_conf(rng, r, g):
    return rng.beta(4, 1.5, size=(r, g))


def test_vectorised_scheduler_equals_line_by_line_algorithm_1():
    rng = np.random.default_rng(0)
    jagged = read_profile("h100-qwen3-8b").surface()
    for trial in range(60):
        r, g = int(rng.integers(1, 40)), int(rng.integers(1, 12))
        conf = _random_conf(rng, r, g)
        table = jagged.slice(r).table(r * (1 + g) + 1) if trial % 2 else smooth_verify_table(r, g)
        np.testing.assert_array_equal(dspark_lengths(conf, table), dspark_lengths_reference(conf, table))


def test_batched_rounds_equal_single_calls():
    rng = np.random.default_rng(1)
    conf = _random_conf(rng, 5 * 8, 7).reshape(5, 8, 7)
    table = smooth_verify_table(8, 7)
    batched = dspark_lengths(conf, table)
    for t in range(5):
        np.testing.assert_array_equal(batched[t], dspark_lengths(conf[t], table))


def test_admitted_drafts_are_prefixes_in_survival_order():
    """Every admitted candidate has survival >= every rejected one (so prefixes stay contiguous)."""
    rng = np.random.default_rng(2)
    conf = _random_conf(rng, 32, 7)
    l = dspark_lengths(conf, smooth_verify_table(32, 7))
    a = np.cumprod(conf, axis=-1)
    mask = np.arange(7)[None, :] < l[:, None]
    assert 0 < mask.sum() < mask.size
    assert a[mask].min() >= a[~mask].max()


def _unimodal(theta):
    d = np.sign(np.diff(theta))
    d = d[d != 0]
    return not np.any((d[:-1] < 0) & (d[1:] > 0))


def test_early_stop_is_optimal_where_throughput_is_unimodal_along_the_path():
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(300):
        r, g = int(rng.integers(1, 64)), int(rng.integers(2, 10))
        conf = _random_conf(rng, r, g)
        table = smooth_verify_table(
            r, g, knee=int(rng.integers(r, r * (1 + g))), per_token_s=10 ** rng.uniform(-5.5, -4)
        )
        s = np.sort(np.cumprod(conf, -1).ravel())[::-1][None, :]
        theta = expected_throughput_path(s, r, table)[0]
        if not _unimodal(theta):
            continue
        checked += 1
        greedy = dspark_lengths(conf, table)
        full = dspark_lengths(conf, table, early_stop=False)
        assert greedy.sum() == full.sum()
        assert _expected_theta(conf, greedy, table) == pytest.approx(theta.max(), rel=1e-12)
    assert checked >= 200


def test_early_stop_shortfall_on_jagged_profile_is_reported(record_property):
    """On the step-wise (tile-quantised) H100 roofline Algorithm 1 can stop at a step short of
    the global optimum. Measure how far with DSpark's math confidences (default spread); it must
    never beat the exhaustive search. Measured: mean 0.1 %, max 1.3 % (seed 4)."""
    surface = read_profile("h100-qwen3-8b").surface()
    curve = next(c for c in read_acceptance("qwen3-8b") if (c.method, c.domain) == ("dspark", "math"))
    sampler = RoundSampler(curve.conditional)
    rng = np.random.default_rng(4)
    shortfalls = []
    for r in (1, 4, 8, 32, 64, 96, 128, 184):
        table = surface.slice(r).table(r * 8 + 1)
        for _ in range(10):
            conf = sampler.sample(rng, (r,)).astype(float)
            greedy = _expected_theta(conf, dspark_lengths(conf, table), table)
            best = _expected_theta(conf, dspark_lengths(conf, table, early_stop=False), table)
            assert greedy <= best * (1 + 1e-12)
            shortfalls.append(1 - greedy / best)
    shortfalls = np.array(shortfalls)
    record_property("jagged_shortfall_mean", float(shortfalls.mean()))
    record_property("jagged_shortfall_max", float(shortfalls.max()))
    print(
        f"Algorithm 1 on the jagged H100 roofline: mean shortfall {shortfalls.mean():.2%}, max {shortfalls.max():.2%}, "
        f"short in {np.mean(shortfalls > 0):.0%} of rounds"
    )
    assert shortfalls.max() > 0  # the profile really is jagged enough to show the effect
    assert shortfalls.mean() < 0.02


def test_dspark_never_worse_than_full_block_on_smooth_profiles():
    rng = np.random.default_rng(5)
    for _ in range(200):
        r, g = int(rng.integers(1, 128)), int(rng.integers(1, 12))
        conf = _random_conf(rng, r, g)
        table = smooth_verify_table(
            r, g, knee=int(rng.integers(r, r * (1 + g))), per_token_s=10 ** rng.uniform(-5.5, -4)
        )
        fixed_s = float(rng.uniform(0, 0.005))
        d = _expected_theta(conf, dspark_lengths(conf, table, fixed_s), table, fixed_s)
        f = _expected_theta(conf, fixed_lengths(conf), table, fixed_s)
        assert d >= f * (1 - 1e-12)


def test_budget_shrinks_when_verification_gets_expensive():
    rng = np.random.default_rng(6)
    conf = _random_conf(rng, 64, 7)
    cheap = dspark_lengths(conf, smooth_verify_table(64, 7, knee=64 * 8)).mean()
    busy = dspark_lengths(conf, smooth_verify_table(64, 7, knee=64, per_token_s=1e-4)).mean()
    assert cheap > busy >= 0


def test_threshold_truncates_at_first_low_confidence():
    conf = np.array([[0.9, 0.4, 0.95], [0.3, 0.9, 0.9], [0.8, 0.8, 0.8]])
    np.testing.assert_array_equal(threshold_lengths(conf, 0.5), [1, 0, 3])
    np.testing.assert_array_equal(fixed_lengths(conf, 2), [2, 2, 2])
    np.testing.assert_array_equal(fixed_lengths(conf), [3, 3, 3])


def test_topk_takes_best_survivals():
    conf = np.array([[0.9, 0.9], [0.5, 0.9], [0.99, 0.99]])
    # survivals: r0 .9 .81, r1 .5 .45, r2 .99 .98 -> top 3 = r2,r2,r0
    np.testing.assert_array_equal(topk_lengths(conf, 3), [1, 0, 2])


def test_async_capacity_lags_two_rounds():
    rng = np.random.default_rng(8)
    conf = _random_conf(rng, 6 * 16, 7).reshape(6, 16, 7)
    conf[:3] *= 0.3  # three poor rounds, then good ones
    table = smooth_verify_table(16, 7)
    l = dspark_async_lengths(conf, table, lag=2)
    cap = dspark_lengths(conf, table, early_stop=False).sum(-1)
    np.testing.assert_array_equal(l.sum(-1)[2:], cap[:-2])
    np.testing.assert_array_equal(l.sum(-1)[:2], cap[:2])


@pytest.mark.parametrize(
    "text,expected",
    [
        ("dspark", Policy("dspark")),
        ("fixed:3", Policy("fixed", 3.0)),
        ("threshold:0.6", Policy("threshold", 0.6)),
        ("dspark-async", Policy("dspark-async")),
    ],
)
def test_policy_parse(text, expected):
    assert Policy.parse(text) == expected


@pytest.mark.parametrize("text", ["greedy", "threshold", "threshold:1.5", "fixed:-1", "fixed:nan", "fixed:x"])
def test_policy_parse_rejects(text):
    with pytest.raises(ValueError):
        Policy.parse(text)
