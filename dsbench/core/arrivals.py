"""Arrival schedules of open-loop load, and the order prompts are drawn in: pure, drawn before a
point starts, testable without a clock."""

from __future__ import annotations

import numpy as np


def poisson_arrivals(
    rate: float, seed: int = 0, count: int | None = None, duration_s: float | None = None
) -> np.ndarray:
    """Send times (seconds after the point starts) of a Poisson process of `rate` requests/s:
    the first `count`, or every one before `duration_s`. Seeded: the same schedule every run."""
    return arrivals(rate, seed, count, duration_s)


def arrivals(
    rate: float,
    seed: int = 0,
    count: int | None = None,
    duration_s: float | None = None,
    burstiness: float = 1.0,
    ramp_up_s: float = 0.0,
) -> np.ndarray:
    """Send times (seconds after the point starts) of a renewal process of mean `rate` requests/s.

    Gaps are Gamma(shape = burstiness, mean = 1 / rate), as vLLM's `bench serve --burstiness`:
    1 is Poisson, below 1 bursty (clustered arrivals, long lulls), above 1 more regular. With
    `ramp_up_s` the rate climbs linearly from 0 to `rate` over that time (arrivals thinned with
    probability t / ramp_up_s). The first `count`, or every one before `duration_s`; seeded.
    """
    if not rate > 0 or (count is None) == (duration_s is None):
        raise ValueError("need a positive rate and exactly one of count or duration_s")
    if not burstiness > 0 or ramp_up_s < 0:
        raise ValueError("burstiness must be > 0 and ramp_up_s >= 0")
    rng = np.random.default_rng(seed)

    def gaps(n: int) -> np.ndarray:
        if burstiness == 1.0:  # Poisson, drawn as before so existing seeds keep their schedules
            return rng.exponential(1.0 / rate, size=n)
        return rng.gamma(burstiness, 1.0 / (rate * burstiness), size=n)

    def thin(times: np.ndarray) -> np.ndarray:
        if not ramp_up_s:
            return times
        return times[rng.random(len(times)) < np.minimum(1.0, times / ramp_up_s)]

    out, t, kept = [], 0.0, 0
    block = max(16, int(rate * (duration_s or 0) * 1.2), count or 0)
    while (count is not None and kept < count) or (duration_s is not None and t < duration_s):
        times = t + np.cumsum(gaps(block))
        t = float(times[-1])
        times = thin(times if duration_s is None else times[times < duration_s])
        out.append(times)
        kept += len(times)
    result = np.concatenate(out)
    return result[:count] if count is not None else result


def prompt_order(n_prompts: int, seed: int | None) -> callable:
    """index(request id) -> prompt index. seed None: cycle in file order; else a seeded shuffle
    of all prompts per pass (every prompt used once before any repeats; the same id always gets
    the same prompt, whichever client process sends it)."""
    if seed is None:
        return lambda i: i % n_prompts
    cache: dict[int, np.ndarray] = {}

    def index(i: int) -> int:
        epoch = i // n_prompts
        if epoch not in cache:
            cache[epoch] = np.random.default_rng([seed, epoch]).permutation(n_prompts)
        return int(cache[epoch][i % n_prompts])

    return index
