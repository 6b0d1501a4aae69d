"""Drafters dsbench writes are the layouts DeepSpec's own classes expect, checked without DeepSpec.

What DeepSpec expects is written out here from its source (deepseek-ai/DeepSpec,
`deepspec/modeling/{dspark,eagle3}/qwen3/{config,modeling}.py` and `markov_head.py`): the config
fields its model classes assert and its config builders write, and the tensor names and shapes
its modules register. `scripts/deepspec_parity.py` runs the same files through DeepSpec's classes
where its source is at hand (0 missing, unexpected or mismatched keys; logits within 1e-6).
"""

import json

import pytest
import torch

from dsbench.errors import InputError
from dsbench.speculative.checkpoints import load_drafter, save_drafter
from dsbench.speculative.models import Attention, BlockModel, Eagle3Model
from tests.servers import build_tiny_qwen3

# Asserted by Qwen3DSparkModel.__init__ / Qwen3Eagle3Model.__init__, or written by the builders.
DSPARK_FIELDS = {
    "architectures", "num_target_layers", "num_hidden_layers", "block_size", "tie_word_embeddings",
    "layer_types", "mask_token_id", "target_layer_ids", "num_anchors", "enable_confidence_head", "markov_rank",
}  # fmt: skip
EAGLE3_FIELDS = {
    "architectures", "num_target_layers", "num_hidden_layers", "layer_types", "target_model_name_or_path",
    "target_layer_ids", "ttt_length", "step_loss_decay", "draft_num_hidden_layers", "tie_word_embeddings",
}  # fmt: skip


def deepspec_tensors(c: dict) -> dict[str, tuple[int, ...]]:
    """The state dict DeepSpec's module for config `c` registers: name -> shape. Gemma4's
    (`deepspec/modeling/*/gemma4`) attend over global_head_dim-wide heads, drop v_proj when keys
    double as values, norm each block's output too, and keep a layer scalar."""
    h, v, i = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    gemma = c["architectures"][0].startswith("Gemma4")
    hd = c["global_head_dim"] if gemma else c.get("head_dim") or h // c["num_attention_heads"]
    k_eq_v = gemma and c["attention_k_eq_v"]
    q, kv = (
        c["num_attention_heads"] * hd,
        (c["num_global_key_value_heads"] if k_eq_v else c["num_key_value_heads"]) * hd,
    )
    eagle3 = c["architectures"][0].endswith("Eagle3Model")
    d = 2 * h if eagle3 else h
    out = {"embed_tokens.weight": (v, h), "lm_head.weight": (v, h), "norm.weight": (h,)}
    out["fc.weight"] = (h, len(c["target_layer_ids"]) * h)
    if not eagle3:
        out["hidden_norm.weight"] = (h,)
    for n in range(c["num_hidden_layers"]):
        p = f"layers.{n}."
        names = ["input_layernorm", "post_attention_layernorm"] + (["hidden_norm"] if eagle3 else [])
        names += ["pre_feedforward_layernorm", "post_feedforward_layernorm"] if gemma else []
        out.update({p + f"{x}.weight": (h,) for x in names})
        if gemma:
            out[p + "layer_scalar"] = (1,)
        for proj, shape in (("q", (q, d)), ("k", (kv, d)), ("v", (kv, d)), ("o", (h, q))):
            if proj == "v" and k_eq_v:
                continue
            out[p + f"self_attn.{proj}_proj.weight"] = shape
            if c.get("attention_bias"):
                out[p + f"self_attn.{proj}_proj.bias"] = (shape[0],)
        out.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})  # v_norm: no scale
        out.update(
            {p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h), p + "mlp.down_proj.weight": (h, i)}
        )
    r = c.get("markov_rank") or 0
    if r:
        out.update({"markov_head.markov_w1.weight": (v, r), "markov_head.markov_w2.weight": (v, r)})
        if c["markov_head_type"] == "gated":
            out.update({"markov_head.gate_proj.weight": (r, h + r), "markov_head.gate_proj.bias": (r,)})
        if c["markov_head_type"] == "rnn":
            out.update({"markov_head.joint_proj.weight": (3 * r, 2 * r + h), "markov_head.joint_proj.bias": (3 * r,)})
    if c.get("enable_confidence_head"):
        width = h + (r if c["confidence_head_with_markov"] else 0)
        out.update({"confidence_head.proj.weight": (1, width), "confidence_head.proj.bias": (1,)})
    return out


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(build_tiny_qwen3(tmp_path_factory.mktemp("t"), layers=6))


