"""tau and per-position figures from known per-round counts."""

import numpy as np
import pytest

from dsbench.core.acceptstats import conditional, survival, tau


def test_figures_from_hand_counted_rounds():
    # five rounds with gamma = 3: (proposal, accepted); the last was cut short by a stop token
    proposal = [3, 3, 3, 2, 3]
    accepted = [3, 1, 0, 2, 1]
    committed = [4, 2, 1, 3, 1]  # a + 1, except the stop-token round (a, no bonus)
    assert tau(committed) == pytest.approx(11 / 5)
    # survival: k=1: a>=1 in 4 of 5 proposed; k=2: a>=2 in 2 of 5; k=3: a>=3 in 1 of 4 (l>=3 in 4)
    np.testing.assert_allclose(survival(proposal, accepted, 3), [4 / 5, 2 / 5, 1 / 4])
    # conditional: k=1: 4/5; k=2: a>=2 (2) over a>=1 & l>=2 (4); k=3: a>=3 (1) over a>=2 & l>=3 (1)
    np.testing.assert_allclose(conditional(proposal, accepted, 3), [4 / 5, 2 / 4, 1 / 1])


def test_positions_never_proposed_are_nan():
    assert np.isnan(survival([1, 1], [1, 0], 2)[1]) and np.isnan(conditional([1, 1], [1, 0], 2)[1])
    assert np.isnan(tau([]))


def test_fixed_length_rounds_match_chained_survival():
    rng = np.random.default_rng(0)
    c = np.array([0.9, 0.7, 0.5])
    accepted = np.cumprod(rng.random((50_000, 3)) < c, axis=1).sum(1)
    cond = conditional(np.full(50_000, 3), accepted, 3)
    np.testing.assert_allclose(cond, c, atol=0.01)
    np.testing.assert_allclose(survival(np.full(50_000, 3), accepted, 3), np.cumprod(c), atol=0.01)
    assert tau(accepted + 1) == pytest.approx(1 + np.cumprod(c).sum(), abs=0.02)
