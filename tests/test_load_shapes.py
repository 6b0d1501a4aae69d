"""Load shapes (issue 15): bursty arrivals, ramp-up and seeded prompt order, drawn up front and
checked against a real server (`dsbench serve --sim`) without wall-clock assertions."""

import json

import numpy as np
import pytest
from scipy.stats import kstest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.core.arrivals import arrivals, poisson_arrivals, prompt_order
from dsbench.readers import read_load
from dsbench.shipped import read_workload
from tests.servers import sim_server

runner = CliRunner()


def test_bursty_gaps_are_gamma_with_the_asked_shape():
    """20,000 gaps at 4 requests/s, burstiness 0.25 (seed 0): mean 0.25 s within 3 %, CV 2 (=
    1 / sqrt(shape)) within 5 %, Gamma by a KS test (p > 0.01); burstiness 1 is the Poisson
    schedule exactly."""
    t = arrivals(4.0, seed=0, count=20_000, burstiness=0.25)
    gaps = np.diff(np.concatenate([[0.0], t]))
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.05)
    assert kstest(gaps, "gamma", args=(0.25, 0, 1.0)).pvalue > 0.01
    assert np.array_equal(arrivals(4.0, seed=5, count=100), poisson_arrivals(4.0, seed=5, count=100))


def test_ramp_up_climbs_linearly():
    """Rate 100/s ramped over 10 s for 20 s (seed 3): 500 arrivals expected in the ramp, 1,000 after,
    each within 4 Poisson standard deviations."""
    t = arrivals(100.0, seed=3, duration_s=20.0, ramp_up_s=10.0)
    ramp, full = (t < 10).sum(), (t >= 10).sum()
    assert abs(ramp - 500) < 4 * np.sqrt(500) and abs(full - 1000) < 4 * np.sqrt(1000)
    first, second = (t < 5).sum(), ((t >= 5) & (t < 10)).sum()
    assert second > 2 * first  # 125 vs 375 expected


def test_prompt_order_is_a_seeded_shuffle_per_pass():
    order = prompt_order(7, seed=1)
    first, second = [order(i) for i in range(7)], [order(i) for i in range(7, 14)]
    assert sorted(first) == sorted(second) == list(range(7)) and first != list(range(7))
    assert [prompt_order(7, seed=1)(i) for i in range(14)] == first + second  # the same seed, the same order
    assert [prompt_order(7, None)(i) for i in range(9)] == [0, 1, 2, 3, 4, 5, 6, 0, 1]


def _load(url, out, *args):
    return runner.invoke(
        app,
        ["load", "--url", url, "--model", "dsbench-sim", "--out", str(out), "--quiet", "--max-tokens", "8", *args],
    )


def test_load_shapes_against_the_simulated_server(tmp_path):
    """Against `dsbench serve --sim`: a ramped closed loop starts its workers in order, a bursty open
    loop sends its drawn schedule, and prompts follow the seeded order; load.json records the shape."""
    prompts = read_workload("math") + read_workload("code")
    with sim_server("--time-scale", "0.2") as (url, _):
        r = _load(
            url,
            tmp_path / "ramp",
            "--concurrency",
            "4",
            "--requests",
            "12",
            "--workload",
            "math",
            "--workload",
            "code",
            "--warmup-s",
            "1",
            "--ramp-up-s",
            "1",
            "--prompt-seed",
            "3",
        )
        assert r.exit_code == 0, r.output
        r = _load(
            url,
            tmp_path / "burst",
            "--rate",
            "40",
            "--requests",
            "24",
            "--workload",
            "chat",
            "--warmup-s",
            "0",
            "--burstiness",
            "0.3",
            "--arrival-seed",
            "2",
        )
        assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "ramp" / "requests.jsonl").read_text().splitlines()]
    by_id = sorted(recs, key=lambda x: x["id"])
    # worker k sleeps k/4 of the 1 s ramp before its first request (a lower bound asyncio keeps):
    # before t0 + k/4 s at most k requests are ever in flight at once
    t0 = min(x["start_ns"] for x in recs)
    for k in (1, 2, 3):
        edge = t0 + k * 0.25e9
        starts = [x["start_ns"] for x in recs if x["start_ns"] < edge]
        in_flight = max(sum(y["start_ns"] <= s < y["end_ns"] for y in recs) for s in starts)
        assert in_flight <= k, (k, in_flight)
    order = prompt_order(len(prompts), 3)
    assert [x["domain"] for x in by_id] == [prompts[order(x["id"])].domain for x in by_id]
    cfg = read_load(tmp_path / "ramp")["config"]
    assert cfg["ramp_up_s"] == 1.0 and cfg["prompt_seed"] == 3

    burst = [json.loads(x) for x in (tmp_path / "burst" / "requests.jsonl").read_text().splitlines()]
    sched = np.sort([x["scheduled_ns"] for x in burst])
    drawn = arrivals(40.0, seed=2, count=24, burstiness=0.3)
    np.testing.assert_allclose((sched - sched[0]) / 1e9, drawn - drawn[0], atol=1e-6)  # the schedule, not the clock
    assert read_load(tmp_path / "burst")["config"]["burstiness"] == 0.3


