"""Engine adapters on real exposition text and response bodies (captured from vLLM 0.32.0's CPU
build and llama.cpp's llama-server 0.3.36 on this machine; SGLang's composed from its source's
metric and field names)."""

import json
import re
from pathlib import Path

import pytest

from dsbench.documents import SpecWindow
from dsbench.live import engines

FIX = Path(__file__).parent / "fixtures" / "engines"


def text(name: str) -> str:
    return (FIX / name).read_text()


def counter(exposition: str, name: str, **labels) -> float:
    """A sample's value summed over label sets, by a plain regex (independent of the adapters)."""
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", exposition, re.M):
        if all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def last_event(stream: str) -> dict:
    return [json.loads(line[5:]) for line in stream.splitlines() if line.startswith("data:") and "[DONE]" not in line][
        -1
    ]


ZERO = engines.parse_metrics("")


def test_vllm_counters_give_vllms_own_figures():
    t = text("vllm-0.32.0-cpu-ngram.metrics.txt")
    sc = engines.parse_metrics(t)
    assert engines.detect(sc) == "vllm"
    w = engines.counter_window("vllm", ZERO, sc, first_tokens=2)
    drafts, accepted = (
        counter(t, "vllm:spec_decode_num_drafts_total"),
        counter(t, "vllm:spec_decode_num_accepted_tokens_total"),
    )
    assert w.state == "active" and w.source == "server counters" and w.engine == "vllm"
    assert w.tau_drafted == pytest.approx(1 + accepted / drafts)  # vLLM's "mean acceptance length"
    assert w.acceptance_rate == pytest.approx(accepted / counter(t, "vllm:spec_decode_num_draft_tokens_total"))
    per_pos = [
        counter(t, "vllm:spec_decode_num_accepted_tokens_per_pos_total", position=str(k)) / drafts for k in range(3)
    ]
    assert w.survival == pytest.approx(per_pos)
    # decode steps: at least the drafted ones (tokens accepted past max_tokens were dropped)
    gen = counter(t, "vllm:generation_tokens_total")
    assert w.decode_steps == max(gen - accepted - 2, drafts) and 1 <= w.tau <= w.tau_drafted
    assert not w.conditional_exact and w.conditional is None


def test_vllm_per_request_metrics_match_its_counters():
    ev = last_event(text("vllm-0.32.0-cpu-ngram.stream.txt"))
    stats = {k: ev[k] for k in engines.PER_REQUEST_KEYS if k in ev}
    c = engines.request_counts("vllm", stats, ev["usage"]["completion_tokens"])
    sd = ev["metrics"]["speculative_decoding"]
    assert c.drafted_steps == sd["num_spec_steps"] and c.accepted == sd["num_accepted_draft_tokens"]
    w = engines.figures("vllm", c, "per-request", first_tokens=1)
    assert w.tau_drafted == pytest.approx(sd["mean_acceptance_length"])
    assert w.acceptance_rate == pytest.approx(sd["draft_acceptance_rate"])
    hist = sd["acceptance_histogram"]  # survival at position k: steps accepting more than k drafts
    assert w.survival == pytest.approx([sum(hist[k + 1 :]) / sum(hist) for k in range(len(hist) - 1)])


def test_vllm_without_speculation_is_still_vllm():
    t = "\n".join(line for line in text("vllm-0.32.0-cpu-ngram.metrics.txt").splitlines() if "spec_decode" not in line)
    sc = engines.parse_metrics(t)
    assert engines.detect(sc) == "vllm"
    w = engines.counter_window("vllm", sc, sc)
    assert w.state == "unknown" and w.tau is None


def test_llama_cpp_counters_and_timings():
    t = text("llama.cpp-0.3.36-draft.metrics.txt")
    sc = engines.parse_metrics(t)
    assert engines.detect(sc) == "llama.cpp"
    assert (
        engines.detect(None, owned_by="llamacpp") == "llama.cpp"
        and engines.detect(None, server_header="llama.cpp") == "llama.cpp"
    )
    w = engines.counter_window("llama.cpp", ZERO, sc, first_tokens=1)
    drafts = counter(t, "llamacpp:spec_decode_num_drafts_total")
    assert w.state == "active" and w.tau_drafted == pytest.approx(
        1 + counter(t, "llamacpp:spec_decode_num_accepted_tokens_total") / drafts
    )
    assert w.survival == pytest.approx(
        [
            counter(t, "llamacpp:spec_decode_num_accepted_tokens_per_pos_total", position=str(k)) / drafts
            for k in range(4)
        ]
    )
    assert any("when a request finishes" in x for x in w.warnings)
    ev = last_event(text("llama.cpp-0.3.36-draft.stream.txt"))
    c = engines.request_counts("llama.cpp", {"timings": ev["timings"]}, ev["usage"]["completion_tokens"])
    r = engines.figures("llama.cpp", c, "per-request", first_tokens=1)
    tm = ev["timings"]
    assert r.acceptance_rate == pytest.approx(tm["draft_n_accepted"] / tm["draft_n"])
    assert r.decode_steps == tm["predicted_n"] - 1 - tm["draft_n_accepted"]
    assert r.tau == pytest.approx(1 + tm["draft_n_accepted"] / r.decode_steps)


