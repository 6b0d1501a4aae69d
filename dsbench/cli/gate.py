"""`dsbench gate`: fail CI when a result set regressed against a baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import EXIT_REGRESSED, app, err, handles_input_errors


@app.command(
    epilog="Exit codes: 0 passed (inconclusive metrics included: they are reported, not failed), 1 regressed (or a "
    "baseline metric missing), 2 unusable input (unreadable or partial results, runs that are not like for like, "
    "an output path that cannot be written), 70 an internal error (a bug in dsbench).\n\n"
    "Examples:\n\n"
    "  dsbench gate runs/candidate --baseline runs/main\n\n"
    "  dsbench gate cand1 cand2 cand3 --baseline base1 --baseline base2 --baseline base3   # repeats pool\n\n"
    "  dsbench gate --plan --baseline runs/pilot --max-drop 3   # can runs like this resolve 3 %?\n\n"
    "  dsbench gate runs/pr --baseline runs/main --rules gate.toml --summary $GITHUB_STEP_SUMMARY --junit gate.xml"
)
@handles_input_errors
def gate(
    candidate: Annotated[Optional[list[str]], typer.Argument(help="Candidate results (files or directories); several = repeated runs.", show_default=False)] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(help="Baseline results; repeat the option for repeated runs.", show_default=False)] = None,
    rules: Annotated[Optional[str], typer.Option(help="Rules file (TOML or JSON): per-metric direction and tolerance, ignores.")] = None,
    max_drop: Annotated[Optional[float], typer.Option(help="Allowed drop of throughput and per-user speed, percent (default: 5).")] = None,
    allow_missing: Annotated[bool, typer.Option(help="A metric the candidate lacks (a partial candidate's too) is not a failure.")] = False,
    alpha: Annotated[float, typer.Option(help="Chance that an identical system fails the gate (family-wise, all metrics).")] = 0.05,
    allow_different: Annotated[bool, typer.Option(help="Compare runs that are not the same experiment (device, deployment, model, method, profile, workload, sampling); every row says so.")] = False,
    run_noise: Annotated[Optional[float], typer.Option(help="Relative spread between runs to assume when no side has three runs to measure it, percent (`gate --plan` on three runs measures it).")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Size runs instead: what a gate against --baseline could resolve, and how much longer runs would resolve each tolerance.")] = False,
    summary: Annotated[Optional[Path], typer.Option(help="Also write the markdown table here (e.g. $GITHUB_STEP_SUMMARY).", rich_help_panel="Output")] = None,
    junit: Annotated[Optional[Path], typer.Option(help="Write JUnit XML here.", rich_help_panel="Output")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON instead of markdown.", rich_help_panel="Output")] = False,
):
    """Compare a candidate with a baseline and exit 1 on a regression.

    Reads throughput at the SLO (sweep), per-user speed, TTFT/TPOT percentiles, error rate and
    tau (load), and tau (acceptance), each with a direction, a tolerance and its standard error
    from the run itself. A metric regresses only when it is worse than its tolerance with the
    stated confidence (Holm-corrected over all metrics); a run too short to tell is
    "inconclusive", with how much longer would resolve it.
    """
    from dataclasses import asdict

    from ..gate import markdown, plan_markdown, run_gate, write_outputs
    from ..gate import plan as make_plan
    from ..errors import InputError

    if not baseline:
        raise InputError("give the baseline results: --baseline PATH (repeat it for repeated runs)")
    if max_drop is not None and not max_drop >= 0:
        raise InputError("--max-drop must be >= 0")
    if run_noise is not None and not run_noise >= 0:
        raise InputError("--run-noise must be >= 0")
    if not 0 < alpha < 1:
        raise InputError("--alpha must be between 0 and 1")
    if plan:
        if candidate:
            raise InputError("--plan sizes runs from --baseline alone: give no candidate")
        rows = make_plan(baseline, rules, max_drop, alpha)
        sys.stdout.write(json.dumps([asdict(r) for r in rows]) + "\n" if as_json else plan_markdown(rows, baseline))
        return
    if not candidate:
        raise InputError("give the candidate results to gate (or --plan to size runs from --baseline)")
    res = run_gate(candidate, baseline, rules, max_drop, allow_missing, alpha, allow_different, run_noise)
    write_outputs(res, summary, junit)
    sys.stdout.write(json.dumps(res.to_dict()) + "\n" if as_json else markdown(res))
    if res.inconclusive:
        err.print(f"[yellow]inconclusive[/]: {len(res.inconclusive)} metric(s) the runs cannot resolve (see the table)",
                  highlight=False)
    if res.regressed:
        err.print(f"[bold red]regressed[/]: {len(res.regressed)} metric(s)", highlight=False)
        raise typer.Exit(EXIT_REGRESSED)
