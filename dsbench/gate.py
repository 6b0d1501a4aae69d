"""`dsbench gate`: compare a candidate result set with a baseline and decide whether it regressed.

Metrics are read from whatever dsbench results each side holds (readers.find_results), each with
its standard error from the run itself:
- sweep:      sweep.<method>.throughput_at_slo (tok/s/GPU; 0 when the SLO is infeasible), .peak_tps_user
              (Monte-Carlo error of the simulated point)
- load:       load.<point>.output_tok_s, .tps_user_p50/.tps_user_p90 (tok/s), .ttft_s_p50/p99,
              .tpot_s_p50/p99 (s), .error_rate (failed / sent), .tau (the engine's figures)
              (bootstrap over requests; block bootstrap over time for throughput and tau)
- acceptance: accept.<method>.<domain>.tau (over rounds)
Several paths on a side are repeated runs; core.gating pools them and decides (Holm over all
metrics, so an A/A comparison fails with probability at most alpha). Runs are compared only
when they are the same experiment (`identity`): device, deployment, model, method, profile,
workload and sampling. Rules (first match wins): the rules file's, then the defaults below.
The verdicts are written out (markdown, JUnit) by gate_report.py.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import GateConfig
from .core.acceptance import expected_tau
from .core.gating import Side, Verdict, compare, decide, pool_sides, run_to_run
from .errors import InputError
from .readers import (
    ACCEPTANCE_SCHEMA,
    LOAD_SCHEMA,
    SWEEP_SCHEMA,
    find_results,
    read_acceptance_file,
    read_gate_rules,
    read_load,
    read_sweep,
)

DEFAULT_RULES = [
    {"metric": "*.error_rate", "direction": "lower", "tolerance_abs": 0.01},
    {"metric": "*.tau", "direction": "higher", "tolerance_pct": 2.0},
    {"metric": "*_s_p99", "direction": "lower", "tolerance_pct": 25.0},  # tails of a few hundred requests are noisy
    {"metric": "*.ttft_s_*", "direction": "lower", "tolerance_pct": 10.0},
    {"metric": "*.tpot_s_*", "direction": "lower", "tolerance_pct": 10.0},
    {"metric": "*", "direction": "higher", "tolerance_pct": None},  # throughput and per-user speed: --max-drop-pct
]
DEFAULT_MAX_DROP_PCT = 5.0
LOAD_METRICS = ("output_tok_s", "tps_user_p50", "tps_user_p90", "ttft_s_p50", "ttft_s_p99", "tpot_s_p50", "tpot_s_p99")
NO_SE = "no within-run uncertainty recorded (a file from before dsbench 0.2): re-run it, or give three runs a side"


@dataclass
class Metric:
    """One run's value of one metric, with its standard error from the run (or why it has none)."""

    value: float
    se: float | None
    reason: str | None = None
    longer: float | None = None  # how many times longer the run must be to give an se


@dataclass
class RunSet:
    """What one path (a run) holds: its metrics, what experiment each file is, which are partial."""

    path: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    identities: list[tuple[str, Path, dict]] = field(default_factory=list)  # (kind, file, fields)
    partial: list[str] = field(default_factory=list)  # one line per partial file


