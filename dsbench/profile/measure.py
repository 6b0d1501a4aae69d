"""Measured verification profiles: real forward passes of the target architecture.

The model is built from a Hugging Face config with random weights, directly on the device in the
chosen dtype (no download, no weights). A verification pass is what a serving engine runs: R
requests, each with a KV cache of `context` tokens, each verifying q = B / R tokens, in one
batched forward with logits for every position. The cache is a preallocated StaticCache written
in place (as a paged engine does), so the pass reads the caches without re-copying them.

`layers=K` profiles K decoder layers and a 1-layer model, and extrapolates linearly in depth to
the full model: t(L) = t(1) + (t(K) - t(1)) (L - 1) / (K - 1); the embedding, head and per-pass
overheads sit in t(1).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import ProfileConfig, Progress
from ..errors import InputError
from ..shipped import resolve_shipped
from .timing import time_calls

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def load_hf_config(ref: str | os.PathLike):
    """A transformers config from a model folder, a config JSON, or a shipped config name."""
    from transformers import AutoConfig

    p = resolve_shipped(ref, "models")
    if p.is_dir():
        p = p / "config.json"
    if not p.exists():
        raise InputError(f"model config not found: {ref}")
    try:
        data = json.loads(p.read_text())
        return AutoConfig.for_model(data.pop("model_type"), **data)
    except (json.JSONDecodeError, KeyError, ValueError) as e:
        raise InputError(f"{p}: not a usable Hugging Face config ({type(e).__name__}: {e})") from None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available (this torch build or machine has none)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError(f"--device must be auto, cpu or cuda[:N], got {device!r}")
    return device


def torch_dtype(name: str, device: str):
    import torch

    if name not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    dt = getattr(torch, DTYPES[name])
    try:  # some CPU builds lack kernels for some dtypes
        a = torch.ones(8, 8, dtype=dt, device=device)
        (a @ a).sum().item()
    except RuntimeError as e:
        raise InputError(f"--dtype {name} is not supported on {device}: {e}") from None
    return dt


def build_model(config, layers: int, device: str, dtype):
    """Random-weight causal LM with `layers` decoder layers, materialised on `device` in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM

    d = {**config.to_dict(), "num_hidden_layers": layers}
    if d.get("layer_types"):
        d["layer_types"] = list(d["layer_types"])[:layers]
    cfg = config.__class__.from_dict(d)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval()


@dataclass
class _Level:
    """One request level: a model and a KV cache of R requests at the context length."""

    model: object
    cache: object
    requests: int
    context: int


def _prepare(model, config, requests: int, context: int, max_q: int, device: str, dtype) -> _Level:
    import torch
    from transformers import StaticCache

    from ..speculative.slots import cache_argument

    cache = StaticCache(config=model.config, max_cache_len=context + max_q)
    ids = torch.zeros((requests, 1), dtype=torch.long, device=device)
    pos = torch.tensor([context], device=device)
    with torch.inference_mode():
        # lazily allocates the cache
        model(input_ids=ids, **{cache_argument(model): cache}, cache_position=pos, use_cache=True)
        for layer in cache.layers:  # a realistic, full cache: random keys and values in every slot
            layer.keys.normal_()
            layer.values.normal_()
    return _Level(model, cache, requests, context)


def _verify_fn(level: _Level, q: int, device: str) -> Callable[[], object]:
    import torch

    from ..speculative.slots import cache_argument

    vocab = level.model.config.vocab_size
    g = torch.Generator(device="cpu").manual_seed(q)
    ids = torch.randint(0, vocab, (level.requests, q), generator=g).to(device)
    pos = torch.arange(level.context, level.context + q, device=device)
    position_ids = pos[None, :].expand(level.requests, -1)

    layers = level.cache.layers

    def fn():
        for layer in layers:  # rewind: every timed pass verifies at the same place after `context` cached tokens
            layer.cumulative_length.fill_(level.context)
        with torch.inference_mode():
            # logits for every verified position, as verification needs
            return level.model(
                input_ids=ids,
                **{cache_argument(level.model): level.cache},
                cache_position=pos,
                position_ids=position_ids,
                use_cache=True,
                logits_to_keep=0,
            ).logits

    return fn


def _graph_or_explain(fn):  # pragma: no cover - needs a GPU
    from .timing import cuda_graphed

    try:
        return cuda_graphed(fn)
    except RuntimeError as e:
        raise InputError(f"CUDA-graph capture failed ({e}); profile without --cuda-graph") from None


def is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


NOISY_CV = 0.25  # a point whose repeats spread more than this (std / mean) is flagged, in the file and the output


