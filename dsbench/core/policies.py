"""Verification policies: how many of each request's drafted tokens the target verifies this round.

Every policy maps confidences `conf` of shape (..., R, gamma) — the conditional probability that
draft k survives given 1..k-1 did — to verification lengths l of shape (..., R), 0 <= l <= gamma.
Leading axes are independent rounds, so a whole simulation is scheduled in one call.

`verify_s` is a step-time table: verify_s[B] = seconds of one target pass over B batch tokens for
the current R (SpsCurve.table). SPS(B) = 1 / verify_s[B].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POLICY_KINDS = ("fixed", "threshold", "dspark", "dspark-async")


@dataclass(frozen=True)
class Policy:
    """A verification policy: `fixed` (param = l, None = whole draft), `threshold` (param = t),
    `dspark` (Algorithm 1) or `dspark-async` (paper section 5.2, param = lag in rounds, default 2)."""

    kind: str
    param: float | None = None

    def __str__(self) -> str:
        return self.kind if self.param is None else f"{self.kind}:{self.param:g}"

    @classmethod
    def parse(cls, text: str) -> Policy:
        """Parse 'fixed', 'fixed:3', 'threshold:0.6', 'dspark', 'dspark-async'."""
        kind, _, arg = text.strip().partition(":")
        if kind not in POLICY_KINDS:
            raise ValueError(f"unknown policy {text!r}; expected one of {', '.join(POLICY_KINDS)}")
        if kind == "threshold" and not arg:
            raise ValueError("threshold policy needs a value, e.g. threshold:0.6")
        try:
            param = float(arg) if arg else None
        except ValueError:
            raise ValueError(f"policy {text!r}: {arg!r} is not a number") from None
        if param is not None and (not np.isfinite(param) or param < 0):
            raise ValueError(f"policy {text!r}: value must be a finite number >= 0")
        if kind == "threshold" and param > 1:
            raise ValueError(f"policy {text!r}: a confidence threshold lies in [0, 1]")
        return cls(kind, param)


def fixed_lengths(conf: np.ndarray, length: int | None = None) -> np.ndarray:
    """Verify `length` drafts (default all gamma) for every request."""
    g = conf.shape[-1]
    l = g if length is None else min(int(length), g)
    return np.full(conf.shape[:-1], l, dtype=np.int64)


def threshold_lengths(conf: np.ndarray, t: float) -> np.ndarray:
    """Truncate each draft at the first position whose confidence is below `t` (DeepSpec's rule)."""
    return np.cumprod(conf >= t, axis=-1).sum(axis=-1)


def _ranked(conf: np.ndarray):
    """Candidates (r, j) of each round sorted by survival a_{r,j}, descending."""
    *lead, r, g = conf.shape
    a = np.cumprod(conf, axis=-1).reshape(-1, r * g)
    order = np.argsort(-a, axis=-1)
    return np.take_along_axis(a, order, axis=-1), order, lead, r, g


def _lengths_from_ranks(order: np.ndarray, admitted: np.ndarray, lead, r: int, g: int) -> np.ndarray:
    """Per-request count of admitted candidates. Survival falls along j, so the admitted
    candidates of a request are always a prefix and a count is all a length needs."""
    n_rounds = order.shape[0]
    take = np.arange(order.shape[1])[None, :] < admitted[:, None]
    req = order // g + (np.arange(n_rounds) * r)[:, None]
    counts = np.bincount(req[take], minlength=n_rounds * r)
    return counts.reshape(*lead, r)


def expected_throughput_path(sorted_surv: np.ndarray, r: int, verify_s: np.ndarray, fixed_s: float = 0.0):
    """Theta(n) for admitting the n = 0..R*gamma best candidates, in expected tokens per second.

    Theta(n) = tau*(n) / (fixed_s + verify_s[R + n]), tau*(n) = R + sum of the n best survivals.
    With fixed_s = 0 this is the paper's tau* . SPS(B). Not in Algorithm 1: `fixed_s` lets the
    caller charge the round's draft time, which the round costs whatever is verified.
    """
    n_cand = sorted_surv.shape[-1]
    tau = np.empty((sorted_surv.shape[0], n_cand + 1))
    tau[:, 0] = r
    np.cumsum(sorted_surv, axis=-1, out=tau[:, 1:])
    tau[:, 1:] += r
    return tau / (fixed_s + verify_s[r : r + n_cand + 1])


def dspark_lengths(conf: np.ndarray, verify_s: np.ndarray, fixed_s: float = 0.0, early_stop: bool = True) -> np.ndarray:
    """DSpark's hardware-aware prefix scheduler (paper Algorithm 1), vectorised.

    Candidates are admitted in order of survival while expected throughput improves; with
    `early_stop` the search ends at the first non-improvement, which is what keeps it lossless
    (paper Appendix A). `early_stop=False` is the full search (argmax over the whole path).
    """
    s, order, lead, r, g = _ranked(conf)
    theta = expected_throughput_path(s, r, verify_s, fixed_s)
    if early_stop:
        worse = theta[:, 1:] <= theta[:, :-1]
        admitted = np.where(worse.any(axis=-1), worse.argmax(axis=-1), r * g)
    else:
        admitted = theta.argmax(axis=-1)
    return _lengths_from_ranks(order, admitted, lead, r, g)


def topk_lengths(conf: np.ndarray, k) -> np.ndarray:
    """Admit the top-k candidates of each round by current survival (k per round, broadcastable)."""
    _, order, lead, r, g = _ranked(conf)
    admitted = np.broadcast_to(np.asarray(k, dtype=np.int64).reshape(-1), (order.shape[0],))
    return _lengths_from_ranks(order, admitted, lead, r, g)


def dspark_async_lengths(conf: np.ndarray, verify_s: np.ndarray, fixed_s: float = 0.0, lag: int = 2) -> np.ndarray:
    """Production variant (paper section 5.2) over consecutive rounds conf[t] of shape (T, R, gamma).

    The capacity K_t (total drafts admitted) comes from a full search over the confidences of
    round t - lag; round t then admits its own top-K_t candidates. Rounds with no history yet
    use their own full search.
    """
    if conf.ndim != 3:
        raise ValueError("dspark-async schedules a sequence of rounds: conf must be (T, R, gamma)")
    capacity = dspark_lengths(conf, verify_s, fixed_s, early_stop=False).sum(axis=-1)
    if lag > 0:
        capacity = np.concatenate([capacity[:lag], capacity[:-lag]])
    return topk_lengths(conf, capacity)


def schedule(policy: Policy, conf: np.ndarray, verify_s: np.ndarray | None = None, fixed_s: float = 0.0) -> np.ndarray:
    """Verification lengths for `conf` (..., R, gamma) under `policy`."""
    if policy.kind == "fixed":
        return fixed_lengths(conf, None if policy.param is None else int(policy.param))
    if policy.kind == "threshold":
        return threshold_lengths(conf, policy.param)
    if verify_s is None:
        raise ValueError(f"policy {policy} needs a step-time table")
    if policy.kind == "dspark":
        return dspark_lengths(conf, verify_s, fixed_s)
    lag = 2 if policy.param is None else int(policy.param)
    return dspark_async_lengths(conf, verify_s, fixed_s, lag)


def dspark_lengths_reference(conf: np.ndarray, verify_s: np.ndarray, fixed_s: float = 0.0) -> np.ndarray:
    """Algorithm 1 for one round, line by line with a per-candidate Python loop.

    The readable specification that `dspark_lengths` is tested against and timed against; far
    too slow for a serving loop.
    """
    r, g = conf.shape
    cands = []
    for i in range(r):
        a = 1.0
        for j in range(g):
            a *= float(conf[i, j])
            cands.append((a, i))
    cands.sort(key=lambda c: -c[0])
    lengths = np.zeros(r, dtype=np.int64)
    b, tau = r, float(r)
    best = tau / (fixed_s + verify_s[b])
    for a, i in cands:
        theta = (tau + a) / (fixed_s + verify_s[b + 1])
        if theta <= best:
            break
        b, tau, best = b + 1, tau + a, theta
        lengths[i] += 1
    return lengths
