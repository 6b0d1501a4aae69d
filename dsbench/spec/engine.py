"""In-process speculative decoding, one sequence at a time (DeepSpec's evaluation loop).

Per round (positions are absolute; `start` is the anchor, the last committed token, which the
target has not processed yet):
  1. propose — the drafter returns gamma drafts, the distributions q they were sampled from, and
     (DSpark) per-position confidences;
  2. schedule — the verification policy picks how many drafts to verify (core.policies);
  3. verify — one target pass over [anchor, d_1..d_l]; rejection sampling (sampling.verify);
  4. commit [d_1..d_acc, next]; crop the target cache to the new anchor; hand the drafter the
     target features of the acc + 1 verified positions.
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


@dataclass
class Session:
    """One sequence's decoding state between rounds."""

    cache: object  # the target's DynamicCache
    start: int  # position of the anchor (the last committed token, not yet in the target cache)
    tokens: list[int]
    done: bool = False
    feats: torch.Tensor | None = None  # block drafters: target features of the positions verified last round
    h: torch.Tensor | None = None  # chain drafters: last hidden state
    dcaches: list | None = None
    log: RoundLog = field(default_factory=RoundLog)


def _crop(cache, length: int) -> None:
    """Cut a DynamicCache back to `length` positions (transformers 5 takes a negative count to remove)."""
    excess = cache.get_seq_length() - length
    if excess > 0:
        cache.crop(-excess)


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """fp32 probabilities; one-hot argmax at temperature ~0 (as DeepSpec does)."""
    if temperature < 1e-5:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return torch.softmax(logits.float() / temperature, -1)


class SpecDecoder:
    """Target (a transformers causal LM) + an optional block drafter, batch size 1."""

    def __init__(self, target, drafter=None, target_layer_ids: list[int] | None = None, gamma: int = 7,
                 policy: Policy | None = None, verify_s: np.ndarray | None = None, temperature: float = 1.0,
                 stop_ids: set[int] | None = None, max_len: int = 4096, seed: int = 0):
        self.target, self.drafter = target, drafter
        n = target.config.num_hidden_layers
        self.layer_ids = target_layer_ids if target_layer_ids is not None else list(range(min(5, n - 1)))
        if any(i >= n - 1 for i in self.layer_ids):
            raise ValueError("target features may not come from the final layer (its HF output is normed)")
        self.gamma = (1 if isinstance(drafter, MTPDrafter) else gamma) if drafter is not None else 0
        self.policy = policy or Policy("fixed")
        self.verify_s = verify_s
        self.temperature = temperature
        self.stop_ids = set(stop_ids or ())
        self.max_len = max_len
        self.gen = torch.Generator(device=target.device).manual_seed(seed)

    def _features(self, hidden_states) -> torch.Tensor:
        if isinstance(self.drafter, MTPDrafter):
            return hidden_states[-1]  # MTP reads the target's last hidden state
        return torch.cat([hidden_states[i + 1] for i in self.layer_ids], -1)  # raw outputs of the chosen layers

    @torch.inference_mode()
    def start(self, prompt_ids: list[int]) -> Session:
        """Prefill one sequence and sample its first token (which no round counts)."""
        from transformers import DynamicCache

        dev = self.target.device
        cache = DynamicCache()
        out = self.target(input_ids=torch.tensor([prompt_ids], device=dev), past_key_values=cache, output_hidden_states=True,
                          use_cache=True)
        first = int(torch.multinomial(_probs(out.logits[:, -1], self.temperature), 1, generator=self.gen)[0])
        s = Session(cache=cache, start=len(prompt_ids), tokens=[first], done=first in self.stop_ids)
        if self.drafter is not None:
            s.feats = self._features(out.hidden_states)
            s.dcaches = kv_cache(self.drafter, 1, self.max_len + self.gamma + 2)
            if isinstance(self.drafter, ChainDrafter):  # prompt features 0..n-1 paired with tokens 1..n
                s.h = self.drafter.extend(self._cast(s.feats), torch.tensor([prompt_ids[1:] + [first]], device=dev), 0, s.dcaches)
        return s

    @torch.inference_mode()
    def step(self, s: Session) -> list[int]:
        """One round for one sequence; returns the tokens it committed (and marks a stop)."""
        dev = self.target.device
        anchor = torch.tensor([s.tokens[-1]], device=dev)
        drafts, q, conf = self._propose(anchor, s)
        g = drafts.shape[1]
        c = (conf if conf is not None else torch.ones(1, g)).float().cpu().numpy()[:, None, :]  # no head: fully confident
        length = int(schedule(self.policy, c, self.verify_s)[0, 0]) if g else 0
        verify_ids = torch.cat([anchor[:, None], drafts[:, :length]], 1)
        pos = torch.arange(s.start, s.start + length + 1, device=dev)
        out = self.target(input_ids=verify_ids, past_key_values=s.cache, cache_position=pos, position_ids=pos[None],
                          output_hidden_states=True, use_cache=True, logits_to_keep=0)
        p = _probs(out.logits, self.temperature)  # (1, l + 1, V)
        acc, nxt = verify(p, q[:, :length], drafts[:, :length], torch.tensor([length], device=dev), self.gen)
        a = int(acc[0])
        stop_at = int(stop_inside_drafts(drafts[:, :length], acc, self.stop_ids)[0])
        committed = drafts[0, :a].tolist() + [int(nxt[0])] if stop_at < 0 else drafts[0, :stop_at].tolist()
        s.log.proposal.append(length)
        s.log.accepted.append(a if stop_at < 0 else stop_at)
        s.log.committed.append(len(committed))
        if conf is not None:
            s.log.confidence.append(conf[0].float().tolist())
        s.tokens += committed
        if stop_at >= 0 or any(t in self.stop_ids for t in committed):
            s.done = True
            return committed
        _crop(s.cache, s.start + a + 1)  # keep the anchor and the accepted drafts; `next` is the new anchor
        if isinstance(self.drafter, ChainDrafter):  # verified positions paired with the committed tokens
            s.h = self.drafter.extend(self._cast(self._features(out.hidden_states)[:, : a + 1]),
                                      torch.tensor([committed], device=dev), s.start, s.dcaches)
        elif self.drafter is not None:
            s.feats = self._features(out.hidden_states)[:, : a + 1]
        s.start += a + 1
        return committed

    def generate(self, prompt_ids: list[int], max_new_tokens: int) -> tuple[list[int], RoundLog]:
        """Generated tokens (the prefill token first) and the per-round log."""
        s = self.start(prompt_ids)
        while not s.done and len(s.tokens) < max_new_tokens:
            self.step(s)
        return s.tokens[:max_new_tokens], s.log

    def _cast(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(next(self.drafter.parameters()).dtype)

    def _propose(self, anchor, s: Session):
        dev = anchor.device
        if self.drafter is None:
            v = self.target.config.vocab_size
            return torch.zeros((1, 0), dtype=torch.long, device=dev), torch.zeros((1, 0, v), device=dev), None
        if isinstance(self.drafter, ChainDrafter):
            drafts, logits = self.drafter.propose_chain(s.h, s.start, self.gamma, s.dcaches, self.temperature)
            conf = None
        else:
            drafts, logits, conf = self.drafter.propose(anchor, self._cast(s.feats), s.start, self.gamma, s.dcaches, self.temperature)
        return drafts, _probs(logits, self.temperature), conf
