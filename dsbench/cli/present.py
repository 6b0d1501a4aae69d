"""Every table and summary line the CLI prints (rich), one function per command's result.

Each takes the command's document (the dict it writes) and prints to stdout; nothing here
computes a figure. Tables say where their numbers come from (measured, simulated, fitted...).
"""

from __future__ import annotations

from rich.table import Table

from ._common import console, err, fmt


def fit(doc: dict) -> None:
    """`dsbench fit`: the parameters with their uncertainties, then every point's error."""
    params = Table(title="Fitted latency model (source: fitted)", caption=doc["formula"], caption_justify="left")
    for col in ("parameter", "value", "± 1 sigma", "unit"):
        params.add_column(col, justify="left" if col in ("parameter", "unit") else "right")
    for name, p in doc["params"].items():
        sigma = "fixed" if p.get("fixed") else fmt(p.get("sigma"), ".3g")
        poor = "poorly" in p.get("note", "")
        params.add_row(name, format(p["value"], ".4g"), f"[yellow]{sigma}[/]" if poor else sigma, p["unit"])
    console.print(params)
    poor = [n for n, p in doc["params"].items() if "poorly" in p.get("note", "")]
    if poor:
        console.print(
            f"[yellow]poorly determined[/] (1 sigma > value): {', '.join(poor)} — these points cannot tell them apart; "
            "measure where they differ (more concurrency levels, another policy, no-spec points)",
            highlight=False,
        )
    pts = Table(
        title=f"Per point: MAPE {doc['mape_pct']:.1f} %, {doc['flagged']} flagged (> {doc['flag_pct']:g} %)",
        caption="round time = tau x mean TPOT (measured) vs the model (fitted)",
        caption_justify="left",
    )
    for col in ("method", "point", "R", "B", "tau", "round ms", "fitted ms", "error"):
        pts.add_column(col, justify="left" if col in ("method", "point") else "right")
    for p in doc["points"]:
        err_s = f"{p['rel_error'] * 100:+.1f} %"
        pts.add_row(
            p["method"],
            str(p["label"]),
            f"{p['requests']:.0f}",
            f"{p['batch_tokens']:.0f}",
            f"{p['tau']:.2f}",
            f"{p['round_s'] * 1e3:.2f}",
            f"{p['round_s_fitted'] * 1e3:.2f}",
            f"[yellow]{err_s} flagged[/]" if p["flagged"] else err_s,
        )
    console.print(pts)


def calibration(doc: dict, path) -> None:
    """`dsbench calibrate`: the temperatures and the held-out ECE before and after."""
    before, after = doc["before"], doc["after"]
    console.print(f"temperatures per position: {' '.join(f'{t:.2f}' for t in doc['temperatures'])}", highlight=False)
    console.print(
        f"held-out ECE {fmt(before['ece_mean'], '.2%')} -> {fmt(after['ece_mean'], '.2%')} (per position "
        f"before: {' '.join(fmt(x, '.3f') for x in before['ece'])}; "
        f"after: {' '.join(fmt(x, '.3f') for x in after['ece'])})",
        highlight=False,
    )
    console.print(f"wrote {path}", style="dim", highlight=False)


def _deployment(inp: dict) -> str:
    dep = inp.get("deployment") or {}
    where = f"{inp['gpus']} x {inp['device']}" if inp.get("gpus", 1) > 1 else str(inp["device"])
    if dep and (inp.get("gpus", 1) > 1 or dep.get("ep", 1) > 1):
        where += f" tp{dep['tp']}/dp{dep['dp']}/ep{dep['ep']}"
    if dep.get("weight_dtype", "bf16") != "bf16" or dep.get("kv_dtype", "bf16") != "bf16":
        where += f" {dep['weight_dtype']}/{dep['kv_dtype']} KV"
    return where


