"""Shared pieces of the command line: the Typer app, consoles, error handling, formatting."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="dsbench",
    help="Benchmark and plan capacity for speculative decoding: no-spec, MTP-1, DFlash, Eagle3, DSpark.",
    epilog="Exit codes, every command: 0 done (gate: passed), 1 regressed (gate only), 2 unusable input (a bad "
    "file, option or path; a server that could not be measured as asked), 70 an internal error (a bug), 130 "
    "interrupted.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output gets room for the tables instead of rich's 80-column default.
_WIDTH = int(os.environ.get("COLUMNS", "0") or 0) or (None if sys.stdout.isatty() else 120)
console = Console(width=_WIDTH)
err = Console(stderr=True, soft_wrap=True)  # one message, one line: never wrapped


# Exit codes, the same for every command. 1 is only ever `gate`'s "regressed".
EXIT_REGRESSED, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 70, 130


def handles_input_errors(fn):
    """Bad input (and a path that cannot be read or written) becomes one line on stderr and exit
    code 2; anything else is an internal error, exit 70 (never 1, which means "regressed"), its
    traceback shown only with DSBENCH_TRACEBACK=1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import click

        from ..errors import InputError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except InputError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INPUT) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: results written so far are kept")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except OSError as e:
            where = f" {e.filename}" if e.filename else ""
            err.print(f"[bold red]error:[/] cannot use{where}: {e.strerror or e}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INPUT) from None
        except Exception as e:
            if os.environ.get("DSBENCH_TRACEBACK"):
                raise
            err.print(
                f"[bold red]internal error:[/] {type(e).__name__}: {e} (a bug in dsbench; DSBENCH_TRACEBACK=1 "
                "shows where)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        console.print(f"dsbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
):
    pass


def _cli_type(hint, f):
    """The type Typer parses a config field as: comma-separated lists and JSON objects arrive as
    text (config() turns them into values), optional values as Optional."""
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1
    base = args[0] if optional else hint
    if f.metadata.get("csv") is not None or base is dict:
        return typing.Optional[str] if base is dict else str
    if typing.get_origin(base) in (list, tuple):
        return list[str]
    return typing.Optional[base] if optional else base


def option(f):
    """The Typer option for config field `f`: its default and help come from the
    config (config.setting), its flag is the field's name unless the setting names another."""
    from ..config import MISSING, default_of, flag_of

    meta, default = f.metadata, default_of(f)
    if meta.get("csv") and isinstance(default, (list, tuple)):
        default = ",".join(str(x) for x in default)
    if isinstance(default, dict):
        default = None
    if meta.get("argument"):
        return typer.Argument(... if default is MISSING else default, help=meta.get("help"), show_default=False)
    decls = [flag_of(f)] + ([meta["short"]] if meta.get("short") else [])
    return typer.Option(
        ... if default is MISSING else default,
        *decls,
        help=meta.get("help"),
        rich_help_panel=meta.get("panel"),
        show_default=default not in (None, MISSING, "", []),
    )


def config(cfg, values: dict):
    """Config class `cfg` built from the CLI's parsed values (fields missing there, or None for a
    list, keep their defaults); comma-separated options become lists, JSON options objects."""
    import dataclasses

    from ..config import default_of, flag_of

    kwargs = {}
    for f in dataclasses.fields(cfg):
        v = values.get(f.name)
        if f.name not in values or (v is None and f.default_factory is not dataclasses.MISSING):
            continue
        if f.metadata.get("csv") is not None and isinstance(v, str):
            v = csv_list(v, f.metadata["csv"], flag_of(f))
        elif isinstance(default_of(f), dict):
            v = json_object(v, flag_of(f))
        kwargs[f.name] = v
    return cfg(**kwargs)


def from_config(cfg, *, json: bool = True, quiet: bool = False):
    """Make a command's options from config class `cfg`: the decorated function takes the built
    config (and `as_json`, `quiet` when asked for), so no default or help is written twice."""
    import dataclasses
    import inspect
    import typing

    hints = typing.get_type_hints(cfg)
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter(f.name, kw, default=option(f), annotation=_cli_type(hints[f.name], f))
        for f in dataclasses.fields(cfg)
    ]
    shown = [("as_json", json_flag) if json else None, ("quiet", quiet_flag) if quiet else None]
    params += [inspect.Parameter(name, kw, default=make(), annotation=bool) for name, make in filter(None, shown)]

    def decorate(fn):
        @functools.wraps(fn)
        def command(**values):
            flags = {k: values.pop(k) for k in ("as_json", "quiet") if k in values}
            return fn(config(cfg, values), **flags)

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # Typer reads the signature above, not the function's own
        return command

    return decorate


@contextlib.contextmanager
def progress_bar(verb: str, show: bool = True):
    """A progress bar on stderr fed by a run's progress(label, done, total) calls (config.Progress);
    yields None when hidden (--quiet, --json)."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"{verb} [bold]{{task.fields[label]}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(verb, total=None, label="")

        def progress(label: str, done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, label=label)

        yield progress


def json_flag():
    return typer.Option(
        False, "--json", help="Print the result as one JSON object on stdout (no table).", rich_help_panel="Output"
    )


def quiet_flag():
    return typer.Option(False, "--quiet", "-q", help="No progress bar.", rich_help_panel="Output")


def fmt(v, spec: str, none: str = "—") -> str:
    """Format a number for a table; None becomes a dash."""
    return none if v is None else format(v, spec)


def csv_list(text: str, kind, name: str) -> list:
    """Parse a comma-separated option (`1,2,4`) into numbers; a bad value is an InputError naming the option."""
    from ..errors import InputError

    try:
        return [kind(x.strip()) for x in text.split(",") if x.strip()] if text else []
    except ValueError:
        raise InputError(f"{name}: expected comma-separated numbers, got {text!r}") from None


def json_object(text: str | None, name: str) -> dict:
    """Parse an option holding a JSON object; anything else is an InputError naming the option."""
    import json

    from ..errors import InputError

    if not text:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{name}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{name}: expected a JSON object, got {type(obj).__name__}")
    return obj
