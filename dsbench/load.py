"""`dsbench load`: run load points against an OpenAI-compatible server and summarise each.

Orchestration only: live/ sends requests and scrapes metrics, core/loadstats.py computes the
figures, results.LoadWriter writes everything as it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx

from .core.loadstats import chunk_consistency, request_metrics, summarise
from .core.methods import METHODS
from .live import prom
from .live.loadgen import PointRun, PointSpec, Target, run_point
from .live.shard import run_point_sharded
from .results import InputError, LoadWriter, load_workload, provenance

ENGINES = ("auto", "vllm", "sglang", "dsbench", "none")


@dataclass
class LoadConfig:
    url: str
    model: str
    workloads: list[str]
    concurrency: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    requests: int | None = None
    duration_s: float | None = None
    warmup_s: float = 1.0
    max_tokens: int = 256
    api: str = "chat"
    metrics_url: str | None = None
    engine: str = "auto"
    timeout_s: float = 60.0
    drain_s: float = 30.0
    gpus: int = 1
    slo: float | None = None
    seed: int = 0
    api_key_env: str | None = None  # the variable's name only; the key itself never enters the config
    workers: int = 1  # client processes per load point
    method: str | None = None  # what the server runs: a label `fit` and `report` read (dsbench cannot see it)

    def validate(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise InputError(f"--url must start with http:// or https://, got {self.url!r}")
        if not self.concurrency and not self.rates:
            raise InputError("give at least one load point: --concurrency 1,2,4 or --rate 2.5")
        if any(c < 1 for c in self.concurrency) or any(not r > 0 for r in self.rates):
            raise InputError("--concurrency values must be >= 1 and --rate values > 0")
        if (self.requests is None) == (self.duration_s is None):
            raise InputError("give exactly one of --requests N or --duration S")
        if (self.requests is not None and self.requests < 1) or (self.duration_s is not None and not self.duration_s > 0):
            raise InputError("--requests must be >= 1 and --duration > 0")
        if self.drain_s < 0:
            raise InputError("--drain must be >= 0")
        if self.warmup_s < 0 or self.max_tokens < 1 or not self.timeout_s > 0 or self.gpus < 1:
            raise InputError("--warmup must be >= 0, --max-tokens >= 1, --timeout > 0, --gpus >= 1")
        if self.api not in ("chat", "completions"):
            raise InputError(f"--api must be chat or completions, got {self.api!r}")
        if self.method is not None and self.method not in METHODS:
            raise InputError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.engine not in ENGINES:
            raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.workers < 1 or (self.workers > 1 and self.duration_s is None):
            raise InputError("--workers must be >= 1, and more than one worker needs --duration (the window must end on time)")
        if self.slo is not None and not self.slo > 0:
            raise InputError(f"--slo must be positive, got {self.slo}")

    def points(self) -> list[PointSpec]:
        common = dict(requests=self.requests, duration_s=self.duration_s, warmup_s=self.warmup_s, drain_s=self.drain_s, seed=self.seed)
        return [PointSpec(concurrency=c, **common) for c in self.concurrency] + [PointSpec(rate=r, **common) for r in self.rates]


def summarise_run(run: PointRun, cfg: LoadConfig, engine: str) -> dict:
    """The summary of one load point (all figures measured; definitions in core/loadstats.py)."""
    records = [r.to_dict() for r in run.records]
    s = {"label": run.spec.label, "mode": "closed" if run.spec.concurrency is not None else "poisson",
         "concurrency": run.spec.concurrency, "rate": run.spec.rate, "source": "measured"}
    if run.t1_ns <= run.t0_ns:
        s["window_error"] = "steady-state window is empty: the point ended before --warmup did; lengthen --duration/--requests"
        s.update(summarise(records, run.t0_ns, run.t0_ns + 1, cfg.slo, cfg.gpus, run.spec.concurrency))
    else:
        s.update(summarise(records, run.t0_ns, run.t1_ns, cfg.slo, cfg.gpus, run.spec.concurrency))
    if run.before and run.after:
        spec = prom.spec_delta(run.before, run.after, engine)
        s["spec"] = spec
        tau = spec.get("tau_per_round") or spec.get("tau")
        s["chunk_warning"] = chunk_consistency(s.get("tokens_per_chunk_mean"), tau)
    elif run.scrape_error:
        s["spec"] = {"error": run.scrape_error}
    s["client_cpu_s"] = run.client_cpu_s
    s["client_cpu_frac"] = run.client_cpu_s / run.wall_s if run.wall_s else None
    s["wall_s"] = run.wall_s
    s["aborted"] = run.aborted
    return s


async def _detect_engine(cfg: LoadConfig, headers: dict) -> tuple[str, str | None]:
    if cfg.engine == "none":
        return "none", None
    url = cfg.metrics_url or cfg.url.rstrip("/") + "/metrics"
    try:
        async with httpx.AsyncClient(timeout=10) as c:
            snap = await prom.scrape(c, url, headers)
    except (httpx.HTTPError, ValueError) as e:
        if cfg.engine != "auto" or cfg.metrics_url:
            raise InputError(f"cannot read metrics at {url}: {type(e).__name__}: {e}") from None
        return "none", None  # auto: a server without /metrics is fine, speculative figures just go missing
    engine = snap.engine if cfg.engine == "auto" else cfg.engine
    return engine, (url if engine != "none" else None)


async def _check_server(cfg: LoadConfig, headers: dict) -> None:
    try:
        async with httpx.AsyncClient(timeout=10) as c:
            await c.get(cfg.url.rstrip("/") + "/v1/models", headers=headers)
    except httpx.HTTPError as e:
        raise InputError(f"server unreachable at {cfg.url}: {type(e).__name__}") from None


def run_load(cfg: LoadConfig, writer: LoadWriter, headers: dict | None = None,
             on_point_start: Callable[[PointSpec], None] | None = None,
             on_progress: Callable[[int], None] | None = None,
             on_point_done: Callable[[dict], None] | None = None) -> dict:
    """Run every load point, writing as it goes; returns the run document (also in load.json).

    Interrupted (Ctrl-C) runs keep what they measured: load.json is written with
    `"interrupted": true` and requests.jsonl holds every finished request.
    """
    cfg.validate()
    headers = headers or {}
    prompts = [p for w in cfg.workloads for p in load_workload(w)]
    doc = {"provenance": provenance(), "config": {k: v for k, v in asdict(cfg).items()}, "engine": None,
           "definitions": {"tps_user": "1 / TPOT per request; pXX = speed reached by XX % of requests",
                           "tpot_s": "(E2E - TTFT) / (output tokens - 1)", "output_tok_s": "tokens arriving in the window / window",
                           "tau": "1 + accepted drafts / drafts (server counters over the window), bonus included"},
           "points": [], "interrupted": False}

    async def main() -> None:
        await _check_server(cfg, headers)
        engine, metrics_url = await _detect_engine(cfg, headers)
        doc["engine"] = engine
        # non-standard request fields go only to the engine known to accept them
        extra = {"dsbench_trace": True} if engine == "dsbench" else {}
        target = Target(cfg.url, cfg.model, cfg.api, cfg.max_tokens, metrics_url, headers, cfg.timeout_s, extra,
                        continuous_usage=engine in ("vllm", "dsbench"))
        for spec in cfg.points():
            if on_point_start:
                on_point_start(spec)
            if cfg.workers > 1:
                run = await run_point_sharded(target, spec, prompts, cfg.workers, lambda r: writer.request(r.to_dict()), on_progress)
            else:
                run = await run_point(target, spec, prompts, on_record=lambda r: writer.request(r.to_dict()), on_progress=on_progress)
            summary = summarise_run(run, cfg, engine)
            writer.point(spec.label, summary, [{"id": r.id, "error": r.error, "output_tokens": r.output_tokens,
                                                **request_metrics(r.to_dict())} for r in run.records])
            doc["points"].append(summary)
            writer.summary(doc)
            if on_point_done:
                on_point_done(summary)
            if run.aborted or (summary["requests_ok"] == 0 and summary["requests_failed"] > 0):
                doc["stopped"] = run.aborted or f"every request of {spec.label} failed"
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