def _extrapolation(inp: dict) -> str:
    """Where a sweep's step times go beyond what was measured (a roofline is exact everywhere)."""
    top = max(inp["concurrency"])
    measured = inp.get("measured_requests")
    if measured:  # a fit: what the load test covered, not the tabulated profile's range
        if top > measured[1]:
            return f"; the fit measured {measured[0]:g}-{measured[1]:g} requests: rows beyond are extrapolated"
        return ""
    if inp["profile_source"] != "roofline" and inp["profiled_max_requests"] < top:
        return f"; step times beyond {inp['profiled_max_requests']} requests are extrapolated"
    return ""


def sweep(s: dict) -> None:
    """`dsbench sweep`: per method, the best throughput at the SLO and what it takes."""
    from ..documents import traffic_modelled

    inp = s["inputs"]
    table = Table(
        title=f"Best throughput at per-user speed >= {s['slo']:g} tok/s  "
        f"({_deployment(inp)}, {inp['model']}, {inp['domain']} traffic)",
        caption=(
            f"{inp['results_source']} on a {inp['profile_source']} profile ({traffic_modelled(inp)})"
            + (f" with {', '.join(inp['acceptance_sources'])}-derived acceptance" if inp["acceptance_sources"] else "")
            + "".join(f" ({p} protocol)" for p in inp.get("acceptance_protocols") or [])
            + "; per-user speed = tau / round time; budget = tokens verified per request per round"
            + _extrapolation(inp)
            + (
                f"; concurrency capped at {inp['max_concurrency_memory']} where the KV cache fills memory"
                " (less with a drafter's weights and KV)"
                if inp["capped_by_memory"]
                else ""
            )
            + (
                f"; gamma = the best of {inp['gamma_search'][0]}..{inp['gamma_search'][-1]} at the SLO"
                if inp.get("gamma_search")
                else ""
            )
        ),
        caption_justify="left",
    )
    for col, just in [
        ("method", "left"),
        ("policy", "left"),
        ("gamma", "right"),
        ("tok/s/GPU", "right"),
        ("conc.", "right"),
        ("tok/s/user", "right"),
        ("budget", "right"),
        (f"vs {s['baseline']}", "right"),
        ("peak/user", "right"),
    ]:
        table.add_column(col, justify=just, no_wrap=True)
    for name, m in s["methods"].items():
        if m["feasible"]:
            table.add_row(
                name + (" [yellow](extrapolated)[/]" if m.get("extrapolated") else ""),
                m["policy"],
                str(m["gamma"]),
                fmt(m["throughput"], ",.0f"),
                str(m["concurrency"]),
                fmt(m["tps_user"], ".1f"),
                fmt(m["verify_budget"], ".2f"),
                fmt(m["ratio"], ".2f", "—") + ("x" if m["ratio"] is not None else ""),
                fmt(m["peak_tps_user"], ".0f"),
            )
        else:
            why = f" ({m['why']})" if m.get("why") else ""
            table.add_row(
                name,
                m.get("policy") or "—",
                fmt(m.get("gamma"), "d", "—"),
                f"[yellow]infeasible{why}[/]",
                *["—"] * 4,
                fmt(m.get("peak_tps_user"), ".0f", "—"),
            )
    console.print(table)
    for line in inp.get("profile_repairs") or []:
        err.print(f"[yellow]profile repaired:[/] {line}", highlight=False)
    for method, n in (inp.get("draft_repairs") or {}).items():
        err.print(f"[yellow]profile repaired:[/] {n} {method} drafter time(s) raised to stay monotone", highlight=False)
    if inp.get("profile_repairs_within_spread"):
        err.print(
            f"[dim]{inp['profile_repairs_within_spread']} profile point(s) raised within their measured spread "
            "to keep step time monotone[/]",
            highlight=False,
        )