def _load_metrics(rs: RunSet, f: Path) -> None:
    doc = read_load(f)
    cfg = doc.get("config") or {}
    server = doc.get("server") or {}
    rs.identities.append(
        (
            "load",
            f,
            {
                "engine": doc.get("engine"),
                "server source": server.get("source", "measured"),
                "server profile": server.get("profile"),
                "device": server.get("device"),
                "model": cfg.get("model"),
                "method": cfg.get("method"),
                "workload": sorted(cfg.get("workloads") or []),
                "max_tokens": cfg.get("max_tokens"),
                "api": cfg.get("api"),
                "gpus": cfg.get("gpus", 1),
                # the load's shape: runs before these options cycled their prompts under Poisson arrivals
                "prompt order": cfg.get("prompt_seed", "cycled"),
                "burstiness": cfg.get("burstiness", 1.0),
                "ramp-up s": cfg.get("ramp_up_s", 0.0),
                **{f"sampling.{k}": v for k, v in (doc.get("sampling") or {"(not recorded)": True}).items()},
            },
        )
    )
    planned = [f"c={c}" for c in cfg.get("concurrency") or []] + [f"rate={r:.2f}" for r in cfg.get("rates") or []]
    done = [pt["label"] for pt in doc["points"]]
    if doc.get("interrupted") or doc.get("stopped") or (planned and set(planned) - set(done)):
        why = "interrupted" if doc.get("interrupted") else doc.get("stopped") or "incomplete"
        rs.partial.append(f"{f}: {why}; holds {len(done)} of {len(planned) or len(done)} load points")
    for pt in doc["points"]:
        key = f"load.{pt['label']}"
        unc = pt.get("uncertainty") or {}
        values = {name: pt.get(name) for name in LOAD_METRICS}
        if pt.get("requests"):
            values["error_rate"] = float(pt.get("requests_failed", 0)) / float(pt["requests"])
        spec = pt["spec"]  # engine-neutral: tokens per decode step, from the engine's own figures
        if spec["measured"] and spec["tau"] is not None:
            values["tau"] = spec["tau"]
        for name, value in values.items():
            if value is None:
                continue
            u = unc.get(name) or {}
            rs.metrics[f"{key}.{name}"] = Metric(
                float(value), u.get("se"), u.get("reason") or (None if unc else NO_SE), u.get("longer")
            )


def _sweep_metrics(rs: RunSet, f: Path) -> None:
    doc = read_sweep(f)
    inp = doc.get("inputs") or {}
    rs.identities.append(
        (
            "sweep",
            f,
            {
                "device": inp.get("device"),
                "gpus": inp.get("gpus"),
                "model": inp.get("model"),
                "profile": Path(inp["profile"]).name if inp.get("profile") else None,
                "profile source": inp.get("profile_source"),
                "domain": inp.get("domain"),
                "slo": doc.get("slo"),
                "results source": inp.get("results_source"),
                "context": inp.get("context_len"),
                "lengths": _lengths_identity(inp.get("lengths")),
                "deployment": _deployment_identity(inp.get("deployment")),
            },
        )
    )
    # acceptance curves, policy and draft length are what a change to a drafter or scheduler moves: gated, not matched
    if doc.get("partial"):
        rs.partial.append(f"{f}: an interrupted sweep; holds {len(doc['methods'])} finished method(s)")
    rows = doc["frontier"]

    def rel_se(method: str, pick) -> float | None:
        mine = [r for r in rows if r.get("method") == method]
        row = pick(mine) if mine else None
        return row.get("throughput_rel_se") if row else None

    for m, s in doc["methods"].items():
        if s.get("feasible"):
            rel = rel_se(m, lambda rr, c=s.get("concurrency"): next((r for r in rr if r.get("concurrency") == c), None))
            thr = float(s["throughput"])
            rs.metrics[f"sweep.{m}.throughput_at_slo"] = _modelled(thr, rel)
        else:  # infeasible: no throughput at the SLO, exactly
            rs.metrics[f"sweep.{m}.throughput_at_slo"] = Metric(0.0, 0.0)
        if s.get("peak_tps_user") is not None:
            rel = rel_se(m, lambda rr: max(rr, key=lambda r: r.get("tps_user", 0)))
            rs.metrics[f"sweep.{m}.peak_tps_user"] = _modelled(float(s["peak_tps_user"]), rel)


def _lengths_identity(lengths: dict | None) -> str | None:
    return None if not lengths else f"isl {lengths['mean_isl']:g} / osl {lengths['mean_osl']:g}"


def _deployment_identity(dep: dict | None) -> str | None:
    """A deployment in a line; one bf16 GPU (and sweeps from before deployments) is None."""
    if not dep or (
        dep.get("tp", 1) * dep.get("dp", 1) == 1
        and dep.get("ep", 1) == 1
        and dep.get("weight_dtype") == "bf16"
        and dep.get("kv_dtype") == "bf16"
    ):
        return None
    return f"tp{dep['tp']} dp{dep['dp']} ep{dep['ep']} {dep['weight_dtype']}/{dep['kv_dtype']} KV"


