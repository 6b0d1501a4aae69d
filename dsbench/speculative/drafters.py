"""What the engine asks of a drafter, and the drafters dsbench has.

The engine (engine.py) keeps the batch packed in rows 0..R-1 and talks to its drafter through
one protocol, so a new kind of drafter needs no edit there:

  reserve(rows, length)  room for `rows` sequences of `length` positions (rows in flight kept)
  move(src, dst, upto)   row `src` now lives in row `dst` (its positions < upto matter)
  begin(row0, prompts, first, hidden)
                         sequences entered rows row0..: their prompts, first tokens and the
                         target's hidden states over the prompts (None unless `reads_hidden`)
  propose(anchors, starts, temperature) -> Proposal
                         drafts for rows 0..R-1 whose anchors (last committed tokens) sit at
                         positions `starts`
  observe(starts, committed, accepted, hidden)
                         what the round committed per row, and the target's hidden states at
                         the verified positions starts..starts + width

Neural drafters (models.py) hold their own KV caches and target features; the n-gram drafter
holds token histories. Shapes: R rows, g drafts, V vocab, T positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..config import DEFAULT_GAMMA
from .models import BlockModel, ChainModel, MTPModel, kv_cache
from .sampling import probabilities


@dataclass
class Proposal:
    """One round's drafts for rows 0..R-1."""

    tokens: torch.Tensor  # (R, g) draft tokens (padding past a row's `lengths`)
    probs: torch.Tensor  # (R, g, V) the distributions q the drafts were drawn from
    confidence: torch.Tensor | None = None  # (R, g) the drafter's estimate of each draft's acceptance
    lengths: torch.Tensor | None = None  # (R,) drafts each row has; None: all g


class Drafter(Protocol):
    gamma: int  # most drafts per round
    reads_hidden: bool  # whether begin/observe need the target's hidden states

    def reserve(self, rows: int, length: int) -> None: ...

    def move(self, src: int, dst: int, upto: int) -> None: ...

    def begin(self, row0: int, prompts: list[list[int]], first: list[int], hidden) -> None: ...

    def propose(self, anchors: torch.Tensor, starts: torch.Tensor, temperature: float) -> Proposal: ...

    def observe(self, starts: torch.Tensor, committed: list[list[int]], accepted: list[int], hidden) -> None: ...


class NoDrafter:
    """Plain decoding: no drafts, every round commits the target's one token."""

    gamma = 0
    reads_hidden = False

    def reserve(self, rows, length):
        pass

    def move(self, src, dst, upto):
        pass

    def begin(self, row0, prompts, first, hidden):
        pass

    def propose(self, anchors, starts, temperature):
        r = anchors.shape[0]
        empty = torch.zeros((r, 0), dtype=torch.long, device=anchors.device)
        return Proposal(empty, torch.zeros((r, 0, 0), device=anchors.device))

    def observe(self, starts, committed, accepted, hidden):
        pass


