"""Closed-loop serving simulator: C requests always decoding, one draft + verify round at a time.

Per round: draw each request's true per-position acceptance probabilities (RoundSampler), hand
them to the verification policy as calibrated confidences, let it choose l_r, realise acceptance
as sequential Bernoulli draws and charge T_draft(C, gamma) + step_s(B = sum_r (1 + l_r), C).
Every round is independent given the inputs, so all rounds are drawn and scheduled at once.

Confidences here are oracle-calibrated: the scheduler sees each round's true probabilities.
The default spread is set so that their predictive power (AUC) matches the paper's trained head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .acceptance import RoundSampler, expected_tau
from .methods import DraftCost
from .policies import Policy, schedule
from .roofline import RooflineSurface
from .sps import StepTimeSurface

# Memory bound on one scheduling call: rounds x C x gamma elements.
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class SimPoint:
    """Steady-state figures of one method at one concurrency (all simulated)."""

    concurrency: int
    rounds: int
    tau: float  # tokens committed per request per round, bonus included
    verify_budget: float  # tokens verified per request per round, B / C (1 + mean l_r)
    draft_s: float  # seconds per round spent drafting
    verify_s: float  # mean seconds per round in the target pass
    throughput_tok_s: float  # aggregate committed tokens per second (per instance)
    tps_user: float  # tokens per second seen by each user = throughput / C
    throughput_rel_se: float  # Monte-Carlo relative standard error of the throughput


@dataclass
class Scenario:
    """Everything the simulator needs for one method."""

    samplers: list[RoundSampler]  # one per domain; requests draw a domain uniformly per round
    surface: StepTimeSurface | RooflineSurface  # anything with .slice(R) and .step_time(B, R)
    draft_cost: DraftCost | None  # None for no-spec
    gamma: int
    policy: Policy
    # prompt tokens prefilled per committed token (core.traffic.Lengths.prefill_per_token); 0: no
    # prefill modelled. Needs a surface whose step_time takes prefill tokens (a roofline).
    prefill_per_token: float = 0.0

    def draft_s(self, concurrency: int) -> float:
        return 0.0 if self.draft_cost is None or self.gamma == 0 else self.draft_cost(concurrency, self.gamma)

    @property
    def fixed_length(self) -> int:
        """Drafts verified per request by a fixed(l) policy: l, capped at gamma (the whole block by default)."""
        return self.gamma if self.policy.param is None else min(int(self.policy.param), self.gamma)

    @property
    def curve_tau(self) -> float:
        """E[tau] of full-length verification on the input curves (domain mean)."""
        if self.gamma == 0:
            return 1.0
        return float(np.mean([expected_tau(s.conditional) for s in self.samplers]))

    def verify_table(self, c: int) -> np.ndarray:
        """t[B] = seconds of a pass over B tokens of c requests, B = 0..c (1 + gamma): what the
        scheduler plans with. With prefill, the pass also carries the mean prefill of a round."""
        if not self.prefill_per_token:
            return self.surface.slice(c).table(c * (1 + self.gamma))
        b = np.arange(c * (1 + self.gamma) + 1)
        t = self.surface.step_time(np.maximum(b, 1), c, self.prefill_per_token * c * self.curve_tau)
        return np.asarray(t, dtype=float)

    def verify_s(self, c: int, tokens: np.ndarray, batch: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Seconds of each round's pass: the table, or with prefill the prompts of the requests that
        the previous round's commits finished (the first round: the mean)."""
        if not self.prefill_per_token:
            return table[batch]
        prev = np.concatenate([[tokens.mean()], tokens[:-1]])
        return np.asarray(self.surface.step_time(batch, c, self.prefill_per_token * prev), dtype=float)


def _draw_confidences(sc: Scenario, rng: np.random.Generator, rounds: int, c: int) -> np.ndarray:
    if sc.gamma == 0:
        return np.zeros((rounds, c, 0))
    if len(sc.samplers) == 1:
        return sc.samplers[0].sample(rng, (rounds, c))
    # mixed domains: each request's domain is drawn afresh every round
    domain = rng.integers(len(sc.samplers), size=(rounds, c))
    p = np.empty((rounds, c, sc.gamma), dtype=np.float32)
    for d, sampler in enumerate(sc.samplers):
        here = domain == d
        p[here] = sampler.sample(rng, (int(here.sum()),))
    return p


