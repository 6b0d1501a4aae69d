"""In-process speculative decoding of a batch of sequences (DeepSpec's evaluation loop, batched).

Every in-flight sequence has a row in the target's `SlotCache` and in the drafter's caches
(slot = position, see spec/slots.py); rows stay packed 0..R-1, a finished sequence's row taking
the last one. Per round, for all rows at once (positions are absolute; `start` is the anchor,
the last committed token, which the target has not processed yet):
  1. propose — the drafter returns gamma drafts, the distributions q they were sampled from, and
     (DSpark) per-position confidences;
  2. schedule — the verification policy picks how many drafts each row verifies (core.policies;
     DSpark's Algorithm 1 sees the whole batch and the step time at its size);
  3. verify — one target pass over every row's [anchor, d_1..d_l] (right-padded to the longest);
     rejection sampling (sampling.verify);
  4. commit [d_1..d_acc, next]; hand the drafter the target features of the acc + 1 verified
     positions. Nothing is cropped: stale entries sit past each row's position, masked.
Records each round's (proposal length, accepted) so tau and per-position figures come from counts.

Block drafters (DFlash, DSpark) take the new positions' target features each round; chain
drafters (Eagle3, MTP-1) keep their last hidden state and `extend` it with the verified positions
paired with the committed tokens (DeepSpec's Eagle3 alignment).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.policies import Policy, schedule
from .drafters import ChainDrafter, MTPDrafter, kv_cache
from .sampling import stop_inside_drafts, verify
from .slots import SlotCache


@dataclass
class RoundLog:
    proposal: list[int] = field(default_factory=list)  # drafts verified per round
    accepted: list[int] = field(default_factory=list)  # accepted drafts per round (no bonus)
    committed: list[int] = field(default_factory=list)  # tokens committed per round (acc + 1, or acc on a stop)
    confidence: list[list[float]] = field(default_factory=list)  # DSpark: per-position confidence per round

    def extend(self, other: RoundLog) -> None:
        """Append another log's rounds (pooling over sequences, as DeepSpec's figures do)."""
        for name in ("proposal", "accepted", "committed", "confidence"):
            getattr(self, name).extend(getattr(other, name))


@dataclass(eq=False)
class Session:
    """One sequence's decoding state between rounds."""

    start: int  # position of the anchor (the last committed token, not yet in the target cache)
    tokens: list[int]
    done: bool = False
    slot: int | None = None  # its row in the batch caches while in flight
    feats: torch.Tensor | None = None  # block drafters: target features (S, F) of the positions verified last round
    h: torch.Tensor | None = None  # chain drafters: last hidden state (H,)
    log: RoundLog = field(default_factory=RoundLog)


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """fp32 probabilities; one-hot argmax at temperature ~0 (as DeepSpec does)."""
    if temperature < 1e-5:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return torch.softmax(logits.float() / temperature, -1)


