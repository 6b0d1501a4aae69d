"""`dsbench gate`: compare a candidate result set with a baseline and decide whether it regressed.

Metrics are read from whatever dsbench results each side holds (results.find_results):
- sweep:      sweep.<method>.throughput_at_slo (tok/s/GPU; 0 when the SLO is infeasible), .peak_tps_user
- load:       load.<point>.output_tok_s, .tps_user_p50/.tps_user_p90 (tok/s), .ttft_s_p50/p99,
              .tpot_s_p50/p99 (s), .error_rate (failed / sent), .tau (server counters)
- acceptance: accept.<method>.<domain>.tau
Several paths on a side are repeated runs: each metric gets one value per run, and core.gating
uses their spread. Rules (first match wins): the rules file's, then the defaults below.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .core.acceptance import expected_tau
from .core.gating import Verdict, judge
from .results import (ACCEPTANCE_SCHEMA, LOAD_SCHEMA, SWEEP_SCHEMA, InputError, find_results, load_acceptance_file,
                      load_gate_rules, load_load, load_sweep)

DEFAULT_RULES = [
    {"metric": "*.error_rate", "direction": "lower", "tolerance_abs": 0.01},
    {"metric": "*.tau", "direction": "higher", "tolerance_pct": 2.0},
    {"metric": "*_s_p99", "direction": "lower", "tolerance_pct": 25.0},  # tails of a few hundred requests are noisy
    {"metric": "*.ttft_s_*", "direction": "lower", "tolerance_pct": 10.0},
    {"metric": "*.tpot_s_*", "direction": "lower", "tolerance_pct": 10.0},
    {"metric": "*", "direction": "higher", "tolerance_pct": None},  # throughput and per-user speed: --max-drop
]
DEFAULT_MAX_DROP_PCT = 5.0
LOAD_METRICS = ("output_tok_s", "tps_user_p50", "tps_user_p90", "ttft_s_p50", "ttft_s_p99", "tpot_s_p50", "tpot_s_p99")


def samplings_of(path: str) -> list[tuple[Path, dict | None]]:
    """(file, sampling) of every load run in one result set; None for runs that recorded none
    (dsbench.load/1 sent the server's defaults)."""
    return [(f, load_load(f).get("sampling")) for schema, f in find_results(path) if schema == LOAD_SCHEMA]


def check_like_for_like(candidate: list[str], baseline: list[str]) -> list[str]:
    """Lines naming each sampling field that differs between the sides' load runs (empty: alike)."""
    from .documents import Sampling

    sides = [samplings_of(p) for p in [*baseline, *candidate]]
    seen = [(f, s) for side in sides for f, s in side]
    if not seen:
        return []
    ref_file, ref = seen[0]
    out = []
    for f, s in seen[1:]:
        if (s is None) != (ref is None):
            out.append(f"{f} {'records no sampling' if s is None else 'records its sampling'} but {ref_file} "
                       f"{'does' if s is None else 'does not'}")
        elif s is not None:
            diff = Sampling.model_validate(ref).differences(Sampling.model_validate(s))
            if diff:
                out.append(f"sampling {', '.join(diff)} differ: {ref_file} vs {f}")
    return out


def metrics_of(path: str) -> dict[str, float]:
    """Every gateable metric in one run's results (a file or a directory)."""
    out: dict[str, float] = {}
    for schema, f in find_results(path):
        if schema == SWEEP_SCHEMA:
            for m, s in load_sweep(f)["methods"].items():
                out[f"sweep.{m}.throughput_at_slo"] = float(s["throughput"]) if s.get("feasible") else 0.0
                if s.get("peak_tps_user") is not None:
                    out[f"sweep.{m}.peak_tps_user"] = float(s["peak_tps_user"])
        elif schema == LOAD_SCHEMA:
            for pt in load_load(f)["points"]:
                key = f"load.{pt.get('label')}"
                for name in LOAD_METRICS:
                    if pt.get(name) is not None:
                        out[f"{key}.{name}"] = float(pt[name])
                if pt.get("requests"):
                    out[f"{key}.error_rate"] = float(pt.get("requests_failed", 0)) / float(pt["requests"])
                spec = pt["spec"]  # engine-neutral: tokens per decode step, from the engine's own figures
                if spec["measured"] and spec["tau"] is not None:
                    out[f"{key}.tau"] = float(spec["tau"])
        elif schema == ACCEPTANCE_SCHEMA:
            a = load_acceptance_file(f)
            out[f"accept.{a.method}.{a.domain}.tau"] = float(a.tau if a.tau is not None else expected_tau(a.conditional))
    return out


@dataclass
class Row:
    metric: str
    status: str  # pass, regressed, improved, missing, new, ignored
    direction: str = ""
    rule: str = ""
    verdict: Verdict | None = None


@dataclass
class GateResult:
    rows: list[Row] = field(default_factory=list)
    baseline: list[str] = field(default_factory=list)
    candidate: list[str] = field(default_factory=list)
    unlike: list[str] = field(default_factory=list)  # differences allowed with --allow-different

    @property
    def regressed(self) -> list[Row]:
        return [r for r in self.rows if r.status in ("regressed", "missing")]

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for r in self.rows:
            c[r.status] = c.get(r.status, 0) + 1
        return c

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "candidate": self.candidate, "unlike": self.unlike, "counts": self.counts(),
                "regressed": bool(self.regressed),
                "rows": [{**asdict(r), "verdict": asdict(r.verdict) if r.verdict else None} for r in self.rows]}


