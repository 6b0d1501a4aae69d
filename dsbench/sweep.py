"""`dsbench sweep`: simulate every method over concurrency and pick the best point under an SLO.

Loads a profile and acceptance curves (readers.py), builds one core Scenario per method, runs the
closed-loop simulator on a concurrency grid and summarises frontiers and SLO choices. Pure
orchestration: the math lives in core/, the file formats in readers.py and store.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import DEFAULT_MAX_CONCURRENCY_PER_GPU, DOMAINS, FIT_DOMAIN, METHOD_NAMES, Progress, SweepConfig
from .core.acceptance import RoundSampler, Spread
from .core.frontier import best_at_slo, concurrency_grid
from .core.methods import METHODS, DraftCost
from .core.policies import Policy
from .core.simulator import Scenario, closed_form, simulate
from .core.traffic import Lengths
from .errors import InputError
from .readers import (
    SWEEP_SCHEMA,
    Acceptance,
    Profile,
    profile_from,
    read_acceptance,
    read_fit,
    read_lengths,
    read_profile,
)
from .shipped import resolve_shipped
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


def scenario(
    cfg: SweepConfig,
    name: str,
    gamma: int,
    policy: Policy,
    profile: Profile,
    curves: list[Acceptance],
    where: str,
    lengths: Lengths | None = None,
) -> Scenario:
    """The simulator scenario of method `name` drafting `gamma` tokens (`policy`: DSpark's), on
    traffic of `lengths` (None: every request at the profile's context, no prefill)."""
    m = METHODS[name]
    surface = profile.surface(lengths)
    prefill = lengths.prefill_per_token if lengths is not None else 0.0
    if gamma == 0:
        return Scenario([], surface, None, 0, Policy("fixed"), prefill)
    domains = DOMAINS if cfg.domain == "mix" else (cfg.domain,)
    found = _curves_for(name, domains, curves, gamma, where)
    samplers = [RoundSampler(c.conditional[:gamma], _spread(c)) for c in found]
    verify = policy if m.scheduled else m.default_policy
    return Scenario(samplers, surface, _draft_cost(profile, name), gamma, verify, prefill)


def traffic_lengths(cfg: SweepConfig) -> Lengths | None:
    """The request lengths to model (--lengths or --isl/--osl), or None."""
    if cfg.lengths:
        return read_lengths(cfg.lengths)
    if cfg.isl is not None:
        return Lengths([cfg.isl], [cfg.osl])
    return None


def _traffic_summary(lengths: Lengths | None, profile: Profile, cfg: SweepConfig) -> dict:
    """What the traffic model covered, for every output to say."""
    if lengths is None:
        return {
            "lengths": None,
            "modelled": [f"every request at context {profile.context_len}", "no prefill"],
        }
    return {
        "lengths": {**lengths.summary(), "from": cfg.lengths or f"--isl {cfg.isl} --osl {cfg.osl}"},
        "modelled": [
            f"context grows while decoding (mean in-flight {lengths.inflight_context:.0f} tokens)",
            f"chunked prefill inside the step ({lengths.prefill_per_token:.2f} prompt tokens per output token)",
        ],
    }


def build_scenarios(
    cfg: SweepConfig, policy: Policy, profile: Profile, curves: list[Acceptance], where: str
) -> dict[str, Scenario]:
    """One scenario per requested method at --gamma (default config.DEFAULT_GAMMA): what a
    server with a fixed draft length runs (`dsbench serve`), no search."""
    return {
        name: scenario(cfg, name, METHODS[name].gamma(cfg.draft_length), policy, profile, curves, where)
        for name in cfg.methods
    }


def gamma_candidates(cfg: SweepConfig, name: str, curves: list[Acceptance]) -> list[int]:
    """Draft lengths to try for a method: its own (no-spec 0, MTP-1 1), --gamma, or 1..--max-gamma
    capped at its shortest acceptance curve (a curve says nothing past its last position)."""
    m = METHODS[name]
    if m.fixed_gamma is not None:
        return [m.fixed_gamma]
    if cfg.gamma is not None:
        return [cfg.gamma]
    longest = min((len(c.conditional) for c in curves if c.method == name), default=cfg.max_gamma)
    return list(range(1, min(cfg.max_gamma, longest) + 1))


def _search_curve(sc: Scenario, grid, cfg: SweepConfig) -> list[tuple[int, float, float, float]]:
    """(concurrency, tok/s per user, tok/s per instance, verify budget) over the grid, cheaply:
    fixed-length verification in closed form (exact in expectation), scheduled verification
    simulated on a fifth of --samples (at least 16 rounds: a round of 1,000 requests is 1,000 samples)."""
    out = []
    for c in grid:
        if sc.policy.kind == "fixed":
            tau, tps = closed_form(sc, int(c))
            out.append((int(c), tps, tps * c, 1.0 + sc.fixed_length))
        else:
            pt = simulate(
                sc, int(c), samples=max(1000, cfg.samples // 5), min_rounds=16, seed=cfg.seed, target_rel_se=None
            )
            out.append((int(c), pt.tps_user, pt.throughput_tok_s, pt.verify_budget))
    return out


def load_inputs(cfg: SweepConfig) -> tuple[Profile, list[Acceptance], str]:
    """The profile, the acceptance curves the methods need (none for no-spec alone) and where they came from."""
    if cfg.fit:
        fitted = read_fit(cfg.fit)
        if cfg.acceptance:
            return fitted.profile, read_acceptance(cfg.acceptance), cfg.acceptance
        return fitted.profile, fitted.acceptance, str(fitted.path)
    profile = read_profile(cfg.profile) if cfg.roofline is None else modelled_profile(cfg)
    acc_ref = cfg.acceptance or str(profile.model.get("name", ""))
    needs_curves = any(METHODS[m].fixed_gamma != 0 for m in cfg.methods if m in METHODS)
    if needs_curves and not cfg.acceptance and not resolve_shipped(acc_ref, "acceptance", suffix="").exists():
        raise InputError(
            f"no acceptance curves ship for {acc_ref}: measure them (dsbench accept) or name some with "
            "--acceptance (e.g. `--acceptance qwen3-8b`, the paper-derived Qwen3-8B curves; outputs say so)"
        )
    return profile, (read_acceptance(acc_ref) if needs_curves else []), acc_ref


def modelled_profile(cfg: SweepConfig) -> Profile:
    """`--roofline GPU --target MODEL`: the profile `dsbench profile --roofline` would write."""
    from .profile.run import roofline_document

    doc = roofline_document(cfg)
    return profile_from(doc, Path(f"roofline {cfg.roofline} x{doc['device']['gpus']} {cfg.target}"))


def run_sweep(cfg: SweepConfig, progress: Progress | None = None, store: Store | None = None) -> SweepResult:
    """Simulate each method over the concurrency grid; `progress(method, points done, points)`
    after each point. Without --gamma each drafter's draft length is searched first (cheaply,
    `_search_curve`) and the best at the SLO simulated in full. With a store, sweep.json is
    rewritten after each method (`partial: true` until done), so an interrupted sweep keeps its
    finished methods."""
    if cfg.fit:
        _fit_defaults(cfg)
    policy = cfg.validate()
    profile, curves, acc_ref = load_inputs(cfg)
    source = "predicted (fitted model)" if cfg.fit else "simulated"
    gpus = profile.gpus
    lengths = traffic_lengths(cfg)
    context = lengths.inflight_context if lengths is not None else None
    memory_cap = profile.max_requests_for("no-spec", context)
    if memory_cap == 0:
        raise InputError(
            f"{profile.path}: not one request's KV cache fits at the traffic's mean context ({context:.0f} tokens)"
        )
    max_c = cfg.max_concurrency if cfg.max_concurrency is not None else DEFAULT_MAX_CONCURRENCY_PER_GPU * gpus
    capped = memory_cap is not None and memory_cap < max_c
    grid = concurrency_grid(min(max_c, memory_cap or max_c), cfg.levels)
    candidates = {name: gamma_candidates(cfg, name, curves) for name in cfg.methods}
    for name, gs in candidates.items():  # every input refused before anything is simulated
        scenario(cfg, name, max(gs), policy, profile, curves, acc_ref, lengths)
    searched = sorted({g for gs in candidates.values() if len(gs) > 1 for g in gs})

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
            **_inputs(cfg, profile, curves, acc_ref, lengths),
            "gamma_search": searched,
            "policy": str(policy),
            "concurrency": [int(c) for c in grid],
            "max_concurrency_requested": max_c,
            "max_concurrency_memory": memory_cap,
            "capped_by_memory": capped,
            "results_source": source,
        },
    }
    measured_max = summary["inputs"]["measured_requests"][1] if cfg.fit else None
    if cfg.roofline is not None and store is not None:  # what the sweep ran on, to reread or re-sweep
        summary["inputs"]["profile"] = str(store.document("profile.json", profile.raw, "ProfileDoc"))
        summary["inputs"]["profile_written"] = True
    rows: list[dict] = []
    gamma_curves: dict[str, dict[int, list]] = {}
    for name in cfg.methods:
        cap = profile.max_requests_for(name, context)
        if cap == 0:
            methods_summary[name] = {"feasible": False, "why": "its drafter does not fit in memory", "gamma": None}
            continue
        mgrid = [c for c in grid if cap is None or c <= cap]
        inputs = (policy, profile, curves, acc_ref, lengths)
        sc, search = _best_gamma(cfg, name, candidates[name], inputs, mgrid, progress)
        if len(search) > 1:
            gamma_curves[name] = {g: pts for g, (_, pts) in search.items()}
        mrows = []
        for i, c in enumerate(mgrid):
            pt = simulate(sc, int(c), samples=cfg.samples, seed=cfg.seed)
            mrows.append(
                {
                    "method": name,
                    "policy": str(sc.policy),
                    "gamma": sc.gamma,
                    **asdict(pt),
                    "throughput_tok_s_gpu": pt.throughput_tok_s / gpus,
                    "source": source,
                    **({"extrapolated": True} if measured_max and c > measured_max else {}),
                }
            )
            if progress:
                progress(name, i + 1, len(mgrid))
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
            **(
                {"extrapolated": True}
                if measured_max and choice.concurrency and choice.concurrency > measured_max
                else {}
            ),
            "policy": str(sc.policy),
            "gamma": sc.gamma,
            "tau_curve": sc.curve_tau,
            "peak_tps_user": max(r["tps_user"] for r in mrows),
            "max_concurrency_memory": cap,
            "gamma_search": [
                {"gamma": g, **asdict(ch), "throughput": ch.throughput and ch.throughput / gpus}
                for g, (ch, _) in search.items()
            ]
            if len(search) > 1
            else [],
        }
        if store is not None:
            save_json(store, {**summary, "partial": True}, rows, gamma_curves)

    base = methods_summary[cfg.baseline]
    for s in methods_summary.values():
        s["ratio"] = s["throughput"] / base["throughput"] if s["feasible"] and base["feasible"] else None
        s.setdefault("throughput", None)
    summary["gamma_curves"] = gamma_curves
    return SweepResult(summary, rows)


