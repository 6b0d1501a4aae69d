"""Benchmark the capacity model's hot paths (not a test: figures go in the README).

    python benchmarks/bench_core.py [--json]

1. One call of the DSpark scheduler (Algorithm 1, vectorised) at R = 256, gamma = 7 and
   R = 1024, gamma = 16, median over repeats, against the line-by-line Python loop of the same
   algorithm (dspark_lengths_reference) timed in the same run on the same inputs.
2. `dsbench sweep --slo 80` end to end (fresh process, wall clock) and `dsbench --help`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from dsbench.core.acceptance import RoundSampler
from dsbench.core.policies import dspark_lengths, dspark_lengths_reference
from dsbench.readers import read_acceptance, read_profile


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    """Median seconds of `fn()` over `repeats` calls after `warmup` discarded calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_scheduler(r: int, gamma: int, repeats: int) -> dict:
    surface = read_profile("h100-qwen3-8b").surface()
    table = surface.slice(r).table(r * (1 + gamma))
    curve = next(c for c in read_acceptance("qwen3-8b") if (c.method, c.domain) == ("dspark", "math"))
    conds = np.resize(curve.conditional, gamma)  # longer blocks repeat the curve
    rng = np.random.default_rng(0)
    conf = RoundSampler(conds).sample(rng, (r,)).astype(float)
    assert np.array_equal(dspark_lengths(conf, table), dspark_lengths_reference(conf, table))
    vec = median_time(lambda: dspark_lengths(conf, table), repeats)
    loop = median_time(lambda: dspark_lengths_reference(conf, table), max(5, repeats // 50), warmup=1)
    return {
        "requests": r,
        "gamma": gamma,
        "vectorised_us": vec * 1e6,
        "python_loop_us": loop * 1e6,
        "speedup": loop / vec,
    }


def wall(cmd: list[str], runs: int = 3) -> float:
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    results = {"scheduler": [bench_scheduler(256, 7, 2000), bench_scheduler(1024, 16, 300)]}
    exe = shutil.which("dsbench") or sys.executable
    base = [exe] if exe.endswith("dsbench") else [exe, "-m", "dsbench.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        out = ["--force", "--out", os.path.join(tmp, "o")]
        results["sweep_wall_s"] = wall([*base, "sweep", "--slo", "80", "--quiet", *out])
        doc = json.loads(
            subprocess.run([*base, "sweep", "--json", *out], check=True, capture_output=True, text=True).stdout
        )
    results["sweep_levels"] = len(doc["inputs"]["concurrency"])
    results["sweep_max_rel_se"] = max(p["throughput_rel_se"] for p in doc["frontier"])
    results["help_wall_s"] = wall([*base, "--help"], runs=5)
    results["cpu"] = {"cores": os.cpu_count(), "python": sys.version.split()[0], "numpy": np.__version__}
    if "--json" in sys.argv:
        print(json.dumps(results, indent=1))
        return
    for s in results["scheduler"]:
        print(
            f"scheduler R={s['requests']:>4} gamma={s['gamma']:>2}: {s['vectorised_us']:8.1f} us median "
            f"(python loop {s['python_loop_us']:9.1f} us, {s['speedup']:.0f}x)"
        )
    print(
        f"dsbench sweep --slo 80: {results['sweep_wall_s']:.2f} s wall, {results['sweep_levels']} concurrency levels "
        "x 5 methods (gamma searched), "
        f"max Monte-Carlo rel. s.e. {results['sweep_max_rel_se']:.2%}"
    )
    print(f"dsbench --help: {results['help_wall_s']:.2f} s wall")


if __name__ == "__main__":
    main()
