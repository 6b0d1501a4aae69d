"""`dsbench search`: the search's decisions against a known curve (core), and the command against
real servers on 127.0.0.1 (`dsbench serve --sim` started by --serve)."""

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.core import search as core
from dsbench.core.loadstats import NS, window_figures
from dsbench.readers import read_load, read_search

runner = CliRunner()


def curve(c: float) -> tuple[float, float]:
    """A server whose TPOT grows faster than linearly with concurrency (what a roofline does past
    the memory-bound floor): (per-user speed tok/s, throughput tok/s)."""
    tpot = 0.004 + 0.00005 * c + 0.0000004 * c * c
    return 1 / tpot, c / tpot


def searched(slo: float, seed: int, tolerance: float = 0.05, noise: float = 0.03, windows: int = 5):
    """Run the search on `curve` with `noise` relative Gaussian noise per window (seeded)."""
    rng = np.random.default_rng(seed)
    s = core.SearchSettings(slo=slo, tolerance=tolerance, max_concurrency=512)
    points: dict[int, core.Measured] = {}
    order: list[int] = []
    while (step := core.next_step(points, s, order)).concurrency is not None:
        c = step.concurrency
        speed, thr = curve(c)
        p = points.setdefault(c, core.Measured(c))
        p.speeds += list(speed * (1 + noise * rng.standard_normal(windows)))
        p.throughputs += list(thr * (1 + noise * rng.standard_normal(windows)))
        p.measurements += 1
        order.append(c)
    return step, points, s


def true_best(slo: float) -> int:
    return max(c for c in range(1, 513) if curve(c)[0] >= slo)


@pytest.mark.parametrize("slo", [60.0, 100.0, 150.0, 200.0])
def test_the_search_brackets_the_true_best_within_tolerance_in_few_measurements(slo):
    """Over 20 seeds at 3 % window noise: the answer's throughput is within the tolerance (5 %)
    of the truth in at least 19 (noise can misjudge a point next to the SLO, which is what the
    interval and the repeat are for), and the search never takes more measurements than a fixed
    geometric grid of the same accuracy run upward to its first failing point."""
    best = true_best(slo)
    ok = 0
    for seed in range(20):
        step, points, s = searched(slo, seed)
        assert step.outcome == "bracketed", step.reason
        lo, hi, _ = core.bracket(points, s)
        taken = sum(p.measurements for p in points.values())
        assert taken < core.grid_cost(best, s.tolerance, s.max_concurrency), (taken, best)
        ok += abs(curve(lo.concurrency)[1] / curve(best)[1] - 1) <= s.tolerance
    assert ok >= 19


def test_c1_failing_is_infeasible_and_a_high_cap_is_capped():
    step, points, _ = searched(1e6, 0)
    assert step.outcome == "infeasible" and list(points) == [1]
    s = core.SearchSettings(slo=1.0, max_concurrency=32)
    points = {}
    while (step := core.next_step(points, s)).concurrency is not None:
        c = step.concurrency
        points[c] = core.Measured(c, [curve(c)[0]] * 3, [curve(c)[1]] * 3, measurements=1)
    assert step.outcome == "capped" and max(points) == 32


def test_a_saturated_point_fails_and_ends_escalation():
    """The server queues from c=10 on although its speed would pass: the bracket closes below it."""
    s = core.SearchSettings(slo=1.0, max_concurrency=512)
    points: dict[int, core.Measured] = {}
    order = []
    while (step := core.next_step(points, s, order)).concurrency is not None:
        c = step.concurrency
        points[c] = core.Measured(
            c, [curve(c)[0]] * 3, [curve(c)[1]] * 3, saturated="queue" if c >= 10 else None, measurements=1
        )
        order.append(c)
    lo, hi, _ = core.bracket(points, s)
    assert step.outcome == "bracketed" and lo.concurrency == 9 and hi.concurrency >= 10


def test_an_unsure_point_is_measured_again_then_its_mean_decides():
    s = core.SearchSettings(slo=100.0, repeats=2)
    p = core.Measured(4, [90.0, 110.0, 104.0], [400.0] * 3, measurements=1)
    assert core.verdict(p, s.slo) == "unsure"
    assert core.next_step({4: p}, s, [4]).concurrency == 4
    p.measurements = 2
    assert core.judged(p, s.slo, None, s.repeats) == "meets"  # mean 101.3 >= 100
    budget = core.SearchSettings(slo=100.0, repeats=3, max_measurements=2)
    assert core.next_step({4: p}, budget, [4]).outcome == "budget"


