"""Roofline model of verification and drafting time, for hardware that is not at hand.

One pass over B tokens of R requests at context `ctx` costs, on the busiest GPU of the instance,

    max(bytes / (mem_bw * bw_eff), flops / (peak * flops_eff)) + communication + fixed overhead

bytes = the weights this GPU touches + its requests' KV cache (every request's cache is read once
per pass, however many tokens it verifies); flops = 2 * active matmul params * tokens (padded up
to the GEMM token tile) + attention over the context; communication = per-layer TP all-reduces
and EP dispatch/combine all-to-alls, each `latency + bytes / link_bw` (not overlapped with
compute: an upper bound). Every constant lives in the inputs -- Hardware (profiles/gpus.json),
ModelShape (a Hugging Face config), Deployment (GPUs, parallelism, dtypes) and RooflineKnobs --
so a profile file can state all of them and a reader can recompute any point by hand.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

# Bytes per weight element, block scales included: nvfp4 keeps one fp8 scale per 16 values,
# int4 (GPTQ/AWQ) one bf16 scale per 128.
# fp32 is for CPUs (validating the roofline against a measured CPU profile): GPUs state no fp32 peak.
WEIGHT_DTYPES = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5625, "int4": 0.515625, "fp32": 4.0}
KV_DTYPES = {"bf16": 2.0, "fp8": 1.0, "fp32": 4.0}
ACTIVATION_BYTES = 2.0  # bf16 activations on the wire (TP all-reduce, EP combine)
DISPATCH_BYTES = 1.0  # EP dispatch sends fp8 activations (DeepEP's low-latency kernels)


@dataclass(frozen=True)
class Hardware:
    """One accelerator: dense peaks (FLOP/s; 0 = no such tensor-core format), memory bandwidth
    (bytes/s), memory (bytes), and its link to peers (bytes/s each way, seconds per collective)."""

    name: str
    peak_flops: float  # dense bf16
    mem_bw: float
    mem_bytes: float
    peak_fp8_flops: float = 0.0
    peak_fp4_flops: float = 0.0
    link_bw: float = 0.0
    link_latency_s: float = 0.0
    peak_fp32_flops: float = 0.0

    def matmul_peak(self, weight_dtype: str) -> float:
        """FLOP/s of the GEMMs for weights in `weight_dtype`: fp8 and fp4 run on their own tensor
        cores where the GPU has them; int4, and fp8/fp4 on GPUs without, dequantise to bf16
        (weight-only kernels: the bytes shrink, the compute does not). fp32 needs its own peak."""
        if weight_dtype == "fp32":
            if not self.peak_fp32_flops > 0:
                raise ValueError(f"{self.name} states no fp32 peak")
            return self.peak_fp32_flops
        own = {"fp8": self.peak_fp8_flops, "fp4": self.peak_fp4_flops}.get(weight_dtype, 0.0)
        return own or self.peak_flops


@dataclass(frozen=True)
class ModelShape:
    """Decoder-only transformer shape: Qwen3 / Llama / DeepSeek families, dense or mixture-of-experts,
    GQA or MLA attention, optionally with sliding-window layers."""

    name: str
    layers: int
    hidden: int
    intermediate: int  # dense MLP width (dense models, and an MoE model's dense layers)
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    experts: int = 0  # routed experts per MoE layer; 0 = dense MLP everywhere
    experts_per_token: int = 0
    expert_intermediate: int = 0
    tied_embeddings: bool = False  # LM head shares the input embedding (stored once)
    shared_intermediate: int = 0  # width of the always-on shared expert(s) of an MoE layer
    dense_layers: int = 0  # leading layers of an MoE model with a dense MLP (DeepSeek's first_k_dense_replace)
    kv_lora_rank: int = 0  # MLA: compressed KV width; 0 = GQA attention
    q_lora_rank: int = 0  # MLA: compressed query width (0: full-rank query projection)
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int = 0  # tokens a sliding-window layer attends to (0: none)
    sliding_layers: int = 0  # how many layers use the window

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def attn_input_params(self) -> int:
        """Attention parameters that multiply the layer's hidden input (Eagle3 doubles that input)."""
        h = self.hidden
        if self.mla:
            q_in = self.q_lora_rank or self.heads * (self.qk_nope_head_dim + self.qk_rope_head_dim)
            return h * q_in + h * (self.kv_lora_rank + self.qk_rope_head_dim)
        return h * (self.heads + 2 * self.kv_heads) * self.head_dim

    @property
    def attn_params(self) -> int:
        h = self.hidden
        if self.mla:
            q_up = self.q_lora_rank * self.heads * (self.qk_nope_head_dim + self.qk_rope_head_dim)
            kv_up = self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim)
            return self.attn_input_params + q_up + kv_up + self.heads * self.v_head_dim * h
        return self.attn_input_params + self.heads * self.head_dim * h

    @property
    def expert_params(self) -> int:
        return 3 * self.hidden * self.expert_intermediate

    @property
    def dense_mlp_params(self) -> int:
        return 3 * self.hidden * self.intermediate

    @property
    def head_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.experts else 0

    @property
    def moe_fixed_params(self) -> int:
        """Parameters of an MoE layer every token uses: shared experts and the router."""
        return 3 * self.hidden * self.shared_intermediate + self.hidden * self.experts

    def kv_bytes_per_token(self, dtype_bytes: float = 2, layers: int | None = None) -> float:
        """KV-cache bytes one token occupies (all layers by default): K and V per KV head, or MLA's
        one compressed latent plus its RoPE key."""
        n = self.layers if layers is None else layers
        if self.mla:
            return n * (self.kv_lora_rank + self.qk_rope_head_dim) * dtype_bytes
        return 2 * n * self.kv_heads * self.head_dim * dtype_bytes

    def attended(self, context_len, layers: int | None = None) -> np.ndarray:
        """Cached tokens attended to, summed over layers, by one query at `context_len`
        (sliding-window layers stop at their window)."""
        n = self.layers if layers is None else layers
        c = np.asarray(context_len, dtype=float)
        sliding = min(self.sliding_layers, n) if self.sliding_window else 0
        return (n - sliding) * c + sliding * np.minimum(c, self.sliding_window)

    @property
    def attn_flops_per_attended(self) -> float:
        """FLOPs of QK^T and PV per query token per attended cached token. MLA runs absorbed:
        queries meet the compressed latent directly."""
        if self.mla:
            return 2.0 * self.heads * (2 * self.kv_lora_rank + self.qk_rope_head_dim)
        return 4.0 * self.heads * self.head_dim

    def mlp_params_touched(self, tokens) -> np.ndarray:
        """MLP parameters read from memory per MoE layer (dense MLP for dense models) for a pass
        over `tokens` tokens on one GPU holding every expert."""
        tokens = np.asarray(tokens, dtype=float)
        if not self.experts:
            return np.full_like(tokens, self.dense_mlp_params)
        return self.distinct_experts(tokens) * self.expert_params + self.moe_fixed_params

    def distinct_experts(self, tokens, experts: float | None = None) -> np.ndarray:
        """Expected distinct experts (of `experts` on this GPU, default all) hit by `tokens`
        tokens routed uniformly, each to experts_per_token experts."""
        e, k = self.experts, self.experts_per_token
        local = e if experts is None else experts
        return local * (1.0 - (1.0 - k / e) ** np.asarray(tokens, dtype=float))

    @property
    def mlp_params_active(self) -> int:
        """MLP parameters each token multiplies with (per MoE layer; per layer for dense models)."""
        if not self.experts:
            return self.dense_mlp_params
        return self.experts_per_token * self.expert_params + self.moe_fixed_params

    @property
    def active_params(self) -> int:
        dense = self.dense_layers * self.dense_mlp_params if self.experts else self.layers * self.dense_mlp_params
        return self.layers * self.attn_params + dense + self.moe_layers * self.mlp_params_active + self.head_params

    @property
    def total_params(self) -> int:
        if self.experts:
            mlp = self.dense_layers * self.dense_mlp_params + self.moe_layers * (
                self.experts * self.expert_params + self.moe_fixed_params
            )
        else:
            mlp = self.layers * self.dense_mlp_params
        return self.layers * self.attn_params + mlp + (1 if self.tied_embeddings else 2) * self.head_params


