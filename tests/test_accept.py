"""`dsbench accept` end to end on a tiny local target and a DSpark checkpoint in DeepSpec's layout."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.readers import read_acceptance
from dsbench.speculative.checkpoints import save_drafter
from dsbench.speculative.models import BlockModel
from tests.servers import build_tiny_qwen3

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("accept")
    target_dir = build_tiny_qwen3(root / "target")
    target = AutoModelForCausalLM.from_pretrained(target_dir)
    torch.manual_seed(0)
    d = BlockModel(target.config, draft_layers=1, n_features=1, markov_rank=16, confidence=True, mask_token_id=0)
    with torch.no_grad():
        d.embed_tokens.weight.copy_(target.get_input_embeddings().weight)
        d.lm_head.weight.copy_(target.get_output_embeddings().weight)
    draft_dir = save_drafter(d, "dspark", target.config, root / "dspark", [0], 4)
    return target_dir, draft_dir


def test_accept_writes_curves_sweep_can_read(models, tmp_path):
    target_dir, draft_dir = models
    r = runner.invoke(
        app,
        [
            "accept",
            "--target",
            str(target_dir),
            "--draft",
            str(draft_dir),
            "--workload",
            "math",
            "--workload",
            "chat",
            "--samples",
            "3",
            "--max-new-tokens",
            "24",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["method"] == "dspark" and summary["gamma"] == 4
    for name in ("math", "chat"):
        f = summary["datasets"][name]
        assert f["rounds"] > 0 and 1.0 <= f["tau"] <= 5.0 and f["mean_proposal"] == 4.0
    curves = {(c.method, c.domain): c for c in read_acceptance(tmp_path)}
    assert set(curves) == {("dspark", "math"), ("dspark", "chat")}
    c = curves[("dspark", "chat")]
    assert c.source == "measured" and len(c.raw["per_round"]["proposal"]) == c.raw["rounds"]
    committed = c.raw["per_round"]["committed"]
    assert c.tau == pytest.approx(sum(committed) / len(committed))
    s = runner.invoke(
        app,
        [
            "sweep",
            "--acceptance",
            str(tmp_path),
            "--methods",
            "no-spec,dspark",
            "--baseline",
            "no-spec",
            "--domain",
            "chat",
            "--gamma",
            str(len(c.conditional)),
            "--max-concurrency",
            "8",
            "--json",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert s.exit_code == 0, s.output
    inputs = json.loads(s.stdout)["inputs"]
    assert inputs["acceptance_sources"] == ["measured"] and inputs["acceptance_protocols"] == ["dsbench"]


def test_accept_with_an_eagle3_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    from dsbench.speculative.models import Eagle3Model

    target_dir = build_tiny_qwen3(tmp_path / "target", layers=6)  # Eagle3 reads five layers, never the last
    target = AutoModelForCausalLM.from_pretrained(target_dir)
    torch.manual_seed(0)
    d = save_drafter(Eagle3Model(target.config), "eagle3", target.config, tmp_path / "eagle3", [0, 1, 2, 3, 4], 3)
    r = runner.invoke(
        app,
        [
            "accept",
            "--target",
            str(target_dir),
            "--draft",
            str(d),
            "--workload",
            "math",
            "--samples",
            "2",
            "--max-new-tokens",
            "16",
            "--out",
            str(tmp_path / "acc"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert (
        summary["method"] == "eagle3" and summary["gamma"] == 3 and summary["datasets"]["math"]["mean_proposal"] == 3.0
    )


def test_accept_with_prompt_lookup(models, tmp_path):
    """`--draft ngram` needs no checkpoint: the files are the n-gram drafter's, proposals vary with
    what repeats (at most gamma), and the per-round counts add up to tau."""
    target_dir, _ = models
    r = runner.invoke(
        app,
        [
            "accept",
            "--target",
            str(target_dir),
            "--draft",
            "ngram",
            "--gamma",
            "3",
            "--workload",
            "code",
            "--samples",
            "2",
            "--max-new-tokens",
            "24",
            "--temperature",
            "0",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["method"] == "ngram" and summary["gamma"] == 3
    assert 0.0 <= summary["datasets"]["code"]["mean_proposal"] <= 3.0
    (c,) = read_acceptance(tmp_path)
    committed = c.raw["per_round"]["committed"]
    assert c.method == "ngram" and c.tau == pytest.approx(sum(committed) / len(committed))


def test_accept_refuses_bad_inputs(models, tmp_path):
    target_dir, _ = models
    r = runner.invoke(app, ["accept", "--target", str(tmp_path / "nope"), "--workload", "math", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "target not found" in r.output
    r = runner.invoke(
        app,
        ["accept", "--target", str(target_dir), "--draft", str(tmp_path), "--workload", "math", "--out", str(tmp_path)],
    )
    assert r.exit_code == 2 and "has no config.json" in r.output


def test_dspark_confidences_are_recorded_and_calibrated(models, tmp_path):
    target_dir, draft_dir = models
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
            str(tmp_path / "acc"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    (c,) = read_acceptance(tmp_path / "acc")
    conf = c.raw["per_round"]["confidence"]
    assert len(conf) == c.raw["rounds"] and all(len(row) == 4 for row in conf)
    m = c.raw["confidence_metrics"]
    assert len(m["ece"]) == 4 and 0 <= m["ece_mean"] <= 1 and m["n"][0] == c.raw["rounds"]
    r = runner.invoke(
        app, ["calibrate", "--acceptance", str(tmp_path / "acc"), "--out", str(tmp_path / "cal.json"), "--json"]
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert len(res["temperatures"]) == 4 and res["rounds_fit"] + res["rounds_held_out"] == c.raw["rounds"]
    doc = json.loads((tmp_path / "cal.json").read_text())
    assert doc["schema"] == "dsbench.calibration/1" and len(doc["reliability"]) == 4
    no_conf = runner.invoke(app, ["calibrate", "--acceptance", "qwen3-8b", "--out", str(tmp_path / "x.json")])
    assert no_conf.exit_code == 2 and "no per-round confidences" in no_conf.output


@pytest.mark.slow
def test_accept_against_a_backend_reads_its_counters(tmp_path):
    """DFlash verifies whole blocks, so the live server's counters must give the curve back.
    Tolerances from the run-to-run spread of this setting (8 engine seeds): tau's relative SD is
    2.1 %, so 8 % is ~4 sigma; survival's worst position deviated at most 0.028 (6 seeds)."""
    import numpy as np

    from dsbench.core.acceptance import expected_tau, survival
    from tests.servers import sim_server

    curve = next(c for c in read_acceptance("qwen3-8b") if (c.method, c.domain) == ("dflash", "code")).conditional
    with sim_server("--method", "dflash", "--domain", "code", "--time-scale", "0.3") as (url, _):
        r = runner.invoke(
            app,
            [
                "accept",
                "--backend",
                url,
                "--model",
                "dsbench-sim",
                "--method",
                "dflash",
                "--workload",
                "code",
                "--samples",
                "20",
                "--max-new-tokens",
                "300",
                "--concurrency",
                "8",
                "--out",
                str(tmp_path),
                "--json",
            ],
        )
    assert r.exit_code == 0, r.output
    (c,) = read_acceptance(tmp_path)
    assert c.source == "simulated" and c.method == "dflash" and c.domain == "code"  # the server said it is a simulator
    assert c.tau == pytest.approx(expected_tau(curve), rel=0.08)
    np.testing.assert_allclose(c.raw["survival"], survival(curve), atol=0.05)
    bad = runner.invoke(app, ["accept", "--backend", url, "--workload", "code", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "--backend needs --model" in bad.output


def test_batched_accept_matches_one_at_a_time_and_keeps_partial_results(models, tmp_path):
    """Greedy, fixed policy: decoding 4 prompts together gives exactly the rounds of DeepSpec's
    one-at-a-time loop. An interrupted run keeps the files of the batches it finished."""
    from dsbench.accept import run_accept
    from dsbench.config import AcceptConfig
    from dsbench.store import Store

    target_dir, draft_dir = models
    per_round = {}
    for batch in (1, 4):
        r = runner.invoke(
            app,
            [
                "accept",
                "--target",
                str(target_dir),
                "--draft",
                str(draft_dir),
                "--workload",
                "math",
                "--samples",
                "8",
                "--max-new-tokens",
                "24",
                "--temperature",
                "0",
                "--batch",
                str(batch),
                "--out",
                str(tmp_path / f"b{batch}"),
                "--quiet",
            ],
        )
        assert r.exit_code == 0, r.output
        (c,) = read_acceptance(tmp_path / f"b{batch}")
        assert c.raw["complete"] is True and c.raw["batch"] == batch
        per_round[batch] = c.raw["per_round"]
    counts = {b: sorted(zip(*(pr[k] for k in ("proposal", "accepted", "committed")))) for b, pr in per_round.items()}
    assert counts[1] == counts[4]
    conf = {b: np.sort(np.array(pr["confidence"]), axis=0) for b, pr in per_round.items()}
    np.testing.assert_allclose(conf[1], conf[4], atol=1e-5)  # batched matmuls round differently, nothing more

    def stop_after_first(name, done, total):
        raise KeyboardInterrupt

    cfg = AcceptConfig(
        ["math"], str(target_dir), str(draft_dir), samples=8, max_new_tokens=24, temperature=0.0, batch=4
    )
    with pytest.raises(KeyboardInterrupt):
        run_accept(cfg, Store(tmp_path / "cut"), stop_after_first)
    (c,) = read_acceptance(tmp_path / "cut")
    assert c.raw["complete"] is False and 0 < len(c.raw["per_round"]["proposal"]) < len(per_round[4]["proposal"])