def _modelled(value: float, rel_se: float | None) -> Metric:
    """A simulated figure with its Monte-Carlo error (relative, from the sweep's row)."""
    if rel_se is None or not math.isfinite(rel_se):
        return Metric(value, None, "no Monte-Carlo error recorded for this point")
    return Metric(value, value * rel_se)


def _acceptance_metrics(rs: RunSet, f: Path) -> None:
    import numpy as np

    a = read_acceptance_file(f)
    raw = a.raw
    rs.identities.append(
        (
            "accept",
            f,
            {
                "method": a.method,
                "domain": a.domain,
                "target": a.target,
                "source": a.source,
                "gamma": len(a.conditional),
            },
        )
    )
    if raw.get("complete") is False:
        rs.partial.append(f"{f}: an interrupted accept run ({raw.get('rounds')} rounds)")
    tau = float(a.tau if a.tau is not None else expected_tau(a.conditional))
    committed = (raw.get("per_round") or {}).get("committed")  # tokens per round; rounds taken as independent
    if a.source != "measured":  # a curve from the paper or a roofline has no sampling noise
        metric = Metric(tau, 0.0)
    elif committed and len(committed) >= 10:
        metric = Metric(tau, float(np.std(committed, ddof=1) / np.sqrt(len(committed))))
    else:
        metric = Metric(tau, None, "no per-round counts to estimate tau's error from")
    rs.metrics[f"accept.{a.method}.{a.domain}.tau"] = metric


READERS = {LOAD_SCHEMA: _load_metrics, SWEEP_SCHEMA: _sweep_metrics, ACCEPTANCE_SCHEMA: _acceptance_metrics}


def read_run(path: str) -> RunSet:
    """Every gateable metric in one run's results (a file or a directory)."""
    rs = RunSet(path)
    for schema, f in find_results(path):
        if schema in READERS:
            READERS[schema](rs, f)
    return rs


def unlike_fields(runs: list[RunSet]) -> dict[str, list[str]]:
    """Per kind of result (load, sweep, accept): lines naming each identity field that differs
    from the first file of that kind (empty: the runs are one experiment)."""
    first: dict[str, tuple[Path, dict]] = {}
    out: dict[str, list[str]] = {}
    for rs in runs:
        for kind, f, ident in rs.identities:
            if kind == "accept":  # one file per method and domain: compare like with like
                kind = f"accept.{ident['method']}.{ident['domain']}"
            if kind not in first:
                first[kind] = (f, ident)
                continue
            ref_file, ref = first[kind]
            for k in sorted(set(ref) | set(ident)):
                line = f"{k}: {_show(ref.get(k))} ({ref_file}) vs {_show(ident.get(k))}"
                if ref.get(k) != ident.get(k) and line not in out.get(kind.split(".")[0], []):
                    out.setdefault(kind.split(".")[0], []).append(line)
    return out


def _show(v) -> str:
    return "not recorded" if v is None else ", ".join(map(str, v)) if isinstance(v, list) else str(v)


@dataclass
class Row:
    metric: str
    status: str  # pass, regressed, improved, inconclusive, missing, new, ignored
    direction: str = ""
    rule: str = ""
    verdict: Verdict | None = None
    unlike: bool = False  # compared under --allow-different


@dataclass
class GateResult:
    rows: list[Row] = field(default_factory=list)
    baseline: list[str] = field(default_factory=list)
    candidate: list[str] = field(default_factory=list)
    unlike: list[str] = field(default_factory=list)  # differences allowed with --allow-different
    partial: list[str] = field(default_factory=list)
    alpha: float = 0.05
    run_to_run: bool = False  # a side had three or more runs: variation between runs was measured

    @property
    def regressed(self) -> list[Row]:
        return [r for r in self.rows if r.status in ("regressed", "missing")]

    @property
    def inconclusive(self) -> list[Row]:
        return [r for r in self.rows if r.status == "inconclusive"]

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for r in self.rows:
            c[r.status] = c.get(r.status, 0) + 1
        return c

    def to_dict(self) -> dict:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "unlike": self.unlike,
            "partial": self.partial,
            "alpha": self.alpha,
            "run_to_run_measured": self.run_to_run,
            "counts": self.counts(),
            "regressed": bool(self.regressed),
            "rows": [{**asdict(r), "verdict": asdict(r.verdict) if r.verdict else None} for r in self.rows],
        }