def profile(doc: dict, path) -> None:
    """`dsbench profile`: a roofline profile in one line; a measured one as its table of step times."""
    if doc["source"] == "roofline":
        dep = doc.get("deployment") or {}
        where = f"{doc['device']['gpus']} x {doc['device']['name']}"
        if doc["device"]["gpus"] > 1 or dep.get("ep", 1) > 1:
            where += f" (tp {dep['tp']}, dp {dep['dp']}, ep {dep['ep']})"
        mem = doc.get("memory", {}).get("no-spec")
        weights = f", weights {mem['target_weights'] / 1e9:.1f} GB/GPU" if mem else ""
        console.print(
            f"wrote {path}: roofline profile of {doc['model']['name']} on {where}, {doc['dtype']} weights, "
            f"{doc.get('kv_dtype', 'bf16')} KV{weights}; KV cache fits {doc['max_requests']} requests at "
            f"context {doc['context_len']}",
            highlight=False,
        )
        caps = {m: d["max_requests"] for m, d in doc["draft"].items() if "max_requests" in d}
        if caps:
            console.print(
                "  with each drafter's weights and KV: " + ", ".join(f"{m} {n}" for m, n in caps.items()),
                highlight=False,
            )
        return
    table = Table(
        title=f"Verification step time — {doc['model']['name']} on {doc['device']['name']} "
        f"({doc['dtype']}, context {doc['context_len']}, {doc['device']['threads']} threads; measured)"
    )
    for col in ("requests", "batch tokens", "tokens/request", "step ms", "SPS", "cv"):
        table.add_column(col, justify="right")
    for p in doc["points"]:
        table.add_row(
            str(p["requests"]),
            str(p["batch_tokens"]),
            str(p["tokens_per_request"]),
            f"{p['step_s'] * 1e3:.3f}",
            f"{1 / p['step_s']:.1f}",
            f"{p['cv']:.1%}" + (" [yellow]noisy[/]" if p.get("noisy") else ""),
        )
    console.print(table)
    for line in doc.get("noisy_points", []):
        err.print(f"[yellow]noisy:[/] {line}", highlight=False)
    if doc.get("noise_note"):
        err.print(f"[yellow]warning:[/] {doc['noise_note']}", highlight=False)
    for method, drafts in doc.get("draft", {}).items():
        cells = ", ".join(f"R={p['requests']} g={p['gamma']}: {p['step_s'] * 1e3:.2f} ms" for p in drafts["points"])
        console.print(f"draft {method}: {cells}", highlight=False)
    scaling = doc["scaling"]
    if scaling["measured_layers"] != [scaling["model_layers"]]:
        console.print(
            f"extrapolated from {scaling['measured_layers']} layers to {scaling['model_layers']}: {scaling['formula']}",
            highlight=False,
        )
    if doc.get("oom"):
        err.print(
            f"[yellow]stopped:[/] {doc['oom']}; largest batch that fit: {doc['largest_batch_tokens']} tokens",
            highlight=False,
        )
    console.print(f"wrote {path}", style="dim", highlight=False)


def accept(summary: dict) -> None:
    """`dsbench accept --target`: accepted length per dataset, measured in process, with DeepSpec's
    columns (#propose, accept_len, verify_rate, accept_rate@k) under --protocol deepspec."""
    deepspec = summary["protocol"] == "deepspec"
    table = Table(
        title=f"Accepted length — {summary['method']}, gamma {summary['gamma']} (measured)",
        caption=f"protocol {summary['protocol']}, {summary['dtype']}, {summary['max_new_tokens']} new tokens"
        + ("; @k = DeepSpec's accept_rate@k (drafts 1..k+1 all accepted)" if deepspec else ""),
    )
    g = summary["gamma"]
    cols = ["dataset", "samples", "rounds"]
    cols += ["#propose", "accept_len", "verify_rate"] if deepspec else ["tau", "mean proposal", "survival by position"]
    cols += [f"@{k}" for k in range(g)] if deepspec else []
    for col in cols:
        table.add_column(col, justify="left" if col in ("dataset", "survival by position") else "right")
    for name, f in summary["datasets"].items():
        row = [name, str(f["samples"]), str(f["rounds"])]
        if deepspec:  # DeepSpec's table prints these with these precisions
            row += [fmt(f["mean_proposal"], ".2f") + "+1", fmt(f["tau"], ".2f"), fmt(f["verify_rate"], ".4f")]
            row += [fmt(s, ".4f") for s in f["survival"]]
        else:
            row += [
                fmt(f["tau"], ".3f"),
                fmt(f["mean_proposal"], ".2f"),
                " ".join(fmt(s, ".2f") for s in f["survival"]),
            ]
        table.add_row(*row)
    console.print(table)
    console.print("wrote " + (", ".join(summary["files"]) or "nothing (no drafter)"), style="dim", highlight=False)