@dataclass(frozen=True)
class Deployment:
    """One serving instance: tp x dp GPUs, experts split over ep of them, weight and KV dtypes.

    Attention, dense MLPs, shared experts and the LM head are split `tp` ways and replicated
    over `dp` data-parallel ranks, each serving 1/dp of the requests (DP attention). Routed
    experts are partitioned over `ep` GPUs (replicated gpus/ep times); with ep = 1 each expert
    is split `tp` ways instead. `expert_imbalance`: tokens on the busiest EP rank over the mean
    (1 = perfectly balanced routing).
    """

    tp: int = 1
    ep: int = 1
    dp: int = 1
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    expert_imbalance: float = 1.0

    @property
    def gpus(self) -> int:
        return self.tp * self.dp

    def problems(self, model: ModelShape, hw: Hardware) -> list[str]:
        """Why this deployment cannot serve `model` on `hw` (empty when it can)."""
        out = []
        if min(self.tp, self.ep, self.dp) < 1:
            out.append("tp, ep and dp must be >= 1")
            return out
        if self.weight_dtype not in WEIGHT_DTYPES:
            out.append(f"weight dtype must be one of {', '.join(WEIGHT_DTYPES)}, not {self.weight_dtype!r}")
        if self.kv_dtype not in KV_DTYPES:
            out.append(f"KV dtype must be one of {', '.join(KV_DTYPES)}, not {self.kv_dtype!r}")
        if not (math.isfinite(self.expert_imbalance) and self.expert_imbalance >= 1):
            out.append(f"expert imbalance must be >= 1 (busiest rank / mean), got {self.expert_imbalance}")
        if self.ep > 1 and not model.experts:
            out.append(f"--ep {self.ep} needs a mixture-of-experts model; {model.name} is dense")
        if self.ep > 1 and self.gpus % self.ep:
            out.append(f"--ep {self.ep} must divide the instance's {self.gpus} GPUs (tp x dp)")
        if self.ep > model.experts > 0:
            out.append(f"--ep {self.ep} exceeds the model's {model.experts} experts")
        if model.heads % self.tp:
            out.append(f"--tp {self.tp} must divide the model's {model.heads} attention heads")
        if self.gpus > 1 and not hw.link_bw > 0:
            out.append(f"{hw.name} has no interconnect figure in the GPU table: cannot model {self.gpus} GPUs")
        return out

    def kv_bytes_per_token(self, model: ModelShape, layers: int | None = None) -> float:
        """KV bytes one token occupies on one GPU: KV heads split tp ways (replicated when there
        are fewer heads than ranks); MLA's latent has no heads and is replicated."""
        full = model.kv_bytes_per_token(KV_DTYPES[self.kv_dtype], layers)
        if model.mla:
            return full
        return full * max(1, math.ceil(model.kv_heads / self.tp)) / model.kv_heads


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
    dtype_bytes: int = 2  # bytes per element of the drafter's weights and bf16 activations
    memory_reserve: float = 0.10  # fraction of memory kept for activations, graphs, fragmentation
    markov_rank: int = 256  # DSpark Markov head rank r
    draft_layers: int = 5  # DFlash / DSpark block-drafter depth (DeepSpec's released block7 drafters)
    context_features: int = 5  # target layers concatenated as drafter features

    def __post_init__(self):
        bad = [name for name, ok in self._checks() if not ok]
        if bad:
            raise ValueError("roofline knob(s) out of range: " + "; ".join(bad))

    def _checks(self):
        v = asdict(self)
        finite = {k: isinstance(x, (int, float)) and math.isfinite(x) for k, x in v.items()}
        for k in ("bw_efficiency", "flops_efficiency"):
            yield f"{k} = {v[k]} (must be in (0, 1])", finite[k] and 0 < v[k] <= 1
        for k in ("step_overhead_s", "per_request_overhead_s", "draft_forward_overhead_s", "markov_step_overhead_s"):
            yield f"{k} = {v[k]} (must be >= 0 s)", finite[k] and v[k] >= 0
        for k in ("token_tile", "dtype_bytes", "markov_rank", "draft_layers", "context_features"):
            yield f"{k} = {v[k]} (must be a whole number >= 1)", finite[k] and v[k] >= 1 and float(v[k]).is_integer()
        yield (
            f"memory_reserve = {v['memory_reserve']} (must be in [0, 1))",
            (finite["memory_reserve"] and 0 <= v["memory_reserve"] < 1),
        )

    def as_dict(self) -> dict:
        return asdict(self)


