"""Write roofline-modelled profiles (`source: roofline`) for hardware that is not at hand.

The numbers come from core.roofline; this module only lays them out on the profile grid and
records every input, so a reader can recompute any point by hand.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..core import roofline as rl
from ..core.methods import METHODS
from ..errors import InputError
from ..readers import PROFILE_SCHEMA
from ..shipped import hardware_fields
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
    deployment: rl.Deployment = rl.SINGLE_GPU,
) -> dict:
    """A complete `dsbench.profile/1` document from the roofline model.

    Refuses (InputError) a deployment that cannot hold the model, or one request of it, in memory.
    """
    kn, dep = knobs or rl.RooflineKnobs(), deployment
    problems = dep.problems(model, hw)
    if problems:
        raise InputError("; ".join(problems))
    plans = {m.name: rl.memory_plan(hw, model, kn, context_len, dep, m.drafting) for m in METHODS.values()}
    base = plans["no-spec"]
    if base.max_requests == 0:
        raise InputError(
            f"{model.name} does not fit on {dep.gpus} x {hw.name} at context {context_len}: its weights take "
            f"{base.target_weights / 1e9:.1f} GB per GPU of {base.usable / 1e9:.1f} GB usable, leaving no room for "
            f"one request's KV cache ({base.kv_per_token * context_len / 1e9:.2f} GB per GPU); shard it over more "
            "GPUs (--gpus with --tp/--ep), use a smaller --dtype, or a shorter --context"
        )
    points = []
    for r in REQUEST_LEVELS:
        b = batch_points(r, kn.token_tile)
        t = rl.verify_step_s(hw, model, kn, b, r, context_len, dep)
        points += [{"batch_tokens": int(bi), "requests": r, "step_s": float(ti)} for bi, ti in zip(b, t)]
    draft = {}
    for m in METHODS.values():
        if m.drafting == "none":
            continue
        gammas = (m.fixed_gamma,) if m.fixed_gamma else DRAFT_GAMMAS
        pts = [
            {
                "requests": r,
                "gamma": g,
                "step_s": float(rl.draft_step_s(hw, model, kn, m.drafting, r, g, context_len, dep)),
            }
            for r in REQUEST_LEVELS
            for g in gammas
        ]
        draft[m.name] = {"drafting": m.drafting, "points": pts, "max_requests": plans[m.name].max_requests}
    return {
        "schema": PROFILE_SCHEMA,
        "source": "roofline",
        "device": {**hardware_fields(hw), "gpus": dep.gpus},
        "deployment": asdict(dep),
        "model": {
            "name": model.name,
            **asdict(model),
            "total_params": model.total_params,
            "active_params": model.active_params,
            "kv_bytes_per_token": model.kv_bytes_per_token(rl.KV_DTYPES[dep.kv_dtype]),
        },
        "dtype": dep.weight_dtype,
        "kv_dtype": dep.kv_dtype,
        "context_len": context_len,
        "max_requests": base.max_requests,
        "memory": {name: plan.as_dict() for name, plan in plans.items()},
        "roofline": {
            "formula": FORMULA,
            "knobs": kn.as_dict(),
            "note": "modelled, not measured: efficiencies, overheads and collective latencies are assumptions "
            "stated here; communication is not overlapped with compute (an upper bound on step time)",
        },
        "points": points,
        "draft": draft,
        "provenance": provenance(command),
    }


FORMULA = (
    "step_s = max(bytes / (mem_bw * bw_efficiency), matmul_flops / (matmul_peak * flops_efficiency)"
    " + attention_flops / (peak_bf16_flops * flops_efficiency)) + communication + step_overhead_s"
    " + requests / dp * per_request_overhead_s, on the busiest GPU; bytes = weights it touches (routed experts:"
    " the expected distinct experts its tokens hit) + requests / dp * context_len * KV bytes per token on one GPU;"
    " matmul_flops = 2 * its active params * ceil(B / dp / token_tile) * token_tile; communication = per layer,"
    " 2 TP all-reduces (latency + 2 (tp-1)/tp * B/dp * hidden * 2 bytes / link_bw) and per MoE layer with ep > 1"
    " an fp8 dispatch and a bf16 combine (latency + B/dp * experts_per_token * hidden * bytes * (ep-1)/ep / link_bw)"
)
