"""`dsbench calibrate`: Sequential Temperature Scaling of a DSpark confidence head."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import CalibrateConfig
from . import present
from ._common import app, config, handles_input_errors, json_flag, option


@app.command(epilog="Examples:\n\n  dsbench calibrate --acceptance acc/dspark-chat.json --out calibration.json")
@handles_input_errors
def calibrate(
    acceptance: list[str] = option(CalibrateConfig, "acceptance"),
    holdout: float = option(CalibrateConfig, "holdout"),
    seed: int = option(CalibrateConfig, "seed"),
    out: Path = option(CalibrateConfig, "out"),
    force: bool = option(CalibrateConfig, "force"),
    as_json: bool = json_flag(),
):
    """Fit one temperature per draft position so the head's cumulative survival is calibrated.

    Fits on part of the recorded rounds and reports ECE, AUC and Brier per position before and
    after on the held-out rest, with reliability-diagram data.
    """
    from ..calibrate import run_calibrate, save
    from ..store import Store

    cfg = config(CalibrateConfig, locals())
    doc = run_calibrate(cfg)
    path = save(doc, Store(cfg.out, cfg.force, single="calibration.json"))
    if as_json:
        sys.stdout.write(
            json.dumps(
                {k: doc[k] for k in ("temperatures", "rounds_fit", "rounds_held_out")}
                | {"ece_before": doc["before"]["ece_mean"], "ece_after": doc["after"]["ece_mean"], "file": str(path)}
            )
            + "\n"
        )
        return
    present.calibration(doc, path)
