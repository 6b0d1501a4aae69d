"""The real engine behind `dsbench serve --target PATH [--draft PATH]`: in-process speculative
decoding (speculative/engine.py) of every in-flight request, batched, with the same interface and
counters as the simulated engine.

Each engine iteration prefills the requests that arrived since the last one (one padded pass),
hands them their first token, then runs one round for every request in flight: one drafter call
and one target pass for the whole batch (continuous batching), each request getting its committed
tokens as one chunk. The model work runs on a worker thread so the server keeps streaming.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from ..speculative.engine import Session, SpecDecoder
from .engine import EngineLoop, SpecCounters


@dataclass
class _Live:
    ids: list[int]
    max_tokens: int
    queue: asyncio.Queue
    session: Session | None = None
    text: str = ""
    cancelled: bool = False
    emitted: int = 0
    out: list = field(default_factory=list)  # chunks produced by the last step: (tokens, text)


class RealEngine(EngineLoop):
    def __init__(self, decoder: SpecDecoder, tokenizer, model_name: str, card: dict | None = None):
        self.decoder, self.tok, self.model_name = decoder, tokenizer, model_name
        self.card = {"source": "measured", "engine": "dsbench reference", **(card or {})}
        self.counters = SpecCounters(max(decoder.gamma, 1))
        self._live: list[_Live] = []
        self._wake = asyncio.Event()
        self.late_s = 0.0  # a real engine has no clock to keep

    @property
    def running(self) -> int:
        return len(self._live)

    def submit(self, prompt, max_tokens: int) -> tuple[asyncio.Queue, int]:
        """Queue chat messages (rendered with the tokenizer's chat template) or a completion string."""
        if isinstance(prompt, list):
            text = self.tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tok(prompt)["input_ids"]
        limit = self.decoder.length - self.decoder.gamma - 3
        if len(ids) > limit:
            raise ValueError(f"the prompt has {len(ids)} tokens; this engine holds at most {limit}")
        live = _Live(ids or [0], max(1, max_tokens), asyncio.Queue())
        self._live.append(live)
        self.counters.prompt_tokens += len(live.ids)
        self._wake.set()
        return live.queue, len(live.ids)

    def cancel(self, queue: asyncio.Queue) -> None:
        for live in self._live:
            if live.queue is queue:
                live.cancelled = True

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._live:
                self._wake.clear()
                await self._wake.wait()
                continue
            new = [r for r in self._live if r.session is None and not r.cancelled]
            if new:
                await loop.run_in_executor(None, self._prefill, new)
                self._deliver()
            await loop.run_in_executor(None, self._round, [r for r in self._live if r.session is not None])
            self._deliver()

    def _deliver(self) -> None:
        """Hand out the chunks of the last step; retire finished and cancelled requests."""
        for r in list(self._live):
            for chunk in r.out:
                r.queue.put_nowait(chunk)
            r.out = []
            if r.cancelled or (r.session is not None and (r.session.done or r.emitted >= r.max_tokens)):
                if r.session is not None:
                    self.decoder.release(r.session)  # no worker runs between the awaits: safe here
                if not r.cancelled:
                    r.queue.put_nowait(None)
                    self.counters.requests_finished += 1
                self._live.remove(r)

    # -- on the worker thread --------------------------------------------------------------------

    def _prefill(self, batch: list[_Live]) -> None:
        if not batch:
            return
        for r, s in zip(batch, self.decoder.start_many([r.ids for r in batch])):
            r.session = s
            self._emit(r, s.tokens[:1])

    def _round(self, batch: list[_Live]) -> None:
        by_session = {id(r.session): r for r in batch if r.session is not None}
        results = self.decoder.step_all()
        for s, committed in results:
            self._emit(by_session[id(s)], committed)
        if results:
            self.counters.record(
                np.array([s.log.proposal[-1] for s, _ in results]), np.array([s.log.accepted[-1] for s, _ in results])
            )

    def _emit(self, r: _Live, new: list[int]) -> None:
        new = new[: r.max_tokens - r.emitted]
        if not new:
            return
        full = self.tok.decode(r.session.tokens[: r.emitted + len(new)], skip_special_tokens=True)
        r.out.append((len(new), full[len(r.text) :]))
        r.text = full
        r.emitted += len(new)
        self.counters.generation_tokens += len(new)
