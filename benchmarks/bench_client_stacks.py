"""Which HTTP / event-loop stack should the load client use? Each candidate streams the same
closed-loop load (N streams, MTP-1 on the H100 profile at real time, `dsbench serve --sim`
stamping every chunk with its send time) in its own process; per candidate: client CPU per 1,000
tokens, chunk lag behind the server's stamps (p50, p99), and where the httpx client's time goes
(cProfile, by package). Not a test: the figures go in the README.

    python benchmarks/bench_client_stacks.py [--streams 256] [--seconds 15] [--json]

Candidates: dsbench's client as it is (httpx, stamps per read, events parsed after the stream),
the same on uvloop, a minimal HTTP/1.1 client on asyncio streams (the same stamping and parsing,
no HTTP library), and that on uvloop. uvloop is used where it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import sim_server  # noqa: E402

BODY = {
    "model": "dsbench-sim",
    "max_tokens": 128,
    "stream": True,
    "stream_options": {"include_usage": True},
    "ignore_eos": True,
    "dsbench_trace": True,
}


def _events(reads: list[tuple[int, bytes]]) -> list[tuple[int, dict]]:
    """(stamp, event) per SSE data line; a line split across reads takes the later stamp."""
    out, buf = [], b""
    for t, data in reads:
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                out.append((t, json.loads(line[5:])))
    return out


async def httpx_stream(client, url: str, body: dict) -> list[tuple[int, bytes]]:
    reads = []
    async with client.stream("POST", url, json=body) as resp:
        async for data in resp.aiter_bytes():
            reads.append((time.monotonic_ns(), data))
    return reads


async def raw_stream(url: str, body: dict) -> list[tuple[int, bytes]]:
    """POST over a fresh connection (Connection: close), HTTP/1.1 chunked framing removed."""
    u = urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    payload = json.dumps(body).encode()
    writer.write(
        f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    head = await reader.readuntil(b"\r\n\r\n")
    chunked = b"chunked" in head.lower()
    reads, pending = [], b""
    while data := await reader.read(65536):
        now = time.monotonic_ns()
        if not chunked:
            reads.append((now, data))
            continue
        pending += data
        body_bytes = b""
        while True:  # strip complete chunk frames; keep a partial one for the next read
            end = pending.find(b"\r\n")
            if end < 0:
                break
            size = int(pending[:end].split(b";")[0], 16)
            if len(pending) < end + 2 + size + 2:
                break
            body_bytes += pending[end + 2 : end + 2 + size]
            pending = pending[end + 2 + size + 2 :]
        if body_bytes:
            reads.append((now, body_bytes))
    writer.close()
    return reads


async def drive(stack: str, url: str, streams: int, seconds: float) -> dict:
    import httpx

    endpoint = url + "/v1/chat/completions"
    body = {**BODY, "messages": [{"role": "user", "content": "hello there"}]}
    lags, tokens = [], 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker():
            nonlocal tokens
            while time.monotonic() < deadline:
                reads = await (raw_stream(endpoint, body) if stack == "raw" else httpx_stream(client, endpoint, body))
                last = 0
                for t, ev in _events(reads):
                    if "dsbench_sent_ns" in ev:
                        lags.append((t - ev["dsbench_sent_ns"]) / 1e9)
                    if ev.get("usage"):
                        last = ev["usage"].get("completion_tokens") or last
                tokens += last

        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(streams)))
        cpu = time.process_time() - cpu
    lag = np.asarray(lags)
    return {
        "cpu_s_per_1k_tokens": cpu / tokens * 1000 if tokens else None,
        "lag_p50_ms": float(np.percentile(lag, 50) * 1e3),
        "lag_p99_ms": float(np.percentile(lag, 99) * 1e3),
        "tokens": tokens,
        "cpu_frac": cpu / seconds,
    }


def child(stack: str, loop: str, url: str, streams: int, seconds: float, profile: bool) -> None:
    run = lambda: drive(stack, url, streams, seconds)  # noqa: E731
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    if loop == "uvloop":
        import uvloop

        result = uvloop.run(run())
    else:
        result = asyncio.run(run())
    if prof:
        prof.disable()
        by_package: dict[str, float] = {}
        for (file, _, _), (_, _, tottime, _, _) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
            names = ("httpx", "httpcore", "anyio", "h11", "json", "asyncio", "uvloop", "dsbench")
            key = next((k for k in names if k in file), "builtins" if file == "~" else "other")
            by_package[key] = by_package.get(key, 0.0) + tottime
        total = sum(by_package.values())
        result["profile_share"] = {k: v / total for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])}
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("STACK", "LOOP", "URL"))
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    if a.child:
        child(*a.child, a.streams, a.seconds, a.profile)
        return
    try:
        import uvloop  # noqa: F401

        loops = ("asyncio", "uvloop")
    except ImportError:
        loops = ("asyncio",)
    rows = []
    with sim_server("--method", "mtp-1") as (url, _):
        runs = [("httpx", "asyncio", True)] + [(s, lp, False) for s in ("httpx", "raw") for lp in loops]
        for stack, loop, profile in runs:
            cmd = [sys.executable, __file__, "--child", stack, loop, url, "--streams", str(a.streams)]
            cmd += ["--seconds", str(a.seconds)] + (["--profile"] if profile else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{stack} / {loop} failed: {done.stderr.strip().splitlines()[-1:]}")
            rows.append({"stack": stack, "loop": loop, "profiled": profile, **json.loads(done.stdout.splitlines()[-1])})
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{a.streams} streams, {a.seconds:g} s each, server and client on the same cores")
    for r in rows:
        what = f"{r['stack']} / {r['loop']}" + (" (profiled)" if r["profiled"] else "")
        print(
            f"{what:28} CPU {r['cpu_s_per_1k_tokens'] * 1e3:6.1f} ms per 1k tokens, lag p50 {r['lag_p50_ms']:6.2f} ms, "
            f"p99 {r['lag_p99_ms']:7.2f} ms, {r['tokens']:,} tokens"
        )
        if r.get("profile_share"):
            print("    where the time goes: " + ", ".join(f"{k} {v:.0%}" for k, v in r["profile_share"].items()))


if __name__ == "__main__":
    main()