def noise_warnings(doc: dict) -> list[str]:
    """One line per flagged point of a measured profile (target and drafters)."""
    out = [
        f"R={p['requests']} B={p['batch_tokens']}: CV {p['cv']:.0%} over {p['repeats']} passes"
        for p in doc["points"]
        if p.get("noisy")
    ]
    for method, table in (doc.get("draft") or {}).items():
        out += [
            f"{method} R={p['requests']} gamma {p['gamma']}: CV {p['cv']:.0%}"
            for p in table["points"]
            if p.get("noisy")
        ]
    return out


def profile_target(
    config,
    device: str,
    dtype,
    batch_tokens: list[int],
    requests: list[int],
    context: int,
    layers: int | None = None,
    repeats: int = 10,
    warmup: int = 3,
    on_point: Callable[[dict], None] | None = None,
    cuda_graph: bool = False,
) -> dict:
    """Measure step time over the (B, R) grid. Returns {"points": [...], "scaling": {...}, "oom": ...}.

    Each point: batch_tokens actually run (R * q), requests, q, step_s (median, scaled to full
    depth when `layers` < the model's depth), cv, p10/p90, and the raw per-depth medians.
    """
    full = config.num_hidden_layers
    depths = [full] if not layers or layers >= full else sorted({1, max(2, layers)})
    if layers and layers < full and layers < 2:
        raise InputError("--layers must be >= 2 to extrapolate in depth (it measures K layers and 1 layer)")
    grid = []
    for r in sorted(set(requests)):
        qs = sorted({max(1, round(b / r)) for b in batch_tokens if b >= r})
        grid += [(r, q) for q in qs]
    if not grid:
        raise InputError("no (batch tokens, requests) point has batch tokens >= requests")
    max_q = max(q for _, q in grid)
    models = {d: build_model(config, d, device, dtype) for d in depths}
    points, oom = [], None
    for r in sorted({r for r, _ in grid}):
        try:
            levels = {d: _prepare(models[d], config, r, context, max_q, device, dtype) for d in depths}
        except (RuntimeError, MemoryError) as e:
            if not is_oom(e):
                raise
            oom = f"out of memory allocating the KV cache of {r} requests at context {context}"
            break
        for rr, q in grid:
            if rr != r:
                continue
            try:
                fns = {d: _verify_fn(levels[d], q, device) for d in depths}
                if cuda_graph:  # pragma: no cover - needs a GPU
                    fns = {d: _graph_or_explain(f) for d, f in fns.items()}
                timings = {d: time_calls(fns[d], repeats, warmup, device) for d in depths}
            except (RuntimeError, MemoryError) as e:
                if not is_oom(e):
                    raise
                oom = f"out of memory at {r} requests x {q} tokens (B = {r * q})"
                break
            if len(depths) == 1:
                t, main = timings[full].median_s, timings[full]
            else:
                d1, dk = depths
                if timings[dk].median_s <= timings[d1].median_s:
                    tk, t1 = timings[dk].median_s * 1e3, timings[d1].median_s * 1e3
                    raise InputError(
                        f"R={r} B={r * q}: the {dk}-layer pass ({tk:.3f} ms) measured no slower than the 1-layer "
                        f"pass ({t1:.3f} ms), so depth cannot be extrapolated "
                        "(timing noise exceeds a layer's cost): raise --repeats or --layers, or measure full depth"
                    )
                per_layer = (timings[dk].median_s - timings[d1].median_s) / (dk - d1)
                t, main = timings[d1].median_s + per_layer * (full - d1), timings[dk]
            pt = {
                "batch_tokens": r * q,
                "requests": r,
                "tokens_per_request": q,
                "step_s": t,
                "cv": main.cv,
                "robust_cv": main.robust_cv,
                "p10_s": main.pct(10) * t / main.median_s,
                "p90_s": main.pct(90) * t / main.median_s,
                "repeats": repeats,
                "measured_depth_s": {str(d): timings[d].median_s for d in depths},
            }
            if main.cv > NOISY_CV:
                pt["noisy"] = True
            points.append(pt)
            if on_point:
                on_point(pt)
        if oom:
            break
        del levels
    largest = max((p["batch_tokens"] for p in points), default=None)
    scaling = {
        "model_layers": full,
        "measured_layers": depths,
        "formula": "t(L) = t(1) + (t(K) - t(1)) * (L - 1) / (K - 1)" if len(depths) > 1 else "full depth measured",
    }
    return {"points": points, "scaling": scaling, "oom": oom, "largest_batch_tokens": largest}


def device_info(device: str) -> dict:
    """Name, versions and thread count of the measuring device."""
    import torch

    info = {
        "kind": "cuda" if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "gpus": 1,
    }
    if info["kind"] == "cuda":  # pragma: no cover - needs a GPU
        info["name"] = torch.cuda.get_device_name(torch.device(device))
    else:
        info["name"] = _cpu_name()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "CPU " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU " + (platform.processor() or platform.machine())