class NgramDrafter:
    """Prompt lookup (vLLM's `ngram`, llama.cpp's n-gram speculation): find the longest suffix of
    the sequence, `min_n` to `max_n` tokens, that occurred before (the earliest occurrence among
    the longest, as vLLM picks), and propose the tokens that followed it. Deterministic, so each
    draft's q is one-hot and acceptance is p(draft); rows with no match propose nothing."""

    reads_hidden = False

    def __init__(self, vocab: int, gamma: int = 3, min_n: int = 1, max_n: int = 3):
        if not 1 <= min_n <= max_n or gamma < 1:
            raise ValueError("n-gram drafter: need 1 <= min_n <= max_n and gamma >= 1")
        self.vocab, self.gamma, self.min_n, self.max_n = vocab, gamma, min_n, max_n
        self.history: list[list[int]] = []

    def reserve(self, rows, length):
        self.history += [[] for _ in range(rows - len(self.history))]

    def move(self, src, dst, upto):
        self.history[dst] = self.history[src]

    def begin(self, row0, prompts, first, hidden):
        for i, (p, f) in enumerate(zip(prompts, first)):
            self.history[row0 + i] = list(p) + [f]

    def observe(self, starts, committed, accepted, hidden):
        for i, c in enumerate(committed):
            self.history[i] += c

    def lookup(self, tokens: list[int]) -> list[int]:
        """The drafts for one sequence: up to gamma tokens, [] without a match."""
        seq = np.asarray(tokens)
        for n in range(min(self.max_n, len(seq) - 1), self.min_n - 1, -1):
            windows = np.lib.stride_tricks.sliding_window_view(seq[:-1], n)  # occurrences that have a successor
            hits = np.flatnonzero((windows == seq[-n:]).all(1))
            if len(hits):
                at = int(hits[0]) + n
                return seq[at : at + self.gamma].tolist()
        return []

    def propose(self, anchors, starts, temperature):
        r, dev = anchors.shape[0], anchors.device
        drafts = [self.lookup(self.history[i]) for i in range(r)]
        tokens = torch.zeros((r, self.gamma), dtype=torch.long)
        for i, d in enumerate(drafts):
            tokens[i, : len(d)] = torch.tensor(d, dtype=torch.long)
        lengths = torch.tensor([len(d) for d in drafts], device=dev)
        tokens = tokens.to(dev)
        return Proposal(tokens, torch.nn.functional.one_hot(tokens, self.vocab).float(), lengths=lengths)


class _NeuralDrafter:
    """Shared by the drafters that are models: their KV caches, one row per sequence, and the
    target features they read (concatenated raw outputs of `layer_ids`, or the last hidden state)."""

    reads_hidden = True

    def __init__(self, model: torch.nn.Module, gamma: int, layer_ids: list[int] | None):
        self.model, self.gamma, self.layer_ids = model, gamma, layer_ids
        self.caches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.rows = 0
        self.dtype = next(model.parameters()).dtype

    def reserve(self, rows, length):
        if rows <= self.rows:
            return
        caches = kv_cache(self.model, rows, length)
        for (k, v), (ok, ov) in zip(caches, self.caches):
            k[: self.rows], v[: self.rows] = ok, ov
        self.caches, self.rows = caches, rows

    def move(self, src, dst, upto):
        for k, v in self.caches:
            k[dst, :, :upto], v[dst, :, :upto] = k[src, :, :upto], v[src, :, :upto]

    def features(self, hidden) -> torch.Tensor:
        """(R, T, F) in the drafter's dtype."""
        x = hidden[-1] if self.layer_ids is None else torch.cat([hidden[i + 1] for i in self.layer_ids], -1)
        return x.to(self.dtype)

    def rows_from(self, row0: int) -> list:
        return [(k[row0:], v[row0:]) for k, v in self.caches]


