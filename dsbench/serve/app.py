"""OpenAI-compatible HTTP front end (Starlette + uvicorn) over an engine with `submit`.

Endpoints: /v1/chat/completions and /v1/completions (streaming and not, `usage`,
`stream_options.include_usage` and `continuous_usage_stats`), /v1/models, /health, and /metrics
with vLLM's speculative-decoding counters plus dsbench's exact ones. The engine owns tokens and
text: `submit(prompt, max_tokens)` returns a queue of (tokens, text) chunks ending in None, and
the prompt's token count.

Fault injection (for testing clients, off by default): answer a fraction of requests with an
HTTP error, or stall streams after some chunks.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .engine import SimEngine  # or any engine with the same interface (serve/real.py)

@dataclass
class Faults:
    """Injected failures: {status: probability} per request, and stalls after N chunks."""

    error_rates: dict[int, float] = field(default_factory=dict)
    stall_after_chunks: int | None = None
    stall_s: float = 3600.0
    seed: int = 0

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)

    def pick_error(self) -> int | None:
        u = self._rng.random()
        for status, p in self.error_rates.items():
            if u < p:
                return status
            u -= p
        return None


class _SpecCollector:
    """Prometheus view of the engine's counters (read at scrape time)."""

    def __init__(self, engine: SimEngine):
        self.engine = engine

    def collect(self):
        e, c = self.engine, self.engine.counters
        labels = ["model_name", "engine"]
        lv = [e.model_name, "0"]

        def counter(name, doc, value, extra=None):
            m = CounterMetricFamily(name, doc, labels=labels + list(extra or {}))
            m.add_metric(lv + list((extra or {}).values()), float(value))
            return m

        yield counter("vllm:spec_decode_num_drafts", "Number of spec decoding drafts.", c.drafts)
        yield counter("vllm:spec_decode_num_draft_tokens", "Number of draft tokens.", c.draft_tokens)
        yield counter("vllm:spec_decode_num_accepted_tokens", "Number of accepted tokens.", c.accepted)
        per_pos = CounterMetricFamily("vllm:spec_decode_num_accepted_tokens_per_pos", "Accepted tokens per draft position.",
                                      labels=labels + ["position"])
        reached = CounterMetricFamily("dsbench:spec_reached_per_pos",
                                      "Decode steps that verified draft k after drafts 1..k-1 were accepted.",
                                      labels=labels + ["position"])
        for k in range(c.gamma):
            per_pos.add_metric(lv + [str(k)], float(c.accepted_per_pos[k]))
            reached.add_metric(lv + [str(k)], float(c.reached_per_pos[k]))
        yield per_pos
        yield reached
        yield counter("dsbench:spec_rounds", "Decode steps of all requests, including those that verified no draft.", c.rounds)
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", c.prompt_tokens)
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.", c.generation_tokens)
        yield counter("vllm:request_success", "Count of successfully processed requests.", c.requests_finished)
        running = GaugeMetricFamily("vllm:num_requests_running", "Number of requests in model execution batches.", labels=labels)
        running.add_metric(lv, float(e.running))
        yield running
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels=labels)
        waiting.add_metric(lv, float(getattr(e, "waiting", 0)))
        yield waiting
        late = GaugeMetricFamily("dsbench:engine_late_seconds", "Worst lag of the simulated engine behind its clock.", labels=labels)
        late.add_metric(lv, e.late_s)
        yield late


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _prompt(body: dict, chat: bool):
    """The request's prompt: a list of chat messages, or a completion string."""
    if chat:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
            raise ValueError("'messages' must be a non-empty list of objects")
        return msgs
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(map(str, prompt))
    if not isinstance(prompt, str):
        raise ValueError("'prompt' must be a string")
    return prompt