def accept_backend(summary: dict) -> None:
    """`dsbench accept --backend`: what the server's counters say, per workload."""
    for name, d in summary["datasets"].items():
        sp = d["spec"]
        console.print(
            f"{name}: tau {fmt(sp['tau_drafted'] or sp['tau'], '.3f')} per drafted step, {fmt(sp['tau'], '.3f')} "
            f"per decode step, acceptance {fmt(sp['acceptance_rate'], '.1%')} ({d['requests_ok']}/{d['requests']} "
            f"requests, {d['engine']}, {sp['source']})",
            highlight=False,
        )
    console.print("wrote " + ", ".join(summary["files"]), style="dim", highlight=False)


def load_point(s: dict) -> str:
    """`dsbench load`: one finished point in a line (printed as the run goes)."""
    errs = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors"].items()))
    line = f"{s['label']}: {s['requests_ok']} ok, {s['requests_failed']} failed" + (f" ({errs})" if errs else "")
    if s.get("requests_cancelled"):
        line += f", {s['requests_cancelled']} cancelled at the drain time"
    if s.get("output_tok_s"):
        line += f"; {s['output_tok_s']:.0f} tok/s, {fmt(s.get('tps_user_mean'), '.1f')} tok/s/user"
    if s.get("slo_attainment") is not None:
        line += f"; {s['slo_attainment']:.0%} meet the SLO, goodput {fmt(s.get('goodput_requests_s'), '.2f')} req/s"
    return line


def load(doc: dict) -> None:
    """`dsbench load`: the points of a run, with where each figure came from."""
    from ..documents import sampling_text

    shown = sampling_text(doc.get("sampling"))
    source = (doc.get("server") or {}).get("source", "measured")
    what = (
        "all figures SIMULATED: the server is dsbench's simulator" if source == "simulated" else "all figures measured"
    )
    table = Table(
        title=f"Load test — engine: {doc.get('engine') or 'unknown'}; sampling: {shown} ({what})",
        caption="in flight = requests in flight over the window, time-averaged (what the server saw); "
        "req/s = completed requests / run; tok/s over the steady-state window; tok/s/user = decode tokens / "
        "decode time (p90: speed 90 % of requests reach); tau = tokens per decode step, τ/draft = 1 + accepted / "
        "drafted steps (vLLM's mean acceptance length); src: c = server counters, r = per-request, p = client proxy",
        caption_justify="left",
    )
    for col in (
        "point",
        "in flight",
        "ok",
        "failed",
        "cancel",
        "req/s",
        "tok/s",
        "tok/s/user",
        "p90/user",
        "TTFT50",
        "TTFT99",
        "TPOT50",
        "tau",
        "τ/draft",
        "accept",
        "src",
        "tok/chunk",
    ):
        table.add_column(col, justify="left" if col == "point" else "right", no_wrap=True)
    for s in doc["points"]:
        spec = s.get("spec") or {}
        src = {"server counters": "c", "per-request": "r", "client proxy": "p"}.get(spec.get("source"), "—")
        tau = fmt(spec.get("tau"), ".2f") if spec.get("state") != "unreadable" else "?"
        table.add_row(
            s["label"],
            fmt(s.get("concurrency_achieved"), ".1f"),
            str(s["requests_ok"]),
            str(s["requests_failed"]),
            str(s.get("requests_cancelled", 0)),
            fmt(s.get("request_throughput_req_s"), ".2f"),
            fmt(s.get("output_tok_s"), ",.0f"),
            fmt(s.get("tps_user_mean"), ".1f"),
            fmt(s.get("tps_user_p90"), ".1f"),
            fmt(s.get("ttft_s_p50") and s["ttft_s_p50"] * 1e3, ".0f") + " ms",
            fmt(s.get("ttft_s_p99") and s["ttft_s_p99"] * 1e3, ".0f") + " ms",
            fmt(s.get("tpot_s_p50") and s["tpot_s_p50"] * 1e3, ".1f") + " ms",
            tau,
            fmt(spec.get("tau_drafted"), ".2f"),
            fmt(spec.get("acceptance_rate"), ".0%"),
            src,
            fmt(s.get("tokens_per_chunk_mean"), ".2f"),
        )
    console.print(table)
    for note in doc.get("server_notes") or []:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    for s in doc["points"]:
        for key in ("chunk_warning", "window_warning", "timing_warning", "latency_pool_note", "aborted"):
            if s.get(key):
                err.print(f"[yellow]{s['label']}:[/] {s[key]}", highlight=False)
        spec = s.get("spec") or {}
        for w in spec.get("warnings") or []:
            err.print(f"[yellow]{s['label']}:[/] {w}", highlight=False)
        if spec.get("state") == "unreadable" and spec.get("unreadable_series"):
            err.print(
                f"[yellow]{s['label']}:[/] speculative series not understood: {', '.join(spec['unreadable_series'])}",
                highlight=False,
            )
        if s.get("requests_bad_usage"):
            err.print(
                f"[yellow]{s['label']}:[/] {s['requests_bad_usage']} responses reported impossible token counts "
                "(left out of token figures; see requests.jsonl usage_error)",
                highlight=False,
            )
        if s["requests_failed"] or s.get("requests_cancelled"):
            err.print(f"[yellow]{load_point(s)}[/]", highlight=False)


