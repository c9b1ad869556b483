"""The signals that stop a command as Ctrl-C does, and a block that must not be cut by another:
the run being marked stopped (review 52c: a second Ctrl-C or SIGTERM during it left run.json or
metrics.json at 'running', or a temporary file beside them)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# the signals that stop a command as Ctrl-C does (SIGHUP: a closed terminal or ssh session;
# SIGUSR1/SIGUSR2: a scheduler's warning that time is nearly up, Slurm's --signal, SGE's soft
# limit, whose default action would end the process with its run still marked running)
STOPPING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")
                         if hasattr(signal, name))


class StoppedBySignal(KeyboardInterrupt):
    """A stopping signal taken as an interruption, which says which it was (``signum``: a run
    marked stopped records it)."""

    def __init__(self, signum: int):
        super().__init__()
        self.signum = signum


def taken_stopping_signals() -> list[int]:
    """The stopping signals a handler may take: not those ignored as the process started
    (nohup, a shell's background job), which stay ignored."""
    return [sig for sig in STOPPING_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]


@contextlib.contextmanager
def stopping_signals_held() -> Iterator[None]:
    """Within the block, a stopping signal is taken and dropped: the stop under way is what it
    asks for, and the block writes a few small files. Signals ignored stay ignored; outside the
    main thread (where no handler can be set) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {sig: signal.signal(sig, _dropped) for sig in STOPPING_SIGNALS
            if signal.getsignal(sig) not in (signal.SIG_IGN, None)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def _dropped(signum, frame) -> None:
    """A stopping signal during a block that finishes the stop: nothing more to do."""
