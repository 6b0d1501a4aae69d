"""`dsbench sweep`: the best method at a per-user speed SLO, simulated on a profile."""

from __future__ import annotations

import json
import sys

from ..config import SweepConfig
from . import present
from ._common import (
    app,
    console,
    from_config,
    handles_input_errors,
    progress_bar,
)


@app.command(
    epilog="Examples:\n\n"
    "  dsbench sweep --slo 80\n\n"
    "  dsbench sweep --slo 50 --profile h200-qwen3-8b --domain code --methods mtp-1,dspark\n\n"
    "  dsbench sweep --slo 80 --policy dspark-async --json > sweep.json\n\n"
    "  dsbench sweep --slo 80 --fit fit/fit.json        # predict from a model fitted to load tests"
)
@handles_input_errors
@from_config(SweepConfig, quiet=True)
def sweep(cfg: SweepConfig, as_json: bool, quiet: bool):
    """Find the best decoding method at a per-user speed SLO (simulated on a profile).

    Simulates every method in a closed loop over concurrency, on a step-time profile and
    acceptance curves, and reports per method the highest throughput whose per-user speed
    meets the SLO. Outputs are modelled (simulated), never measured: the table says on what.
    """
    from ..readers import SWEEP_SCHEMA
    from ..store import Store
    from ..sweep import run_sweep, save

    store = Store(cfg.out, cfg.force)
    with progress_bar("simulating", show=not (quiet or as_json)) as progress:
        result = run_sweep(cfg, progress, store)
    paths = save(result, store)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {"schema": SWEEP_SCHEMA, **result.summary, "frontier": result.rows, "files": [str(p) for p in paths]}
            )
            + "\n"
        )
        return
    present.sweep(result.summary)
    console.print("wrote " + ", ".join(str(p) for p in paths), style="dim", highlight=False)
