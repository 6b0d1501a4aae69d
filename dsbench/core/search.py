"""The live SLO search: where to measure next, and when the answer is bracketed.

Per-user speed falls and throughput rises as concurrency C grows, so the highest throughput
that meets an SLO on per-user speed sits at the largest C that meets it. The search brackets
that C between a measured point that meets the SLO and one above it that does not. Each next C
is where a latency model fitted to the points so far predicts the crossing: TPOT(C) = a + b C,
which is what a decode step does between the memory-bound floor and the compute-bound slope
(least squares over every valid point before a bracket exists; through the bracket's two ends
after, regula falsi with the Illinois guard so one end cannot stall). The stopping rule needs
no model: throughput rises with C, so the best throughput lies between the two ends' measured
throughputs, and the search stops when they are within `tolerance` of each other (or the ends
are adjacent concurrencies).

A point's figures are means over repeated windows with a Student-t interval; a point whose
interval straddles the SLO is measured again (its windows pooled) before it is judged.
Over-saturation (errors, a queue at the server, rising TTFT) ends escalation: such a point
counts as failing whatever its speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

VERDICTS = ("meets", "fails", "unsure")


@dataclass
class Measured:
    """Everything the search knows of one concurrency: per-window speeds (tok/s per user, the
    SLO's statistic) and throughputs (tok/s), pooled over its measurements."""

    concurrency: int
    speeds: list[float] = field(default_factory=list)
    throughputs: list[float] = field(default_factory=list)
    ttft_s: float | None = None  # the SLO's statistic of TTFT over the last measurement, seconds
    saturated: str | None = None  # why the server is past saturation here; None when it is not
    measurements: int = 0

    @property
    def speed(self) -> float:
        return float(np.mean(self.speeds)) if self.speeds else math.nan

    @property
    def throughput(self) -> float:
        return float(np.mean(self.throughputs)) if self.throughputs else math.nan

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Student-t interval of the mean speed over windows (tok/s); infinite with one window."""
        return t_interval(self.speeds, level)

    def throughput_interval(self, level: float = 0.95) -> tuple[float, float]:
        return t_interval(self.throughputs, level)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of `values`; (-inf, inf) below two values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return -math.inf, math.inf
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def verdict(p: Measured, slo: float, ttft_slo_s: float | None = None, level: float = 0.95) -> str:
    """meets / fails / unsure: the speed interval wholly above the SLO, wholly below, or across it
    (a saturated point, or one over the TTFT SLO, fails)."""
    if p.saturated or not p.speeds:
        return "fails"
    if ttft_slo_s is not None and p.ttft_s is not None and p.ttft_s > ttft_slo_s:
        return "fails"
    lo, hi = p.interval(level)
    return "meets" if lo >= slo else "fails" if hi < slo else "unsure"


def judged(p: Measured, slo: float, ttft_slo_s: float | None, repeats: int, level: float = 0.95) -> str:
    """The verdict the search acts on: an unsure point with measurements left stays unsure; after
    `repeats` measurements its mean decides."""
    v = verdict(p, slo, ttft_slo_s, level)
    if v != "unsure" or p.measurements < repeats:
        return v
    return "meets" if p.speed >= slo else "fails"


def affine_fit(points: list[Measured]) -> tuple[float, float] | None:
    """(a, b) of TPOT(C) = a + b C in seconds, least squares over `points`; None below two
    concurrencies."""
    c = np.array([p.concurrency for p in points], dtype=float)
    if len(set(c)) < 2:
        return None
    b, a = np.polyfit(c, [1.0 / p.speed for p in points], 1)
    return float(a), float(b)


def affine_crossing(points: list[Measured], slo: float) -> float | None:
    """C where the affine TPOT fit reaches 1 / slo; None when the fit has no rising slope (fewer
    than two concurrencies, or TPOT not growing)."""
    fit = affine_fit(points)
    if fit is None or not fit[1] > 0:
        return None
    return (1.0 / slo - fit[0]) / fit[1]


def fitted_frontier(a: float, b: float, top: int, gpus: int = 1) -> list[tuple[int, float, float]]:
    """(C, per-user speed, throughput per GPU) of the affine fit for C = 1..top: speed 1/TPOT,
    throughput C/TPOT (time to first token left out, so it runs a little above the measured)."""
    cs = np.unique(np.geomspace(1, max(1, top), 40).round().astype(int))
    tpot = a + b * cs
    ok = tpot > 0
    return [(int(c), float(1 / t), float(c / t / gpus)) for c, t in zip(cs[ok], tpot[ok])]


@dataclass(frozen=True)
class Step:
    """What the search does next: measure `concurrency`, or stop (`concurrency` None) with an
    `outcome`: bracketed, infeasible (c=1 fails), capped (`max_concurrency` still meets the SLO)
    or budget (the measurements ran out first)."""

    concurrency: int | None
    reason: str
    outcome: str | None = None


@dataclass(frozen=True)
class SearchSettings:
    slo: float  # tok/s per user, on the chosen statistic
    tolerance: float = 0.05  # relative throughput between the bracket's ends
    max_concurrency: int = 512
    start: int = 1
    growth: float = 4.0  # the most one escalation multiplies C by before a crossing is predicted
    repeats: int = 2  # measurements of a point whose interval straddles the SLO
    max_measurements: int = 16
    ttft_slo_s: float | None = None
    level: float = 0.95


def bracket(points: dict[int, Measured], s: SearchSettings) -> tuple[Measured | None, Measured | None, list[str]]:
    """(highest C meeting the SLO, lowest C above it failing, notes); unsure points are neither."""
    v = {c: judged(p, s.slo, s.ttft_slo_s, s.repeats, s.level) for c, p in points.items()}
    meets = sorted(c for c in v if v[c] == "meets")
    fails = sorted(c for c in v if v[c] == "fails")
    notes = []
    lo = meets[-1] if meets else None
    above = [c for c in fails if lo is None or c > lo]
    hi = above[0] if above else None
    if lo is not None and any(c < lo for c in fails):
        notes.append(
            f"not monotone: c={max(c for c in fails if c < lo)} fails the SLO but c={lo} meets it (noise, or a "
            "server whose speed is not falling with load); the bracket uses the highest meeting point"
        )
    return (points[lo] if lo is not None else None), (points[hi] if hi is not None else None), notes


def next_step(points: dict[int, Measured], s: SearchSettings, history: list[int] | None = None) -> Step:
    """The search's next move given every concurrency measured so far (`history`: the order
    they were measured in, for the Illinois guard)."""
    history = history or sorted(points)
    measured = sum(p.measurements for p in points.values())
    for c in history[::-1]:  # settle an unsure point first: everything else rests on it
        if judged(points[c], s.slo, s.ttft_slo_s, s.repeats, s.level) == "unsure":
            if measured >= s.max_measurements:
                return Step(None, "the measurement budget ran out with a point unsure", "budget")
            return Step(c, f"c={c}: the speed interval straddles the SLO, measured again")
    if not points:
        return Step(s.start, "first point")
    lo, hi, _ = bracket(points, s)
    if lo is None:
        low = min(points)
        if low <= 1:
            return Step(None, "c=1 does not meet the SLO: infeasible", "infeasible")
        return _budget(points, s) or Step(max(1, low // 2), f"c={low} fails: halving")
    if hi is not None:
        if hi.concurrency - lo.concurrency <= 1:
            return Step(None, f"bracketed between adjacent c={lo.concurrency} and c={hi.concurrency}", "bracketed")
        gap = hi.throughput / lo.throughput - 1 if lo.throughput > 0 else math.inf
        if gap <= s.tolerance:
            return Step(
                None,
                f"bracketed: c={lo.concurrency}..{hi.concurrency}, throughput within {gap:.1%} (<= {s.tolerance:.0%})",
                "bracketed",
            )
        return _budget(points, s) or Step(_between(lo, hi, s.slo, history), "inside the bracket, where the fit crosses")
    if lo.concurrency >= s.max_concurrency:
        return Step(None, f"c={lo.concurrency} (the cap) still meets the SLO", "capped")
    valid = [p for p in points.values() if not p.saturated and p.speeds]
    guess = affine_crossing(valid, s.slo)
    top = min(s.max_concurrency, max(lo.concurrency + 1, math.ceil(lo.concurrency * s.growth)))
    nxt = top if guess is None else int(min(top, max(lo.concurrency + 1, math.ceil(guess))))
    why = "escalating" if guess is None else f"the fit crosses the SLO near c={guess:.1f}"
    return _budget(points, s) or Step(nxt, why)


def _budget(points: dict[int, Measured], s: SearchSettings) -> Step | None:
    if sum(p.measurements for p in points.values()) >= s.max_measurements:
        return Step(None, f"the measurement budget ({s.max_measurements}) ran out before a bracket", "budget")
    return None


def _between(lo: Measured, hi: Measured, slo: float, history: list[int]) -> int:
    """The next C strictly inside (lo, hi): regula falsi on TPOT through the two ends, moved halfway
    to the far end when the last two new points fell on the same side (Illinois), so the bracket
    shrinks from both sides."""
    a, b = lo.concurrency, hi.concurrency
    guess = affine_crossing([lo, hi], slo) if not hi.saturated else None
    x = (a + b) / 2 if guess is None else guess
    recent = [c for c in history if a <= c <= b][-2:]
    if len(recent) == 2 and all(c <= a for c in recent):  # two meets in a row: pull toward hi
        x = (x + b) / 2
    elif len(recent) == 2 and all(c >= b for c in recent):
        x = (x + a) / 2
    return int(min(b - 1, max(a + 1, round(x))))


def fit_rows(method: dict, gpus: int = 1) -> list[dict]:
    """A searched method's (search.json) fitted frontier up to its highest measured concurrency,
    as sweep-shaped rows (method, concurrency, tps_user, throughput_tok_s_gpu, source)."""
    fit = method.get("fit")
    if not fit or not method.get("points"):
        return []
    top = max(p["concurrency"] for p in method["points"])
    return [
        {"method": method["label"], "concurrency": c, "tps_user": v, "throughput_tok_s_gpu": t, "source": "fitted"}
        for c, v, t in fitted_frontier(fit["tpot_s"], fit["tpot_s_per_request"], top, gpus)
    ]


def grid_cost(truth_best: int, tolerance: float, max_concurrency: int, start: int = 1) -> int:
    """Measurements a fixed geometric grid of the same accuracy (ratio 1 + tolerance, from
    `start`) takes when run upward until its first failing point past `truth_best`."""
    c, n = float(start), 0
    while True:
        n += 1
        if round(c) > truth_best or round(c) >= max_concurrency:
            return n
        c = max(c * (1 + tolerance), round(c) + 1)
