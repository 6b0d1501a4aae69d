"""`dsbench sweep`: the best method at a per-user speed SLO, simulated on a profile."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import app, err, fmt, handles_input_errors, console

METHODS_DEFAULT = "no-spec,mtp-1,dflash,eagle3,dspark"


@app.command(
    epilog="Examples:\n\n"
    "  dsbench sweep --slo 80\n\n"
    "  dsbench sweep --slo 50 --profile h200-qwen3-8b --domain code --methods mtp-1,dspark\n\n"
    "  dsbench sweep --slo 80 --policy dspark-async --json > sweep.json\n\n"
    "  dsbench sweep --slo 80 --model fit/fit.json      # predict from a model fitted to load tests"
)
@handles_input_errors
def sweep(
    slo: Annotated[float, typer.Option(help="Per-user speed to promise, tokens/s per user.")] = 80.0,
    profile: Annotated[str, typer.Option(help="Profile JSON, or a shipped one by name (h100-qwen3-8b, h200-qwen3-8b, a100-qwen3-8b, b200-qwen3-8b, mi300x-qwen3-8b, l40s-qwen3-8b).", rich_help_panel="Inputs")] = "h100-qwen3-8b",
    acceptance: Annotated[Optional[str], typer.Option(help="Acceptance file or directory (default: shipped curves for the profile's model).", rich_help_panel="Inputs")] = None,
    domain: Annotated[str, typer.Option(help="Traffic: math, code, chat, or mix (each request drawn from the three).", rich_help_panel="Inputs")] = "mix",
    methods: Annotated[str, typer.Option(help="Comma-separated methods to compare.")] = METHODS_DEFAULT,
    baseline: Annotated[str, typer.Option(help="Method the ratios are taken against.")] = "mtp-1",
    policy: Annotated[str, typer.Option(help="DSpark verification policy: dspark, dspark-async, fixed[:l], threshold:t.")] = "dspark",
    gamma: Annotated[Optional[int], typer.Option(help="Draft block size for DFlash, Eagle3 and DSpark (MTP-1 always drafts 1) (default: 7; with --model the length the fit measured).")] = None,
    max_concurrency: Annotated[int, typer.Option(help="Highest concurrency simulated (capped where the KV cache no longer fits).")] = 512,
    seed: Annotated[int, typer.Option(help="Random seed of the simulation.")] = 0,
    model: Annotated[Optional[str], typer.Option(help="Fit file from `dsbench fit`: predict with the fitted step times and the measured acceptance instead of --profile (results are labelled predictions).", rich_help_panel="Inputs")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for frontier.png/.svg and sweep.json/.csv (rewritten each run).", rich_help_panel="Output")] = Path("dsbench-out"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout instead of the table.", rich_help_panel="Output")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel="Output")] = False,
):
    """Find the best decoding method at a per-user speed SLO (simulated on a profile).

    Simulates every method in a closed loop over concurrency, on a step-time profile and
    acceptance curves, and reports per method the highest throughput whose per-user speed
    meets the SLO. Outputs are modelled (simulated), never measured: the table says on what.
    """
    from ..readers import SWEEP_SCHEMA
    from ..sweep import SweepConfig, run_sweep

    cfg = SweepConfig(slo=slo, profile=profile, acceptance=acceptance, domain=domain,
                      methods=tuple(m.strip() for m in methods.split(",") if m.strip()), baseline=baseline,
                      policy=policy, gamma=gamma, max_concurrency=max_concurrency, seed=seed, model=model)
    cfg.validate()
    result = _with_progress(lambda progress, on_method: run_sweep(cfg, progress, on_method), cfg, out_dir,
                            show=not (quiet or as_json))
    paths = _write_sweep_outputs(result, out_dir)
    if as_json:
        sys.stdout.write(json.dumps({"schema": SWEEP_SCHEMA, **result.summary, "frontier": result.rows,
                                     "files": [str(p) for p in paths]}) + "\n")
        return
    _print_sweep_table(result.summary)
    console.print("wrote " + ", ".join(str(p) for p in paths), style="dim", highlight=False)


def _with_progress(run, cfg, out_dir: Path, show: bool):
    """Run the sweep with a progress bar, writing partial results after each method."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..store import write_sweep

    rows_so_far: list[dict] = []

    def on_method(name, rows, summary):
        rows_so_far.extend(rows)
        write_sweep(out_dir, {**summary, "partial": True}, rows_so_far)

    if not show:
        return run(None, on_method)
    with Progress(TextColumn("simulating [bold]{task.fields[method]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("sweep", total=None, method="")
        done = {"n": 0}

        def progress(method, _i):
            done["n"] += 1
            bar.update(task, completed=done["n"], method=method)

        return run(progress, on_method)


def _write_sweep_outputs(result, out_dir: Path) -> list[Path]:
    from ..report.plots import frontier_figure, save
    from ..store import write_sweep

    s = result.summary
    jpath, cpath = write_sweep(out_dir, s, result.rows)
    inp = s["inputs"]
    title = f"Throughput vs per-user speed — {inp['device']} x{inp['gpus']}, {inp['model']}, {inp['domain']} traffic"
    subtitle = (f"{inp['results_source']} on a {inp['profile_source']} step-time profile ({Path(inp['profile']).name}, context {inp['context_len']}), "
                f"acceptance from {', '.join(inp['acceptance_sources']) or 'none'}; DSpark policy {inp['policy']}, gamma {inp['gamma']}")
    fig = frontier_figure(result.rows, s["slo"], title, subtitle, s["methods"])
    png, svg = out_dir / "frontier.png", out_dir / "frontier.svg"
    save(fig, png, svg)
    return [png, svg, jpath, cpath]


def _print_sweep_table(s: dict) -> None:
    from rich.table import Table

    inp = s["inputs"]
    table = Table(
        title=f"Best throughput at per-user speed >= {s['slo']:g} tok/s  ({inp['device']}, {inp['model']}, {inp['domain']} traffic)",
        caption=(f"{inp['results_source']} on a {inp['profile_source']} profile (context {inp['context_len']})"
                 + (f" with {', '.join(inp['acceptance_sources'])}-derived acceptance" if inp["acceptance_sources"] else "")
                 + "; per-user speed = tau / round time; budget = tokens verified per request per round"
                 + (f"; step times beyond {inp['profiled_max_requests']} requests are extrapolated"
                    if inp["profiled_max_requests"] < max(inp["concurrency"]) else "")
                 + ("; concurrency capped at %d where the KV cache fills memory" % inp["max_concurrency_memory"] if inp["capped_by_memory"] else "")),
        caption_justify="left",
    )
    for col, just in [("method", "left"), ("policy", "left"), ("tok/s/GPU", "right"), ("conc.", "right"),
                      ("tok/s/user", "right"), ("budget", "right"), (f"vs {s['baseline']}", "right"),
                      ("peak/user", "right")]:
        table.add_column(col, justify=just, no_wrap=True)
    for name, m in s["methods"].items():
        if m["feasible"]:
            table.add_row(name, m["policy"], fmt(m["throughput"], ",.0f"), str(m["concurrency"]), fmt(m["tps_user"], ".1f"),
                          fmt(m["verify_budget"], ".2f"), fmt(m["ratio"], ".2f", "—") + ("x" if m["ratio"] is not None else ""),
                          fmt(m["peak_tps_user"], ".0f"))
        else:
            table.add_row(name, m["policy"], "[yellow]infeasible[/]", "—", "—", "—", "—", fmt(m["peak_tps_user"], ".0f"))
    console.print(table)
