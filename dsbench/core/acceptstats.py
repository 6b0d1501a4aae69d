"""Accepted-length statistics from raw per-round counts (DeepSpec's definitions).

A round is a pair (proposal length l, accepted drafts a), a <= l. Positions are 1-based, k = 1..gamma.
- tau = sum(committed) / rounds, committed = a + 1 (a on a round cut by a stop token): per-round
  mean pooled over the dataset, bonus included (DeepSpec's `accept_len`, the paper's tau).
- survival (DeepSpec's accept_rate@(k-1)) = #(a >= k) / #(l >= k): unconditional, never chain it.
- conditional (paper Figure 2) = #(a >= k) / #(a >= k - 1 and l >= k).
- verify_rate = sum(committed) / (sum(l) + rounds).
"""

from __future__ import annotations

import numpy as np


def tau(committed) -> float:
    """Tokens committed per round (bonus included), pooled over all rounds."""
    c = np.asarray(committed, dtype=float)
    return float(c.mean()) if len(c) else float("nan")


def verify_rate(proposal, committed) -> float:
    """Committed tokens per token verified (drafts + the anchor's prediction): DeepSpec's verify_rate."""
    c, l = np.asarray(committed, dtype=float), np.asarray(proposal, dtype=float)
    return float(c.sum() / (l.sum() + len(c))) if len(c) else float("nan")


def survival(proposal, accepted, gamma: int) -> np.ndarray:
    """P(drafts 1..k all accepted | k proposed), k = 1..gamma (nan where nothing was proposed)."""
    l, a = np.asarray(proposal), np.asarray(accepted)
    k = np.arange(1, gamma + 1)[:, None]
    num = (a[None, :] >= k).sum(1)
    den = (l[None, :] >= k).sum(1)
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def conditional(proposal, accepted, gamma: int) -> np.ndarray:
    """P(draft k accepted | drafts 1..k-1 accepted and k proposed), k = 1..gamma."""
    l, a = np.asarray(proposal), np.asarray(accepted)
    k = np.arange(1, gamma + 1)[:, None]
    num = (a[None, :] >= k).sum(1)
    den = ((a[None, :] >= k - 1) & (l[None, :] >= k)).sum(1)
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)
