"""`dsbench load`: run load points against an OpenAI-compatible server and summarise each.

Orchestration only: live/ sends requests and scrapes metrics, core/loadstats.py computes the
figures, results.LoadWriter writes everything as it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np

from .config import LoadConfig, Progress
from .core.loadstats import NS, chunk_consistency, latency_pool, request_metrics, summarise, timing_warning
from .core.uncertainty import Estimate, block_length, block_ratio_se, ratio_se
from .errors import InputError
from .live import engines, prom
from .live.client import build_payload
from .live.loadgen import PointPlan, PointRun, Target, run_point
from .live.shard import run_point_sharded
from .readers import LOAD_SCHEMA
from .shipped import read_workload
from .store import LoadWriter, provenance

DEFINITIONS = {
    "tps_user": "1 / TPOT per request; pXX = speed reached by XX % of requests; mean = decode tokens / decode time, "
    "pooled",
    "tpot_s": "(E2E - TTFT) / (output tokens - 1)",
    "latency": "over completed requests sent after the warm-up, whenever they finished",
    "request_throughput_req_s": "completed requests / run (first send to last completion), as vLLM's benchmark",
    "output_tok_s": "tokens arriving in the steady-state window / window",
    "tau": "tokens per decode step, bonus included (spec.tau); spec.tau_drafted = 1 + accepted / drafted steps",
}


def spec_window(run: PointRun, engine: str | None, summary: dict, records: list[dict]):
    """The point's speculative figures: per-request statistics where the engine gave them (what
    they lack taken from the counters), else counter deltas over the window, else a client-side
    proxy (tokens per chunk); with the counters' figures beside per-request ones when both exist."""
    from .documents import SpecWindow

    pooled, _ = latency_pool(records, run.t0_ns)
    counters, delta = None, None
    if run.before is not None and run.after is not None:
        tokens = (summary.get("output_tok_s") or 0) * summary["window_s"]
        delta, bad, warnings = engines.counter_delta(engine, run.before, run.after, run.after_drain, tokens)
        counters = engines.figures(
            engine, delta, "server counters", summary.get("first_tokens_in_window") or 0, bad, warnings
        )
    elif run.scrape_error:
        counters = SpecWindow(engine=engine, state="unreadable", source="server counters", warnings=[run.scrape_error])
    per_req = engines.request_window(engine, pooled, fill=delta)
    chosen = per_req if per_req is not None and per_req.state == "active" else counters or per_req
    if chosen is None or (chosen.state == "unknown" and per_req is None):
        tpc = summary.get("tokens_per_chunk_mean")
        if tpc and tpc > 1.05:
            chosen = SpecWindow(
                engine=engine,
                state="unknown",
                source="client proxy",
                tau=tpc,
                notes=["tau ~ tokens per SSE chunk: exact only when the server streams one chunk per decode step"],
                warnings=(chosen.warnings if chosen else []),
            )
        elif chosen is None:
            chosen = SpecWindow(engine=engine, state="unknown")
    return chosen, (counters if chosen.source == "per-request" else None)


def request_figures(engine: str | None, r: dict):
    """One request's speculative figures from the per-request statistics it carried, or None."""
    c = engines.request_counts(engine, r.get("server_stats"), r.get("output_tokens"))
    return engines.figures(engine, c, "per-request", first_tokens=1.0) if c is not None else None


