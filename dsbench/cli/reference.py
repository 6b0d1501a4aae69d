"""The CLI reference (docs/cli.md), generated from the commands themselves: each command's help,
its options with their defaults, and its examples. A test keeps the committed file equal to this.

    python -m dsbench.cli.reference > docs/cli.md
"""

from __future__ import annotations

import click
import typer

from . import app


def _default(p: click.Parameter) -> str:
    if p.required:
        return "required"
    d = p.default
    if d is None or d is False or d == () or d == [] or d == "":
        return ""
    return f"`{', '.join(map(str, d)) if isinstance(d, (list, tuple)) else d}`"


def _option(p: click.Parameter) -> str:
    if isinstance(p, click.Argument):
        return f"`{p.name.upper()}`" + ("..." if p.nargs == -1 else "")
    flag = " / ".join(f"`{o}`" for o in p.opts)
    if p.multiple:
        flag += " (repeatable)"
    return flag


def _examples(epilog: str | None) -> list[str]:
    return [line.strip() for line in (epilog or "").splitlines() if line.strip().startswith("dsbench ")]


def markdown() -> str:
    root = typer.main.get_command(app)
    out = [
        "# dsbench command reference",
        "",
        "Generated from the commands' own help by `python -m dsbench.cli.reference > docs/cli.md`; a test keeps "
        "it current. Every command exits 0 when done, 1 only for `gate`'s regressed, 2 for unusable input, 70 for "
        "an internal error, 130 when interrupted.",
        "",
    ]
    for name, cmd in root.commands.items():
        help_text = (cmd.help or "").strip()
        summary, _, rest = help_text.partition("\n\n")
        out += [f"## dsbench {name}", "", summary.replace("\n", " "), ""]
        if rest:
            out += [" ".join(rest.split()), ""]
        out += ["| option | default | meaning |", "| --- | --- | --- |"]
        for p in cmd.params:
            meaning = " ".join((getattr(p, "help", None) or "").split()).replace("|", "\\|")
            out.append(f"| {_option(p)} | {_default(p)} | {meaning} |")
        examples = _examples(cmd.epilog)
        if examples:
            out += ["", "```", *examples, "```"]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(), end="")
