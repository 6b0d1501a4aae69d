"""Simulated serving engine: the live twin of core.simulator.

Continuous batching of every in-flight request into rounds. A request's first round is its
prefill (its prompt tokens join the batch, one token comes out); every later round drafts
gamma tokens, lets the verification policy (the core's scheduler) pick each request's length
from its true per-round acceptance probabilities, realises acceptance as sequential Bernoulli
draws and commits accepted + 1 tokens. A round lasts T_draft(R_decoding, gamma) + step_s(B, R)
wall seconds (times --time-scale), kept on an absolute clock so timer jitter never accumulates.
Each round's committed tokens go to each request as one chunk.

Engines share one interface (`submit` -> async iterator of token counts; `metrics`), so the
real in-process speculative decoder can plug in behind the same server.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..core.acceptance import RoundSampler
from ..core.policies import dspark_lengths, schedule, topk_lengths
from ..core.simulator import Scenario


@dataclass
class SpecCounters:
    """Cumulative speculative-decoding counters, vLLM's definitions plus dsbench's exact ones."""

    gamma: int
    drafts: int = 0  # decode steps of a request that verified >= 1 draft (vLLM num_drafts)
    draft_tokens: int = 0  # drafts verified (vLLM num_draft_tokens)
    accepted: int = 0  # accepted drafts, bonus excluded (vLLM num_accepted_tokens)
    rounds: int = 0  # every decode step of every request, including l = 0 (dsbench)
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests_finished: int = 0
    accepted_per_pos: np.ndarray = field(default=None)  # steps whose draft k was accepted
    reached_per_pos: np.ndarray = field(default=None)  # steps that verified draft k after k-1 accepted

    def __post_init__(self):
        self.accepted_per_pos = np.zeros(max(self.gamma, 1), dtype=np.int64)
        self.reached_per_pos = np.zeros(max(self.gamma, 1), dtype=np.int64)

    def record(self, lengths: np.ndarray, acc: np.ndarray) -> None:
        """Count decode steps: `lengths` drafts verified and `acc` accepted, one entry per request."""
        lengths, acc = np.asarray(lengths), np.asarray(acc)
        pos = np.arange(self.gamma)
        self.rounds += len(lengths)
        self.drafts += int((lengths > 0).sum())
        self.draft_tokens += int(lengths.sum())
        self.accepted += int(acc.sum())
        self.accepted_per_pos += (pos[None, :] < acc[:, None]).sum(axis=0)
        # draft k (0-based) was reached when verified and all before it accepted: k < l and k <= acc
        self.reached_per_pos += ((pos[None, :] < lengths[:, None]) & (pos[None, :] <= acc[:, None])).sum(axis=0)


@dataclass
class _Request:
    prompt_tokens: int
    max_tokens: int
    sampler: RoundSampler | None
    queue: asyncio.Queue
    produced: int = 0


class EngineLoop:
    """The background task every engine runs (`_loop`), started and stopped with the server."""

    _task: asyncio.Task | None = None
    # what the server is, told to clients in /v1/models (`dsbench` field) and an x-dsbench-source
    # header, so that a load run against a simulator is labelled simulated, never measured
    card: dict = {"source": "measured"}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        raise NotImplementedError


class SimEngine(EngineLoop):
    """Continuous-batching simulated engine driven by a core Scenario."""

    def __init__(
        self,
        scenario: Scenario,
        time_scale: float = 1.0,
        seed: int = 0,
        model_name: str = "dsbench-sim",
        max_running: int | None = None,
        card: dict | None = None,
    ):
        self.sc = scenario
        self.card = {
            "source": "simulated",
            "method": None,
            "policy": str(scenario.policy),
            "gamma": scenario.gamma,
            "time_scale": time_scale,
            **(card or {}),
        }
        self.max_running = max_running  # the KV cache's room: later arrivals wait, as in vLLM's scheduler
        self.time_scale = time_scale
        self.model_name = model_name
        self.rng = np.random.default_rng(seed)
        self.counters = SpecCounters(scenario.gamma)
        self._active: list[_Request] = []
        self._joining: list[_Request] = []
        self._wake = asyncio.Event()
        self._capacity_history: deque[int] = deque(maxlen=3)  # dspark-async's lagged K
        self.rounds_run = 0
        self.late_s = 0.0  # how far the engine fell behind its clock (server overload shows here)

    @property
    def running(self) -> int:
        return len(self._active) + len(self._joining) - self.waiting

    @property
    def waiting(self) -> int:
        """Requests queued because the batch is full (KV memory)."""
        if self.max_running is None:
            return 0
        return max(0, len(self._joining) - max(0, self.max_running - len(self._active)))

    def submit(self, prompt, max_tokens: int) -> tuple[asyncio.Queue, int]:
        """Queue a request (chat messages or a completion string); returns a queue of (tokens, text)
        chunks ending in None, and the prompt's token count (this engine's "tokenizer" counts
        whitespace-separated words, plus 4 template tokens per chat message)."""
        samplers = self.sc.samplers
        sampler = samplers[int(self.rng.integers(len(samplers)))] if samplers else None
        req = _Request(max(1, _count_words(prompt)), max(1, max_tokens), sampler, asyncio.Queue())
        self._joining.append(req)
        self.counters.prompt_tokens += req.prompt_tokens
        self._wake.set()
        return req.queue, req.prompt_tokens

    def cancel(self, queue: asyncio.Queue) -> None:
        """Drop a request whose client went away."""
        self._active = [r for r in self._active if r.queue is not queue]
        self._joining = [r for r in self._joining if r.queue is not queue]

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self._active and not self._joining:
                self._wake.clear()
                await self._wake.wait()
                deadline = loop.time()
            duration, emit = self._round()
            deadline += duration * self.time_scale
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.late_s = max(self.late_s, -delay)
            for req, n in emit:
                req.queue.put_nowait((n, _text(n, req.produced - n)))
                if req.produced >= req.max_tokens:
                    req.queue.put_nowait(None)
            self.rounds_run += 1

    def _round(self) -> tuple[float, list[tuple[_Request, int]]]:
        """Plan one round: returns its duration (seconds, unscaled) and the tokens each request gets."""
        room = len(self._joining) if self.max_running is None else max(0, self.max_running - len(self._active))
        joining, self._joining = self._joining[:room], self._joining[room:]
        decoding = self._active
        sc, g = self.sc, self.sc.gamma
        r_dec, r_all = len(decoding), len(decoding) + len(joining)
        prefill = sum(r.prompt_tokens for r in joining)
        emit: list[tuple[_Request, int]] = []

        lengths = np.zeros(r_dec, dtype=np.int64)
        draft_s = 0.0
        if r_dec and g:
            p = np.stack([r.sampler.sample(self.rng, ()) for r in decoding]).astype(float)[None]  # (1, R, gamma)
            table = sc.surface.slice(r_all).table(prefill + r_dec * (1 + g))[prefill:]
            draft_s = sc.draft_s(r_dec)
            lengths = self._schedule(p, table, draft_s)[0]
            accepted_each = self.rng.random(p.shape[1:]) < p[0]
            in_prefix = np.arange(g) < lengths[:, None]
            acc = np.cumprod(accepted_each & in_prefix, axis=-1).sum(axis=-1)
            self._count(lengths, acc)
        else:
            acc = np.zeros(r_dec, dtype=np.int64)
            self.counters.rounds += r_dec
        batch = prefill + r_dec + int(lengths.sum())
        step_s = float(sc.surface.step_time(batch, r_all)) if r_all else 0.0

        for req, a in zip(decoding, acc):
            n = min(int(a) + 1, req.max_tokens - req.produced)
            req.produced += n
            emit.append((req, n))
        for req in joining:
            req.produced = 1
            emit.append((req, 1))
        self.counters.generation_tokens += sum(n for _, n in emit)
        self._active = [r for r in decoding + joining if r.produced < r.max_tokens]
        self.counters.requests_finished += sum(1 for r, _ in emit if r.produced >= r.max_tokens)
        return draft_s + step_s, emit

    def _schedule(self, p: np.ndarray, table: np.ndarray, draft_s: float) -> np.ndarray:
        pol = self.sc.policy
        if pol.kind != "dspark-async":
            return schedule(pol, p, table, draft_s)
        # production variant: capacity from a full search `lag` rounds ago, top-K now
        lag = 2 if pol.param is None else int(pol.param)
        self._capacity_history.append(int(dspark_lengths(p, table, draft_s, early_stop=False).sum()))
        k = self._capacity_history[0] if len(self._capacity_history) > lag else self._capacity_history[-1]
        return topk_lengths(p, k)

    def _count(self, lengths: np.ndarray, acc: np.ndarray) -> None:
        self.counters.record(lengths, acc)


_WORDS = ("the", "model", "drafts", "tokens", "and", "verifies", "them", "in", "one", "pass")


def _text(n: int, start: int) -> str:
    """Text of `n` simulated tokens starting at token index `start` (one word each)."""
    return "".join(" " + _WORDS[(start + i) % len(_WORDS)] for i in range(n))


def _count_words(prompt) -> int:
    if isinstance(prompt, list):  # chat messages
        return len(" ".join(str(m.get("content", "")) for m in prompt).split()) + 4 * len(prompt)
    return len(str(prompt).split())
