"""OpenAI-compatible streaming client: one request in, one RequestRecord of raw timestamps out.

Every SSE event is stamped with time.monotonic_ns() as it is read. Token counts come from the
server's `usage` (and per chunk from `continuous_usage_stats` where the server sends it); text is
never re-tokenised. Metrics (TTFT, TPOT, ...) are computed later from the records
(core/loadstats.py), so what was measured stays separate from what was derived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from array import array
from dataclasses import asdict, dataclass, field

import httpx

from .engines import PER_REQUEST_KEYS

# what malformed event data raises while it is read (json's JSONDecodeError is a ValueError)
_MALFORMED = (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError)


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
    chunk_lag_s: list[float] | None = None  # receive - server send stamp, when the server stamps chunks (dsbench)
    server_stats: dict | None = (
        None  # per-request statistics fields of the last event carrying them (engines.PER_REQUEST_KEYS)
    )
    usage_error: str | None = None  # the server's usage was impossible (then output_tokens is None)
    max_tokens: int | None = None  # what was asked for (usage above it is impossible)
    session: int | None = None  # multi-turn: the id of the session's first request
    turn: int | None = None  # multi-turn: 1, 2, ... within the session
    reply: str | None = field(default=None, repr=False)  # multi-turn: the text, for the next turn (not written)

    @property
    def ok(self) -> bool:
        return self.error is None

    def compact(self) -> None:
        """Per-chunk lists as packed arrays (4-8 bytes an entry instead of 32) once the request is
        written: a long point keeps every record in memory for its summary."""
        for name, code in _PACKED.items():
            v = getattr(self, name)
            if isinstance(v, list):
                setattr(self, name, array(code, v))

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("reply")  # the model's text feeds the next turn; result files keep figures, not outputs
        for name in _PACKED:
            if isinstance(out[name], array):
                out[name] = out[name].tolist()
        return out


# RequestRecord fields kept packed after the request: stamps as doubles, token counts and lags (microseconds of
# error at most) in four bytes
_PACKED = {"chunk_offsets_s": "d", "chunk_tokens": "i", "chunk_lag_s": "f"}


def _content(event: dict, chat: bool) -> str:
    choices = event.get("choices") or []
    if not choices:
        return ""
    c = choices[0]
    if chat:
        return (c.get("delta") or {}).get("content") or ""
    return c.get("text") or ""


async def stream_request(
    client: httpx.AsyncClient,
    url: str,
    payload: dict,
    rec: RequestRecord,
    headers: dict | None = None,
    chat: bool = True,
) -> RequestRecord:
    """Send one streaming completion and fill `rec` with what happened (never raises for
    server or network failures: they become `rec.error`).

    The read loop only stamps and splits bytes; events are parsed after the stream ends. With
    hundreds of streams receiving at the same instant (every engine step), per-event work in the
    loop would delay the stamps of every stream read after this one.
    """
    rec.start_ns = time.monotonic_ns()
    events: list[tuple[int, bytes]] = []
    done = False
    try:
        async with client.stream("POST", url, json=payload, headers=headers) as resp:
            rec.status = resp.status_code
            if resp.status_code >= 400:
                body = (await resp.aread())[:300].decode(errors="replace")
                rec.error = (
                    "http_429" if resp.status_code == 429 else ("http_4xx" if resp.status_code < 500 else "http_5xx")
                )
                rec.error_detail = f"HTTP {resp.status_code}: {body.strip()}"
                return rec
            buf = b""
            async for data in resp.aiter_bytes():
                now = time.monotonic_ns()
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.startswith(b"data:"):
                        if line[5:].strip() == b"[DONE]":
                            done = True
                            break
                        events.append((now, line[5:]))
                if done:
                    break
        _parse_events(rec, events, done, chat)
    except httpx.TimeoutException as e:
        rec.error, rec.error_detail = "timeout", f"{type(e).__name__}: no data for longer than the timeout"
    except httpx.ConnectError as e:
        rec.error, rec.error_detail = "connect", f"cannot connect: {e}"
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
        rec.error, rec.error_detail = "stream_broken", f"{type(e).__name__}: {e}"
    except _MALFORMED as e:
        rec.error, rec.error_detail = "bad_response", f"unparseable event: {type(e).__name__}: {e}"[:300]
    except asyncio.CancelledError:
        cancelled(rec, events, chat)
        raise
    finally:
        rec.end_ns = time.monotonic_ns()
    return kept(rec, events, chat)


def cancelled(rec: RequestRecord, events: list[tuple[int, bytes]], chat: bool) -> None:
    """The load generator cut the request off: say so, and keep what arrived."""
    rec.error, rec.error_detail = "cancelled", "still running when the drain time ran out"
    rec.end_ns = time.monotonic_ns()
    with contextlib.suppress(*_MALFORMED):
        _parse_events(rec, events, True, chat)


def kept(rec: RequestRecord, events: list[tuple[int, bytes]], chat: bool) -> RequestRecord:
    """`rec`, with what arrived before a failure parsed into it."""
    if rec.error and events and rec.first_chunk_ns is None:
        with contextlib.suppress(*_MALFORMED):
            _parse_events(rec, events, True, chat)
    return rec


def _parse_events(rec: RequestRecord, events: list[tuple[int, bytes]], done: bool, chat: bool) -> None:
    """Fill `rec` from stamped SSE data payloads."""
    prev_usage = 0
    finished = done  # [DONE], or a finish_reason on a stream that then closed cleanly
    for now, data in events:
        event = json.loads(data)
        if not isinstance(event, dict):
            raise ValueError(f"an event is a JSON {type(event).__name__}, not an object")
        if "error" in event:
            rec.error, rec.error_detail = "bad_response", str(event["error"])[:300]
            return
        usage = event.get("usage")
        if any(c.get("finish_reason") for c in event.get("choices") or []):
            finished = True  # some servers (transformers serve) close without [DONE]
        if text := _content(event, chat):
            if rec.reply is not None:
                rec.reply += text
            if rec.first_chunk_ns is None:
                rec.first_chunk_ns = now
            rec.last_chunk_ns = now
            rec.chunk_offsets_s.append((now - rec.start_ns) / 1e9)
            if usage and usage.get("completion_tokens") is not None:
                if rec.chunk_tokens is None:
                    rec.chunk_tokens = []
                rec.chunk_tokens.append(int(usage["completion_tokens"]) - prev_usage)
            if "dsbench_sent_ns" in event:  # same machine, same monotonic clock
                if rec.chunk_lag_s is None:
                    rec.chunk_lag_s = []
                rec.chunk_lag_s.append((now - int(event["dsbench_sent_ns"])) / 1e9)
        if usage:
            prev_usage = int(usage.get("completion_tokens") or prev_usage)
            rec.output_tokens = usage.get("completion_tokens", rec.output_tokens)
            rec.prompt_tokens = usage.get("prompt_tokens", rec.prompt_tokens)
        stats = {k: event[k] for k in PER_REQUEST_KEYS if isinstance(event.get(k), dict)}
        if stats:
            rec.server_stats = stats
    if rec.error:
        return
    _check_usage(rec)
    if not finished:
        rec.error, rec.error_detail = "stream_broken", "stream ended without finish_reason or [DONE]"
    elif rec.chunk_tokens is not None and len(rec.chunk_tokens) != len(rec.chunk_offsets_s):
        rec.chunk_tokens = None  # usage on some content chunks only: per-chunk counts unknown


def _check_usage(rec: RequestRecord) -> None:
    """Flag usage counts no server could have produced: not a whole number, negative, above
    max_tokens, or fewer tokens than content chunks (each chunk carries at least one token)."""
    n, chunks = rec.output_tokens, len(rec.chunk_offsets_s)
    why = None
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int):
        why = "is not a whole number"
    elif n < 0:
        why = "is negative"
    elif rec.max_tokens is not None and n > rec.max_tokens:
        why = f"exceeds max_tokens {rec.max_tokens}"
    elif n < chunks:
        why = f"is below the {chunks} content chunks that arrived"
    if why:
        rec.usage_error = f"usage.completion_tokens = {str(n)[:30]} {why}"
        rec.output_tokens, rec.chunk_tokens = None, None


def build_payload(
    model: str,
    prompt: str,
    max_tokens: int,
    api: str,
    extra: dict | None = None,
    continuous_usage: bool = False,
    history: list[dict] | None = None,
) -> dict:
    """Request body for /v1/chat/completions (api='chat') or /v1/completions; `history`: earlier
    turns' messages (multi-turn chat), sent before this prompt.

    `continuous_usage` asks for usage on every chunk (vLLM's extension, which dsbench serve
    also speaks); strict OpenAI-compatible servers may reject it, so it is opt-in.
    """
    opts = {"include_usage": True, **({"continuous_usage_stats": True} if continuous_usage else {})}
    body: dict = {"model": model, "max_tokens": max_tokens, "stream": True, "stream_options": opts}
    if api == "chat":
        body["messages"] = [*(history or []), {"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    body.update(extra or {})
    return body
