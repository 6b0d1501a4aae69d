"""Drafter architectures, built from the target's config the way DeepSpec builds them.

Parameter names follow DeepSpec's checkpoints (see the compatibility notes) so the loaders can
fill them from safetensors as they are. Shapes: R requests, T tokens, H hidden, V vocab,
nH / nKV heads of size hd. Every drafter reads a per-request KV cache of `ctx` entries (its own
layers' keys and values for the context), preallocated and written in place.

- MTP-1 (DeepSeek-style, not in DeepSpec): enorm/hnorm, eh_proj (2H -> H), one decoder layer,
  the target's head; one token per request per round.
- Eagle3: one layer whose attention reads [input_layernorm(embed(token)); hidden_norm(h)] (2H),
  fc (5H -> H) for target features, norm, full-vocab head; gamma sequential steps.
- DFlash: `num_hidden_layers` layers, context C = hidden_norm(fc(features)) injected as extra
  keys/values, a block [anchor, mask x (gamma - 1)] attended bidirectionally, one forward.
- DSpark: DFlash + Markov head (logits_k += W2(W1[x_{k-1}])) sampled left to right, + confidence
  head sigmoid(w . [h_k ; W1[x_{k-1}]] + b).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Qwen3's RMSNorm (scale applied after the cast back), or Gemma4's (`gemma`: scale applied in
    fp32, optionally none, as its value norm has)."""

    def __init__(self, dim: int, eps: float = 1e-6, gemma: bool = False, scale: bool = True):
        super().__init__()
        if scale:
            self.weight = nn.Parameter(torch.ones(dim))
        self.eps, self.gemma, self.scale = eps, gemma, scale

    def forward(self, x):
        if self.gemma:
            normed = x.float() * torch.pow(x.float().pow(2).mean(-1, keepdim=True) + self.eps, -0.5)
            return (normed * self.weight.float() if self.scale else normed).type_as(x)
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * self.weight


def gemma4_config(d: dict) -> SimpleNamespace:
    """What DeepSpec's Gemma4 drafters (deepspec/modeling/*/gemma4) read from their config.json, a
    copy of the Gemma4 target's text config: attention over `global_head_dim`-wide heads (keys
    doubling as values when `attention_k_eq_v`, then the global key/value head count), the
    full-attention RoPE, GELU, scaled embeddings and soft-capped logits."""
    k_eq_v = bool(d.get("attention_k_eq_v"))
    rope = (d.get("rope_parameters") or {}).get("full_attention") or {"rope_type": "default", "rope_theta": 1e6}
    if rope.get("rope_type", "default") not in ("default", "proportional"):
        raise ValueError(f"Gemma4 drafter RoPE type {rope['rope_type']!r} (default and proportional are supported)")
    if d.get("enable_moe_block") or d.get("hidden_size_per_layer_input"):
        raise ValueError("Gemma4 drafters with MoE blocks or per-layer inputs (DeepSpec refuses them too)")
    return SimpleNamespace(
        gemma4=True,
        hidden_size=int(d["hidden_size"]),
        intermediate_size=int(d["intermediate_size"]),
        num_attention_heads=int(d["num_attention_heads"]),
        head_dim=int(d["global_head_dim"]),
        num_key_value_heads=int(d["num_global_key_value_heads"] if k_eq_v else d["num_key_value_heads"]),
        attention_k_eq_v=k_eq_v,
        rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        attention_bias=bool(d.get("attention_bias")),
        vocab_size=int(d["vocab_size"]),
        hidden_activation=str(d.get("hidden_activation") or "gelu_pytorch_tanh"),
        final_logit_softcapping=d.get("final_logit_softcapping"),
        rope=rope,
        double_wide_from=(
            int(d["num_hidden_layers"]) - int(d.get("num_kv_shared_layers") or 0)
            if d.get("use_double_wide_mlp") and d.get("num_kv_shared_layers")
            else None
        ),
    )


