"""Engine adapters: each engine's speculative-decoding figures in one neutral shape.

Everything engine-specific lives here: metric names, response fields, and what each engine
calls a step. Past this module readers see `SpecCounts` (raw totals) and, through
`window_figures`, `documents.SpecWindow` (the figures); no engine names.

Steps. A *decode step* is one target pass that decoded a request (its prefill excluded); tau is
tokens committed per decode step, bonus included (the design's tau). vLLM and llama.cpp count
only steps that verified a draft ("drafts"), so their "mean acceptance length" 1 + accepted /
drafts is tau per *drafted* step; with n-gram drafting most steps draft nothing and the two
differ a lot. Decode steps are counted where the engine counts them (dsbench rounds, SGLang
verify calls) and otherwise derived: every decode step commits 1 + its accepted drafts, so
decode steps = generated tokens - accepted - first tokens (one per request, from its prefill).

Engines (names from their sources; see README "Supported engines"):
  vllm      vllm:spec_decode_num_{drafts,draft_tokens,accepted_tokens}_total,
            ..._accepted_tokens_per_pos_total{position}, vllm:generation_tokens_total;
            per request `metrics.speculative_decoding` (--per-request-spec-decode-metrics)
  llama.cpp llamacpp:spec_decode_* (same meanings, updated when a request finishes);
            per response `timings.{predicted_n, draft_n, draft_n_accepted}`
  sglang    sglang:spec_verify_calls_total + sglang:generation_tokens_total; per request
            `sglext.spec_tokens_details` (request field return_spec_tokens_details) or `meta_info`
  dsbench   vLLM's names plus dsbench:spec_rounds_total and dsbench:spec_reached_per_pos_total
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from prometheus_client.parser import text_string_to_metric_families

ENGINES = ("vllm", "llama.cpp", "sglang", "dsbench")
# gauges of requests queued at the server, not yet running (dsbench serve exports vLLM's)
WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred")


@dataclass
class SpecCounts:
    """Speculative-decoding totals (a window's counter deltas, or a set of requests' sums).

    None where the engine does not say. Per-position lists are indexed by draft position 0..K-1.
    """

    decode_steps: float | None = None  # target passes that decoded these requests, prefill excluded
    drafted_steps: float | None = None  # decode steps that verified >= 1 draft token
    draft_tokens: float | None = None  # draft tokens verified
    accepted: float | None = None  # accepted draft tokens, bonus excluded
    generated: float | None = None  # output tokens (first tokens included), for deriving decode steps
    accepted_per_pos: list[float] | None = None  # decode steps whose draft k was accepted
    reached_per_pos: list[float] | None = None  # decode steps that verified draft k after 1..k-1 were accepted
    requests: int = 0  # requests summed (per-request counts)

    def __add__(self, other: SpecCounts) -> SpecCounts:
        return _combine(self, other, 1.0)

    def __sub__(self, other: SpecCounts) -> SpecCounts:
        return _combine(self, other, -1.0)

    def negative(self) -> list[str]:
        """Fields that went below zero (a counter reset between two scrapes)."""
        bad = []
        for f in fields(self):
            v = getattr(self, f.name)
            vals = v if isinstance(v, list) else [v]
            if any(x is not None and x < 0 for x in vals):
                bad.append(f.name)
        return bad


def _combine(a: SpecCounts, b: SpecCounts, sign: float) -> SpecCounts:
    out = {}
    for f in fields(SpecCounts):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "requests":
            out[f.name] = int(x + sign * y)
        elif isinstance(x, list) or isinstance(y, list):
            if x is None or y is None:
                out[f.name] = None
            else:
                n = max(len(x), len(y))
                out[f.name] = [(x[k] if k < len(x) else 0.0) + sign * (y[k] if k < len(y) else 0.0) for k in range(n)]
        else:
            out[f.name] = None if x is None or y is None else x + sign * y
    return SpecCounts(**out)


def _zero_like(c: SpecCounts) -> SpecCounts:
    """Counts of the same shape as `c` with every known value zero."""
    z = {
        f.name: (None if v is None else [0.0] * len(v) if isinstance(v, list) else type(v)(0))
        for f in fields(SpecCounts)
        for v in [getattr(c, f.name)]
    }
    return SpecCounts(**z)


# --------------------------------------------------------------------------- /metrics


@dataclass
class Scrape:
    """One /metrics exposition, parsed: sample totals summed over label sets (DP engines, TP
    ranks), per-position series kept per position, `_created` samples dropped."""

    values: dict[str, float] = field(default_factory=dict)
    per_pos: dict[str, dict[int, float]] = field(default_factory=dict)
    bad_labels: set[str] = field(default_factory=set)  # series whose position label is not an integer

    def names(self) -> set[str]:
        return set(self.values) | set(self.per_pos)


def parse_metrics(text: str) -> Scrape:
    """Parse a Prometheus exposition text (prometheus_client's parser; raises ValueError)."""
    sc = Scrape()
    try:
        samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
    except Exception as e:  # the parser raises several kinds for malformed text; callers handle ValueError
        raise ValueError(f"not a Prometheus exposition ({type(e).__name__}: {e})") from None
    for s in samples:
        if s.name.endswith("_created") or not math.isfinite(s.value):
            continue
        if "position" in s.labels:
            try:
                k = int(s.labels["position"])
            except ValueError:
                sc.bad_labels.add(s.name)
                continue
            d = sc.per_pos.setdefault(s.name, {})
            d[k] = d.get(k, 0.0) + s.value
        else:
            sc.values[s.name] = sc.values.get(s.name, 0.0) + s.value
    return sc


def _positions(d: dict[int, float] | None) -> list[float] | None:
    if not d:
        return None
    if min(d) < 0 or max(d) > 255:
        return None
    return [d.get(k, 0.0) for k in range(max(d) + 1)]


@dataclass(frozen=True)
class Adapter:
    """How one engine exposes speculative decoding."""

    name: str
    prefix: str  # its metric-name prefix
    spec_names: tuple[str, ...]  # the speculative series it understands
    counters_at_request_end: bool = False  # counters move only when a request finishes
    owned_by: tuple[str, ...] = ()  # /v1/models `owned_by` values
    server_headers: tuple[str, ...] = ()  # substrings of the `server` response header

    def counts(self, sc: Scrape) -> SpecCounts | None:
        """Totals at one scrape, or None when the engine exposes no speculative series."""
        v = sc.values
        if self.name == "sglang":
            if "sglang:spec_verify_calls_total" not in v:
                return None
            return SpecCounts(
                decode_steps=v["sglang:spec_verify_calls_total"], generated=v.get("sglang:generation_tokens_total")
            )
        p = self.prefix
        if f"{p}spec_decode_num_drafts_total" not in v:
            return None
        per_pos = _positions(sc.per_pos.get(f"{p}spec_decode_num_accepted_tokens_per_pos_total"))
        c = SpecCounts(
            drafted_steps=v[f"{p}spec_decode_num_drafts_total"],
            draft_tokens=v.get(f"{p}spec_decode_num_draft_tokens_total"),
            accepted=v.get(f"{p}spec_decode_num_accepted_tokens_total"),
            accepted_per_pos=per_pos,
            generated=v.get(
                f"{p}generation_tokens_total" if self.name != "llama.cpp" else "llamacpp:tokens_predicted_total"
            ),
        )
        if self.name == "dsbench":
            c.decode_steps = v.get("dsbench:spec_rounds_total")
            c.reached_per_pos = _positions(sc.per_pos.get("dsbench:spec_reached_per_pos_total"))
        return c

    def unreadable(self, sc: Scrape) -> list[str]:
        """Speculative series of this engine that this adapter does not understand."""
        spec_like = {n for n in sc.names() | sc.bad_labels if n.startswith(self.prefix) and "spec" in n}
        return sorted(n for n in spec_like if n not in self.spec_names or n in sc.bad_labels)


_VLLM_SPEC = (
    "spec_decode_num_drafts_total",
    "spec_decode_num_draft_tokens_total",
    "spec_decode_num_accepted_tokens_total",
    "spec_decode_num_accepted_tokens_per_pos_total",
)
ADAPTERS = {
    "vllm": Adapter("vllm", "vllm:", tuple(f"vllm:{n}" for n in _VLLM_SPEC), owned_by=("vllm",)),
    "llama.cpp": Adapter(
        "llama.cpp",
        "llamacpp:",
        tuple(f"llamacpp:{n}" for n in _VLLM_SPEC),
        counters_at_request_end=True,
        owned_by=("llamacpp", "llama.cpp"),
        server_headers=("llama.cpp",),
    ),
    "sglang": Adapter(
        "sglang",
        "sglang:",
        (
            "sglang:spec_verify_calls_total",
            "sglang:spec_accept_length",
            "sglang:spec_accept_rate",
            "sglang:spec_cap_length",
            "sglang:spec_block_accept_length",
            "sglang:spec_num_steps",
            "sglang:spec_num_draft_tokens",
        ),
        counters_at_request_end=True,
        owned_by=("sglang",),
    ),
    "dsbench": Adapter(
        "dsbench",
        "vllm:",
        (*(f"vllm:{n}" for n in _VLLM_SPEC), "dsbench:spec_rounds_total", "dsbench:spec_reached_per_pos_total"),
        owned_by=("dsbench",),
    ),
}


def detect(sc: Scrape | None, owned_by: str | None = None, server_header: str | None = None) -> str | None:
    """The engine behind a server, from its metric prefixes, /v1/models `owned_by` and `server`
    header (a vLLM server without speculation is still vLLM); None when nothing says."""
    names = sc.names() if sc else set()
    if "dsbench:spec_rounds_total" in names or owned_by == "dsbench":
        return "dsbench"
    for prefix, engine in (("llamacpp:", "llama.cpp"), ("sglang:", "sglang"), ("vllm:", "vllm")):
        if any(n.startswith(prefix) for n in names):
            return engine
    for engine, a in ADAPTERS.items():
        if owned_by and owned_by.lower() in a.owned_by:
            return engine
        if server_header and any(h in server_header.lower() for h in a.server_headers):
            return engine
    return None


# --------------------------------------------------------------------------- per request

# Response fields that carry per-request statistics; the client keeps exactly these.
PER_REQUEST_KEYS = ("metrics", "timings", "sglext", "meta_info")


def _num(d: dict, key: str) -> float | None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1e12:  # NaN fails the bounds too
        return None
    return float(v)


def _survival_from_histogram(hist) -> list[float] | None:
    """Steps whose draft k was accepted, from a histogram of steps by drafts accepted (index j =
    steps accepting exactly j drafts)."""
    if (
        not isinstance(hist, list)
        or not hist
        or len(hist) > 257
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1e12 for x in hist)
    ):
        return None
    return [float(sum(hist[k + 1 :])) for k in range(len(hist) - 1)]


