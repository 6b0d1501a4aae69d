"""Figures (matplotlib, headless). Each takes result rows and returns a Figure; callers save it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..core.frontier import pareto_mask  # noqa: E402

# One colour per method everywhere dsbench draws.
METHOD_COLORS = {
    "no-spec": "#7f7f7f",
    "mtp-1": "#1f77b4",
    "dflash": "#2ca02c",
    "eagle3": "#ff7f0e",
    "dspark": "#d62728",
}


def frontier_figure(
    rows: list[dict],
    slo: float | None,
    title: str,
    subtitle: str = "",
    best: dict[str, dict] | None = None,
    gamma_curves: dict[str, dict] | None = None,
    style: str = "-o",
) -> Figure:
    """Throughput per GPU vs per-user speed, one line per method, the SLO as a vertical line.

    `rows`: dicts with method, tps_user, throughput_tok_s_gpu (ordered by concurrency).
    `best`: per method the chosen point at the SLO ({"tps_user", "throughput"}), starred.
    `gamma_curves`: per method, per draft length tried, [tok/s per user, tok/s per GPU] points
    (the gamma search's), drawn faintly behind the chosen length's line, with their envelope
    (the best length at each per-user speed) dashed. `style`: the methods' lines (matplotlib's).
    """
    fig, ax = plt.subplots(figsize=(8.5, 5.5), dpi=110)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for m in methods:
        pts = [r for r in rows if r["method"] == m]
        color = METHOD_COLORS.get(m)
        curves = (gamma_curves or {}).get(m, {})
        for g, curve in curves.items():
            x, y = zip(*curve)
            ax.plot(x, y, "-", lw=0.7, alpha=0.3, color=color)
            ax.annotate(f"γ{g}", (x[-1], y[-1]), fontsize=6, color=color, alpha=0.6)
        if curves:  # the envelope: the best draft length at every per-user speed
            x, y = (np.array(v) for v in zip(*(pt for curve in curves.values() for pt in curve)))
            keep = pareto_mask(x, y)
            order = np.argsort(x[keep])
            ax.plot(x[keep][order], y[keep][order], "--", lw=1.0, alpha=0.7, color=color)
        ax.plot(
            [r["tps_user"] for r in pts],
            [r["throughput_tok_s_gpu"] for r in pts],
            style,
            ms=2.5,
            lw=1.6,
            color=color,
            label=m,
        )
        b = (best or {}).get(m)
        if b and b.get("feasible"):
            ax.plot([b["tps_user"]], [b["throughput"]], "*", ms=13, color=color, mec="black", mew=0.6, zorder=5)
    if slo:
        ax.axvline(slo, color="black", ls="--", lw=1)
        ax.annotate(
            f"SLO {slo:g} tok/s/user",
            (slo, 0),
            xycoords=("data", "axes fraction"),
            xytext=(4, 6),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_xlabel("per-user speed (tokens/s per user)")
    ax.set_ylabel("throughput (tokens/s per GPU)")
    ax.set_title(title, fontsize=11)
    if subtitle:
        fig.text(0.5, 0.005, subtitle, ha="center", va="bottom", fontsize=7.5, color="#444444")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(title="method (★ best at SLO)", fontsize=8, title_fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def search_figure(methods: list[dict], slo: float, title: str, subtitle: str) -> Figure:
    """A search's measured points (95 % intervals as bars; the best at the SLO starred) over each
    method's fitted frontier (search.json `methods`, with `fit_frontier` rows added)."""
    rows = [r for m in methods for r in m.get("fit_frontier") or []]
    best = {
        m["label"]: {"feasible": True, "tps_user": m["best"]["speed"], "throughput": m["best"]["throughput_tok_s_gpu"]}
        for m in methods
        if m.get("best")
    }
    fig = frontier_figure(rows, slo, title, subtitle, best, style="--o")  # fitted: dashed; markers are the result
    ax = fig.axes[0]
    for m in methods:
        pts = [p for p in m.get("points") or [] if p.get("speed") and p.get("throughput")]
        if not pts:
            continue
        x = np.array([p["speed"] for p in pts])
        y = np.array([p["throughput"] for p in pts])
        lo = np.array([p["speed_ci"][0] if p["speed_ci"][0] is not None else s for p, s in zip(pts, x)])
        hi = np.array([p["speed_ci"][1] if p["speed_ci"][1] is not None else s for p, s in zip(pts, x)])
        ax.errorbar(
            x, y, xerr=[np.clip(x - lo, 0, None), np.clip(hi - x, 0, None)], fmt="D", ms=6, mfc="white",
            mew=1.5, color=_color(m["label"]), ecolor=_color(m["label"]), elinewidth=0.8, capsize=2,
            label=f"{m['label']} (measured)",
        )  # fmt: skip
    ax.legend(title="dashed: fitted; markers: measured (★ best)", fontsize=8, title_fontsize=8)
    return fig


