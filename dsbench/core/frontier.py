"""Throughput vs per-user speed frontiers and the best operating point under a per-user SLO."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def concurrency_grid(max_concurrency: int, levels: int = 40) -> np.ndarray:
    """Concurrency levels 1..max: every integer up to 16, then geometric, at least `levels` in all
    when the range allows it."""
    max_c = int(max_concurrency)
    if max_c < 1:
        raise ValueError("max concurrency must be >= 1")
    dense = np.arange(1, min(16, max_c) + 1)
    if max_c <= 16:
        return dense
    n = levels
    while True:  # rounding merges neighbours; widen until enough distinct levels remain
        geo = np.unique(np.round(np.geomspace(16, max_c, n)).astype(int))
        grid = np.union1d(dense, geo)
        if len(grid) >= min(levels, max_c) or n > 4 * levels:
            return grid
        n += 4


@dataclass(frozen=True)
class SloChoice:
    """Best point of one method whose per-user speed meets the SLO (all None if infeasible)."""

    feasible: bool
    throughput: float | None = None
    concurrency: int | None = None
    tps_user: float | None = None
    verify_budget: float | None = None


def best_at_slo(concurrency, tps_user, throughput, verify_budget, slo: float) -> SloChoice:
    """Highest throughput among points with tps_user >= slo (tok/s per user)."""
    tps = np.asarray(tps_user, dtype=float)
    thr = np.asarray(throughput, dtype=float)
    ok = tps >= slo
    if not ok.any():
        return SloChoice(False)
    i = int(np.flatnonzero(ok)[np.argmax(thr[ok])])
    return SloChoice(
        True, float(thr[i]), int(np.asarray(concurrency)[i]), float(tps[i]), float(np.asarray(verify_budget)[i])
    )


def pareto_mask(tps_user, throughput) -> np.ndarray:
    """Points not dominated in both per-user speed and throughput (the frontier proper)."""
    tps = np.asarray(tps_user, dtype=float)
    thr = np.asarray(throughput, dtype=float)
    dominated = (
        (tps[None, :] >= tps[:, None])
        & (thr[None, :] >= thr[:, None])
        & ((tps[None, :] > tps[:, None]) | (thr[None, :] > thr[:, None]))
    )
    return ~dominated.any(axis=1)
