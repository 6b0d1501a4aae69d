"""Regression verdicts that know their own noise.

A metric has a direction (higher or lower is better) and a tolerance `allowed` (in its unit). Each
side is one or more runs, each run a value with its standard error from the run itself
(core/uncertainty.py); repeated runs pool (`pool`). With D = how much worse the candidate is and
se its standard error:

- regressed:    D exceeds the tolerance with the stated confidence: H0 "D <= allowed" rejected at
                level alpha, Holm-corrected over every metric of the gate (`holm`), so the chance
                that an A/A comparison fails anywhere is at most alpha;
- improved:     the same, the other way (never fails anything, so not corrected);
- inconclusive: neither, and the comparison cannot resolve the tolerance: its minimum detectable
                change (MDC: the change found with 80 % power at the corrected level) exceeds it,
                or a side has no standard error at all (too few requests, an older file);
- pass:         neither, and the comparison would have resolved it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

POWER = 0.8


@dataclass(frozen=True)
class Side:
    """One side of a comparison: the mean over runs and the variance of that mean."""

    value: float
    var: float | None  # None: no standard error anywhere on this side
    df: float  # degrees of freedom of `var` (inf: a run's own bootstrap; k - 1: spread over k runs)
    runs: int
    reason: str | None = None  # why var is None
    longer: float | None = None  # how many times longer the runs must be to give a var


def pool(values, ses=None, reasons=None, longer=None) -> Side:
    """A side from its runs' values and within-run standard errors (None where a run has none).

    Repeats pool: the variance of their mean is the larger of the mean within-run variance / k
    and the spread between runs / k (run-to-run effects a single run cannot see).
    """
    v = np.asarray(values, dtype=float).ravel()
    k = len(v)
    if not k:
        raise ValueError("need at least one value on each side")
    ses = list(ses) if ses is not None else [None] * k
    within = float(np.mean(np.square(ses))) / k if all(s is not None for s in ses) else None
    between = float(v.var(ddof=1)) / k if k >= 3 else None  # two runs' spread is no estimate
    reason = next((r for r in (reasons or []) if r), None)
    grow = max((x for x in (longer or []) if x), default=None)
    if within is None and between is None:
        return Side(float(v.mean()), None, math.inf, k, reason or "no standard error recorded", grow)
    if between is not None and (within is None or between > within):
        return Side(float(v.mean()), between, k - 1.0, k)
    return Side(float(v.mean()), within, math.inf, k)


@dataclass
class Verdict:
    status: str  # "pass", "regressed", "improved", "inconclusive"
    baseline: float  # pooled over runs
    candidate: float
    change: float  # candidate - baseline, in the metric's unit
    change_pct: float | None  # relative to the baseline, percent (None at a zero baseline)
    allowed: float  # the tolerance in the metric's unit (worse-direction magnitude)
    se: float | None = None  # standard error of the change
    p_value: float | None = None  # one-sided, H0: worse by no more than `allowed`
    p_improved: float | None = None
    mdc: float | None = None  # minimum detectable change, metric's unit
    runs: tuple[int, int] = (1, 1)
    reason: str | None = None  # why inconclusive
    longer: float | None = None  # how many times longer (or how many more runs a side) would resolve it
    worse: float = 0.0  # how much worse the candidate is, metric's unit (< 0: better)


def compare(baseline: Side, candidate: Side, direction: str = "higher", allowed: float = 0.0,
            alpha: float = 0.05, metrics: int = 1) -> Verdict:
    """The comparison's figures; `decide` sets the status (Holm over all the gate's metrics).
    `metrics`: how many the gate compares (the MDC is at alpha / metrics, Holm's first step)."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
    mb, mc = baseline.value, candidate.value
    worse = (mb - mc) if direction == "higher" else (mc - mb)  # > 0: the candidate is worse
    v = Verdict("pass", mb, mc, mc - mb, (mc - mb) / abs(mb) * 100 if mb else None, float(allowed),
                runs=(baseline.runs, candidate.runs), worse=worse)
    if baseline.var is None or candidate.var is None:
        side = baseline if baseline.var is None else candidate
        v.status, v.reason, v.longer = "inconclusive", side.reason, side.longer
        return v
    var = baseline.var + candidate.var
    # Welch-Satterthwaite: terms from a run's own bootstrap carry infinite degrees of freedom
    denom = sum(x.var ** 2 / x.df for x in (baseline, candidate) if math.isfinite(x.df) and x.var)
    df = var ** 2 / denom if denom > 0 else math.inf
    v.se = math.sqrt(var)
    dist = student_t(df) if math.isfinite(df) else norm
    if v.se == 0:
        v.p_value = 0.0 if worse > allowed else 1.0
        v.p_improved = 0.0 if -worse > allowed else 1.0
        v.mdc = 0.0
    else:
        v.p_value = float(dist.sf((worse - allowed) / v.se))
        v.p_improved = float(dist.sf((-worse - allowed) / v.se))
        v.mdc = float(dist.ppf(1 - alpha / max(1, metrics)) + dist.ppf(POWER)) * v.se
    return v


def judge(baseline: Side, candidate: Side, direction: str = "higher", allowed: float = 0.0, alpha: float = 0.05) -> Verdict:
    """One metric compared and decided on its own."""
    v = compare(baseline, candidate, direction, allowed, alpha)
    decide([v], alpha)
    return v


def decide(verdicts: list[Verdict], alpha: float = 0.05) -> None:
    """Set each verdict's final status in place: Holm over the regressed tests, then improved,
    pass or inconclusive."""
    tested = [v for v in verdicts if v.p_value is not None]  # the others are inconclusive already
    for v, reject in zip(tested, holm([v.p_value for v in tested], alpha)):
        if reject:
            v.status = "regressed"
        elif v.p_improved is not None and v.p_improved < alpha:
            v.status = "improved"
        elif v.mdc is not None and v.mdc > v.allowed:
            v.status = "inconclusive"
            v.reason = "the runs cannot resolve the tolerance (minimum detectable change above it)"
            v.longer = (v.mdc / v.allowed) ** 2 if v.allowed > 0 else None
        else:
            v.status = "pass"


def holm(p_values, alpha: float = 0.05) -> list[bool]:
    """Holm's step-down rejections: family-wise error at most alpha."""
    p = np.asarray(p_values, dtype=float)
    out = np.zeros(len(p), dtype=bool)
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] >= alpha / (len(p) - rank):
            break
        out[i] = True
    return out.tolist()
