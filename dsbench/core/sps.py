"""Target verification cost: step time of one forward pass over B batch tokens for R requests.

The paper's SPS(B) is a 1-D curve. A real engine's step also reads every request's KV cache, so
profiles are 2-D: points (batch_tokens B, requests R) -> step seconds, at one stated context
length. The scheduler uses the slice for the current R. SPS(B) = 1 / step_s(B).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


def interp_extrap(x, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation; linear extrapolation past the last point, clamped below the first.

    Above the profiled range a verify pass is compute-bound, so continuing the last slope is the
    honest guess, but never a falling one: a last step measured a little faster than the one
    before (timing noise) would otherwise extrapolate to ever cheaper, then negative, passes.
    Below the first point (B smaller than anything profiled) the first value is an upper bound.
    """
    x = np.asarray(x, dtype=float)
    y = np.interp(x, xp, fp)
    if len(xp) >= 2:
        slope = max((fp[-1] - fp[-2]) / (xp[-1] - xp[-2]), 0.0)
        y = np.where(x > xp[-1], fp[-1] + slope * (x - xp[-1]), y)
    return y


@dataclass(frozen=True)
class SpsCurve:
    """Step time versus batch tokens for a fixed number of requests (the paper's SPS(B) slice)."""

    batch_tokens: np.ndarray  # sorted, unique
    step_s: np.ndarray  # seconds per verification pass

    def step_time(self, batch_tokens) -> np.ndarray:
        """Seconds for one verification pass over `batch_tokens` tokens."""
        return interp_extrap(batch_tokens, self.batch_tokens, self.step_s)

    def sps(self, batch_tokens) -> np.ndarray:
        """Steps per second SPS(B)."""
        return 1.0 / self.step_time(batch_tokens)

    def table(self, max_tokens: int) -> np.ndarray:
        """Array t with t[B] = step seconds for B = 0..max_tokens (t[0] repeats t[1]).

        The scheduler indexes it directly, which is far cheaper than interpolating every step.
        """
        t = self.step_time(np.arange(max_tokens + 1))
        t[0] = t[1] if max_tokens >= 1 else t[0]
        return t


class StepTimeSurface:
    """Profiled verification step time over (batch tokens, requests) at one context length."""

    def __init__(self, batch_tokens, requests, step_s):
        b = np.asarray(batch_tokens, dtype=float)
        r = np.asarray(requests, dtype=float)
        s = np.asarray(step_s, dtype=float)
        if not (b.shape == r.shape == s.shape) or b.ndim != 1 or len(b) == 0:
            raise ValueError("batch_tokens, requests and step_s must be equal-length 1-D arrays")
        self._slices: dict[float, SpsCurve] = {}
        for rv in np.unique(r):
            m = r == rv
            bb, idx = np.unique(b[m], return_index=True)
            self._slices[float(rv)] = SpsCurve(bb, s[m][idx])
        self.request_levels = np.array(sorted(self._slices))
        self._slice_cached = lru_cache(maxsize=256)(self._slice)

    def slice(self, requests: int) -> SpsCurve:
        """The SPS(B) curve for `requests` concurrent requests.

        Between profiled request levels the step time is interpolated linearly in R (the KV read
        grows linearly with R); above the highest level it is extrapolated from the last two, and
        never below the highest level's own times (more requests do not make a pass cheaper, even
        when noise made the top level measure faster than the one below it).
        """
        return self._slice_cached(float(requests))

    def _slice(self, r: float) -> SpsCurve:
        levels = self.request_levels
        if r in self._slices or len(levels) == 1:
            return self._slices.get(r, self._slices[float(levels[0])])
        hi = int(np.clip(np.searchsorted(levels, r), 1, len(levels) - 1))
        r0, r1 = float(levels[hi - 1]), float(levels[hi])
        if r < r0:  # below the lowest profiled level
            return self._slices[r0]
        c0, c1 = self._slices[r0], self._slices[r1]
        b = np.union1d(c0.batch_tokens, c1.batch_tokens)
        b = b[b >= min(r, b.max())]
        w = (r - r0) / (r1 - r0)
        s = (1 - w) * c0.step_time(b) + w * c1.step_time(b)
        if w > 1:
            s = np.maximum(s, c1.step_time(b))
        return SpsCurve(b, s)

    def step_time(self, batch_tokens, requests: int) -> np.ndarray:
        """Seconds for one verification pass of `requests` requests over `batch_tokens` tokens."""
        return self.slice(requests).step_time(batch_tokens)


@dataclass(frozen=True)
class Repair:
    """One measured step time raised to keep the surface physical (a pass never costs less for
    more tokens, or for more requests at the same tokens)."""

    requests: float
    batch_tokens: float
    measured_s: float
    repaired_s: float
    beyond_spread: bool  # the fall exceeded twice the point's own measured spread (CV)

    def __str__(self) -> str:
        drop = 1 - self.measured_s / self.repaired_s
        why = "beyond its measured spread" if self.beyond_spread else "within its spread"
        return (
            f"R={self.requests:g} B={self.batch_tokens:g}: {self.measured_s * 1e3:.3f} ms measured {drop:.0%} "
            f"below a smaller pass ({why}); raised to {self.repaired_s * 1e3:.3f} ms"
        )


def monotone_repair(batch_tokens, requests, step_s, cv=None) -> tuple[np.ndarray, list[Repair]]:
    """Step times made non-decreasing in B at each R, and in R at each B the level below measured.

    The rule: each point is raised to the largest time measured for a pass it contains (fewer
    tokens at its R, or its tokens at fewer requests, interpolated in B). Falls within twice the
    point's CV are timing noise; larger ones are flagged as `beyond_spread`.
    """
    b, r, s = (np.asarray(a, dtype=float) for a in (batch_tokens, requests, step_s))
    spread = np.zeros_like(s) if cv is None else np.nan_to_num(np.asarray(cv, dtype=float))
    out, repairs, below = s.copy(), [], None
    for level in np.unique(r):
        idx = np.flatnonzero(r == level)
        idx = idx[np.argsort(b[idx], kind="stable")]
        floor = out[idx]
        if below is not None:
            inside = b[idx] <= below[0][-1]
            floor = np.where(inside, np.maximum(floor, np.interp(b[idx], *below)), floor)
        floor = np.maximum.accumulate(floor)
        for i, f in zip(idx, floor):
            if f > out[i]:
                repairs.append(Repair(level, b[i], s[i], float(f), f - s[i] > 2 * spread[i] * f))
        out[idx] = floor
        below = (b[idx], out[idx])
    return out, repairs
