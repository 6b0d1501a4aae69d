"""`dsbench report`: one self-contained HTML report from dsbench results."""

from __future__ import annotations

from ..config import ReportConfig
from ._common import app, console, from_config, handles_input_errors


@app.command(
    epilog="Examples:\n\n"
    "  dsbench report dsbench-out -o report.html\n\n"
    "  dsbench report runs/h100 runs/h200 -o compare.html --title 'H100 vs H200'    # side by side\n\n"
    "  dsbench report sweep/ load/ accept/ fit/ -o all.html"
)
@handles_input_errors
@from_config(ReportConfig, json=False)
def report(cfg: ReportConfig):
    """Write one self-contained HTML report (inline SVG figures, no external resources).

    Frontiers with modelled lines and measured points, the SLO table, verification budget vs
    concurrency, conditional acceptance, calibration, latency distributions, tokens per chunk vs
    tau, SPS(B), fitted models, and the provenance of every input.
    """
    from ..report.html import build_report
    from ..store import Store

    html = build_report(cfg.results, cfg.title)
    path = Store(cfg.out, cfg.force, single="report.html").text("report.html", html)
    console.print(f"wrote {path} ({len(html) / 1e3:,.0f} kB)", highlight=False)
