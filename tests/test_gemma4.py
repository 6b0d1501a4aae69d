"""Gemma4: a target the batched engine decodes (sliding-window layers, KV sharing, per-layer
inputs, global layers with other head shapes) and DeepSpec's Gemma4 DSpark and Eagle3 drafters.

The drafters follow DeepSpec's `deepspec/modeling/{dspark,eagle3}/gemma4/modeling.py` (checked
against those classes by scripts/deepspec_parity.py where DeepSpec's source is at hand); here, on a
tiny Gemma4 built locally: the layout DeepSpec's modules register, greedy decoding equal to the
target's own, and the RoPE of the target's global layers.
"""

import json

import pytest
import torch

from dsbench.speculative.checkpoints import gemma4_text_dict, load_drafter, save_drafter
from dsbench.speculative.drafters import NgramDrafter, drafter_for
from dsbench.speculative.engine import SpecDecoder
from dsbench.speculative.models import BlockModel, Eagle3Model, _gemma4_inv_freq, gemma4_config
from tests.test_deepspec_layout import deepspec_tensors

LAYERS = ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention", "sliding_attention"]
IDS = [0, 1, 2, 3, 4]  # five (Eagle3 needs five), never the final layer


def _gemma4(per_layer_inputs: int, shared: int):
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    cfg = Gemma4TextConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, global_head_dim=32, num_global_key_value_heads=1,
        attention_k_eq_v=True, sliding_window=8, layer_types=LAYERS + ["full_attention"],
        hidden_size_per_layer_input=per_layer_inputs, vocab_size_per_layer_input=300, num_kv_shared_layers=shared,
        final_logit_softcapping=30.0, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Gemma4ForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def target():
    """Without per-layer inputs: DeepSpec's Gemma4 drafters refuse targets that have them."""
    return _gemma4(0, 0)


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, 300, (n,), generator=g).tolist() for n in (20, 13, 5)]  # longer than the window


def _greedy(target, prompts, n=16):
    out = []
    for p in prompts:
        ids = target.generate(torch.tensor([p]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
        out.append(ids[0, len(p) :].tolist())
    return out


@pytest.mark.parametrize("per_layer_inputs, shared", [(0, 0), (8, 2)])  # (transformers 5.24 fails 0 and 2)
def test_the_engine_decodes_a_gemma4_target_as_transformers_does(per_layer_inputs, shared, prompts):
    target = _gemma4(per_layer_inputs, shared)
    ref = _greedy(target, prompts)
    for drafter in (None, NgramDrafter(300, 3)):
        dec = SpecDecoder(target, drafter, temperature=0.0, stop_ids=set())
        assert [t for t, _ in dec.generate_many(prompts, 16)] == ref


def _drafter(kind, target):
    cfg = gemma4_config({**gemma4_text_dict(target.config), "num_hidden_layers": 2})
    torch.manual_seed(2)
    d = Eagle3Model(cfg, len(IDS)) if kind == "eagle3" else BlockModel(cfg, 2, len(IDS), 8, True, mask_token_id=3)
    with torch.no_grad():
        for p in d.parameters():
            p.normal_(0, 0.3)
        d.embed_tokens.weight.copy_(target.get_input_embeddings().weight)
        d.lm_head.weight.copy_(target.get_output_embeddings().weight)
    return d


@pytest.mark.parametrize("kind", ["dspark", "eagle3"])
def test_gemma4_drafters_round_trip_in_deepspecs_layout_and_decode_losslessly(kind, target, prompts, tmp_path):
    from safetensors.torch import load_file

    path = save_drafter(_drafter(kind, target), kind, target.config, tmp_path, IDS, 4)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["architectures"] == ["Gemma4Eagle3Model" if kind == "eagle3" else "Gemma4DSparkModel"]
    assert {
        "global_head_dim",
        "num_global_key_value_heads",
        "num_anchors" if kind == "dspark" else "step_loss_decay",
    } <= set(cfg)
    assert (cfg["global_head_dim"], cfg["num_global_key_value_heads"]) == (32, 1)
    tensors = {k: tuple(t.shape) for k, t in load_file(str(path / "model.safetensors")).items()}
    assert tensors == deepspec_tensors(cfg)
    model, info = load_drafter(path, target)
    assert info.method == kind and model.embed_scale == 8.0 and model.softcap == 30.0
    dec = SpecDecoder(target, drafter_for(model, target, IDS, 4), temperature=0.0, stop_ids=set())
    got = dec.generate_many(prompts, 16)
    assert [t for t, _ in got] == _greedy(target, prompts)
    assert all(max(log.proposal) == 4 for _, log in got)  # full blocks proposed and verified


def test_the_drafters_rope_is_the_targets_global_rope(target):
    """DeepSpec's Gemma4 drafters rotate as the target's full-attention layers: proportional RoPE
    (a quarter of the angles rotate) over the global head size."""
    cfg = gemma4_config(gemma4_text_dict(target.config))
    mine = _gemma4_inv_freq(cfg.rope, cfg.head_dim)
    assert mine.shape == (16,) and (mine[4:] == 0).all() and (mine[:4] > 0).all()
    torch.testing.assert_close(mine, target.model.rotary_emb.full_attention_inv_freq.float())
