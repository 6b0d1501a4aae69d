"""Load generation for one load point: closed-loop concurrency or open-loop Poisson arrivals.

The steady-state window opens `warmup` seconds after the first request and closes when the load
stops being what was asked for: for a closed loop, the first time a worker finds no more work
(from then on fewer than C requests are in flight); for an open loop, at the last arrival.
/metrics is scraped at both edges, so the engine's counters are deltas over exactly that window.
Requests still in flight then drain and are recorded, but count only toward error totals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from ..core.arrivals import poisson_arrivals
from . import prom
from .client import RequestRecord, build_payload, stream_request


@dataclass
class PointSpec:
    """One load point: `concurrency` (closed loop) or `rate` (Poisson, requests/s)."""

    concurrency: int | None = None
    rate: float | None = None
    requests: int | None = None  # budget of requests for the point
    duration_s: float | None = None  # or of time (seconds of issuing)
    warmup_s: float = 1.0
    drain_s: float = 30.0  # after the window closes, wait this long for in-flight requests, then cancel them
    seed: int = 0

    @property
    def label(self) -> str:
        return f"c={self.concurrency}" if self.concurrency is not None else f"rate={self.rate:.2f}"


@dataclass
class PointRun:
    spec: PointSpec
    records: list[RequestRecord] = field(default_factory=list)
    t0_ns: int = 0  # window start
    t1_ns: int = 0  # window end
    before: prom.Snapshot | None = None
    after: prom.Snapshot | None = None
    scrape_error: str | None = None
    client_cpu_s: float = 0.0
    wall_s: float = 0.0
    aborted: str | None = None  # why issuing stopped early (server unreachable)
    loop_lag_s: list[float] = field(default_factory=list)  # how late the event loop woke for a timer (client timing error)
    after_drain: prom.Snapshot | None = None  # a scrape once the point's requests ended (engines that count at request end)
    # (monotonic ns, scrape) inside the window, `before` first and `after` last: the counters over time
    scrapes: list[tuple[int, prom.Snapshot]] = field(default_factory=list)


@dataclass
class Target:
    url: str  # base URL, e.g. http://127.0.0.1:8000
    model: str
    api: str = "chat"  # chat | completions
    max_tokens: int = 256
    metrics_url: str | None = None
    headers: dict = field(default_factory=dict)  # never written anywhere (API keys live here)
    timeout_s: float = 60.0
    extra_body: dict = field(default_factory=dict)
    continuous_usage: bool = False  # the server accepts stream_options.continuous_usage_stats

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + ("/v1/chat/completions" if self.api == "chat" else "/v1/completions")


async def run_point(target: Target, spec: PointSpec, prompts: list, on_record: Callable[[RequestRecord], None] | None = None,
                    on_progress: Callable[[int], None] | None = None, start_ns: int | None = None, id_offset: int = 0) -> PointRun:
    """Drive one load point and return its records, window and metric snapshots.

    `start_ns` (monotonic) lets several processes start one point together; `id_offset` keeps
    their request ids apart.
    """
    run = PointRun(spec)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(target.timeout_s, connect=min(10.0, target.timeout_s))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        if start_ns is not None:
            await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
        start_ns = time.monotonic_ns() if start_ns is None else start_ns
        run.t0_ns = start_ns + int(spec.warmup_s * 1e9)
        window_closed = asyncio.Event()
        counter = {"issued": 0, "done": 0, "refused_in_a_row": 0}
        give_up_after = max(10, 2 * (spec.concurrency or 1))

        def next_request(scheduled_ns: int) -> RequestRecord | None:
            if counter["refused_in_a_row"] >= give_up_after:
                run.aborted = f"server unreachable: {counter['refused_in_a_row']} connection failures in a row"
                return None
            elapsed = (time.monotonic_ns() - start_ns) / 1e9
            if spec.requests is not None and counter["issued"] >= spec.requests:
                return None
            if spec.duration_s is not None and elapsed >= spec.duration_s:
                return None
            i = id_offset + counter["issued"]
            counter["issued"] += 1
            return RequestRecord(id=i, point=spec.label, scheduled_ns=scheduled_ns, max_tokens=target.max_tokens,
                                 domain=getattr(prompts[i % len(prompts)], "domain", None))

        async def send(rec: RequestRecord) -> None:
            p = prompts[rec.id % len(prompts)]
            payload = build_payload(target.model, getattr(p, "text", p), target.max_tokens, target.api, target.extra_body,
                                    target.continuous_usage)
            try:
                await stream_request(client, target.endpoint, payload, rec, target.headers, chat=target.api == "chat")
            finally:  # cancelled ones too: stream_request marked them and kept what arrived
                run.records.append(rec)
                if on_record:
                    on_record(rec)
            counter["done"] += 1
            counter["refused_in_a_row"] = counter["refused_in_a_row"] + 1 if rec.error == "connect" else 0
            if on_progress:
                on_progress(counter["done"])

        def close_window() -> None:
            if not window_closed.is_set():
                run.t1_ns = time.monotonic_ns()
                window_closed.set()

        async def scrape() -> prom.Snapshot:
            t = time.monotonic_ns()
            snap = await prom.scrape(client, target.metrics_url, target.headers)
            run.scrapes.append((t, snap))
            return snap

        async def scraper(min_period_s: float = 0.1, cost_share: float = 0.05) -> None:
            # scrapes through the window give the counters over time (tau's uncertainty); no more
            # often than keeps scraping to `cost_share` of the client's time
            if not target.metrics_url:
                return
            try:
                await asyncio.sleep(max(0.0, (run.t0_ns - time.monotonic_ns()) / 1e9))
                t = time.perf_counter()
                run.before = await scrape()
                cost = time.perf_counter() - t
                while not window_closed.is_set():
                    try:  # the period follows the scrapes' cost (smoothed: one slow scrape does not set it)
                        await asyncio.wait_for(window_closed.wait(), max(min_period_s, cost / cost_share))
                    except asyncio.TimeoutError:
                        t = time.perf_counter()
                        await scrape()
                        cost = 0.8 * cost + 0.2 * (time.perf_counter() - t)
                run.after = await scrape()
            except (httpx.HTTPError, ValueError) as e:
                run.scrape_error = f"metrics scrape failed: {type(e).__name__}: {e}"

        async def loop_monitor(period_s: float = 0.01) -> None:
            # a timer's lateness is how late every stamp taken in that moment could be
            while not window_closed.is_set():
                t = time.monotonic_ns()
                await asyncio.sleep(period_s)
                run.loop_lag_s.append(max(0.0, (time.monotonic_ns() - t) / 1e9 - period_s))

        scrape_task = asyncio.create_task(scraper())
        monitor = asyncio.create_task(loop_monitor())
        tasks: list[asyncio.Task] = []
        timer = None
        if spec.duration_s is not None:  # the window ends on time even while every request is still running
            timer = asyncio.get_running_loop().call_later(
                max(0.0, (start_ns + spec.duration_s * 1e9 - time.monotonic_ns()) / 1e9), close_window)
        try:
            if spec.concurrency is not None:
                async def worker() -> None:
                    while True:
                        rec = next_request(time.monotonic_ns())
                        if rec is None:
                            close_window()
                            return
                        await send(rec)

                tasks = [asyncio.create_task(worker()) for _ in range(spec.concurrency)]
            else:
                for t in poisson_arrivals(spec.rate, spec.seed, spec.requests, None if spec.requests else spec.duration_s):
                    scheduled = start_ns + int(t * 1e9)
                    await asyncio.sleep(max(0.0, (scheduled - time.monotonic_ns()) / 1e9))
                    rec = next_request(scheduled)
                    if rec is None:
                        break
                    tasks.append(asyncio.create_task(send(rec)))
                close_window()
            await window_closed.wait()
            if tasks:
                await asyncio.wait(tasks, timeout=spec.drain_s)
        except BaseException:  # interrupted: no closing scrape
            scrape_task.cancel()
            raise
        finally:  # stop every request still running before the client closes
            if timer:
                timer.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            close_window()
            await asyncio.gather(scrape_task, monitor, return_exceptions=True)
            if target.metrics_url and run.after is not None:
                try:
                    run.after_drain = await prom.scrape(client, target.metrics_url, target.headers)
                except (httpx.HTTPError, ValueError):
                    pass
    run.client_cpu_s = time.process_time() - cpu0
    run.wall_s = time.perf_counter() - wall0
    return run
