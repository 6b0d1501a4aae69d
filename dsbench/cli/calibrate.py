"""`dsbench calibrate`: Sequential Temperature Scaling of a DSpark confidence head."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ._common import app, fmt, handles_input_errors, out


@app.command(epilog="Examples:\n\n  dsbench calibrate --acceptance acc/dspark-chat.json --out calibration.json")
@handles_input_errors
def calibrate(
    acceptance: Annotated[list[str], typer.Option(help="Measured DSpark acceptance file(s) or directory from dsbench accept. Repeatable.")],
    holdout: Annotated[float, typer.Option(help="Fraction of rounds held out to judge the calibration.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the fit/held-out split.")] = 0,
    out_file: Annotated[Path, typer.Option("--out", help="Calibration JSON to write.")] = Path("calibration.json"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Fit one temperature per draft position so the head's cumulative survival is calibrated.

    Fits on part of the recorded rounds and reports ECE, AUC and Brier per position before and
    after on the held-out rest, with reliability-diagram data.
    """
    import numpy as np

    from ..core import calibration as cal
    from ..errors import InputError
    from ..readers import per_round_confidences, read_acceptance
    from ..store import nan_to_none, write_calibration

    if not 0 < holdout < 1:
        raise InputError(f"--holdout must lie strictly between 0 and 1, got {holdout}")
    parts = [per_round_confidences(a) for ref in acceptance for a in read_acceptance(ref) if a.method == "dspark"]
    if not parts:
        raise InputError("no DSpark acceptance files among --acceptance")
    g = min(p[0].shape[1] for p in parts)
    conf = np.concatenate([p[0][:, :g] for p in parts])
    proposal = np.minimum(np.concatenate([p[1] for p in parts]), g)
    accepted = np.minimum(np.concatenate([p[2] for p in parts]), g)
    idx = np.random.default_rng(seed).permutation(len(conf))
    n_fit = int(len(conf) * (1 - holdout))
    if n_fit < 10 or len(conf) - n_fit < 10:
        raise InputError(f"only {len(conf)} rounds recorded: too few to fit and judge a calibration")
    fit, held = idx[:n_fit], idx[n_fit:]
    temps = cal.sts(conf[fit], proposal[fit], accepted[fit])
    calibrated = cal.apply_temperatures(conf[held], temps)
    before = cal.metrics(conf[held], proposal[held], accepted[held])
    after = cal.metrics(calibrated, proposal[held], accepted[held])
    pred_b, label, mask = cal.position_data(conf[held], proposal[held], accepted[held])
    pred_a = np.cumprod(calibrated, axis=1)
    doc = {"source": "measured", "method": "dspark", "temperatures": temps.tolist(), "rounds_fit": int(n_fit),
           "rounds_held_out": int(len(held)), "before": before, "after": after,
           "reliability": [{"position": k + 1, "before": cal.reliability(pred_b[mask[:, k], k], label[mask[:, k], k]),
                            "after": cal.reliability(pred_a[mask[:, k], k], label[mask[:, k], k])} for k in range(g)]}
    write_calibration(out_file, nan_to_none(doc))
    if as_json:
        sys.stdout.write(json.dumps({k: doc[k] for k in ("temperatures", "rounds_fit", "rounds_held_out")}
                                    | {"ece_before": before["ece_mean"], "ece_after": after["ece_mean"]}) + "\n")
        return
    out.print(f"temperatures per position: {' '.join(f'{t:.2f}' for t in temps)}", highlight=False)
    out.print(f"held-out ECE {fmt(before['ece_mean'], '.2%')} -> {fmt(after['ece_mean'], '.2%')} "
              f"(per position before: {' '.join(fmt(x, '.3f') for x in before['ece'])}; after: {' '.join(fmt(x, '.3f') for x in after['ece'])})",
              highlight=False)
    out.print(f"wrote {out_file}", style="dim", highlight=False)
