"""`python -m dsbench`: the command line."""

from .cli import main

main()
