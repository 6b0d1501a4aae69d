"""The CLI's one shape: every command's options come from its config (defaults written once) and
the committed reference (docs/cli.md) is what the commands say about themselves."""

import dataclasses
from pathlib import Path

import pytest
import typer

from dsbench import config as configs
from dsbench.cli import app
from dsbench.cli.reference import markdown
from dsbench.config import default_of, flag_of

CONFIGS = {
    "sweep": configs.SweepConfig,
    "profile": configs.ProfileConfig,
    "accept": configs.AcceptConfig,
    "load": configs.LoadConfig,
    "search": configs.SearchConfig,
    "fit": configs.FitConfig,
    "calibrate": configs.CalibrateConfig,
    "report": configs.ReportConfig,
    "gate": configs.GateConfig,
    "serve": configs.ServeConfig,
}


def test_the_committed_reference_is_current():
    committed = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    assert committed == markdown(), "docs/cli.md is stale: python -m dsbench.cli.reference > docs/cli.md"


@pytest.mark.parametrize("command", CONFIGS)
def test_every_config_field_is_an_option_with_the_configs_default_and_help(command):
    cmd = typer.main.get_command(app).commands[command]
    params = {p.name: p for p in cmd.params}
    assert set(CONFIGS) == set(typer.main.get_command(app).commands)  # every command has a config
    for f in dataclasses.fields(CONFIGS[command]):
        p = params.get(f.name)
        assert p is not None, f"{command}: config field {f.name} has no option"
        assert p.help == f.metadata["help"] and p.help, f.name
        if p.param_type_name == "option":
            assert flag_of(f) in p.opts, (f.name, p.opts)
        default = default_of(f)
        if f.metadata.get("csv") and isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        if default is not dataclasses.MISSING and default not in ([], (), {}):
            assert p.default == default, (command, f.name, p.default, default)


def test_one_meaning_per_flag():
    """Flags shared by commands mean one thing: --out is where every writing command writes (and
    --force lets it replace earlier results), --model is a server's model id, --target a local
    target model, and a flag with a unit carries it in its name."""
    commands = typer.main.get_command(app).commands
    opts = {name: {o: p for p in cmd.params for o in getattr(p, "opts", [])} for name, cmd in commands.items()}
    for name in ("sweep", "profile", "accept", "load", "search", "fit", "calibrate", "report"):
        assert "--out" in opts[name] and "-o" in opts[name] and "--force" in opts[name], name
    for name, flags in opts.items():
        if "--model" in flags:
            assert "model id" in flags["--model"].help.lower(), name
        if "--target" in flags:
            assert "target model" in flags["--target"].help.lower(), name
        for unitless in ("--warmup", "--duration", "--timeout", "--drain", "--max-drop", "--run-noise", "--output"):
            assert unitless not in flags, f"{name} {unitless}: say the unit in the flag"


def test_the_configs_light_copies_of_core_names_agree():
    """config.py names the methods without importing numpy (fast --help); they must be core's."""
    from dsbench.core.methods import METHOD_NAMES, METHODS

    assert configs.METHOD_NAMES == METHOD_NAMES
    assert set(configs.DRAFTERS) == {m for m in METHOD_NAMES if METHODS[m].fixed_gamma != 0}