def measured_profile(
    cfg: ProfileConfig, progress: Progress | None = None, keep: Callable[[dict], None] | None = None
) -> dict:
    """Measure a profile of `cfg.target`; `keep(doc)` after every point (`complete` false until
    done), so an interrupted profile keeps what it measured. With `cfg.draft`, also T_draft(R,
    gamma) of each drafter built from the config (full depth: drafters are 1-5 layers)."""
    import torch

    from ..readers import PROFILE_SCHEMA
    from ..store import provenance

    device = resolve_device(cfg.device)
    if cfg.cuda_graph and not device.startswith("cuda"):
        raise InputError("--cuda-graph needs a CUDA device")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    name = cfg.dtype if cfg.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    dt = torch_dtype(name, device)
    config = load_hf_config(cfg.target)
    requests, batch_tokens = list(cfg.concurrency), list(cfg.batch_tokens)
    total = sum(1 for r in set(requests) for _ in {max(1, round(b / r)) for b in batch_tokens if b >= r})
    total += sum(len(set(requests)) * (1 if m == "mtp-1" else len(set(cfg.gamma))) for m in cfg.draft)
    model_name = Path(cfg.target).stem if str(cfg.target).endswith(".json") else Path(cfg.target).name
    doc = {
        "schema": PROFILE_SCHEMA,
        "source": "measured",
        "device": device_info(device),
        "model": {
            "name": model_name,
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "vocab": config.vocab_size,
            "architecture": (config.architectures or [config.model_type])[0],
        },
        "dtype": name,
        "context_len": cfg.context,
        "points": [],
        "complete": False,
        "cuda_graph": cfg.cuda_graph,
        "composition": "R requests x q tokens each, B = R * q, one batched forward with logits at every position; "
        "every request has a StaticCache of context_len random keys/values",
        "provenance": provenance(),
    }
    points = doc["points"]
    keep = keep or (lambda _doc: None)

    def point(pt: dict) -> None:
        points.append(pt)
        keep(doc)
        if progress:
            progress(f"R={pt['requests']} B={pt['batch_tokens']}", len(points), total)

    try:
        res = profile_target(
            config,
            device,
            dt,
            batch_tokens,
            requests,
            cfg.context,
            cfg.layers,
            cfg.repeats,
            cfg.warmup_passes,
            point,
            cfg.cuda_graph,
        )
    except (RuntimeError, MemoryError) as e:
        if not is_oom(e):
            raise
        raise InputError(
            f"out of memory building {model_name} on {device}: profile fewer layers with --layers K"
        ) from None
    doc.update(scaling=res["scaling"], oom=res["oom"], largest_batch_tokens=res["largest_batch_tokens"])
    keep(doc)
    done = [len(points)]

    def draft_point(pt: dict) -> None:
        done[0] += 1
        if progress:
            progress(f"R={pt['requests']} {pt['method']} gamma {pt['gamma']}", done[0], total)

    doc["draft"] = {}
    for method in cfg.draft:
        doc["draft"].update(
            profile_drafters(
                config,
                [method],
                requests,
                list(cfg.gamma),
                cfg.context,
                device,
                dt,
                cfg.repeats,
                cfg.warmup_passes,
                draft_point,
            )
        )
        keep(doc)
    doc["complete"] = res["oom"] is None
    doc["noisy_points"] = noise_warnings(doc)
    if doc["noisy_points"]:
        doc["noise_note"] = (
            f"{len(doc['noisy_points'])} point(s) spread more than CV {NOISY_CV:.0%} across repeats; sweeps repair "
            "non-monotone step times and say so, but re-measure with more --repeats on a quieter machine"
        )
    return doc


def profile_drafters(
    config,
    methods: list[str],
    requests: list[int],
    gammas: list[int],
    context: int,
    device: str,
    dtype,
    repeats: int = 10,
    warmup: int = 3,
    on_point: Callable[[dict], None] | None = None,
) -> dict:
    """T_draft(R, gamma) per method on the full grid (MTP-1: gamma 1), as the profile's `draft` table."""
    import torch

    from ..core.methods import METHODS
    from ..speculative.models import build_draft_model, draft_round_fn

    tables = {}
    for method in methods:
        torch.manual_seed(0)
        with torch.device(device):
            drafter = build_draft_model(method, config).to(dtype).eval()
        gs = [1] if METHODS[method].fixed_gamma == 1 else sorted(set(gammas))
        pts = []
        for r in sorted(set(requests)):
            for g in gs:
                fn = draft_round_fn(drafter, method, config, r, g, context, device, dtype)
                with torch.inference_mode():
                    t = time_calls(fn, repeats, warmup, device)
                pt = {"requests": r, "gamma": g, "step_s": t.median_s, "cv": t.cv, "method": method}
                if t.cv > NOISY_CV:
                    pt["noisy"] = True
                pts.append(pt)
                if on_point:
                    on_point(pt)
        tables[method] = {
            "drafting": METHODS[method].drafting,
            "points": [{k: v for k, v in p.items() if k != "method"} for p in pts],
        }
        del drafter
    return tables
