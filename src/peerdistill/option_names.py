"""How a message names an option that the command line and the Python API both take: as the
caller gave it. A command-line flag (``--tta``) while a command runs, else the keyword argument
(``tta=``) of the function that takes it."""

from __future__ import annotations

import contextlib
import contextvars

_AS_FLAGS: contextvars.ContextVar[bool] = contextvars.ContextVar("peerdistill_options_as_flags", default=False)
_KEYWORDS = {"--format": "fmt", "--calibration-samples": "calibration", "--teacher-from": "teacher_from"}
# switches: True in Python
_SWITCHES = {"--overwrite", "--temperature-scaling", "--students-only", "--dry-run", "--skip-unreadable"}


@contextlib.contextmanager
def options_as_flags():
    """Options named as the command line's flags in messages raised meanwhile."""
    token = _AS_FLAGS.set(True)
    try:
        yield
    finally:
        _AS_FLAGS.reset(token)


def option_given(flag: str, value: object) -> str:
    """An option with a value as its caller writes it: ``--presets kd,kd+ml`` on the command
    line (a list comma-joined), ``presets=['kd', 'kd+ml']`` in Python."""
    if _AS_FLAGS.get():
        return f"{flag} {','.join(map(str, value)) if isinstance(value, (list, tuple)) else value}"
    return option(flag, repr(value))


def options_named_as_flags() -> bool:
    """Whether messages now name options as the command line's flags (for a worker process to
    name them as its parent does)."""
    return _AS_FLAGS.get()


def option(flag: str, value: str | None = None) -> str:
    """How a message names an option (``flag`` as the command line spells it), with ``value``
    as written in the message: ``--tta 'vflip'`` from the command line, ``tta='vflip'`` from
    Python (a switch, ``overwrite=True``)."""
    if _AS_FLAGS.get():
        return flag if value is None else f"{flag} {value}"
    keyword = _KEYWORDS.get(flag, flag.removeprefix("--").replace("-", "_"))
    if value is None:
        return f"{keyword}=True" if flag in _SWITCHES else f"{keyword}="
    return f"{keyword}={value}"
