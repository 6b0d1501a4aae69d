"""`dsbench fit`: fit the latency model to live load results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import app, fmt, handles_input_errors, out


@app.command(
    epilog="Examples:\n\n"
    "  dsbench fit runs/dspark                              # a `dsbench load --out` directory\n\n"
    "  dsbench fit no-spec=runs/base dspark=runs/dspark --out fit/\n\n"
    "  dsbench fit dspark=runs/a --tile 64 --json\n\n"
    "  dsbench fit dspark=runs/a --profile h100-qwen3-8b        # how far is the server from its profile?\n\n"
    "  dsbench sweep --slo 80 --model fit/fit.json        # then predict the frontier"
)
@handles_input_errors
def fit(
    results: Annotated[list[str], typer.Argument(help="Load results (load.json or its directory), each optionally METHOD=PATH.", show_default=False)],
    method: Annotated[Optional[str], typer.Option(help="Method of inputs given without METHOD= (points without speculative counters are no-spec).")] = None,
    tile: Annotated[int, typer.Option(help="GEMM tile in tokens for step-wise verification time (0: smooth).")] = 0,
    flag_pct: Annotated[float, typer.Option(help="Flag points the model misses by more than this many percent.")] = 10.0,
    profile: Annotated[Optional[str], typer.Option(help="Step-time profile: fit T_verify as a scale of its step times instead of the free form (how far the server is from the profile).")] = None,
    acceptance: Annotated[Optional[str], typer.Option(help="Acceptance curves giving tau for engines without speculative counters.")] = None,
    out_path: Annotated[Path, typer.Option("--out", help="Directory (or .json path) for fit.json.", rich_help_panel="Output")] = Path("dsbench-fit"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the fit as one JSON object.", rich_help_panel="Output")] = False,
):
    """Fit L = (T_draft + T_verify) / tau to live load points.

    T_verify(B) has a memory-bound floor, a compute-bound slope past a knee and optional tile
    steps; T_draft(R) is linear per method; tau and the tokens verified come from the engine's
    counters. Prints parameters with 1-sigma uncertainties and each point's error, flags points
    the model cannot explain, and writes fit.json for `dsbench sweep --model`.
    """
    from .. import fit as fitmod
    from ..errors import InputError

    if tile < 0 or not flag_pct > 0:
        raise InputError("--tile must be >= 0 and --flag-pct > 0")
    doc = fitmod.run_fit(fitmod.FitConfig(results, method, tile, flag_pct, profile, acceptance))
    path = fitmod.write(doc, out_path)
    if as_json:
        sys.stdout.write(json.dumps({**doc, "file": str(path)}) + "\n")
        return
    _print_fit(doc)
    out.print(f"wrote {path}", style="dim", highlight=False)


def _print_fit(doc: dict) -> None:
    from rich.table import Table

    params = Table(title="Fitted latency model (source: fitted)", caption=doc["formula"], caption_justify="left")
    for col in ("parameter", "value", "± 1 sigma", "unit"):
        params.add_column(col, justify="left" if col in ("parameter", "unit") else "right")
    for name, p in doc["params"].items():
        sigma = "fixed" if p.get("fixed") else fmt(p.get("sigma"), ".3g")
        poor = "poorly" in p.get("note", "")
        params.add_row(name, format(p["value"], ".4g"), f"[yellow]{sigma}[/]" if poor else sigma, p["unit"])
    out.print(params)
    poor = [n for n, p in doc["params"].items() if "poorly" in p.get("note", "")]
    if poor:
        out.print(f"[yellow]poorly determined[/] (1 sigma > value): {', '.join(poor)} — these points cannot tell them apart; "
                  "measure where they differ (more concurrency levels, another policy, no-spec points)", highlight=False)
    pts = Table(title=f"Per point: MAPE {doc['mape_pct']:.1f} %, {doc['flagged']} flagged (> {doc['flag_pct']:g} %)",
                caption="round time = tau x mean TPOT (measured) vs the model (fitted)", caption_justify="left")
    for col in ("method", "point", "R", "B", "tau", "round ms", "fitted ms", "error"):
        pts.add_column(col, justify="left" if col in ("method", "point") else "right")
    for p in doc["points"]:
        err_s = f"{p['rel_error'] * 100:+.1f} %"
        pts.add_row(p["method"], str(p["label"]), f"{p['requests']:.0f}", f"{p['batch_tokens']:.0f}", f"{p['tau']:.2f}",
                    f"{p['round_s'] * 1e3:.2f}", f"{p['round_s_fitted'] * 1e3:.2f}",
                    f"[yellow]{err_s} flagged[/]" if p["flagged"] else err_s)
    out.print(pts)
