"""Soak: `dsbench load` holding 512 concurrent streams against `dsbench serve --sim` for 10
minutes, with the client's memory and timing error over time. Not a test: the figures go in the
README.

    python benchmarks/bench_soak.py [--streams 512] [--minutes 10] [--json]

The client runs as its own process (`dsbench load --concurrency N --duration-s S`); its resident
memory is read from /proc every 5 s. Its timing error per minute is the chunk lag behind the
server's send stamps (requests grouped by the minute they were sent), and the concurrency it
held is requests in flight per minute. Server (MTP-1 on the H100 profile, --time-scale 2 so two
cores hold it) and client share this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import sim_server  # noqa: E402


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=512)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    duration = a.minutes * 60
    memory = []
    with sim_server("--method", "mtp-1", "--time-scale", "2") as (url, _):
        cmd = [sys.executable, "-m", "dsbench.cli", "load", "--url", url, "--model", "dsbench-sim"]
        cmd += ["--workload", "chat", "--concurrency", str(a.streams), "--duration-s", str(duration)]
        cmd += ["--warmup-s", "10", "--max-tokens", str(a.max_tokens), "--ignore-eos", "--out", str(out), "--quiet"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            rss = rss_mib(proc.pid)
            if rss is not None:
                memory.append((time.monotonic() - t0, rss))
            time.sleep(5)
        if proc.returncode != 0:
            raise SystemExit(f"load failed ({proc.returncode}): {proc.stderr.read()[-500:]}")
    recs = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    start = min(r["start_ns"] for r in recs)
    minutes = []
    for k in range(int(np.ceil(a.minutes))):
        lo, hi = start + k * 60e9, start + (k + 1) * 60e9
        sent = [r for r in recs if lo <= r["start_ns"] < hi and not r.get("error")]
        lags = np.concatenate([r["chunk_lag_s"] for r in sent if r.get("chunk_lag_s")] or [np.zeros(0)])
        busy = sum(max(0, min(r["end_ns"] or hi, hi) - max(r["start_ns"], lo)) for r in recs if r.get("end_ns"))
        mem = [m for t, m in memory if k * 60 <= t < (k + 1) * 60]
        minutes.append(
            {
                "minute": k + 1,
                "requests": len(sent),
                "lag_p50_ms": float(np.percentile(lags, 50) * 1e3) if len(lags) else None,
                "lag_p99_ms": float(np.percentile(lags, 99) * 1e3) if len(lags) else None,
                "in_flight": busy / 60e9,
                "rss_mib": max(mem) if mem else None,
            }
        )
    point = json.loads((out / "load.json").read_text())["points"][0]
    result = {
        "streams": a.streams,
        "minutes": a.minutes,
        "requests": len(recs),
        "failed": point["requests_failed"],
        "concurrency_achieved": point["concurrency_achieved"],
        "client_cpu_frac": point["client_cpu_frac"],
        "rss_mib_first_minute": minutes[0]["rss_mib"],
        "rss_mib_last_minute": minutes[-1]["rss_mib"],
        "per_minute": minutes,
    }
    if a.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"{a.streams} streams for {a.minutes:g} min: {len(recs)} requests, {point['requests_failed']} failed, "
        f"{point['concurrency_achieved']:.1f} in flight, client CPU {point['client_cpu_frac']:.0%}"
    )
    print(f"{'minute':>6} {'requests':>8} {'lag p50':>8} {'lag p99':>8} {'in flight':>9} {'RSS MiB':>8}")
    for m in minutes:
        print(
            f"{m['minute']:6d} {m['requests']:8d} {m['lag_p50_ms'] or 0:7.2f}m {m['lag_p99_ms'] or 0:7.2f}m "
            f"{m['in_flight']:9.1f} {m['rss_mib'] or 0:8.0f}"
        )


if __name__ == "__main__":
    main()
