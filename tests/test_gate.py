"""`dsbench gate`: verdicts, noise awareness, every exit code, markdown and JUnit outputs."""

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.core.gating import compare, decide, holm, judge, pool, pool_sides

runner = CliRunner()


def one(value, se=None):
    return pool([value], [se])


def test_a_single_run_is_judged_against_its_own_noise():
    """An 8 % drop resolved to 0.5 % is a regression (past a 5 % tolerance by 4 standard errors);
    the same drop in 5 % noise is inconclusive (with how much longer would resolve it); a 4 % drop
    inside a resolved 5 % tolerance passes, and so does 6 %, not past it with confidence."""
    assert judge(one(100, 0.5), one(92, 0.5), "higher", 5.0).status == "regressed"
    assert judge(one(100, 0.5), one(94, 0.5), "higher", 5.0).status == "pass"
    noisy = judge(one(100, 5.0), one(92, 5.0), "higher", 5.0)
    assert noisy.status == "inconclusive" and noisy.mdc > 5.0 and noisy.longer == pytest.approx((noisy.mdc / 5.0) ** 2)
    assert judge(one(100, 0.5), one(96, 0.5), "higher", 5.0).status == "pass"
    assert judge(one(0.10, 0.001), one(0.13, 0.001), "lower", 0.025).status == "regressed"  # latency up 30 %
    assert judge(one(0.10, 0.001), one(0.07, 0.001), "lower", 0.025).status == "improved"
    v = judge(one(200, 1), one(150, 1), "higher", 10.0)
    assert v.change_pct == pytest.approx(-25.0) and v.allowed == 10.0 and v.p_value < 1e-10


def test_a_run_without_a_standard_error_is_inconclusive_and_says_why():
    v = judge(pool([100.0], [None], ["12 requests are too few"], [4.0]), one(50, 1), "higher", 5.0)
    assert v.status == "inconclusive" and v.reason == "12 requests are too few" and v.longer == 4.0


def test_repeated_runs_pool_their_spread():
    """A 7 % drop inside run-to-run noise of ~8 % is not a regression even when each run claims
    1 % (the spread between runs wins); the same drop with 0.5 % spread is, with a tiny p."""
    noisy = judge(*pool_sides(([100, 110, 90, 105, 95], [1] * 5), ([93, 103, 83, 98, 88], [1] * 5)), "higher", 0.0)
    assert noisy.status != "regressed" and noisy.p_value > 0.05 and noisy.runs == (5, 5)
    tight = judge(*pool_sides(([100, 100.5, 99.5], [0.5] * 3), ([93, 93.5, 92.5], [0.5] * 3)), "higher", 0.0)
    assert tight.status == "regressed" and tight.p_value < 1e-3


def test_a_baselines_repeats_lend_their_run_to_run_spread_to_a_single_candidate_run():
    """Three baseline runs spread 8 % while each claims 1 %: one candidate run 7 % lower is not
    a regression, because the spread between runs applies to it too."""
    b, c = pool_sides(([100, 110, 90], [1] * 3), ([93], [1]))
    assert c.var > 50 and judge(b, c, "higher", 0.0).status != "regressed"
    _, alone = pool_sides(([100], [1]), ([93], [1]))
    assert alone.var == 1 and judge(*pool_sides(([100], [1]), ([93], [1])), "higher", 0.0).status == "regressed"


def _aa_gate(rng, metrics: int, se: float = 1.0, shift: float = 0.0, allowed: float = 0.0) -> bool:
    """One A/A (or shifted) gate over `metrics` independent metrics: did anything regress?"""
    vs = [
        compare(one(rng.normal(100, se), se), one(rng.normal(100 - shift, se), se), "higher", allowed, 0.05, metrics)
        for _ in range(metrics)
    ]
    decide(vs, 0.05)
    return any(v.status == "regressed" for v in vs)