def _stepwise(
    d: dict, output_tokens: int | None, steps_as: str, steps: str, accepted: str, drafted: str, histogram: str
) -> SpecCounts | None:
    """Counts from a per-request record of steps, accepted and drafted tokens and a histogram of
    steps by drafts accepted (vLLM's and SGLang's shapes, under their own field names); `steps_as`
    says which kind of step the engine counts."""
    n, acc = _num(d, steps), _num(d, accepted)
    if n is None or acc is None:
        return None
    return SpecCounts(
        **{steps_as: n},
        draft_tokens=_num(d, drafted),
        accepted=acc,
        accepted_per_pos=_survival_from_histogram(d.get(histogram)),
        generated=float(output_tokens) if output_tokens else None,
        requests=1,
    )


def request_counts(engine: str | None, stats: dict | None, output_tokens: int | None) -> SpecCounts | None:
    """One request's speculative counts from the per-request statistics its response carried
    (`stats`: the PER_REQUEST_KEYS fields of its last event), or None."""
    if not stats:
        return None
    sd = (stats.get("metrics") or {}).get("speculative_decoding") if isinstance(stats.get("metrics"), dict) else None
    if isinstance(sd, dict) and (engine in (None, "vllm", "dsbench")):  # vLLM counts steps that drafted
        return _stepwise(
            sd,
            output_tokens,
            "drafted_steps",
            "num_spec_steps",
            "num_accepted_draft_tokens",
            "num_draft_tokens",
            "acceptance_histogram",
        )
    t = stats.get("timings")
    if isinstance(t, dict) and "draft_n" in t and engine in (None, "llama.cpp"):
        n, drafted, acc = _num(t, "predicted_n"), _num(t, "draft_n"), _num(t, "draft_n_accepted")
        if n is None or drafted is None or acc is None or acc > drafted or acc > n:
            return None
        return SpecCounts(draft_tokens=drafted, accepted=acc, generated=n, requests=1)
    sg = stats.get("sglext")
    det = (sg or {}).get("spec_tokens_details") if isinstance(sg, dict) else None
    det = det if isinstance(det, dict) else stats.get("meta_info") if isinstance(stats.get("meta_info"), dict) else None
    if det and "spec_verify_ct" in det and engine in (None, "sglang"):  # SGLang counts every verify call
        return _stepwise(
            det,
            output_tokens,
            "decode_steps",
            "spec_verify_ct",
            "spec_num_correct_drafts",
            "spec_num_proposed_drafts",
            "spec_correct_drafts_histogram",
        )
    return None


