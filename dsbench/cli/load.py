"""`dsbench load`: live load tests against an OpenAI-compatible server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..config import LoadConfig
from . import present
from ._common import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    app,
    config,
    console,
    err,
    handles_input_errors,
    json_flag,
    json_object,
    option,
    progress_bar,
    quiet_flag,
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
def load(
    url: str = option(LoadConfig, "url"),
    model: str = option(LoadConfig, "model"),
    workloads: list[str] = option(LoadConfig, "workloads"),
    concurrency: str = option(LoadConfig, "concurrency"),
    rates: str = option(LoadConfig, "rates"),
    requests: Optional[int] = option(LoadConfig, "requests"),
    duration_s: Optional[float] = option(LoadConfig, "duration_s"),
    warmup_s: float = option(LoadConfig, "warmup_s"),
    max_tokens: int = option(LoadConfig, "max_tokens"),
    drain_s: Optional[float] = option(LoadConfig, "drain_s"),
    api: str = option(LoadConfig, "api"),
    arrival_seed: int = option(LoadConfig, "arrival_seed"),
    workers: int = option(LoadConfig, "workers"),
    metrics_url: Optional[str] = option(LoadConfig, "metrics_url"),
    engine: str = option(LoadConfig, "engine"),
    temperature: Optional[float] = option(LoadConfig, "temperature"),
    top_p: Optional[float] = option(LoadConfig, "top_p"),
    seed: Optional[int] = option(LoadConfig, "seed"),
    ignore_eos: bool = option(LoadConfig, "ignore_eos"),
    extra_body: Optional[str] = option(LoadConfig, "extra_body"),
    api_key_env: Optional[str] = option(LoadConfig, "api_key_env"),
    timeout_s: float = option(LoadConfig, "timeout_s"),
    gpus: int = option(LoadConfig, "gpus"),
    slo: Optional[float] = option(LoadConfig, "slo"),
    method: Optional[str] = option(LoadConfig, "method"),
    out: Path = option(LoadConfig, "out"),
    force: bool = option(LoadConfig, "force"),
    as_json: bool = json_flag(),
    quiet: bool = quiet_flag(),
):
    """Load-test an OpenAI-compatible server and measure what users get, per load point.

    Per request: TTFT, TPOT, per-user speed (1/TPOT), chunks and tokens per chunk, from
    server-reported token counts. Per point: a steady-state window, throughput, latency
    percentiles, goodput, and tau / acceptance / per-position survival from the server's
    speculative-decoding counters, taken as deltas over the window.
    """
    from ..load import run_load
    from ..store import LoadWriter, Store

    cfg = config(LoadConfig, {**locals(), "extra_body": json_object(extra_body, "--extra-body")})
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
