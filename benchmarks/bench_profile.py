"""Repeatability and overhead of `dsbench profile` on this machine (not a test: figures go in the README).

    python benchmarks/bench_profile.py [--json]

1. Coefficient of variation of step time over a 16-point grid of the tiny config
   (profiles/models/tiny-qwen3.json: R in {1, 4} x B in {4, 8, ..., 512}), 20 repeats per
   point, 1 thread, context 512.
2. Wall time of that 16-point profile through the CLI, end to end (fresh process).
3. Timing-harness overhead: the same forward passes timed one by one through
   profile.timing.time_calls vs a bare `for` loop around them, total wall time, alternated 7 times.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dsbench.profile.measure import _prepare, _verify_fn, build_model, load_hf_config, profile_target, torch_dtype
from dsbench.profile.timing import time_calls


def main() -> None:
    torch.set_num_threads(1)
    cfg = load_hf_config("tiny-qwen3")
    dt = torch_dtype("fp32", "cpu")
    grid_b = [4, 8, 16, 32, 64, 128, 256, 512]
    pts = profile_target(cfg, "cpu", dt, grid_b, [1, 4], 512, repeats=20, warmup=5)["points"]
    cvs = np.array([p["cv"] for p in pts])
    rcvs = np.array([p["robust_cv"] for p in pts])

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dsbench.cli",
                "profile",
                "--target",
                "tiny-qwen3",
                "--device",
                "cpu",
                "--concurrency",
                "1,4",
                "--batch-tokens",
                ",".join(map(str, grid_b)),
                "--context",
                "512",
                "--repeats",
                "10",
                "--warmup-passes",
                "3",
                "--threads",
                "1",
                "--out",
                str(Path(tmp) / "p.json"),
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - t0
        n_points = len(json.loads((Path(tmp) / "p.json").read_text())["points"])

    model = build_model(cfg, cfg.num_hidden_layers, "cpu", dt)
    fn = _verify_fn(_prepare(model, cfg, 4, 512, 8, "cpu", dt), 8, "cpu")
    for _ in range(5):
        fn()
    ratios = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(50):
            fn()
        bare = time.perf_counter() - t0
        t0 = time.perf_counter()
        time_calls(fn, 50, 0)
        harness = time.perf_counter() - t0
        ratios.append(harness / bare - 1)
    out = {
        "points": len(pts),
        "cv_median": float(np.median(cvs)),
        "cv_max": float(cvs.max()),
        "robust_cv_median": float(np.median(rcvs)),
        "robust_cv_max": float(rcvs.max()),
        "share_points_cv_below_3pct": float((cvs < 0.03).mean()),
        "cli_profile_wall_s": wall,
        "cli_profile_points": n_points,
        "harness_overhead_median": statistics.median(ratios),
        "harness_overhead_runs": ratios,
    }
    if "--json" in sys.argv:
        print(json.dumps(out, indent=1))
        return
    print(
        f"step-time CV over {out['points']} points: median {out['cv_median']:.1%}, max {out['cv_max']:.1%} "
        f"({out['share_points_cv_below_3pct']:.0%} of points below 3 %); robust (MAD) CV median "
        f"{out['robust_cv_median']:.1%}, "
        f"max {out['robust_cv_max']:.1%}"
    )
    print(
        f"16-point CPU profile through the CLI: {out['cli_profile_wall_s']:.1f} s wall ({out['cli_profile_points']} "
        "points)"
    )
    print(
        f"timing-harness overhead vs a bare loop: {out['harness_overhead_median']:+.2%} median of 7 "
        f"(runs: {', '.join(f'{r:+.1%}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
