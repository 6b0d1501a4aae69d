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

# GPU-table (and profile `device`) field -> Hardware field; the first four are required
_HARDWARE_FIELDS = {
    "name": "name",
    "peak_bf16_flops": "peak_flops",
    "mem_bw_bytes_s": "mem_bw",
    "mem_bytes": "mem_bytes",
    "peak_fp8_flops": "peak_fp8_flops",
    "peak_fp4_flops": "peak_fp4_flops",
    "interconnect_bw_bytes_s": "link_bw",
    "interconnect_latency_s": "link_latency_s",
}


def hardware_from(row: dict, p: Path):
    """A Hardware from a GPU-table row or a profile's `device` object (missing optional figures: 0)."""
    from .core.roofline import Hardware

    name = str(required(row, "name", p))
    values = {}
    for i, (key, attr) in enumerate(_HARDWARE_FIELDS.items()):
        if key == "name" or (i > 3 and key not in row):
            continue
        values[attr] = checked_number(
            required(row, key, p, f"{name}."), p, f"{name}.{key}", positive=i <= 3, nonneg=i > 3
        )
    return Hardware(name, **values)


def hardware_fields(hw) -> dict:
    """The GPU-table spelling of a Hardware's figures (what a profile's `device` records)."""
    return {key: getattr(hw, attr) for key, attr in _HARDWARE_FIELDS.items()}


def read_gpu(name: str, table: str | os.PathLike | None = None):
    """The Hardware for a GPU name ('H100', 'NVIDIA H100 80GB HBM3'), most specific match first.

    An unknown GPU is an error, never a silent default.
    """
    p = Path(table) if table else profiles_dir() / "gpus.json"
    data = json_object(p, "GPU table")
    check_schema(data, p, GPUS_SCHEMA)
    key = name.lower().replace("-", "").replace(" ", "")
    for g in checked_list(required(data, "gpus", p), p, "gpus"):
        if any(m.replace("-", "").replace(" ", "") in key for m in g["match"]):
            return hardware_from(g, p)
    known = ", ".join(g["name"] for g in data["gpus"])
    raise InputError(f"unknown GPU {name!r}; {p} knows {known}")


def _int(cfg: dict, *keys: str, default: int = 0) -> int:
    """The first of `keys` present (and not null) in a config, as an int."""
    for k in keys:
        if cfg.get(k) is not None:
            return int(cfg[k])
    return default


def _sliding(cfg: dict, layers: int) -> tuple[int, int]:
    """(window, layers using it) from Qwen-style `use_sliding_window` / `max_window_layers` or
    Gemma/Mistral-style `layer_types`."""
    window = _int(cfg, "sliding_window")
    if not window:
        return 0, 0
    types = cfg.get("layer_types")
    if isinstance(types, list):
        return window, sum(t == "sliding_attention" for t in types)
    if "use_sliding_window" in cfg:
        if not cfg["use_sliding_window"]:
            return 0, 0
        return window, max(0, layers - _int(cfg, "max_window_layers", default=layers))
    return window, layers  # Mistral: every layer


