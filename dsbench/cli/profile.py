"""`dsbench profile`: measured or roofline-modelled step-time profiles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import app, csv_list, err, handles_input_errors, console


@app.command(
    epilog="Examples:\n\n"
    "  dsbench profile --model qwen3-8b --layers 2 --requests 1,8 --batch-tokens 1,8,64 --context 1024 --out cpu-8b.json\n\n"
    "  dsbench profile --model ./my-model/ --device cuda --dtype bf16 --requests 1,8,64,256 --out h100-measured.json\n\n"
    "  dsbench profile --model tiny-qwen3 --device cpu --draft all --gamma 1,4,7 --out cpu-tiny.json\n\n"
    "  dsbench profile --roofline H200 --model qwen3-8b --out h200.json\n\n"
    "  dsbench profile --roofline MI300X --model profiles/models/qwen3-30b-a3b.json --context 8192 --out mi300x-moe.json"
)
@handles_input_errors
def profile(
    model: Annotated[str, typer.Option(help="Hugging Face config JSON, model folder, or a shipped config name (qwen3-4b, qwen3-8b, qwen3-14b, qwen3-30b-a3b).")] = "qwen3-8b",
    roofline: Annotated[Optional[str], typer.Option(help="Model this GPU (from profiles/gpus.json) instead of measuring.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].", rich_help_panel="Measurement")] = "auto",
    dtype: Annotated[str, typer.Option(help="bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on CPU).", rich_help_panel="Measurement")] = "auto",
    batch_tokens: Annotated[str, typer.Option(help="Batch tokens B per verification pass, comma-separated.", rich_help_panel="Measurement")] = "1,2,4,8,16,32,64,128",
    requests: Annotated[str, typer.Option(help="Concurrent requests R (each with a KV cache of --context tokens), comma-separated.", rich_help_panel="Measurement")] = "1,8",
    context: Annotated[int, typer.Option(help="Context length (tokens) of every request's KV cache.")] = 2048,
    layers: Annotated[Optional[int], typer.Option(help="Profile K decoder layers (and 1) and extrapolate to full depth.", rich_help_panel="Measurement")] = None,
    repeats: Annotated[int, typer.Option(help="Timed passes per point.", rich_help_panel="Measurement")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed passes per point before timing.", rich_help_panel="Measurement")] = 3,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: torch's).", rich_help_panel="Measurement")] = None,
    cuda_graph: Annotated[bool, typer.Option("--cuda-graph", help="Capture each pass in a CUDA graph and time its replay (CUDA only).", rich_help_panel="Measurement")] = False,
    draft: Annotated[str, typer.Option(help="Also measure drafter cost T_draft(R, gamma): comma-separated methods (mtp-1, eagle3, dflash, dspark) or all.", rich_help_panel="Drafters")] = "",
    gamma: Annotated[str, typer.Option(help="Draft block sizes for --draft, comma-separated.", rich_help_panel="Drafters")] = "1,2,4,7",
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
    from ..errors import InputError

    if context <= 0:
        raise InputError(f"--context must be a positive number of tokens, got {context}")
    if out_file.exists() and not force:
        raise InputError(f"{out_file} exists; pass --force to overwrite it")
    if roofline is not None:
        _profile_roofline(roofline, model, context, out_file, as_json)
        return
    drafts = ("mtp-1", "eagle3", "dflash", "dspark") if draft.strip() == "all" else tuple(m.strip() for m in draft.split(",") if m.strip())
    unknown = [m for m in drafts if m not in ("mtp-1", "eagle3", "dflash", "dspark")]
    if unknown:
        raise InputError(f"--draft: no drafter for {', '.join(unknown)}; choose from mtp-1, eagle3, dflash, dspark or all")
    gammas = tuple(csv_list(gamma, int, "--gamma"))
    if drafts and (not gammas or min(gammas) < 1):
        raise InputError("--gamma takes positive whole numbers, e.g. 1,2,4,7")
    _profile_measured(model, device, dtype, csv_list(batch_tokens, int, "--batch-tokens"), csv_list(requests, int, "--requests"),
                      context, layers, repeats, warmup, threads, out_file, as_json, quiet, drafts, gammas, cuda_graph)


def _profile_roofline(gpu: str, model: str, context: int, out_file: Path, as_json: bool) -> None:
    from ..profile.roofline import roofline_profile
    from ..shipped import read_gpu_spec, read_model_spec
    from ..store import write_profile

    doc = roofline_profile(read_gpu_spec(gpu), read_model_spec(model), context)
    write_profile(out_file, doc)
    info = {"file": str(out_file), "source": "roofline", "device": doc["device"]["name"], "model": doc["model"]["name"],
            "context_len": context, "points": len(doc["points"]), "max_requests": doc["max_requests"]}
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
    else:
        console.print(f"wrote {out_file}: roofline profile of {info['model']} on {info['device']}, {info['points']} points, "
                  f"KV cache fits {info['max_requests']} requests at context {context}", highlight=False)


def _profile_measured(model, device, dtype, batch_tokens, requests, context, layers, repeats, warmup, threads, out_file, as_json, quiet,
                      drafts=(), gammas=(1, 2, 4, 7), cuda_graph=False):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..profile.measure import measured_profile
    from ..errors import InputError

    if not batch_tokens or not requests or min(batch_tokens + requests) < 1:
        raise InputError("--batch-tokens and --requests take positive whole numbers, e.g. 1,8,64")
    if repeats < 2 or warmup < 0 or (threads is not None and threads < 1):
        raise InputError("--repeats must be >= 2, --warmup >= 0 and --threads >= 1")
    with Progress(TextColumn("profiling [bold]{task.fields[what]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=quiet or as_json) as bar:
        task = bar.add_task("profile", total=None, what="building model")
        doc = measured_profile(model, device, dtype, batch_tokens, requests, context, layers, repeats, warmup, threads, out_file,
                               on_point=lambda n, total, p: bar.update(task, completed=n, total=total,
                                                                       what=f"R={p['requests']} B={p['batch_tokens']}"),
                               draft_methods=drafts, gammas=gammas, cuda_graph=cuda_graph)
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
    console.print(table)
    for method, table in doc.get("draft", {}).items():
        cells = ", ".join(f"R={p['requests']} g={p['gamma']}: {p['step_s'] * 1e3:.2f} ms" for p in table["points"])
        console.print(f"draft {method}: {cells}", highlight=False)
    if doc["scaling"]["measured_layers"] != [doc["scaling"]["model_layers"]]:
        console.print(f"extrapolated from {doc['scaling']['measured_layers']} layers to {doc['scaling']['model_layers']}: "
                  f"{doc['scaling']['formula']}", highlight=False)
    if doc.get("oom"):
        err.print(f"[yellow]stopped:[/] {doc['oom']}; largest batch that fit: {doc['largest_batch_tokens']} tokens", highlight=False)
    console.print(f"wrote {out_file}", style="dim", highlight=False)
