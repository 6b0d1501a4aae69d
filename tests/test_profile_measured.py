"""`dsbench profile` with real forward passes of a tiny Qwen3 config on the CPU."""

import json

import pytest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.config import ProfileConfig
from dsbench.profile.measure import load_hf_config, profile_target, torch_dtype
from dsbench.profile.run import run_profile
from dsbench.readers import read_profile
from dsbench.store import Store

runner = CliRunner()
TINY = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 4096,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}


@pytest.fixture
def tiny_config(tmp_path):
    p = tmp_path / "tiny-qwen3.json"
    p.write_text(json.dumps(TINY))
    return p


def test_profile_end_to_end_writes_a_profile_sweep_reads(tiny_config, tmp_path):
    out = tmp_path / "cpu.json"
    r = runner.invoke(
        app,
        [
            "profile",
            "--target",
            str(tiny_config),
            "--device",
            "cpu",
            "--concurrency",
            "1,4",
            "--batch-tokens",
            "1,4,16",
            "--context",
            "256",
            "--repeats",
            "5",
            "--warmup-passes",
            "2",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "measured" in r.output and "step ms" in r.output
    p = read_profile(out)
    assert p.source == "measured" and p.context_len == 256 and p.raw["complete"] is True
    assert p.device["threads"] == 1 and p.device["torch"] and p.raw["dtype"] == "fp32"
    assert [(pt["requests"], pt["batch_tokens"]) for pt in p.raw["points"]] == [
        (1, 1),
        (1, 4),
        (1, 16),
        (4, 4),
        (4, 16),
    ]
    assert all(pt["step_s"] > 0 and pt["repeats"] == 5 for pt in p.raw["points"])
    assert "dsbench profile" in p.raw["provenance"]["command"] or p.raw["provenance"]["command"]
    s = runner.invoke(
        app,
        [
            "sweep",
            "--profile",
            str(out),
            "--methods",
            "no-spec",
            "--baseline",
            "no-spec",
            "--slo",
            "10",
            "--max-concurrency",
            "8",
            "--json",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    doc = json.loads(s.stdout)
    assert s.exit_code == 0 and doc["inputs"]["profile_source"] == "measured" and doc["methods"]["no-spec"]["feasible"]


@pytest.mark.timing
def test_step_time_grows_with_batch_tokens(tiny_config):
    """CPU step times rise with the batch (wall clock, so the timing tier: busy cores break it)."""
    cfg = load_hf_config(tiny_config)
    res = profile_target(cfg, "cpu", torch_dtype("fp32", "cpu"), [1, 16, 64, 256], [1], 256, repeats=7, warmup=2)
    t = [p["step_s"] for p in res["points"]]
    assert all(b >= a * 0.85 for a, b in zip(t, t[1:]))  # non-decreasing within 15 % noise
    assert t[-1] > 1.5 * t[0]


@pytest.mark.timing
def test_more_requests_cost_more_at_equal_batch_tokens(tiny_config):
    """Same B, more requests: more KV caches to read (the second axis of the profile)."""
    cfg = load_hf_config(tiny_config)
    res = profile_target(cfg, "cpu", torch_dtype("fp32", "cpu"), [16], [1, 16], 1024, repeats=7, warmup=2)
    one, many = (p["step_s"] for p in res["points"])
    assert many > 1.2 * one


@pytest.mark.timing
def test_layer_extrapolation_matches_full_depth(tiny_config):
    """K = 3 of 6 layers, extrapolated linearly in depth, against the full 6-layer model.
    Stated error: within 15 % per point (measured: a few %)."""
    cfg = load_hf_config(tiny_config)
    dt = torch_dtype("fp32", "cpu")
    # the extrapolation multiplies the 3-layer minus 1-layer difference by 2.5, so it needs medians
    # of more passes than a profile does (9 were too few on a noisy shared machine)
    grid = dict(batch_tokens=[1, 32, 128], requests=[1, 4], context=256, repeats=31, warmup=5)
    full = profile_target(cfg, "cpu", dt, **grid)
    est = profile_target(cfg, "cpu", dt, layers=3, **grid)
    assert est["scaling"]["measured_layers"] == [1, 3] and full["scaling"]["measured_layers"] == [6]
    for f, e in zip(full["points"], est["points"]):
        assert e["step_s"] == pytest.approx(f["step_s"], rel=0.15), (f, e)


def test_interrupted_profile_keeps_measured_points(tiny_config, tmp_path):
    out = tmp_path / "partial.json"

    def stop_after_two(label, n, total):
        if n == 2:
            raise KeyboardInterrupt

    cfg = ProfileConfig(
        target=str(tiny_config),
        device="cpu",
        dtype="fp32",
        batch_tokens=[1, 4, 16],
        concurrency=[1],
        context=128,
        repeats=3,
        warmup_passes=1,
        threads=1,
        out=out,
    )
    with pytest.raises(KeyboardInterrupt):
        run_profile(cfg, stop_after_two, Store(out, single="profile.json"))
    doc = json.loads(out.read_text())
    assert len(doc["points"]) == 2 and doc["complete"] is False
    assert read_profile(out).source == "measured"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--target", "no/such/config.json"], "model config not found"),
        (["--device", "cuda"], "no CUDA device is available"),
        (["--device", "tpu"], "--device must be auto, cpu or cuda"),
        (["--cuda-graph"], "--cuda-graph needs a CUDA device"),
        (["--dtype", "fp8"], "--dtype for a measured profile must be auto, bf16, fp16 or fp32"),
        (["--layers", "1"], "--layers must be >= 2"),
        (["--repeats", "1"], "--repeats must be >= 2"),
        (["--batch-tokens", "x"], "--batch-tokens: expected comma-separated numbers"),
    ],
)
def test_bad_profile_inputs_are_one_line(args, message, tiny_config, tmp_path):
    base = [
        "profile",
        "--target",
        str(tiny_config),
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "p.json"),
        "--concurrency",
        "1",
        "--batch-tokens",
        "1",
    ]
    r = runner.invoke(app, base + args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Traceback" not in r.output


def test_malformed_config_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hidden_size": 64}')
    r = runner.invoke(app, ["profile", "--target", str(bad), "--device", "cpu", "--out", str(tmp_path / "p.json")])
    assert r.exit_code == 2 and "not a usable Hugging Face config" in r.output


@pytest.mark.gpu
def test_cuda_profile_with_graphs(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = tmp_path / "gpu.json"
    r = runner.invoke(
        app,
        [
            "profile",
            "--target",
            "tiny-qwen3",
            "--device",
            "cuda",
            "--dtype",
            "bf16",
            "--concurrency",
            "1,8",
            "--batch-tokens",
            "8,64",
            "--context",
            "512",
            "--cuda-graph",
            "--draft",
            "dflash",
            "--gamma",
            "1,7",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    p = read_profile(out)
    assert p.device["kind"] == "cuda" and p.device["cuda"] and p.raw["cuda_graph"] is True
    assert all(pt["step_s"] > 0 for pt in p.raw["points"])


def test_out_of_memory_keeps_the_points_that_fit(tiny_config, monkeypatch, tmp_path):
    """An allocation failure at a large batch stops the grid and reports the largest batch that
    fit (the failure is injected: this machine has memory to spare for the tiny model)."""
    import dsbench.profile.measure as measure

    real = measure.time_calls

    def failing(fn, repeats, warmup, device):
        if failing.calls >= 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        failing.calls += 1
        return real(fn, repeats, warmup, device)

    failing.calls = 0
    monkeypatch.setattr(measure, "time_calls", failing)
    out = tmp_path / "oom.json"
    r = runner.invoke(
        app,
        [
            "profile",
            "--target",
            str(tiny_config),
            "--device",
            "cpu",
            "--concurrency",
            "1",
            "--batch-tokens",
            "1,4,16,64",
            "--context",
            "64",
            "--repeats",
            "3",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "out of memory at 1 requests x 16 tokens" in r.output and "largest batch that fit: 4 tokens" in r.output
    doc = json.loads(out.read_text())
    assert [p["batch_tokens"] for p in doc["points"]] == [1, 4] and doc["complete"] is False
