"""The gate's verdicts written out: a markdown table (the CI step summary, with each metric's
minimum detectable change and the run's warnings), the run-sizing plan, and JUnit XML
(inconclusive metrics are skipped tests, regressions failures)."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .gate import GateResult, PlanRow


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.4g}" if abs(x) < 1e5 else f"{x:,.0f}"


def _times(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}x" if x < 100 else f"{x:,.0f}x"


def markdown(res: GateResult) -> str:
    """The verdict as a markdown table (for a CI job summary)."""
    c = res.counts()
    verdict = "REGRESSED" if res.regressed else "passed"
    head = f"**dsbench gate: {verdict}** — " + ", ".join(f"{n} {k}" for k, n in c.items()) + "\n\n"
    base, cand = (", ".join(f"`{_md(p)}`" for p in paths) for paths in (res.baseline, res.candidate))
    head += f"baseline: {base}; candidate: {cand}\n\n"
    head += (
        f"A metric regresses only when it is worse than its tolerance with {1 - res.alpha:.0%} confidence, "
        "Holm-corrected over all metrics (an identical system fails this gate with probability at most "
        f"{res.alpha:g}); standard errors come from each run itself, and repeats pool.\n\n"
    )
    if not res.run_to_run:
        head += (
            "> Fewer than three runs a side: variation between runs (server state, CPU clock, co-tenants) is not "
            "measured and these verdicts assume there is none. On vLLM's CPU build it made 2 of 20 single-run A/A "
            "pairs fail (`benchmarks/bench_gate.py`): give three baseline runs, or declare it with `--run-noise-pct` "
            "(`gate --plan` on three runs measures it).\n\n"
        )
    head += "".join(f"> not like for like (--allow-different): {_md(u)}\n" for u in res.unlike) + (
        "\n" if res.unlike else ""
    )
    head += "".join(f"> partial: {_md(p)}\n" for p in res.partial) + ("\n" if res.partial else "")
    if res.inconclusive:
        head += (
            f"> {len(res.inconclusive)} metric(s) inconclusive: these runs cannot resolve their tolerances. "
            "Each says how many times the data would resolve it; "
            "`dsbench gate --plan --baseline RUN` sizes runs before a CI job.\n\n"
        )
    lines = [
        "| metric | better | baseline | candidate | change | allowed | MDC | p (runs) | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res.rows:
        v = r.verdict
        mark = " (unlike)" if r.unlike else ""
        if v is None:
            lines.append(f"| `{_md(r.metric)}` | {r.direction} | | | | | | | {r.status}{mark} |")
            continue
        change = f"{v.change_pct:+.1f} %" if v.change_pct is not None else _num(v.change)
        p = ("—" if v.p_value is None else f"{v.p_value:.3g}") + f" ({v.runs[0]}/{v.runs[1]})"
        status = f"**{r.status.upper()}**" if r.status == "regressed" else r.status
        if r.status == "inconclusive":
            status += f": {_md(v.reason or '')}" + (
                f"; {_times(v.longer)} the data would resolve it (longer runs, or more runs a side)" if v.longer else ""
            )
        lines.append(
            f"| `{_md(r.metric)}` | {r.direction} | {_num(v.baseline)} | {_num(v.candidate)} | {change} | "
            f"{_num(v.allowed)} | {_num(v.mdc)} | {p} | {status}{mark} |"
        )
    return head + "\n".join(lines) + "\n"


def plan_markdown(rows: list[PlanRow], baseline: list[str]) -> str:
    """The plan as a markdown table."""
    head = (
        f"**dsbench gate --plan** on {', '.join(f'`{_md(b)}`' for b in baseline)}: what a gate of a candidate as "
        "noisy as this baseline could resolve (MDC: the change found with 80 % power at the gate's level). "
        "With three or more runs it also gives the spread between runs beyond their own noise: what "
        "`--run-noise-pct` should declare when later gates have one run a side.\n\n"
    )
    lines = [
        "| metric | value | se | allowed | MDC | resolves | runs needed | spread between runs |",
        "|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        resolves = "—" if r.mdc is None else "yes" if r.mdc <= r.allowed else "no"
        if r.reason or r.mdc is None:
            need = r.reason or "—"
        elif r.mdc <= r.allowed:
            need = "as they are"
        else:
            need = (f"{_times(r.longer)} longer, or " if r.longer else "") + f"{r.runs} runs a side"
        spread = "—" if r.run_spread_pct is None else f"{r.run_spread_pct:.1f} %"
        lines.append(
            f"| `{_md(r.metric)}` | {_num(r.value)} | {_num(r.se)} | {_num(r.allowed)} | {_num(r.mdc)} | "
            f"{resolves} | {_md(need)} | {spread} |"
        )
    return head + "\n".join(lines) + "\n"


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("`", "'")


def junit(res: GateResult) -> bytes:
    """JUnit XML: one test case per metric; regressions and missing metrics are failures,
    inconclusive and ignored ones skipped."""
    import xml.etree.ElementTree as ET

    fails = len(res.regressed)
    skipped = sum(r.status in ("ignored", "inconclusive") for r in res.rows)
    suites = ET.Element("testsuites", name="dsbench gate", tests=str(len(res.rows)), failures=str(fails))
    suite = ET.SubElement(
        suites, "testsuite", name="dsbench gate", tests=str(len(res.rows)), failures=str(fails), skipped=str(skipped)
    )
    for r in res.rows:
        case = ET.SubElement(suite, "testcase", classname="dsbench.gate", name=r.metric)
        v = r.verdict
        if r.status in ("regressed", "missing"):
            msg = (
                f"{r.metric}: {r.status}"
                if v is None
                else f"{r.metric}: {_num(v.baseline)} -> {_num(v.candidate)} "
                f"({r.direction} is better, allowed {_num(v.allowed)}, "
                f"p {v.p_value:.3g})"
            )
            ET.SubElement(case, "failure", message=msg, type=r.status).text = msg
        elif r.status == "ignored":
            ET.SubElement(case, "skipped", message="ignored by rule " + r.rule)
        elif r.status == "inconclusive":
            ET.SubElement(case, "skipped", message=f"inconclusive: {v.reason}" if v else "inconclusive")
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def write_outputs(res: GateResult, summary: Path | None, junit_path: Path | None) -> list[Path]:
    written = []
    for path, data in ((summary, markdown(res).encode()), (junit_path, junit(res) if junit_path else b"")):
        if path:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            except OSError as e:
                raise InputError(f"cannot write {path}: {e.strerror or e}") from None
            written.append(path)
    return written
