"""Pure parts of live measurement: Prometheus parsing and deltas, per-request and per-point figures."""

import pytest

from dsbench.core.loadstats import chunk_consistency, request_metrics, summarise, tokens_in_window
from dsbench.live import prom

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
    assert after.engine == "vllm"
    assert after.values["vllm:spec_decode_num_drafts_total"] == 100
    assert "vllm:spec_decode_num_drafts_created" not in after.values
    zero = prom.parse(VLLM_TEXT.replace(" 60.0", " 0.0").replace(" 40.0", " 0.0").replace(" 180.0", " 0.0")
                      .replace(" 120.0", " 0.0").replace(" 100.0", " 0.0").replace(" 50.0", " 0.0").replace(" 30.0", " 0.0")
                      .replace(" 20.0", " 0.0"))
    d = prom.spec_delta(zero, after)
    assert d["tau"] == pytest.approx(2.5) and d["acceptance_rate"] == pytest.approx(0.5)
    assert d["survival_per_draft"] == pytest.approx([0.8, 0.5, 0.2])


def test_counter_reset_is_reported_not_used():
    after = prom.parse(VLLM_TEXT)
    restarted = prom.parse(VLLM_TEXT.replace(" 60.0", " 1.0"))
    assert "error" in prom.spec_delta(after, restarted)


def test_sglang_counter_pair():
    text = ("# TYPE sglang:spec_verify_calls_total counter\nsglang:spec_verify_calls_total{model_name=\"m\"} 100.0\n"
            "# TYPE sglang:generation_tokens_total counter\nsglang:generation_tokens_total{model_name=\"m\"} 350.0\n")
    before = prom.parse(text.replace("100.0", "0.0").replace("350.0", "0.0"))
    after = prom.parse(text)
    assert after.engine == "sglang"
    assert prom.spec_delta(before, after)["tau"] == pytest.approx(3.5)


def _rec(start, chunks, tokens, n, error=None):
    """A record starting at `start` s with content chunks at absolute times `chunks` (s)."""
    ns = lambda t: int(t * 1e9)  # noqa: E731
    return {"start_ns": ns(start), "scheduled_ns": ns(start) - ns(0.01), "first_chunk_ns": ns(chunks[0]),
            "last_chunk_ns": ns(chunks[-1]), "end_ns": ns(chunks[-1]) + 1, "chunk_offsets_s": [c - start for c in chunks],
            "chunk_tokens": tokens, "output_tokens": n, "error": error}


def test_request_metrics_use_usage_tokens_not_chunks():
    m = request_metrics(_rec(10.0, [10.2, 10.3, 10.4], [1, 4, 4], 9))
    assert m["ttft_s"] == pytest.approx(0.2) and m["e2e_s"] == pytest.approx(0.4)
    assert m["tpot_s"] == pytest.approx(0.2 / 8)  # (E2E - TTFT) / (N - 1), not the chunk gap
    assert m["tps_user"] == pytest.approx(40.0) and m["tokens_per_chunk"] == pytest.approx(4.0)
    assert m["queue_s"] == pytest.approx(0.01)


def test_window_counts_tokens_by_arrival_and_tail_percentiles():
    recs = [_rec(0.0, [0.5, 1.5, 2.5], [1, 5, 5], 11), _rec(1.0, [1.1, 1.2], [1, 3], 4),
            _rec(1.0, [1.2, 3.0], [1, 9], 10), _rec(0.5, [0.6], [1], 1, error="http_5xx")]
    assert tokens_in_window(recs[0], int(1e9), int(2e9)) == 5
    s = summarise(recs, int(1e9), int(2.9e9), slo=20, concurrency=3)
    assert s["window_s"] == pytest.approx(1.9)
    assert s["output_tok_s"] == pytest.approx((5 + 5 + 1 + 3 + 1) / 1.9)
    assert s["requests_in_window"] == 1  # only the second one started and finished inside
    assert s["errors"] == {"http_5xx": 1} and s["requests_failed"] == 1
    assert s["tps_user_mean"] == pytest.approx(1 / (0.1 / 3))
    assert s["slo_attainment"] == 1.0
    many = [_rec(0.0, [0.1, 0.1 + d], [1, 10], 11) for d in (0.1, 0.2, 0.4, 1.0)]
    t = summarise(many, 0, int(5e9))
    assert t["tps_user_p90"] <= t["tps_user_p50"] <= t["tps_user_mean"] * 2  # p90 = slow tail
    assert t["tpot_s_p90"] >= t["tpot_s_p50"]


def test_chunk_consistency_flags_coalescing_and_splitting():
    assert chunk_consistency(4.0, 4.1) is None
    assert "coalesced" in chunk_consistency(8.0, 4.0)
    assert "splits" in chunk_consistency(1.0, 4.0)
    assert chunk_consistency(None, 4.0) is None
