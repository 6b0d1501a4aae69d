"""Within-run uncertainty: standard errors of a load point's figures from the run itself.

- Per-request figures (percentiles of TTFT, TPOT, per-user speed): bootstrap over requests.
- Ratios over requests (tau from per-request counts): delta method, i.i.d. requests.
- Figures over time (throughput; tau from counter scrapes): circular block bootstrap over time
  bins, blocks at least a few request lifetimes long so that bins a request spans stay together.
- Rates of events (error rate): binomial with one success and one failure added (Agresti-Caffo),
  so zero errors in a short run is not mistaken for certainty.

A figure the run cannot resolve gets `None` and the reason; a standard error from too few
observations would be worse than none (a bootstrap of p99 from 20 requests is the bootstrap of
their maximum, and says the p99 is known to the millisecond).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REPS = 1000  # bootstrap replicates: the se's own relative error is about 1 / sqrt(2 REPS), 2 %
MIN_TAIL = 5  # observations needed beyond a percentile to estimate it
MIN_BLOCKS = 8  # independent blocks a time series needs


@dataclass(frozen=True)
class Estimate:
    """A figure with its standard error (same unit), or the reason it has none."""

    value: float | None
    se: float | None
    n: int  # observations behind it (requests, or time bins)
    method: str
    reason: str | None = None
    longer: float | None = None  # with no se: how many times longer the run must be to give one


def percentile_se(x, q: float, seed: int = 0, reps: int = REPS) -> Estimate:
    """The q-th percentile (0-100) of `x` with its bootstrap standard error."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    value = float(np.percentile(x, q)) if n else None
    need = int(np.ceil(MIN_TAIL / (min(q, 100 - q) / 100))) if 0 < q < 100 else n + 1
    if n < need:
        return Estimate(
            value,
            None,
            n,
            "bootstrap over requests",
            f"{n} requests are too few for the {q:g}th percentile (needs {need})",
            need / max(n, 1),
        )
    rng = np.random.default_rng(seed)
    reps_ = np.percentile(x[rng.integers(n, size=(reps, n))], q, axis=1)
    return Estimate(value, float(reps_.std(ddof=1)), n, "bootstrap over requests")


def ratio_se(num, den) -> Estimate:
    """sum(num) / sum(den) over i.i.d. units with its delta-method standard error."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = len(num)
    if n == 0 or den.sum() <= 0:
        return Estimate(None, None, n, "delta method over requests", "nothing counted")
    r = num.sum() / den.sum()
    if n < 2 * MIN_TAIL:
        return Estimate(
            float(r),
            None,
            n,
            "delta method over requests",
            f"{n} requests are too few (needs {2 * MIN_TAIL})",
            2 * MIN_TAIL / max(n, 1),
        )
    resid = (num - r * den) / den.mean()
    return Estimate(float(r), float(resid.std(ddof=1) / np.sqrt(n)), n, "delta method over requests")


def rate_se(events: int, trials: int) -> Estimate:
    """events / trials with the Agresti-Caffo standard error (one event and one non-event added)."""
    if trials <= 0:
        return Estimate(None, None, 0, "binomial", "no trials")
    p = (events + 1) / (trials + 2)
    return Estimate(events / trials, float(np.sqrt(p * (1 - p) / (trials + 2))), trials, "binomial (Agresti-Caffo)")


def block_length(n_bins: int, bins_per_lifetime: float) -> int:
    """Bins per bootstrap block: two request lifetimes, and at least n^(1/3) (the usual rate)."""
    return max(1, int(np.ceil(max(2 * bins_per_lifetime, n_bins ** (1 / 3)))))


def block_ratio_se(num, den, block: int, seed: int = 0, reps: int = REPS, what: str = "time bins") -> Estimate:
    """sum(num) / sum(den) over a time series of bins, with its circular block bootstrap
    standard error (`block` bins per block). A plain total over time is the ratio with den = 1
    per bin (times the bin width)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = len(num)
    method = f"block bootstrap over {what}"
    if n == 0 or den.sum() <= 0:
        return Estimate(None, None, n, method, "nothing counted")
    value = float(num.sum() / den.sum())
    blocks = n // max(1, block)
    if blocks < MIN_BLOCKS:
        return Estimate(
            value,
            None,
            n,
            method,
            f"the window holds {blocks} independent blocks (needs {MIN_BLOCKS})",
            MIN_BLOCKS / max(blocks, 0.5),
        )
    rng = np.random.default_rng(seed)
    k = -(-n // block)  # blocks per replicate, wrapping round the end
    starts = rng.integers(n, size=(reps, k))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(reps, -1)[:, :n] % n
    d = den[idx].sum(axis=1)
    ok = d > 0
    reps_ = num[idx].sum(axis=1)[ok] / d[ok]
    return Estimate(value, float(reps_.std(ddof=1)), n, method)
