"""Confidence-head quality and Sequential Temperature Scaling (DSpark paper section 3.2.1).

Per position k the prediction is the cumulative survival a_k = prod_{i<=k} c_i and the label is
whether drafts 1..k were all accepted. ECE uses 20 equal-width bins (DeepSpec's recorder); AUC
is the rank (Mann-Whitney) statistic; Brier the mean squared error.

STS: on held-out rounds, for k = 1..gamma in order, grid-search one temperature T_k applied as
c_k' = sigmoid(logit(c_k) / T_k) that minimises the ECE of the cumulative product, keeping
earlier positions' calibrated scores fixed. Temperature scaling preserves each position's ranking.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit
from scipy.stats import rankdata

BINS = 20
GRID = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))  # temperatures searched


def ece(pred, label, bins: int = BINS) -> float:
    """Expected calibration error: sum_b (n_b / N) |mean pred_b - mean label_b|."""
    p, y = np.asarray(pred, float), np.asarray(label, float)
    if len(p) == 0:
        return float("nan")
    b = np.minimum((p * bins).astype(int), bins - 1)
    n = np.bincount(b, minlength=bins)
    sp = np.bincount(b, weights=p, minlength=bins)
    sy = np.bincount(b, weights=y, minlength=bins)
    m = n > 0
    return float(np.abs(sp[m] - sy[m]).sum() / len(p))


def auc(pred, label) -> float:
    """Area under the ROC curve (nan when only one class is present)."""
    p, y = np.asarray(pred, float), np.asarray(label, bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(p)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def brier(pred, label) -> float:
    p, y = np.asarray(pred, float), np.asarray(label, float)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def position_data(conf: np.ndarray, proposal: np.ndarray, accepted: np.ndarray):
    """Cumulative predictions and prefix labels per position, with the mask of positions proposed.

    conf (rounds, gamma) per-position confidences; returns (pred, label, mask), each (rounds, gamma)."""
    c = np.asarray(conf, float)
    g = c.shape[1]
    pos = np.arange(g)[None, :]
    return np.cumprod(c, axis=1), pos < np.asarray(accepted)[:, None], pos < np.asarray(proposal)[:, None]


def metrics(conf, proposal, accepted) -> dict:
    """ECE, AUC and Brier per position (lists) and their count-weighted means."""
    pred, label, mask = position_data(conf, proposal, accepted)
    per = {"ece": [], "auc": [], "brier": [], "n": []}
    for k in range(pred.shape[1]):
        m = mask[:, k]
        per["ece"].append(ece(pred[m, k], label[m, k]))
        per["auc"].append(auc(pred[m, k], label[m, k]))
        per["brier"].append(brier(pred[m, k], label[m, k]))
        per["n"].append(int(m.sum()))
    w = np.array(per["n"], float)
    for key in ("ece", "auc", "brier"):
        v = np.array(per[key])
        ok = ~np.isnan(v) & (w > 0)
        per[f"{key}_mean"] = float((v[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() else float("nan")
    return per


def sts(conf, proposal, accepted, grid: np.ndarray = GRID) -> np.ndarray:
    """Sequential Temperature Scaling: one temperature per position (see module docstring)."""
    z = logit(np.clip(np.asarray(conf, float), 1e-7, 1 - 1e-7))
    _, label, mask = position_data(conf, proposal, accepted)
    g = z.shape[1]
    temps = np.ones(g)
    prefix = np.ones(len(z))  # calibrated cumulative product of positions before k
    for k in range(g):
        m = mask[:, k]
        cand = prefix[m, None] * expit(z[m, k][:, None] / grid[None, :])  # (n, grid)
        errs = [ece(cand[:, j], label[m, k]) for j in range(len(grid))]
        temps[k] = grid[int(np.argmin(errs))]
        prefix = prefix * expit(z[:, k] / temps[k])
    return temps


def apply_temperatures(conf, temps) -> np.ndarray:
    """Calibrated confidences sigmoid(logit(c_k) / T_k)."""
    z = logit(np.clip(np.asarray(conf, float), 1e-7, 1 - 1e-7))
    return expit(z / np.asarray(temps)[None, :])


def reliability(pred, label, bins: int = 10) -> list[dict]:
    """Reliability-diagram data: per bin, mean prediction, observed rate and count."""
    p, y = np.asarray(pred, float), np.asarray(label, float)
    b = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for i in range(bins):
        m = b == i
        if m.any():
            rows.append({"bin": i, "pred": float(p[m].mean()), "observed": float(y[m].mean()), "n": int(m.sum())})
    return rows
