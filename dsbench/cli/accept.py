"""`dsbench accept`: offline accepted length from a local target and a DeepSpec-layout drafter."""

from __future__ import annotations

import json
import sys

from ..config import AcceptConfig
from . import present
from ._common import (
    app,
    from_config,
    handles_input_errors,
    progress_bar,
)


@app.command(
    epilog="Examples:\n\n"
    "  dsbench accept --target ./Qwen3-8B --draft ./dspark_qwen3_8b_block7 --workload math --workload chat --samples "
    "50 --out acc/\n\n"
    "  dsbench accept --backend http://127.0.0.1:8000 --model Qwen/Qwen3-8B --method dspark --workload chat "
    "--samples 100 --out acc-live/\n\n"
    "  dsbench sweep --acceptance acc/ --methods mtp-1,dspark --domain math --slo 80"
)
@handles_input_errors
@from_config(AcceptConfig, quiet=True)
def accept(cfg: AcceptConfig, as_json: bool, quiet: bool):
    """Measure accepted length per dataset and domain by in-process speculative decoding.

    tau is pooled per round with the bonus token (DeepSpec's accept_len); survival is DeepSpec's
    accept_rate@k (unconditional); conditional is the paper's Figure 2 curve; the raw per-round
    (proposal, accepted) counts are kept in every file.
    """
    from ..accept import run_accept
    from ..store import Store

    with progress_bar("decoding", show=not (quiet or as_json or cfg.backend)) as progress:
        summary = run_accept(cfg, Store(cfg.out, cfg.force), progress)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    elif cfg.backend:
        present.accept_backend(summary)
    else:
        present.accept(summary)
