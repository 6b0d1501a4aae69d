"""Regression verdicts: one metric, baseline runs vs candidate runs.

A metric has a direction (higher or lower is better) and a tolerance: relative (a fraction of
the baseline) or absolute (in the metric's unit). The change is measured on run means.
- One run a side: a bare threshold — regressed when worse than the baseline by more than the
  tolerance.
- Repeated runs (two or more on each side): regressed only when worse by more than the tolerance
  *and* Welch's one-sided t-test says the difference is not noise (p < alpha). Run-to-run spread
  then decides, not the threshold alone: a noisy metric needs a bigger or more certain drop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ttest_ind


@dataclass
class Verdict:
    status: str  # "pass", "regressed", "improved"
    baseline: float  # mean over runs
    candidate: float
    change: float  # candidate - baseline, in the metric's unit
    change_pct: float | None  # relative to the baseline, percent (None at a zero baseline)
    allowed: float  # the tolerance in the metric's unit (worse-direction magnitude)
    p_value: float | None = None  # Welch one-sided, when both sides have repeats
    runs: tuple[int, int] = (1, 1)


def judge(baseline, candidate, direction: str = "higher", tol_rel: float | None = 0.05, tol_abs: float | None = None,
          alpha: float = 0.05) -> Verdict:
    """Verdict for one metric from its baseline and candidate values (one per run)."""
    b = np.asarray(baseline, dtype=float).ravel()
    c = np.asarray(candidate, dtype=float).ravel()
    if not len(b) or not len(c):
        raise ValueError("need at least one value on each side")
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
    mb, mc = float(b.mean()), float(c.mean())
    sign = 1.0 if direction == "higher" else -1.0
    worse_by = sign * (mb - mc)  # > 0: the candidate is worse
    allowed = tol_abs if tol_abs is not None else abs(mb) * (tol_rel or 0.0)
    p = None
    if len(b) >= 2 and len(c) >= 2:
        if np.ptp(b) == 0 and np.ptp(c) == 0:
            p = 0.0 if mb != mc else 1.0
        else:
            p = float(ttest_ind(c, b, equal_var=False, alternative="less" if direction == "higher" else "greater").pvalue)
    significant = p is None or p < alpha
    if worse_by > allowed and significant:
        status = "regressed"
    elif -worse_by > allowed and (p is None or _improved_p(b, c, direction) < alpha):
        status = "improved"
    else:
        status = "pass"
    return Verdict(status, mb, mc, mc - mb, (mc - mb) / abs(mb) * 100 if mb else None, float(allowed), p, (len(b), len(c)))


def _improved_p(b: np.ndarray, c: np.ndarray, direction: str) -> float:
    if np.ptp(b) == 0 and np.ptp(c) == 0:
        return 0.0 if b.mean() != c.mean() else 1.0
    return float(ttest_ind(c, b, equal_var=False, alternative="greater" if direction == "higher" else "less").pvalue)
