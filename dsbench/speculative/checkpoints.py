"""DeepSpec-layout drafter checkpoints: a folder with config.json and safetensors (never pickles).

config.json is a copy of the target's config with the drafter's keys, as DeepSpec's config
builders write them (`deepspec/modeling/{dspark,eagle3}/qwen3/config.py`):
  DSpark / DFlash  architectures ["Qwen3DSparkModel"], num_target_layers, num_hidden_layers,
                   layer_types, block_size, mask_token_id, target_layer_ids, num_anchors,
                   markov_rank (+ markov_head_type), enable_confidence_head
                   (+ confidence_head_with_markov), tie_word_embeddings false;
  Eagle3           architectures ["Qwen3Eagle3Model"] (or SpecForge's "Eagle3DraftModel"),
                   num_hidden_layers = draft_num_hidden_layers = 1, target_layer_ids (five),
                   ttt_length, step_loss_decay, target_model_name_or_path;
  MTP-1            dsbench's own "DsbenchMTPModel" (not a DeepSpec method).
Tensors are checked name by name and shape by shape against the architecture built from that
config; the embedding and head may alias the target's when equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import DEFAULT_GAMMA
from ..errors import InputError
from .models import BlockModel, Eagle3Model, MTPModel, gemma4_config

ARCHS = {
    "Qwen3DSparkModel": "block",
    "Gemma4DSparkModel": "block",
    "Qwen3Eagle3Model": "eagle3",
    "Gemma4Eagle3Model": "eagle3",
    "Eagle3DraftModel": "eagle3",
    "DsbenchMTPModel": "mtp-1",
}
# DeepSpec's Gemma4 drafters have modules of their own (models.gemma4_config): these fields say
# how their attention is shaped, and its classes assert them
GEMMA4_FIELDS = ("global_head_dim", "num_global_key_value_heads", "attention_k_eq_v")
NUM_ANCHORS = 512  # DeepSpec's training-only anchors per sequence; its class asserts the field
STEP_LOSS_DECAY = 0.8  # DeepSpec's Eagle3 TTT step weight; asserted likewise


@dataclass
class DrafterInfo:
    method: str  # mtp-1 | eagle3 | dflash | dspark
    gamma: int
    target_layer_ids: list[int]
    path: Path


def check_layer_ids(ids: list[int], target_layers: int, method: str, where: str, exact_five: bool = False) -> None:
    """The target layers a drafter reads, as DeepSpec checks them: strictly increasing, inside the
    target (-1, the embeddings, for block drafters only), never the final layer (its HF output is
    normed, while DeepSpec trains on raw layer outputs). Eagle3 needs exactly five to write
    (DeepSpec's builder) and more than one to read: with one, DeepSpec's forward cannot tell
    target features from the drafter's own hidden state (both H wide) and re-applies fc to it."""
    lo = -1 if method in ("dflash", "dspark") else 0
    if not ids:
        raise InputError(f"{where}: target_layer_ids is empty")
    bad = [i for i in ids if not lo <= i < target_layers - 1]
    if bad:
        raise InputError(
            f"{where}: target layer {bad[0]} is outside {lo}..{target_layers - 2} for a {target_layers}-layer "
            "target (the final layer is never a feature layer)"
        )
    if any(b <= a for a, b in zip(ids, ids[1:])):
        raise InputError(f"{where}: target_layer_ids must be strictly increasing, got {ids}")
    if method == "eagle3" and (len(ids) != 5 if exact_five else len(ids) == 1):
        raise InputError(
            f"{where}: an Eagle3 drafter reading {len(ids)} target layer(s) "
            + ("is forbidden by DeepSpec's builder (exactly 5)" if exact_five else "decodes differently in DeepSpec")
        )


def gemma4_text_dict(target_config) -> dict:
    """A Gemma4 target's text config as DeepSpec's transformers (5.10) writes it, with
    `global_head_dim` and `num_global_key_value_heads` as fields (5.24 folds them into
    `per_layer_config`, which DeepSpec's classes do not read)."""
    d = target_config.get_text_config().to_dict()
    per = d.pop("per_layer_config", None) or {}
    full = next((v for k, v in per.items() if d["layer_types"][int(k)] == "full_attention"), {})
    if d.get("global_head_dim") is None:
        d["global_head_dim"] = full.get("head_dim", d["head_dim"])
    if d.get("num_global_key_value_heads") is None:
        d["num_global_key_value_heads"] = full.get("num_key_value_heads", d["num_key_value_heads"])
    return d


def save_drafter(
    drafter: torch.nn.Module, method: str, target_config, out_dir: Path, target_layer_ids: list[int], gamma: int
) -> Path:
    """Write `drafter` in DeepSpec's layout (config.json + model.safetensors), with every field
    DeepSpec's model classes assert, refusing layouts DeepSpec's config builders forbid."""
    from safetensors.torch import save_file

    ids = [int(i) for i in target_layer_ids]
    target_config = target_config.get_text_config()
    n = int(target_config.num_hidden_layers)
    check_layer_ids(ids, n, method, str(out_dir), exact_five=True)
    family = "Gemma4" if getattr(drafter, "embed_scale", None) else "Qwen3"
    # DeepSpec deep-copies the target's (text) config
    cfg = gemma4_text_dict(target_config) if family == "Gemma4" else target_config.to_dict()
    cfg.update(num_target_layers=n, target_layer_ids=ids, tie_word_embeddings=False)
    if family == "Gemma4":  # the shape the drafter was built with (its key/value heads are the global ones
        att = drafter.layers[0].self_attn  # only when keys double as values)
        k_eq_v = not hasattr(att, "v_proj")
        cfg.update(global_head_dim=att.hd, attention_k_eq_v=k_eq_v, target_text_model_type=cfg.get("model_type"))
        cfg["num_global_key_value_heads" if k_eq_v else "num_key_value_heads"] = att.nkv
    if method in ("dflash", "dspark"):
        layers, mh, ch = len(drafter.layers), drafter.markov_head, drafter.confidence_head
        cfg.update(
            architectures=[f"{family}DSparkModel"],
            num_hidden_layers=layers,
            layer_types=["full_attention"] * layers,
            block_size=gamma,
            mask_token_id=drafter.mask_token_id,
            num_anchors=NUM_ANCHORS,
            markov_rank=mh.rank if mh is not None else 0,
            enable_confidence_head=ch is not None,
        )
        if mh is not None:
            cfg["markov_head_type"] = mh.kind
        if ch is not None:
            cfg["confidence_head_with_markov"] = ch.with_markov
    elif method == "eagle3":
        cfg.update(
            architectures=[f"{family}Eagle3Model"],
            num_hidden_layers=1,
            draft_num_hidden_layers=1,
            layer_types=["full_attention"],
            ttt_length=gamma,
            step_loss_decay=STEP_LOSS_DECAY,
            target_model_name_or_path=str(getattr(target_config, "_name_or_path", "") or ""),
        )
    elif method == "mtp-1":
        cfg.update(architectures=["DsbenchMTPModel"], num_hidden_layers=1, layer_types=["full_attention"])
    else:
        raise ValueError(f"no checkpoint layout for {method!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=1))
    save_file({k: v.detach().contiguous() for k, v in drafter.state_dict().items()}, str(out_dir / "model.safetensors"))
    return out_dir


def _build(cfg: dict, tcfg, ids: list[int], where: str) -> tuple[torch.nn.Module, str, int]:
    """The drafter module a checkpoint's config describes: (module, method, gamma). Qwen3 drafters
    are built from the target's config, Gemma4 ones from their own (DeepSpec's classes do the same)."""
    arch = cfg["architectures"][0]
    kind = ARCHS[arch]
    if arch.startswith("Gemma4"):
        missing = [f for f in GEMMA4_FIELDS if f not in cfg]
        if missing:
            raise InputError(f"{where}: missing field {missing[0]!r} (a {arch} config carries it)")
        try:
            tcfg = gemma4_config(cfg)
        except (KeyError, ValueError) as e:
            raise InputError(f"{where}: {arch}: {e}") from None
    if kind == "block":
        rank = int(cfg.get("markov_rank") or 0)
        confidence = bool(cfg.get("enable_confidence_head"))
        try:
            module = BlockModel(
                tcfg,
                int(cfg["num_hidden_layers"]),
                len(ids),
                rank,
                confidence,
                int(cfg.get("mask_token_id") or 0),
                markov_kind=str(cfg.get("markov_head_type") or "vanilla").lower(),
                confidence_with_markov=bool(cfg.get("confidence_head_with_markov", rank > 0)) if confidence else None,
            )
        except ValueError as e:
            raise InputError(f"{where}: {e}") from None
        return module, "dspark" if rank else "dflash", int(cfg.get("block_size") or DEFAULT_GAMMA)
    if kind == "eagle3":
        layers = int(cfg.get("draft_num_hidden_layers") or cfg.get("num_hidden_layers") or 1)
        if layers != 1:  # DeepSpec's evaluator asserts it too: its cache update is exact for one layer only
            raise InputError(f"{where}: an Eagle3 drafter with {layers} layers (one is supported)")
        return Eagle3Model(tcfg, len(ids)), "eagle3", int(cfg.get("ttt_length") or DEFAULT_GAMMA)
    return MTPModel(tcfg), "mtp-1", 1


def load_drafter(path: str | Path, target) -> tuple[torch.nn.Module, DrafterInfo]:
    """Build the drafter a checkpoint folder describes and fill it from its safetensors."""
    from safetensors.torch import load_file

    p = Path(path)
    cfg_path = p / "config.json"
    if not cfg_path.exists():
        raise InputError(f"draft checkpoint has no config.json: {p}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg_path}: not valid JSON ({e})") from None
    arch = (cfg.get("architectures") or ["?"])[0]
    if arch not in ARCHS:
        raise InputError(f"{cfg_path}: unknown drafter architecture {arch!r} (known: {', '.join(ARCHS)})")
    files = sorted(p.glob("*.safetensors"))
    if not files:
        pickles = [f.name for f in p.glob("*.bin")] + [f.name for f in p.glob("*.pt")]
        extra = (
            f" (found {', '.join(pickles)}: pickled checkpoints are refused; convert them to safetensors)"
            if pickles
            else ""
        )
        raise InputError(f"draft checkpoint has no .safetensors files: {p}{extra}")
    tcfg = target.config.get_text_config()
    ids = [int(i) for i in cfg.get("target_layer_ids") or []]
    if not ids and ARCHS[arch] != "mtp-1":
        raise InputError(f"{cfg_path}: missing field 'target_layer_ids'")
    if cfg.get("hidden_size") != tcfg.hidden_size or cfg.get("vocab_size") != tcfg.vocab_size:
        raise InputError(
            f"{cfg_path}: hidden_size/vocab_size {cfg.get('hidden_size')}/{cfg.get('vocab_size')} do not match "
            f"the target's {tcfg.hidden_size}/{tcfg.vocab_size}"
        )
    trained_on = cfg.get("num_target_layers")
    if trained_on is not None and int(trained_on) != tcfg.num_hidden_layers:
        raise InputError(
            f"{cfg_path}: drafter was trained on a {trained_on}-layer target; this target has "
            f"{tcfg.num_hidden_layers} layers (its features would come from other layers)"
        )
    drafter, method, gamma = _build(cfg, tcfg, ids, str(cfg_path))
    if method != "mtp-1":
        check_layer_ids(ids, tcfg.num_hidden_layers, method, str(cfg_path))
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    expected = drafter.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise InputError(
            f"{p}: missing tensor {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise InputError(f"{p}: unexpected tensor {unexpected[0]!r} for a {method} drafter")
    for k, t in expected.items():
        if tuple(state[k].shape) != tuple(t.shape):
            raise InputError(f"{p}: tensor {k!r} has shape {tuple(state[k].shape)}, expected {tuple(t.shape)}")
    drafter.load_state_dict(state)
    _share_with_target(drafter, target)
    dtype = next(target.parameters()).dtype
    return drafter.to(device=target.device, dtype=dtype).eval(), DrafterInfo(method, gamma, ids, p)


def _share_with_target(drafter: torch.nn.Module, target) -> None:
    """Alias the drafter's frozen embedding and head copies to the target's when they are equal."""
    pairs = (
        (getattr(drafter, "embed_tokens", None), target.get_input_embeddings()),
        (getattr(drafter, "lm_head", None), target.get_output_embeddings()),
    )
    for mine, theirs in pairs:
        if (
            mine is not None
            and theirs is not None
            and mine.weight.shape == theirs.weight.shape
            and torch.equal(mine.weight, theirs.weight)
        ):
            mine.weight = theirs.weight
