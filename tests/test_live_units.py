"""Pure parts of live measurement: Prometheus parsing and deltas, per-request and per-point figures."""

import json

import pytest

from dsbench.core.loadstats import (
    chunk_consistency,
    latency_pool,
    request_metrics,
    summarise,
    timing_warning,
    tokens_in_window,
)
from dsbench.live import engines, prom
from dsbench.live.client import RequestRecord, _parse_events

# vLLM's counters as prometheus_client exposes them (two DP engines, with _created samples).
VLLM_TEXT = """# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 60.0
vllm:spec_decode_num_drafts_total{engine="1",model_name="m"} 40.0
# HELP vllm:spec_decode_num_drafts_created Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_created gauge
vllm:spec_decode_num_drafts_created{engine="0",model_name="m"} 1.7e9
# HELP vllm:spec_decode_num_draft_tokens_total Number of draft tokens.
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 180.0
vllm:spec_decode_num_draft_tokens_total{engine="1",model_name="m"} 120.0
# HELP vllm:spec_decode_num_accepted_tokens_total Number of accepted tokens.
# TYPE vllm:spec_decode_num_accepted_tokens_total counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 100.0
vllm:spec_decode_num_accepted_tokens_total{engine="1",model_name="m"} 50.0
# HELP vllm:spec_decode_num_accepted_tokens_per_pos_total Accepted tokens per draft position.
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 50.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="1",model_name="m",position="0"} 30.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="1"} 50.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="2"} 20.0
"""


def test_vllm_counters_summed_over_engines_and_deltas():
    after = prom.parse(VLLM_TEXT)
    assert engines.detect(after) == "vllm"
    assert after.values["vllm:spec_decode_num_drafts_total"] == 100
    assert "vllm:spec_decode_num_drafts_created" not in after.values
    zero = prom.parse(
        VLLM_TEXT.replace(" 60.0", " 0.0")
        .replace(" 40.0", " 0.0")
        .replace(" 180.0", " 0.0")
        .replace(" 120.0", " 0.0")
        .replace(" 100.0", " 0.0")
        .replace(" 50.0", " 0.0")
        .replace(" 30.0", " 0.0")
        .replace(" 20.0", " 0.0")
    )
    d = engines.counter_window("vllm", zero, after)
    assert d.tau_drafted == pytest.approx(2.5) and d.acceptance_rate == pytest.approx(0.5)
    assert d.survival == pytest.approx([0.8, 0.5, 0.2])


def test_counter_reset_is_reported_not_used():
    after = prom.parse(VLLM_TEXT)
    restarted = prom.parse(VLLM_TEXT.replace(" 60.0", " 1.0"))
    w = engines.counter_window("vllm", after, restarted)
    assert w.state == "unreadable" and w.tau is None and any("went down" in x for x in w.warnings)


def _rec(start, chunks, tokens, n, error=None):
    """A record starting at `start` s with content chunks at absolute times `chunks` (s)."""
    ns = lambda t: int(t * 1e9)  # noqa: E731
    return {
        "start_ns": ns(start),
        "scheduled_ns": ns(start) - ns(0.01),
        "first_chunk_ns": ns(chunks[0]),
        "last_chunk_ns": ns(chunks[-1]),
        "end_ns": ns(chunks[-1]) + 1,
        "chunk_offsets_s": [c - start for c in chunks],
        "chunk_tokens": tokens,
        "output_tokens": n,
        "error": error,
    }


def test_request_metrics_use_usage_tokens_not_chunks():
    m = request_metrics(_rec(10.0, [10.2, 10.3, 10.4], [1, 4, 4], 9))
    assert m["ttft_s"] == pytest.approx(0.2) and m["e2e_s"] == pytest.approx(0.4)
    assert m["tpot_s"] == pytest.approx(0.2 / 8)  # (E2E - TTFT) / (N - 1), not the chunk gap
    assert m["tps_user"] == pytest.approx(40.0) and m["tokens_per_chunk"] == pytest.approx(4.0)
    assert m["queue_s"] == pytest.approx(0.01)


