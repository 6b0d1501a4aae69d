"""Roofline model of verification and drafting time, for hardware that is not at hand.

One pass over `tokens` tokens of R requests at context `ctx` costs

    max(bytes / (mem_bw * bw_eff), flops / (peak_flops * flops_eff)) + fixed overhead

bytes = weights touched + R * ctx * KV bytes per token (every request's cache is read once per
pass, however many tokens it verifies); flops = 2 * active matmul params * tokens padded up to
the token tile (GEMM tiles make the compute-bound curve step-wise) + attention over the context.
Every constant lives in the inputs (Hardware from profiles/gpus.json, ModelShape from a
Hugging Face config, RooflineKnobs) so a profile file can state all of them.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Hardware:
    """One accelerator: dense bf16 peak (FLOP/s), memory bandwidth (bytes/s), memory (bytes)."""

    name: str
    peak_flops: float
    mem_bw: float
    mem_bytes: float


@dataclass(frozen=True)
class ModelShape:
    """Decoder-only transformer shape (Qwen3 / Llama family, optionally mixture-of-experts)."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    experts: int = 0  # routed experts per layer; 0 = dense MLP
    experts_per_token: int = 0
    expert_intermediate: int = 0
    tied_embeddings: bool = False  # LM head shares the input embedding (stored once)

    @property
    def attn_params(self) -> int:
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return h * q + 2 * h * kv + q * h

    @property
    def expert_params(self) -> int:
        return 3 * self.hidden * self.expert_intermediate

    @property
    def dense_mlp_params(self) -> int:
        return 3 * self.hidden * self.intermediate

    @property
    def head_params(self) -> int:
        return self.vocab * self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int = 2, layers: int | None = None) -> int:
        """KV-cache bytes one token occupies (K and V, all layers by default)."""
        return 2 * (self.layers if layers is None else layers) * self.kv_heads * self.head_dim * dtype_bytes

    def mlp_params_touched(self, tokens) -> np.ndarray:
        """MLP parameters read from memory per layer for a pass over `tokens` tokens."""
        tokens = np.asarray(tokens, dtype=float)
        if not self.experts:
            return np.full_like(tokens, self.dense_mlp_params)
        e, k = self.experts, self.experts_per_token
        touched = e * (1.0 - (1.0 - k / e) ** tokens)  # expected distinct experts hit
        return touched * self.expert_params + self.hidden * e

    @property
    def mlp_params_active(self) -> int:
        """MLP parameters each token multiplies with (per layer)."""
        if not self.experts:
            return self.dense_mlp_params
        return self.experts_per_token * self.expert_params + self.hidden * self.experts

    @property
    def total_params(self) -> int:
        mlp = self.experts * self.expert_params + self.hidden * self.experts if self.experts else self.dense_mlp_params
        return self.layers * (self.attn_params + mlp) + (1 if self.tied_embeddings else 2) * self.head_params


@dataclass(frozen=True)
class RooflineKnobs:
    """Efficiency factors and fixed costs that turn peak numbers into achievable ones."""

    bw_efficiency: float = 0.80  # fraction of peak bandwidth a decode GEMV achieves
    flops_efficiency: float = 0.60  # fraction of dense peak a serving GEMM achieves
    step_overhead_s: float = 1.0e-3  # per target pass: launch, sampling, scheduler, host sync
    per_request_overhead_s: float = 4.0e-6  # per request per pass: metadata, sampling
    draft_forward_overhead_s: float = 1.5e-4  # per drafter forward (sequential steps pay it each)
    markov_step_overhead_s: float = 2.0e-5  # per Markov-head step (a tiny fused kernel)
    token_tile: int = 64  # GEMM tile along tokens: compute is charged for ceil(B / tile) * tile
    dtype_bytes: int = 2  # bf16 weights and KV cache
    memory_reserve: float = 0.10  # fraction of memory kept for activations, graphs, fragmentation
    markov_rank: int = 256  # DSpark Markov head rank r
    draft_layers: int = 5  # DFlash / DSpark block-drafter depth (DeepSpec's released block7 drafters)
    context_features: int = 5  # target layers concatenated as drafter features

    def as_dict(self) -> dict:
        return asdict(self)


def _pass_s(hw: Hardware, kn: RooflineKnobs, weight_bytes, kv_bytes, flops, overhead_s) -> np.ndarray:
    t_mem = (np.asarray(weight_bytes, float) + kv_bytes) / (hw.mem_bw * kn.bw_efficiency)
    t_cmp = np.asarray(flops, float) / (hw.peak_flops * kn.flops_efficiency)
    return np.maximum(t_mem, t_cmp) + overhead_s


def _padded(tokens, tile: int) -> np.ndarray:
    return np.ceil(np.asarray(tokens, float) / tile) * tile