def save(fig: Figure, *paths) -> None:
    """Save a figure to each path (format from the suffix) and free it."""
    for p in paths:
        fig.savefig(p, bbox_inches="tight")
    plt.close(fig)


# --------------------------------------------------------------------------- report figures
# Each takes plain rows and a `source` label that goes on the figure: every plotted number says
# where it came from.


def _color(label: str) -> str:
    """A method's colour for labels such as 'dspark (measured)'; black for anything else."""
    return METHOD_COLORS.get(label.split(" ")[0], "black")


def _finish(fig: Figure, ax, title: str, source: str) -> Figure:
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.text(0.5, 0.005, source, ha="center", va="bottom", fontsize=7, color="#444444")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def frontier_with_measured(
    model_rows: list[dict], measured: list[dict], slo: float | None, title: str, source: str
) -> Figure:
    """Modelled frontier lines (sweep rows) and measured load points ({method, tps_user, throughput})."""
    fig = frontier_figure(model_rows, slo, title) if model_rows else plt.figure(figsize=(8.5, 5.5), dpi=110)
    ax = fig.axes[0] if fig.axes else fig.add_subplot()
    for m in dict.fromkeys(p["method"] for p in measured):
        pts = [p for p in measured if p["method"] == m]
        pts.sort(key=lambda p: p.get("concurrency") or 0)
        ax.plot(
            [p["tps_user"] for p in pts],
            [p["throughput"] for p in pts],
            "D:",
            ms=6,
            mfc="white",
            mew=1.6,
            lw=1,
            color=_color(m),
            label=m,
        )
    if measured:
        ax.legend(fontsize=8)
        ax.set_xlabel("per-user speed (tokens/s per user)")
        ax.set_ylabel("throughput (tokens/s per GPU)")
    return _finish(fig, ax, title, source)


def budget_figure(rows: list[dict], measured: list[dict], title: str, source: str) -> Figure:
    """Tokens verified per request per round vs concurrency: modelled lines, measured points."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2), dpi=110)
    for m in dict.fromkeys(r["method"] for r in rows):
        pts = [r for r in rows if r["method"] == m]
        ax.plot(
            [r["concurrency"] for r in pts],
            [r["verify_budget"] for r in pts],
            "-",
            lw=1.6,
            color=METHOD_COLORS.get(m),
            label=m,
        )
    for m in dict.fromkeys(p["method"] for p in measured):
        pts = [p for p in measured if p["method"] == m]
        ax.plot(
            [p["concurrency"] for p in pts],
            [p["budget"] for p in pts],
            "D",
            mfc="white",
            mew=1.6,
            color=_color(m),
            label=m,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("tokens verified per request per round (1 + l)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _finish(fig, ax, title, source)


def acceptance_figure(curves: list[dict], title: str, source: str) -> Figure:
    """Conditional acceptance per draft position; curves: {label, method, conditional}."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2), dpi=110)
    styles = ["-", "--", ":", "-."]
    seen: dict[str, int] = {}
    for c in curves:
        k = seen[c["method"]] = seen.get(c["method"], -1) + 1
        ax.plot(
            range(1, len(c["conditional"]) + 1),
            c["conditional"],
            styles[k % 4],
            marker="o",
            ms=3,
            color=METHOD_COLORS.get(c["method"]),
            label=c["label"],
        )
    ax.set_xlabel("draft position k")
    ax.set_ylabel("P(accept k | positions < k accepted)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)
    return _finish(fig, ax, title, source)


def reliability_figure(
    reliability: list[dict], ece_before: float | None, ece_after: float | None, title: str, source: str
) -> Figure:
    """Reliability diagram pooled over positions: predicted survival vs observed, before/after."""
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=110)
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, label="perfect calibration")
    for key, color in (("before", "#d62728"), ("after", "#1f77b4")):
        pts = [b for pos in reliability for b in pos.get(key, [])]
        ece = ece_before if key == "before" else ece_after
        label = f"{key} STS" + (f" (ECE {ece:.1%})" if ece is not None else "")
        ax.scatter(
            [b["pred"] for b in pts],
            [b["observed"] for b in pts],
            s=[8 + 40 * b["n"] / max(1, max(p["n"] for p in pts)) for b in pts],
            color=color,
            alpha=0.7,
            label=label,
        )
    ax.set_xlabel("predicted survival (confidence product)")
    ax.set_ylabel("observed survival")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _finish(fig, ax, title, source)


