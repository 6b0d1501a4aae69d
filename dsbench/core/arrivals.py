"""Arrival schedules of open-loop load: pure, drawn before a point starts, testable without a clock."""

from __future__ import annotations

import numpy as np


def poisson_arrivals(
    rate: float, seed: int = 0, count: int | None = None, duration_s: float | None = None
) -> np.ndarray:
    """Send times (seconds after the point starts) of a Poisson process of `rate` requests/s:
    the first `count`, or every one before `duration_s`. Seeded: the same schedule every run."""
    if not rate > 0 or (count is None) == (duration_s is None):
        raise ValueError("need a positive rate and exactly one of count or duration_s")
    rng = np.random.default_rng(seed)
    if count is not None:
        return np.cumsum(rng.exponential(1.0 / rate, size=count))
    out, t = [], 0.0
    block = max(16, int(rate * duration_s * 1.2))
    while t < duration_s:
        times = t + np.cumsum(rng.exponential(1.0 / rate, size=block))
        out.append(times[times < duration_s])
        t = float(times[-1])
    return np.concatenate(out)
