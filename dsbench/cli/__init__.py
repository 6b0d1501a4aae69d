"""dsbench command line: one module per command; each parses options, calls one library entry
point and prints with rich. Heavy imports (numpy, scipy, matplotlib, torch) happen inside
commands, so `dsbench --help` starts fast."""

from . import sweep, profile, load, search, serve, accept, calibrate, fit, report, gate  # noqa: F401, I001  (each registers its command on `app`, in this order)
from ._common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