@pytest.mark.parametrize(
    "args,message",
    [
        (["--rate", "5", "--burstiness", "0"], "--burstiness must be > 0"),
        (["--concurrency", "2", "--warmup-s", "1", "--ramp-up-s", "2"], "--ramp-up-s must be between 0 and --warmup-s"),
    ],
)
def test_bad_load_shapes_are_one_line(tmp_path, args, message):
    r = _load("http://127.0.0.1:9", tmp_path, "--workload", "math", "--requests", "3", *args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_benchmark_layouts_and_synthetic_prompts_reach_a_real_server(tmp_path):
    """ShareGPT (.json), Spec-Bench / SPEED-Bench ({"turns", "category"} JSONL) and synthetic:N
    prompts, sent to `dsbench serve --sim`: every request carries its prompt's category as its
    domain, and a synthetic prompt is N words."""
    sharegpt = tmp_path / "sharegpt.json"
    sharegpt.write_text(
        json.dumps(
            [
                {
                    "id": "a",
                    "conversations": [{"from": "human", "value": "Write a haiku."}, {"from": "gpt", "value": "..."}],
                },
                {
                    "id": "b",
                    "conversations": [{"from": "system", "value": "x"}, {"from": "human", "value": "Sum 2+2."}],
                },
            ]
        )
    )
    spec = tmp_path / "question.jsonl"
    spec.write_text(
        "".join(
            json.dumps({"question_id": i, "category": c, "turns": [f"Question {i}?", "follow-up"]}) + "\n"
            for i, c in enumerate(["translation", "rag", "math_reasoning"])
        )
    )
    assert [p.text for p in read_workload(sharegpt)] == ["Write a haiku.", "Sum 2+2."]
    assert [p.category for p in read_workload(spec)] == ["translation", "rag", "math_reasoning"]
    synthetic = read_workload("synthetic:32")
    assert len(synthetic) == 64 and all(len(p.text.split()) == 32 for p in synthetic)
    assert synthetic[0].text == read_workload("synthetic:32")[0].text  # seeded
    with sim_server("--time-scale", "0.2") as (url, _):
        r = _load(
            url,
            tmp_path / "o",
            "--concurrency",
            "2",
            "--requests",
            "10",
            "--warmup-s",
            "0",
            "--workload",
            sharegpt,
            "--workload",
            spec,
            "--workload",
            "synthetic:32",
            "--ignore-eos",
        )
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "o" / "requests.jsonl").read_text().splitlines()]
    assert {x["domain"] for x in recs} <= {"sharegpt", "translation", "rag", "math_reasoning", "synthetic-32"}
    assert all(x["error"] is None and x["prompt_tokens"] for x in recs)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "a list"}))
    for workload, message in ((bad, "expected a ShareGPT list"), ("synthetic:x", "synthetic:N takes a whole number")):
        r = _load(url, tmp_path / "p", "--concurrency", "1", "--requests", "1", "--workload", workload)
        assert r.exit_code == 2 and message in r.output


def test_achieved_concurrency_is_the_time_averaged_requests_in_flight():
    from dsbench.core.loadstats import concurrency_achieved

    s = int(1e9)
    recs = [
        {"start_ns": 1, "end_ns": 4 * s},  # in flight through the whole 1..3 s window (0: never sent)
        {"start_ns": 2 * s, "end_ns": 5 * s},  # the second half of it
        {"start_ns": 3 * s + 1, "end_ns": 6 * s},  # after it
        {"start_ns": 1 * s, "end_ns": None},  # still open at the window's end
    ]
    assert concurrency_achieved(recs, s, 3 * s) == pytest.approx(1 + 0.5 + 1)


def test_multi_turn_sessions_carry_their_history(tmp_path):
    """Three-turn conversations against `dsbench serve --sim` (whose prompt count is words in
    every message): each later turn's prompt holds the earlier turns and replies, so its prompt
    tokens grow turn by turn; the replies themselves are not written; a budget of 12 requests is
    four whole sessions, however the two workers' turns interleave."""
    convs = tmp_path / "chats.jsonl"
    convs.write_text(
        "".join(
            json.dumps({"category": "coding", "turns": [f"Write function {i}.", "Now add tests.", "Make it faster."]})
            + "\n"
            for i in range(4)
        )
    )
    with sim_server("--time-scale", "0.2") as (url, _):
        r = _load(
            url,
            tmp_path / "o",
            "--concurrency",
            "2",
            "--requests",
            "12",
            "--warmup-s",
            "0",
            "--workload",
            convs,
            "--multi-turn",
        )
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "o" / "requests.jsonl").read_text().splitlines()]
    assert all("reply" not in x for x in recs) and {x["domain"] for x in recs} == {"coding"}
    sessions: dict[int, list[dict]] = {}
    for x in recs:
        sessions.setdefault(x["session"], []).append(x)
    assert len(sessions) == 4
    for turns in sessions.values():
        turns.sort(key=lambda x: x["turn"])
        assert [x["turn"] for x in turns] == [1, 2, 3]
        tokens = [x["prompt_tokens"] for x in turns]
        # each turn adds the previous reply (8 tokens) and the new prompt, plus message overhead
        assert tokens[0] < tokens[1] < tokens[2] and tokens[1] - tokens[0] >= 8 + 3
    # acceptance and speed against context, per turn (the simulator gives no per-request counts:
    # tau is tokens per decode chunk, exact for it, one chunk per round)
    rows = read_load(tmp_path / "o")["points"][0]["by_context"]
    assert [row["turn"] for row in rows] == [1, 2, 3] and sum(row["requests"] for row in rows) == 12
    assert rows[0]["prompt_tokens_mean"] < rows[1]["prompt_tokens_mean"] < rows[2]["prompt_tokens_mean"]
    assert all(row["tau_source"].startswith("client proxy") and row["tau_mean"] >= 1 for row in rows)
    r = _load(url, tmp_path / "p", "--rate", "2", "--requests", "2", "--workload", convs, "--multi-turn")
    assert r.exit_code == 2 and "--multi-turn runs sessions in a closed loop" in r.output