def test_window_counts_tokens_by_arrival_and_tail_percentiles():
    recs = [
        _rec(0.0, [0.5, 1.5, 2.5], [1, 5, 5], 11),
        _rec(1.0, [1.1, 1.2], [1, 3], 4),
        _rec(1.0, [1.2, 3.0], [1, 9], 10),
        _rec(0.5, [0.6], [1], 1, error="http_5xx"),
    ]
    assert tokens_in_window(recs[0], int(1e9), int(2e9)) == 5
    s = summarise(recs, int(1e9), int(2.9e9), slo=20, concurrency=3)
    assert s["window_s"] == pytest.approx(1.9)
    assert s["output_tok_s"] == pytest.approx((5 + 5 + 1 + 3 + 1) / 1.9)
    assert s["requests_in_window"] == 2  # finished inside the window (the first and second)
    assert s["requests_in_latency_pool"] == 2  # sent after the warm-up, whenever they finished
    assert s["errors"] == {"http_5xx": 1} and s["requests_failed"] == 1
    assert s["tps_user_mean"] == pytest.approx((3 + 9) / (0.1 + 1.8))  # decode tokens / decode time, pooled
    assert s["slo_attainment"] == 0.5
    assert s["run_s"] == pytest.approx(3.0)
    assert s["request_throughput_req_s"] == pytest.approx(3 / 3.0)  # completed / run
    many = [_rec(0.0, [0.1, 0.1 + d], [1, 10], 11) for d in (0.1, 0.2, 0.4, 1.0)]
    t = summarise(many, 0, int(5e9))
    assert t["tps_user_p90"] <= t["tps_user_p50"] <= t["tps_user_mean"] * 2  # p90 = slow tail
    assert t["tpot_s_p90"] >= t["tpot_s_p50"]


def test_chunk_consistency_flags_coalescing_and_splitting():
    assert chunk_consistency(4.0, 4.1) is None
    assert "coalesced" in chunk_consistency(8.0, 4.0)
    assert "splits" in chunk_consistency(1.0, 4.0)
    assert chunk_consistency(None, 4.0) is None


def test_request_rate_counts_requests_that_straddle_the_window():
    """64 users, requests of 4 s, a 2 s window: none starts and ends inside it, yet the rate is
    completed requests over the run (vLLM's convention) and agrees with tokens / tokens per request."""
    recs = [_rec(0.05 * i, [0.05 * i + 0.1 + 0.1 * k for k in range(40)], [1] * 40, 40) for i in range(64)]
    s = summarise(recs, int(1e9), int(3e9), concurrency=64)
    run = max(r["end_ns"] for r in recs) / 1e9 - 0.0
    assert s["request_throughput_req_s"] == pytest.approx(64 / run)
    assert s["output_tok_s_run"] / 40 == pytest.approx(s["request_throughput_req_s"])
    assert s["requests_in_latency_pool"] == 44 and s["tps_user_p50"] == pytest.approx(10.0)


def test_one_burst_request_cannot_move_the_mean_speed():
    normal = [_rec(0.0, [0.1 + 0.002 * k for k in range(100)], [1] * 100, 100) for _ in range(20)]
    burst = _rec(0.0, [0.1, 0.1 + 1e-6], [1, 99], 100)  # every chunk but the first arrived together
    s = summarise([*normal, burst], 0, int(1e9))
    assert s["tps_user_mean"] == pytest.approx(s["tps_user_p50"], rel=0.06)  # a mean of 1/TPOT would read ~4.7 million


def test_warm_up_longer_than_every_request_is_said():
    recs = [_rec(0.0, [0.1, 0.2, 0.3], [1, 1, 1], 3)]
    pool, note = latency_pool(recs, int(1e9))
    assert pool == recs and "warm-up" in note


def _events(*payloads):
    return [(1_000_000 * (i + 1), json.dumps(p).encode()) for i, p in enumerate(payloads)]


@pytest.mark.parametrize(
    "tokens, why",
    [(10**15, "exceeds max_tokens"), (-7, "negative"), (1, "below the 3 content chunks"), (2.5, "not a whole number")],
)
def test_impossible_usage_is_flagged_not_reported(tokens, why):
    rec = RequestRecord(id=0, point="c=1", scheduled_ns=0, max_tokens=64)
    chunk = {"choices": [{"delta": {"content": "x"}}]}
    _parse_events(
        rec,
        _events(
            chunk,
            chunk,
            chunk,
            {"choices": [{"delta": {}, "finish_reason": "length"}]},
            {"choices": [], "usage": {"completion_tokens": tokens, "prompt_tokens": 3}},
        ),
        True,
        True,
    )
    assert rec.output_tokens is None and why in rec.usage_error and rec.error is None


