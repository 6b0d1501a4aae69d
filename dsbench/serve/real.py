"""The real engine behind `dsbench serve --target PATH [--draft PATH]`: in-process speculative
decoding (spec/engine.py) of every in-flight request, with the same interface and counters as the
simulated engine.

Each engine step runs one round for every active request (a new request's first step is its
prefill) on a worker thread, then hands each request its committed tokens as one chunk. Requests
are interleaved round by round but not yet batched into one forward pass.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from ..spec.engine import Session, SpecDecoder
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
    def __init__(self, decoder: SpecDecoder, tokenizer, model_name: str):
        self.decoder, self.tok, self.model_name = decoder, tokenizer, model_name
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
            self._live = [r for r in self._live if not r.cancelled]
            if not self._live:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(self._live)
            await loop.run_in_executor(None, self._step_all, batch)
            for r in batch:
                for chunk in r.out:
                    r.queue.put_nowait(chunk)
                if r.session is not None and (r.session.done or r.emitted >= r.max_tokens):
                    r.queue.put_nowait(None)
                    self.counters.requests_finished += 1
                    self._live.remove(r)

    def _step_all(self, batch: list[_Live]) -> None:
        """One round for every request (runs on a worker thread)."""
        for r in batch:
            r.out = []
            if r.cancelled:
                continue
            if r.session is None:
                r.session = self.decoder.start(r.ids)
                new = r.session.tokens[:1]
            else:
                new = self.decoder.step(r.session)
                log = r.session.log
                self.counters.record(np.array([log.proposal[-1]]), np.array([log.accepted[-1]]))
            new = new[: r.max_tokens - r.emitted]
            if new:
                full = self.tok.decode(r.session.tokens[: r.emitted + len(new)], skip_special_tokens=True)
                r.out.append((len(new), full[len(r.text):]))
                r.text = full
                r.emitted += len(new)
                self.counters.generation_tokens += len(new)