def create_app(engine: SimEngine, faults: Faults | None = None) -> Starlette:
    faults = faults or Faults()
    registry = CollectorRegistry()
    registry.register(_SpecCollector(engine))
    ids = count(1)
    tell = {"x-dsbench-source": engine.card["source"]}

    async def health(_: Request):
        return JSONResponse({"status": "ok"})

    async def models(_: Request):
        return JSONResponse({"object": "list", "data": [{"id": engine.model_name, "object": "model", "owned_by": "dsbench",
                                                         "dsbench": engine.card}]}, headers=tell)

    async def metrics(_: Request):
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def complete(request: Request, chat: bool):
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            prompt = _prompt(body, chat)
            max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
            if max_tokens < 1:
                raise ValueError("max_tokens must be >= 1")
        except (ValueError, TypeError, json.JSONDecodeError) as e:
            return _error(400, f"bad request: {e}")
        if body.get("model") not in (None, engine.model_name):
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        status = faults.pick_error()
        if status is not None:
            return _error(status, f"injected fault: HTTP {status}", "injected_fault")

        rid = f"{'chatcmpl' if chat else 'cmpl'}-{next(ids)}"
        created = int(time.time())
        try:
            queue, prompt_tokens = engine.submit(prompt, max_tokens)
        except ValueError as e:  # e.g. a prompt longer than the engine's context
            return _error(400, f"bad request: {e}")
        if not body.get("stream"):
            produced, parts = 0, []
            while (item := await queue.get()) is not None:
                produced += item[0]
                parts.append(item[1])
            finish = "length" if produced >= max_tokens else "stop"
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": produced, "total_tokens": prompt_tokens + produced}
            choice = ({"index": 0, "message": {"role": "assistant", "content": "".join(parts)}, "finish_reason": finish}
                      if chat else {"index": 0, "text": "".join(parts), "finish_reason": finish})
            return JSONResponse({"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created,
                                 "model": engine.model_name, "choices": [choice], "usage": usage}, headers=tell)

        trace = bool(body.get("dsbench_trace"))  # stamp chunks with the send time (client-overhead benchmark)
        opts = body.get("stream_options") or {}
        include_usage = bool(opts.get("include_usage"))
        continuous = include_usage and bool(opts.get("continuous_usage_stats"))
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(payload: dict) -> bytes:
            return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

        async def stream() -> AsyncIterator[bytes]:
            produced, chunks = 0, 0
            try:
                item = await queue.get()
                while item is not None:
                    nxt = await queue.get()  # look ahead so the last content chunk carries finish_reason
                    n, text = item
                    produced += n
                    finish = None if nxt is not None else ("length" if produced >= max_tokens else "stop")
                    choice = ({"index": 0, "delta": {"role": "assistant", "content": text} if chunks == 0 else {"content": text},
                               "finish_reason": finish} if chat else {"index": 0, "text": text, "finish_reason": finish})
                    payload = {"id": rid, "object": obj, "created": created, "model": engine.model_name, "choices": [choice]}
                    if continuous:
                        payload["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": produced,
                                            "total_tokens": prompt_tokens + produced}
                    if trace:
                        payload["dsbench_sent_ns"] = time.monotonic_ns()
                    yield event(payload)
                    chunks += 1
                    if faults.stall_after_chunks is not None and chunks >= faults.stall_after_chunks:
                        await asyncio.sleep(faults.stall_s)
                    item = nxt
                if include_usage:
                    yield event({"id": rid, "object": obj, "created": created, "model": engine.model_name, "choices": [],
                                 "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": produced,
                                           "total_tokens": prompt_tokens + produced}})
                yield b"data: [DONE]\n\n"
            finally:
                engine.cancel(queue)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=tell)

    async def chat_completions(request: Request):
        return await complete(request, chat=True)

    async def completions(request: Request):
        return await complete(request, chat=False)

    @asynccontextmanager
    async def lifespan(_app):
        engine.start()
        yield
        await engine.stop()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/metrics", metrics),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def serve(app: Starlette, host: str = "127.0.0.1", port: int = 8000, on_ready=None) -> None:
    """Run the app until interrupted (uvicorn, one process)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    if on_ready:
        orig = server.startup

        async def startup(sockets=None):
            await orig(sockets)
            on_ready(server)

        server.startup = startup
    server.run()