def _rule_for(metric: str, rules: list[dict]) -> dict:
    return next(r for r in rules if fnmatch.fnmatchcase(metric, r["metric"]))


def _allowed(metric: str, rules: list[dict], drop_pct: float, baseline: float) -> float:
    """The metric's tolerance in its unit: the rule's absolute one, else its percent (throughput
    and speed: --max-drop-pct) of the baseline."""
    rule = _rule_for(metric, rules)
    pct, absolute = rule.get("tolerance_pct"), rule.get("tolerance_abs")
    if absolute is not None:
        return float(absolute)
    return abs(baseline) * (drop_pct if pct is None else pct) / 100


def _side(metric: str, runs: list[RunSet]) -> list[Metric]:
    return [r.metrics[metric] for r in runs if metric in r.metrics]


def _sides(metric: str, *sides: list[RunSet], run_noise_pct: float | None = None):
    """Each side pooled over its runs, with the run-to-run variance any side of three or more runs
    shows added to all (core.gating.run_to_run), else the declared `run_noise_pct`; and whether
    a side had three runs."""
    ms = [_side(metric, runs) for runs in sides]
    pooled = pool_sides(
        *[
            ([m.value for m in side], [m.se for m in side], [m.reason for m in side], [m.longer for m in side])
            for side in ms
        ],
        run_noise=run_noise_pct / 100 if run_noise_pct else None,
    )
    return pooled, any(len(side) >= 3 for side in ms)


def run_spread_pct(metric: str, runs: list[RunSet]) -> float | None:
    """The relative standard deviation between these runs beyond their own errors, percent
    (what `--run-noise-pct` declares for single runs), or None with fewer than three."""
    ms = _side(metric, runs)
    between = run_to_run([([m.value for m in ms], [m.se for m in ms])])
    level = sum(m.value for m in ms) / len(ms) if ms else 0.0
    return math.sqrt(between[0]) / abs(level) * 100 if between and level else None


def _rules(rules_file: str | None, max_drop_pct: float | None) -> tuple[list[dict], float]:
    user_rules, file_drop = read_gate_rules(rules_file) if rules_file else ([], None)
    drop = max_drop_pct if max_drop_pct is not None else file_drop if file_drop is not None else DEFAULT_MAX_DROP_PCT
    return user_rules + DEFAULT_RULES, drop


def run_gate(cfg: GateConfig) -> GateResult:
    """Compare metric by metric; each side is one or more runs (repeats). Runs that are not the
    same experiment are refused unless `allow_different` (then every row says so); a partial
    candidate's missing metrics are refused unless `allow_missing`. `run_noise_pct`: the relative
    spread between runs to assume when no side has three runs to measure it."""
    cfg.validate()
    candidate, baseline, alpha = cfg.candidate, cfg.baseline, cfg.alpha
    allow_missing, allow_different, run_noise_pct = cfg.allow_missing, cfg.allow_different, cfg.run_noise_pct
    rules, drop = _rules(cfg.rules, cfg.max_drop_pct)
    runs_b = [read_run(p) for p in baseline]
    runs_c = [read_run(p) for p in candidate]
    unlike = unlike_fields(runs_b + runs_c)
    lines = [f"{kind}: {x}" for kind, xs in unlike.items() for x in xs]
    if lines and not allow_different:
        raise InputError(
            "runs are not like for like: " + "; ".join(lines) + " (pass --allow-different to compare anyway)"
        )
    names_b = set().union(*(r.metrics for r in runs_b))
    names_c = set().union(*(r.metrics for r in runs_c))
    if not names_b & names_c:
        raise InputError(
            "baseline and candidate have no metric in common (different kinds of results, or load points "
            "with different labels)"
        )
    partial = [x for r in runs_b + runs_c for x in r.partial]
    lost = sorted(names_b - names_c)
    if lost and any(r.partial for r in runs_c) and not allow_missing:
        raise InputError(
            f"the candidate is partial ({'; '.join(x for r in runs_c for x in r.partial)}): {len(lost)} baseline "
            "metric(s) cannot be judged; re-run it, or pass --allow-missing to gate what it holds"
        )
    res = GateResult(baseline=list(baseline), candidate=list(candidate), unlike=lines, partial=partial, alpha=alpha)
    compared: list[Row] = []
    for metric in sorted(names_b | names_c):
        rule = _rule_for(metric, rules)
        direction = rule.get("direction", "higher")
        row = Row(metric, "pass", direction, rule["metric"], unlike=metric.split(".")[0] in unlike)
        if rule.get("ignore"):
            row.status, row.direction = "ignored", ""
        elif metric not in names_c:
            row.status = "pass" if allow_missing else "missing"
        elif metric not in names_b:
            row.status = "new"
        else:
            compared.append(row)
        res.rows.append(row)
    for row in compared:
        (b, c), measured = _sides(row.metric, runs_b, runs_c, run_noise_pct=run_noise_pct)
        res.run_to_run = res.run_to_run or measured or bool(run_noise_pct)
        row.verdict = compare(
            b, c, row.direction, _allowed(row.metric, rules, drop, b.value), alpha, metrics=len(compared)
        )
    decide([r.verdict for r in compared], alpha)
    for row in compared:
        row.status = row.verdict.status
    order = {"regressed": 0, "missing": 1, "inconclusive": 2, "improved": 3, "new": 4, "pass": 5, "ignored": 6}
    res.rows.sort(key=lambda r: (order[r.status], r.metric))
    return res