class ChainDrafter(_NeuralDrafter):
    """MTP-1 and Eagle3 (models.ChainModel): each row keeps its last hidden state, extended every
    round with the verified positions paired with the committed tokens. With `stop_ids` a row's
    proposal ends at its first drafted stop token (DeepSpec's Eagle3 evaluator stops drafting there)."""

    def __init__(self, model: ChainModel, gamma: int, layer_ids: list[int] | None, stop_ids=()):
        super().__init__(model, gamma, layer_ids)
        self.h: torch.Tensor | None = None  # (rows, H)
        self.stop_ids = sorted(stop_ids)

    def reserve(self, rows, length):
        old = self.rows
        super().reserve(rows, length)
        if self.h is None or self.h.shape[0] < rows:
            h = torch.zeros(
                (rows, self.model.lm_head.in_features), dtype=self.dtype, device=self.model.lm_head.weight.device
            )
            if self.h is not None:
                h[:old] = self.h[:old]
            self.h = h

    def move(self, src, dst, upto):
        super().move(src, dst, upto)
        self.h[dst] = self.h[src]

    def begin(self, row0, prompts, first, hidden):
        dev = self.h.device
        pairs = _padded([p[1:] + [f] for p, f in zip(prompts, first)], dev)  # features 0..n-1 with tokens 1..n
        lens = torch.tensor([len(p) for p in prompts], device=dev)
        h = self.model.extend(self.features(hidden), pairs, 0, self.rows_from(row0), lens)
        self.h[row0 : row0 + len(prompts)] = h

    def propose(self, anchors, starts, temperature):
        r = anchors.shape[0]
        drafts, logits = self.model.propose_chain(self.h[:r], starts, self.gamma, self.rows_from(0), temperature)
        lengths = None
        if self.stop_ids:  # up to and including the first drafted stop token
            stop = torch.isin(drafts, torch.tensor(self.stop_ids, device=drafts.device))
            lengths = torch.where(stop.any(1), stop.float().argmax(1) + 1, self.gamma)
        return Proposal(drafts, probabilities(logits, temperature), lengths=lengths)

    def observe(self, starts, committed, accepted, hidden):
        dev = self.h.device
        pairs = _padded(committed, dev)
        lens = torch.tensor([len(c) for c in committed], device=dev)
        h = self.model.extend(self.features(hidden)[:, : pairs.shape[1]], pairs, starts, self.rows_from(0), lens)
        self.h[: len(committed)] = h


class BlockDrafter(_NeuralDrafter):
    """DFlash and DSpark (models.BlockModel): each row keeps the target features of the positions
    verified last round, which the next block reads as its new context."""

    def __init__(self, model: BlockModel, gamma: int, layer_ids: list[int] | None):
        super().__init__(model, gamma, layer_ids)
        self.feats: list[torch.Tensor | None] = []

    def reserve(self, rows, length):
        super().reserve(rows, length)
        self.feats += [None] * (rows - len(self.feats))

    def move(self, src, dst, upto):
        super().move(src, dst, upto)
        self.feats[dst] = self.feats[src]

    def begin(self, row0, prompts, first, hidden):
        f = self.features(hidden)
        for i, p in enumerate(prompts):
            self.feats[row0 + i] = f[i, : len(p)]

    def propose(self, anchors, starts, temperature):
        rows = self.feats[: anchors.shape[0]]
        feats = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        lens = torch.tensor([f.shape[0] for f in rows], device=anchors.device)
        drafts, logits, conf = self.model.propose(
            anchors, feats, starts, self.gamma, self.rows_from(0), temperature, lengths=lens
        )
        return Proposal(drafts, probabilities(logits, temperature), conf)

    def observe(self, starts, committed, accepted, hidden):
        f = self.features(hidden)
        for i, a in enumerate(accepted):
            self.feats[i] = f[i, : a + 1]  # the anchor and the accepted drafts: now in the target's cache


def _padded(rows: list[list[int]], device) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True).to(device)


def drafter_for(
    model: torch.nn.Module, target, layer_ids: list[int] | None = None, gamma: int = DEFAULT_GAMMA, stop_ids=()
) -> Drafter:
    """The drafter for a draft model (models.py) of `target`: MTP-1 reads the target's last hidden
    state and drafts one token; Eagle3 and the block drafters read the raw outputs of `layer_ids`
    (default: the first five layers, never the last, whose HF output is normed). `stop_ids`:
    an Eagle3 proposal ends at a drafted stop token (DeepSpec's evaluator)."""
    n = target.config.get_text_config().num_hidden_layers
    if isinstance(model, MTPModel):
        return ChainDrafter(model, 1, None)
    ids = layer_ids if layer_ids is not None else list(range(min(5, n - 1)))
    if any(i >= n - 1 for i in ids):
        raise ValueError("target features may not come from the final layer (its HF output is normed)")
    if isinstance(model, ChainModel):
        return ChainDrafter(model, gamma, ids, stop_ids)
    return BlockDrafter(model, gamma, ids)
