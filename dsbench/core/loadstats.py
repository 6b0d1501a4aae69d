"""Load-point statistics: pure functions over request records and a steady-state window.

Definitions (stated in every summary):
- TTFT = first content chunk - send; E2E = last content chunk - send;
  TPOT = (E2E - TTFT) / (N - 1) with N the server's usage token count.
- per-user speed = 1 / TPOT per request (decode speed the user sees; correct under speculative
  decoding, where per-chunk gaps overstate latency by about tau). Its pXX is the speed that XX %
  of requests reach or exceed (the slow tail, the SLO-relevant one).
- throughput = output tokens whose chunks arrived inside the window / window length.
- Latency statistics are over completed requests sent after the warm-up (whenever they finished);
  request rate and goodput are completed requests over the run (vLLM's benchmark convention).
- per-user speed mean = decode tokens / decode time pooled over those requests.
"""

from __future__ import annotations

import numpy as np

from .uncertainty import Estimate, block_length, block_ratio_se, percentile_se, rate_se

NS = 1e9
THROUGHPUT_BINS = 200  # time bins of the window for throughput's block bootstrap


def _pct(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if len(x) else None


def _dist(x: np.ndarray, prefix: str) -> dict:
    return {
        f"{prefix}_mean": float(x.mean()) if len(x) else None,
        **{f"{prefix}_p{q}": _pct(x, q) for q in (50, 90, 99)},
    }


def request_metrics(r: dict) -> dict:
    """Derived per-request figures (seconds, tokens) from one raw record dict."""
    out = {
        "ttft_s": None,
        "e2e_s": None,
        "tpot_s": None,
        "tps_user": None,
        "queue_s": None,
        "chunks": len(r.get("chunk_offsets_s") or []),
        "tokens_per_chunk": None,
    }
    if r.get("start_ns") and r.get("scheduled_ns") is not None:
        out["queue_s"] = max(0.0, (r["start_ns"] - r["scheduled_ns"]) / NS)
    if r.get("error") or r.get("first_chunk_ns") is None:
        return out
    out["ttft_s"] = (r["first_chunk_ns"] - r["start_ns"]) / NS
    out["e2e_s"] = (r["last_chunk_ns"] - r["start_ns"]) / NS
    n = r.get("output_tokens")
    if n and n > 1 and out["e2e_s"] > out["ttft_s"]:
        out["tpot_s"] = (out["e2e_s"] - out["ttft_s"]) / (n - 1)
        out["tps_user"] = 1.0 / out["tpot_s"]
    if n and out["chunks"] > 1:
        first = (r.get("chunk_tokens") or [1])[0]
        out["tokens_per_chunk"] = (n - first) / (out["chunks"] - 1)  # decode chunks only
    return out


def _chunks(r: dict) -> tuple[np.ndarray, np.ndarray]:
    """(arrival ns, tokens) of one request's content chunks."""
    offs = r.get("chunk_offsets_s") or []
    t = r["start_ns"] + np.asarray(offs, dtype=float) * NS
    per = r.get("chunk_tokens")
    if per is None:  # no per-chunk counts: spread the usage total evenly over chunks
        return t, np.full(len(offs), (r.get("output_tokens") or len(offs)) / max(1, len(offs)))
    return t, np.asarray(per, dtype=float)


def tokens_in_window(r: dict, t0_ns: int, t1_ns: int) -> float:
    """Output tokens of one request whose chunks arrived in [t0, t1]."""
    t, per = _chunks(r)
    return float(per[(t >= t0_ns) & (t <= t1_ns)].sum())


def tokens_per_bin(records: list[dict], t0_ns: int, t1_ns: int, bins: int) -> np.ndarray:
    """Output tokens (of requests that did not fail) whose chunks arrived in each of `bins` equal
    slices of [t0, t1]: the window's throughput as a time series."""
    out = np.zeros(bins)
    width = (t1_ns - t0_ns) / bins
    for r in records:
        if r.get("error") not in (None, "cancelled"):
            continue
        t, per = _chunks(r)
        inside = (t >= t0_ns) & (t <= t1_ns)
        np.add.at(out, np.minimum(((t[inside] - t0_ns) / width).astype(int), bins - 1), per[inside])
    return out


def chunks_in_window(records: list[dict], t0_ns: int, t1_ns: int) -> int:
    """Content chunks (SSE events with text) that arrived inside the window."""
    n = 0
    for r in records:
        offs = r.get("chunk_offsets_s")
        if offs:
            t = r["start_ns"] + np.asarray(offs) * NS
            n += int(((t >= t0_ns) & (t <= t1_ns)).sum())
    return n


def concurrency_achieved(records: list[dict], t0_ns: int, t1_ns: int) -> float | None:
    """Requests in flight over the window, time-averaged: sum of each request's time inside
    [t0, t1] (from send to end; one still open at t1 counts to t1) over the window's length.
    What the server actually saw, next to the concurrency asked for."""
    if t1_ns <= t0_ns:
        return None
    busy = 0
    for r in records:
        start, end = r.get("start_ns"), r.get("end_ns") or t1_ns
        if start:
            busy += max(0, min(end, t1_ns) - max(start, t0_ns))
    return busy / (t1_ns - t0_ns)


def latency_pool(records: list[dict], t0_ns: int) -> tuple[list[dict], str | None]:
    """The completed requests latency statistics are taken over: those sent after the warm-up
    (whenever they finished), or, when every completed request was sent during it, all of them
    (with a note saying so)."""
    done = [r for r in records if not r.get("error")]
    pool = [r for r in done if r.get("start_ns", 0) >= t0_ns]
    if done and not pool:
        return done, "every completed request was sent during the warm-up: latency figures include them"
    return pool, None


def summarise(
    records: list[dict],
    t0_ns: int,
    t1_ns: int,
    slo: float | None = None,
    gpus: int = 1,
    concurrency: int | None = None,
    ttft_slo_s: float | None = None,
    tpot_slo_s: float | None = None,
) -> dict:
    """Figures of one load point; [t0_ns, t1_ns] is its steady-state window.

    Request rate and goodput are completed requests over the run (first send to last
    completion), as vLLM's benchmark counts them; `*_window` figures count the window only.
    Goodput counts the requests meeting every SLO given: per-user speed >= `slo` (tok/s), TTFT
    <= `ttft_slo_s`, TPOT <= `tpot_slo_s` (seconds); each one's attainment is kept too.
    """
    window_s = (t1_ns - t0_ns) / NS
    errors: dict[str, int] = {}
    for r in records:
        if r.get("error") and r["error"] != "cancelled":
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    done = [r for r in records if not r.get("error")]
    starts = [r["start_ns"] for r in records if r.get("start_ns") is not None]
    ends = [r["end_ns"] for r in done if r.get("end_ns") is not None]
    run_s = (max(ends) - min(starts)) / NS if ends and starts else None
    pool, pool_note = latency_pool(records, t0_ns)
    derived = [request_metrics(r) for r in pool]
    col = {
        k: np.array([d[k] for d in derived if d[k] is not None], dtype=float)
        for k in ("ttft_s", "e2e_s", "tpot_s", "tps_user", "queue_s", "tokens_per_chunk")
    }
    tokens = sum(tokens_in_window(r, t0_ns, t1_ns) for r in records if r.get("error") in (None, "cancelled"))
    thr = tokens / window_s if window_s > 0 else None
    run_tokens = sum(r.get("output_tokens") or 0 for r in done)
    in_window = sum(1 for r in done if t0_ns <= (r.get("end_ns") or 0) <= t1_ns)
    tps = np.sort(col["tps_user"])
    out = {
        "window_s": window_s,
        "run_s": run_s,
        "requests": len(records),
        "requests_ok": len(done),
        "requests_failed": sum(errors.values()),
        "requests_cancelled": sum(1 for r in records if r.get("error") == "cancelled"),  # cut off after the drain time
        "requests_bad_usage": sum(1 for r in records if r.get("usage_error")),
        "errors": errors,
        "requests_in_window": in_window,
        "requests_in_latency_pool": len(derived),
        "latency_pool_note": pool_note,
        "request_throughput_req_s": len(done) / run_s if run_s else None,
        "request_throughput_window_s": in_window / window_s if window_s > 0 else None,
        "output_tok_s": thr,
        "output_tok_s_gpu": thr / gpus if thr is not None else None,
        "output_tok_s_run": run_tokens / run_s if run_s else None,
        "tps_user_mean": pooled_speed(pool, derived),
        # pXX of speed: reached by XX % of requests, i.e. the (100 - XX)th percentile
        **{f"tps_user_p{q}": _pct(tps, 100 - q) for q in (50, 90, 99)},
        "tps_user_aggregate": thr / concurrency if thr is not None and concurrency else None,
        "concurrency_achieved": concurrency_achieved(records, t0_ns, t1_ns),
        **_dist(col["ttft_s"], "ttft_s"),
        **_dist(col["tpot_s"], "tpot_s"),
        **_dist(col["e2e_s"], "e2e_s"),
        **_dist(col["queue_s"], "queue_s"),
        "tokens_per_chunk_mean": float(col["tokens_per_chunk"].mean()) if len(col["tokens_per_chunk"]) else None,
        "chunks_in_window": chunks_in_window(records, t0_ns, t1_ns),
        "first_tokens_in_window": sum(
            1 for r in records if r.get("first_chunk_ns") and t0_ns <= r["first_chunk_ns"] <= t1_ns
        ),
    }
    out["uncertainty"] = _uncertainty(records, t0_ns, t1_ns, col, out)
    lags = np.concatenate([np.asarray(r["chunk_lag_s"]) for r in records if r.get("chunk_lag_s")] or [np.zeros(0)])
    if len(lags):  # server-stamped chunks: how late the client saw them (its timing error)
        out["client_lag_s_p50"], out["client_lag_s_p99"] = _pct(lags, 50), _pct(lags, 99)
    out.update(_goodput(derived, out["request_throughput_req_s"], slo, ttft_slo_s, tpot_slo_s))
    return out


def _goodput(derived: list[dict], rate: float | None, slo, ttft_slo_s, tpot_slo_s) -> dict:
    """SLO attainment (each SLO alone, and all together) over the requests that have every figure
    the given SLOs judge, and goodput = request rate x joint attainment."""
    checks = {
        "tps_user": (slo, lambda v, lim: v >= lim),
        "ttft_s": (ttft_slo_s, lambda v, lim: v <= lim),
        "tpot_s": (tpot_slo_s, lambda v, lim: v <= lim),
    }
    given = {k: c for k, c in checks.items() if c[0] is not None}
    if not given:
        return {}
    judged = [d for d in derived if all(d[k] is not None for k in given)]
    out = {"slo": slo, "slo_ttft_s": ttft_slo_s, "slo_tpot_s": tpot_slo_s}
    passes = {k: [ok(d[k], lim) for d in judged] for k, (lim, ok) in given.items()}
    for k, flags in passes.items():
        out[f"slo_attainment_{k}"] = sum(flags) / len(flags) if flags else None
    joint = [all(p) for p in zip(*passes.values())]
    out["slo_attainment"] = sum(joint) / len(joint) if joint else None
    out["goodput_requests_s"] = rate * out["slo_attainment"] if rate is not None and joint else None
    return out


def _uncertainty(records: list[dict], t0_ns: int, t1_ns: int, col: dict, out: dict) -> dict[str, dict]:
    """Standard errors of the gated figures from this point's own requests and time bins."""
    est: dict[str, Estimate] = {}
    for q in (50, 90):  # pXX of speed is the (100 - XX)th percentile
        est[f"tps_user_p{q}"] = percentile_se(col["tps_user"], 100 - q, seed=q)
    for name in ("ttft_s", "tpot_s"):
        for q in (50, 99):
            est[f"{name}_p{q}"] = percentile_se(col[name], q, seed=q)
    est["error_rate"] = rate_se(out["requests_failed"], out["requests"])
    window_s = (t1_ns - t0_ns) / NS
    if window_s > 0:
        per_bin = tokens_per_bin(records, t0_ns, t1_ns, THROUGHPUT_BINS)
        width = window_s / THROUGHPUT_BINS
        life = float(np.median(col["e2e_s"])) / width if len(col["e2e_s"]) else THROUGHPUT_BINS
        est["output_tok_s"] = block_ratio_se(
            per_bin, np.full(THROUGHPUT_BINS, width), block_length(THROUGHPUT_BINS, life)
        )
    return {k: vars(v) for k, v in est.items()}


def timing_warning(
    tpot_s: float | None, lag_s: float | None, tokens: float | None, what: str, limit: float = 0.05
) -> str | None:
    """A warning when the client's own timing error could move TPOT by more than `limit` of it.

    A stamp late by `lag_s` moves a request's TPOT by at most lag_s / (N - 1), N its tokens.
    """
    if tpot_s is None or lag_s is None or tpot_s <= 0 or not tokens or tokens < 2:
        return None
    err = lag_s / (tokens - 1)
    if err <= limit * tpot_s:
        return None
    return (
        f"client timing error ({what} p99 {lag_s * 1e3:.2f} ms, {err * 1e3:.3f} ms per token) exceeds {limit:.0%} of "
        f"TPOT p50 ({tpot_s * 1e3:.3f} ms): latency figures reflect the client, not the server (a starved or shared "
        "CPU?)"
    )


def chunk_consistency(tokens_per_chunk: float | None, tau: float | None, tolerance: float = 0.15) -> str | None:
    """A warning when tokens per SSE chunk and the engine's tau disagree, else None.

    One chunk per decode step carries tau tokens on average; more means chunks were coalesced
    (a buffering proxy, or a server stream interval > 1); fewer means steps were split.
    """
    if tokens_per_chunk is None or not tau:
        return None
    ratio = tokens_per_chunk / tau
    if ratio > 1 + tolerance:
        return (
            f"chunks carry {tokens_per_chunk:.2f} tokens but tau is {tau:.2f}: chunks are being coalesced "
            "(buffering proxy or server stream interval); per-chunk latency is not per-step latency"
        )
    if ratio < 1 - tolerance:
        return (
            f"chunks carry {tokens_per_chunk:.2f} tokens but tau is {tau:.2f}: "
            "the server splits decode steps into several chunks"
        )
    return None


SPEED_STATS = ("mean", "p50", "p90")


def pooled_speed(pool: list[dict], derived: list[dict]) -> float | None:
    """Decode tokens over decode time, pooled over completed requests (`derived`: their
    request_metrics), tok/s: one request whose chunks arrive together adds its tokens but next to
    no time, so it cannot run away with the mean (a mean of 1/TPOT can)."""
    dec = [(r["output_tokens"] - 1, d["e2e_s"] - d["ttft_s"]) for r, d in zip(pool, derived) if d["tpot_s"] is not None]
    time = sum(t for _, t in dec)
    return sum(n for n, _ in dec) / time if time > 0 else None


def speed_stat(pool: list[dict], stat: str) -> float | None:
    """Per-user speed (tok/s) of completed requests: `mean` pooled (pooled_speed), `pXX` the
    speed XX % of them reach."""
    derived = [request_metrics(r) for r in pool]
    if stat == "mean":
        return pooled_speed(pool, derived)
    speeds = np.array([d["tps_user"] for d in derived if d["tps_user"] is not None])
    return _pct(speeds, 100 - int(stat[1:]))


def window_figures(records: list[dict], t0_ns: int, t1_ns: int, windows: int, stat: str) -> list[dict]:
    """The window [t0, t1] cut into `windows` equal parts, each with its own per-user speed
    (`stat` over the completed requests sent in it, whenever they ended: taking those that ended
    in it instead would favour the fast ones) and throughput (tokens arriving in it / its
    length): repeated windows, for intervals."""
    width = (t1_ns - t0_ns) / windows
    done = [r for r in records if not r.get("error") and r.get("start_ns")]
    parts = []
    for k in range(windows):
        a, b = t0_ns + k * width, t0_ns + (k + 1) * width
        sent = [r for r in done if a <= r["start_ns"] < b]
        tokens = sum(tokens_in_window(r, a, b) for r in records if r.get("error") in (None, "cancelled"))
        parts.append({"speed": speed_stat(sent, stat), "throughput": tokens / (width / NS), "requests": len(sent)})
    return parts
