"""`dsbench accept`: offline accepted length from a local target and a DeepSpec-layout drafter."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from ..config import AcceptConfig
from . import present
from ._common import app, config, handles_input_errors, json_flag, json_object, option, progress_bar, quiet_flag


@app.command(
    epilog="Examples:\n\n"
    "  dsbench accept --target ./Qwen3-8B --draft ./dspark_qwen3_8b_block7 --workload math --workload chat --samples "
    "50 --out acc/\n\n"
    "  dsbench accept --backend http://127.0.0.1:8000 --model Qwen/Qwen3-8B --method dspark --workload chat "
    "--samples 100 --out acc-live/\n\n"
    "  dsbench sweep --acceptance acc/ --methods mtp-1,dspark --domain math --slo 80"
)
@handles_input_errors
def accept(
    workloads: list[str] = option(AcceptConfig, "workloads"),
    target: Optional[str] = option(AcceptConfig, "target"),
    draft: Optional[str] = option(AcceptConfig, "draft"),
    samples: int = option(AcceptConfig, "samples"),
    max_new_tokens: int = option(AcceptConfig, "max_new_tokens"),
    temperature: float = option(AcceptConfig, "temperature"),
    policy: str = option(AcceptConfig, "policy"),
    profile: Optional[str] = option(AcceptConfig, "profile"),
    gamma: Optional[int] = option(AcceptConfig, "gamma"),
    seed: int = option(AcceptConfig, "seed"),
    batch: int = option(AcceptConfig, "batch"),
    device: str = option(AcceptConfig, "device"),
    backend: Optional[str] = option(AcceptConfig, "backend"),
    model: Optional[str] = option(AcceptConfig, "model"),
    method: str = option(AcceptConfig, "method"),
    concurrency: int = option(AcceptConfig, "concurrency"),
    engine: str = option(AcceptConfig, "engine"),
    top_p: Optional[float] = option(AcceptConfig, "top_p"),
    ignore_eos: bool = option(AcceptConfig, "ignore_eos"),
    extra_body: Optional[str] = option(AcceptConfig, "extra_body"),
    out: Path = option(AcceptConfig, "out"),
    force: bool = option(AcceptConfig, "force"),
    as_json: bool = json_flag(),
    quiet: bool = quiet_flag(),
):
    """Measure accepted length per dataset and domain by in-process speculative decoding.

    tau is pooled per round with the bonus token (DeepSpec's accept_len); survival is DeepSpec's
    accept_rate@k (unconditional); conditional is the paper's Figure 2 curve; the raw per-round
    (proposal, accepted) counts are kept in every file.
    """
    from ..accept import run_accept
    from ..store import Store

    cfg = config(AcceptConfig, {**locals(), "extra_body": json_object(extra_body, "--extra-body")})
    with progress_bar("decoding", show=not (quiet or as_json or backend)) as progress:
        summary = run_accept(cfg, Store(cfg.out, cfg.force), progress)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    elif cfg.backend:
        present.accept_backend(summary)
    else:
        present.accept(summary)
