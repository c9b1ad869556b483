"""rich's console, made to outlive a reader that leaves (``peerdistill report RUN | head``) and to
write to a console of any encoding, and peerdistill's warnings as one line each."""

from __future__ import annotations

import codecs
import contextlib
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
    ``warning: [SOURCE: ]MESSAGE``, each text once (review 54d: compare's runs of every seed said
    the same line again), and hands the others to ``show_other``. A plain write: a live progress
    display prints it above itself (rich's console output would be drawn into it)."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, PeerdistillWarning):
            text = f"warning: {source + ': ' if source else ''}{message}"
            if text not in shown:
                shown.add(text)
                print(text, file=sys.stderr, flush=True)
        else:
            show_other(message, category, filename, lineno, file, line)
    return show


# What a console that cannot show a character gets instead: the symbols peerdistill writes
# spelled out, anything else (a class or file name) as Python's escape.
_SPELLED = {"\u00b1": "+/-", "\u2026": "...", "\u2265": ">=", "\u2264": "<=", "\u2192": "->", "\u00d7": "x"}
_ERRORS = "peerdistill-spelled"


def _spelled_out(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    unwritable = error.object[error.start:error.end]
    return "".join(_SPELLED.get(c) or c.encode("ascii", "backslashreplace").decode() for c in unwritable), error.end


codecs.register_error(_ERRORS, _spelled_out)


def write_any_character(*streams) -> None:
    """A stream whose encoding lacks characters peerdistill prints (output redirected to a file
    on Windows, cp1252; PYTHONIOENCODING=ascii) raised UnicodeEncodeError for a table's '±' once
    the work was done: such characters are written spelled out instead."""
    for stream in streams:
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
        if encoding.startswith("utf"):
            continue
        with contextlib.suppress(AttributeError, ValueError, OSError):  # a stream of the caller's own
            stream.reconfigure(errors=_ERRORS)
