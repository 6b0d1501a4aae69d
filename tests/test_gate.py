"""`dsbench gate`: verdicts, noise awareness, every exit code, markdown and JUnit outputs."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.core.gating import judge

runner = CliRunner()


def test_single_run_is_a_bare_threshold():
    assert judge([100.0], [96.0], "higher", 0.05).status == "pass"
    assert judge([100.0], [94.0], "higher", 0.05).status == "regressed"
    assert judge([0.10], [0.13], "lower", 0.25).status == "regressed"  # latency up 30 %
    assert judge([0.10], [0.07], "lower", 0.25).status == "improved"
    assert judge([0.0], [0.02], "lower", None, 0.01).status == "regressed"  # error rate: absolute
    v = judge([200.0], [150.0], "higher", 0.05)
    assert v.change_pct == pytest.approx(-25.0) and v.allowed == pytest.approx(10.0)


def test_repeated_runs_use_their_spread():
    """A 7 % drop inside run-to-run noise of ~8 % is not a regression; the same drop with 0.5 %
    noise is, with a tiny p."""
    noisy = judge([100, 110, 90, 105, 95], [93, 103, 83, 98, 88], "higher", 0.05)
    assert noisy.status == "pass" and noisy.p_value > 0.05 and noisy.runs == (5, 5)
    tight = judge([100, 100.5, 99.5], [93, 93.5, 92.5], "higher", 0.05)
    assert tight.status == "regressed" and tight.p_value < 1e-3


def test_false_alarm_rate_is_alpha():
    """With no real change and a zero tolerance, repeated-run gates fail at rate alpha: 2,000
    trials of 5 vs 5 runs from one N(100, 5) (seed 0) fail 5 % +- 1.5 % of the time."""
    rng = np.random.default_rng(0)
    fails = sum(judge(rng.normal(100, 5, 5), rng.normal(100, 5, 5), "higher", 0.0).status == "regressed" for _ in range(2000))
    assert abs(fails / 2000 - 0.05) < 0.015


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Real sweep outputs: three seeds of DSpark's scheduler and three of a fixed full-length policy."""
    root = tmp_path_factory.mktemp("sweeps")
    out = {}
    for policy in ("dspark", "fixed"):
        for seed in (0, 1, 2):
            d = root / f"{policy}-{seed}"
            r = runner.invoke(app, ["sweep", "--methods", "mtp-1,dspark", "--policy", policy, "--seed", str(seed),
                                    "--out", str(d), "--json"])
            assert r.exit_code == 0, r.output
            out.setdefault(policy, []).append(str(d))
    return out


def test_gate_passes_on_the_same_results(sweeps, tmp_path):
    r = runner.invoke(app, ["gate", sweeps["dspark"][0], "--baseline", sweeps["dspark"][0], "--summary", str(tmp_path / "s.md")])
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
        (tmp_path / "acc.json").write_text(json.dumps({"schema": "dsbench.acceptance/1", "source": "measured", "method": "dspark",
                                                       "domain": "chat", "conditional": [0.8, 0.7]}))
        args = ["gate", str(tmp_path / "acc.json"), *base]
    else:
        (tmp_path / "r.toml").write_text('[[rules]]\nmetric = "*"\ndirection = "sideways"\n')
        args = ["gate", sweeps["dspark"][0], *base, "--rules", str(tmp_path / "r.toml")]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_example_ci_workflow_uses_real_options():
    """docs/ci: the workflow is valid YAML, every dsbench option it passes exists, and its rules
    file loads."""
    import re
    from pathlib import Path

    import yaml

    from dsbench.results import load_gate_rules

    docs = Path(__file__).parent.parent / "docs" / "ci"
    wf = yaml.safe_load((docs / "dsbench-gate.yml").read_text())
    scripts = " ".join(s.get("run", "") for s in wf["jobs"]["load-and-gate"]["steps"]).replace("\\\n", " ")
    calls = re.findall(r"dsbench (\w+)([^\n]*)", scripts)
    assert {c for c, _ in calls} >= {"load", "gate"}
    for cmd, rest in calls:
        helptext = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "300"}).output
        for opt in re.findall(r"(--[a-z][a-z-]*)", rest):
            assert opt in helptext, (cmd, opt)
    rules, drop = load_gate_rules(docs / "gate-rules.toml")
    assert drop == 5 and len(rules) == 3
