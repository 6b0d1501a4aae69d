"""`dsbench fit`: fit the latency model to live load results."""

from __future__ import annotations

import json
import sys

from ..config import FitConfig
from . import present
from ._common import app, console, from_config, handles_input_errors


@app.command(
    epilog="Examples:\n\n"
    "  dsbench fit runs/dspark                              # a `dsbench load --out` directory\n\n"
    "  dsbench fit no-spec=runs/base dspark=runs/dspark --out fit/\n\n"
    "  dsbench fit dspark=runs/a --tile 64 --json\n\n"
    "  dsbench fit dspark=runs/a --profile h100-qwen3-8b        # how far is the server from its profile?\n\n"
    "  dsbench sweep --slo 80 --fit fit/fit.json          # then predict the frontier"
)
@handles_input_errors
@from_config(FitConfig)
def fit(cfg: FitConfig, as_json: bool):
    """Fit L = (T_draft + T_verify) / tau to live load points.

    T_verify(B) has a memory-bound floor, a compute-bound slope past a knee and optional tile
    steps; T_draft(R) is linear per method; tau and the tokens verified come from the engine's
    counters. Prints parameters with 1-sigma uncertainties and each point's error, flags points
    the model cannot explain, and writes fit.json for `dsbench sweep --fit`.
    """
    from .. import fit as fitmod
    from ..store import Store

    doc = fitmod.run_fit(cfg)
    path = fitmod.save(doc, Store(cfg.out, cfg.force, single="fit.json"))
    if as_json:
        sys.stdout.write(json.dumps({**doc, "file": str(path)}) + "\n")
        return
    present.fit(doc)
    console.print(f"wrote {path}", style="dim", highlight=False)