def test_false_alarm_rate_of_a_whole_gate_is_at_most_alpha():
    """2,000 A/A gates of 12 metrics each, zero tolerance, exact standard errors (seed 0): the
    share that fails anywhere is Holm's family-wise rate, 1 - (1 - 0.05/12)^12 = 4.9 % +- 1.5 %.
    Without the correction it would be 46 %."""
    rng = np.random.default_rng(0)
    rate = np.mean([_aa_gate(rng, 12) for _ in range(2000)])
    assert abs(rate - (1 - (1 - 0.05 / 12) ** 12)) < 0.015


def test_power_at_the_minimum_detectable_change_is_80_percent():
    """A true drop of tolerance + MDC is caught 80 % of the time (2,000 gates of one metric,
    seed 1; +- 3 %): the MDC the gate prints means what it says."""
    rng = np.random.default_rng(1)
    mdc = compare(one(100, 1.0), one(100, 1.0), "higher", 2.0, 0.05).mdc
    rate = np.mean([_aa_gate(rng, 1, shift=2.0 + mdc, allowed=2.0) for _ in range(2000)])
    assert abs(rate - 0.8) < 0.03


def test_holm_steps_down():
    assert holm([0.001, 0.02, 0.04], 0.05) == [True, True, True]
    assert holm([0.001, 0.03, 0.04], 0.05) == [True, False, False]  # 0.03 > 0.05 / 2


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Real sweep outputs: three seeds of DSpark's scheduler and three of a fixed full-length policy."""
    root = tmp_path_factory.mktemp("sweeps")
    out = {}
    for policy in ("dspark", "fixed"):
        for seed in (0, 1, 2):
            d = root / f"{policy}-{seed}"
            r = runner.invoke(
                app,
                [
                    "sweep",
                    "--methods",
                    "mtp-1,dspark",
                    "--policy",
                    policy,
                    "--seed",
                    str(seed),
                    "--out",
                    str(d),
                    "--json",
                ],
            )
            assert r.exit_code == 0, r.output
            out.setdefault(policy, []).append(str(d))
    return out


def test_gate_passes_on_the_same_results(sweeps, tmp_path):
    r = runner.invoke(
        app, ["gate", sweeps["dspark"][0], "--baseline", sweeps["dspark"][0], "--summary", str(tmp_path / "s.md")]
    )
    assert r.exit_code == 0, r.output
    assert "dsbench gate: passed" in r.output and (tmp_path / "s.md").read_text().startswith("**dsbench gate: passed**")


def test_gate_fails_a_regression_with_repeats_and_writes_junit(sweeps, tmp_path):
    """Losing DSpark's scheduler lowers its throughput at the SLO in every seed: regressed, with
    the t-test's p; MTP-1 is unchanged and passes."""
    args = ["gate", *sweeps["fixed"]]
    for b in sweeps["dspark"]:
        args += ["--baseline", b]
    r = runner.invoke(app, args + ["--junit", str(tmp_path / "gate.xml"), "--json"])
    assert r.exit_code == 1, r.output
    rows = {row["metric"]: row for row in json.loads(r.stdout)["rows"]}
    bad = rows["sweep.dspark.throughput_at_slo"]
    assert bad["status"] == "regressed" and bad["verdict"]["runs"] == [3, 3] and bad["verdict"]["p_value"] < 0.05
    assert rows["sweep.mtp-1.throughput_at_slo"]["status"] == "pass"
    suite = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite")
    failed = [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None]
    assert "sweep.dspark.throughput_at_slo" in failed and suite.get("failures") == str(len(failed))


def test_rules_file_overrides_and_ignores(sweeps, tmp_path):
    rules = tmp_path / "gate.toml"
    rules.write_text('[[rules]]\nmetric = "sweep.dspark.*"\nignore = true\n')
    args = ["gate", *sweeps["fixed"], "--rules", str(rules)]
    for b in sweeps["dspark"]:
        args += ["--baseline", b]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "ignored" in r.output


