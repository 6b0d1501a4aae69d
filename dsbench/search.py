"""`dsbench search`: the highest throughput meeting a per-user speed SLO, measured live.

For each server (one at --url, or one per `--serve LABEL=COMMAND`, started and stopped here),
core/search.py chooses the concurrencies and load.LoadSession measures them; every point lands
in LABEL/ as an ordinary load run (load.json, requests.jsonl, points/) and in search.json as the
search goes. A search run again in the same --out resumes: the points already measured are
read back, not measured again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np

from .config import METHOD_NAMES, LoadConfig, Progress, SearchConfig
from .core import search as core
from .core.loadstats import window_figures
from .errors import InputError
from .live.engines import WAITING
from .load import DEFINITIONS, LoadSession, auth_headers, load_document, stopped
from .readers import SEARCH_SCHEMA
from .shipped import read_workload
from .store import LoadWriter, Store, provenance

TTFT_RISE = 10.0  # TTFT this many times the lowest concurrency's: requests queue (saturation)
PLATEAU = 0.05  # throughput gaining less than this share of the added requests' proportional gain


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def started(label: str, command: str, url: str | None, timeout_s: float, log: Path):
    """Start `command` (leading NAME=value words set its environment, as in a shell) in its own
    process group, its output to `log`; wait until it answers
    /v1/models, yield its base URL; stop the whole group afterwards, however the search ended."""
    port = _free_port() if "{port}" in command else None
    argv = shlex.split(command.replace("{port}", str(port)))
    env = dict(os.environ)
    while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):  # leading NAME=value: its environment
        name, _, value = argv.pop(0).partition("=")
        env[name] = value
    base = f"http://127.0.0.1:{port}" if port else url
    if not argv or not base:
        raise InputError(f"--serve {label}: give a command, with {{port}} in it or --url where it listens")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as e:
            raise InputError(f"--serve {label}: cannot start {argv[0]!r}: {e.strerror or e}") from None
    try:
        _wait_ready(label, proc, base, timeout_s, log)
        yield base
    finally:
        _stop(proc)


def _wait_ready(label: str, proc: subprocess.Popen, base: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise InputError(f"--serve {label}: the server exited with code {proc.returncode}: {tail[0][:200]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/v1/models", timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise InputError(f"--serve {label}: no answer at {base}/v1/models within {timeout_s:g} s (see {log})")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait_s)
            return


def _served_model(base: str, headers: dict) -> str:
    try:
        data = httpx.get(base + "/v1/models", headers=headers, timeout=10).json().get("data") or []
        return str(data[0]["id"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise InputError(f"{base}/v1/models names no model: pass --model") from None


def saturation(summary: dict, run, lowest_ttft_s: float | None, below: core.Measured | None) -> str | None:
    """Why a point is past what the server (or client) can hold, else None: failed requests,
    requests queued at the server (its waiting gauge over the window), TTFT risen TTFT_RISE times
    the lowest concurrency's, throughput that stopped rising over `below` (the next lower valid
    point: less than PLATEAU of the proportional gain), or a client that could not keep the
    concurrency asked."""
    failed, total = summary.get("requests_failed") or 0, summary.get("requests") or 0
    if total and failed / total > 0.01:
        return f"{failed} of {total} requests failed ({', '.join(summary.get('errors') or {})})"
    snaps = [snap for t, snap in run.scrapes if run.t0_ns <= t <= run.t1_ns] or [
        s for s in (run.before, run.after) if s is not None
    ]
    queued = [sum(snap.values.get(name, 0.0) for name in WAITING) for snap in snaps]
    if queued and np.mean(queued) >= 0.5:
        return f"the server queued {np.mean(queued):.1f} requests on average (its waiting-requests gauge)"
    ttft = summary.get("ttft_s_p50")
    if ttft and lowest_ttft_s and ttft > TTFT_RISE * lowest_ttft_s:
        return f"TTFT p50 {ttft:.2f} s is {ttft / lowest_ttft_s:.0f}x the lowest concurrency's (requests queue)"
    asked = summary.get("concurrency")
    thr = summary.get("output_tok_s_gpu") or 0.0
    if below is not None and asked and below.throughput > 0 and asked >= 1.5 * below.concurrency:
        gain, more = thr / below.throughput - 1, asked / below.concurrency - 1
        if gain < PLATEAU * more:
            return (
                f"throughput stopped rising: x{1 + gain:.2f} for x{1 + more:.1f} the requests of c={below.concurrency} "
                "(requests queue)"
            )
    held = summary.get("concurrency_achieved")
    if held is not None and asked and held < 0.8 * asked:
        return f"only {held:.1f} of {asked} requests were in flight (client or server could not hold the load)"
    return None


def point_document(p: core.Measured, order: list[int], s: core.SearchSettings) -> dict:
    lo, hi = p.interval(s.level)
    tlo, thi = p.throughput_interval(s.level)
    finite = lambda v: v if np.isfinite(v) else None  # noqa: E731  (a point with no speed measured has none)
    return {
        "concurrency": p.concurrency,
        "speed": finite(p.speed),
        "speed_ci": [finite(lo), finite(hi)],
        "throughput": finite(p.throughput),
        "throughput_ci": [finite(tlo), finite(thi)],
        "speeds": p.speeds,
        "throughputs": p.throughputs,
        "ttft_s": p.ttft_s,
        "saturated": p.saturated,
        "measurements": p.measurements,
        "verdict": core.judged(p, s.slo, s.ttft_slo_s, s.repeats, s.level),
        "order": [i for i, c in enumerate(order) if c == p.concurrency],
    }


def _measured_from(doc: dict) -> tuple[dict[int, core.Measured], list[int]]:
    points = {
        d["concurrency"]: core.Measured(
            d["concurrency"], d["speeds"], d["throughputs"], d["ttft_s"], d["saturated"], d["measurements"]
        )
        for d in doc.get("points") or []
    }
    order = sorted((i, d["concurrency"]) for d in doc.get("points") or [] for i in d["order"])
    return points, [c for _, c in order]


def fitted(points: dict[int, core.Measured]) -> dict | None:
    """The latency model the search steered by, over every valid point: TPOT = a + b C (s)."""
    valid = [p for p in points.values() if not p.saturated and p.speeds]
    fit = core.affine_fit(valid)
    if fit is None:
        return None
    return {"tpot_s": fit[0], "tpot_s_per_request": fit[1], "points": len(valid), "source": "fitted"}


class Search:
    """One server's search: its load run (LABEL/), its state, and the step loop."""

    def __init__(self, cfg: SearchConfig, label: str, command: str | None, store: Store, prior: dict | None):
        self.cfg, self.label, self.command = cfg, label, command
        self.settings = cfg.settings()
        self.points, self.order = _measured_from(prior or {})
        self.doc = prior or {"label": label, "command": command, "points": []}
        self.doc.update(label=label, method=label if label in METHOD_NAMES else None, command=command)
        resume = bool(self.points)
        self.writer = LoadWriter(Store(store.out / label, store.force), resume=resume)

    def load_config(self, url: str, model: str) -> LoadConfig:
        client = {
            f.name: getattr(self.cfg, f.name) for f in dataclasses.fields(LoadConfig) if hasattr(self.cfg, f.name)
        }
        client.update(url=url, model=model, concurrency=[self.settings.start], out=self.cfg.out / self.label)
        client.update(method=self.doc["method"], requests=None, slo=self.cfg.slo, slo_ttft_s=self.cfg.slo_ttft_s)
        return LoadConfig(**client)

    async def run(self, url: str, headers: dict, progress: Progress | None, on_step, save) -> None:
        cfg = self.cfg
        model = cfg.model or _served_model(url, headers)
        lcfg = self.load_config(url, model)
        lcfg.validate()
        prompts = [p for w in cfg.workloads for p in read_workload(w)]
        session = LoadSession(lcfg, self.writer, progress, headers, prompts, lcfg.sampling())
        info = await session.open()
        load_doc = self.writer.previous or load_document(lcfg)
        load_doc.update(engine=info.engine, server_notes=info.notes, served_models=info.served, server=info.server)
        self.doc.update(url=url, model=model, engine=info.engine, server=info.server)
        while True:
            step = core.next_step(self.points, self.settings, self.order)
            self.doc["next"] = {"concurrency": step.concurrency, "reason": step.reason}
            if step.concurrency is None:
                self._finish(step)
                save()
                return
            c = step.concurrency
            warmup_s = self.warmup_s(c)
            spec = dataclasses.replace(
                lcfg, concurrency=[c], warmup_s=warmup_s, duration_s=warmup_s + cfg.duration_s - cfg.warmup_s
            ).points()[0]
            n = self.points[c].measurements + 1 if c in self.points else 1
            summary, run, records = await session.measure(spec, label=f"c={c}" + (f"-{n}" if n > 1 else ""))
            load_doc["points"].append(summary)
            self.writer.summary(load_doc)
            self._add(c, summary, run, records)
            save()
            if on_step:
                on_step(self.label, c, step.reason, self.points[c], self.settings)
            why = stopped(run, summary)
            if why:
                self.doc["stopped"] = why
                self._finish(core.Step(None, str(why), "stopped"))
                save()
                return

    def warmup_s(self, c: int) -> float:
        """The warm-up for a point at `c`: --warmup-s, or 1.5 request lifetimes if longer (every
        stream starts at once, so the window must open after the first ones have ended, or no
        request is sent inside it). A lifetime is --max-tokens at the speed the fit predicts at
        `c`, no faster than the highest point below it measured."""
        below = [p for p in self.points.values() if p.concurrency <= c and p.speeds]
        if not below:
            return self.cfg.warmup_s
        speed = max(below, key=lambda p: p.concurrency).speed
        fit = fitted(self.points)
        if fit and fit["tpot_s"] + fit["tpot_s_per_request"] * c > 0:
            speed = min(speed, 1 / (fit["tpot_s"] + fit["tpot_s_per_request"] * c))
        return max(self.cfg.warmup_s, 1.5 * self.cfg.max_tokens / speed)

    def _add(self, c: int, summary: dict, run, records: list[dict]) -> None:
        cfg = self.cfg
        parts = window_figures(records, run.t0_ns, max(run.t1_ns, run.t0_ns + 1), cfg.windows, cfg.slo_stat)
        p = self.points.setdefault(c, core.Measured(c))
        p.speeds += [w["speed"] for w in parts if w["speed"] is not None]
        p.throughputs += [w["throughput"] / cfg.gpus for w in parts]
        p.ttft_s = summary.get("ttft_s_mean" if cfg.slo_stat == "mean" else f"ttft_s_{cfg.slo_stat}")
        lowest = min(self.points)
        low_ttft = self.doc.get("lowest_ttft_s") if lowest < c else None
        if lowest == c:
            self.doc["lowest_ttft_s"] = summary.get("ttft_s_p50")
        valid = [q for q in self.points.values() if q.concurrency < c and not q.saturated and q.throughputs]
        below = max(valid, key=lambda q: q.concurrency) if valid else None
        p.saturated = saturation(summary, run, low_ttft, below)
        p.measurements += 1
        self.order.append(c)
        if not parts or all(w["speed"] is None for w in parts):
            self.doc.setdefault("notes", []).append(
                f"c={c}: no request sent inside the window finished in it or the drain (lengthen --duration-s)"
            )
        self._publish()

    def _publish(self) -> None:
        s = self.settings
        self.doc["points"] = [point_document(self.points[c], self.order, s) for c in sorted(self.points)]
        self.doc["measurements"] = sum(p.measurements for p in self.points.values())
        self.doc["fit"] = fitted(self.points)

    def _finish(self, step: core.Step) -> None:
        self._publish()
        lo, hi, notes = core.bracket(self.points, self.settings)
        notes = list(dict.fromkeys([*(self.doc.get("notes") or []), *notes]))
        self.doc.update(outcome=step.outcome, reason=step.reason, notes=notes, complete=step.outcome != "budget")
        self.doc["bracket"] = [lo.concurrency if lo else None, hi.concurrency if hi else None]
        if lo is None:
            self.doc["best"] = None
            return
        best = point_document(lo, self.order, self.settings)
        upper = hi.throughput if hi is not None and step.outcome == "bracketed" else None
        self.doc["best"] = {
            "concurrency": lo.concurrency,
            "throughput_tok_s_gpu": lo.throughput,
            "throughput_ci": best["throughput_ci"],
            "speed": lo.speed,
            "speed_ci": best["speed_ci"],
            "upper_throughput_tok_s_gpu": upper,  # the true best lies between these (throughput rises with C)
            "source": self.doc.get("server", {}).get("source", "measured"),
        }