def test_per_request_statistics_are_kept_from_the_last_event():
    rec = RequestRecord(id=0, point="c=1", scheduled_ns=0, max_tokens=64)
    timings = {"predicted_n": 3, "draft_n": 4, "draft_n_accepted": 1}
    _parse_events(
        rec,
        _events(
            {"choices": [{"delta": {"content": "x"}}]},
            {"choices": [{"delta": {"content": "y"}}]},
            {"choices": [], "usage": {"completion_tokens": 3}, "timings": timings},
        ),
        True,
        True,
    )
    assert rec.server_stats == {"timings": timings} and rec.output_tokens == 3


def test_client_timing_error_is_judged_per_token():
    # a stamp 4 ms late moves a 64-token request's TPOT by 4/63 ms: fine against 6 ms
    assert timing_warning(0.006, 0.004, 64, "event-loop delay") is None
    # a starved client: every chunk read at the end, TPOT 0.009 ms where the engine took 2 ms
    w = timing_warning(0.000009, 0.5, 64, "event-loop delay")
    assert w and "exceeds 5% of TPOT" in w


def test_poisson_arrivals_are_a_seeded_poisson_process_drawn_up_front():
    """10,000 gaps at 4 requests/s (seed 0): mean 0.25 s within 3 %, exponential by a KS test
    (p > 0.01); the same seed gives the same schedule; a duration bounds it."""
    import numpy as np
    from scipy.stats import kstest

    from dsbench.core.arrivals import poisson_arrivals

    t = poisson_arrivals(4.0, seed=0, count=10_000)
    gaps = np.diff(np.concatenate([[0.0], t]))
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)
    assert kstest(gaps, "expon", args=(0, 0.25)).pvalue > 0.01
    assert np.array_equal(t, poisson_arrivals(4.0, seed=0, count=10_000))
    d = poisson_arrivals(50.0, seed=1, duration_s=10.0)
    assert d.max() < 10.0 and len(d) == pytest.approx(500, rel=0.15) and np.all(np.diff(d) > 0)
    with pytest.raises(ValueError):
        poisson_arrivals(4.0, count=3, duration_s=1.0)


def test_a_load_point_written_before_the_rename_reads_under_the_new_name():
    """request_throughput_s (0.2: `_s` read as seconds elsewhere) is read as request_throughput_req_s."""
    from dsbench.documents import LoadPoint

    point = LoadPoint.model_validate({"label": "c=1", "request_throughput_s": 2.5}).model_dump(by_alias=True)
    assert point["request_throughput_req_s"] == 2.5 and "request_throughput_s" not in point


def test_goodput_counts_requests_meeting_every_slo_given():
    """Four requests (TTFT 0.1, 0.1, 0.5, 0.5 s; per-user speed 90, 10, 90, 10 tok/s): per-user
    speed >= 20 alone passes half, TTFT <= 0.2 s alone half, both together a quarter; goodput is the
    request rate times the joint attainment."""
    recs = [
        _rec(0.0, [ttft, ttft + 9 / speed], [1, 9], 10)
        for ttft, speed in ((0.1, 90.0), (0.1, 10.0), (0.5, 90.0), (0.5, 10.0))
    ]
    s = summarise(recs, 0, int(2e9), slo=20, ttft_slo_s=0.2)
    assert s["slo_attainment_tps_user"] == 0.5 and s["slo_attainment_ttft_s"] == 0.5
    assert s["slo_attainment"] == 0.25
    assert s["goodput_requests_s"] == pytest.approx(s["request_throughput_req_s"] * 0.25)
    t = summarise(recs, 0, int(2e9), tpot_slo_s=0.05)  # TPOT 1/90 and 1/10 s
    assert t["slo_attainment"] == 0.5 and t["slo"] is None
    assert "slo_attainment" not in summarise(recs, 0, int(2e9))