@dataclass
class PlanRow:
    metric: str
    allowed: float  # the tolerance, metric's unit
    value: float
    se: float | None  # of the baseline's mean over its runs
    mdc: float | None  # minimum detectable change of a candidate with as many runs, as noisy
    longer: (
        float | None
    )  # how many times longer each run must be to resolve the tolerance (runs without spread measured)
    runs: int | None  # runs a side that would resolve it
    reason: str | None = None
    run_spread_pct: float | None = None  # spread between the baseline's runs beyond their own errors (three or more)


def plan(cfg: GateConfig) -> list[PlanRow]:
    """What a gate against these runs could resolve: per metric, the minimum detectable change of
    a candidate as noisy as the baseline, and how many runs a side (or, while the spread between
    runs is unmeasured, how much longer runs) would resolve each tolerance. Run it on a pilot
    before a CI job is sized."""
    cfg.validate()
    baseline, alpha = cfg.baseline, cfg.alpha
    rules, drop = _rules(cfg.rules, cfg.max_drop_pct)
    runs = [read_run(p) for p in baseline]
    names = sorted(n for n in set().union(*(r.metrics for r in runs)) if not _rule_for(n, rules).get("ignore"))
    out = []
    for metric in names:
        (side,), spread_measured = _sides(metric, runs)
        spread = run_spread_pct(metric, runs)
        allowed = _allowed(metric, rules, drop, side.value)
        v = compare(side, side, "higher", allowed, alpha, metrics=len(names))
        if v.mdc is None:
            out.append(PlanRow(metric, allowed, side.value, None, None, side.longer, None, side.reason, spread))
            continue
        if allowed <= 0:
            out.append(
                PlanRow(
                    metric,
                    allowed,
                    side.value,
                    math.sqrt(side.var),
                    v.mdc,
                    None,
                    None,
                    "a zero tolerance cannot be resolved" if v.mdc else None,
                    spread,
                )
            )
            continue
        # the se falls as 1 / sqrt(runs) (and, within a run, as 1 / sqrt(its length)); counted at
        # many runs' degrees of freedom, as the t-quantiles of a few runs would overstate it
        z = compare(
            Side(side.value, side.var, math.inf, side.runs),
            Side(side.value, side.var, math.inf, side.runs),
            "higher",
            allowed,
            alpha,
            metrics=len(names),
        ).mdc
        factor = (z / allowed) ** 2
        out.append(
            PlanRow(
                metric,
                allowed,
                side.value,
                math.sqrt(side.var),
                v.mdc,
                None if spread_measured else factor,
                max(side.runs, math.ceil(side.runs * factor)),
                None,
                spread,
            )
        )
    return out
