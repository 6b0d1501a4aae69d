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
        per_pos = CounterMetricFamily(
            "vllm:spec_decode_num_accepted_tokens_per_pos",
            "Accepted tokens per draft position.",
            labels=labels + ["position"],
        )
        reached = CounterMetricFamily(
            "dsbench:spec_reached_per_pos",
            "Decode steps that verified draft k after drafts 1..k-1 were accepted.",
            labels=labels + ["position"],
        )
        for k in range(c.gamma):
            per_pos.add_metric(lv + [str(k)], float(c.accepted_per_pos[k]))
            reached.add_metric(lv + [str(k)], float(c.reached_per_pos[k]))
        yield per_pos
        yield reached
        yield counter(
            "dsbench:spec_rounds", "Decode steps of all requests, including those that verified no draft.", c.rounds
        )
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", c.prompt_tokens)
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.", c.generation_tokens)
        yield counter("vllm:request_success", "Count of successfully processed requests.", c.requests_finished)
        running = GaugeMetricFamily(
            "vllm:num_requests_running", "Number of requests in model execution batches.", labels=labels
        )
        running.add_metric(lv, float(e.running))
        yield running
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels=labels
        )
        waiting.add_metric(lv, float(getattr(e, "waiting", 0)))
        yield waiting
        late = GaugeMetricFamily(
            "dsbench:engine_late_seconds", "Worst lag of the simulated engine behind its clock.", labels=labels
        )
        late.add_metric(lv, e.late_s)
        yield late


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


# --------------------------------------------------------------------------- parsing


@dataclass
class Ask:
    """One completion request as the server understood it."""

    chat: bool
    prompt: list | str  # chat messages, or a completion string
    max_tokens: int
    model: str | None
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a final usage chunk
    continuous: bool = False  # ... and continuous_usage_stats: usage on every chunk (vLLM)
    trace: bool = False  # dsbench_trace: stamp chunks with their send time (client-overhead benchmark)


def parse_request(body, chat: bool) -> Ask:
    """The request in a JSON body; ValueError names what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    if chat:
        prompt = body.get("messages")
        if not isinstance(prompt, list) or not prompt or not all(isinstance(m, dict) for m in prompt):
            raise ValueError("'messages' must be a non-empty list of objects")
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            prompt = " ".join(map(str, prompt))
        if not isinstance(prompt, str):
            raise ValueError("'prompt' must be a string")
    max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    opts = body.get("stream_options") or {}
    include_usage = bool(opts.get("include_usage"))
    return Ask(
        chat,
        prompt,
        max_tokens,
        body.get("model"),
        bool(body.get("stream")),
        include_usage,
        include_usage and bool(opts.get("continuous_usage_stats")),
        bool(body.get("dsbench_trace")),
    )


# --------------------------------------------------------------------------- responses


@dataclass
class Reply:
    """The answer to one request, whole or streamed, from the engine's queue of (tokens, text)
    chunks ending in None."""

    ask: Ask
    id: str
    model: str
    prompt_tokens: int
    created: int = field(default_factory=lambda: int(time.time()))

    def usage(self, produced: int) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": produced,
            "total_tokens": self.prompt_tokens + produced,
        }

    def finish(self, produced: int) -> str:
        return "length" if produced >= self.ask.max_tokens else "stop"

    async def full(self, queue: asyncio.Queue) -> dict:
        produced, parts = 0, []
        while (item := await queue.get()) is not None:
            produced += item[0]
            parts.append(item[1])
        text, finish = "".join(parts), self.finish(produced)
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            if self.ask.chat
            else {"index": 0, "text": text, "finish_reason": finish}
        )
        return {
            "id": self.id,
            "object": "chat.completion" if self.ask.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(produced),
        }

    def _event(self, choices: list, **extra) -> bytes:
        obj = "chat.completion.chunk" if self.ask.chat else "text_completion"
        payload = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    async def stream(self, queue: asyncio.Queue, faults: Faults) -> AsyncIterator[bytes]:
        """SSE events: one per engine chunk (the last carries finish_reason), the usage chunk if
        asked for, then [DONE]."""
        produced, chunks = 0, 0
        item = await queue.get()
        while item is not None:
            nxt = await queue.get()  # look ahead so the last content chunk carries finish_reason
            n, text = item
            produced += n
            finish = None if nxt is not None else self.finish(produced)
            delta = {"role": "assistant", "content": text} if chunks == 0 else {"content": text}
            choice = (
                {"index": 0, "delta": delta, "finish_reason": finish}
                if self.ask.chat
                else {"index": 0, "text": text, "finish_reason": finish}
            )
            extra = {"usage": self.usage(produced)} if self.ask.continuous else {}
            if self.ask.trace:
                extra["dsbench_sent_ns"] = time.monotonic_ns()
            yield self._event([choice], **extra)
            chunks += 1
            if faults.stall_after_chunks is not None and chunks >= faults.stall_after_chunks:
                await asyncio.sleep(faults.stall_s)
            item = nxt
        if self.ask.include_usage:
            yield self._event([], usage=self.usage(produced))
        yield b"data: [DONE]\n\n"


# --------------------------------------------------------------------------- the app


def create_app(engine: SimEngine, faults: Faults | None = None) -> Starlette:
    faults = faults or Faults()
    registry = CollectorRegistry()
    registry.register(_SpecCollector(engine))
    ids = count(1)
    tell = {"x-dsbench-source": engine.card["source"]}

    async def health(_: Request):
        return JSONResponse({"status": "ok"})

    async def models(_: Request):
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": engine.model_name, "object": "model", "owned_by": "dsbench", "dsbench": engine.card}],
            },
            headers=tell,
        )

    async def metrics(_: Request):
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def complete(request: Request, chat: bool):
        try:
            ask = parse_request(await request.json(), chat)
        except (ValueError, TypeError, json.JSONDecodeError) as e:
            return _error(400, f"bad request: {e}")
        if ask.model not in (None, engine.model_name):
            return _error(404, f"The model `{ask.model}` does not exist.", "NotFoundError")
        status = faults.pick_error()
        if status is not None:
            return _error(status, f"injected fault: HTTP {status}", "injected_fault")
        try:
            queue, prompt_tokens = engine.submit(ask.prompt, ask.max_tokens)
        except ValueError as e:  # e.g. a prompt longer than the engine's context
            return _error(400, f"bad request: {e}")
        reply = Reply(ask, f"{'chatcmpl' if chat else 'cmpl'}-{next(ids)}", engine.model_name, prompt_tokens)
        if not ask.stream:
            return JSONResponse(await reply.full(queue), headers=tell)

        async def events() -> AsyncIterator[bytes]:
            try:
                async for event in reply.stream(queue, faults):
                    yield event
            finally:
                engine.cancel(queue)  # a client that went away frees its slot

        return StreamingResponse(events(), media_type="text/event-stream", headers=tell)

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