# --------------------------------------------------------------------------- figures


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _impossible(c: SpecCounts) -> str | None:
    """Why these counts cannot all be true (then none of them is reported), or None."""
    if c.accepted is not None and c.draft_tokens is not None and c.accepted > c.draft_tokens:
        return f"the engine reports more accepted drafts ({c.accepted:g}) than drafted tokens ({c.draft_tokens:g})"
    if c.drafted_steps is not None and c.draft_tokens is not None and c.draft_tokens < c.drafted_steps:
        return (
            f"the engine reports fewer draft tokens ({c.draft_tokens:g}) than steps that drafted ({c.drafted_steps:g})"
        )
    if c.accepted_per_pos and c.drafted_steps is not None and max(c.accepted_per_pos) > c.drafted_steps:
        return "the engine reports a position accepted more often than drafts were verified"
    if c.accepted_per_pos and c.reached_per_pos and any(a > r for a, r in zip(c.accepted_per_pos, c.reached_per_pos)):
        return "the engine reports a position accepted more often than it was reached"
    if c.accepted_per_pos and any(b > a for a, b in zip(c.accepted_per_pos, c.accepted_per_pos[1:])):
        return "per-position accepted counts rise with position (a later draft accepted without the one before)"
    return None


def figures(
    engine: str | None,
    c: SpecCounts | None,
    source: str,
    first_tokens: float = 0.0,
    unreadable: list[str] | None = None,
    warnings: list[str] | None = None,
):
    """The engine-neutral SpecWindow for counts `c` (None: the engine exposes nothing).

    `first_tokens`: requests whose first token fell inside the counted span; each came from a
    prefill, not a decode step, and is taken off when decode steps are derived from tokens.
    """
    from ..documents import SpecWindow

    warnings = list(warnings or [])
    if unreadable:
        return SpecWindow(
            engine=engine, state="unreadable", source=source, unreadable_series=unreadable, warnings=warnings
        )
    if c is None:
        return SpecWindow(engine=engine, state="unknown", source=None, warnings=warnings)
    bad = c.negative()
    if bad:
        return SpecWindow(
            engine=engine,
            state="unreadable",
            source=source,
            unreadable_series=bad,
            warnings=[*warnings, "a counter went down between scrapes (server restarted?)"],
        )
    impossible = _impossible(c)
    if impossible:
        return SpecWindow(engine=engine, state="unreadable", source=source, warnings=[*warnings, impossible])
    notes = []
    steps, accepted = c.decode_steps, c.accepted
    if accepted is None and steps is not None and c.generated is not None:  # SGLang: each verify commits 1 + accepted
        accepted = max(0.0, c.generated - first_tokens - steps)
        notes.append("accepted drafts = tokens - first tokens - verify calls")
    delivered = None  # decode tokens that reached the client, where decode steps had to be derived
    if steps is None and c.generated is not None and accepted is not None:
        delivered = max(0.0, c.generated - first_tokens)
        steps = max(delivered - accepted, c.drafted_steps or 0.0)
        notes.append(
            "decode steps = tokens - accepted drafts - first tokens (each step commits 1 + its accepted drafts)"
            + (
                "; at least the drafted steps: tokens accepted past max_tokens or a stop were dropped"
                if c.drafted_steps and steps > delivered - accepted
                else ""
            )
        )
    active = bool(c.draft_tokens) or bool(accepted)
    surv = None
    if c.accepted_per_pos and c.drafted_steps:
        surv = [a / c.drafted_steps for a in c.accepted_per_pos]
    cond, exact = None, False
    if c.accepted_per_pos and c.reached_per_pos:
        cond, exact = [a / r if r else None for a, r in zip(c.accepted_per_pos, c.reached_per_pos)], True
    return SpecWindow(
        engine=engine,
        state="active" if active else "inactive",
        source=source,
        requests=c.requests or None,
        decode_steps=steps,
        drafted_steps=c.drafted_steps,
        draft_tokens=c.draft_tokens,
        accepted_tokens=accepted,
        tau=max(1.0, delivered / steps if delivered is not None else 1.0 + accepted / steps)
        if steps and accepted is not None
        else None,
        tau_drafted=1.0 + accepted / c.drafted_steps if c.drafted_steps and accepted is not None else None,
        acceptance_rate=_ratio(accepted, c.draft_tokens),
        draft_tokens_per_step=_ratio(c.draft_tokens, steps),
        survival=surv,
        conditional=cond,
        conditional_exact=exact,
        warnings=warnings,
        notes=notes,
    )


