"""core/uncertainty.py: the standard errors a single run claims must match the spread of many runs."""

import numpy as np
import pytest

from dsbench.core.uncertainty import block_length, block_ratio_se, percentile_se, rate_se, ratio_se


def test_bootstrap_se_of_a_percentile_matches_the_spread_over_runs():
    """p50 and p90 of 400 exponential latencies (seed 0): the se one run's bootstrap gives is
    within 20 % of the standard deviation over 2,000 independent runs."""
    rng = np.random.default_rng(0)
    runs = rng.exponential(1.0, size=(2000, 400))
    for q in (50, 90):
        truth = np.percentile(runs, q, axis=1).std()
        claimed = np.mean([percentile_se(runs[i], q, seed=i).se for i in range(20)])
        assert claimed == pytest.approx(truth, rel=0.2), q


def test_a_tail_percentile_from_too_few_requests_has_no_se_and_says_how_many_more():
    e = percentile_se(np.arange(100.0), 99)
    assert e.se is None and "100 requests are too few" in e.reason and e.longer == pytest.approx(5.0)
    assert percentile_se(np.arange(500.0), 99).se is not None


def _ar1(rng, n: int, phi: float, runs: int) -> np.ndarray:
    x = np.zeros((runs, n))
    noise = rng.normal(size=(runs, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return 10 + x


def test_block_bootstrap_covers_correlation_in_time_and_an_iid_one_does_not():
    """Throughput per time bin correlated over ~5 bins (AR(1), phi 0.8; seed 1): blocks of two
    correlation lengths give the spread of the mean over 400 runs within 25 %; resampling single
    bins claims less than 60 % of it (the false certainty that makes a gate cry wolf)."""
    rng = np.random.default_rng(1)
    series = _ar1(rng, 1000, 0.8, 400)
    truth = series.mean(axis=1).std()
    block = block_length(1000, 5.0)
    ones = np.ones(1000)
    claimed = np.mean([block_ratio_se(series[i], ones, block, seed=i).se for i in range(20)])
    iid = np.mean([block_ratio_se(series[i], ones, 1, seed=i).se for i in range(20)])
    assert claimed == pytest.approx(truth, rel=0.25)
    assert iid < 0.6 * truth


def test_a_window_of_few_blocks_has_no_se():
    e = block_ratio_se(np.ones(40), np.ones(40), block=10)
    assert e.se is None and "4 independent blocks" in e.reason and e.longer == pytest.approx(2.0)


def test_ratio_se_matches_the_spread_of_a_ratio_of_sums():
    """tau = sum(tokens) / sum(steps) over 200 requests of varying length and acceptance (seed 2):
    the delta-method se is within 15 % of the spread over 2,000 runs."""
    rng = np.random.default_rng(2)
    steps = rng.integers(10, 80, size=(2000, 200)).astype(float)
    tokens = steps * rng.uniform(1.5, 4.0, size=(2000, 200))
    truth = (tokens.sum(1) / steps.sum(1)).std()
    claimed = np.mean([ratio_se(tokens[i], steps[i]).se for i in range(50)])
    assert claimed == pytest.approx(truth, rel=0.15)


def test_zero_errors_in_a_short_run_is_not_certainty():
    e = rate_se(0, 20)
    assert e.value == 0.0 and e.se > 0.04
    assert rate_se(0, 20_000).se < 0.001
