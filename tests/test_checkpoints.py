"""DeepSpec-layout drafter checkpoints: round trip, refusal of broken ones, no pickles."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dsbench.errors import InputError
from dsbench.profile.measure import build_model, load_hf_config
from dsbench.speculative.checkpoints import load_drafter, save_drafter
from dsbench.speculative.models import build_draft_model

IDS = [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def target():
    cfg = load_hf_config("tiny-qwen3")
    return build_model(cfg, cfg.num_hidden_layers, "cpu", torch.float32)


@pytest.mark.parametrize("method", ["dspark", "dflash", "eagle3", "mtp-1"])
def test_round_trip(method, target, tmp_path):
    torch.manual_seed(1)
    d = build_draft_model(method, target.config)
    with torch.no_grad():  # DeepSpec stores frozen copies of the target's embedding and head
        d.embed_tokens.weight.copy_(target.get_input_embeddings().weight)
        d.lm_head.weight.copy_(target.get_output_embeddings().weight)
    save_drafter(d, method, target.config, tmp_path / method, IDS, 7)
    cfg = json.loads((tmp_path / method / "config.json").read_text())
    assert cfg["target_layer_ids"] == IDS and cfg["hidden_size"] == target.config.hidden_size
    loaded, info = load_drafter(tmp_path / method, target)
    assert info.method == method and info.target_layer_ids == IDS
    for k, v in d.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert loaded.lm_head.weight is target.get_output_embeddings().weight  # shared, not a second copy


def _broken(target, tmp_path, edit):
    d = build_draft_model("dspark", target.config)
    path = save_drafter(d, "dspark", target.config, tmp_path / "ck", IDS, 7)
    state = load_file(str(path / "model.safetensors"))
    edit(state)
    save_file(state, str(path / "model.safetensors"))
    return path


def test_missing_tensor_is_refused(target, tmp_path):
    path = _broken(target, tmp_path, lambda s: s.pop("markov_head.markov_w2.weight"))
    with pytest.raises(InputError, match="missing tensor 'markov_head.markov_w2.weight'"):
        load_drafter(path, target)


def test_misshaped_tensor_is_refused(target, tmp_path):
    def shrink(s):
        s["fc.weight"] = s["fc.weight"][:, :10].contiguous()

    path = _broken(target, tmp_path, shrink)
    with pytest.raises(InputError, match=r"tensor 'fc.weight' has shape \(256, 10\), expected \(256, 1280\)"):
        load_drafter(path, target)


def test_pickles_and_strangers_are_refused(target, tmp_path):
    d = tmp_path / "pickled"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["Qwen3DSparkModel"], "target_layer_ids": IDS}))
    (d / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(InputError, match="pickled checkpoints are refused"):
        load_drafter(d, target)
    (d / "config.json").write_text(json.dumps({"architectures": ["MedusaModel"]}))
    with pytest.raises(InputError, match="unknown drafter architecture 'MedusaModel'"):
        load_drafter(d, target)


def test_torch_load_is_never_used():
    src = Path(__file__).resolve().parent.parent / "dsbench"
    offenders = [f for f in src.rglob("*.py") if "torch.load(" in f.read_text()]
    assert offenders == []