SINGLE_GPU = Deployment()


@dataclass(frozen=True)
class _Stack:
    """What one forward pass runs: `attn` attention layers, `dense` dense MLPs of width
    `mlp_width`, `moe` MoE MLPs, `extra` more dense params (projections), the LM head or not."""

    attn: int
    dense: int
    moe: int
    mlp_width: int
    extra: int = 0
    head: bool = True
    attn_in: int = 1  # hidden-input multiple of the attention projections (Eagle3: 2)


def _target_stack(m: ModelShape) -> _Stack:
    dense = m.dense_layers if m.experts else m.layers
    return _Stack(m.layers, dense, m.moe_layers, m.intermediate)


def _padded(tokens, tile: int) -> np.ndarray:
    return np.ceil(np.asarray(tokens, float) / tile) * tile


def _busiest_rank(requests, dep: Deployment) -> np.ndarray:
    """Requests on the busiest DP rank: ceil(R / dp) (a lone request is a whole request somewhere)."""
    return np.ceil(np.asarray(requests, float) / dep.dp)


def _collective_s(hw: Hardware, count, bytes_each) -> np.ndarray:
    """`count` collectives of `bytes_each` bytes leaving one GPU each: alpha + bytes / link_bw."""
    return count * (hw.link_latency_s + np.asarray(bytes_each, float) / hw.link_bw) if count else 0.0


