"""Measured acceptance on briefly trained fixtures (tests/trained.py; built once, then cached)."""

import json
import sys
import time

import httpx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.profile.measure import load_hf_config
from dsbench.speculative.models import BlockModel, Eagle3Model, MTPModel, block_train_forward, kv_cache
from tests.trained import fixtures

runner = CliRunner()


@pytest.fixture(scope="session")
def trained(pytestconfig):
    return fixtures(pytestconfig.cache.mkdir("dsbench-trained"))


def test_training_pass_equals_the_inference_pass():
    """The masked, many-anchor training forward gives each anchor the logits the engine computes."""
    cfg = load_hf_config("tiny-qwen3")
    torch.manual_seed(0)
    d = BlockModel(cfg, draft_layers=2, n_features=1, markov_rank=8, confidence=True).eval()
    length, g = 20, 4
    tokens = torch.randint(0, cfg.vocab_size, (length,))
    feats = torch.randn(length, cfg.hidden_size)
    anchors = torch.tensor([5, 11])
    with torch.no_grad():
        logits, _, _, _ = block_train_forward(d, tokens, feats, anchors, g)
        for i, t in enumerate(anchors.tolist()):
            caches = kv_cache(d, 1, 64)
            _, ref_logits, _ = d.propose(tokens[t : t + 1], feats[None, :t], t, g, caches, temperature=0.0)
            markov = d.markov_head  # propose returns corrected logits; undo the correction of slot 0 (prev = anchor)
            base0 = ref_logits[0, 0] - markov.markov_w2(markov.markov_w1(tokens[t : t + 1]))[0]
            torch.testing.assert_close(base0, logits[i, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_trained_drafters_are_accepted_and_the_markov_head_helps_late_positions(trained, tmp_path, record_property):
    figures = {}
    for method in ("dflash", "dspark"):
        r = runner.invoke(
            app,
            [
                "accept",
                "--target",
                str(trained["target"]),
                "--draft",
                str(trained[method]),
                "--workload",
                "math",
                "--workload",
                "chat",
                "--samples",
                "10",
                "--max-new-tokens",
                "40",
                "--out",
                str(tmp_path / method),
                "--json",
            ],
        )
        assert r.exit_code == 0, r.output
        figures[method] = json.loads(r.stdout)["datasets"]
    for method, ds in figures.items():
        for name, f in ds.items():
            assert f["tau"] > 1.3, (method, name, f["tau"])  # far from the trivial 1.0
    late = {m: np.mean([np.mean(f["conditional"][1:]) for f in ds.values()]) for m, ds in figures.items()}
    record_property("late_conditional", late)
    print(f"conditional acceptance at positions 2-4: DFlash {late['dflash']:.2f}, DSpark {late['dspark']:.2f}")
    assert late["dspark"] > late["dflash"] + 0.05


@pytest.mark.slow
def test_dspark_policy_runs_on_real_confidences(trained, tmp_path, write_json):
    """Algorithm 1 inside the engine on the trained head's confidences. On a memory-bound H100 at
    one request it verifies the whole block; on a profile where every verified token costs 60 %
    more time it truncates, varying the length with the confidences."""
    steep = write_json(
        "steep.json",
        {
            "schema": "dsbench.profile/1",
            "source": "measured",
            "device": {"name": "test"},
            "model": {"name": "tiny"},
            "context_len": 64,
            "points": [{"batch_tokens": b, "requests": 1, "step_s": 0.001 * (1 + 0.6 * (b - 1))} for b in range(1, 6)],
        },
    )
    proposals = {}
    for profile in ("h100-qwen3-8b", str(steep)):
        r = runner.invoke(
            app,
            [
                "accept",
                "--target",
                str(trained["target"]),
                "--draft",
                str(trained["dspark"]),
                "--workload",
                "chat",
                "--samples",
                "4",
                "--max-new-tokens",
                "30",
                "--policy",
                "dspark",
                "--profile",
                profile,
                "--out",
                str(tmp_path / "acc"),
                "--json",
                "--force",  # the second profile replaces the first one's files
            ],
        )
        assert r.exit_code == 0, r.output
        proposals[profile] = json.loads(r.stdout)["datasets"]["chat"]["mean_proposal"]
    assert proposals["h100-qwen3-8b"] == 4.0
    assert 0.0 < proposals[str(steep)] < 3.0
    bad = runner.invoke(
        app,
        [
            "accept",
            "--target",
            str(trained["target"]),
            "--draft",
            str(trained["dspark"]),
            "--workload",
            "chat",
            "--policy",
            "dspark",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 2 and "--policy dspark needs --profile" in bad.output


@pytest.mark.slow
def test_serve_real_engine_under_load(trained, tmp_path):
    """`dsbench serve --target --draft` answers a load test with real speculative decoding: real
    text, token counts from the engine, tau from its counters."""
    from dsbench.readers import read_load
    from tests.servers import _server

    cmd = [
        sys.executable,
        "-m",
        "dsbench.cli",
        "serve",
        "--target",
        str(trained["target"]),
        "--draft",
        str(trained["dspark"]),
        "--port",
        "{port}",
        "--model-name",
        "tiny",
        "--seed",
        "3",
    ]
    with _server(cmd, 60) as (url, _):
        r = runner.invoke(
            app,
            [
                "load",
                "--url",
                url,
                "--model",
                "tiny",
                "--concurrency",
                "2",
                "--workload",
                "chat",
                "--requests",
                "6",
                "--max-tokens",
                "24",
                "--warmup-s",
                "0",
                "--out",
                str(tmp_path),
                "--quiet",
            ],
        )
        assert r.exit_code == 0, r.output
        body = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "tiny", "max_tokens": 12, "messages": [{"role": "user", "content": "Write a haiku"}]},
            timeout=30,
        ).json()
        too_long = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "tiny", "max_tokens": 12, "messages": [{"role": "user", "content": "word " * 5000}]},
            timeout=30,
        )
        assert too_long.status_code == 400 and "holds at most" in too_long.text
        with httpx.stream(
            "POST",
            url + "/v1/completions",
            json={"model": "tiny", "max_tokens": 400, "prompt": "Once", "stream": True},
            timeout=30,
        ) as r:
            next(line for line in r.iter_lines() if line.startswith("data: {"))  # one chunk, then hang up
        running = None
        for _ in range(50):  # the engine notices the cancelled request and frees its row
            time.sleep(0.1)
            running = next(
                float(line.rsplit(" ", 1)[1])
                for line in httpx.get(url + "/metrics").text.splitlines()
                if line.startswith("vllm:num_requests_running")
            )
            if running == 0:
                break
        assert running == 0
        still = httpx.post(
            url + "/v1/completions", json={"model": "tiny", "max_tokens": 5, "prompt": "Hello"}, timeout=30
        )
        assert still.status_code == 200 and still.json()["usage"]["completion_tokens"] <= 5
    recs = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert len(recs) == 6 and all(rec["error"] is None and 1 <= rec["output_tokens"] <= 24 for rec in recs)
    spec = read_load(tmp_path)["points"][0]["spec"]
    assert spec["engine"] == "dsbench" and spec["decode_steps"] > 0 and 1.0 <= spec["tau"] <= 5.0
    assert body["usage"]["completion_tokens"] <= 12 and isinstance(body["choices"][0]["message"]["content"], str)


