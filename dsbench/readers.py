"""Reading every result file dsbench writes into typed objects: profiles, acceptance curves,
sweeps, load runs, calibrations, fits, gate rules. Formats are versioned by a `schema` field;
anything malformed is refused with an InputError that names the file and the field."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .shipped import resolve_shipped
from .validation import check_schema, checked_list, checked_number, checked_source, json_object, required

PROFILE_SCHEMA = "dsbench.profile/1"


ACCEPTANCE_SCHEMA = "dsbench.acceptance/1"


SWEEP_SCHEMA = "dsbench.sweep/1"


@dataclass
class Profile:
    """A verification step-time profile (+ drafter costs), as read from `dsbench.profile/1`."""

    path: Path
    source: str
    device: dict
    model: dict
    context_len: int
    batch_tokens: list[float]
    requests: list[float]
    step_s: list[float]
    draft: dict[str, dict[str, list[float]]]  # method -> {"requests", "gamma", "step_s"}
    gpus: int = 1
    max_requests: int | None = None
    raw: dict = field(default_factory=dict, repr=False)
    _surfaces: dict = field(default_factory=dict, repr=False, compare=False)  # traffic -> surface (surface())

    def max_requests_for(self, method: str, context: float | None = None) -> int | None:
        """Requests whose KV cache fits with `method`'s drafter (None: the profile does not say),
        at the profile's context or, for a roofline profile's memory plan, at `context` tokens."""
        plan = (self.raw.get("memory") or {}).get(method)
        if context is not None and plan:
            dp = (self.raw.get("deployment") or {}).get("dp", 1)
            free = plan["usable"] - plan["target_weights"] - plan["drafter_weights"]
            return max(0, int(free // (context * plan["kv_per_token"]))) * dp
        cap = (self.raw.get("draft") or {}).get(method, {}).get("max_requests")
        caps = [c for c in (self.max_requests, cap) if c is not None]
        return min(caps) if caps else None

    def roofline_inputs(self):
        """(Hardware, ModelShape, RooflineKnobs, Deployment) when this is a roofline profile that
        records its formula's inputs, else None. Fields added since a file was written take
        their defaults (one bf16 GPU, GQA, no shared experts)."""
        from dataclasses import MISSING, fields

        from .core.roofline import Deployment, ModelShape, RooflineKnobs
        from .shipped import hardware_from

        knobs = (self.raw.get("roofline") or {}).get("knobs")
        if self.source != "roofline" or not isinstance(knobs, dict):
            return None
        try:
            hw = hardware_from(self.device, self.path)
            shape = {f.name: self.model.get(f.name, f.default) for f in fields(ModelShape)}
            missing = [k for k, v in shape.items() if v is MISSING]
            if missing:
                raise KeyError(missing[0])
            given = self.raw.get("deployment") or {}
            dep = Deployment(**{f.name: given[f.name] for f in fields(Deployment) if f.name in given})
            return hw, ModelShape(**shape), RooflineKnobs(**knobs), dep
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{self.path}: incomplete or invalid roofline inputs ({e})") from None

    def surface(self, lengths=None):
        """The verification step-time surface: the exact formula for roofline profiles, else the
        interpolated points (made monotone, `repairs`). With `lengths` (core.traffic.Lengths) the
        roofline is evaluated at their mean in-flight context and prices their prefill; a measured
        profile, timed at one context, refuses them. One surface per traffic, shared by every
        scenario of a sweep (its per-concurrency slices are cached)."""
        key = None if lengths is None else (lengths.inflight_context, lengths.prefill_context)
        if key not in self._surfaces:
            self._surfaces[key] = self._build_surface(key)
        return self._surfaces[key]

    def _build_surface(self, traffic: tuple[float, float] | None):
        from .core.roofline import RooflineSurface
        from .core.sps import StepTimeSurface

        inputs = self.roofline_inputs()
        if inputs is not None:
            hw, model, knobs, dep = inputs
            if traffic is None:
                return RooflineSurface(hw, model, knobs, self.context_len, deployment=dep)
            context, prefill_context = traffic
            return RooflineSurface(hw, model, knobs, context, deployment=dep, prefill_context=prefill_context)
        if traffic is not None:
            raise InputError(
                f"{self.path}: request lengths (--isl/--osl, --lengths) need a roofline profile: this "
                f"{self.source} profile was timed at one context ({self.context_len} tokens) and cannot price "
                "others or prefill; make one with `dsbench profile --roofline GPU`"
            )
        return StepTimeSurface(self.batch_tokens, self.requests, self._monotone[0])

    @functools.cached_property
    def _monotone(self):
        from .core.sps import monotone_repair

        cv = [pt.get("cv", 0.0) for pt in self.raw.get("points", [])] if self.raw else None
        return monotone_repair(self.batch_tokens, self.requests, self.step_s, cv)

    @property
    def repairs(self) -> list:
        """Measured step times the surface raised to stay monotone (core.sps.Repair); none for a roofline."""
        return [] if self.roofline_inputs() is not None else self._monotone[1]

    @property
    def label(self) -> str:
        return f"{self.device.get('name', '?')} / {self.model.get('name', '?')} ({self.source})"


def read_profile(path: str | os.PathLike) -> Profile:
    """Read and validate a profile file (or a shipped profile by name)."""
    p = resolve_shipped(path)
    return _parse_profile(json_object(p, "profile"), p)


def profile_from(data: dict, where: Path) -> Profile:
    """A profile document held in memory (a roofline modelled in place), checked as a file would be."""
    return _parse_profile(data, where)


def _parse_profile(data: dict, p: Path) -> Profile:
    from .documents import ProfileDoc, validated

    check_schema(data, p, PROFILE_SCHEMA)
    return validated(ProfileDoc, data, p, lambda: _build_profile(data, p))


def _build_profile(data: dict, p: Path) -> Profile:
    source = checked_source(data, p)
    device = required(data, "device", p)
    model = required(data, "model", p)
    if not isinstance(device, dict) or not isinstance(model, dict):
        raise InputError(f"{p}: fields 'device' and 'model' must be objects")
    ctx = int(checked_number(required(data, "context_len", p), p, "context_len", positive=True, integer=True))
    gpus = int(checked_number(device.get("gpus", 1), p, "device.gpus", positive=True, integer=True))
    b, r, s = [], [], []
    for i, pt in enumerate(checked_list(required(data, "points", p), p, "points")):
        if not isinstance(pt, dict):
            raise InputError(f"{p}: points[{i}] must be an object")
        b.append(
            checked_number(
                required(pt, "batch_tokens", p, f"points[{i}]."), p, f"points[{i}].batch_tokens", positive=True
            )
        )
        r.append(checked_number(pt.get("requests", 1), p, f"points[{i}].requests", positive=True))
        s.append(checked_number(required(pt, "step_s", p, f"points[{i}]."), p, f"points[{i}].step_s", positive=True))
    draft = {}
    for method, table in (data.get("draft") or {}).items():
        pts = checked_list(required(table, "points", p, f"draft.{method}."), p, f"draft.{method}.points")
        cols: dict[str, list[float]] = {"requests": [], "gamma": [], "step_s": []}
        for i, pt in enumerate(pts):
            where = f"draft.{method}.points[{i}]"
            cols["requests"].append(
                checked_number(required(pt, "requests", p, where + "."), p, where + ".requests", positive=True)
            )
            cols["gamma"].append(
                checked_number(required(pt, "gamma", p, where + "."), p, where + ".gamma", positive=True)
            )
            cols["step_s"].append(
                checked_number(required(pt, "step_s", p, where + "."), p, where + ".step_s", nonneg=True)
            )
        draft[method] = cols
    max_req = data.get("max_requests")
    if max_req is not None:
        max_req = int(checked_number(max_req, p, "max_requests", positive=True, integer=True))
    return Profile(p, source, device, model, ctx, b, r, s, draft, gpus, max_req, data)


@dataclass
class Acceptance:
    """Conditional acceptance per position for one method and domain (`dsbench.acceptance/1`)."""

    path: Path
    method: str
    domain: str
    target: str
    conditional: list[float]
    source: str
    tau: float | None = None
    spread: dict | None = None  # {"sigma": .., "round_share": ..}
    raw: dict = field(default_factory=dict, repr=False)


def read_acceptance_file(path: str | os.PathLike) -> Acceptance:
    """Read and validate one acceptance file."""
    p = Path(path)
    return _parse_acceptance(json_object(p, "acceptance"), p)


def _parse_acceptance(data: dict, p: Path) -> Acceptance:
    from .documents import AcceptanceDoc, validated

    check_schema(data, p, ACCEPTANCE_SCHEMA)
    return validated(AcceptanceDoc, data, p, lambda: _build_acceptance(data, p))


def _build_acceptance(data: dict, p: Path) -> Acceptance:
    source = checked_source(data, p)
    method = str(required(data, "method", p))
    domain = str(required(data, "domain", p))
    cond = [
        checked_number(v, p, f"conditional[{i}]", lo=0.0, hi=1.0)
        for i, v in enumerate(checked_list(required(data, "conditional", p), p, "conditional"))
    ]
    gamma = data.get("gamma")
    if gamma is not None and int(checked_number(gamma, p, "gamma", positive=True, integer=True)) != len(cond):
        raise InputError(f"{p}: field 'gamma' is {gamma} but 'conditional' has {len(cond)} positions")
    tau = data.get("tau")
    if tau is not None:
        tau = checked_number(tau, p, "tau", lo=1.0)
    spread = data.get("spread")
    if spread is not None:
        if not isinstance(spread, dict):
            raise InputError(f"{p}: field 'spread' must be an object")
        checked_number(required(spread, "sigma", p, "spread."), p, "spread.sigma", nonneg=True)
        checked_number(spread.get("round_share", 0.5), p, "spread.round_share", lo=0.0, hi=1.0)
    return Acceptance(p, method, domain, str(data.get("target", "")), cond, source, tau, spread, data)


def read_acceptance(ref: str | os.PathLike) -> list[Acceptance]:
    """All acceptance curves in a file or a directory (or a shipped set by name, e.g. `qwen3-8b`)."""
    p = resolve_shipped(ref, "acceptance", suffix="")
    if p.is_dir():
        files = sorted(p.glob("*.json"))
        if not files:
            raise InputError(f"acceptance directory has no .json files: {p}")
        return [read_acceptance_file(f) for f in files]
    return [read_acceptance_file(p)]


def read_lengths(path: str | os.PathLike):
    """Per-request (input, output) token counts from JSONL: {"input_tokens", "output_tokens"} per
    line (or OpenAI usage's prompt_tokens / completion_tokens), as core.traffic.Lengths."""
    from .core.traffic import Lengths

    p = Path(path)
    if not p.is_file():
        raise InputError(f"lengths file not found: {p}")
    isl, osl = [], []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            isl.append(float(row["input_tokens"] if "input_tokens" in row else row["prompt_tokens"]))
            osl.append(float(row["output_tokens"] if "output_tokens" in row else row["completion_tokens"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(f'{p}:{i}: expected {{"input_tokens": N, "output_tokens": M}}') from None
    try:
        return Lengths(isl, osl)
    except ValueError as e:
        raise InputError(f"{p}: {e}") from None


def read_sweep(path: str | os.PathLike) -> dict:
    """Read a sweep.json written by `dsbench sweep`."""
    p = Path(path)
    from .documents import SweepDoc, parse

    data = json_object(p / "sweep.json" if p.is_dir() else p, "sweep")
    check_schema(data, p, SWEEP_SCHEMA)
    return parse(SweepDoc, data, p).model_dump(by_alias=True)  # a partial sweep's absent fields filled in


LOAD_SCHEMA = "dsbench.load/2"
SEARCH_SCHEMA = "dsbench.search/1"


def read_search(path: str | os.PathLike) -> dict:
    """Read a search.json written by `dsbench search` (a file or its directory)."""
    from .documents import SearchRun, parse

    p = Path(path)
    p = p / "search.json" if p.is_dir() else p
    data = json_object(p, "search results")
    check_schema(data, p, SEARCH_SCHEMA)
    return parse(SearchRun, data, p).model_dump(by_alias=True)


LOAD_SCHEMAS = ("dsbench.load/1", LOAD_SCHEMA)  # /1: engine-shaped `spec` dicts, read through documents.SpecWindow


def read_load(path: str | os.PathLike) -> dict:
    """Read a load.json written by `dsbench load` (a file or its directory)."""
    p = Path(path)
    p = p / "load.json" if p.is_dir() else p
    data = json_object(p, "load results")
    if data.get("schema") in LOAD_SCHEMAS:
        from .documents import read_load

        return read_load(data, p)
    check_schema(data, p, LOAD_SCHEMA)
    return data


def read_requests(path: str | os.PathLike) -> list[dict]:
    """Per-request records of a load run (requests.jsonl beside load.json); a line cut short by an
    interrupted run, or that is not a request record (documents.RequestLine), is skipped."""
    p = Path(path)
    p = (p if p.is_dir() else p.parent) / "requests.jsonl"
    if not p.is_file():
        return []
    from .documents import RequestLine, ValidationError

    out = []
    for line in p.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
            RequestLine.model_validate(rec)
        except (json.JSONDecodeError, ValidationError):
            continue  # cut short by an interrupted run, or not a request record
        out.append(rec)
    return out


CALIBRATION_SCHEMA = "dsbench.calibration/1"


def read_calibration(path: str | os.PathLike) -> dict:
    """Read a calibration file written by `dsbench calibrate`."""
    p = Path(path)
    from .documents import CalibrationDoc, parse

    data = json_object(p, "calibration")
    check_schema(data, p, CALIBRATION_SCHEMA)
    return parse(CalibrationDoc, data, p).model_dump(by_alias=True)


def per_round_confidences(acc: Acceptance):
    """(confidence (rounds, gamma), proposal, accepted) arrays from a measured acceptance file."""
    import numpy as np

    pr = acc.raw.get("per_round") or {}
    if "confidence" not in pr:
        raise InputError(
            f"{acc.path}: no per-round confidences (field 'per_round.confidence'); only DSpark runs of dsbench "
            "accept have them"
        )
    conf = np.array(pr["confidence"], dtype=float)
    if conf.ndim != 2 or len(conf) != len(pr["proposal"]) or ((conf < 0) | (conf > 1)).any():
        raise InputError(f"{acc.path}: field 'per_round.confidence' must be one row of probabilities per round")
    return conf, np.array(pr["proposal"]), np.array(pr["accepted"])


FIT_SCHEMA = "dsbench.fit/1"


@dataclass
class FittedModel:
    path: Path
    raw: dict
    profile: Profile  # the fitted T_verify / T_draft tabulated as a profile (source "fitted")
    acceptance: list[Acceptance]  # measured per method from the engine's counters


def read_fit(path: str | os.PathLike) -> FittedModel:
    """Read a fit.json written by `dsbench fit` (a file or its directory)."""
    p = Path(path)
    p = p / "fit.json" if p.is_dir() else p
    from .documents import FitDoc, parse

    data = json_object(p, "fitted model")
    check_schema(data, p, FIT_SCHEMA)
    parse(FitDoc, data, p)
    prof = required(data, "profile", p)
    if not isinstance(prof, dict):
        raise InputError(f"{p}: field 'profile' must be an object")
    curves = [
        _parse_acceptance(c, p) for c in checked_list(data.get("acceptance", []), p, "acceptance", nonempty=False)
    ]
    return FittedModel(p, data, _parse_profile(prof, p), curves)


def find_results(path: str | os.PathLike) -> list[tuple[str, Path]]:
    """Every dsbench result file under `path` (a file, or a directory searched recursively), as
    (schema, file) pairs. Files that are not dsbench results (no known schema) are skipped."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file or directory: {p}")
    files = (
        [p] if p.is_file() else sorted(f for f in p.rglob("*.json") if f.parent.name != "points")
    )  # load's per-point dumps
    found = []
    for f in files:
        try:
            data = json_object(f, "result")
        except InputError:
            if p.is_file():
                raise
            continue  # a directory may hold other JSON (configs, per-point dumps)
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema in LOAD_SCHEMAS:
            found.append((LOAD_SCHEMA, f))
        elif schema in (SWEEP_SCHEMA, ACCEPTANCE_SCHEMA, PROFILE_SCHEMA, CALIBRATION_SCHEMA, FIT_SCHEMA, SEARCH_SCHEMA):
            found.append((schema, f))
        elif p.is_file():
            raise InputError(f"{f}: not a dsbench result (field 'schema' is {schema!r})")
    if not found:
        raise InputError(f"{p}: no dsbench results found (load.json, sweep.json, acceptance, profile, fit files)")
    return found


GATE_RULE_KEYS = {"metric", "direction", "tolerance_pct", "tolerance_abs", "ignore"}


def read_gate_rules(path: str | os.PathLike) -> tuple[list[dict], float | None]:
    """A gate rules file (TOML or JSON): optional `max_drop_pct` and `[[rules]]` entries with
    `metric` (a glob), and `direction` (higher|lower), `tolerance_pct` or `tolerance_abs`, or
    `ignore = true`. Returns (rules, max_drop_pct)."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise InputError(f"rules file not found: {p}")
    try:
        data = tomllib.loads(p.read_text()) if p.suffix == ".toml" else json.loads(p.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a table/object at the top level")
    from .documents import GateRules, validated

    return validated(GateRules, data, p, lambda: _build_gate_rules(data, p))


def _build_gate_rules(data: dict, p: Path) -> tuple[list[dict], float | None]:
    max_drop = data.get("max_drop_pct")
    if max_drop is not None:
        max_drop = checked_number(max_drop, p, "max_drop_pct", nonneg=True)
    rules = []
    for i, r in enumerate(checked_list(data.get("rules", []), p, "rules", nonempty=False)):
        where = f"rules[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("metric"), str):
            raise InputError(f"{p}: {where} needs a string field 'metric' (a glob such as 'load.*.ttft_s_p99')")
        unknown = set(r) - GATE_RULE_KEYS
        if unknown:
            raise InputError(f"{p}: {where} has unknown field(s) {', '.join(sorted(unknown))}")
        if r.get("direction", "higher") not in ("higher", "lower"):
            raise InputError(f"{p}: {where}.direction must be 'higher' or 'lower'")
        for k in ("tolerance_pct", "tolerance_abs"):
            if k in r:
                checked_number(r[k], p, f"{where}.{k}", nonneg=True)
        rules.append(r)
    return rules, max_drop
