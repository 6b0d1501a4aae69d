"""`accept --protocol deepspec`: DeepSpec's evaluation, its sample selection and round bookkeeping.

The figures must equal what DeepSpec's `build_metrics_row` computes from the recorded rounds
(deepspec/eval/base_evaluator.py), and the rounds must follow its loop: a round cut at an
accepted stop token proposes up to that token, and `while start < max_length` runs one more round
when exactly max_new_tokens were generated. At temperature 0 both protocols decode the same
tokens, so their rounds can be compared one by one.
"""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dsbench.accept import workloads
from dsbench.cli import app
from dsbench.config import AcceptConfig
from dsbench.errors import InputError
from tests.trained import fixtures

runner = CliRunner()
MAX_NEW = 64


@pytest.fixture(scope="module")
def trained(pytestconfig):
    return fixtures(pytestconfig.cache.mkdir("dsbench-trained"))


def _task_files(folder: Path, lines: int | None = None) -> Path:
    """DeepSpec's {"turns"} files for two of its tasks, built from the shipped prompts."""
    shipped = Path(__file__).resolve().parent.parent / "workloads"
    for task, source in (("gsm8k", "math"), ("mt-bench", "chat")):
        texts = [json.loads(x)["prompt"] for x in (shipped / f"{source}.jsonl").read_text().splitlines() if x.strip()]
        rows = "".join(json.dumps({"turns": [t, "second turn"]}) + "\n" for t in texts[:lines])
        (folder / f"{task}.jsonl").write_text(rows)
    return folder


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    return _task_files(tmp_path_factory.mktemp("eval_datasets"))


@pytest.fixture(scope="module")
def few(tmp_path_factory):
    """Eight prompts a task: both protocols decode all of them, in file order."""
    return _task_files(tmp_path_factory.mktemp("eval_few"), 8)


def test_deepspec_subsamples_as_its_eval_does(tasks):
    lines = [json.loads(x)["turns"][0] for x in (tasks / "gsm8k.jsonl").read_text().splitlines()]
    deepspec = workloads(AcceptConfig(workloads=[f"deepspec:{tasks}"], protocol="deepspec", samples=5, target="t"))
    expected = list(lines)
    random.Random(980406).shuffle(expected)
    assert [p.text for p in deepspec["gsm8k"]] == expected[:5]  # the first turn only, seeded shuffle
    assert set(deepspec) == {"gsm8k", "mt-bench"}  # the tasks present; DeepSpec's order
    whole = workloads(AcceptConfig(workloads=[f"deepspec:{tasks}"], protocol="deepspec", target="t"))
    assert [p.text for p in whole["gsm8k"]] == lines  # shorter than the task's 500: whole, in file order
    first = workloads(AcceptConfig(workloads=[f"deepspec:{tasks}"], samples=5, target="t"))
    assert [p.text for p in first["gsm8k"]] == lines[:5]  # dsbench's protocol: the first N
    with pytest.raises(InputError, match="none of DeepSpec's task files"):
        workloads(AcceptConfig(workloads=[f"deepspec:{tasks / 'nothing'}"], target="t"))


def _invoke(trained, tasks, out, *options, draft="dspark") -> str:
    """`dsbench accept` on the trained fixtures and DeepSpec task files; its standard output."""
    head = ["accept", "--target", str(trained["target"]), "--draft", str(trained[draft])]
    r = runner.invoke(app, [*head, "--workload", f"deepspec:{tasks}", "--out", str(out), *options])
    assert r.exit_code == 0, r.output
    return r.stdout


def _accept(trained, tasks, out, protocol):
    """A greedy run of `protocol`: its summary and its two acceptance files."""
    options = ["--samples", "8", "--max-new-tokens", str(MAX_NEW), "--temperature", "0", "--protocol", protocol]
    summary = json.loads(_invoke(trained, tasks, out, *options, "--json"))
    docs = {d: json.loads((out / f"{summary['method']}-{d}.json").read_text()) for d in ("gsm8k", "mt-bench")}
    return summary, docs


def _by_sample(per_round: dict) -> dict[int, list[tuple[int, int, int]]]:
    out: dict[int, list] = {}
    for s, l, a, c in zip(per_round["sample"], per_round["proposal"], per_round["accepted"], per_round["committed"]):
        out.setdefault(s, []).append((l, a, c))
    return out