def _first_round_tokens(dec, prompt_ids, n: int, seed: int = 0, batch: int = 250):
    """First committed token of the first speculative round of n sequences that share a prompt and
    a first token, decoded `batch` at a time through the batched engine."""
    torch.manual_seed(seed)
    dec.gen.manual_seed(seed)
    probe = dec.start(prompt_ids)
    anchor = probe.tokens[0]
    dec.release(probe)
    firsts = []
    while len(firsts) < n:
        sessions = dec.start_many([prompt_ids] * batch, first=[anchor] * batch)
        firsts += [committed[0] for _, committed in dec.step_all()]
        for s in sessions:
            dec.release(s)
    return anchor, np.array(firsts[:n])


TEMPERATURE = 3.0  # the trained target is nearly deterministic at 1.0; a flatter target gives the test power


@pytest.mark.slow
@pytest.mark.parametrize(
    "method", ["dflash", "dspark", "dspark-threshold", "dspark-biased", "eagle3", "mtp-1", "eagle3-biased"]
)
def test_engine_output_follows_the_target(trained, method, monkeypatch):
    """Through the whole batched engine (drafter, policy, target pass, rejection sampling): the
    first token of a round follows the target's distribution given the anchor. Chi-square over the
    target's likely tokens (expected count >= 30, the rest pooled), 3,000 rounds, temperature 3; a
    sampler that skips the residual must be caught (p < 1e-4), the real ones pass (p > 1e-3).
    Chain drafters (Eagle3, MTP-1) are untrained but share the target's embedding and head.
    Measured: p = 0.72 / 0.68 / 0.68 / 0.30 / 0.19 (DFlash, DSpark, +threshold, Eagle3, MTP-1);
    the biased sampler p = 6e-25 (DSpark), 1e-92 (Eagle3)."""
    from scipy.stats import chisquare
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import dsbench.speculative.engine as engine_mod
    from dsbench.accept import render
    from dsbench.core.policies import Policy
    from dsbench.speculative.checkpoints import load_drafter
    from dsbench.speculative.drafters import drafter_for
    from dsbench.speculative.engine import SpecDecoder
    from dsbench.speculative.sampling import verify

    target = AutoModelForCausalLM.from_pretrained(trained["target"]).eval()
    tok = AutoTokenizer.from_pretrained(trained["target"])
    kind = method.split("-")[0] if method != "mtp-1" else method
    if kind in ("eagle3", "mtp-1"):
        torch.manual_seed(0)
        drafter = (Eagle3Model(target.config, n_features=1) if kind == "eagle3" else MTPModel(target.config)).eval()
        drafter.embed_tokens, drafter.lm_head = target.model.embed_tokens, target.lm_head
        layer_ids, gamma = [0], 4
    else:
        drafter, info = load_drafter(trained[kind], target)
        layer_ids, gamma = info.target_layer_ids, info.gamma
    policy = Policy("threshold", 0.5) if method == "dspark-threshold" else Policy("fixed")
    if method.endswith("-biased"):

        def biased(p, q, drafts, lengths, gen):
            acc, _ = verify(p, q, drafts, lengths, gen)
            return acc, torch.multinomial(p[torch.arange(len(acc)), acc], 1, generator=gen)[:, 0]  # p, not the residual

        monkeypatch.setattr(engine_mod, "verify", biased)
    dec = SpecDecoder(target, drafter_for(drafter, target, layer_ids, gamma), policy, None, TEMPERATURE, max_len=128)
    prompt = render(tok, "Give me three ideas for a rainy weekend with two children.")
    anchor, firsts = _first_round_tokens(dec, prompt, 3000)
    with torch.no_grad():
        p = torch.softmax(
            target(input_ids=torch.tensor([prompt + [anchor]])).logits[0, -1].double() / TEMPERATURE, -1
        ).numpy()
    expected = p * len(firsts)
    big = expected >= 30  # well-filled cells: sparse ones give the statistic heavy tails
    obs = np.bincount(firsts, minlength=len(p))
    f_obs = np.append(obs[big], obs[~big].sum())
    f_exp = np.append(expected[big], expected[~big].sum())
    pvalue = chisquare(f_obs.astype(float), f_exp / f_exp.sum() * f_obs.sum()).pvalue
    print(f"engine chi-square, {method}: p = {pvalue:.3g}")
    if method.endswith("-biased"):
        assert pvalue < 1e-4
    else:
        assert pvalue > 1e-3, pvalue
