"""`dsbench gate`: fail CI when a result set regressed against a baseline."""

from __future__ import annotations

import json
import sys

import typer

from ..config import GateConfig
from ._common import EXIT_REGRESSED, app, err, from_config, handles_input_errors


@app.command(
    epilog="Exit codes: 0 passed (inconclusive metrics included: they are reported, not failed), 1 regressed (or a "
    "baseline metric missing), 2 unusable input (unreadable or partial results, runs that are not like for like, "
    "an output path that cannot be written), 70 an internal error (a bug in dsbench).\n\n"
    "Examples:\n\n"
    "  dsbench gate runs/candidate --baseline runs/main\n\n"
    "  dsbench gate cand1 cand2 cand3 --baseline base1 --baseline base2 --baseline base3   # repeats pool\n\n"
    "  dsbench gate --plan --baseline runs/pilot --max-drop-pct 3   # can runs like this resolve 3 %?\n\n"
    "  dsbench gate runs/pr --baseline runs/main --rules gate.toml --summary $GITHUB_STEP_SUMMARY --junit gate.xml"
)
@handles_input_errors
@from_config(GateConfig)
def gate(cfg: GateConfig, as_json: bool):
    """Compare a candidate with a baseline and exit 1 on a regression.

    Reads throughput at the SLO (sweep), per-user speed, TTFT/TPOT percentiles, error rate and
    tau (load), and tau (acceptance), each with a direction, a tolerance and its standard error
    from the run itself. A metric regresses only when it is worse than its tolerance with the
    stated confidence (Holm-corrected over all metrics); a run too short to tell is
    "inconclusive", with how much longer would resolve it.
    """
    from dataclasses import asdict

    from ..gate import plan as make_plan
    from ..gate import run_gate
    from ..gate_report import markdown, plan_markdown, write_outputs

    if cfg.plan:
        rows = make_plan(cfg)
        sys.stdout.write(json.dumps([asdict(r) for r in rows]) + "\n" if as_json else plan_markdown(rows, cfg.baseline))
        return
    res = run_gate(cfg)
    write_outputs(res, cfg.summary, cfg.junit)
    sys.stdout.write(json.dumps(res.to_dict()) + "\n" if as_json else markdown(res))
    if res.inconclusive:
        err.print(
            f"[yellow]inconclusive[/]: {len(res.inconclusive)} metric(s) the runs cannot resolve (see the table)",
            highlight=False,
        )
    if res.regressed:
        err.print(f"[bold red]regressed[/]: {len(res.regressed)} metric(s)", highlight=False)
        raise typer.Exit(EXIT_REGRESSED)
