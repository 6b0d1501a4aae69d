"""The load generator's own HTTP/1.1 client: POST a JSON body, stamp every network read, keep
connections alive per host. Plain http:// only (https goes through httpx).

Chosen by measurement (benchmarks/bench_client_stacks.py, 256 streams against `dsbench serve
--sim` on two shared cores): httpx spent 200 ms of CPU per 1,000 streamed tokens, over half of it
in httpcore's connection pool, and its chunk stamps lagged the server's by 19 ms at p50; this
client spends 25 ms with a 0.08 ms lag. It does only what a streaming completion needs: one
request per connection at a time, chunked, Content-Length or close-delimited bodies, and the
error classes `stream_request` gives.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

from .client import _MALFORMED, RequestRecord, _parse_events, cancelled, kept


class Broken(Exception):
    """The server broke the HTTP exchange (closed early, bad framing)."""


class RawClient:
    """Keep-alive connections per (host, port); `timeout_s` is the longest wait for data."""

    def __init__(self, timeout_s: float, connect_timeout_s: float = 10.0):
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def connection(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """(reader, writer, reused): an idle connection if one is open, else a new one."""
        idle = self._idle.get((host, port)) or []
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=1 << 20), self.connect_timeout_s
        )
        return reader, writer, False

    def release(self, host: str, port: int, reader, writer) -> None:
        self._idle.setdefault((host, port), []).append((reader, writer))

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()

    async def read(self, reader: asyncio.StreamReader, n: int = 65536) -> bytes:
        return await asyncio.wait_for(reader.read(n), self.timeout_s)


def _request_bytes(url, body: bytes, headers: dict | None) -> bytes:
    lines = [
        f"POST {url.path or '/'}{'?' + url.query if url.query else ''} HTTP/1.1",
        f"Host: {url.netloc}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _head(client: RawClient, reader) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and whatever body bytes came with them."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        data = await client.read(reader)
        if not data:
            raise Broken("connection closed before the response headers")
        raw += data
    head, rest = raw.split(b"\r\n\r\n", 1)
    status_line, *fields = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise Broken(f"not an HTTP response: {status_line[:80]!r}") from None
    headers = {}
    for f in fields:
        k, _, v = f.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


class _Body:
    """Undoes the response's framing read by read: `feed(data)` returns the body bytes in it;
    `done` once the body is complete."""

    def __init__(self, headers: dict[str, str]):
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self.left = int(length) if length and not self.chunked else None
        self.pending, self.done = b"", False

    def feed(self, data: bytes) -> bytes:
        if not self.chunked:
            if self.left is not None:
                data = data[: self.left]
                self.left -= len(data)
                self.done = self.left <= 0
            return data
        self.pending += data
        out = []
        while not self.done:
            end = self.pending.find(b"\r\n")
            if end < 0:
                break
            try:
                size = int(self.pending[:end].split(b";")[0], 16)
            except ValueError:
                raise Broken(f"bad chunk size {self.pending[:end][:20]!r}") from None
            if size == 0:
                self.done = self.pending.find(b"\r\n\r\n", end) >= 0  # no trailers, or all of them
                break
            if len(self.pending) < end + 2 + size + 2:
                break
            out.append(self.pending[end + 2 : end + 2 + size])
            self.pending = self.pending[end + 4 + size :]
        return b"".join(out)


async def stream_request_raw(
    client: RawClient, url: str, payload: dict, rec: RequestRecord, headers: dict | None = None, chat: bool = True
) -> RequestRecord:
    """`client.stream_request` over RawClient: the same record, stamps and error classes."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    request = _request_bytes(u, json.dumps(payload).encode(), headers)
    events: list[tuple[int, bytes]] = []
    done, reusable, writer = False, False, None
    rec.start_ns = time.monotonic_ns()
    try:
        for attempt in (0, 1):  # a kept-alive connection the server closed meanwhile: once more, afresh
            try:
                reader, writer, reused = await client.connection(host, port)
            except (OSError, TimeoutError) as e:
                rec.error, rec.error_detail = "connect", f"cannot connect: {type(e).__name__}: {e}"
                return rec
            try:
                writer.write(request)
                await writer.drain()
                status, resp_headers, rest = await _head(client, reader)
                break
            except (Broken, ConnectionError) as e:
                writer.close()
                if not reused or attempt:
                    raise Broken(str(e)) from None
        rec.status = status
        body = _Body(resp_headers)
        if status >= 400:
            text = body.feed(rest)
            while not body.done and len(text) < 300 and (data := await client.read(reader)):
                text += body.feed(data)
            rec.error = "http_429" if status == 429 else ("http_4xx" if status < 500 else "http_5xx")
            rec.error_detail = f"HTTP {status}: {text[:300].decode(errors='replace').strip()}"
            return rec
        buf, data = b"", rest
        while True:
            now = time.monotonic_ns()
            buf += body.feed(data)
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"data:"):
                    if line[5:].strip() == b"[DONE]":
                        done = True
                        break
                    events.append((now, line[5:]))
            if done or body.done:
                break
            data = await client.read(reader)
            if not data:
                if body.chunked or body.left:
                    raise Broken("the server closed the stream before its end")
                break
        reusable = body.done and resp_headers.get("connection", "").lower() != "close"
        _parse_events(rec, events, done, chat)
    except TimeoutError:
        rec.error, rec.error_detail = "timeout", "TimeoutError: no data for longer than the timeout"
    except (Broken, ConnectionError) as e:
        rec.error, rec.error_detail = "stream_broken", f"{type(e).__name__}: {e}"
    except _MALFORMED as e:
        rec.error, rec.error_detail = "bad_response", f"unparseable event: {type(e).__name__}: {e}"[:300]
    except asyncio.CancelledError:
        cancelled(rec, events, chat)
        raise
    finally:
        rec.end_ns = time.monotonic_ns()
        if writer is not None:
            if reusable:
                client.release(host, port, reader, writer)
            else:
                writer.close()
    return kept(rec, events, chat)