def test_windows_take_requests_by_when_they_were_sent():
    """A fast and a slow request sent in the first half: both count there, not just the fast one
    that ended inside it (which would bias speed up)."""
    t0 = 10 * NS

    def rec(start_s, end_s, tokens):
        offs = list(np.linspace(0.1, end_s - start_s, 5))
        return {
            "start_ns": t0 + start_s * NS,
            "first_chunk_ns": t0 + (start_s + 0.1) * NS,
            "last_chunk_ns": t0 + end_s * NS,
            "end_ns": t0 + end_s * NS,
            "output_tokens": tokens,
            "chunk_offsets_s": offs,
            "chunk_tokens": [tokens // 5] * 5,
        }

    fast, slow = rec(0.0, 1.0, 100), rec(0.5, 4.5, 100)
    parts = window_figures([fast, slow], t0, t0 + 2 * NS, 2, "mean")
    assert parts[0]["requests"] == 2 and parts[1]["requests"] == 0
    assert parts[0]["speed"] == pytest.approx(198 / (0.9 + 3.9))


def sim(method: str, *args: str) -> str:
    return f"{method}={sys.executable} -m dsbench.cli serve --sim --method {method} --port {{port}} " + " ".join(args)


def search(out, *args):
    return runner.invoke(app, ["search", "--workload", "math", "--out", str(out), "--quiet", *map(str, args)])


@pytest.mark.slow
def test_search_serves_stops_and_resumes(tmp_path):
    """Against a started `dsbench serve --sim`: a budget of 2 stops the search part way (its
    points written), the same command with a larger budget resumes without measuring them again,
    and the server process is gone afterwards."""
    args = [
        "--slo",
        "40",
        "--serve",
        sim("dspark", "--time-scale", "8"),
        "--duration-s",
        "2.5",
        "--warmup-s",
        "0.5",
        "--max-tokens",
        "48",
        "--ignore-eos",
        "--windows",
        "2",
        "--repeats",
        "1",
        "--tolerance",
        "0.3",
    ]
    r = search(tmp_path, *args, "--max-measurements", "2")
    assert r.exit_code == 0, r.output
    first = read_search(tmp_path)["methods"][0]
    assert first["outcome"] == "budget" and first["measurements"] == 2 and not first["complete"]
    assert len(read_load(tmp_path / "dspark")["points"]) == 2
    assert read_load(tmp_path / "dspark")["server"]["source"] == "simulated"

    r = search(tmp_path, *args, "--max-measurements", "12")
    assert r.exit_code == 0, r.output
    doc = read_search(tmp_path)
    m = doc["methods"][0]
    assert doc["resumed"] and m["measurements"] > 2
    assert m["points"][0]["order"] == [0] and m["points"][0]["concurrency"] == 1  # kept, not measured again
    assert len(read_load(tmp_path / "dspark")["points"]) == m["measurements"]
    assert m["outcome"] in ("bracketed", "budget") and m["best"]["concurrency"] >= 1
    assert doc["best_method"] == "dspark" and m["best"]["source"] == "simulated"
    assert "dsbench serve: simulated dspark" in (tmp_path / "dspark" / "server.log").read_text()

    r = search(tmp_path, *args[:-2], "--tolerance", "0.2")  # other settings: no silent mix of two searches
    assert r.exit_code == 2 and "--tolerance" in r.output


def test_search_refuses_bad_servers_in_one_line(tmp_path):
    r = search(tmp_path, "--slo", "10")
    assert r.exit_code == 2 and "--url URL, or --serve" in r.output
    r = search(tmp_path, "--slo", "10", "--serve", "dspark")
    assert r.exit_code == 2 and "LABEL=COMMAND" in r.output
    r = search(tmp_path, "--slo", "10", "--serve", f"x={sys.executable} -c 'import sys; sys.exit(3)' {{port}}")
    assert r.exit_code == 2 and "exited with code 3" in r.output, r.output
    r = search(tmp_path, "--slo", "10", "--url", "http://127.0.0.1:9", "--windows", "1")
    assert r.exit_code == 2 and "--windows" in r.output


def test_search_documents_read_back(tmp_path):
    """search.json is a typed document: a hand-broken one is one line."""
    (tmp_path / "search.json").write_text(json.dumps({"schema": "dsbench.search/1", "slo": {}, "methods": [{}]}))
    with pytest.raises(Exception) as e:
        read_search(tmp_path)
    assert "label" in str(e.value)


@pytest.mark.timing
def test_search_finds_the_simulators_best_within_tolerance(tmp_path):
    """DSpark on `dsbench serve --sim` (math curves, x4 slower than real time so the two cores keep
    up; 512-token requests): the search's best throughput at 60 wall tok/s/user is within 10 % of
    core.simulate's at the same SLO (5 % tolerance, plus the few % by which a live server's
    requests lose time joining and prefilling that the steady-state model has not), in fewer
    measurements than a fixed grid of the same accuracy. Wall-clock speeds: the timing tier."""
    from benchmarks.bench_search import truth

    r = search(
        tmp_path,
        "--slo", "60",
        "--serve", sim("dspark", "--domain", "math", "--time-scale", "4"),
        "--max-tokens", "512", "--ignore-eos", "--duration-s", "12", "--warmup-s", "2",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = read_search(tmp_path)["methods"][0]
    want = truth("dspark", 60 * 4)
    assert m["outcome"] == "bracketed"
    assert m["best"]["throughput_tok_s_gpu"] * 4 == pytest.approx(want["throughput"], rel=0.10)
    assert m["measurements"] < core.grid_cost(want["concurrency"], 0.05, 512)
