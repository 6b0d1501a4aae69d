"""`dsbench accept`: offline accepted length from a local target and a DeepSpec-layout drafter."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import app, err, fmt, handles_input_errors, json_object, console


@app.command(
    epilog="Examples:\n\n"
    "  dsbench accept --target ./Qwen3-8B --draft ./dspark_qwen3_8b_block7 --workload math --workload chat --samples 50 --out acc/\n\n"
    "  dsbench accept --backend http://127.0.0.1:8000 --model Qwen/Qwen3-8B --method dspark --workload chat --samples 100 --out acc-live/\n\n"
    "  dsbench sweep --acceptance acc/ --methods mtp-1,dspark --domain math --slo 80"
)
@handles_input_errors
def accept(
    workload: Annotated[list[str], typer.Option(help="Prompt file(s) or shipped sets (math, code, chat). Repeatable.")],
    target: Annotated[Optional[str], typer.Option(help="Target model folder (config.json + safetensors + tokenizer).")] = None,
    backend: Annotated[Optional[str], typer.Option(help="Measure against a live server instead (its speculative-decoding metrics).", rich_help_panel="Backend")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model id on the --backend server.", rich_help_panel="Backend")] = None,
    method: Annotated[str, typer.Option(help="What the --backend server runs (names the acceptance files).", rich_help_panel="Backend")] = "dspark",
    concurrency: Annotated[int, typer.Option(help="Requests in flight against --backend.", rich_help_panel="Backend")] = 4,
    engine: Annotated[str, typer.Option(help="Engine of --backend whose metrics and response fields to read: auto, vllm, llama.cpp, sglang, dsbench.", rich_help_panel="Backend")] = "auto",
    top_p: Annotated[Optional[float], typer.Option(help="top_p sent to --backend (default: not sent).", rich_help_panel="Backend")] = None,
    ignore_eos: Annotated[bool, typer.Option(help="Ask --backend to ignore end-of-sequence.", rich_help_panel="Backend")] = False,
    extra_body: Annotated[Optional[str], typer.Option(help="More request-body fields for --backend as a JSON object.", rich_help_panel="Backend")] = None,
    draft: Annotated[Optional[str], typer.Option(help="Drafter checkpoint folder in DeepSpec's layout, or `ngram` for prompt lookup (none: plain decoding, tau = 1).")] = None,
    samples: Annotated[int, typer.Option(help="Prompts per workload file.")] = 20,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate per prompt.")] = 256,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of target and drafter (0 = greedy).")] = 1.0,
    policy: Annotated[str, typer.Option(help="Verification policy: fixed[:l], threshold:t, or dspark (with --profile).")] = "fixed",
    profile: Annotated[Optional[str], typer.Option(help="Step-time profile for --policy dspark (file or shipped name).")] = None,
    gamma: Annotated[Optional[int], typer.Option(help="Draft block size (default: the checkpoint's; 3 for ngram).")] = None,
    seed: Annotated[int, typer.Option(help="Seed (DeepSpec's default 980406; sample i uses seed + i, or batch from i).")] = 980406,
    batch: Annotated[int, typer.Option(help="Prompts decoded together, one target pass per round for all (1: DeepSpec's loop; with --policy dspark the scheduler then sees the batch).")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "cpu",
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the acceptance files sweep reads.")] = Path("dsbench-accept"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
):
    """Measure accepted length per dataset and domain by in-process speculative decoding.

    tau is pooled per round with the bonus token (DeepSpec's accept_len); survival is DeepSpec's
    accept_rate@k (unconditional); conditional is the paper's Figure 2 curve; the raw per-round
    (proposal, accepted) counts are kept in every file.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..accept import AcceptConfig, run_accept, run_accept_backend
    from ..errors import InputError

    if backend:
        if not model:
            raise InputError("--backend needs --model (the model id on that server)")
        sampling = {"temperature": temperature, "seed": seed, "top_p": top_p, "ignore_eos": ignore_eos,
                    "extra_body": json_object(extra_body, "--extra-body")}
        summary = run_accept_backend(backend, model, method, workload, samples, max_new_tokens, concurrency, out_dir, engine,
                                     sampling=sampling)
        if as_json:
            sys.stdout.write(json.dumps(summary) + "\n")
        else:
            for name, d in summary["datasets"].items():
                sp = d["spec"]
                console.print(f"{name}: tau {fmt(sp['tau_drafted'] or sp['tau'], '.3f')} per drafted step, {fmt(sp['tau'], '.3f')} per decode "
                          f"step, acceptance {fmt(sp['acceptance_rate'], '.1%')} ({d['requests_ok']}/{d['requests']} requests, "
                          f"{d['engine']}, {sp['source']})", highlight=False)
            console.print("wrote " + ", ".join(summary["files"]), style="dim", highlight=False)
        return
    if not target:
        raise InputError("give --target (and --draft) for in-process decoding, or --backend URL --model NAME")
    cfg = AcceptConfig(target, draft, workload, samples, max_new_tokens, temperature, seed, device, policy, gamma, profile, batch)
    with Progress(TextColumn("decoding [bold]{task.fields[what]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=quiet or as_json) as bar:
        task = bar.add_task("accept", total=None, what="loading")
        summary = run_accept(cfg, out_dir, lambda name, i, n: bar.update(task, completed=i, total=n, what=name))
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"Accepted length — {summary['method']}, gamma {summary['gamma']} (measured)")
    for col in ("dataset", "rounds", "tau", "mean proposal", "survival by position"):
        table.add_column(col, justify="left" if col in ("dataset", "survival by position") else "right")
    for name, f in summary["datasets"].items():
        table.add_row(name, str(f["rounds"]), fmt(f["tau"], ".3f"), fmt(f["mean_proposal"], ".2f"),
                      " ".join(fmt(s, ".2f") for s in f["survival"]))
    console.print(table)
    console.print("wrote " + (", ".join(summary["files"]) or "nothing (no drafter)"), style="dim", highlight=False)