BLOCK_VARIANTS = {
    "dspark": dict(markov_rank=8, confidence=True),
    "dspark-gated": dict(markov_rank=8, confidence=True, markov_kind="gated"),
    "dspark-rnn": dict(markov_rank=8, confidence=True, markov_kind="rnn"),
    "dspark-no-confidence": dict(markov_rank=8),
    "dflash": dict(),
    "dflash-confidence": dict(confidence=True),
}


def _written(path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    cfg = json.loads((path / "config.json").read_text())
    return cfg, {k: tuple(t.shape) for k, t in load_file(str(path / "model.safetensors")).items()}


@pytest.mark.parametrize("variant", BLOCK_VARIANTS)
def test_block_drafters_are_written_as_deepspec_lays_them_out(variant, target, tmp_path):
    kw = BLOCK_VARIANTS[variant]
    d = BlockModel(target.config, 2, 5, mask_token_id=3, **kw)
    path = save_drafter(
        d, "dspark" if kw.get("markov_rank") else "dflash", target.config, tmp_path, [-1, 0, 1, 2, 4], 7
    )
    cfg, tensors = _written(path)
    needed = DSPARK_FIELDS | ({"markov_head_type"} if kw.get("markov_rank") else set())
    needed |= {"confidence_head_with_markov"} if kw.get("confidence") else set()
    assert needed <= set(cfg), needed - set(cfg)
    assert cfg["architectures"] == ["Qwen3DSparkModel"] and cfg["num_target_layers"] == 6
    assert cfg["layer_types"] == ["full_attention"] * 2 and cfg["tie_word_embeddings"] is False
    assert tensors == deepspec_tensors(cfg)
    loaded, info = load_drafter(path, target)  # and back: same module, same figures
    assert info.target_layer_ids == [-1, 0, 1, 2, 4] and info.gamma == 7
    assert loaded.markov_head is None or loaded.markov_head.kind == kw.get("markov_kind", "vanilla")


def test_eagle3_is_written_as_deepspec_lays_it_out(target, tmp_path):
    path = save_drafter(Eagle3Model(target.config), "eagle3", target.config, tmp_path, [0, 1, 2, 3, 4], 7)
    cfg, tensors = _written(path)
    assert EAGLE3_FIELDS <= set(cfg), EAGLE3_FIELDS - set(cfg)
    assert cfg["num_hidden_layers"] == cfg["draft_num_hidden_layers"] == 1 and cfg["step_loss_decay"] > 0
    assert tensors == deepspec_tensors(cfg)


def test_attention_bias_follows_the_target(tmp_path):
    from transformers import AutoModelForCausalLM

    tdir = build_tiny_qwen3(tmp_path / "t", layers=6)
    cfg = json.loads((tdir / "config.json").read_text())
    (tdir / "config.json").write_text(json.dumps({**cfg, "attention_bias": True}))
    target = AutoModelForCausalLM.from_pretrained(tdir)
    path = save_drafter(BlockModel(target.config, 1, 5), "dflash", target.config, tmp_path / "d", [0, 1, 2, 3, 4], 7)
    written, tensors = _written(path)
    assert "layers.0.self_attn.q_proj.bias" in tensors and tensors == deepspec_tensors(written)


@pytest.mark.parametrize(
    "method, ids, why",
    [
        ("eagle3", [0], "exactly 5"),
        ("eagle3", [0, 1, 2], "exactly 5"),
        ("eagle3", [-1, 0, 1, 2, 3], "outside 0..4"),
        ("dspark", [0, 5], "final layer"),
        ("dspark", [2, 1], "strictly increasing"),
        ("dspark", [-2, 0], "outside -1..4"),
    ],
)
def test_layouts_deepspec_forbids_are_not_written(method, ids, why, target, tmp_path):
    d = Eagle3Model(target.config, len(ids)) if method == "eagle3" else BlockModel(target.config, 1, len(ids), 4)
    with pytest.raises(InputError, match=why):
        save_drafter(d, method, target.config, tmp_path, ids, 7)
    assert not (tmp_path / "config.json").exists()


def _edit_config(path, **fields):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(fields)
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "fields, why",
    [
        ({"architectures": ["Gemma4DSparkModel"]}, "missing field 'global_head_dim'"),  # a Qwen3 file relabelled
        ({"architectures": ["Gemma4Eagle3Model"]}, "missing field 'global_head_dim'"),
        ({"num_target_layers": 36}, "trained on a 36-layer target"),
        ({"markov_head_type": "lstm"}, "unknown Markov head type 'lstm'"),
    ],
)
def test_checkpoints_dsbench_would_misread_are_refused(fields, why, target, tmp_path):
    path = save_drafter(BlockModel(target.config, 1, 5, 4), "dspark", target.config, tmp_path, [0, 1, 2, 3, 4], 7)
    _edit_config(path, **fields)
    with pytest.raises(InputError, match=why):
        load_drafter(path, target)


