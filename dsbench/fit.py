"""`dsbench fit`: fit L = (T_draft + T_verify) / tau to live load results.

Collects one row per load point (method, R in flight, tau and drafts verified per round from the
engine's counters, round time = tau x mean TPOT), fits core.latency, and writes a fit file holding
the parameters with uncertainties, every point's relative error (flagged past a threshold), the
fitted model tabulated as a profile (source "fitted") and the measured acceptance per method, so
that `dsbench sweep --model FILE` predicts frontiers at concurrencies not measured. With a
profile, T_verify is that profile's step time times a fitted scale (how far the served engine is
from the profile); with acceptance curves, tau for engines that expose no speculative counters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import FIT_DOMAIN, FitConfig
from .core.acceptance import expected_tau
from .core.latency import LatencyFit, fit_latency, mape, relative_errors
from .core.methods import METHODS
from .documents import conditional_of
from .errors import InputError
from .readers import ACCEPTANCE_SCHEMA, FIT_SCHEMA, PROFILE_SCHEMA, Profile, read_acceptance, read_load, read_profile
from .store import Store, nan_to_none, provenance


def _split(ref: str, default: str | None) -> tuple[str | None, str]:
    method, sep, path = ref.partition("=")
    return (method, path) if sep and method in METHODS else (default, ref)


def _curve_tau(curves: list, method: str, path) -> tuple[float, int]:
    """E[tau] (tokens per round) and drafts verified per round for `method` from acceptance curves
    (mean over their domains, full-length verification)."""
    mine = [c for c in curves if c.method == method]
    if not mine:
        raise InputError(f"{path}: no speculative counters for {method}, and no {method} curve in --acceptance")
    g = METHODS[method].gamma(min(len(c.conditional) for c in mine))
    return float(np.mean([expected_tau(c.conditional[:g]) for c in mine])), g


def collect_points(cfg: FitConfig, curves: list) -> list[dict]:
    """One row per usable load point: method, requests, batch_tokens, tau (and where it came
    from: the engine's counters, or `curves` for engines without them), round_s, conditional."""
    rows = []
    for ref in cfg.results:
        method, path = _split(ref, cfg.method)
        data = read_load(path)
        method = method or (data.get("config") or {}).get("method")  # as `dsbench load --method` recorded it
        for pt in data["points"]:
            spec = pt["spec"]  # engine-neutral (documents.SpecWindow)
            drafted = spec["state"] == "active"
            m = method or ("no-spec" if not drafted else None)
            if m is None:
                raise InputError(
                    f"{path}: point {pt.get('label')} has speculative counters; name its method "
                    "(METHOD=PATH, --method, or `dsbench load --method` when measuring)"
                )
            if m not in METHODS:
                raise InputError(f"{path}: unknown method {m!r}")
            tpot = pt.get("tpot_s_mean")
            r = pt.get("concurrency") or (
                (pt.get("request_throughput_req_s") or 0) * (pt.get("e2e_s_mean") or 0)
            )  # Little's law
            if not tpot or not r:
                continue  # a point without finished requests says nothing about latency
            if m == "no-spec":
                tau, verified, cond, tau_src = 1.0, 0.0, [], "no drafts"
            elif spec["measured"] and spec["tau"] and spec["draft_tokens_per_step"] is not None:
                # tokens per decode step, the round the model times (not vLLM's per drafted step)
                tau, verified = spec["tau"], spec["draft_tokens_per_step"]
                cond = conditional_of(spec)
                tau_src = f"engine ({spec['engine']}, {spec['source']})"
            elif curves:
                (tau, verified), cond, tau_src = _curve_tau(curves, m, path), [], f"acceptance file ({cfg.acceptance})"
            else:
                raise InputError(
                    f"{path}: point {pt.get('label')} has no speculative figures for {m} (engine metrics: "
                    f"{spec['state']}); give --acceptance for its tau"
                )
            rows.append(
                {
                    "source": str(path),
                    "label": pt.get("label"),
                    "method": m,
                    "requests": float(r),
                    "tau_source": tau_src,
                    "batch_tokens": float(r) * (1 + verified),
                    "tau": float(tau),
                    "tpot_s": float(tpot),
                    "round_s": float(tau) * float(tpot),
                    "rounds": float(spec.get("decode_steps") or 0),
                    "conditional": cond,
                    "conditional_exact": bool(spec.get("conditional_exact")),
                }
            )
    if not rows:
        raise InputError("no load point with finished requests in the given results")
    return rows


def run_fit(cfg: FitConfig) -> dict:
    """Fit, and return the fit document (the schema `dsbench sweep --fit` reads)."""
    cfg.validate()
    given = read_acceptance(cfg.acceptance) if cfg.acceptance else []
    rows = collect_points(cfg, given)
    col = {k: np.array([r[k] for r in rows]) for k in ("method", "requests", "batch_tokens", "round_s")}
    prof = read_profile(cfg.profile) if cfg.profile else None
    known = None
    if prof is not None:
        surface = prof.surface()
        known = np.array([float(surface.step_time(b, r)) for b, r in zip(col["batch_tokens"], col["requests"])])
    try:
        f = fit_latency(col["method"], col["requests"], col["batch_tokens"], col["round_s"], cfg.tile, known)
    except ValueError as e:
        raise InputError(str(e)) from None
    pred = np.array([float(f.t_draft(m, r)) for m, r in zip(col["method"], col["requests"])]) + f.t_verify(
        col["batch_tokens"], known, col["requests"]
    )
    rel = relative_errors(pred, col["round_s"])
    points = []
    for r, p, e in zip(rows, pred, rel):
        points.append(
            {k: r[k] for k in ("source", "label", "method", "requests", "batch_tokens", "tau", "tau_source", "round_s")}
            | {
                "round_s_fitted": float(p),
                "rel_error": float(e),
                "flagged": bool(abs(e) * 100 > cfg.flag_pct),
                "tps_user_measured": r["tau"] / r["round_s"],
                "tps_user_fitted": r["tau"] / float(p),
            }
        )
    curves = _acceptance(rows)
    return {
        "schema": FIT_SCHEMA,
        "provenance": provenance(),
        "source": "fitted",
        "inputs": cfg.results,
        "formula": (
            "L = (T_draft(R) + T_verify(B, R)) / tau; T_verify = scale * step time of " + str(prof.path)
            if prof
            else "L = (T_draft(R) + T_verify(B, R)) / tau; T_verify(B, R) = t0 + kv * R + slope * max(0, Q(B) - knee), "
            "Q(B) = tile * ceil(B / tile)"
        )
        + "; T_draft(R) = a + c * R per method",
        "profile_input": str(prof.path) if prof else None,
        "params": _params(f),
        "mape_pct": mape(pred, col["round_s"]),
        "flag_pct": cfg.flag_pct,
        "flagged": sum(p["flagged"] for p in points),
        "points": points,
        "requests_measured": [float(col["requests"].min()), float(col["requests"].max())],
        "methods_measured": list(dict.fromkeys(r["method"] for r in rows)),
        "profile": _profile(f, rows, curves, prof, cfg.max_requests),
        "acceptance": curves + [_acceptance_doc(c) for c in given if c.method not in {x["method"] for x in curves}],
    }


def _params(f: LatencyFit) -> dict:
    if f.scale is not None:
        out = {"scale": {"value": f.scale, "unit": "x profile"}}
    else:
        out = {
            "t0": {"value": f.t0, "unit": "s"},
            "kv": {"value": f.kv, "unit": "s/request"},
            "slope": {"value": f.slope, "unit": "s/token"},
            "knee": {"value": f.knee, "unit": "tokens"},
            "tile": {"value": f.tile, "unit": "tokens", "fixed": True},
        }
    for m, (a, c) in f.draft.items():
        out[f"{m}.a"] = {"value": a, "unit": "s"}
        out[f"{m}.c"] = {"value": c, "unit": "s/request"}
    for name, p in out.items():
        p["value"] = float(p["value"])
        if name in f.sigma:
            p["sigma"] = f.sigma[name]
        if name in f.pinned:
            p["fixed"] = True
            into = "each method's c" if name == "kv" else "t0"
            p["note"] = f"not identifiable without no-spec points: folded into {into}"
        elif name in f.sigma and (f.sigma[name] is None or f.sigma[name] > abs(p["value"])):
            p["note"] = "poorly determined: these points cannot separate it from the other parameters"
    return out


def _acceptance(rows: list[dict]) -> list[dict]:
    """Per method, the conditional acceptance pooled over points (weighted by rounds)."""
    out = []
    for m in dict.fromkeys(r["method"] for r in rows):
        cs = [(r["rounds"], r["conditional"]) for r in rows if r["method"] == m and r["conditional"]]
        if not cs:
            continue
        g = min(len(c) for _, c in cs)
        w = np.array([n for n, _ in cs])
        cond = (np.array([c[:g] for _, c in cs]) * w[:, None]).sum(0) / w.sum()
        exact = all(r["conditional_exact"] for r in rows if r["method"] == m and r["conditional"])
        note = "pooled from the engine's figures over the load points" + (
            ""
            if exact
            else "; conditional derived from per-position survival (assumes every drafted step drafted the full K)"
        )
        out.append(
            {
                "schema": ACCEPTANCE_SCHEMA,
                "source": "measured",
                "note": note,
                "method": m,
                "domain": FIT_DOMAIN,
                "gamma": g,
                "conditional": [float(min(max(x, 0.0), 1.0)) for x in cond],
            }
        )
    return out


def _acceptance_doc(c) -> dict:
    """An --acceptance curve carried into the fit file as it was (its own source label)."""
    return {
        "schema": ACCEPTANCE_SCHEMA,
        "source": c.source,
        "method": c.method,
        "domain": FIT_DOMAIN,
        "gamma": len(c.conditional),
        "conditional": list(c.conditional),
        "note": f"from {c.path} ({c.domain})",
    }


def _profile(
    f: LatencyFit, rows: list[dict], curves: list[dict], prof: Profile | None, max_requests: int | None
) -> dict:
    """The fitted model tabulated as a profile/1: the given profile's points scaled, or the fitted
    form on a grid at R = 1 and 8x the most measured (linear in R between: the KV term). Its
    memory cap: `max_requests` (fit --max-requests), else the given profile's, else none."""
    r_max = max(r["requests"] for r in rows) * 8
    gammas = {c["method"]: c["gamma"] for c in curves}
    draft = {}
    for m in f.draft:
        g = gammas.get(m, METHODS[m].gamma(7))
        draft[m] = {
            "points": [{"requests": r, "gamma": g, "step_s": float(max(0.0, f.t_draft(m, r)))} for r in (1.0, r_max)]
        }
    if prof is not None:
        points = [
            {"batch_tokens": b, "requests": r, "step_s": float(f.scale * s)}
            for b, r, s in zip(prof.batch_tokens, prof.requests, prof.step_s)
        ]
        return {
            "schema": PROFILE_SCHEMA,
            "source": "fitted",
            "device": prof.device,
            "model": prof.model,
            "context_len": prof.context_len,
            "max_requests": max_requests or prof.max_requests,
            "points": points,
            "draft": draft,
        }
    b_max = max(r["batch_tokens"] for r in rows) * 8
    grid = set(np.unique(np.geomspace(1, b_max, 60).round()).tolist()) | {max(1.0, round(f.knee)), round(f.knee) + 1}
    if f.tile:
        grid |= {float(k * f.tile + d) for k in range(1, int(b_max // f.tile) + 1) for d in (0, 1)}
    grid = sorted(b for b in grid if b >= 1)
    points = [
        {"batch_tokens": b, "requests": r, "step_s": float(f.t_verify(b, requests=r))}
        for r in (1.0, r_max)
        for b in grid
    ]
    return {
        "schema": PROFILE_SCHEMA,
        "source": "fitted",
        "device": {"name": "fitted"},
        "model": {"name": "fitted"},
        "context_len": 1,
        "context_note": "the served engine's own contexts (the load test's); the fit has no context axis",
        "max_requests": max_requests,
        "points": points,
        "draft": draft,
    }


def save(doc: dict, store: Store) -> Path:
    """fit.json: parameters, per-point errors, and the profile and acceptance curves they imply
    (an undetermined sigma is NaN, null in JSON)."""
    return store.document("fit.json", nan_to_none({"schema": FIT_SCHEMA, **doc}), "FitDoc")