def read_model_shape(ref: str | os.PathLike):
    """A ModelShape from a Hugging Face config: a config JSON, a model folder, or a shipped name.

    Reads Qwen3 / Qwen3-MoE / Llama / Mistral / DeepSeek-V3 spellings (MLA's `kv_lora_rank`,
    `n_routed_experts`, `n_shared_experts`, `first_k_dense_replace`); a multimodal config's
    `text_config` is read in its place.
    """
    from .core.roofline import ModelShape

    p = resolve_shipped(ref, "models")
    if p.is_dir():
        p = p / "config.json"
    cfg = json_object(p, "model config")
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg["text_config"], "_name_or_path": cfg.get("_name_or_path")}
    name = Path(ref).stem if Path(ref).suffix == ".json" else Path(ref).name
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        layers = int(cfg["num_hidden_layers"])
        experts = _int(cfg, "num_experts", "n_routed_experts", "num_local_experts")
        expert_width = _int(cfg, "moe_intermediate_size", "expert_intermediate_size")
        shared = _int(cfg, "shared_expert_intermediate_size") or _int(cfg, "n_shared_experts") * expert_width
        dense = _int(cfg, "first_k_dense_replace") + len(cfg.get("mlp_only_layers") or [])
        window, sliding = _sliding(cfg, layers)
        spec = ModelShape(
            name=cfg.get("_name_or_path") or name,
            layers=layers,
            hidden=hidden,
            intermediate=int(cfg["intermediate_size"]),
            heads=heads,
            kv_heads=_int(cfg, "num_key_value_heads", default=heads),
            head_dim=_int(cfg, "head_dim", default=hidden // heads),
            vocab=int(cfg["vocab_size"]),
            experts=experts,
            experts_per_token=_int(cfg, "num_experts_per_tok") if experts else 0,
            expert_intermediate=expert_width if experts else 0,
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            shared_intermediate=shared if experts else 0,
            dense_layers=dense if experts else 0,
            kv_lora_rank=_int(cfg, "kv_lora_rank"),
            q_lora_rank=_int(cfg, "q_lora_rank"),
            qk_rope_head_dim=_int(cfg, "qk_rope_head_dim"),
            qk_nope_head_dim=_int(cfg, "qk_nope_head_dim"),
            v_head_dim=_int(cfg, "v_head_dim"),
            sliding_window=window,
            sliding_layers=sliding,
        )
    except KeyError as e:
        raise InputError(f"{p}: missing field {e.args[0]!r} (is this a Hugging Face decoder config?)") from None
    except (TypeError, ValueError) as e:
        raise InputError(f"{p}: malformed config value ({e})") from None
    for fname in ("layers", "hidden", "intermediate", "heads", "kv_heads", "head_dim", "vocab"):
        if getattr(spec, fname) <= 0:
            raise InputError(f"{p}: {fname} must be positive")
    if spec.experts and not 0 < spec.experts_per_token <= spec.experts or spec.experts and not spec.expert_intermediate:
        raise InputError(f"{p}: an MoE config needs num_experts_per_tok in 1..experts and moe_intermediate_size")
    if spec.mla and not (spec.qk_rope_head_dim and spec.qk_nope_head_dim and spec.v_head_dim):
        raise InputError(f"{p}: an MLA config (kv_lora_rank) needs qk_rope_head_dim, qk_nope_head_dim and v_head_dim")
    if spec.dense_layers > spec.layers:
        raise InputError(f"{p}: first_k_dense_replace exceeds num_hidden_layers")
    return spec


def shipped_weight_dtype(ref: str | os.PathLike) -> str:
    """The weight dtype a config's checkpoint ships in: fp8 when its quantization_config says so
    (DeepSeek-V3's block-fp8), else bf16."""
    p = resolve_shipped(ref, "models")
    cfg = json_object(p / "config.json" if p.is_dir() else p, "model config")
    quant = cfg.get("quantization_config") or {}
    return "fp8" if isinstance(quant, dict) and quant.get("quant_method") == "fp8" else "bf16"


WORKLOADS_DIR_NAME = "workloads"


@dataclass
class Prompt:
    text: str
    domain: str  # the set it came from (file name, or the line's "domain")
    category: str | None = None  # Spec-Bench / SPEED-Bench's per-line "category", where given
    turns: tuple[str, ...] = ()  # every user turn of a conversation (text is the first), for multi-turn load


# Words that common BPE vocabularies (Llama, Qwen, GPT) encode as one token each with their leading
# space, so a synthetic prompt of N of them is close to N tokens; the server's usage says exactly.
_SYNTHETIC_WORDS = (
    "the of and to in is that it for was on are as with his they be at one have this from or had by "
    "not word but what some we can out other were all there when up use your how said an each she "
    "which do their time if will way about many then them write would like so these her long make "
    "thing see him two has look more day could go come did number sound no most people my over know "
    "water than call first who may down side been now find any new work part take get place made "
    "live where after back little only round man year came show every good me give our under name "
    "very through just form great think say help low line differ turn cause much mean before move "
    "right boy old too same tell does set three want air well also play small end put home read hand"
).split()


def synthetic_prompts(tokens: int, count: int = 64, seed: int = 0) -> list[Prompt]:
    """`count` prompts of `tokens` seeded random common words (about one token each), domain
    `synthetic-N`: `--workload synthetic:N` (with --max-tokens and --ignore-eos for the output)."""
    import numpy as np

    rng = np.random.default_rng([seed, tokens])
    words = np.array(_SYNTHETIC_WORDS)
    return [Prompt(" ".join(rng.choice(words, size=tokens)), f"synthetic-{tokens}") for _ in range(count)]


def _sharegpt(p: Path) -> list[Prompt]:
    """ShareGPT's JSON list of {"conversations": [{"from": "human", "value": ...}, ...]}: each
    conversation's first human turn."""
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: not valid JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise InputError(f'{p}: expected a ShareGPT list of {{"conversations": [...]}}')
    prompts = []
    for i, conv in enumerate(data):
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list):
            raise InputError(f"{p}: item {i} has no 'conversations' list")
        human = [
            t["value"]
            for t in turns
            if isinstance(t, dict) and t.get("from") in ("human", "user") and isinstance(t.get("value"), str)
        ]
        if human and human[0].strip():
            prompts.append(Prompt(human[0], p.stem, turns=tuple(human)))
    return prompts


def read_workload(ref: str | os.PathLike) -> list[Prompt]:
    """Prompts from a JSONL file: `{"prompt", "domain"?}` lines, or `{"turns": [...]}` as DeepSpec,
    Spec-Bench and SPEED-Bench (exported to JSONL) write them (first turn; domain = the file name,
    category = the line's `category`); a ShareGPT `.json`; `synthetic:N` (seeded prompts of about N
    tokens). A shipped set may be named: math, code, chat."""
    if str(ref).startswith("synthetic:"):
        n = str(ref).split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise InputError(f"workload {ref!r}: synthetic:N takes a whole number of prompt tokens >= 1")
        return synthetic_prompts(int(n))
    p = Path(ref)
    if not p.exists():
        shipped = Path(__file__).resolve().parent.parent / WORKLOADS_DIR_NAME / f"{ref}.jsonl"
        packaged = Path(__file__).resolve().parent / "_workloads" / f"{ref}.jsonl"
        p = next((c for c in (shipped, packaged) if c.exists()), p)
    if not p.exists():
        raise InputError(f"workload file not found: {ref}")
    if p.suffix == ".json":
        prompts = _sharegpt(p)
        if not prompts:
            raise InputError(f"{p}: no prompts")
        return prompts
    if p.suffix == ".parquet":
        raise InputError(
            f"{p}: export parquet to JSONL first (pandas.read_parquet(f).to_json(out, orient='records', lines=True))"
        )
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
            category = obj.get("category")
            turns = tuple(t for t in obj["turns"] if isinstance(t, str))
            prompts.append(Prompt(obj["turns"][0], p.stem, str(category) if category else None, turns))
        else:
            raise InputError(f'{p}:{i}: expected {{"prompt": str}} or {{"turns": [str, ...]}}')
    if not prompts:
        raise InputError(f"{p}: no prompts")
    return prompts
