"""Writing result files: atomically, checked against their typed documents, with who made them
(provenance); and the load run's writer, which writes as the run goes."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError
from .readers import LOAD_SCHEMA


def provenance(command: list[str] | None = None) -> dict:
    """Who made a file, when, with what command (secrets must never be in `command`)."""
    import platform

    prov = {
        "tool": "dsbench",
        "version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(command if command is not None else ["dsbench", *sys.argv[1:]]),
        "python": platform.python_version(),
        "host": platform.platform(terse=True),
    }
    for mod in ("torch", "transformers"):  # versions of what this run used (never imported just to ask)
        if mod in sys.modules:
            prov[mod] = getattr(sys.modules[mod], "__version__", "?")
    return prov


def nan_to_none(obj: Any) -> Any:
    """The same structure with every NaN float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


class Store:
    """Where one run's results go: `out`, a directory (or a file path, for commands that write
    one file). Files that were there before the run are results too, and are replaced only with
    `force`; files this run wrote it rewrites freely (partial results as it goes)."""

    def __init__(self, out: Path, force: bool = False, single: str | None = None):
        self.out, self.force, self.single = Path(out), force, single
        self.mine: set[Path] = set()

    def path(self, name: str) -> Path:
        """Where file `name` goes: inside `out`, or `out` itself when it names the command's one file."""
        if self.single and self.out.suffix == Path(self.single).suffix and name == self.single:
            return self.out
        return self.out / name

    def claim(self, name: str) -> Path:
        """The path for `name`, refusing one that holds earlier results unless --force."""
        path = self.path(name)
        if path not in self.mine:
            if path.exists() and not self.force:
                raise InputError(
                    f"{path} already exists (earlier results); pass --force to replace it, or choose another --out"
                )
            self.mine.add(path)
        return path

    def adopt(self, name: str) -> Path:
        """Take `name` as this run's own although it is there already: a run resuming its own
        earlier results (search), never a way around --force."""
        path = self.path(name)
        self.mine.add(path)
        return path

    def document(self, name: str, data: dict, model: str) -> Path:
        """Write a typed document atomically (checked against documents.MODEL first)."""
        path = self.claim(name)
        write_document(path, data, model)
        return path

    def text(self, name: str, text: str) -> Path:
        path = self.claim(name)
        write_text(path, text)
        return path


def write_text(path: Path, text: str) -> None:
    """Write a file atomically (a killed writer never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def write_document(path: Path, data: dict, model: str) -> None:
    """Write a document after checking it against its typed model (documents.MODEL): dsbench
    never writes a file it would refuse to read (a failure here is a bug, raised as ValueError)."""
    from . import documents

    try:
        getattr(documents, model).model_validate(data)
    except documents.ValidationError as e:
        raise ValueError(f"dsbench would write an invalid {model} to {path}: {e}") from None
    write_json(path, data)


class LoadWriter:
    """Writes a load run through a Store as it happens: requests.jsonl (one line per finished
    request, flushed), points/<label>.json + .csv after each point, and load.json (all points so
    far). An earlier run in the same place is refused unless the store may replace it, or
    `resume` says this run continues it (its load.json is then `previous`, and requests append)."""

    def __init__(self, store: Store, resume: bool = False):
        self.store, self.previous = store, None
        if resume and store.path("load.json").exists():
            requests = store.adopt("requests.jsonl")
            self.previous = json.loads(store.adopt("load.json").read_text())
        else:
            requests = store.claim("requests.jsonl")
            store.claim("load.json")
            requests.unlink(missing_ok=True)  # only reached when there was none, or --force replaces it
            store.path("load.json").unlink(missing_ok=True)
        self._path, self._requests = requests, None  # opened by the first request: a refused run leaves nothing

    def request(self, rec: dict) -> None:
        if self._requests is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._requests = open(self._path, "a", buffering=1)
        self._requests.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def point(self, label: str, summary: dict, request_rows: list[dict]) -> None:
        import pandas as pd

        safe = label.replace("=", "-").replace("/", "_")
        # per-point dumps belong to load.json: claimed with it, so an earlier run's are replaced with it
        write_json(self.store.path(f"points/{safe}.json"), summary)
        write_text(self.store.path(f"points/{safe}.csv"), pd.DataFrame(request_rows).to_csv(index=False))

    def summary(self, doc: dict) -> Path:
        return self.store.document("load.json", {**doc, "schema": LOAD_SCHEMA}, "LoadRun")

    def close(self) -> None:
        if self._requests is not None:
            self._requests.close()
