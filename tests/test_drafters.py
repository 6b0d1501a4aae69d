"""Drafter architectures (DeepSpec layouts) and `dsbench profile --draft`."""

import json

import pytest
import torch
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.profile.measure import load_hf_config
from dsbench.readers import read_profile
from dsbench.speculative.models import build_draft_model, draft_round_fn

runner = CliRunner()


@pytest.fixture(scope="module")
def cfg():
    return load_hf_config("tiny-qwen3")


def test_state_dict_names_and_shapes_follow_deepspec(cfg):
    h, v = cfg.hidden_size, cfg.vocab_size
    q = cfg.num_attention_heads * cfg.head_dim
    dspark = {k: tuple(t.shape) for k, t in build_draft_model("dspark", cfg).state_dict().items()}
    assert dspark["fc.weight"] == (h, 5 * h) and dspark["hidden_norm.weight"] == (h,)
    assert dspark["layers.4.self_attn.q_norm.weight"] == (cfg.head_dim,) and "layers.5.mlp.up_proj.weight" not in dspark
    assert dspark["markov_head.markov_w1.weight"] == (v, 256) and dspark["markov_head.markov_w2.weight"] == (v, 256)
    assert dspark["confidence_head.proj.weight"] == (1, h + 256) and dspark["confidence_head.proj.bias"] == (1,)
    dflash = build_draft_model("dflash", cfg).state_dict()
    assert not any(k.startswith(("markov_head", "confidence_head")) for k in dflash)
    eagle = {k: tuple(t.shape) for k, t in build_draft_model("eagle3", cfg).state_dict().items()}
    assert eagle["layers.0.self_attn.q_proj.weight"] == (q, 2 * h) and eagle["layers.0.hidden_norm.weight"] == (h,)
    assert eagle["fc.weight"] == (h, 5 * h) and eagle["lm_head.weight"] == (v, h)


@pytest.mark.parametrize("method", ["mtp-1", "eagle3", "dflash", "dspark"])
def test_drafters_propose_blocks(method, cfg):
    torch.manual_seed(0)
    d = build_draft_model(method, cfg).eval()
    fn = draft_round_fn(d, method, cfg, 3, 5, 64, "cpu", torch.float32)
    with torch.inference_mode():
        out = fn()
    g = 1 if method == "mtp-1" else 5
    tokens, logits = out[0], out[1]
    assert tokens.shape == (3, g) and logits.shape == (3, g, cfg.vocab_size)
    assert tokens.min() >= 0 and tokens.max() < cfg.vocab_size
    if method == "dspark":
        conf = out[2]
        assert conf.shape == (3, 5) and torch.all((conf > 0) & (conf < 1))


def test_block_attention_is_bidirectional(cfg):
    """Changing the last block slot changes the first slot's logits (no causal mask), unlike Eagle3's chain."""
    torch.manual_seed(0)
    d = build_draft_model("dflash", cfg).eval()
    feats = torch.randn(1, 2, 5 * cfg.hidden_size)
    caches = [(torch.randn(1, 2, 80, 64), torch.randn(1, 2, 80, 64)) for _ in range(5)]
    with torch.inference_mode():
        d.mask_token_id = 7
        _, a, _ = d.propose(torch.tensor([3]), feats, 64, 4, [(k.clone(), v.clone()) for k, v in caches], temperature=0)
        d.mask_token_id = 9
        _, b, _ = d.propose(torch.tensor([3]), feats, 64, 4, [(k.clone(), v.clone()) for k, v in caches], temperature=0)
    assert not torch.allclose(a[0, 0], b[0, 0])


def _profile_drafters(tmp_path):
    """`dsbench profile --draft all` of the tiny target on CPU; the profile's path."""
    out = tmp_path / "p.json"
    r = runner.invoke(
        app,
        [
            "profile",
            "--target",
            "tiny-qwen3",
            "--device",
            "cpu",
            "--concurrency",
            "1,4",
            "--batch-tokens",
            "4,16",
            "--context",
            "128",
            "--draft",
            "all",
            "--gamma",
            "1,4,7",
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
    return out


def test_profile_draft_costs_have_the_expected_shapes(tmp_path):
    out = _profile_drafters(tmp_path)
    p = read_profile(out)
    assert set(p.draft) == {"mtp-1", "eagle3", "dflash", "dspark"} and p.raw["complete"] is True
    assert p.draft["mtp-1"]["gamma"] == [1, 1]
    s = runner.invoke(
        app,
        [
            "sweep",
            "--profile",
            str(out),
            "--acceptance",
            "qwen3-8b",
            "--slo",
            "20",
            "--max-concurrency",
            "8",
            "--json",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert s.exit_code == 0, s.output
    assert json.loads(s.stdout)["inputs"]["profile_source"] == "measured"
    bad = runner.invoke(
        app,
        [
            "profile",
            "--target",
            "tiny-qwen3",
            "--device",
            "cpu",
            "--draft",
            "medusa",
            "--out",
            str(tmp_path / "x.json"),
        ],
    )
    assert bad.exit_code == 2 and "no drafter for medusa" in bad.output


@pytest.mark.timing
def test_drafter_costs_scale_as_their_architectures_say(tmp_path):
    """CPU timings of the drafters (wall clock: the timing tier): Eagle3's seven sequential steps
    cost over 3x one step, DFlash's one block forward under 2.5x, DSpark's Markov loop adds to it."""
    p = read_profile(_profile_drafters(tmp_path))
    t = {
        m: {(int(rq), int(g)): s for rq, g, s in zip(tab["requests"], tab["gamma"], tab["step_s"])}
        for m, tab in p.draft.items()
    }
    assert t["eagle3"][(1, 7)] > 3 * t["eagle3"][(1, 1)]  # seven sequential forwards
    assert t["dflash"][(1, 7)] < 2.5 * t["dflash"][(1, 1)]  # one forward over the block
    assert t["dspark"][(1, 7)] > t["dflash"][(1, 7)]  # + the Markov head's sequential steps
