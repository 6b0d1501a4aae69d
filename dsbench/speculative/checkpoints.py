"""DeepSpec-layout drafter checkpoints: a folder with config.json and safetensors (never pickles).

config.json is a copy of the target's config with the drafter's keys: `architectures`
(`Qwen3DSparkModel` for DSpark and DFlash, `Qwen3Eagle3Model` / `Eagle3DraftModel` for Eagle3;
dsbench's own `DsbenchMTPModel` for MTP-1), `num_hidden_layers` (drafter depth),
`target_layer_ids`, `block_size` / `ttt_length`, `mask_token_id`, `markov_rank`,
`enable_confidence_head`. Tensors are checked name by name and shape by shape against the
architecture built from that config; the embedding and head may alias the target's when equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import DEFAULT_GAMMA
from ..errors import InputError
from .models import BlockModel, Eagle3Model, MTPModel

ARCHS = {
    "Qwen3DSparkModel": "block",
    "Gemma4DSparkModel": "block",
    "Qwen3Eagle3Model": "eagle3",
    "Eagle3DraftModel": "eagle3",
    "DsbenchMTPModel": "mtp-1",
}


@dataclass
class DrafterInfo:
    method: str  # mtp-1 | eagle3 | dflash | dspark
    gamma: int
    target_layer_ids: list[int]
    path: Path


def save_drafter(
    drafter: torch.nn.Module, method: str, target_config, out_dir: Path, target_layer_ids: list[int], gamma: int
) -> Path:
    """Write `drafter` in DeepSpec's layout (config.json + model.safetensors)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = target_config.to_dict()
    cfg.update(
        num_target_layers=target_config.num_hidden_layers,
        target_layer_ids=list(target_layer_ids),
        tie_word_embeddings=False,
    )
    if method in ("dflash", "dspark"):
        cfg.update(
            architectures=["Qwen3DSparkModel"],
            num_hidden_layers=len(drafter.layers),
            block_size=gamma,
            mask_token_id=drafter.mask_token_id,
            layer_types=["full_attention"] * len(drafter.layers),
            markov_rank=drafter.markov_head.markov_w1.embedding_dim if drafter.markov_head is not None else 0,
            enable_confidence_head=drafter.confidence_head is not None,
        )
        if drafter.markov_head is not None:
            cfg.update(markov_head_type="vanilla", confidence_head_with_markov=True)
    elif method == "eagle3":
        cfg.update(
            architectures=["Qwen3Eagle3Model"],
            num_hidden_layers=1,
            draft_num_hidden_layers=1,
            ttt_length=gamma,
            layer_types=["full_attention"],
        )
    elif method == "mtp-1":
        cfg.update(architectures=["DsbenchMTPModel"], num_hidden_layers=1, layer_types=["full_attention"])
    else:
        raise ValueError(f"no checkpoint layout for {method!r}")
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=1))
    save_file({k: v.detach().contiguous() for k, v in drafter.state_dict().items()}, str(out_dir / "model.safetensors"))
    return out_dir


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
    tcfg = target.config
    ids = list(cfg.get("target_layer_ids") or [])
    if not ids:
        raise InputError(f"{cfg_path}: missing field 'target_layer_ids'")
    if cfg.get("hidden_size") != tcfg.hidden_size or cfg.get("vocab_size") != tcfg.vocab_size:
        raise InputError(
            f"{cfg_path}: hidden_size/vocab_size {cfg.get('hidden_size')}/{cfg.get('vocab_size')} do not match "
            f"the target's {tcfg.hidden_size}/{tcfg.vocab_size}"
        )
    kind = ARCHS[arch]
    if kind == "block":
        rank = int(cfg.get("markov_rank") or 0)
        method = "dspark" if rank else "dflash"
        drafter = BlockModel(
            tcfg,
            int(cfg["num_hidden_layers"]),
            len(ids),
            rank,
            bool(cfg.get("enable_confidence_head")),
            int(cfg.get("mask_token_id") or 0),
        )
        gamma = int(cfg.get("block_size") or DEFAULT_GAMMA)
    elif kind == "eagle3":
        method, drafter, gamma = "eagle3", Eagle3Model(tcfg, len(ids)), int(cfg.get("ttt_length") or DEFAULT_GAMMA)
    else:
        method, drafter, gamma = "mtp-1", MTPModel(tcfg), 1
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
