"""Load generation for one load point: closed-loop concurrency or open-loop arrivals (Poisson or
bursty, optionally ramped up), prompts drawn in a seeded order.

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

from ..core.arrivals import arrivals, prompt_order
from . import prom
from .client import RequestRecord, build_payload, stream_request
from .rawhttp import RawClient, stream_request_raw


@dataclass
class PointPlan:
    """One load point: `concurrency` (closed loop) or `rate` (Poisson, requests/s)."""

    concurrency: int | None = None
    rate: float | None = None
    requests: int | None = None  # budget of requests for the point
    duration_s: float | None = None  # or of time (seconds of issuing)
    warmup_s: float = 1.0
    drain_s: float = 30.0  # after the window closes, wait this long for in-flight requests, then cancel them
    seed: int = 0
    burstiness: float = 1.0  # Gamma shape of open-loop gaps (1: Poisson; core.arrivals)
    ramp_up_s: float = 0.0  # seconds over which the load climbs to its level
    prompt_seed: int | None = 0  # seeded prompt order (None: cycle in file order)
    multi_turn: bool = False  # closed loop: each prompt's turns as one session, replies carried forward

    @property
    def label(self) -> str:
        return f"c={self.concurrency}" if self.concurrency is not None else f"rate={self.rate:.2f}"


@dataclass
class PointRun:
    spec: PointPlan
    records: list[RequestRecord] = field(default_factory=list)
    t0_ns: int = 0  # window start
    t1_ns: int = 0  # window end
    before: prom.Snapshot | None = None
    after: prom.Snapshot | None = None
    scrape_error: str | None = None
    client_cpu_s: float = 0.0
    wall_s: float = 0.0
    aborted: str | None = None  # why issuing stopped early (server unreachable)
    loop_lag_s: list[float] = field(
        default_factory=list
    )  # how late the event loop woke for a timer (client timing error)
    after_drain: prom.Snapshot | None = (
        None  # a scrape once the point's requests ended (engines that count at request end)
    )
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
    http_client: str = "auto"  # raw (live/rawhttp.py), httpx, or auto: raw for http://, httpx for https://

    @property
    def raw(self) -> bool:
        return self.http_client == "raw" or (self.http_client == "auto" and self.url.startswith("http://"))

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + ("/v1/chat/completions" if self.api == "chat" else "/v1/completions")


def _turns(prompt) -> tuple:
    """A prompt's turns: a conversation's, else the prompt itself as one."""
    return getattr(prompt, "turns", ()) or (getattr(prompt, "text", prompt),)


def _domain(prompt) -> str | None:
    """What a request's figures are grouped by: a benchmark line's category, else its set."""
    return getattr(prompt, "category", None) or getattr(prompt, "domain", None)


class _Window:
    """One load point in flight: issues requests (closed loop or Poisson), keeps the steady-state
    window (opens `warmup_s` after the start, closes when the load stops being what was asked
    for), scrapes /metrics through it and watches the event loop's lateness."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        target: Target,
        spec: PointPlan,
        prompts: list,
        start_ns: int,
        id_offset: int,
        on_record,
        on_progress,
    ):
        self.client, self.target, self.spec, self.prompts = client, target, spec, prompts
        # requests go through dsbench's own HTTP/1.1 client where it can (rawhttp.py says why); scrapes through httpx
        self.raw = RawClient(target.timeout_s, min(10.0, target.timeout_s)) if target.raw else None
        self.start_ns, self.id_offset = start_ns, id_offset
        self.on_record, self.on_progress = on_record, on_progress
        self.run = PointRun(spec, t0_ns=start_ns + int(spec.warmup_s * 1e9))
        self.closed = asyncio.Event()
        self.prompt_index = prompt_order(len(prompts), spec.prompt_seed)
        self.issued = self.done = self.refused_in_a_row = 0
        self.reserved = 0  # requests the budget keeps for the later turns of sessions under way
        self.give_up_after = max(10, 2 * (spec.concurrency or 1))

    # -- requests ------------------------------------------------------------------------------

    def next_request(self, scheduled_ns: int, prompt=None) -> RequestRecord | None:
        """The next request to send, or None when the point's budget (or the server) is spent
        (`prompt`: a session's, for its later turns)."""
        spec = self.spec
        if self.refused_in_a_row >= self.give_up_after:
            self.run.aborted = f"server unreachable: {self.refused_in_a_row} connection failures in a row"
            return None
        if spec.duration_s is not None and (time.monotonic_ns() - self.start_ns) / 1e9 >= spec.duration_s:
            return None
        i = self.id_offset + self.issued
        if spec.requests is not None:
            if prompt is not None:  # a session's later turn: its room in the budget was kept when it began
                self.reserved -= 1
            else:  # a new session (or request) starts only if the budget holds all its turns
                turns = self.budgeted_turns(self.prompts[self.prompt_index(i)]) if spec.multi_turn else 1
                if self.issued + self.reserved + turns > spec.requests:
                    return None
                self.reserved += turns - 1
        self.issued += 1
        return RequestRecord(
            id=i,
            point=spec.label,
            scheduled_ns=scheduled_ns,
            max_tokens=self.target.max_tokens,
            domain=_domain(prompt if prompt is not None else self.prompts[self.prompt_index(i)]),
        )

    async def send(self, rec: RequestRecord, text: str | None = None, history: list[dict] | None = None) -> None:
        t = self.target
        if text is None:
            p = self.prompts[self.prompt_index(rec.id)]
            text = getattr(p, "text", p)
        payload = build_payload(t.model, text, t.max_tokens, t.api, t.extra_body, t.continuous_usage, history)
        try:
            if self.raw is not None:
                await stream_request_raw(self.raw, t.endpoint, payload, rec, t.headers, chat=t.api == "chat")
            else:
                await stream_request(self.client, t.endpoint, payload, rec, t.headers, chat=t.api == "chat")
        finally:  # cancelled ones too: stream_request marked them and kept what arrived
            self.run.records.append(rec)
            if self.on_record:
                self.on_record(rec)
            rec.compact()
        self.done += 1
        self.refused_in_a_row = self.refused_in_a_row + 1 if rec.error == "connect" else 0
        if self.on_progress:
            self.on_progress(self.done)

    def close(self) -> None:
        if not self.closed.is_set():
            self.run.t1_ns = time.monotonic_ns()
            self.closed.set()

    async def closed_loop(self) -> list[asyncio.Task]:
        """C workers, each sending its next request when the last one ends (with a ramp-up, worker
        k starts k / C of the way through it); the window closes when the first finds no more work
        (from then on fewer than C are in flight)."""
        c = self.spec.concurrency

        async def worker(k: int) -> None:
            await asyncio.sleep(self.spec.ramp_up_s * k / c)
            while (rec := self.next_request(time.monotonic_ns())) is not None:
                await (self.session(rec) if self.spec.multi_turn else self.send(rec))
            self.close()

        return [asyncio.create_task(worker(k)) for k in range(c)]

    async def session(self, rec: RequestRecord) -> None:
        """One conversation: turn k sends the earlier turns and the server's replies before its own
        prompt, so the context grows turn by turn; each turn is its own request record (`session`
        = the first's id, `turn`). A failed turn ends the session. Under a request budget a session
        starts only when the budget holds all its turns, so none is cut short by it."""
        prompt = self.prompts[self.prompt_index(rec.id)]
        turns = _turns(prompt)
        history: list[dict] = []
        first = rec.id
        room = self.budgeted_turns(prompt) - 1  # later turns the budget keeps for it (next_request reserved them)
        for k, text in enumerate(turns, 1):
            if k > 1:
                if room == 0 or (rec := self.next_request(time.monotonic_ns(), prompt)) is None:
                    break
                room -= 1
            rec.session, rec.turn, rec.reply = first, k, ""
            await self.send(rec, text, list(history))
            if not rec.ok:
                break
            history += [{"role": "user", "content": text}, {"role": "assistant", "content": rec.reply}]
        if self.spec.requests is not None:
            self.reserved -= room  # a session that ended early gives its room back

    def budgeted_turns(self, prompt) -> int:
        """Turns of a session on `prompt` that the point's request budget can hold."""
        return min(len(_turns(prompt)), self.spec.requests or len(_turns(prompt)))

    async def open_loop(self) -> list[asyncio.Task]:
        """Requests at arrival times drawn up front (core.arrivals: Poisson, or bursty Gamma gaps,
        ramped); the window closes at the last arrival."""
        spec, tasks = self.spec, []
        duration = None if spec.requests else spec.duration_s
        for t in arrivals(spec.rate, spec.seed, spec.requests, duration, spec.burstiness, spec.ramp_up_s):
            scheduled = self.start_ns + int(t * 1e9)
            await asyncio.sleep(max(0.0, (scheduled - time.monotonic_ns()) / 1e9))
            rec = self.next_request(scheduled)
            if rec is None:
                break
            tasks.append(asyncio.create_task(self.send(rec)))
        self.close()
        return tasks

    # -- what is measured beside the requests --------------------------------------------------

    async def scrape(self) -> prom.Snapshot:
        t = time.monotonic_ns()
        snap = await prom.scrape(self.client, self.target.metrics_url, self.target.headers)
        self.run.scrapes.append((t, snap))
        return snap

    async def scraper(self, min_period_s: float = 0.1, cost_share: float = 0.05) -> None:
        """Scrapes at both edges of the window and through it (the counters over time give tau's
        uncertainty), no more often than keeps scraping to `cost_share` of the client's time."""
        if not self.target.metrics_url:
            return
        run = self.run
        try:
            await asyncio.sleep(max(0.0, (run.t0_ns - time.monotonic_ns()) / 1e9))
            t = time.perf_counter()
            run.before = await self.scrape()
            cost = time.perf_counter() - t
            while not self.closed.is_set():
                try:  # the period follows the scrapes' cost (smoothed: one slow scrape does not set it)
                    await asyncio.wait_for(self.closed.wait(), max(min_period_s, cost / cost_share))
                except TimeoutError:
                    t = time.perf_counter()
                    await self.scrape()
                    cost = 0.8 * cost + 0.2 * (time.perf_counter() - t)
            run.after = await self.scrape()
        except (httpx.HTTPError, ValueError) as e:
            run.scrape_error = f"metrics scrape failed: {type(e).__name__}: {e}"

    async def loop_monitor(self, period_s: float = 0.01) -> None:
        """A timer's lateness is how late every stamp taken in that moment could be."""
        while not self.closed.is_set():
            t = time.monotonic_ns()
            await asyncio.sleep(period_s)
            self.run.loop_lag_s.append(max(0.0, (time.monotonic_ns() - t) / 1e9 - period_s))

    # -- the point -----------------------------------------------------------------------------

    async def drive(self) -> PointRun:
        spec, run = self.spec, self.run
        scrape_task = asyncio.create_task(self.scraper())
        monitor = asyncio.create_task(self.loop_monitor())
        tasks: list[asyncio.Task] = []
        timer = None
        if spec.duration_s is not None:  # the window ends on time even while every request is still running
            timer = asyncio.get_running_loop().call_later(
                max(0.0, (self.start_ns + spec.duration_s * 1e9 - time.monotonic_ns()) / 1e9), self.close
            )
        try:
            tasks = await (self.closed_loop() if spec.concurrency is not None else self.open_loop())
            await self.closed.wait()
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
            self.close()
            await asyncio.gather(scrape_task, monitor, return_exceptions=True)
            if self.target.metrics_url and run.after is not None:
                try:
                    run.after_drain = await prom.scrape(self.client, self.target.metrics_url, self.target.headers)
                except (httpx.HTTPError, ValueError):
                    pass
        return run


async def run_point(
    target: Target,
    spec: PointPlan,
    prompts: list,
    on_record: Callable[[RequestRecord], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    start_ns: int | None = None,
    id_offset: int = 0,
) -> PointRun:
    """Drive one load point and return its records, window and metric snapshots.

    `start_ns` (monotonic) lets several processes start one point together; `id_offset` keeps
    their request ids apart.
    """
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(target.timeout_s, connect=min(10.0, target.timeout_s))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        if start_ns is not None:
            await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
        start_ns = time.monotonic_ns() if start_ns is None else start_ns
        window = _Window(client, target, spec, prompts, start_ns, id_offset, on_record, on_progress)
        try:
            run = await window.drive()
        finally:
            if window.raw is not None:
                await window.raw.aclose()
    run.client_cpu_s = time.process_time() - cpu0
    run.wall_s = time.perf_counter() - wall0
    return run