def counter_delta(
    engine: str | None, before: Scrape, after: Scrape, after_drain: Scrape | None = None, tokens_in_window: float = 0.0
) -> tuple[SpecCounts | None, list[str], list[str]]:
    """(counts over a window, unreadable series, warnings) from the engine's counters scraped at
    the window's edges; counts None when the engine exposes none.

    `after_drain` (a scrape once the point's requests ended) replaces `after` for engines that
    count when a request finishes: their window edge is the end of the point's last request.
    """
    a = ADAPTERS.get(engine or "")
    if a is None:
        return None, [], []
    warnings = []
    if a.counters_at_request_end and after_drain is not None:
        after = after_drain
        warnings.append(
            f"{engine} counts when a request finishes: counters read from the window's start to the end of "
            "the point's last request (requests running at the window's start count in full)"
        )
    elif a.counters_at_request_end:
        warnings.append(
            f"{engine} updates these counters when a request finishes: requests straddling the window "
            "edges are counted in the window they finished in"
        )
    bad = a.unreadable(after)
    c0, c1 = a.counts(before), a.counts(after)
    if c1 is None:
        return None, bad, warnings
    # series that appear mid-run (llama.cpp's per-position ones, after a first request) start at 0
    zero = _zero_like(c1)
    c0 = SpecCounts(
        **{
            f.name: getattr(zero, f.name) if c0 is None or getattr(c0, f.name) is None else getattr(c0, f.name)
            for f in fields(SpecCounts)
        }
    )
    delta = c1 - c0
    if not (delta.drafted_steps or delta.decode_steps or delta.draft_tokens) and tokens_in_window > 0:
        warnings.append(
            f"{tokens_in_window:.0f} tokens arrived in the window but the speculative counters did not move"
        )
    return delta, bad, warnings


