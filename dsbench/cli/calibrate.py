"""`dsbench calibrate`: Sequential Temperature Scaling of a DSpark confidence head."""

from __future__ import annotations

import json
import sys

from ..config import CalibrateConfig
from . import present
from ._common import app, from_config, handles_input_errors


@app.command(epilog="Examples:\n\n  dsbench calibrate --acceptance acc/dspark-chat.json --out calibration.json")
@handles_input_errors
@from_config(CalibrateConfig)
def calibrate(cfg: CalibrateConfig, as_json: bool):
    """Fit one temperature per draft position so the head's cumulative survival is calibrated.

    Fits on part of the recorded rounds and reports ECE, AUC and Brier per position before and
    after on the held-out rest, with reliability-diagram data.
    """
    from ..calibrate import run_calibrate, save
    from ..store import Store

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
