"""The five decoding methods dsbench compares, and their drafting cost T_draft(R, gamma)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from .policies import Policy


@dataclass(frozen=True)
class Method:
    """A decoding method: how it drafts and how it verifies by default."""

    name: str
    drafting: str  # none | mtp | autoregressive | parallel | parallel+markov
    fixed_gamma: int | None  # block size forced by the method (no-spec 0, MTP-1 1); None = --gamma
    default_policy: Policy
    scheduled: bool  # takes --policy (DSpark's confidence-scheduled verification)

    def gamma(self, requested: int) -> int:
        """Draft tokens per round for a requested block size."""
        return requested if self.fixed_gamma is None else self.fixed_gamma


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("no-spec", "none", 0, Policy("fixed"), False),
        Method("mtp-1", "mtp", 1, Policy("fixed"), False),
        Method("dflash", "parallel", None, Policy("fixed"), False),
        Method("eagle3", "autoregressive", None, Policy("fixed"), False),
        Method("dspark", "parallel+markov", None, Policy("dspark"), True),
    )
}
METHOD_NAMES = tuple(METHODS)


class DraftCost:
    """Drafter seconds per round, T_draft(R, gamma), interpolated from a rectilinear grid.

    Linear in both axes, extrapolated linearly beyond the grid (drafting past the profiled batch
    is a larger version of the same kernels).
    """

    def __init__(self, requests, gamma, step_s):
        r = np.asarray(requests, dtype=float)
        g = np.asarray(gamma, dtype=float)
        s = np.asarray(step_s, dtype=float)
        rs, gs = np.unique(r), np.unique(g)
        if len(rs) * len(gs) != len(s):
            raise ValueError("draft cost points must form a full grid over requests x gamma")
        grid = np.full((len(rs), len(gs)), np.nan)
        grid[np.searchsorted(rs, r), np.searchsorted(gs, g)] = s
        if np.isnan(grid).any():
            raise ValueError("draft cost points must form a full grid over requests x gamma")
        # A round never costs less for more requests or longer drafts; noisy measurements can say
        # otherwise, and a falling edge would extrapolate to ever cheaper rounds.
        monotone = np.maximum.accumulate(np.maximum.accumulate(grid, axis=0), axis=1)
        self.repaired = int((monotone > grid).sum())  # points raised
        grid = monotone
        self.requests, self.gammas = rs, gs
        # A 1-point axis cannot be interpolated; pad it so the constant extends.
        axes, values = [rs, gs], grid
        for i, ax in enumerate(axes):
            if len(ax) == 1:
                axes[i] = np.array([ax[0], ax[0] + 1.0])
                values = np.repeat(values, 2, axis=i)
        self._f = RegularGridInterpolator(axes, values, bounds_error=False, fill_value=None)

    def __call__(self, requests: float, gamma: float) -> float:
        """Seconds of drafting for one round of `requests` requests drafting `gamma` tokens each."""
        if gamma <= 0:
            return 0.0
        return float(max(self._f([[requests, gamma]])[0], 0.0))
