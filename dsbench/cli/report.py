"""`dsbench report`: one self-contained HTML report from dsbench results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import app, handles_input_errors, out


@app.command(
    epilog="Examples:\n\n"
    "  dsbench report dsbench-out -o report.html\n\n"
    "  dsbench report runs/h100 runs/h200 -o compare.html --title 'H100 vs H200'    # side by side\n\n"
    "  dsbench report sweep/ load/ accept/ fit/ -o all.html"
)
@handles_input_errors
def report(
    results: Annotated[list[str], typer.Argument(help="Result files or directories (searched recursively); each argument is one run, shown side by side.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
    title: Annotated[str, typer.Option(help="Title of the report.")] = "dsbench report",
):
    """Write one self-contained HTML report (inline SVG figures, no external resources).

    Frontiers with modelled lines and measured points, the SLO table, verification budget vs
    concurrency, conditional acceptance, calibration, latency distributions, tokens per chunk vs
    tau, SPS(B), fitted models, and the provenance of every input.
    """
    from ..report.html import build_report

    doc = build_report(results, title)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(output)
    out.print(f"wrote {output} ({len(doc) / 1e3:,.0f} kB)", highlight=False)
