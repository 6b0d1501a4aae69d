"""`dsbench accept`: offline accepted length of a drafter on the user's own target, per domain.

Loads the target (transformers, local path, safetensors only) and a DeepSpec-layout drafter,
renders each prompt as DeepSpec does (chat template, first turn, no system prompt, thinking off,
no added special tokens), decodes with the in-process speculative decoder and writes one
`dsbench.acceptance/1` file per (method, domain) with the pooled figures and the raw per-round
counts, so `dsbench sweep --acceptance OUT` uses measured curves.

Two protocols. `dsbench` (the default): the first N prompts of each workload, 256 new tokens, a
round's proposal is the drafts it verified, at most max_new_tokens generated. `deepspec`:
DeepSpec's eval.py: each task subsampled with `random.Random(seed).shuffle` when longer than its
count, 2,048 new tokens, bf16 on a GPU, a round cut at an accepted stop token proposes up to it,
one round more when exactly max_new_tokens were generated, Eagle3 stops drafting at a drafted
stop token. Both report DeepSpec's figures (tau = accept_len, survival = accept_rate@k).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import DEEPSPEC_TASKS, AcceptConfig, Progress
from .core import acceptstats, calibration
from .core.policies import Policy
from .errors import InputError
from .readers import ACCEPTANCE_SCHEMA
from .shipped import Prompt, read_workload
from .store import Store, nan_to_none, provenance

if TYPE_CHECKING:
    from .speculative.engine import RoundLog


def weights_dtype(dtype: str, device: str, protocol: str = "dsbench"):
    """The torch dtype (or "auto": the checkpoint's) `--dtype` names on `device`."""
    import torch

    named = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype != "auto":
        return named[dtype]
    if device == "cpu":
        return torch.float32
    if protocol == "deepspec" and device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16  # DeepSpec loads target and drafter in bf16
    return "auto"


def load_target(path: str, device: str, dtype="auto"):
    """A causal LM and its tokenizer from a local folder (weights from safetensors only)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not (p / "config.json").exists():
        raise InputError(f"target not found (no config.json): {path}")
    if not list(p.glob("*.safetensors")):
        raise InputError(f"{path}: no .safetensors weights (pickled checkpoints are refused)")
    model = AutoModelForCausalLM.from_pretrained(p, use_safetensors=True, dtype=dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(p)


def render(tokenizer, prompt: str) -> list[int]:
    """DeepSpec's prompt: first turn as the user message, generation prompt, thinking off."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _stop_ids(model, tokenizer) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos = tokenizer.eos_token_id if eos is None else eos
    return set(eos if isinstance(eos, list) else [eos]) - {None}


def build_decoder(
    target: str,
    draft: str | None,
    policy: str,
    gamma: int | None,
    temperature: float,
    device: str,
    seed: int,
    profile: str | None,
    dtype: str = "auto",
    protocol: str = "dsbench",
):
    """The in-process speculative decoder for a local target (+ drafter), shared by `accept` and
    `serve --target`. `draft` is a checkpoint folder, or `ngram` for prompt lookup (vLLM's `ngram`
    with prompt_lookup_min 1 and max 3); `protocol` deepspec keeps DeepSpec's round bookkeeping.
    Returns (SpecDecoder, tokenizer, method name)."""
    from .profile.measure import resolve_device
    from .readers import read_profile
    from .speculative.checkpoints import load_drafter
    from .speculative.drafters import NgramDrafter, drafter_for
    from .speculative.engine import SpecDecoder

    try:
        pol = Policy.parse(policy)
    except ValueError as e:
        raise InputError(f"--policy: {e}") from None
    if pol.kind == "dspark-async":
        raise InputError(
            "--policy dspark-async schedules across concurrent requests (simulated engine only); "
            "in-process decoding takes fixed, threshold or dspark"
        )
    if pol.kind == "dspark" and not profile:
        raise InputError("--policy dspark needs --profile (the step-time curve Algorithm 1 weighs acceptance against)")
    dev = resolve_device(device)
    model, tok = load_target(target, dev, weights_dtype(dtype, dev, protocol))
    stops = _stop_ids(model, tok)
    drafter, method = None, "no-spec"
    if draft == "ngram":
        drafter, method = NgramDrafter(model.config.get_text_config().vocab_size, gamma or 3), "ngram"
    elif draft:
        weights, info = load_drafter(draft, model)
        stop_drafting = stops if protocol == "deepspec" and info.method == "eagle3" else ()
        drafter = drafter_for(weights, model, info.target_layer_ids, gamma or info.gamma, stop_drafting)
        method = info.method
    g = drafter.gamma if drafter else 0
    verify_s = None
    if pol.kind == "dspark":  # the SPS slice at the batch's size: R requests verify up to R (1 + gamma) tokens
        surface = read_profile(profile).surface()
        verify_s = lambda r: surface.slice(r).table(r * (1 + max(g, 1)))  # noqa: E731
    deepspec = protocol == "deepspec"
    dec = SpecDecoder(model, drafter, pol, verify_s, temperature, stops, seed=seed, deepspec_rules=deepspec)
    return dec, tok, method


def run_accept(cfg: AcceptConfig, store: Store, progress: Progress | None = None) -> dict:
    """Measure acceptance in process (--target) or against a live server (--backend); the files go
    through `store` as they are measured (an interrupted run keeps them). Returns a summary."""
    cfg.validate()
    return run_accept_backend(cfg, store) if cfg.backend else run_accept_local(cfg, store, progress)


def workloads(cfg: AcceptConfig) -> dict[str, list[Prompt]]:
    """Each workload's prompts as the protocol picks them: dsbench takes the first --samples;
    deepspec keeps a file whole unless it is longer than its count (the task's, or --samples),
    then shuffles it with random.Random(seed) and keeps the first ones, as DeepSpec's eval does.
    `deepspec:DIR` names DeepSpec's task files in DIR."""
    refs: dict[str, tuple[str | Path, int | None]] = {}
    for w in cfg.workloads:
        if not str(w).startswith("deepspec:"):
            refs[str(w)] = (w, None)
            continue
        folder = Path(str(w)[len("deepspec:") :])
        found = {t: n for t, n in DEEPSPEC_TASKS.items() if (folder / f"{t}.jsonl").exists()}
        if not found:
            raise InputError(f"{w}: none of DeepSpec's task files ({', '.join(DEEPSPEC_TASKS)}).jsonl in {folder}")
        refs.update({t: (folder / f"{t}.jsonl", n) for t, n in found.items()})
    chosen = {}
    for name, (ref, task_count) in refs.items():
        prompts = read_workload(ref)
        cap = cfg.samples or (task_count if task_count is not None else cfg.resolved("samples"))
        if cfg.protocol == "deepspec" and cap is not None and len(prompts) > cap:
            prompts = list(prompts)
            random.Random(cfg.seed).shuffle(prompts)
        chosen[name] = prompts[:cap]
    return chosen


def run_accept_local(cfg: AcceptConfig, store: Store, progress: Progress | None = None) -> dict:
    """Decode every workload's prompts in process; the acceptance files are rewritten after every
    batch. Sample i of a workload (or the batch starting at i) is seeded with seed + i."""
    import torch

    from .speculative.engine import RoundLog

    datasets = workloads(cfg)
    dec, tok, method = build_decoder(
        cfg.target,
        cfg.draft,
        cfg.policy,
        cfg.gamma,
        cfg.temperature,
        cfg.device,
        cfg.seed,
        cfg.profile,
        cfg.dtype,
        cfg.protocol,
    )
    max_new = cfg.resolved("max_new_tokens")
    summary = {
        "method": method,
        "gamma": dec.gamma,
        "batch": cfg.batch,
        "protocol": cfg.protocol,
        "dtype": str(next(dec.target.parameters()).dtype).removeprefix("torch."),
        "max_new_tokens": max_new,
        "datasets": {},
    }
    by_domain: dict[str, RoundLog] = {}
    sequences: dict[str, int] = {}  # per domain, to mark each round with its sequence
    for name, chosen in datasets.items():
        rounds = RoundLog()
        for first in range(0, len(chosen), cfg.batch):
            group = chosen[first : first + cfg.batch]
            torch.manual_seed(cfg.seed + first)  # DeepSpec seeds every sample (here: every batch)
            dec.gen.manual_seed(cfg.seed + first)
            for pr, (_, log) in zip(group, dec.generate_many([render(tok, pr.text) for pr in group], max_new)):
                rounds.extend(log)
                sequences[pr.domain] = sequences.get(pr.domain, -1) + 1
                by_domain.setdefault(pr.domain, RoundLog()).extend(log, sample=sequences[pr.domain])
            summary["files"] = _write_curves(by_domain, cfg, summary, dec, store, complete=False)
            if progress:
                progress(name, first + len(group), len(chosen))
        summary["datasets"][name] = {"samples": len(chosen), **_figures(rounds, dec.gamma)}
    summary["files"] = _write_curves(by_domain, cfg, summary, dec, store, complete=True)
    return summary


def _write_curves(by_domain: dict, cfg: AcceptConfig, summary: dict, dec, store: Store, complete: bool) -> list[str]:
    """One acceptance file per domain from the rounds so far."""
    files, method = [], summary["method"]
    for domain, rounds in by_domain.items():
        fig = _figures(rounds, dec.gamma)
        cond = [c for c in fig["conditional"] if c is not None]
        if not (dec.gamma and cond):
            continue
        doc = {
            "schema": ACCEPTANCE_SCHEMA,
            "source": "measured",
            "method": method,
            "target": Path(cfg.target).name,
            "domain": domain,
            "gamma": len(cond),
            "temperature": cfg.temperature,
            "conditional": cond,
            "tau": fig["tau"],
            "rounds": fig["rounds"],
            "survival": fig["survival"],
            "verify_rate": fig["verify_rate"],
            "mean_proposal": fig["mean_proposal"],
            "policy": str(dec.policy),
            "batch": cfg.batch,
            "protocol": cfg.protocol,
            "dtype": summary["dtype"],
            "max_new_tokens": summary["max_new_tokens"],
            "seed": cfg.seed,
            "complete": complete,
            "per_round": {
                k: [int(x) for x in getattr(rounds, k)] for k in ("proposal", "accepted", "committed", "sample")
            },
            "provenance": provenance(),
        }
        if rounds.confidence:  # DSpark: the raw head's per-round confidences and its quality per position
            doc["per_round"]["confidence"] = [[round(float(x), 6) for x in row] for row in rounds.confidence]
            m = calibration.metrics(np.array(rounds.confidence), np.array(rounds.proposal), np.array(rounds.accepted))
            doc["confidence_metrics"] = nan_to_none(m)
        files.append(str(store.document(f"{method}-{domain}.json", doc, "AcceptanceDoc")))
    return files


def _figures(rounds: RoundLog, gamma: int) -> dict:
    return nan_to_none(
        {
            "rounds": len(rounds.committed),
            "tau": acceptstats.tau(rounds.committed) if rounds.committed else None,
            "survival": acceptstats.survival(rounds.proposal, rounds.accepted, gamma).tolist() if gamma else [],
            "conditional": acceptstats.conditional(rounds.proposal, rounds.accepted, gamma).tolist() if gamma else [],
            "mean_proposal": float(np.mean(rounds.proposal)) if rounds.proposal else None,
            "verify_rate": acceptstats.verify_rate(rounds.proposal, rounds.committed) if rounds.committed else None,
        }
    )


def run_accept_backend(
    cfg: AcceptConfig,
    store: Store,
    headers: dict | None = None,
    metrics_url: str | None = None,
    timeout_s: float = 120.0,
) -> dict:
    """Accepted length "against any backend": each workload is one closed-loop load point
    against a live server (dsbench load's machinery), and its engine-neutral speculative
    figures (per-request statistics, else counter deltas) become an acceptance file. A workload
    whose figures are not active is an error, never a silent "wrote nothing"."""
    import asyncio

    from .documents import conditional_of
    from .live.loadgen import Target, run_point
    from .load import LoadConfig, preflight, request_extras, summarise_run

    headers = headers or {}
    url, model, method = cfg.backend, cfg.model, cfg.method
    samples, max_tokens = cfg.resolved("samples"), cfg.resolved("max_new_tokens")
    load = LoadConfig(
        url=url,
        model=model,
        workloads=list(cfg.workloads),
        concurrency=[cfg.concurrency],
        requests=samples,
        warmup_s=0.0,
        max_tokens=max_tokens,
        metrics_url=metrics_url,
        engine=cfg.engine,
        timeout_s=timeout_s,
        temperature=cfg.temperature,
        seed=cfg.seed,
        top_p=cfg.top_p,
        ignore_eos=cfg.ignore_eos,
        extra_body=cfg.extra_body,
    )
    load.validate()
    body = load.sampling().body()

    async def one(prompts) -> tuple[dict, str | None]:
        from .live.client import build_payload

        info = await preflight(load, headers, build_payload(model, prompts[0].text, max_tokens, "chat", body))
        extra, continuous = request_extras(info.engine)
        target = Target(
            url, model, "chat", max_tokens, info.metrics_url, headers, timeout_s, {**extra, **body}, continuous
        )
        run = await run_point(target, load.points()[0], prompts[:samples])
        return summarise_run(run, load, info.engine, info.server["source"]), info.engine

    summary = {"method": method, "backend": url, "sampling": load.sampling().model_dump(), "datasets": {}, "files": []}
    for w in cfg.workloads:
        prompts = read_workload(w)
        point, found = asyncio.run(one(prompts))
        spec = point["spec"]
        name = Path(str(w)).stem
        summary["datasets"][name] = {
            "requests_ok": point["requests_ok"],
            "requests": point["requests"],
            "engine": found,
            "spec": spec,
        }
        if point["requests_ok"] == 0:
            raise InputError(f"every request of {w} failed against {url}")
        cond = conditional_of(spec) if spec["measured"] and spec["state"] == "active" else []
        if not cond:
            why = "; ".join(spec["warnings"] + spec["unreadable_series"]) or "none exposed"
            raise InputError(
                f"{url}: no speculative-decoding figures for {name} (engine {found or 'unknown'}, state "
                f"{spec['state']}: {why})"
            )
        domain = prompts[0].domain
        doc = {
            "schema": ACCEPTANCE_SCHEMA,
            "source": point["source"],
            "method": method,
            "target": model,
            "domain": domain,
            "gamma": len(cond),
            "conditional": [min(1.0, max(0.0, x)) for x in cond],
            "tau": spec["tau_drafted"] or spec["tau"],
            "survival": spec["survival"] or [],
            "backend": {
                "url": url,
                "engine": found,
                "sampling": summary["sampling"],
                "spec": spec,
                "note": "tau per drafted step (bonus included); conditional "
                + (
                    "counted by the engine"
                    if spec["conditional_exact"]
                    else "derived from per-position survival (assumes full-length drafts)"
                ),
            },
            "provenance": provenance(),
        }
        summary["files"].append(str(store.document(f"{method}-{domain}.json", nan_to_none(doc), "AcceptanceDoc")))
    return summary
