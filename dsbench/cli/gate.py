"""`dsbench gate`: fail CI when a result set regressed against a baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import app, err, handles_input_errors


@app.command(
    epilog="Exit codes: 0 nothing regressed, 1 a regression (or a baseline metric missing), 2 unusable input.\n\n"
    "Examples:\n\n"
    "  dsbench gate runs/candidate --baseline runs/main\n\n"
    "  dsbench gate cand1 cand2 cand3 --baseline base1 --baseline base2 --baseline base3   # repeats: noise-aware\n\n"
    "  dsbench gate runs/pr --baseline runs/main --rules gate.toml --summary $GITHUB_STEP_SUMMARY --junit gate.xml"
)
@handles_input_errors
def gate(
    candidate: Annotated[list[str], typer.Argument(help="Candidate results (files or directories); several = repeated runs.", show_default=False)],
    baseline: Annotated[list[str], typer.Option(help="Baseline results; repeat the option for repeated runs.", show_default=False)],
    rules: Annotated[Optional[str], typer.Option(help="Rules file (TOML or JSON): per-metric direction and tolerance, ignores.")] = None,
    max_drop: Annotated[Optional[float], typer.Option(help="Allowed drop of throughput and per-user speed, percent (default: 5).")] = None,
    allow_missing: Annotated[bool, typer.Option(help="A metric the candidate lacks is not a failure.")] = False,
    alpha: Annotated[float, typer.Option(help="Significance level of the repeated-runs test.")] = 0.05,
    allow_different: Annotated[bool, typer.Option(help="Compare load runs even when their sampling (temperature, top_p, seed, ignore_eos, extra body) differs; the summary says so.")] = False,
    summary: Annotated[Optional[Path], typer.Option(help="Also write the markdown table here (e.g. $GITHUB_STEP_SUMMARY).", rich_help_panel="Output")] = None,
    junit: Annotated[Optional[Path], typer.Option(help="Write JUnit XML here.", rich_help_panel="Output")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON instead of markdown.", rich_help_panel="Output")] = False,
):
    """Compare a candidate with a baseline and exit 1 on a regression.

    Reads throughput at the SLO (sweep), per-user speed, TTFT/TPOT percentiles, error rate and
    tau (load), and tau (acceptance), each with a direction and a tolerance. With repeated runs
    on both sides a drop must also be significant (Welch's t-test), so noise alone does not fail
    the gate.
    """
    from ..gate import markdown, run_gate, write_outputs
    from ..results import InputError

    if max_drop is not None and not max_drop >= 0:
        raise InputError("--max-drop must be >= 0")
    if not 0 < alpha < 1:
        raise InputError("--alpha must be between 0 and 1")
    res = run_gate(candidate, baseline, rules, max_drop, allow_missing, alpha, allow_different)
    write_outputs(res, summary, junit)
    sys.stdout.write(json.dumps(res.to_dict()) + "\n" if as_json else markdown(res))
    if res.regressed:
        err.print(f"[bold red]regressed[/]: {len(res.regressed)} metric(s)", highlight=False)
        raise typer.Exit(1)
