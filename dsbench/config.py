"""Command configs: the one place a command's defaults and their help live.

Each command's config is a dataclass whose fields are `setting(...)`s. The CLI builds its
options from them (cli/_common.option: the flag is the field's name, `--duration-s` for
`duration_s`, unless the setting names another), so a default is written once and a test can
check every flag against its field. Library callers build the same dataclass directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

MISSING = dataclasses.MISSING


def setting(default: Any = MISSING, help: str = "", *, flag: str | None = None, short: str | None = None,
            panel: str | None = None, csv: type | None = None, factory=None) -> Any:
    """A config field: its default, the help the CLI shows, and how the CLI spells it.

    `csv` (int, float or str): the CLI takes a comma-separated list of that type; `flag`: the
    option's name when it is not the field's (`--workload` for `workloads`); `panel`: the help
    section. A field without a default is required.
    """
    meta = {"help": help, "flag": flag, "short": short, "panel": panel, "csv": csv}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (MISSING when it has none)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


# --------------------------------------------------------------------------- fit


@dataclass
class FitConfig:
    results: list[str] = setting(help="Load results (load.json or its directory), each optionally METHOD=PATH.")
    method: str | None = setting(None, "Method of inputs given without METHOD= (points without speculative counters are "
                                 "no-spec).")
    tile: int = setting(0, "GEMM tile in tokens for step-wise verification time (0: smooth).")
    flag_pct: float = setting(10.0, "Flag points the model misses by more than this many percent.")
    profile: str | None = setting(None, "Step-time profile: fit T_verify as a scale of its step times instead of the free "
                                  "form (how far the server is from the profile).")
    acceptance: str | None = setting(None, "Acceptance curves giving tau for engines without speculative counters.")
    out: Path = setting(Path("dsbench-fit"), "Directory (or .json path) for fit.json.", short="-o", panel="Output")
    force: bool = setting(False, "Replace an earlier fit.json at --out.", panel="Output")

    def validate(self) -> None:
        if self.tile < 0 or not self.flag_pct > 0:
            raise InputError("--tile must be >= 0 and --flag-pct > 0")


# --------------------------------------------------------------------------- calibrate


@dataclass
class CalibrateConfig:
    acceptance: list[str] = setting(help="Measured DSpark acceptance file(s) or directory from dsbench accept. Repeatable.")
    holdout: float = setting(0.5, "Fraction of rounds held out to judge the calibration.")
    seed: int = setting(0, "Seed of the fit/held-out split.")
    out: Path = setting(Path("calibration.json"), "Calibration JSON to write.", short="-o", panel="Output")
    force: bool = setting(False, "Replace an earlier file at --out.", panel="Output")

    def validate(self) -> None:
        if not 0 < self.holdout < 1:
            raise InputError(f"--holdout must lie strictly between 0 and 1, got {self.holdout}")


# --------------------------------------------------------------------------- report


@dataclass
class ReportConfig:
    results: list[str] = setting(help="Result files or directories (searched recursively); each argument is one run, "
                                 "shown side by side.")
    title: str = setting("dsbench report", "Title of the report.")
    out: Path = setting(Path("report.html"), "HTML file to write.", short="-o", panel="Output")
    force: bool = setting(False, "Replace an earlier report at --out.", panel="Output")


# --------------------------------------------------------------------------- gate


@dataclass
class GateConfig:
    candidate: list[str] = setting(factory=list, help="Candidate results (files or directories); several = repeated runs.")
    baseline: list[str] = setting(factory=list, help="Baseline results; repeat the option for repeated runs.")
    rules: str | None = setting(None, "Rules file (TOML or JSON): per-metric direction and tolerance, ignores.")
    max_drop_pct: float | None = setting(None, "Allowed drop of throughput and per-user speed, percent (default: 5).")
    allow_missing: bool = setting(False, "A metric the candidate lacks (a partial candidate's too) is not a failure.")
    alpha: float = setting(0.05, "Chance that an identical system fails the gate (family-wise, all metrics).")
    allow_different: bool = setting(False, "Compare runs that are not the same experiment (device, deployment, model, "
                                    "method, profile, workload, sampling); every row says so.")
    run_noise_pct: float | None = setting(None, "Relative spread between runs to assume when no side has three runs to "
                                          "measure it, percent (`gate --plan` on three runs measures it).")
    plan: bool = setting(False, "Size runs instead: what a gate against --baseline could resolve, and how much longer "
                         "runs would resolve each tolerance.")
    summary: Path | None = setting(None, "Also write the markdown table here (e.g. $GITHUB_STEP_SUMMARY).", panel="Output")
    junit: Path | None = setting(None, "Write JUnit XML here.", panel="Output")

    def validate(self) -> None:
        if not self.baseline:
            raise InputError("give the baseline results: --baseline PATH (repeat it for repeated runs)")
        if self.max_drop_pct is not None and not self.max_drop_pct >= 0:
            raise InputError("--max-drop-pct must be >= 0")
        if self.run_noise_pct is not None and not self.run_noise_pct >= 0:
            raise InputError("--run-noise-pct must be >= 0")
        if not 0 < self.alpha < 1:
            raise InputError("--alpha must be between 0 and 1")
        if self.plan and self.candidate:
            raise InputError("--plan sizes runs from --baseline alone: give no candidate")
        if not self.plan and not self.candidate:
            raise InputError("give the candidate results to gate (or --plan to size runs from --baseline)")
