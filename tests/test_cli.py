"""The CLI as users meet it: tables, files, JSON, and one-line errors for bad input."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.readers import read_profile
from dsbench.shipped import profiles_dir

runner = CliRunner()
FAST = ["--max-concurrency", "24", "--quiet"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_sweep_defaults_print_table_and_write_files(tmp_path):
    r = run("sweep", "--slo", 80, "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 0, r.output
    for name in ("no-spec", "mtp-1", "dflash", "eagle3", "dspark", "tok/s/GPU", "vs mtp-1", "simulated", "roofline"):
        assert name in r.output
    files = {p.name for p in (tmp_path / "o").iterdir()}
    assert files == {"frontier.png", "frontier.svg", "sweep.json", "sweep.csv"}
    assert (tmp_path / "o" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "o" / "frontier.svg").read_text()
    assert "<svg" in svg and "SLO 80" in svg
    doc = json.loads((tmp_path / "o" / "sweep.json").read_text())
    assert doc["schema"] == "dsbench.sweep/1" and len(doc["frontier"]) == 5 * len(doc["inputs"]["concurrency"])
    import pandas as pd

    csv = pd.read_csv(tmp_path / "o" / "sweep.csv")
    assert {"method", "concurrency", "tps_user", "throughput_tok_s_gpu", "verify_budget", "source"} <= set(csv.columns)
    assert set(csv["source"]) == {"simulated"}


def test_sweep_json_has_the_documented_shape(tmp_path):
    r = run("sweep", "--slo", 80, "--json", "--out", tmp_path, "--max-concurrency", 24)
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["slo"] == 80 and doc["baseline"] == "mtp-1"
    assert set(doc["methods"]) == {"no-spec", "mtp-1", "dflash", "eagle3", "dspark"}
    for m in doc["methods"].values():
        assert {"feasible", "throughput", "concurrency", "tps_user", "verify_budget", "ratio"} <= set(m)
    assert doc["methods"]["mtp-1"]["ratio"] == pytest.approx(1.0)
    assert doc["inputs"]["profile_source"] == "roofline" and doc["inputs"]["acceptance_sources"] == ["paper"]
    assert len(doc["inputs"]["concurrency"]) >= 24
    assert all(p["source"] == "simulated" for p in doc["frontier"])


def test_default_grid_has_at_least_32_levels(tmp_path):
    r = run("sweep", "--json", "--out", tmp_path, "--methods", "no-spec,mtp-1")
    doc = json.loads(r.stdout)
    assert len(doc["inputs"]["concurrency"]) >= 32
    assert doc["inputs"]["capped_by_memory"] and max(doc["inputs"]["concurrency"]) == 184


def test_unreachable_slo_is_infeasible_not_a_crash(tmp_path):
    r = run("sweep", "--slo", 5000, "--json", "--out", tmp_path, *FAST)
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    for m in doc["methods"].values():
        assert m == {**m, "feasible": False, "throughput": None, "concurrency": None, "ratio": None}
    again = run("sweep", "--slo", 5000, "--out", tmp_path, *FAST)  # earlier results are not replaced silently
    assert again.exit_code == 2 and "already exists" in again.output and "--force" in again.output
    table = run("sweep", "--slo", 5000, "--out", tmp_path, "--force", *FAST)
    assert table.exit_code == 0 and table.output.count("infeasible") == 5


def test_only_some_methods_meet_a_strict_slo(tmp_path):
    doc = json.loads(run("sweep", "--slo", 300, "--json", "--out", tmp_path, *FAST).stdout)
    assert not doc["methods"]["no-spec"]["feasible"] and not doc["methods"]["mtp-1"]["feasible"]
    assert doc["methods"]["dspark"]["feasible"] and doc["methods"]["dspark"]["ratio"] is None


def _profile_doc():
    return json.loads((profiles_dir() / "h100-qwen3-8b.json").read_text())


def _bad_profiles():
    doc = _profile_doc()
    neg = json.loads(json.dumps(doc))
    neg["points"][3]["step_s"] = -0.01
    nan = json.dumps(doc).replace('"step_s": ' + json.dumps(doc["points"][5]["step_s"]), '"step_s": NaN', 1)
    schema = {**doc, "schema": "dsbench.profile/9"}
    noschema = {k: v for k, v in doc.items() if k != "schema"}
    nodraft = {**doc, "draft": {k: v for k, v in doc["draft"].items() if k != "eagle3"}}
    return {
        "negative": (neg, "points[3].step_s' must be > 0"),
        "nan": (nan, "must be finite"),
        "schema": (schema, "unknown schema version 'dsbench.profile/9'"),
        "noschema": (noschema, "missing field 'schema'"),
        "malformed": ('{"schema": ', "not valid JSON"),
        "nodraft": (nodraft, "no drafter cost for method 'eagle3'"),
    }


@pytest.mark.parametrize("case", list(_bad_profiles()))
def test_bad_profile_is_one_line_and_exit_2(case, write_json, tmp_path):
    data, message = _bad_profiles()[case]
    p = write_json(f"{case}.json", data)
    r = run("sweep", "--profile", p, "--out", tmp_path / "o", *FAST)
    assert r.exit_code == 2
    assert message in r.output and str(p) in r.output.replace("\n", "")
    assert "Traceback" not in r.output
    assert not (tmp_path / "o" / "sweep.json").exists()


def test_bad_acceptance_inputs(write_json, tmp_path):
    cur = json.loads((profiles_dir() / "acceptance/qwen3-8b/dspark-math.json").read_text())
    cases = {
        "over1": ({**cur, "conditional": [1.2] * 7}, "conditional[0]' must lie in [0.0, 1.0]"),
        "gamma": ({**cur, "gamma": 5}, "'gamma' is 5 but 'conditional' has 7"),
        "source": ({**cur, "source": "vibes"}, "field 'source' must be one of"),
    }
    for name, (doc, message) in cases.items():
        p = write_json(f"acc-{name}/dspark-math.json", doc)
        r = run(
            "sweep",
            "--acceptance",
            p,
            "--methods",
            "mtp-1,dspark",
            "--baseline",
            "dspark",
            "--domain",
            "math",
            "--out",
            tmp_path,
            *FAST,
        )
        assert r.exit_code == 2 and message in r.output, (name, r.output)
    only_dspark = write_json("only/dspark-math.json", cur)
    r = run("sweep", "--acceptance", only_dspark.parent, "--out", tmp_path, *FAST)
    assert r.exit_code == 2 and "no acceptance curve for mtp-1/math" in r.output
    short = write_json("short/dspark-math.json", {**cur, "gamma": 3, "conditional": cur["conditional"][:3]})
    only = ("--acceptance", short, "--methods", "dspark", "--baseline", "dspark", "--domain", "math")
    r = run("sweep", *only, "--gamma", "7", "--out", tmp_path, *FAST)
    assert r.exit_code == 2 and "--gamma 7 needs 7" in r.output
    # without --gamma the search stops at the curve's last position
    r = run("sweep", *only, "--out", tmp_path / "searched", "--json", *FAST)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["inputs"]["gamma_search"] == [1, 2, 3]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--slo", "0"], "--slo must be a positive number"),
        (["--slo", "-5"], "--slo must be a positive number"),
        (["--slo", "nan"], "--slo must be a positive number"),
        (["--profile", "no/such/file.json"], "profile file not found: no/such/file.json"),
        (["--acceptance", "no/such/dir"], "acceptance file not found"),
        (["--methods", "mtp-1,medusa"], "unknown method(s) medusa"),
        (["--baseline", "eagle3", "--methods", "mtp-1,dspark"], "--baseline 'eagle3' is not among"),
        (["--domain", "poetry"], "--domain must be one of"),
        (["--policy", "magic"], "unknown policy 'magic'"),
        (["--gamma", "0"], "--gamma and --max-gamma must be between 1 and 64"),
    ],
)
def test_bad_options_are_one_line(args, message, tmp_path):
    r = run("sweep", *args, "--out", tmp_path, *FAST)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert len(r.output.strip().splitlines()) <= 2  # one line (rich may wrap a long path once)


def test_real_process_error_has_no_traceback(tmp_path):
    """The installed entry point, as a user runs it."""
    p = subprocess.run(
        [sys.executable, "-m", "dsbench.cli", "sweep", "--profile", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: profile file not found")
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_help_has_examples_and_does_not_import_heavy_modules():
    r = run("sweep", "--help")
    assert r.exit_code == 0 and "Examples" in r.output and "dsbench sweep --slo 80" in r.output
    heavy = ("torch", "numpy", "scipy", "matplotlib", "pandas")
    code = f"import sys, dsbench.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_sweep_never_imports_torch(tmp_path):
    code = (
        "import sys; from dsbench.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, ['sweep', '--quiet', '--max-concurrency', '8', '--out', {str(tmp_path)!r}]); "
        "print(r.exit_code, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == [
        "0",
        "False",
        "False",
    ]


def test_profile_roofline_writes_a_profile_sweep_reads(tmp_path):
    out = tmp_path / "h200-14b.json"
    r = run("profile", "--roofline", "H200", "--target", "qwen3-14b", "--context", 4096, "--out", out)
    assert r.exit_code == 0, r.output
    p = read_profile(out)
    assert p.source == "roofline" and p.device["name"] == "H200" and p.context_len == 4096
    assert p.raw["roofline"]["knobs"]["token_tile"] == 64
    assert run("profile", "--roofline", "H200", "--out", out).exit_code == 2  # no silent overwrite
    r = run("sweep", "--profile", out, "--acceptance", "qwen3-8b", "--json", "--out", tmp_path / "s", *FAST)
    assert r.exit_code == 0 and json.loads(r.stdout)["inputs"]["device"] == "H200"
    r = run("profile", "--roofline", "Voodoo5", "--out", tmp_path / "x.json")
    assert r.exit_code == 2 and "unknown GPU 'Voodoo5'" in r.output


def test_version_and_python_dash_m():
    import subprocess
    import sys

    from dsbench import __version__

    r = subprocess.run([sys.executable, "-m", "dsbench", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"dsbench {__version__}"


def test_load_method_label_is_checked(tmp_path):
    out = tmp_path / "never-written"
    r = runner.invoke(
        app,
        [
            "load",
            "--url",
            "http://127.0.0.1:9",
            "--model",
            "m",
            "--workload",
            "chat",
            "--concurrency",
            "1",
            "--requests",
            "1",
            "--method",
            "medusa",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 2 and "--method must be one of" in r.output and not out.exists()
