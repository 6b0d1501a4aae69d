"""In-process speculative decoding of a batch of sequences (DeepSpec's evaluation loop, batched).

Every in-flight sequence has a row in the target's `SlotCache` and in the drafter's state
(slot = position, see slots.py); rows stay packed 0..R-1, a finished sequence's row taking
the last one. Per round, for all rows at once (positions are absolute; `start` is the anchor,
the last committed token, which the target has not processed yet):
  1. propose — the drafter (drafters.py) returns up to gamma drafts, the distributions q they
     were drawn from and, if it has them, per-position confidences;
  2. schedule — the verification policy picks how many drafts each row verifies (core.policies;
     DSpark's Algorithm 1 sees the whole batch and the step time at its size);
  3. verify — one target pass over every row's [anchor, d_1..d_l] (right-padded to the longest);
     rejection sampling (sampling.verify);
  4. commit [d_1..d_acc, next] and let the drafter observe it, with the target's hidden states at
     the verified positions. Nothing is cropped: stale entries sit past each row's position, masked.
Records each round's (proposal length, accepted) so tau and per-position figures come from counts.

Two bookkeeping conventions (`deepspec_rules`): dsbench's records a round cut at an accepted stop
token with the drafts it verified and stops at max_new_tokens generated tokens; DeepSpec's
(`deepspec/eval/base_evaluator.py`) records such a round's proposal as the stop token's position
and, looping `while start < max_length`, runs one more round when exactly max_new_tokens were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.policies import Policy, schedule
from .drafters import Drafter, NoDrafter, Proposal
from .sampling import probabilities, stop_inside_drafts, verify
from .slots import SlotCache, cache_argument


@dataclass
class RoundLog:
    proposal: list[int] = field(default_factory=list)  # drafts verified per round
    accepted: list[int] = field(default_factory=list)  # accepted drafts per round (no bonus)
    committed: list[int] = field(default_factory=list)  # tokens committed per round (acc + 1, or acc on a stop)
    confidence: list[list[float]] = field(default_factory=list)  # DSpark: per-position confidence per round
    sample: list[int] = field(default_factory=list)  # pooled logs: which sequence each round belongs to

    def extend(self, other: RoundLog, sample: int | None = None) -> None:
        """Append another log's rounds (pooling over sequences, as DeepSpec's figures do), marked
        as sequence `sample`'s when given."""
        for name in ("proposal", "accepted", "committed", "confidence", "sample"):
            getattr(self, name).extend(getattr(other, name))
        if sample is not None:
            self.sample += [sample] * len(other.committed)


@dataclass(eq=False)
class Session:
    """One sequence's decoding state between rounds."""

    start: int  # position of the anchor (the last committed token, not yet in the target cache)
    tokens: list[int]
    done: bool = False
    slot: int | None = None  # its row in the batch while in flight
    log: RoundLog = field(default_factory=RoundLog)