def tau_estimate(
    run: PointRun, engine: str | None, spec, pooled: list[dict], records: list[dict], e2e_s: float | None
) -> Estimate:
    """tau's standard error, from whatever the figures came from: requests (per-request counts,
    or tokens per chunk) are i.i.d. units; counters scraped through the window are a time series."""
    if not spec.tau:
        return Estimate(None, None, 0, "none", "no tau measured")
    num, den = [], []
    if spec.source == "server counters":
        firsts = np.sort([r["first_chunk_ns"] for r in records if r.get("first_chunk_ns")])
        for (ta, a), (tb, b) in zip(run.scrapes, run.scrapes[1:]):
            delta, bad, _ = engines.counter_delta(engine, a, b)
            first = int(np.searchsorted(firsts, tb) - np.searchsorted(firsts, ta))  # first tokens in [ta, tb)
            w = engines.figures(engine, delta, "server counters", first, bad)
            num.append((w.tau or 0.0) * (w.decode_steps or 0.0))
            den.append(w.decode_steps or 0.0)
        span_s = (run.scrapes[-1][0] - run.scrapes[0][0]) / NS if len(run.scrapes) > 1 else 0.0
        life = e2e_s / (span_s / len(num)) if e2e_s and num and span_s > 0 else len(num)
        est = block_ratio_se(num, den, block_length(len(num), life), what="counter scrapes")
    else:
        for r in pooled:
            if spec.source == "per-request":
                w = request_figures(engine, r)
                if w is not None and w.tau and w.decode_steps:
                    num.append(w.tau * w.decode_steps)
                    den.append(w.decode_steps)
            elif len(r.get("chunk_offsets_s") or []) > 1 and r.get("output_tokens"):
                num.append(r["output_tokens"] - (r.get("chunk_tokens") or [1])[0])
                den.append(len(r["chunk_offsets_s"]) - 1)
        est = ratio_se(num, den)
    if est.se is None or not est.value:
        return Estimate(spec.tau, None, est.n, est.method, est.reason, est.longer)
    return Estimate(spec.tau, est.se / est.value * spec.tau, est.n, est.method)  # relative se, on the reported tau


def by_context(records: list[dict], engine: str | None, by_turn: bool) -> list[dict]:
    """Per-user speed and tau against context: per turn of multi-turn sessions (the context grows
    turn by turn), else per quartile of prompt length. tau per request from the engine's
    per-request counts where it gives them, else tokens per decode chunk (a proxy, labelled)."""
    done = [r for r in records if not r.get("error") and r.get("prompt_tokens")]
    if not done:
        return []
    if by_turn:
        groups = {t: [r for r in done if r.get("turn") == t] for t in sorted({r.get("turn") or 1 for r in done})}
    else:
        edges = np.unique(np.percentile([r["prompt_tokens"] for r in done], [0, 25, 50, 75, 100]))
        bins = np.clip(np.searchsorted(edges, [r["prompt_tokens"] for r in done], side="right") - 1, 0, len(edges) - 2)
        groups = {int(b): [r for r, k in zip(done, bins) if k == b] for b in sorted(set(bins.tolist()))}
    rows = []
    for key, group in groups.items():
        metrics = [request_metrics(r) for r in group]
        taus = [w.tau for w in (request_figures(engine, r) for r in group) if w is not None and w.tau]
        source = "per-request"
        if not taus:
            source = "client proxy (tokens per chunk)"
            taus = [m["tokens_per_chunk"] for m in metrics if m["tokens_per_chunk"]]
        speeds = [m["tps_user"] for m in metrics if m["tps_user"]]
        rows.append(
            {
                ("turn" if by_turn else "prompt_quartile"): key,
                "requests": len(group),
                "prompt_tokens_mean": float(np.mean([r["prompt_tokens"] for r in group])),
                "tps_user_p50": float(np.median(speeds)) if speeds else None,
                "tau_mean": float(np.mean(taus)) if taus else None,
                "tau_source": source if taus else None,
            }
        )
    return rows