def _inputs(cfg: SweepConfig, profile: Profile, curves: list[Acceptance], acc_ref: str, lengths) -> dict:
    """What a sweep ran on: profile, deployment, traffic, acceptance, repairs (sweep.json's `inputs`)."""
    context = lengths.inflight_context if lengths is not None else None
    return {
        "profile": str(profile.path),
        "profile_source": profile.source,
        "device": profile.device.get("name"),
        "gpus": profile.gpus,
        "deployment": profile.raw.get("deployment"),
        "model": profile.model.get("name"),
        "context_len": round(context) if context is not None else profile.context_len,
        **_traffic_summary(lengths, profile, cfg),
        "acceptance": acc_ref,
        "acceptance_sources": sorted({c.source for c in curves}),
        # which accept protocol measured them (dsbench's own or DeepSpec's; deepspec-compat)
        "acceptance_protocols": sorted({str(c.raw["protocol"]) for c in curves if c.raw.get("protocol")}),
        "domain": cfg.domain,
        "gamma": cfg.gamma,
        "seed": cfg.seed,
        "samples_per_point": cfg.samples,
        "profiled_max_requests": int(max(profile.requests)),
        "profile_repairs": [str(r) for r in profile.repairs if r.beyond_spread],
        "profile_repairs_within_spread": sum(not r.beyond_spread for r in profile.repairs),
        # drafter round times raised so they never fall with more requests or a longer draft
        "draft_repairs": {
            name: n
            for name in cfg.methods
            if METHODS[name].drafting != "none" and (n := _draft_cost(profile, name).repaired)
        },
        "fitted_model": cfg.fit,
        "measured_requests": list(_measured_requests(read_fit(cfg.fit))) if cfg.fit else None,
    }