def _pass_s(
    hw: Hardware,
    m: ModelShape,
    dep: Deployment,
    kn: RooflineKnobs,
    st: _Stack,
    tokens,
    requests,
    context_len,
    overhead_s,
    weight_bytes: float | None = None,
    prefill_tokens=0.0,
    prefill_context: float = 0.0,
) -> np.ndarray:
    """Seconds for one pass of stack `st` over `tokens` tokens of `requests` requests (instance
    totals) at `context_len`, on the busiest GPU of deployment `dep`; plus `prefill_tokens` prompt
    tokens (chunked prefill) attending to `prefill_context` tokens each, which need no logits."""
    wb = WEIGHT_DTYPES[dep.weight_dtype] if weight_bytes is None else weight_bytes
    r = _busiest_rank(requests, dep)
    share = r / np.maximum(np.asarray(requests, float), 1.0)  # the busiest rank's share of the tokens
    decode = np.asarray(tokens, float) * share
    prefill = np.asarray(prefill_tokens, float) * share
    tokens = np.asarray(tokens, float) + np.asarray(prefill_tokens, float)
    b = decode + prefill
    attn_p = m.attn_params + (st.attn_in - 1) * m.attn_input_params
    split = st.attn * attn_p + st.dense * 3 * m.hidden * st.mlp_width + st.moe * m.moe_fixed_params + st.extra
    head = m.head_params if st.head else 0
    head_bytes = wb if dep.weight_dtype == "fp32" else ACTIVATION_BYTES  # the LM head stays bf16 (fp32 on CPUs)
    # routed experts on the busiest GPU: distinct experts its share of the tokens hits, and those tokens
    if st.moe and dep.ep > 1:
        group = np.asarray(tokens, float) * dep.ep / dep.gpus
        touched = m.distinct_experts(group, m.experts / dep.ep) * m.expert_params
        routed_tokens = group * m.experts_per_token / dep.ep * dep.expert_imbalance
        expert_flops = 2.0 * routed_tokens * m.expert_params
    elif st.moe:
        touched = m.distinct_experts(b) * m.expert_params / dep.tp
        expert_flops = 2.0 * b * m.experts_per_token * m.expert_params / dep.tp
    else:
        touched, expert_flops = 0.0, 0.0
    kv = r * context_len * dep.kv_bytes_per_token(m, st.attn) if st.attn else 0.0
    weights = (split / dep.tp + st.moe * touched) * wb + head / dep.tp * head_bytes
    attended = decode * m.attended(context_len, st.attn) + prefill * m.attended(prefill_context, st.attn)
    attn_flops = attended * m.attn_flops_per_attended / dep.tp
    matmul = 2.0 * (_padded(b, kn.token_tile) * split + _padded(decode, kn.token_tile) * head) / dep.tp
    matmul = matmul + st.moe * expert_flops
    t_mem = (weights + kv) / (hw.mem_bw * kn.bw_efficiency)
    attn_peak = hw.peak_fp32_flops if dep.kv_dtype == "fp32" else hw.peak_flops
    t_cmp = matmul / (hw.matmul_peak(dep.weight_dtype) * kn.flops_efficiency) + attn_flops / (
        attn_peak * kn.flops_efficiency
    )
    t = np.maximum(t_mem, t_cmp) + overhead_s
    if dep.tp > 1:  # all-reduce after attention and after every MLP the TP group shares
        ring = 2.0 * (dep.tp - 1) / dep.tp * b * m.hidden * ACTIVATION_BYTES
        shared_mlps = st.dense + (st.moe if dep.ep == 1 else 0)
        t = t + _collective_s(hw, st.attn + shared_mlps, ring)
    if st.moe and dep.ep > 1:  # dispatch (fp8) and combine (bf16) all-to-all per MoE layer
        # the busiest rank also receives imbalance x its share of the routed tokens
        leaving = b * m.experts_per_token * m.hidden * (dep.ep - 1) / dep.ep * dep.expert_imbalance
        t = t + _collective_s(hw, st.moe, leaving * DISPATCH_BYTES)
        t = t + _collective_s(hw, st.moe, leaving * ACTIVATION_BYTES)
    return t


