"""`dsbench sweep`: the best method at a per-user speed SLO, simulated on a profile."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from ..config import SweepConfig
from . import present
from ._common import app, config, console, csv_list, handles_input_errors, json_flag, option, progress_bar, quiet_flag


@app.command(
    epilog="Examples:\n\n"
    "  dsbench sweep --slo 80\n\n"
    "  dsbench sweep --slo 50 --profile h200-qwen3-8b --domain code --methods mtp-1,dspark\n\n"
    "  dsbench sweep --slo 80 --policy dspark-async --json > sweep.json\n\n"
    "  dsbench sweep --slo 80 --fit fit/fit.json        # predict from a model fitted to load tests"
)
@handles_input_errors
def sweep(
    slo: float = option(SweepConfig, "slo"),
    profile: str = option(SweepConfig, "profile"),
    acceptance: Optional[str] = option(SweepConfig, "acceptance"),
    domain: str = option(SweepConfig, "domain"),
    fit: Optional[str] = option(SweepConfig, "fit"),
    methods: str = option(SweepConfig, "methods"),
    baseline: str = option(SweepConfig, "baseline"),
    policy: str = option(SweepConfig, "policy"),
    gamma: Optional[int] = option(SweepConfig, "gamma"),
    max_concurrency: int = option(SweepConfig, "max_concurrency"),
    levels: int = option(SweepConfig, "levels"),
    samples: int = option(SweepConfig, "samples"),
    seed: int = option(SweepConfig, "seed"),
    out: Path = option(SweepConfig, "out"),
    force: bool = option(SweepConfig, "force"),
    as_json: bool = json_flag(),
    quiet: bool = quiet_flag(),
):
    """Find the best decoding method at a per-user speed SLO (simulated on a profile).

    Simulates every method in a closed loop over concurrency, on a step-time profile and
    acceptance curves, and reports per method the highest throughput whose per-user speed
    meets the SLO. Outputs are modelled (simulated), never measured: the table says on what.
    """
    from ..readers import SWEEP_SCHEMA
    from ..store import Store
    from ..sweep import run_sweep, save

    cfg = config(SweepConfig, {**locals(), "methods": tuple(csv_list(methods, str, "--methods"))})
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
