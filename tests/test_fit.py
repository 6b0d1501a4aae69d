"""`dsbench fit`: recovering known parameters, and predicting held-out live load points."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.core.latency import LatencyFit, fit_latency, mape, t_verify

runner = CliRunner()


@pytest.mark.parametrize("tile", [0, 64])
def test_fit_recovers_known_parameters(tile):
    """Points generated from known parameters with 0.5 % noise (seed 0): every parameter comes back
    within 4 sigma of the truth (the floor and slope also within 5 %; knee within 5 tokens or one
    tile), and the MAPE is about the noise."""
    rng = np.random.default_rng(0)
    r = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 384] * 2, dtype=float)
    method = np.array(["no-spec"] * 10 + ["dspark"] * 10)
    b = np.where(method == "no-spec", r, r * 4.5)
    true = LatencyFit(0.010, 2e-5, 300.0, tile, {"dspark": (0.001, 3e-6)})
    y = np.array([float(true.round_s(m, ri, bi)) for m, ri, bi in zip(method, r, b)]) * (
        1 + rng.normal(0, 0.005, len(r))
    )
    f = fit_latency(method, r, b, y, tile)
    got = {"t0": f.t0, "slope": f.slope, "dspark.a": f.draft["dspark"][0], "dspark.c": f.draft["dspark"][1]}
    want = {"t0": 0.010, "slope": 2e-5, "dspark.a": 0.001, "dspark.c": 3e-6}
    for k in want:
        assert abs(got[k] - want[k]) <= 4 * f.sigma[k], (k, got[k], f.sigma[k])
    assert abs(f.t0 / 0.010 - 1) < 0.05 and abs(f.slope / 2e-5 - 1) < 0.05
    assert abs(f.knee - 300) <= max(5, tile)
    pred = [float(f.round_s(m, ri, bi)) for m, ri, bi in zip(method, r, b)]
    assert mape(pred, y) < 1.0


def test_fit_against_a_profile_recovers_its_scale():
    """T_verify = scale x a profile's step time: a server 1.3x slower than profiled, with a DSpark
    draft cost, comes back as scale 1.3 (0.5 % noise, seed 1) when the profile's curve is not a
    straight line in R over the points (here: a compute knee at 256 tokens)."""
    from dsbench.core.sps import StepTimeSurface

    rng = np.random.default_rng(1)
    grid = np.arange(1, 2049)
    surface = StepTimeSurface(
        np.concatenate([grid, grid]),
        np.repeat([1, 512], len(grid)),
        np.tile(0.006 + 2e-5 * np.maximum(0, grid - 256), 2),
    )
    r = np.array([1, 2, 4, 8, 16, 32, 64, 128, 184, 256], dtype=float)
    b = r * np.array([8, 8, 8, 8, 8, 7, 6, 5, 4, 3])
    known = np.array([float(surface.step_time(bi, ri)) for bi, ri in zip(b, r)])
    y = (1.3 * known + 0.0008 + 4e-6 * r) * (1 + rng.normal(0, 0.005, len(r)))
    f = fit_latency(np.array(["dspark"] * len(r)), r, b, y, verify_known=known)
    assert abs(f.scale - 1.3) <= 4 * f.sigma["scale"] and abs(f.scale / 1.3 - 1) < 0.03
    assert f.pinned == []


def test_fit_without_baseline_pins_the_draft_floor():
    r = np.array([1, 4, 16, 64, 128, 256], dtype=float)
    y = t_verify(r * 8, 0.008, 1e-5, 200.0) + 2e-5 * r
    f = fit_latency(np.array(["dflash"] * 6), r, r * 8, y)
    assert f.pinned == ["dflash.a", "kv"] and f.draft["dflash"][0] == 0.0 and f.kv == 0.0
    assert abs(f.draft["dflash"][1] / 2e-5 - 1) < 0.05


def test_too_few_points_is_one_clear_line(tmp_path):
    load = {
        "schema": "dsbench.load/1",
        "points": [
            {
                "label": "c=1",
                "concurrency": 1,
                "tpot_s_mean": 0.01,
                "spec": {"rounds": 10, "tau_per_round": 3.0, "draft_tokens": 70},
            }
        ],
    }
    (tmp_path / "load.json").write_text(json.dumps(load))
    r = runner.invoke(app, ["fit", f"dspark={tmp_path}", "--out", str(tmp_path / "fit")])
    assert r.exit_code == 2 and "cannot fit" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["fit", str(tmp_path), "--out", str(tmp_path / "fit")])
    assert r.exit_code == 2 and "name its method" in r.output


@pytest.fixture(scope="module")
def live_points(tmp_path_factory):
    """`dsbench load` against `dsbench serve --sim` (DSpark, H100 roofline): 1..32 users to fit,
    6 and 24 held out, and an engine without speculative counters."""
    tmp_path = tmp_path_factory.mktemp("live-fit")
    from tests.servers import sim_server

    with sim_server("--domain", "chat", "--seed", "3") as (url, _):
        for conc, out, extra in (
            ("1,2,4,8,16,32", "fit-in", ["--method", "dspark"]),
            ("6,24", "held-out", []),
            ("1,4,8,16,32", "no-counters", ["--engine", "none", "--max-tokens", "64"]),
        ):
            r = runner.invoke(
                app,
                [
                    "load",
                    "--url",
                    url,
                    "--model",
                    "dsbench-sim",
                    "--workload",
                    "chat",
                    "--concurrency",
                    conc,
                    "--duration-s",
                    "3",
                    "--warmup-s",
                    "1",
                    "--out",
                    str(tmp_path / out),
                    "--quiet",
                    *extra,
                ],
            )
            assert r.exit_code == 0, r.output
    return tmp_path


@pytest.mark.timing
def test_fit_on_live_points_predicts_held_out_concurrencies(live_points, tmp_path):
    """The fit explains the points it was fitted to (MAPE < 15 %) and `sweep --fit` predicts
    per-user speed at the held-out 6 and 24 users within 12 % of what `dsbench load` measured
    there. Wall-clock speeds of a server sharing the cores: the timing tier."""
    from dsbench.config import SweepConfig
    from dsbench.core.simulator import simulate
    from dsbench.readers import read_load
    from dsbench.sweep import _fit_defaults, build_scenarios, load_inputs

    r = runner.invoke(
        app, ["fit", str(live_points / "fit-in"), "--out", str(tmp_path / "fit"), "--json"]
    )  # method as load recorded it
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["source"] == "fitted" and doc["mape_pct"] < 15 and len(doc["points"]) == 6
    cfg = SweepConfig(fit=str(tmp_path / "fit" / "fit.json"))
    _fit_defaults(cfg)
    prof, curves, ref = load_inputs(cfg)
    scenario = build_scenarios(cfg, cfg.validate(), prof, curves, ref)["dspark"]
    for pt in read_load(live_points / "held-out")["points"]:
        pred = simulate(scenario, pt["concurrency"], samples=20_000, seed=0).tps_user
        assert abs(pred / pt["tps_user_mean"] - 1) < 0.12, (pt["concurrency"], pred, pt["tps_user_mean"])


@pytest.mark.slow
def test_fit_on_live_points_feeds_sweep(live_points, tmp_path):
    """A fit of live points is a fitted document `sweep --fit` predicts from (labelled so), and an
    engine without counters needs acceptance curves for tau."""
    r = runner.invoke(app, ["fit", str(live_points / "fit-in"), "--out", str(tmp_path / "fit"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["source"] == "fitted" and len(doc["points"]) == 6
    r = runner.invoke(
        app,
        [
            "sweep",
            "--fit",
            str(tmp_path / "fit" / "fit.json"),
            "--slo",
            "300",
            "--out",
            str(tmp_path / "sw"),
            "--json",
            "--max-concurrency",
            "64",
        ],
    )
    assert r.exit_code == 0, r.output
    sw = json.loads(r.output)
    # only what the fit measured: DSpark, not a never-measured no-spec baseline
    assert sw["inputs"]["results_source"] == "predicted (fitted model)" and set(sw["methods"]) == {"dspark"}
    assert all(row["source"] == "predicted (fitted model)" for row in sw["frontier"])
    assert sw["inputs"]["measured_requests"] == [1, 32] and any(row.get("extrapolated") for row in sw["frontier"])
    assert not any(row.get("extrapolated") for row in sw["frontier"] if row["concurrency"] <= 32)
    fit = str(tmp_path / "fit" / "fit.json")
    r = runner.invoke(app, ["sweep", "--fit", fit, "--methods", "no-spec,dspark", "--out", str(tmp_path / "s2")])
    assert r.exit_code == 2 and "the fit measured dspark, not no-spec" in r.output
    r = runner.invoke(app, ["sweep", "--fit", fit, "--slo", "300", "--out", str(tmp_path / "s3"), "--json"])
    assert r.exit_code == 0 and max(json.loads(r.output)["inputs"]["concurrency"]) == 32  # bounded by default

    # an engine without speculative counters: tau from acceptance curves, said per point
    r = runner.invoke(app, ["fit", f"dspark={live_points / 'no-counters'}", "--out", str(tmp_path / "fit2")])
    assert r.exit_code == 2 and "--acceptance" in r.output
    r = runner.invoke(
        app,
        [
            "fit",
            f"dspark={live_points / 'no-counters'}",
            "--acceptance",
            "qwen3-8b",
            "--out",
            str(tmp_path / "fit2"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    pts = json.loads(r.stdout)["points"]
    assert len(pts) == 5 and all(
        p["tau_source"].startswith("acceptance file") and p["batch_tokens"] == 8 * p["requests"] for p in pts
    )