def _prior(store: Store) -> dict | None:
    """An earlier search in the same --out to resume (None: none there, or --force)."""
    path = store.path("search.json")
    if store.force or not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{path}: not a search document; pass --force to start over") from None


def _check_resumable(prior: dict, cfg: SearchConfig) -> None:
    was, now = prior.get("config") or {}, cfg.recorded()
    differ = sorted(k for k in now if k not in ("max_measurements", "serve") and was.get(k) != now[k])
    commands = {m["label"]: m.get("command") for m in prior.get("methods") or [] if m.get("points")}
    differ += [f"serve {k}" for k, c in cfg.servers() if k in commands and commands[k] != c]
    if differ:
        flags = ", ".join("--" + k.replace("_", "-") for k in differ)
        raise InputError(
            f"{cfg.out}/search.json was searched with other settings ({flags}): pass --force to start over, "
            "or choose another --out"
        )


def run_search(cfg: SearchConfig, store: Store, progress: Progress | None = None, on_step=None) -> dict:
    """Search every server in turn, writing search.json as each point arrives; returns it.
    `on_step(label, concurrency, reason, measured point, settings)` after each measurement."""
    cfg.validate()
    headers = auth_headers(cfg)
    prior = _prior(store)
    if prior is not None:
        _check_resumable(prior, cfg)
    store.adopt("search.json") if prior is not None else store.claim("search.json")
    before = {m["label"]: m for m in (prior or {}).get("methods") or []}
    doc = {
        "schema": SEARCH_SCHEMA,
        "provenance": provenance(),
        "config": cfg.recorded(),
        "slo": {"tps_user": cfg.slo, "statistic": cfg.slo_stat, "ttft_s": cfg.slo_ttft_s},
        "definitions": {
            "best": "the highest concurrency measured to meet the SLO, and its throughput per GPU; the true best lies "
            "between it and upper_throughput_tok_s_gpu, the lowest failing concurrency's",
            "speed_ci": f"Student-t {cfg.settings().level:.0%} interval of the SLO statistic over {cfg.windows} "
            "windows per measurement",
            "fit": "TPOT = tpot_s + tpot_s_per_request x concurrency, least squares over the valid points: the latency "
            "model the search steered by",
            **{k: DEFINITIONS[k] for k in ("tps_user", "output_tok_s")},
        },
        "methods": [],
        "interrupted": False,
        "resumed": prior is not None,
    }

    def save() -> None:
        _compare(doc, cfg.baseline)
        store.document("search.json", doc, "SearchRun")

    def figure() -> None:
        from .report.plots import save as save_figure
        from .report.plots import search_figure

        shown = [dict(m, fit_frontier=core.fit_rows(m, cfg.gpus)) for m in doc["methods"]]
        sources = {(m.get("server") or {}).get("source", "measured") for m in doc["methods"]}
        title = f"highest throughput at {cfg.slo_stat} per-user speed >= {cfg.slo:g} tok/s"
        note = f"{' and '.join(sorted(sources))} servers, searched live; fitted TPOT = a + b x concurrency dashed"
        paths = [store.adopt(n) if prior is not None else store.claim(n) for n in ("frontier.png", "frontier.svg")]
        save_figure(search_figure(shown, cfg.slo, title, note), *paths)

    try:
        for label, command in cfg.servers():
            done = before.get(label)
            if done and done.get("complete"):
                doc["methods"].append(done)  # finished before: kept as it was
                continue
            search = Search(cfg, label, command, store, done)
            doc["methods"].append(search.doc)
            log = store.out / label / "server.log"
            server = (
                started(label, command, cfg.url, cfg.startup_timeout_s, log)
                if command
                else contextlib.nullcontext(cfg.url.rstrip("/"))
            )
            with server as url:
                asyncio.run(search.run(url, headers, progress, on_step, save))
            search.writer.close()
    except KeyboardInterrupt:
        doc["interrupted"] = True
        save()
        raise
    save()
    figure()
    return doc


def _compare(doc: dict, baseline: str) -> None:
    """The best method at the SLO and every method's ratio to the baseline's best throughput."""
    best = {m["label"]: (m.get("best") or {}).get("throughput_tok_s_gpu") for m in doc["methods"] if m.get("outcome")}
    base = best.get(baseline)
    doc["baseline"] = baseline
    doc["ratios"] = {k: (v / base if v and base else None) for k, v in best.items()}
    feasible = {k: v for k, v in best.items() if v}
    doc["best_method"] = max(feasible, key=feasible.get) if feasible else None
