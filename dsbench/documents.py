"""Typed result documents (pydantic v2): the contract between dsbench's layers.

Engine-specific shapes end in live/engines.py; what is written to disk and read back by `fit`,
`gate`, `report` and `sweep --model` is one of these models. Units are in field names (`_s`
seconds, `_tok_s` tokens per second) and descriptions. Validation errors become the one-line
InputError the CLI prints (file and field named).

This module imports pydantic at import time; import it lazily from commands that need it so
`dsbench --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from .errors import InputError


class Doc(BaseModel):
    """Base: finite numbers only; fields this version does not know are kept (newer writers)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    provenance: dict[str, Any] = Field(default_factory=dict, description="who made it, when, with what command")


SpecState = Literal["active", "inactive", "unknown", "unreadable"]
SpecSource = Literal["server counters", "per-request", "client proxy"]


class SpecWindow(Doc):
    """Speculative decoding over one window (a load point, or a set of requests), engine-neutral.

    state: active (drafts were verified), inactive (counters present but zero), unknown (the
    engine exposes none), unreadable (series seen but not understood: `unreadable_series`).
    """

    engine: str | None = Field(None, description="the engine the figures came from (vllm, llama.cpp, sglang, dsbench)")
    state: SpecState
    source: SpecSource | None = None
    requests: int | None = Field(None, ge=0, description="requests pooled (per-request source)")
    decode_steps: float | None = Field(None, ge=0, description="target passes that decoded, prefill excluded")
    drafted_steps: float | None = Field(None, ge=0, description="decode steps that verified >= 1 draft token")
    draft_tokens: float | None = Field(None, ge=0, description="draft tokens verified")
    accepted_tokens: float | None = Field(None, ge=0, description="accepted draft tokens, bonus excluded")
    tau: float | None = Field(None, ge=1, description="tokens per decode step, bonus included")
    tau_drafted: float | None = Field(
        None, ge=1, description="1 + accepted / drafted steps (vLLM's mean acceptance length)"
    )
    acceptance_rate: float | None = Field(None, ge=0, le=1, description="accepted / draft tokens")
    draft_tokens_per_step: float | None = Field(None, ge=0, description="draft tokens verified per decode step")
    survival: list[float] | None = Field(None, description="per drafted step: P(draft k accepted), k = 1..K")
    conditional: list[float | None] | None = Field(None, description="P(draft k accepted | 1..k-1 accepted)")
    conditional_exact: bool = Field(False, description="counted by the engine (else absent)")
    unreadable_series: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @computed_field
    @property
    def measured(self) -> bool:
        """Figures the engine itself counted (not a client-side proxy)."""
        return self.state in ("active", "inactive") and self.source in ("server counters", "per-request")

    @field_validator("survival")
    @classmethod
    def _probabilities(cls, v):
        if v is not None and any(not (0 <= x <= 1 + 1e-9) for x in v):
            raise ValueError("survival values must lie in [0, 1]")
        return v

    @model_validator(mode="before")
    @classmethod
    def _from_v1(cls, data: Any):
        """Read the engine-shaped `spec` dicts of dsbench.load/1 files."""
        if not isinstance(data, dict) or "state" in data:
            return {k: v for k, v in data.items() if k != "measured"} if isinstance(data, dict) else data
        if data.get("error"):
            return {"engine": data.get("engine"), "state": "unreadable", "warnings": [str(data["error"])]}
        engine = data.get("engine")
        if not any(k in data for k in ("tau", "tau_per_round", "drafts", "rounds")):
            return {"engine": None if engine in (None, "none") else engine, "state": "unknown"}
        rounds, drafts = data.get("rounds"), data.get("drafts")
        steps = rounds if rounds else None
        accepted = data.get("accepted")
        return {
            "engine": engine,
            "state": "active" if data.get("draft_tokens") or accepted else "inactive",
            "source": "server counters",
            "decode_steps": steps,
            "drafted_steps": drafts,
            "draft_tokens": data.get("draft_tokens"),
            "accepted_tokens": accepted,
            "tau": data.get("tau_per_round") if rounds else None,
            "tau_drafted": data.get("tau"),
            "acceptance_rate": data.get("acceptance_rate"),
            "draft_tokens_per_step": data["draft_tokens"] / rounds
            if rounds and data.get("draft_tokens") is not None
            else None,
            "survival": data.get("survival_per_draft"),
            "conditional": data.get("conditional"),
            "conditional_exact": bool(data.get("conditional")),
            "notes": ["read from a dsbench.load/1 file"],
        }