def distributions_figure(per_point: dict[str, dict[str, list[float]]], title: str, source: str) -> Figure:
    """Box plots of TTFT (ms), TPOT (ms) and per-user speed (tok/s) per load point."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.8), dpi=110)
    labels = list(per_point)
    for ax, (key, name, scale) in zip(
        axes, (("ttft_s", "TTFT (ms)", 1e3), ("tpot_s", "TPOT (ms)", 1e3), ("tps_user", "per-user speed (tok/s)", 1.0))
    ):
        data = [[v * scale for v in per_point[lab].get(key, [])] or [float("nan")] for lab in labels]
        ax.boxplot(data, showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45, fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.005, source, ha="center", va="bottom", fontsize=7, color="#444444")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def chunk_tau_figure(points: list[dict], title: str, source: str) -> Figure:
    """Tokens per streamed chunk vs the engine's tau per load point (equal for one chunk per round)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    xs = [p["tau"] for p in points]
    ys = [p["tokens_per_chunk"] for p in points]
    ax.scatter(xs, ys, color="#d62728", zorder=3)
    for p in points:
        ax.annotate(
            p["label"], (p["tau"], p["tokens_per_chunk"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    hi = max(xs + ys + [1.0]) * 1.1
    ax.plot([1, hi], [1, hi], color="#999999", lw=1, label="tokens per chunk = tau")
    ax.set_xlabel("tau (server counters)")
    ax.set_ylabel("tokens per chunk (client)")
    ax.legend(fontsize=8)
    return _finish(fig, ax, title, source)


def context_figure(series: dict[str, list[dict]], title: str, source: str) -> Figure:
    """tau and per-user speed p50 against mean prompt tokens, one line per load point (rows of
    load's `by_context`: per turn of multi-turn sessions, or per prompt-length quartile)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4), dpi=110)
    for label, rows in series.items():
        x = [r["prompt_tokens_mean"] for r in rows]
        a1.plot(x, [r["tau_mean"] for r in rows], "o-", label=label, lw=1.2, ms=4)
        a2.plot(x, [r["tps_user_p50"] for r in rows], "o-", label=label, lw=1.2, ms=4)
    a1.set_xlabel("prompt tokens (mean of the group)")
    a1.set_ylabel("tau (tokens per decode step)")
    a2.set_xlabel("prompt tokens (mean of the group)")
    a2.set_ylabel("per-user speed p50 (tok/s)")
    a1.legend(fontsize=7)
    a2.grid(True, alpha=0.3)
    return _finish(fig, a1, title, source)


def sps_figure(curves: dict[str, tuple[list[float], list[float]]], title: str, source: str) -> Figure:
    """Tokens per second of one verification pass, SPS(B) = B / T(B), per request level."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2), dpi=110)
    for label, (b, step) in curves.items():
        ax.plot(b, [x / s for x, s in zip(b, step)], "-o", ms=2.5, lw=1.4, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch tokens B verified per pass")
    ax.set_ylabel("SPS(B) = B / step time (tokens/s)")
    ax.legend(fontsize=8)
    return _finish(fig, ax, title, source)


def fit_figure(points: list[dict], title: str, source: str) -> Figure:
    """Measured vs fitted round time per load point."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    for m in dict.fromkeys(p["method"] for p in points):
        pts = [p for p in points if p["method"] == m]
        ax.scatter(
            [p["round_s"] * 1e3 for p in pts],
            [p["round_s_fitted"] * 1e3 for p in pts],
            color=METHOD_COLORS.get(m),
            label=m,
        )
    lo = min(min(p["round_s"], p["round_s_fitted"]) for p in points) * 1e3 * 0.9
    hi = max(max(p["round_s"], p["round_s_fitted"]) for p in points) * 1e3 * 1.1
    ax.plot([lo, hi], [lo, hi], color="#999999", lw=1)
    ax.set_xlabel("measured round time (ms)")
    ax.set_ylabel("fitted round time (ms)")
    ax.legend(fontsize=8)
    return _finish(fig, ax, title, source)


def svg_text(fig: Figure) -> str:
    """The figure as an inline <svg> element: no XML prologue, DOCTYPE, metadata, comments or
    namespace URLs (inline SVG in HTML needs none), text drawn as paths."""
    import io
    import re

    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "path", "svg.hashsalt": "dsbench"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>|<!--.*?-->", "", svg, flags=re.S)  # comments echo the figure's text
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    return svg.replace("xlink:href=", "href=")
