"""Bad input to every document reader and every engine adapter (property-based, hypothesis):
malformed, truncated, mistyped, NaN and huge values give one clear line and exit 2 — never a
traceback, never a file written."""

import copy
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dsbench import readers
from dsbench.cli import app
from dsbench.errors import InputError
from dsbench.live import engines
from dsbench.live.client import _MALFORMED, RequestRecord, _parse_events
from dsbench.shipped import profiles_dir

runner = CliRunner()
FIX = Path(__file__).parent / "fixtures" / "engines"

# values a broken or hostile file may hold where a number, string, list or object belongs
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([10**400, -1, 0, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
VALUES = st.recursive(
    LEAVES, lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=6), ch, max_size=3), max_leaves=6
)


def _paths(doc, prefix=(), depth=0):
    """Every (path) into a JSON tree, down to a few levels (long lists: their first items)."""
    yield prefix
    if depth >= 5:
        return
    items = doc.items() if isinstance(doc, dict) else enumerate(doc[:3]) if isinstance(doc, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k), depth + 1)


def mutate(doc, path, op, value):
    """`doc` with the node at `path` replaced by `value`, or deleted."""
    out = copy.deepcopy(doc)
    if not path:
        return value if op == "replace" else {}
    parent = out
    for k in path[:-1]:
        parent = parent[k]
    if op == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def draw_bad(data, doc):
    """`doc` with one node, drawn by hypothesis, replaced by a drawn value or deleted."""
    path = data.draw(st.sampled_from(list(_paths(doc))))
    return mutate(doc, path, data.draw(st.sampled_from(["replace", "delete"])), data.draw(VALUES))