def _rule_for(metric: str, rules: list[dict]) -> dict:
    return next(r for r in rules if fnmatch.fnmatchcase(metric, r["metric"]))


def run_gate(candidate: list[str], baseline: list[str], rules_file: str | None = None, max_drop_pct: float | None = None,
             allow_missing: bool = False, alpha: float = 0.05, allow_different: bool = False) -> GateResult:
    """Compare metric by metric; each side is one or more runs (repeats). Load runs whose
    sampling differs are refused unless `allow_different` (then the result says so)."""
    unlike = check_like_for_like(candidate, baseline)
    if unlike and not allow_different:
        raise InputError("runs are not like for like: " + "; ".join(unlike) + " (pass --allow-different to compare anyway)")
    user_rules, file_drop = load_gate_rules(rules_file) if rules_file else ([], None)
    drop = max_drop_pct if max_drop_pct is not None else file_drop if file_drop is not None else DEFAULT_MAX_DROP_PCT
    rules = user_rules + DEFAULT_RULES
    runs_b = [metrics_of(p) for p in baseline]
    runs_c = [metrics_of(p) for p in candidate]
    names_b = set().union(*runs_b)
    names_c = set().union(*runs_c)
    if not names_b & names_c:
        raise InputError("baseline and candidate have no metric in common (different kinds of results, or load points "
                         "with different labels)")
    res = GateResult(baseline=list(baseline), candidate=list(candidate), unlike=unlike)
    for metric in sorted(names_b | names_c):
        rule = _rule_for(metric, rules)
        if rule.get("ignore"):
            res.rows.append(Row(metric, "ignored", rule=rule["metric"]))
            continue
        direction = rule.get("direction", "higher")
        if metric not in names_c:
            res.rows.append(Row(metric, "pass" if allow_missing else "missing", direction, rule["metric"]))
            continue
        if metric not in names_b:
            res.rows.append(Row(metric, "new", direction, rule["metric"]))
            continue
        tol_pct = rule.get("tolerance_pct")
        tol_pct = drop if tol_pct is None and rule.get("tolerance_abs") is None else tol_pct
        v = judge([r[metric] for r in runs_b if metric in r], [r[metric] for r in runs_c if metric in r], direction,
                  None if tol_pct is None else tol_pct / 100, rule.get("tolerance_abs"), alpha)
        res.rows.append(Row(metric, v.status, direction, rule["metric"], v))
    order = {"regressed": 0, "missing": 1, "improved": 2, "new": 3, "pass": 4, "ignored": 5}
    res.rows.sort(key=lambda r: (order[r.status], r.metric))
    return res


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.4g}" if abs(x) < 1e5 else f"{x:,.0f}"


def markdown(res: GateResult) -> str:
    """The verdict as a markdown table (for a CI job summary)."""
    c = res.counts()
    head = "**dsbench gate: " + ("REGRESSED" if res.regressed else "passed") + "** — " + ", ".join(
        f"{n} {k}" for k, n in c.items()) + "\n\n"
    head += f"baseline: {', '.join(f'`{_md(b)}`' for b in res.baseline)}; candidate: {', '.join(f'`{_md(x)}`' for x in res.candidate)}\n\n"
    head += "".join(f"> not like for like (--allow-different): {_md(u)}\n" for u in res.unlike) + ("\n" if res.unlike else "")
    lines = ["| metric | better | baseline | candidate | change | allowed | p (runs) | status |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in res.rows:
        v = r.verdict
        if v is None:
            lines.append(f"| `{_md(r.metric)}` | {r.direction} | | | | | | {r.status} |")
            continue
        change = f"{v.change_pct:+.1f} %" if v.change_pct is not None else _num(v.change)
        p = ("—" if v.p_value is None else f"{v.p_value:.3g}") + f" ({v.runs[0]}/{v.runs[1]})"
        status = f"**{r.status.upper()}**" if r.status == "regressed" else r.status
        lines.append(f"| `{_md(r.metric)}` | {r.direction} | {_num(v.baseline)} | {_num(v.candidate)} | {change} | "
                     f"{_num(v.allowed)} | {p} | {status} |")
    return head + "\n".join(lines) + "\n"


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("`", "'")


def junit(res: GateResult) -> bytes:
    """JUnit XML: one test case per metric; regressions and missing metrics are failures."""
    import xml.etree.ElementTree as ET

    fails = len(res.regressed)
    suites = ET.Element("testsuites", name="dsbench gate", tests=str(len(res.rows)), failures=str(fails))
    suite = ET.SubElement(suites, "testsuite", name="dsbench gate", tests=str(len(res.rows)), failures=str(fails),
                          skipped=str(sum(r.status == "ignored" for r in res.rows)))
    for r in res.rows:
        case = ET.SubElement(suite, "testcase", classname="dsbench.gate", name=r.metric)
        v = r.verdict
        if r.status in ("regressed", "missing"):
            msg = (f"{r.metric}: {r.status}" if v is None else
                   f"{r.metric}: {_num(v.baseline)} -> {_num(v.candidate)} ({r.direction} is better, allowed {_num(v.allowed)})")
            ET.SubElement(case, "failure", message=msg, type=r.status).text = msg
        elif r.status == "ignored":
            ET.SubElement(case, "skipped", message="ignored by rule " + r.rule)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def write_outputs(res: GateResult, summary: Path | None, junit_path: Path | None) -> list[Path]:
    written = []
    if summary:
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(markdown(res))
        written.append(summary)
    if junit_path:
        junit_path.parent.mkdir(parents=True, exist_ok=True)
        junit_path.write_bytes(junit(res))
        written.append(junit_path)
    return written
