"""`dsbench report`: one self-contained HTML file from any mix of dsbench results.

Everything is inline (figures as SVG with text drawn as paths, styles in one <style> block, no
fonts or external references), so the file opens offline and can be attached to a ticket. One
inline script draws the interactive frontier (report/explore.py); everything else reads
without it. Every string that comes from an input file passes through `esc`. Several runs (one per
argument) are shown side by side, one column each. Files are read through readers.py only.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__
from ..core.loadstats import request_metrics
from ..documents import conditional_of, sampling_text, traffic_modelled
from ..errors import InputError
from ..readers import (
    ACCEPTANCE_SCHEMA,
    CALIBRATION_SCHEMA,
    FIT_SCHEMA,
    LOAD_SCHEMA,
    PROFILE_SCHEMA,
    SEARCH_SCHEMA,
    SWEEP_SCHEMA,
    Profile,
    find_results,
    read_acceptance,
    read_acceptance_file,
    read_calibration,
    read_fit,
    read_load,
    read_profile,
    read_requests,
    read_search,
    read_sweep,
)
from . import plots
from .explore import explorer


def esc(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(x, spec: str = ",.0f") -> str:
    return "—" if x is None else format(x, spec)


@dataclass
class Run:
    """One argument's results, by kind."""

    name: str
    sweeps: list[tuple[Path, dict]] = field(default_factory=list)
    loads: list[tuple[Path, dict, list[dict]]] = field(default_factory=list)
    acceptance: list = field(default_factory=list)
    calibrations: list[tuple[Path, dict]] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    fits: list[tuple[Path, dict]] = field(default_factory=list)
    searches: list[tuple[Path, dict]] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)  # provenance rows


def collect(path: str) -> Run:
    run = Run(path)
    for schema, f in find_results(path):
        kind = schema.split(".")[1].split("/")[0]
        if schema == SWEEP_SCHEMA:
            doc = read_sweep(f)
            run.sweeps.append((f, doc))
            _add_file(run, f, kind, doc, doc.get("inputs", {}).get("results_source", "simulated"))
            _add_sweep_inputs(run, doc)
        elif schema == LOAD_SCHEMA:
            doc = read_load(f)
            run.loads.append((f, doc, read_requests(f)))
            _add_file(run, f, kind, doc, (doc.get("server") or {}).get("source", "measured"))
        elif schema == ACCEPTANCE_SCHEMA:
            a = read_acceptance_file(f)
            run.acceptance.append(a)
            _add_file(run, f, kind, a.raw, a.source)
        elif schema == CALIBRATION_SCHEMA:
            doc = read_calibration(f)
            run.calibrations.append((f, doc))
            _add_file(run, f, kind, doc, doc.get("source", "measured"))
        elif schema == PROFILE_SCHEMA:
            prof = read_profile(f)
            run.profiles.append(prof)
            _add_file(run, f, kind, prof.raw, prof.source)
        elif schema == SEARCH_SCHEMA:
            doc = read_search(f)
            run.searches.append((f, doc))
            sources = {(m.get("server") or {}).get("source", "measured") for m in doc["methods"]}
            _add_file(run, f, kind, doc, ", ".join(sorted(sources)) or "measured")
        elif schema == FIT_SCHEMA:
            doc = read_fit(f).raw
            run.fits.append((f, doc))
            _add_file(run, f, kind, doc, "fitted")
    return run


def _add_file(run: Run, f: Path, kind: str, doc: dict, source: str) -> None:
    prov = doc.get("provenance") or {}
    inputs = doc.get("inputs") if isinstance(doc.get("inputs"), dict) else {}
    dev = doc.get("device") or inputs.get("device") or doc.get("engine")
    run.files.append(
        {
            "file": str(f),
            "kind": kind,
            "source": source,
            "device": dev.get("name") if isinstance(dev, dict) else dev,
            "created": prov.get("created"),
            "version": prov.get("version"),
            "versions": ", ".join(
                f"{k} {v}" for k, v in prov.items() if k in ("python", "torch", "transformers", "cuda", "host")
            ),
            "command": prov.get("command"),
        }
    )