def _best_gamma(cfg: SweepConfig, name: str, gammas: list[int], inputs: tuple, grid, progress):
    """The scenario at the draft length with the most throughput at the SLO (ties: the shorter;
    none feasible: the one with the fastest peak per-user speed), and each length's SLO choice
    and (tok/s per user, tok/s per GPU) curve. `inputs`: scenario()'s after the gamma."""
    if len(gammas) == 1:
        return scenario(cfg, name, gammas[0], *inputs), {}
    search, gpus = {}, inputs[1].gpus
    for k, g in enumerate(gammas):
        sc = scenario(cfg, name, g, *inputs)
        pts = _search_curve(sc, grid, cfg)
        c, tps, thr, budget = (list(col) for col in zip(*pts))
        search[g] = (best_at_slo(c, tps, thr, budget, cfg.slo), [[t, x / gpus] for t, x in zip(tps, thr)])
        if progress:
            progress(f"{name} gamma search", k + 1, len(gammas))

    def rank(g):
        ch, pts = search[g]
        return (ch.feasible, ch.throughput or 0.0, max(t for t, _ in pts), -g)

    return scenario(cfg, name, max(search, key=rank), *inputs), search


def _fit_defaults(cfg: SweepConfig) -> None:
    """With --fit: only the methods the fit measured (a method it never saw is refused, not
    predicted), the fit's own measured curves, and concurrency up to the most it measured unless
    --max-concurrency asks for more (those rows are then labelled extrapolated)."""
    fitted = read_fit(cfg.fit)
    measured = fitted.raw.get("methods_measured") or ["no-spec", *fitted.profile.draft]
    if cfg.methods == METHOD_NAMES:
        cfg.methods = tuple(measured)
    unmeasured = [m for m in cfg.methods if m not in measured]
    if unmeasured:
        raise InputError(
            f"{fitted.path}: the fit measured {', '.join(measured)}, not {', '.join(unmeasured)}: "
            "measure it (dsbench load) and fit again"
        )
    if cfg.baseline not in cfg.methods:
        cfg.baseline = cfg.methods[0]
    if not cfg.acceptance and cfg.domain == "mix":
        cfg.domain = FIT_DOMAIN  # measured on the load test's own workload
    if cfg.gamma is None and fitted.acceptance:
        cfg.gamma = min(len(c.conditional) for c in fitted.acceptance)  # what the engine drafted
    if cfg.max_concurrency is None:
        cfg.max_concurrency = int(_measured_requests(fitted)[1])


