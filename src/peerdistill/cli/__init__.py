"""The ``peerdistill`` command line, a thin layer over the Python API.

This package imports nothing that brings torch: --help, --version and a config error answer at
once. Each command imports what it runs, torch with it, once its arguments are checked. One
module per job: the parser (arguments.py), the commands (commands.py, eval_command.py), the
notes under their tables, and running one command with its failures and interruptions (running.py).
Those modules load on first use, so that Ctrl-C while they load ends the command as one later
would: one line, not a traceback through the imports.
"""

from __future__ import annotations

import importlib as _importlib
import sys
from typing import TYPE_CHECKING, NoReturn

__all__ = ["MAX_BOOTSTRAP", "build_parser", "main", "run_and_exit"]

_ON_FIRST_USE = {"MAX_BOOTSTRAP": ".arguments", "build_parser": ".arguments", "main": ".running"}

if TYPE_CHECKING:
    from .arguments import MAX_BOOTSTRAP, build_parser
    from .running import main


def run_and_exit(argv: list[str] | None = None) -> NoReturn:
    """The ``peerdistill`` command: runs it and ends the process with its exit code."""
    try:
        from .running import run_and_exit as run
    except KeyboardInterrupt:  # (nothing has begun: nothing to say but that)
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    run(argv)


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        return getattr(_importlib.import_module(_ON_FIRST_USE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