def search_step(label: str, c: int, reason: str, point, settings) -> str:
    """`dsbench search`: one measurement in a line (printed as the search goes)."""
    from ..core.search import judged

    lo, hi = point.interval(settings.level)
    ci = f" [{lo:.1f}, {hi:.1f}]" if hi - lo < float("inf") else ""
    state = judged(point, settings.slo, settings.ttft_slo_s, settings.repeats, settings.level)
    line = f"{label} c={c} ({reason}): {point.speed:.1f}{ci} tok/s/user, {point.throughput:.0f} tok/s -> {state}"
    return line + (f" (saturated: {point.saturated})" if point.saturated else "")


def search(doc: dict) -> None:
    """`dsbench search`: the best throughput per server at the SLO, and what it took."""
    slo = doc["slo"]
    simulated = any((m.get("server") or {}).get("source") == "simulated" for m in doc["methods"])
    table = Table(
        title=f"Highest throughput at {slo['statistic']} per-user speed >= {slo['tps_user']:g} tok/s"
        + (f", TTFT <= {slo['ttft_s']:g} s" if slo.get("ttft_s") else "")
        + (" (SIMULATED servers)" if simulated else " (measured)"),
        caption="best = the highest concurrency measured to meet the SLO; the true best lies below the next "
        "(failing) point's throughput, 'upper'; [..] = 95 % intervals over windows; n = measurements taken",
    )
    for col in ("server", "outcome", "conc.", "tok/s/GPU", "upper", "tok/s/user", f"vs {doc.get('baseline')}", "n"):
        table.add_column(col, justify="left" if col in ("server", "outcome") else "right")
    for m in doc["methods"]:
        b = m.get("best") or {}
        ci = b.get("throughput_ci") or [None, None]
        span = f" [{fmt(ci[0], ',.0f')}, {fmt(ci[1], ',.0f')}]" if ci[0] is not None else ""
        ratio = (doc.get("ratios") or {}).get(m["label"])
        table.add_row(
            m["label"] + (" *" if m["label"] == doc.get("best_method") else ""),
            m.get("outcome") or "under way",
            str(b.get("concurrency", "-")),
            fmt(b.get("throughput_tok_s_gpu"), ",.0f") + span,
            fmt(b.get("upper_throughput_tok_s_gpu"), ",.0f"),
            fmt(b.get("speed"), ".1f"),
            f"{ratio:.2f}x" if ratio else "-",
            str(m.get("measurements", 0)),
        )
    console.print(table)
    for m in doc["methods"]:
        if m.get("reason"):
            console.print(f"{m['label']}: {m['reason']}", style="dim", highlight=False)
        for note in m.get("notes") or []:
            err.print(f"[yellow]{m['label']}:[/] {note}", highlight=False)