def verify_step_s(
    hw: Hardware,
    m: ModelShape,
    kn: RooflineKnobs,
    batch_tokens,
    requests,
    context_len,
    dep: Deployment = SINGLE_GPU,
    prefill_tokens=0.0,
    prefill_context: float = 0.0,
) -> np.ndarray:
    """Seconds for one target pass over `batch_tokens` tokens of `requests` requests at `context_len`
    (instance totals; the step ends when the busiest GPU does), with `prefill_tokens` prompt tokens
    of arriving requests chunked into the same pass."""
    overhead = kn.step_overhead_s + _busiest_rank(requests, dep) * kn.per_request_overhead_s
    st = _target_stack(m)
    return _pass_s(
        hw, m, dep, kn, st, batch_tokens, requests, context_len, overhead, None, prefill_tokens, prefill_context
    )


def _drafter_stacks(m: ModelShape, kn: RooflineKnobs) -> dict[str, _Stack]:
    """The drafter each method runs, built the way DeepSpec builds it from the target config.

    mtp: one target layer (an MoE layer for an MoE target, as DeepSeek's MTP module) + the 2H->H
      projection + the shared LM head. autoregressive (Eagle3): one dense layer whose attention
      reads [embedding; feature] (2H) with its own LM head. parallel (DFlash): `draft_layers`
      dense layers + the 5H->H feature projection, through the target's LM head.
    """
    h = m.hidden
    return {
        "mtp": _Stack(1, 0 if m.experts else 1, 1 if m.experts else 0, m.intermediate, extra=2 * h * h),
        "autoregressive": _Stack(1, 1, 0, m.intermediate, attn_in=2),
        "parallel": _Stack(kn.draft_layers, kn.draft_layers, 0, m.intermediate, extra=kn.context_features * h * h),
    }