def _dump(doc) -> str:
    try:
        return json.dumps(doc)
    except (ValueError, OverflowError):
        return json.dumps(doc, default=str)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """A valid document of every kind dsbench reads, as {kind: (file name, document)}."""
    root = tmp_path_factory.mktemp("bases")
    out = {
        "profile": ("p.json", json.loads((profiles_dir() / "h100-qwen3-8b.json").read_text())),
        "acceptance": ("a.json", json.loads((profiles_dir() / "acceptance/qwen3-8b/dspark-math.json").read_text())),
        "load": ("load.json", json.loads((FIX / "vllm-0.32.0-cpu-draft-model.load.json").read_text())),
    }
    r = runner.invoke(
        app,
        [
            "sweep",
            "--slo",
            "80",
            "--methods",
            "mtp-1,dspark",
            "--max-concurrency",
            "4",
            "--out",
            str(root / "sw"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    out["sweep"] = ("sweep.json", json.loads((root / "sw" / "sweep.json").read_text()))
    pts = [
        {
            "label": f"c={c}",
            "concurrency": c,
            "tpot_s_mean": 0.004 + 0.0002 * c,
            "e2e_s_mean": 1.0,
            "spec": {
                "engine": "dsbench",
                "state": "active",
                "source": "server counters",
                "tau": 3.0,
                "draft_tokens_per_step": 4.0,
                "survival": [0.8, 0.6, 0.45, 0.3],
                "conditional": [0.8, 0.75, 0.75, 0.67],
                "conditional_exact": True,
            },
        }
        for c in (1, 2, 4, 8, 16, 32)
    ]
    (root / "ld").mkdir()
    (root / "ld" / "load.json").write_text(json.dumps({"schema": "dsbench.load/2", "points": pts}))
    r = runner.invoke(app, ["fit", f"dspark={root / 'ld'}", "--out", str(root / "fit")])
    assert r.exit_code == 0, r.output
    out["fit"] = ("fit.json", json.loads((root / "fit" / "fit.json").read_text()))
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 0.99, (200, 4))
    acc = (rng.uniform(size=(200, 4)) < conf).cumprod(axis=1).sum(axis=1)
    ds = {
        **out["acceptance"][1],
        "gamma": 4,
        "conditional": [0.8, 0.7, 0.7, 0.6],
        "source": "measured",
        "per_round": {
            "proposal": [4] * 200,
            "accepted": acc.tolist(),
            "committed": (acc + 1).tolist(),
            "confidence": conf.tolist(),
        },
    }
    (root / "ds.json").write_text(json.dumps(ds))
    r = runner.invoke(app, ["calibrate", "--acceptance", str(root / "ds.json"), "--out", str(root / "cal.json")])
    assert r.exit_code == 0, r.output
    out["calibration"] = ("cal.json", json.loads((root / "cal.json").read_text()))
    out["rules"] = (
        "rules.json",
        {
            "max_drop_pct": 5,
            "rules": [
                {"metric": "load.*.tau", "direction": "higher", "tolerance_pct": 2},
                {"metric": "*.ttft_s_p99", "ignore": True},
            ],
        },
    )
    return out


READERS = {
    "profile": readers.read_profile,
    "acceptance": readers.read_acceptance_file,
    "sweep": readers.read_sweep,
    "load": readers.read_load,
    "fit": readers.read_fit,
    "calibration": readers.read_calibration,
    "rules": readers.read_gate_rules,
}


@pytest.mark.parametrize("kind", list(READERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_reader_refuses_bad_values_with_one_line(kind, bases, tmp_path, data):
    name, doc = bases[kind]
    text = _dump(draw_bad(data, doc))
    if data.draw(st.booleans()):
        text = text[: data.draw(st.integers(0, len(text)))]  # truncated, as a killed writer would leave it
    f = tmp_path / name
    f.write_text(text)
    try:
        READERS[kind](f)
    except InputError as e:
        assert "\n" not in str(e) and str(f) in str(e)


REQUEST = json.loads((FIX / "vllm-0.32.0-cpu-draft-model.request.json").read_text())


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_request_lines_that_are_not_records_are_skipped(tmp_path_factory, data):
    from dsbench.core.loadstats import request_metrics, summarise

    lines = [
        _dump(REQUEST),
        _dump(draw_bad(data, REQUEST)),
        _dump(draw_bad(data, REQUEST))[: data.draw(st.integers(0, 400))],
    ]
    d = tmp_path_factory.mktemp("req")
    (d / "requests.jsonl").write_text("\n".join(lines) + "\n")
    recs = readers.read_requests(d)
    assert recs and recs[0] == REQUEST
    for r in recs:
        request_metrics(r)
    summarise(recs, 0, 2**62)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["load", "sweep", "fit", "calibration", "profile", "acceptance"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_report_and_gate_on_bad_documents_exit_2_and_write_nothing(kind, bases, tmp_path, data):
    """Through the CLI: whatever the reader lets through, the consumers must handle."""
    name, doc = bases[kind]
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    (d / name).write_text(_dump(draw_bad(data, doc)))
    html = d / "r.html"
    for args in (["report", str(d), "-o", str(html)], ["gate", str(d), "--baseline", str(d)]):
        r = runner.invoke(app, args)
        assert r.exit_code in (0, 1, 2), (args, r.output, r.exception)
        assert "Traceback" not in r.output
        if r.exit_code == 2:
            assert len(r.output.strip().splitlines()) <= 3, r.output  # one line (rich may wrap a long path)
            assert args[0] != "report" or not html.exists()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_metrics_parser_raises_only_value_error(text):
    try:
        sc = engines.parse_metrics(text)
    except ValueError:
        return
    for engine in engines.ENGINES:
        engines.counter_window(engine, sc, sc)


EXPO = (FIX / "vllm-0.32.0-cpu-ngram.metrics.txt").read_text()


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(EXPO.splitlines()),
    st.one_of(st.sampled_from(["NaN", "+Inf", "-1", "1e308", "-0", "x"]), st.floats(allow_nan=True).map(repr)),
)
def test_bad_counter_values_never_give_impossible_figures(line, value):
    if line.startswith("#") or " " not in line:
        return
    text = EXPO.replace(line, line.rsplit(" ", 1)[0] + " " + value)
    try:
        after = engines.parse_metrics(text)
    except ValueError:
        return
    w = engines.counter_window("vllm", engines.parse_metrics(""), after)
    if w.state == "active":
        assert w.tau is None or w.tau >= 1 and math.isfinite(w.tau)
        assert w.acceptance_rate is None or 0 <= w.acceptance_rate <= 1
        assert all(0 <= s <= 1 for s in w.survival or [])


STATS = st.fixed_dictionaries(
    {},
    optional={
        "metrics": st.one_of(
            VALUES,
            st.fixed_dictionaries(
                {
                    "speculative_decoding": st.dictionaries(
                        st.sampled_from(
                            ["num_spec_steps", "num_accepted_draft_tokens", "num_draft_tokens", "acceptance_histogram"]
                        ),
                        VALUES,
                    )
                }
            ),
        ),
        "timings": st.one_of(
            VALUES, st.dictionaries(st.sampled_from(["predicted_n", "draft_n", "draft_n_accepted"]), LEAVES)
        ),
        "sglext": st.one_of(
            VALUES,
            st.fixed_dictionaries(
                {
                    "spec_tokens_details": st.dictionaries(
                        st.sampled_from(
                            [
                                "spec_verify_ct",
                                "spec_num_correct_drafts",
                                "spec_num_proposed_drafts",
                                "spec_correct_drafts_histogram",
                            ]
                        ),
                        VALUES,
                    )
                }
            ),
        ),
        "meta_info": VALUES,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([None, *engines.ENGINES]), STATS, st.one_of(st.none(), st.integers(-5, 10**6)))
def test_per_request_statistics_never_crash_or_mislead(engine, stats, tokens):
    c = engines.request_counts(engine, stats, tokens)
    w = engines.figures(engine, c, "per-request", first_tokens=1.0)
    if w.state == "active" and w.acceptance_rate is not None:
        assert 0 <= w.acceptance_rate <= 1


EVENTS = st.lists(
    st.one_of(
        VALUES,
        st.fixed_dictionaries(
            {
                "choices": st.one_of(
                    VALUES,
                    st.lists(
                        st.fixed_dictionaries(
                            {
                                "delta": st.one_of(
                                    VALUES, st.fixed_dictionaries({"content": st.one_of(st.text(max_size=3), VALUES)})
                                )
                            },
                            optional={"finish_reason": LEAVES},
                        ),
                        max_size=2,
                    ),
                )
            },
            optional={
                "usage": st.one_of(VALUES, st.fixed_dictionaries({"completion_tokens": LEAVES})),
                "timings": VALUES,
            },
        ),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_stream_events_fail_as_bad_response_never_a_crash(events):
    rec = RequestRecord(id=0, point="c=1", scheduled_ns=0, max_tokens=64)
    raw = [(1000 * (i + 1), _dump(e).encode()) for i, e in enumerate(events)]
    try:
        _parse_events(rec, raw, True, True)
    except _MALFORMED:
        return  # stream_request turns these into error "bad_response"
    assert rec.output_tokens is None or (isinstance(rec.output_tokens, int) and 0 <= rec.output_tokens <= 64)
