"""Figures (matplotlib, headless). Each takes result rows and returns a Figure; callers save it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# One colour per method everywhere dsbench draws.
METHOD_COLORS = {"no-spec": "#7f7f7f", "mtp-1": "#1f77b4", "dflash": "#2ca02c", "eagle3": "#ff7f0e", "dspark": "#d62728"}


def frontier_figure(rows: list[dict], slo: float | None, title: str, subtitle: str = "",
                    best: dict[str, dict] | None = None) -> Figure:
    """Throughput per GPU vs per-user speed, one line per method, the SLO as a vertical line.

    `rows`: dicts with method, tps_user, throughput_tok_s_gpu (ordered by concurrency).
    `best`: per method the chosen point at the SLO ({"tps_user", "throughput"}), starred.
    """
    fig, ax = plt.subplots(figsize=(8.5, 5.5), dpi=110)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for m in methods:
        pts = [r for r in rows if r["method"] == m]
        color = METHOD_COLORS.get(m)
        ax.plot([r["tps_user"] for r in pts], [r["throughput_tok_s_gpu"] for r in pts], "-o", ms=2.5, lw=1.6,
                color=color, label=m)
        b = (best or {}).get(m)
        if b and b.get("feasible"):
            ax.plot([b["tps_user"]], [b["throughput"]], "*", ms=13, color=color, mec="black", mew=0.6, zorder=5)
    if slo:
        ax.axvline(slo, color="black", ls="--", lw=1)
        ax.annotate(f"SLO {slo:g} tok/s/user", (slo, 0), xycoords=("data", "axes fraction"), xytext=(4, 6),
                    textcoords="offset points", fontsize=8)
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


def save(fig: Figure, *paths) -> None:
    """Save a figure to each path (format from the suffix) and free it."""
    for p in paths:
        fig.savefig(p, bbox_inches="tight")
    plt.close(fig)