@pytest.mark.parametrize("case", ["missing", "wrong-schema", "nothing-in-common", "bad-rules"])
def test_unusable_input_exits_2(sweeps, tmp_path, case):
    base = ["--baseline", sweeps["dspark"][0]]
    if case == "missing":
        args = ["gate", str(tmp_path / "nope"), *base]
    elif case == "wrong-schema":
        (tmp_path / "x.json").write_text(json.dumps({"schema": "something/9"}))
        args = ["gate", str(tmp_path / "x.json"), *base]
    elif case == "nothing-in-common":
        (tmp_path / "acc.json").write_text(
            json.dumps(
                {
                    "schema": "dsbench.acceptance/1",
                    "source": "measured",
                    "method": "dspark",
                    "domain": "chat",
                    "conditional": [0.8, 0.7],
                }
            )
        )
        args = ["gate", str(tmp_path / "acc.json"), *base]
    else:
        (tmp_path / "r.toml").write_text('[[rules]]\nmetric = "*"\ndirection = "sideways"\n')
        args = ["gate", sweeps["dspark"][0], *base, "--rules", str(tmp_path / "r.toml")]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_unlike_runs_are_refused_naming_the_fields(sweeps, tmp_path):
    """An H200 sweep against an H100 one is another experiment: exit 2 naming device and profile;
    --allow-different compares anyway and every row says so."""
    other = tmp_path / "h200"
    assert (
        runner.invoke(
            app, ["sweep", "--methods", "mtp-1,dspark", "--profile", "h200-qwen3-8b", "--out", str(other)]
        ).exit_code
        == 0
    )
    r = runner.invoke(app, ["gate", str(other), "--baseline", sweeps["dspark"][0]])
    assert r.exit_code == 2 and "not like for like" in r.output
    assert "device: H100" in r.output and "vs H200" in r.output and "profile: h100-qwen3-8b.json" in r.output
    r = runner.invoke(app, ["gate", str(other), "--baseline", sweeps["dspark"][0], "--allow-different"])
    assert r.exit_code in (0, 1) and "not like for like (--allow-different)" in r.output
    rows = [line for line in r.output.splitlines() if line.startswith("| `sweep.")]
    assert rows and all("(unlike)" in line for line in rows)


def test_a_sweep_a_a_passes_and_different_seeds_pass_within_their_monte_carlo_error(sweeps):
    """Modelled sweeps carry their Monte-Carlo error: three seeds against three seeds pass."""
    args = ["gate", *sweeps["dspark"]]
    for b in sweeps["dspark"]:
        args += ["--baseline", b]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert all(row["verdict"]["se"] is not None and row["status"] == "pass" for row in rows), rows


