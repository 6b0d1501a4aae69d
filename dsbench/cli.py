"""dsbench command line: parse options, call one library entry point, print with rich.

Heavy imports (numpy, scipy, matplotlib, torch) happen inside commands, so `dsbench --help`
starts fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(
    name="dsbench",
    help="Benchmark and plan capacity for speculative decoding: no-spec, MTP-1, DFlash, Eagle3, DSpark.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output gets room for the tables instead of rich's 80-column default.
_WIDTH = int(os.environ.get("COLUMNS", "0") or 0) or (None if sys.stdout.isatty() else 120)
out = Console(width=_WIDTH)
err = Console(stderr=True, soft_wrap=True)  # one message, one line: never wrapped

METHODS_DEFAULT = "no-spec,mtp-1,dflash,eagle3,dspark"


def handles_input_errors(fn):
    """Bad input becomes one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .results import InputError

        try:
            return fn(*args, **kwargs)
        except InputError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: results written so far are kept")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
):
    if version:
        from . import __version__

        out.print(f"dsbench {__version__}")
        raise typer.Exit()


@app.command(
    epilog="Examples:\n\n"
    "  dsbench sweep --slo 80\n\n"
    "  dsbench sweep --slo 50 --profile h200-qwen3-8b --domain code --methods mtp-1,dspark\n\n"
    "  dsbench sweep --slo 80 --policy dspark-async --json > sweep.json"
)
@handles_input_errors
def sweep(
    slo: Annotated[float, typer.Option(help="Per-user speed to promise, tokens/s per user.")] = 80.0,
    profile: Annotated[str, typer.Option(help="Profile JSON, or a shipped one by name (h100-qwen3-8b, h200-qwen3-8b, a100-qwen3-8b, b200-qwen3-8b, mi300x-qwen3-8b, l40s-qwen3-8b).", rich_help_panel="Inputs")] = "h100-qwen3-8b",
    acceptance: Annotated[Optional[str], typer.Option(help="Acceptance file or directory [default: shipped curves for the profile's model].", rich_help_panel="Inputs")] = None,
    domain: Annotated[str, typer.Option(help="Traffic: math, code, chat, or mix (each request drawn from the three).", rich_help_panel="Inputs")] = "mix",
    methods: Annotated[str, typer.Option(help="Comma-separated methods to compare.")] = METHODS_DEFAULT,
    baseline: Annotated[str, typer.Option(help="Method the ratios are taken against.")] = "mtp-1",
    policy: Annotated[str, typer.Option(help="DSpark verification policy: dspark, dspark-async, fixed[:l], threshold:t.")] = "dspark",
    gamma: Annotated[int, typer.Option(help="Draft block size for DFlash, Eagle3 and DSpark (MTP-1 always drafts 1).")] = 7,
    max_concurrency: Annotated[int, typer.Option(help="Highest concurrency simulated (capped where the KV cache no longer fits).")] = 512,
    seed: Annotated[int, typer.Option(help="Random seed of the simulation.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for frontier.png/.svg and sweep.json/.csv (rewritten each run).", rich_help_panel="Output")] = Path("dsbench-out"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout instead of the table.", rich_help_panel="Output")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel="Output")] = False,
):
    """Find the best decoding method at a per-user speed SLO (simulated on a profile).

    Simulates every method in a closed loop over concurrency, on a step-time profile and
    acceptance curves, and reports per method the highest throughput whose per-user speed
    meets the SLO. Outputs are modelled (simulated), never measured: the table says on what.
    """
    from .sweep import SweepConfig, run_sweep

    cfg = SweepConfig(slo=slo, profile=profile, acceptance=acceptance, domain=domain,
                      methods=tuple(m.strip() for m in methods.split(",") if m.strip()), baseline=baseline,
                      policy=policy, gamma=gamma, max_concurrency=max_concurrency, seed=seed)
    cfg.validate()
    result = _with_progress(lambda progress, on_method: run_sweep(cfg, progress, on_method), cfg, out_dir,
                            show=not (quiet or as_json))
    paths = _write_sweep_outputs(result, out_dir)
    if as_json:
        sys.stdout.write(json.dumps({**result.summary, "frontier": result.rows, "files": [str(p) for p in paths]}) + "\n")
        return
    _print_sweep_table(result.summary)
    out.print("wrote " + ", ".join(str(p) for p in paths), style="dim", highlight=False)


def _with_progress(run, cfg, out_dir: Path, show: bool):
    """Run the sweep with a progress bar, writing partial results after each method."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .results import write_sweep

    rows_so_far: list[dict] = []

    def on_method(name, rows):
        rows_so_far.extend(rows)
        write_sweep(out_dir, {"partial": True, "slo": cfg.slo}, rows_so_far)

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
    from .report.plots import frontier_figure, save
    from .results import write_sweep

    s = result.summary
    jpath, cpath = write_sweep(out_dir, s, result.rows)
    inp = s["inputs"]
    title = f"Throughput vs per-user speed — {inp['device']} x{inp['gpus']}, {inp['model']}, {inp['domain']} traffic"
    subtitle = (f"simulated: {inp['profile_source']} step-time profile ({Path(inp['profile']).name}, context {inp['context_len']}), "
                f"acceptance from {', '.join(inp['acceptance_sources']) or 'none'}; DSpark policy {inp['policy']}, gamma {inp['gamma']}")
    fig = frontier_figure(result.rows, s["slo"], title, subtitle, s["methods"])
    png, svg = out_dir / "frontier.png", out_dir / "frontier.svg"
    save(fig, png, svg)
    return [png, svg, jpath, cpath]


def _fmt(v, spec: str, none: str = "—") -> str:
    return none if v is None else format(v, spec)


def _print_sweep_table(s: dict) -> None:
    from rich.table import Table

    inp = s["inputs"]
    table = Table(
        title=f"Best throughput at per-user speed >= {s['slo']:g} tok/s  ({inp['device']}, {inp['model']}, {inp['domain']} traffic)",
        caption=(f"simulated on a {inp['profile_source']} profile (context {inp['context_len']})"
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
            table.add_row(name, m["policy"], _fmt(m["throughput"], ",.0f"), str(m["concurrency"]), _fmt(m["tps_user"], ".1f"),
                          _fmt(m["verify_budget"], ".2f"), _fmt(m["ratio"], ".2f", "—") + ("x" if m["ratio"] is not None else ""),
                          _fmt(m["peak_tps_user"], ".0f"))
        else:
            table.add_row(name, m["policy"], "[yellow]infeasible[/]", "—", "—", "—", "—", _fmt(m["peak_tps_user"], ".0f"))
    out.print(table)


@app.command(
    epilog="Examples:\n\n"
    "  dsbench profile --model qwen3-8b --layers 2 --requests 1,8 --batch-tokens 1,8,64 --context 1024 --out cpu-8b.json\n\n"
    "  dsbench profile --model ./my-model/ --device cuda --dtype bf16 --requests 1,8,64,256 --out h100-measured.json\n\n"
    "  dsbench profile --roofline H200 --model qwen3-8b --out h200.json\n\n"
    "  dsbench profile --roofline MI300X --model profiles/models/qwen3-30b-a3b.json --context 8192 --out mi300x-moe.json"
)
@handles_input_errors
def profile(
    model: Annotated[str, typer.Option(help="Hugging Face config JSON, model folder, or a shipped config name (qwen3-4b, qwen3-8b, qwen3-14b, qwen3-30b-a3b).")] = "qwen3-8b",
    roofline: Annotated[Optional[str], typer.Option(help="Model this GPU (from profiles/gpus.json) instead of measuring.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].", rich_help_panel="Measurement")] = "auto",
    dtype: Annotated[str, typer.Option(help="bf16, fp16 or fp32 [default: bf16 on CUDA, fp32 on CPU].", rich_help_panel="Measurement")] = "auto",
    batch_tokens: Annotated[str, typer.Option(help="Batch tokens B per verification pass, comma-separated.", rich_help_panel="Measurement")] = "1,2,4,8,16,32,64,128",
    requests: Annotated[str, typer.Option(help="Concurrent requests R (each with a KV cache of --context tokens), comma-separated.", rich_help_panel="Measurement")] = "1,8",
    context: Annotated[int, typer.Option(help="Context length (tokens) of every request's KV cache.")] = 2048,
    layers: Annotated[Optional[int], typer.Option(help="Profile K decoder layers (and 1) and extrapolate to full depth.", rich_help_panel="Measurement")] = None,
    repeats: Annotated[int, typer.Option(help="Timed passes per point.", rich_help_panel="Measurement")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed passes per point before timing.", rich_help_panel="Measurement")] = 3,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch [default: torch's].", rich_help_panel="Measurement")] = None,
    out_file: Annotated[Path, typer.Option("--out", help="Profile JSON to write (rewritten after every point).")] = Path("profile.json"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing --out file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary to stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
):
    """Measure (or model) the target's verification step time over batch tokens and requests.

    Builds the model from its config with random weights on the device, gives R requests a real
    KV cache of --context tokens, and times one batched forward over B tokens (B / R per request,
    logits at every position) per grid point: median and spread over --repeats. With --roofline
    GPU the profile is modelled from datasheet peaks instead (source: roofline).
    """
    from .results import InputError

    if context <= 0:
        raise InputError(f"--context must be a positive number of tokens, got {context}")
    if out_file.exists() and not force:
        raise InputError(f"{out_file} exists; pass --force to overwrite it")
    if roofline is not None:
        _profile_roofline(roofline, model, context, out_file, as_json)
        return
    _profile_measured(model, device, dtype, _csv_list(batch_tokens, int, "--batch-tokens"), _csv_list(requests, int, "--requests"),
                      context, layers, repeats, warmup, threads, out_file, as_json, quiet)


def _profile_roofline(gpu: str, model: str, context: int, out_file: Path, as_json: bool) -> None:
    from .profile.roofline import roofline_profile
    from .results import load_gpu_spec, load_model_spec, write_profile

    doc = roofline_profile(load_gpu_spec(gpu), load_model_spec(model), context)
    write_profile(out_file, doc)
    info = {"file": str(out_file), "source": "roofline", "device": doc["device"]["name"], "model": doc["model"]["name"],
            "context_len": context, "points": len(doc["points"]), "max_requests": doc["max_requests"]}
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
    else:
        out.print(f"wrote {out_file}: roofline profile of {info['model']} on {info['device']}, {info['points']} points, "
                  f"KV cache fits {info['max_requests']} requests at context {context}", highlight=False)


def _profile_measured(model, device, dtype, batch_tokens, requests, context, layers, repeats, warmup, threads, out_file, as_json, quiet):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .profile.measure import measured_profile
    from .results import InputError

    if not batch_tokens or not requests or min(batch_tokens + requests) < 1:
        raise InputError("--batch-tokens and --requests take positive whole numbers, e.g. 1,8,64")
    if repeats < 2 or warmup < 0 or (threads is not None and threads < 1):
        raise InputError("--repeats must be >= 2, --warmup >= 0 and --threads >= 1")
    with Progress(TextColumn("profiling [bold]{task.fields[what]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=quiet or as_json) as bar:
        task = bar.add_task("profile", total=None, what="building model")
        doc = measured_profile(model, device, dtype, batch_tokens, requests, context, layers, repeats, warmup, threads, out_file,
                               on_point=lambda n, total, p: bar.update(task, completed=n, total=total,
                                                                       what=f"R={p['requests']} B={p['batch_tokens']}"))
    pts = doc["points"]
    if as_json:
        sys.stdout.write(json.dumps({"file": str(out_file), "source": "measured", "device": doc["device"]["name"],
                                     "points": len(pts), "oom": doc.get("oom"), "max_cv": max((p["cv"] for p in pts), default=None)}) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"Verification step time — {doc['model']['name']} on {doc['device']['name']} "
                        f"({doc['dtype']}, context {context}, {doc['device']['threads']} threads; measured)")
    for col in ("requests", "batch tokens", "tokens/request", "step ms", "SPS", "cv"):
        table.add_column(col, justify="right")
    for p in pts:
        table.add_row(str(p["requests"]), str(p["batch_tokens"]), str(p["tokens_per_request"]), f"{p['step_s'] * 1e3:.3f}",
                      f"{1 / p['step_s']:.1f}", f"{p['cv']:.1%}")
    out.print(table)
    if doc["scaling"]["measured_layers"] != [doc["scaling"]["model_layers"]]:
        out.print(f"extrapolated from {doc['scaling']['measured_layers']} layers to {doc['scaling']['model_layers']}: "
                  f"{doc['scaling']['formula']}", highlight=False)
    if doc.get("oom"):
        err.print(f"[yellow]stopped:[/] {doc['oom']}; largest batch that fit: {doc['largest_batch_tokens']} tokens", highlight=False)
    out.print(f"wrote {out_file}", style="dim", highlight=False)


@app.command(
    epilog="Examples:\n\n"
    "  dsbench serve --sim\n\n"
    "  dsbench serve --sim --method mtp-1 --profile h200-qwen3-8b --port 8001\n\n"
    "  dsbench serve --sim --time-scale 4 --inject-error 500:0.1 --inject-error 429:0.05"
)
@handles_input_errors
def serve(
    sim: Annotated[bool, typer.Option("--sim", help="Run the simulated engine (rounds timed by the profile, acceptance drawn from the curves).")] = False,
    profile: Annotated[str, typer.Option(help="Profile JSON or shipped name.", rich_help_panel="Engine")] = "h100-qwen3-8b",
    acceptance: Annotated[Optional[str], typer.Option(help="Acceptance file or directory [default: shipped curves for the profile's model].", rich_help_panel="Engine")] = None,
    method: Annotated[str, typer.Option(help="Decoding method: dspark, dflash, eagle3, mtp-1, no-spec.", rich_help_panel="Engine")] = "dspark",
    policy: Annotated[str, typer.Option(help="DSpark verification policy: dspark, dspark-async, fixed[:l], threshold:t.", rich_help_panel="Engine")] = "dspark",
    gamma: Annotated[int, typer.Option(help="Draft block size.", rich_help_panel="Engine")] = 7,
    domain: Annotated[str, typer.Option(help="Acceptance curves: math, code, chat, or mix (one drawn per request).", rich_help_panel="Engine")] = "mix",
    time_scale: Annotated[float, typer.Option(help="Wall seconds per simulated second (2 = twice as slow).", rich_help_panel="Engine")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed of the engine.", rich_help_panel="Engine")] = 0,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless you mean otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    model_name: Annotated[str, typer.Option(help="Model id the server answers to.")] = "dsbench-sim",
    inject_error: Annotated[list[str], typer.Option(help="Fault injection for client tests: STATUS:FRACTION, repeatable (e.g. 500:0.1).", rich_help_panel="Fault injection")] = [],  # noqa: B006
    stall_after: Annotated[Optional[int], typer.Option(help="Stall every stream after this many chunks.", rich_help_panel="Fault injection")] = None,
):
    """Serve an OpenAI-compatible API on 127.0.0.1 backed by a simulated speculative engine.

    Rounds of all in-flight requests are batched continuously; each round lasts
    T_draft + step_s(B, R) from the profile, the verification policy picks each request's
    length, and each round's committed tokens go out as one SSE chunk. /metrics exposes vLLM's
    speculative-decoding counters.
    """
    from .results import InputError

    if not sim:
        raise InputError("only the simulated engine is available yet: pass --sim")
    if not time_scale > 0:
        raise InputError(f"--time-scale must be > 0, got {time_scale}")
    faults = _parse_faults(inject_error, stall_after, seed)
    from .serve.app import create_app
    from .serve.app import serve as run_server
    from .serve.engine import SimEngine
    from .sweep import SweepConfig, build_scenarios

    from .results import load_acceptance, load_profile

    cfg = SweepConfig(profile=profile, acceptance=acceptance, domain=domain, methods=(method,), baseline=method,
                      policy=policy, gamma=gamma)
    prof = load_profile(profile)
    acc_ref = acceptance or str(prof.model.get("name", ""))
    curves = load_acceptance(acc_ref) if method != "no-spec" else []
    scenario = build_scenarios(cfg, prof, curves, acc_ref)[method]
    engine = SimEngine(scenario, time_scale=time_scale, seed=seed, model_name=model_name)
    err.print(f"dsbench serve: simulated {method} ({scenario.policy}, gamma {scenario.gamma}) on {prof.label}, "
              f"time scale {time_scale:g}, model id {model_name!r}", highlight=False)
    run_server(create_app(engine, faults), host, port,
               on_ready=lambda _s: err.print(f"listening on http://{host}:{port}", highlight=False))


def _parse_faults(specs: list[str], stall_after: int | None, seed: int):
    from .results import InputError
    from .serve.app import Faults

    rates = {}
    for spec in specs:
        status, _, frac = spec.partition(":")
        try:
            st, p = int(status), float(frac)
        except ValueError:
            raise InputError(f"--inject-error {spec!r}: expected STATUS:FRACTION, e.g. 500:0.1") from None
        if not (400 <= st <= 599 and 0 <= p <= 1):
            raise InputError(f"--inject-error {spec!r}: status must be 4xx/5xx and fraction in [0, 1]")
        rates[st] = p
    if sum(rates.values()) > 1:
        raise InputError("--inject-error fractions add up to more than 1")
    return Faults(rates, stall_after, seed=seed)


def _csv_list(text: str, kind, name: str) -> list:
    from .results import InputError

    try:
        return [kind(x) for x in text.split(",") if x.strip()] if text else []
    except ValueError:
        raise InputError(f"{name}: expected comma-separated numbers, got {text!r}") from None


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
    drain: Annotated[float, typer.Option(help="Seconds to let in-flight requests finish after a point's window closes before cancelling them.", rich_help_panel="Load")] = 30.0,
    api: Annotated[str, typer.Option(help="chat (/v1/chat/completions) or completions (/v1/completions).", rich_help_panel="Load")] = "chat",
    metrics_url: Annotated[Optional[str], typer.Option(help="Prometheus endpoint [default: URL/metrics].", rich_help_panel="Server metrics")] = None,
    engine: Annotated[str, typer.Option(help="Metric names to read: auto, vllm, sglang, dsbench, none.", rich_help_panel="Server metrics")] = "auto",
    api_key_env: Annotated[Optional[str], typer.Option(help="Environment variable holding the API key (never written to outputs).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds without data before a request counts as timed out.")] = 60.0,
    gpus: Annotated[int, typer.Option(help="GPUs behind the server, for per-GPU throughput.")] = 1,
    slo: Annotated[Optional[float], typer.Option(help="Per-user speed SLO (tok/s) for goodput.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the Poisson arrivals.")] = 0,
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
    from .load import LoadConfig, run_load
    from .results import InputError, LoadWriter

    headers = {}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise InputError(f"--api-key-env {api_key_env}: that environment variable is not set")
        headers["Authorization"] = f"Bearer {key}"
    cfg = LoadConfig(url=url, model=model, workloads=workload, concurrency=_csv_list(concurrency, int, "--concurrency"),
                     rates=_csv_list(rate, float, "--rate"), requests=requests, duration_s=duration, warmup_s=warmup,
                     max_tokens=max_tokens, drain_s=drain, api=api, metrics_url=metrics_url, engine=engine, timeout_s=timeout, gpus=gpus,
                     slo=slo, seed=seed, api_key_env=api_key_env)
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
        raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        _print_load_table(doc)
        out.print(f"wrote {out_dir}/load.json, {out_dir}/requests.jsonl, {out_dir}/points/", style="dim", highlight=False)
    if doc.get("stopped"):
        err.print(f"[bold red]error:[/] {doc['stopped']}; results so far are in {out_dir}", highlight=False)
        raise typer.Exit(1)


def _point_line(s: dict) -> str:
    errs = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors"].items()))
    line = f"{s['label']}: {s['requests_ok']} ok, {s['requests_failed']} failed" + (f" ({errs})" if errs else "")
    if s.get("output_tok_s"):
        line += f"; {s['output_tok_s']:.0f} tok/s, {_fmt(s.get('tps_user_mean'), '.1f')} tok/s/user"
    return line


def _print_load_table(doc: dict) -> None:
    from rich.table import Table

    table = Table(title=f"Load test — engine metrics: {doc.get('engine') or 'none'} (all figures measured)",
                  caption="tok/s/user = 1/TPOT per request (p90: speed 90 % of requests reach); tau = 1 + accepted/drafts "
                          "from server counters over the steady-state window", caption_justify="left")
    for col in ("point", "ok", "failed", "req/s", "tok/s", "tok/s/user", "p90/user", "TTFT50", "TTFT99",
                "TPOT50", "tau", "accept", "tok/chunk"):
        table.add_column(col, justify="left" if col == "point" else "right", no_wrap=True)
    for s in doc["points"]:
        spec = s.get("spec") or {}
        tau = spec.get("tau_per_round") or spec.get("tau")
        table.add_row(s["label"], str(s["requests_ok"]), str(s["requests_failed"]), _fmt(s.get("request_throughput_s"), ".2f"),
                      _fmt(s.get("output_tok_s"), ",.0f"), _fmt(s.get("tps_user_mean"), ".1f"), _fmt(s.get("tps_user_p90"), ".1f"),
                      _fmt(s.get("ttft_s_p50") and s["ttft_s_p50"] * 1e3, ".0f") + " ms", _fmt(s.get("ttft_s_p99") and s["ttft_s_p99"] * 1e3, ".0f") + " ms",
                      _fmt(s.get("tpot_s_p50") and s["tpot_s_p50"] * 1e3, ".1f") + " ms", _fmt(tau, ".2f"),
                      _fmt(spec.get("acceptance_rate"), ".0%"), _fmt(s.get("tokens_per_chunk_mean"), ".2f"))
    out.print(table)
    for s in doc["points"]:
        for key in ("chunk_warning", "window_error", "aborted"):
            if s.get(key):
                err.print(f"[yellow]{s['label']}:[/] {s[key]}", highlight=False)
        if (s.get("spec") or {}).get("error"):
            err.print(f"[yellow]{s['label']}:[/] {s['spec']['error']}", highlight=False)
        if s["requests_failed"]:
            err.print(f"[yellow]{_point_line(s)}[/]", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