def test_deepspec_figures_equal_its_rules_applied_to_the_recorded_rounds(trained, few, tmp_path):
    summary, docs = _accept(trained, few, tmp_path / "ds", "deepspec")
    _, plain = _accept(trained, few, tmp_path / "own", "dsbench")
    assert summary["protocol"] == "deepspec" and summary["max_new_tokens"] == MAX_NEW
    extra_rounds = stop_cuts = 0
    for task, doc in docs.items():
        assert doc["protocol"] == "deepspec"
        pr = doc["per_round"]
        l, a, c = (np.array(pr[k]) for k in ("proposal", "accepted", "committed"))
        g = doc["gamma"]
        # DeepSpec's build_metrics_row, by hand
        assert doc["tau"] == pytest.approx(c.sum() / len(c), abs=1e-12)  # accept_len
        assert doc["mean_proposal"] == pytest.approx(l.sum() / len(c), abs=1e-12)  # #propose
        assert doc["verify_rate"] == pytest.approx(c.sum() / (l.sum() + len(c)), abs=1e-12)
        rates = [(a > k).sum() / (l > k).sum() for k in range(g)]  # accept_rate@k
        assert doc["survival"] == pytest.approx(rates, abs=1e-12)
        assert summary["datasets"][task]["tau"] == pytest.approx(doc["tau"])
        # its loop, sample by sample, against dsbench's own bookkeeping of the same greedy decode
        ours, theirs = _by_sample(plain[task]["per_round"]), _by_sample(pr)
        assert ours.keys() == theirs.keys()
        for s, rounds in theirs.items():
            mine = ours[s]
            made = 1 + sum(x[2] for x in mine)  # tokens dsbench's protocol generated (the prefill one first)
            stopped = mine[-1][2] == mine[-1][1]  # its last round ended at an accepted stop token
            one_more = made == MAX_NEW and not stopped and len(rounds) == len(mine) + 1
            extra_rounds += one_more
            assert len(rounds) == len(mine) + one_more
            for (l1, a1, c1), (l2, a2, c2) in zip(mine, rounds):
                assert (a1, c1) == (a2, c2)
                cut = c1 == a1  # no bonus: cut at an accepted stop token
                stop_cuts += cut
                assert l2 == (a2 if cut else l1)
            assert 1 + sum(x[2] for x in rounds[:-1]) <= MAX_NEW  # DeepSpec starts a round while start < max_length
    assert extra_rounds > 0 and stop_cuts > 0  # both conventions were exercised


def test_the_protocol_is_said_in_the_table(trained, few, tmp_path):
    options = ["--samples", "2", "--max-new-tokens", "8", "--protocol", "deepspec", "--quiet"]
    output = _invoke(trained, few, tmp_path, *options, draft="dflash")
    assert "protocol deepspec" in output and "accept_rate@k" in output and "4.00+1" in output


@pytest.mark.parametrize(
    "extra, why", [(["--batch", "4"], "--batch 1"), (["--policy", "dspark"], "fixed or threshold")]
)
def test_deepspec_protocol_refuses_what_its_loop_cannot_do(extra, why, tmp_path):
    r = runner.invoke(app, ["accept", "--target", "t", "--workload", "math", "--protocol", "deepspec", *extra])
    assert r.exit_code == 2 and why in r.output


def test_eagle3_stops_drafting_at_a_drafted_stop_token():
    """DeepSpec's Eagle3 evaluator ends the proposal at (and including) a drafted stop token."""
    from dsbench.profile.measure import build_model, load_hf_config
    from dsbench.speculative.drafters import drafter_for
    from dsbench.speculative.models import Eagle3Model

    cfg = load_hf_config("tiny-qwen3")
    torch.manual_seed(0)
    target = build_model(cfg, cfg.num_hidden_layers, "cpu", torch.float32)
    model = Eagle3Model(cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, 12))
    with torch.no_grad():
        hidden = target(prompt, output_hidden_states=True).hidden_states
    proposals = []
    for stops in ((), None):
        d = drafter_for(model, target, [0, 1, 2, 3, 4], 6, stops if stops is not None else {proposals[0][3]})
        d.reserve(1, 64)
        with torch.no_grad():
            d.begin(0, [prompt[0].tolist()], [5], hidden)
            p = d.propose(torch.tensor([5]), torch.tensor([12]), 0.0)
        proposals.append(p.tokens[0].tolist())
        lengths = p.lengths
    first = proposals[0].index(proposals[0][3]) + 1  # the stop token: the one drafted fourth
    assert lengths.tolist() == [first] and proposals[0] == proposals[1]


def test_a_dflash_confidence_head_truncates_under_a_threshold(tmp_path):
    """DeepSpec's --confidence-threshold t: a proposal ends before the first draft whose c_k < t."""
    from transformers import AutoModelForCausalLM

    from dsbench.core.policies import Policy
    from dsbench.speculative.drafters import drafter_for
    from dsbench.speculative.engine import SpecDecoder
    from dsbench.speculative.models import BlockModel
    from tests.servers import build_tiny_qwen3

    target = AutoModelForCausalLM.from_pretrained(build_tiny_qwen3(tmp_path / "t"))
    torch.manual_seed(3)
    model = BlockModel(target.config, 1, 1, confidence=True).eval()  # DFlash: no Markov head
    torch.nn.init.normal_(model.confidence_head.proj.weight, std=2.0)
    dec = SpecDecoder(target, drafter_for(model, target, [0], 5), Policy.parse("threshold:0.5"), seed=1)
    _, log = dec.generate(list(range(4, 14)), 40)
    conf = np.array(log.confidence)
    assert conf.shape == (len(log.proposal), 5) and 0 < np.mean(log.proposal) < 5
    assert log.proposal == np.cumprod(conf >= 0.5, axis=1).sum(1).tolist()


def test_weights_dtype_follows_the_protocol_and_the_device():
    import torch

    from dsbench.accept import weights_dtype

    assert weights_dtype("auto", "cpu", "deepspec") is torch.float32  # no bf16 on CPU unless asked
    assert weights_dtype("auto", "cuda:0", "dsbench") == "auto"  # the checkpoint's
    assert weights_dtype("bf16", "cpu") is torch.bfloat16 and weights_dtype("fp16", "cpu") is torch.float16


def test_the_dtype_a_run_used_is_in_its_files(trained, few, tmp_path):
    _invoke(trained, few, tmp_path, "--samples", "2", "--max-new-tokens", "8", "--dtype", "bf16", "--quiet")
    doc = json.loads((tmp_path / "dspark-gsm8k.json").read_text())
    assert doc["dtype"] == "bfloat16" and doc["protocol"] == "dsbench" and doc["max_new_tokens"] == 8
