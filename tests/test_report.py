"""`dsbench report`: one self-contained, escaped HTML file, checked as text and rendered by Chromium."""

import html as html_lib
import json
import re
import shutil
import subprocess

import pytest
import torch
from typer.testing import CliRunner

from dsbench.cli import app
from tests.conftest import REPO
from tests.servers import build_tiny_qwen3, sim_server

runner = CliRunner()
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every kind of result, made by dsbench itself: a sweep on a profile whose model name is
    hostile HTML, a live load on the simulated server with its fit, accept + calibrate on a tiny
    target with a DSpark drafter, and a second sweep (H200) as another run."""
    from transformers import AutoModelForCausalLM

    from dsbench.speculative.checkpoints import save_drafter
    from dsbench.speculative.models import BlockModel

    root = tmp_path_factory.mktemp("report")
    run = root / "run-a"
    prof = json.loads((REPO / "profiles" / "h100-qwen3-8b.json").read_text())
    prof["model"]["name"] = EVIL
    (root / "evil-profile.json").write_text(json.dumps(prof))
    for args, out in (
        (["--profile", str(root / "evil-profile.json"), "--acceptance", "qwen3-8b"], run / "sweep"),
        (["--profile", "h200-qwen3-8b"], root / "run-b" / "sweep"),
    ):
        r = runner.invoke(app, ["sweep", *args, "--methods", "mtp-1,dflash,dspark", "--out", str(out), "--json"])
        assert r.exit_code == 0, r.output
    with sim_server("--domain", "chat", "--model-name", EVIL) as (url, _):
        r = runner.invoke(
            app,
            [
                "load",
                "--url",
                url,
                "--model",
                EVIL,
                "--workload",
                "chat",
                "--concurrency",
                "1,2,4,8,16,32",
                "--max-tokens",
                "64",
                "--duration-s",
                "2",
                "--warmup-s",
                "0.5",
                "--out",
                str(run / "load"),
                "--quiet",
            ],
        )
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["fit", f"dspark={run / 'load'}", "--out", str(run / "fit")])
    assert r.exit_code == 0, r.output
    target_dir = build_tiny_qwen3(root / "target")
    target = AutoModelForCausalLM.from_pretrained(target_dir)
    torch.manual_seed(0)
    d = BlockModel(target.config, draft_layers=1, n_features=1, markov_rank=16, confidence=True, mask_token_id=0)
    draft_dir = save_drafter(d, "dspark", target.config, root / "dspark", [0], 4)
    r = runner.invoke(
        app,
        [
            "accept",
            "--target",
            str(target_dir),
            "--draft",
            str(draft_dir),
            "--workload",
            "code",
            "--samples",
            "4",
            "--max-new-tokens",
            "40",
            "--out",
            str(run / "accept"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["calibrate", "--acceptance", str(run / "accept"), "--out", str(run / "calibration.json")])
    assert r.exit_code == 0, r.output
    return root


@pytest.fixture(scope="module")
def report(results):
    out = results / "report.html"
    r = runner.invoke(
        app, ["report", str(results / "run-a"), str(results / "run-b"), "-o", str(out), "--title", "H100 <vs> H200"]
    )
    assert r.exit_code == 0, r.output
    return out.read_text()


def test_report_is_self_contained(report):
    """No external references of any kind: no links, iframes, imports, and only the explorer's two
    inline scripts (its data and its code, neither with a src); every src/href is a fragment inside
    the page; URLs appear only as text (the commands that made the files)."""
    for tag in ("<link", "<iframe", "<object", "<embed", "@import", "<img"):
        assert tag not in report.lower(), tag
    assert re.findall(r"<script[^>]*>", report) == ["<script type=application/json id=frontier-data>", "<script>"]
    assert not re.search(r"""<[^>]*\b(?:src|href)\s*=\s*(?!["']?#)""", report)
    assert not re.search(r"url\((?!#)", report)
    assert report.count("<svg") >= 8


def test_input_strings_are_shown_as_text(report):
    assert EVIL not in report
    assert html_escaped(EVIL) in report
    assert "H100 &lt;vs&gt; H200" in report


def html_escaped(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_report_has_every_section_side_by_side(report):
    for title in (
        "Best throughput at the SLO",
        "Throughput vs per-user speed",
        "Verification budget per request vs concurrency",
        "Conditional acceptance per position",
        "Confidence calibration",
        "Latency and per-user speed per load point",
        "Tokens per chunk vs tau",
        "Acceptance and per-user speed against context",
        "Explore the frontier",
        "SPS(B) profile",
        "Fitted latency model",
        "Inputs and provenance",
    ):
        assert f"<h2>{html_escaped(title)}" in report, title
    assert "repeat(2,1fr)" in report and "run-a" in report and "run-b" in report
    for source in ("simulated", "measured", "roofline", "paper", "fitted"):
        assert f"<b>{source}</b>" in report, source


def test_bad_inputs_are_one_line(tmp_path):
    r = runner.invoke(app, ["report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "no such file" in r.output and not (tmp_path / "r.html").exists()
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "no dsbench results" in r.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_chromium_renders_the_figures(results, report, tmp_path):
    """A headless Chromium screenshot of the report (offline, file://) shows the figures: the
    method colours of the frontier lines cover thousands of pixels. The screenshot is kept next to
    the report for a human look."""
    import matplotlib.image as mpimg
    import numpy as np

    from dsbench.report.plots import METHOD_COLORS

    shot = results / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,3000",
            f"--screenshot={shot}",
            (results / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    img = (mpimg.imread(shot)[..., :3] * 255).astype(int)
    for method in ("dspark", "dflash"):
        rgb = np.array([int(METHOD_COLORS[method][i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(img - rgb).sum(-1) < 40).sum() > 2000, method


def _best_table(html_text: str) -> dict[str, list[str]]:
    """The explorer's best-at-SLO table as Chromium left it: method -> its cells."""
    table = re.search(r'<table id="best-at-slo">(.*?)</table>', html_text, re.S).group(1)
    rows = {}
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]:
        cells = [html_lib.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
        rows[cells[0]] = cells
    return rows


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_the_slo_slider_recomputes_the_best_at_slo_table_in_chromium(tmp_path):
    """Headless Chromium opens a report of one sweep with the slider at two SLOs and one method
    unticked; the table the page's script computes equals, for every method, the best throughput
    Python finds in the sweep's own frontier at that SLO (and the unticked method is gone)."""
    out = tmp_path / "sweep"
    r = runner.invoke(app, ["sweep", "--methods", "mtp-1,dspark", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    frontier = json.loads((out / "sweep.json").read_text())["frontier"]
    for slo, hide in ((60, ""), (200, "mtp-1")):
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
             (tmp_path / "r.html").as_uri() + f"#slo={slo}&hide={hide}"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        rows = _best_table(dom)
        assert set(rows) == {"mtp-1", "dspark"} - {hide}, rows
        for m, cells in rows.items():
            ok = [p for p in frontier if p["method"] == m and p["tps_user"] >= slo]
            best = max(ok, key=lambda p: p["throughput_tok_s_gpu"]) if ok else None
            shown = cells[2].replace(",", "")
            assert (shown == "infeasible") if best is None else (shown == f"{best['throughput_tok_s_gpu']:.0f}"), cells
            assert cells[1] == "modelled" and cells[6].startswith("simulated")
