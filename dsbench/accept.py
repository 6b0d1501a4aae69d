"""`dsbench accept`: offline accepted length of a drafter on the user's own target, per domain.

Loads the target (transformers, local path, safetensors only) and a DeepSpec-layout drafter,
renders each prompt as DeepSpec does (chat template, first turn, no system prompt, thinking off,
no added special tokens), decodes with the in-process speculative decoder and writes one
`dsbench.acceptance/1` file per (method, domain) with the pooled figures and the raw per-round
counts, so `dsbench sweep --acceptance OUT` uses measured curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import AcceptConfig, Progress
from .core import acceptstats, calibration
from .core.policies import Policy
from .errors import InputError
from .readers import ACCEPTANCE_SCHEMA
from .shipped import read_workload
from .store import Store, nan_to_none, provenance

if TYPE_CHECKING:
    from .speculative.engine import RoundLog


def load_target(path: str, device: str):
    """A causal LM and its tokenizer from a local folder (weights from safetensors only)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not (p / "config.json").exists():
        raise InputError(f"target not found (no config.json): {path}")
    if not list(p.glob("*.safetensors")):
        raise InputError(f"{path}: no .safetensors weights (pickled checkpoints are refused)")
    model = (
        AutoModelForCausalLM.from_pretrained(
            p, use_safetensors=True, dtype=torch.float32 if device == "cpu" else "auto"
        )
        .to(device)
        .eval()
    )
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
):
    """The in-process speculative decoder for a local target (+ drafter), shared by `accept` and
    `serve --target`. `draft` is a checkpoint folder, or `ngram` for prompt lookup (vLLM's `ngram`
    with prompt_lookup_min 1 and max 3). Returns (SpecDecoder, tokenizer, method name)."""
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
    model, tok = load_target(target, dev)
    drafter, method = None, "no-spec"
    if draft == "ngram":
        drafter, method = NgramDrafter(model.config.vocab_size, gamma or 3), "ngram"
    elif draft:
        weights, info = load_drafter(draft, model)
        drafter, method = drafter_for(weights, model, info.target_layer_ids, gamma or info.gamma), info.method
    g = drafter.gamma if drafter else 0
    verify_s = None
    if pol.kind == "dspark":  # the SPS slice at the batch's size: R requests verify up to R (1 + gamma) tokens
        surface = read_profile(profile).surface()
        verify_s = lambda r: surface.slice(r).table(r * (1 + max(g, 1)))  # noqa: E731
    dec = SpecDecoder(model, drafter, pol, verify_s, temperature, _stop_ids(model, tok), seed=seed)
    return dec, tok, method


def run_accept(cfg: AcceptConfig, store: Store, progress: Progress | None = None) -> dict:
    """Measure acceptance in process (--target) or against a live server (--backend); the files go
    through `store` as they are measured (an interrupted run keeps them). Returns a summary."""
    cfg.validate()
    return run_accept_backend(cfg, store) if cfg.backend else run_accept_local(cfg, store, progress)


def run_accept_local(cfg: AcceptConfig, store: Store, progress: Progress | None = None) -> dict:
    """Decode every workload's prompts in process; the acceptance files are rewritten after every
    batch."""
    import torch

    from .speculative.engine import RoundLog

    datasets = {w: read_workload(w) for w in cfg.workloads}
    dec, tok, method = build_decoder(
        cfg.target, cfg.draft, cfg.policy, cfg.gamma, cfg.temperature, cfg.device, cfg.seed, cfg.profile
    )
    summary = {"method": method, "gamma": dec.gamma, "batch": cfg.batch, "datasets": {}}
    by_domain: dict[str, RoundLog] = {}
    for name, prompts in datasets.items():
        rounds = RoundLog()
        chosen = prompts[: cfg.samples]
        for first in range(0, len(chosen), cfg.batch):
            group = chosen[first : first + cfg.batch]
            torch.manual_seed(cfg.seed + first)  # DeepSpec seeds every sample (here: every batch)
            dec.gen.manual_seed(cfg.seed + first)
            for pr, (_, log) in zip(
                group, dec.generate_many([render(tok, pr.text) for pr in group], cfg.max_new_tokens)
            ):
                rounds.extend(log)
                by_domain.setdefault(pr.domain, RoundLog()).extend(log)
            summary["files"] = _write_curves(by_domain, cfg, method, dec, store, complete=False)
            if progress:
                progress(name, first + len(group), len(chosen))
        summary["datasets"][name] = _figures(rounds, dec.gamma)
    summary["files"] = _write_curves(by_domain, cfg, method, dec, store, complete=True)
    return summary


def _write_curves(by_domain: dict, cfg: AcceptConfig, method: str, dec, store: Store, complete: bool) -> list[str]:
    """One acceptance file per domain from the rounds so far."""
    files = []
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
            "policy": str(dec.policy),
            "batch": cfg.batch,
            "complete": complete,
            "per_round": {k: [int(x) for x in getattr(rounds, k)] for k in ("proposal", "accepted", "committed")},
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
    url, model, method, samples, max_tokens = cfg.backend, cfg.model, cfg.method, cfg.samples, cfg.max_new_tokens
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
