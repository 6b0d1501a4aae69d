"""One load point spread over several client processes, when one process cannot keep up.

Every worker runs `run_point` on its share of the load (concurrency split evenly, or the rate
divided) from a common monotonic start time (the clock is system-wide on Linux, so stamps from all
workers compare). Records stream back to the parent as they finish, so they are written as they
arrive. The parent owns the window and scrapes /metrics at its edges; sharded points therefore
need --duration (the window's end must be known in advance).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import replace

import httpx

from . import prom
from .client import RequestRecord
from .loadgen import PointPlan, PointRun, Target, run_point

_SPAWN_SLACK_S = 3.0  # workers start this long after the parent decides: time to spawn and import
_ID_STRIDE = 10_000_000


def shares(spec: PointPlan, workers: int) -> list[PointPlan]:
    """The per-worker specs of one point (workers with no share are left out)."""
    if spec.concurrency is not None:
        base, extra = divmod(spec.concurrency, workers)
        return [replace(spec, concurrency=base + (i < extra)) for i in range(workers) if base + (i < extra) > 0]
    return [replace(spec, rate=spec.rate / workers, seed=spec.seed + i) for i in range(workers)]


def _worker(target: Target, spec: PointPlan, prompts: list, start_ns: int, id_offset: int, queue) -> None:
    def send(rec: RequestRecord) -> None:
        queue.put(("record", rec.to_dict()))

    try:
        run = asyncio.run(run_point(target, spec, prompts, on_record=send, start_ns=start_ns, id_offset=id_offset))
        queue.put(("done", {"cpu_s": run.client_cpu_s, "aborted": run.aborted, "loop_lag_s": run.loop_lag_s}))
    except BaseException as e:  # report, never hang the parent
        queue.put(("done", {"cpu_s": 0.0, "aborted": f"worker failed: {type(e).__name__}: {e}"}))


async def run_point_sharded(
    target: Target,
    spec: PointPlan,
    prompts: list,
    workers: int,
    on_record: Callable[[RequestRecord], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PointRun:
    """Run one point over `workers` processes and merge their records into one PointRun."""
    if spec.duration_s is None:
        raise ValueError("a sharded load point needs a duration")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_ns = time.monotonic_ns() + int(_SPAWN_SLACK_S * 1e9)
    worker_target = replace(target, metrics_url=None)  # the parent scrapes, once
    procs = [
        ctx.Process(
            target=_worker, args=(worker_target, s, prompts, start_ns, (i + 1) * _ID_STRIDE, queue), daemon=True
        )
        for i, s in enumerate(shares(spec, workers))
    ]
    wall0 = time.perf_counter()
    for p in procs:
        p.start()
    run = PointRun(spec, t0_ns=start_ns + int(spec.warmup_s * 1e9), t1_ns=start_ns + int(spec.duration_s * 1e9))
    loop = asyncio.get_running_loop()

    async def scrape_edges() -> None:
        if not target.metrics_url:
            return
        async with httpx.AsyncClient(timeout=target.timeout_s) as client:
            try:
                for edge in ("before", "after"):
                    at = run.t0_ns if edge == "before" else run.t1_ns
                    await asyncio.sleep(max(0.0, (at - time.monotonic_ns()) / 1e9))
                    setattr(run, edge, await prom.scrape(client, target.metrics_url, target.headers))
            except (httpx.HTTPError, ValueError) as e:
                run.scrape_error = f"metrics scrape failed: {type(e).__name__}: {e}"

    scraper = asyncio.create_task(scrape_edges())
    try:
        done = 0
        while done < len(procs):
            kind, payload = await loop.run_in_executor(None, queue.get)
            if kind == "record":
                rec = RequestRecord(**payload)
                run.records.append(rec)
                if on_record:
                    on_record(rec)
                rec.compact()
                if on_progress:
                    on_progress(len(run.records))
            else:
                done += 1
                run.client_cpu_s += payload["cpu_s"]
                run.aborted = run.aborted or payload["aborted"]
                run.loop_lag_s += payload.get("loop_lag_s") or []
        await scraper
    finally:
        scraper.cancel()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    run.wall_s = time.perf_counter() - wall0
    return run
