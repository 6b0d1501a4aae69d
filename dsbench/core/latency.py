"""The latency model L = (T_draft + T_verify) / tau, fitted to measured load points.

Per load point: R requests in flight, tau tokens per request per round, B = R (1 + l) tokens
verified per round (l drafts verified per request), and the measured round time
y = tau x TPOT (seconds). The model:

    T_verify(B, R) = t0 + kv * R + s * max(0, Q(B) - b0)   Q(B) = tile * ceil(B / tile), or B when tile = 0
    T_draft(R)     = a_m + c_m * R                         per method m (0 for no-spec)

t0 is the memory-bound floor (seconds), kv the per-request cost of reading its KV cache (seconds
per request in flight: at high concurrency it rivals the weights), s the compute-bound slope
(seconds per token) past the knee b0 (tokens), and the tile makes the step-wise jumps of GEMM
tiling. Given a profile's step
times for the points instead (`verify_known`), T_verify = scale x the profile's, and the fit says
how far the served engine is from the profile (scale 1: exactly as profiled). Constants are only
identifiable up to a shift between t0 and the draft floors, so without no-spec points the first
speculative method's a_m is pinned to 0 (its draft floor is folded into t0), and kv too (each
method's c_m then carries its KV read). All parameters are
bounded at 0. Where every point of a method verifies the same tokens per request (B proportional
to R), the slope and c_m trade off against each other: their uncertainties say so, and
predictions stay good along that line only.
Fitted with scipy's curve_fit on relative residuals; uncertainties are the square roots of the
covariance's diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import curve_fit


def quantize(b: np.ndarray, tile: float) -> np.ndarray:
    """Tokens rounded up to whole GEMM tiles (tile 0: unchanged)."""
    b = np.asarray(b, dtype=float)
    return np.ceil(b / tile) * tile if tile > 0 else b


def t_verify(b, t0: float, slope: float, knee: float, tile: float = 0.0, kv: float = 0.0, r=0.0) -> np.ndarray:
    """Verification step seconds at B batch tokens of R requests."""
    return t0 + kv * np.asarray(r, dtype=float) + slope * np.maximum(0.0, quantize(b, tile) - knee)


@dataclass
class LatencyFit:
    t0: float
    slope: float
    knee: float
    tile: float
    draft: dict[str, tuple[float, float]]  # method -> (a seconds, c seconds per request)
    sigma: dict[str, float] = field(default_factory=dict)  # 1-sigma of every fitted parameter, by name
    pinned: list[str] = field(default_factory=list)  # parameters held at 0 (not identifiable)
    scale: float | None = None  # set when T_verify is a profile's step time x scale
    kv: float = 0.0  # seconds per request in flight (its KV read)

    def t_draft(self, method: str, requests) -> np.ndarray:
        a, c = self.draft.get(method, (0.0, 0.0))
        return a + c * np.asarray(requests, dtype=float)

    def t_verify(self, batch_tokens, verify_known=None, requests=0.0) -> np.ndarray:
        """Verification seconds: the fitted form, or scale x the profile's step time `verify_known`."""
        if self.scale is not None:
            return self.scale * np.asarray(verify_known, dtype=float)
        return t_verify(batch_tokens, self.t0, self.slope, self.knee, self.tile, self.kv, requests)

    def round_s(self, method: str, requests, batch_tokens, verify_known=None) -> np.ndarray:
        """Predicted seconds per round (draft + verify)."""
        return self.t_draft(method, requests) + self.t_verify(batch_tokens, verify_known, requests)


def _names(methods: list[str], pinned: str | None, known: bool) -> list[str]:
    # kv is shared by every method and c_m is per method, so only no-spec points (c = 0) separate them
    names = ["scale"] if known else ["t0", "kv", "slope", "knee"] if "no-spec" in methods else ["t0", "slope", "knee"]
    for m in methods:
        if m == "no-spec":
            continue
        if m != pinned:
            names.append(f"{m}.a")
        names.append(f"{m}.c")
    return names


def fit_latency(
    method: np.ndarray,
    requests: np.ndarray,
    batch_tokens: np.ndarray,
    round_s: np.ndarray,
    tile: float = 0.0,
    verify_known: np.ndarray | None = None,
) -> LatencyFit:
    """Fit the model to points (method label, R, B, measured round seconds; optionally a
    profile's verification seconds per point). Raises ValueError when there are no more points
    than parameters."""
    method = np.asarray(method)
    r, b, y = (np.asarray(v, dtype=float) for v in (requests, batch_tokens, round_s))
    known = None if verify_known is None else np.asarray(verify_known, dtype=float)
    methods = list(dict.fromkeys(method.tolist()))
    spec = [m for m in methods if m != "no-spec"]
    pinned = spec[0] if spec and "no-spec" not in methods and known is None else None
    names = _names(methods, pinned, known is not None)
    if len(y) <= len(names):
        raise ValueError(
            f"{len(y)} load points cannot fit {len(names)} parameters ({', '.join(names)}); "
            f"measure at least {len(names) + 1}"
        )

    def unpack(p):
        vals = dict(zip(names, p))
        return vals, {m: (vals.get(f"{m}.a", 0.0), vals[f"{m}.c"]) for m in spec}

    def model(_, *p):
        vals, draft = unpack(p)
        if known is not None:
            out = vals["scale"] * known
        else:
            out = t_verify(b, vals["t0"], vals["slope"], vals["knee"], tile, vals.get("kv", 0.0), r)
        for m, (a, c) in draft.items():
            out = out + np.where(method == m, a + c * r, 0.0)
        return out / y  # relative: points at 1 and 512 users weigh alike

    best = None
    starts = (
        [[1.0]]
        if known is not None
        else [  # the hinge is not convex: start from several knees
            [float(y.min()), *([0.0] if "kv" in names else []), float(np.ptp(y) / max(np.ptp(b), 1.0)), float(knee)]
            for knee in np.quantile(b, np.linspace(0, 1, 9))
        ]
    )
    for head in starts:
        p0 = head + [0.0] * (len(names) - len(head))
        lo = [0.0] * len(names)  # times and slopes are never negative
        hi = [np.inf] * len(names)
        if known is None:
            hi[names.index("knee")] = float(b.max())
        try:
            p, cov = curve_fit(model, None, np.ones_like(y), p0=p0, bounds=(lo, hi), max_nfev=20_000, x_scale="jac")
        except RuntimeError:
            continue
        sse = float(((model(None, *p) - 1) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, p, cov)
    if best is None:
        raise ValueError("the latency model did not converge on these points")
    _, p, cov = best
    vals, draft = unpack(p)
    with np.errstate(invalid="ignore"):
        err = np.sqrt(np.diag(cov))  # in the parameters' own units, scaled by the residual variance
    sigma = {n: float(e) if np.isfinite(e) else None for n, e in zip(names, err)}
    if known is not None:
        return LatencyFit(0.0, 0.0, 0.0, tile, draft, sigma, [], vals["scale"])
    pins = ([f"{pinned}.a"] if pinned else []) + ([] if "kv" in names else ["kv"])
    return LatencyFit(vals["t0"], vals["slope"], vals["knee"], tile, draft, sigma, pins, kv=vals.get("kv", 0.0))


def relative_errors(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(predicted - measured) / measured per point."""
    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return (predicted - measured) / measured


def mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean absolute percentage error (percent)."""
    return float(np.mean(np.abs(relative_errors(predicted, measured))) * 100)
