"""Every file format dsbench reads or writes: schemas, validation and JSON/CSV I/O, in one place.

Formats are versioned by a `schema` field. Anything malformed is refused with an InputError that
names the file and the field, which the CLI prints as one line.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__

PROFILE_SCHEMA = "dsbench.profile/1"
ACCEPTANCE_SCHEMA = "dsbench.acceptance/1"
SWEEP_SCHEMA = "dsbench.sweep/1"
SOURCES = ("measured", "roofline", "paper", "fitted", "simulated")


class InputError(Exception):
    """Bad user input (file, schema, value). The CLI prints it as one line and exits 2."""


# --------------------------------------------------------------------------- locating shipped data


def profiles_dir() -> Path:
    """The shipped profiles: inside the wheel, or ./profiles of a source checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_profiles", here.parent / "profiles"):
        if cand.is_dir():
            return cand
    raise InputError("shipped profiles not found (broken install?): reinstall dsbench")


def resolve_shipped(ref: str | os.PathLike, subdir: str = "", suffix: str = ".json") -> Path:
    """A path as given, or the name of a shipped file (`h100-qwen3-8b`, `qwen3-8b`)."""
    p = Path(ref)
    if p.exists():
        return p
    cand = profiles_dir() / subdir / (str(ref) if str(ref).endswith(suffix) or not suffix else f"{ref}{suffix}")
    if cand.exists():
        return cand
    return p  # let the loader report it missing under the user's own spelling


def provenance(command: list[str] | None = None) -> dict:
    """Who made a file, when, with what command (secrets must never be in `command`)."""
    import platform

    prov = {
        "tool": "dsbench",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(command if command is not None else ["dsbench", *sys.argv[1:]]),
        "python": platform.python_version(),
        "host": platform.platform(terse=True),
    }
    for mod in ("torch", "transformers"):  # versions of what this run used (never imported just to ask)
        if mod in sys.modules:
            prov[mod] = getattr(sys.modules[mod], "__version__", "?")
    return prov


# --------------------------------------------------------------------------- validation helpers


def _load_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise InputError(f"{what} file not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} path is a directory, expected a JSON file: {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object at the top level")
    return data


def _check_schema(data: dict, path: Path, expected: str) -> None:
    got = data.get("schema")
    if got is None:
        raise InputError(f"{path}: missing field 'schema' (expected {expected!r})")
    family, _, _ = str(got).partition("/")
    if got != expected:
        kind = "unknown schema version" if family == expected.partition("/")[0] else "wrong schema"
        raise InputError(f"{path}: {kind} {got!r} in field 'schema' (this dsbench reads {expected!r})")


def _field(data: dict, key: str, path: Path, where: str = ""):
    if key not in data:
        raise InputError(f"{path}: missing field '{where}{key}'")
    return data[key]


