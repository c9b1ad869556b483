"""rich's console, made to outlive a reader that leaves (``peerdistill report RUN | head``)."""

from __future__ import annotations

import os

from rich.console import Console as RichConsole


class Console(RichConsole):
    """When the pipe it writes to closes, rich exits with status 1 in the middle of the command
    (a training run would stop). This console goes quiet instead and lets the command finish."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        try:  # later writes (and Python's flush at exit) go nowhere rather than failing again
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())
        except (OSError, ValueError):
            pass
