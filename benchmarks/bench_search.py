"""The live SLO search against three simulated methods: its answer beside the simulator's own
model (the truth), and what it cost beside a fixed grid of the same accuracy. Not a test: the
figures go in the README.

    python benchmarks/bench_search.py [--slo 60] [--time-scale 4] [--max-tokens 512] [--json]

Each method is `dsbench serve --sim` (H100 SXM / Qwen3-8B roofline profile, paper-derived
acceptance, math curves) slowed by --time-scale so that this machine's two cores keep up, and the
SLO is in wall tok/s (model tok/s / time scale). The truth is core.simulate over every
concurrency: C requests always decoding, steady state. The live server is not quite that (a
request waits to join and prefills: TTFT), which is most of the gap the figures show; longer
--max-tokens shrinks it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from dsbench.config import SearchConfig, SweepConfig
from dsbench.core.search import grid_cost
from dsbench.core.simulator import simulate
from dsbench.readers import read_acceptance, read_profile
from dsbench.search import run_search
from dsbench.store import Store
from dsbench.sweep import build_scenarios

METHODS = ("eagle3", "dflash", "dspark")


def truth(method: str, slo_model: float, top: int = 256) -> dict:
    """The model's best concurrency and throughput at the SLO (model tok/s)."""
    cfg = SweepConfig(domain="math", methods=(method,), baseline=method)
    sc = build_scenarios(cfg, cfg.validate(), read_profile("h100-qwen3-8b"), read_acceptance("qwen3-8b"), "qwen3-8b")
    sc = sc[method]
    best = None
    for c in range(1, top + 1):
        r = simulate(sc, c, samples=6000)
        if r.tps_user < slo_model:
            break
        best = (c, r.throughput_tok_s, r.tps_user)
    return {"concurrency": best[0], "throughput": best[1], "speed": best[2]} if best else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slo", type=float, default=60.0, help="wall tok/s per user")
    ap.add_argument("--time-scale", type=float, default=4.0)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--duration-s", type=float, default=12.0)
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-search-"))
    serve = [
        f"{m}={sys.executable} -m dsbench.cli serve --sim --method {m} --domain math "
        f"--time-scale {a.time_scale:g} --port {{port}}"
        for m in METHODS
    ]
    cfg = SearchConfig(
        slo=a.slo,
        serve=serve,
        workloads=["math"],
        max_tokens=a.max_tokens,
        ignore_eos=True,
        duration_s=a.duration_s,
        warmup_s=2.0,
        tolerance=a.tolerance,
        baseline="eagle3",
        out=out,
    )
    t = time.perf_counter()
    doc = run_search(cfg, Store(out))
    wall = time.perf_counter() - t
    rows = []
    for m in doc["methods"]:
        want = truth(m["label"], a.slo * a.time_scale)
        best = m.get("best") or {}
        got = (best.get("throughput_tok_s_gpu") or 0) * a.time_scale
        rows.append(
            {
                "method": m["label"],
                "outcome": m["outcome"],
                "search_concurrency": best.get("concurrency"),
                "search_tok_s": got,
                "true_concurrency": want.get("concurrency"),
                "true_tok_s": want.get("throughput"),
                "error": got / want["throughput"] - 1 if want else None,
                "measurements": m["measurements"],
                "grid_measurements": grid_cost(want.get("concurrency") or 1, a.tolerance, cfg.max_concurrency),
            }
        )
    result = {"slo_wall": a.slo, "time_scale": a.time_scale, "max_tokens": a.max_tokens, "wall_s": wall, "rows": rows}
    if a.json:
        print(json.dumps(result, indent=1))
        return
    print(f"SLO {a.slo:g} wall tok/s/user (x{a.time_scale:g} = model), {a.max_tokens} tokens, search wall {wall:.0f} s")
    print(
        f"{'method':8} {'outcome':10} {'c':>4} {'tok/s':>8} {'true c':>6} {'true tok/s':>10} {'error':>7} {'n':>3} grid"
    )
    for r in rows:
        err = f"{r['error']:+.1%}" if r["error"] is not None else "-"
        print(
            f"{r['method']:8} {r['outcome']:10} {r['search_concurrency']!s:>4} {r['search_tok_s']:8.0f} "
            f"{r['true_concurrency']!s:>6} {r['true_tok_s'] or 0:10.0f} {err:>7} {r['measurements']:3d} "
            f"{r['grid_measurements']}"
        )


if __name__ == "__main__":
    main()
