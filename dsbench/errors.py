"""The one error users see: bad input, printed by the CLI as one line (exit 2)."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input (file, schema, value). The CLI prints it as one line and exits 2."""
