"""Data that ships with dsbench: profiles, acceptance sets, GPU and model tables, workloads; and
the readers of GPU specs, model configs and prompt files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .validation import check_schema, checked_list, checked_number, json_object, required


def profiles_dir() -> Path:
    """The shipped profiles: inside the wheel, or ./profiles of a source checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_profiles", here.parent / "profiles"):
        if cand.is_dir():
            return cand
    raise InputError("shipped profiles not found (broken install?): reinstall dsbench")


def resolve_shipped(ref: str | os.PathLike, subdir: str = "", suffix: str = ".json") -> Path:
    """A path as given, or the name of a shipped file (`h100-qwen3-8b`, `qwen3-8b`)."""
    p = Path(ref)
    if p.exists():
        return p
    cand = profiles_dir() / subdir / (str(ref) if str(ref).endswith(suffix) or not suffix else f"{ref}{suffix}")
    if cand.exists():
        return cand
    return p  # let the loader report it missing under the user's own spelling


GPUS_SCHEMA = "dsbench.gpus/1"


def read_gpu(name: str, table: str | os.PathLike | None = None):
    """The Hardware for a GPU name ('H100', 'NVIDIA H100 80GB HBM3'), most specific match first.

    An unknown GPU is an error, never a silent default.
    """
    from .core.roofline import Hardware

    p = Path(table) if table else profiles_dir() / "gpus.json"
    data = json_object(p, "GPU table")
    check_schema(data, p, GPUS_SCHEMA)
    key = name.lower().replace("-", "").replace(" ", "")
    for g in checked_list(required(data, "gpus", p), p, "gpus"):
        if any(m.replace("-", "").replace(" ", "") in key for m in g["match"]):
            return Hardware(
                g["name"],
                checked_number(g["peak_bf16_flops"], p, f"{g['name']}.peak_bf16_flops", positive=True),
                checked_number(g["mem_bw_bytes_s"], p, f"{g['name']}.mem_bw_bytes_s", positive=True),
                checked_number(g["mem_bytes"], p, f"{g['name']}.mem_bytes", positive=True),
            )
    known = ", ".join(g["name"] for g in data["gpus"])
    raise InputError(f"unknown GPU {name!r}; {p} knows {known}")


def read_model_shape(ref: str | os.PathLike):
    """A ModelShape from a Hugging Face config: a config JSON, a model folder, or a shipped name."""
    from .core.roofline import ModelShape

    p = resolve_shipped(ref, "models")
    if p.is_dir():
        p = p / "config.json"
    cfg = json_object(p, "model config")
    name = Path(ref).stem if Path(ref).suffix == ".json" else Path(ref).name
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        spec = ModelShape(
            name=cfg.get("_name_or_path") or name,
            layers=int(cfg["num_hidden_layers"]),
            hidden=hidden,
            intermediate=int(cfg["intermediate_size"]),
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab=int(cfg["vocab_size"]),
            experts=int(cfg.get("num_experts") or cfg.get("num_local_experts") or 0),
            experts_per_token=int(cfg.get("num_experts_per_tok") or 0),
            expert_intermediate=int(cfg.get("moe_intermediate_size") or 0),
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        )
    except KeyError as e:
        raise InputError(f"{p}: missing field {e.args[0]!r} (is this a Hugging Face decoder config?)") from None
    except (TypeError, ValueError) as e:
        raise InputError(f"{p}: malformed config value ({e})") from None
    for fname in ("layers", "hidden", "intermediate", "heads", "kv_heads", "head_dim", "vocab"):
        if getattr(spec, fname) <= 0:
            raise InputError(f"{p}: {fname} must be positive")
    return spec


WORKLOADS_DIR_NAME = "workloads"


@dataclass
class Prompt:
    text: str
    domain: str


def read_workload(ref: str | os.PathLike) -> list[Prompt]:
    """Prompts from a JSONL file: `{"prompt", "domain"?}` lines, or DeepSpec's `{"turns": [...]}`
    (first turn, domain = file name). A shipped set may be named: math, code, chat."""
    p = Path(ref)
    if not p.exists():
        shipped = Path(__file__).resolve().parent.parent / WORKLOADS_DIR_NAME / f"{ref}.jsonl"
        packaged = Path(__file__).resolve().parent / "_workloads" / f"{ref}.jsonl"
        p = next((c for c in (shipped, packaged) if c.exists()), p)
    if not p.exists():
        raise InputError(f"workload file not found: {ref}")
    prompts = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}:{i}: not valid JSON ({e.msg})") from None
        if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
            prompts.append(Prompt(obj["prompt"], str(obj.get("domain") or p.stem)))
        elif (
            isinstance(obj, dict)
            and isinstance(obj.get("turns"), list)
            and obj["turns"]
            and isinstance(obj["turns"][0], str)
        ):
            prompts.append(Prompt(obj["turns"][0], p.stem))
        else:
            raise InputError(f'{p}:{i}: expected {{"prompt": str}} or {{"turns": [str, ...]}}')
    if not prompts:
        raise InputError(f"{p}: no prompts")
    return prompts
