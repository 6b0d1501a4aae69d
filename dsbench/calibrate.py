"""`dsbench calibrate`: Sequential Temperature Scaling of a DSpark confidence head, fitted on part
of the rounds `dsbench accept` recorded and judged on the rest (core/calibration.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import CalibrateConfig
from .core import calibration as cal
from .errors import InputError
from .readers import CALIBRATION_SCHEMA, per_round_confidences, read_acceptance
from .store import Store, nan_to_none, provenance


def run_calibrate(cfg: CalibrateConfig) -> dict:
    """The calibration document: one temperature per draft position, scores before and after on
    the held-out rounds, and reliability-diagram data per position."""
    cfg.validate()
    parts = [per_round_confidences(a) for ref in cfg.acceptance for a in read_acceptance(ref) if a.method == "dspark"]
    if not parts:
        raise InputError("no DSpark acceptance files among --acceptance")
    g = min(p[0].shape[1] for p in parts)
    conf = np.concatenate([p[0][:, :g] for p in parts])
    proposal = np.minimum(np.concatenate([p[1] for p in parts]), g)
    accepted = np.minimum(np.concatenate([p[2] for p in parts]), g)
    idx = np.random.default_rng(cfg.seed).permutation(len(conf))
    n_fit = int(len(conf) * (1 - cfg.holdout))
    if n_fit < 10 or len(conf) - n_fit < 10:
        raise InputError(f"only {len(conf)} rounds recorded: too few to fit and judge a calibration")
    fit, held = idx[:n_fit], idx[n_fit:]
    temps = cal.sts(conf[fit], proposal[fit], accepted[fit])
    calibrated = cal.apply_temperatures(conf[held], temps)
    pred_b, label, mask = cal.position_data(conf[held], proposal[held], accepted[held])
    pred_a = np.cumprod(calibrated, axis=1)
    reliability = [
        {
            "position": k + 1,
            "before": cal.reliability(pred_b[mask[:, k], k], label[mask[:, k], k]),
            "after": cal.reliability(pred_a[mask[:, k], k], label[mask[:, k], k]),
        }
        for k in range(g)
    ]
    return {
        "schema": CALIBRATION_SCHEMA,
        "source": "measured",
        "method": "dspark",
        "temperatures": temps.tolist(),
        "rounds_fit": int(n_fit),
        "rounds_held_out": int(len(held)),
        "before": cal.metrics(conf[held], proposal[held], accepted[held]),
        "after": cal.metrics(calibrated, proposal[held], accepted[held]),
        "reliability": reliability,
        "inputs": list(cfg.acceptance),
        "provenance": provenance(),
    }


def save(doc: dict, store: Store) -> Path:
    return store.document("calibration.json", nan_to_none(doc), "CalibrationDoc")
