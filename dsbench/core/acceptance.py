"""Acceptance curves: conditional acceptance c_k, survival a_k and expected tokens per round.

Notation (design.md): c_k = P(draft k accepted | drafts 1..k-1 accepted); survival
a_j = prod_{i<=j} c_i; tau = accepted drafts + the bonus token, so E[tau] = 1 + sum_j a_j.

Per-round spread. A round's true conditional probabilities vary around the pooled curve: some
spans are easy, some hard. The DSpark scheduler lives on that variation, so the simulator draws,
for every request and round, p_k = sigmoid(m_k + sigma * z_k) with
z_k = sqrt(rho) * u + sqrt(1 - rho) * e_k (u shared by the round's positions, e_k per position,
all standard normal). The offsets m_k are solved so that the pooled survival E[prod_{i<=k} p_i]
equals the curve's a_k exactly; sigma = 0 gives the curve itself every round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit

# Default spread, chosen so that oracle confidences (the true per-round p_k) predict prefix
# acceptance with AUC 0.83/0.83/0.85/0.89 at positions 1/3/5/7 on the DSpark chat curve, close
# to what the paper reports for its confidence head on Alpaca (0.82/0.81/0.86/0.91).
# tests/test_acceptance.py checks that claim.
DEFAULT_SIGMA = 1.6
DEFAULT_ROUND_SHARE = 0.4


def survival(conditional) -> np.ndarray:
    """Survival a_j = prod_{i<=j} c_i along the last axis."""
    return np.cumprod(np.asarray(conditional, dtype=float), axis=-1)


def conditional_from_survival(surv) -> np.ndarray:
    """Inverse of `survival`: c_1 = a_1, c_k = a_k / a_{k-1} (0 where a_{k-1} = 0)."""
    a = np.asarray(surv, dtype=float)
    prev = np.concatenate([np.ones_like(a[..., :1]), a[..., :-1]], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(prev > 0, a / prev, 0.0)


def expected_tau(conditional, length: int | None = None) -> float:
    """E[tau] in tokens per round for fixed verification length `length` (default: whole curve)."""
    a = survival(conditional)
    n = len(a) if length is None else length
    return 1.0 + float(a[:n].sum())


@dataclass(frozen=True)
class Spread:
    """Per-round variation of acceptance around the pooled curve (see module docstring)."""

    sigma: float = DEFAULT_SIGMA
    round_share: float = DEFAULT_ROUND_SHARE


@dataclass
class RoundSampler:
    """Draws per-round true conditional acceptance probabilities whose pooled mean is a curve."""

    conditional: np.ndarray
    spread: Spread = field(default_factory=Spread)
    quad_nodes: int = 48

    def __post_init__(self):
        self.conditional = np.asarray(self.conditional, dtype=float)
        self.offsets = _solve_offsets(self.conditional, self.spread, self.quad_nodes)

    @property
    def gamma(self) -> int:
        return len(self.conditional)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Array of shape `shape + (gamma,)` of per-round conditional probabilities (float32:
        the simulator's cost is dominated by these draws, and 7 digits are plenty)."""
        g = self.gamma
        s = self.spread
        if s.sigma == 0:
            return np.broadcast_to(self.conditional.astype(np.float32), (*shape, g)).copy()
        z = rng.standard_normal((*shape, g), dtype=np.float32)
        z *= np.float32(s.sigma * np.sqrt(1.0 - s.round_share))
        z += rng.standard_normal((*shape, 1), dtype=np.float32) * np.float32(s.sigma * np.sqrt(s.round_share))
        z += self.offsets.astype(np.float32)
        return expit(z, out=z)


def _solve_offsets(conditional: np.ndarray, spread: Spread, n: int) -> np.ndarray:
    """Logit offsets m_k with E[prod_{i<=k} sigmoid(m_i + sigma z_i)] = a_k for every k.

    Given the shared normal u the positions are independent, so the expectation factorises into
    1-D Gauss-Hermite integrals over e_k for each node of u.
    """
    c = np.clip(conditional, 1e-9, 1 - 1e-9)
    if spread.sigma == 0:
        return logit(c)
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    su = spread.sigma * np.sqrt(spread.round_share)
    se = spread.sigma * np.sqrt(1.0 - spread.round_share)
    target = survival(c)
    carry = np.ones(n)  # E[prod_{i<k} p_i | u] at each u node
    offsets = np.empty(len(c))
    for k in range(len(c)):

        def pos_mean(m):  # E[p_k | u] at each u node
            return expit(m + su * x[:, None] + se * x[None, :]) @ w

        def gap(m, carry=carry, k=k):
            return float(w @ (carry * pos_mean(m))) - target[k]

        offsets[k] = brentq(gap, -40.0, 40.0, xtol=1e-10)
        carry = carry * pos_mean(offsets[k])
    return offsets