def drafter_params(m: ModelShape, kn: RooflineKnobs, drafting: str) -> float:
    """Parameters a method's drafter adds to GPU memory (shared embedding and LM head not counted
    again; Eagle3's own head is). 0 for no-spec."""
    if drafting == "none":
        return 0.0
    st = _drafter_stacks(m, kn)["parallel" if drafting.startswith("parallel") else drafting]
    attn_p = m.attn_params + (st.attn_in - 1) * m.attn_input_params
    moe = st.moe * (m.experts * m.expert_params + m.moe_fixed_params)
    p = st.attn * attn_p + st.dense * 3 * m.hidden * st.mlp_width + moe + st.extra
    if drafting == "autoregressive":
        p += m.head_params
    if drafting == "parallel+markov":
        p += 2 * kn.markov_rank * m.vocab  # W1 (V x r) and W2 (r x V)
    return float(p)


def draft_layers(kn: RooflineKnobs, drafting: str) -> int:
    """Layers of a method's drafter that keep a KV cache."""
    return {"none": 0, "mtp": 1, "autoregressive": 1}.get(drafting, kn.draft_layers)


def draft_step_s(
    hw: Hardware,
    m: ModelShape,
    kn: RooflineKnobs,
    drafting: str,
    requests,
    gamma: int,
    context_len,
    dep: Deployment = SINGLE_GPU,
) -> np.ndarray:
    """Drafter seconds per round for `requests` requests drafting `gamma` tokens each.

    mtp: one drafter forward over R tokens. autoregressive (Eagle3): gamma sequential forwards over
    R tokens plus the 5H->H feature projection. parallel (DFlash): one forward over R*gamma block
    tokens. parallel+markov (DSpark): the same plus gamma sequential Markov steps, each reading the
    rank-r W2 (r x V) for the requests. Drafter weights are in the drafter's dtype (knob
    dtype_bytes), split and replicated like the target's dense part.
    """
    r = np.asarray(requests, float)
    if drafting == "none" or gamma == 0:
        return np.zeros_like(r)
    stacks, wb = _drafter_stacks(m, kn), float(kn.dtype_bytes)
    ctx_feat = kn.context_features * m.hidden * m.hidden
    overhead = kn.draft_forward_overhead_s

    def forward(kind, tokens):
        return _pass_s(hw, m, dep, kn, stacks[kind], tokens, r, context_len, overhead, weight_bytes=wb)

    if drafting == "mtp":
        return forward("mtp", r)
    if drafting == "autoregressive":
        r_rank = _busiest_rank(r, dep)
        feat = 2.0 * ctx_feat / dep.tp * r_rank / (hw.peak_flops * kn.flops_efficiency) + ctx_feat / dep.tp * wb / (
            hw.mem_bw * kn.bw_efficiency
        )
        return gamma * forward("autoregressive", r) + feat
    if drafting in ("parallel", "parallel+markov"):
        t = forward("parallel", r * gamma)
        if drafting == "parallel+markov":
            w2 = kn.markov_rank * m.vocab / dep.tp
            step = np.maximum(
                w2 * wb / (hw.mem_bw * kn.bw_efficiency),
                2.0 * w2 * _busiest_rank(r, dep) / (hw.peak_flops * kn.flops_efficiency),
            )
            t = t + gamma * (step + kn.markov_step_overhead_s)
        return t
    raise ValueError(f"unknown drafting kind {drafting!r}")


