"""Write roofline-modelled profiles (`source: roofline`) for hardware that is not at hand.

The numbers come from core.roofline; this module only lays them out on the profile grid and
records every input, so a reader can recompute any point by hand.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..core import roofline as rl
from ..core.methods import METHODS
from ..readers import PROFILE_SCHEMA
from ..store import provenance

REQUEST_LEVELS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
DRAFT_GAMMAS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16)
MAX_GAMMA = 16


def batch_points(requests: int, tile: int, max_gamma: int = MAX_GAMMA) -> np.ndarray:
    """Batch sizes for one request level: both sides of every tile edge (the curve's steps stay
    sharp under linear interpolation), a dense start, and a geometric fill."""
    lo, hi = requests, requests * (1 + max_gamma)
    edges = np.arange(tile, hi + 1, tile)
    pts = np.concatenate([edges, edges + 1, np.arange(lo, min(hi, lo + 64) + 1), np.geomspace(lo, hi, 24).round()])
    return np.unique(pts[(pts >= lo) & (pts <= hi)]).astype(int)


def roofline_profile(
    hw: rl.Hardware,
    model: rl.ModelShape,
    context_len: int = 2048,
    knobs: rl.RooflineKnobs | None = None,
    command: list[str] | None = None,
) -> dict:
    """A complete `dsbench.profile/1` document from the roofline model."""
    kn = knobs or rl.RooflineKnobs()
    points = []
    for r in REQUEST_LEVELS:
        b = batch_points(r, kn.token_tile)
        t = rl.verify_step_s(hw, model, kn, b, r, context_len)
        points += [{"batch_tokens": int(bi), "requests": r, "step_s": float(ti)} for bi, ti in zip(b, t)]
    draft = {}
    for m in METHODS.values():
        if m.drafting == "none":
            continue
        gammas = (m.fixed_gamma,) if m.fixed_gamma else DRAFT_GAMMAS
        pts = [
            {"requests": r, "gamma": g, "step_s": float(rl.draft_step_s(hw, model, kn, m.drafting, r, g, context_len))}
            for r in REQUEST_LEVELS
            for g in gammas
        ]
        draft[m.name] = {"drafting": m.drafting, "points": pts}
    return {
        "schema": PROFILE_SCHEMA,
        "source": "roofline",
        "device": {
            "name": hw.name,
            "gpus": 1,
            "peak_bf16_flops": hw.peak_flops,
            "mem_bw_bytes_s": hw.mem_bw,
            "mem_bytes": hw.mem_bytes,
        },
        "model": {
            "name": model.name,
            **asdict(model),
            "total_params": model.total_params,
            "kv_bytes_per_token": model.kv_bytes_per_token(kn.dtype_bytes),
        },
        "dtype": "bf16",
        "context_len": context_len,
        "max_requests": rl.max_requests(hw, model, kn, context_len),
        "roofline": {
            "formula": "step_s = max(bytes / (mem_bw * bw_efficiency), flops / (peak_bf16_flops * flops_efficiency))"
            " + step_overhead_s + requests * per_request_overhead_s; bytes = weights touched + requests * context_len"
            " * kv_bytes_per_token; flops = 2 * active matmul params * ceil(B / token_tile) * token_tile"
            " + 4 * layers * heads * head_dim * context_len * B",
            "knobs": kn.as_dict(),
            "note": "modelled, not measured: efficiencies and overheads are assumptions stated here",
        },
        "points": points,
        "draft": draft,
        "provenance": provenance(command),
    }
