"""`dsbench sweep`: simulate every method over concurrency and pick the best point under an SLO.

Loads a profile and acceptance curves (readers.py), builds one core Scenario per method, runs the
closed-loop simulator on a concurrency grid and summarises frontiers and SLO choices. Pure
orchestration: the math lives in core/, the file formats in readers.py and store.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import DOMAINS, FIT_DOMAIN, METHOD_NAMES, Progress, SweepConfig
from .core.acceptance import RoundSampler, Spread, expected_tau
from .core.frontier import best_at_slo, concurrency_grid
from .core.methods import METHODS, DraftCost
from .core.policies import Policy
from .core.simulator import Scenario, simulate
from .errors import InputError
from .readers import SWEEP_SCHEMA, Acceptance, Profile, read_acceptance, read_fit, read_profile
from .store import Store, provenance


@dataclass
class SweepResult:
    summary: dict  # slo, baseline, methods{...}, inputs{...}
    rows: list[dict] = field(default_factory=list)  # one per (method, concurrency)


def _curves_for(
    method: str, domains: tuple[str, ...], curves: list[Acceptance], gamma: int, where: str
) -> list[Acceptance]:
    found = []
    for d in domains:
        match = [c for c in curves if c.method == method and c.domain == d]
        if not match:
            raise InputError(f"no acceptance curve for {method}/{d} in {where}")
        c = match[0]
        if len(c.conditional) < gamma:
            raise InputError(f"{c.path}: curve has {len(c.conditional)} positions but --gamma {gamma} needs {gamma}")
        found.append(c)
    return found


def _spread(c: Acceptance) -> Spread:
    if not c.spread:
        return Spread()
    return Spread(float(c.spread["sigma"]), float(c.spread.get("round_share", Spread().round_share)))


def _draft_cost(profile: Profile, method: str) -> DraftCost:
    table = profile.draft.get(method)
    if table is None:
        raise InputError(f"{profile.path}: no drafter cost for method {method!r} (field 'draft.{method}')")
    try:
        return DraftCost(table["requests"], table["gamma"], table["step_s"])
    except ValueError as e:
        raise InputError(f"{profile.path}: field 'draft.{method}': {e}") from None


def build_scenarios(
    cfg: SweepConfig, policy: Policy, profile: Profile, curves: list[Acceptance], where: str
) -> dict[str, Scenario]:
    """One simulator scenario per requested method (`policy`: DSpark's, from cfg.validate())."""
    surface = profile.surface()
    domains = DOMAINS if cfg.domain == "mix" else (cfg.domain,)
    out = {}
    for name in cfg.methods:
        m = METHODS[name]
        gamma = m.gamma(cfg.draft_length)
        if gamma == 0:
            out[name] = Scenario([], surface, None, 0, Policy("fixed"))
            continue
        samplers = [
            RoundSampler(c.conditional[:gamma], _spread(c)) for c in _curves_for(name, domains, curves, gamma, where)
        ]
        out[name] = Scenario(
            samplers, surface, _draft_cost(profile, name), gamma, policy if m.scheduled else m.default_policy
        )
    return out


def load_inputs(cfg: SweepConfig) -> tuple[Profile, list[Acceptance], str]:
    """The profile, the acceptance curves the methods need (none for no-spec alone) and where they came from."""
    if cfg.fit:
        fitted = read_fit(cfg.fit)
        if cfg.acceptance:
            return fitted.profile, read_acceptance(cfg.acceptance), cfg.acceptance
        return fitted.profile, fitted.acceptance, str(fitted.path)
    profile = read_profile(cfg.profile)
    acc_ref = cfg.acceptance or str(profile.model.get("name", ""))
    needs_curves = any(METHODS[m].gamma(cfg.draft_length) for m in cfg.methods if m in METHODS)
    return profile, (read_acceptance(acc_ref) if needs_curves else []), acc_ref


def run_sweep(cfg: SweepConfig, progress: Progress | None = None, store: Store | None = None) -> SweepResult:
    """Simulate each method over the concurrency grid; `progress(method, points done, points)`
    after each point. With a store, sweep.json is rewritten after each method (`partial: true`
    until done), so an interrupted sweep keeps its finished methods."""
    if cfg.fit:
        _fit_defaults(cfg)
    policy = cfg.validate()
    profile, curves, acc_ref = load_inputs(cfg)
    source = "predicted (fitted model)" if cfg.fit else "simulated"
    scenarios = build_scenarios(cfg, policy, profile, curves, acc_ref)

    max_c = cfg.max_concurrency
    capped = profile.max_requests is not None and profile.max_requests < max_c
    if capped:
        max_c = profile.max_requests
    grid = concurrency_grid(max_c, cfg.levels)

    methods_summary: dict[str, dict] = {}
    summary = {
        "provenance": provenance(),
        "slo": cfg.slo,
        "baseline": cfg.baseline,
        "methods": methods_summary,
        "units": {
            "throughput": "tok/s per GPU",
            "tps_user": "tok/s per user (tau / round time)",
            "verify_budget": "tokens verified per request per round (1 + l)",
        },
        "inputs": {
            "profile": str(profile.path),
            "profile_source": profile.source,
            "device": profile.device.get("name"),
            "gpus": profile.gpus,
            "model": profile.model.get("name"),
            "context_len": profile.context_len,
            "acceptance": acc_ref,
            "acceptance_sources": sorted({c.source for c in curves}),
            # which accept protocol measured them (dsbench's own or DeepSpec's; deepspec-compat)
            "acceptance_protocols": sorted({str(c.raw["protocol"]) for c in curves if c.raw.get("protocol")}),
            "domain": cfg.domain,
            "gamma": cfg.draft_length,
            "policy": str(policy),
            "seed": cfg.seed,
            "samples_per_point": cfg.samples,
            "concurrency": [int(c) for c in grid],
            "max_concurrency_requested": cfg.max_concurrency,
            "max_concurrency_memory": profile.max_requests,
            "capped_by_memory": capped,
            "profiled_max_requests": int(max(profile.requests)),
            "results_source": source,
            "fitted_model": cfg.fit,
        },
    }
    rows: list[dict] = []
    for name, sc in scenarios.items():
        mrows = []
        for i, c in enumerate(grid):
            pt = simulate(sc, int(c), samples=cfg.samples, seed=cfg.seed)
            thr_gpu = pt.throughput_tok_s / profile.gpus
            mrows.append(
                {
                    "method": name,
                    "policy": str(sc.policy),
                    "gamma": sc.gamma,
                    **asdict(pt),
                    "throughput_tok_s_gpu": thr_gpu,
                    "source": source,
                }
            )
            if progress:
                progress(name, i + 1, len(grid))
        rows += mrows
        choice = best_at_slo(
            [r["concurrency"] for r in mrows],
            [r["tps_user"] for r in mrows],
            [r["throughput_tok_s_gpu"] for r in mrows],
            [r["verify_budget"] for r in mrows],
            cfg.slo,
        )
        methods_summary[name] = {
            **asdict(choice),
            "policy": str(sc.policy),
            "gamma": sc.gamma,
            "tau_curve": _curve_tau(sc),
            "peak_tps_user": max(r["tps_user"] for r in mrows),
        }
        if store is not None:
            save_json(store, {**summary, "partial": True}, rows)

    base = methods_summary[cfg.baseline]
    for s in methods_summary.values():
        s["ratio"] = s["throughput"] / base["throughput"] if s["feasible"] and base["feasible"] else None
    return SweepResult(summary, rows)


def _fit_defaults(cfg: SweepConfig) -> None:
    """With --fit: the methods the fit has a drafter cost for (and no-spec, which needs none),
    and the fit's own measured curves."""
    fitted = read_fit(cfg.fit)
    if cfg.methods == METHOD_NAMES:
        cfg.methods = ("no-spec", *fitted.profile.draft)
    if cfg.baseline not in cfg.methods:
        cfg.baseline = cfg.methods[0]
    if not cfg.acceptance and cfg.domain == "mix":
        cfg.domain = FIT_DOMAIN  # measured on the load test's own workload
    if cfg.gamma is None and fitted.acceptance:
        cfg.gamma = min(len(c.conditional) for c in fitted.acceptance)  # what the engine drafted


def _curve_tau(sc: Scenario) -> float:
    """E[tau] of full-length verification on the input curves (domain mean)."""
    if sc.gamma == 0:
        return 1.0
    return sum(expected_tau(s.conditional) for s in sc.samplers) / len(sc.samplers)


def save_json(store: Store, summary: dict, rows: list[dict]) -> list[Path]:
    """sweep.json (summary + every frontier point) and the tidy sweep.csv beside it."""
    import pandas as pd

    doc = {"schema": SWEEP_SCHEMA, **summary, "frontier": rows}
    return [
        store.document("sweep.json", doc, "SweepDoc"),
        store.text("sweep.csv", pd.DataFrame(rows).to_csv(index=False)),
    ]


def save(result: SweepResult, store: Store) -> list[Path]:
    """The finished sweep: frontier.png/.svg, sweep.json and sweep.csv."""
    from .report.plots import frontier_figure
    from .report.plots import save as save_figure

    s = result.summary
    paths = save_json(store, s, result.rows)
    inp = s["inputs"]
    title = f"Throughput vs per-user speed — {inp['device']} x{inp['gpus']}, {inp['model']}, {inp['domain']} traffic"
    subtitle = (
        f"{inp['results_source']} on a {inp['profile_source']} step-time profile ({Path(inp['profile']).name}, "
        f"context {inp['context_len']}), acceptance from {', '.join(inp['acceptance_sources']) or 'none'}"
        + "".join(f" ({p} protocol)" for p in inp["acceptance_protocols"])
        + "; "
        f"DSpark policy {inp['policy']}, gamma {inp['gamma']}"
    )
    fig = frontier_figure(result.rows, s["slo"], title, subtitle, s["methods"])
    png, svg = store.claim("frontier.png"), store.claim("frontier.svg")
    save_figure(fig, png, svg)
    return [png, svg, *paths]