class SpecDecoder:
    """Target (a transformers causal LM) + an optional drafter, over a batch of sequences.

    `verify_s` (for the dspark policies) is the step-time table t[B] in seconds, or a callable
    giving it for R requests (the SPS slice at the batch's size).
    """

    def __init__(self, target, drafter=None, target_layer_ids: list[int] | None = None, gamma: int = 7,
                 policy: Policy | None = None, verify_s=None, temperature: float = 1.0,
                 stop_ids: set[int] | None = None, max_len: int = 4096, seed: int = 0):
        self.target, self.drafter = target, drafter
        n = target.config.num_hidden_layers
        self.layer_ids = target_layer_ids if target_layer_ids is not None else list(range(min(5, n - 1)))
        if any(i >= n - 1 for i in self.layer_ids):
            raise ValueError("target features may not come from the final layer (its HF output is normed)")
        self.gamma = (1 if isinstance(drafter, MTPDrafter) else gamma) if drafter is not None else 0
        self.policy = policy or Policy("fixed")
        self.verify_s = verify_s
        self._tables: dict[int, np.ndarray] = {}
        self.temperature = temperature
        self.stop_ids = set(stop_ids or ())
        self.length = max_len + self.gamma + 2  # positions a row holds
        self.gen = torch.Generator(device=target.device).manual_seed(seed)
        self.active: list[Session] = []  # in row order
        self._cache: SlotCache | None = None
        self._dcaches: list = []
        self._dtype = next(target.parameters()).dtype

    # -- batch bookkeeping ---------------------------------------------------------------------

    def _ensure_rows(self, rows: int) -> None:
        """Room for `rows` sequences: the caches double, keeping the rows in flight."""
        have = self._cache.rows if self._cache is not None else 0
        if rows <= have:
            return
        new, keep = max(rows, 2 * have, 1), len(self.active)
        cache = SlotCache(self.target, new, self.length)
        dcaches = kv_cache(self.drafter, new, self.length) if self.drafter is not None else []
        if keep:
            for (k, v), (ok, ov) in zip(cache.pairs + dcaches, self._cache.pairs + self._dcaches):
                k[:keep], v[:keep] = ok[:keep], ov[:keep]
        self._cache, self._dcaches = cache, dcaches

    def _drafter_rows(self, row0: int) -> list:
        return [(k[row0:], v[row0:]) for k, v in self._dcaches]

    @torch.inference_mode()  # the caches are inference tensors
    def release(self, s: Session) -> None:
        """Take a sequence out of the batch (finished sequences are released automatically)."""
        if s.slot is None:
            return
        last = self.active.pop()
        if last is not s:  # keep rows packed: the last row's committed positions move into the freed one
            for k, v in self._cache.pairs + self._dcaches:
                k[s.slot, :, : last.start] = k[last.slot, :, : last.start]
                v[s.slot, :, : last.start] = v[last.slot, :, : last.start]
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
        pos = pos.clamp(max=self.length - 1)  # only right-padding can reach past a row's end
        mask = self._cache.prepare(row0, pos, self._dtype)
        return self.target(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=self._cache,
                           use_cache=True, output_hidden_states=True, logits_to_keep=0)

    def _features(self, hidden_states) -> torch.Tensor:
        if isinstance(self.drafter, MTPDrafter):
            return hidden_states[-1]  # MTP reads the target's last hidden state
        return torch.cat([hidden_states[i + 1] for i in self.layer_ids], -1)  # raw outputs of the chosen layers

    def _cast(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(next(self.drafter.parameters()).dtype)

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
        out = self._target(row0, ids, torch.arange(t, device=dev).expand(n, t))
        rows = torch.arange(n, device=dev)
        firsts = first or torch.multinomial(_probs(out.logits[rows, lens - 1], self.temperature), 1,
                                            generator=self.gen)[:, 0].tolist()
        sessions = [Session(start=len(p), tokens=[f], done=f in self.stop_ids, slot=row0 + i)
                    for i, (p, f) in enumerate(zip(prompts, firsts))]
        self.active += sessions
        if self.drafter is not None:
            feats = self._features(out.hidden_states)
            if isinstance(self.drafter, ChainDrafter):  # prompt features 0..n-1 paired with tokens 1..n
                pairs = torch.nn.utils.rnn.pad_sequence([torch.tensor(p[1:] + [f]) for p, f in zip(prompts, firsts)],
                                                        batch_first=True).to(dev)
                h = self.drafter.extend(self._cast(feats), pairs, 0, self._drafter_rows(row0), lens)
                for s, hs in zip(sessions, h):
                    s.h = hs
            else:
                for i, s in enumerate(sessions):
                    s.feats = feats[i, : len(prompts[i])]
        self._release_done(sessions)
        return sessions

    @torch.inference_mode()
    def step_all(self) -> list[tuple[Session, list[int]]]:
        """One round for every sequence in flight: one drafter call, one target pass. Returns each
        sequence's committed tokens; sequences that finish (stop token, length) leave the batch."""
        batch = list(self.active)
        r = len(batch)
        if not r:
            return []
        dev = self.target.device
        anchors = torch.tensor([s.tokens[-1] for s in batch], device=dev)
        starts = torch.tensor([s.start for s in batch], device=dev)
        drafts, q, conf = self._propose(anchors, starts, batch)
        g = drafts.shape[1]
        c = conf.float().cpu().numpy() if conf is not None else np.ones((r, g))  # no head: fully confident
        lengths = schedule(self.policy, c[None], self._table(r))[0] if g else np.zeros(r, dtype=np.int64)
        width = int(lengths.max()) if g else 0
        out = self._target(0, torch.cat([anchors[:, None], drafts[:, :width]], 1),
                           starts[:, None] + torch.arange(width + 1, device=dev))
        acc, nxt = verify(_probs(out.logits, self.temperature), q[:, :width], drafts[:, :width],
                          torch.as_tensor(lengths, device=dev), self.gen)
        stop_at = stop_inside_drafts(drafts[:, :width], acc, self.stop_ids).tolist()
        rows, acc_l, nxt_l = drafts[:, :width].tolist(), acc.tolist(), nxt.tolist()
        results = []
        for i, s in enumerate(batch):
            a, cut = acc_l[i], stop_at[i]
            committed = rows[i][:a] + [nxt_l[i]] if cut < 0 else rows[i][:cut]
            s.log.proposal.append(int(lengths[i]))
            s.log.accepted.append(a if cut < 0 else cut)
            s.log.committed.append(len(committed))
            if conf is not None:
                s.log.confidence.append(c[i].tolist())
            s.tokens += committed
            s.start += a + 1  # the anchor and the accepted drafts are in the cache; `next` is the new anchor
            s.done = cut >= 0 or any(t in self.stop_ids for t in committed) or s.start + self.gamma + 2 >= self.length
            results.append((s, committed))
        if self.drafter is not None:  # the verified positions' features (paired with the committed tokens)
            feats = self._features(out.hidden_states)
            if isinstance(self.drafter, ChainDrafter):
                pairs = torch.nn.utils.rnn.pad_sequence([torch.tensor(c_) for _, c_ in results], batch_first=True).to(dev)
                h = self.drafter.extend(self._cast(feats[:, : pairs.shape[1]]), pairs, starts, self._drafter_rows(0),
                                        torch.tensor([len(c_) for _, c_ in results], device=dev))
                for s, hs in zip(batch, h):
                    s.h = hs
            else:
                for i, s in enumerate(batch):
                    s.feats = feats[i, : acc_l[i] + 1]
        self._release_done(batch)
        return results

    def generate(self, prompt_ids: list[int], max_new_tokens: int) -> tuple[list[int], RoundLog]:
        """Generated tokens (the prefill token first) and the per-round log, for one sequence."""
        return self.generate_many([prompt_ids], max_new_tokens)[0]

    def generate_many(self, prompts: list[list[int]], max_new_tokens: int) -> list[tuple[list[int], RoundLog]]:
        """`generate` for several sequences decoded together (one target pass per round for all)."""
        if self.active:
            raise RuntimeError("generate needs the decoder to itself")
        sessions = self.start_many(prompts)
        while True:
            for s in sessions:
                if len(s.tokens) >= max_new_tokens:
                    self.release(s)
            if not self.active:
                break
            self.step_all()
        return [(s.tokens[:max_new_tokens], s.log) for s in sessions]

    def _propose(self, anchors, starts, batch: list[Session]):
        r = len(batch)
        dev = anchors.device
        if self.drafter is None:
            v = self.target.config.vocab_size
            return torch.zeros((r, 0), dtype=torch.long, device=dev), torch.zeros((r, 0, v), device=dev), None
        if isinstance(self.drafter, ChainDrafter):
            h = torch.stack([s.h for s in batch])
            drafts, logits = self.drafter.propose_chain(h, starts, self.gamma, self._drafter_rows(0), self.temperature)
            conf = None
        else:
            feats = torch.nn.utils.rnn.pad_sequence([s.feats for s in batch], batch_first=True)
            lens = torch.tensor([s.feats.shape[0] for s in batch], device=dev)
            drafts, logits, conf = self.drafter.propose(anchors, self._cast(feats), starts, self.gamma, self._drafter_rows(0),
                                                        self.temperature, lengths=lens)
        return drafts, _probs(logits, self.temperature), conf
