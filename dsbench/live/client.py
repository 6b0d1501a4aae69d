"""OpenAI-compatible streaming client: one request in, one RequestRecord of raw timestamps out.

Every SSE event is stamped with time.monotonic_ns() as it is read. Token counts come from the
server's `usage` (and per chunk from `continuous_usage_stats` where the server sends it); text is
never re-tokenised. Metrics (TTFT, TPOT, ...) are computed later from the records
(core/loadstats.py), so what was measured stays separate from what was derived.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import httpx


@dataclass
class RequestRecord:
    """Raw lifecycle of one request. Times are monotonic nanoseconds; offsets are seconds."""

    id: int
    point: str
    scheduled_ns: int  # when the load generator meant to send it (closed loop: when a slot freed)
    start_ns: int = 0  # when the request was actually sent
    first_chunk_ns: int | None = None  # first event carrying output text
    last_chunk_ns: int | None = None  # last event carrying output text
    end_ns: int | None = None  # stream finished ([DONE] or body complete) or failed
    chunk_offsets_s: list[float] = field(default_factory=list)  # content events, seconds after start
    chunk_tokens: list[int] | None = None  # tokens per content event, when the server reports them
    output_tokens: int | None = None  # usage.completion_tokens
    prompt_tokens: int | None = None
    status: int | None = None  # HTTP status
    error: str | None = None  # connect | timeout | http_429 | http_4xx | http_5xx | stream_broken | bad_response
    error_detail: str | None = None
    domain: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


def _content(event: dict, chat: bool) -> str:
    choices = event.get("choices") or []
    if not choices:
        return ""
    c = choices[0]
    if chat:
        return (c.get("delta") or {}).get("content") or ""
    return c.get("text") or ""


async def stream_request(client: httpx.AsyncClient, url: str, payload: dict, rec: RequestRecord,
                         headers: dict | None = None, chat: bool = True) -> RequestRecord:
    """Send one streaming completion and fill `rec` with what happened (never raises for
    server or network failures: they become `rec.error`)."""
    rec.start_ns = time.monotonic_ns()
    prev_usage = 0
    saw_done = False  # [DONE], or a finish_reason on a stream that then closed cleanly
    try:
        async with client.stream("POST", url, json=payload, headers=headers) as resp:
            rec.status = resp.status_code
            if resp.status_code >= 400:
                body = (await resp.aread())[:300].decode(errors="replace")
                rec.error = "http_429" if resp.status_code == 429 else ("http_4xx" if resp.status_code < 500 else "http_5xx")
                rec.error_detail = f"HTTP {resp.status_code}: {body.strip()}"
                return rec
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                now = time.monotonic_ns()
                data = line[5:].strip()
                if data == "[DONE]":
                    saw_done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    rec.error, rec.error_detail = "bad_response", str(event["error"])[:300]
                    return rec
                usage = event.get("usage")
                if any(c.get("finish_reason") for c in event.get("choices") or []):
                    saw_done = True  # some servers (transformers serve) close without [DONE]
                if _content(event, chat):
                    if rec.first_chunk_ns is None:
                        rec.first_chunk_ns = now
                    rec.last_chunk_ns = now
                    rec.chunk_offsets_s.append((now - rec.start_ns) / 1e9)
                    if usage and usage.get("completion_tokens") is not None:
                        if rec.chunk_tokens is None:
                            rec.chunk_tokens = []
                        rec.chunk_tokens.append(int(usage["completion_tokens"]) - prev_usage)
                if usage:
                    prev_usage = int(usage.get("completion_tokens") or prev_usage)
                    rec.output_tokens = usage.get("completion_tokens", rec.output_tokens)
                    rec.prompt_tokens = usage.get("prompt_tokens", rec.prompt_tokens)
        if not saw_done:
            rec.error, rec.error_detail = "stream_broken", "stream ended without finish_reason or [DONE]"
        elif rec.chunk_tokens is not None and len(rec.chunk_tokens) != len(rec.chunk_offsets_s):
            rec.chunk_tokens = None  # usage on some content chunks only: per-chunk counts unknown
    except httpx.TimeoutException as e:
        rec.error, rec.error_detail = "timeout", f"{type(e).__name__}: no data for longer than the timeout"
    except httpx.ConnectError as e:
        rec.error, rec.error_detail = "connect", f"cannot connect: {e}"
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
        rec.error, rec.error_detail = "stream_broken", f"{type(e).__name__}: {e}"
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        rec.error, rec.error_detail = "bad_response", f"unparseable event: {e}"
    finally:
        rec.end_ns = time.monotonic_ns()
    return rec


def build_payload(model: str, prompt: str, max_tokens: int, api: str, extra: dict | None = None) -> dict:
    """Request body for /v1/chat/completions (api='chat') or /v1/completions."""
    body: dict = {"model": model, "max_tokens": max_tokens, "stream": True,
                  "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    body.update(extra or {})
    return body