class Sampling(Doc):
    """What every request asked for; None means the field was not sent (server default)."""

    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    ignore_eos: bool = False
    extra_body: dict[str, Any] = Field(default_factory=dict)

    def body(self) -> dict:
        """The request-body fields to send."""
        out: dict[str, Any] = {
            k: v
            for k, v in (("temperature", self.temperature), ("top_p", self.top_p), ("seed", self.seed))
            if v is not None
        }
        if self.ignore_eos:
            out["ignore_eos"] = True
        return {**out, **self.extra_body}

    def text(self) -> str:
        """What was sent, for tables and reports."""
        return ", ".join(f"{k} {v}" for k, v in self.body().items()) or "server defaults"

    def differences(self, other: Sampling) -> list[str]:
        """Names of the fields whose values differ."""
        a, b = self.model_dump(), other.model_dump()
        return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


# --------------------------------------------------------------------------- reading


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "finite_number": "must be finite",
    "too_short": "must not be empty",
    "literal_error": "must be one of {expected}",
}


def _where(loc: tuple) -> str:
    out = ""
    for x in loc:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out.replace("schema_", "schema") or "(top level)"


def parse(model: type[BaseModel], data: Any, path: str | Path):
    """`model` validated from `data`; a validation error becomes one InputError line naming the
    file and the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = _where(err["loc"])
        if err["type"] == "missing":
            raise InputError(f"{path}: missing field '{where}'") from None
        ctx = err.get("ctx") or {}
        msg = _MESSAGES.get(err["type"], "").format(**ctx) if err["type"] in _MESSAGES else err["msg"]
        got = json_excerpt(err.get("input"))
        raise InputError(f"{path}: field '{where}' {msg}" + (f", got {got}" if got else "")) from None


def json_excerpt(v: Any) -> str:
    """A short text of a bad value for an error line."""
    import json

    if isinstance(v, (dict, list)) and len(json.dumps(v, default=str)) > 40:
        return type(v).__name__
    try:
        return json.dumps(v, default=str)[:40]
    except (TypeError, ValueError):
        return str(v)[:40]


def validated(model: type[BaseModel], data: Any, path: str | Path, reader):
    """Run `reader()` (a hand-written parser with its own messages), then validate `data` against
    `model` as well; a reader that trips over a malformed value gets the model's message instead
    of an exception."""
    try:
        out = reader()
    except InputError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError, IndexError, OverflowError):
        parse(model, data, path)
        raise InputError(f"{path}: malformed document") from None
    parse(model, data, path)
    return out


def sampling_text(sampling: dict | None) -> str:
    """A load run's sampling as text; runs of dsbench.load/1 recorded none."""
    return Sampling.model_validate(sampling).text() if sampling is not None else "not recorded (server defaults)"


def conditional_of(spec: dict) -> list[float]:
    """Conditional acceptance per position from a SpecWindow's fields: the engine's exact counts,
    else derived from its per-position survival (exact only when every drafted step drafted the
    full K)."""
    from .core.acceptance import conditional_from_survival

    if spec.get("conditional_exact") and spec.get("conditional"):
        return [float(x or 0.0) for x in spec["conditional"]]
    if spec.get("survival"):
        return [float(x) for x in conditional_from_survival(spec["survival"])]
    return []


# --------------------------------------------------------------------------- load runs