class SpecDecoder:
    """Target (a transformers causal LM) + a drafter (drafters.py; None: plain decoding), over a
    batch of sequences.

    `verify_s` (for the dspark policies) is the step-time table t[B] in seconds, or a callable
    giving it for R requests (the SPS slice at the batch's size).
    """

    def __init__(
        self,
        target,
        drafter: Drafter | None = None,
        policy: Policy | None = None,
        verify_s=None,
        temperature: float = 1.0,
        stop_ids: set[int] | None = None,
        max_len: int = 4096,
        seed: int = 0,
        deepspec_rules: bool = False,
    ):
        self.target = target
        self.drafter: Drafter = drafter if drafter is not None else NoDrafter()
        self.gamma = self.drafter.gamma
        self.policy = policy or Policy("fixed")
        self.verify_s = verify_s
        self._tables: dict[int, np.ndarray] = {}
        self.temperature = temperature
        self.stop_ids = set(stop_ids or ())
        self.deepspec_rules = deepspec_rules
        self.length = max_len + self.gamma + 2  # positions a row holds
        self.gen = torch.Generator(device=target.device).manual_seed(seed)
        self.active: list[Session] = []  # in row order
        self._cache: SlotCache | None = None
        self._dtype = next(target.parameters()).dtype

    # -- batch bookkeeping ---------------------------------------------------------------------

    def _ensure_rows(self, rows: int) -> None:
        """Room for `rows` sequences: the caches double, keeping the rows in flight."""
        have = self._cache.rows if self._cache is not None else 0
        if rows <= have:
            return
        new, keep = max(rows, 2 * have, 1), len(self.active)
        cache = SlotCache(self.target, new, self.length)
        if keep:
            for (k, v), (ok, ov) in zip(cache.pairs, self._cache.pairs):
                k[:keep], v[:keep] = ok[:keep], ov[:keep]
        self._cache = cache
        self.drafter.reserve(new, self.length)

    @torch.inference_mode()  # the caches are inference tensors
    def release(self, s: Session) -> None:
        """Take a sequence out of the batch (finished sequences are released automatically)."""
        if s.slot is None:
            return
        last = self.active.pop()
        if last is not s:  # keep rows packed: the last row's committed positions move into the freed one
            for k, v in self._cache.pairs:
                k[s.slot, :, : last.start] = k[last.slot, :, : last.start]
                v[s.slot, :, : last.start] = v[last.slot, :, : last.start]
            self.drafter.move(last.slot, s.slot, last.start)
            last.slot = s.slot
            self.active[s.slot] = last
        s.slot = None

    def _release_done(self, sessions: list[Session]) -> None:
        for s in sessions:
            if s.done:
                self.release(s)

    def _table(self, requests: int):
        if not callable(self.verify_s):
            return self.verify_s
        if requests not in self._tables:
            self._tables[requests] = self.verify_s(requests)
        return self._tables[requests]

    # -- target ------------------------------------------------------------------------------

    def _target(self, row0: int, ids: torch.Tensor, pos: torch.Tensor):
        """One target pass; returns (logits, hidden states or None when the drafter reads none)."""
        pos = pos.clamp(max=self.length - 1)  # only right-padding can reach past a row's end
        mask = self._cache.prepare(row0, pos, self._dtype)
        hidden = self.drafter.reads_hidden
        out = self.target(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            **{cache_argument(self.target): self._cache},
            use_cache=True,
            output_hidden_states=hidden,
            logits_to_keep=0,
        )
        return out.logits, (out.hidden_states if hidden else None)

    # -- decoding ------------------------------------------------------------------------------

    def start(self, prompt_ids: list[int]) -> Session:
        return self.start_many([prompt_ids])[0]

    @torch.inference_mode()
    def start_many(self, prompts: list[list[int]], first: list[int] | None = None) -> list[Session]:
        """Prefill sequences (one padded pass) and sample each one's first token (which no round
        counts), or take it from `first` (a sequence resumed after its first token)."""
        dev = self.target.device
        n, row0 = len(prompts), len(self.active)
        lens = torch.tensor([len(p) for p in prompts], device=dev)
        if int(lens.min()) < 1 or int(lens.max()) + self.gamma + 2 >= self.length:
            raise ValueError(f"prompts must hold 1..{self.length - self.gamma - 3} tokens")
        self._ensure_rows(row0 + n)
        ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(p) for p in prompts], batch_first=True).to(dev)
        t = ids.shape[1]
        logits, hidden = self._target(row0, ids, torch.arange(t, device=dev).expand(n, t))
        probs = probabilities(logits[torch.arange(n, device=dev), lens - 1], self.temperature)
        firsts = first or torch.multinomial(probs, 1, generator=self.gen)[:, 0].tolist()
        sessions = [
            Session(start=len(p), tokens=[f], done=f in self.stop_ids, slot=row0 + i)
            for i, (p, f) in enumerate(zip(prompts, firsts))
        ]
        self.active += sessions
        self.drafter.begin(row0, prompts, firsts, hidden)
        self._release_done(sessions)
        return sessions

    @torch.inference_mode()
    def step_all(self) -> list[tuple[Session, list[int]]]:
        """One round for every sequence in flight: one drafter call, one target pass. Returns each
        sequence's committed tokens; sequences that finish (stop token, length) leave the batch."""
        batch = list(self.active)
        if not batch:
            return []
        dev = self.target.device
        anchors = torch.tensor([s.tokens[-1] for s in batch], device=dev)
        starts = torch.tensor([s.start for s in batch], device=dev)
        proposal = self.drafter.propose(anchors, starts, self.temperature)
        conf, lengths = self._schedule(proposal)
        width = int(lengths.max(initial=0))
        drafts, q = proposal.tokens[:, :width], proposal.probs[:, :width]
        logits, hidden = self._target(
            0, torch.cat([anchors[:, None], drafts], 1), starts[:, None] + torch.arange(width + 1, device=dev)
        )
        acc, nxt = verify(
            probabilities(logits, self.temperature), q, drafts, torch.as_tensor(lengths, device=dev), self.gen
        )
        results = self._commit(
            batch,
            lengths,
            conf,
            drafts.tolist(),
            acc.tolist(),
            nxt.tolist(),
            stop_inside_drafts(drafts, acc, self.stop_ids).tolist(),
        )
        self.drafter.observe(starts, [c for _, c in results], acc.tolist(), hidden)
        self._release_done(batch)
        return results

    def _schedule(self, proposal: Proposal) -> tuple[np.ndarray | None, np.ndarray]:
        """Each row's confidences (None without a confidence head) and drafts to verify."""
        r, g = proposal.tokens.shape
        if not g:
            return None, np.zeros(r, dtype=np.int64)
        conf = proposal.confidence.float().cpu().numpy() if proposal.confidence is not None else None
        c = conf if conf is not None else np.ones((r, g))  # no head: fully confident
        lengths = schedule(self.policy, c[None], self._table(r))[0]
        if proposal.lengths is not None:  # a row cannot verify drafts it does not have
            lengths = np.minimum(lengths, proposal.lengths.cpu().numpy())
        return conf, lengths

    def _commit(self, batch, lengths, conf, drafts, acc, nxt, stop_at) -> list[tuple[Session, list[int]]]:
        """Each row commits its accepted drafts and the next token, or stops at an accepted stop token."""
        results = []
        for i, s in enumerate(batch):
            a, cut = acc[i], stop_at[i]
            committed = drafts[i][:a] + [nxt[i]] if cut < 0 else drafts[i][:cut]
            s.log.proposal.append(cut if cut >= 0 and self.deepspec_rules else int(lengths[i]))
            s.log.accepted.append(a if cut < 0 else cut)
            s.log.committed.append(len(committed))
            if conf is not None:
                s.log.confidence.append(conf[i].tolist())
            s.tokens += committed
            s.start += a + 1  # the anchor and the accepted drafts are in the cache; `next` is the new anchor
            s.done = cut >= 0 or any(t in self.stop_ids for t in committed) or s.start + self.gamma + 2 >= self.length
            results.append((s, committed))
        return results

    def generate(self, prompt_ids: list[int], max_new_tokens: int) -> tuple[list[int], RoundLog]:
        """Generated tokens (the prefill token first) and the per-round log, for one sequence."""
        return self.generate_many([prompt_ids], max_new_tokens)[0]

    def generate_many(self, prompts: list[list[int]], max_new_tokens: int) -> list[tuple[list[int], RoundLog]]:
        """`generate` for several sequences decoded together (one target pass per round for all)."""
        if self.active:
            raise RuntimeError("generate needs the decoder to itself")
        sessions = self.start_many(prompts)
        budget = max_new_tokens + 1 if self.deepspec_rules else max_new_tokens  # DeepSpec: one round more
        while True:
            for s in sessions:
                if len(s.tokens) >= budget:
                    self.release(s)
            if not self.active:
                break
            self.step_all()
        return [(s.tokens[:max_new_tokens], s.log) for s in sessions]
