"""`dsbench sweep`: simulate every method over concurrency and pick the best point under an SLO.

Loads a profile and acceptance curves (readers.py), builds one core Scenario per method, runs the
closed-loop simulator on a concurrency grid and summarises frontiers and SLO choices. Pure
orchestration: the math lives in core/, the file formats in readers.py and store.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .core.acceptance import RoundSampler, Spread, expected_tau
from .core.frontier import best_at_slo, concurrency_grid
from .core.methods import METHOD_NAMES, METHODS, DraftCost
from .core.policies import Policy
from .core.simulator import Scenario, simulate
from .fit import FIT_DOMAIN
from .errors import InputError
from .readers import Acceptance, Profile, read_acceptance, read_fit, read_profile
from .store import provenance

DOMAINS = ("math", "code", "chat")


DEFAULT_GAMMA = 7


@dataclass
class SweepConfig:
    """Inputs of one sweep. `profile`/`acceptance` are paths or shipped names."""

    slo: float = 80.0  # tokens/s per user
    profile: str = "h100-qwen3-8b"
    acceptance: str | None = None  # default: the shipped set for the profile's model
    domain: str = "mix"
    methods: tuple[str, ...] = METHOD_NAMES
    baseline: str = "mtp-1"
    policy: str = "dspark"
    gamma: int | None = None  # draft length; None: 7, or with `model` the length the fit measured
    max_concurrency: int = 512
    levels: int = 40
    samples: int = 20_000  # request-rounds per point: < 0.5 % Monte-Carlo error on throughput
    seed: int = 0
    model: str | None = None  # a fit file from `dsbench fit`: its profile and measured curves (predictions)

    @property
    def draft_length(self) -> int:
        return DEFAULT_GAMMA if self.gamma is None else self.gamma

    def validate(self) -> Policy:
        if not self.slo > 0 or self.slo != self.slo or self.slo == float("inf"):
            raise InputError(f"--slo must be a positive number of tokens/s per user, got {self.slo}")
        if self.domain not in (*DOMAINS, "mix", FIT_DOMAIN):
            raise InputError(f"--domain must be one of math, code, chat, mix; got {self.domain!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise InputError(f"--methods: unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHOD_NAMES)}")
        if self.baseline not in self.methods:
            raise InputError(f"--baseline {self.baseline!r} is not among --methods ({', '.join(self.methods)})")
        if not 1 <= self.draft_length <= 64:
            raise InputError(f"--gamma must be between 1 and 64, got {self.gamma}")
        if self.max_concurrency < 1:
            raise InputError(f"--max-concurrency must be >= 1, got {self.max_concurrency}")
        try:
            return Policy.parse(self.policy)
        except ValueError as e:
            raise InputError(f"--policy: {e}") from None


@dataclass
class SweepResult:
    summary: dict  # slo, baseline, methods{...}, inputs{...}
    rows: list[dict] = field(default_factory=list)  # one per (method, concurrency)


def _curves_for(method: str, domains: tuple[str, ...], curves: list[Acceptance], gamma: int, where: str) -> list[Acceptance]:
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


def build_scenarios(cfg: SweepConfig, profile: Profile, curves: list[Acceptance], where: str) -> dict[str, Scenario]:
    """One simulator scenario per requested method."""
    policy = cfg.validate()
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
            RoundSampler(c.conditional[:gamma], _spread(c))
            for c in _curves_for(name, domains, curves, gamma, where)
        ]
        out[name] = Scenario(samplers, surface, _draft_cost(profile, name), gamma, policy if m.scheduled else m.default_policy)
    return out


def load_inputs(cfg: SweepConfig) -> tuple[Profile, list[Acceptance], str]:
    """The profile, the acceptance curves the methods need (none for no-spec alone) and where they came from."""
    if cfg.model:
        fitted = read_fit(cfg.model)
        if cfg.acceptance:
            return fitted.profile, read_acceptance(cfg.acceptance), cfg.acceptance
        return fitted.profile, fitted.acceptance, str(fitted.path)
    profile = read_profile(cfg.profile)
    acc_ref = cfg.acceptance or str(profile.model.get("name", ""))
    needs_curves = any(METHODS[m].gamma(cfg.draft_length) for m in cfg.methods if m in METHODS)
    return profile, (read_acceptance(acc_ref) if needs_curves else []), acc_ref


def run_sweep(cfg: SweepConfig, progress: Callable[[str, int], None] | None = None,
              on_method: Callable[[str, list[dict]], None] | None = None) -> SweepResult:
    """Simulate each method over the concurrency grid; `progress(method, n_done)` after each point,
    `on_method(method, rows, summary so far)` after each method (so callers can write results as
    they arrive)."""
    if cfg.model:
        _fit_defaults(cfg)
    policy = cfg.validate()
    profile, curves, acc_ref = load_inputs(cfg)
    source = "predicted (fitted model)" if cfg.model else "simulated"
    scenarios = build_scenarios(cfg, profile, curves, acc_ref)

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
        "units": {"throughput": "tok/s per GPU", "tps_user": "tok/s per user (tau / round time)",
                  "verify_budget": "tokens verified per request per round (1 + l)"},
        "inputs": {
            "profile": str(profile.path), "profile_source": profile.source, "device": profile.device.get("name"),
            "gpus": profile.gpus, "model": profile.model.get("name"), "context_len": profile.context_len,
            "acceptance": acc_ref, "acceptance_sources": sorted({c.source for c in curves}),
            "domain": cfg.domain, "gamma": cfg.draft_length, "policy": str(policy), "seed": cfg.seed,
            "samples_per_point": cfg.samples, "concurrency": [int(c) for c in grid],
            "max_concurrency_requested": cfg.max_concurrency,
            "max_concurrency_memory": profile.max_requests, "capped_by_memory": capped,
            "profiled_max_requests": int(max(profile.requests)),
            "results_source": source,
            "fitted_model": cfg.model,
        },
    }
    rows: list[dict] = []
    for name, sc in scenarios.items():
        mrows = []
        for i, c in enumerate(grid):
            pt = simulate(sc, int(c), samples=cfg.samples, seed=cfg.seed)
            thr_gpu = pt.throughput_tok_s / profile.gpus
            mrows.append({"method": name, "policy": str(sc.policy), "gamma": sc.gamma, **asdict(pt),
                          "throughput_tok_s_gpu": thr_gpu, "source": source})
            if progress:
                progress(name, i + 1)
        rows += mrows
        choice = best_at_slo([r["concurrency"] for r in mrows], [r["tps_user"] for r in mrows],
                             [r["throughput_tok_s_gpu"] for r in mrows], [r["verify_budget"] for r in mrows], cfg.slo)
        methods_summary[name] = {**asdict(choice), "policy": str(sc.policy), "gamma": sc.gamma,
                                 "tau_curve": _curve_tau(sc), "peak_tps_user": max(r["tps_user"] for r in mrows)}
        if on_method:
            on_method(name, mrows, summary)

    base = methods_summary[cfg.baseline]
    for s in methods_summary.values():
        s["ratio"] = s["throughput"] / base["throughput"] if s["feasible"] and base["feasible"] else None
    return SweepResult(summary, rows)


def _fit_defaults(cfg: SweepConfig) -> None:
    """With --model: the methods the fit has a drafter cost for (and no-spec, which needs none),
    and the fit's own measured curves."""
    fitted = read_fit(cfg.model)
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
