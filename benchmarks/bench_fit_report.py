"""`dsbench fit` on live points and `dsbench report` / `gate` speed (not a test: figures go in the README).

    python benchmarks/bench_fit_report.py

Starts `dsbench serve --sim` (DSpark on the H100 roofline profile, chat traffic), load-tests it at
1, 2, 4, 8, 16, 32 users (the fit set) and at 6, 12, 24, 48 users (held out), 4 s windows, fits the
latency model to the fit set, and predicts per-user speed at the held-out levels the way
`dsbench sweep --model` does (closed-loop simulation on the fitted model). Then times `dsbench
report` over everything and `dsbench gate` of the run against itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import sim_server  # noqa: E402


def dsbench(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "dsbench", *args], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"dsbench {args[0]} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return r


def main() -> None:
    from dsbench.config import SweepConfig
    from dsbench.core.simulator import simulate
    from dsbench.readers import read_load
    from dsbench.sweep import _fit_defaults, build_scenarios, load_inputs

    root = Path(tempfile.mkdtemp(prefix="dsbench-bench-fit-"))
    with sim_server("--domain", "chat", "--seed", "5") as (url, _):
        for conc, name in (("1,2,4,8,16,32", "fit-set"), ("6,12,24,48", "held-out")):
            dsbench(
                "load",
                "--url",
                url,
                "--model",
                "dsbench-sim",
                "--workload",
                "chat",
                "--concurrency",
                conc,
                "--duration-s",
                "4",
                "--warmup-s",
                "1",
                "--out",
                str(root / name),
                "--quiet",
            )
    doc = json.loads(dsbench("fit", f"dspark={root / 'fit-set'}", "--out", str(root / "fit"), "--json").stdout)
    cfg = SweepConfig(fit=str(root / "fit" / "fit.json"))
    _fit_defaults(cfg)
    scenario = build_scenarios(cfg, cfg.validate(), *load_inputs(cfg))["dspark"]
    print(f"fit on 6 live points: MAPE {doc['mape_pct']:.1f} % (round time), {doc['flagged']} flagged")
    for pt in read_load(root / "held-out")["points"]:
        pred = simulate(scenario, pt["concurrency"], samples=20_000, seed=0)
        print(
            f"held out {pt['concurrency']:>3} users: per-user speed measured {pt['tps_user_mean']:6.1f}, predicted "
            f"{pred.tps_user:6.1f} ({pred.tps_user / pt['tps_user_mean'] - 1:+.1%}); throughput measured "
            f"{pt['output_tok_s']:7.0f}, predicted {pred.throughput_tok_s:7.0f} "
            f"({pred.throughput_tok_s / pt['output_tok_s'] - 1:+.1%})"
        )
    dsbench("sweep", "--out", str(root / "sweep"), "--quiet")
    t0 = time.perf_counter()
    dsbench("report", str(root), "-o", str(root / "report.html"))
    t_report = time.perf_counter() - t0
    t0 = time.perf_counter()
    dsbench("gate", str(root / "fit-set"), "--baseline", str(root / "fit-set"))
    t_gate = time.perf_counter() - t0
    size = (root / "report.html").stat().st_size
    print(
        f"dsbench report (sweep + 2 load runs + fit): {t_report:.1f} s wall, {size / 1e6:.2f} MB; dsbench gate: "
        f"{t_gate:.1f} s wall"
    )
    print(f"files in {root}")


if __name__ == "__main__":
    main()