def _number(v, path: Path, name: str, *, positive=False, nonneg=False, lo=None, hi=None, integer=False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{path}: field '{name}' must be a number, got {json.dumps(v)[:40]}")
    if not math.isfinite(v):
        raise InputError(f"{path}: field '{name}' must be finite, got {v}")
    if integer and int(v) != v:
        raise InputError(f"{path}: field '{name}' must be a whole number, got {v}")
    if positive and v <= 0:
        raise InputError(f"{path}: field '{name}' must be > 0, got {v}")
    if nonneg and v < 0:
        raise InputError(f"{path}: field '{name}' must be >= 0, got {v}")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise InputError(f"{path}: field '{name}' must lie in [{lo}, {hi}], got {v}")
    return float(v)


def _source(data: dict, path: Path) -> str:
    src = _field(data, "source", path)
    if src not in SOURCES:
        raise InputError(f"{path}: field 'source' must be one of {', '.join(SOURCES)}, got {src!r}")
    return src


def _list(v, path: Path, name: str, nonempty=True) -> list:
    if not isinstance(v, list) or (nonempty and not v):
        raise InputError(f"{path}: field '{name}' must be a non-empty list")
    return v


# --------------------------------------------------------------------------- profiles


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

    def roofline_inputs(self):
        """(HardwareSpec, ModelSpec, RooflineKnobs) when this is a roofline profile that records
        its formula's inputs, else None."""
        from dataclasses import fields

        from .core.roofline import HardwareSpec, ModelSpec, RooflineKnobs

        knobs = (self.raw.get("roofline") or {}).get("knobs")
        if self.source != "roofline" or not isinstance(knobs, dict):
            return None
        try:
            hw = HardwareSpec(self.device["name"], float(self.device["peak_bf16_flops"]), float(self.device["mem_bw_bytes_s"]),
                              float(self.device["mem_bytes"]))
            model = ModelSpec(**{f.name: self.model[f.name] for f in fields(ModelSpec)})
            return hw, model, RooflineKnobs(**knobs)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{self.path}: incomplete roofline inputs ({e})") from None

    def surface(self):
        """The verification step-time surface: the exact formula for roofline profiles, else the
        interpolated points."""
        from .core.roofline import RooflineSurface
        from .core.sps import StepTimeSurface

        inputs = self.roofline_inputs()
        if inputs is not None:
            return RooflineSurface(*inputs, self.context_len)
        return StepTimeSurface(self.batch_tokens, self.requests, self.step_s)

    @property
    def label(self) -> str:
        return f"{self.device.get('name', '?')} / {self.model.get('name', '?')} ({self.source})"


def load_profile(path: str | os.PathLike) -> Profile:
    """Read and validate a profile file (or a shipped profile by name)."""
    p = resolve_shipped(path)
    return _parse_profile(_load_json(p, "profile"), p)


def _parse_profile(data: dict, p: Path) -> Profile:
    from .documents import ProfileDoc, validated

    _check_schema(data, p, PROFILE_SCHEMA)
    return validated(ProfileDoc, data, p, lambda: _read_profile(data, p))


def _read_profile(data: dict, p: Path) -> Profile:
    source = _source(data, p)
    device = _field(data, "device", p)
    model = _field(data, "model", p)
    if not isinstance(device, dict) or not isinstance(model, dict):
        raise InputError(f"{p}: fields 'device' and 'model' must be objects")
    ctx = int(_number(_field(data, "context_len", p), p, "context_len", positive=True, integer=True))
    gpus = int(_number(device.get("gpus", 1), p, "device.gpus", positive=True, integer=True))
    b, r, s = [], [], []
    for i, pt in enumerate(_list(_field(data, "points", p), p, "points")):
        if not isinstance(pt, dict):
            raise InputError(f"{p}: points[{i}] must be an object")
        b.append(_number(_field(pt, "batch_tokens", p, f"points[{i}]."), p, f"points[{i}].batch_tokens", positive=True))
        r.append(_number(pt.get("requests", 1), p, f"points[{i}].requests", positive=True))
        s.append(_number(_field(pt, "step_s", p, f"points[{i}]."), p, f"points[{i}].step_s", positive=True))
    draft = {}
    for method, table in (data.get("draft") or {}).items():
        pts = _list(_field(table, "points", p, f"draft.{method}."), p, f"draft.{method}.points")
        cols: dict[str, list[float]] = {"requests": [], "gamma": [], "step_s": []}
        for i, pt in enumerate(pts):
            where = f"draft.{method}.points[{i}]"
            cols["requests"].append(_number(_field(pt, "requests", p, where + "."), p, where + ".requests", positive=True))
            cols["gamma"].append(_number(_field(pt, "gamma", p, where + "."), p, where + ".gamma", positive=True))
            cols["step_s"].append(_number(_field(pt, "step_s", p, where + "."), p, where + ".step_s", nonneg=True))
        draft[method] = cols
    max_req = data.get("max_requests")
    if max_req is not None:
        max_req = int(_number(max_req, p, "max_requests", positive=True, integer=True))
    return Profile(p, source, device, model, ctx, b, r, s, draft, gpus, max_req, data)


# --------------------------------------------------------------------------- acceptance curves


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


def load_acceptance_file(path: str | os.PathLike) -> Acceptance:
    """Read and validate one acceptance file."""
    p = Path(path)
    return _parse_acceptance(_load_json(p, "acceptance"), p)


def _parse_acceptance(data: dict, p: Path) -> Acceptance:
    from .documents import AcceptanceDoc, validated

    _check_schema(data, p, ACCEPTANCE_SCHEMA)
    return validated(AcceptanceDoc, data, p, lambda: _read_acceptance(data, p))


def _read_acceptance(data: dict, p: Path) -> Acceptance:
    source = _source(data, p)
    method = str(_field(data, "method", p))
    domain = str(_field(data, "domain", p))
    cond = [
        _number(v, p, f"conditional[{i}]", lo=0.0, hi=1.0) for i, v in enumerate(_list(_field(data, "conditional", p), p, "conditional"))
    ]
    gamma = data.get("gamma")
    if gamma is not None and int(_number(gamma, p, "gamma", positive=True, integer=True)) != len(cond):
        raise InputError(f"{p}: field 'gamma' is {gamma} but 'conditional' has {len(cond)} positions")
    tau = data.get("tau")
    if tau is not None:
        tau = _number(tau, p, "tau", lo=1.0)
    spread = data.get("spread")
    if spread is not None:
        if not isinstance(spread, dict):
            raise InputError(f"{p}: field 'spread' must be an object")
        _number(_field(spread, "sigma", p, "spread."), p, "spread.sigma", nonneg=True)
        _number(spread.get("round_share", 0.5), p, "spread.round_share", lo=0.0, hi=1.0)
    return Acceptance(p, method, domain, str(data.get("target", "")), cond, source, tau, spread, data)


def load_acceptance(ref: str | os.PathLike) -> list[Acceptance]:
    """All acceptance curves in a file or a directory (or a shipped set by name, e.g. `qwen3-8b`)."""
    p = resolve_shipped(ref, "acceptance", suffix="")
    if p.is_dir():
        files = sorted(p.glob("*.json"))
        if not files:
            raise InputError(f"acceptance directory has no .json files: {p}")
        return [load_acceptance_file(f) for f in files]
    return [load_acceptance_file(p)]


# --------------------------------------------------------------------------- writing


def nan_to_none(obj: Any) -> Any:
    """The same structure with every NaN float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a killed writer never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)


def write_document(path: Path, data: dict, model: str) -> None:
    """Write a document after checking it against its typed model (documents.MODEL): dsbench
    never writes a file it would refuse to read (a failure here is a bug, raised as ValueError)."""
    from . import documents

    try:
        getattr(documents, model).model_validate(data)
    except documents.ValidationError as e:
        raise ValueError(f"dsbench would write an invalid {model} to {path}: {e}") from None
    write_json(path, data)


def write_profile(path: Path, data: dict) -> None:
    """Write a profile dict (must already carry `schema`, `source`, points...)."""
    if data.get("schema") != PROFILE_SCHEMA:
        raise ValueError("profile dict lacks the profile schema")
    write_document(path, data, "ProfileDoc")


def write_acceptance(path: Path, data: dict) -> None:
    if data.get("schema") != ACCEPTANCE_SCHEMA:
        raise ValueError("acceptance dict lacks the acceptance schema")
    write_document(path, data, "AcceptanceDoc")


def write_sweep(out_dir: Path, summary: dict, frontier_rows: list[dict]) -> tuple[Path, Path]:
    """Write sweep.json (summary + every frontier point) and the tidy sweep.csv beside it."""
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SWEEP_SCHEMA, **summary, "frontier": frontier_rows}
    jpath, cpath = out_dir / "sweep.json", out_dir / "sweep.csv"
    write_document(jpath, doc, "SweepDoc")
    pd.DataFrame(frontier_rows).to_csv(cpath, index=False)
    return jpath, cpath


def load_sweep(path: str | os.PathLike) -> dict:
    """Read a sweep.json written by `dsbench sweep`."""
    p = Path(path)
    from .documents import SweepDoc, parse

    data = _load_json(p / "sweep.json" if p.is_dir() else p, "sweep")
    _check_schema(data, p, SWEEP_SCHEMA)
    return parse(SweepDoc, data, p).model_dump(by_alias=True)  # a partial sweep's absent fields filled in


# --------------------------------------------------------------------------- hardware and model specs

GPUS_SCHEMA = "dsbench.gpus/1"


def load_gpu_spec(name: str, table: str | os.PathLike | None = None):
    """The HardwareSpec for a GPU name ('H100', 'NVIDIA H100 80GB HBM3'), most specific match first.

    An unknown GPU is an error, never a silent default.
    """
    from .core.roofline import HardwareSpec

    p = Path(table) if table else profiles_dir() / "gpus.json"
    data = _load_json(p, "GPU table")
    _check_schema(data, p, GPUS_SCHEMA)
    key = name.lower().replace("-", "").replace(" ", "")
    for g in _list(_field(data, "gpus", p), p, "gpus"):
        if any(m.replace("-", "").replace(" ", "") in key for m in g["match"]):
            return HardwareSpec(
                g["name"],
                _number(g["peak_bf16_flops"], p, f"{g['name']}.peak_bf16_flops", positive=True),
                _number(g["mem_bw_bytes_s"], p, f"{g['name']}.mem_bw_bytes_s", positive=True),
                _number(g["mem_bytes"], p, f"{g['name']}.mem_bytes", positive=True),
            )
    known = ", ".join(g["name"] for g in data["gpus"])
    raise InputError(f"unknown GPU {name!r}; {p} knows {known}")


def load_model_spec(ref: str | os.PathLike):
    """A ModelSpec from a Hugging Face config: a config JSON, a model folder, or a shipped name."""
    from .core.roofline import ModelSpec

    p = resolve_shipped(ref, "models")
    if p.is_dir():
        p = p / "config.json"
    cfg = _load_json(p, "model config")
    name = Path(ref).stem if Path(ref).suffix == ".json" else Path(ref).name
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        spec = ModelSpec(
            name=cfg.get("_name_or_path") or name,
            layers=int(cfg["num_hidden_layers"]),
            hidden=hidden,
            intermediate=int(cfg["intermediate_size"]),
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab=int(cfg["vocab_size"]),
            experts=int(cfg.get("num_experts") or cfg.get("num_local_experts") or 0),
            experts_per_token=int(cfg.get("num_experts_per_tok") or 0),
            expert_intermediate=int(cfg.get("moe_intermediate_size") or 0),
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        )
    except KeyError as e:
        raise InputError(f"{p}: missing field {e.args[0]!r} (is this a Hugging Face decoder config?)") from None
    except (TypeError, ValueError) as e:
        raise InputError(f"{p}: malformed config value ({e})") from None
    for fname in ("layers", "hidden", "intermediate", "heads", "kv_heads", "head_dim", "vocab"):
        if getattr(spec, fname) <= 0:
            raise InputError(f"{p}: {fname} must be positive")
    return spec


# --------------------------------------------------------------------------- workloads

WORKLOADS_DIR_NAME = "workloads"


@dataclass
class Prompt:
    text: str
    domain: str


def load_workload(ref: str | os.PathLike) -> list[Prompt]:
    """Prompts from a JSONL file: `{"prompt", "domain"?}` lines, or DeepSpec's `{"turns": [...]}`
    (first turn, domain = file name). A shipped set may be named: math, code, chat."""
    p = Path(ref)
    if not p.exists():
        shipped = Path(__file__).resolve().parent.parent / WORKLOADS_DIR_NAME / f"{ref}.jsonl"
        packaged = Path(__file__).resolve().parent / "_workloads" / f"{ref}.jsonl"
        p = next((c for c in (shipped, packaged) if c.exists()), p)
    if not p.exists():
        raise InputError(f"workload file not found: {ref}")
    prompts = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}:{i}: not valid JSON ({e.msg})") from None
        if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
            prompts.append(Prompt(obj["prompt"], str(obj.get("domain") or p.stem)))
        elif isinstance(obj, dict) and isinstance(obj.get("turns"), list) and obj["turns"] and isinstance(obj["turns"][0], str):
            prompts.append(Prompt(obj["turns"][0], p.stem))
        else:
            raise InputError(f"{p}:{i}: expected {{\"prompt\": str}} or {{\"turns\": [str, ...]}}")
    if not prompts:
        raise InputError(f"{p}: no prompts")
    return prompts


# --------------------------------------------------------------------------- load-test results

LOAD_SCHEMA = "dsbench.load/2"
LOAD_SCHEMAS = ("dsbench.load/1", LOAD_SCHEMA)  # /1: engine-shaped `spec` dicts, read through documents.SpecWindow


class LoadWriter:
    """Writes a load run as it happens: requests.jsonl (one line per finished request, flushed),
    points/<label>.json + .csv after each point, and load.json (all points so far)."""

    def __init__(self, out_dir: Path, force: bool = False):
        self.dir = Path(out_dir)
        if (self.dir / "load.json").exists() or (self.dir / "requests.jsonl").exists():
            if not force:
                raise InputError(f"{self.dir} already holds load results; pass --force to overwrite or choose another --out")
            for f in ("load.json", "requests.jsonl"):
                (self.dir / f).unlink(missing_ok=True)
        (self.dir / "points").mkdir(parents=True, exist_ok=True)
        self._requests = open(self.dir / "requests.jsonl", "a", buffering=1)

    def request(self, rec: dict) -> None:
        self._requests.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def point(self, label: str, summary: dict, request_rows: list[dict]) -> None:
        import pandas as pd

        safe = label.replace("=", "-").replace("/", "_")
        write_json(self.dir / "points" / f"{safe}.json", summary)
        pd.DataFrame(request_rows).to_csv(self.dir / "points" / f"{safe}.csv", index=False)

    def summary(self, doc: dict) -> Path:
        path = self.dir / "load.json"
        write_document(path, {**doc, "schema": LOAD_SCHEMA}, "LoadRun")
        return path

    def close(self) -> None:
        self._requests.close()


def load_load(path: str | os.PathLike) -> dict:
    """Read a load.json written by `dsbench load` (a file or its directory)."""
    p = Path(path)
    p = p / "load.json" if p.is_dir() else p
    data = _load_json(p, "load results")
    if data.get("schema") in LOAD_SCHEMAS:
        from .documents import read_load

        return read_load(data, p)
    _check_schema(data, p, LOAD_SCHEMA)
    return data


def load_requests(path: str | os.PathLike) -> list[dict]:
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


# --------------------------------------------------------------------------- calibration

CALIBRATION_SCHEMA = "dsbench.calibration/1"


def write_calibration(path: Path, doc: dict) -> None:
    write_document(path, {"schema": CALIBRATION_SCHEMA, **doc}, "CalibrationDoc")


def load_calibration(path: str | os.PathLike) -> dict:
    """Read a calibration file written by `dsbench calibrate`."""
    p = Path(path)
    from .documents import CalibrationDoc, parse

    data = _load_json(p, "calibration")
    _check_schema(data, p, CALIBRATION_SCHEMA)
    return parse(CalibrationDoc, data, p).model_dump(by_alias=True)


def per_round_confidences(acc: Acceptance):
    """(confidence (rounds, gamma), proposal, accepted) arrays from a measured acceptance file."""
    import numpy as np

    pr = acc.raw.get("per_round") or {}
    if "confidence" not in pr:
        raise InputError(f"{acc.path}: no per-round confidences (field 'per_round.confidence'); only DSpark runs of dsbench accept have them")
    conf = np.array(pr["confidence"], dtype=float)
    if conf.ndim != 2 or len(conf) != len(pr["proposal"]) or ((conf < 0) | (conf > 1)).any():
        raise InputError(f"{acc.path}: field 'per_round.confidence' must be one row of probabilities per round")
    return conf, np.array(pr["proposal"]), np.array(pr["accepted"])


# --------------------------------------------------------------------------- fitted latency model

FIT_SCHEMA = "dsbench.fit/1"


def write_fit(path: Path, doc: dict) -> None:
    """A fitted model: parameters, per-point errors, and the profile and acceptance curves it implies."""
    write_document(path, nan_to_none({"schema": FIT_SCHEMA, **doc}), "FitDoc")  # an undetermined sigma is NaN: null in JSON


@dataclass
class FittedModel:
    path: Path
    raw: dict
    profile: Profile  # the fitted T_verify / T_draft tabulated as a profile (source "fitted")
    acceptance: list[Acceptance]  # measured per method from the engine's counters


def load_fit(path: str | os.PathLike) -> FittedModel:
    """Read a fit.json written by `dsbench fit` (a file or its directory)."""
    p = Path(path)
    p = p / "fit.json" if p.is_dir() else p
    from .documents import FitDoc, parse

    data = _load_json(p, "fitted model")
    _check_schema(data, p, FIT_SCHEMA)
    parse(FitDoc, data, p)
    prof = _field(data, "profile", p)
    if not isinstance(prof, dict):
        raise InputError(f"{p}: field 'profile' must be an object")
    curves = [_parse_acceptance(c, p) for c in _list(data.get("acceptance", []), p, "acceptance", nonempty=False)]
    return FittedModel(p, data, _parse_profile(prof, p), curves)


# --------------------------------------------------------------------------- result sets (gate, report)


def find_results(path: str | os.PathLike) -> list[tuple[str, Path]]:
    """Every dsbench result file under `path` (a file, or a directory searched recursively), as
    (schema, file) pairs. Files that are not dsbench results (no known schema) are skipped."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file or directory: {p}")
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*.json") if f.parent.name != "points")  # load's per-point dumps
    found = []
    for f in files:
        try:
            data = _load_json(f, "result")
        except InputError:
            if p.is_file():
                raise
            continue  # a directory may hold other JSON (configs, per-point dumps)
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema in LOAD_SCHEMAS:
            found.append((LOAD_SCHEMA, f))
        elif schema in (SWEEP_SCHEMA, ACCEPTANCE_SCHEMA, PROFILE_SCHEMA, CALIBRATION_SCHEMA, FIT_SCHEMA):
            found.append((schema, f))
        elif p.is_file():
            raise InputError(f"{f}: not a dsbench result (field 'schema' is {schema!r})")
    if not found:
        raise InputError(f"{p}: no dsbench results found (load.json, sweep.json, acceptance, profile, fit files)")
    return found


GATE_RULE_KEYS = {"metric", "direction", "tolerance_pct", "tolerance_abs", "ignore"}


def load_gate_rules(path: str | os.PathLike) -> tuple[list[dict], float | None]:
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

    return validated(GateRules, data, p, lambda: _read_gate_rules(data, p))


def _read_gate_rules(data: dict, p: Path) -> tuple[list[dict], float | None]:
    max_drop = data.get("max_drop_pct")
    if max_drop is not None:
        max_drop = _number(max_drop, p, "max_drop_pct", nonneg=True)
    rules = []
    for i, r in enumerate(_list(data.get("rules", []), p, "rules", nonempty=False)):
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
                _number(r[k], p, f"{where}.{k}", nonneg=True)
        rules.append(r)
    return rules, max_drop