def _gemma4_inv_freq(rope: dict, head_dim: int) -> torch.Tensor:
    """transformers' `default` and `proportional` RoPE inverse frequencies: the first
    partial_rotary_factor of the angles rotate, the rest (frequency 0) do not."""
    angles = int(rope.get("partial_rotary_factor", 1.0) * head_dim // 2)
    inv = 1.0 / (float(rope["rope_theta"]) ** (torch.arange(0, 2 * angles, 2, dtype=torch.float) / head_dim))
    inv = torch.cat([inv, torch.zeros(head_dim // 2 - angles)])
    return inv / float(rope.get("factor", 1.0))


class _FixedRope:
    """A rotary embedding from fixed inverse frequencies: (x, positions) -> (cos, sin)."""

    def __init__(self, inv_freq: torch.Tensor):
        self.inv_freq = inv_freq

    def to(self, device):
        self.inv_freq = self.inv_freq.to(device)
        return self

    def __call__(self, x, positions):
        freqs = positions[..., None].float() * self.inv_freq.to(x.device)
        emb = torch.cat([freqs, freqs], -1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


class Rotary:
    """The target's rotary embedding, rotate-half form. Built by transformers from the target's
    config, as DeepSpec builds it (`Qwen3RotaryEmbedding(config)`), so RoPE scaling (linear,
    dynamic, yarn, llama3, ...) applies in the drafter exactly as in the target. Kept outside the
    module tree: its inverse frequencies stay fp32 when the drafter is cast to bf16. Where the
    frequencies do not depend on the sequence's length, cos/sin tables are grown on demand, not
    recomputed per call."""

    LENGTH_DEPENDENT = ("dynamic", "longrope")  # rope types whose frequencies follow the length

    def __init__(self, cfg):
        if getattr(cfg, "gemma4", False):
            self.emb, kind = _FixedRope(_gemma4_inv_freq(cfg.rope, cfg.head_dim)), cfg.rope.get("rope_type")
        else:
            from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding

            self.emb = Qwen3RotaryEmbedding(cfg)
            kind = self.emb.rope_type
        self.tabled = kind not in self.LENGTH_DEPENDENT
        self.cos = self.sin = None

    def _cos_sin(self, x: torch.Tensor, positions: torch.Tensor):
        if self.emb.inv_freq.device != x.device:
            self.emb.to(x.device)
        if not self.tabled:
            return self.emb(x, positions if positions.dim() == 2 else positions[None])
        n = int(positions.max()) + 1
        if self.cos is None or self.cos.shape[0] < n or self.cos.device != x.device or self.cos.dtype != x.dtype:
            size = max(n, 2 * (0 if self.cos is None else self.cos.shape[0]), 256)
            cos, sin = self.emb(x, torch.arange(size, device=x.device)[None])
            self.cos, self.sin = cos[0], sin[0]
        return self.cos[positions], self.sin[positions]

    def __call__(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (R, heads, T, hd) at integer `positions`, (T,) shared or (R, T) per row."""
        cos, sin = self._cos_sin(x, positions)
        cos, sin = (cos[:, None], sin[:, None]) if cos.dim() == 3 else (cos, sin)
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


class Attention(nn.Module):
    """Qwen3 attention (q/k norms, GQA) over a preallocated cache, with optional extra key/value
    inputs (DFlash's context injection) and an input width of H or 2H (Eagle3). Gemma4's
    (DeepSpec's Gemma4 drafters): values normed without a scale, from the key projection when
    `attention_k_eq_v`, and scores unscaled (q and k are normed)."""

    def __init__(self, cfg, in_dim: int | None = None):
        super().__init__()
        h, self.nh, self.nkv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = getattr(cfg, "head_dim", None) or h // self.nh
        self.rope = Rotary(cfg)
        d, bias = in_dim or h, bool(getattr(cfg, "attention_bias", False))  # DeepSpec follows the target's config
        gemma = bool(getattr(cfg, "gemma4", False))
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=bias)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=bias)
        if not (gemma and cfg.attention_k_eq_v):
            self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=bias)
        self.o_proj = nn.Linear(self.nh * self.hd, h, bias=bias)
        self.q_norm = RMSNorm(self.hd, cfg.rms_norm_eps, gemma)
        self.k_norm = RMSNorm(self.hd, cfg.rms_norm_eps, gemma)
        self.v_norm = RMSNorm(self.hd, cfg.rms_norm_eps, gemma, scale=False) if gemma else None
        self.scale = 1.0 if gemma else None  # None: SDPA's 1 / sqrt(hd)

    def _kv(self, x, positions):
        r, t, _ = x.shape
        k = self.k_proj(x).view(r, t, self.nkv, self.hd)
        v = self.v_proj(x).view(r, t, self.nkv, self.hd) if hasattr(self, "v_proj") else k
        if self.v_norm is not None:
            v = self.v_norm(v)
        return self.rope(self.k_norm(k).transpose(1, 2), positions), v.transpose(1, 2)

    def forward(self, x, positions, cache=None, bound=None, extra=None, extra_positions=None, attn_mask=None):
        """x (R, T, d) queries at `positions` ((R, T) per row, or (T,) shared).

        With a cache (slot = position: each row holds its sequence's entries at their absolute
        positions): writes the keys/values of `extra` (first; DFlash's injected context) and of x
        into rows 0..R-1 at their positions, then attends over slots <= bound[r, t] (causal, the
        queries' own positions, when `bound` is None). Entries past a row's bound are stale drafts
        from earlier rounds, hidden by the bound, so nothing is ever cropped.
        Without a cache (training): attends over [extra ; x] under the boolean `attn_mask`.
        """
        r, t, _ = x.shape
        q = self.rope(self.q_norm(self.q_proj(x).view(r, t, self.nh, self.hd)).transpose(1, 2), positions)
        new = [(self._kv(inp, pos), pos) for inp, pos in ((extra, extra_positions), (x, positions)) if inp is not None]
        if cache is None:  # `extra` may have one row for all queries' rows (shared context): projected once
            k = torch.cat([kv[0].expand(r, -1, -1, -1) for kv, _ in new], 2)
            v = torch.cat([kv[1].expand(r, -1, -1, -1) for kv, _ in new], 2)
            mask = attn_mask
        else:
            ck, cv = cache
            rows = torch.arange(r, device=x.device)[:, None]
            for (k, v), pos in new:  # in order: the block overwrites any padding of the context
                pos = pos.expand(r, -1)
                ck[rows, :, pos] = k.transpose(1, 2)
                cv[rows, :, pos] = v.transpose(1, 2)
            bound = positions.expand(r, -1) if bound is None else bound
            n = int(bound.max()) + 1
            k, v = ck[:r, :, :n], cv[:r, :, :n]
            mask = (torch.arange(n, device=x.device) <= bound[..., None])[:, None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True, scale=self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(r, t, -1))


class MLP(nn.Module):
    """Gated MLP: SiLU (Qwen3), or the config's `hidden_activation` (Gemma4: tanh-approximated GELU)."""

    def __init__(self, cfg, width: int | None = None):
        super().__init__()
        i = width or cfg.intermediate_size
        self.gate_proj = nn.Linear(cfg.hidden_size, i, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, i, bias=False)
        self.down_proj = nn.Linear(i, cfg.hidden_size, bias=False)
        if getattr(cfg, "gemma4", False):
            from transformers.activations import ACT2FN

            self.act = ACT2FN[cfg.hidden_activation]
        else:
            self.act = F.silu

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm Qwen3 layer. With `in_dim` = 2H (Eagle3) the attention reads
    [input_layernorm(embedding) ; hidden_norm(h)] and the residual is h. Gemma4's also norms each
    block's output before its residual (post_attention / pre- and post_feedforward norms) and
    scales the layer's output by `layer_scalar`."""

    def __init__(self, cfg, eagle3: bool = False, index: int = 0):
        super().__init__()
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.eagle3, self.gemma = eagle3, bool(getattr(cfg, "gemma4", False))
        self.input_layernorm = RMSNorm(h, eps, self.gemma)
        if eagle3:
            self.hidden_norm = RMSNorm(h, eps, self.gemma)
        self.self_attn = Attention(cfg, 2 * h if eagle3 else h)
        self.post_attention_layernorm = RMSNorm(h, eps, self.gemma)
        wide = self.gemma and cfg.double_wide_from is not None and index >= cfg.double_wide_from > 0
        self.mlp = MLP(cfg, 2 * cfg.intermediate_size if wide else None)
        if self.gemma:
            self.pre_feedforward_layernorm = RMSNorm(h, eps, True)
            self.post_feedforward_layernorm = RMSNorm(h, eps, True)
            self.register_buffer("layer_scalar", torch.ones(1))

    def forward(
        self, x, positions, cache=None, bound=None, extra=None, extra_positions=None, embed=None, attn_mask=None
    ):
        if self.eagle3:
            a_in = torch.cat([self.input_layernorm(embed), self.hidden_norm(x)], -1)
        else:
            a_in = self.input_layernorm(x)
        attn = self.self_attn(a_in, positions, cache, bound, extra, extra_positions, attn_mask)
        if not self.gemma:
            x = x + attn
            return x + self.mlp(self.post_attention_layernorm(x))
        x = x + self.post_attention_layernorm(attn)
        x = x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        return x * self.layer_scalar


def kv_cache(
    drafter: nn.Module, requests: int, length: int, zeros: bool = True
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A drafter's preallocated per-layer (keys, values) for `requests` rows of `length` entries, on
    its device in its dtype: zeros, or random (a full cache, for timing)."""
    if not drafter.num_cache_layers:
        return []
    att = next(m for m in drafter.modules() if isinstance(m, Attention))
    w = att.q_proj.weight
    shape = (requests, att.nkv, length, att.hd)
    make = torch.zeros if zeros else torch.randn
    return [
        (make(shape, device=w.device, dtype=w.dtype), make(shape, device=w.device, dtype=w.dtype))
        for _ in range(drafter.num_cache_layers)
    ]


class _Vocab(nn.Module):
    """The drafter's embedding and head (frozen copies of the target's). Gemma4 scales embeddings
    by sqrt(H) and soft-caps logits: c tanh(logits / c)."""

    def _vocab(self, cfg) -> None:
        h = cfg.hidden_size
        self.embed_tokens = nn.Embedding(cfg.vocab_size, h)
        self.lm_head = nn.Linear(h, cfg.vocab_size, bias=False)
        gemma = getattr(cfg, "gemma4", False)
        self.embed_scale = float(h) ** 0.5 if gemma else None
        self.softcap = float(cfg.final_logit_softcapping) if gemma and cfg.final_logit_softcapping else None

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(ids)
        return x if self.embed_scale is None else x * torch.tensor(self.embed_scale, dtype=x.dtype)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(h)
        return logits if self.softcap is None else torch.tanh(logits / self.softcap) * self.softcap


class ChainModel(_Vocab):
    """Drafters that predict one token per forward from (token, hidden) pairs: MTP-1 and Eagle3.

    Alignment (DeepSpec's Eagle3): the target feature at position i is paired with token i + 1 at
    position i, and the output there predicts token i + 2. `extend` writes such pairs (the prompt
    at prefill; after verification the anchor and accepted drafts, paired with the committed
    tokens) and returns the last hidden state, whose logits are the next round's first draft;
    `step` feeds (hidden, drafted token) one position further.
    """

    num_cache_layers = 1

    def logits(self, h):
        return self.head(self.norm(h))

    def extend(self, features, tokens, start, caches, lengths=None):
        """features (R, S, F) and tokens (R, S) at positions start..start+S-1 (`start` an int or
        (R,) per row) -> each row's last hidden state (R, H). Rows with fewer pairs (`lengths`
        (R,)) are right-padded; the padding lands past the row's last position, where the next
        writes overwrite it."""
        r, s = tokens.shape
        pos = rows_of(start, r, tokens.device)[:, None] + torch.arange(s, device=tokens.device)
        out = self._layer(self._hidden_in(features), tokens, pos, caches)
        last = lengths - 1 if lengths is not None else torch.full((r,), s - 1, device=tokens.device)
        return out[torch.arange(r, device=tokens.device), last]

    def step(self, h, token, pos, caches):
        """One chain step: hidden (R, H) and the token drafted from it (R,) at positions `pos` (R,)."""
        return self._layer(h[:, None], token[:, None], pos[:, None], caches)[:, 0]

    def propose_chain(self, h_last, start, gamma: int, caches, temperature: float = 1.0):
        """gamma drafts from the last hidden state, step k at position start + k - 1 (`start` an
        int or (R,)): (tokens (R, gamma), logits (R, gamma, V))."""
        start = rows_of(start, h_last.shape[0], h_last.device)
        toks, outs, h = [], [], h_last
        for k in range(gamma):
            if k:
                h = self.step(h, toks[-1], start + k - 1, caches)
            logits = self.logits(h)
            toks.append(_sample(logits, temperature))
            outs.append(logits)
        return torch.stack(toks, 1), torch.stack(outs, 1)

    def propose(self, tokens, features, start, gamma: int, caches, temperature: float = 1.0):
        """One round as the profiler times it: extend with the last verified position, then the chain."""
        h = self.extend(features[:, None] if features.dim() == 2 else features, tokens[:, None], start, caches)
        return self.propose_chain(h, rows_of(start, tokens.shape[0], tokens.device) + 1, gamma, caches, temperature)


class MTPModel(ChainModel):
    """One multi-token-prediction module predicting one extra token (DeepSeek-V3 style): the
    layer input is eh_proj([enorm(embed(token)) ; hnorm(target hidden)])."""

    def __init__(self, cfg):
        super().__init__()
        h = cfg.hidden_size
        self.enorm, self.hnorm = RMSNorm(h, cfg.rms_norm_eps), RMSNorm(h, cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * h, h, bias=False)
        self.layer = DecoderLayer(cfg)
        self.norm = RMSNorm(h, cfg.rms_norm_eps)
        self._vocab(cfg)

    def _hidden_in(self, features):
        return features  # the target's last hidden state, width H

    def _layer(self, h, tokens, pos, caches):
        x = self.eh_proj(torch.cat([self.enorm(self.embed(tokens)), self.hnorm(h)], -1))
        return self.layer(x, pos, caches[0])


class Eagle3Model(ChainModel):
    """Eagle3 chain drafter (DeepSpec `Qwen3Eagle3Model`, or `Gemma4Eagle3Model` from a
    gemma4_config): one layer whose attention reads [input_layernorm(embed(token)) ; hidden_norm(h)];
    target features enter through fc (5H -> H)."""

    def __init__(self, cfg, n_features: int = 5):
        super().__init__()
        h = cfg.hidden_size
        self._vocab(cfg)
        self.fc = nn.Linear(n_features * h, h, bias=False)
        self.layers = nn.ModuleList([DecoderLayer(cfg, eagle3=True)])
        self.norm = RMSNorm(h, cfg.rms_norm_eps, getattr(cfg, "gemma4", False))

    def _hidden_in(self, features):
        return self.fc(features)  # fc only for target features; drafted hidden states are already H wide

    def _layer(self, h, tokens, pos, caches):
        return self.layers[0](h, pos, caches[0], embed=self.embed(tokens))


class MarkovHead(nn.Module):
    """DSpark's first-order correction of block position k from the token before it, applied left
    to right (DeepSpec's `markov_head_type`): logits_k += W2(b_k) with, for e = W1[x_{k-1}] and h_k
    the normed block hidden state,
      vanilla  b_k = e
      gated    b_k = sigmoid(gate_proj([h_k ; e])) * e
      rnn      [g ; c ; o] = joint_proj([s_{k-1} ; e ; h_k]), s_k = g s_{k-1} + (1 - g) tanh(c),
               b_k = tanh(o), with g = sigmoid(.) and s_0 = 0 (a state carried across the block)."""

    KINDS = ("vanilla", "gated", "rnn")

    def __init__(self, vocab: int, rank: int, kind: str = "vanilla", hidden: int = 0):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"unknown Markov head type {kind!r} (known: {', '.join(self.KINDS)})")
        self.kind, self.rank = kind, rank
        self.markov_w1 = nn.Embedding(vocab, rank)
        self.markov_w2 = nn.Linear(rank, vocab, bias=False)
        if kind == "gated":
            self.gate_proj = nn.Linear(hidden + rank, rank)
        elif kind == "rnn":
            self.joint_proj = nn.Linear(2 * rank + hidden, 3 * rank)

    def step(self, prev: torch.Tensor, h: torch.Tensor, state: torch.Tensor | None):
        """Position k's logit bias from the previous tokens (...,) and hidden states (..., H):
        (bias (..., V), W1[prev] (..., r), the RNN state or None)."""
        e = self.markov_w1(prev)
        if self.kind == "vanilla":
            return self.markov_w2(e), e, None
        if self.kind == "gated":
            return self.markov_w2(torch.sigmoid(self.gate_proj(torch.cat([h, e], -1))) * e), e, None
        s = torch.zeros_like(e) if state is None else state
        g, c, o = self.joint_proj(torch.cat([s, e, h], -1)).chunk(3, -1)
        g = torch.sigmoid(g)
        return self.markov_w2(torch.tanh(o)), e, g * s + (1 - g) * torch.tanh(c)


class ConfidenceHead(nn.Module):
    """sigmoid(w . [h_k ; W1[x_{k-1}]] + b), or of h_k alone without the Markov feature."""

    def __init__(self, dim: int, with_markov: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim, 1)
        self.with_markov = with_markov

    def forward(self, h: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        return self.proj(torch.cat([h, e], -1) if self.with_markov else h)[..., 0]


class BlockModel(_Vocab):
    """DFlash (markov_rank 0) and DSpark (markov_rank > 0, confidence head): DeepSpec's
    `Qwen3DSparkModel`. One bidirectional forward over the block, context injected as keys/values."""

    def __init__(
        self,
        cfg,
        draft_layers: int = 5,
        n_features: int = 5,
        markov_rank: int = 0,
        confidence: bool = False,
        mask_token_id: int = 0,
        markov_kind: str = "vanilla",
        confidence_with_markov: bool | None = None,
    ):
        super().__init__()
        h, gemma = cfg.hidden_size, getattr(cfg, "gemma4", False)
        self._vocab(cfg)
        self.fc = nn.Linear(n_features * h, h, bias=False)
        self.hidden_norm = RMSNorm(h, cfg.rms_norm_eps, gemma)
        self.layers = nn.ModuleList([DecoderLayer(cfg, index=i) for i in range(draft_layers)])
        self.norm = RMSNorm(h, cfg.rms_norm_eps, gemma)
        self.markov_head = MarkovHead(cfg.vocab_size, markov_rank, markov_kind, h) if markov_rank else None
        with_markov = bool(markov_rank) if confidence_with_markov is None else confidence_with_markov
        if with_markov and not markov_rank:
            raise ValueError("a confidence head with the Markov feature needs a Markov head (markov_rank > 0)")
        self.confidence_head = ConfidenceHead(h + markov_rank * with_markov, with_markov) if confidence else None
        self.mask_token_id = mask_token_id
        self.num_cache_layers = draft_layers

    def propose(self, tokens, features, start, gamma: int, caches, temperature: float = 1.0, lengths=None):
        """tokens (R,) anchors at positions `start` (an int or (R,)); features (R, S, 5H) target
        features of the newly verified tokens just before the anchor, right-padded where a row has
        fewer (`lengths` (R,)) -> (draft tokens (R, gamma), logits (R, gamma, V), confidence (R, gamma) or None)."""
        r, s = features.shape[0], features.shape[1]
        dev = tokens.device
        start = rows_of(start, r, dev)
        n_new = lengths if lengths is not None else torch.full((r,), s, device=dev)
        ctx = self.hidden_norm(self.fc(features))
        block = torch.full((r, gamma), self.mask_token_id, dtype=torch.long, device=dev)
        block[:, 0] = tokens
        x = self.embed(block)
        pos = start[:, None] + torch.arange(gamma, device=dev)
        # a row's padding sits at positions >= its anchor, where the block (written after) overwrites it
        ctx_pos = (start - n_new)[:, None] + torch.arange(s, device=dev)
        bound = (start + gamma - 1)[:, None].expand(r, gamma)  # the block sees all context and itself
        for layer, cache in zip(self.layers, caches):
            x = layer(x, pos, cache, bound, extra=ctx, extra_positions=ctx_pos)
        hidden = self.norm(x)
        logits = self.head(hidden)
        mh, ch = self.markov_head, self.confidence_head
        if mh is None:  # DFlash: every position drawn independently (a confidence head reads h_k alone)
            return _sample(logits, temperature), logits, (torch.sigmoid(ch(hidden, None)) if ch else None)
        prev, state, toks, outs, confs = tokens, None, [], [], []
        for k in range(gamma):  # sequential: position k's correction depends on the token drawn at k - 1
            bias, e, state = mh.step(prev, hidden[:, k], state)
            lk = logits[:, k] + bias
            if ch is not None:
                confs.append(torch.sigmoid(ch(hidden[:, k], e)))
            prev = _sample(lk, temperature)
            toks.append(prev)
            outs.append(lk)
        return torch.stack(toks, 1), torch.stack(outs, 1), (torch.stack(confs, 1) if confs else None)


def block_train_forward(
    drafter: BlockModel, tokens: torch.Tensor, features: torch.Tensor, anchors: torch.Tensor, gamma: int
):
    """Teacher-forced training pass of a block drafter over many anchors of one sequence.

    tokens (L,) the sequence, features (L, F) the target's features at its positions, anchors (A,)
    anchor positions t (each block predicts tokens t+1..t+gamma from the context of positions < t).
    Returns base logits (A, gamma, V), the normed block hidden states (A, gamma, H), and for DSpark
    the Markov-corrected logits and confidence logits given the true previous tokens (else None).
    """
    a, length = len(anchors), len(tokens)
    ctx = drafter.hidden_norm(drafter.fc(features))[None]  # one row: every anchor reads the same context
    block = torch.full((a, gamma), drafter.mask_token_id, dtype=torch.long, device=tokens.device)
    block[:, 0] = tokens[anchors]
    x = drafter.embed(block)
    pos = anchors[:, None] + torch.arange(gamma, device=tokens.device)[None, :]
    keys_ok = torch.cat(
        [
            torch.arange(length, device=tokens.device)[None, :] < anchors[:, None],
            torch.ones(a, gamma, dtype=torch.bool, device=tokens.device),
        ],
        1,
    )[:, None, None, :]
    for layer in drafter.layers:
        x = layer(x, pos, extra=ctx, extra_positions=torch.arange(length, device=tokens.device), attn_mask=keys_ok)
    hidden = drafter.norm(x)
    logits = drafter.head(hidden)
    mh, ch = drafter.markov_head, drafter.confidence_head
    if mh is None:
        return logits, hidden, None, (ch(hidden, None) if ch else None)
    # slot k's previous token: the anchor for slot 0, then the true tokens t+1..t+gamma-1
    prev = torch.cat(
        [
            tokens[anchors][:, None],
            tokens[(anchors[:, None] + torch.arange(1, gamma, device=tokens.device)).clamp(max=length - 1)],
        ],
        1,
    )
    state, biases, embeds = None, [], []
    for k in range(gamma):  # teacher-forced: position k's previous token is the true one
        bias, e, state = mh.step(prev[:, k], hidden[:, k], state)
        biases.append(bias)
        embeds.append(e)
    e = torch.stack(embeds, 1)
    return logits, hidden, logits + torch.stack(biases, 1), (ch(hidden, e) if ch else None)


def rows_of(start, rows: int, device) -> torch.Tensor:
    """Per-row positions (R,) from an int shared by all rows or a tensor."""
    if isinstance(start, torch.Tensor):
        return start.to(device).reshape(-1).expand(rows) if start.numel() == 1 else start.to(device)
    return torch.full((rows,), int(start), dtype=torch.long, device=device)


def _sample(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Tokens from logits (..., V): argmax at temperature ~0, else a multinomial draw."""
    if temperature < 1e-5:
        return logits.argmax(-1)
    p = torch.softmax(logits.float() / temperature, -1)
    return torch.multinomial(p.reshape(-1, p.shape[-1]), 1).reshape(p.shape[:-1])


def build_draft_model(method: str, cfg, draft_layers: int = 5, markov_rank: int = 256):
    """A random-weight drafter of `method` for target config `cfg`."""
    if method == "mtp-1":
        return MTPModel(cfg)
    if method == "eagle3":
        return Eagle3Model(cfg)
    if method == "dflash":
        return BlockModel(cfg, draft_layers)
    if method == "dspark":
        return BlockModel(cfg, draft_layers, markov_rank=markov_rank, confidence=True)
    raise ValueError(f"no drafter for method {method!r}")


def draft_round_fn(drafter: nn.Module, method: str, cfg, requests: int, gamma: int, context: int, device, dtype):
    """A zero-argument callable running one drafting round for `requests` requests whose drafter
    caches hold `context` entries (for the profiler). MTP-1 always drafts one token."""
    r = requests
    caches = kv_cache(drafter, r, context + gamma + 8, zeros=False)
    h = cfg.hidden_size
    tokens = torch.randint(0, cfg.vocab_size, (r,), device=device)
    if method == "mtp-1":
        hidden = torch.randn(r, h, device=device, dtype=dtype)
        return lambda: drafter.propose(tokens, hidden, context, 1, caches)
    if method == "eagle3":
        feats = torch.randn(r, 5 * h, device=device, dtype=dtype)
        return lambda: drafter.propose(tokens, feats, context, gamma, caches)
    # block drafters take the features of the tokens verified last round (about tau of them)
    feats = torch.randn(r, 4, 5 * h, device=device, dtype=dtype)
    return lambda: drafter.propose(tokens, feats, context, gamma, caches)
