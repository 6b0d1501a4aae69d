"""The target's KV cache for a batch of sequences at different positions.

One preallocated row per sequence; entry i of a row holds the sequence's position i (slot =
position), so a verification pass writes each row's anchor and drafts at that row's own
positions and attends under a per-row causal mask. Rejected drafts are never cropped: they sit
past the row's committed length, where the mask hides them until the next round overwrites them.
This is what lets one forward pass verify every in-flight request, whatever each has accepted.

It plugs into transformers as a `Cache` whose layers scatter instead of append; the model gets
`position_ids` and ready 4-D masks (one per attention type: sliding-window layers, as in Gemma,
see only the last `sliding_window` positions), so it never asks the cache for lengths. Each layer
is shaped as its attention module is (Gemma4's global layers have other head counts and sizes);
layers that reuse an earlier layer's keys and values (Gemma4's KV sharing) hold none.
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


def layer_shapes(model) -> list[tuple[int, int] | None]:
    """(key/value heads, head size) of each decoder layer's cache, from its attention module; None
    for a layer that writes no cache (it reuses another's)."""
    cfg = model.config.get_text_config()
    found: dict[int, tuple[int, int] | None] = {}
    for m in model.modules():
        i = getattr(m, "layer_idx", None)
        if isinstance(i, int) and hasattr(m, "q_proj") and hasattr(m, "head_dim"):
            k = getattr(m, "k_proj", None)
            found[i] = (k.out_features // m.head_dim, m.head_dim) if k is not None else None
    if len(found) == cfg.num_hidden_layers:
        return [found[i] for i in range(cfg.num_hidden_layers)]
    # (transformers 5.24 refuses uniform reads of per-layer fields, so only here, for uniform models)
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return [(cfg.num_key_value_heads, hd)] * cfg.num_hidden_layers


class SlotCache(Cache):
    """`rows` sequences of up to `length` positions for a transformers decoder `model`."""

    def __init__(self, model, rows: int, length: int):
        cfg = model.config.get_text_config()
        w = next(model.parameters())
        self.plan = _Plan()
        self.rows, self.length = rows, length
        types = list(getattr(cfg, "layer_types", None) or [])
        self.window = int(cfg.sliding_window) if "sliding_attention" in types else None
        self.shapes = layer_shapes(model)
        layers = [
            _SlotLayer(self.plan, (rows, heads, length, hd), w.dtype, w.device)
            for heads, hd in (shape or (0, 0) for shape in self.shapes)
        ]
        super().__init__(layers=layers)

    def prepare(self, row0: int, positions: torch.Tensor, dtype):
        """Plan a forward of rows row0.. at `positions` (R, T); returns its additive 4-D mask
        (R, 1, T, keys): a query sees its row's slots up to its own position (and, on
        sliding-window layers, no further back than the window: then one mask per layer type)."""
        self.plan.row0, self.plan.positions = row0, positions
        self.plan.kv_len = int(positions.max()) + 1
        slots = torch.arange(self.plan.kv_len, device=positions.device)
        seen = slots <= positions[..., None]

        def additive(visible):
            return torch.zeros(visible.shape, dtype=dtype, device=positions.device).masked_fill_(
                ~visible, torch.finfo(dtype).min
            )[:, None]

        if self.window is None:
            return additive(seen)
        near = slots > positions[..., None] - self.window  # transformers' sliding_window_overlay
        return {"full_attention": additive(seen), "sliding_attention": additive(seen & near)}

    @property
    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's (keys, values) buffers, (rows, heads, length, head_dim)."""
        return [(layer.keys, layer.values) for layer in self.layers]