def _measured_requests(fitted) -> tuple[float, float]:
    lo, hi = fitted.raw.get("requests_measured") or (1.0, float(max(fitted.profile.requests)))
    return float(lo), float(hi)


def save_json(store: Store, summary: dict, rows: list[dict], gamma_curves: dict | None = None) -> list[Path]:
    """sweep.json (summary + every frontier point, + the gamma search's curves) and the tidy
    sweep.csv beside it."""
    import pandas as pd

    doc = {"schema": SWEEP_SCHEMA, **summary, "frontier": rows}
    if gamma_curves is not None:
        doc["gamma_curves"] = gamma_curves
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
    if inp.get("profile_written"):
        paths.append(Path(inp["profile"]))
    title = f"Throughput vs per-user speed — {inp['device']} x{inp['gpus']}, {inp['model']}, {inp['domain']} traffic"
    dep = inp.get("deployment") or {}
    if dep and (inp["gpus"] > 1 or dep.get("ep", 1) > 1):
        title += f" (tp{dep['tp']} dp{dep['dp']} ep{dep['ep']}, {dep['weight_dtype']})"
    subtitle = (
        f"{inp['results_source']} on a {inp['profile_source']} step-time profile ({Path(inp['profile']).name}; "
        f"{'; '.join(inp['modelled'])}), acceptance from {', '.join(inp['acceptance_sources']) or 'none'}"
        + "".join(f" ({p} protocol)" for p in inp["acceptance_protocols"])
        + "; "
        f"DSpark policy {inp['policy']}, "
        + (
            f"gamma the best of {inp['gamma_search'][0]}..{inp['gamma_search'][-1]} at the SLO (faint: each gamma)"
            if inp["gamma_search"]
            else f"gamma {inp['gamma']}"
        )
    )
    fig = frontier_figure(result.rows, s["slo"], title, subtitle, s["methods"], s.get("gamma_curves"))
    png, svg = store.claim("frontier.png"), store.claim("frontier.svg")
    save_figure(fig, png, svg)
    return [png, svg, *paths]
