"""`dsbench load`: live load tests against an OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import EXIT_INPUT, EXIT_INTERRUPTED, app, csv_list, err, fmt, handles_input_errors, json_object, console


@app.command(
    epilog="Examples:\n\n"
    "  dsbench load --url http://127.0.0.1:8000 --model dsbench-sim --concurrency 1,4,16 --workload math --duration 20\n\n"
    "  dsbench load --url http://127.0.0.1:8000 --model Qwen/Qwen3-8B --rate 2,4 --workload workloads/chat.jsonl --requests 200 --api-key-env OPENAI_API_KEY\n\n"
    "  dsbench load --url http://127.0.0.1:30000 --model m --concurrency 8 --workload code --duration 60 --engine sglang --json"
)
@handles_input_errors
def load(
    url: Annotated[str, typer.Option(help="Server base URL (OpenAI-compatible).")],
    model: Annotated[str, typer.Option(help="Model id to request.")],
    workload: Annotated[list[str], typer.Option(help="Prompt file(s), JSONL ({\"prompt\"} or DeepSpec {\"turns\"}), or a shipped set: math, code, chat. Repeatable.")],
    concurrency: Annotated[str, typer.Option(help="Closed-loop load points, comma-separated (e.g. 1,2,4,8).", rich_help_panel="Load")] = "",
    rate: Annotated[str, typer.Option(help="Open-loop Poisson load points in requests/s, comma-separated.", rich_help_panel="Load")] = "",
    requests: Annotated[Optional[int], typer.Option(help="Requests per load point.", rich_help_panel="Load")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Seconds of issuing per load point.", rich_help_panel="Load")] = None,
    warmup: Annotated[float, typer.Option(help="Seconds at the start of each point left out of the steady-state window.", rich_help_panel="Load")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="max_tokens of each request.", rich_help_panel="Load")] = 256,
    drain: Annotated[Optional[float], typer.Option(help="Seconds to let in-flight requests finish after a point's window closes before cancelling them (default: as long as --timeout).", rich_help_panel="Load")] = None,
    api: Annotated[str, typer.Option(help="chat (/v1/chat/completions) or completions (/v1/completions).", rich_help_panel="Load")] = "chat",
    metrics_url: Annotated[Optional[str], typer.Option(help="Prometheus endpoint (default: URL/metrics).", rich_help_panel="Server metrics")] = None,
    engine: Annotated[str, typer.Option(help="Engine whose metrics and response fields to read: auto, vllm, llama.cpp, sglang, dsbench, none.", rich_help_panel="Server metrics")] = "auto",
    api_key_env: Annotated[Optional[str], typer.Option(help="Environment variable holding the API key (never written to outputs).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds without data before a request counts as timed out.")] = 60.0,
    gpus: Annotated[int, typer.Option(help="GPUs behind the server, for per-GPU throughput.")] = 1,
    slo: Annotated[Optional[float], typer.Option(help="Per-user speed SLO (tok/s) for goodput.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature sent with every request (acceptance depends on it). Negative: send none, the server's default.", rich_help_panel="Sampling")] = 0.0,
    top_p: Annotated[Optional[float], typer.Option(help="top_p sent with every request (default: not sent).", rich_help_panel="Sampling")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed sent with every request (default: not sent).", rich_help_panel="Sampling")] = None,
    ignore_eos: Annotated[bool, typer.Option(help="Ask the server to ignore end-of-sequence (every request runs to --max-tokens).", rich_help_panel="Sampling")] = False,
    extra_body: Annotated[Optional[str], typer.Option(help="More request-body fields as a JSON object, sent as given (e.g. '{\"top_k\": 20}').", rich_help_panel="Sampling")] = None,
    arrival_seed: Annotated[int, typer.Option(help="Seed of the Poisson arrivals.", rich_help_panel="Load")] = 0,
    workers: Annotated[int, typer.Option(help="Client processes per load point (needs --duration); for loads one process cannot time accurately.", rich_help_panel="Load")] = 1,
    method: Annotated[Optional[str], typer.Option(help="What the server runs (no-spec, mtp-1, dflash, eagle3, dspark): recorded for `dsbench fit` and `report`.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for requests.jsonl, points/, load.json.", rich_help_panel="Output")] = Path("dsbench-load"),
    force: Annotated[bool, typer.Option(help="Overwrite results already in --out.", rich_help_panel="Output")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as one JSON object.", rich_help_panel="Output")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel="Output")] = False,
):
    """Load-test an OpenAI-compatible server and measure what users get, per load point.

    Per request: TTFT, TPOT, per-user speed (1/TPOT), chunks and tokens per chunk, from
    server-reported token counts. Per point: a steady-state window, throughput, latency
    percentiles, goodput, and tau / acceptance / per-position survival from the server's
    speculative-decoding counters, taken as deltas over the window.
    """
    from ..load import LoadConfig, run_load
    from ..errors import InputError
    from ..store import LoadWriter

    headers = {}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise InputError(f"--api-key-env {api_key_env}: that environment variable is not set")
        headers["Authorization"] = f"Bearer {key}"
    cfg = LoadConfig(url=url, model=model, workloads=workload, concurrency=csv_list(concurrency, int, "--concurrency"),
                     rates=csv_list(rate, float, "--rate"), requests=requests, duration_s=duration, warmup_s=warmup,
                     max_tokens=max_tokens, drain_s=drain, api=api, metrics_url=metrics_url, engine=engine, timeout_s=timeout, gpus=gpus,
                     slo=slo, arrival_seed=arrival_seed, temperature=None if temperature is not None and temperature < 0 else temperature,
                     top_p=top_p, seed=seed, ignore_eos=ignore_eos, extra_body=json_object(extra_body, "--extra-body"),
                     api_key_env=api_key_env, workers=workers, method=method)
    cfg.validate()
    writer = LoadWriter(out_dir, force)
    show = not (quiet or as_json)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("load point [bold]{task.fields[label]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=True, disable=not show)
    task = bar.add_task("load", total=requests, label="")

    def point_start(spec):
        bar.reset(task, total=requests, label=spec.label)

    def point_done(s):
        if show:
            bar.console.print(_point_line(s), highlight=False)

    try:
        with bar:
            doc = run_load(cfg, writer, headers, point_start, lambda n: bar.update(task, completed=n), point_done)
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: kept {out_dir}/requests.jsonl and the finished points in {out_dir}/load.json")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        _print_load_table(doc)
        console.print(f"wrote {out_dir}/load.json, {out_dir}/requests.jsonl, {out_dir}/points/", style="dim", highlight=False)
    if doc.get("stopped"):
        err.print(f"[bold red]error:[/] {doc['stopped']}; results so far are in {out_dir}", highlight=False)
        raise typer.Exit(EXIT_INPUT)  # the server could not be measured as asked (1 is only ever gate's "regressed")
    cancelled = sum(s.get("requests_cancelled", 0) for s in doc["points"])
    if cancelled:
        err.print(f"[bold red]error:[/] {cancelled} requests were still running when --drain ran out and were cancelled "
                  "(stalled streams, or raise --drain); their partial records are in requests.jsonl", highlight=False)
        raise typer.Exit(EXIT_INPUT)


def _point_line(s: dict) -> str:
    errs = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors"].items()))
    line = f"{s['label']}: {s['requests_ok']} ok, {s['requests_failed']} failed" + (f" ({errs})" if errs else "")
    if s.get("requests_cancelled"):
        line += f", {s['requests_cancelled']} cancelled at the drain time"
    if s.get("output_tok_s"):
        line += f"; {s['output_tok_s']:.0f} tok/s, {fmt(s.get('tps_user_mean'), '.1f')} tok/s/user"
    return line


def _print_load_table(doc: dict) -> None:
    from rich.table import Table

    from ..documents import sampling_text

    shown = sampling_text(doc.get("sampling"))
    source = (doc.get("server") or {}).get("source", "measured")
    what = "all figures SIMULATED: the server is dsbench's simulator" if source == "simulated" else "all figures measured"
    table = Table(title=f"Load test — engine: {doc.get('engine') or 'unknown'}; sampling: {shown} ({what})",
                  caption="req/s = completed requests / run; tok/s over the steady-state window; tok/s/user = decode tokens / "
                          "decode time (p90: speed 90 % of requests reach); tau = tokens per decode step, τ/draft = 1 + accepted / "
                          "drafted steps (vLLM's mean acceptance length); src: c = server counters, r = per-request, p = client proxy",
                  caption_justify="left")
    for col in ("point", "ok", "failed", "cancel", "req/s", "tok/s", "tok/s/user", "p90/user", "TTFT50", "TTFT99",
                "TPOT50", "tau", "τ/draft", "accept", "src", "tok/chunk"):
        table.add_column(col, justify="left" if col == "point" else "right", no_wrap=True)
    for s in doc["points"]:
        spec = s.get("spec") or {}
        src = {"server counters": "c", "per-request": "r", "client proxy": "p"}.get(spec.get("source"), "—")
        tau = fmt(spec.get("tau"), ".2f") if spec.get("state") != "unreadable" else "?"
        table.add_row(s["label"], str(s["requests_ok"]), str(s["requests_failed"]), str(s.get("requests_cancelled", 0)),
                      fmt(s.get("request_throughput_s"), ".2f"), fmt(s.get("output_tok_s"), ",.0f"), fmt(s.get("tps_user_mean"), ".1f"),
                      fmt(s.get("tps_user_p90"), ".1f"), fmt(s.get("ttft_s_p50") and s["ttft_s_p50"] * 1e3, ".0f") + " ms",
                      fmt(s.get("ttft_s_p99") and s["ttft_s_p99"] * 1e3, ".0f") + " ms",
                      fmt(s.get("tpot_s_p50") and s["tpot_s_p50"] * 1e3, ".1f") + " ms", tau, fmt(spec.get("tau_drafted"), ".2f"),
                      fmt(spec.get("acceptance_rate"), ".0%"), src, fmt(s.get("tokens_per_chunk_mean"), ".2f"))
    console.print(table)
    for note in doc.get("server_notes") or []:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    for s in doc["points"]:
        for key in ("chunk_warning", "window_warning", "timing_warning", "latency_pool_note", "aborted"):
            if s.get(key):
                err.print(f"[yellow]{s['label']}:[/] {s[key]}", highlight=False)
        spec = s.get("spec") or {}
        for w in spec.get("warnings") or []:
            err.print(f"[yellow]{s['label']}:[/] {w}", highlight=False)
        if spec.get("state") == "unreadable" and spec.get("unreadable_series"):
            err.print(f"[yellow]{s['label']}:[/] speculative series not understood: {', '.join(spec['unreadable_series'])}", highlight=False)
        if s.get("requests_bad_usage"):
            err.print(f"[yellow]{s['label']}:[/] {s['requests_bad_usage']} responses reported impossible token counts "
                      "(left out of token figures; see requests.jsonl usage_error)", highlight=False)
        if s["requests_failed"] or s.get("requests_cancelled"):
            err.print(f"[yellow]{_point_line(s)}[/]", highlight=False)
