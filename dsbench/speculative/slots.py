"""The target's KV cache for a batch of sequences at different positions.

One preallocated row per sequence; entry i of a row holds the sequence's position i (slot =
position), so a verification pass writes each row's anchor and drafts at that row's own
positions and attends under a per-row causal mask. Rejected drafts are never cropped: they sit
past the row's committed length, where the mask hides them until the next round overwrites them.
This is what lets one forward pass verify every in-flight request, whatever each has accepted.

It plugs into transformers as a `Cache` whose layers scatter instead of append; the model gets
`position_ids` and a ready 4-D mask, so it never asks the cache for lengths.
"""

from __future__ import annotations

import inspect
from functools import cache

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


@cache
def _cache_argument(forward) -> str:
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def cache_argument(model) -> str:
    """The name a model's forward takes its KV cache by: `cache` from transformers 5.24 on (where
    `past_key_values` is deprecated, to go in 5.40), `past_key_values` before."""
    return _cache_argument(type(model).forward)


class _Plan:
    """Where the next forward writes: rows row0..row0+R-1, positions (R, T), keys 0..kv_len-1."""

    row0 = 0
    positions: torch.Tensor | None = None
    kv_len = 0


class _SlotLayer(CacheLayerMixin):
    def __init__(self, plan: _Plan, shape: tuple[int, ...], dtype, device):
        super().__init__()
        self.plan = plan
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:  # preallocated
        pass

    def update(self, key_states, value_states, *args, **kwargs):
        p = self.plan
        r = key_states.shape[0]
        rows = torch.arange(p.row0, p.row0 + r, device=key_states.device)[:, None]
        self.keys[rows, :, p.positions] = key_states.transpose(1, 2)
        self.values[rows, :, p.positions] = value_states.transpose(1, 2)
        return self.keys[p.row0 : p.row0 + r, :, : p.kv_len], self.values[p.row0 : p.row0 + r, :, : p.kv_len]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.plan.kv_len, 0

    def get_seq_length(self) -> int:
        return self.plan.kv_len

    def get_max_length(self) -> int:
        return self.keys.shape[2]

    def get_max_cache_shape(self) -> int:  # abstract in transformers 5.10
        return self.keys.shape[2]


class SlotCache(Cache):
    """`rows` sequences of up to `length` positions for a transformers decoder `model`."""

    def __init__(self, model, rows: int, length: int):
        cfg = model.config
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        w = next(model.parameters())
        self.plan = _Plan()
        self.rows, self.length = rows, length
        shape = (rows, cfg.num_key_value_heads, length, hd)
        super().__init__(layers=[_SlotLayer(self.plan, shape, w.dtype, w.device) for _ in range(cfg.num_hidden_layers)])

    def prepare(self, row0: int, positions: torch.Tensor, dtype) -> torch.Tensor:
        """Plan a forward of rows row0.. at `positions` (R, T); returns its additive 4-D mask
        (R, 1, T, keys): a query sees its row's slots up to its own position."""
        self.plan.row0, self.plan.positions = row0, positions
        self.plan.kv_len = int(positions.max()) + 1
        seen = torch.arange(self.plan.kv_len, device=positions.device) <= positions[..., None]
        return torch.zeros(seen.shape, dtype=dtype, device=positions.device).masked_fill_(
            ~seen, torch.finfo(dtype).min
        )[:, None]

    @property
    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's (keys, values) buffers, (rows, heads, length, head_dim)."""
        return [(layer.keys, layer.values) for layer in self.layers]
