"""The roofline's shape against a measured CPU profile of the same architecture (not a test:
figures go in the README).

    python benchmarks/roofline_vs_measured.py [--threads 2] [--json]

1. Measures this CPU's achievable fp32 GEMM rate (a 1024 x 1024 x 1024 matmul) and memory
   bandwidth (summing a 512 MiB tensor): the roofline's peaks, with both efficiencies 1.
2. Measures a step-time profile (dsbench's own harness, fp32) of a 2-layer Qwen3-0.6B-shaped model
   with a 32k vocabulary (64 M parameters) over B in 1..128 and R in 1, 16, 64 at context 512.
3. Models the same grid with core.roofline from those peaks two ways: "peaks" fits only the
   fixed per-pass overhead (the measured R = 1, B = 1 time minus the modelled one); "fitted"
   fits the four knobs (both efficiencies, per-pass and per-request overheads; least squares on
   relative error) -- whether the roofline's *form* can describe the measured curve at all.

Printed: per-point error, and the three shape figures compared -- the knee (first B where the pass
is compute-bound), the slope above it (ms per token), and the R term (ms per request at fixed B).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.optimize import least_squares
from transformers import Qwen3Config

from dsbench.core import roofline as rl
from dsbench.profile.measure import profile_target, torch_dtype

B_GRID = (1, 2, 4, 8, 16, 32, 64, 128)
R_GRID = (1, 16, 64)
CONTEXT = 512


def cpu_peaks(repeats: int = 10) -> tuple[float, float]:
    """(fp32 GEMM FLOP/s, memory bytes/s) this CPU achieves, best of `repeats`."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    x = torch.randn(512 * 2**20 // 4)
    gemm, bw = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        gemm.append(2 * 1024**3 / (time.perf_counter() - t))
        t = time.perf_counter()
        x.sum()
        bw.append(x.numel() * 4 / (time.perf_counter() - t))
    return max(gemm), max(bw)


def model_config() -> Qwen3Config:
    return Qwen3Config(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=2,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=32768,
        tie_word_embeddings=False,
    )


def shape_of(cfg: Qwen3Config) -> rl.ModelShape:
    return rl.ModelShape(
        "qwen3-0.6b-2l-32k",
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
        cfg.vocab_size,
    )


def shape_figures(b: np.ndarray, r: np.ndarray, t: np.ndarray) -> dict:
    """Knee (tokens), slope above it (ms/token) at R = 1, and the R term (ms/request) at B = 64."""
    one = r == 1
    bb, tt = b[one], t[one]
    floor = tt[0]
    knee = float(bb[np.argmax(tt > floor * 1.25)])  # first B 25 % above the memory-bound floor
    top = bb >= knee
    slope = float(np.polyfit(bb[top], tt[top], 1)[0]) * 1e3
    at = b == 64
    r_term = float(np.polyfit(r[at], t[at], 1)[0]) * 1e3
    return {"knee_tokens": knee, "slope_ms_per_token": slope, "r_term_ms_per_request": r_term}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    peak, bw = cpu_peaks()
    cfg = model_config()
    measured = profile_target(cfg, "cpu", torch_dtype("fp32", "cpu"), list(B_GRID), list(R_GRID), CONTEXT, repeats=7)
    pts = measured["points"]
    b = np.array([p["batch_tokens"] for p in pts], dtype=float)
    r = np.array([p["requests"] for p in pts], dtype=float)
    t_meas = np.array([p["step_s"] for p in pts])

    hw = rl.Hardware("this CPU", peak, bw, 24e9, peak_fp32_flops=peak)
    dep = rl.Deployment(weight_dtype="fp32", kv_dtype="fp32")
    shape = shape_of(cfg)
    bare = rl.RooflineKnobs(
        bw_efficiency=1.0, flops_efficiency=1.0, step_overhead_s=0.0, per_request_overhead_s=0.0, token_tile=1
    )
    t0 = float(rl.verify_step_s(hw, shape, bare, 1, 1, CONTEXT, dep))
    overhead = max(0.0, t_meas[(b == 1) & (r == 1)][0] - t0)
    kn = rl.RooflineKnobs(**{**bare.as_dict(), "step_overhead_s": overhead})
    t_model = rl.verify_step_s(hw, shape, kn, b, r, CONTEXT, dep)
    err = t_model / t_meas - 1

    def knobs(x):
        names = ("bw_efficiency", "flops_efficiency", "step_overhead_s", "per_request_overhead_s")
        return rl.RooflineKnobs(**{**bare.as_dict(), **dict(zip(names, map(float, x)))})

    fit = least_squares(
        lambda x: rl.verify_step_s(hw, shape, knobs(x), b, r, CONTEXT, dep) / t_meas - 1,
        [0.8, 0.6, overhead, 0.0],
        bounds=([1e-3, 1e-3, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]),
    )
    t_fit = rl.verify_step_s(hw, shape, knobs(fit.x), b, r, CONTEXT, dep)
    err_fit = t_fit / t_meas - 1

    out = {
        "cpu": {"gemm_fp32_gflops": peak / 1e9, "mem_bw_gb_s": bw / 1e9, "threads": args.threads},
        "model": shape.name,
        "fitted_overhead_ms": overhead * 1e3,
        "fitted_knobs": dict(
            zip(("bw_efficiency", "flops_efficiency", "step_overhead_s", "per_request_overhead_s"), map(float, fit.x))
        ),
        "points": [
            {"R": int(ri), "B": int(bi), "measured_ms": tm * 1e3, "peaks_ms": tr * 1e3, "fitted_ms": tf * 1e3}
            for ri, bi, tm, tr, tf in zip(r, b, t_meas, t_model, t_fit)
        ],
        "peaks_mean_abs_error": float(np.mean(np.abs(err))),
        "fitted_mean_abs_error": float(np.mean(np.abs(err_fit))),
        "fitted_max_abs_error": float(np.max(np.abs(err_fit))),
        "measured": shape_figures(b, r, t_meas),
        "peaks": shape_figures(b, r, t_model),
        "fitted": shape_figures(b, r, t_fit),
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"CPU: {peak / 1e9:.0f} GFLOP/s fp32 GEMM, {bw / 1e9:.1f} GB/s, {args.threads} threads; {shape.name}")
    print(
        f"peaks: fixed overhead {overhead * 1e3:.2f} ms per pass; fitted knobs: "
        + ", ".join(f"{k} {v:.3g}" for k, v in out["fitted_knobs"].items())
    )
    print(f"{'R':>4} {'B':>5} {'measured ms':>12} {'peaks ms':>9} {'fitted ms':>10}")
    for p in out["points"]:
        print(f"{p['R']:>4} {p['B']:>5} {p['measured_ms']:>12.2f} {p['peaks_ms']:>9.2f} {p['fitted_ms']:>10.2f}")
    print(
        f"mean |error|: peaks {out['peaks_mean_abs_error']:.0%}, fitted knobs {out['fitted_mean_abs_error']:.0%} "
        f"(max {out['fitted_max_abs_error']:.0%})"
    )
    for k in out["measured"]:
        print(f"{k}: measured {out['measured'][k]:.3f}, peaks {out['peaks'][k]:.3f}, fitted {out['fitted'][k]:.3f}")


if __name__ == "__main__":
    main()