SGLANG = """# HELP sglang:spec_accept_length Mean acceptance length of speculative decoding.
# TYPE sglang:spec_accept_length gauge
sglang:spec_accept_length{engine_type="unified",model_name="m",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 2.5
# TYPE sglang:spec_verify_calls_total counter
sglang:spec_verify_calls_total{engine_type="unified",model_name="m"} VERIFY
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{engine_type="unified",is_streaming="true",model_name="m"} GEN
"""


def test_sglang_counter_pair_and_per_request_details():
    before = engines.parse_metrics(SGLANG.replace("VERIFY", "100.0").replace("GEN", "260.0"))
    after = engines.parse_metrics(SGLANG.replace("VERIFY", "200.0").replace("GEN", "530.0"))
    assert engines.detect(after) == "sglang"
    w = engines.counter_window("sglang", before, after, first_tokens=10)  # 270 tokens, 10 of them first tokens
    assert w.decode_steps == 100 and w.accepted_tokens == 160 and w.tau == pytest.approx(2.6)
    body = {
        "sglext": {
            "spec_tokens_details": {
                "spec_verify_ct": 20,
                "spec_num_correct_drafts": 30,
                "spec_num_proposed_drafts": 60,
                "spec_accept_length": 2.55,
                "spec_correct_drafts_histogram": [4, 6, 6, 4],
            }
        }
    }
    c = engines.request_counts("sglang", body, 51)
    r = engines.figures("sglang", c, "per-request", first_tokens=1)
    assert r.tau == pytest.approx(2.5) and r.acceptance_rate == pytest.approx(0.5)
    meta = engines.request_counts("sglang", {"meta_info": body["sglext"]["spec_tokens_details"]}, 51)
    assert meta == c


def test_dsbench_counts_every_decode_step_and_exact_conditionals():
    t = """# TYPE vllm:spec_decode_num_drafts counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 80.0
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 240.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 120.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 60.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="1"} 40.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="2"} 20.0
dsbench:spec_reached_per_pos_total{engine="0",model_name="m",position="0"} 80.0
dsbench:spec_reached_per_pos_total{engine="0",model_name="m",position="1"} 50.0
dsbench:spec_reached_per_pos_total{engine="0",model_name="m",position="2"} 30.0
dsbench:spec_rounds_total{engine="0",model_name="m"} 100.0
"""
    sc = engines.parse_metrics(t)
    assert engines.detect(sc) == "dsbench"
    w = engines.counter_window("dsbench", ZERO, sc)
    assert w.tau == pytest.approx(2.2) and w.tau_drafted == pytest.approx(2.5)  # 20 rounds verified nothing
    assert w.conditional_exact and w.conditional == pytest.approx([0.75, 0.8, 2 / 3])
    assert w.draft_tokens_per_step == pytest.approx(2.4)


def test_unreadable_series_are_named_and_resets_refused():
    t = text("vllm-0.32.0-cpu-ngram.metrics.txt")
    odd = engines.parse_metrics(t + 'vllm:spec_decode_num_mystery_total{engine="0"} 3.0\n')
    w = engines.counter_window("vllm", ZERO, odd)
    assert w.state == "unreadable" and w.unreadable_series == ["vllm:spec_decode_num_mystery_total"]
    bad_pos = engines.parse_metrics(t.replace('position="1"', 'position="one"'))
    assert engines.counter_window("vllm", ZERO, bad_pos).state == "unreadable"
    sc = engines.parse_metrics(t)
    restarted = engines.counter_window("vllm", sc, ZERO.__class__(values={k: 0.0 for k in sc.values}, per_pos={}))
    assert restarted.state in ("unreadable", "unknown")


def test_counters_that_did_not_move_while_tokens_flowed_are_said():
    t = text("llama.cpp-0.3.36-draft.metrics.txt")
    sc = engines.parse_metrics(t)
    w = engines.counter_window("llama.cpp", sc, sc, tokens_in_window=1693)
    assert any("did not move" in x for x in w.warnings) and w.state == "inactive"
    # an engine that counts at request end is read to the end of the point's last request
    later = engines.parse_metrics(
        t.replace("num_draft_tokens_total 34", "num_draft_tokens_total 90").replace(
            "num_accepted_tokens_total 30", "num_accepted_tokens_total 70"
        )
    )
    w = engines.counter_window("llama.cpp", sc, sc, after_drain=later, tokens_in_window=1693)
    assert (
        w.state == "active" and w.draft_tokens == 56 and any("end of the point's last request" in x for x in w.warnings)
    )


def test_load_v1_spec_dicts_still_read():
    w = SpecWindow.model_validate(
        {
            "engine": "dsbench",
            "source": "measured (server counters)",
            "drafts": 80.0,
            "draft_tokens": 240.0,
            "accepted": 120.0,
            "tau": 2.5,
            "acceptance_rate": 0.5,
            "survival_per_draft": [0.75, 0.5, 0.25],
            "rounds": 100.0,
            "tau_per_round": 2.2,
            "conditional": [0.75, 0.8, 0.66],
        }
    )
    assert w.state == "active" and w.tau == 2.2 and w.tau_drafted == 2.5 and w.draft_tokens_per_step == 2.4
    assert SpecWindow.model_validate({"engine": "none", "source": "measured (server counters)"}).state == "unknown"