def counter_window(
    engine: str | None,
    before: Scrape,
    after: Scrape,
    first_tokens: float = 0.0,
    after_drain: Scrape | None = None,
    tokens_in_window: float = 0.0,
):
    """SpecWindow from the engine's counters scraped at a window's edges (see counter_delta)."""
    delta, bad, warnings = counter_delta(engine, before, after, after_drain, tokens_in_window)
    return figures(engine, delta, "server counters", first_tokens=first_tokens, unreadable=bad, warnings=warnings)


# what per-request statistics may lack and counters have (llama.cpp's timings: steps and positions)
FILLABLE = ("drafted_steps", "accepted_per_pos", "reached_per_pos")


def request_window(engine: str | None, records: list[dict], fill: SpecCounts | None = None):
    """SpecWindow pooled over requests that carried per-request statistics, or None. Fields the
    requests' statistics lack are taken from `fill` (the server counters over the same span)."""
    parts = [
        request_counts(engine, r.get("server_stats"), r.get("output_tokens")) for r in records if not r.get("error")
    ]
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    filled = [f for f in FILLABLE if getattr(total, f) is None and fill is not None and getattr(fill, f) is not None]
    for f in filled:
        setattr(total, f, getattr(fill, f))
    w = figures(engine, total, "per-request", first_tokens=float(total.requests))
    if filled:
        w.notes.append(f"{', '.join(filled)} from the server counters")
    return w