def summarise_run(
    run: PointRun, cfg: LoadConfig, engine: str | None, source: str = "measured", records: list[dict] | None = None
) -> dict:
    """The summary of one load point (definitions in core/loadstats.py); `source` is what the
    server said it is: measured, or simulated (dsbench serve --sim); `records`: the run's records
    as dicts, when the caller has them already."""
    records = [r.to_dict() for r in run.records] if records is None else records
    s = {
        "label": run.spec.label,
        "mode": "closed" if run.spec.concurrency is not None else "poisson",
        "concurrency": run.spec.concurrency,
        "rate": run.spec.rate,
        "source": source,
    }
    t0 = run.t0_ns
    if run.t1_ns <= run.t0_ns:  # the point ended inside the warm-up: widen the window to the whole point
        starts = [r.start_ns for r in run.records if r.start_ns]
        t0 = min(starts) if starts else run.t0_ns
        s["window_warning"] = (
            "the point ended before --warmup did: the window is the whole point, warm-up included "
            "(lengthen --duration/--requests or shorten --warmup)"
        )
    s.update(
        summarise(
            records, t0, max(run.t1_ns, t0 + 1), cfg.slo, cfg.gpus, run.spec.concurrency, cfg.slo_ttft_s, cfg.slo_tpot_s
        )
    )
    spec, counters = spec_window(run, engine, s, records)
    s["spec"] = spec.model_dump()
    pool, _ = latency_pool(records, t0)
    s["uncertainty"]["tau"] = vars(tau_estimate(run, engine, spec, pool, records, s.get("e2e_s_p50")))
    if counters is not None:
        s["spec_counters"] = counters.model_dump()
    if spec.measured and spec.tau:
        s["chunk_warning"] = chunk_consistency(s.get("tokens_per_chunk_mean"), spec.tau)
    s["by_context"] = by_context(pool, engine, cfg.multi_turn)
    lag = s.get("client_lag_s_p99")
    loop = float(np.percentile(run.loop_lag_s, 99)) if run.loop_lag_s else None
    s["client_loop_lag_s_p99"] = loop
    tokens = (
        float(np.median([r.output_tokens for r in run.records if r.ok and r.output_tokens]))
        if s["requests_ok"]
        else None
    )
    s["timing_warning"] = (
        timing_warning(s.get("tpot_s_p50"), lag, tokens, "chunk lag behind server stamps")
        if lag is not None
        else timing_warning(s.get("tpot_s_p50"), loop, tokens, "event-loop delay")
    )
    s["client_cpu_s"] = run.client_cpu_s
    s["client_cpu_frac"] = run.client_cpu_s / run.wall_s if run.wall_s else None
    s["wall_s"] = run.wall_s
    s["aborted"] = run.aborted
    return s


@dataclass
class ServerInfo:
    """What the pre-flight learnt about the server."""

    engine: str | None  # detected (or forced) engine; None when nothing says
    metrics_url: str | None  # where speculative counters are read, None without /metrics
    served: list[str]  # model ids /v1/models lists
    notes: list[str]
    server: dict = field(
        default_factory=lambda: {"source": "measured"}
    )  # what the server says it is (source: measured | simulated)