class Uncertainty(Doc):
    """A figure's standard error from the run itself (core/uncertainty.py), or why it has none."""

    value: float | None = None
    se: float | None = Field(None, ge=0, description="standard error, in the figure's unit")
    n: int = Field(0, ge=0, description="observations behind it (requests, time bins or scrapes)")
    method: str = ""
    reason: str | None = None
    longer: float | None = Field(
        None, gt=0, description="without se: how many times longer the run must be to give one"
    )


class LoadConfigDoc(Doc):
    """The part of a load run's config that says what experiment it was (the rest rides along)."""

    url: str | None = None
    model: str | None = None
    workloads: list[str] = Field(default_factory=list)
    concurrency: list[int] = Field(default_factory=list)
    rates: list[float] = Field(default_factory=list)
    max_tokens: int | None = Field(None, ge=1)
    api: str | None = None
    gpus: int = Field(1, ge=1)
    method: str | None = None


class LoadPoint(Doc):
    """One load point's summary (the typed part; loadstats' other figures ride along as extras)."""

    label: str
    mode: Literal["closed", "poisson"] = "closed"
    concurrency: int | None = Field(None, ge=1)
    rate: float | None = Field(None, gt=0, description="requests/s (open loop)")
    source: Literal["measured", "simulated"] = "measured"  # simulated: the server said it is dsbench's simulator
    window_s: float | None = Field(None, ge=0, description="steady-state window, seconds")
    requests: int = Field(0, ge=0)
    requests_ok: int = Field(0, ge=0)
    requests_failed: int = Field(0, ge=0)
    requests_cancelled: int = Field(0, ge=0)
    errors: dict[str, int] = Field(default_factory=dict)
    request_throughput_req_s: float | None = Field(
        None,
        ge=0,
        description="completed requests per second",
        validation_alias=AliasChoices("request_throughput_req_s", "request_throughput_s"),  # its name before 0.3.0
    )
    output_tok_s: float | None = Field(None, ge=0, description="output tokens per second in the window")
    tps_user_mean: float | None = Field(None, ge=0, description="per-user decode speed, tokens/s")
    tps_user_p50: float | None = Field(None, ge=0, description="per-user speed half the requests reach, tokens/s")
    tps_user_p90: float | None = Field(None, ge=0, description="per-user speed 90 % of requests reach, tokens/s")
    ttft_s_p50: float | None = Field(None, ge=0, description="time to first token, seconds")
    ttft_s_p99: float | None = Field(None, ge=0)
    tpot_s_p50: float | None = Field(None, ge=0)
    tpot_s_p99: float | None = Field(None, ge=0)
    tpot_s_mean: float | None = Field(None, ge=0, description="time per output token, seconds")
    e2e_s_mean: float | None = Field(None, ge=0)
    tokens_per_chunk_mean: float | None = Field(None, ge=0)
    spec: SpecWindow = Field(default_factory=lambda: SpecWindow(state="unknown"))
    spec_counters: SpecWindow | None = None
    uncertainty: dict[str, Uncertainty] = Field(
        default_factory=dict, description="per gated figure; empty before dsbench 0.2"
    )


class ServerCard(Doc):
    """What the server said it is (dsbench's /v1/models card and x-dsbench-source header; vLLM's
    model root and length), recorded by `load` and matched by `gate`."""

    source: Literal["measured", "simulated"] = "measured"


class LoadRun(Doc):
    """A `dsbench load` run: load.json."""

    schema_: Literal["dsbench.load/1", "dsbench.load/2"] = Field(alias="schema")
    config: LoadConfigDoc = Field(default_factory=LoadConfigDoc)
    engine: str | None = None
    sampling: Sampling | None = None  # None: a dsbench.load/1 file, which sent the server's defaults
    server: ServerCard | None = None  # None: a file from before dsbench 0.2
    points: list[LoadPoint]
    interrupted: bool = False

    @field_validator("engine")
    @classmethod
    def _none_engine(cls, v):
        return None if v == "none" else v