def test_a_partial_sweep_is_gated_on_what_it_holds_or_refused(sweeps, tmp_path):
    """An interrupted sweep holds its finished methods: the gate refuses it (exit 2, never a
    KeyError) unless --allow-missing, then gates those; the report shows it."""
    full = json.loads((Path(sweeps["dspark"][0]) / "sweep.json").read_text())
    part = tmp_path / "partial"
    part.mkdir()
    doc = {
        **full,
        "partial": True,
        "methods": {"mtp-1": full["methods"]["mtp-1"]},
        "frontier": [r for r in full["frontier"] if r["method"] == "mtp-1"],
    }
    (part / "sweep.json").write_text(json.dumps(doc))
    r = runner.invoke(app, ["gate", str(part), "--baseline", sweeps["dspark"][0]])
    assert r.exit_code == 2 and "partial" in r.output and "--allow-missing" in r.output
    r = runner.invoke(app, ["gate", str(part), "--baseline", sweeps["dspark"][0], "--allow-missing"])
    assert r.exit_code == 0 and "> partial:" in r.output
    del doc["methods"]
    (part / "sweep.json").write_text(json.dumps(doc))  # an older version's partial file: no summary at all
    r = runner.invoke(app, ["report", str(part), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output


def test_exit_codes_mean_one_thing(sweeps, tmp_path, monkeypatch):
    """A summary path that cannot be written is unusable input (2), not a regression (1); a bug
    is 70, one line, no traceback."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    blocked = tmp_path / "file"
    blocked.write_text("")
    r = runner.invoke(
        app, ["gate", sweeps["dspark"][0], "--baseline", sweeps["dspark"][0], "--summary", str(blocked / "s.md")]
    )
    assert r.exit_code == 2 and "cannot write" in r.output and "Traceback" not in r.output

    import dsbench.gate

    def broken(*a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(dsbench.gate, "run_gate", broken)
    r = runner.invoke(app, ["gate", sweeps["dspark"][0], "--baseline", sweeps["dspark"][0]])
    assert r.exit_code == 70 and "internal error: ZeroDivisionError: boom" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_plan_says_how_much_longer_runs_must_be(sweeps):
    r = runner.invoke(app, ["gate", "--plan", "--baseline", sweeps["dspark"][0], "--max-drop-pct", "0.1", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["metric"]: row for row in json.loads(r.stdout)}
    row = rows["sweep.dspark.throughput_at_slo"]
    assert row["mdc"] > row["allowed"] and row["longer"] == pytest.approx((row["mdc"] / row["allowed"]) ** 2)
    assert runner.invoke(app, ["gate", sweeps["dspark"][0], "--plan", "--baseline", sweeps["dspark"][0]]).exit_code == 2


@pytest.mark.slow
def test_load_runs_carry_their_own_uncertainty_and_an_a_a_pair_passes(tmp_path):
    """Two identical load runs against the simulator: every gated figure has a standard error or
    says why not; the A/A gate passes; the runs say they were simulated; a run against a simulated
    H200 is refused as another experiment (max_tokens differs too)."""
    from tests.servers import sim_server

    with sim_server("--time-scale", "0.5") as (url, _):
        for name in ("a", "b"):
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
                    "4",
                    "--duration-s",
                    "8",
                    "--warmup-s",
                    "0.5",
                    "--max-tokens",
                    "48",
                    "--out",
                    str(tmp_path / name),
                    "--quiet",
                ],
            )
            assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "a" / "load.json").read_text())
    assert doc["server"]["source"] == "simulated" and doc["points"][0]["source"] == "simulated"
    unc = doc["points"][0]["uncertainty"]
    assert set(unc) >= {"output_tok_s", "tps_user_p50", "tps_user_p90", "ttft_s_p50", "tpot_s_p99", "error_rate", "tau"}
    assert all(u["se"] is not None or u["reason"] for u in unc.values())
    assert unc["output_tok_s"]["se"] and unc["tps_user_p50"]["se"]
    # tau's se needs 8 independent blocks of counter scrapes; a busy machine scrapes less often
    # (the period follows the scrape cost), and then the run says how much longer would do
    assert unc["tau"]["se"] or unc["tau"]["longer"] > 1
    # One run a side measures no between-run variation, and on shared cores the simulator's latencies
    # follow whatever else runs (TTFT p50 moved +20.5 % between two runs in one CI job while other
    # work shared the machine): declare it, as the gate's own note asks single-run pairs to do.
    gate = ["gate", str(tmp_path / "b"), "--baseline", str(tmp_path / "a"), "--run-noise-pct", "25"]
    r = runner.invoke(app, gate)
    assert r.exit_code == 0, r.output
    with sim_server("--time-scale", "0.5", "--profile", "h200-qwen3-8b") as (
        url,
        _,
    ):  # another GPU behind the same URL shape
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
                "4",
                "--requests",
                "8",
                "--warmup-s",
                "0",
                "--max-tokens",
                "16",
                "--out",
                str(tmp_path / "c"),
                "--quiet",
            ],
        )
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["gate", str(tmp_path / "c"), "--baseline", str(tmp_path / "a")])
    assert r.exit_code == 2 and "server profile: h100-qwen3-8b" in r.output and "device: H100" in r.output, r.output


WORKFLOW = Path(__file__).parent.parent / "docs" / "ci" / "dsbench-gate.yml"


def test_example_ci_workflow_uses_real_options():
    """docs/ci: the workflow is valid YAML, checks the repository out and installs dsbench from
    it (never PyPI's unrelated `dsbench`), every dsbench option it passes exists, and its rules
    file loads."""
    import re

    import yaml

    from dsbench.readers import read_gate_rules

    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["load-and-gate"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    scripts = " ".join(s.get("run", "") for s in steps).replace("\\\n", " ")
    assert "pip install ." in scripts and not re.search(r"pip install dsbench\b", scripts)
    calls = re.findall(r"dsbench (\w+)([^\n]*)", scripts)
    assert {c for c, _ in calls} >= {"load", "gate"}
    for cmd, rest in calls:
        helptext = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "300"}).output
        for opt in re.findall(r"(--[a-z][a-z-]*)", rest):
            assert opt in helptext, (cmd, opt)
    read_gate_rules(WORKFLOW.parent / "gate-rules.toml")


def _run_workflow(event: str, workdir: Path, env: dict, store: Path) -> subprocess.CompletedProcess | None:
    """The workflow's steps for one event, as GitHub would run them: `run:` steps in bash (the
    install step skipped: this environment is the installed checkout), the artifact steps as
    copies to and from `store`. Returns the gate step's result (None when it did not run)."""
    import yaml

    wf = yaml.safe_load(WORKFLOW.read_text())["jobs"]["load-and-gate"]
    env = {**os.environ, **{k: str(v) for k, v in wf["env"].items() if "${{" not in str(v)}, **env}
    gate = None
    for step in wf["steps"]:
        cond = step.get("if", "")
        if ("refs/heads/main" in cond and event != "push") or ("pull_request" in cond and event != "pull_request"):
            continue
        uses = step.get("uses", "")
        if "upload-artifact" in uses and step["with"]["name"] == "dsbench-baseline":
            shutil.copytree(workdir / "results", store, dirs_exist_ok=True)
        elif "download-artifact" in uses:
            shutil.copytree(store, workdir / step["with"]["path"])
        elif "run" in step and not step["name"].startswith("Install"):
            r = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", step["run"]],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if step["name"] == "Gate":
                gate = r
            else:
                assert r.returncode == 0, (step["name"], r.stdout[-2000:], r.stderr[-2000:])
    return gate


@pytest.mark.slow
def test_the_example_workflow_runs_end_to_end_against_a_local_server(tmp_path):
    """main's push measures a baseline, a pull request measures again and gates: against the same
    server the gate passes and writes the job summary and JUnit; the baseline records that the
    server was a simulator; the API key reaches no file."""
    from tests.servers import sim_server

    store = tmp_path / "artifact"
    with sim_server("--seed", "3") as (url, _):
        env = {
            "STAGING_URL": url,
            "STAGING_MODEL": "dsbench-sim",
            "STAGING_API_KEY": "sk-secret-42",
            "DSBENCH_RUNS": "2",
            "DSBENCH_DURATION": "2",
            "DSBENCH_WARMUP": "0.5",
        }
        main, pr = tmp_path / "main", tmp_path / "pr"
        for d in (main, pr):
            (d / "docs").mkdir(parents=True)
            shutil.copytree(WORKFLOW.parent, d / "docs" / "ci")
        assert _run_workflow("push", main, {**env, "GITHUB_STEP_SUMMARY": str(main / "summary.md")}, store) is None
        gate = _run_workflow("pull_request", pr, {**env, "GITHUB_STEP_SUMMARY": str(pr / "summary.md")}, store)
    assert gate is not None and gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-2000:]
    assert (pr / "summary.md").read_text().startswith("**dsbench gate: passed**")
    suite = ET.parse(pr / "gate.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) > 10
    assert json.loads((pr / "baseline" / "run-1" / "load.json").read_text())["server"]["source"] == "simulated"
    for f in (*main.rglob("*"), *pr.rglob("*")):
        assert not f.is_file() or b"sk-secret-42" not in f.read_bytes(), f