def _models(resp: httpx.Response, url: str, model: str) -> tuple[list[str], str | None, dict]:
    """Served model ids, the first `owned_by` and what the server says of itself and of `model`
    from a /v1/models answer (dsbench's `dsbench` card; vLLM's `root` and `max_model_len`); a
    refused key is one line."""
    if resp.status_code in (401, 403):
        raise InputError(
            f"{url}/v1/models refused the request (HTTP {resp.status_code}): wrong or missing API key? "
            "(pass it with --api-key-env VAR)"
        )
    if resp.status_code >= 400 or "json" not in resp.headers.get("content-type", ""):
        return [], None, {}  # some servers have no /v1/models; the pre-flight request decides
    try:
        data = [m for m in resp.json().get("data") or [] if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return [], None, {}
    mine = next((m for m in data if m.get("id") == model), {})
    card = mine.get("dsbench") if isinstance(mine.get("dsbench"), dict) else {}
    server = {k: v for k, v in card.items() if isinstance(v, (str, int, float, bool)) or v is None}
    server.update({k: mine[k] for k in ("root", "max_model_len") if isinstance(mine.get(k), (str, int))})
    return [str(m.get("id")) for m in data], next((m.get("owned_by") for m in data), None), server


async def preflight(cfg: LoadConfig, headers: dict, body: dict) -> ServerInfo:
    """Check that the server answers like an OpenAI-compatible one for this model and request
    body, and find its engine and metrics, before any load point: a wrong URL, model id, key or
    request field is one clear line here, not hundreds of failed requests."""
    base = cfg.url.rstrip("/")
    notes: list[str] = []
    endpoint = base + ("/v1/chat/completions" if cfg.api == "chat" else "/v1/completions")
    probe = {k: v for k, v in body.items() if k != "stream_options"} | {"max_tokens": 1, "stream": False}
    async with httpx.AsyncClient(timeout=cfg.timeout_s) as c:
        try:
            served, owned_by, server = _models(await c.get(base + "/v1/models", headers=headers), base, cfg.model)
            r = await c.post(endpoint, json=probe, headers=headers)
            server["source"] = server.get("source") or r.headers.get("x-dsbench-source") or "measured"
            if server["source"] not in ("measured", "simulated"):
                server["source"] = "measured"
        except httpx.HTTPError as e:
            raise InputError(f"server unreachable at {cfg.url}: {type(e).__name__}: {e}") from None
        is_json = "json" in r.headers.get("content-type", "")
        if r.status_code >= 500 or r.status_code == 429:  # the server's trouble, maybe passing: the load counts these
            notes.append(f"pre-flight request answered HTTP {r.status_code}; load points count such errors per class")
        elif r.status_code >= 400 or not is_json:
            text = " ".join(r.text.split())[:200]
            if served and cfg.model not in served:
                raise InputError(f"model {cfg.model!r} is not served at {cfg.url}; it serves: {', '.join(served)}")
            if r.status_code in (401, 403):
                raise InputError(
                    f"{endpoint} refused the request (HTTP {r.status_code}): wrong or missing API key? "
                    "(pass it with --api-key-env VAR)"
                )
            if not is_json and r.status_code < 400:
                raise InputError(
                    f"{endpoint} answered HTTP {r.status_code} with "
                    f"{r.headers.get('content-type') or 'no content type'}, "
                    f"not JSON: is this an OpenAI-compatible server? ({text[:80]})"
                )
            raise InputError(f"pre-flight request refused: HTTP {r.status_code} from {endpoint}: {text}")
        if cfg.engine == "none":
            return ServerInfo(None, None, served, notes, server)
        murl = cfg.metrics_url or base + "/metrics"
        snap = None
        try:
            snap = await prom.scrape(c, murl, headers)
        except (httpx.HTTPError, ValueError) as e:
            if cfg.metrics_url:
                raise InputError(f"cannot read metrics at {murl}: {type(e).__name__}: {e}") from None
            notes.append(
                f"no Prometheus metrics at {murl} ({type(e).__name__}): speculative figures come from responses only"
            )
    found = engines.detect(snap, owned_by, r.headers.get("server"))
    engine = found if cfg.engine == "auto" else cfg.engine
    if cfg.engine not in ("auto", found):
        a = engines.ADAPTERS[cfg.engine]
        if snap is None or a.counts(snap) is None:
            notes.append(
                f"--engine {cfg.engine}: no {cfg.engine} speculative series at {murl}"
                + (f" (the server looks like {found})" if found else "")
            )
    return ServerInfo(engine, murl if snap is not None else None, served, notes, server)


def request_extras(engine: str | None) -> tuple[dict, bool]:
    """Non-standard request fields for engines known to accept them, and whether to ask for
    usage on every chunk (strict servers reject unknown fields)."""
    extra = {"dsbench": {"dsbench_trace": True}, "sglang": {"return_spec_tokens_details": True}}.get(engine or "", {})
    return extra, engine in ("vllm", "dsbench")


def auth_headers(cfg: LoadConfig) -> dict:
    """The Authorization header from the variable --api-key-env names (the key never enters a file)."""
    import os

    if not cfg.api_key_env:
        return {}
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise InputError(f"--api-key-env {cfg.api_key_env}: that environment variable is not set")
    return {"Authorization": f"Bearer {key}"}


def stopped(run: PointRun, summary: dict) -> str | bool | None:
    """Why a run cannot go on after this point (aborted, or no request completed), else None."""
    if run.aborted or (summary["requests_ok"] == 0 and summary["requests"] > 0):
        what = "failed" if summary["requests_failed"] else "was cancelled at the drain time (stalled streams?)"
        return run.aborted or f"no request of {run.spec.label} completed: every one {what}"
    return None


STREAMS_PER_PROCESS = 256  # what one client process holds well (benchmarks/bench_load_client.py)


def auto_workers(spec: PointPlan) -> int:
    """Client processes for a point when --workers is 0: one per STREAMS_PER_PROCESS closed-loop
    streams, at most the cores; one for open-loop points and points without a duration (sharding
    needs the window to end on time)."""
    import os

    if spec.concurrency is None or spec.duration_s is None or spec.multi_turn:
        return 1
    return max(1, min(os.cpu_count() or 1, -(-spec.concurrency // STREAMS_PER_PROCESS)))


class LoadSession:
    """One server, checked once (`open`), then load points run and summarised one at a time
    (`measure`), every request and point written as it arrives: what `load` runs over its list of
    points, and `search` over the points it chooses."""

    def __init__(self, cfg: LoadConfig, writer: LoadWriter, progress: Progress | None, headers, prompts, sampling):
        self.cfg, self.writer, self.progress = cfg, writer, progress
        self.headers, self.prompts, self.sampling = headers, prompts, sampling
        self.info: ServerInfo | None = None
        self.target: Target | None = None

    async def open(self) -> ServerInfo:
        cfg = self.cfg
        first = build_payload(
            cfg.model, getattr(self.prompts[0], "text", ""), cfg.max_tokens, cfg.api, self.sampling.body()
        )
        self.info = info = await preflight(cfg, self.headers, first)
        extra, continuous = request_extras(info.engine)
        self.target = Target(
            cfg.url,
            cfg.model,
            cfg.api,
            cfg.max_tokens,
            info.metrics_url,
            self.headers,
            cfg.timeout_s,
            {**extra, **self.sampling.body()},
            continuous_usage=continuous,
            http_client=cfg.http_client,
        )
        return info

    async def measure(self, spec: PointPlan, label: str | None = None) -> tuple[dict, PointRun, list[dict]]:
        """Run one point and write it (as `label`, default the point's own); returns its summary,
        the run and its records as dicts."""
        cfg, writer, progress = self.cfg, self.writer, self.progress
        on_progress = (lambda n, what=spec.label: progress(what, n, cfg.requests)) if progress else None
        if on_progress:
            on_progress(0)
        workers = cfg.workers or auto_workers(spec)
        if workers > 1:
            run = await run_point_sharded(
                self.target, spec, self.prompts, workers, lambda r: writer.request(r.to_dict()), on_progress
            )
        else:
            run = await run_point(
                self.target,
                spec,
                self.prompts,
                on_record=lambda r: writer.request(r.to_dict()),
                on_progress=on_progress,
            )
        records = [r.to_dict() for r in run.records]
        summary = summarise_run(run, cfg, self.info.engine, self.info.server["source"], records)
        summary["client_processes"] = workers
        writer.point(
            label or spec.label,
            summary,
            [
                {"id": r["id"], "error": r["error"], "output_tokens": r["output_tokens"], **request_metrics(r)}
                for r in records
            ],
        )
        return summary, run, records


def load_document(cfg: LoadConfig) -> dict:
    """A load run's document before its first point."""
    return {
        "schema": LOAD_SCHEMA,
        "provenance": provenance(),
        "config": cfg.recorded(),
        "engine": None,
        "sampling": cfg.sampling().model_dump(),
        "definitions": DEFINITIONS,
        "points": [],
        "interrupted": False,
    }


def run_load(
    cfg: LoadConfig,
    writer: LoadWriter,
    progress: Progress | None = None,
    on_point: Callable[[dict], None] | None = None,
) -> dict:
    """Run every load point, writing as it goes; returns the run document (also in load.json).
    `progress(point, requests done, requests or None)` as requests finish, `on_point(summary)`
    after each point.

    Interrupted (Ctrl-C) runs keep what they measured: load.json is written with
    `"interrupted": true` and requests.jsonl holds every finished request.
    """
    cfg.validate()
    headers = auth_headers(cfg)
    prompts = [p for w in cfg.workloads for p in read_workload(w)]
    sampling = cfg.sampling()
    doc = load_document(cfg)

    async def main() -> None:
        session = LoadSession(cfg, writer, progress, headers, prompts, sampling)
        info = await session.open()
        doc["engine"], doc["server_notes"], doc["served_models"] = info.engine, info.notes, info.served
        doc["server"] = info.server
        for spec in cfg.points():
            summary, run, _ = await session.measure(spec)
            doc["points"].append(summary)
            writer.summary(doc)
            if on_point:
                on_point(summary)
            stop = stopped(run, summary)
            if stop:
                doc["stopped"] = stop
                break

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        doc["interrupted"] = True
        writer.summary(doc)
        raise
    finally:
        writer.close()
    writer.summary(doc)
    return doc
