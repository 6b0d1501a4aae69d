"""`dsbench load` and `dsbench serve --sim` against real servers on 127.0.0.1."""

import json
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.config import SweepConfig
from dsbench.core.acceptance import survival
from dsbench.core.simulator import simulate
from dsbench.readers import read_acceptance, read_load, read_profile
from dsbench.sweep import build_scenarios
from tests.servers import build_tiny_qwen3, free_port, sim_server, transformers_server, wait_until

runner = CliRunner()


def load(url, out, *args, model="dsbench-sim"):
    return runner.invoke(app, ["load", "--url", url, "--model", model, "--out", str(out), "--quiet", *map(str, args)])


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def load_process(url, out, *args):
    """`dsbench load` as its own process (to kill its server or interrupt it)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dsbench.cli",
            "load",
            "--url",
            url,
            "--model",
            "dsbench-sim",
            "--warmup-s",
            "0",
            "--out",
            str(out),
            "--quiet",
            *map(str, args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def scenario(method, domain, policy="dspark"):
    cfg = SweepConfig(domain=domain, methods=(method,), baseline=method, policy=policy)
    return build_scenarios(cfg, cfg.validate(), read_profile("h100-qwen3-8b"), read_acceptance("qwen3-8b"), "qwen3-8b")[
        method
    ]


@pytest.fixture(scope="module")
def sim_point(tmp_path_factory):
    """DSpark on the H100 profile, math curves, 8 users, 400-token requests, for 4 s: the load
    point and what core.simulate predicts for the same inputs."""
    tmp_path = tmp_path_factory.mktemp("sim-point")
    with sim_server("--domain", "math", "--seed", "1") as (url, _):
        r = load(
            url,
            tmp_path,
            "--concurrency",
            "8",
            "--workload",
            "math",
            "--duration-s",
            "4",
            "--warmup-s",
            "0.7",
            "--max-tokens",
            "400",
        )
    assert r.exit_code == 0, r.output
    return read_load(tmp_path)["points"][0], simulate(scenario("dspark", "math"), 8, samples=40_000)


@pytest.mark.slow
def test_load_against_sim_agrees_with_the_model(sim_point):
    """Measured tau (server counters) against core.simulate: 4 %; one chunk per round."""
    point, model = sim_point
    spec = point["spec"]
    assert spec["engine"] == "dsbench" and spec["source"] == "server counters" and spec["decode_steps"] > 1000
    assert spec["tau"] == pytest.approx(model.tau, rel=0.04)
    assert point["chunk_warning"] is None  # one chunk per round: tokens per chunk ~ tau
    assert point["tokens_per_chunk_mean"] == pytest.approx(spec["tau"], rel=0.1)


@pytest.mark.timing
def test_load_against_sim_speeds_agree_with_the_model(sim_point):
    """Per-user speed (1/TPOT) 5 % and throughput 6 % of core.simulate (measured runs ~3 % low:
    each request spends one round waiting to join and one prefill round that the steady-state
    model has not). Wall-clock speeds of a server sharing the cores: the timing tier."""
    point, model = sim_point
    assert point["tps_user_mean"] == pytest.approx(model.tps_user, rel=0.05)
    assert point["output_tok_s"] == pytest.approx(model.throughput_tok_s, rel=0.06)


@pytest.mark.slow
def test_per_position_survival_matches_curve_under_fixed_verification(tmp_path):
    """DFlash verifies the whole block every round, so per-position survival from the server's
    vLLM-style counters must follow the curve: within 0.03 absolute at every position. A fixed
    count of requests, not a duration, so a busy machine does not shrink the sample; 80 of them
    (40 left 0.03 about three standard deviations wide per position, and 2 runs in 8 failed)."""
    with sim_server("--method", "dflash", "--domain", "code") as (url, _):
        r = load(
            url,
            tmp_path,
            "--concurrency",
            "4",
            "--workload",
            "code",
            "--requests",
            "80",
            "--warmup-s",
            "0",
            "--max-tokens",
            "300",
        )
    assert r.exit_code == 0, r.output
    spec = read_load(tmp_path)["points"][0]["spec"]
    curve = next(c for c in read_acceptance("qwen3-8b") if (c.method, c.domain) == ("dflash", "code")).conditional
    np.testing.assert_allclose(spec["survival"], survival(curve), atol=0.03)
    assert spec["conditional_exact"]
    np.testing.assert_allclose(spec["conditional"], curve, atol=0.05)
    assert spec["acceptance_rate"] == pytest.approx(np.mean(survival(curve)), abs=0.03)


@pytest.mark.slow
def test_load_against_transformers_serve(tmp_path_factory):
    model_dir = build_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "qwen3-tiny")
    out = tmp_path_factory.mktemp("out")
    with transformers_server(model_dir) as (url, _):
        # the server's default sampling: sent temperature 0, transformers serve 5.24 streamed each answer as one chunk
        r = load(
            url,
            out,
            "--concurrency",
            "2",
            "--workload",
            "chat",
            "--requests",
            "6",
            "--max-tokens",
            "24",
            "--warmup-s",
            "0",
            "--timeout-s",
            "120",
            "--temperature",
            "-1",
            model=str(model_dir),
        )
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(recs) == 6 and all(rec["error"] is None for rec in recs)
    point = read_load(out)["points"][0]
    assert point["requests_ok"] == 6 and point["spec"]["state"] == "unknown"  # transformers serve has no /metrics
    for rec in recs:
        assert 1 <= rec["output_tokens"] <= 24  # from the server's usage, not re-tokenised
        assert rec["chunk_offsets_s"] == sorted(rec["chunk_offsets_s"])
    # a random-weight model can emit only tokens that decode to no text (seen under transformers
    # 5.10.2): such a request has usage but no content chunk, so no stamps; the others are ordered
    shown = [rec for rec in recs if rec["first_chunk_ns"] is not None]
    assert shown and all(rec["chunk_offsets_s"] == [] for rec in recs if rec["first_chunk_ns"] is None)
    for rec in shown:
        assert rec["first_chunk_ns"] >= rec["start_ns"] and rec["last_chunk_ns"] >= rec["first_chunk_ns"]
    assert point["ttft_s_p50"] > 0 and point["output_tok_s"] > 0
    # a tiny model can finish before the first chunk is read, and its chunks then arrive in one read:
    # no decode time to measure, and no TPOT is better than a made-up one
    assert point["tpot_s_p50"] is None or point["tpot_s_p50"] > 0


def test_server_absent_is_one_line(tmp_path):
    port = free_port()
    r = load(f"http://127.0.0.1:{port}", tmp_path, "--concurrency", "1", "--workload", "math", "--requests", "2")
    assert r.exit_code == 2
    assert f"server unreachable at http://127.0.0.1:{port}" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_server_killed_mid_run_keeps_partial_results(tmp_path):
    with sim_server("--time-scale", "3") as (url, server):
        client = load_process(
            url, tmp_path, "--concurrency", "4", "--workload", "chat", "--duration-s", "8", "--max-tokens", "60"
        )
        wait_until(lambda: len(_lines(tmp_path / "requests.jsonl")) >= 3, what="three finished requests")
        server.kill()
        out, err = client.communicate(timeout=60)
    assert client.returncode == 2, err  # the server could not be measured; 1 means only "regressed"
    assert "Traceback" not in err
    assert "error:" in err and "results so far are in" in err
    recs = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    ok = [r for r in recs if r["error"] is None]
    failed = [r for r in recs if r["error"]]
    assert ok and failed  # what was measured before the kill is kept
    assert {r["error"] for r in failed} <= {"connect", "stream_broken"}
    doc = read_load(tmp_path)
    assert doc["points"][0]["requests_ok"] == len(ok)
    assert "server unreachable" in doc["stopped"]


@pytest.mark.slow
def test_http_500_and_429_are_counted_per_class(tmp_path):
    with sim_server("--inject-error", "500:0.25", "--inject-error", "429:0.25", "--time-scale", "0.5") as (url, _):
        r = load(
            url,
            tmp_path,
            "--concurrency",
            "4",
            "--workload",
            "chat",
            "--requests",
            "60",
            "--warmup-s",
            "0",
            "--max-tokens",
            "20",
        )
    assert r.exit_code == 0, r.output
    point = read_load(tmp_path)["points"][0]
    errors = point["errors"]
    assert set(errors) == {"http_5xx", "http_429"}
    assert 5 <= errors["http_5xx"] <= 28 and 5 <= errors["http_429"] <= 28  # 15 expected each (binomial, 60 x 0.25)
    assert point["requests_ok"] + point["requests_failed"] == 60
    recs = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert any("HTTP 500" in (rec["error_detail"] or "") for rec in recs)


@pytest.mark.slow
def test_stalled_stream_times_out(tmp_path):
    with sim_server("--stall-after", "2") as (url, _):
        t0 = time.monotonic()
        r = load(
            url,
            tmp_path,
            "--concurrency",
            "2",
            "--workload",
            "math",
            "--requests",
            "2",
            "--warmup-s",
            "0",
            "--max-tokens",
            "200",
            "--timeout-s",
            "1",
        )
        elapsed = time.monotonic() - t0
    assert r.exit_code == 2  # the server could not be measured; 1 means only "regressed"
    assert "no request of c=2 completed: every one failed" in r.output
    point = read_load(tmp_path)["points"][0]
    assert point["errors"] == {"timeout": 2}
    assert elapsed < 10


@pytest.mark.slow
def test_streams_still_running_at_the_drain_time_are_cancelled_and_fail_the_run(tmp_path):
    with sim_server("--stall-after", "2") as (url, _):
        r = load(
            url,
            tmp_path,
            "--concurrency",
            "2",
            "--workload",
            "math",
            "--duration-s",
            "1",
            "--warmup-s",
            "0",
            "--max-tokens",
            "200",
            "--timeout-s",
            "30",
            "--drain-s",
            "0.5",
        )
    assert r.exit_code == 2 and "cancelled at the drain time" in r.output.replace("\n", " ")
    point = read_load(tmp_path)["points"][0]
    assert point["requests_cancelled"] == 2 and point["requests_ok"] == 0


@pytest.mark.slow
def test_a_point_inside_the_warm_up_is_widened_not_empty(tmp_path):
    with sim_server() as (url, _):
        r = load(
            url,
            tmp_path,
            "--concurrency",
            "2",
            "--workload",
            "math",
            "--requests",
            "4",
            "--warmup-s",
            "60",
            "--max-tokens",
            "20",
        )
    assert r.exit_code == 0, r.output
    point = read_load(tmp_path)["points"][0]
    assert "window is the whole point" in point["window_warning"] and "window is the whole point" in r.output
    assert point["requests_ok"] == 4 and point["request_throughput_req_s"] > 0 and point["tpot_s_p50"] > 0


def test_api_key_never_reaches_outputs(tmp_path, monkeypatch):
    secret = "sk-dsbench-test-SECRET-1234567890"
    monkeypatch.setenv("DSB_TEST_KEY", secret)
    with sim_server() as (url, _):
        r = load(
            url,
            tmp_path,
            "--concurrency",
            "1",
            "--workload",
            "chat",
            "--requests",
            "2",
            "--warmup-s",
            "0",
            "--max-tokens",
            "8",
            "--api-key-env",
            "DSB_TEST_KEY",
            "--json",
        )
    assert r.exit_code == 0
    assert secret not in r.output
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f
    assert "DSB_TEST_KEY" in (tmp_path / "load.json").read_text()  # the variable's name is fine to record
    missing = load(
        url,
        tmp_path / "x",
        "--concurrency",
        "1",
        "--workload",
        "chat",
        "--requests",
        "1",
        "--api-key-env",
        "NOPE_NOT_SET",
    )
    assert missing.exit_code == 2 and "NOPE_NOT_SET" in missing.output


def test_refuses_to_overwrite_results_without_force(tmp_path):
    with sim_server() as (url, _):
        args = ("--concurrency", "1", "--workload", "chat", "--requests", "1", "--warmup-s", "0", "--max-tokens", "4")
        assert load(url, tmp_path, *args).exit_code == 0
        again = load(url, tmp_path, *args)
        assert again.exit_code == 2 and "--force" in again.output
        assert load(url, tmp_path, *args, "--force").exit_code == 0


POISSON = ("--rate", "20", "--workload", "code", "--requests", "30", "--warmup-s", "0", "--max-tokens", "16")


def _poisson_point(tmp_path, *extra) -> list[dict]:
    """A 20 requests/s Poisson point of 30 requests against the simulator; its request records."""
    with sim_server("--time-scale", "0.5") as (url, _):
        r = load(url, tmp_path, *POISSON, *extra)
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]


def test_poisson_rate_point_records_schedule(tmp_path):
    recs = _poisson_point(tmp_path, "--slo", "50")
    point = read_load(tmp_path)["points"][0]
    assert point["mode"] == "poisson" and point["label"] == "rate=20.00" and point["requests"] == 30
    assert 0 <= point["slo_attainment"] <= 1
    sched = sorted(r["scheduled_ns"] for r in recs)
    span = (sched[-1] - sched[0]) / 1e9
    assert 0.5 < span < 4.0  # 29 gaps of mean 50 ms (drawn up front: no clock involved)


@pytest.mark.timing
def test_poisson_requests_leave_on_schedule(tmp_path):
    """The client sends each Poisson arrival within 0.2 s of its scheduled time (wall clock)."""
    recs = _poisson_point(tmp_path)
    assert max(r["start_ns"] - r["scheduled_ns"] for r in recs) < 0.2e9


def test_bad_load_options(tmp_path):
    base = ["load", "--url", "http://127.0.0.1:9", "--model", "m", "--workload", "math", "--out", str(tmp_path)]
    cases = [
        ([], "give at least one load point"),
        (["--concurrency", "2"], "give exactly one of --requests N or --duration-s S"),
        (["--concurrency", "a,b", "--requests", "3"], "--concurrency: expected comma-separated numbers"),
        (["--concurrency", "0", "--requests", "3"], "--concurrency values must be >= 1"),
        (["--concurrency", "2", "--requests", "3", "--api", "grpc"], "--api must be chat or completions"),
        (["--concurrency", "2", "--requests", "3", "--workload", "no/such.jsonl"], "workload file not found"),
    ]
    for extra, message in cases:
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and message in r.output, (extra, r.output)


def test_sim_server_endpoints():
    with sim_server("--method", "mtp-1", "--time-scale", "0.2") as (url, _):
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "dsbench-sim"
        r = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "dsbench-sim", "messages": [{"role": "user", "content": "a b c"}], "max_tokens": 12},
            timeout=10,
        ).json()
        assert r["usage"]["completion_tokens"] == 12 and r["usage"]["prompt_tokens"] == 3 + 4
        assert len(r["choices"][0]["message"]["content"].split()) == 12
        with httpx.stream(
            "POST",
            url + "/v1/completions",
            json={"prompt": "x y", "max_tokens": 9, "stream": True, "stream_options": {"include_usage": True}},
            timeout=10,
        ) as s:
            events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert sum(len(c["choices"][0]["text"].split()) for c in chunks if c["choices"]) == 9
        assert chunks[-1]["usage"]["completion_tokens"] == 9 and chunks[-2]["choices"][0]["finish_reason"] == "length"
        assert httpx.post(url + "/v1/chat/completions", json={"messages": "nope"}).status_code == 400
        assert (
            httpx.post(
                url + "/v1/chat/completions", json={"model": "other", "messages": [{"role": "user", "content": "x"}]}
            ).status_code
            == 404
        )
        metrics = httpx.get(url + "/metrics").text
        assert "vllm:spec_decode_num_drafts_total" in metrics and 'position="0"' in metrics


def test_interrupted_run_keeps_what_it_measured(tmp_path):
    import signal

    with sim_server("--time-scale", "2") as (url, _):
        client = load_process(
            url, tmp_path, "--concurrency", "2,4", "--workload", "math", "--duration-s", "2", "--max-tokens", "40"
        )
        wait_until(
            lambda: any('"point":"c=4"' in line for line in _lines(tmp_path / "requests.jsonl")),
            what="a finished request of the second point",
        )
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=60)
    assert client.returncode == 130 and "interrupted" in err and "Traceback" not in err
    doc = read_load(tmp_path)
    assert doc["interrupted"] is True and [p["label"] for p in doc["points"]] == ["c=2"]
    recs = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert {r["point"] for r in recs} == {"c=2", "c=4"}  # the cut-off point's finished requests are kept too


def test_deepspec_turns_workload(tmp_path):
    from dsbench.shipped import read_workload

    f = tmp_path / "mt-bench.jsonl"
    f.write_text('{"turns": ["first question", "follow-up"]}\n\n{"turns": ["another"]}\n')
    prompts = read_workload(f)
    assert [(p.text, p.domain) for p in prompts] == [("first question", "mt-bench"), ("another", "mt-bench")]
    assert {p.domain for p in read_workload("code")} == {"code"} and len(read_workload("code")) == 20
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    from dsbench.errors import InputError

    with pytest.raises(InputError, match="bad.jsonl:1"):
        read_workload(bad)


@pytest.mark.slow
def test_load_sharded_over_two_processes(tmp_path):
    with sim_server("--domain", "chat") as (url, _):
        r = load(
            url,
            tmp_path,
            "--concurrency",
            "6",
            "--workload",
            "chat",
            "--duration-s",
            "3",
            "--warmup-s",
            "0.5",
            "--max-tokens",
            "60",
            "--workers",
            "2",
        )
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert {rec["id"] // 10_000_000 for rec in recs} == {1, 2}  # both workers' requests, ids kept apart
    assert len({rec["id"] for rec in recs}) == len(recs)
    point = read_load(tmp_path)["points"][0]
    assert point["window_s"] == pytest.approx(2.5, abs=0.01) and point["requests_in_window"] > 10
    assert point["spec"]["engine"] == "dsbench" and 2.5 < point["spec"]["tau"] < 4.5
    bad = load(url, tmp_path / "b", "--concurrency", "2", "--workload", "chat", "--requests", "5", "--workers", "2")
    assert bad.exit_code == 2 and "more than one worker needs --duration" in bad.output


def test_sim_server_holds_at_most_the_kv_limit(tmp_path):
    """A profile whose KV memory fits 3 requests: of 8 concurrent requests 3 run, 5 wait (vLLM's
    gauges say so), and the waiting ones get their first token only after a running one ends."""
    from tests.conftest import REPO

    prof = json.loads((REPO / "profiles" / "h100-qwen3-8b.json").read_text())
    prof["max_requests"] = 3
    (tmp_path / "p.json").write_text(json.dumps(prof))
    with sim_server("--profile", str(tmp_path / "p.json"), "--time-scale", "4") as (url, _):
        body = {
            "model": "dsbench-sim",
            "max_tokens": 200,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        firsts: list[float] = []

        def one():
            t0 = time.monotonic()
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
                got = False
                for line in r.iter_lines():
                    if line.startswith("data: {") and not got:
                        firsts.append(time.monotonic() - t0)
                        got = True

        import threading

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        gauges = {}

        def all_submitted() -> bool:
            for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
                if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting")):
                    gauges[line.split("{")[0].split(" ")[0]] = float(line.rsplit(" ", 1)[1])
            return sum(gauges.values()) == 8

        wait_until(all_submitted, what="all eight requests in the server")
        for t in threads:
            t.join()
    assert gauges == {"vllm:num_requests_running": 3.0, "vllm:num_requests_waiting": 5.0}
    firsts.sort()
    assert firsts[4] > 5 * firsts[2]  # the fourth and later first tokens waited for a free slot
