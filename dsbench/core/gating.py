"""Regression verdicts that know their own noise.

A metric has a direction (higher or lower is better) and a tolerance `allowed` (in its unit). Each
side is one or more runs, each run a value with its standard error from the run itself
(core/uncertainty.py); repeated runs pool (`pool`), and where a side has three or more their
spread beyond their own errors (`run_to_run`) is added to every run of both sides. With D = how
much worse the candidate is and se its standard error:

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


def run_to_run(sides) -> tuple[float, float] | None:
    """(variance, degrees of freedom) between runs beyond their own standard errors: what a
    server's state, its CPU's clock or a co-tenant changes from one run to the next, which no
    single run can see. From every side of three or more runs (`sides`: (values, ses) pairs);
    None when no side has them."""
    num, df = 0.0, 0
    for values, ses in sides:
        v = np.asarray(values, dtype=float).ravel()
        if len(v) < 3:
            continue
        within = float(np.mean(np.square(ses))) if all(x is not None for x in ses) else 0.0
        num += (len(v) - 1) * max(0.0, float(v.var(ddof=1)) - within)
        df += len(v) - 1
    return (num / df, float(df)) if df else None


def pool(values, ses=None, reasons=None, longer=None, between: tuple[float, float] | None = None) -> Side:
    """A side from its runs' values and within-run standard errors (None where a run has none).

    The variance of their mean is (mean within-run variance + the run-to-run variance
    `between`) / k, its degrees of freedom by Satterthwaite; without `between` (no side has
    three runs) only the runs' own errors count.
    """
    v = np.asarray(values, dtype=float).ravel()
    k = len(v)
    if not k:
        raise ValueError("need at least one value on each side")
    ses = list(ses) if ses is not None else [None] * k
    known = all(x is not None for x in ses)
    if not known and between is None:
        reason = next((r for r in (reasons or []) if r), None) or "no standard error recorded"
        return Side(float(v.mean()), None, math.inf, k, reason, max((x for x in (longer or []) if x), default=None))
    within = float(np.mean(np.square(ses))) if known else 0.0
    tau2, df = between if between is not None else (0.0, math.inf)
    var = (within + tau2) / k
    eff = var**2 / ((tau2 / k) ** 2 / df) if tau2 > 0 and math.isfinite(df) else math.inf
    return Side(float(v.mean()), var, eff, k)


def pool_sides(*sides, run_noise: float | None = None) -> list[Side]:
    """Each side — (values, ses[, reasons, longer]) over its runs — pooled, with the run-to-run
    variance measured on any side of three or more runs added to all of them; where none has
    three, `run_noise` (a declared relative standard deviation between runs) stands in."""
    between = run_to_run([(s[0], s[1]) for s in sides])
    if between is None and run_noise:
        level = float(np.mean([x for s in sides for x in s[0]]))
        between = ((run_noise * level) ** 2, math.inf)
    return [pool(*s, between=between) for s in sides]


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


def compare(
    baseline: Side,
    candidate: Side,
    direction: str = "higher",
    allowed: float = 0.0,
    alpha: float = 0.05,
    metrics: int = 1,
) -> Verdict:
    """The comparison's figures; `decide` sets the status (Holm over all the gate's metrics).
    `metrics`: how many the gate compares (the MDC is at alpha / metrics, Holm's first step)."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
    mb, mc = baseline.value, candidate.value
    worse = (mb - mc) if direction == "higher" else (mc - mb)  # > 0: the candidate is worse
    v = Verdict(
        "pass",
        mb,
        mc,
        mc - mb,
        (mc - mb) / abs(mb) * 100 if mb else None,
        float(allowed),
        runs=(baseline.runs, candidate.runs),
        worse=worse,
    )
    if baseline.var is None or candidate.var is None:
        side = baseline if baseline.var is None else candidate
        v.status, v.reason, v.longer = "inconclusive", side.reason, side.longer
        return v
    var = baseline.var + candidate.var
    # Welch-Satterthwaite: terms from a run's own bootstrap carry infinite degrees of freedom
    denom = sum(x.var**2 / x.df for x in (baseline, candidate) if math.isfinite(x.df) and x.var)
    df = var**2 / denom if denom > 0 else math.inf
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


def judge(
    baseline: Side, candidate: Side, direction: str = "higher", allowed: float = 0.0, alpha: float = 0.05
) -> Verdict:
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