@dataclass(frozen=True)
class MemoryPlan:
    """Per-GPU memory of one deployment with one drafter, bytes; requests it fits (instance)."""

    usable: float
    target_weights: float
    drafter_weights: float
    kv_per_token: float  # target + drafter, one GPU
    context_len: float
    max_requests: int

    def as_dict(self) -> dict:
        return asdict(self)


def memory_plan(
    hw: Hardware,
    m: ModelShape,
    kn: RooflineKnobs,
    context_len: float,
    dep: Deployment = SINGLE_GPU,
    drafting: str = "none",
) -> MemoryPlan:
    """Weights (target and drafter) and KV per GPU, and the concurrent requests whose KV cache at
    `context_len` fits beside them (0 if none)."""
    wb = WEIGHT_DTYPES[dep.weight_dtype]
    experts = m.moe_layers * m.experts * m.expert_params
    split = m.total_params - experts - (1 if m.tied_embeddings else 2) * m.head_params
    heads = (1 if m.tied_embeddings else 2) * m.head_params * ACTIVATION_BYTES  # embedding and head stay bf16
    target = (split * wb + heads) / dep.tp + experts * wb / (dep.ep if dep.ep > 1 else dep.tp)
    drafter = drafter_params(m, kn, drafting) * kn.dtype_bytes / dep.tp
    if drafting == "mtp" and m.experts and dep.ep > 1:  # its routed experts are spread like the target's
        moe = m.experts * m.expert_params * kn.dtype_bytes
        drafter += moe / dep.ep - moe / dep.tp
    kv = dep.kv_bytes_per_token(m) + dep.kv_bytes_per_token(m, draft_layers(kn, drafting))
    usable = hw.mem_bytes * (1.0 - kn.memory_reserve)
    per_rank = max(0, int((usable - target - drafter) // (context_len * kv)))
    return MemoryPlan(usable, target, drafter, kv, float(context_len), per_rank * dep.dp)


def max_requests(
    hw: Hardware, m: ModelShape, kn: RooflineKnobs, context_len: float, dep: Deployment = SINGLE_GPU
) -> int:
    """Concurrent requests whose KV cache at `context_len` fits beside the target's weights (0 if none)."""
    return memory_plan(hw, m, kn, context_len, dep).max_requests


class RooflineSurface:
    """Exact roofline step time at any (B, R): the same interface as sps.StepTimeSurface.

    Interpolating a tabulated roofline between request levels would blend two curves with
    different compute knees into false micro-steps, which Algorithm 1's early stop then trips
    on; evaluating the formula avoids that.
    """

    def __init__(
        self,
        hw: Hardware,
        model: ModelShape,
        knobs: RooflineKnobs,
        context_len: float,
        max_gamma: int = 64,
        deployment: Deployment = SINGLE_GPU,
        prefill_context: float = 0.0,
    ):
        self.hw, self.model, self.knobs, self.context_len, self.max_gamma = hw, model, knobs, context_len, max_gamma
        self.deployment, self.prefill_context = deployment, prefill_context

    def step_time(self, batch_tokens, requests: int, prefill_tokens=0.0) -> np.ndarray:
        """Seconds for one pass; `prefill_tokens` of arriving prompts ride along (chunked prefill)."""
        return verify_step_s(
            self.hw,
            self.model,
            self.knobs,
            batch_tokens,
            requests,
            self.context_len,
            self.deployment,
            prefill_tokens,
            self.prefill_context,
        )

    def slice(self, requests: int):
        return self._slice(int(requests))

    @functools.lru_cache(maxsize=512)  # noqa: B019 (surfaces live as long as the process)
    def _slice(self, requests: int):
        from .sps import SpsCurve

        b = np.arange(1, requests * (1 + self.max_gamma) + 1)
        return SpsCurve(b, self.step_time(b, requests))