def _add_sweep_inputs(run: Run, sweep: dict) -> None:
    """The profile and acceptance curves a sweep was run on, when they can still be found."""
    inp = sweep.get("inputs") or {}
    try:
        prof = read_profile(inp["profile"]) if inp.get("profile") else None
        curves = read_acceptance(inp["acceptance"]) if inp.get("acceptance") and not inp.get("fitted_model") else []
    except InputError:
        return  # moved since: the report shows what it has
    if prof is not None and all(p.path != prof.path for p in run.profiles):
        run.profiles.append(prof)
        _add_file(run, prof.path, "profile (sweep input)", prof.raw, prof.source)
    for a in curves:
        if all(x.path != a.path for x in run.acceptance):
            run.acceptance.append(a)
            _add_file(run, a.path, "acceptance (sweep input)", a.raw, a.source)


# --------------------------------------------------------------------------- sections


def _slo_table(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        for _, doc in run.sweeps:
            src = doc.get("inputs", {}).get("results_source", "simulated")
            for m, s in doc["methods"].items():
                ratio = f"{s['ratio']:.2f}x vs {doc.get('baseline')}" if s.get("ratio") is not None else "—"
                cells = (
                    [
                        _num(s["throughput"]),
                        str(s["concurrency"]),
                        _num(s["tps_user"], ".1f"),
                        _num(s["verify_budget"], ".2f"),
                    ]
                    if s.get("feasible")
                    else ["infeasible", "—", "—", "—"]
                )
                rows.append(
                    f"<tr><td>{esc(run.name)}</td><td class=n>{esc(_num(doc.get('slo'), 'g'))}</td><td>{esc(m)}</td>"
                    f"<td>{esc(s.get('policy'))}</td>"
                    + "".join(f"<td class=n>{esc(c)}</td>" for c in cells)
                    + f"<td class=n>{esc(ratio)}</td><td>{esc(src)}</td></tr>"
                )
    if not rows:
        return ""
    return (
        "<h2>Best throughput at the SLO</h2><table><tr><th>run</th><th>SLO "
        "tok/s/user</th><th>method</th><th>policy</th>"
        "<th>tok/s per GPU</th><th>concurrency</th><th>tok/s per "
        "user</th><th>budget</th><th>ratio</th><th>source</th></tr>" + "".join(rows) + "</table>"
    )


def _search_table(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        for _, doc in run.searches:
            slo = doc["slo"]
            for m in doc["methods"]:
                b = m.get("best") or {}
                ratio = (doc.get("ratios") or {}).get(m["label"])
                cells = [
                    run.name,
                    f"{slo.get('statistic')} >= {_num(slo.get('tps_user'), 'g')}",
                    m["label"],
                    m.get("outcome") or "under way",
                    _num(b.get("throughput_tok_s_gpu")),
                    _num(b.get("upper_throughput_tok_s_gpu")),
                    b.get("concurrency", "—"),
                    _num(b.get("speed"), ".1f"),
                    f"{ratio:.2f}x vs {doc.get('baseline')}" if ratio else "—",
                    m.get("measurements", 0),
                    (m.get("server") or {}).get("source", "measured"),
                ]
                rows.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    head = "run,SLO tok/s/user,server,outcome,tok/s per GPU,upper,concurrency,tok/s per user,ratio,measurements,source"
    return (
        "<h2>Searched at the SLO (measured)</h2><p class=cap>The highest concurrency measured to meet the SLO; the "
        "true best lies below 'upper', the throughput of the lowest concurrency above it that failed.</p><table><tr>"
        + "".join(f"<th>{h}</th>" for h in head.split(","))
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )


def _measured_points(run: Run) -> list[dict]:
    pts = []
    for _, doc, _ in run.loads:
        cfg = doc.get("config") or {}
        how = (doc.get("server") or {}).get("source", "measured")  # simulated: a load run against dsbench serve --sim
        label = f"{cfg['method']} ({how})" if cfg.get("method") else f"live: {cfg.get('model', '?')} ({how})"
        gpus = cfg.get("gpus") or 1
        for p in doc["points"]:
            if p.get("tps_user_mean") and p.get("output_tok_s"):
                spec = p["spec"]  # engine-neutral (documents.SpecWindow)
                budget = (
                    1 + spec["draft_tokens_per_step"]
                    if spec["measured"] and spec["draft_tokens_per_step"] is not None
                    else None
                )
                pts.append(
                    {
                        "method": label,
                        "tps_user": p["tps_user_mean"],
                        "throughput": p["output_tok_s"] / gpus,
                        "concurrency": p.get("concurrency"),
                        "budget": budget,
                    }
                )
    return pts


def _figures(runs: list[Run], fig_ids: list[int]) -> list[tuple[str, list[str]]]:
    """(section title, one HTML cell per run) for every figure section with data in some run."""
    sections: dict[str, list[str]] = {}

    def add(title: str, i: int, cell: str) -> None:
        sections.setdefault(title, [""] * len(runs))[i] = cell

    def fig(f, caption: str) -> str:
        """The figure inline, and its source line again as text (selectable, searchable)."""
        fig_ids[0] += 1
        return _prefix_ids(plots.svg_text(f), f"f{fig_ids[0]}") + f"<p class=cap>{esc(caption)}</p>"

    for i, run in enumerate(runs):
        measured = _measured_points(run)
        for _, doc in run.sweeps:
            inp = doc.get("inputs", {})
            live_traffic = sorted(
                {Path(w).stem for _, d, _ in run.loads for w in (d.get("config") or {}).get("workloads", [])}
            )
            src = (
                f"{inp.get('results_source', 'simulated')}: {inp.get('profile_source')} profile "
                f"({inp.get('device')}{' x' + str(inp['gpus']) if inp.get('gpus', 1) > 1 else ''}, "
                f"{inp.get('model')}; {traffic_modelled(inp)}), "
                f"acceptance {', '.join(inp.get('acceptance_sources') or [])}"
                + (
                    f", gamma the best of {inp['gamma_search'][0]}..{inp['gamma_search'][-1]}"
                    if inp.get("gamma_search")
                    else ""
                )
                + "".join(f" ({p} protocol)" for p in inp.get("acceptance_protocols") or [])
                + f", {inp.get('domain')} traffic"
                + (
                    "; diamonds: live load runs, labelled measured or simulated (dsbench load, "
                    f"{' + '.join(live_traffic)} traffic"
                    + (
                        " — not the modelled traffic: compare with care)"
                        if live_traffic != [inp.get("domain")]
                        else ")"
                    )
                    if measured
                    else ""
                )
            )
            add(
                "Throughput vs per-user speed",
                i,
                fig(
                    plots.frontier_with_measured(
                        doc["frontier"], measured, doc.get("slo"), f"{inp.get('device')} / {inp.get('model')}", src
                    ),
                    src,
                ),
            )
            add(
                "Verification budget per request vs concurrency",
                i,
                fig(
                    plots.budget_figure(
                        doc["frontier"],
                        [p for p in measured if p["budget"] and p["concurrency"]],
                        "how the scheduler backs off under load",
                        src,
                    ),
                    src,
                ),
            )
        if measured and not run.sweeps:
            add(
                "Throughput vs per-user speed",
                i,
                fig(
                    plots.frontier_with_measured([], measured, None, "measured load points", "measured (dsbench load)"),
                    "measured (dsbench load)",
                ),
            )
        curves = [
            {"label": f"{a.method} / {a.domain} ({a.source})", "method": a.method, "conditional": a.conditional}
            for a in run.acceptance
        ]
        for _, doc, _ in run.loads:
            for p in doc["points"]:
                cond = conditional_of(p["spec"]) if p["spec"]["measured"] else []
                if cond:
                    how = "measured" if p["spec"]["conditional_exact"] else "measured survival, full drafts assumed"
                    curves.append(
                        {
                            "label": f"live {p['label']} ({p['spec']['engine']}, {how})",
                            "method": "live",
                            "conditional": cond,
                        }
                    )
        if curves:
            add(
                "Conditional acceptance per position",
                i,
                fig(
                    plots.acceptance_figure(curves, "position-wise conditional acceptance", "sources in the legend"),
                    "; ".join(c["label"] for c in curves),
                ),
            )
        for f, doc in run.calibrations:
            src = f"measured on {doc.get('rounds_held_out')} held-out rounds ({f.name})"
            add(
                "Confidence calibration",
                i,
                fig(
                    plots.reliability_figure(
                        doc.get("reliability", []),
                        (doc.get("before") or {}).get("ece_mean"),
                        (doc.get("after") or {}).get("ece_mean"),
                        "reliability of DSpark's confidence head",
                        src,
                    ),
                    src,
                ),
            )
        for f, doc, reqs in run.loads:
            per_point: dict[str, dict[str, list[float]]] = {}
            for r in reqs:
                m = request_metrics(r)
                d = per_point.setdefault(str(r.get("point")), {})
                for k in ("ttft_s", "tpot_s", "tps_user"):
                    if m[k] is not None:
                        d.setdefault(k, []).append(m[k])
            if per_point:
                src = f"measured: {len(reqs)} requests to {(doc.get('config') or {}).get('model')} ({f.parent.name})"
                add(
                    "Latency and per-user speed per load point",
                    i,
                    fig(plots.distributions_figure(per_point, "per-request distributions", src), src)
                    + _errors_table(doc),
                )
            ctx = {p["label"]: p["by_context"] for p in doc["points"] if len(p.get("by_context") or []) > 1}
            if ctx:
                how = {r.get("tau_source") for rows in ctx.values() for r in rows} - {None}
                src = f"measured ({f.parent.name}); tau from {', '.join(sorted(how)) or 'nothing'}"
                add(
                    "Acceptance and per-user speed against context",
                    i,
                    fig(plots.context_figure(ctx, "per turn, or per prompt-length quartile", src), src),
                )
            pts = [
                {"label": p["label"], "tau": p["spec"]["tau"], "tokens_per_chunk": p["tokens_per_chunk_mean"]}
                for p in doc["points"]
                if p["spec"]["measured"] and p["spec"]["tau"] and p.get("tokens_per_chunk_mean")
            ]
            if pts:
                src = "measured: client chunks and server counters"
                add(
                    "Tokens per chunk vs tau",
                    i,
                    fig(plots.chunk_tau_figure(pts, "streamed chunks vs the engine's rounds", src), src),
                )
        for prof in run.profiles:
            by_r: dict[float, tuple[list, list]] = {}
            for b, r, s in sorted(zip(prof.batch_tokens, prof.requests, prof.step_s), key=lambda x: (x[1], x[0])):
                by_r.setdefault(r, ([], []))
                by_r[r][0].append(b)
                by_r[r][1].append(s)
            levels = sorted(by_r)
            pick = levels if len(levels) <= 6 else [levels[int(k * (len(levels) - 1) / 5)] for k in range(6)]
            src = f"{prof.source}: {prof.label} ({prof.path.name})"
            add("SPS(B) profile", i, fig(plots.sps_figure({f"R = {r:g}": by_r[r] for r in pick}, prof.label, src), src))
        for f, doc in run.fits:
            src = f"fitted ({f.name}) vs measured; {doc.get('flagged', 0)} point(s) flagged"
            add(
                "Fitted latency model",
                i,
                fig(plots.fit_figure(doc["points"], f"MAPE {doc['mape_pct']:.1f} %", src), src) + _params_table(doc),
            )
    return list(sections.items())


def _errors_table(doc: dict) -> str:
    rows = "".join(
        f"<tr><td>{esc(p['label'])}</td><td class=n>{esc(p.get('requests'))}</td><td "
        f"class=n>{esc(p.get('requests_failed'))}</td>"
        f"<td>{esc(', '.join(f'{k}: {v}' for k, v in (p.get('errors') or {}).items()) or '—')}</td>"
        f"<td class=n>{esc(_num(p.get('tokens_per_chunk_mean'), '.2f'))}</td>"
        f"<td class=n>{esc(_num(p['spec']['tau'], '.2f'))}</td><td "
        f"class=n>{esc(_num(p['spec']['tau_drafted'], '.2f'))}</td>"
        f"<td>{esc(p['spec']['source'] or p['spec']['state'])}</td></tr>"
        for p in doc["points"]
    )
    return (
        f"<p>engine: {esc(doc.get('engine') or 'unknown')}; sampling: {esc(sampling_text(doc.get('sampling')))}</p>"
        "<table><tr><th>point</th><th>requests</th><th>failed</th><th>errors</th><th>tokens/chunk</th><th>tau</th>"
        "<th>tau per drafted step</th><th>from</th></tr>" + rows + "</table>"
    )


def _params_table(doc: dict) -> str:
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td class=n>{esc(format(p['value'], '.4g'))}</td>"
        f"<td class=n>{esc('fixed' if p.get('fixed') else _num(p.get('sigma'), '.3g'))}</td>"
        f"<td>{esc(p['unit'])}</td></tr>"
        for k, p in doc["params"].items()
    )
    return "<table><tr><th>parameter</th><th>value</th><th>± 1 sigma</th><th>unit</th></tr>" + rows + "</table>"


def _provenance(runs: list[Run]) -> str:
    rows = "".join(
        f"<tr><td>{esc(run.name)}</td><td>{esc(r['file'])}</td><td>{esc(r['kind'])}</td><td><b>{esc(r['source'])}</b></td>"
        f"<td>{esc(r['device'])}</td><td>{esc(r['created'])}</td><td>{esc(r['version'])}</td><td>{esc(r['versions'])}</td>"
        f"<td><code>{esc(r['command'])}</code></td></tr>"
        for run in runs
        for r in run.files
    )
    return (
        "<h2>Inputs and provenance</h2><p>Where every number comes from: <b>measured</b> (real passes or live "
        "servers), <b>roofline</b> (a hardware model), <b>paper</b> (published figures), <b>fitted</b> (a model fitted "
        "to measurements), <b>simulated</b>/<b>predicted</b> (the capacity model run on those inputs).</p>"
        "<table><tr><th>run</th><th>file</th><th>kind</th><th>source</th><th>device / engine</th><th>created</th>"
        "<th>dsbench</th><th>versions</th><th>command</th></tr>" + rows + "</table>"
    )


def _prefix_ids(svg: str, prefix: str) -> str:
    """Make a figure's element ids unique in the page (several inline SVGs share matplotlib's names)."""
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
    return re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;
  margin:24px;color:#1a1a1a;max-width:1800px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:12px}table{border-collapse:collapse;margin:8px 0;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right}
.runs{display:grid;gap:16px}.cell{min-width:0}.cell svg{max-width:100%;height:auto}
.run{font-weight:600;font-size:12px;color:#444}
code{font-size:11px;word-break:break-all}.cap{font-size:11px;color:#555;margin:2px 0 8px}
"""


def build_report(paths: list[str], title: str) -> str:
    """The whole HTML document for the results at `paths` (one column per path)."""
    runs = [collect(p) for p in paths]
    n = len(runs)
    parts = [
        f"<h1>{esc(title)}</h1><p class=meta>dsbench {esc(__version__)} · written "
        f"{esc(datetime.now(UTC).isoformat(timespec='seconds'))} · runs: "
        + ", ".join(f"<code>{esc(r.name)}</code>" for r in runs)
        + "</p>",
        _slo_table(runs),
        _search_table(runs),
        explorer(runs),
    ]
    for section, cells in _figures(runs, [0]):
        parts.append(
            f"<h2>{esc(section)}</h2><div class=runs style='grid-template-columns:repeat({n},1fr)'>"
            + "".join(
                f"<div class=cell>{'<div class=run>' + esc(r.name) + '</div>' if n > 1 else ''}"
                f"{c or '<p class=meta>no data in this run</p>'}</div>"
                for r, c in zip(runs, cells)
            )
            + "</div>"
        )
    parts.append(_provenance(runs))
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>"
        + esc(title)
        + "</title><style>"
        + STYLE
        + "</style></head><body>"
        + "".join(parts)
        + "</body></html>\n"
    )