def verify_step_s(
    hw: Hardware, m: ModelShape, kn: RooflineKnobs, batch_tokens, requests, context_len: int
) -> np.ndarray:
    """Seconds for one target pass over `batch_tokens` tokens of `requests` requests at `context_len`."""
    b = np.asarray(batch_tokens, float)
    r = np.asarray(requests, float)
    weights = (m.layers * (m.attn_params + m.mlp_params_touched(b)) + m.head_params) * kn.dtype_bytes
    kv = r * context_len * m.kv_bytes_per_token(kn.dtype_bytes)
    matmul = m.layers * (m.attn_params + m.mlp_params_active) + m.head_params
    attn = 4.0 * m.layers * m.heads * m.head_dim * context_len  # QK^T and PV per query token
    flops = 2.0 * matmul * _padded(b, kn.token_tile) + attn * b
    return _pass_s(hw, kn, weights, kv, flops, kn.step_overhead_s + r * kn.per_request_overhead_s)


def _layer_pass_s(
    hw,
    m: ModelShape,
    kn: RooflineKnobs,
    tokens,
    requests,
    context_len,
    layers,
    attn_in=1,
    extra_params=0,
    heads_out=True,
):
    """One drafter forward: `layers` Qwen3-style layers (+ extra projections, + the LM head)."""
    attn_params = m.attn_params + (attn_in - 1) * m.hidden * (m.heads + 2 * m.kv_heads) * m.head_dim
    params = layers * (attn_params + m.dense_mlp_params) + extra_params + (m.head_params if heads_out else 0)
    kv = requests * context_len * m.kv_bytes_per_token(kn.dtype_bytes, layers=layers)
    attn = 4.0 * layers * m.heads * m.head_dim * context_len
    flops = 2.0 * params * _padded(tokens, kn.token_tile) + attn * np.asarray(tokens, float)
    return _pass_s(hw, kn, params * kn.dtype_bytes, kv, flops, kn.draft_forward_overhead_s)


def draft_step_s(
    hw: Hardware, m: ModelShape, kn: RooflineKnobs, drafting: str, requests, gamma: int, context_len: int
) -> np.ndarray:
    """Drafter seconds per round, built the way DeepSpec builds each drafter from the target config.

    mtp: one target-like layer + 2H->H projection + shared LM head over R tokens, once.
    autoregressive (Eagle3): one layer whose attention reads [embedding; feature] (2H), full-vocab
      head, gamma sequential forwards over R tokens, plus the 5H->H feature projection.
    parallel (DFlash): `draft_layers` bidirectional layers + 5H->H projection over R*gamma block
      tokens in one forward. parallel+markov (DSpark): the same plus gamma sequential Markov steps,
      each reading the rank-r W2 (r x V) for all R requests.
    """
    r = np.asarray(requests, float)
    h, ctx_feat = m.hidden, kn.context_features * m.hidden * m.hidden
    if drafting == "none" or gamma == 0:
        return np.zeros_like(r)
    if drafting == "mtp":
        return _layer_pass_s(hw, m, kn, r, r, context_len, 1, extra_params=2 * h * h)
    if drafting == "autoregressive":
        step = _layer_pass_s(hw, m, kn, r, r, context_len, 1, attn_in=2)
        feat = 2.0 * ctx_feat * r / (hw.peak_flops * kn.flops_efficiency) + ctx_feat * kn.dtype_bytes / (
            hw.mem_bw * kn.bw_efficiency
        )
        return gamma * step + feat
    if drafting in ("parallel", "parallel+markov"):
        t = _layer_pass_s(hw, m, kn, r * gamma, r, context_len, kn.draft_layers, extra_params=ctx_feat)
        if drafting == "parallel+markov":
            w2 = kn.markov_rank * m.vocab
            step = _pass_s(hw, kn, w2 * kn.dtype_bytes, 0.0, 2.0 * w2 * r, kn.markov_step_overhead_s)
            t = t + gamma * step
        return t
    raise ValueError(f"unknown drafting kind {drafting!r}")


def max_requests(hw: Hardware, m: ModelShape, kn: RooflineKnobs, context_len: int) -> int:
    """Concurrent requests whose KV cache at `context_len` fits beside the weights (0 if none)."""
    free = hw.mem_bytes * (1.0 - kn.memory_reserve) - m.total_params * kn.dtype_bytes
    return max(0, int(free // (context_len * m.kv_bytes_per_token(kn.dtype_bytes))))


class RooflineSurface:
    """Exact roofline step time at any (B, R): the same interface as sps.StepTimeSurface.

    Interpolating a tabulated roofline between request levels would blend two curves with
    different compute knees into false micro-steps, which Algorithm 1's early stop then trips
    on; evaluating the formula avoids that.
    """

    def __init__(self, hw: Hardware, model: ModelShape, knobs: RooflineKnobs, context_len: int, max_gamma: int = 64):
        self.hw, self.model, self.knobs, self.context_len, self.max_gamma = hw, model, knobs, context_len, max_gamma

    def step_time(self, batch_tokens, requests: int) -> np.ndarray:
        return verify_step_s(self.hw, self.model, self.knobs, batch_tokens, requests, self.context_len)

    def slice(self, requests: int):
        return self._slice(int(requests))

    @functools.lru_cache(maxsize=512)  # noqa: B019 (surfaces live as long as the process)
    def _slice(self, requests: int):
        from .sps import SpsCurve

        b = np.arange(1, requests * (1 + self.max_gamma) + 1)
        return SpsCurve(b, self.step_time(b, requests))
