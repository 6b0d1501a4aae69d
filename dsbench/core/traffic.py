"""Request lengths: what a closed-loop server's in-flight requests read, and the prefill it owes.

In steady state C requests are always decoding; one that has emitted its output is replaced at
once by a fresh request, whose prompt is prefilled (chunked) inside the next step. From paired
(input, output) lengths:

- a request is in flight for a time proportional to its output length, and at a uniformly
  random point of it, so the mean context over in-flight requests is length-biased:
  E[osl * (isl + (osl + 1) / 2)] / E[osl] tokens;
- completions per committed token are 1 / E[osl] (renewal), so each committed token brings
  E[isl] / E[osl] prompt tokens to prefill;
- a prefilled token attends to the prompt before it: E[isl^2] / (2 E[isl]) tokens on average.

KV reads and attention FLOPs are linear in context, so the mean context is exact for the batch's
total (sliding-window layers excepted, which this treats at the mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Lengths:
    """Paired input and output lengths (tokens) of the traffic, one entry per request."""

    isl: np.ndarray
    osl: np.ndarray

    def __post_init__(self):
        isl, osl = np.asarray(self.isl, dtype=float), np.asarray(self.osl, dtype=float)
        if isl.shape != osl.shape or isl.ndim != 1 or len(isl) == 0:
            raise ValueError("input and output lengths must be equal-length, non-empty lists")
        if (isl < 0).any() or (osl < 1).any() or not np.isfinite(isl + osl).all():
            raise ValueError("input lengths must be >= 0 and output lengths >= 1 tokens")
        object.__setattr__(self, "isl", isl)
        object.__setattr__(self, "osl", osl)

    @property
    def inflight_context(self) -> float:
        """Mean cached tokens of an in-flight request (length-biased by output length)."""
        return float((self.osl * (self.isl + (self.osl + 1) / 2)).sum() / self.osl.sum())

    @property
    def peak_context(self) -> float:
        """The longest request's final context (tokens)."""
        return float((self.isl + self.osl).max())

    @property
    def prefill_per_token(self) -> float:
        """Prompt tokens to prefill per committed output token, E[isl] / E[osl]."""
        return float(self.isl.mean() / self.osl.mean())

    @property
    def prefill_context(self) -> float:
        """Mean tokens a prefilled prompt token attends to, E[isl^2] / (2 E[isl])."""
        total = self.isl.sum()
        return float((self.isl**2).sum() / (2 * total)) if total else 0.0

    def summary(self) -> dict:
        return {
            "requests": len(self.isl),
            "mean_isl": float(self.isl.mean()),
            "mean_osl": float(self.osl.mean()),
            "inflight_context": self.inflight_context,
            "prefill_tokens_per_output_token": self.prefill_per_token,
            "prefill_context": self.prefill_context,
        }