def read_load(data: dict, path: str | Path) -> dict:
    """A load.json's content, validated, with every point's speculative figures in the
    engine-neutral shape (files of schema /1 are converted)."""
    run = parse(LoadRun, data, path)
    return run.model_dump(by_alias=True)


# --------------------------------------------------------------------------- live SLO search


class SearchPoint(Doc):
    """One concurrency a search measured: per-window figures pooled over its measurements."""

    concurrency: int = Field(ge=1)
    speed: float | None = None  # tok/s per user, the SLO's statistic, mean over windows
    speed_ci: list[float | None]
    throughput: float | None = None  # tok/s per GPU, mean over windows
    throughput_ci: list[float | None]
    speeds: list[float]
    throughputs: list[float]
    ttft_s: float | None = None
    saturated: str | None = None
    measurements: int = Field(ge=0)
    verdict: Literal["meets", "fails", "unsure"]
    order: list[int]  # when it was measured: indices into the search's measurement order


class SearchBest(Doc):
    concurrency: int
    throughput_tok_s_gpu: float
    throughput_ci: list[float | None]
    speed: float
    speed_ci: list[float | None]
    upper_throughput_tok_s_gpu: float | None = None
    source: str = "measured"


class SearchMethod(Doc):
    """One server's search."""

    label: str
    method: str | None = None
    command: str | None = None
    points: list[SearchPoint] = Field(default_factory=list)
    measurements: int = 0
    outcome: Literal["bracketed", "infeasible", "capped", "budget", "stopped"] | None = None  # None: under way
    reason: str | None = None
    best: SearchBest | None = None
    bracket: list[int | None] | None = None
    complete: bool = False
    fit: dict | None = None


class SearchRun(Doc):
    """A `dsbench search` run: search.json."""

    schema_: Literal["dsbench.search/1"] = Field(alias="schema")
    config: dict = Field(default_factory=dict)
    slo: dict
    methods: list[SearchMethod]
    best_method: str | None = None
    baseline: str | None = None
    ratios: dict[str, float | None] = Field(default_factory=dict)
    interrupted: bool = False


# --------------------------------------------------------------------------- profiles, curves, sweeps, fits

Source = Literal["measured", "roofline", "paper", "fitted", "simulated"]


class ProfilePoint(Doc):
    batch_tokens: float = Field(gt=0, description="tokens verified in one target pass (B)")
    requests: float = Field(1.0, gt=0, description="requests in the pass (R)")
    step_s: float = Field(gt=0, description="one target pass, seconds")


class DraftPoint(Doc):
    requests: float = Field(gt=0)
    gamma: float = Field(gt=0, description="draft tokens per request")
    step_s: float = Field(ge=0, description="one drafting round, seconds")


class DraftTable(Doc):
    points: list[DraftPoint] = Field(min_length=1)
    max_requests: int | None = Field(None, ge=0, description="requests whose KV fits with this drafter's weights")


class ProfileDoc(Doc):
    """A step-time profile (dsbench.profile/1)."""

    schema_: Literal["dsbench.profile/1"] = Field(alias="schema")
    source: Source
    device: dict[str, Any]
    model: dict[str, Any]
    context_len: int = Field(gt=0, description="cached tokens per request, tokens")
    points: list[ProfilePoint] = Field(min_length=1)
    draft: dict[str, DraftTable] | None = None
    max_requests: int | None = Field(None, gt=0)

    @field_validator("device")
    @classmethod
    def _gpus(cls, v):
        g = v.get("gpus", 1)
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise ValueError("device.gpus must be a whole number >= 1")
        return v


