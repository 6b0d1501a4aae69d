"""`dsbench load`: live load tests against an OpenAI-compatible server."""

from __future__ import annotations

import json
import sys

import typer

from ..config import LoadConfig
from . import present
from ._common import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    app,
    console,
    err,
    from_config,
    handles_input_errors,
    progress_bar,
)


@app.command(
    epilog="Examples:\n\n"
    "  dsbench load --url http://127.0.0.1:8000 --model dsbench-sim --concurrency 1,4,16 --workload math "
    "--duration-s 20\n\n"
    "  dsbench load --url http://127.0.0.1:8000 --model Qwen/Qwen3-8B --rate 2,4 --workload workloads/chat.jsonl "
    "--requests 200 --api-key-env OPENAI_API_KEY\n\n"
    "  dsbench load --url http://127.0.0.1:30000 --model m --concurrency 8 --workload code --duration-s 60 --engine "
    "sglang --json"
)
@handles_input_errors
@from_config(LoadConfig, quiet=True)
def load(cfg: LoadConfig, as_json: bool, quiet: bool):
    """Load-test an OpenAI-compatible server and measure what users get, per load point.

    Per request: TTFT, TPOT, per-user speed (1/TPOT), chunks and tokens per chunk, from
    server-reported token counts. Per point: a steady-state window, throughput, latency
    percentiles, goodput, and tau / acceptance / per-position survival from the server's
    speculative-decoding counters, taken as deltas over the window.
    """
    from ..load import run_load
    from ..store import LoadWriter, Store

    cfg.validate()
    writer = LoadWriter(Store(cfg.out, cfg.force))
    show = not (quiet or as_json)
    try:
        with progress_bar("load point", show) as progress:
            doc = run_load(
                cfg, writer, progress, (lambda s: err.print(present.load_point(s), highlight=False)) if show else None
            )
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted[/]: kept {cfg.out}/requests.jsonl and the finished points in {cfg.out}/load.json"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        present.load(doc)
        console.print(
            f"wrote {cfg.out}/load.json, {cfg.out}/requests.jsonl, {cfg.out}/points/", style="dim", highlight=False
        )
    if doc.get("stopped"):
        err.print(f"[bold red]error:[/] {doc['stopped']}; results so far are in {cfg.out}", highlight=False)
        raise typer.Exit(EXIT_INPUT)  # the server could not be measured as asked (1 is only ever gate's "regressed")
    cancelled = sum(s.get("requests_cancelled", 0) for s in doc["points"])
    if cancelled:
        err.print(
            f"[bold red]error:[/] {cancelled} requests were still running when --drain-s ran out and were cancelled "
            "(stalled streams, or raise --drain-s); their partial records are in requests.jsonl",
            highlight=False,
        )
        raise typer.Exit(EXIT_INPUT)