def test_an_eagle3_file_with_one_feature_layer_is_refused(target, tmp_path):
    """With one layer, fc maps H -> H: DeepSpec's forward would re-apply it to the drafter's own state."""
    path = save_drafter(Eagle3Model(target.config), "eagle3", target.config, tmp_path, [0, 1, 2, 3, 4], 7)
    from safetensors.torch import load_file, save_file

    state = load_file(str(path / "model.safetensors"))
    state["fc.weight"] = state["fc.weight"][:, : target.config.hidden_size].contiguous()
    save_file(state, str(path / "model.safetensors"))
    _edit_config(path, target_layer_ids=[2])
    with pytest.raises(InputError, match="decodes differently in DeepSpec"):
        load_drafter(path, target)


def test_drafters_apply_the_targets_rope_scaling(target):
    """Linear scaling x2 divides positions by two: the scaled rotation at 2p is the plain one at p."""
    scaled = target.config.__class__(**{**target.config.to_dict(), "rope_parameters": {
        "rope_type": "linear", "factor": 2.0, "rope_theta": target.config.rope_parameters["rope_theta"]}})  # fmt: skip
    plain, wide = Attention(target.config), Attention(scaled)
    x = torch.randn(1, 2, 4, plain.hd)
    p = torch.arange(4)
    assert torch.allclose(wide.rope(x, 2 * p), plain.rope(x, p), atol=1e-5)
    assert not torch.allclose(wide.rope(x, p), plain.rope(x, p), atol=1e-3)


def test_length_dependent_rope_follows_the_sequence(target):
    """Dynamic NTK scaling changes the frequencies once positions pass max_position_embeddings:
    the drafter asks transformers for them on every call instead of tabling them."""
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding, apply_rotary_pos_emb

    params = {"rope_type": "dynamic", "factor": 4.0, "rope_theta": target.config.rope_parameters["rope_theta"]}
    cfg = target.config.__class__(
        **{**target.config.to_dict(), "rope_parameters": params, "max_position_embeddings": 16}
    )
    att = Attention(cfg)
    assert not att.rope.tabled
    x, p = torch.randn(1, 2, 4, att.hd), torch.arange(60, 64)
    cos, sin = Qwen3RotaryEmbedding(cfg)(x, p[None])
    expected, _ = apply_rotary_pos_emb(x, x, cos, sin)
    assert torch.allclose(att.rope(x, p), expected, atol=1e-5)