class AcceptanceDoc(Doc):
    """Conditional acceptance per position for one method and domain (dsbench.acceptance/1)."""

    schema_: Literal["dsbench.acceptance/1"] = Field(alias="schema")
    source: Source
    method: str
    domain: str
    target: str = ""
    conditional: list[float] = Field(min_length=1, description="P(draft k accepted | 1..k-1 accepted), k = 1..gamma")
    gamma: int | None = Field(None, gt=0)
    tau: float | None = Field(None, ge=1, description="tokens per round, bonus included")
    spread: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self):
        if any(not 0 <= c <= 1 for c in self.conditional):
            raise ValueError("conditional values must lie in [0, 1]")
        if self.gamma is not None and self.gamma != len(self.conditional):
            raise ValueError(f"gamma is {self.gamma} but conditional has {len(self.conditional)} positions")
        if self.spread is not None and (
            "sigma" not in self.spread or self.spread["sigma"] < 0 or not 0 <= self.spread.get("round_share", 0.5) <= 1
        ):
            raise ValueError("spread needs sigma >= 0 and round_share in [0, 1]")
        return self


class SweepMethod(Doc):
    feasible: bool
    throughput: float | None = Field(None, ge=0, description="tok/s per GPU at the SLO")
    concurrency: int | None = Field(None, ge=1)
    tps_user: float | None = Field(None, ge=0)
    peak_tps_user: float | None = Field(None, ge=0)
    verify_budget: float | None = Field(None, ge=0, description="tokens verified per request per round")
    ratio: float | None = Field(None, ge=0, description="throughput / the baseline method's")
    policy: str | None = None
    gamma: int | None = Field(None, ge=0, description="draft length of the reported frontier")
    why: str | None = Field(None, description="why an infeasible method has no point")

    @model_validator(mode="after")
    def _feasible_has_a_point(self):
        if self.feasible and (self.throughput is None or self.concurrency is None):
            raise ValueError("a feasible method needs its throughput and concurrency")
        return self


class SweepRow(Doc):
    method: str
    concurrency: float = Field(gt=0)
    tps_user: float = Field(ge=0, description="tok/s per user")
    throughput_tok_s_gpu: float = Field(ge=0, description="tok/s per GPU")
    verify_budget: float | None = Field(None, ge=0)


class SweepInputs(Doc):
    """What a sweep was run on (None: not recorded, e.g. an interrupted sweep of an older version)."""

    profile: str | None = None
    profile_source: str | None = None
    device: str | None = None
    gpus: int = Field(1, ge=1)
    model: str | None = None
    context_len: int | None = Field(None, gt=0)
    acceptance: str | None = None
    acceptance_sources: list[str] = Field(default_factory=list)
    acceptance_protocols: list[str] = Field(default_factory=list, description="accept --protocol of measured curves")
    domain: str | None = None
    gamma: int | None = Field(None, ge=1, description="--gamma; None: searched per method (gamma_search)")
    gamma_search: list[int] = Field(default_factory=list, description="draft lengths the search tried")
    deployment: dict[str, Any] | None = None
    lengths: dict[str, Any] | None = Field(None, description="request lengths modelled (None: one context)")
    modelled: list[str] = Field(default_factory=list, description="what the traffic model covered")
    profile_repairs: list[str] = Field(default_factory=list, description="measured step times raised, beyond spread")
    policy: str | None = None
    results_source: str = "simulated"
    fitted_model: str | None = None
    concurrency: list[int] = Field(default_factory=list)
    profiled_max_requests: int | None = Field(None, ge=1)
    max_concurrency_memory: int | None = Field(None, ge=1)
    capped_by_memory: bool = False


def traffic_modelled(inputs: dict) -> str:
    """What a sweep's traffic model covered, in words (older sweeps: their context alone)."""
    return "; ".join(inputs.get("modelled") or [f"context {inputs.get('context_len')}"])


class SweepDoc(Doc):
    """A sweep (dsbench.sweep/1); `partial: true` while it runs (then only finished methods)."""

    schema_: Literal["dsbench.sweep/1"] = Field(alias="schema")
    partial: bool = False
    slo: float | None = None
    methods: dict[str, SweepMethod] = Field(default_factory=dict)
    inputs: SweepInputs = Field(default_factory=SweepInputs)
    frontier: list[SweepRow] = Field(min_length=1)


