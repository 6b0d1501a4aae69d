"""Checks shared by the file readers: JSON objects, schema versions, and fields that must be
numbers in range. Each failure is an InputError naming the file and the field."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import InputError

SOURCES = ("measured", "roofline", "paper", "fitted", "simulated")


def json_object(path: Path, what: str) -> dict:
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


def check_schema(data: dict, path: Path, expected: str) -> None:
    got = data.get("schema")
    if got is None:
        raise InputError(f"{path}: missing field 'schema' (expected {expected!r})")
    family, _, _ = str(got).partition("/")
    if got != expected:
        kind = "unknown schema version" if family == expected.partition("/")[0] else "wrong schema"
        raise InputError(f"{path}: {kind} {got!r} in field 'schema' (this dsbench reads {expected!r})")


def required(data: dict, key: str, path: Path, where: str = ""):
    if key not in data:
        raise InputError(f"{path}: missing field '{where}{key}'")
    return data[key]


def checked_number(v, path: Path, name: str, *, positive=False, nonneg=False, lo=None, hi=None, integer=False) -> float:
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


def checked_source(data: dict, path: Path) -> str:
    src = required(data, "source", path)
    if src not in SOURCES:
        raise InputError(f"{path}: field 'source' must be one of {', '.join(SOURCES)}, got {src!r}")
    return src


def checked_list(v, path: Path, name: str, nonempty=True) -> list:
    if not isinstance(v, list) or (nonempty and not v):
        raise InputError(f"{path}: field '{name}' must be a non-empty list")
    return v
