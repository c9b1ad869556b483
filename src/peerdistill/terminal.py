"""rich's console, made to outlive a reader that leaves (``peerdistill report RUN | head``), and
peerdistill's warnings as one line each."""

from __future__ import annotations

import os
import sys

from rich.console import Console as RichConsole

from .errors import PeerdistillWarning


class Console(RichConsole):
    """When the pipe it writes to closes, rich exits with status 1 in the middle of the command
    (a training run would stop). This console goes quiet instead and lets the command finish."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        try:  # later writes (and Python's flush at exit) go nowhere rather than failing again
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())
        except (OSError, ValueError):
            pass


def one_line_warnings(show_other, source: str = ""):
    """A ``warnings.showwarning`` that prints peerdistill's own warnings as one line on stderr,
    ``warning: [SOURCE: ]MESSAGE``, and hands the others to ``show_other``. A plain write: a live
    progress display prints it above itself (rich's console output would be drawn into it)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, PeerdistillWarning):
            print(f"warning: {source + ': ' if source else ''}{message}", file=sys.stderr, flush=True)
        else:
            show_other(message, category, filename, lineno, file, line)
    return show