class FitParam(Doc):
    value: float
    sigma: float | None = None
    unit: str = ""
    fixed: bool = False


class FitPoint(Doc):
    label: str | None = None
    method: str
    requests: float = Field(gt=0)
    batch_tokens: float = Field(gt=0)
    tau: float = Field(ge=1)
    round_s: float = Field(gt=0)
    round_s_fitted: float = Field(ge=0)
    rel_error: float
    flagged: bool = False


class FitDoc(Doc):
    """A fitted latency model (dsbench.fit/1)."""

    schema_: Literal["dsbench.fit/1"] = Field(alias="schema")
    params: dict[str, FitParam]
    mape_pct: float = Field(ge=0)
    points: list[FitPoint] = Field(min_length=1)
    profile: dict[str, Any]
    acceptance: list[dict[str, Any]] = Field(default_factory=list)
    flagged: int = Field(0, ge=0)


class ReliabilityBin(Doc):
    pred: float = Field(ge=0, le=1, description="mean predicted survival in the bin")
    observed: float = Field(ge=0, le=1)
    n: int = Field(ge=1)


class Reliability(Doc):
    position: int = Field(ge=1)
    before: list[ReliabilityBin] = Field(default_factory=list)
    after: list[ReliabilityBin] = Field(default_factory=list)


class CalibrationScores(Doc):
    """ECE, AUC and Brier per position and their count-weighted means (None: undefined)."""

    ece_mean: float | None = None
    auc_mean: float | None = None
    brier_mean: float | None = None


class CalibrationDoc(Doc):
    """A confidence calibration (dsbench.calibration/1)."""

    schema_: Literal["dsbench.calibration/1"] = Field(alias="schema")
    reliability: list[Reliability] = Field(default_factory=list)
    before: CalibrationScores = Field(default_factory=CalibrationScores)
    after: CalibrationScores = Field(default_factory=CalibrationScores)
    rounds_held_out: int | None = Field(None, ge=0)


class RequestLine(Doc):
    """One line of requests.jsonl (live/client.RequestRecord); times are monotonic ns (int64)."""

    id: int
    point: str | None = None
    scheduled_ns: int | None = Field(None, ge=0, le=2**63)
    start_ns: int = Field(ge=0, le=2**63)
    first_chunk_ns: int | None = Field(None, ge=0, le=2**63)
    last_chunk_ns: int | None = Field(None, ge=0, le=2**63)
    end_ns: int | None = Field(None, ge=0, le=2**63)
    chunk_offsets_s: list[float] = Field(default_factory=list, description="content chunks, seconds after the send")
    chunk_tokens: list[Annotated[int, Field(ge=0, le=2**40)]] | None = None
    output_tokens: int | None = Field(None, ge=0, le=2**40)
    error: str | None = None

    chunk_lag_s: list[float] | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.chunk_tokens is not None and len(self.chunk_tokens) != len(self.chunk_offsets_s):
            raise ValueError("chunk_tokens and chunk_offsets_s differ in length")
        if (self.first_chunk_ns is None) != (self.last_chunk_ns is None):
            raise ValueError("first_chunk_ns and last_chunk_ns come together")
        if self.first_chunk_ns is not None and not self.start_ns <= self.first_chunk_ns <= self.last_chunk_ns:
            raise ValueError("chunk times must follow the send")
        return self


class GateRule(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric: str = Field(description="a glob over metric names, e.g. 'load.*.ttft_s_p99'")
    direction: Literal["higher", "lower"] = "higher"
    tolerance_pct: float | None = Field(None, ge=0)
    tolerance_abs: float | None = Field(None, ge=0)
    ignore: bool = False


class GateRules(Doc):
    """A gate rules file (TOML or JSON)."""

    max_drop_pct: float | None = Field(None, ge=0, description="allowed drop of throughput and per-user speed, percent")
    rules: list[GateRule] = Field(default_factory=list)
