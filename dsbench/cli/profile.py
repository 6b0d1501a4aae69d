"""`dsbench profile`: measured or roofline-modelled step-time profiles."""

from __future__ import annotations

import json
import sys

from ..config import ProfileConfig
from . import present
from ._common import app, from_config, handles_input_errors, progress_bar


@app.command(
    epilog="Examples:\n\n"
    "  dsbench profile --target qwen3-8b --layers 2 --concurrency 1,8 --batch-tokens 1,8,64 --context 1024 --out "
    "cpu-8b.json\n\n"
    "  dsbench profile --target ./my-model/ --device cuda --dtype bf16 --concurrency 1,8,64,256 --out "
    "h100-measured.json\n\n"
    "  dsbench profile --target tiny-qwen3 --device cpu --draft all --gamma 1,4,7 --out cpu-tiny.json\n\n"
    "  dsbench profile --roofline H200 --target qwen3-8b --out h200.json\n\n"
    "  dsbench profile --roofline MI300X --target profiles/models/qwen3-30b-a3b.json --context 8192 --out "
    "mi300x-moe.json\n\n"
    "  dsbench profile --roofline H800 --target v4-flash-like --gpus 8 --dp 8 --ep 8 --context 4096 --out "
    "h800x8-v4flash.json\n\n"
    "  dsbench profile --roofline B200 --target llama-3.1-70b --gpus 4 --dtype fp4 --kv-dtype fp8 --out b200x4.json"
)
@handles_input_errors
@from_config(ProfileConfig, quiet=True)
def profile(cfg: ProfileConfig, as_json: bool, quiet: bool):
    """Measure (or model) the target's verification step time over batch tokens and requests.

    Builds the model from its config with random weights on the device, gives R requests a real
    KV cache of --context tokens, and times one batched forward over B tokens (B / R per request,
    logits at every position) per grid point: median and spread over --repeats. With --roofline
    GPU the profile is modelled from datasheet peaks instead (source: roofline).
    """
    from ..profile.run import run_profile, save
    from ..store import Store

    store = Store(cfg.out, cfg.force, single="profile.json")
    with progress_bar("profiling", show=not (quiet or as_json)) as progress:
        doc = run_profile(cfg, progress, store)
    path = save(doc, store)
    pts = doc["points"]
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "file": str(path),
                    "source": doc["source"],
                    "device": doc["device"]["name"],
                    "model": doc["model"]["name"],
                    "context_len": doc["context_len"],
                    "points": len(pts),
                    "max_requests": doc.get("max_requests"),
                    "oom": doc.get("oom"),
                    "max_cv": max((p.get("cv", 0.0) for p in pts), default=None),
                    "noisy_points": doc.get("noisy_points", []),
                    "deployment": doc.get("deployment"),
                }
            )
            + "\n"
        )
        return
    present.profile(doc, path)
