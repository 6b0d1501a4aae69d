"""Confidence metrics and Sequential Temperature Scaling on synthetic heads with known truth."""

import numpy as np
import pytest
from scipy.special import expit, logit

from dsbench.core.calibration import apply_temperatures, auc, brier, ece, metrics, sts


def test_metric_definitions():
    assert ece([0.1, 0.9], [0, 1]) == pytest.approx(0.1)
    assert ece([0.72, 0.74], [1, 0]) == pytest.approx(abs(0.73 - 0.5))  # both in bin 14
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert brier([1.0, 0.0], [1, 1]) == pytest.approx(0.5)
    assert np.isnan(auc([0.2, 0.3], [1, 1]))


def _rounds(rng, n=40_000, g=5, overconfidence=2.5):
    """True per-position acceptance p; a head reporting sigmoid(overconfidence * logit(p))."""
    p = expit(rng.normal(1.0, 1.2, size=(n, g)))
    accepted = np.cumprod(rng.random((n, g)) < p, axis=1).sum(1)
    head = expit(overconfidence * logit(p))
    return head, np.full(n, g), accepted


def test_sts_removes_overconfidence_and_keeps_ranking():
    rng = np.random.default_rng(0)
    head, proposal, accepted = _rounds(rng)
    fit = slice(0, 20_000)
    held = slice(20_000, None)
    temps = sts(head[fit], proposal[fit], accepted[fit])
    np.testing.assert_allclose(temps, 2.5, rtol=0.2)  # recovers the over-confidence factor
    before = metrics(head[held], proposal[held], accepted[held])
    after = metrics(apply_temperatures(head[held], temps), proposal[held], accepted[held])
    assert after["ece_mean"] < 0.3 * before["ece_mean"] and after["ece_mean"] < 0.02
    # position 1's ranking is untouched; later cumulative products mix positions' temperatures
    assert after["auc"][0] == pytest.approx(before["auc"][0], abs=1e-12)
    np.testing.assert_allclose(after["auc"], before["auc"], atol=0.02)


def test_calibrated_head_is_left_alone():
    rng = np.random.default_rng(1)
    head, proposal, accepted = _rounds(rng, overconfidence=1.0)
    temps = sts(head, proposal, accepted)
    np.testing.assert_allclose(temps, 1.0, rtol=0.15)
    assert metrics(head, proposal, accepted)["ece_mean"] < 0.02
