"""Client overhead of `dsbench load` against `dsbench serve --sim` (not a test: figures go in the README).

    python benchmarks/bench_load_client.py [--json]

The simulated server stamps every chunk with its send time (same machine, same monotonic
clock); the client's lag = its receive stamp - that send stamp is the client's timing error.
For each concurrency the server runs MTP-1 on the H100 profile at real time, so every engine
step sends one chunk to every stream at the same instant — the burst a real engine produces.
Each level runs through both request clients (dsbench's own HTTP/1.1 one and httpx). Reported
per level: chunk rate the client handled, lag p50/p99, the lag's spread *within* each
stream (what TPOT would feel; a constant per-stream offset cancels in TPOT), and client CPU.
Server and client share this machine's two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import sim_server  # noqa: E402

LEVELS = (
    (4, 1),
    (8, 1),
    (16, 1),
    (64, 1),
    (256, 1),
    (1000, 1),
    (64, 2),
    (256, 2),
    (1000, 2),
)  # (streams, client processes)


def run_level(url: str, c: int, workers: int, out: Path, http_client: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "dsbench.cli",
        "load",
        "--url",
        url,
        "--model",
        "dsbench-sim",
        "--concurrency",
        str(c),
        "--workers",
        str(workers),
        "--workload",
        "chat",
        "--duration-s",
        "5",
        "--warmup-s",
        "1.5",
        "--max-tokens",
        "100000",
        "--timeout-s",
        "120",
        "--drain-s",
        "0",
        "--http-client",
        http_client,
        "--quiet",
        "--out",
        str(out),
        "--force",
    ]
    # every stream is cut off at the window's end (--drain-s 0), which load reports as exit 2
    subprocess.run(cmd, capture_output=True, text=True)
    p = json.loads((out / "load.json").read_text())["points"][0]
    recs = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    spread = np.concatenate(
        [
            np.asarray(r["chunk_lag_s"][5:]) - np.median(r["chunk_lag_s"][5:])
            for r in recs
            if r.get("chunk_lag_s") and len(r["chunk_lag_s"]) > 10
        ]
        or [np.zeros(1)]
    )
    return {
        "client": http_client,
        "concurrency": c,
        "workers": workers,
        "chunks_s": p["chunks_in_window"] / p["window_s"],
        "lag_p50_ms": p["client_lag_s_p50"] * 1e3,
        "lag_p99_ms": p["client_lag_s_p99"] * 1e3,
        "within_stream_p99_ms": float(np.percentile(np.abs(spread), 99)) * 1e3,
        "client_cpu": p["client_cpu_frac"],
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for http_client in ("raw", "httpx"):
            for c, workers in LEVELS:
                # a fresh server per level, so one level's backlog cannot leak into the next
                with sim_server("--method", "mtp-1", "--seed", "0") as (url, _):
                    rows.append(run_level(url, c, workers, Path(tmp) / f"{http_client}{c}w{workers}", http_client))
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=1))
        return
    print(
        f"{'client':>6} {'streams':>8} {'procs':>5} {'chunks/s':>9} {'lag p50':>9} {'lag p99':>9} "
        f"{'in-stream p99':>14} {'client CPU':>11}"
    )
    for r in rows:
        print(
            f"{r['client']:>6} {r['concurrency']:>8} {r['workers']:>5} {r['chunks_s']:>9.0f} {r['lag_p50_ms']:>7.2f}ms "
            f"{r['lag_p99_ms']:>7.2f}ms "
            f"{r['within_stream_p99_ms']:>12.2f}ms {r['client_cpu']:>10.0%}"
        )
    for http_client in ("raw", "httpx"):
        ok = [r for r in rows if r["lag_p99_ms"] <= 1.0 and r["client"] == http_client]
        best = max(ok, key=lambda r: r["chunks_s"]) if ok else None
        print(
            f"{http_client}: highest chunk rate with p99 client lag <= 1 ms: "
            + (
                f"{best['chunks_s']:.0f} chunks/s at {best['concurrency']} streams, {best['workers']} process(es)"
                if best
                else "none"
            )
        )


if __name__ == "__main__":
    main()
