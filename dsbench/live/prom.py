"""Speculative-decoding counters from a Prometheus /metrics endpoint, and their deltas.

Parsed with prometheus_client's text parser. Series are summed over label sets (one per DP
engine), `_created` samples are ignored, and exact names are matched (the per-position counter
contains the plain counter's name as a substring). Engines:
  vllm    — vllm:spec_decode_num_{drafts,draft_tokens,accepted_tokens}_total and
            ..._accepted_tokens_per_pos_total{position}
  sglang  — sglang:spec_verify_calls_total and sglang:generation_tokens_total (delta-friendly pair)
  dsbench — vLLM's names plus dsbench:spec_rounds_total and dsbench:spec_reached_per_pos_total
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

VLLM = {
    "drafts": "vllm:spec_decode_num_drafts_total",
    "draft_tokens": "vllm:spec_decode_num_draft_tokens_total",
    "accepted": "vllm:spec_decode_num_accepted_tokens_total",
}
VLLM_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
DSB_ROUNDS = "dsbench:spec_rounds_total"
DSB_REACHED = "dsbench:spec_reached_per_pos_total"
SGL_VERIFY = "sglang:spec_verify_calls_total"
SGL_GEN = "sglang:generation_tokens_total"


@dataclass
class Snapshot:
    """Counter totals at one scrape (summed over engines)."""

    engine: str  # vllm | sglang | dsbench | none
    values: dict[str, float] = field(default_factory=dict)
    per_pos: dict[str, dict[int, float]] = field(default_factory=dict)


def parse(text: str) -> Snapshot:
    """Snapshot of the speculative-decoding counters in an exposition text."""
    values: dict[str, float] = {}
    per_pos: dict[str, dict[int, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            if s.name in (VLLM_PER_POS, DSB_REACHED):
                k = int(s.labels.get("position", 0))
                d = per_pos.setdefault(s.name, {})
                d[k] = d.get(k, 0.0) + s.value
            else:
                values[s.name] = values.get(s.name, 0.0) + s.value
    if DSB_ROUNDS in values:
        engine = "dsbench"
    elif VLLM["drafts"] in values:
        engine = "vllm"
    elif SGL_VERIFY in values:
        engine = "sglang"
    else:
        engine = "none"
    return Snapshot(engine, values, per_pos)


async def scrape(client: httpx.AsyncClient, url: str, headers: dict | None = None) -> Snapshot:
    """GET `url` and parse it; raises httpx errors to the caller."""
    r = await client.get(url, headers=headers)
    r.raise_for_status()
    return parse(r.text)


def spec_delta(before: Snapshot, after: Snapshot, engine: str = "auto") -> dict:
    """tau, draft acceptance rate and per-position figures over the window between two scrapes.

    tau = 1 + accepted / drafts (vLLM's definition, bonus included); with dsbench's round counter
    also tau per round including rounds that verified nothing. survival[k] = P(drafts 1..k+1 all
    accepted) per draft step (vLLM's per-position counters are unconditional: never chain them).
    """
    kind = after.engine if engine == "auto" else engine
    out: dict = {"engine": kind, "source": "measured (server counters)"}
    if kind == "none":
        return out
    # gauges (running requests, ...) may fall; only counters must not
    d = {k: after.values.get(k, 0.0) - before.values.get(k, 0.0) for k in after.values if k.endswith("_total")}
    pos_delta = [after.per_pos.get(n, {}).get(k, 0.0) - before.per_pos.get(n, {}).get(k, 0.0)
                 for n in after.per_pos for k in after.per_pos[n]]
    if any(v < 0 for v in [*d.values(), *pos_delta]):
        return {**out, "error": "a counter went down between scrapes (server restarted?)"}
    if kind == "sglang":
        calls = d.get(SGL_VERIFY, 0.0)
        out["tau"] = d.get(SGL_GEN, 0.0) / calls if calls else None
        out["note"] = "SGLang: generation tokens / verify calls (includes each request's prefill token)"
        return out
    drafts, draft_tokens, accepted = (d.get(VLLM[k], 0.0) for k in ("drafts", "draft_tokens", "accepted"))
    out["drafts"], out["draft_tokens"], out["accepted"] = drafts, draft_tokens, accepted
    out["tau"] = 1.0 + accepted / drafts if drafts else None
    out["acceptance_rate"] = accepted / draft_tokens if draft_tokens else None
    pos_after = after.per_pos.get(VLLM_PER_POS, {})
    pos_before = before.per_pos.get(VLLM_PER_POS, {})
    acc_pos = [pos_after[k] - pos_before.get(k, 0.0) for k in sorted(pos_after)]
    out["survival_per_draft"] = [a / drafts for a in acc_pos] if drafts else None
    if kind == "dsbench":
        rounds = d.get(DSB_ROUNDS, 0.0)
        out["rounds"] = rounds
        out["tau_per_round"] = 1.0 + accepted / rounds if rounds else None
        out["survival_per_round"] = [a / rounds for a in acc_pos] if rounds else None
        r_after = after.per_pos.get(DSB_REACHED, {})
        r_before = before.per_pos.get(DSB_REACHED, {})
        reached = [r_after[k] - r_before.get(k, 0.0) for k in sorted(r_after)]
        out["conditional"] = [a / r if r else None for a, r in zip(acc_pos, reached)]
    return out
