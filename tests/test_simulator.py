"""The closed-loop simulator against closed forms, and the DSpark scheduler's behaviour under load."""

import numpy as np
import pytest

from dsbench.config import SweepConfig
from dsbench.core.acceptance import RoundSampler, Spread
from dsbench.core.methods import DraftCost
from dsbench.core.policies import Policy
from dsbench.core.simulator import Scenario, closed_form, simulate
from dsbench.readers import read_acceptance, read_profile
from dsbench.sweep import build_scenarios

CURVES = read_acceptance("qwen3-8b")
PROFILE = read_profile("h100-qwen3-8b")


def _scenarios(**kw):
    cfg = SweepConfig(**kw)
    return build_scenarios(cfg, cfg.validate(), PROFILE, CURVES, "qwen3-8b")


@pytest.mark.parametrize("domain", ["math", "chat", "mix"])
@pytest.mark.parametrize("method", ["no-spec", "mtp-1", "dflash", "eagle3"])
@pytest.mark.parametrize("concurrency", [1, 16, 100])
def test_fixed_length_simulation_matches_closed_form(method, domain, concurrency):
    """Simulated tau and per-user TPS agree with E[tau] = 1 + sum a_j and E[tau] / round time
    within 4 Monte-Carlo standard errors (fixed seed)."""
    sc = _scenarios(domain=domain)[method]
    pt = simulate(sc, concurrency, samples=30_000, seed=3)
    tau, tps = closed_form(sc, concurrency)
    tol = 4 * pt.throughput_rel_se + 1e-12
    assert pt.tau == pytest.approx(tau, rel=tol)
    assert pt.tps_user == pytest.approx(tps, rel=tol)
    assert pt.throughput_tok_s == pytest.approx(tps * concurrency, rel=tol)


def test_fixed_policy_on_dspark_scenario_matches_closed_form_at_partial_length():
    sc = _scenarios(domain="code", policy="fixed:3")["dspark"]
    pt = simulate(sc, 32, samples=40_000, seed=5)
    tau, tps = closed_form(sc, 32)
    assert pt.verify_budget == 4.0
    assert pt.tau == pytest.approx(tau, rel=4 * pt.throughput_rel_se)
    assert pt.tps_user == pytest.approx(tps, rel=4 * pt.throughput_rel_se)


def test_monte_carlo_error_meets_target():
    sc = _scenarios()["dspark"]
    for c in (1, 8, 64):
        assert simulate(sc, c).throughput_rel_se <= 0.004


def test_simulation_is_seeded():
    sc = _scenarios()["dspark"]
    assert simulate(sc, 12, seed=9) == simulate(sc, 12, seed=9)
    assert simulate(sc, 12, seed=9) != simulate(sc, 12, seed=10)


def test_dspark_budget_shrinks_with_concurrency():
    sc = _scenarios(domain="math")["dspark"]
    budgets = [simulate(sc, c, samples=8000).verify_budget for c in (1, 16, 64, 184)]
    assert budgets[0] > budgets[-1]
    assert budgets[0] >= 6.0  # nearly the whole 7-token block when the GPU is idle
    assert budgets[-1] < 0.8 * budgets[0]


def test_dspark_beats_full_block_dflash_backbone_under_load():
    """Same curves, same drafter: scheduling verification beats verifying everything at high load."""
    sc = _scenarios(domain="chat")["dspark"]
    full = Scenario(sc.samplers, sc.surface, sc.draft_cost, sc.gamma, Policy("fixed"))
    sched = simulate(sc, 184, samples=20_000)
    fixed = simulate(full, 184, samples=20_000)
    assert sched.throughput_tok_s > fixed.throughput_tok_s * 1.05


def test_dspark_async_is_close_to_dspark():
    scs = _scenarios(domain="mix", policy="dspark-async")
    sync = _scenarios(domain="mix")["dspark"]
    for c in (4, 64):
        a = simulate(scs["dspark"], c, samples=20_000).throughput_tok_s
        s = simulate(sync, c, samples=20_000).throughput_tok_s
        assert a == pytest.approx(s, rel=0.08)


def test_threshold_policy_verifies_less_than_fixed():
    sc = _scenarios(domain="chat", policy="threshold:0.7")["dspark"]
    pt = simulate(sc, 8, samples=10_000)
    assert 1.0 < pt.verify_budget < 8.0


def test_draft_cost_grid_interpolates_and_extrapolates():
    d = DraftCost([1, 1, 8, 8], [1, 7, 1, 7], [1.0, 7.0, 2.0, 8.0])
    assert d(1, 4) == pytest.approx(4.0)
    assert d(4.5, 1) == pytest.approx(1.5)
    assert d(15, 7) == pytest.approx(9.0)  # linear beyond the grid
    assert d(3, 0) == 0.0
    with pytest.raises(ValueError):
        DraftCost([1, 8, 8], [1, 1, 7], [1, 2, 3])


def test_zero_spread_sampler_reproduces_curve_exactly():
    s = RoundSampler([0.9, 0.5], Spread(0.0))
    p = s.sample(np.random.default_rng(0), (3,))
    np.testing.assert_allclose(p, [[0.9, 0.5]] * 3, rtol=1e-6)