def simulate(
    sc: Scenario,
    concurrency: int,
    samples: int = 20_000,
    min_rounds: int = 64,
    seed: int = 0,
    target_rel_se: float | None = 0.004,
    max_samples: int = 400_000,
) -> SimPoint:
    """Simulate `concurrency` always-busy requests for about `samples` request-rounds.

    With `target_rel_se`, rounds are added until the Monte-Carlo relative standard error of the
    throughput is at most that (default 0.4 %: a 1 % error is 2.5 standard errors), up to
    `max_samples` request-rounds.
    """
    c = int(concurrency)
    rng = np.random.default_rng([seed, c])
    verify_table = sc.verify_table(c)
    draft_s = sc.draft_s(c)
    rounds = max(min_rounds, -(-samples // c))
    tokens, batch = _run_rounds(sc, rng, c, rounds, verify_table, draft_s)
    verify_s = sc.verify_s(c, tokens, batch, verify_table)
    while target_rel_se and len(tokens) * c < max_samples:
        se = _ratio_rel_se(tokens, verify_s + draft_s)
        if not se > target_rel_se:  # also stops on nan (a deterministic run)
            break
        extra = int(len(tokens) * min(4.0, (se / target_rel_se) ** 2 * 1.1 - 1)) + 1
        more = _run_rounds(sc, rng, c, extra, verify_table, draft_s)
        tokens, batch = (np.concatenate(pair) for pair in zip((tokens, batch), more))
        verify_s = sc.verify_s(c, tokens, batch, verify_table)
    t_round = verify_s + draft_s
    thr = tokens.sum() / t_round.sum()
    return SimPoint(
        concurrency=c,
        rounds=len(tokens),
        tau=float(tokens.mean() / c),
        verify_budget=float(batch.mean() / c),
        draft_s=draft_s,
        verify_s=float(verify_s.mean()),
        throughput_tok_s=float(thr),
        tps_user=float(thr / c),
        throughput_rel_se=_ratio_rel_se(tokens, t_round),
    )


def _run_rounds(sc: Scenario, rng, c: int, rounds: int, verify_table: np.ndarray, draft_s: float):
    """Per-round committed tokens (all requests) and batch tokens for `rounds` rounds."""
    chunk = max(1, _CHUNK_ELEMENTS // max(1, c * max(1, sc.gamma)))
    # dspark-async looks back across rounds, so its chunks must be long enough to carry a lag.
    chunk = max(chunk, 8) if sc.policy.kind == "dspark-async" else chunk
    tokens, batches = [], []
    for start in range(0, rounds, chunk):
        n = min(chunk, rounds - start)
        p = _draw_confidences(sc, rng, n, c)
        if sc.gamma == 0:
            tokens.append(np.full(n, c))
            batches.append(np.full(n, c))
            continue
        lengths = schedule(sc.policy, p, verify_table, draft_s)
        accepted_each = rng.random(p.shape, dtype=np.float32) < p
        # accepted = leading run of accepts within the verified prefix
        in_prefix = np.arange(sc.gamma) < lengths[..., None]
        acc = np.cumprod(accepted_each & in_prefix, axis=-1).sum(axis=-1)
        tokens.append((acc + 1).sum(axis=-1))
        batches.append(c + lengths.sum(axis=-1))
    return np.concatenate(tokens).astype(float), np.concatenate(batches)


def _ratio_rel_se(x: np.ndarray, y: np.ndarray) -> float:
    """Relative standard error of sum(x)/sum(y) over i.i.d. rounds (delta method)."""
    n = len(x)
    if n < 2:
        return float("nan")
    rx, ry = x.mean(), y.mean()
    resid = x / rx - y / ry
    return float(resid.std(ddof=1) / np.sqrt(n))


def closed_form(sc: Scenario, concurrency: int) -> tuple[float, float]:
    """(E[tau], tokens/s per user) for a fixed-length policy, without simulation.

    For fixed(l) every round verifies B = C (1 + l) tokens, so the round time is deterministic and
    E[tau] = 1 + sum_{j<=l} a_j (averaged over domains).
    """
    if sc.policy.kind != "fixed":
        raise ValueError("closed form exists only for fixed-length verification")
    l = sc.fixed_length
    tau = float(np.mean([expected_tau(s.conditional[: sc.gamma], l) for s in sc.samplers])) if l else 1.0
    b, c = concurrency * (1 + l), concurrency
    if sc.prefill_per_token:  # E[step] is the step at the mean prefill: the roofline is linear in it
        verify = sc.surface.step_time(b, c, sc.prefill_per_token * c * tau)
    else:
        verify = sc.surface.step_time(b, c)
    t = sc.draft_s(concurrency) + float(verify)
    return tau, tau / t
